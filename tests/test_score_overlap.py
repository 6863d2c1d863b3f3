"""Training images inside a new batch: found by content wherever they come from, said before scoring (CLI),
counted after (metrics), and scored leave-one-out, so they do not take the floor score and make a batch look
healthier than it is."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from engine.artifacts import MODEL_FILE, Bundle
from engine.config import DataConfig, RunConfig, ScoreConfig, TrainConfig
from engine.run import score_run, train_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained on an npz of digit zeros (train split); the batch files are built from its images."""
    folder = tmp_path_factory.mktemp("overlap")
    digits = load_digits()
    images = (digits.images * 255 / 16).astype(np.uint8)
    zeros, others = images[digits.target == 0], images[digits.target != 0]
    source = folder / "train.npz"
    np.savez(source, train_images=zeros[:60], train_labels=np.zeros(60, dtype=np.int64))
    config = RunConfig(
        DataConfig(source=str(source), normal_label="0", image_size=8, score_split="train"),
        TrainConfig(epochs=1, batch_size=32, encoder="resnet_small", device="cpu"),
        ScoreConfig(tta=1),
    )
    result = train_run(config)
    return {"folder": folder, "source": source, "result": result, "zeros": zeros, "others": others}


def batch(folder: Path, name: str, images: np.ndarray) -> str:
    """A new screening batch in its own file: nothing but content links it to the training set."""
    path = folder / f"{name}.npz"
    np.savez(path, test_images=images, test_labels=np.zeros(len(images), dtype=np.int64))
    return str(path)


def test_training_images_in_a_new_batch_are_scored_leave_one_out_and_counted(trained):
    result = trained["result"]
    bank = result.bank
    assert len(bank) == 60
    data = result.config.data
    # the reference: the training images scored against their own bank, leave-one-out by sample id
    own = dataclasses.replace(data, source=str(trained["source"]), score_split="train")
    own_run = score_run(result.trained, bank, own, result.config.score, bank_source=str(trained["source"]))
    loo, own_metrics = own_run.scores, own_run.metrics

    # a batch of 10 training images (copied into another file) and 20 new ones
    copies, fresh = trained["zeros"][:10], trained["zeros"][60:80]
    path = batch(trained["folder"], "mixed", np.concatenate([copies, fresh]))
    mixed = dataclasses.replace(data, source=path, score_split=None)
    mixed_run = score_run(result.trained, bank, mixed, result.config.score, bank_source=str(trained["source"]))
    scores, metrics = mixed_run.scores, mixed_run.metrics
    # each copy scores as its training image does leave-one-out, not as its own nearest neighbour
    np.testing.assert_allclose(scores.s_nnd[:10], loo.s_nnd[:10], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(scores.s_lh[:10], loo.s_lh[:10], rtol=1e-4, atol=1e-4)
    assert metrics["n_training_images"] == 10 and own_metrics["n_training_images"] == 60  # counted after scoring
    heard = []
    score_run(result.trained, bank, mixed, result.config.score, on_overlap=lambda c, t: heard.append((c, t)))
    assert heard == [(10, 30)]  # and told before scoring
    print(f"copies S_NND {scores.s_nnd[:10].round(4)}; new zeros {scores.s_nnd[10:].round(4)}")


def test_a_batch_without_training_images_counts_none(trained):
    result = trained["result"]
    path = batch(trained["folder"], "others", trained["others"][:20])
    data = dataclasses.replace(result.config.data, source=path, score_split=None)
    heard = []
    metrics = score_run(
        result.trained, result.bank, data, result.config.score, on_overlap=lambda c, t: heard.append((c, t))
    ).metrics
    assert heard == [(0, 20)] and metrics["n_training_images"] == 0


def test_con2_score_says_so_before_scoring(trained, tmp_path):
    result = trained["result"]
    model = tmp_path / "model"
    Bundle(result.trained, result.bank, result.config.data).save(model / MODEL_FILE)
    path = batch(trained["folder"], "cli", np.concatenate([trained["zeros"][:4], trained["others"][:6]]))
    done = subprocess.run(
        [sys.executable, "-m", "engine", "score", "--model", str(model), "--data", path, "--out", str(tmp_path / "o"),
         "--tta", "1", "--quiet"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "4 of the 10 images to score are this model's training images: scored leave-one-out" in done.stderr
    assert '"n_training_images": 4' in done.stdout
