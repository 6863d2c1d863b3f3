"""A synthetic but realistic finished run, written through `db/` as the worker would write it.

For the dashboard's tests and its interactivity benchmark (and to try the pages at 20k+ samples without
training): a labelled dataset with thumbnails and two quality flags, a succeeded training run with step
metrics, scores of the test split (anomalies score higher), the training normals' leave-one-out
reference, nearest neighbours, and UMAP/PCA-like projections where normal samples' alignment lines run
parallel and anomalies' do not. Optionally a second, running job with live progress.

    python -m dashboard.seed --samples 20000 --url sqlite:////tmp/con2-big/con2.db
"""

from __future__ import annotations

import argparse
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from db import datasets, job_configs, job_submit, jobs, results, reviews
from db.session import open_database
from engine.config import DataConfig, RunConfig, ScoreConfig, TrainConfig

NORMAL = "0"
THUMBNAIL_VARIANTS = 64  # distinct thumbnails reused across samples: seeding 20k stays a few seconds


@dataclass(frozen=True)
class Seeded:
    """Ids of what was written."""

    dataset_id: int
    run_id: int
    running_id: int | None
    scored_ids: list[int]  # most anomalous (by S_NND) first
    reference_ids: list[int]


def _thumbnail(rng: np.random.Generator, side: int = 32) -> bytes:
    """A digit-like blob: a bright stroke on black, greyscale PNG."""
    yy, xx = np.mgrid[0:side, 0:side]
    cx, cy, r = rng.uniform(10, 22), rng.uniform(10, 22), rng.uniform(5, 10)
    ring = np.abs(np.hypot(xx - cx, yy - cy) - r) < rng.uniform(1.5, 3.5)
    pixels = (ring * rng.uniform(150, 255)).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def seed_run(
    url: str,
    *,
    samples: int = 200,
    anomaly_share: float = 0.1,
    reference: int | None = None,
    running: bool = False,
    reviewed: int = 0,
    seed: int = 0,
) -> Seeded:
    """Write a dataset of `samples` test images (plus training normals) and a finished run over it.

    reference: how many training normals (leave-one-out reference; default samples // 4, at most 5000).
    running: also queue and claim a second training run that reports progress (never finishes).
    reviewed: how many of the top-ranked samples get a verdict.
    """
    rng = np.random.default_rng(seed)
    n_ref = reference if reference is not None else max(10, min(5000, samples // 4))
    sessions = open_database(url)
    config = RunConfig(
        DataConfig(source="synthetic", normal_label=NORMAL, image_size=16),
        TrainConfig(epochs=60, batch_size=32),
        ScoreConfig(),
    )
    anomalous = rng.random(samples) < anomaly_share
    labels = np.where(anomalous, rng.integers(1, 10, samples).astype(str), NORMAL)
    variants = [_thumbnail(rng) for _ in range(THUMBNAIL_VARIANTS)]
    with sessions.begin() as session:
        dataset = datasets.create_dataset(session=session, location="/data/synthetic", name="synthetic")
        rows = [
            {"key": f"train/{NORMAL}/{i:06d}.png", "position": i, "label": NORMAL, "split": "train"}
            for i in range(n_ref)
        ] + [
            {"key": f"test/{labels[i]}/{i:06d}.png", "position": n_ref + i, "label": str(labels[i]), "split": "test"}
            for i in range(samples)
        ]
        for row in rows:
            row.update(
                location=f"/data/synthetic/{row['key']}", width=32, height=32, mode="L", readable=True, reason=None
            )
        rows.append(
            {"key": "test/0/broken.png", "position": len(rows), "location": "/data/synthetic/test/0/broken.png",
             "label": NORMAL, "split": "test", "width": None, "height": None, "mode": None, "readable": False,
             "reason": "truncated image data"}
        )  # fmt: skip
        ids = datasets.upsert_samples(session=session, dataset_id=dataset.id, samples=rows)
        datasets.record_source(
            session=session,
            dataset_id=dataset.id,
            kind="folder",
            label_origin="folder names under each split",
            split_origin="top-level folder names",
        )
        datasets.mark_duplicates(session=session, dataset_id=dataset.id, groups=[[rows[0]["key"], rows[1]["key"]]])
        datasets.write_thumbnails(
            session=session,
            pngs={ids[r["key"]]: variants[i % THUMBNAIL_VARIANTS] for i, r in enumerate(rows) if r["readable"]},
            size=32,
        )
        job = job_submit.submit_train(
            session=session, dataset_id=dataset.id, config=config.to_dict(), name="synthetic run"
        )
        claim = jobs.claim(session=session, worker_id="seed")
        assert claim is not None and claim.job_id == job.id
        steps = 120
        t = np.arange(1, steps + 1)
        alpha = (t - 1) / (steps - 1)
        loss_context = 4.5 * np.exp(-t / 40) + 1.0 + rng.normal(0, 0.05, steps)
        loss_content = 5.0 * np.exp(-t / 60) + 1.5 + rng.normal(0, 0.05, steps)
        results.write_metrics(
            session=session,
            job_id=job.id,
            attempt=claim.attempt,
            rows=[
                {"kind": "step", "step": int(s), "epoch": int((s - 1) // 4 + 1),
                 "loss": float(loss_context[i] + alpha[i] * loss_content[i]), "loss_context": float(loss_context[i]),
                 "loss_content": float(loss_content[i]), "alpha": float(alpha[i]), "lr": 1e-3, "images_per_s": 300.0,
                 "elapsed_s": float(s) * 0.1}
                for i, s in enumerate(t)
            ],
        )  # fmt: skip
        train_ids = np.array([ids[r["key"]] for r in rows[:n_ref]], dtype=np.int64)
        test_ids = np.array([ids[r["key"]] for r in rows[n_ref : n_ref + samples]], dtype=np.int64)
        s_nnd = -0.95 + 0.02 * rng.standard_normal(samples) + 0.06 * anomalous
        s_lh = -300 + 10 * rng.standard_normal(samples) + 40 * anomalous
        near = rng.integers(0, n_ref, size=(samples, 5))
        similarity = np.sort(rng.uniform(0.85, 0.99, size=(samples, 5)), axis=1)[:, ::-1]
        results.write_scores(
            session=session, job_id=job.id, role="scored", sample_ids=test_ids, s_nnd=s_nnd, s_lh=s_lh,
            neighbours=train_ids[near], neighbour_similarity=similarity,
        )  # fmt: skip
        results.write_scores(
            session=session,
            job_id=job.id,
            role="reference",
            sample_ids=train_ids,
            s_nnd=-0.95 + 0.02 * rng.standard_normal(n_ref),
            s_lh=-300 + 10 * rng.standard_normal(n_ref),
        )
        for method in job_configs.PROJECTIONS:
            x, y = rng.normal(0, 1, samples), rng.normal(0, 1, samples)
            shift = np.where(anomalous, rng.normal(0, 3, samples), 0.0)
            coords = np.stack([x - 6, y, x + 6 + shift, y + 0.2 * rng.standard_normal(samples) - shift], axis=1)
            results.write_projection(session=session, job_id=job.id, method=method, sample_ids=test_ids, coords=coords)
        targets = anomalous.astype(int)
        from engine.metrics import auroc  # imported here: scikit-learn loads only when the demo is seeded

        summary = {
            "n_scored": samples,
            "n_anomalous": int(targets.sum()),
            "auroc_nnd": auroc(targets, s_nnd) if 0 < targets.sum() < samples else None,
            "auroc_lh": auroc(targets, s_lh) if 0 < targets.sum() < samples else None,
            # the raw-pixel reference: a blurrier view of the same ranking, as a weaker method gives
            "auroc_pixels": auroc(targets, s_nnd + np.random.default_rng(1).normal(0, 3 * s_nnd.std(), samples))
            if 0 < targets.sum() < samples
            else None,
            "silhouette": 0.42,
            "context": "invert",  # what a real run's `auto` context becomes and records (engine/run.py)
            "n_train": n_ref,
            "device": "cpu",
            "train_s": 12.0,
            "score_s": 3.0,
            "wall_s": 16.0,
        }
        jobs.report_progress(session=session, claim=claim, progress=1.0, phase="writing", device="cpu")
        jobs.finish(session=session, claim=claim, summary=summary, message=f"scored {samples} images")
        order = np.argsort(-s_nnd, kind="stable")
        for i in order[:reviewed]:
            reviews.add_review(
                session=session, sample_id=int(test_ids[i]), verdict="anomaly", reviewer="seed", job_id=job.id
            )
        running_id = None
        if running:
            second = job_submit.submit_train(
                session=session, dataset_id=dataset.id, config=config.to_dict(), name="synthetic run (live)"
            )
            live = jobs.claim(session=session, worker_id="seed")
            assert live is not None
            results.write_metrics(
                session=session,
                job_id=second.id,
                attempt=live.attempt,
                rows=[
                    {"kind": "step", "step": s, "epoch": 1, "loss": 6.0 - 0.1 * s, "loss_context": 4.0 - 0.05 * s,
                     "loss_content": 5.0 - 0.05 * s, "alpha": s / 100, "lr": 1e-3, "images_per_s": 200.0,
                     "elapsed_s": s * 0.2}
                    for s in range(1, 21)
                ],
            )  # fmt: skip
            jobs.report_progress(
                session=session,
                claim=live,
                progress=0.3,
                phase="training",
                eta_s=42.0,
                message="epoch 5/30 · step 20/120 · loss 4.000",
                device="cpu",
            )
            running_id = second.id
    sessions.kw["bind"].dispose()
    return Seeded(dataset.id, job.id, running_id, [int(test_ids[i]) for i in order], [int(i) for i in train_ids])


def seed_other_run(
    url: str, dataset_id: int, *, normal: str, method: str = "con2", context: str = "invert", seed: int = 1
) -> int:
    """Another finished run on a dataset `seed_run` wrote, with `normal` as its normal class (every other label is
    anomalous) and `method`: what Evaluate groups and compares. Scores the same test images; returns its id."""
    rng = np.random.default_rng(seed)
    sessions = open_database(url)
    config = RunConfig(
        DataConfig(source="synthetic", normal_label=normal, image_size=16),
        TrainConfig(method=method, context=context, epochs=60, batch_size=32),
        ScoreConfig(),
    )
    with sessions.begin() as session:
        samples = datasets.read_samples(session=session, dataset_id=dataset_id)
        test = [i for i, split in enumerate(samples["split"]) if split == "test" and samples["readable"][i]]
        train = [i for i, split in enumerate(samples["split"]) if split == "train"]
        test_ids, train_ids = samples["id"][test], samples["id"][train]
        targets = np.array([samples["label"][i] != normal for i in test], dtype=int)
        name = f"synthetic · {method} · normal {normal}"
        job = job_submit.submit_train(session=session, dataset_id=dataset_id, config=config.to_dict(), name=name)
        claim = jobs.claim(session=session, worker_id="seed", kinds=("train",))
        assert claim is not None and claim.job_id == job.id
        s_nnd = -0.9 + 0.02 * rng.standard_normal(len(test)) + 0.05 * targets
        s_lh = -300 + 10 * rng.standard_normal(len(test)) + 30 * targets
        near = rng.integers(0, len(train), size=(len(test), 5))
        similarity = np.sort(rng.uniform(0.85, 0.99, size=(len(test), 5)), axis=1)[:, ::-1]
        results.write_scores(
            session=session, job_id=job.id, role="scored", sample_ids=test_ids, s_nnd=s_nnd, s_lh=s_lh,
            neighbours=train_ids[near], neighbour_similarity=similarity,
        )  # fmt: skip
        from engine.metrics import auroc  # imported here: scikit-learn loads only when the demo is seeded

        both = 0 < targets.sum() < len(targets)
        summary = {
            "n_scored": len(test),
            "n_anomalous": int(targets.sum()),
            "auroc_nnd": auroc(targets, s_nnd) if both else None,
            "auroc_lh": auroc(targets, s_lh) if both else None,
            "silhouette": 0.3,
            "device": "cpu",
        }
        jobs.finish(session=session, claim=claim, summary=summary, message=f"scored {len(test)} images")
    sessions.kw["bind"].dispose()
    return job.id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="Database URL, e.g. sqlite:////tmp/con2-big/con2.db")
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    seeded = seed_run(args.url, samples=args.samples, seed=args.seed)
    print(f"dataset {seeded.dataset_id}, run {seeded.run_id}: {len(seeded.scored_ids)} scored samples")


if __name__ == "__main__":
    main()
