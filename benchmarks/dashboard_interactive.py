"""How long until Explore and Review are interactive with a large run, measured in a real browser.

Seeds a temporary SQLite database with a synthetic finished run of N scored samples (default 20,000) through
db/ (dashboard.seed), starts `streamlit run streamlit_app.py` on it (no worker), and drives headless Chromium:

- explore: open the page until the WebGL scatter of all 2N points is drawn and the script has finished;
  then switching on the alignment lines (N segments) until redrawn.
- review: open the page until the first queue row's verdict button is visible and the script has finished;
  then one verdict click until "Saved" shows.

"cold" is the first visit after the server starts (the run is read from the database); "warm" are later
visits in new browser sessions (the server's cache holds the run). Prints one JSON object.

`--point-budgets 10000,5000,2500` instead compares Explore at several CON2_POINT_BUDGET values side by side:
round by round, one server per budget (its first, cold visit not counted), then a new-tab visit and a sidebar
visit; the medians per budget and their ratios to the first budget's.

    .venv/bin/python benchmarks/dashboard_interactive.py --samples 20000
    .venv/bin/python benchmarks/dashboard_interactive.py --samples 100000 --point-budgets 10000,5000,2500
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dashboard.point_budget import POINT_BUDGET  # noqa: E402
from dashboard.seed import seed_run  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
# The script run has ended and no element waits for its code. (Until 2026-12-04 this looked for "Running" in the
# status widget, which Streamlit 1.67 no longer writes there, so it never waited: a sidebar visit clicked Explore
# while the Runs page was still loading, and its time included the rest of that load.)
IDLE = (
    "() => !!document.querySelector('[data-testid=stApp][data-test-script-state=notRunning]')"
    " && !document.querySelector('[data-testid=stMain] [data-testid=stSkeleton]')"
)
PLOT_DRAWN = (
    "(n) => { const p = document.querySelector('.js-plotly-plot');"
    " if (!p || !p._fullData) return false;"
    " const points = p._fullData.filter(t => t.mode === 'markers').reduce((a, t) => a + (t._length || 0), 0);"
    " return points >= n && p.querySelector('canvas') !== null; }"
)
LINES_DRAWN = (
    "() => { const p = document.querySelector('.js-plotly-plot');"
    " return !!p && !!p._fullData && p._fullData.some(t => t.mode === 'lines'); }"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(data_dir: Path, budget: int | None = None) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "CON2_DATA_DIR": str(data_dir), "CON2_WORKER": "off"}
    if budget is not None:
        env["CON2_POINT_BUDGET"] = str(budget)
    env.pop("CON2_DATABASE_URL", None)
    log = open(data_dir / "streamlit.log", "wb")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"), "--server.headless", "true",
         "--server.port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.3)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
        log.close()


def markers(samples: int, budget: int = POINT_BUDGET) -> int:
    """WebGL markers Explore draws for a run of `samples`: each drawn sample and its context image."""
    return 2 * min(samples, budget)


def timed(action: Callable[[], None]) -> float:
    started = time.perf_counter()
    action()
    return round(time.perf_counter() - started, 3)


def explore_visit(browser, url: str, samples: int, budget: int = POINT_BUDGET) -> tuple[float, float]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:

        def open_until_drawn() -> None:
            page.goto(f"{url}/explore")
            page.wait_for_function(PLOT_DRAWN, arg=markers(samples, budget), timeout=180_000, polling=50)
            page.wait_for_function(IDLE, timeout=180_000, polling=50)

        opened = timed(open_until_drawn)

        def lines() -> None:
            page.get_by_text("Lines", exact=True).click()
            page.wait_for_function(LINES_DRAWN, timeout=180_000, polling=50)
            page.wait_for_function(IDLE, timeout=180_000, polling=50)

        return opened, timed(lines)
    finally:
        page.close()


def review_visit(browser, url: str) -> tuple[float, float]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        first = page.locator("[class*='st-key-review_row_']").first

        def open_until_ready() -> None:
            page.goto(f"{url}/review")
            first.get_by_role("button", name="anomaly", exact=True).wait_for(timeout=180_000)
            page.wait_for_function(IDLE, timeout=180_000, polling=50)

        opened = timed(open_until_ready)

        def verdict() -> None:
            first.get_by_role("button", name="unsure", exact=True).click()
            page.get_by_text("Saved: unsure").first.wait_for(timeout=60_000)
            page.wait_for_function(IDLE, timeout=180_000, polling=50)

        return opened, timed(verdict)
    finally:
        page.close()


def shell_visit(browser, url: str) -> float:
    """The app's own start-up in a new tab: the Runs page, which reads only the jobs table."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:

        def open_until_ready() -> None:
            page.goto(f"{url}/runs")
            page.locator("[data-testid=stDataFrame]").first.wait_for(timeout=180_000)
            page.wait_for_function(IDLE, timeout=180_000, polling=50)

        return timed(open_until_ready)
    finally:
        page.close()


def sidebar_visits(browser, url: str, samples: int, budget: int = POINT_BUDGET) -> tuple[float, float]:
    """In-app navigation, as a user clicks: Runs → Explore (until drawn) → Review (until ready)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{url}/runs")
        page.locator("[data-testid=stDataFrame]").first.wait_for(timeout=180_000)  # as shell_visit: Runs drawn
        page.wait_for_function(IDLE, timeout=180_000, polling=50)
        nav = page.locator("[data-testid=stSidebarNav]")

        def explore() -> None:
            nav.get_by_text("Explore", exact=True).click()
            page.wait_for_function(PLOT_DRAWN, arg=markers(samples, budget), timeout=180_000, polling=50)
            page.wait_for_function(IDLE, timeout=180_000, polling=50)

        def review() -> None:
            nav.get_by_text("Review", exact=True).click()
            row = page.locator("[class*='st-key-review_row_']").first
            row.get_by_role("button", name="anomaly", exact=True).wait_for(timeout=180_000)
            page.wait_for_function(IDLE, timeout=180_000, polling=50)

        return timed(explore), timed(review)
    finally:
        page.close()


def measure(data_dir: Path, samples: int, repeats: int, first: str) -> dict[str, object]:
    """One server start: `first` page visited cold, then both pages warm `repeats` times."""
    from playwright.sync_api import sync_playwright

    out: dict[str, object] = {}
    with server(data_dir) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            if first == "explore":
                out["explore_cold_s"], out["explore_lines_cold_s"] = explore_visit(browser, url, samples)
            else:
                out["review_cold_s"], out["review_verdict_s"] = review_visit(browser, url)
            explore = [explore_visit(browser, url, samples) for _ in range(repeats)]
            review = [review_visit(browser, url) for _ in range(repeats)]
            shell = [shell_visit(browser, url) for _ in range(repeats)]
            sidebar = [sidebar_visits(browser, url, samples) for _ in range(repeats)]
        finally:
            browser.close()
    out["explore_warm_s"] = [e[0] for e in explore]
    out["explore_lines_warm_s"] = [e[1] for e in explore]
    out["review_warm_s"] = [r[0] for r in review]
    out["review_verdict_warm_s"] = [r[1] for r in review]
    out["shell_s"] = shell
    out["sidebar_explore_s"] = [v[0] for v in sidebar]
    out["sidebar_review_s"] = [v[1] for v in sidebar]
    return out


def explore_by_budget(data_dir: Path, samples: int, repeats: int, budgets: list[int]) -> dict[str, object]:
    """Explore's new-tab and sidebar seconds per point budget, the budgets interleaved round by round so that
    a noisy spell on this shared machine falls on all of them alike."""
    from playwright.sync_api import sync_playwright

    times: dict[int, dict[str, list[float]]] = {b: {"new_tab": [], "sidebar": []} for b in budgets}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for _ in range(repeats):
                for budget in budgets:
                    with server(data_dir, budget) as url:
                        explore_visit(browser, url, samples, budget)  # cold: the run read from the database
                        times[budget]["new_tab"].append(explore_visit(browser, url, samples, budget)[0])
                        times[budget]["sidebar"].append(sidebar_visits(browser, url, samples, budget)[0])
        finally:
            browser.close()
    median = statistics.median
    first = budgets[0]
    return {
        str(b): {
            "new_tab_median_s": median(t["new_tab"]),
            "from_sidebar_median_s": median(t["sidebar"]),
            "new_tab_s": t["new_tab"],
            "from_sidebar_s": t["sidebar"],
            "new_tab_ratio_to_first": round(median(t["new_tab"]) / median(times[first]["new_tab"]), 3),
            "from_sidebar_ratio_to_first": round(median(t["sidebar"]) / median(times[first]["sidebar"]), 3),
        }
        for b, t in times.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20_000, help="scored samples of the seeded run")
    parser.add_argument("--repeats", type=int, default=3, help="warm visits per page")
    parser.add_argument(
        "--point-budgets", default="", help="comma-separated CON2_POINT_BUDGET values: compare Explore at each"
    )
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit(f"needs {CHROMIUM} (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="con2-bench-") as tmp:
        data_dir = Path(tmp)
        started = time.perf_counter()
        seed_run(f"sqlite:///{data_dir / 'con2.db'}", samples=args.samples, reference=5000)
        seed_s = round(time.perf_counter() - started, 2)
        if args.point_budgets:
            budgets = [int(b) for b in args.point_budgets.split(",")]
            by_budget = explore_by_budget(data_dir, args.samples, args.repeats, budgets)
            print(json.dumps({"benchmark": "dashboard_interactive", "samples": args.samples, "seed_s": seed_s,
                              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                              "explore_by_point_budget": by_budget}, indent=2))  # fmt: skip
            return
        cold_explore = measure(data_dir, args.samples, args.repeats, first="explore")
        cold_review = measure(data_dir, args.samples, 0, first="review")
    median = statistics.median

    def page_times(page: str, cold: dict, warm: dict) -> dict:
        """One page's seconds: its cold load (from `cold`, the pass that opened it first) and, from `warm`,
        its load from the sidebar and its warm loads."""
        return {
            "cold_s": cold[f"{page}_cold_s"],
            "from_sidebar_median_s": median(warm[f"sidebar_{page}_s"]),
            "warm_median_s": median(warm[f"{page}_warm_s"]),
            "warm_s": warm[f"{page}_warm_s"],
        }

    result = {
        "benchmark": "dashboard_interactive",
        "samples": args.samples,
        "reference": 5000,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "seed_s": seed_s,
        "new_tab_light_page_s": median(cold_explore["shell_s"]),
        "explore": {
            **page_times("explore", cold_explore, cold_explore),
            "alignment_lines_on_s": median(cold_explore["explore_lines_warm_s"]),
        },
        "review": {
            **page_times("review", cold_review, cold_explore),
            "verdict_saved_s": median(cold_explore["review_verdict_warm_s"]),
        },
        "definition": "seconds from navigation (a new tab on the page's URL, or a click in the sidebar) or a click "
        "until the scatter's WebGL canvas holds every point / the first queue row's verdict button is visible (or "
        "'Saved' shows), and Streamlit reports the script finished. cold = first visit after the server starts; "
        "new_tab_light_page_s = the same for the Runs page: the cost of opening the app at all",
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
