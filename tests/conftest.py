"""Shared test setup. The environment is set here, before any test module imports torch."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see engine/__init__.py: spinning threads starve each other
