"""A full disk under a running job: the worker cannot write, and must still end the job failed with the reason
as soon as the database takes writes again, never leave it 'running' with no one working on it.

The disk is real: a small tmpfs mounted for the test, filled with a file until the kernel says ENOSPC."""

from __future__ import annotations

import errno
import os
import subprocess
import time

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


def empty_wal(url: str, strict: bool = True) -> None:
    """Fold the write-ahead log into the database and truncate it, so that the worker's next write needs new
    disk blocks (a log with room left would take a few small writes even on a full disk). Not `strict`: a try
    that may fail (the disk is full, the worker is writing), and the caller tries again later."""
    engine = create_engine(url)
    try:
        for _ in range(50):
            try:
                with engine.connect() as connection:
                    busy, _, _ = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
            except OperationalError:
                if strict:
                    raise
                return
            if not busy or not strict:
                return
            time.sleep(0.1)
        pytest.fail("could not truncate the write-ahead log")
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
        empty_wal(url)
        print(f"disk filled with {fill(small_disk) / 1e6:.1f} MB")

        def refused() -> bool:
            if "could not record the failure" in workers.log(worker):
                return True
            # Again: fold the log into the database and take every block that freed. A log that kept its blocks
            # is reused from its start after each checkpoint, so the worker could write on a full disk for ever.
            empty_wal(url, strict=False)
            fill(small_disk)
            return "could not record the failure" in workers.log(worker)

        # the worker's next checkpoint or progress write fails, and so does its first try to record that
        wait_for(refused, 180, "a refused failure write", every=2.0)
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
