"""The largest slice of the paper's BreastMNIST cell that fits a time budget on one GPU (benchmarks/gpu_check.sh).

The paper's setting (App. C–D): 224 px (resize 256 → center crop 224), ResNet18, batch 64, AdamW lr 1e-3 with
cosine annealing, Con2 with invert, S_NND with TTA 40; 2048 epochs, about one GPU-hour. One timed epoch sets
how many fit in the budget; then a run with that many epochs (a complete, compressed cosine schedule) trains
and scores, and the JSON says how far it is from 2048.

    python benchmarks/paper_slice.py --data .gpu-data/breastmnist.npz --time-budget-s 300
"""

from __future__ import annotations

import engine  # noqa: F401  (first: it sets GOMP_SPINCOUNT)

# isort: split
import argparse
import dataclasses
import json
import sys
import time

from engine.config import RunConfig
from engine.presets import preset_config
from engine.run import train_run

PAPER_EPOCHS = 2048


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--time-budget-s", type=float, default=300)
    parser.add_argument("--tta", type=int, default=40)
    args = parser.parse_args()
    # the Paper preset (engine/presets.py): its method, not the CPU recipe's defaults (λ, views, scoring)
    paper = preset_config("paper", normal_label="1")
    data = dataclasses.replace(paper.data, source=args.data)

    def config(epochs: int, tta: int) -> RunConfig:
        train = dataclasses.replace(paper.train, epochs=epochs, checkpoint_every=10_000)
        return RunConfig(data, train, dataclasses.replace(paper.score, tta=tta))

    started = time.perf_counter()
    probe = train_run(config(1, 1))  # compiles kernels, measures an epoch and a plain scoring pass
    epoch_s = probe.trained.wall_s
    left = args.time_budget_s - (time.perf_counter() - started)
    score_s = probe.metrics["score_s"] * args.tta  # TTA scoring costs about A plain passes
    epochs = max(1, int((left - score_s) / (epoch_s * 1.05)))
    print(f"epoch {epoch_s:.1f} s; {left:.0f} s left → {epochs} epochs", file=sys.stderr, flush=True)
    result = train_run(config(epochs, args.tta))
    out = {
        "setting": f"BreastMNIST 224 px, resnet18, batch 64, con2/invert, TTA {args.tta}",
        "epochs": epochs,
        "paper_epochs": PAPER_EPOCHS,
        "epoch_s_first": epoch_s,
        **{k: result.metrics.get(k) for k in ("auroc_nnd", "auroc_lh", "auroc_pixels", "silhouette", "device")},
        "train_s": result.trained.wall_s,
        "score_s": result.scores.wall_s,
        "images_per_s": result.trained.images_per_s,
        "paper_auroc_nnd": 0.817,
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
