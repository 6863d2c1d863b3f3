"""Which samples a box or lasso on Explore encloses, counted over every sample of the run, not only the drawn ones.

Past the point budget Explore draws a thinned subset (dashboard/point_budget.py), and Plotly reports only the
drawn markers a selection caught. A curator who lassos a cluster of 40,000 near-identical images wants all of
them, so the page also reads the shapes themselves (Streamlit passes each box as its two corners and each lasso
as its vertices, in data coordinates) and tests every sample's two points against them here. A sample is
enclosed when its image or its context image lies inside a shape, as a drawn circle or diamond would be caught.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def shapes(event: Any) -> list[np.ndarray]:
    """The selection's boxes and lassos as closed polygons, each an (n, 2) array of data coordinates."""
    try:
        selection = event["selection"]
    except (KeyError, TypeError):
        return []
    polygons: list[np.ndarray] = []
    for kind in ("box", "lasso"):
        for shape in _entries(selection, kind):
            try:
                xs = np.asarray(shape["x"], dtype=np.float64)
                ys = np.asarray(shape["y"], dtype=np.float64)
            except (KeyError, TypeError, ValueError):
                continue  # a shape on another subplot or a malformed entry selects nothing
            if xs.shape != ys.shape or xs.ndim != 1 or not np.isfinite(xs).all() or not np.isfinite(ys).all():
                continue
            if kind == "box" and len(xs) == 2:
                (x0, x1), (y0, y1) = sorted(xs), sorted(ys)
                xs, ys = np.array([x0, x1, x1, x0]), np.array([y0, y0, y1, y1])
            if len(xs) >= 3:
                polygons.append(np.stack([xs, ys], axis=1))
    return polygons


def _entries(selection: Any, kind: str) -> list[Any]:
    try:
        entries = selection[kind]
    except (KeyError, TypeError):
        return []
    return list(entries) if isinstance(entries, list | tuple) else []


def inside(polygon: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Boolean mask of the points (x, y) inside `polygon` (even-odd rule, the rule Plotly's lasso uses)."""
    px, py = polygon[:, 0], polygon[:, 1]
    # Only points inside the shape's bounding box can be inside it: a lasso has hundreds of vertices and a run
    # 100,000 samples, so the edge test runs on the few candidates.
    candidates = np.flatnonzero((x >= px.min()) & (x <= px.max()) & (y >= py.min()) & (y <= py.max()))
    cx, cy = x[candidates], y[candidates]
    parity = np.zeros(len(candidates), dtype=bool)
    for x0, y0, x1, y1 in zip(px, py, np.roll(px, 1), np.roll(py, 1), strict=True):
        # Each edge that straddles the point's height and lies to its right flips the point's parity.
        straddles = (y0 > cy) != (y1 > cy)
        if not straddles.any():
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            crossing = x0 + (cy - y0) * (x1 - x0) / (y1 - y0)
        parity ^= straddles & (cx < crossing)
    result = np.zeros(len(x), dtype=bool)
    result[candidates[parity]] = True
    return result


def enclosed_ids(points: pd.DataFrame, event: Any) -> list[int]:
    """Sample ids of `points` (columns sample_id, x, y, cx, cy) with either point inside any selected shape."""
    polygons = shapes(event)
    if not polygons or points.empty:
        return []
    mask = np.zeros(len(points), dtype=bool)
    for where in (("x", "y"), ("cx", "cy")):
        x = points[where[0]].to_numpy(np.float64)
        y = points[where[1]].to_numpy(np.float64)
        for polygon in polygons:
            mask |= inside(polygon, x, y)
    return [int(i) for i in points["sample_id"].to_numpy()[mask]]
