"""Command line: `con2 train`, `con2 score`, `con2 inspect` (also `python -m engine ...`).

`con2 worker` is the worker package's (`worker.cli`): the engine knows nothing of the database, so it
never imports the worker; `python -m engine worker` starts `python -m worker` in its place.

Every config field is a flag, with the field's own help text. A user mistake (missing folder, no
normal images, unknown context) ends with one `error:` line and exit status 2, not a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from tqdm import tqdm

from engine.config import SECTIONS, ConfigError, DataConfig, RunConfig, ScoreConfig, build
from engine.presets import NAMES as PRESET_NAMES
from engine.presets import preset_overrides

# flag names that would collide between the three configs get a prefix
RENAMED = {
    (DataConfig, "source"): "data",
    (DataConfig, "seed"): "data-seed",
    (ScoreConfig, "batch_size"): "score-batch-size",
    (ScoreConfig, "seed"): "score-seed",
}


class Progress:
    """tqdm bars for the one progress callback: loading, training (with losses and α), scoring."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.bars: dict[str, tqdm] = {}

    def _bar(self, name: str, total: int, unit: str) -> tqdm:
        if name not in self.bars:
            self.bars[name] = tqdm(total=total, desc=name, unit=unit, disable=self.quiet, dynamic_ncols=True)
        return self.bars[name]

    def __call__(self, event: Any) -> None:
        from engine.run import Phase

        if isinstance(event, Phase):
            bar = self._bar(event.name, event.total, "img" if event.name == "loading" else "view")
            bar.update(event.done - bar.n)
            return
        bar = self._bar("training", event.total_steps, "step")
        if bar.n == 0 and event.step > 1:  # resumed from a checkpoint
            bar.update(event.step - 1)
        bar.update(1)
        postfix = {"epoch": f"{event.epoch}/{event.epochs}", "loss": f"{event.loss:.3f}"}
        if event.loss_context is not None:
            postfix.update(ctx=f"{event.loss_context:.3f}", cnt=f"{event.loss_content:.3f}", alpha=f"{event.alpha:.2f}")
        postfix["img/s"] = f"{event.images_per_s:.0f}"
        bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def _flag(cls: type, name: str) -> str:
    return RENAMED.get((cls, name), name.replace("_", "-"))


def _add_config_flags(parser: argparse.ArgumentParser, sections: Sequence[str]) -> None:
    for section in sections:
        cls = SECTIONS[section]
        group = parser.add_argument_group(f"{section} settings")
        for f in dataclasses.fields(cls):
            default = f.default
            choices = f.metadata.get("choices")
            extra = f" Choices: {', '.join(choices)}." if choices else ""
            group.add_argument(
                f"--{_flag(cls, f.name)}",
                dest=f"{section}.{f.name}",
                default=None,
                metavar=type(default).__name__.upper() if default is not None else "STR",
                help=f"{f.metadata['help']}{extra} (default: {default})",
            )


def config_from_args(args: argparse.Namespace, base: dict[str, Any] | None = None) -> RunConfig:
    """RunConfig from a JSON file's dict (if any) overlaid with the flags a user gave."""
    raw: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (base or {}).items()}
    for key, value in vars(args).items():
        if "." in key and value is not None:
            section, name = key.split(".", 1)
            raw.setdefault(section, {})[name] = value
    if getattr(args, "all", False):
        raw.setdefault("data", {})["normal_label"] = None
    return RunConfig(*(build(cls, raw.get(section, {})) for section, cls in SECTIONS.items()))


def _config_file(path: str) -> dict[str, Any]:
    """The run config a `--config` JSON file holds: {"data": {...}, "train": {...}, "score": {...}}."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"cannot read the config file {path}: {error}") from None
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        example = '{"train": {"epochs": 5}}'
        raise ConfigError(f"the config file {path} must hold an object of sections, e.g. {example}")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"the config file {path} has unknown section(s) {', '.join(unknown)}; use data, train, score")
    return raw


def _summary(result_metrics: dict[str, Any], config: RunConfig, skipped: int) -> dict[str, Any]:
    return {"metrics": result_metrics, "config": config.to_dict(), "skipped": skipped}


def cmd_train(args: argparse.Namespace) -> int:
    base: dict[str, dict[str, Any]] = preset_overrides(args.preset) if args.preset else {}
    for section, values in (_config_file(args.config) if args.config else {}).items():
        base.setdefault(section, {}).update(values)  # preset < config file < flags
    config = config_from_args(args, base)  # before the imports below: a mistake in a flag is reported at once

    from engine.artifacts import MODEL_FILE, Bundle, write_results
    from engine.checkpoint import DirectoryCheckpoints
    from engine.run import train_run

    out = Path(args.out)
    progress = Progress(args.quiet)
    try:
        result = train_run(config, on_progress=progress, checkpoints=DirectoryCheckpoints(out / "checkpoints"))
    finally:
        progress.close()
    files = ["scores.csv", "features.npz", "skipped.csv", "summary.json"]
    if result.trained is not None:  # a classical reference (engine.classical) has no model to save
        Bundle(result.trained, result.bank, config.data).save(out / MODEL_FILE)
        files.insert(0, MODEL_FILE)
    summary = _summary(result.metrics, config, len(result.skipped))
    summary["history"] = [] if result.trained is None else result.trained.history
    write_results(out, result.scored, result.scores, result.skipped, summary)
    _report_skipped(result.skipped)
    print(json.dumps(result.metrics, indent=2))
    print(f"wrote {out}/: {', '.join(files)}", file=sys.stderr)
    return 0


def _say_overlap(count: int, total: int) -> None:
    if count:  # before scoring: these would otherwise look like the healthiest images of the batch
        print(
            f"{count} of the {total} images to score are this model's training images: scored leave-one-out",
            file=sys.stderr,
        )


def cmd_score(args: argparse.Namespace) -> int:
    from engine.artifacts import Bundle, write_results
    from engine.run import score_run

    bundle = Bundle.load(args.model, device=args.device)
    score_config = config_from_args(args).score  # `score` has only score.* flags; the rest builds as defaults
    data = dataclasses.replace(
        bundle.data,
        source=args.data,
        score_split=args.split or None,
        normal_label=args.normal_label or None,
    )
    progress = Progress(args.quiet)
    try:
        result = score_run(
            bundle.trained,
            bundle.bank,
            data,
            score_config,
            bank_source=bundle.data.source,
            on_progress=progress,
            on_overlap=_say_overlap,
        )
    finally:
        progress.close()
    summary = {"metrics": result.metrics, "model": str(args.model), "data": dataclasses.asdict(data)}
    write_results(args.out, result.scored, result.scores, result.skipped, summary)
    _report_skipped(result.skipped)
    print(json.dumps(result.metrics, indent=2))
    print(f"wrote {args.out}/: scores.csv, features.npz, skipped.csv, summary.json", file=sys.stderr)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from engine.inventory import inventory
    from engine.sources import open_source

    source = open_source(args.data)
    with tqdm(desc="inspecting", unit="img", disable=args.quiet) as bar:

        def on_progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        inv = inventory(source, on_progress=on_progress)
    sizes: dict[str, int] = {}
    for s in inv.samples:
        if s.readable:
            key = f"{s.width}x{s.height} {s.mode}"
            sizes[key] = sizes.get(key, 0) + 1
    report = {
        "source": inv.location,
        "kind": inv.kind,
        "labels_from": inv.label_origin,
        "splits_from": inv.split_origin,
        "images": len(inv.samples),
        "by_label": inv.by_label,
        "by_split": inv.by_split,
        "by_split_label": {f"{split}/{label}": n for (split, label), n in inv.by_split_label.items()},
        "sizes": dict(sorted(sizes.items(), key=lambda kv: -kv[1])[:10]),
        "unreadable": [{"sample_id": s.ref.sample_id, "reason": s.reason} for s in inv.unreadable],
        "rejected": [{"entry": s.ref.sample_id, "reason": s.reason} for s in inv.rejected],
        "duplicates": inv.duplicates,
        "near_duplicates": inv.near_duplicates,
    }
    print(json.dumps(report, indent=2, default=str))
    return 0


def _hand_off_to_worker(args: Sequence[str]) -> NoReturn:
    """`python -m engine worker ...`, and a `con2` script installed before the worker had its own package:
    become `python -m worker ...`. A new process, not an import: the engine stays free of the database,
    and signals (SIGTERM requeues the running job) reach the worker itself."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "worker", *args])


def _report_skipped(skipped: Sequence[Any]) -> None:
    for s in skipped:
        print(f"skipped {s.ref.location}: {s.reason}", file=sys.stderr)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="con2", description="Con2 anomaly detection for image datasets.")
    sub = top.add_subparsers(dest="command", required=True)
    sub_parser = sub.add_parser

    def add(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return sub_parser(name, allow_abbrev=False, **kwargs)

    sub.add_parser = add  # type: ignore[method-assign]  # every subcommand: no silent flag abbreviations

    train = sub.add_parser("train", help="train on normal images, score, write model + results")
    train.add_argument("--out", required=True, help="Output directory; rerunning into it resumes from its checkpoint.")
    train.add_argument("--config", help="JSON file with a run config ({data, train, score}); flags override it.")
    train.add_argument(
        "--preset",
        choices=tuple(PRESET_NAMES),
        help="Start from a preset: cpu (quick), gpu (closer to the paper) or paper (the paper's own settings: "
        "224 px, ResNet18, 2048 epochs); the config file and flags override it.",
    )
    train.add_argument("--all", action="store_true", help="Train on every selected image (no normal label).")
    train.add_argument("--quiet", action="store_true", help="No progress bars.")
    _add_config_flags(train, ["data", "train", "score"])
    train.set_defaults(func=cmd_train)

    score = sub.add_parser("score", help="score new images with a trained model, without retraining")
    score.add_argument("--model", required=True, help="A train run's output directory or its model.pt.")
    score.add_argument("--data", required=True, help="Images to score: folder, .zip, CSV, .npz or 'digits'.")
    score.add_argument("--out", required=True, help="Output directory for scores.csv and friends.")
    score.add_argument("--split", default="", help="Only score this split (default: every image).")
    score.add_argument("--normal-label", default="", help="Label of normal images, to report AUROC.")
    score.add_argument("--device", default="auto", help="auto, cpu or cuda.")
    score.add_argument("--quiet", action="store_true", help="No progress bars.")
    _add_config_flags(score, ["score"])
    score.set_defaults(func=cmd_score)

    inspect = sub.add_parser("inspect", help="counts, sizes, unreadable files and duplicates of a dataset")
    inspect.add_argument("--data", required=True, help="Folder, .zip, CSV, .npz or 'digits'.")
    inspect.add_argument("--quiet", action="store_true", help="No progress bar.")
    inspect.set_defaults(func=cmd_inspect)

    # listed for `con2 --help` only: `main` hands `worker ...` to the worker package before parsing
    sub.add_parser("worker", help="run queued jobs from the database (con2 worker --help)", add_help=False)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["worker"]:
        _hand_off_to_worker(argv[1:])
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume from the last checkpoint", file=sys.stderr)
        return 130
    except Exception as error:
        if _raised(error, "engine.data", "DataError") or isinstance(error, FileNotFoundError):
            print(f"error: {error}", file=sys.stderr)  # CheckpointError is a DataError
            return 2
        if _raised(error, "engine.train", "CheckpointMismatch"):
            print(f"error: {error}", file=sys.stderr)
            return 2
        if _raised(error, "engine.train", "NonFiniteLoss"):
            print(f"error: training diverged: {error}", file=sys.stderr)
            return 1
        if _raised(error, "engine.scoring", "NonFiniteFeatures"):
            print(f"error: {error}", file=sys.stderr)
            return 1
        raise


def _raised(error: Exception, module: str, name: str) -> bool:
    """isinstance(error, module.name) without importing the module: a module never loaded raised nothing,
    and loading one just to compare (torch, torchvision, scikit-learn) would cost seconds on every mistake."""
    loaded = sys.modules.get(module)
    return loaded is not None and isinstance(error, getattr(loaded, name))


if __name__ == "__main__":
    sys.exit(main())
