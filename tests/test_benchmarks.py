"""benchmarks/reproduce.py (the package benchmarks/reproduction/) on a tiny synthetic dataset: interrupted
cells resume, finished ones are skipped; the stopping rule; the CIFAR-10 rows.

The data is a few random 8 px images in a MedMNIST-style .npz, so nothing here needs ../shared/data.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.reproduction import cli, protocol, tables, timelimit
from engine.train import StepReport

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def one_thread():
    """Tiny tensors on a busy 2-core machine train far faster on one intra-op thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    (tmp_path / "data").mkdir()
    np.savez(
        tmp_path / "data" / "breastmnist.npz",
        train_images=rng.integers(0, 256, (15, 8, 8), dtype=np.uint8),
        train_labels=np.array([1] * 12 + [0] * 3, dtype=np.uint8),  # 12 normal (label 1) train images
        test_images=rng.integers(0, 256, (24, 8, 8), dtype=np.uint8),  # 144 (anomalous, normal) pairs: an AUROC
        test_labels=np.array([1, 0] * 12, dtype=np.uint8),  # fine-grained enough that a wrong score shows
    )
    return {"data": tmp_path / "data", "state": tmp_path / "state", "docs": tmp_path / "docs"}


def run(tiny: dict[str, Path], *extra: str) -> int:
    # 12 images, batch 4: 3 steps per epoch; a checkpoint after every epoch
    args = ["--budget", "cpu", "--datasets", "breastmnist", "--methods", "con2_invert,pixel_1nn", "--seeds", "0"]
    args += ["--epochs", "2", "--image-size", "8", "--batch-size", "4", "--tta", "1", "--checkpoint-every", "1"]
    args += ["--data-root", str(tiny["data"]), "--state", str(tiny["state"]), "--results-dir", str(tiny["docs"])]
    return cli.main([*args, *extra])


def pixel_1nn_auroc(npz: Path) -> float:
    """AUROC of raw-pixel S_NND (minus the best cosine similarity of the flattened pixels to a normal training
    image, label 1) on the test split: the share of (anomalous, normal) pairs the anomaly outscores, ties ½."""
    data = np.load(npz)
    bank = [
        im.ravel().astype(float)
        for im, label in zip(data["train_images"], data["train_labels"], strict=True)
        if label == 1
    ]
    scores = []
    for image in data["test_images"]:
        v = image.ravel().astype(float)
        scores.append(-max(float(v @ b) / (np.linalg.norm(v) * np.linalg.norm(b)) for b in bank))
    anomalous = [s for s, label in zip(scores, data["test_labels"], strict=True) if label != 1]
    normal = [s for s, label in zip(scores, data["test_labels"], strict=True) if label == 1]
    wins = [1.0 if a > n else 0.5 if a == n else 0.0 for a in anomalous for n in normal]
    return sum(wins) / len(wins)


def test_an_interrupted_cell_resumes_from_its_checkpoint_and_a_finished_one_is_skipped(
    tiny, one_thread, capsys, tmp_path
):
    cell = tiny["state"] / "cpu" / "breastmnist__con2_invert__s0"

    assert run(tiny, "--max-steps", "4") == 3  # stopped in epoch 2, after epoch 1's checkpoint
    assert (cell / "last.pt").exists() and not (cell / "result.json").exists()
    sessions = json.loads((cell / "sessions.json").read_text())["sessions"]
    assert [(s["from_epoch"], s["to_epoch"], s["stopped_in"]) for s in sessions] == [(0, 1, "training")]
    table = (tiny["docs"] / "results.md").read_text()
    assert "| BreastMNIST | Con2 (invert) | not run | not run |" in table
    assert "| PneumoniaMNIST | Con2 (invert) | not run |" in table

    assert run(tiny) == 0
    result = json.loads((cell / "result.json").read_text())
    assert result["resumed"] and [s["from_epoch"] for s in result["sessions"]] == [0, 1]
    assert result["config"]["train"]["epochs"] == 2
    assert not (cell / "last.pt").exists()  # the result is kept, the checkpoint is not
    # random images carry no signal, so no AUROC floor applies; what must hold is exact: a resumed cell
    # measures what an uninterrupted run of the same cell does, and with --tta 1 the plain score is the score
    straight = {**tiny, "state": tmp_path / "straight", "docs": tmp_path / "straight_docs"}
    assert run(straight) == 0
    uninterrupted = json.loads((straight["state"] / "cpu" / cell.name / "result.json").read_text())
    assert not uninterrupted["resumed"]
    for key in ("auroc_nnd", "auroc_lh", "silhouette"):
        assert result[key] == pytest.approx(uninterrupted[key], abs=1e-9), key
    assert result["auroc_nnd_tta1"] == result["auroc_nnd"] and result["auroc_lh_tta1"] == result["auroc_lh"]
    # the floor cell is the raw-pixel cosine 1-NN AUROC, computed here from the .npz with loops
    floor = json.loads((tiny["state"] / "cpu" / "breastmnist__pixel_1nn" / "result.json").read_text())
    assert floor["auroc_nnd"] == pytest.approx(pixel_1nn_auroc(tiny["data"] / "breastmnist.npz"), abs=1e-12)
    rows = json.loads((tiny["docs"] / "results.json").read_text())["budgets"]["cpu"]["rows"]
    row = next(r for r in rows if r["dataset"] == "breastmnist" and r["method"] == "con2_invert")
    assert row["status"] == "finished" and row["auroc_nnd"]["n"] == 1
    assert row["auroc_nnd"]["mean"] == pytest.approx(100 * result["auroc_nnd"])  # the table shows percent
    assert row["paper_s_nnd"] == "81.7 ± 1.4"
    capsys.readouterr()

    # a cell stored before a config field existed (here crop_max_area) counts as made with its default
    older = json.loads((cell / "result.json").read_text())
    del older["config"]["train"]["crop_max_area"]
    (cell / "result.json").write_text(json.dumps(older))
    assert run(tiny) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [c["status"] for c in summary["cells"]] == ["skipped", "skipped"]
    assert json.loads((cell / "result.json").read_text()) == older

    assert run(tiny, "--epochs", "3") == 2  # other settings than the finished cell: refused, not mixed

    # the page re-rendered from results.json alone, its state gone, keeps every measured row
    stored = (tiny["docs"] / "results.json").read_text()
    (tiny["docs"] / "results.md").write_text("stale")
    shutil.rmtree(tiny["state"])
    assert cli.main(["--render-only", "--results-dir", str(tiny["docs"])]) == 0
    assert (tiny["docs"] / "results.json").read_text() == stored
    assert (tiny["docs"] / "results.md").read_text() == tables.render_markdown(json.loads(stored))
    assert (
        f"| BreastMNIST | Con2 (invert) | {100 * result['auroc_nnd']:.1f}" in (tiny["docs"] / "results.md").read_text()
    )

    # a new cell measured on a fresh checkout (no state) adds its row and keeps every row the page had
    assert run(tiny, "--methods", "simclr") == 0
    rows = {
        (r["dataset"], r["method"]): r
        for r in json.loads((tiny["docs"] / "results.json").read_text())["budgets"]["cpu"]["rows"]
    }
    assert rows[("breastmnist", "con2_invert")]["auroc_nnd"]["mean"] == pytest.approx(100 * result["auroc_nnd"])
    assert rows[("breastmnist", "pixel_1nn")]["status"] == "finished"
    assert rows[("breastmnist", "simclr")]["status"] == "finished"
    # a classical reference runs in the same grid, fitted rather than trained: no model, one view, so its plain
    # score is its score, and its setting is the image size alone
    assert run(tiny, "--methods", "pixels_pca_knn,pixels_iforest") == 0
    rows = {
        (r["dataset"], r["method"]): r
        for r in json.loads((tiny["docs"] / "results.json").read_text())["budgets"]["cpu"]["rows"]
    }
    for method in ("pixels_pca_knn", "pixels_iforest"):
        row = rows[("breastmnist", method)]
        assert row["status"] == "finished" and 0.0 <= row["auroc_nnd"]["mean"] <= 100.0
        assert row["auroc_nnd_tta1"] == row["auroc_nnd"] and row["setting"]["tta"] == 1
    assert rows[("breastmnist", "simclr")]["status"] == "finished"  # kept
    assert "| BreastMNIST | Raw pixels, IsolationForest |" in (tiny["docs"] / "results.md").read_text()
    assert (
        rows[("breastmnist", "csi")]["status"] == "not run"
        and rows[("breastmnist", "csi")]["paper_s_nnd"] == "77.3 ± 0.5"
    )


def report(step: int, epoch: int, elapsed_s: float, *, epochs: int = 10, per_epoch: int = 4) -> StepReport:
    return StepReport(
        step=step,
        total_steps=epochs * per_epoch,
        epoch=epoch,
        epochs=epochs,
        loss=1.0,
        loss_context=1.0,
        loss_content=1.0,
        alpha=0.5,
        lr=1e-3,
        images_per_s=1.0,
        elapsed_s=elapsed_s,
        epoch_end=step % per_epoch == 0,
        eta_s=0.0,
    )


def test_training_stops_when_the_next_checkpoint_is_out_of_reach():
    reachable = timelimit.next_checkpoint_reachable
    # step 5 = first step of epoch 2, 1 s per step; checkpoints every 2 epochs: 3 steps to go
    assert reachable(report(5, 2, 5.0), 2, session_steps=5, remaining_s=10.0, margin_s=1.0)
    assert not reachable(report(5, 2, 5.0), 2, session_steps=5, remaining_s=3.5, margin_s=1.0)
    # the last step of a checkpoint epoch always continues: its checkpoint is written next
    assert reachable(report(8, 2, 8.0), 2, session_steps=8, remaining_s=0.0)
    # the last epoch always checkpoints, whatever the interval
    assert reachable(report(37, 10, 37.0), 4, session_steps=37, remaining_s=5.0, margin_s=1.0)


def test_a_cifar_row_is_the_mean_over_classes_per_seed_then_over_seeds():
    config = {
        "data": {"image_size": 32, "crop_fraction": 1.0},
        "train": {"encoder": "resnet_small", "epochs": 5, "batch_size": 256, "temperature": 0.2},
        "score": {"tta": 1},
    }
    results = [
        {
            "dataset": "cifar10",
            "method": "simclr",
            "normal_class": name,
            "seed": seed,
            "config": config,
            "auroc_nnd": 0.5 + 0.04 * i + 0.1 * seed,
            "auroc_lh": 0.6,
            "auroc_nnd_tta1": 0.5 + 0.04 * i + 0.1 * seed,
        }  # fmt: skip
        for seed in (0, 1)
        for i, name in enumerate(protocol.CIFAR10_CLASSES)
    ]
    summary = tables.summarise("cpu", results[:-1])  # one class of seed 1 missing: only seed 0 counts
    row = next(r for r in summary["rows"] if r["dataset"] == "cifar10" and r["method"] == "simclr")
    assert row["auroc_nnd"]["n"] == 1 and row["auroc_nnd"]["mean"] == pytest.approx(68.0)
    summary = tables.summarise("cpu", results)
    row = next(r for r in summary["rows"] if r["dataset"] == "cifar10" and r["method"] == "simclr")
    for key in ("auroc_nnd", "auroc_nnd_tta1"):  # class means 68 and 78: ± is over seeds, not classes
        assert row[key]["mean"] == pytest.approx(73.0) and row[key]["std"] == pytest.approx(7.0711, abs=1e-3)
    assert row["auroc_lh"]["std"] == pytest.approx(0.0) and row["status"] == "finished"
    assert len(summary["cifar10_per_class"]) == 10


def test_the_old_command_still_runs():
    """`python benchmarks/reproduce.py` stays the command (docs/benchmarks.md): a usage error exits 2."""
    script = ROOT / "benchmarks" / "reproduce.py"
    done = subprocess.run([sys.executable, str(script), "--budget", "cpu", "--datasets", "nope"], capture_output=True)
    assert done.returncode == 2 and b"unknown dataset: nope" in done.stderr


def test_the_quality_table_keeps_a_labels_rows_that_only_the_page_still_has():
    """benchmarks/quality.py rewrites a label's section from local state; a task measured for the label in an
    earlier checkout (its state gone) keeps its row, and a task measured again gets the fresh row."""
    from benchmarks import quality

    header = "| task | floor | recipe S_NND | seeds |\n|---|---|---|---|\n"
    kept = f"## v3\n\nRecipe: `{{}}`\n\n{header}| old | 50.0 | 60.0 | 3 |\n| both | 70.0 | 71.0 | 1 |\n\n"
    fresh = f"## v3\n\nRecipe: `{{}}`\n\n{header}| both | 70.0 | 75.0 | 3 |\n| new | 90.0 | 95.0 | 3 |\n\n"
    merged = quality.merged_section(kept, fresh)
    rows = [line for line in merged.splitlines() if line.startswith("| ") and not line.startswith("| task")]
    assert rows == ["| old | 50.0 | 60.0 | 3 |", "| both | 70.0 | 75.0 | 3 |", "| new | 90.0 | 95.0 | 3 |"]
    assert merged.startswith("## v3\n\nRecipe:") and merged.endswith("|\n\n")
    assert quality.merged_section(fresh, fresh) == fresh  # nothing only the page has: the fresh section as it is
    # a partial mean (a run stopped after nine classes) gives way to the full one, and is not kept beside it
    partial = kept.replace("| both |", "| cifar10 (mean of 9) |")
    full = fresh.replace("| both |", "| cifar10 (mean of 10) |")
    rows = [line for line in quality.merged_section(partial, full).splitlines() if line.startswith("| cifar10")]
    assert rows == ["| cifar10 (mean of 10) | 70.0 | 75.0 | 3 |"]
    # a note written by hand under the heading (what `auto` resolved to, the machine) survives the rewrite, once
    noted = kept.replace("## v3\n\n", "## v3\n\n(ran on another CPU)\n\n")
    merged = quality.merged_section(noted, fresh)
    assert merged.startswith("## v3\n\n(ran on another CPU)\n\nRecipe:") and merged.count("another CPU") == 1
    assert quality.merged_section(noted, merged) == merged
    assert [line for line in merged.splitlines() if line.startswith("| ")] == [
        line for line in quality.merged_section(kept, fresh).splitlines() if line.startswith("| ")
    ]


def test_the_no_tta_readings_use_the_features_the_recipe_scores():
    """quality.py's trained / random readings measure the features the recipe scores, flags or not: the default
    ScoreConfig's grid, a chosen kind, and the pooled output on a checkout whose ScoreConfig had no such field."""
    from benchmarks import quality
    from engine.config import ScoreConfig

    assert quality.scored_features(ScoreConfig()) == ScoreConfig().features == "grid"
    assert quality.scored_features(ScoreConfig(features="pooled")) == "pooled"
    assert quality.scored_features(object()) == "pooled"  # 54863b9: scored the pooled output only


def test_the_suite_reads_trained_against_random_for_the_recipe_and_its_progress_line_says_which():
    """SimCLR's cells skip the no-TTA and random-encoder readings the table does not show; its progress line and
    the table's row read the recipe's alone."""
    from benchmarks import quality

    base = {"task": "breastmnist", "normal": "1", "seed": 0, "auroc_nnd": 0.72, "auroc_lh": 0.71,
            "auroc_pixels": 0.706, "auroc_pca": 0.72, "auroc_iforest": 0.5,
            "train_s": 100.0, "score_s": 5.0}  # fmt: skip
    recipe = {**base, "method": "recipe", "auroc_nnd_plain": 0.70, "auroc_nnd_random": 0.66, "rank": 43.2,
              "rank_random": 8.1}  # fmt: skip
    simclr = {**base, "method": "simclr", "auroc_nnd": 0.70}
    assert "plain 0.700 random 0.660 rank 43.2/8.1" in quality.progress_line(recipe)
    line = quality.progress_line(simclr)
    assert "plain" not in line and line.endswith("floor 0.706 100+5 s")
    row = quality._row([recipe, simclr], mean_over_classes=False)
    assert row["trained / random (no TTA)"] == "70.0 / 66.0" and row["rank trained / random"] == "43.2 / 8.1"
    assert row["SimCLR S_NND"] == "70.0" and row["s recipe / SimCLR"] == "105 / 105"


def test_the_encoder_cost_times_each_encoders_recipe_cell_against_the_first(monkeypatch):
    """benchmarks/encoder_cost.py: each encoder's recipe epoch against the first encoder's and SimCLR's, on the digits
    task (one short run each); the ratios are the printed medians' own."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import encoder_cost
    import quality

    out = encoder_cost.costs(quality.TASKS["digits"], ["resnet_small_s2", "resnet_half_s2"], rounds=1, epochs=3)
    assert set(out["epoch_s"]) == {"resnet_small_s2", "resnet_half_s2", "simclr"}
    assert out["epoch_over_resnet_small_s2"]["resnet_small_s2"] == 1.0
    half = out["epoch_s"]["resnet_half_s2"] / out["epoch_s"]["resnet_small_s2"]
    assert out["epoch_over_resnet_small_s2"]["resnet_half_s2"] == pytest.approx(half, rel=0.05)
    simclr = out["epoch_s"]["simclr"] / out["epoch_s"]["resnet_half_s2"]
    assert out["simclr_epoch_over_recipe_epoch"]["resnet_half_s2"] == pytest.approx(simclr, rel=0.05)


def test_the_architecture_probe_builds_the_half_width_option_and_refuses_unknown_changes(monkeypatch):
    """benchmarks/architecture_probe.py: `stem2,width:32` on the two stages builds resnet_half_s2 to the last weight,
    so the probe's cells are the option's (a 64-unit head is the option's own); `zeroinit` zeroes every residual
    branch's last batch norm; a change it does not know is refused before anything trains."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import architecture_probe

    import engine.model as model

    monkeypatch.setattr(model, "build_encoder", model.build_encoder)  # undone after the test
    monkeypatch.setattr(model.ProjectionHead, "__init__", model.ProjectionHead.__init__)
    with pytest.raises(SystemExit, match="unknown PROBE change"):
        architecture_probe.parse("stem3")
    torch.manual_seed(5)
    option = model.Con2Model("resnet_half_s2", 28, 16).state_dict()
    architecture_probe.patch(architecture_probe.parse("stem2,width:32,head:64"))
    torch.manual_seed(5)
    probed = model.Con2Model("resnet_small_s2", 28, 16)
    assert probed.encoder.conv1.stride == (2, 2)
    assert option.keys() == probed.state_dict().keys()
    assert all(torch.equal(option[k], v) for k, v in probed.state_dict().items())
    architecture_probe.patch({"zeroinit": ""})  # on top of the probe above: the builder it wraps is the patched one
    zeroed = model.Con2Model("resnet_small_s2", 28, 16)
    assert all(float(w.abs().sum()) == 0 for k, w in zeroed.state_dict().items() if k.endswith("bn2.weight"))


def test_the_probes_grid12_reads_stage_1_beside_stage_2_and_the_scoring_splits_it_at_its_width(monkeypatch):
    """`grid12`: the grid features are stage 1's map and stage 2's, each averaged to 4 × 4, stage 1's first; the
    pooled output still follows them in `grid_pooled`, and feature_size says where (the TTA scoring splits there)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import architecture_probe
    import torch.nn.functional as F

    import engine.model as model

    monkeypatch.setattr(model.Con2Model, "__init__", model.Con2Model.__init__)  # undone after the test
    monkeypatch.setattr(model.Con2Model, "features", model.Con2Model.features)
    x = torch.randn(2, 3, 28, 28)
    torch.manual_seed(3)
    shipped = model.Con2Model("resnet_half_s2", 28, 16).eval()
    with torch.no_grad():
        shipped_grid, shipped_pooled = shipped.features(x, "grid"), shipped.features(x, "pooled")
    architecture_probe.patch(architecture_probe.parse("grid12"))
    torch.manual_seed(3)
    probed = model.Con2Model("resnet_half_s2", 28, 16).eval()
    with torch.no_grad():
        net = probed.encoder
        stage1 = net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(x)))))
        grid = probed.features(x, "grid")
        assert probed.feature_size("grid") == (32 + 64) * 16 == grid.shape[1]
        assert torch.equal(grid[:, : 32 * 16], F.adaptive_avg_pool2d(stage1, 4).flatten(1))
        assert torch.equal(grid[:, 32 * 16 :], shipped_grid)  # stage 2's: the shipped grid
        both = probed.features(x, "grid_pooled")
        assert torch.equal(both[:, : probed.feature_size("grid")], grid)
        assert torch.equal(both[:, probed.feature_size("grid") :], shipped_pooled)


def test_the_probes_late2_builds_the_late_stride_option_to_the_last_weight(monkeypatch):
    """`late2` on resnet_half_s2 is the engine's resnet_half_late_s2, weight for weight from one seed, so the probe's
    cells of finding 45 are the option's; above 64 px it changes nothing."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import architecture_probe

    import engine.model as model

    monkeypatch.setattr(model, "build_encoder", model.build_encoder)  # undone after the test
    torch.manual_seed(5)
    option = model.Con2Model("resnet_half_late_s2", 28, 16).state_dict()
    architecture_probe.patch(architecture_probe.parse("late2"))
    torch.manual_seed(5)
    probed = model.Con2Model("resnet_half_s2", 28, 16)
    assert probed.encoder.conv1.stride == (1, 1) and probed.encoder.layer1[0].conv1.stride == (2, 2)
    assert option.keys() == probed.state_dict().keys()
    assert all(torch.equal(option[k], v) for k, v in probed.state_dict().items())
    large = model.Con2Model("resnet_half_s2", 72, 16).encoder
    assert large.conv1.stride == (2, 2) and large.layer1[0].downsample is None  # ResNet's own stem above 64 px


def test_the_suite_balance_times_both_methods_at_the_suites_own_configs(monkeypatch):
    """benchmarks/suite_balance.py times the recipe's and SimCLR's epochs of a suite cell and says how many SimCLR
    epochs would match the recipe's time: here on the digits task, two short epochs each."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import quality
    import suite_balance

    out = suite_balance.balance(quality.TASKS["digits"], epochs=3, rounds=1)
    task = quality.TASKS["digits"]
    assert out["suite_epochs"] == {"recipe": quality.budget_epochs(task, "recipe", {}),
                                   "simclr": quality.budget_epochs(task, "simclr", {})}  # fmt: skip
    assert all(s > 0 for s in out["epoch_s"].values())
    # epoch_s is printed to the millisecond, and a digits epoch is about 0.1 s: a 5 % tolerance covers the rounding
    ratio = out["epoch_s"]["recipe"] / out["epoch_s"]["simclr"]
    assert out["simclr_epochs_for_equal_time"] == pytest.approx(out["suite_epochs"]["recipe"] * ratio, rel=0.05)
    assert out["simclr_over_recipe_time"] == pytest.approx(
        out["train_s_at_suite_epochs"]["simclr"] / out["train_s_at_suite_epochs"]["recipe"], rel=0.05
    )


def test_score_variants_reads_the_engines_own_score_where_a_variant_is_the_engine_setting(monkeypatch):
    """benchmarks/score_variants.py re-reads a trained encoder many ways from features it embeds itself; its grid at
    the engine's own size must give the engine's S_NND and S_LH, score for score, or every other column is suspect."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import score_variants

    from engine import model as model_module
    from engine.config import DataConfig, ScoreConfig, TrainConfig
    from engine.loading import load_data
    from engine.train import train
    from engine.tta import score_images, view_plan

    loaded = load_data(DataConfig(source="digits", normal_label="0", image_size=16, holdout_fraction=0.3))
    bank, queries = loaded.train.pixels, loaded.score.pixels[torch.as_tensor(loaded.score_in_train < 0)]
    trained = train(bank, TrainConfig(epochs=2, batch_size=32, encoder="resnet_small", seed=0))
    config = ScoreConfig()
    assert config.features == "grid" and config.lh_pooled  # the engine's S_LH is the script's lh_grid_pooled
    engine_scores = score_images(trained, bank, queries, config, score_train=False)
    grid_alone = score_images(trained, bank, queries, dataclasses.replace(config, lh_pooled=False), score_train=False)
    out = score_variants.read_variants(trained, config, bank, queries, grids=[model_module.GRID])
    views = len(view_plan(config, trained.config.context, trained.config.method))  # x and x^c: the engine averages
    assert views == 2  # them, the script sums them (the same ranking)
    np.testing.assert_allclose(out[f"grid_{model_module.GRID}"] / views, engine_scores.s_nnd, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grid_alone.s_nnd, engine_scores.s_nnd, rtol=1e-6)  # S_NND reads the grid either way
    # on these greyscale digits `auto` keeps S_NND on the grid; `on` is the script's nnd_grid_pooled, halved
    with_pooled = score_images(trained, bank, queries, dataclasses.replace(config, nnd_pooled="on"), score_train=False)
    np.testing.assert_allclose(out["nnd_grid_pooled"] / views / 2, with_pooled.s_nnd, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out[f"lh_grid_{model_module.GRID}"] / views, grid_alone.s_lh, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(out["lh_grid_pooled"] / views, engine_scores.s_lh, rtol=1e-4, atol=1e-3)
    assert not np.allclose(engine_scores.s_lh, grid_alone.s_lh, rtol=1e-3)  # the pooled block changes the score
    expected = {"wnn", "nnd_mirror_tta", "lh_mirror_bank", "nnd_cells", "lh_cells", "lh_shared", "lh_grid_pooled",
                "nnd_grid_pooled"}  # fmt: skip
    assert expected <= set(out)
    assert all(len(scores) == len(queries) and np.isfinite(scores).all() for scores in out.values())


def test_the_suite_budget_is_wall_time_whatever_the_encoder_and_views():
    """Each cell trains as long as task.epochs of the paper's 4-view step through resnet_small: one view per context
    doubles the epochs, the two-stage encoder's cheaper step adds half again (SimCLR's too), epochs given on the
    command line win for the recipe, and `auto` is resolved on the cell's images as a run resolves it."""
    import torch

    from benchmarks import quality

    breast = quality.Task("breastmnist", "breastmnist.npz", ("1",), 28, 60, 64)  # 60 epochs of the paper's step
    assert quality.budget_epochs(breast, "recipe", {}) == 120  # resnet_small, one view per context: 2 per image
    assert quality.budget_epochs(breast, "recipe", {"views_per_context": 2}) == 60
    assert quality.budget_epochs(breast, "simclr", {}) == 120
    assert quality.budget_epochs(breast, "recipe", {}, "resnet_small_s2") == 180
    assert quality.budget_epochs(breast, "simclr", {}, "resnet_small_s2") == 180
    assert quality.budget_epochs(breast, "recipe", {"epochs": 7}, "resnet_small_s2") == 7
    assert quality.budget_epochs(quality.TASKS["cifar10"], "recipe", {}, "resnet_small_s2") == 12  # 4 × 4 × 1.5 / 2
    # the scans' budgets since finding 34: the recipe at batch 16 as long as it trained at the old batch
    scans = {name: quality.TASKS[name] for name in ("breastmnist", "pneumoniamnist", "br35h")}
    assert [quality.budget_epochs(task, "recipe", {}, "resnet_small_s2") for task in scans.values()] == [155, 58, 56]
    # SimCLR at the recipe's time: the two stages' step is 1.63× cheaper at batch 16 (benchmarks/suite_balance.py)
    assert [quality.budget_epochs(task, "simclr", {}) for task in scans.values()] == [95, 36, 34]
    assert quality.encoder_speed("resnet_small_s2", 16) == 1.63 and quality.encoder_speed("resnet_small_s2", 64) == 1.5
    assert quality.budget_epochs(scans["breastmnist"], "recipe", {"batch_size": "64"}, "resnet_small_s2") == 142
    # the resnet_half_s2 option: SimCLR's epoch costs 1.85–2.09× its epoch at batch 16 (benchmarks/encoder_cost.py),
    # so at the lowest of those it never trains longer than SimCLR (finding 45)
    assert [quality.budget_epochs(task, "recipe", {}, "resnet_half_s2") for task in scans.values()] == [176, 66, 63]
    assert quality.encoder_speed("resnet_half_s2", 16) == 1.85 and quality.encoder_speed("resnet_half_s2", 32) == 1.0
    # resnet_half_late_s2: its epoch 1.02–1.03× resnet_small_s2's, interleaved (finding 46), so a few epochs fewer
    late = [quality.budget_epochs(task, "recipe", {}, "resnet_half_late_s2") for task in scans.values()]
    assert late == [152, 57, 55]
    assert {task.batch_size for task in scans.values()} == {16}
    scans = torch.zeros(4, 1, 28, 28, dtype=torch.uint8)
    photos = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert quality.cell_encoder({}, scans) == "resnet_small_s2" and quality.cell_encoder({}, photos) == "resnet_small"
    assert quality.cell_encoder({"encoder": "resnet_small"}, scans) == "resnet_small"
    assert quality.cell_encoder({}, scans, "simclr") == "resnet_small"  # `auto` picks the two stages for Con2 only
    assert quality.cell_encoder({"method": "csi"}, scans) == "resnet_small"


def test_the_demo_benchmark_reads_the_batch_that_trained():
    """benchmarks/demo_time.py on the bundled digits: the CPU preset's batch is `auto` (0), so the chance level of
    L_content must come from the batch the run resolved (32 on 16 px digits: log(2·32 − 1)), and the content loss
    ends below it. The benchmark once read the unresolved 0 and failed with a math domain error."""
    script = ROOT / "benchmarks" / "demo_time.py"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert out["config"]["batch_size"] == 32
    assert out["loss_content_chance"] == pytest.approx(math.log(2 * 32 - 1), abs=1e-3)
    assert len(out["loss_content_by_epoch"]) == out["config"]["epochs"]
    assert min(out["loss_content_by_epoch"]) < out["loss_content_chance"]
