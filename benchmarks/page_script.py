"""How long each page's script takes on the server for a new browser session, with a large run: the part of
"opening a page" the app itself spends, apart from the browser's own start.

Seeds a temporary SQLite database with a synthetic finished run of N samples (dashboard.seed), then, in a fresh
Python process per checkout, opens each page in new Streamlit sessions (streamlit.testing's AppTest, the same
script runner the server uses, with the server's caches warm after the first session) and times the script's
run. Several checkouts (`--roots`, e.g. this one and a `git worktree` of an older commit) are measured round by
round, interleaved, so a noisy spell on this shared machine falls on all alike. Prints one JSON object.

    python benchmarks/page_script.py --samples 100000
    git worktree add /tmp/before HEAD~1
    python benchmarks/page_script.py --samples 100000 --roots .,/tmp/before
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("datasets", "runs", "explore", "review", "evaluate")

# Run in a child process whose sys.path starts at the checkout being measured: its dashboard, its db.
CHILD = """
import json, os, sys, time
root, pages, sessions = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
sys.path.insert(0, root)
os.chdir(root)
from streamlit.testing.v1 import AppTest
app = os.path.join(root, "streamlit_app.py")
AppTest.from_file(app, default_timeout=600).run()  # imports, migrations check, caches filled
out = {}
for page in pages:
    times = []
    for _ in range(sessions + 1):
        at = AppTest.from_file(app, default_timeout=600)
        if page == "datasets":  # the landing page: a new session's first run draws it
            started = time.perf_counter()
            at.run()
        else:  # a new session lands on the Data page first, untimed, then opens the page
            at.run()
            started = time.perf_counter()
            at.switch_page(f"dashboard/pages/{page}.py").run()
        times.append(round(time.perf_counter() - started, 3))
        if at.exception:
            raise SystemExit(f"{page}: {[e.value for e in at.exception]}")
    out[page] = times[1:]  # the first session of each page fills its caches
print(json.dumps(out))
"""


def measure(root: Path, data_dir: Path, pages: list[str], sessions: int) -> dict[str, list[float]]:
    env = {**os.environ, "CON2_DATA_DIR": str(data_dir), "CON2_WORKER": "off", "PYTHONPATH": str(root)}
    env.pop("CON2_DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(root), ",".join(pages), str(sessions)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"{root}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000, help="scored samples of the seeded run")
    parser.add_argument("--roots", default=str(ROOT), help="comma-separated checkouts to measure (default: this)")
    parser.add_argument("--pages", default=",".join(PAGES), help=f"comma-separated, of {', '.join(PAGES)}")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all checkouts")
    parser.add_argument("--sessions", type=int, default=2, help="new sessions per page and round")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from dashboard.seed import seed_run

    roots = [Path(r).resolve() for r in args.roots.split(",")]
    pages = args.pages.split(",")
    times: dict[str, dict[str, list[float]]] = {str(r): {p: [] for p in pages} for r in roots}
    with tempfile.TemporaryDirectory(prefix="con2-pages-") as tmp:
        started = time.perf_counter()
        seed_run(f"sqlite:///{Path(tmp) / 'con2.db'}", samples=args.samples, reference=5000)
        seed_s = round(time.perf_counter() - started, 2)
        for _ in range(args.rounds):
            for root in roots:
                for page, seconds in measure(root, Path(tmp), pages, args.sessions).items():
                    times[str(root)][page] += seconds
    median = statistics.median
    first = str(roots[0])
    result = {
        "benchmark": "page_script",
        "samples": args.samples,
        "seed_s": seed_s,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "median_s": {r: {p: median(t[p]) for p in pages} for r, t in times.items()},
        "ratio_to_first": {
            r: {p: round(median(t[p]) / median(times[first][p]), 3) for p in pages} for r, t in times.items()
        },
        "seconds": times,
        "definition": "seconds of one page's script for a new Streamlit session (AppTest), caches warm; "
        "medians over rounds × sessions",
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
