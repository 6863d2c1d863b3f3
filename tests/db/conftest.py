"""Fixtures for the database and worker tests: real SQLite files, a fresh PostgreSQL schema per test
(when CON2_TEST_POSTGRES_URL is set, see .ci/postgres.sh), and real worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from db.session import open_database, parse_url
from engine.config import DataConfig, RunConfig, ScoreConfig, TrainConfig

POSTGRES_ENV = "CON2_TEST_POSTGRES_URL"
REPO = Path(__file__).resolve().parents[2]


def make_tiny_config(epochs: int = 3, tta: int = 2, **train) -> RunConfig:
    """Digits at 16 px, normal class 0: trains in seconds on a CPU."""
    return RunConfig(
        DataConfig(source="digits", normal_label="0", image_size=16),
        TrainConfig(epochs=epochs, batch_size=32, encoder="resnet_small", device="cpu", checkpoint_every=1, **train),
        ScoreConfig(tta=tta),
    )


@pytest.fixture(scope="session")
def tiny_config() -> Callable[..., RunConfig]:
    return make_tiny_config


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'con2.db'}"


def postgres_schema_url() -> Iterator[str]:
    """A URL whose connections live in a new, empty schema of the test server; dropped afterwards."""
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f'{POSTGRES_ENV} is not set: start a server with eval "$(.ci/postgres.sh)"')
    parsed = parse_url(base)
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(parsed)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield parsed.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from postgres_schema_url()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each db test runs on an SQLite file and, when a server is available, on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'con2.db'}"
    else:
        yield from postgres_schema_url()


@pytest.fixture
def sessions(url: str) -> Iterator[sessionmaker[Session]]:
    factory = open_database(url)
    yield factory
    factory.kw["bind"].dispose()


def poll(condition: Callable[[], object], timeout: float, what: str, every: float = 0.1) -> object:
    """Poll until `condition()` is truthy; fail the test with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}")


def poll_progress(
    condition: Callable[[], object],
    progress: Callable[[], object],
    what: str,
    *,
    stall_s: float = 120,
    every: float = 0.5,
) -> object:
    """Poll until `condition()` is truthy, for as long as `progress()` keeps changing: fail with `what` only
    after `stall_s` seconds without any change. A loaded machine (load average 14 on 2 cores) is slow, not
    stuck, so a fixed deadline would fail a healthy run; a stall is what a real hang looks like."""
    last, changed = progress(), time.monotonic()
    while True:
        value = condition()
        if value:
            return value
        now_progress = progress()
        if now_progress != last:
            last, changed = now_progress, time.monotonic()
        elif time.monotonic() - changed > stall_s:
            pytest.fail(f"no progress for {stall_s:g} s waiting for {what} (last seen: {last!r})")
        time.sleep(every)


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used (user + system, from /proc): grows while it works, however slowly."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return -1.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Workers:
    """Worker processes (`python -m worker`) started by a test; all stopped at its end."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.processes: list[subprocess.Popen] = []

    def start(self, url: str, *args: str, name: str | None = None) -> subprocess.Popen:
        name = name or f"w{len(self.processes) + 1}"
        log = open(self.tmp_path / f"{name}.log", "wb")  # noqa: SIM115  # closed when the process ends
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "CON2_DATA_DIR": str(self.tmp_path)}
        command = [sys.executable, "-m", "worker", "--db", url, "--poll", "0.2", "--worker-id", name, *args]
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        process.log_path = self.tmp_path / f"{name}.log"  # type: ignore[attr-defined]
        self.processes.append(process)
        return process

    def log(self, process: subprocess.Popen) -> str:
        return Path(process.log_path).read_text(errors="replace")  # type: ignore[attr-defined]

    def wait_serving(self, process: subprocess.Popen, stall_s: float = 60) -> None:
        """Wait until the worker serves its queue, however long its imports take on a busy machine, as long
        as it keeps using CPU; a worker that stops making progress for `stall_s` seconds fails the test."""
        poll_progress(
            lambda: "serving" in self.log(process) or process.poll() is not None,
            lambda: (cpu_seconds(process.pid), len(self.log(process))),
            "the worker to start",
            stall_s=stall_s,
        )
        assert process.poll() is None, self.log(process)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="session")
def wait_for() -> Callable[..., object]:
    return poll


@pytest.fixture(scope="session")
def wait_progress() -> Callable[..., object]:
    return poll_progress


@pytest.fixture(scope="session")
def worker_pool() -> type[Workers]:
    """The Workers class, for fixtures wider than one test (which cannot use `workers`)."""
    return Workers


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(tmp_path)
    yield pool
    pool.stop_all()
