"""Persistence: every dataset, job, metric, score, embedding, projection and review, through SQLAlchemy.

    session.py     one URL → engine and sessions (SQLite file by default; PostgreSQL with the same code)
    migrations/    Alembic, run by `upgrade(engine)` when the app or a worker starts
    models.py      the schema as typed models
    jobs.py        the queue: submit, claim, heartbeat, progress, cancel, finish, recover
    job_reads.py   reading the queue: a job, lists, counts, a queued job's place, a job's history
    job_submit.py  queueing a register, train or score job with its typed config (job_configs.py)
    datasets.py    datasets, samples (quality flags), thumbnails
    results.py     metrics, scores, embeddings, projections: bulk writes, numpy reads
    ranking.py     ranks and percentiles of scores (numpy only)
    artifacts.py   checkpoints and scoring bundles kept in the database
    reviews.py     append-only verdicts

Every function takes the caller's `session` (keyword-only) and never commits; open one short
transaction per action: `with Session.begin() as session: ...`. Nothing here imports torch.
"""
