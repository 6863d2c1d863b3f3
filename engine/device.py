"""Where the engine computes and in which precision: one policy for training, embedding and scoring.

- **Device.** `resolve_device`: "auto" is CUDA when present, else the CPU; "cuda" without a GPU is an error.
- **Precision.** A run's forward passes run in the precision its config records (`TrainConfig.precision`,
  `runs_in_bfloat16`), in training and whenever its model embeds later, so a model is scored as it trained and its
  stored references (percentiles, thresholds) stay comparable. `auto` is resolved when the run starts, on the
  machine that trains it (`precision_for`): on CUDA bfloat16 with the config's `amp`; on a CPU with bfloat16 units
  (Intel AMX: Xeon Sapphire Rapids and later; AVX512_BF16: AMD Zen 4 and later) bfloat16 for the steps it speeds
  up by at least 1.3× at level AUROC, resnet_small at 32 px or more and batches of 32 or more (1.52× at 32 px
  and batch 128, 1.41× at batch 32; the recipe's CIFAR-10 cells level or better: docs/quality.md findings 41 and
  43), float32 for the rest (the scans' two-stage step at batch 16 gains 1.02×, the 16 px digits 1.18×). On a CPU
  without the units bfloat16 is emulated and 4.5× slower (finding 11), so `auto` is float32 there, and a model
  recorded as bfloat16 embeds in float32 there. A worker's CON2_CPU_BF16 overrides `auto` on its CPU: 1 makes it
  bfloat16 wherever the units are, 0 float32 (the unit tests set 0, as they hide GPUs, so a machine cannot change
  what they compute). A model saved before runs recorded their precision keeps the rule of its time: float32 on
  the CPU unless CON2_CPU_BF16=1. Only the model's forward pass runs in bfloat16: views are built before it (the
  augmentations in float32) and the losses after it, in float32 (`engine.losses` casts its inputs; bf16's 8-bit
  mantissa would blur the logits).
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
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # engine.config needs no torch; only the annotation reads it
    from engine.config import TrainConfig


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


def cpu_bfloat16_setting() -> str:
    """This worker's CON2_CPU_BF16: "on" (1, on, true, yes), "off" (0, off, false, no) or "auto" (unset, auto)."""
    raw = os.environ.get("CON2_CPU_BF16", "auto").strip().lower()
    if raw in ("1", "on", "true", "yes"):
        return "on"
    if raw in ("0", "off", "false", "no"):
        return "off"
    return "auto"


def cpu_bfloat16_pays(encoder: str, image_size: int, batch_size: int) -> bool:
    """Whether bfloat16 speeds this CPU training step up by at least 1.3× (issue 10's bar for adopting a speed-up
    at level AUROC), on a CPU with bfloat16 units: resnet_small at 32 px or more, 32 images a step or more
    (one-view step, AVX512_BF16 EPYC: 1.52× at batch 128, 1.41× at 32, 1.29× at 16; 1.18× at 16 px, 1.02× on the
    scans' two-stage encoder at 28 px and batch 16; docs/quality.md findings 41 and 43). resnet18 was not measured
    on a CPU in bfloat16, so `auto` keeps it in float32 there."""
    return encoder == "resnet_small" and image_size >= 32 and batch_size >= 32


def precision_for(device: torch.device, amp: bool, encoder: str, image_size: int, batch_size: int) -> str:
    """What TrainConfig.precision `auto` stands for on this machine: "bfloat16" or "float32". On CUDA bfloat16 when
    `amp`; on a CPU with bfloat16 units bfloat16 when `amp` and the step is one it pays on (`cpu_bfloat16_pays`),
    or everywhere when CON2_CPU_BF16=1; float32 otherwise, and always with CON2_CPU_BF16=0."""
    if not amp:
        return "float32"
    if device.type == "cuda":
        return "bfloat16"
    setting = cpu_bfloat16_setting()
    if setting == "off" or not cpu_has_bfloat16_units():
        return "float32"
    return "bfloat16" if setting == "on" or cpu_bfloat16_pays(encoder, image_size, batch_size) else "float32"


def uses_bfloat16(device: torch.device, amp: bool, precision: str = "auto") -> bool:
    """Whether a model whose run recorded `precision` (and `amp`) runs its forward passes on `device` in bfloat16.
    "bfloat16": on CUDA and on a CPU with bfloat16 units (elsewhere float32: emulated bfloat16 is 4.5× slower and
    differs from it by rounding alone). "float32": never. "auto", a config not resolved (a model saved before runs
    recorded their precision): the rule of its time, on CUDA with amp and on a CPU only with CON2_CPU_BF16=1."""
    hardware = device.type == "cuda" or (device.type == "cpu" and cpu_has_bfloat16_units())
    if precision == "bfloat16":
        return hardware
    if precision == "float32" or not amp:
        return False
    return device.type == "cuda" or (hardware and cpu_bfloat16_setting() == "on")


def runs_in_bfloat16(device: torch.device, config: TrainConfig) -> bool:
    """Whether the model of a run with this TrainConfig runs its forward passes in bfloat16 on `device`."""
    return uses_bfloat16(device, config.amp, config.precision)


def describe(device: torch.device, bf16: bool) -> str:
    """The device as the Runs table shows it, with the precision when it is not float32: "cpu",
    "cpu (bfloat16)", "cuda:0 (bfloat16)"."""
    return f"{device} (bfloat16)" if bf16 else str(device)


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """The context for a model's forward pass: bfloat16 autocast when `bf16` (`runs_in_bfloat16` says whether), else
    nothing at all."""
    if bf16:
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
