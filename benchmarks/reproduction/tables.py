"""The tables: every finished cell under the state root → docs/results.json and docs/results.md.

`summarise` makes one budget's rows (every dataset × method of the grid, measured or not; mean ± sample
std over seeds; CIFAR-10 as the mean over classes per seed), `render_markdown` the page, `write_tables`
both files.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from benchmarks.reproduction.protocol import (
    BUDGETS,
    CLASSICAL,
    DATASETS,
    DEVIATIONS,
    FLOOR,
    FLOOR_TITLE,
    METHODS,
    PAPER,
)
from benchmarks.reproduction.state import load_results, now, write_json


def _stat(values: list[float]) -> dict[str, Any] | None:
    """Mean ± sample std (n − 1) of AUROCs, in %."""
    if not values:
        return None
    pct = [100 * v for v in values]
    return {"mean": statistics.fmean(pct), "std": statistics.stdev(pct) if len(pct) > 1 else None, "n": len(pct)}


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def summarise(budget: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows of one budget's table: every dataset × method of the budget's grid, measured or not."""
    rows, per_class = [], []
    for name, dataset in DATASETS.items():
        plan = BUDGETS[budget][name]
        for method in (*METHODS, FLOOR):
            mine = [r for r in results if r["dataset"] == name and r["method"] == method]
            nnd_paper, lh_paper = PAPER.get((name, method), (None, None))
            row: dict[str, Any] = {
                "dataset": name,
                "dataset_title": dataset.title,
                "method": method,
                "method_title": METHODS[method].title if method in METHODS else FLOOR_TITLE,
                "paper_s_nnd": nnd_paper,
                "paper_s_lh": lh_paper,
                "planned_seeds": len(plan.seeds) if method != FLOOR else 0,
                "planned": method == FLOOR or method in plan.methods,
            }
            failed = [r for r in mine if r.get("error")]
            ok = [r for r in mine if not r.get("error")]
            if dataset.classes:
                classes_done = sorted({r["normal_class"] for r in ok})
                for normal_class in classes_done:
                    of_class = [r for r in ok if r["normal_class"] == normal_class]
                    per_class.append({"class": normal_class, "method": method, **_measured(of_class)})
                # the one-class mean over all ten classes, per seed: only seeds with every class finished count
                by_seed: dict[Any, dict[str, dict[str, Any]]] = {}
                for r in ok:
                    by_seed.setdefault(r["seed"], {})[r["normal_class"]] = r
                complete = {s: c for s, c in by_seed.items() if set(c) == set(dataset.classes)}
                row["classes_done"] = len(classes_done)
                if complete:
                    row.update(_measured([r for cs in complete.values() for r in cs.values()]))
                    # every AUROC column is the mean over classes per seed, then mean ± std over seeds
                    # (not the spread over classes that _measured would give)
                    for key in ("auroc_nnd", "auroc_lh", "auroc_nnd_tta1", "auroc_lh_tta1"):
                        means = [_mean(c.get(key) for c in cs.values()) for cs in complete.values()]
                        row[key] = _stat([m for m in means if m is not None])
                    row["status"] = "finished"
                else:
                    row["status"] = (
                        f"partial: {len(classes_done)} of {len(dataset.classes)} classes" if ok else "not run"
                    )
            else:
                row.update(_measured(ok))
                row["status"] = "finished" if ok else ("failed" if failed else "not run")
            if failed:
                row["failures"] = [f"{r['cell']}: {r['error']}" for r in failed]
            rows.append(row)
    return {"rows": rows, "cifar10_per_class": per_class}


def _measured(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± std over seeds, times and settings of the finished results of one row."""
    if not results:
        return {}
    config = results[0]["config"]
    return {
        "auroc_nnd": _stat([r["auroc_nnd"] for r in results if r["auroc_nnd"] is not None]),
        "auroc_lh": _stat([r["auroc_lh"] for r in results if r.get("auroc_lh") is not None]),
        "auroc_nnd_tta1": _stat([r["auroc_nnd_tta1"] for r in results if r.get("auroc_nnd_tta1") is not None]),
        "auroc_lh_tta1": _stat([r["auroc_lh_tta1"] for r in results if r.get("auroc_lh_tta1") is not None]),
        "silhouette": _mean(r.get("silhouette") for r in results),  # of the two context clusters
        "seeds": sorted({r["seed"] for r in results if r["seed"] is not None}),
        "train_s": _mean(r.get("train_s") for r in results),
        "score_s": _mean(r.get("score_s") for r in results),
        "wall_s": _mean(r.get("wall_s") for r in results),
        "images_per_s": _mean(r.get("images_per_s") for r in results),
        "devices": sorted({r["device"] for r in results if r.get("device")}),
        "setting": {
            "image_size": config["data"]["image_size"],
            "crop_fraction": config["data"]["crop_fraction"],
            "encoder": config["train"]["encoder"],
            "epochs": config["train"]["epochs"],
            "batch_size": config["train"]["batch_size"],
            "temperature": config["train"]["temperature"],
            "tta": config["score"]["tta"],
        },
    }


def _pct(stat: dict[str, Any] | None) -> str:
    if not stat:
        return "—"
    std = f" ± {stat['std']:.1f}" if stat.get("std") is not None else ""
    return f"{stat['mean']:.1f}{std}"


def _number(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def render_markdown(summary: dict[str, Any]) -> str:
    lines = [
        "# Results: the paper's protocol on real data",
        "",
        "Generated by `python benchmarks/reproduce.py` from the finished cells in `benchmarks/state/`; do not "
        "edit by hand. Protocol: train on the normal images of the train split, score the whole test split, "
        "AUROC (%) with anomalous as the positive class, mean ± sample std over seeds (n = seeds measured). "
        '"not run" = no measurement; paper figures are Con2 Table 1 (invert, SimCLR, CSI), Table 2 (flip, '
        'equalize) and Table 4 (CIFAR-10), "—" where the paper gives none. Times are per seed: training '
        '(summed over resumed sessions) and scoring with test-time augmentation (TTA). "no TTA" scores the '
        "plain images with the same model (A = 1).",
        "",
        "This page measures the paper's method and protocol (α linear 0 → 1, λ = 1, two views per context, pooled "
        "features, TTA 40), not the recipe the product ships, which departs from it (`docs/quality.md`, its changes "
        "and their measurements): the quality suite (`python benchmarks/quality.py`, tables in "
        "`docs/quality-suite.md`) is the yardstick for the recipe as shipped. The peer methods (CSI, FIRM, masked "
        "contrastive learning, self-OECL) have rows here under the same protocol: the same epochs as Con2, so "
        "CSI, masked contrastive and self-OECL, with eight views of each image a step, embed twice the views of "
        "Con2's four (FIRM as many), and their S_NND column is each method's own score. At equal wall time, on "
        "every task and with the classical references beside them, they are measured in the quality suite "
        "(`docs/peer-methods.md`).",
        "",
    ]
    for budget, part in summary["budgets"].items():
        lines += [f"## Budget `{budget}`", ""]
        lines += [
            "| Dataset | Method | S_NND | S_LH | Paper S_NND | Paper S_LH | S_NND, no TTA | S_LH, no TTA | "
            "Silhouette | Seeds | Train s | Score s | Train img/s | Device | Setting |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in part["rows"]:
            if row["status"] in ("finished",) or row.get("auroc_nnd"):
                s = row.get("setting", {})
                setting = (
                    f"{s['image_size']} px, {s['encoder']}, {s['epochs']} ep, batch {s['batch_size']}, TTA {s['tta']}"
                    if row["method"] not in (FLOOR, *CLASSICAL)
                    else f"{s['image_size']} px"
                )
                seeds = "—" if row["method"] == FLOOR else f"{len(row['seeds'])} of {row['planned_seeds']}"
                cells = [
                    _pct(row["auroc_nnd"]),
                    _pct(row["auroc_lh"]),
                    row["paper_s_nnd"] or "—",
                    row["paper_s_lh"] or "—",
                    _pct(row.get("auroc_nnd_tta1")),
                    _pct(row.get("auroc_lh_tta1")),
                    "—" if row.get("silhouette") is None else f"{row['silhouette']:.2f}",
                    seeds,
                    _number(row.get("train_s")),
                    _number(row.get("score_s")),
                    _number(row.get("images_per_s")),
                    ", ".join(row.get("devices", [])) or "—",
                    setting,
                ]
            else:
                status = row["status"]
                lh = "—" if row["method"] == FLOOR else status  # the floor has no likelihood score
                cells = [status, lh, row["paper_s_nnd"] or "—", row["paper_s_lh"] or "—"] + ["—"] * 9
            lines.append(f"| {row['dataset_title']} | {row['method_title']} | " + " | ".join(cells) + " |")
        lines.append("")
        if part["cifar10_per_class"]:
            lines += [
                f"CIFAR-10 per normal class (`{budget}`):",
                "",
                "| Class | Method | S_NND | S_LH | Seeds | Train s |",
                "|---|---|---|---|---|---|",
            ]
            for row in part["cifar10_per_class"]:
                lines.append(
                    f"| {row['class']} | {row['method']} | {_pct(row['auroc_nnd'])} | {_pct(row['auroc_lh'])} | "
                    f"{len(row['seeds']) or '—'} | {_number(row['train_s'])} |"
                )
            lines.append("")
        failures = [f for row in part["rows"] for f in row.get("failures", [])]
        if failures:
            lines += ["Failed cells:", ""] + [f"- {f}" for f in failures] + [""]
    lines += ["## Deviations from the paper's protocol", ""] + [f"- {d}" for d in DEVIATIONS] + [""]
    lines += ["## Budget settings", "", "| Budget | Dataset | Setting | Seeds | Methods |", "|---|---|---|---|---|"]
    for budget, plans in BUDGETS.items():
        for name, plan in plans.items():
            classes = f"; classes {', '.join(plan.classes)}" if plan.classes else ""
            lines.append(
                f"| `{budget}` | {DATASETS[name].title} | {plan.image_size} px (crop {plan.crop_fraction}), "
                f"{plan.encoder}, {plan.epochs} epochs, batch {plan.batch_size}, τ {plan.temperature}, "
                f"TTA {plan.tta}{classes} | {', '.join(map(str, plan.seeds))} | {', '.join(plan.methods)} |"
            )
    return "\n".join(lines) + "\n"


# What a row says about the grid rather than about a measurement: always the fresh summary's.
DESCRIPTIVE = ("dataset_title", "method_title", "paper_s_nnd", "paper_s_lh", "planned_seeds", "planned")


def kept_measurements(fresh: dict[str, Any], before: dict[str, Any] | None) -> dict[str, Any]:
    """One budget's fresh summary, plus what only the stored page still has: a row measured in an earlier checkout
    (the state folder is local and git-ignored) and not run in this one keeps its stored measurement, and so do
    CIFAR-10 classes. Without this, running one new cell on a fresh checkout emptied every other row."""
    if not before:
        return fresh
    stored = {(r["dataset"], r["method"]): r for r in before.get("rows", [])}
    rows = []
    for row in fresh["rows"]:
        old = stored.get((row["dataset"], row["method"]))
        if row["status"] == "not run" and old is not None and old.get("status") != "not run":
            row = {**old, **{key: row[key] for key in DESCRIPTIVE}}
        rows.append(row)
    classes = {(c["class"], c["method"]) for c in fresh["cifar10_per_class"]}
    per_class = fresh["cifar10_per_class"] + [
        c for c in before.get("cifar10_per_class", []) if (c["class"], c["method"]) not in classes
    ]
    return {"rows": rows, "cifar10_per_class": per_class}


def write_tables(state_root: Path, results_dir: Path) -> dict[str, Any]:
    """Rewrite results.json and results.md from every finished cell of every budget under the state root, keeping
    the stored rows that no cell under it measures (`kept_measurements`)."""
    results = load_results(state_root)
    stored = results_dir / "results.json"
    before = json.loads(stored.read_text())["budgets"] if stored.exists() else {}
    summary = {
        "generated_at": now(),
        "protocol": "train on normal train images; score the whole test split; AUROC % (anomalous positive); "
        "mean ± sample std over seeds",
        "budgets": {
            budget: kept_measurements(summarise(budget, results.get(budget, [])), before.get(budget))
            for budget in BUDGETS
        },
        "budget_settings": {b: {d: dataclasses.asdict(p) for d, p in plans.items()} for b, plans in BUDGETS.items()},
        "deviations": DEVIATIONS,
    }
    write_json(results_dir / "results.json", summary)
    _write_markdown(results_dir / "results.md", summary)
    return summary


def rerender(results_dir: Path) -> dict[str, Any]:
    """Rewrite results.md from results.json alone, touching no cell: the page's text and layout change without
    remeasuring, and without the state folder (git-ignored), whose loss would otherwise empty the tables."""
    summary = json.loads((results_dir / "results.json").read_text())
    _write_markdown(results_dir / "results.md", summary)
    return summary


def _write_markdown(markdown: Path, summary: dict[str, Any]) -> None:
    partial = markdown.with_name(markdown.name + ".partial")
    partial.write_text(render_markdown(summary))
    os.replace(partial, markdown)
