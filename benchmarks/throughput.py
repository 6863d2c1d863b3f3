"""Training throughput: the engine's batched tensor augmentations against a per-image PIL + DataLoader pipeline.

Both pipelines build the same 4N Con2 views of N original images, [t(x), t'(x), t(x^c), t'(x^c)],
and feed the same model step (Con2Model, L_context + α·L_content, AdamW) as engine training:

- tensor (the engine): the uint8 training set lives on the device; a step indexes a batch there and
  runs `engine.augment.con2_views` on it (context, two draws of T, normalisation, all batched).
- PIL (the straightforward baseline): a torch `Dataset` whose `__getitem__` takes one PIL image,
  makes its context image with `ImageOps` (invert / flip / equalize) and applies two torchvision
  SimCLR pipelines (RandomResizedCrop, RandomHorizontalFlip, RandomApply(ColorJitter(0.4, 0.4, 0.4,
  0.1), p=0.8), RandomGrayscale(0.2), ToTensor, Normalize(0.5, 0.5); plus GaussianBlur p=0.5 at
  ≥ 64 px, as the engine's T) to the original and to the context image: 4 views per image, batched
  by a `DataLoader` (num_workers 0 and 2 by default; pin_memory on CUDA) and copied to the device.

Measured per setting: (a) augmentation only (views delivered on the device, no model) and (b) full
training steps. Throughput is original images per second (each makes 4 views). Warm-up steps are
excluded; pipelines are measured in interleaved rounds and the median round is reported, so a
change in background load hits every pipeline alike; the ratios tensor/PIL are the numbers to
compare. Runs on CUDA when present (`--device auto`).

    python benchmarks/throughput.py                         # the CPU settings
    python benchmarks/throughput.py --settings gpu --workers 0,2,8   # on a GPU machine

Prints one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import engine  # noqa: F401  (first: it sets GOMP_SPINCOUNT, which only works before torch loads)

# isort: split
import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset, RandomSampler
from torchvision import transforms as T

from engine.augment import ContentAugmentation, con2_views
from engine.device import autocast, precision_for, resolve_device, uses_bfloat16
from engine.losses import content_alignment_loss, context_contrasting_loss
from engine.model import Con2Model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "breastmnist.npz"
ALPHA = 0.5  # any α costs the same; mid-schedule value
TEMPERATURE = 0.2


@dataclass(frozen=True)
class Setting:
    name: str
    image_size: int
    encoder: str
    batch_size: int


SETTINGS = {
    "cpu": (
        Setting("BreastMNIST 28 px, resnet_small, batch 64", 28, "resnet_small", 64),
        Setting("BreastMNIST at 64 px, resnet_small, batch 64", 64, "resnet_small", 64),
        Setting("BreastMNIST at 32 px, resnet18, batch 64", 32, "resnet18", 64),
    ),
    "gpu": (
        Setting("BreastMNIST 28 px, resnet_small, batch 64", 28, "resnet_small", 64),
        Setting("BreastMNIST at 32 px, resnet18, batch 512 (CIFAR-like)", 32, "resnet18", 512),
        Setting("BreastMNIST at 224 px, resnet18, batch 64 (paper)", 224, "resnet18", 64),
    ),
}

# ---------------------------------------------------------------------------------------------- pipelines

PIL_CONTEXT: dict[str, Callable[[Image.Image], Image.Image]] = {
    "invert": ImageOps.invert,
    "flip": ImageOps.flip,
    "equalize": ImageOps.equalize,
}


def simclr_transform(image_size: int) -> T.Compose:
    """torchvision's SimCLR pipeline with the engine's strengths (engine.augment.ContentAugmentation)."""
    steps: list = [
        T.RandomResizedCrop(image_size, scale=(0.08, 1.0) if image_size >= 64 else (0.2, 1.0), antialias=True),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
    ]
    if image_size >= 64:  # the engine blurs only from 64 px on; same kernel width rule (≈ 10 % of the side, odd)
        kernel = max(3, int(0.1 * image_size) // 2 * 2 + 1)
        steps.append(T.RandomApply([T.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=0.5))
    steps += [T.ToTensor(), T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))]
    return T.Compose(steps)


class PilCon2Views(Dataset):
    """Per item: the original's and its context image's two SimCLR views, (4, 3, S, S) float."""

    def __init__(self, images: np.ndarray, context: str, image_size: int) -> None:
        self.images = images  # (N, S, S) uint8 greyscale or (N, S, S, 3)
        self.context = PIL_CONTEXT[context]
        self.transform = simclr_transform(image_size)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = Image.fromarray(self.images[index]).convert("RGB")
        context = self.context(image)
        t = self.transform
        return torch.stack([t(image), t(image), t(context), t(context)])


def pil_batches(dataset: PilCon2Views, batch_size: int, workers: int, device: torch.device) -> Iterator[torch.Tensor]:
    """Endless batches of 4N views on the device, in the engine's layout (4N, 3, S, S)."""
    sampler = RandomSampler(dataset, replacement=True, num_samples=10**9)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
    )
    for batch in loader:  # (N, 4, 3, S, S)
        views = batch.to(device, non_blocking=True).transpose(0, 1).flatten(0, 1)  # (4N, 3, S, S): view-major
        yield views.contiguous(memory_format=torch.channels_last)


def tensor_batches(pixels: torch.Tensor, context: str, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
    """Endless batches of 4N views made on the device by the engine (as `engine.train` does)."""
    data = pixels.to(device)
    augmentation = ContentAugmentation(pixels.shape[-1])
    generator = torch.Generator(device=device).manual_seed(0)
    index_generator = torch.Generator().manual_seed(0)
    while True:
        index = torch.randint(len(data), (batch_size,), generator=index_generator).to(device)
        views = con2_views(data[index], context, augmentation, generator)
        yield views.contiguous(memory_format=torch.channels_last)


# ------------------------------------------------------------------------------------------------ timing


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class ModelStep:
    """One engine training step on given views: forward, Con2 loss, backward, AdamW, in the precision a run of this
    setting would record on this machine (`auto`: bfloat16 on CUDA, and on a CPU with bfloat16 units where it pays)."""

    def __init__(self, setting: Setting, device: torch.device) -> None:
        torch.manual_seed(0)
        self.model = Con2Model(setting.encoder, setting.image_size).to(device, memory_format=torch.channels_last)
        self.model.train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3, weight_decay=1e-3)
        self.device = device
        precision = precision_for(device, True, setting.encoder, setting.image_size, setting.batch_size)
        self.bf16 = uses_bfloat16(device, True, precision)

    def __call__(self, views: torch.Tensor) -> None:
        with autocast(self.device, self.bf16):  # the engine's policy: the forward pass only
            out = self.model(views)
        loss = context_contrasting_loss(out.z_context, TEMPERATURE)
        loss = loss + ALPHA * content_alignment_loss(out.z_content, TEMPERATURE)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        loss.item()  # the engine reads the loss every step, which waits for the GPU


def images_per_s(
    batches: Iterator[torch.Tensor], step: Callable[[torch.Tensor], None] | None, setting: Setting, args, device
) -> float:
    """Original images per second over `args.steps` steps after `args.warmup` untimed ones."""
    for _ in range(args.warmup):
        views = next(batches)
        if step is not None:
            step(views)
    synchronize(device)
    started = time.perf_counter()
    for _ in range(args.steps):
        views = next(batches)
        if step is not None:
            step(views)
    synchronize(device)
    return args.steps * setting.batch_size / (time.perf_counter() - started)


def measure(setting: Setting, pixels: torch.Tensor, args: argparse.Namespace, device: torch.device) -> dict:
    """Both measurements of one setting, pipelines interleaved over `args.rounds` rounds."""
    grey = pixels[:, 0].numpy() if pixels.shape[1] == 1 else pixels.permute(0, 2, 3, 1).numpy()
    dataset = PilCon2Views(grey, args.context, setting.image_size)
    model_step = ModelStep(setting, device)
    pipelines: dict[str, Callable[[], Iterator[torch.Tensor]]] = {
        "tensor": lambda: tensor_batches(pixels, args.context, setting.batch_size, device)
    }
    for workers in args.workers:
        pipelines[f"pil_workers_{workers}"] = lambda w=workers: pil_batches(dataset, setting.batch_size, w, device)
    out = {}
    for phase, step in (("augment_only", None), ("train_step", model_step)):
        rounds: dict[str, list[float]] = {name: [] for name in pipelines}
        for r in range(args.rounds):
            for name, make in pipelines.items():
                batches = make()
                rate = images_per_s(batches, step, setting, args, device)
                batches.close()  # shuts a DataLoader's workers down before the next pipeline runs
                rounds[name].append(rate)
                print(
                    f"{setting.name} | {phase} | round {r + 1} | {name}: {rate:.0f} img/s", file=sys.stderr, flush=True
                )
        medians = {name: statistics.median(values) for name, values in rounds.items()}
        result = {"images_per_s": medians, "rounds": rounds}
        result["ratio_tensor_over"] = {
            name: medians["tensor"] / medians[name] for name in pipelines if name != "tensor"
        }  # > 1: the engine's pipeline is faster
        # the ratio within each round too: both pipelines of a round ran under the same background load
        result["ratio_per_round"] = {
            name: [t / p for t, p in zip(rounds["tensor"], rounds[name], strict=True)]
            for name in pipelines
            if name != "tensor"
        }
        out[phase] = result
    return out


def load_pixels(path: Path, image_size: int) -> tuple[torch.Tensor, str]:
    """BreastMNIST's normal train images at `image_size`, (N, 1, S, S) uint8; random images if it is absent."""
    if path.exists():
        from engine.config import DataConfig
        from engine.loading import load_data

        loaded = load_data(DataConfig(source=str(path), normal_label="1", image_size=image_size))
        return loaded.train.pixels, f"{path.name}: {len(loaded.train)} normal train images"
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (399, 1, image_size, image_size), dtype=torch.uint8, generator=generator)
    return pixels, "random uint8 images (BreastMNIST not found)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--settings", choices=tuple(SETTINGS), help="default: gpu on CUDA, else cpu")
    parser.add_argument("--only", help="comma-separated indices of the settings to run (e.g. 0,1)")
    parser.add_argument("--workers", default="0,2", help="DataLoader num_workers values for the PIL pipeline")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before each measurement")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the median is reported")
    parser.add_argument("--context", default="invert", choices=tuple(PIL_CONTEXT))
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, help="torch intra-op threads of the main process (default: torch's)")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args(argv)
    args.workers = [int(w) for w in args.workers.split(",") if w.strip()]
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    settings = SETTINGS[args.settings or ("gpu" if device.type == "cuda" else "cpu")]
    if args.only:
        settings = tuple(settings[int(i)] for i in args.only.split(","))

    started = time.perf_counter()
    results = []
    for setting in settings:
        pixels, data = load_pixels(args.data, setting.image_size)
        t0 = time.perf_counter()
        measured = measure(setting, pixels, args, device)
        results.append({**asdict(setting), "data": data, **measured, "wall_s": time.perf_counter() - t0})
    machine = {
        "device": str(device) if device.type == "cpu" else f"cuda ({torch.cuda.get_device_name(device)})",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }
    report = {
        "benchmark": "throughput",
        "unit": "original images per second (4 views each); median of interleaved rounds",
        "machine": machine,
        "protocol": {k: getattr(args, k) for k in ("warmup", "steps", "rounds", "workers", "context")},
        "settings": results,
        "total_s": time.perf_counter() - started,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
