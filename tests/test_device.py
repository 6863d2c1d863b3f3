"""engine.device, the one device, precision and determinism policy: its CPU paths.

The CUDA paths (bfloat16 autocast, pinned streaming) are in tests/test_gpu.py, which runs only where a GPU is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.config import DataConfig, TrainConfig
from engine.device import (
    BatchFeed,
    autocast,
    cpu_bfloat16_asked,
    cpu_has_bfloat16_units,
    describe,
    deterministic,
    fits_on_device,
    gather,
    resolve_device,
    uses_bfloat16,
)
from engine.embed import embed
from engine.loading import load_data
from engine.losses import content_alignment_loss
from engine.metrics import anomaly_targets, auroc
from engine.scoring import NNDScorer
from engine.train import train

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


def test_bfloat16_on_cuda_and_only_where_asked_on_a_cpu_with_bfloat16_units_and_only_with_amp(monkeypatch):
    cuda = torch.device("cuda")  # a device object only: nothing runs on it here
    assert uses_bfloat16(cuda, True) and not uses_bfloat16(cuda, False)
    assert cpu_has_bfloat16_units() == BF16_UNITS
    # tests/conftest.py keeps the CPU in float32 (CON2_CPU_BF16=0), as does the product by default
    assert not cpu_bfloat16_asked() and not uses_bfloat16(CPU, True) and not uses_bfloat16(CPU, False)
    monkeypatch.delenv("CON2_CPU_BF16")
    assert not cpu_bfloat16_asked() and not uses_bfloat16(CPU, True)
    monkeypatch.setenv("CON2_CPU_BF16", "1")  # a server's opt-in: then the hardware decides
    assert uses_bfloat16(CPU, True) == BF16_UNITS and not uses_bfloat16(CPU, False)
    assert uses_bfloat16(cuda, True)  # the switch is the CPU's only
    # what the Runs table shows: the precision beside the device whenever it is not float32
    assert describe(CPU, True) == ("cpu (bfloat16)" if BF16_UNITS else "cpu") and describe(CPU, False) == "cpu"
    assert describe(cuda, True) == "cuda (bfloat16)" and describe(cuda, False) == "cuda"


@pytest.mark.skipif(not BF16_UNITS, reason="needs a CPU with bfloat16 units (AMX or AVX512_BF16)")
def test_on_a_cpu_with_bfloat16_units_the_forward_pass_runs_in_bfloat16_and_the_losses_in_float32(monkeypatch):
    monkeypatch.setenv("CON2_CPU_BF16", "1")
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(8, 16, generator=g), torch.randn(16, 16, generator=g)
    with autocast(CPU, amp=True):
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


def test_autocast_on_the_cpu_leaves_float32_alone_even_with_amp():
    a = torch.randn(8, 8, generator=torch.Generator().manual_seed(0))
    with autocast(CPU, amp=True):
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
