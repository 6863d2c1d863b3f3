"""Compute per CPU-minute: what one Con2 training step costs on this machine, and what makes it cheaper.

Variants of the same step (BreastMNIST images, Con2 views, L_context + α·L_content, AdamW), timed in
interleaved rounds so background load hits each alike; the median round is reported as original images/s
and as a ratio to the engine's own step (`engine`). Also a profile of the engine step by operator.

    python benchmarks/step_speed.py                    # 28 px, resnet_small, batch 64
    python benchmarks/step_speed.py --image-size 32 --rounds 5 --profile

Variants: `engine` (engine.train's step: channels-last, float32), `nchw` (contiguous memory), `bf16`
(CPU autocast to bfloat16), `compile` (torch.compile of the model), `threads1` (one intra-op thread),
`batch32` / `batch128` (per-image cost at other batch sizes), `s2` (resnet_small's first two stages alone, the
`auto` encoder on greyscale scans: engine/encoder_choice.py), `views1` (one view per context,
`TrainConfig.views_per_context = 1`: the new default's step; `engine` is 54863b9's, whose step code is
unchanged). Variants compose with `+`: `views1+bf16` is the one-view step under bfloat16 autocast. The model
runs under autocast and the losses in float32, as in `engine.train`. Prints one JSON object.
"""

from __future__ import annotations

import engine  # noqa: F401  (first: it sets GOMP_SPINCOUNT)

# isort: split
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from engine.augment import ContentAugmentation, con2_views
from engine.losses import content_alignment_loss, context_contrasting_loss
from engine.model import Con2Model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "breastmnist.npz"


def make_step(
    image_size: int,
    batch: int,
    *,
    channels_last: bool,
    bf16: bool,
    compile_model: bool,
    views: int = 2,
    encoder: str = "resnet_small",
):
    torch.manual_seed(0)
    model = Con2Model(encoder, image_size, 128)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if compile_model else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-3)
    augmentation = ContentAugmentation(image_size)
    generator = torch.Generator().manual_seed(0)

    def step(pixels: torch.Tensor) -> None:
        x = con2_views(pixels, "invert", augmentation, generator, views)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = forward(x)
        # the losses in float32, as engine.train computes them (engine.device.without_autocast)
        z_context, z_content = out.z_context.float(), out.z_content.float()
        loss = context_contrasting_loss(z_context, 0.2, views) + content_alignment_loss(z_content, 0.2, views)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default="engine,views1,nchw,bf16,compile,threads1,batch32,batch128")
    parser.add_argument("--profile", action="store_true", help="also print the engine step's top operators")
    args = parser.parse_args()
    images = np.load(DATA)["train_images"]
    pixels = torch.as_tensor(images)[:, None]  # (N, 1, 28, 28) uint8
    if args.image_size != pixels.shape[-1]:
        pixels = torch.nn.functional.interpolate(pixels.float(), size=args.image_size, mode="bilinear")
        pixels = pixels.round().clamp(0, 255).to(torch.uint8)
    threads = torch.get_num_threads()
    variants = {}
    for name in args.variants.split(","):
        parts = set(name.split("+"))  # variants compose: views1+bf16 is the one-view step under bf16 autocast
        batch = next((int(part.removeprefix("batch")) for part in parts if part.startswith("batch")), args.batch)
        step = make_step(args.image_size, batch, channels_last="nchw" not in parts, bf16="bf16" in parts,
                         compile_model="compile" in parts, views=1 if "views1" in parts else 2,
                         encoder="resnet_small_s2" if "s2" in parts else "resnet_small")  # fmt: skip
        variants[name] = (step, batch, 1 if "threads1" in parts else threads)
    rates: dict[str, list[float]] = {name: [] for name in variants}
    rng = np.random.default_rng(0)
    for step, batch, _ in variants.values():  # warm-up: compile, allocator, caches
        for _ in range(2):
            step(pixels[rng.choice(len(pixels), batch, replace=False)])
    for round_ in range(args.rounds):
        for name, (step, batch, n_threads) in variants.items():
            torch.set_num_threads(n_threads)
            started = time.perf_counter()
            for _ in range(args.steps):
                step(pixels[rng.choice(len(pixels), batch, replace=False)])
            rates[name].append(args.steps * batch / (time.perf_counter() - started))
        torch.set_num_threads(threads)
        print(f"round {round_ + 1}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in rates.items()), file=sys.stderr)
    median = {name: statistics.median(v) for name, v in rates.items()}
    out = {
        "setting": f"{args.image_size} px, resnet_small, batch {args.batch}, Con2 4 views, {threads} threads",
        "images_per_s": {k: round(v, 1) for k, v in median.items()},
        "ratio_to_engine": {k: round(v / median["engine"], 3) for k, v in median.items()} if "engine" in median else {},
        "rounds": args.rounds,
        "steps_per_round": args.steps,
    }
    if args.profile and "engine" in variants:
        step, batch, _ = variants["engine"]
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                step(pixels[rng.choice(len(pixels), batch, replace=False)])
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
        print(table, file=sys.stderr)
        out["profile_top"] = [
            {"op": e.key, "self_cpu_ms": round(e.self_cpu_time_total / 1000 / 3, 2)}
            for e in sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:12]
        ]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
