"""Values for display: how a run's method is labelled."""

from __future__ import annotations

from dashboard.formatting import method_label


def test_a_simclr_run_is_not_labelled_with_a_context():
    assert method_label("con2", "invert") == "con2/invert"
    assert method_label("simclr", "invert") == "simclr"  # SimCLR has no context: its default is no label
    assert method_label("pixels_iforest", "invert") == "pixels_iforest"  # a classical reference: no context either
    assert method_label("csi", "invert") == "csi" and method_label("self_oecl", "flip") == "self_oecl"  # rotations
    assert method_label("firm", "invert") == "firm"
    assert method_label("masked_contrastive", "flip") == "masked_contrastive"
    assert method_label(None, "invert") == ""
