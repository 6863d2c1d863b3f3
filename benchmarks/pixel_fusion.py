"""Does adding the raw-pixel 1-NN distance to the trained encoder's score rank anomalies better than either?

Where the raw-pixel floor is high (BreastMNIST 70.6) and the trained encoder sits near it, the two might err on
different images, and a sum might clear both. Each score is put on the scale of its own normal data first: minus the
mean, over the standard deviation, of the same score's leave-one-out values on the training images (`z`), or as
the fraction of those it exceeds (`pct`); no label is used. The recipe trains as a quality-suite cell does
(benchmarks/quality.py: the task's budget, the engine's defaults, the suite's TTA).

    python benchmarks/pixel_fusion.py --task breastmnist --seeds 0,1,2

One JSON line per seed, AUROC %: nnd / lh (the recipe's S_NND / S_LH), pix (the floor), z_nnd_pix, pct_nnd_pix,
z_lh_pix, z_all (S_NND + S_LH + pixels). docs/quality.md (finding 31) quotes it.
"""

from __future__ import annotations

import engine  # noqa: F401  (first: it sets GOMP_SPINCOUNT)

# isort: split
import argparse
import json
import time

import numpy as np
import quality  # benchmarks/quality.py, beside this script: the suite's tasks and budgets

from engine.baseline import pixel_nnd
from engine.metrics import auroc
from engine.train import train
from engine.tta import score_images


def z(reference: np.ndarray, scores: np.ndarray) -> np.ndarray:
    return (scores - reference.mean()) / (reference.std() + 1e-12)


def pct(reference: np.ndarray, scores: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.sort(reference), scores, side="right") / len(reference)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="breastmnist", choices=sorted(quality.TASKS))
    parser.add_argument("--normal", help="the normal class (default: the task's first)")
    parser.add_argument("--seeds", default="0")
    args = parser.parse_args()
    task = quality.TASKS[args.task]
    normal = args.normal or task.normals[0]
    loaded, targets, references = quality.split(task, normal)
    bank = loaded.train.pixels
    pixels_query = pixel_nnd(bank, loaded.score.pixels, loaded.score_in_train)
    pixels_train = pixel_nnd(bank, bank, np.arange(len(bank)))  # each training image left out of its own bank
    for seed in (int(s) for s in args.seeds.split(",")):
        config, score_config = quality.cell_configs(task, seed, "recipe", {}, {}, bank)
        started = time.perf_counter()
        trained = train(bank, config)
        r = score_images(trained, bank, loaded.score.pixels, score_config, query_in_bank=loaded.score_in_train,
                         score_train=True)  # fmt: skip
        rows = r.reference_rows if r.reference_rows is not None else np.arange(len(bank))
        pix_ref = pixels_train[rows]  # the same training images the learned scores' references are
        nnd = z(r.train_s_nnd, r.s_nnd)
        lh = z(r.train_s_lh, r.s_lh)
        pix = z(pix_ref, pixels_query)
        out = {
            "task": task.name, "normal": normal, "seed": seed, "encoder": trained.config.encoder,
            "epochs": config.epochs, "seconds": round(time.perf_counter() - started), "n_reference": len(rows),
            "nnd": auroc(targets, r.s_nnd), "lh": auroc(targets, r.s_lh), "pix": references["auroc_pixels"],
            "z_nnd_pix": auroc(targets, nnd + pix),
            "pct_nnd_pix": auroc(targets, pct(r.train_s_nnd, r.s_nnd) + pct(pix_ref, pixels_query)),
            "z_lh_pix": auroc(targets, lh + pix), "z_all": auroc(targets, nnd + lh + pix),
        }  # fmt: skip
        print(json.dumps({k: round(100 * v, 1) if isinstance(v, float) else v for k, v in out.items()}), flush=True)


if __name__ == "__main__":
    main()
