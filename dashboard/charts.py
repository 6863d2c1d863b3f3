"""The dashboard's charts (training curves, ROC, score histograms, run comparison, the zoomable image): pure
functions, a DataFrame in and a Plotly figure out, and the palette and category rules every chart shares.

No Streamlit and no database here, so each chart is testable without a browser. Explore's projection, the one
chart of many thousand points, has its own module (dashboard/projection_chart.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from engine.config import TrainConfig

SCORES = {"s_nnd": "S_NND", "s_lh": "S_LH"}
CONTEXT_COLORS = {"original": "#1f77b4", "context": "#ff7f0e"}  # the image and its context image, everywhere
MAX_CATEGORIES = 12  # categorical colourings keep the most frequent ones and group the rest as "other"
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#aec7e8", "#ffbb78",
)  # fmt: skip
OTHER_COLOR = "#c7c7c7"
MISSING = "(none)"


def empty_figure(message: str) -> go.Figure:
    figure = go.Figure()
    figure.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    figure.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10))
    return figure


def categories(values: pd.Series) -> pd.Series:
    """Values as strings with missing ones named, the rarest grouped as "other" beyond MAX_CATEGORIES."""
    text = values.astype("string").fillna(MISSING)
    counts = text.value_counts()
    if len(counts) > MAX_CATEGORIES:
        keep = set(counts.index[: MAX_CATEGORIES - 1])
        text = text.where(text.isin(keep), "other")
    return text


def content_chance(train: dict[str, Any]) -> float | None:
    """L_content (SimCLR: its one loss) of a head that tells no image apart: every view equally like the anchor,
    so −log(1 / (V − 1)) with V views in a batch: 2 contexts × views_per_context × batch_size for Con2, 2 ×
    batch_size for SimCLR, 2 views × 4 rotations × batch_size for CSI, 2 × 2 rotations × batch_size for self-OECL
    (its NT-Xent; its outliers are not in it), 2 views × (normal + rotated) × batch_size for FIRM (each positive's
    term, so its normal anchors' loss too), 8 × batch_size for masked contrastive (its per-pair logit scales
    multiply similarities that are all 0 for such a head, so they leave the level as NT-Xent's). None for methods
    without a contrastive loss (the classical references). `n_train`, where the run has said it, caps the batch: a
    set smaller than the batch trains as one batch of all its images (engine.train.epoch_batches)."""
    method, batch = train.get("method", "con2"), int(train.get("batch_size", TrainConfig.batch_size))
    if train.get("n_train"):
        batch = min(batch, int(train["n_train"]))
    if method == "simclr":
        views = 2 * batch
    elif method in ("csi", "masked_contrastive"):
        views = 8 * batch
    elif method == "firm":
        views = 4 * batch
    elif method == "self_oecl":
        views = 4 * batch
    elif method in ("con2", "content_only"):
        views = 2 * int(train.get("views_per_context", 1)) * batch
    else:
        return None
    return math.log(views - 1) if views > 1 else None


# What the two loss columns hold for the methods whose losses are not Con2's (engine/train.py `_objective`)
LOSS_NAMES = {
    "csi": ("rotation loss (L_cls-SI)", "contrastive loss (L_con-SI)"),
    "self_oecl": ("norm penalty (‖f‖ of the 180°/270° images)", "contrastive loss (NT-Xent)"),
    "firm": ("outlier anchors' loss (rotated images)", "normal anchors' loss (all normals positives)"),
    "masked_contrastive": ("rotation loss (cross-entropy)", "masked contrastive loss (L_mcl)"),
}


def training_curves(metrics: pd.DataFrame, chance: float | None = None, method: str | None = None) -> go.Figure:
    """Context, content and total loss (left axis) and α (right axis) over optimisation steps.

    metrics: columns step, loss, loss_context, loss_content, alpha (one row per recorded step). chance: the
    content loss of a head that has learnt nothing (`content_chance`), drawn as a dashed line so the content
    loss can be seen leaving it. method: the run's, for what the two loss columns are called (LOSS_NAMES).
    """
    if metrics.empty:
        return empty_figure("No training steps recorded yet.")
    metrics = metrics.sort_values("step")
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    if chance is not None:
        figure.add_trace(
            go.Scatter(
                x=[metrics["step"].min(), metrics["step"].max()],
                y=[chance, chance],
                name=f"L_content at chance (log {math.exp(chance):.0f})",
                mode="lines",
                line=dict(color=CONTEXT_COLORS["original"], dash="dash", width=1),
            ),
            secondary_y=False,
        )
    context_name, content_name = LOSS_NAMES.get(method, ("context loss (L_context)", "content loss (L_content)"))
    for column, name, color in (
        ("loss", "total loss", "#111111"),
        ("loss_context", context_name, CONTEXT_COLORS["context"]),
        ("loss_content", content_name, CONTEXT_COLORS["original"]),
    ):
        if column in metrics and metrics[column].notna().any():
            figure.add_trace(
                go.Scatter(x=metrics["step"], y=metrics[column], name=name, mode="lines", line=dict(color=color)),
                secondary_y=False,
            )
    if "alpha" in metrics:
        figure.add_trace(
            go.Scatter(
                x=metrics["step"],
                y=metrics["alpha"],
                name="α (weight of L_content)",
                mode="lines",
                line=dict(color="#2ca02c", dash="dot"),
            ),
            secondary_y=True,
        )
    figure.update_xaxes(title_text="step")
    figure.update_yaxes(title_text="loss", secondary_y=False)
    figure.update_yaxes(
        title_text="α",
        range=[0, 1.05],
        tickmode="array",
        tickvals=[0, 0.25, 0.5, 0.75, 1],
        showgrid=False,
        secondary_y=True,
    )
    figure.update_layout(height=360, margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=1.15))
    return figure


def roc_curves(scores: pd.DataFrame) -> go.Figure:
    """ROC curves of S_NND and S_LH with their AUROC in the legend.

    scores: columns `anomalous` (1 = anomalous, 0 = normal) and `s_nnd`, `s_lh`.
    """
    if scores.empty or scores["anomalous"].nunique() < 2:
        return empty_figure("ROC needs both normal and anomalous labelled samples.")
    from engine.metrics import roc  # imported here: scikit-learn loads only when a ROC is drawn

    figure = go.Figure()
    for column, name in SCORES.items():
        if column not in scores:
            continue
        fpr, tpr, area = roc(scores["anomalous"].to_numpy(), scores[column].to_numpy())
        figure.add_trace(go.Scatter(x=fpr, y=tpr, mode="lines", name=f"{name} (AUROC {area:.3f})"))
    figure.add_trace(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line=dict(color="#999999", dash="dash"))
    )
    figure.update_xaxes(title_text="false positive rate (normals flagged)", range=[0, 1])
    figure.update_yaxes(title_text="true positive rate (anomalies found)", range=[0, 1.02])
    figure.update_layout(height=420, margin=dict(l=10, r=10, t=30, b=10), legend=dict(x=0.45, y=0.05))
    return figure


def roc_gaps(scores: pd.DataFrame, runs: Sequence[str]) -> dict[str, str]:
    """Which of `runs` (display names) have no ROC curve in `scores`, and why, in words."""
    gaps = {}
    for run in runs:
        classes = set(scores.loc[scores["run"] == run, "anomalous"].tolist()) if not scores.empty else set()
        if not classes:
            gaps[run] = "no labelled scores"
        elif len(classes) < 2:
            gaps[run] = f"every scored image is {'anomalous' if 1 in classes else 'normal'}"
    return gaps


def roc_comparison(scores: pd.DataFrame, score: str = "s_nnd", runs: Sequence[str] | None = None) -> go.Figure:
    """One ROC curve per run for one score, AUROC in the legend (Con2 vs its ablations vs SimCLR).

    scores: columns `run` (display name), `anomalous` (1/0) and the score column. runs: every run asked for, in
    legend order (default: those in `scores`); one without a curve is still in the legend, saying why, so no
    run asked for goes missing without a word.
    """
    runs = list(dict.fromkeys(scores["run"])) if runs is None and not scores.empty else list(runs or [])
    if not runs:
        return empty_figure("No runs to compare.")
    from engine.metrics import roc  # imported here: scikit-learn loads only when a ROC is drawn

    gaps = roc_gaps(scores, runs)
    figure = go.Figure()
    for i, run in enumerate(runs):
        if run in gaps:
            figure.add_trace(
                go.Scatter(x=[None], y=[None], mode="lines", name=f"{run} (no curve: {gaps[run]})",
                           line=dict(color=PALETTE[i % len(PALETTE)], dash="dot"))
            )  # fmt: skip
            continue
        group = scores[scores["run"] == run]
        fpr, tpr, area = roc(group["anomalous"].to_numpy(), group[score].to_numpy())
        figure.add_trace(
            go.Scatter(
                x=fpr, y=tpr, mode="lines", name=f"{run} (AUROC {area:.3f})", line=dict(color=PALETTE[i % len(PALETTE)])
            )
        )
    figure.add_trace(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line=dict(color="#999999", dash="dash"))
    )
    figure.update_xaxes(title_text="false positive rate", range=[0, 1])
    figure.update_yaxes(title_text=f"true positive rate ({SCORES.get(score, score)})", range=[0, 1.02])
    figure.update_layout(height=420, margin=dict(l=10, r=10, t=30, b=10))
    return figure


def binned(values: np.ndarray, edges: np.ndarray, *, name: str, color: str, percent: bool = False) -> go.Bar:
    """A histogram counted here and drawn as bars: the browser gets one number per bin, not every score (a
    100k-sample run's scores were 1.4 MB of JSON on every Review page load). Hover shows each bin's range and
    count; `percent` scales the bars to % of the group, as Plotly's histnorm="percent" does."""
    counts, _ = np.histogram(values, bins=edges)
    heights = counts * (100.0 / max(values.size, 1)) if percent else counts
    return go.Bar(
        x=(edges[:-1] + edges[1:]) / 2,
        y=heights,
        width=float(edges[1] - edges[0]),
        customdata=np.column_stack([edges[:-1], edges[1:], counts]),
        hovertemplate="%{customdata[0]:.4g} – %{customdata[1]:.4g}<br>%{customdata[2]:,.0f} samples<br>%{y:.3g}"
        + (" %" if percent else "")
        + f"<extra>{name}</extra>",
        name=name,
        opacity=0.6,
        marker_color=color,
    )


def score_histograms(scores: pd.DataFrame, score: str = "s_nnd", by: str = "label") -> go.Figure:
    """Overlaid histograms of one score, one per value of `by` (label, or normal/anomalous)."""
    if scores.empty or score not in scores:
        return empty_figure("No scores.")
    figure = go.Figure()
    groups = categories(scores[by]) if by in scores else pd.Series(["all"] * len(scores), index=scores.index)
    edges = np.histogram_bin_edges(scores[score].to_numpy(float), bins=40)
    for i, group in enumerate(sorted(groups.unique(), key=str)):
        values = scores.loc[groups == group, score].to_numpy(float)
        figure.add_trace(binned(values, edges, name=f"{group} ({len(values)})", color=PALETTE[i % len(PALETTE)]))
    figure.update_layout(
        barmode="overlay",
        height=360,
        margin=dict(l=10, r=10, t=30, b=10),
        xaxis_title=f"{SCORES.get(score, score)} (higher = more anomalous)",
        yaxis_title="samples",
    )
    return figure


def threshold_histogram(scored: np.ndarray, reference: np.ndarray, threshold: float | None, flagged: int) -> go.Figure:
    """Scored samples and the reference (training normals, leave-one-out) on one axis, with the threshold.

    Both histograms are normalised to percent so a small reference set stays visible next to a large batch.
    """
    scored = np.asarray(scored, dtype=float)
    reference = np.asarray(reference, dtype=float)
    if scored.size == 0:
        return empty_figure("No scores.")
    both = np.concatenate([scored, reference]) if reference.size else scored
    edges = np.histogram_bin_edges(both, bins=50)
    figure = go.Figure()
    traces = [(scored, "scored", "context")]
    if reference.size:
        traces.append((reference, "training normals, leave-one-out", "original"))
    for values, name, color in traces:
        figure.add_trace(
            binned(values, edges, name=f"{name} ({values.size})", color=CONTEXT_COLORS[color], percent=True)
        )
    if threshold is not None and np.isfinite(threshold):
        figure.add_vline(
            x=threshold,
            line=dict(color="#d62728", width=2, dash="dash"),
            annotation_text=f"threshold: {flagged} flagged",
            annotation_position="top right",
        )
    figure.update_layout(
        barmode="overlay",
        height=320,
        margin=dict(l=10, r=10, t=30, b=10),
        xaxis_title="score (higher = more anomalous)",
        yaxis_title="% of group",
        legend=dict(orientation="h", y=1.18),
    )
    return figure


def run_comparison(runs: pd.DataFrame) -> go.Figure:
    """Grouped bars of AUROC (S_NND, S_LH) and silhouette for a few runs side by side.

    runs: one row per run with `run` (its display name) and any of auroc_nnd, auroc_lh, silhouette.
    """
    columns = [
        c for c in ("auroc_nnd", "auroc_lh", "auroc_pixels", "silhouette") if c in runs and runs[c].notna().any()
    ]
    if runs.empty or not columns:
        return empty_figure("These runs have no AUROC or silhouette to compare.")
    names = {
        "auroc_nnd": "AUROC S_NND",
        "auroc_lh": "AUROC S_LH",
        "auroc_pixels": "AUROC raw pixels",
        "silhouette": "silhouette",
    }
    figure = go.Figure()
    for column in columns:
        figure.add_trace(go.Bar(x=runs["run"].astype(str), y=runs[column], name=names[column]))
    low = min(0.0, float(runs[columns].min().min()))
    figure.update_layout(barmode="group", height=320, margin=dict(l=10, r=10, t=30, b=10), yaxis=dict(range=[low, 1]))
    return figure


def zoomable_image(pixels: np.ndarray) -> go.Figure:
    """An image at its own resolution in a figure that zooms (drag a box, scroll) and pans; pixels (H, W) or
    (H, W, 3) uint8. Axes in pixels, y down, square pixels."""
    rgb = np.repeat(pixels[..., None], 3, axis=2) if pixels.ndim == 2 else pixels
    figure = go.Figure(go.Image(z=rgb, hovertemplate="x %{x}, y %{y}: %{z}<extra></extra>"))
    figure.update_layout(margin=dict(l=0, r=0, t=0, b=0), dragmode="zoom", height=min(900, max(300, rgb.shape[0])))
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False, scaleanchor="x")
    return figure
