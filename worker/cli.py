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


def parser(prog: str = "con2 worker") -> argparse.ArgumentParser:
    worker = argparse.ArgumentParser(prog=prog, description="Run queued jobs from the database.", allow_abbrev=False)
    worker.add_argument("--db", default=None, help="SQLAlchemy URL (default: SQLite file in the data directory).")
    worker.add_argument("--once", action="store_true", help="Exit when the queue is empty.")
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
    from worker.loop import run_worker

    stale_after_s = STALE_AFTER_S if args.stale_after is None else args.stale_after
    try:
        run_worker(args.db, once=args.once, poll_s=args.poll, worker_id=args.worker_id, stale_after_s=stale_after_s)
    except DatabaseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second SIGINT/SIGTERM: quit at once
        print("interrupted; the running job is recovered once its heartbeat goes stale", file=sys.stderr)
        return 130
    return 0


def con2(argv: Sequence[str] | None = None) -> int:
    """The `con2` console script: `con2 worker ...` runs the worker, anything else is the engine's CLI."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["worker"]:
        return main(argv[1:])
    from engine.cli import main as engine_main

    return engine_main(argv)
