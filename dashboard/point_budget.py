"""How many of a run's points Explore draws: all of them up to a budget, beyond it the most anomalous samples
and a seeded spread of the rest.

A browser draws 200,000 WebGL markers (100k samples, each with its context image) slowly, and a person cannot
tell single points apart at that density anyway. So past `POINT_BUDGET` samples the chart keeps the
`TOP_ANOMALIES` highest S_NND (the ones a reviewer looks for: always drawn) and fills the budget with the rest,
taken round-robin over a 64 × 64 grid of the image points' layout after a seeded shuffle, so a sparse region
(where out-of-place images sit) keeps its points while a dense cluster is thinned. The draw is deterministic:
the same run shows the same points on every rerun, so a box or lasso selection stays on drawn points.
Alignment lines are drawn for at most `LINE_BUDGET` samples (the most anomalous first): a few hundred lines read,
thousands are a tangle. Under a thinned chart Explore lays a density layer of every sample
(projection_chart.density_layer), and a box or lasso takes every sample inside it, drawn or not (dashboard/region.py).

Environment: CON2_POINT_BUDGET, the samples drawn (default 5,000; a machine with a GPU-backed browser can
draw more, a slow laptop fewer).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

BUDGET_ENV = "CON2_POINT_BUDGET"
DEFAULT_POINT_BUDGET = 5_000  # docs/benchmarks.md: the time to draw Explore at 100k samples, by budget
TOP_ANOMALIES = 500  # the most anomalous samples, always drawn


def budget_from_env(value: str | None) -> int:
    """CON2_POINT_BUDGET's value as a budget: unset or empty = the default; else a whole number from
    TOP_ANOMALIES to 1,000,000, or a ValueError that says what is wrong."""
    if value is None or not value.strip():
        return DEFAULT_POINT_BUDGET
    try:
        budget = int(value.strip().replace("_", "").replace(",", ""))
    except ValueError:
        raise ValueError(f"{BUDGET_ENV} must be a whole number of samples, not {value!r}") from None
    if not TOP_ANOMALIES <= budget <= 1_000_000:
        raise ValueError(f"{BUDGET_ENV} must lie between {TOP_ANOMALIES:,} and 1,000,000 samples, not {budget:,}")
    return budget


POINT_BUDGET = budget_from_env(os.environ.get(BUDGET_ENV))  # samples drawn (markers: twice, image and context)
LINE_BUDGET = 300  # samples with an alignment line
GRID = 64  # cells per side of the spread


def drawn_points(
    points: pd.DataFrame, budget: int | None = None, top: int | None = None, seed: int = 0
) -> pd.DataFrame:
    """The rows of `points` (sample_id, x, y, s_nnd, …) Explore draws, in their original order: all of them
    when there are at most `budget` (default POINT_BUDGET), else the `top` (default TOP_ANOMALIES) highest
    s_nnd and a grid-stratified seeded spread of the rest. Defaults are read at call time."""
    budget = POINT_BUDGET if budget is None else budget
    top = TOP_ANOMALIES if top is None else top
    if len(points) <= budget:
        return points
    scores = points["s_nnd"].to_numpy(np.float64) if "s_nnd" in points else np.zeros(len(points))
    order = np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")
    chosen = np.zeros(len(points), dtype=bool)
    chosen[order[: min(top, budget)]] = True
    rest = np.flatnonzero(~chosen)
    rng = np.random.default_rng(seed)
    rest = rest[rng.permutation(len(rest))]
    cells = _cells(points["x"].to_numpy(np.float64)[rest], points["y"].to_numpy(np.float64)[rest])
    turn = pd.Series(cells).groupby(cells).cumcount().to_numpy()  # 0 for each cell's first point, 1, …
    take = rest[np.argsort(turn, kind="stable")][: budget - int(chosen.sum())]
    chosen[take] = True
    return points[chosen]


def line_points(drawn: pd.DataFrame, budget: int = LINE_BUDGET) -> pd.DataFrame:
    """The drawn samples that get an alignment line: the `budget` most anomalous (all when fewer)."""
    if len(drawn) <= budget or "s_nnd" not in drawn:
        return drawn.head(budget)
    return drawn.nlargest(budget, "s_nnd")


def _cells(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    def bins(v: np.ndarray) -> np.ndarray:
        lo, hi = np.nanmin(v), np.nanmax(v)
        span = hi - lo if hi > lo else 1.0
        return np.clip(((v - lo) / span * GRID).astype(np.int64), 0, GRID - 1)

    return bins(x) * GRID + bins(y)
