"""dashboard/region.py: a box or lasso on Explore encloses every sample inside it, drawn or not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dashboard import region


def event(box=(), lasso=()) -> dict:
    """A selection event as Streamlit passes it: boxes as two corners, lassos as vertices, data coordinates."""
    return {
        "selection": {
            "points": [],
            "point_indices": [],
            "box": [{"xref": "x", "yref": "y", "x": list(b[0]), "y": list(b[1])} for b in box],
            "lasso": [{"xref": "x", "yref": "y", "x": list(xs), "y": list(ys)} for xs, ys in lasso],
        }
    }


def frame(xy: np.ndarray, cxy: np.ndarray | None = None) -> pd.DataFrame:
    cxy = np.full_like(xy, 1e6) if cxy is None else cxy  # context images far away unless given
    return pd.DataFrame({"sample_id": np.arange(len(xy)) + 100, "x": xy[:, 0], "y": xy[:, 1], "cx": cxy[:, 0],
                         "cy": cxy[:, 1]})  # fmt: skip


def test_a_box_encloses_exactly_the_points_inside_it_whatever_corner_it_was_drawn_from():
    rng = np.random.default_rng(0)
    xy = rng.uniform(-10, 10, (5000, 2))
    points = frame(xy)
    expected = points["sample_id"][(xy[:, 0] > -2) & (xy[:, 0] < 3) & (xy[:, 1] > 1) & (xy[:, 1] < 8)].tolist()
    assert 100 < len(expected) < 1000
    assert region.enclosed_ids(points, event(box=[((-2, 3), (1, 8))])) == expected
    assert region.enclosed_ids(points, event(box=[((3, -2), (8, 1))])) == expected  # dragged up and left


def test_a_lasso_follows_its_outline_not_its_bounding_box():
    # A concave "L": the square (0..4, 0..4) without its upper-right quarter (2..4, 2..4).
    xs, ys = (0, 4, 4, 2, 2, 0), (0, 0, 2, 2, 4, 4)
    grid = np.array([(x + 0.5, y + 0.5) for x in range(-1, 5) for y in range(-1, 5)], dtype=np.float64)
    points = frame(grid)
    square = {(x, y) for x in (0.5, 1.5, 2.5, 3.5) for y in (0.5, 1.5, 2.5, 3.5)}
    inside = square - {(2.5, 2.5), (2.5, 3.5), (3.5, 2.5), (3.5, 3.5)}
    expected = [100 + i for i, p in enumerate(map(tuple, grid)) if p in inside]
    assert len(expected) == 12
    assert region.enclosed_ids(points, event(lasso=[(xs, ys)])) == expected


def test_a_sample_is_enclosed_by_either_of_its_points_and_shapes_add_up():
    xy = np.array([[0.0, 0.0], [10.0, 10.0], [20.0, 20.0], [30.0, 30.0]])
    cxy = np.array([[50.0, 50.0], [0.5, 0.5], [50.0, 50.0], [50.0, 50.0]])  # sample 101's context image at (0.5, 0.5)
    points = frame(xy, cxy)
    box = ((-1, 1), (-1, 1))
    assert region.enclosed_ids(points, event(box=[box])) == [100, 101]
    lasso = ((29, 31, 31, 29), (29, 29, 31, 31))
    assert region.enclosed_ids(points, event(box=[box], lasso=[lasso])) == [100, 101, 103]


@pytest.mark.parametrize(
    "selection",
    [
        None,
        {},
        {"selection": {"points": [{"customdata": [1]}]}},  # a click: no shape
        {"selection": {"box": [{"x": [0, 1]}], "lasso": "nonsense"}},  # no y
        {"selection": {"box": [{"x": [0, "a"], "y": [0, 1]}]}},
        {"selection": {"lasso": [{"x": [0, 1], "y": [0, 1]}]}},  # two vertices enclose nothing
        {"selection": {"box": [{"x": [0, float("nan")], "y": [0, 1]}]}},
    ],
)
def test_no_shape_or_a_malformed_one_encloses_nothing(selection):
    points = frame(np.zeros((10, 2)) + 0.5)
    assert region.enclosed_ids(points, selection) == []
