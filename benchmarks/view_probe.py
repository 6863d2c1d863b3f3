"""Which test-time views and batch-norm statistics rank best? Train once, then score one model many ways.

For one trained encoder (no TTA unless said), S_NND / S_LH AUROC of:
- x against the plain bank, x^c against the context bank, and their mean (the engine's `tta_augment = false`,
  A = 2), each on the grid and the pooled features, with the training batch-norm statistics and with statistics
  re-estimated per context (`ScoreConfig.batchnorm = per_context`);
- with `--views N`: each of N augmented views (the paper's TTA draws, same t for bank and query) on its own, and
  their mean, to see whether augmentation averages noise away or adds it.

    python benchmarks/view_probe.py --data ../shared/data/breastmnist.npz --normal 1 --size 28 \\
        --train '{"epochs": 120, "batch_size": 64}' --views 8
    python benchmarks/view_probe.py --data digits --normal 8 --size 16 --train '{"epochs": 60, "batch_size": 32}'

Prints one JSON object: "floor" (raw-pixel 1-NN), then per "statistics/features" the AUROCs (%) as
[x S_NND, x S_LH, x^c S_NND, x^c S_LH, mean S_NND, mean S_LH]. docs/quality.md quotes its figures.
"""

import engine  # noqa: F401  (first: it sets GOMP_SPINCOUNT)

# isort: split
import argparse
import json
import time

import torch

from engine import batchnorm
from engine.augment import ContentAugmentation
from engine.baseline import pixel_nnd_scores
from engine.config import DataConfig, TrainConfig, build
from engine.embed import embed
from engine.loading import load_data
from engine.metrics import anomaly_targets, auroc
from engine.scoring import LHScorer, NNDScorer
from engine.train import train


def pct(targets, scores: torch.Tensor) -> float:
    return round(100 * auroc(targets, scores.numpy()), 1)


def both_scores(model, bank, queries, exclude, **view) -> tuple[torch.Tensor, torch.Tensor]:
    """S_NND and S_LH of the queries against the bank, both embedded the same way (`view`: embed's keywords)."""
    b, q = embed(model, bank, **view), embed(model, queries, **view)
    return (
        NNDScorer(1).fit(b).anomaly_scores(q, exclude).double(),
        LHScorer().fit(b).anomaly_scores(q, exclude).double(),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--normal", required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--holdout", type=float, default=0.3, help="share held out where the data has no splits")
    parser.add_argument("--train", default="{}", help="TrainConfig fields as a JSON object")
    parser.add_argument("--views", type=int, default=0, help="also score N augmented views one by one")
    args = parser.parse_args()

    data = DataConfig(source=args.data, normal_label=args.normal, image_size=args.size, holdout_fraction=args.holdout)
    loaded = load_data(data)
    targets = anomaly_targets(loaded.score.labels, args.normal)
    exclude = torch.as_tensor(loaded.score_in_train)
    config = build(TrainConfig, json.loads(args.train))
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    trained = train(loaded.train.pixels, config)
    model, context = trained.model.eval(), config.context
    out = {
        "data": args.data, "normal": args.normal, "train": json.loads(args.train),
        "train_s": round(time.perf_counter() - started, 1),
        "floor": pct(targets, torch.as_tensor(pixel_nnd_scores(loaded))),
    }  # fmt: skip
    bank, queries = loaded.train.pixels, loaded.score.pixels
    for statistics in ("training", "per_context"):
        for features in ("grid", "pooled"):
            row, total = [], None
            for view_context in (None, context):
                estimated = None
                if statistics == "per_context":
                    estimated = batchnorm.estimate(model.encoder, bank, context=view_context)
                with batchnorm.using(model.encoder, estimated):
                    nnd, lh = both_scores(model, bank, queries, exclude, context=view_context, features=features)
                row += [pct(targets, nnd), pct(targets, lh)]
                total = (nnd, lh) if total is None else (total[0] + nnd, total[1] + lh)
            out[f"{statistics}/{features}"] = row + [pct(targets, total[0]), pct(targets, total[1])]
    if args.views:
        augmentation = ContentAugmentation.from_config(config, args.size)
        generator = torch.Generator().manual_seed(1234)
        draws = [augmentation.sample(1, generator, "cpu") for _ in range(args.views)]
        for name, view_context in (("x", None), ("x^c", context)):
            each, total = [], 0
            for params in draws:
                nnd, _ = both_scores(
                    model, bank, queries, exclude, context=view_context, params=params, augmentation=augmentation,
                    features="grid",
                )  # fmt: skip
                each.append(pct(targets, nnd))
                total = total + nnd
            out[f"augmented {name}, grid: each view, mean"] = [each, pct(targets, total)]
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
