"""engine.device, the one device, precision and determinism policy: its CPU paths.

The CUDA paths (bfloat16 autocast, pinned streaming) are in tests/test_gpu.py, which runs only where a GPU is.
"""

from __future__ import annotations

import pytest
import torch

from engine.device import BatchFeed, autocast, deterministic, fits_on_device, gather, resolve_device, uses_bfloat16

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


def test_bfloat16_only_on_cuda_and_only_with_amp():
    cuda = torch.device("cuda")  # a device object only: nothing runs on it here
    assert uses_bfloat16(cuda, True)
    assert not uses_bfloat16(cuda, False) and not uses_bfloat16(CPU, True) and not uses_bfloat16(CPU, False)


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
