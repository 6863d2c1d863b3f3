"""The worker: the one bridge between the engine and the database.

    claim a queued job → run it through the engine → progress, metrics, checkpoints while it runs
                       → scores, embeddings, 2-D projections in bulk → succeeded / failed / cancelled

`worker.loop.run_worker` is `con2 worker` (also `python -m worker`): it serves the queue until stopped, training
runs in its own process and registering and scoring in a second one (`db.jobs.LANES`, `worker.process.start_lane`).
A background thread heartbeats every few seconds; a job whose worker stopped heart-beating is recovered
by any other worker (requeued and resumed from its last checkpoint, or failed after its last attempt).
Cancel is a flag on the job row that the progress callback sees within about a second; SIGTERM/SIGINT
put the running job back in the queue. Every write the worker makes is conditional on still holding the
job (`db.jobs.Claim`), so a worker presumed dead can never write over its successor.

    loop.py         the queue: claim, recover stale jobs, run one job to its end
    live.py         one claimed job's live state: progress, metrics, heartbeat, cancel, how it ends
    kinds.py        the job kinds: register, train, score
    store.py        a finished job's results written in short transactions
    checkpoints.py  the engine's checkpoint store, in the database
    process.py      one local worker per database (lock file), signals, logging
    cli.py          `con2 worker` / `python -m worker`, and the `con2` command's dispatch

The worker sits on top of both `engine/` and `db/`; neither imports it. This file imports nothing, so
that `con2 train` (which passes through `worker.cli`) and the dashboard (which starts a worker through
`worker.process`) load no database driver or torch they do not need.
"""
