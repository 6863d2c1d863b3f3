"""Where the engine computes and in which precision: one policy for training, embedding and scoring.

- **Device.** `resolve_device`: "auto" is CUDA when present, else the CPU; "cuda" without a GPU is an error.
- **Precision.** `autocast`: bfloat16 autocast on CUDA when the config's `amp` is on. On the CPU float32,
  unless the machine is set up with `CON2_CPU_BF16=1` and its CPU has bfloat16 units (Intel AMX: Xeon
  Sapphire Rapids and later; or AVX512_BF16: AMD Zen 4 and later). On an AMX Xeon the training step of the
  time ran 1.5× faster at 28 and 32 px, but the suite's AUROCs came out a little lower on three of four
  tasks (docs/quality.md, finding 22); on an AVX512_BF16 EPYC the step gains 1.52× at 32 px and batch 128 and
  nothing on the scans' two-stage step at batch 16 (finding 41). So it is a server's opt-in, not the default
  (the setting is the machine's, read whenever a model embeds, so a default would re-score models trained in
  float32); on a CPU without the units bfloat16 is 4.5× slower (finding 11) and the switch does nothing. (The
  unit tests set CON2_CPU_BF16=0 explicitly, as they hide GPUs, so a machine's environment cannot change what
  they compute.) Only the model's forward pass runs under it:
  views are built before it (the augmentations in float32) and the losses after it, in float32
  (`engine.losses` casts its inputs; bf16's 8-bit mantissa would blur the logits).
- **Determinism.** `deterministic`: cuDNN's deterministic algorithms without autotuning, and float32
  matmuls in full float32 (no TF32), for the length of a training or scoring call. On the CPU none of
  these change a result, and a seeded run is bit-identical run to run.
- **Batches.** `BatchFeed`: uint8 images to the device a batch at a time, resident on the GPU when they
  fit, else each batch gathered into pinned memory and copied asynchronously.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator

import torch


def resolve_device(name: str | torch.device) -> torch.device:
    """auto → CUDA when present, else CPU; asking for CUDA without one is an error."""
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but no CUDA GPU is available; use 'auto' or 'cpu'")
    return device


@functools.cache  # the hardware does not change, and `autocast` asks on every training step and embedding batch
def cpu_has_bfloat16_units() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware: AMX tiles (Intel Xeon Sapphire Rapids and later) or
    AVX-512's bf16 dot product (AVX512_BF16: AMD Zen 4 and later, Intel Cooper Lake). oneDNN's bf16
    convolutions use either; on a 2-core AMD EPYC with AVX512_BF16 and no AMX the one-view step at 32 px and
    batch 128 ran 1.52× faster in bf16 (docs/quality.md, finding 41). Without either, bf16 is emulated and
    4.5× slower (finding 11). (torch's probes are private, so their absence in another release reads as no.)"""
    probes = (getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))
    return any(probe is not None and probe() for probe in probes)


def cpu_bfloat16_asked() -> bool:
    """Whether this machine is set up to train and score in bfloat16 on its CPU: CON2_CPU_BF16=1."""
    return os.environ.get("CON2_CPU_BF16", "0").strip().lower() in ("1", "on", "true", "yes")


def uses_bfloat16(device: torch.device, amp: bool) -> bool:
    """Whether `autocast(device, amp)` runs the forward pass in bfloat16: amp asked for, on CUDA, or on a CPU
    with bfloat16 units where CON2_CPU_BF16=1."""
    if not amp:
        return False
    return device.type == "cuda" or (device.type == "cpu" and cpu_bfloat16_asked() and cpu_has_bfloat16_units())


def describe(device: torch.device, amp: bool) -> str:
    """The device as the Runs table shows it, with the precision when it is not float32: "cpu",
    "cpu (bfloat16)", "cuda:0 (bfloat16)"."""
    return f"{device} (bfloat16)" if uses_bfloat16(device, amp) else str(device)


def autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    """The context for a model's forward pass: bfloat16 autocast where `uses_bfloat16`, else nothing at all."""
    if uses_bfloat16(device, amp):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def without_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast off inside, for the losses: their similarities stay float32 even when a caller autocasts."""
    return torch.autocast(device.type, enabled=False)


@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    """cuDNN deterministic and not autotuned, float32 matmuls in float32, inside the block (or decorated call).

    The process's own settings come back after it. Autotuning would pick algorithms per input shape (the
    last, smaller batch of an epoch; every embedding batch size), some of them non-deterministic; TF32
    would make the losses' float32 similarities 10-bit. Not `torch.use_deterministic_algorithms`: it
    refuses some CUDA ops outright and needs an environment variable set before cuBLAS starts.
    """
    cudnn = torch.backends.cudnn
    saved = cudnn.deterministic, cudnn.benchmark, torch.get_float32_matmul_precision()
    cudnn.deterministic, cudnn.benchmark = True, False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        cudnn.deterministic, cudnn.benchmark = saved[0], saved[1]
        torch.set_float32_matmul_precision(saved[2])


Rows = torch.Tensor | slice  # a (B,) long index or a slice of the first dimension


def gather(pixels: torch.Tensor, rows: Rows, *, pinned: bool) -> torch.Tensor:
    """pixels[rows] as a new tensor on pixels' device (the CPU when pinned), in pinned memory when `pinned`."""
    if isinstance(rows, slice):
        part = pixels[rows]  # a view: nothing copied yet
        return torch.empty(part.shape, dtype=part.dtype, device=part.device, pin_memory=pinned).copy_(part)
    rows = rows.to(pixels.device)
    out = torch.empty((rows.numel(), *pixels.shape[1:]), dtype=pixels.dtype, device=pixels.device, pin_memory=pinned)
    return torch.index_select(pixels, 0, rows, out=out)


def fits_on_device(nbytes: int, free_bytes: int, share: float) -> bool:
    """Whether a set of `nbytes` may live on the device: at most `share` of its free memory."""
    return nbytes <= share * free_bytes


class BatchFeed:
    """uint8 images (N, C, S, S) on their way to `device`, one batch at a time (`take`).

    On the CPU a batch is indexed from the images as they are (a slice is a view). On CUDA the whole set is
    copied to the GPU once when it takes at most `resident_share` of the free memory (0: never), and batches
    are indexed there. Otherwise it streams: each batch is gathered into a fresh pinned buffer and copied
    with non_blocking=True, so the copy overlaps the GPU's work. A copy from pageable memory would wait for
    the GPU; pinning the whole set would double its host memory (pin_memory copies) and still index a
    pageable result. PyTorch's caching host allocator keeps a pinned buffer from reuse until the copy out
    of it has finished (it records an event on the stream), so no buffer is overwritten while in flight.
    """

    def __init__(self, pixels: torch.Tensor, device: torch.device, *, resident_share: float = 0.0) -> None:
        self.device = device
        to_gpu = device.type == "cuda" and pixels.device.type == "cpu"
        self.streaming = to_gpu and not _fits_on_gpu(pixels, device, resident_share)
        self.pixels = pixels if self.streaming else pixels.to(device)  # on the CPU: the same tensor, no copy

    def __len__(self) -> int:
        return self.pixels.shape[0]

    def take(self, rows: Rows) -> torch.Tensor:
        """(B, C, S, S) uint8 on the device: the images at `rows`."""
        if self.streaming:
            return gather(self.pixels, rows, pinned=True).to(self.device, non_blocking=True)
        if isinstance(rows, torch.Tensor):
            rows = rows.to(self.pixels.device)
        return self.pixels[rows]


def _fits_on_gpu(pixels: torch.Tensor, device: torch.device, share: float) -> bool:
    if share <= 0:
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return fits_on_device(pixels.numel() * pixels.element_size(), free, share)
