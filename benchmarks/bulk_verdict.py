"""How long does one bulk verdict (a box or lasso on Explore) take to store, with a large run?

Seeds a temporary SQLite database with a synthetic finished run (dashboard.seed), then gives the first N scored
samples one verdict through `db.reviews.add_verdicts` in one transaction, as the Explore page's outbox does, and
times it. `--root` measures another checkout's db/ (a `git worktree` of an older commit) on the same kind of
database, for a before/after pair. Prints one JSON object.

    python benchmarks/bulk_verdict.py --samples 100000 --verdicts 50000
    python benchmarks/bulk_verdict.py --samples 100000 --verdicts 50000 --root /path/to/older/worktree
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

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000, help="scored samples of the seeded run")
    parser.add_argument("--verdicts", type=int, default=50_000, help="samples given one verdict in one action")
    parser.add_argument("--root", default=str(ROOT), help="the checkout whose db/ writes the verdicts")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(args.root).resolve()))
    from sqlalchemy import select

    from dashboard.seed import seed_run
    from db import reviews
    from db.models import Score
    from db.session import open_database

    with tempfile.TemporaryDirectory(prefix="con2-bulk-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'con2.db'}"
        seeded = seed_run(url, samples=args.samples, reference=5000)
        sessions = open_database(url)
        with sessions() as session:
            ids = list(
                session.scalars(
                    select(Score.sample_id)
                    .where(Score.job_id == seeded.run_id, Score.role == "scored")
                    .limit(args.verdicts)
                )
            )
        started = time.perf_counter()
        with sessions.begin() as session:
            count = reviews.add_verdicts(session=session, sample_ids=ids, verdict="remove", reviewer="bench")
        seconds = round(time.perf_counter() - started, 3)
        sessions.kw["bind"].dispose()
    print(
        json.dumps(
            {
                "benchmark": "bulk_verdict",
                "root": str(Path(args.root).resolve()),
                "samples": args.samples,
                "verdicts": count,
                "seconds": seconds,
                "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
