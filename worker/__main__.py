import sys

from worker.cli import main

sys.exit(main(prog="python -m worker"))
