"""A full disk under a running job: the worker cannot write, and must still end the job failed with the reason
as soon as the database takes writes again, never leave it 'running' with no one working on it.

The disk is real: a small tmpfs mounted for the test, filled with a file until the kernel says ENOSPC."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError

from db import datasets, job_reads, job_submit
from db.session import open_database

pytestmark = pytest.mark.slow
DISK_MB = 64  # room for the database, its write-ahead log (registration writes the digits in one transaction: about
# 19 MB of log beside a 9 MB database when training starts) and a few checkpoints of the tiny model; then filled


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (./test.sh runs as root in CI)")
    disk = tmp_path / "disk"
    disk.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs", str(disk)]
    mounted = subprocess.run(command, capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk) -> int:
    """Write a file until not one more byte fits; returns the bytes written."""
    written = 0
    descriptor = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)  # again: only new blocks
    try:
        for chunk in (1 << 16, 1 << 12, 1 << 9, 1):  # ever smaller writes take the last free blocks too
            while True:
                try:
                    written += os.write(descriptor, b"\0" * chunk)
                except OSError as error:
                    assert error.errno == errno.ENOSPC, error
                    break
    finally:
        os.close(descriptor)
    return written


def process_tree(root: int) -> list[int]:
    """`root` and every process below it (a worker trains in a child process of its own, a lane)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:  # ended meanwhile
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])  # the name may hold spaces and ')'
    tree, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree


@contextmanager
def paused(worker):
    """The worker and its lanes stopped (SIGSTOP) for the duration: nothing of theirs writes meanwhile."""
    pids = process_tree(worker.pid)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def starve(url: str, disk, worker) -> int:
    """Leave the worker's next database write no disk block to take; returns the bytes the filler took.

    With the worker paused: fold the write-ahead log into the database and truncate it, then fill the disk. The
    pause matters: a worker waiting on the checkpoint's lock writes the moment it ends (each checkpoint of the
    model is megabytes), and a log that grew again before the filler ran keeps its blocks and is reused from its
    start after every checkpoint, so the worker would write on a full disk for ever. A worker paused in the
    middle of a transaction keeps its lock: resume it and try again."""
    engine = create_engine(url, connect_args={"timeout": 0.5})  # a paused lock holder never lets go: don't wait
    try:
        for _ in range(100):
            with paused(worker):
                try:
                    with engine.connect() as connection:
                        busy, _, _ = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
                except OperationalError:  # locked by the paused worker
                    busy = 1
                if not busy:
                    return fill(disk)
            time.sleep(0.2)
        pytest.fail("the worker never let the write-ahead log be truncated")
    finally:
        engine.dispose()


def test_a_full_disk_ends_the_job_failed_once_the_database_takes_writes_again(
    small_disk, workers, wait_for, wait_progress, tiny_config
):
    url = f"sqlite:///{small_disk / 'con2.db'}"
    sessions = open_database(url)

    def job(job_id):
        with sessions() as session:
            return job_reads.get_job(session=session, job_id=job_id)

    with sessions.begin() as session:
        dataset_id = datasets.create_dataset(session=session, location="digits").id
        config = tiny_config(epochs=500).to_dict()  # far longer than the test: the disk fills mid-training
        job_id = job_submit.submit_train(session=session, dataset_id=dataset_id, config=config, projections=["pca"]).id
    worker = workers.start(url)
    try:

        def training_under_way() -> bool:
            j = job(job_id)
            # a job that ended or a worker that died will never train: say why now, not after a long wait
            assert j.status in ("queued", "running"), (j.status, j.error, workers.log(worker))
            assert worker.poll() is None, workers.log(worker)
            return j.phase == "training" and j.progress > 0.06

        wait_progress(  # slow is fine on a loaded machine, stuck is not
            training_under_way,
            lambda: (job(job_id).status, job(job_id).phase, round(job(job_id).progress or 0.0, 3), workers.log(worker)),
            "training",
            stall_s=180,
        )
        print(f"disk filled with {starve(url, small_disk, worker) / 1e6:.1f} MB")

        # the worker's next checkpoint or progress write fails, and so does its first try to record that
        wait_for(lambda: "could not record the failure" in workers.log(worker), 60, "a refused failure write")
        assert job(job_id).status == "running"
        (small_disk / "filler").unlink()  # space again
        wait_for(lambda: job(job_id).status != "running", 30, "the failure to be recorded once space is back")
        ended = job(job_id)
        assert ended.status == "failed", (ended.status, ended.message)
        assert "full" in ended.error and ended.error.startswith("the database refused a write"), ended.error
        assert "\n" not in ended.error and "[SQL:" not in ended.error  # one line a user can read
        # the worker goes on serving the queue
        with sessions.begin() as session:
            after = job_submit.submit_register(session=session, dataset_id=dataset_id).id
        wait_for(lambda: job(after).status == "succeeded", 180, "the next job")
        assert worker.poll() is None, workers.log(worker)
    finally:
        workers.stop_all()
        sessions.kw["bind"].dispose()
