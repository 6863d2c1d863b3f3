"""What a queued job carries: one frozen dataclass per job kind, stored as JSON in `jobs.config`.

`db.job_submit.submit_register`, `submit_train` and `submit_score` build them; the worker (`worker.kinds`) and the
dashboard (`dashboard.runs.settings`, for the run listing, comparison and case view) read them back with
`db.jobs.read_job_config`.

Why here, in db/, and plain Python: the queue (`db/jobs.py`) writes these and the worker reads them, and
`tests/test_architecture.py` lets db/ import neither the engine nor the worker, while the worker may import db/.
So the engine's run config travels as the plain dicts of `engine.config.RunConfig.to_dict()` (one per section,
checked field by field by the engine when the worker builds the `RunConfig`), and this module checks only the
job's own envelope: which keys, of which types, and the projections (`PROJECTIONS`, the one copy the layering
needs of `engine.projection.PROJECTIONS`, held equal by tests/test_facts.py).

The JSON is the same shape the queue has always written, so jobs stored before these types existed read back
as they are; a key this module does not know is refused with a message that names it, never dropped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

PROJECTIONS = ("umap", "pca")  # engine.projection.PROJECTIONS: db/ may not import the engine (tests/test_facts.py)


class JobConfigError(ValueError):
    """A job config that cannot be stored or read back: an unknown key, a wrong type; the message says which."""


def check_projections(methods: Iterable[str]) -> tuple[str, ...]:
    """The projection methods in order, each once; refuses one that is not in PROJECTIONS."""
    if isinstance(methods, str):
        raise JobConfigError(f"projections: a list of methods, not the string {methods!r}")
    methods = tuple(dict.fromkeys(methods))
    unknown = [m for m in methods if m not in PROJECTIONS]
    if unknown:
        raise JobConfigError(f"unknown projection(s) {', '.join(unknown)}; choose from {', '.join(PROJECTIONS)}")
    return methods


def _section(kind: str, name: str, value: Any) -> dict[str, Any]:
    """A RunConfig section as a plain dict; None (a job stored without it) is the engine's defaults."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise JobConfigError(f"{kind} job config: {name} must be a mapping of settings, not {type(value).__name__}")
    return dict(value)


def _int(kind: str, name: str, value: Any) -> int:
    try:
        whole = int(value)
    except (TypeError, ValueError):
        whole = None
    if isinstance(value, bool | str) or whole is None or whole != value:
        raise JobConfigError(f"{kind} job config: {name} must be a whole number, not {value!r}")
    return whole


def _label(kind: str, name: str, value: Any) -> str | None:
    """A split or label name; empty is None (every split, or no label known)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise JobConfigError(f"{kind} job config: {name} must be text, not {value!r}")
    return value


@dataclass(frozen=True)
class RegisterJobConfig:
    """Inventory a dataset's source and make its thumbnails."""

    thumbnail_size: int = 64  # side of each stored thumbnail, pixels
    max_pixels: int = 100_000_000  # images with more pixels are skipped (decompression-bomb guard)

    def __post_init__(self) -> None:
        object.__setattr__(self, "thumbnail_size", _int("register", "thumbnail_size", self.thumbnail_size))
        object.__setattr__(self, "max_pixels", _int("register", "max_pixels", self.max_pixels))


@dataclass(frozen=True)
class TrainJobConfig:
    """Train, score and project one run. `data`, `train`, `score`: the sections of the engine's
    `RunConfig.to_dict()`; `data["source"]` is the dataset's location when the job was queued (`db.jobs.submit`
    writes it; the worker reads the images from the dataset's location at the time it runs)."""

    data: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    score: dict[str, Any] = field(default_factory=dict)
    projections: tuple[str, ...] = PROJECTIONS  # 2-D projections fitted after scoring (any iterable; kept as a tuple)

    def __post_init__(self) -> None:
        for name in self.sections():
            object.__setattr__(self, name, _section("train", name, getattr(self, name)))
        object.__setattr__(self, "projections", check_projections(self.projections))

    @classmethod
    def for_run(cls, run: Mapping[str, Any], *, projections: Iterable[str] = PROJECTIONS) -> TrainJobConfig:
        """From a `RunConfig.to_dict()`; a section left out is the engine's defaults."""
        unknown = sorted(set(run) - set(cls.sections()))
        if unknown:
            raise JobConfigError(
                f"train job config: unknown section(s) {', '.join(unknown)}; a run has {', '.join(cls.sections())}"
            )
        return cls(run.get("data") or {}, run.get("train") or {}, run.get("score") or {}, projections)

    def at(self, source: str) -> TrainJobConfig:
        """The same run reading its images from `source` (a dataset's location)."""
        return dataclasses.replace(self, data={**self.data, "source": source})

    @classmethod
    def sections(cls) -> list[str]:
        """The run config's sections: engine.config.SECTIONS, in its order (tests/test_facts.py)."""
        return [f.name for f in dataclasses.fields(cls) if f.name != "projections"]

    def run(self) -> dict[str, Any]:
        """The run config's dict, for `engine.config.RunConfig.from_dict`."""
        return {name: dict(getattr(self, name)) for name in self.sections()}


@dataclass(frozen=True)
class ScoreJobConfig:
    """Score a dataset with a finished run's model (the job's parent), without retraining."""

    score: dict[str, Any] = field(default_factory=dict)  # the engine's ScoreConfig as a dict; {} = its defaults
    split: str | None = None  # only score this split; None = every image
    normal_label: str | None = None  # label of normal images, to report AUROC when known
    projections: tuple[str, ...] = PROJECTIONS

    def __post_init__(self) -> None:
        object.__setattr__(self, "score", _section("score", "score", self.score))
        object.__setattr__(self, "split", _label("score", "split", self.split))
        object.__setattr__(self, "normal_label", _label("score", "normal_label", self.normal_label))
        object.__setattr__(self, "projections", check_projections(self.projections))


JobConfig = RegisterJobConfig | TrainJobConfig | ScoreJobConfig

# Each job kind's config (db.models.JOB_KINDS).
CONFIGS: dict[str, type[JobConfig]] = {
    "register": RegisterJobConfig,
    "train": TrainJobConfig,
    "score": ScoreJobConfig,
}


def to_json(config: JobConfig) -> dict[str, Any]:
    """The config as JSON-ready values, as `jobs.config` stores it."""
    stored = dataclasses.asdict(config)
    if "projections" in stored:
        stored["projections"] = list(stored["projections"])
    return stored


def read_config(kind: str, raw: Mapping[str, Any] | None) -> JobConfig:
    """A stored job config back as its kind's dataclass. Keys left out (a job stored before they existed) take
    their defaults; an unknown key or a wrong type raises JobConfigError."""
    if kind not in CONFIGS:
        raise JobConfigError(f"unknown job kind {kind!r}; choose one of {', '.join(CONFIGS)}")
    cls = CONFIGS[kind]
    raw = dict(raw or {})
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise JobConfigError(f"{kind} job config: unknown field(s) {', '.join(unknown)}; known: {', '.join(known)}")
    if raw.get("projections") is None:
        raw.pop("projections", None)
    return cls(**raw)
