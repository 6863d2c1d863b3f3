"""Shared test setup. The environment is set here, before any test module imports torch."""

import os

os.environ.setdefault("GOMP_SPINCOUNT", "10000")  # see engine/__init__.py: spinning threads starve each other
