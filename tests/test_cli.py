"""The command line as a user meets it: real subprocesses, real files, one-line errors."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.imagefiles import messy_folder, save

QUICK = ["--image-size", "12", "--epochs", "2", "--batch-size", "16", "--tta", "2", "--quiet"]


def con2(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"con2 {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def read_scores(path: Path) -> list[dict[str, str]]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    con2("train", "--data", "digits", "--normal-label", "1", "--out", str(out), *QUICK)
    return out


def test_train_writes_model_scores_features_and_summary(digits_run):
    summary = json.loads((digits_run / "summary.json").read_text())
    metrics = summary["metrics"]
    assert metrics["device"] == "cpu" and metrics["n_train"] > 100 and metrics["images_per_s"] > 0
    # measured with these QUICK flags on the 2-core CPU machine: S_NND 0.985, S_LH 0.992, raw pixels 0.999,
    # silhouette 0.33 (seeded, so a rerun gives the same); the floors sit several points under, far above chance
    assert metrics["auroc_nnd"] >= 0.93 and metrics["auroc_lh"] >= 0.93
    assert metrics["auroc_pixels"] >= 0.95 and metrics["silhouette"] > 0.1
    assert summary["config"]["train"]["epochs"] == 2 and summary["config"]["data"]["normal_label"] == "1"
    assert len(summary["history"]) == 2
    rows = read_scores(digits_run / "scores.csv")
    assert len(rows) == metrics["n_scored"]
    scores = [float(r["s_nnd"]) for r in rows]
    assert scores == sorted(scores, reverse=True) and rows[0]["rank"] == "1"  # most anomalous first
    assert (digits_run / "model.pt").stat().st_size > 0 and (digits_run / "features.npz").exists()


def test_score_uses_the_trained_model_without_retraining(digits_run, tmp_path):
    result = con2("score", "--model", str(digits_run), "--data", "digits", "--split", "test", "--normal-label", "1",
                  "--out", str(tmp_path), "--tta", "2", "--quiet")  # fmt: skip
    metrics = json.loads(result.stdout)
    trained = json.loads((digits_run / "summary.json").read_text())["metrics"]
    # same model, same images, same TTA: the same AUROC as the training run scored
    assert metrics["auroc_nnd"] == pytest.approx(trained["auroc_nnd"], abs=1e-6)
    assert len(read_scores(tmp_path / "scores.csv")) == trained["n_scored"]


def test_scoring_the_training_images_leaves_each_out_of_its_own_bank(digits_run, tmp_path):
    con2("score", "--model", str(digits_run), "--data", "digits", "--split", "train", "--out", str(tmp_path),
         "--tta", "1", "--quiet")  # fmt: skip
    rows = {r["sample_id"]: float(r["s_nnd"]) for r in read_scores(tmp_path / "scores.csv")}
    # without leave-one-out every training image would be its own nearest neighbour: S_NND = −1 exactly
    assert max(rows.values()) > -0.999
    assert sum(s <= -0.99999 for s in rows.values()) < len(rows) / 10


def test_bad_files_are_reported_and_skipped_and_the_rest_trains(tmp_path):
    folder = messy_folder(tmp_path / "messy")
    for i in range(6):
        save(folder / "good" / f"extra{i}.png", Image.new("L", (20, 20), 30 * i))
    out = tmp_path / "out"
    result = con2("train", "--data", str(folder), "--all", "--holdout-fraction", "0", "--out", str(out), *QUICK)
    for name, reason in [
        ("truncated.jpg", "truncated"),
        ("empty.png", "empty file (0 bytes)"),
        ("text.png", "not an image"),
        ("huge.png", "image too large: 20000×20000"),
    ]:
        assert any(name in line and reason in line for line in result.stderr.splitlines()), name
    skipped = read_scores(out / "skipped.csv")
    assert len(skipped) == 4
    summary = json.loads((out / "summary.json").read_text())["metrics"]
    assert summary["n_train"] == 10 and summary["n_skipped"] == 4


@pytest.mark.parametrize(
    "args,message",
    [
        (["--data", "/no/such/folder"], "error: no such file or folder: /no/such/folder"),
        (["--data", "digits", "--normal-label", "12"], "error: no images labelled '12'"),
        (["--data", "digits", "--context", "rotate"], "error: TrainConfig.context: unknown value 'rotate'"),
        (["--data", "digits", "--epochs", "many"], "error: TrainConfig.epochs: 'many' is not a valid int"),
    ],
)
def test_user_mistakes_are_one_clear_line(tmp_path, args, message):
    result = con2("train", "--out", str(tmp_path / "x"), *args, "--quiet", check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # exactly one line
    assert result.stderr.startswith(message)


def test_an_empty_selection_fails_with_one_line(tmp_path):
    folder = tmp_path / "imgs"
    for i in range(3):
        save(folder / "cats" / f"{i}.png", Image.new("L", (8, 8), i))
    (folder / "dogs").mkdir()
    (folder / "dogs" / "broken.png").write_text("not an image")
    result = con2("train", "--data", str(folder), "--normal-label", "dogs", "--out", str(tmp_path / "o"), "--quiet",
                  check=False)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: no trainable images: all 1 training images were skipped (first: dogs/broken.png: "
        "not an image: cannot identify image file)"
    )


def test_inspect_counts_labels_and_finds_bad_files_and_duplicates(tmp_path):
    folder = messy_folder(tmp_path / "messy")
    (folder / "good" / "copy.png").write_bytes((folder / "good" / "grey.png").read_bytes())
    report = json.loads(con2("inspect", "--data", str(folder), "--quiet").stdout)
    assert report["images"] == 9 and report["by_label"] == {"bad": 4, "good": 5}
    assert {u["sample_id"] for u in report["unreadable"]} == {
        "bad/truncated.jpg", "bad/empty.png", "bad/text.png", "bad/huge.png"}  # fmt: skip
    assert report["duplicates"] == [["good/copy.png", "good/grey.png"]]


def test_scoring_a_folder_of_only_broken_files_fails_with_one_line(digits_run, tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "a.png").write_text("not an image")
    result = con2("score", "--model", str(digits_run), "--data", str(folder), "--out", str(tmp_path / "o"),
                  "--quiet", check=False)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: no readable images to score: all 1 were skipped "
        "(first: a.png: not an image: cannot identify image file)"
    )


class RunsAShellCommand:
    """What an attacker pickles: unpickling calls os.system(command)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def malicious_file(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": 1, "state_dict": RunsAShellCommand(f"touch {marker}")}, path)
    return path


def test_a_malicious_model_is_refused_and_its_code_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    model = malicious_file(tmp_path / "model.pt", marker)
    folder = tmp_path / "imgs"
    for i in range(3):
        save(folder / f"{i}.png", Image.new("L", (8, 8), 40 * i))
    result = con2("score", "--model", str(model), "--data", str(folder), "--out", str(tmp_path / "o"), "--quiet",
                  check=False)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: refused to load the model {model}: besides tensors and numbers it names Python code "
        "(posix.system), which could run on loading; con2 never writes that, so the file may be malicious"
    )
    assert not marker.exists()


def test_a_malicious_checkpoint_is_refused_on_a_rerun_and_its_code_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    out = tmp_path / "run"
    checkpoint = malicious_file(out / "checkpoints" / "last.pt", marker)
    folder = tmp_path / "imgs"
    for i in range(4):
        save(folder / f"{i}.png", Image.new("L", (8, 8), 40 * i))
    result = con2("train", "--data", str(folder), "--all", "--holdout-fraction", "0", "--out", str(out), *QUICK,
                  check=False)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: refused to load the checkpoint {checkpoint}: besides tensors and numbers it names Python code "
        "(posix.system), which could run on loading; con2 never writes that, so the file may be malicious"
    ]
    assert not marker.exists() and not (out / "model.pt").exists()


def test_model_and_checkpoint_bytes_from_a_database_are_refused_the_same_way(tmp_path):
    # the worker hands stored blobs to these two functions: no file, no CLI, the same refusal
    from engine.artifacts import Bundle
    from engine.checkpoint import CheckpointError, from_bytes

    marker = tmp_path / "pwned"
    blob = malicious_file(tmp_path / "blob.pt", marker).read_bytes()
    with pytest.raises(CheckpointError, match=r"^refused to load the saved model: .*\(posix.system\)"):
        Bundle.from_bytes(blob)
    with pytest.raises(CheckpointError, match=r"^refused to load the saved model: "):
        from_bytes(blob)
    assert not marker.exists()


def test_what_train_saves_loads_with_weights_only(digits_run):
    # the only types weights_only admits: a payload that needs anything else could not be scored later
    for path in (digits_run / "model.pt", digits_run / "checkpoints" / "last.pt"):
        state = torch.load(path, weights_only=True)
        assert isinstance(state, dict) and state


def test_a_preset_starts_the_config_and_flags_override_it(tmp_path):
    # the paper's settings, shrunk by flags to a run that takes seconds: the preset fills what flags leave
    out = tmp_path / "paper"
    con2("train", "--data", "digits", "--normal-label", "1", "--out", str(out), "--preset", "paper",
         "--encoder", "resnet_small", *QUICK)  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    config = summary["config"]
    assert (config["data"]["crop_fraction"], config["train"]["batch_size"]) == (0.875, 16)  # preset, then flag
    assert (config["train"]["alpha_schedule"], config["train"]["context_weight"]) == ("linear", 1.0)
    assert (config["data"]["image_size"], config["train"]["encoder"]) == (12, "resnet_small")
    assert summary["metrics"]["auroc_pixels"] is not None  # the raw-pixel reference beside the learned scores
    bad = con2("train", "--data", "digits", "--out", str(tmp_path / "x"), "--preset", "laptop", check=False)
    assert bad.returncode == 2 and "invalid choice: 'laptop'" in bad.stderr


def test_a_rerun_with_another_config_is_refused_in_one_line(digits_run):
    # the output's checkpoint was trained with 2 epochs; 3 would silently mix two runs
    changed = [a if a != "2" or i == 0 or QUICK[i - 1] != "--epochs" else "3" for i, a in enumerate(QUICK)]
    result = con2("train", "--data", "digits", "--normal-label", "1", "--out", str(digits_run), *changed, check=False)
    assert result.returncode == 2, result.stderr
    assert "error: the saved checkpoint was made with a different config" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_classical_method_trains_nothing_and_writes_no_model(tmp_path):
    """Issue 13: `--method pixels_pca_knn` is accepted; scores and summary are written, history empty, no model.pt."""
    con2("train", "--data", "digits", "--normal-label", "1", "--method", "pixels_pca_knn", "--out", str(tmp_path),
         "--image-size", "12", "--quiet")  # fmt: skip
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["history"] == [] and summary["metrics"]["epochs_trained"] == 0
    assert summary["metrics"]["auroc_nnd"] > 0.9 and summary["config"]["train"]["method"] == "pixels_pca_knn"
    assert len(read_scores(tmp_path / "scores.csv")) == summary["metrics"]["n_scored"]
    assert not (tmp_path / "model.pt").exists()
    assert "pixels_iforest" in con2("train", "--help").stdout


@pytest.mark.parametrize("method", ["csi", "self_oecl", "firm", "masked_contrastive"])
def test_a_rotation_method_trains_from_the_command_line_and_its_model_scores_again(tmp_path, method):
    """Issue 13: `--method csi` / `self_oecl` / `firm` / `masked_contrastive` train, and `con2 score` with the saved
    model (the rotation head of CSI and masked contrastive included) gives the training images the scores the run
    gave them."""
    con2("train", "--data", "digits", "--normal-label", "1", "--method", method, "--out", str(tmp_path / "run"),
         *QUICK)  # fmt: skip
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["config"]["train"]["method"] == method and len(summary["history"]) == 2
    assert summary["metrics"]["auroc_nnd"] is not None
    con2("score", "--model", str(tmp_path / "run"), "--data", "digits", "--split", "test", "--normal-label", "1",
         "--out", str(tmp_path / "again"), "--tta", "2", "--quiet")  # fmt: skip
    first = {r["sample_id"]: float(r["s_nnd"]) for r in read_scores(tmp_path / "run" / "scores.csv")}
    again = {r["sample_id"]: float(r["s_nnd"]) for r in read_scores(tmp_path / "again" / "scores.csv")}
    assert first.keys() == again.keys()
    assert all(abs(first[k] - again[k]) < 1e-4 for k in first)
    assert "such as cell microscopy" in " ".join(con2("train", "--help").stdout.split())  # argparse wraps lines
