"""The instructor's demo, timed: the bundled digits with the CPU preset, trained, scored and projected.

Runs what the worker runs for a demo job (engine.run.train_run, then the UMAP projection of both contexts)
in this process, and prints one JSON object: seconds per phase (the UMAP import, numba's compilation
included, as a fresh worker pays it), AUROC, and L_content per epoch against its chance level log(V − 1),
V = views in a batch, so a reader sees whether the content head learned during the run.

    python benchmarks/demo_time.py                 # normal digit 0, the CPU preset
    python benchmarks/demo_time.py --normal 8
"""

from __future__ import annotations

import engine  # noqa: F401  (first: it sets GOMP_SPINCOUNT)

# isort: split
import argparse
import dataclasses
import json
import time

from dashboard.charts import content_chance
from engine.presets import CPU, preset_config
from engine.projection import project
from engine.run import train_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--normal", default="0")
    args = parser.parse_args()
    config = preset_config(CPU, max_side=8, normal_label=args.normal)  # the source's default is the digits
    assert config.data.source == "digits"
    started = time.perf_counter()
    result = train_run(config)
    trained_s = time.perf_counter() - started
    project(result.scores.features, result.scores.context_features, "umap")
    total_s = time.perf_counter() - started
    train = result.trained.config  # as it trained: the preset's `auto` batch resolved on the images
    chance = content_chance(dataclasses.asdict(train))  # the level the Train page draws
    history = result.trained.history
    print(json.dumps({
        "config": {"image_size": config.data.image_size, **{k: getattr(train, k) for k in (
            "epochs", "batch_size", "views_per_context", "alpha_schedule")}, "tta": config.score.tta,
            "features": config.score.features},
        "n_train": len(result.bank), "n_scored": len(result.scored),
        "train_s": round(result.trained.wall_s, 1), "score_s": round(result.scores.wall_s, 1),
        "train_and_score_s": round(trained_s, 1), "with_umap_s": round(total_s, 1),
        "auroc_nnd": result.metrics.get("auroc_nnd"), "auroc_lh": result.metrics.get("auroc_lh"),
        "auroc_pixels": result.metrics.get("auroc_pixels"),
        "loss_content_chance": round(chance, 3),
        "loss_content_by_epoch": [round(h["loss_content"], 3) for h in history],
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
