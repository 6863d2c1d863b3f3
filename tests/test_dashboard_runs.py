"""Which runs a page shows and how it names them (issue 12): one label per run, groups of comparable runs (one
dataset, one normal class), the default run, and ROC comparisons that leave no asked-for run out silently."""

import pandas as pd

from dashboard import charts
from dashboard.runs import comparison_groups, default_runs, run_label


def frame(rows):
    columns = ["id", "status", "dataset_id", "dataset", "normal"]
    return pd.DataFrame([dict(zip(columns, row, strict=True)) for row in rows], columns=columns)


def test_a_runs_label_names_its_context_only_where_the_method_trains_one():
    assert run_label(7, "train", "digits", "con2", "invert", "0") == "#7 digits · con2/invert · normal 0"
    for method in ("simclr", "csi", "self_oecl", "pixels_knn"):  # their config's context is only a default
        label = run_label(8, "train", "digits", method, "invert", "0")
        assert label == f"#8 digits · {method} · normal 0" and "invert" not in label
    assert (
        run_label(9, "score", "batch", "con2", "flip", "ok", 7) == "#9 batch · scored with #7 (con2/flip) · normal ok"
    )
    assert run_label(10, "score", "batch", None, None, "", None) == "#10 batch · scored with a deleted run (score)"


def test_runs_are_grouped_by_dataset_and_normal_class_and_none_is_left_out():
    runs = frame([
        (6, "succeeded", 1, "digits", "1"),
        (5, "succeeded", 1, "digits", "0"),
        (4, "succeeded", 2, "scans", "0"),
        (3, "succeeded", 1, "digits", "0"),
        (2, "succeeded", 1, "digits", "1"),
    ])  # fmt: skip
    groups = comparison_groups(runs)
    assert [(g.title, g.ids) for g in groups] == [
        ("digits · normal 1 · 2 runs", [6, 2]),
        ("digits · normal 0 · 2 runs", [5, 3]),
        ("scans · normal 0 · 1 run", [4]),
    ]
    assert sorted(i for g in groups for i in g.ids) == sorted(runs["id"])  # every run, in exactly one group


def test_a_page_starts_from_a_running_or_finished_run_never_a_queued_one():
    runs = frame([
        (9, "queued", 1, "digits", "0"),
        (8, "succeeded", 1, "digits", "0"),
        (7, "running", 1, "digits", "0"),
        (6, "failed", 1, "digits", "0"),
    ])  # fmt: skip
    assert default_runs(runs) == [7]
    assert default_runs(runs, 2) == [7, 8]
    assert default_runs(runs[runs["status"] != "running"], 3) == [8, 6, 9]  # a queued one only when nothing else


def test_a_roc_comparison_keeps_every_run_asked_for_and_says_why_one_has_no_curve():
    scores = pd.DataFrame({
        "run": ["#1 a", "#1 a", "#1 a", "#2 b", "#2 b"],
        "anomalous": [0, 1, 0, 0, 0],
        "s_nnd": [0.1, 0.9, 0.2, 0.3, 0.4],
        "s_lh": [0.0, 1.0, 0.0, 0.0, 0.0],
    })  # fmt: skip
    asked = ["#1 a", "#2 b", "#3 c"]
    assert charts.roc_gaps(scores, asked) == {"#2 b": "every scored image is normal", "#3 c": "no labelled scores"}
    legend = [trace.name for trace in charts.roc_comparison(scores, "s_nnd", runs=asked).data]
    assert legend == [
        "#1 a (AUROC 1.000)",
        "#2 b (no curve: every scored image is normal)",
        "#3 c (no curve: no labelled scores)",
        "chance",
    ]


def test_a_run_queued_with_the_auto_context_reads_as_the_context_it_chose_once_started():
    from dashboard.runs import settings
    from db.job_configs import TrainJobConfig, to_json
    from db.models import Job
    from engine.config import RunConfig

    stored = to_json(TrainJobConfig.for_run(RunConfig().to_dict()))
    queued = Job(kind="train", config=stored, summary=None)
    assert settings(queued)["train"]["context"] == "auto"  # not started: nothing chosen yet
    started = Job(kind="train", config=stored, summary={"context": "equalize"})
    assert settings(started)["train"]["context"] == "equalize"
    scoring = Job(kind="score", config={"score": {}}, summary={})
    assert settings(scoring, started)["train"]["context"] == "equalize"  # a scoring job shows its model's
    explicit = Job(kind="train", config=to_json(TrainJobConfig.for_run({"train": {"context": "flip"}})),
                   summary={"context": "equalize"})  # fmt: skip
    assert settings(explicit)["train"]["context"] == "flip"  # only `auto` is replaced
    # the encoder likewise (engine/encoder_choice.py)
    assert settings(queued)["train"]["encoder"] == "auto"
    chose = Job(kind="train", config=stored, summary={"context": "equalize", "encoder": "resnet_small_s2"})
    assert settings(chose)["train"]["encoder"] == "resnet_small_s2"
    # and the batch (finding 34): 0 = auto until the run names the one it chose
    assert settings(queued)["train"]["batch_size"] == 0
    assert settings(Job(kind="train", config=stored, summary={"batch_size": 16}))["train"]["batch_size"] == 16
