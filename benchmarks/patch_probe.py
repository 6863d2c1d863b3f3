"""Does patch-level nearest-neighbour scoring rank anomalies better than the whole-image grid features?

PatchCore-style: every spatial position of the encoder's layer-2 map (and layer 3's, upsampled to it), averaged
over its 3 × 3 neighbourhood, is a patch; the training images' patches are the bank (a seeded 60,000 when there are
more); a scored image's patch distance is the cosine distance to its nearest bank patch, from any position ("any")
or only from the same position and its 8 neighbours ("pos"); the image's score is the max, the mean of the top 3,
or the mean over its patches. Beside it, the grid features the product scores (`Con2Model.features("grid")`,
S_NND: cosine, k = 1).
Each with the training batch-norm statistics and with statistics re-estimated on the training images ("bn_"), for
the encoder at random initialisation and after training with the shipped recipe (TrainConfig defaults). No TTA.

    python benchmarks/patch_probe.py --data ../shared/data/breastmnist.npz --normal 1 --image-size 28 \\
        --epochs 120 --batch-size 64 --seeds 0

A line of JSON per encoder. docs/quality.md (finding 21) quotes it.
"""

from __future__ import annotations

import engine  # noqa: F401  (first: it sets GOMP_SPINCOUNT)

# isort: split
import argparse
import json
import time

import torch
import torch.nn.functional as F

from engine import batchnorm
from engine.augment import normalize, to_float
from engine.baseline import pixel_nnd_scores
from engine.config import DataConfig, TrainConfig, build
from engine.encoder_choice import resolve_encoder
from engine.loading import LoadedData, load_data
from engine.metrics import anomaly_targets, auroc
from engine.model import GRID, Con2Model
from engine.scoring import NNDScorer
from engine.train import train

BANK_LIMIT = 60_000


@torch.no_grad()
def layer_maps(model: Con2Model, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Layer 2 and layer 3 outputs of the encoder: (N, C2, H, W), (N, C3, H/2, W/2)."""
    net, second, third = model.encoder, [], []
    for start in range(0, len(pixels), 256):
        x = normalize(to_float(pixels[start : start + 256]))
        h2 = net.layer2(net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(x))))))
        second.append(h2)
        third.append(net.layer3(h2))
    return torch.cat(second), torch.cat(third)


def patch_map(layer2: torch.Tensor, layer3: torch.Tensor, layers: str) -> torch.Tensor:
    """Each position's 3 × 3 neighbourhood average: layer 2 alone ("l2") or with layer 3 upsampled ("l23")."""
    patches = F.avg_pool2d(layer2, 3, 1, 1)
    if layers == "l23":
        up = F.interpolate(F.avg_pool2d(layer3, 3, 1, 1), size=layer2.shape[-2:], mode="bilinear", align_corners=False)
        patches = torch.cat([patches, up], 1)
    return patches


def nearest(queries: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """Each query's distance to its nearest bank row: S_NND's cosine search (engine/scoring.py), as the chord
    √(2 − 2 cos) between unit vectors, so that the mean and top-3 scores average distances, not similarities."""
    similarity = -NNDScorer(1).fit(bank).anomaly_scores(queries)
    return (2 - 2 * similarity).clamp_min(0).sqrt()


def patch_distances(bank_maps: torch.Tensor, scored_maps: torch.Tensor, positional: bool) -> torch.Tensor:
    """(N_scored, H · W): each scored patch's distance to its nearest training patch."""
    n, c, h, w = bank_maps.shape
    if positional:
        padded = F.pad(bank_maps, (1, 1, 1, 1), mode="replicate")
        out = torch.empty(len(scored_maps), h, w)
        for i in range(h):
            for j in range(w):
                bank = padded[:, :, i : i + 3, j : j + 3].permute(0, 2, 3, 1).reshape(-1, c)
                out[:, i, j] = nearest(scored_maps[:, :, i, j], bank)
        return out.flatten(1)
    bank = bank_maps.permute(0, 2, 3, 1).reshape(-1, c)
    if len(bank) > BANK_LIMIT:
        bank = bank[torch.randperm(len(bank), generator=torch.Generator().manual_seed(0))[:BANK_LIMIT]]
    return nearest(scored_maps.permute(0, 2, 3, 1).reshape(-1, c), bank).view(len(scored_maps), h * w)


def readings(model: Con2Model, loaded: LoadedData, targets) -> dict[str, float]:
    model.eval()
    row: dict[str, float] = {}

    def percent(scores: torch.Tensor) -> float:
        return round(100 * auroc(targets, scores.numpy()), 1)

    for tag, stats in (("", None), ("bn_", batchnorm.estimate(model.encoder, loaded.train.pixels))):
        with batchnorm.using(model.encoder, stats):
            bank2, bank3 = layer_maps(model, loaded.train.pixels)
            scored2, scored3 = layer_maps(model, loaded.score.pixels)
        grid = (F.adaptive_avg_pool2d(m, GRID).flatten(1) for m in (bank2, scored2))
        row[f"{tag}grid"] = percent(nearest(*reversed(list(grid))))
        for layers in ("l2", "l23"):
            bank, scored = patch_map(bank2, bank3, layers), patch_map(scored2, scored3, layers)
            for positional in (False, True):
                d = patch_distances(bank, scored, positional)
                name = f"{tag}{layers}_{'pos' if positional else 'any'}"
                row[f"{name}_max"] = percent(d.max(1).values)
                row[f"{name}_top3"] = percent(d.topk(3, 1).values.mean(1))
                row[f"{name}_mean"] = percent(d.mean(1))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--normal", required=True)
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--epochs", type=int, default=120, help="0: the random encoder only")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seeds", default="0")
    args = parser.parse_args()
    loaded = load_data(DataConfig(source=args.data, normal_label=args.normal, image_size=args.image_size))
    if (loaded.score_in_train >= 0).any():
        raise SystemExit("the scored images overlap the training images; this probe needs a held-out split")
    targets = anomaly_targets(loaded.score.labels, args.normal)
    print(json.dumps({"floor": round(100 * auroc(targets, pixel_nnd_scores(loaded)), 1), "n_train": len(loaded.train)}))
    for seed in (int(s) for s in args.seeds.split(",")):
        config = build(TrainConfig, {"epochs": max(args.epochs, 1), "batch_size": args.batch_size, "seed": seed})
        config = resolve_encoder(config, loaded.train.pixels)  # `auto` → the encoder train() would build
        torch.manual_seed(seed)
        model = Con2Model(config.encoder, args.image_size, config.projection_dim)
        print(json.dumps({"encoder": "random", "seed": seed, **readings(model, loaded, targets)}), flush=True)
        if args.epochs:
            started = time.perf_counter()
            trained = train(loaded.train.pixels, config)
            seconds = round(time.perf_counter() - started, 1)
            print(json.dumps({"encoder": "trained", "seed": seed, "train_s": seconds,
                              **readings(trained.model, loaded, targets)}), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
