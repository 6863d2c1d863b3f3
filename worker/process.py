"""The worker as a process: one local worker per database (a lock file), signals, logging.

Light on purpose: the dashboard imports this module to start its local worker, so it must not bring
the engine (torch) or the job code along; only `db.session` for the data directory and the URL.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any, Literal

from db.session import data_dir, parse_url

LOCK_ENV = "CON2_WORKER_LOCK"  # set by start_local_worker: the lock file that keeps one local worker

log = logging.getLogger("con2.worker")


def start_local_worker(url: str | None = None) -> subprocess.Popen | None:
    """Start `con2 worker` for this machine in the background, unless one already serves `url`.

    Only one local worker runs per database URL: it holds a lock file in the data directory for its
    lifetime. Its log is appended to worker.log there. Returns the process, or None when one runs.
    """
    lock = _lock_path(url)
    if _locked(lock):
        return None
    command = [sys.executable, "-m", "worker"] + (["--db", str(url)] if url else [])
    with open(data_dir() / "worker.log", "ab") as log_file:
        return subprocess.Popen(
            command, stdout=log_file, stderr=log_file, stdin=subprocess.DEVNULL, env={**os.environ, LOCK_ENV: str(lock)}
        )


def _lock_path(url: str | None) -> str:
    digest = hashlib.sha256(parse_url(url).render_as_string(hide_password=False).encode()).hexdigest()[:12]
    return str(data_dir() / f"worker-{digest}.lock")


def _locked(path: str) -> bool:
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def take_local_lock() -> io.TextIOWrapper | Literal[False] | None:
    """With LOCK_ENV set: hold that lock for the process's lifetime (False: another worker has it)."""
    path = os.environ.get(LOCK_ENV)
    if not path:
        return None
    handle = open(path, "a+")  # held open (and locked) until the worker exits
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return False
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def handle_signals(stop: threading.Event) -> Callable[[], None]:
    """SIGTERM/SIGINT: finish by putting the running job back in the queue. Main thread only.

    Returns the function that puts the previous handlers back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def on_signal(number: int, _frame: Any) -> None:
        if stop.is_set():  # asked twice: stop now; the job is recovered once its heartbeat goes stale
            raise KeyboardInterrupt
        log.info(
            "received %s: requeueing the running job and stopping (again to quit at once)", signal.Signals(number).name
        )
        stop.set()

    previous = {number: signal.signal(number, on_signal) for number in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for number, handler in previous.items():
            signal.signal(number, handler)

    return restore


def setup_logging() -> None:
    """The worker's log lines to stderr (worker.log for a local worker), unless the host set logging up."""
    if not log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
