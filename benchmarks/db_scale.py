"""How the database side scales: bulk-write and read back scores and 512-d embeddings of both contexts
for 100k samples, the database's size, and how long the 2-D projections take. Prints one JSON object.

    .venv/bin/python benchmarks/db_scale.py                          # SQLite file in a temp dir, 100k samples
    .venv/bin/python benchmarks/db_scale.py --url postgresql+psycopg://...   # an empty PostgreSQL database
    .venv/bin/python benchmarks/db_scale.py --n 20000 --umap-points 0        # quicker; no UMAP

Writes go through the same functions and transaction sizes as the worker (`db.results`, 20k samples
per embeddings transaction); reads are what the dashboard calls. Features are synthetic: a mixture of
20 Gaussian clusters (the context features shifted by one common offset plus noise), float32.
UMAP and PCA run through `engine.projection.project`, which fits both contexts together, so
`--umap-points` points are `--umap-points / 2` samples × 2 contexts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import text

from db import datasets, job_submit, jobs, results
from db.session import open_database, parse_url, shown
from worker.store import WRITE_CHUNK


def features(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, dim) float32 features and their context features: 20 clusters, a shared context offset."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, dim)).astype(np.float32)
    which = rng.integers(0, 20, n)
    plain = centres[which] + 0.3 * rng.normal(size=(n, dim)).astype(np.float32)
    offset = rng.normal(size=dim).astype(np.float32)
    context = plain + offset + 0.1 * rng.normal(size=(n, dim)).astype(np.float32)
    return plain, context


def timed(fn):
    started = time.perf_counter()
    value = fn()
    return value, round(time.perf_counter() - started, 3)


def database_mb(sessions, url) -> float:
    engine = sessions.kw["bind"]
    if engine.dialect.name == "sqlite":
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        path = Path(url.database)
        return round(sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 1e6, 1)
    with engine.connect() as connection:
        size = connection.execute(text("SELECT pg_database_size(current_database())")).scalar()
    return round(size / 1e6, 1)


def bench_database(url: str, n: int, dim: int) -> dict:
    url = parse_url(url)
    sessions = open_database(url)
    plain, context = features(n, dim)
    rng = np.random.default_rng(1)
    s_nnd, s_lh = rng.random(n).astype(np.float32), rng.random(n).astype(np.float32)
    out: dict = {"database": shown(url), "samples": n, "dim": dim}

    def register():
        with sessions.begin() as session:
            dataset = datasets.create_dataset(session=session, location="synthetic")
            rows = [{"key": f"img/{i:06d}.png", "label": str(i % 10), "split": "test", "position": i} for i in range(n)]
            ids = datasets.upsert_samples(session=session, dataset_id=dataset.id, samples=rows)
            job = job_submit.submit_train(
                session=session, dataset_id=dataset.id, config={}, projections=["umap", "pca"]
            )
        with sessions.begin() as session:
            jobs.claim(session=session, worker_id="bench")
        return job.id, np.array([ids[f"img/{i:06d}.png"] for i in range(n)], dtype=np.int64)

    (job_id, ids), out["write_samples_s"] = timed(register)
    neighbours = ids[rng.integers(0, n, (n, 5))]

    def write_scores():
        with sessions.begin() as session:
            results.write_scores(
                session=session,
                job_id=job_id,
                role="scored",
                sample_ids=ids,
                s_nnd=s_nnd,
                s_lh=s_lh,
                neighbours=neighbours,
                neighbour_similarity=rng.random((n, 5)),
            )

    def write_embeddings():
        for start in range(0, n, WRITE_CHUNK):
            stop = min(start + WRITE_CHUNK, n)
            with sessions.begin() as session:
                results.write_embeddings(
                    session=session,
                    job_id=job_id,
                    sample_ids=ids[start:stop],
                    features=plain[start:stop],
                    context_features=context[start:stop],
                )

    def write_projections():
        for method in ("umap", "pca"):
            with sessions.begin() as session:
                coords = rng.random((n, 4)).astype(np.float32)
                results.write_projection(session=session, job_id=job_id, method=method, sample_ids=ids, coords=coords)

    _, out["write_scores_s"] = timed(write_scores)
    _, out["write_embeddings_s"] = timed(write_embeddings)
    _, out["write_projections_s"] = timed(write_projections)

    def refresh():
        with sessions.begin() as session:
            results.refresh_statistics(session=session)  # the worker does this after writing results

    _, out["refresh_statistics_s"] = timed(refresh)
    out["database_mb"] = database_mb(sessions, url)

    with sessions() as session:
        scores, out["read_scores_s"] = timed(lambda: results.read_scores(session=session, job_id=job_id))
        embedded, out["read_embeddings_s"] = timed(lambda: results.read_embeddings(session=session, job_id=job_id))
        table, out["read_run_table_s"] = timed(lambda: results.read_run_table(session=session, job_id=job_id))
        _, out["read_projection_s"] = timed(lambda: results.read_projection(session=session, job_id=job_id))
        some = ids[np.random.default_rng(2).permutation(n)[:20_000]]
        _, out["read_20k_embeddings_by_id_s"] = timed(
            lambda: results.read_embeddings(session=session, job_id=job_id, sample_ids=some)
        )
    order = np.argsort(ids)
    out["round_trip_exact"] = bool(
        np.array_equal(embedded.features, plain[order])
        and np.array_equal(embedded.context_features, context[order])
        and np.array_equal(np.sort(scores["s_nnd"]), np.sort(s_nnd.astype(np.float64)))
        and len(table["sample_id"]) == n
    )  # measured, not asserted: `python -O` strips asserts, and the JSON should say what was read back
    sessions.kw["bind"].dispose()
    return out


def bench_projections(umap_points: int, pca_samples: int, dim: int) -> dict:
    from engine.projection import project

    out: dict = {}
    plain, context = features(pca_samples, dim, seed=3)
    _, out["pca_s"] = timed(lambda: project(plain, context, "pca"))
    out["pca_points"], out["pca_dim"] = 2 * pca_samples, dim
    if umap_points:
        half = umap_points // 2
        plain, context = features(half, dim, seed=4)
        project(plain[:200], context[:200], "umap")  # compile numba once, outside the timing
        _, out["umap_s"] = timed(lambda: project(plain, context, "umap"))
        out["umap_points"], out["umap_dim"] = 2 * half, dim
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="database URL (default: a new SQLite file in a temp dir); must be empty")
    parser.add_argument("--n", type=int, default=100_000, help="samples written and read back")
    parser.add_argument("--dim", type=int, default=512, help="feature dimension (resnet18: 512)")
    parser.add_argument("--umap-points", type=int, default=100_000, help="points UMAP fits (0 = skip UMAP)")
    parser.add_argument("--umap-dim", type=int, default=128, help="feature dimension for UMAP (resnet_small: 128)")
    args = parser.parse_args()
    report: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "python": platform.python_version()}
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{Path(tmp) / 'con2.db'}"
        report["db"] = bench_database(url, args.n, args.dim)
    report["projection"] = bench_projections(args.umap_points, args.n, args.umap_dim)
    print(json.dumps(report, indent=2))
    return 0 if report["db"]["round_trip_exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
