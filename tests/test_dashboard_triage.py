"""Thresholds on the ranked list, and the context gallery's images."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from dashboard import gallery, triage


def test_percentile_threshold_flags_what_scores_above_the_reference():
    reference = np.arange(100, dtype=float)  # 0..99
    scores = np.array([10.0, 96.9, 97.1, 200.0])  # the 98th percentile is 97.02
    threshold, flagged = triage.flag(scores, reference=reference, percentile=98)
    assert threshold == pytest.approx(np.percentile(reference, 98))
    assert flagged.tolist() == [False, False, True, True]
    assert triage.reference_share_above(reference, threshold) == pytest.approx(2.0)


def test_count_threshold_flags_the_top_n_with_ties():
    scores = np.array([0.1, 0.9, 0.5, 0.9, 0.3])
    threshold, flagged = triage.flag(scores, count=2)
    assert threshold == 0.9 and flagged.sum() == 2
    _, flagged = triage.flag(scores, count=10)
    assert flagged.all()
    _, flagged = triage.flag(scores, count=0)
    assert not flagged.any()


def test_flag_needs_exactly_one_rule_and_copes_without_reference():
    with pytest.raises(ValueError):
        triage.flag(np.ones(3))
    threshold, flagged = triage.flag(np.ones(3), reference=np.array([]), percentile=98)
    assert np.isnan(threshold) and not flagged.any()


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_context_gallery_shows_the_engine_contexts():
    pixels = np.zeros((8, 8), dtype=np.uint8)
    pixels[:4] = 200  # bright top half
    rows = gallery.context_gallery([png(pixels)])
    assert list(rows[0]) == ["original", "invert", "flip", "equalize"]
    original, inverted, flipped = rows[0]["original"], rows[0]["invert"], rows[0]["flip"]
    assert original.shape[0] >= gallery.DISPLAY_SIDE and original.shape[2] == 3  # enlarged, RGB, framed
    original, inverted, flipped = original[1:-1, 1:-1], inverted[1:-1, 1:-1], flipped[1:-1, 1:-1]
    assert inverted[0, 0, 0] == 55 and inverted[-1, 0, 0] == 255
    assert flipped[0, 0, 0] == 0 and flipped[-1, 0, 0] == 200  # top and bottom swapped
    assert gallery.context_image(png(pixels), "invert").shape == rows[0]["invert"].shape


def test_filter_queue_views_verdicts_and_score_range():
    import pandas as pd

    table = pd.DataFrame(
        {
            "s_nnd": [0.9, 0.8, 0.5, 0.1],
            "verdict": ["anomaly", None, "normal", None],
            "flagged": [True, True, False, False],
        }
    )
    assert triage.filter_queue(table, show="Unreviewed").index.tolist() == [1, 3]
    assert triage.filter_queue(table, show="Reviewed").index.tolist() == [0, 2]
    assert triage.filter_queue(table, show="Flagged").index.tolist() == [0, 1]
    assert triage.filter_queue(table, verdicts=["normal"]).index.tolist() == [2]
    assert triage.filter_queue(table, score_range=(0.4, 0.85)).index.tolist() == [1, 2]
    with pytest.raises(ValueError):
        triage.filter_queue(table, show="Some")


def test_standing_text_never_saturates():
    reference = np.arange(1, 1051, dtype=float)  # 1,050 normals scoring 1 … 1050, median 525.5
    assert triage.standing_text(1041.5, reference) == "above 1,041 of 1,050 training normals"
    assert triage.standing_text(0.5, reference) == "above none of the 1,050 training normals"
    # two flagged rows above every normal read differently, where a percentile said 100.0 % for both
    far = triage.standing_text(525.5 + 3.1 * (1050 - 525.5), reference)
    assert far == "above all 1,050 training normals; 3.1 × as far above their median as the highest of them"
    assert triage.standing_text(1051, reference).endswith("1.0 × as far above their median as the highest of them")
    assert triage.standing_text(2.0, np.array([1.0])) == "above the one training normal"
    assert triage.standing_text(2.0, np.array([1.0, 1.0])) == "above all 2 training normals"  # no spread: no ratio
    assert triage.standing_text(1.0, np.array([])) == "no training reference"
    assert triage.standing_text(1.0, None) == "no training reference"
    assert triage.standing_text(float("nan"), reference) == "no score"


def test_the_reference_counts_only_finite_normal_scores():
    # the queue's column help counts the normals without sorting them; it must agree with the standing it explains
    reference = np.array([3.0, np.nan, 1.0, np.inf, 2.0])
    assert triage.finite_reference(reference).size == 3 == triage.standing(np.array([2.5]), reference)[2]
    assert triage.finite_reference(None).size == 0


def test_score_value_text_is_readable():
    assert triage.score_value_text("s_nnd", -0.9518) == "cosine distance 0.048"
    assert triage.score_value_text("s_lh", 1523.456) == "NLL 1,523.5"
    assert triage.score_value_text("s_lh", float("nan")) == "no score"
