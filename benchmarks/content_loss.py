"""Does L_content leave its chance level within the demo's schedule? One short run per setting, on the digits.

For each JSON object of TrainConfig overrides (laid over the CPU preset's 60 epochs, batch 32, at 16 px), the
epoch-mean L_content every 6 epochs and at the end, its chance level log(V − 1) (V views a batch, as the Train page
draws it: dashboard.charts.content_chance), and the S_NND AUROC of the run (the engine's default scoring).

    python benchmarks/content_loss.py --normal 0 '{"context_weight": 1.0}' '{}'

Prints one JSON line per setting. docs/quality.md (finding 14) quotes its figures.
"""

import engine  # noqa: F401  (first: it sets GOMP_SPINCOUNT)

# isort: split
import argparse
import dataclasses
import json

import torch

from dashboard.charts import content_chance
from engine.config import DataConfig, ScoreConfig, TrainConfig, build
from engine.loading import load_data
from engine.metrics import anomaly_targets, auroc
from engine.train import train
from engine.tta import score_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--normal", default="0")
    parser.add_argument("settings", nargs="*", default=["{}"], help="TrainConfig overrides as JSON objects")
    args = parser.parse_args()
    loaded = load_data(DataConfig(source="digits", normal_label=args.normal, image_size=16, holdout_fraction=0.3))
    targets = anomaly_targets(loaded.score.labels, args.normal)
    for setting in args.settings:
        config = build(TrainConfig, {"epochs": 60, "batch_size": 32, **json.loads(setting)})
        torch.manual_seed(config.seed)
        trained = train(loaded.train.pixels, config)
        content = [round(epoch["loss_content"], 2) for epoch in trained.history]
        # the level the Train page draws, for this method and a batch capped at the training images
        chance = content_chance(dataclasses.asdict(config) | {"n_train": len(loaded.train)})
        scores = score_images(
            trained, loaded.train.pixels, loaded.score.pixels, ScoreConfig(), query_in_bank=loaded.score_in_train,
            score_train=False,
        )  # fmt: skip
        print(json.dumps({
            "train": json.loads(setting), "chance": round(chance, 2),
            "content_every_6_epochs": content[::6], "content_last": content[-1],
            "auroc_nnd": round(100 * auroc(targets, scores.s_nnd), 1),
        }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
