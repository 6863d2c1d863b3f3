"""Run (or resume, or skip) one cell: a dataset, a method and a training seed, through engine.run.

A learned method's cell is `engine.run.train_run` with the invocation's time limit as its callback and
the cell's folder as its checkpoint store, plus one scoring pass without TTA (A = 1) with the same
model. The floor is engine.baseline's raw-pixel 1-NN. Consecutive cells of one dataset decode it once.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.reproduction import state
from benchmarks.reproduction.protocol import FLOOR, Cell, comparable
from benchmarks.reproduction.timelimit import TimeLimit, log
from engine.baseline import pixel_nnd_scores
from engine.checkpoint import LAST, DirectoryCheckpoints
from engine.config import DataConfig, RunConfig
from engine.device import resolve_device
from engine.loading import LoadedData, load_data
from engine.metrics import anomaly_targets, auroc
from engine.run import RunResult, evaluate, train_run
from engine.train import NonFiniteLoss, TrainingCancelled
from engine.tta import score_images


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({os.cpu_count()} cores)"


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


class CellCheckpoints(DirectoryCheckpoints):
    """The cell folder's checkpoints, remembering the epoch of the last one loaded or saved: once that is
    the last epoch, training is over, and a stop is a stop in scoring (which a rerun redoes)."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.epoch = 0

    def load(self) -> dict[str, Any] | None:
        saved = super().load()
        if saved is not None:
            self.epoch = saved["epoch"]
        return saved

    def save(self, state: dict[str, Any]) -> None:
        super().save(state)
        self.epoch = state["epoch"]


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


def without_tta(run: RunResult, loaded: LoadedData) -> dict[str, Any]:
    """AUROCs of the plain images (A = 1) with the run's model: one more view, and TTA does not always help."""
    if run.config.score.tta <= 1:
        return {"auroc_nnd": run.metrics["auroc_nnd"], "auroc_lh": run.metrics["auroc_lh"]}
    single = score_images(
        run.trained,
        run.bank.pixels,
        run.scored.pixels,
        dataclasses.replace(run.config.score, tta=1),
        query_in_bank=loaded.score_in_train,
    )
    return evaluate(run.scored, single, run.config.data.normal_label)


def run_cell(
    cell: Cell, config: RunConfig, budget: str, cell_dir: Path, cache: DataCache, limit: TimeLimit
) -> tuple[str, dict[str, Any] | None]:
    """Run (or resume) one cell. Returns ("finished" | "skipped" | "stopped" | "failed", its result)."""
    result_path, sessions_path = cell_dir / state.RESULT, cell_dir / state.SESSIONS
    floor = cell.method == FLOOR
    wanted = comparable(config, floor)
    done = state.read_json(result_path)
    if done is not None:
        state.check_same(cell.id, done, wanted, str(result_path))
        return "skipped", done
    sessions = state.read_json(sessions_path) or {"config": config.to_dict(), "sessions": []}
    state.check_same(cell.id, sessions, wanted, "its checkpoint")
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
        result["finished_at"] = state.now()
        state.write_json(result_path, result)
        return "finished", result

    state.write_json(sessions_path, sessions)  # the settings the checkpoint will be made with, before there is one
    limit.begin_cell(config.train.checkpoint_every)
    session: dict[str, Any] = {"started_at": state.now(), "load_s": load_s}
    checkpoints = CellCheckpoints(cell_dir)
    try:
        run = train_run(config, on_progress=limit.on_progress, checkpoints=checkpoints, loaded=loaded)
    except (TrainingCancelled, KeyboardInterrupt) as stop:
        trained = checkpoints.epoch == config.train.epochs
        if not trained and isinstance(stop, TrainingCancelled) and (warning := limit.no_checkpoint_warning()):
            log(f"  warning: {warning}")
        session.update(limit.session(config.train.epochs, trained=trained))
        session.update(
            stopped_in="scoring" if trained else "training",
            device=device_name(resolve_device(config.train.device)),
            interrupted=isinstance(stop, KeyboardInterrupt),
        )
        sessions["sessions"].append(session)
        state.write_json(sessions_path, sessions)
        if isinstance(stop, KeyboardInterrupt):
            raise
        return "stopped", None
    except NonFiniteLoss as error:
        session.update(stopped_in="failed", error=str(error))
        sessions["sessions"].append(session)
        result = {**base, "error": f"non-finite loss: {error}", "auroc_nnd": None, "auroc_lh": None}
        result.update(sessions=sessions["sessions"], finished_at=state.now())
        state.write_json(result_path, result)
        (cell_dir / LAST).unlink(missing_ok=True)
        return "failed", result
    # metrics["device"]: a classical reference has no trained model, and says "cpu" itself
    session.update(limit.session(config.train.epochs, trained=True), device=device_name(run.metrics["device"]))
    session["score_s"] = run.scores.wall_s
    sessions["sessions"].append(session)
    plain = without_tta(run, loaded)  # a classical reference scores with one view: its plain score is its score
    train_s = sum(s.get("train_s", 0.0) for s in sessions["sessions"])
    images = sum(s.get("images", 0.0) for s in sessions["sessions"])
    metrics = run.metrics
    result = {
        **base,
        **{k: metrics[k] for k in ("auroc_nnd", "auroc_lh", "auroc_pixels", "silhouette", "n_scored", "n_anomalous")},
        "auroc_nnd_tta1": plain["auroc_nnd"],
        "auroc_lh_tta1": plain["auroc_lh"],
        "n_train": metrics["n_train"],
        "train_s": train_s,
        "score_s": run.scores.wall_s,
        "wall_s": train_s + run.scores.wall_s,
        "images_per_s": images / train_s if train_s > 0 else None,
        "device": session["device"],
        "resumed": len(sessions["sessions"]) > 1,
        "sessions": sessions["sessions"],
        "finished_at": state.now(),
    }
    state.write_json(result_path, result)
    # the result is the measurement; the checkpoint (up to ~130 MB for ResNet18) is no longer needed
    (cell_dir / LAST).unlink(missing_ok=True)
    sessions_path.unlink(missing_ok=True)
    return "finished", result
