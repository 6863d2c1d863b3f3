"""Bulk results round-trip exactly, can never be duplicated, and artifacts survive being split."""

import numpy as np
import pytest
from sqlalchemy.exc import IntegrityError

from db import artifacts, datasets, job_submit, jobs, ranking, results


@pytest.fixture
def run(sessions):
    """A dataset of 50 samples and a claimed train job on it."""
    with sessions.begin() as session:
        dataset = datasets.create_dataset(session=session, location="digits")
        ids = datasets.upsert_samples(
            session=session,
            dataset_id=dataset.id,
            samples=[{"key": f"s{i}", "label": "0" if i < 40 else "1", "position": i} for i in range(50)],
        )
        job_submit.submit_train(session=session, dataset_id=dataset.id, config={})
    with sessions.begin() as session:
        claim = jobs.claim(session=session, worker_id="w")
    return claim, np.array([ids[f"s{i}"] for i in range(50)])


def test_scores_round_trip_with_ranks_and_neighbours(sessions, run):
    claim, ids = run
    rng = np.random.default_rng(0)
    s_nnd, s_lh = rng.random(50).astype(np.float32), rng.random(50).astype(np.float32)
    near = np.stack([ids[:3]] * 50)
    with sessions.begin() as session:
        results.write_scores(
            session=session,
            job_id=claim.job_id,
            role="scored",
            sample_ids=ids,
            s_nnd=s_nnd,
            s_lh=s_lh,
            neighbours=near,
            neighbour_similarity=np.full((50, 3), 0.5),
        )
        results.write_scores(
            session=session,
            job_id=claim.job_id,
            role="reference",
            sample_ids=ids[:40],
            s_nnd=s_nnd[:40],
            s_lh=s_lh[:40],
        )
    with sessions() as session:
        scores = results.read_scores(session=session, job_id=claim.job_id)
        reference = results.read_scores(session=session, job_id=claim.job_id, role="reference")
        neighbours = results.read_neighbours(session=session, job_id=claim.job_id, sample_id=int(ids[7]))
    order = np.argsort(-s_nnd, kind="stable")
    assert scores["sample_id"].tolist() == ids[order].tolist()
    assert scores["s_nnd"].tolist() == s_nnd[order].astype(np.float64).tolist()  # float32 values kept exactly
    assert scores["rank_nnd"].tolist() == list(range(1, 51))
    assert scores["rank_lh"][np.argmax(scores["s_lh"])] == 1
    assert len(reference["sample_id"]) == 40
    assert neighbours == [(int(i), 0.5) for i in ids[:3]]


def test_a_result_row_can_never_be_written_twice(sessions, run):
    claim, ids = run
    write = dict(job_id=claim.job_id, role="scored", sample_ids=ids, s_nnd=np.zeros(50), s_lh=np.zeros(50))
    with sessions.begin() as session:
        results.write_scores(session=session, **write)
    with pytest.raises(IntegrityError):
        with sessions.begin() as session:
            results.write_scores(session=session, **write)
    with sessions.begin() as session:  # what a recovered job does: clear, then write again
        results.clear_results(session=session, job_id=claim.job_id)
        results.write_scores(session=session, **write)
    with sessions() as session:
        assert len(results.read_scores(session=session, job_id=claim.job_id)["sample_id"]) == 50


def test_embeddings_round_trip_bit_for_bit(sessions, run):
    claim, ids = run
    rng = np.random.default_rng(1)
    features, context = rng.normal(size=(50, 512)).astype(np.float32), rng.normal(size=(50, 512)).astype(np.float32)
    with sessions.begin() as session:
        results.write_embeddings(
            session=session, job_id=claim.job_id, sample_ids=ids, features=features, context_features=context
        )
    with sessions() as session:
        everything = results.read_embeddings(session=session, job_id=claim.job_id)
        some = results.read_embeddings(session=session, job_id=claim.job_id, sample_ids=ids[[5, 2]])
    assert np.array_equal(everything.sample_id, np.sort(ids))
    assert np.array_equal(everything.features, features[np.argsort(ids)])
    assert np.array_equal(some.context_features, context[[5, 2]])


def test_projections_join_the_scores_in_the_run_table(sessions, run):
    claim, ids = run
    coords = np.arange(200, dtype=np.float32).reshape(50, 4)
    s_nnd = np.linspace(0, 1, 50)
    with sessions.begin() as session:
        results.write_scores(
            session=session, job_id=claim.job_id, role="scored", sample_ids=ids, s_nnd=s_nnd, s_lh=s_nnd
        )
        results.write_scores(
            session=session,
            job_id=claim.job_id,
            role="reference",
            sample_ids=ids[:40],
            s_nnd=np.linspace(0, 0.5, 40),
            s_lh=np.zeros(40),
        )
        results.write_projection(session=session, job_id=claim.job_id, method="umap", sample_ids=ids, coords=coords)
    with sessions() as session:
        table = results.read_run_table(session=session, job_id=claim.job_id, method="umap")
        projection = results.read_projection(session=session, job_id=claim.job_id, method="umap")
        no_pca = results.read_run_table(session=session, job_id=claim.job_id, method="pca")
    top = table["sample_id"][0]
    assert top == ids[-1] and table["label"][0] == "1" and table["key"][0] == "s49"
    assert (table["x"][0], table["cy"][0]) == (196.0, 199.0)
    assert table["pct_nnd"][0] == 100.0 and table["pct_nnd"][-1] == 0.0
    assert np.array_equal(projection["cx"], coords[np.argsort(ids), 2])
    assert np.isnan(no_pca["x"]).all()


def test_percentile_counts_reference_scores_strictly_below():
    reference = np.array([0.1, 0.2, 0.3, 0.4])
    assert ranking.percentile(np.array([0.05, 0.25, 0.4, 9.0]), reference).tolist() == [0.0, 50.0, 75.0, 100.0]
    assert np.isnan(ranking.percentile(np.array([1.0]), np.array([]))).all()


def test_metrics_replace_a_rerun_step_and_resuming_drops_later_epochs(sessions, run):
    claim, _ = run

    def row(kind, step, epoch, loss):
        return dict(kind=kind, step=step, epoch=epoch, loss=loss, loss_context=None, loss_content=1.0, alpha=0.1,
                    lr=1e-3, images_per_s=100.0, elapsed_s=step)  # fmt: skip

    with sessions.begin() as session:
        rows = [row("step", s, (s - 1) // 2 + 1, 5.0 - s) for s in range(1, 7)] + [row("epoch", 2, 1, 3.5)]
        results.write_metrics(session=session, job_id=claim.job_id, attempt=1, rows=rows)
        assert results.delete_metrics_after(session=session, job_id=claim.job_id, epoch=2) == 2
        results.write_metrics(session=session, job_id=claim.job_id, attempt=2, rows=[row("step", 4, 2, 0.25)])
    with sessions() as session:
        steps = results.read_metrics(session=session, job_id=claim.job_id, kind="step")
        epochs = results.read_metrics(session=session, job_id=claim.job_id, kind="epoch")
    assert steps["step"].tolist() == [1, 2, 3, 4]
    assert steps["loss"].tolist() == [4.0, 3.0, 2.0, 0.25]
    assert steps["attempt"].tolist() == [1, 1, 1, 2]
    assert np.isnan(steps["loss_context"]).all()
    assert epochs["loss"].tolist() == [3.5]


def test_artifacts_are_split_into_parts_and_replaced_atomically(sessions, run, monkeypatch):
    claim, _ = run
    monkeypatch.setattr(artifacts, "PART_BYTES", 1000)
    data = np.random.default_rng(2).bytes(4500)
    with sessions.begin() as session:
        saved = artifacts.save_artifact(session=session, job_id=claim.job_id, name="checkpoint", data=data, epoch=3)
        assert artifacts.location(saved) == f"db://artifacts/{saved.id}"
    with sessions() as session:
        assert artifacts.load_artifact(session=session, job_id=claim.job_id, name="checkpoint") == data
        assert artifacts.artifact_info(session=session, job_id=claim.job_id, name="checkpoint").epoch == 3
        assert artifacts.load_artifact(session=session, job_id=claim.job_id, name="bundle") is None
    with sessions.begin() as session:
        artifacts.save_artifact(session=session, job_id=claim.job_id, name="checkpoint", data=b"newer", epoch=4)
    with sessions() as session:
        assert artifacts.load_artifact(session=session, job_id=claim.job_id, name="checkpoint") == b"newer"


def test_deleting_a_job_deletes_what_it_produced(sessions, run):
    claim, ids = run
    with sessions.begin() as session:
        results.write_scores(
            session=session, job_id=claim.job_id, role="scored", sample_ids=ids, s_nnd=np.zeros(50), s_lh=np.zeros(50)
        )
        artifacts.save_artifact(session=session, job_id=claim.job_id, name="bundle", data=b"model")
        jobs.finish(session=session, claim=claim)
    with sessions.begin() as session:
        jobs.delete_job(session=session, job_id=claim.job_id)
    with sessions() as session:
        assert len(results.read_scores(session=session, job_id=claim.job_id)["sample_id"]) == 0
        assert artifacts.load_artifact(session=session, job_id=claim.job_id, name="bundle") is None
        assert len(datasets.sample_ids(session=session, dataset_id=1)) == 50  # samples are the dataset's
