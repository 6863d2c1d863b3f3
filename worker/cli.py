"""Command line: `con2 worker` (also `python -m worker`), and the `con2` command as a whole.

`con2` is the project's one command. Its engine subcommands (train, score, inspect) belong to
`engine.cli`; `worker` belongs here. The dispatch lives on this side because the worker may depend on
the engine but never the reverse: the engine knows nothing of the database. Nothing heavy is imported
at module level, so `con2 train` loads no database driver and `con2 worker --help` no torch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

# db.jobs.LANES's names (tests/test_facts.py holds them equal), and how to combine them; not imported, so that
# `--help` loads no database driver
LANE_CHOICES = ("both", "train", "quick", "all")


def parser(prog: str = "con2 worker") -> argparse.ArgumentParser:
    worker = argparse.ArgumentParser(prog=prog, description="Run queued jobs from the database.", allow_abbrev=False)
    worker.add_argument("--db", default=None, help="SQLAlchemy URL (default: SQLite file in the data directory).")
    worker.add_argument("--once", action="store_true", help="Exit when the queue is empty.")
    worker.add_argument(
        "--lane",
        choices=LANE_CHOICES,
        default="both",
        help="both (default): training runs in this process and registering and scoring in a second one, so a "
        "quick job never waits behind a training; train or quick: only that lane; all: every kind of job, one "
        "at a time.",
    )
    worker.add_argument("--poll", type=float, default=1.0, help="Seconds between polls of an empty queue.")
    worker.add_argument("--worker-id", default=None, help="Name in the jobs table (default: host:pid).")
    worker.add_argument(
        "--stale-after",
        type=float,
        default=None,  # None: db.jobs.STALE_AFTER_S, read only when the worker starts (--help loads no db)
        help="Seconds without a heartbeat after which another worker's running job is recovered "
        "(default: 60, db.jobs.STALE_AFTER_S).",
    )
    return worker


def main(argv: Sequence[str] | None = None, prog: str = "con2 worker") -> int:
    """`con2 worker`: serve the queue until stopped; a database a user got wrong is reported in one line
    (exit status 2), not a traceback."""
    args = parser(prog).parse_args(argv)
    # imported here: `--help` and a flag mistake need no sqlalchemy
    from db.jobs import STALE_AFTER_S
    from db.session import DatabaseError
    from worker import loop
    from worker.process import start_lane, stop_lane

    stale_after_s = STALE_AFTER_S if args.stale_after is None else args.stale_after
    settings = {"once": args.once, "poll_s": args.poll, "worker_id": args.worker_id, "stale_after_s": stale_after_s}
    lane = {"both": "train", "all": None}.get(args.lane, args.lane)
    quick = start_lane(args.db, "quick", **settings) if args.lane == "both" else None
    finished = False
    try:
        loop.run_worker(args.db, lane=lane, **settings)
        finished = args.once
    except DatabaseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second SIGINT/SIGTERM: quit at once
        print("interrupted; the running job is recovered once its heartbeat goes stale", file=sys.stderr)
        return 130
    finally:
        if quick is not None:  # --once: the quick lane empties its queue too; otherwise it stops with this one
            stop_lane(quick, finish=finished)
    return 0


def con2(argv: Sequence[str] | None = None) -> int:
    """The `con2` console script: `con2 worker ...` runs the worker, anything else is the engine's CLI."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["worker"]:
        return main(argv[1:])
    from engine.cli import main as engine_main

    return engine_main(argv)
