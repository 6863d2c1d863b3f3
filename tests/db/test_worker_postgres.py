"""Several workers on one PostgreSQL server: every queued job runs exactly once."""

import collections
import time

import pytest

from db import datasets, job_reads, job_submit, results
from db.session import open_database
from tests.imagefiles import labelled_folder

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_three_workers_run_thirty_queued_jobs_exactly_once(postgres_url, workers, wait_progress, tiny_config, tmp_path):
    folder = labelled_folder(tmp_path / "scans", 4, (16, 16), "dup.png")

    sessions = open_database(postgres_url)
    pool = [workers.start(postgres_url, name=f"pg{i}") for i in range(3)]
    for worker in pool:  # all three wait on the queue before the jobs arrive, so they compete for them
        workers.wait_serving(worker)

    config = tiny_config(epochs=1, tta=1).to_dict()
    with sessions.begin() as session:
        digits = datasets.create_dataset(session=session, location="digits").id
        ids, trains = [], []
        for i in range(30):
            if i % 10 == 9:  # three small training runs among them: the whole worker path on PostgreSQL
                trains.append(
                    job_submit.submit_train(session=session, dataset_id=digits, config=config, projections=["pca"]).id
                )
                ids.append(trains[-1])
            else:
                dataset = datasets.create_dataset(session=session, location=str(folder), name=f"scans {i}")
                ids.append(job_submit.submit_register(session=session, dataset_id=dataset.id).id)
    started = time.monotonic()

    def all_finished():
        with sessions() as session:
            return all(j.status in ("succeeded", "failed") for j in job_reads.list_jobs(session=session))

    def progress():  # any job moving on (a claim, a progress write, an end) counts; a busy machine is only slow
        with sessions() as session:
            return sorted((j.id, j.status, round(j.progress or 0.0, 3)) for j in job_reads.list_jobs(session=session))

    wait_progress(all_finished, progress, "30 jobs on 3 workers", stall_s=180)
    took = time.monotonic() - started
    with sessions() as session:
        finished = {j.id: j for j in job_reads.list_jobs(session=session)}
        claims = {job_id: [e for e in job_reads.job_events(session=session, job_id=job_id) if e.event == "claimed"]
                  for job_id in ids}  # fmt: skip
        scored = [len(results.read_scores(session=session, job_id=i)["sample_id"]) for i in trains]
    assert all(finished[i].status == "succeeded" for i in ids), [(i, finished[i].error) for i in ids]
    assert all(finished[i].attempts == 1 and len(claims[i]) == 1 for i in ids)  # each ran exactly once
    per_worker = collections.Counter(finished[i].worker_id for i in ids)
    print(f"30 jobs on 3 workers in {took:.1f} s; jobs per worker: {dict(per_worker)}")
    assert sum(per_worker.values()) == 30 and len(per_worker) >= 2
    assert scored == [539, 539, 539]
    for worker in pool:
        assert worker.poll() is None, workers.log(worker)
