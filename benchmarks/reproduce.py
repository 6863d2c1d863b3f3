"""Reproduce the paper: the Con2 protocol on real data, written as docs/results.md and docs/results.json.

    python benchmarks/reproduce.py --budget cpu --datasets breastmnist
    python benchmarks/reproduce.py --budget paper --time-limit-s 540     # on a GPU; rerun until exit 0

The command only: the code is the package benchmarks/reproduction/ (protocol, cells, tables; its
docstring lists the modules), also runnable as `python -m benchmarks.reproduction`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, whose `benchmarks.reproduction` runs

from benchmarks.reproduction.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
