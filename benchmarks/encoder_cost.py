"""What an epoch of the suite's recipe cell costs on each encoder, against SimCLR's cell: timed interleaved in one
process, so this machine's slow and fast spells hit every encoder alike (docs/quality.md finding 44).

For each task: the recipe's cell config (seed 0, the suite's batch) with each encoder in turn, and SimCLR's, trained
a few epochs each per round, rounds interleaved; the median epoch after the first of each run. Prints one JSON
object: the medians, each encoder's cost against the first one's, and SimCLR's epoch over each encoder's (the
factor `quality.ENCODER_SPEED_AT_BATCH` records).

    python benchmarks/encoder_cost.py                                  # the three scans, about 4 min here
    python benchmarks/encoder_cost.py --tasks breastmnist --rounds 6
"""

from __future__ import annotations

import engine  # noqa: F401  (first: it sets GOMP_SPINCOUNT)

# isort: split
import argparse
import json
import statistics
import sys

import quality  # benchmarks/quality.py, beside this script: the suite's tasks and budgets
from suite_balance import epoch_times


def costs(task: quality.Task, encoders: list[str], rounds: int, epochs: int) -> dict:
    loaded, _, _ = quality.split(task, task.normals[0])
    pixels = loaded.train.pixels
    configs = {e: quality.cell_configs(task, 0, "recipe", {"encoder": e}, {}, pixels)[0] for e in encoders}
    configs["simclr"] = quality.cell_configs(task, 0, "simclr", {}, {}, pixels)[0]
    times: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(rounds):
        for name, config in configs.items():
            times[name] += epoch_times(pixels, config, epochs)
    median = {name: statistics.median(t) for name, t in times.items()}
    first = median[encoders[0]]
    return {
        "batch_size": task.batch_size,
        "epoch_s": {name: round(s, 3) for name, s in median.items()},
        f"epoch_over_{encoders[0]}": {e: round(median[e] / first, 3) for e in encoders},
        "simclr_epoch_over_recipe_epoch": {e: round(median["simclr"] / median[e], 3) for e in encoders},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="breastmnist,pneumoniamnist,br35h")
    parser.add_argument("--encoders", default="resnet_small_s2,resnet_half_s2", help="the first is the reference")
    parser.add_argument("--rounds", type=int, default=0, help="interleaved rounds (default 4 on BreastMNIST, else 2)")
    parser.add_argument("--epochs", type=int, default=0, help="epochs a timed run trains (default 6, else 3)")
    args = parser.parse_args()
    out = {}
    for task in quality.present_tasks(args.tasks.split(",")):
        name = task.name
        small = name in ("breastmnist", "digits")
        rounds, epochs = args.rounds or (4 if small else 2), args.epochs or (6 if small else 3)
        out[name] = costs(task, args.encoders.split(","), rounds, epochs)
        print(f"{name}: {out[name]}", file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
