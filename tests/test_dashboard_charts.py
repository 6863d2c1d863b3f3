"""Chart functions: DataFrame in, Plotly figure out; checked without a browser."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from dashboard import charts, projection_chart
from engine.metrics import roc
from engine.train import epoch_batches


def projection_frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=n), rng.normal(size=n)
    return pd.DataFrame(
        {
            "sample_id": np.arange(n),
            "x": x,
            "y": y,
            "cx": x + 5,
            "cy": y + rng.normal(scale=0.1, size=n),
            "s_nnd": rng.random(n),
            "s_lh": rng.random(n) * 100,
            "label": rng.choice(["0", "1", "2", None], size=n),
            "split": rng.choice(["train", "test"], size=n),
            "verdict": rng.choice(["anomaly", None], size=n),
        }
    )


@pytest.mark.parametrize("color_by", projection_chart.COLOR_BY)
def test_projection_scatter_is_webgl_and_carries_sample_ids(color_by):
    points = projection_frame(300)
    figure = projection_chart.projection_scatter(points, color_by)
    markers = [t for t in figure.data if t.mode == "markers"]
    assert markers and all(t.type == "scattergl" for t in figure.data)
    # every sample appears once as an image and once as a context image
    assert sum(len(t.x) for t in markers) == 2 * len(points)
    ids = {int(row[0]) for t in markers for row in t.customdata}
    assert ids == set(range(300))


def test_alignment_lines_are_one_trace_of_segments_split_by_gaps():
    points = projection_frame(4)
    xs, ys = projection_chart.alignment_segments(points)
    assert len(xs) == 12 and np.isnan(xs[2::3]).all() and np.isnan(ys[2::3]).all()
    np.testing.assert_allclose(xs[0::3], points["x"])
    np.testing.assert_allclose(xs[1::3], points["cx"])
    np.testing.assert_allclose(ys[1::3], points["cy"])
    figure = projection_chart.projection_scatter(points, "label", alignment_lines=True)
    lines = [t for t in figure.data if t.mode == "lines"]
    assert len(lines) == 1 and lines[0].type == "scatter"  # one SVG path: faster than WebGL for gapped lines


def test_projection_of_20k_points_is_a_fixed_number_of_traces():
    # what keeps a large projection fast is counted here; how fast it is belongs to benchmarks/, not to a
    # timed assertion on a shared machine
    points = projection_frame(20_000)
    figure = projection_chart.projection_scatter(points, "s_nnd", alignment_lines=True)
    assert len(figure.data) == 3  # lines, originals, context images: not one trace per sample
    assert [t.type for t in figure.data] == ["scatter", "scattergl", "scattergl"]
    assert [len(t.x) for t in figure.data] == [3 * 20_000, 20_000, 20_000]  # segments x, cx, gap; one per point
    assert figure.data[1].marker.size == figure.data[2].marker.size == 3  # the smallest markers above 5,000


def test_the_density_layer_counts_every_samples_two_points_under_the_drawn_ones():
    everything = projection_frame(20_000)
    drawn = everything.sample(1000, random_state=0)
    figure = projection_chart.projection_scatter(drawn, "context", density=everything)
    assert [t.type for t in figure.data] == ["heatmap", "scattergl", "scattergl"]  # underneath the markers
    layer = figure.data[0]
    z = np.asarray(layer.z, dtype=np.float64)
    assert z.shape == (
        projection_chart.DENSITY_BINS,
        projection_chart.DENSITY_BINS,
    )  # bins², not 40,000 points, to the browser
    counts = np.where(np.isnan(z), 0, 10 ** (z - 1))  # the layer's log scale undone; empty cells are NaN
    assert round(counts.sum()) == 2 * len(everything)
    # the two clouds (images around 0, context images around 5 on x) are both there
    xs = np.asarray(layer.x)
    assert counts[:, xs < 2.5].sum() == pytest.approx(len(everything), rel=0.01)
    assert counts[:, xs > 2.5].sum() == pytest.approx(len(everything), rel=0.01)
    assert layer.hoverinfo == "skip" and layer.showscale is False
    assert projection_chart.projection_scatter(drawn, "context").data[0].type == "scattergl"  # no layer unless asked


def test_categorical_colouring_groups_rare_values():
    points = projection_frame(200)
    points["label"] = [str(i % 30) for i in range(200)]
    figure = projection_chart.projection_scatter(points, "label")
    names = {t.legendgroup for t in figure.data}
    assert len(names) == charts.MAX_CATEGORIES and "other" in names


def test_unknown_colouring_and_empty_frames():
    with pytest.raises(ValueError, match="colouring"):
        projection_chart.projection_scatter(projection_frame(3), "nonsense")
    assert projection_chart.projection_scatter(projection_frame(0), "context").layout.annotations


def test_the_roc_the_charts_draw_is_scikit_learns_with_ties():
    rng = np.random.default_rng(1)
    targets = rng.integers(0, 2, size=500)
    scores = np.round(rng.random(500) + targets * 0.3, 1)  # many ties
    fpr, tpr, area = roc(targets, scores)
    assert area == roc_auc_score(targets, scores) == pytest.approx(np.trapezoid(tpr, fpr))
    assert fpr[0] == 0 and tpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == 1
    assert len(fpr) == len(np.unique(scores)) + 1  # one step per distinct score: ties are one step
    curve = charts.roc_curves(pd.DataFrame({"anomalous": targets, "s_nnd": scores})).data[0]
    assert np.array_equal(curve.x, fpr) and np.array_equal(curve.y, tpr)
    assert not hasattr(charts, "roc_points")  # the one ROC is engine.metrics.roc


def test_roc_curves_name_the_auroc_of_both_scores():
    frame = pd.DataFrame({"anomalous": [0, 0, 1, 1], "s_nnd": [0.1, 0.2, 0.3, 0.4], "s_lh": [0.4, 0.1, 0.2, 0.3]})
    figure = charts.roc_curves(frame)
    names = [t.name for t in figure.data]
    assert "S_NND (AUROC 1.000)" in names and any(n.startswith("S_LH (AUROC 0.500") for n in names)
    assert charts.roc_curves(frame.assign(anomalous=0)).layout.annotations  # one class: a message, no curve


def test_roc_comparison_draws_one_curve_per_run():
    frame = pd.DataFrame(
        {"run": ["a"] * 4 + ["b"] * 4, "anomalous": [0, 0, 1, 1] * 2, "s_nnd": [0.1, 0.2, 0.3, 0.4, 0.4, 0.3, 0.2, 0.1]}
    )
    names = [t.name for t in charts.roc_comparison(frame).data]
    assert names == ["a (AUROC 1.000)", "b (AUROC 0.000)", "chance"]


def test_training_curves_show_three_losses_and_alpha_on_its_own_axis():
    steps = pd.DataFrame(
        {
            "step": [1, 2, 3],
            "loss": [3.0, 2.5, 2.0],
            "loss_context": [2.0, 1.5, 1.0],
            "loss_content": [4.0, 3.0, 2.0],
            "alpha": [0.0, 0.5, 1.0],
        }
    )
    figure = charts.training_curves(steps)
    assert len(figure.data) == 4
    alpha = [t for t in figure.data if t.name.startswith("α")][0]
    assert alpha.yaxis == "y2"
    simclr = charts.training_curves(steps.assign(loss_context=None))  # SimCLR has no context loss
    assert len(simclr.data) == 3
    assert charts.training_curves(steps.iloc[:0]).layout.annotations
    csi = {t.name for t in charts.training_curves(steps, method="csi").data}
    assert "rotation loss (L_cls-SI)" in csi and not any("L_context" in name for name in csi)
    for method in ("firm", "masked_contrastive"):  # issue 13's two later peers name their columns too
        names = {t.name for t in charts.training_curves(steps, method=method).data}
        assert set(charts.LOSS_NAMES[method]) <= names and not any("L_context" in name for name in names)


def test_the_content_loss_chance_level_is_log_of_the_other_views_in_a_batch():
    # Con2: 2 contexts × k views × N originals; the chance loss is −log(1 / (V − 1))
    assert charts.content_chance({"method": "con2", "batch_size": 32, "views_per_context": 1}) == math.log(63)
    assert charts.content_chance({"method": "con2", "batch_size": 32, "views_per_context": 2}) == math.log(127)
    assert charts.content_chance({"method": "simclr", "batch_size": 64}) == math.log(127)
    assert charts.content_chance({"method": "pixels_knn"}) is None
    # CSI: 2 views of 4 rotations of each original; self-OECL: 2 views of its 2 normal rotations
    assert charts.content_chance({"method": "csi", "batch_size": 32}) == math.log(255)
    assert charts.content_chance({"method": "self_oecl", "batch_size": 32}) == math.log(127)
    # FIRM: 2 views of each image and of its rotated outlier; masked contrastive: CSI's 8 × 32 views (its pair
    # scales multiply similarities that are all 0 at chance; tests/test_masked.py checks it against the loss itself)
    assert charts.content_chance({"method": "firm", "batch_size": 32}) == math.log(127)
    assert charts.content_chance({"method": "masked_contrastive", "batch_size": 32}) == math.log(255)
    # a set smaller than the batch trains as one batch of all its images, so its views set the level
    assert [len(b) for b in epoch_batches(10, 32, torch.Generator().manual_seed(0))] == [10]
    assert charts.content_chance({"method": "con2", "batch_size": 32, "n_train": 10}) == math.log(19)
    assert charts.content_chance({"method": "simclr", "batch_size": 32, "n_train": 40}) == math.log(63)
    steps = pd.DataFrame({"step": [1, 5], "loss": [4.0, 3.0], "loss_content": [4.1, 3.9], "alpha": [1.0, 1.0]})
    line = charts.training_curves(steps, chance=math.log(63)).data[0]
    assert list(line.x) == [1, 5] and list(line.y) == [math.log(63)] * 2 and "chance" in line.name


def test_histograms_and_threshold_line():
    frame = pd.DataFrame({"s_nnd": np.linspace(0, 1, 50), "label": ["0"] * 25 + ["1"] * 25})
    assert len(charts.score_histograms(frame, "s_nnd", "label").data) == 2
    figure = charts.threshold_histogram(np.linspace(0, 1, 50), np.linspace(0, 0.5, 20), 0.6, 20)
    assert len(figure.data) == 2
    assert figure.layout.shapes[0].x0 == 0.6
    assert "20 flagged" in figure.layout.annotations[0].text
    assert len(charts.threshold_histogram(np.ones(3), np.array([]), None, 0).data) == 1


def test_histograms_send_counts_per_bin_not_every_score():
    """100k scores reach the browser as 50 bars, each group's bars sum to its size (or 100 %), and every score
    falls in a bar whose range holds it."""
    rng = np.random.default_rng(0)
    scored, reference = rng.normal(size=100_000), rng.normal(0.5, 1, size=1_000)
    figure = charts.threshold_histogram(scored, reference, 1.0, 123)
    assert [len(trace.x) for trace in figure.data] == [50, 50]
    assert [round(float(np.sum(trace.y)), 6) for trace in figure.data] == [100.0, 100.0]
    assert len(figure.to_json()) < 40_000  # 100k raw floats were about 2 MB
    bars = figure.data[0]
    low, high, count = np.asarray(bars.customdata).T
    assert count.sum() == scored.size
    i = int(np.argmax(count))
    assert count[i] == np.sum((scored >= low[i]) & (scored < high[i]))
    assert low[i] < bars.x[i] < high[i] and np.isclose(bars.width, high[i] - low[i])

    frame = pd.DataFrame({"s_nnd": scored[:5000], "label": ["0"] * 4000 + ["1"] * 1000})
    counts = sorted(int(np.sum(trace.y)) for trace in charts.score_histograms(frame, "s_nnd", "label").data)
    assert counts == [1000, 4000]


def test_run_comparison_bars():
    runs = pd.DataFrame(
        {"run": ["#1", "#2"], "auroc_nnd": [0.9, 0.8], "auroc_lh": [0.85, None], "silhouette": [0.3, -0.1]}
    )
    figure = charts.run_comparison(runs)
    assert [t.name for t in figure.data] == ["AUROC S_NND", "AUROC S_LH", "silhouette"]
    assert figure.layout.yaxis.range[0] < 0
