"""`python -m benchmarks.reproduction`: the same command as `python benchmarks/reproduce.py`."""

import sys

from benchmarks.reproduction.cli import main

sys.exit(main())
