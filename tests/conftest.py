"""Shared test setup. The environment is set here, before any test module imports torch."""

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("GOMP_SPINCOUNT", "10000")  # see engine/__init__.py: spinning threads starve each other
# Unit tests pin themselves to the CPU: on a GPU machine, device="auto" would otherwise run them in bfloat16
# and their float tolerances would not hold. tests/test_gpu.py runs the CUDA paths when CON2_TEST_GPU=1.
if os.environ.get("CON2_TEST_GPU") != "1":
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
# ... and to float32 on the CPU: a machine set up with CON2_CPU_BF16=1 and a CPU with bfloat16 units (Intel AMX)
# would otherwise train and score them in bfloat16 (engine/device.py), and the same test would compute other
# figures there. The tests of that path (tests/test_device.py) switch it on for themselves, where the CPU has them.
os.environ["CON2_CPU_BF16"] = "0"

# Tests register folders under the temporary directory and the real datasets in ../shared/data: both are data
# roots for the whole run (worker and app subprocesses inherit it); tests of the roots themselves override it.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
os.environ.setdefault("CON2_DATA_ROOTS", os.pathsep.join([tempfile.gettempdir(), str(SHARED_DATA)]))


@pytest.fixture
def app_data_dir(tmp_path, monkeypatch) -> Path:
    """A fresh data directory for the dashboard: no local worker, reviewer "ada", no outside database URL."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    monkeypatch.setenv("CON2_DATA_DIR", str(data_dir))
    monkeypatch.setenv("CON2_WORKER", "off")
    monkeypatch.setenv("CON2_REVIEWER", "ada")
    monkeypatch.delenv("CON2_DATABASE_URL", raising=False)
    return data_dir
