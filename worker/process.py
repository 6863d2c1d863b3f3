"""The worker as a process: one local worker per database (a lock file), its quick lane's process, signals, logging.

Light on purpose: the dashboard imports this module to start its local worker, so it must not bring
the engine (torch) or the job code along; only `db.session` for the data directory and the URL.
"""

from __future__ import annotations

import ctypes
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
PARENT_ENV = "CON2_WORKER_PARENT"  # set by start_lane: the worker process whose lane this one serves
LANE_STOP_S = 30.0  # how long a stopping worker waits for its quick lane to requeue its job and exit

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


def start_lane(
    url: str | None, lane: str, *, once: bool, poll_s: float, worker_id: str | None, stale_after_s: float
) -> subprocess.Popen:
    """Serve one more lane of the queue (`db.jobs.LANES`) in a child process: `python -m worker --lane LANE`.

    A process, not a thread: training sets process-wide torch state (the global seed before the model is built,
    cuDNN's flags around training and scoring) that a job running beside it in the same process would change.
    The child shares this process's log, holds a lock file of its own beside this process's (a local worker),
    runs in its own session so a Ctrl-C in a terminal reaches only this process (which stops the child,
    `stop_lane`), and ends with this process even when it is killed (`watch_parent`).
    """
    command = [
        sys.executable,
        "-m",
        "worker",
        "--lane",
        lane,
        "--poll",
        str(poll_s),
        "--stale-after",
        str(stale_after_s),
    ]
    command += (["--db", str(url)] if url else []) + (["--once"] if once else [])
    command += ["--worker-id", f"{worker_id}-{lane}"] if worker_id else []
    env = {**os.environ, PARENT_ENV: str(os.getpid())}
    if LOCK_ENV in env:  # a local worker's lane holds a lock of its own: one local worker per database and lane
        env[LOCK_ENV] = f"{env[LOCK_ENV]}.{lane}"
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, env=env, start_new_session=True)


def stop_lane(child: subprocess.Popen, *, finish: bool) -> int:
    """End a lane's process: wait for it to empty its queue (`finish`, with --once), or ask it to stop (SIGTERM:
    it requeues its running job). Killed after LANE_STOP_S if it does not stop. Returns its exit status."""
    if not finish and child.poll() is None:
        child.send_signal(signal.SIGTERM)
    try:
        return child.wait(timeout=None if finish else LANE_STOP_S)
    except subprocess.TimeoutExpired:
        log.warning(
            "the %s lane did not stop within %g s; killed (its job is recovered once stale)", child.pid, LANE_STOP_S
        )
        child.kill()
        return child.wait()


def watch_parent(stop: threading.Event) -> Callable[[], None]:
    """In a lane started by `start_lane`: SIGTERM when the parent dies (Linux), and a check for the loop to call,
    which sets `stop` once the parent is gone (other systems, or a parent that died before this ran)."""
    parent = os.environ.get(PARENT_ENV)
    if not parent:
        return lambda: None
    if sys.platform.startswith("linux"):
        try:  # PR_SET_PDEATHSIG = 1: the kernel signals this process when its parent exits, even by SIGKILL
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):
            pass

    def check() -> None:
        if os.getppid() != int(parent):
            log.info("the worker that started this lane is gone; stopping")
            stop.set()

    return check


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
