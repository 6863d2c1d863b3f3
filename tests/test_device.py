"""engine.device, the one device, precision and determinism policy: its CPU paths.

The CUDA paths (bfloat16 autocast, pinned streaming) are in tests/test_gpu.py, which runs only where a GPU is.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

import engine.device
from engine.config import DataConfig, ScoreConfig, TrainConfig
from engine.device import (
    BatchFeed,
    autocast,
    cpu_bfloat16_setting,
    cpu_has_bfloat16_units,
    describe,
    deterministic,
    fits_on_device,
    gather,
    precision_for,
    resolve_device,
    runs_in_bfloat16,
    uses_bfloat16,
)
from engine.embed import embed
from engine.loading import load_data
from engine.losses import content_alignment_loss
from engine.metrics import anomaly_targets, auroc
from engine.scoring import NNDScorer
from engine.train import train
from engine.tta import score_images

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (10, 1, 4, 4), generator=g, dtype=torch.uint8)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU-only answers")
def test_auto_is_the_cpu_without_a_gpu_and_asking_for_cuda_is_refused():
    assert resolve_device("auto") == CPU and resolve_device("cpu") == CPU and resolve_device(CPU) == CPU
    for name in ("cuda", "cuda:0", torch.device("cuda")):
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            resolve_device(name)


def kernel_lists_bfloat16_units() -> bool:
    """The kernel's own word (Linux: /proc/cpuinfo's flags) on whether the CPU has AMX tiles or AVX-512's bf16
    dot product; torch's probes where there is no such file."""
    try:
        return any({"amx_tile", "avx512_bf16"} & set(line.split()) for line in Path("/proc/cpuinfo").read_text()
                   .splitlines() if line.startswith("flags"))  # fmt: skip
    except OSError:
        return cpu_has_bfloat16_units()


BF16_UNITS = kernel_lists_bfloat16_units()  # AMX tiles or AVX512_BF16: oneDNN's bf16 convolutions run on either


@pytest.mark.parametrize("units", [True, False])
def test_auto_precision_is_bfloat16_on_cuda_and_on_a_cpu_with_units_only_where_it_pays(monkeypatch, units):
    """precision_for, the rule `auto` resolves by when a run starts, on a CPU with bfloat16 units and one without."""
    monkeypatch.setattr(engine.device, "cpu_has_bfloat16_units", lambda: units)
    cuda = torch.device("cuda")  # a device object only: nothing runs on it here
    monkeypatch.delenv("CON2_CPU_BF16")  # the product's default: the rule decides
    assert cpu_bfloat16_setting() == "auto"
    fast = "bfloat16" if units else "float32"
    assert precision_for(CPU, True, "resnet_small", 32, 128) == fast  # CIFAR-10's cells: 1.52×
    assert precision_for(CPU, True, "resnet_small", 32, 32) == fast  # the auto batch on photographs: 1.41×
    slow = [("resnet_small", 16, 32), ("resnet_small_s2", 28, 16), ("resnet_small", 32, 16), ("resnet_small", 28, 32)]
    slow += [("resnet_small_s2", 64, 64), ("resnet18", 64, 64)]  # resnet18: not measured on a CPU in bfloat16
    for encoder, size, batch in slow:
        assert precision_for(CPU, True, encoder, size, batch) == "float32", (encoder, size, batch)  # under 1.3×
    assert precision_for(CPU, False, "resnet_small", 32, 128) == "float32"  # amp off
    assert (
        precision_for(cuda, True, "resnet_small_s2", 16, 2) == "bfloat16"
        and precision_for(cuda, False, "x", 8, 2) == "float32"
    )
    monkeypatch.setenv("CON2_CPU_BF16", "1")  # a worker's opt-in: bfloat16 wherever the units are
    assert cpu_bfloat16_setting() == "on" and precision_for(CPU, True, "resnet_small_s2", 28, 16) == fast
    assert precision_for(CPU, False, "resnet_small", 32, 128) == "float32"
    monkeypatch.setenv("CON2_CPU_BF16", "0")  # and its opt-out (the unit tests' setting, tests/conftest.py)
    assert cpu_bfloat16_setting() == "off" and precision_for(CPU, True, "resnet_small", 32, 128) == "float32"
    assert precision_for(cuda, True, "resnet_small", 32, 128) == "bfloat16"  # the switch is the CPU's only


def test_a_model_runs_in_the_precision_its_run_recorded_and_an_unrecorded_one_in_the_rule_of_its_time(monkeypatch):
    cuda = torch.device("cuda")
    assert cpu_has_bfloat16_units() == BF16_UNITS
    for setting in ("0", "1", "auto"):  # what the machine says later does not change a recorded precision
        monkeypatch.setenv("CON2_CPU_BF16", setting)
        assert uses_bfloat16(CPU, True, "bfloat16") == BF16_UNITS  # emulated bf16 (4.5× slower) is not used
        assert uses_bfloat16(CPU, False, "bfloat16") == BF16_UNITS  # amp only guides `auto`
        assert uses_bfloat16(cuda, True, "bfloat16") and not uses_bfloat16(cuda, True, "float32")
        assert not uses_bfloat16(CPU, True, "float32")
        # a model saved before runs recorded it: on CUDA with amp, on a CPU only where the machine opts in
        assert uses_bfloat16(cuda, True, "auto") and not uses_bfloat16(cuda, False, "auto")
        assert uses_bfloat16(CPU, True, "auto") == (setting == "1" and BF16_UNITS)
        assert not uses_bfloat16(CPU, False, "auto")
    assert runs_in_bfloat16(CPU, TrainConfig(precision="bfloat16")) == BF16_UNITS
    assert not runs_in_bfloat16(CPU, TrainConfig(precision="float32"))
    # what the Runs table shows: the precision beside the device whenever it is not float32
    assert describe(CPU, True) == "cpu (bfloat16)" and describe(CPU, False) == "cpu"
    assert describe(cuda, True) == "cuda (bfloat16)" and describe(cuda, False) == "cuda"


def photographs(n: int, seed: int) -> torch.Tensor:
    """(n, 3, 32, 32) uint8 smooth colour images: blobs of random colours, different enough to rank."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g)
    return (torch.nn.functional.interpolate(coarse, size=32, mode="bilinear") * 255).to(torch.uint8)


def test_a_run_records_the_precision_auto_became_and_its_model_scores_in_it_whatever_the_machine_says_later(
    monkeypatch,
):
    """The precision is the run's, not the machine's: a model is scored as it trained, so the references stored
    with it (percentiles, thresholds) stay comparable with scores computed later, under any CON2_CPU_BF16."""
    bank, queries = photographs(40, 0), photographs(12, 1)
    monkeypatch.delenv("CON2_CPU_BF16")  # the product's default
    config = TrainConfig(encoder="resnet_small", epochs=1, batch_size=32, seed=0, device="cpu")
    trained = train(bank, config)
    assert trained.config.precision == ("bfloat16" if BF16_UNITS else "float32")  # 32 px, batch 32: where it pays
    assert trained.config.batch_size == 32 and trained.config.encoder == "resnet_small"
    score = ScoreConfig(tta=2, reference_size=10)
    scores = {}
    for setting in ("0", "1"):
        monkeypatch.setenv("CON2_CPU_BF16", setting)
        scores[setting] = score_images(trained, bank, queries, score, score_train=True)
    assert np.array_equal(scores["0"].s_nnd, scores["1"].s_nnd) and np.array_equal(scores["0"].s_lh, scores["1"].s_lh)
    assert np.array_equal(scores["0"].train_s_nnd, scores["1"].train_s_nnd)
    # and the other precision is another computation (bfloat16 rounds): the recorded one is the one that ran
    other = "float32" if trained.config.precision == "bfloat16" else "bfloat16"
    swapped = dataclasses.replace(trained, config=dataclasses.replace(trained.config, precision=other))
    rescored = score_images(swapped, bank, queries, score)
    if BF16_UNITS:
        assert not np.array_equal(rescored.s_nnd, scores["0"].s_nnd)
        assert np.corrcoef(rescored.s_nnd, scores["0"].s_nnd)[0, 1] > 0.9  # the same model, rounded
    else:  # without the units a bfloat16 model embeds in float32: the same computation
        assert np.array_equal(rescored.s_nnd, scores["0"].s_nnd)


@pytest.mark.skipif(not BF16_UNITS, reason="needs a CPU with bfloat16 units (AMX or AVX512_BF16)")
def test_on_a_cpu_with_bfloat16_units_the_forward_pass_runs_in_bfloat16_and_the_losses_in_float32(monkeypatch):
    monkeypatch.setenv("CON2_CPU_BF16", "1")
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(8, 16, generator=g), torch.randn(16, 16, generator=g)
    with autocast(CPU, True):
        assert torch.is_autocast_enabled("cpu")
        inside = x @ w
        z = torch.nn.functional.normalize(inside.float(), dim=1)
        loss = content_alignment_loss(z, 0.2)
    assert inside.dtype == torch.bfloat16 and loss.dtype == torch.float32
    assert torch.allclose(inside.float(), x @ w, rtol=0.05, atol=0.1)  # bfloat16's 8-bit mantissa
    assert float(loss) == pytest.approx(float(content_alignment_loss(z, 0.2)), rel=1e-6)


@pytest.mark.skipif(not BF16_UNITS, reason="needs a CPU with bfloat16 units (AMX or AVX512_BF16)")
def test_training_in_bfloat16_on_such_a_cpu_learns_as_float32_does(monkeypatch):
    """The shipped recipe on the demo's digits (normal 0, the engine's own split, scored plainly): bfloat16
    training learns about as well as float32 training. A three-epoch run is noisy in bfloat16 (seeds 0-2 differed
    from float32 by 0.005-0.011 on an AMX Xeon, and the figures move with the thread count), so this is a floor and
    a wide band; the quality suite measures the real difference (docs/quality.md, finding 22)."""
    loaded = load_data(DataConfig(source="digits", normal_label="0", image_size=16))
    targets = anomaly_targets(loaded.score.labels, "0")
    figures = {}
    for setting in ("0", "1"):
        monkeypatch.setenv("CON2_CPU_BF16", setting)
        trained = train(loaded.train.pixels, TrainConfig(epochs=3, batch_size=32, seed=0))
        assert all(np.isfinite(h["loss"]) for h in trained.history)
        bank, queries = embed(trained.model, loaded.train.pixels), embed(trained.model, loaded.score.pixels)
        scores = NNDScorer(1).fit(bank).anomaly_scores(queries, torch.as_tensor(loaded.score_in_train)).numpy()
        figures[setting] = auroc(targets, scores)
    assert figures["1"] >= 0.92 and abs(figures["1"] - figures["0"]) <= 0.05, figures


def test_autocast_is_nothing_at_all_without_bf16():
    a = torch.randn(8, 8, generator=torch.Generator().manual_seed(0))
    with autocast(CPU, False):
        assert not torch.is_autocast_enabled("cpu")
        inside = a @ a
    assert inside.dtype == torch.float32 and torch.equal(inside, a @ a)


def test_deterministic_sets_the_flags_inside_and_gives_back_the_process_own_after():
    cudnn = torch.backends.cudnn
    before = cudnn.deterministic, cudnn.benchmark, torch.get_float32_matmul_precision()

    @deterministic()
    def flags() -> tuple[bool, bool, str]:
        return cudnn.deterministic, cudnn.benchmark, torch.get_float32_matmul_precision()

    try:
        cudnn.deterministic, cudnn.benchmark = False, True
        torch.set_float32_matmul_precision("high")
        assert flags() == (True, False, "highest")
        assert (cudnn.deterministic, cudnn.benchmark, torch.get_float32_matmul_precision()) == (False, True, "high")
        with pytest.raises(RuntimeError, match="stop"), deterministic():
            raise RuntimeError("stop")
        assert (cudnn.deterministic, cudnn.benchmark, torch.get_float32_matmul_precision()) == (False, True, "high")
    finally:
        cudnn.deterministic, cudnn.benchmark = before[0], before[1]
        torch.set_float32_matmul_precision(before[2])


def test_on_the_cpu_a_feed_indexes_the_images_where_they_are(pixels):
    feed = BatchFeed(pixels, CPU, resident_share=0.3)
    assert not feed.streaming and feed.pixels is pixels and len(feed) == 10
    index = torch.tensor([3, 1, 7])
    assert torch.equal(feed.take(index), pixels[index])
    part = feed.take(slice(2, 6))
    assert torch.equal(part, pixels[2:6]) and part.data_ptr() == pixels[2].data_ptr()  # a view: nothing copied


def test_gather_copies_the_rows_of_an_index_or_a_slice(pixels):
    index = torch.tensor([9, 0, 0, 4])
    rows = gather(pixels, index, pinned=False)
    assert torch.equal(rows, pixels[index]) and rows.dtype == torch.uint8
    tail = gather(pixels, slice(8, 20), pinned=False)  # past the end, like a last batch
    assert torch.equal(tail, pixels[8:]) and tail.data_ptr() != pixels[8].data_ptr()
    assert gather(pixels, torch.tensor([], dtype=torch.long), pinned=False).shape == (0, 1, 4, 4)


def test_a_set_lives_on_the_device_only_within_its_share_of_free_memory():
    assert fits_on_device(30, 100, 0.3)
    assert not fits_on_device(31, 100, 0.3) and not fits_on_device(1, 100, 0.0)
