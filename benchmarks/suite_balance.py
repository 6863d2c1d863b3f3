"""Is the quality suite's SimCLR really at equal wall time? Its epochs come from a rule (benchmarks/quality.py,
`budget_epochs`: twice the task's epochs of the paper's step, the two-stage encoder's step counted cheaper by
`encoder_speed`);
this measures what the rule gives on this machine.

For each task it trains the recipe's cell and SimCLR's (seed 0, the suite's configs) for a few epochs each, twice,
interleaved so background load hits both alike, and times every epoch after the first (the first pays for warm-up).
From the median epoch time it prints, per task: the epochs each method trains in the suite, its training time at
that pace, and the SimCLR epochs that would match the recipe's time exactly.

    python benchmarks/suite_balance.py                         # the three scans (about 3 min on the EPYC machine)
    python benchmarks/suite_balance.py --tasks breastmnist --epochs 12
    python benchmarks/suite_balance.py --tasks breastmnist --train encoder=resnet_half_s2   # an option's recipe

`simclr_epoch_over_recipe_epoch` is the factor `quality.ENCODER_SPEED_AT_BATCH` records for the recipe's encoder at
the task's batch (SimCLR's step, 2 views on resnet_small, against the recipe's, 2 views on its encoder).

Prints one JSON object.
"""

from __future__ import annotations

import engine  # noqa: F401  (first: it sets GOMP_SPINCOUNT)

# isort: split
import argparse
import dataclasses
import json
import statistics
import sys
import time

import quality  # benchmarks/quality.py, beside this script: the suite's tasks and budgets

from engine.train import train


def epoch_times(pixels, config, epochs: int) -> list[float]:
    """Seconds of each epoch after the first, of `config` trained for `epochs` epochs (no checkpoints)."""
    ends: list[float] = []
    short = dataclasses.replace(config, epochs=epochs, checkpoint_every=10**6)
    train(pixels, short, on_step=lambda report: ends.append(time.perf_counter()) if report.epoch_end else None)
    return [b - a for a, b in zip(ends, ends[1:], strict=False)]


def balance(task: quality.Task, epochs: int, rounds: int, train_over: dict | None = None) -> dict:
    loaded, _, _ = quality.split(task, task.normals[0])
    over = train_over or {}
    configs = {m: quality.cell_configs(task, 0, m, over, {}, loaded.train.pixels)[0] for m in ("recipe", "simclr")}
    times: dict[str, list[float]] = {m: [] for m in configs}
    for _ in range(rounds):
        for method, config in configs.items():
            times[method] += epoch_times(loaded.train.pixels, config, epochs)
    epoch_s = {m: statistics.median(t) for m, t in times.items()}
    suite = {m: c.epochs for m, c in configs.items()}
    train_s = {m: epoch_s[m] * suite[m] for m in suite}  # at the median pace
    return {
        "n_train": len(loaded.train),
        "batch_size": task.batch_size,
        "suite_epochs": suite,
        "epoch_s": {m: round(s, 3) for m, s in epoch_s.items()},
        "train_s_at_suite_epochs": {m: round(s, 1) for m, s in train_s.items()},
        "encoder": configs["recipe"].encoder,
        "simclr_over_recipe_time": round(train_s["simclr"] / train_s["recipe"], 3),
        "simclr_epoch_over_recipe_epoch": round(epoch_s["simclr"] / epoch_s["recipe"], 3),
        "simclr_epochs_for_equal_time": round(suite["recipe"] * epoch_s["recipe"] / epoch_s["simclr"], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="breastmnist,pneumoniamnist,br35h")
    parser.add_argument("--epochs", type=int, default=6, help="epochs a timed run trains (the first is not counted)")
    parser.add_argument("--rounds", type=int, default=2, help="timed runs of each method, interleaved")
    parser.add_argument("--train", nargs="*", default=[], metavar="FIELD=VALUE", help="recipe overrides")
    args = parser.parse_args()
    train_over = quality.parse_overrides(args.train)
    out = {}
    for task in quality.present_tasks(args.tasks.split(",")):
        name = task.name
        out[name] = balance(task, args.epochs, args.rounds, train_over)
        print(f"{name}: {out[name]}", file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
