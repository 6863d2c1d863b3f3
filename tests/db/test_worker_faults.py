"""Real worker processes: SIGKILL mid-training, cancel while training, SIGTERM, and the quick lane beside a
training run."""

import os
import signal
import time

import pytest
from sqlalchemy import select

from db import artifacts, datasets, job_reads, job_submit, jobs, results
from db.models import Metric
from db.session import open_database
from tests.imagefiles import labelled_folder


@pytest.fixture
def queue(sqlite_url):
    sessions = open_database(sqlite_url)
    with sessions.begin() as session:
        dataset_id = datasets.create_dataset(session=session, location="digits").id
    yield sessions, sqlite_url, dataset_id
    sessions.kw["bind"].dispose()


def job_row(sessions, job_id):
    with sessions() as session:
        return job_reads.get_job(session=session, job_id=job_id)


def submit_training(session, dataset_id, config) -> int:
    """Queue a training run of `config` (a RunConfig) with a PCA projection; its job id."""
    return job_submit.submit_train(
        session=session, dataset_id=dataset_id, config=config.to_dict(), projections=["pca"]
    ).id


def metric_rows(sessions, job_id):
    with sessions() as session:
        rows = session.execute(
            select(Metric.id, Metric.kind, Metric.step, Metric.epoch, Metric.attempt, Metric.loss)
            .where(Metric.job_id == job_id)
            .order_by(Metric.id)
        ).all()
    return [tuple(r) for r in rows]


@pytest.mark.slow
def test_a_killed_worker_s_job_is_recovered_and_resumed_from_its_checkpoint(
    queue, workers, wait_for, wait_progress, tiny_config
):
    sessions, url, dataset_id = queue
    epochs = 40
    with sessions.begin() as session:
        job_id = submit_training(session, dataset_id, tiny_config(epochs=epochs))
    first = workers.start(url, name="doomed")

    def checkpointed_mid_training():
        job = job_row(sessions, job_id)
        with sessions() as session:
            saved = artifacts.artifact_info(session=session, job_id=job_id, name="checkpoint")
        return job.phase == "training" and job.progress > 0 and saved is not None and saved.epoch >= 2

    wait_for(checkpointed_mid_training, 300, "a checkpoint mid-training", every=0.05)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()

    with sessions() as session:
        kept = artifacts.artifact_info(session=session, job_id=job_id, name="checkpoint").epoch
    before = metric_rows(sessions, job_id)
    print(f"killed after checkpoint epoch {kept} of {epochs}; {len(before)} metric rows written")
    assert 2 <= kept < epochs, "the worker was killed too late to test resuming"
    assert job_row(sessions, job_id).status == "running"  # orphaned until someone notices
    durable = [r for r in before if r[3] <= kept]  # metrics up to the checkpoint are as durable as it is
    assert sorted(r[3] for r in durable if r[1] == "epoch") == list(range(1, kept + 1))

    second = workers.start(url, "--stale-after", "3", name="rescuer")
    wait_progress(  # 38 epochs on a shared, loaded CPU: slow is fine, stuck is not
        lambda: job_row(sessions, job_id).status in ("succeeded", "failed"),
        lambda: (lambda j: (j.status, j.attempts, round(j.progress or 0.0, 3)))(job_row(sessions, job_id)),
        "the recovered job to finish",
        stall_s=120,
    )
    job = job_row(sessions, job_id)
    assert job.status == "succeeded", f"{job.error}\n{workers.log(second)}"
    assert (job.attempts, job.worker_id) == (2, "rescuer")
    assert job.summary["resumed_from_epoch"] == kept
    assert "resumes after epoch" in workers.log(second)

    after = metric_rows(sessions, job_id)
    assert [r for r in after if r[3] <= kept] == durable  # nothing written before the checkpoint was lost or changed
    resumed = [r for r in after if r[4] == 2]
    assert min(r[3] for r in resumed) == kept + 1  # the new worker trained only the epochs after the checkpoint
    epoch_rows = sorted(r[3] for r in after if r[1] == "epoch")
    assert epoch_rows == list(range(1, epochs + 1))  # every epoch exactly once
    steps = [(r[1], r[2]) for r in after]
    assert len(steps) == len(set(steps))
    with sessions() as session:
        events = [(e.event, e.worker_id) for e in job_reads.job_events(session=session, job_id=job_id)]
        scored = results.read_scores(session=session, job_id=job_id)
    assert events == [
        ("submitted", None),
        ("claimed", "doomed"),
        ("requeued", "doomed"),
        ("claimed", "rescuer"),
        ("succeeded", "rescuer"),
    ]
    assert len(scored["sample_id"]) == len(set(scored["sample_id"].tolist())) == 539


@pytest.mark.slow
def test_a_running_job_is_cancelled_within_seconds(queue, workers, wait_for, tiny_config):
    sessions, url, dataset_id = queue
    with sessions.begin() as session:
        job_id = submit_training(session, dataset_id, tiny_config(epochs=500))
        after = job_submit.submit_register(session=session, dataset_id=dataset_id).id
    worker = workers.start(url)
    wait_for(lambda: (j := job_row(sessions, job_id)).phase == "training" and j.progress > 0.06, 300, "training")

    with sessions.begin() as session:
        assert jobs.request_cancel(session=session, job_id=job_id) == "running"
    asked = time.monotonic()
    wait_for(lambda: job_row(sessions, job_id).status != "running", 30, "the cancel")
    took = time.monotonic() - asked
    job = job_row(sessions, job_id)
    assert job.status == "cancelled" and job.message == "cancelled while training"
    print(f"cancel honoured {took:.2f} s after the request")
    assert took < 5, f"cancel took {took:.1f} s"
    # the worker goes on with the next job
    wait_for(lambda: job_row(sessions, after).status == "succeeded", 120, "the next job")
    assert worker.poll() is None


@pytest.mark.slow
def test_a_stopped_worker_puts_its_job_back_in_the_queue(queue, workers, wait_for, tiny_config):
    sessions, url, dataset_id = queue
    with sessions.begin() as session:
        job_id = submit_training(session, dataset_id, tiny_config(epochs=500))
    worker = workers.start(url)
    wait_for(lambda: job_row(sessions, job_id).phase == "training", 300, "training")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    job = job_row(sessions, job_id)
    assert (job.status, job.worker_id, job.attempts, job.max_attempts) == ("queued", None, 1, 4)
    assert "requeued to resume" in job.message


@pytest.mark.slow
def test_a_registration_finishes_while_a_long_training_run_is_still_running(
    queue, workers, wait_for, tiny_config, tmp_path
):
    """Issue 12: a registration queued behind a training run of thousands of epochs does not wait for it: the
    worker's quick lane (a second process) registers the folder while the training lane trains."""
    sessions, url, dataset_id = queue
    with sessions.begin() as session:
        train = submit_training(session, dataset_id, tiny_config(epochs=5000))
    worker = workers.start(url, name="lanes")
    wait_for(lambda: job_row(sessions, train).phase == "training", 300, "training")
    folder = labelled_folder(tmp_path / "scans", 3, (16, 16), "copy.png")
    with sessions.begin() as session:
        scans = datasets.create_dataset(session=session, location=str(folder)).id
        register = job_submit.submit_register(session=session, dataset_id=scans).id
    wait_for(lambda: jobs.is_finished(job_row(sessions, register).status), 300, "the registration")
    registered, training = job_row(sessions, register), job_row(sessions, train)
    assert registered.status == "succeeded", registered.error
    assert registered.summary["samples"] == 7
    assert training.status == "running" and training.progress < 0.85, "the training run was meant to outlast it"
    assert (training.worker_id, registered.worker_id) == ("lanes", "lanes-quick")
    with sessions.begin() as session:
        jobs.request_cancel(session=session, job_id=train)
    wait_for(lambda: job_row(sessions, train).status == "cancelled", 60, "the cancel")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0  # and its quick lane stopped with it
    assert "the quick lane (register, score)" in workers.log(worker)
