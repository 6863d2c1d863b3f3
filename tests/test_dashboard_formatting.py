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


def test_a_queued_jobs_text_says_where_it_waits_and_never_that_it_runs():
    from dashboard.formatting import queue_place

    assert queue_place("train", 2, None) == "queued behind 2 training runs (one trains at a time)"
    assert queue_place("quick", 1, None).startswith("queued behind 1 registration or scoring job")
    assert queue_place("quick", 0, None) == "queued: next in line, waiting for the worker to take it"
    assert queue_place("train", 3, 7) == "queued: starts once its dataset's registration (job #7) has finished"
