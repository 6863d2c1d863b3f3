"""A real one-class result on CPU: the bundled digits, one digit normal, trained and scored end to end."""

from __future__ import annotations

import time

import numpy as np
import pytest

from engine.config import DataConfig, RunConfig, ScoreConfig, TrainConfig
from engine.metrics import anomaly_targets, auroc
from engine.run import Phase, train_run

# The documented quick CPU setting for digits (the CPU preset): 16 px (digits are 8×8), the narrow ResNet,
# 60 epochs of one view per context, TTA 8; the rest is the engine's defaults.
DIGITS_QUICK = dict(image_size=16, epochs=60, batch_size=32, tta=8)


@pytest.mark.slow
@pytest.mark.parametrize("normal", ["0", "3"])
def test_digits_one_class_auroc_floor(normal):
    config = RunConfig(
        DataConfig(source="digits", normal_label=normal, image_size=DIGITS_QUICK["image_size"]),
        TrainConfig(epochs=DIGITS_QUICK["epochs"], batch_size=DIGITS_QUICK["batch_size"]),
        ScoreConfig(tta=DIGITS_QUICK["tta"]),
    )
    phases = set()
    started = time.perf_counter()
    result = train_run(config, on_progress=lambda e: phases.add(e.name if isinstance(e, Phase) else "training"))
    wall = time.perf_counter() - started
    print(f"digits normal={normal}: {result.metrics} in {wall:.1f} s")  # the figure; never a timed assertion
    assert phases == {"loading", "training", "scoring"}
    # the paper's protocol: normals of the train split only; the whole test split scored
    assert {r.label for r in result.bank.refs} == {normal} and {r.split for r in result.bank.refs} == {"train"}
    assert {r.split for r in result.scored.refs} == {"test"}
    assert result.metrics["auroc_nnd"] >= 0.95
    assert result.metrics["auroc_lh"] >= 0.95
    assert result.metrics["silhouette"] > 0  # two context clusters
    targets = anomaly_targets(result.scored.labels, normal)
    assert result.metrics["auroc_nnd"] == pytest.approx(auroc(targets, result.scores.s_nnd))
    assert np.all(np.isfinite(result.scores.s_lh))
