"""Reproduce the paper: one command runs the Con2 protocol on real data and writes the results table.

    python benchmarks/reproduce.py --budget cpu --datasets breastmnist
    python benchmarks/reproduce.py --budget paper --time-limit-s 540     # on a GPU; rerun until exit 0

Protocol (../shared/data/README.md, paper Table 1): train on the normal train images, score the whole
test split, AUROC with "anomalous" as the positive class, three seeds, mean ± std. Every
dataset × method × seed is a *cell*. A finished cell is one `result.json` under the state directory;
an unfinished one keeps its training checkpoint there, so a rerun skips finished cells and resumes an
unfinished one from its last checkpoint, on this machine or another.

`--time-limit-s` stops cleanly before an outer limit: training stops at the first step from which the
next checkpoint could not be reached in time (the steps since the last checkpoint would be lost
anyway), scoring stops at the limit (it is redone on resume; training is not), and no cell starts in
the last `START_MARGIN_S` seconds. After every cell, `docs/results.md` and `docs/results.json` are
rewritten from the finished cells of every budget under the state root.

Prints a JSON summary of this invocation on stdout; progress goes to stderr. Exit status: 0 when every
requested cell is finished, 3 when the time limit stopped the run first (run the same command again),
2 on a usage error, missing data or a state made with different settings.
"""

from __future__ import annotations

import engine  # noqa: F401  (first: it sets GOMP_SPINCOUNT, which only works before torch loads)

# isort: split
import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from engine.baseline import pixel_nnd_scores
from engine.checkpoint import DirectoryCheckpoints
from engine.config import ConfigError, DataConfig, RunConfig, ScoreConfig, TrainConfig
from engine.device import resolve_device
from engine.loading import LoadedData, load_data
from engine.metrics import anomaly_targets, auroc
from engine.run import evaluate
from engine.train import NonFiniteLoss, StepReport, TrainingCancelled, train
from engine.tta import score_images

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = REPO.parent / "shared" / "data"
STATE_ROOT = REPO / "benchmarks" / "state"
RESULTS_DIR = REPO / "docs"

START_MARGIN_S = 30.0  # with less time than this left, no new cell starts (loading alone can take that long)
PROGRESS_EVERY_S = 30.0  # a progress line on stderr at most this often
SAVE_MARGIN_S = 5.0  # time kept for writing a checkpoint when deciding whether the next one is reachable

# ------------------------------------------------------------------------------------------------ datasets


@dataclass(frozen=True)
class Dataset:
    """A real dataset under the data root and how its normal class is chosen."""

    title: str
    source: str  # path under the data root
    normal_label: str | None  # None: one class at a time (`classes`)
    holdout_fraction: float = 0.0  # sources without splits: seeded share of the normals scored, not trained on
    classes: tuple[str, ...] = ()


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
HOLDOUT_SEED = 0  # DataConfig.seed: the BR35H holdout split, fixed for every training seed and budget

DATASETS = {
    "breastmnist": Dataset("BreastMNIST", "breastmnist.npz", "1"),
    "pneumoniamnist": Dataset("PneumoniaMNIST", "pneumoniamnist.npz", "0"),
    "br35h": Dataset("BR35H", "br35h", "no", holdout_fraction=0.3),
    "cifar10": Dataset("CIFAR-10 one-class", "cifar10/cifar10_jpg_q75.zip", None, classes=CIFAR10_CLASSES),
}

# ------------------------------------------------------------------------------------------------- methods


@dataclass(frozen=True)
class Method:
    title: str
    method: str  # TrainConfig.method
    context: str  # TrainConfig.context (unused by SimCLR's training)


METHODS = {
    "con2_invert": Method("Con2 (invert)", "con2", "invert"),
    "con2_flip": Method("Con2 (flip)", "con2", "flip"),
    "con2_equalize": Method("Con2 (equalize)", "con2", "equalize"),
    "context_only": Method("L_context only (invert)", "context_only", "invert"),
    "content_only": Method("L_content only (invert)", "content_only", "invert"),
    "simclr": Method("SimCLR", "simclr", "invert"),
}
FLOOR = "pixel_1nn"  # raw-pixel cosine 1-NN: no learning, seed-free; the floor every method must beat
FLOOR_TITLE = "Raw pixels, 1-NN (floor)"

# The paper's AUROC % as (S_NND, S_LH): Table 1 (invert, SimCLR; 3 seeds), Table 2 (flip, equalize; S_NND),
# Table 4 (CIFAR-10 one-class mean over classes; its ± is over classes, so only means are quoted).
PAPER: dict[tuple[str, str], tuple[str | None, str | None]] = {
    ("breastmnist", "con2_invert"): ("81.7 ± 1.4", None),
    ("breastmnist", "con2_flip"): ("81.7 ± 1.4", None),
    ("breastmnist", "con2_equalize"): ("72.2 ± 1.8", None),
    ("breastmnist", "simclr"): ("74.7 ± 3.1", None),
    ("pneumoniamnist", "con2_invert"): ("91.1 ± 0.7", None),
    ("pneumoniamnist", "con2_flip"): ("92.8 ± 1.1", None),
    ("pneumoniamnist", "con2_equalize"): ("93.9 ± 0.3", None),
    ("pneumoniamnist", "simclr"): ("91.0 ± 0.9", None),
    ("br35h", "con2_invert"): ("100.0 ± 0.0", None),
    ("br35h", "con2_flip"): ("99.8 ± 0.3", None),
    ("br35h", "con2_equalize"): ("99.9 ± 0.0", None),
    ("br35h", "simclr"): ("99.8 ± 0.1", None),
    ("cifar10", "con2_invert"): ("94.6", "93.7"),
    ("cifar10", "con2_flip"): ("95.3", "94.7"),
    ("cifar10", "con2_equalize"): ("91.5", "91.1"),
}

# ------------------------------------------------------------------------------------------------- budgets


@dataclass(frozen=True)
class Plan:
    """How one budget trains and scores one dataset; every field can be overridden from the command line."""

    image_size: int
    epochs: int
    batch_size: int
    encoder: str = "resnet_small"
    crop_fraction: float = 1.0  # 0.875: the paper's resize 256 → center crop 224
    tta: int = 40
    temperature: float = 0.2
    checkpoint_every: int = 10
    seeds: tuple[int, ...] = (0, 1, 2)
    methods: tuple[str, ...] = tuple(METHODS)
    classes: tuple[str, ...] = ()  # CIFAR-10: the normal classes to run (empty = all ten)


MEDICAL_224 = {"image_size": 224, "crop_fraction": 0.875, "encoder": "resnet18", "tta": 40}

BUDGETS: dict[str, dict[str, Plan]] = {
    # 2 CPU cores. BreastMNIST: every method × 3 seeds in about an hour (docs/benchmarks.md). PneumoniaMNIST
    # and BR35H: fewer methods, 3 seeds, about 20 minutes each; CIFAR-10: one seed, all ten classes, about 50.
    "cpu": {
        "breastmnist": Plan(image_size=28, epochs=60, batch_size=64, checkpoint_every=10),
        "pneumoniamnist": Plan(
            image_size=28, epochs=20, batch_size=128, methods=("con2_invert", "content_only", "simclr")
        ),
        "br35h": Plan(image_size=32, epochs=20, batch_size=128, methods=("con2_invert", "simclr")),
        "cifar10": Plan(
            image_size=32,
            epochs=5,
            batch_size=256,
            tta=1,
            checkpoint_every=1,
            seeds=(0,),
            methods=("con2_invert", "simclr"),
        ),
    },
    # The paper's preprocessing, encoder and batch sizes, for a GPU; epochs below the paper's 2048 except on
    # BreastMNIST (docs/benchmarks.md gives the arithmetic). Checkpoints often enough for 10-minute sessions.
    "paper": {
        "breastmnist": Plan(**MEDICAL_224, epochs=2048, batch_size=64, checkpoint_every=50),
        "pneumoniamnist": Plan(**MEDICAL_224, epochs=512, batch_size=128, checkpoint_every=10),
        "br35h": Plan(**MEDICAL_224, epochs=512, batch_size=128, checkpoint_every=10),
        "cifar10": Plan(
            image_size=32,
            epochs=256,
            batch_size=512,
            encoder="resnet18",
            tta=40,
            checkpoint_every=5,
            methods=("con2_invert", "con2_flip", "con2_equalize", "simclr"),  # Table 4's contexts + the baseline
        ),
    },
}
DEFAULT_DATASETS = {"cpu": ("breastmnist", "pneumoniamnist", "br35h"), "paper": tuple(DATASETS)}
DEFAULT_TIME_LIMIT_S = {"cpu": 0.0, "paper": 540.0}

# ---------------------------------------------------------------------------------------------------- cells


@dataclass(frozen=True)
class Cell:
    """One measurement: a dataset (and CIFAR-10 normal class), a method and a training seed."""

    dataset: str
    normal_class: str | None
    method: str
    seed: int | None  # None for the seed-free floor

    @property
    def variant(self) -> str:
        return self.dataset if self.normal_class is None else f"{self.dataset}-{self.normal_class}"

    @property
    def id(self) -> str:
        return f"{self.variant}__{self.method}" + ("" if self.seed is None else f"__s{self.seed}")


def plan_cells(datasets: Iterable[str], plans: dict[str, Plan], with_floor: bool) -> list[Cell]:
    """Cells in running order: dataset, class, seed, method, so a partial run compares methods at equal seeds."""
    cells = []
    for name in datasets:
        plan = plans[name]
        for normal_class in plan.classes or DATASETS[name].classes or (None,):
            if with_floor:
                cells.append(Cell(name, normal_class, FLOOR, None))
            cells += [Cell(name, normal_class, m, s) for s in plan.seeds for m in plan.methods]
    return cells


def run_config(cell: Cell, plan: Plan, data_root: Path, device: str) -> RunConfig:
    dataset, method = DATASETS[cell.dataset], METHODS.get(cell.method, METHODS["con2_invert"])
    return RunConfig(
        data=DataConfig(
            source=str(data_root / dataset.source),
            normal_label=cell.normal_class or dataset.normal_label,
            train_split="train",
            score_split="test",
            holdout_fraction=dataset.holdout_fraction,
            image_size=plan.image_size,
            crop_fraction=plan.crop_fraction,
            seed=HOLDOUT_SEED,
        ),
        train=TrainConfig(
            method=method.method,
            context=method.context,
            encoder=plan.encoder,
            epochs=plan.epochs,
            batch_size=plan.batch_size,
            temperature=plan.temperature,
            seed=cell.seed or 0,
            device=device,
            checkpoint_every=plan.checkpoint_every,
        ),
        score=ScoreConfig(tta=plan.tta),
    )


def comparable(config: RunConfig | dict[str, Any], floor: bool = False) -> dict[str, Any]:
    """The settings that make two runs of a cell the same measurement: the data root, the device and
    the checkpoint interval may differ between machines and sessions; the floor only depends on the data.
    A stored config is read through RunConfig, so a field added since then compares as its default."""
    if not isinstance(config, RunConfig):
        try:
            config = RunConfig.from_dict(config)
        except ConfigError:  # a field since removed: compare as stored (and so differ)
            pass
    raw = json.loads(json.dumps(config.to_dict() if isinstance(config, RunConfig) else config))
    raw["data"]["source"] = Path(raw["data"]["source"]).name
    for key in ("device", "amp", "checkpoint_every"):
        raw["train"].pop(key, None)
    return {"data": raw["data"]} if floor else raw


class StateMismatch(Exception):
    """The state directory holds this cell made with other settings."""


# ----------------------------------------------------------------------------------------------- time limit


def next_checkpoint_reachable(
    report: StepReport, checkpoint_every: int, session_steps: int, remaining_s: float, margin_s: float = SAVE_MARGIN_S
) -> bool:
    """Whether training can reach (and write) its next checkpoint in `remaining_s` at this session's pace.

    The engine writes a checkpoint after every `checkpoint_every`-th epoch and after the last one, once
    the step callback of the epoch's last step has returned. A step that ends such an epoch is always
    allowed to continue: its checkpoint is written right after. `session_steps`: steps this session has
    run, including this one (their mean duration is the pace).
    """
    per_epoch = report.total_steps // report.epochs
    target_epoch = min(math.ceil(report.epoch / checkpoint_every) * checkpoint_every, report.epochs)
    steps_left = target_epoch * per_epoch - report.step
    if steps_left <= 0:
        return True
    seconds_per_step = report.elapsed_s / max(session_steps, 1)
    return steps_left * seconds_per_step + margin_s <= remaining_s


class TimeLimit:
    """The progress callbacks of every cell of one invocation: stop before the limit without losing an epoch.

    `max_steps` stops (exactly like the time limit) after that many training steps in this process: a
    deterministic interruption for testing the resume path.
    """

    def __init__(self, limit_s: float, max_steps: int | None = None, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.deadline = clock() + limit_s if limit_s > 0 else math.inf
        self.max_steps = max_steps
        self.steps = 0
        self.stopped = False

    def remaining_s(self) -> float:
        return self.deadline - self.clock()

    def begin_cell(self, checkpoint_every: int) -> None:
        self.checkpoint_every = checkpoint_every
        self.session_steps = 0
        self.first_epoch: int | None = None  # epochs already done when this session started
        self.checkpointed_epoch: int | None = None
        self.last: StepReport | None = None
        self.logged = self.clock()

    def on_step(self, report: StepReport) -> bool:
        self.steps += 1
        self.session_steps += 1
        self.last = report
        if self.clock() - self.logged >= PROGRESS_EVERY_S or report.step == report.total_steps:
            self.logged = self.clock()
            log(
                f"  epoch {report.epoch}/{report.epochs} step {report.step}/{report.total_steps} "
                f"loss {report.loss:.3f} {report.images_per_s:.0f} img/s eta {report.eta_s:.0f} s"
            )
        if self.first_epoch is None:
            self.first_epoch = (report.step - 1) // (report.total_steps // report.epochs)
        out_of_steps = self.max_steps is not None and self.steps >= self.max_steps
        if out_of_steps or not next_checkpoint_reachable(
            report, self.checkpoint_every, self.session_steps, self.remaining_s()
        ):
            self.stopped = True
            return False
        if report.epoch_end and (report.epoch % self.checkpoint_every == 0 or report.epoch == report.epochs):
            self.checkpointed_epoch = report.epoch
        return True

    def on_scoring(self, done: int, total: int) -> bool:
        if self.remaining_s() <= 0:
            self.stopped = True
            return False
        return True


# ------------------------------------------------------------------------------------------------ measuring


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({os.cpu_count()} cores)"


def pixel_floor(loaded: LoadedData, normal_label: str | None) -> dict[str, Any]:
    """S_NND on raw pixels: cosine 1-NN distance of the flattened pixels to the normal train images."""
    started = time.perf_counter()
    scores = pixel_nnd_scores(loaded)
    targets = anomaly_targets(loaded.score.labels, normal_label)
    return {
        "auroc_nnd": None if targets is None else auroc(targets, scores),
        "auroc_lh": None,
        "n_train": len(loaded.train),
        "n_scored": len(loaded.score),
        "n_anomalous": None if targets is None else int(targets.sum()),
        "score_s": time.perf_counter() - started,
        "train_s": 0.0,
        "device": device_name("cpu"),
    }


class DataCache:
    """The last decoded dataset: consecutive cells of one dataset and class decode it once."""

    def __init__(self) -> None:
        self.key: tuple[Any, ...] | None = None
        self.loaded: LoadedData | None = None

    def get(self, config: DataConfig) -> tuple[LoadedData, float]:
        """The decoded data and the seconds decoding took now (0 when cached)."""
        key = dataclasses.astuple(config)
        if key == self.key and self.loaded is not None:
            return self.loaded, 0.0
        self.loaded, self.key = None, None  # free the previous set before decoding the next
        started = time.perf_counter()
        self.loaded, self.key = load_data(config), key
        return self.loaded, time.perf_counter() - started


def write_json(path: Path, value: Any) -> None:
    """Replace `path` atomically: a crash mid-write keeps the previous file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")
    os.replace(partial, path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_cell(
    cell: Cell, config: RunConfig, budget: str, cell_dir: Path, cache: DataCache, limit: TimeLimit
) -> tuple[str, dict[str, Any] | None]:
    """Run (or resume) one cell. Returns ("finished" | "skipped" | "stopped" | "failed", its result)."""
    result_path, sessions_path = cell_dir / "result.json", cell_dir / "sessions.json"
    floor = cell.method == FLOOR
    wanted = comparable(config, floor)
    done = read_json(result_path)
    if done is not None:
        if comparable(done["config"], floor) != wanted:
            raise StateMismatch(f"{cell.id}: {result_path} was made with other settings ({_diff(done, wanted)})")
        return "skipped", done
    sessions = read_json(sessions_path) or {"config": config.to_dict(), "sessions": []}
    if comparable(sessions["config"], floor) != wanted:
        raise StateMismatch(f"{cell.id}: its checkpoint was made with other settings ({_diff(sessions, wanted)})")
    loaded, load_s = cache.get(config.data)
    base: dict[str, Any] = {
        "cell": cell.id,
        "budget": budget,
        "dataset": cell.dataset,
        "normal_class": cell.normal_class,
        "method": cell.method,
        "seed": cell.seed,
        "config": config.to_dict(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.node(),
    }
    if floor:
        result = {**base, **pixel_floor(loaded, config.data.normal_label), "load_s": load_s, "sessions": []}
        result["wall_s"] = result["score_s"]
        result["finished_at"] = _now()
        write_json(result_path, result)
        return "finished", result

    write_json(sessions_path, sessions)  # the settings the checkpoint will be made with, before there is one
    limit.begin_cell(config.train.checkpoint_every)
    session: dict[str, Any] = {"started_at": _now(), "load_s": load_s}
    store = DirectoryCheckpoints(cell_dir)
    try:
        try:
            trained = train(loaded.train.pixels, config.train, on_step=limit.on_step, checkpoints=store)
        except (TrainingCancelled, KeyboardInterrupt) as stop:
            report = limit.last
            cancelled = isinstance(stop, TrainingCancelled) and limit.max_steps is None
            if report is not None and limit.checkpointed_epoch is None and cancelled:
                per_step = report.elapsed_s / max(limit.session_steps, 1)
                steps = config.train.checkpoint_every * report.total_steps // report.epochs
                log(
                    f"  warning: no checkpoint fits this session: {config.train.checkpoint_every} epochs take "
                    f"≈ {steps * per_step:.0f} s at {per_step:.1f} s/step; lower --checkpoint-every or raise "
                    "--time-limit-s, or reruns will make no progress"
                )
            session.update(
                stopped_in="training",
                from_epoch=limit.first_epoch,
                to_epoch=limit.checkpointed_epoch or limit.first_epoch,
                train_s=report.elapsed_s if report else 0.0,
                images=report.images_per_s * report.elapsed_s if report else 0.0,
            )
            raise
        session.update(
            from_epoch=config.train.epochs if limit.first_epoch is None else limit.first_epoch,
            to_epoch=config.train.epochs,
            # this session's own time: `trained.wall_s` also counts earlier sessions, which are summed below
            train_s=limit.last.elapsed_s if limit.session_steps and limit.last else 0.0,
            images=limit.last.images_per_s * limit.last.elapsed_s if limit.session_steps and limit.last else 0.0,
            device=device_name(trained.device),
        )
        scores = score_images(
            trained,
            loaded.train.pixels,
            loaded.score.pixels,
            config.score,
            query_in_bank=loaded.score_in_train,
            on_progress=limit.on_scoring,
        )
    except (TrainingCancelled, KeyboardInterrupt) as stop:
        session.setdefault("stopped_in", "scoring")
        session.setdefault("device", device_name(resolve_device(config.train.device)))
        session["interrupted"] = isinstance(stop, KeyboardInterrupt)
        sessions["sessions"].append(session)
        write_json(sessions_path, sessions)
        if isinstance(stop, KeyboardInterrupt):
            raise
        return "stopped", None
    except NonFiniteLoss as error:
        session.update(stopped_in="failed", error=str(error))
        sessions["sessions"].append(session)
        result = {**base, "error": f"non-finite loss: {error}", "auroc_nnd": None, "auroc_lh": None}
        result.update(sessions=sessions["sessions"], finished_at=_now())
        write_json(result_path, result)
        (cell_dir / "last.pt").unlink(missing_ok=True)
        return "failed", result
    session["score_s"] = scores.wall_s
    sessions["sessions"].append(session)
    metrics = evaluate(loaded.score, scores, config.data.normal_label)
    plain: dict[str, Any] = {"auroc_nnd": metrics["auroc_nnd"], "auroc_lh": metrics["auroc_lh"]}
    if config.score.tta > 1:  # the plain image too: one more view, seconds, and TTA does not always help
        single = score_images(
            trained,
            loaded.train.pixels,
            loaded.score.pixels,
            dataclasses.replace(config.score, tta=1),
            query_in_bank=loaded.score_in_train,
        )
        plain = evaluate(loaded.score, single, config.data.normal_label)
    train_s = sum(s.get("train_s", 0.0) for s in sessions["sessions"])
    images = sum(s.get("images", 0.0) for s in sessions["sessions"])
    result = {
        **base,
        **{k: metrics[k] for k in ("auroc_nnd", "auroc_lh", "silhouette", "n_scored", "n_anomalous")},
        "auroc_nnd_tta1": plain["auroc_nnd"],
        "auroc_lh_tta1": plain["auroc_lh"],
        "n_train": len(loaded.train),
        "train_s": train_s,
        "score_s": scores.wall_s,
        "wall_s": train_s + scores.wall_s,
        "images_per_s": images / train_s if train_s > 0 else None,
        "device": session["device"],
        "resumed": len(sessions["sessions"]) > 1,
        "sessions": sessions["sessions"],
        "finished_at": _now(),
    }
    write_json(result_path, result)
    # the result is the measurement; the checkpoint (up to ~130 MB for ResNet18) is no longer needed
    (cell_dir / "last.pt").unlink(missing_ok=True)
    sessions_path.unlink(missing_ok=True)
    return "finished", result


def _diff(record: dict[str, Any], wanted: dict[str, Any]) -> str:
    """'train.epochs: 60 there, 3 now' for every setting that differs."""
    stored = comparable(record["config"], set(wanted) == {"data"})
    changes = [
        f"{section}.{key}: {stored[section].get(key)!r} there, {value!r} now"
        for section in wanted
        for key, value in wanted[section].items()
        if stored.get(section, {}).get(key) != value
    ]
    return "; ".join(changes) or "different settings"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


# -------------------------------------------------------------------------------------------------- tables


def _stat(values: list[float]) -> dict[str, Any] | None:
    """Mean ± sample std (n − 1) of AUROCs, in %."""
    if not values:
        return None
    pct = [100 * v for v in values]
    return {"mean": statistics.fmean(pct), "std": statistics.stdev(pct) if len(pct) > 1 else None, "n": len(pct)}


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def load_results(state_root: Path) -> dict[str, list[dict[str, Any]]]:
    """Every finished cell under the state root, by budget."""
    out: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(state_root.glob("*/*/result.json")):
        result = json.loads(path.read_text())
        out.setdefault(result["budget"], []).append(result)
    return out


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


DEVIATIONS = [
    "Image size: the paper resizes every medical image to 256 and center-crops 224. The `cpu` budget trains "
    "and scores MedMNIST at its native 28 px and BR35H at 32 px; the `paper` budget uses resize 256 → crop 224 "
    "(crop_fraction 0.875). BreastMNIST/PneumoniaMNIST files are the 28 px MedMNIST release, so even at "
    "224 px they are upsampled 28 px images, not the original ultrasound/x-ray resolution.",
    "Epochs: the paper trains 2048 epochs. `cpu`: 60 (BreastMNIST), 20 (PneumoniaMNIST, BR35H), 5 (CIFAR-10). "
    "`paper`: 2048 (BreastMNIST), 512 (PneumoniaMNIST, BR35H), 256 (CIFAR-10), chosen to fit an H100 in a few "
    "hours per dataset; each cell records its own epochs.",
    "Encoder: the paper uses a randomly initialised ResNet18 (512-d). `cpu` uses `resnet_small` (the same "
    "layout at ¼ width, 128-d features); `paper` uses ResNet18.",
    "Test-time augmentation: A = 40 (20 on x, 20 on its context image) as the paper adopts for its baselines; "
    "`cpu` CIFAR-10 uses A = 1 (no TTA) because scoring 10 000 test images 40 times does not fit a CPU.",
    "Temperature τ = 0.2 and the augmentation strengths are our defaults (the paper gives neither); the "
    "content augmentations skip Gaussian blur below 64 px.",
    "CIFAR-10 is read from a JPEG (quality ≈ 75) copy of the dataset, not the PNG originals; AUROC may differ "
    "slightly from published figures.",
    "PneumoniaMNIST (28 px MedMNIST, 1214 normal train images) stands in for the paper's full-resolution "
    "Kermany chest x-ray set; the paper's Pneumonia figure is on that set.",
    "BR35H has no official split: the 1500 `no` images are split by a permutation seeded 0 (DataConfig.seed, "
    "the engine's holdout rule): the first round(0.3 × 1500) = 450 are test normals, the other 1050 train; "
    "all 701 `yes` images of our copy (the paper had all 1500) are test anomalies. `no` holds one "
    "byte-identical duplicate, which may fall on both sides of the split.",
    "Seeds: the paper reports 3 seeds everywhere; the `cpu` budget runs "
    + ", ".join(f"{len(plan.seeds)} on {DATASETS[name].title}" for name, plan in BUDGETS["cpu"].items())
    + ".",
    "Batch sizes follow the paper (BreastMNIST 64, others 128, CIFAR-10 512) on `paper`; `cpu` CIFAR-10 uses 256.",
]


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
        '"not run" = no measurement; paper figures are Con2 Table 1 (invert, SimCLR), Table 2 (flip, '
        'equalize) and Table 4 (CIFAR-10), "—" where the paper gives none. Times are per seed: training '
        '(summed over resumed sessions) and scoring with test-time augmentation (TTA). "no TTA" scores the '
        "plain images with the same model (A = 1).",
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
                    if row["method"] != FLOOR
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


def write_tables(state_root: Path, results_dir: Path) -> dict[str, Any]:
    """Rewrite results.json and results.md from every finished cell of every budget under the state root."""
    results = load_results(state_root)
    summary = {
        "generated_at": _now(),
        "protocol": "train on normal train images; score the whole test split; AUROC % (anomalous positive); "
        "mean ± sample std over seeds",
        "budgets": {budget: summarise(budget, results.get(budget, [])) for budget in BUDGETS},
        "budget_settings": {b: {d: dataclasses.asdict(p) for d, p in plans.items()} for b, plans in BUDGETS.items()},
        "deviations": DEVIATIONS,
    }
    write_json(results_dir / "results.json", summary)
    markdown = results_dir / "results.md"
    partial = markdown.with_name(markdown.name + ".partial")
    partial.write_text(render_markdown(summary))
    os.replace(partial, markdown)
    return summary


# ---------------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run the Con2 paper's protocol on real data and write docs/results.md and docs/results.json.",
        allow_abbrev=False,
    )
    parser.add_argument("--budget", required=True, choices=tuple(BUDGETS))
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
    return parser.parse_args(argv)


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


if __name__ == "__main__":
    sys.exit(main())
