"""A real one-class result on CPU: the bundled digits, one digit normal, trained and scored end to end."""

from __future__ import annotations

import time

import numpy as np
import pytest

from engine.config import DataConfig, RunConfig, ScoreConfig, TrainConfig
from engine.metrics import anomaly_targets, auroc
from engine.run import Phase, train_run

# The documented quick CPU setting for digits (the CPU preset): 16 px (digits are 8×8), the narrow ResNet,
# 60 epochs of one view per context, each image and its context image scored once; the rest is the engine's defaults.
DIGITS_QUICK = dict(image_size=16, epochs=60, batch_size=32, tta=2)


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


def test_a_curation_run_leaves_every_copy_of_a_duplicated_image_out_of_its_bank(tmp_path):
    """Issue 12: a byte-identical copy is no nearest neighbour of its twin at distance 0, so a duplicate
    pair does not rank as the most normal of all merely for being a pair."""
    from PIL import Image

    from engine.baseline import pixel_nnd
    from engine.tta import score_images

    rng = np.random.default_rng(0)
    for i in range(10):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "copy.png").write_bytes((tmp_path / "3.png").read_bytes())
    score = ScoreConfig(tta=2, lh_shrinkage="fixed")  # fixed: a Ledoit–Wolf refit would re-estimate ρ
    config = RunConfig(
        DataConfig(
            source=str(tmp_path),
            normal_label=None,
            train_split=None,
            score_split=None,
            holdout_fraction=0.0,
            image_size=8,
        ),
        TrainConfig(epochs=1, batch_size=6, projection_dim=16),
        score,
    )
    result = train_run(config)
    ids = result.scored.ids
    pair = [ids.index("3.png"), ids.index("copy.png")]
    bank = result.bank.pixels
    assert result.bank.ids == ids  # curation: every image trains and is scored, leave-one-out
    others = [row for row, sample in enumerate(result.bank.ids) if sample not in ("3.png", "copy.png")]
    alone = score_images(result.trained, bank[others], bank[pair[:1]], score, score_train=False)
    pixels_alone = pixel_nnd(bank[others], bank[pair[:1]])
    pixels_loo = pixel_nnd(bank, bank, np.arange(len(bank)))
    for row in pair:
        assert result.scores.s_nnd[row] == pytest.approx(alone.s_nnd[0], abs=1e-5)
        assert result.scores.s_lh[row] == pytest.approx(alone.s_lh[0], rel=1e-4)
        assert pixels_loo[row] == pytest.approx(pixels_alone[0], abs=1e-6)
        assert set(result.scores.neighbours[row]).isdisjoint(pair)  # neither is shown as the other's neighbour
    assert pixels_loo[pair].min() > -1 + 1e-3  # not cosine similarity 1 with its copy
    # the reference distribution of the training normals is scored the same way
    assert np.allclose(result.scores.train_s_nnd, result.scores.s_nnd, atol=1e-5)


def test_a_run_given_decoded_data_does_not_decode_it_again(tmp_path, monkeypatch):
    """benchmarks/reproduction decodes a dataset once for all its seeds and methods and passes it in."""
    from PIL import Image

    import engine.run
    from engine.loading import load_data

    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    data = DataConfig(source=str(tmp_path), normal_label=None, train_split=None, score_split=None, image_size=8)
    config = RunConfig(data, TrainConfig(epochs=1, batch_size=3, projection_dim=16), ScoreConfig(tta=1))
    loaded = load_data(data)
    monkeypatch.setattr(engine.run, "load_data", lambda *a, **k: pytest.fail("decoded again"))
    phases = set()
    result = train_run(config, loaded=loaded, on_progress=lambda e: phases.add(getattr(e, "name", "training")))
    assert result.bank is loaded.train and result.scored is loaded.score
    assert phases == {"training", "scoring"}


def test_a_seeded_cpu_run_repeats_bit_for_bit():
    """engine.device on the CPU: no autocast, nothing non-deterministic, so a seeded run (training, batch-norm
    re-estimation, test-time augmentation, scores) gives the same numbers, exactly, every time."""
    config = RunConfig(
        DataConfig(source="digits", normal_label="0", image_size=16),
        TrainConfig(epochs=1, batch_size=32, device="cpu", seed=5),
        ScoreConfig(tta=4, batchnorm="per_context"),
    )
    first, second = train_run(config), train_run(config)
    assert first.trained.history == second.trained.history
    assert first.metrics["auroc_nnd"] == second.metrics["auroc_nnd"]
    for name in ("s_nnd", "s_lh", "features", "context_features", "neighbours", "train_s_nnd", "train_s_lh"):
        assert np.array_equal(getattr(first.scores, name), getattr(second.scores, name)), name
