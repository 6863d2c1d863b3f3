"""dashboard/point_budget.py: which of a large run's points Explore draws, and the page that uses it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from test_dashboard_pages import app, seeded, texts  # noqa: F401  (seeded: the fixture)

from dashboard import point_budget


def layout(n: int, seed: int = 0) -> pd.DataFrame:
    """n samples: a dense cluster, 20 stragglers far out, seeded scores with known top anomalies."""
    rng = np.random.default_rng(seed)
    xy = rng.normal(0, 1, (n, 2))
    xy[:20] += 40  # a sparse region far from the cluster
    return pd.DataFrame({"sample_id": np.arange(n), "x": xy[:, 0], "y": xy[:, 1], "s_nnd": rng.random(n)})


def test_a_run_within_the_budget_is_drawn_whole():
    points = layout(500)
    assert point_budget.drawn_points(points, budget=500) is points


def test_past_the_budget_every_top_anomaly_is_drawn_and_the_budget_holds():
    points = layout(5000)
    drawn = point_budget.drawn_points(points, budget=1000, top=100)
    assert len(drawn) == 1000 and drawn["sample_id"].is_unique
    top = set(points.nlargest(100, "s_nnd")["sample_id"])
    assert top <= set(drawn["sample_id"])
    assert list(drawn.index) == sorted(drawn.index)  # the frame's order, so colours and hovers line up


def test_the_spread_keeps_a_sparse_region_and_is_the_same_on_every_rerun():
    points = layout(5000)
    drawn = point_budget.drawn_points(points, budget=600, top=0)
    # 600 of 5000 is 12 %: a plain random sample would keep about 2 of the 20 stragglers; round-robin over
    # the grid's cells keeps every one, since each sits in a cell of its own or shares it with few
    assert set(range(20)) <= set(drawn["sample_id"])
    assert drawn.equals(point_budget.drawn_points(points, budget=600, top=0))
    assert not drawn.equals(point_budget.drawn_points(points, budget=600, top=0, seed=1))


def test_alignment_lines_go_to_the_most_anomalous():
    points = layout(1000)
    lines = point_budget.line_points(points, budget=30)
    assert set(lines["sample_id"]) == set(points.nlargest(30, "s_nnd")["sample_id"])
    assert len(point_budget.line_points(points.head(10), budget=30)) == 10


def test_explore_draws_the_budget_and_says_so(seeded, monkeypatch):  # noqa: F811
    run, _, _ = seeded  # 300 samples
    monkeypatch.setattr(point_budget, "POINT_BUDGET", 100)
    monkeypatch.setattr(point_budget, "TOP_ANOMALIES", 20)
    at = app("explore")
    assert not at.exception
    assert any("300 samples · 100 drawn: the 20 most anomalous" in c for c in texts(at.caption)), texts(at.caption)
    traces = [t for t in json.loads(at.get("plotly_chart")[0].proto.spec)["data"] if t.get("type") == "scattergl"]
    ids = {int(row[0]) for t in traces for row in t["customdata"]}
    assert len(ids) == 100  # each drawn twice (image and context image), 100 samples in all


def test_the_budget_from_the_environment_is_a_whole_number_in_range_or_a_clear_error():
    assert point_budget.budget_from_env(None) == point_budget.budget_from_env("  ") == point_budget.DEFAULT_POINT_BUDGET
    assert point_budget.budget_from_env("20000") == point_budget.budget_from_env("20,000") == 20_000
    for bad, says in (("lots", "whole number"), ("2.5", "whole number"), ("10", "between"), ("5000000", "between")):
        try:
            point_budget.budget_from_env(bad)
        except ValueError as error:
            assert "CON2_POINT_BUDGET" in str(error) and says in str(error), error
        else:
            raise AssertionError(f"{bad!r} was accepted")
