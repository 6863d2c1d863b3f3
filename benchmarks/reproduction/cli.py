"""The command line: `python benchmarks/reproduce.py` (or `python -m benchmarks.reproduction`).

    python benchmarks/reproduce.py --budget cpu --datasets breastmnist
    python benchmarks/reproduce.py --budget paper --time-limit-s 540     # on a GPU; rerun until exit 0

Runs the requested cells in order (benchmarks/reproduction/cells.py), skipping finished ones and
resuming unfinished ones, and rewrites docs/results.md and docs/results.json after every cell.
Prints a JSON summary of this invocation on stdout; progress goes to stderr. Exit status: 0 when every
requested cell is finished, 3 when the time limit stopped the run first (run the same command again),
2 on a usage error, missing data or a state made with different settings, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from benchmarks.reproduction.cells import DataCache, run_cell
from benchmarks.reproduction.protocol import (
    BUDGETS,
    CIFAR10_CLASSES,
    DATA_ROOT,
    DATASETS,
    DEFAULT_DATASETS,
    DEFAULT_TIME_LIMIT_S,
    FLOOR,
    METHODS,
    RESULTS_DIR,
    STATE_ROOT,
    Plan,
    plan_cells,
    run_config,
)
from benchmarks.reproduction.state import StateMismatch
from benchmarks.reproduction.tables import rerender, write_tables
from benchmarks.reproduction.timelimit import START_MARGIN_S, TimeLimit, log


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run the Con2 paper's protocol on real data and write docs/results.md and docs/results.json.",
        allow_abbrev=False,
    )
    parser.add_argument("--budget", choices=tuple(BUDGETS), help="the budget to run (required unless --render-only)")
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite results.md from results.json and stop: no cell runs, the state folder is not read",
    )
    parser.add_argument("--datasets", help=f"comma-separated, from {', '.join(DATASETS)} (default: the budget's)")
    parser.add_argument("--methods", help=f"comma-separated, from {', '.join(METHODS)} (default: the plan's)")
    parser.add_argument("--seeds", help="comma-separated training seeds (default: the plan's)")
    parser.add_argument("--classes", help="CIFAR-10 normal classes, comma-separated (default: the plan's)")
    parser.add_argument("--epochs", type=int, help="override every plan's epochs")
    parser.add_argument("--image-size", type=int, help="override every plan's image size")
    parser.add_argument("--batch-size", type=int, help="override every plan's batch size")
    parser.add_argument("--tta", type=int, help="override every plan's test-time augmentations")
    parser.add_argument("--checkpoint-every", type=int, help="override every plan's checkpoint interval (epochs)")
    parser.add_argument(
        "--time-limit-s", type=float, help="stop cleanly within this many seconds (default: cpu none, paper 540)"
    )
    parser.add_argument("--max-steps", type=int, help="stop like the time limit after N training steps (testing)")
    parser.add_argument("--no-floor", action="store_true", help="skip the raw-pixel 1-NN floor")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's; 1 on a busy machine)")
    parser.add_argument("--data-root", type=Path, default=DATA_ROOT, help=f"default: {DATA_ROOT}")
    parser.add_argument(
        "--state", type=Path, default=STATE_ROOT, help="state root; one folder per budget (default: benchmarks/state)"
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where results.md/.json go (docs/)")
    args = parser.parse_args(argv)
    if args.budget is None and not args.render_only:
        parser.error("--budget is required (or --render-only)")
    return args


def _names(raw: str | None, known: Iterable[str], what: str) -> list[str] | None:
    if raw is None:
        return None
    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown {what}: {', '.join(unknown)}; choose from {', '.join(known)}")
    return names


def resolve_plans(args: argparse.Namespace) -> tuple[list[str], dict[str, Plan]]:
    datasets = _names(args.datasets, DATASETS, "dataset") or list(DEFAULT_DATASETS[args.budget])
    methods = _names(args.methods, (*METHODS, FLOOR), "method")
    classes = _names(args.classes, CIFAR10_CLASSES, "class")
    plans = {}
    for name in datasets:
        plan = BUDGETS[args.budget][name]
        changes: dict[str, Any] = {}
        for key in ("epochs", "image_size", "batch_size", "tta", "checkpoint_every"):
            if getattr(args, key) is not None:
                changes[key] = getattr(args, key)
        if methods is not None:
            changes["methods"] = tuple(m for m in methods if m != FLOOR)
        if args.seeds is not None:
            changes["seeds"] = tuple(int(s) for s in args.seeds.split(",") if s.strip())
        if classes is not None and DATASETS[name].classes:
            changes["classes"] = tuple(classes)
        plans[name] = dataclasses.replace(plan, **changes)
    return datasets, plans


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render_only:
        rerender(args.results_dir)
        log(f"rewrote {args.results_dir / 'results.md'} from {args.results_dir / 'results.json'}")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        datasets, plans = resolve_plans(args)
    except ValueError as error:
        log(f"error: {error}")
        return 2
    missing = [
        str(args.data_root / DATASETS[d].source) for d in datasets if not (args.data_root / DATASETS[d].source).exists()
    ]
    if missing:
        log(f"error: data not found: {', '.join(missing)} (--data-root {args.data_root})")
        return 2
    with_floor = not args.no_floor and (args.methods is None or FLOOR in args.methods.split(","))
    cells = plan_cells(datasets, plans, with_floor)
    limit_s = DEFAULT_TIME_LIMIT_S[args.budget] if args.time_limit_s is None else args.time_limit_s
    limit = TimeLimit(limit_s, args.max_steps)
    state = args.state / args.budget
    cache = DataCache()
    outcome: list[dict[str, Any]] = []
    log(f"{args.budget}: {len(cells)} cells, state {state}, time limit {limit_s or 'none'} s")
    for number, cell in enumerate(cells, start=1):
        if limit.stopped or limit.remaining_s() < START_MARGIN_S:
            outcome.append({"cell": cell.id, "status": "not started"})
            limit.stopped = True
            continue
        plan = plans[cell.dataset]
        config = run_config(cell, plan, args.data_root, args.device)
        log(f"[{number}/{len(cells)}] {cell.id}")
        try:
            status, result = run_cell(cell, config, args.budget, state / cell.id, cache, limit)
        except StateMismatch as error:
            log(f"error: {error}; use another --state or delete that cell's folder")
            return 2
        except KeyboardInterrupt:
            write_tables(args.state, args.results_dir)
            log("interrupted; run the same command again to resume from the last checkpoint")
            return 130
        entry: dict[str, Any] = {"cell": cell.id, "status": status}
        if result is not None:
            entry.update({k: result.get(k) for k in ("auroc_nnd", "auroc_lh", "train_s", "score_s", "device")})
        outcome.append(entry)
        log(f"  {status}: " + json.dumps({k: v for k, v in entry.items() if k not in ("cell", "status")}))
        if status in ("finished", "failed"):
            write_tables(args.state, args.results_dir)
    write_tables(args.state, args.results_dir)
    complete = all(o["status"] in ("finished", "skipped", "failed") for o in outcome)
    print(
        json.dumps(
            {
                "budget": args.budget,
                "state": str(state),
                "complete": complete,
                "cells": outcome,
                "results": [str(args.results_dir / "results.md"), str(args.results_dir / "results.json")],
            },
            indent=2,
        )
    )
    if not complete:
        log("stopped by the time limit; run the same command again to continue")
    return 0 if complete else 3
