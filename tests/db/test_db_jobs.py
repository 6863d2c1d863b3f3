"""The job queue on SQLite and PostgreSQL: claims exactly once, claims guard writes, cancel, recovery."""

import threading
import time

import pytest

from db import datasets, job_reads, job_submit, jobs
from db.jobs import JobError, LostClaim


@pytest.fixture
def dataset_id(sessions):
    with sessions.begin() as session:
        return datasets.create_dataset(session=session, location="digits").id


def submit_many(sessions, dataset_id, n):
    with sessions.begin() as session:
        return [job_submit.submit_register(session=session, dataset_id=dataset_id).id for _ in range(n)]


def claim(sessions, worker="w1"):
    with sessions.begin() as session:
        return jobs.claim(session=session, worker_id=worker)


def status(sessions, job_id):
    with sessions() as session:
        return job_reads.get_job(session=session, job_id=job_id)


def test_claims_take_the_oldest_job_and_each_job_once(sessions, dataset_id):
    first, second = submit_many(sessions, dataset_id, 2)
    a, b = claim(sessions, "a"), claim(sessions, "b")
    assert (a.job_id, a.attempt, b.job_id) == (first, 1, second)
    assert claim(sessions, "c") is None
    job = status(sessions, first)
    assert (job.status, job.worker_id, job.attempts) == ("running", "a", 1)
    assert job.started_at is not None and job.heartbeat_at is not None


def test_concurrent_claims_give_every_job_to_exactly_one_worker(sessions, dataset_id):
    ids = submit_many(sessions, dataset_id, 30)
    claimed: list[tuple[str, int]] = []
    lock = threading.Lock()

    def work(name):
        while True:
            c = claim(sessions, name)
            if c is None:
                return
            with lock:
                claimed.append((name, c.job_id))

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(job_id for _, job_id in claimed) == ids
    with sessions() as session:
        for job_id in ids:
            events = [e.event for e in job_reads.job_events(session=session, job_id=job_id)]
            assert events.count("claimed") == 1


def test_a_queued_job_is_cancelled_at_once(sessions, dataset_id):
    (job_id,) = submit_many(sessions, dataset_id, 1)
    with sessions.begin() as session:
        assert jobs.request_cancel(session=session, job_id=job_id) == "cancelled"
    assert status(sessions, job_id).status == "cancelled"
    assert claim(sessions) is None


def test_a_running_job_sees_the_cancel_request_on_its_next_heartbeat_or_progress(sessions, dataset_id):
    submit_many(sessions, dataset_id, 1)
    c = claim(sessions)
    with sessions.begin() as session:
        assert jobs.heartbeat(session=session, claim=c) is False
        assert jobs.request_cancel(session=session, job_id=c.job_id) == "running"
    with sessions.begin() as session:
        assert jobs.heartbeat(session=session, claim=c) is True
        assert jobs.report_progress(session=session, claim=c, progress=0.4, phase="training") is True
        jobs.mark_cancelled(session=session, claim=c, message="cancelled while training")
    job = status(sessions, c.job_id)
    assert (job.status, job.message) == ("cancelled", "cancelled while training")
    with sessions.begin() as session:  # cancelling a finished job changes nothing
        assert jobs.request_cancel(session=session, job_id=c.job_id) == "cancelled"


def test_progress_is_stored_on_the_job_row(sessions, dataset_id):
    submit_many(sessions, dataset_id, 1)
    c = claim(sessions)
    with sessions.begin() as session:
        jobs.report_progress(
            session=session, claim=c, progress=1.7, phase="training", eta_s=12.5, message="epoch 2/3", device="cpu"
        )
    job = status(sessions, c.job_id)
    assert (job.progress, job.phase, job.eta_s, job.message, job.device) == (1.0, "training", 12.5, "epoch 2/3", "cpu")


def test_a_stale_job_is_requeued_then_failed_after_its_last_attempt(sessions, dataset_id):
    with sessions.begin() as session:
        job_id = jobs.submit(session=session, kind="train", dataset_id=dataset_id, max_attempts=2).id
    first = claim(sessions, "dead-1")
    time.sleep(0.05)
    with sessions.begin() as session:
        assert jobs.recover_stale(session=session, stale_after_s=0.01) == [(job_id, "queued")]
    job = status(sessions, job_id)
    assert (job.status, job.worker_id) == ("queued", None)
    assert "worker dead-1 stopped responding" in job.message

    # the presumed-dead worker can no longer write anything
    with sessions.begin() as session, pytest.raises(LostClaim):
        jobs.heartbeat(session=session, claim=first)

    second = claim(sessions, "dead-2")
    assert second.attempt == 2
    with sessions.begin() as session, pytest.raises(LostClaim):
        jobs.finish(session=session, claim=first, summary={})
    time.sleep(0.05)
    with sessions.begin() as session:
        assert jobs.recover_stale(session=session, stale_after_s=0.01) == [(job_id, "failed")]
    job = status(sessions, job_id)
    assert job.status == "failed"
    assert job.error == "worker dead-2 stopped responding (no heartbeat for 0.01 s) on attempt 2 of 2; giving up"
    with sessions() as session:
        events = [e.event for e in job_reads.job_events(session=session, job_id=job_id)]
    assert events == ["submitted", "claimed", "requeued", "claimed", "failed"]


def test_recovery_leaves_jobs_with_fresh_heartbeats_alone(sessions, dataset_id):
    submit_many(sessions, dataset_id, 1)
    c = claim(sessions)
    with sessions.begin() as session:
        assert jobs.recover_stale(session=session, stale_after_s=30) == []
    assert status(sessions, c.job_id).status == "running"


def test_a_stale_job_with_a_cancel_request_is_cancelled_not_requeued(sessions, dataset_id):
    submit_many(sessions, dataset_id, 1)
    c = claim(sessions)
    with sessions.begin() as session:
        jobs.request_cancel(session=session, job_id=c.job_id)
    time.sleep(0.05)
    with sessions.begin() as session:
        assert jobs.recover_stale(session=session, stale_after_s=0.01) == [(c.job_id, "cancelled")]


def test_a_released_job_is_requeued_without_using_an_attempt(sessions, dataset_id):
    with sessions.begin() as session:
        job_id = jobs.submit(session=session, kind="train", dataset_id=dataset_id, max_attempts=1).id
    c = claim(sessions)
    with sessions.begin() as session:
        jobs.release(session=session, claim=c, reason="worker stopping")
    job = status(sessions, job_id)
    assert (job.status, job.attempts, job.max_attempts) == ("queued", 1, 2)
    assert claim(sessions).attempt == 2


def test_failing_records_a_one_line_reason_and_the_traceback(sessions, dataset_id):
    submit_many(sessions, dataset_id, 1)
    c = claim(sessions)
    with sessions.begin() as session:
        jobs.fail(session=session, claim=c, reason="no such file or folder:\n /x", traceback="Traceback ...")
    job = status(sessions, c.job_id)
    assert (job.status, job.error, job.traceback) == ("failed", "no such file or folder: /x", "Traceback ...")
    with sessions.begin() as session:
        jobs.retry(session=session, job_id=c.job_id)
    job = status(sessions, c.job_id)
    assert (job.status, job.error, job.max_attempts) == ("queued", None, 1 + jobs.DEFAULT_MAX_ATTEMPTS)


def test_scoring_needs_a_succeeded_training_run(sessions, dataset_id):
    with sessions.begin() as session:
        train = job_submit.submit_train(
            session=session, dataset_id=dataset_id, config={"data": {"source": "elsewhere"}}
        )
        assert train.config["data"]["source"] == "digits"  # the dataset's location wins
        assert train.config["projections"] == ["umap", "pca"]
        with pytest.raises(JobError, match="has not succeeded"):
            job_submit.submit_score(session=session, parent_id=train.id, dataset_id=dataset_id)
        with pytest.raises(JobError, match="unknown projection"):
            job_submit.submit_train(session=session, dataset_id=dataset_id, config={}, projections=["tsne"])


def test_deleting_a_job_needs_it_stopped(sessions, dataset_id):
    first, second = submit_many(sessions, dataset_id, 2)
    c = claim(sessions)
    with sessions.begin() as session, pytest.raises(JobError, match="is running"):
        jobs.delete_job(session=session, job_id=c.job_id)
    with sessions.begin() as session:
        jobs.delete_job(session=session, job_id=second)
    with sessions() as session:
        assert [j.id for j in job_reads.list_jobs(session=session)] == [first]


def test_active_jobs_are_counted_and_a_jobs_state_read_by_id(sessions, dataset_id):
    first, second = submit_many(sessions, dataset_id, 2)
    claim(sessions)
    with sessions.begin() as session:
        train = job_submit.submit_train(session=session, dataset_id=dataset_id, config={}).id
        jobs.request_cancel(session=session, job_id=second)
    with sessions() as session:
        assert job_reads.count_active(session=session) == 2  # the running register and the queued train
        assert job_reads.count_active(session=session, kind="register") == 1
        assert job_reads.count_active(session=session, kind="score") == 0
        assert job_reads.job_state(session=session, job_id=first)[0] == "running"
        status, finished, _ = job_reads.job_state(session=session, job_id=second)
        assert status == "cancelled" and finished is not None
        assert job_reads.job_state(session=session, job_id=train)[0] == "queued"
        assert job_reads.job_state(session=session, job_id=train + 1) is None


def claim_kinds(sessions, kinds, worker="w1"):
    with sessions.begin() as session:
        return jobs.claim(session=session, worker_id=worker, kinds=kinds)


def finish(sessions, c):
    with sessions.begin() as session:
        jobs.finish(session=session, claim=c)


def test_a_lane_claims_only_its_kinds_however_old_the_others_are(sessions):
    """Issue 12: the quick lane takes a registration queued after a training run; the training lane takes the
    training run; neither takes the other's."""
    with sessions.begin() as session:
        digits = datasets.create_dataset(session=session, location="digits").id
        scans = datasets.create_dataset(session=session, location="scans").id
        train = job_submit.submit_train(session=session, dataset_id=digits, config={}).id
        register = job_submit.submit_register(session=session, dataset_id=scans).id
    assert jobs.LANES["quick"] == ("register", "score") and jobs.lane_of("train") == "train"
    quick = claim_kinds(sessions, jobs.LANES["quick"], "quick")
    assert quick.job_id == register
    assert claim_kinds(sessions, jobs.LANES["quick"], "quick") is None  # the training run is not its kind
    assert claim_kinds(sessions, jobs.LANES["train"], "long").job_id == train
    assert claim_kinds(sessions, None) is None
    with pytest.raises(JobError, match="unknown job kind inference"):
        claim_kinds(sessions, ["inference"])


def test_a_train_or_score_job_waits_for_an_older_registration_of_its_dataset(sessions):
    with sessions.begin() as session:
        digits = datasets.create_dataset(session=session, location="digits").id
        scans = datasets.create_dataset(session=session, location="scans").id
        parent = job_submit.submit_train(session=session, dataset_id=digits, config={}).id
    finish(sessions, claim_kinds(sessions, ["train"]))
    with sessions.begin() as session:
        register = job_submit.submit_register(session=session, dataset_id=scans).id
        score = job_submit.submit_score(session=session, parent_id=parent, dataset_id=scans).id
        train = job_submit.submit_train(session=session, dataset_id=scans, config={}).id
        other = job_submit.submit_train(session=session, dataset_id=digits, config={}).id
    with sessions() as session:
        places = job_reads.waiting(session=session)
    assert places[score] == job_reads.Waiting("quick", 1, register)
    assert places[train] == job_reads.Waiting("train", 0, register)
    assert places[other] == job_reads.Waiting("train", 1, None)  # behind the older training run, which waits itself
    assert claim_kinds(sessions, ["train"]).job_id == other  # the older one waits for its dataset's registration
    with sessions() as session:
        assert jobs.waiting_for_registration(session=session, kinds=jobs.LANES["train"]) == [train]
        assert jobs.waiting_for_registration(session=session) == [score, train]
    running = claim_kinds(sessions, None)
    assert running.job_id == register
    assert claim_kinds(sessions, ["score"]) is None  # its dataset is still being registered
    finish(sessions, running)
    with sessions() as session:
        assert jobs.waiting_for_registration(session=session) == []
    assert claim_kinds(sessions, ["score"]).job_id == score
    assert claim_kinds(sessions, ["train"]).job_id == train


def test_a_queued_jobs_place_counts_its_lane_only(sessions):
    with sessions.begin() as session:
        digits = datasets.create_dataset(session=session, location="digits").id
        trains = [job_submit.submit_train(session=session, dataset_id=digits, config={}).id for _ in range(3)]
        registers = [job_submit.submit_register(session=session, dataset_id=digits).id for _ in range(2)]
    claim_kinds(sessions, ["train"])
    with sessions() as session:
        places = job_reads.waiting(session=session)
    assert trains[0] not in places  # running: no place in the queue
    assert [places[t].ahead for t in trains[1:]] == [1, 2]
    # registrations are never counted behind trainings, and never wait for a registration themselves
    assert [places[r] for r in registers] == [job_reads.Waiting("quick", 0, None), job_reads.Waiting("quick", 1, None)]


def test_a_claim_that_waited_for_the_write_lock_starts_after_the_registration_it_waited_for(sqlite_url):
    """SQLite: a training claimed while the registration's last transaction held the write lock is stamped with
    the time it was claimed, not the time the claim began to wait; else it would seem to start before the
    registration it waited for had finished (seen once in CI: 4 ms before)."""
    from db.session import open_database

    sessions = open_database(sqlite_url)
    try:
        with sessions.begin() as session:
            dataset = datasets.create_dataset(session=session, location="digits").id
            job_submit.submit_register(session=session, dataset_id=dataset)
            train = job_submit.submit_train(session=session, dataset_id=dataset, config={}).id
        register = claim_kinds(sessions, ["register"])
        ending = sessions()  # the registration's last transaction, held open: it holds SQLite's write lock
        jobs.report_progress(session=ending, claim=register, progress=0.99, phase="registering")
        claimed = {}
        waiter = threading.Thread(target=lambda: claimed.update(job=claim_kinds(sessions, ["train"], "w2")))
        waiter.start()
        time.sleep(0.5)  # the claim is built and waits for the lock
        assert waiter.is_alive() and not claimed
        jobs.finish(session=ending, claim=register)
        ending.commit()
        ending.close()
        waiter.join(timeout=60)
        assert claimed["job"].job_id == train
        with sessions() as session:
            ended = job_reads.get_job(session=session, job_id=register.job_id)
            started = job_reads.get_job(session=session, job_id=train)
        assert ended.status == "succeeded" and started.status == "running"
        assert ended.finished_at <= started.started_at and ended.finished_at <= started.heartbeat_at
    finally:
        sessions.kw["bind"].dispose()
