"""The worker end to end: a real `python -m worker` process trains digits from a queued job,
and the database then holds everything the dashboard reads. Also: screening a new batch with the
finished model, registering a folder, clear failures, and restarts."""

import io
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from db import artifacts, datasets, job_reads, job_submit, jobs, results, reviews
from db.models import Dataset, Job, Review, Sample, Score
from db.session import open_database
from engine.config import DataConfig, RunConfig, TrainConfig
from engine.device import cpu_has_bfloat16_units
from engine.metrics import anomaly_targets, auroc
from tests.imagefiles import labelled_folder
from worker.cli import con2
from worker.live import failure_reason
from worker.loop import run_worker
from worker.process import start_local_worker

EPOCHS = 3


def wait_finished(sessions, job_id: int, wait_for, what: str = "the score job") -> None:
    """Wait (up to 300 s) until the job has succeeded or failed."""

    def done():
        with sessions() as session:
            return job_reads.get_job(session=session, job_id=job_id).status in ("succeeded", "failed")

    wait_for(done, 300, what)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, worker_pool, tiny_config, wait_for):
    """Submit register + train jobs on digits; one worker process runs both (UMAP and PCA)."""
    tmp = tmp_path_factory.mktemp("e2e")
    url = f"sqlite:///{tmp / 'con2.db'}"
    sessions = open_database(url)
    with sessions.begin() as session:
        dataset = datasets.create_dataset(session=session, location="digits", name="digits demo")
        register = job_submit.submit_register(session=session, dataset_id=dataset.id)
        train = job_submit.submit_train(
            session=session,
            dataset_id=dataset.id,
            config=tiny_config(epochs=EPOCHS, alpha_schedule="linear").to_dict(),
            name="con2",
        )
    pool = worker_pool(tmp)
    worker = pool.start(url, name="e2e")
    started = time.monotonic()

    def finished():
        with sessions() as session:
            return job_reads.get_job(session=session, job_id=train.id).status in ("succeeded", "failed")

    wait_for(finished, 600, "the train job to finish")
    wall = time.monotonic() - started
    yield {"url": url, "sessions": sessions, "dataset": dataset.id, "register": register.id, "train": train.id,
           "pool": pool, "worker": worker, "tmp": tmp, "wall_s": wall}  # fmt: skip
    pool.stop_all()


@pytest.mark.slow
def test_a_queued_train_job_leaves_metrics_scores_embeddings_and_projections(trained):
    sessions, job_id = trained["sessions"], trained["train"]
    with sessions() as session:
        job = job_reads.get_job(session=session, job_id=job_id)
        assert job.status == "succeeded", f"{job.error}\n{job.traceback}\n{trained['pool'].log(trained['worker'])}"
        assert (job.progress, job.device, job.worker_id, job.attempts, job.checkpoint) == (1.0, "cpu", "e2e", 1, None)
        assert job.started_at <= job.heartbeat_at <= job.finished_at
        epochs = results.read_metrics(session=session, job_id=job_id, kind="epoch")
        steps = results.read_metrics(session=session, job_id=job_id, kind="step")
        scored = results.read_scores(session=session, job_id=job_id)
        reference = results.read_scores(session=session, job_id=job_id, role="reference")
        embeddings = results.read_embeddings(session=session, job_id=job_id)
        umap = results.read_projection(session=session, job_id=job_id, method="umap")
        pca = results.read_projection(session=session, job_id=job_id, method="pca")
        samples = datasets.read_samples(session=session, dataset_id=trained["dataset"])
        assert artifacts.load_artifact(session=session, job_id=job_id, name="bundle")
        assert artifacts.artifact_info(session=session, job_id=job_id, name="checkpoint") is None
        case = int(scored["sample_id"][0])
        near = results.read_neighbours(session=session, job_id=job_id, sample_id=case)
        events = [e.event for e in job_reads.job_events(session=session, job_id=job_id)]

    # metrics: every epoch once, steps throttled but at least one per epoch, every loss and α, lr, images/s
    assert epochs["epoch"].tolist() == list(range(1, EPOCHS + 1))
    assert len(steps["step"]) >= EPOCHS and len(set(steps["step"].tolist())) == len(steps["step"])
    for name in ("loss", "loss_context", "loss_content", "alpha", "lr", "images_per_s"):
        assert np.isfinite(epochs[name]).all(), name
    assert epochs["alpha"][0] < epochs["alpha"][-1]  # the paper's schedule, asked for: α grows from 0

    # a score for every sample of the test split; the 122 training normals' leave-one-out scores
    split = dict(zip(samples["id"].tolist(), samples["split"], strict=True))
    label = dict(zip(samples["id"].tolist(), samples["label"], strict=True))
    assert len(samples["id"]) == 1797  # the register job inventoried every image
    test_ids = sorted(i for i, s in split.items() if s == "test")
    assert sorted(scored["sample_id"].tolist()) == test_ids
    assert sorted(reference["sample_id"].tolist()) == sorted(
        i for i in split if split[i] == "train" and label[i] == "0"
    )
    assert len(near) == 5 and all(split[i] == "train" and label[i] == "0" for i, _ in near)

    # both contexts' embeddings for every scored sample, and both projections
    assert embeddings.features.shape == embeddings.context_features.shape == (len(test_ids), 128)
    assert not np.array_equal(embeddings.features, embeddings.context_features)
    for projection in (umap, pca):
        assert projection["sample_id"].tolist() == test_ids
        assert all(np.isfinite(projection[c]).all() for c in ("x", "y", "cx", "cy"))
    assert events == ["submitted", "claimed", "succeeded"]


@pytest.mark.slow
def test_the_auroc_computed_from_the_database_equals_the_engines(trained):
    sessions = trained["sessions"]
    with sessions() as session:
        job = job_reads.get_job(session=session, job_id=trained["train"])
        table = results.read_run_table(session=session, job_id=job.id)
    targets = anomaly_targets(table["label"], "0")
    from_db = auroc(targets, table["s_nnd"])
    assert from_db >= 0.95
    assert abs(from_db - job.summary["auroc_nnd"]) < 1e-9
    assert abs(auroc(targets, table["s_lh"]) - job.summary["auroc_lh"]) < 1e-9
    assert job.summary["n_train"] == 122 and len(job.summary["history"]) == EPOCHS


@pytest.mark.slow
def test_a_new_batch_is_scored_with_the_finished_model_without_retraining(trained, tmp_path, wait_for):
    sessions = trained["sessions"]
    digits = load_digits()
    batch = tmp_path / "batch.npz"  # this month's screening batch: a different source, labels known
    pick = np.random.default_rng(3).permutation(len(digits.images))[:300]
    np.savez(batch, test_images=(digits.images[pick] * 255 / 16).astype(np.uint8), test_labels=digits.target[pick])
    with sessions.begin() as session:
        dataset = datasets.create_dataset(session=session, location=str(batch))
        job = job_submit.submit_score(
            session=session,
            parent_id=trained["train"],
            dataset_id=dataset.id,
            score={"tta": 2, "reference_size": 50},  # a seeded subset of the 122 training images as the reference
            normal_label="0",
            projections=["pca"],
        )

    wait_finished(sessions, job.id, wait_for)
    with sessions() as session:
        finished = job_reads.get_job(session=session, job_id=job.id)
        assert finished.status == "succeeded", finished.traceback
        table = results.read_run_table(session=session, job_id=job.id, method="pca")
        reference = results.read_scores(session=session, job_id=job.id, role="reference")
        epochs = results.read_metrics(session=session, job_id=job.id, kind="epoch")
        bank = {
            s.id: s.dataset_id for s in session.query(Sample).filter(Sample.id.in_(reference["sample_id"].tolist()))
        }
    assert len(table["sample_id"]) == 300 and len(epochs["epoch"]) == 0  # no training
    assert len(bank) == 50 and set(bank.values()) == {trained["dataset"]}  # from the run's training set
    assert np.isfinite(table["pct_nnd"]).all() and np.isfinite(table["x"]).all()
    assert auroc(anomaly_targets(table["label"], "0"), table["s_nnd"]) >= 0.9
    assert abs(auroc(anomaly_targets(table["label"], "0"), table["s_nnd"]) - finished.summary["auroc_nnd"]) < 1e-9


@pytest.mark.slow
def test_training_images_inside_a_scored_batch_are_counted_by_the_job(trained, tmp_path, wait_for):
    from engine.artifacts import Bundle

    sessions = trained["sessions"]
    with sessions() as session:
        blob = artifacts.load_artifact(session=session, job_id=trained["train"], name="bundle")
    bank_ids = set(Bundle.from_bytes(blob, device="cpu").bank.ids)  # "digits/<index>" of every training image
    digits = load_digits()
    pixels = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)  # as the digits source reads them
    copied = sorted(int(i.split("/")[1]) for i in bank_ids)[:5]
    fresh = [i for i in range(len(pixels)) if f"digits/{i}" not in bank_ids][:15]
    batch = tmp_path / "batch.npz"  # another file: only the content says these five trained the model
    np.savez(batch, test_images=pixels[copied + fresh], test_labels=digits.target[copied + fresh])
    with sessions.begin() as session:
        dataset = datasets.create_dataset(session=session, location=str(batch))
        job = job_submit.submit_score(
            session=session, parent_id=trained["train"], dataset_id=dataset.id, projections=["pca"]
        )

    wait_finished(sessions, job.id, wait_for)
    with sessions() as session:
        finished = job_reads.get_job(session=session, job_id=job.id)
    assert finished.status == "succeeded", finished.traceback
    assert finished.summary["n_training_images"] == 5
    assert "5 of them training images, scored leave-one-out" in finished.message
    log = trained["pool"].log(trained["worker"])
    assert f"job {job.id}: 5 of the 20 images are this model's training images" in log  # said before scoring


@pytest.mark.slow
def test_runs_and_reviews_survive_a_restart_of_everything(trained):
    sessions, pool = trained["sessions"], trained["pool"]
    with sessions.begin() as session:
        top = int(results.read_scores(session=session, job_id=trained["train"])["sample_id"][0])
        reviews.add_review(session=session, sample_id=top, verdict="anomalous", reviewer="ana", job_id=trained["train"])
        reviews.add_review(session=session, sample_id=top, verdict="normal", reviewer="ben", note="just a thick 0")
    with sessions() as session:
        before = {
            "jobs": [(j.id, j.status, j.summary) for j in session.query(Job).order_by(Job.id)],
            "scores": session.query(Score).count(),
            "reviews": [(r.id, r.verdict, r.reviewer, r.created_at) for r in session.query(Review).order_by(Review.id)],
        }
    pool.stop_all()  # the worker exits on SIGTERM; the app's engine goes too
    assert trained["worker"].returncode == 0, pool.log(trained["worker"])
    sessions.kw["bind"].dispose()

    reopened = open_database(trained["url"])  # a new app process: upgrade is a no-op
    again = pool.start(trained["url"], "--once", name="after-restart")
    assert again.wait(timeout=120) == 0  # nothing is left to run: finished jobs are not run again
    with reopened() as session:
        after = {
            "jobs": [(j.id, j.status, j.summary) for j in session.query(Job).order_by(Job.id)],
            "scores": session.query(Score).count(),
            "reviews": [(r.id, r.verdict, r.reviewer, r.created_at) for r in session.query(Review).order_by(Review.id)],
        }
        history = reviews.review_history(session=session, sample_id=top)
    assert after == before
    assert [(r.verdict, r.reviewer) for r in history] == [("anomalous", "ana"), ("normal", "ben")]


def _folder(root: Path) -> Path:
    """A small labelled folder: 6 readable PNGs, one exact duplicate, one truncated file."""
    labelled_folder(root, 3, (20, 24), "copy.png")
    (root / "yes" / "broken.png").write_bytes((root / "no" / "1.png").read_bytes()[:40])
    return root


def test_registering_a_folder_stores_flags_and_thumbnails(sessions, tmp_path):
    folder = _folder(tmp_path / "scans")
    with sessions.begin() as session:
        dataset = datasets.create_dataset(session=session, location=str(folder))
        job = job_submit.submit_register(session=session, dataset_id=dataset.id, thumbnail_size=32)
    url = sessions.kw["bind"].url
    assert run_worker(url, once=True) == 1
    with sessions() as session:
        finished = job_reads.get_job(session=session, job_id=job.id)
        assert finished.status == "succeeded", finished.traceback
        table = datasets.read_samples(session=session, dataset_id=dataset.id)
        summary = datasets.dataset_summary(session=session, dataset_id=dataset.id)
        thumbs = datasets.read_thumbnails(session=session, sample_ids=table["id"].tolist())
        described = session.get(Dataset, dataset.id)
    assert (described.kind, described.label_origin) == ("folder", "folder names")
    assert summary["samples"] == 8 and summary["by_label"] == {"no": 3, "yes": 5} and summary["duplicates"] == 1
    assert [u["key"] for u in summary["unreadable"]] == ["yes/broken.png"]
    key = dict(zip(table["id"].tolist(), table["key"], strict=True))
    duplicate = table["duplicate_of"][table["key"].index("yes/copy.png")]
    assert key[int(duplicate)] == "no/0.png"
    assert table["width"][table["key"].index("no/0.png")] == 24
    assert len(thumbs) == 7 and Image.open(io.BytesIO(next(iter(thumbs.values())))).size == (32, 32)
    assert finished.summary["unreadable"] == 1 and finished.summary["thumbnails"] == 7


def test_a_vanished_folder_fails_its_jobs_clearly_and_touches_nothing_else(sessions, tmp_path, tiny_config):
    folder = _folder(tmp_path / "scans")
    with sessions.begin() as session:
        dataset = datasets.create_dataset(session=session, location=str(folder))
        job_submit.submit_register(session=session, dataset_id=dataset.id)
    url = sessions.kw["bind"].url
    run_worker(url, once=True)
    with sessions() as session:
        samples_before = datasets.read_samples(session=session, dataset_id=dataset.id)
        thumbs_before = datasets.read_thumbnails(session=session, sample_ids=samples_before["id"].tolist())

    shutil.rmtree(folder)
    config = tiny_config(epochs=1).to_dict()
    with sessions.begin() as session:
        register = job_submit.submit_register(session=session, dataset_id=dataset.id)
        train = job_submit.submit_train(session=session, dataset_id=dataset.id, config=config)
        digits = datasets.create_dataset(session=session, location="digits")
        after = job_submit.submit_register(session=session, dataset_id=digits.id)
    assert run_worker(url, once=True) == 3  # failures end jobs, never the worker
    with sessions() as session:
        for job_id in (register.id, train.id):
            job = job_reads.get_job(session=session, job_id=job_id)
            assert (job.status, job.error) == ("failed", f"no such file or folder: {folder}")
            assert "Traceback" in job.traceback
        assert job_reads.get_job(session=session, job_id=after.id).status == "succeeded"
        samples_after = datasets.read_samples(session=session, dataset_id=dataset.id)
        assert datasets.read_thumbnails(session=session, sample_ids=samples_after["id"].tolist()) == thumbs_before
    assert {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in samples_after.items()} == {
        k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in samples_before.items()
    }


def test_failure_reasons_are_one_line():
    from engine.data import DataError
    from engine.train import NonFiniteLoss

    assert failure_reason(DataError("no images labelled 'x'; labels present: 0, 1")).startswith("no images labelled")
    assert failure_reason(NonFiniteLoss("loss became nan")) == "training diverged: loss became nan"
    assert failure_reason(RuntimeError("CUDA out of\nmemory")) == "RuntimeError: CUDA out of memory"


def test_only_one_local_worker_runs_per_database(tmp_path, monkeypatch, wait_for):
    monkeypatch.setenv("CON2_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    url = f"sqlite:///{tmp_path / 'con2.db'}"
    first = start_local_worker(url)
    try:
        wait_for(lambda: (tmp_path / "worker.log").read_text().count("serving") == 2, 120, "both lanes to start")
        assert start_local_worker(url) is None
        log = (tmp_path / "worker.log").read_text()
        assert log.count("serving") == 2  # no second worker started, nor a second quick lane
        assert "the train lane (train)" in log and "the quick lane (register, score)" in log
    finally:
        first.terminate()
        first.wait(timeout=30)
    assert first.returncode == 0
    second = start_local_worker(url)  # the lock died with the first worker
    assert second is not None
    second.terminate()
    second.wait(timeout=30)


# `python -m engine worker` is the spelling before the worker had its own package: the engine hands it over
@pytest.mark.parametrize(
    "command", [["worker"], ["engine", "worker"]], ids=["python -m worker", "python -m engine worker"]
)
def test_the_worker_command_runs_until_the_queue_is_empty(tmp_path, command):
    done = subprocess.run(
        [sys.executable, "-m", *command, "--db", f"sqlite:///{tmp_path / 'x.db'}", "--once"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "stops after 0 job(s)" in done.stderr


def test_once_the_training_lane_waits_for_the_registration_its_run_needs(tmp_path, tiny_config):
    """`con2 worker --once` with both lanes: the train lane does not leave while its run waits for the dataset's
    registration, which the quick lane runs; both jobs end succeeded, in that order."""
    url = f"sqlite:///{tmp_path / 'con2.db'}"
    sessions = open_database(url)
    with sessions.begin() as session:
        dataset = datasets.create_dataset(session=session, location="digits").id
        register = job_submit.submit_register(session=session, dataset_id=dataset).id
        config = tiny_config(epochs=1, tta=1).to_dict()
        train = job_submit.submit_train(session=session, dataset_id=dataset, config=config, projections=["pca"]).id
    done = subprocess.run(
        [sys.executable, "-m", "worker", "--db", url, "--once", "--poll", "0.2"],
        capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    with sessions() as session:
        ended = {job_id: job_reads.get_job(session=session, job_id=job_id) for job_id in (register, train)}
    assert [ended[i].status for i in (register, train)] == ["succeeded", "succeeded"], done.stderr[-3000:]
    assert ended[register].finished_at <= ended[train].started_at
    sessions.kw["bind"].dispose()


def test_con2_runs_the_worker_itself_and_hands_every_other_command_to_the_engine(capsys):
    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["con2"] == "worker.cli:con2"
    with pytest.raises(SystemExit) as exited:
        con2(["worker", "--help"])
    assert exited.value.code == 0
    assert "--stale-after" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        con2(["inspect", "--help"])
    assert exited.value.code == 0
    assert "--data" in capsys.readouterr().out  # the engine's own subcommand


def test_a_classical_reference_runs_as_a_train_job_and_is_stored_like_a_learned_run(tmp_path, monkeypatch):
    """Issue 13: pixels_iforest through the queue, in process: scores, the leave-one-out reference, features and
    a projection land in the database; no epochs, no bundle; a score job asked of it fails saying why."""
    monkeypatch.setenv("CON2_DATA_DIR", str(tmp_path))  # the local worker's lock file
    url = f"sqlite:///{tmp_path / 'con2.db'}"
    sessions = open_database(url)
    config = RunConfig(
        DataConfig(source="digits", normal_label="0", image_size=16), TrainConfig(method="pixels_iforest")
    )
    with sessions.begin() as session:
        dataset = datasets.create_dataset(session=session, location="digits", name="digits")
        train = job_submit.submit_train(
            session=session, dataset_id=dataset.id, config=config.to_dict(), projections=["pca"]
        )
    assert run_worker(url, once=True) == 1
    with sessions.begin() as session:
        job = job_reads.get_job(session=session, job_id=train.id)
        assert job.status == "succeeded", f"{job.error}\n{job.traceback}"
        scored = results.read_scores(session=session, job_id=train.id)
        reference = results.read_scores(session=session, job_id=train.id, role="reference")
        embeddings = results.read_embeddings(session=session, job_id=train.id)
        pca = results.read_projection(session=session, job_id=train.id, method="pca")
        table = results.read_run_table(session=session, job_id=train.id, method="pca")
        epochs = results.read_metrics(session=session, job_id=train.id, kind="epoch")
        assert artifacts.load_artifact(session=session, job_id=train.id, name="bundle") is None
        score = job_submit.submit_score(session=session, parent_id=train.id, dataset_id=dataset.id, split="test")
    summary = job.summary
    assert summary["history"] == [] and summary["epochs_trained"] == 0 and len(epochs["epoch"]) == 0
    assert summary["auroc_nnd"] >= 0.95 and summary["silhouette"] is None
    assert len(scored["sample_id"]) == summary["n_scored"] == 539 and len(reference["sample_id"]) == 122
    assert np.isfinite(scored["s_nnd"]).all() and np.isfinite(scored["s_lh"]).all()
    assert np.isfinite(table["pct_nnd"]).all()  # percentiles against the leave-one-out reference
    assert embeddings.features.shape == (539, 256)  # the 16 × 16 pixels: the features the forest splits
    assert np.isfinite(pca["x"]).all()
    assert run_worker(url, once=True) == 1
    with sessions() as session:
        failed = job_reads.get_job(session=session, job_id=score.id)
    assert failed.status == "failed" and "classical reference" in failed.error
    sessions.kw["bind"].dispose()


def test_registering_a_planted_folder_stores_near_duplicate_groups_and_hashes(sessions, tmp_path):
    from tests.curation_folder import EXACT, NEAR, UNREADABLE, curation_folder

    folder = curation_folder(tmp_path / "planted")
    with sessions.begin() as session:
        dataset = datasets.create_dataset(session=session, location=str(folder))
        job = job_submit.submit_register(session=session, dataset_id=dataset.id, thumbnail_size=32)
    assert run_worker(sessions.kw["bind"].url, once=True) == 1
    with sessions() as session:
        finished = job_reads.get_job(session=session, job_id=job.id)
        assert finished.status == "succeeded", finished.traceback
        table = datasets.read_samples(session=session, dataset_id=dataset.id)
    key = dict(zip(table["id"].tolist(), table["key"], strict=True))
    row = {k: i for i, k in enumerate(table["key"])}
    for copy, original in NEAR.items():
        assert key[int(table["near_duplicate_of"][row[copy]])] == original
    assert sum(table["near_duplicate_of"] >= 0) == len(NEAR)
    for copy, original in EXACT.items():
        assert key[int(table["duplicate_of"][row[copy]])] == original
    assert all(table["phash"][row[k]] is None and not table["readable"][row[k]] for k in UNREADABLE)
    assert all(len(table["phash"][row[k]]) == 16 for k in NEAR)
    assert finished.summary["near_duplicate_groups"] == len(NEAR) and finished.summary["near_duplicates"] == len(NEAR)


@pytest.mark.slow  # compiles UMAP's numba code when no earlier test of the session did
def test_the_projecting_phase_writes_umaps_progress_and_a_cancel_stops_it_before_the_fit_ends(sessions, monkeypatch):
    """Issue 12: UMAP's layout reaches the job row epoch by epoch (the bar moves through the projecting share, to
    its end), and a job cancelled before it projects stops at UMAP's first report, not after the whole fit."""
    import threading

    from engine import projection

    # no time between reports: on a fast CPU this small layout ends within two 0.2 s intervals, so the number of
    # reports would measure the CPU, not the reporting
    monkeypatch.setattr(projection, "LAYOUT_REPORT_S", 0.0)
    from engine.tta import ScoreResult
    from worker.kinds import _project
    from worker.live import PHASES, Interrupted, JobRun

    rng = np.random.default_rng(0)
    plain = rng.normal(size=(150, 16)).astype(np.float32)
    scores = ScoreResult(np.zeros(150), np.zeros(150), plain, -plain, np.zeros((150, 5), int), np.zeros((150, 5)),
                         None, None, None, 0.0)  # fmt: skip
    with sessions.begin() as session:
        dataset = datasets.create_dataset(session=session, location="digits").id
        first, second = (job_submit.submit_train(session=session, dataset_id=dataset, config={}).id for _ in range(2))

    def job_run(job_id: int) -> tuple[JobRun, list[tuple[float, str]]]:
        """A claimed job's JobRun, and what its progress bar showed after each phase change (observed, not changed)."""
        with sessions.begin() as session:
            claim = jobs.claim(session=session, worker_id="w", kinds=("train",))
            job = job_reads.get_job(session=session, job_id=job_id)
        run, shown = JobRun(sessions, claim, job, threading.Event()), []
        set_phase = run.set_phase

        def observed(phase, fraction=0.0, message=None, eta_s=None):
            set_phase(phase, fraction, message, eta_s)
            shown.append((run.progress(), message or ""))

        run.set_phase = observed
        return run, shown

    run, shown = job_run(first)
    assert _project(run, scores, ["umap"], seed=0)["umap"].shape == (150, 4)
    run.flush(force=True)
    start, width = PHASES["train"]["projecting"]
    progress = [value for value, _ in shown]
    assert progress == sorted(progress) and len(set(progress)) >= 4 and progress[-1] == pytest.approx(start + width)
    assert sum(message.startswith("UMAP: layout, epoch ") for _, message in shown) >= 3
    with sessions() as session:
        row = job_reads.get_job(session=session, job_id=first)
    assert (row.phase, row.message, row.progress) == ("projecting", "UMAP: done", pytest.approx(start + width))

    run, shown = job_run(second)
    with sessions.begin() as session:
        jobs.request_cancel(session=session, job_id=second)
    with pytest.raises(Interrupted):
        _project(run, scores, ["umap"], seed=0)
    assert not any("epoch" in message or message == "UMAP: done" for _, message in shown)  # stopped before the layout


def test_a_running_training_job_shows_the_batch_its_auto_became_before_it_finishes(sessions, url, monkeypatch):
    """Finding 34: the batch is `auto` by default, chosen once the images are loaded. The running job writes what
    every `auto` became into its summary at once (`JobRun.settle`, engine.run's `on_settled`), so the Train page's
    chance level of L_content uses the batch that trains, not the 0 that was queued; `finish` replaces it."""
    import threading

    from dashboard import charts
    from dashboard import jobs as dashboard_jobs
    from worker.live import JobRun

    monkeypatch.setenv("CON2_DATABASE_URL", url)
    with sessions.begin() as session:
        dataset = datasets.create_dataset(session=session, location="digits").id
        job_id = job_submit.submit_train(session=session, dataset_id=dataset, config={}).id
    assert dashboard_jobs.job_status(job_id)["train"].get("batch_size", 0) == 0  # queued: the default, auto
    assert charts.content_chance(dashboard_jobs.job_status(job_id)["train"]) is None  # no batch yet, no level
    with sessions.begin() as session:
        claim = jobs.claim(session=session, worker_id="w", kinds=("train",))
        job = job_reads.get_job(session=session, job_id=job_id)
    run = JobRun(sessions, claim, job, threading.Event())
    settled = TrainConfig(batch_size=16, context="equalize", encoder="resnet_small_s2", rotation_weight=0.0,
                          precision="bfloat16", device="cpu")  # fmt: skip
    run.settle(settled, 500)
    with sessions() as session:
        row = job_reads.get_job(session=session, job_id=job_id)
        summary, device = row.summary, row.device
    assert summary == {"context": "equalize", "encoder": "resnet_small_s2", "rotation_weight": 0.0, "batch_size": 16,
                       "precision": "bfloat16", "n_train": 500}  # fmt: skip
    # the device with the precision the run records, as the Runs table shows it (float32 on a CPU without the units)
    assert device == ("cpu (bfloat16)" if cpu_has_bfloat16_units() else "cpu")
    status = dashboard_jobs.job_status(job_id)
    assert status["train"]["batch_size"] == 16 and status["status"] == "running"
    assert charts.content_chance(status["train"]) == pytest.approx(np.log(2 * 16 - 1))  # one view per context
    run.settle(TrainConfig(batch_size=16), 12)  # a set smaller than its batch trains as one batch of 12
    assert charts.content_chance(dashboard_jobs.job_status(job_id)["train"]) == pytest.approx(np.log(2 * 12 - 1))
    with sessions.begin() as session:
        jobs.finish(session=session, claim=claim, summary={"batch_size": 16, "auroc_nnd": 0.9})
    assert dashboard_jobs.job_status(job_id)["train"]["batch_size"] == 16
