"""Explore's chart: the 2-D projection of both contexts (the paper's Figure 1), alignment lines and the density
layer under a thinned chart. Pure functions, a DataFrame in and a Plotly figure out; the other charts are in
dashboard/charts.py, whose palette and category rules this one shares.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.charts import CONTEXT_COLORS, MISSING, OTHER_COLOR, PALETTE, SCORES, categories, empty_figure

COLOR_BY = ("context", "s_nnd", "s_lh", "label", "split", "verdict")
DENSITY_BINS = 96  # cells per side of Explore's density layer


def alignment_segments(points: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """x and y of one line trace joining each sample's (x, y) to its (cx, cy), segments split by NaN.

    points: columns x, y, cx, cy (M rows) → two arrays of length 3M: x0, x1, NaN, x0, x1, NaN, …
    NaN (null in the browser) breaks the line, so M alignment lines cost one trace.
    """
    m = len(points)
    xs = np.full(3 * m, np.nan, dtype=np.float32)
    ys = np.full(3 * m, np.nan, dtype=np.float32)
    xs[0::3], xs[1::3] = points["x"].to_numpy(np.float32), points["cx"].to_numpy(np.float32)
    ys[0::3], ys[1::3] = points["y"].to_numpy(np.float32), points["cy"].to_numpy(np.float32)
    return xs, ys


def _marker_hover(points: pd.DataFrame, where: str) -> str:
    """Hover text: the sample id and whichever of label, split, S_NND and verdict the frame has."""
    shown = (("label", "label"), ("split", "split"), ("s_nnd", "S_NND"), ("verdict", "verdict"))
    extra = "".join(
        f"<br>{title}: %{{customdata[{i}]}}" for i, (column, title) in enumerate(shown, 1) if column in points
    )
    return f"%{{customdata[0]}} ({where}){extra}<extra></extra>"


def _customdata(points: pd.DataFrame) -> np.ndarray:
    """Per point: sample id, label, split, S_NND, verdict (what the hover shows and a selection returns)."""
    columns = []
    for name in ("sample_id", "label", "split", "s_nnd", "verdict"):
        if name in points:
            column = points[name]
            if name == "s_nnd":
                column = column.map(lambda v: f"{v:.4f}" if pd.notna(v) else "")
            columns.append(column.astype("string").fillna("").to_numpy(dtype=object))
        else:
            columns.append(np.full(len(points), "", dtype=object))
    return np.stack(columns, axis=1) if len(points) else np.empty((0, 5), dtype=object)


def projection_scatter(
    points: pd.DataFrame,
    color_by: str = "context",
    *,
    alignment_lines: bool = False,
    line_points: pd.DataFrame | None = None,
    density: pd.DataFrame | None = None,
) -> go.Figure:
    """The 2-D projection of both contexts (the paper's Figure 1), drawn with WebGL.

    points: one row per sample with `sample_id`, `x`, `y` (the original image), `cx`, `cy` (its context
    image), and optionally `s_nnd`, `s_lh`, `label`, `split`, `verdict`. Circles are originals,
    diamonds context images. `color_by` is one of COLOR_BY. With `alignment_lines`, one extra trace
    joins each sample's two points (of `line_points` only, when given: dashboard/point_budget.py). Every
    marker's `customdata[0]` is its sample id, so a box or lasso
    selection tells the page which samples were picked. `density` (every sample of the run, when `points` is
    a thinned subset) is drawn underneath as a grey density layer, so the undrawn mass stays visible.
    """
    if color_by not in COLOR_BY:
        raise ValueError(f"unknown colouring {color_by!r}; choose one of {', '.join(COLOR_BY)}")
    if points.empty:
        return empty_figure("No projection for this run yet.")
    size = 3 if len(points) > 5000 else 5 if len(points) > 1000 else 7
    figure = go.Figure()
    custom = _customdata(points)
    if density is not None and not density.empty:
        figure.add_trace(density_layer(density))
    if alignment_lines:
        xs, ys = alignment_segments(points if line_points is None else line_points)
        # SVG, not WebGL: one <path> of M/L pairs draws 20k segments in about a second, while WebGL's line
        # renderer splits at every gap and takes several times longer.
        figure.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                line=dict(color="rgba(90,90,90,0.25)", width=1),
                name="alignment",
                hoverinfo="skip",
                connectgaps=False,
            )
        )

    def add(frame_mask: np.ndarray | None, name: str, color: object, *, group: str, showscale: bool = False) -> None:
        sub = points if frame_mask is None else points[frame_mask]
        data = custom if frame_mask is None else custom[frame_mask]
        for where, xcol, ycol, symbol in (("original", "x", "y", "circle"), ("context", "cx", "cy", "diamond")):
            if color_by == "context":
                marker_color: object = CONTEXT_COLORS[where]
            elif isinstance(color, str):
                marker_color = color
            else:
                marker_color = np.asarray(color)[frame_mask] if frame_mask is not None else color
            marker = dict(size=size, color=marker_color, symbol=symbol, opacity=0.75 if where == "original" else 0.5)
            if showscale:
                marker.update(colorscale="Viridis", showscale=where == "original", colorbar=dict(title=name))
            figure.add_trace(
                go.Scattergl(
                    x=sub[xcol].to_numpy(np.float32),
                    y=sub[ycol].to_numpy(np.float32),
                    mode="markers",
                    marker=marker,
                    name=f"{where} image" if color_by == "context" else f"{name} ({where})",
                    legendgroup=group,
                    customdata=data,
                    hovertemplate=_marker_hover(points, where),
                )
            )

    if color_by == "context":
        add(None, "context", None, group="context")
    elif color_by in SCORES:
        values = points[color_by].to_numpy(np.float64)
        add(None, SCORES[color_by], values, group=color_by, showscale=True)
    else:
        column = points[color_by] if color_by in points else pd.Series([None] * len(points), index=points.index)
        grouped = categories(column)
        order = [c for c in grouped.value_counts().index if c not in (MISSING, "other")]
        order += [c for c in ("other", MISSING) if (grouped == c).any()]
        for i, category in enumerate(order):
            color = OTHER_COLOR if category in ("other", MISSING) else PALETTE[i % len(PALETTE)]
            add((grouped == category).to_numpy(), str(category), color, group=str(category))
    figure.update_layout(
        height=620,
        margin=dict(l=10, r=10, t=30, b=10),
        legend=dict(itemsizing="constant", orientation="h", yanchor="bottom", y=1.0, xanchor="left", x=0),
        dragmode="lasso",
        hovermode="closest",
        uirevision="projection",  # keep zoom and selection across reruns
    )
    figure.update_xaxes(showticklabels=False, title=None)
    figure.update_yaxes(showticklabels=False, title=None, scaleanchor="x", scaleratio=1)
    return figure


def density_layer(points: pd.DataFrame, bins: int = DENSITY_BINS) -> go.Heatmap:
    """Every sample's two points (x, y and cx, cy) counted on a bins × bins grid, as a grey heatmap.

    Counted here, so the browser receives bins² numbers instead of 200,000 points; empty cells are left out
    (NaN) so the background shows through, and the count is on a log scale so a sparse region next to a
    dense cluster is still visible. A heatmap takes no part in a box or lasso selection.
    """
    x = np.concatenate([points["x"].to_numpy(np.float64), points["cx"].to_numpy(np.float64)])
    y = np.concatenate([points["y"].to_numpy(np.float64), points["cy"].to_numpy(np.float64)])
    keep = np.isfinite(x) & np.isfinite(y)
    counts, xedges, yedges = np.histogram2d(x[keep], y[keep], bins=bins)
    z = np.where(counts > 0, np.log10(np.maximum(counts, 1)) + 1, np.nan).T  # rows are y, columns x
    return go.Heatmap(
        z=z.astype(np.float32),
        x=((xedges[:-1] + xedges[1:]) / 2).astype(np.float32),
        y=((yedges[:-1] + yedges[1:]) / 2).astype(np.float32),
        colorscale=[[0.0, "rgb(235,235,235)"], [1.0, "rgb(110,110,110)"]],
        showscale=False,
        hoverinfo="skip",
        name="density (every sample)",
        zsmooth=False,
    )
