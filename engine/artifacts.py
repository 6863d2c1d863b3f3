"""What a finished run leaves behind: a scoring bundle and, for the CLI, a directory of plain files.

A `Bundle` is everything needed to score new images later without retraining: the encoder, its
training images (the S_NND/S_LH bank, uint8) and how images were decoded. The CLI writes it as
`model.pt` next to human-readable results; the worker stores the same bytes in the database.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import engine.checkpoint as checkpoint  # a module name: Bundle has methods of the same names
from engine.config import DataConfig, TrainConfig
from engine.data import ImageSet, SampleRef, Skipped
from engine.device import resolve_device
from engine.model import Con2Model, shift_classes
from engine.train import TrainedModel
from engine.tta import ScoreResult

MODEL_FILE = "model.pt"


@dataclass
class Bundle:
    """A trained model with its training bank; scores new images like the run scored its own."""

    trained: TrainedModel
    bank: ImageSet
    data: DataConfig  # the training data's config: source, image size, crop, pixel guard

    def to_bytes(self) -> bytes:
        return checkpoint.to_bytes(
            {
                "format": 1,
                "state_dict": self.trained.model.state_dict(),
                "train_config": dataclasses.asdict(self.trained.config),
                "data_config": dataclasses.asdict(self.data),
                "image_size": self.trained.image_size,
                "history": self.trained.history,
                "wall_s": self.trained.wall_s,
                "images_per_s": self.trained.images_per_s,
                "bank_pixels": self.bank.pixels,
                "bank_refs": [dataclasses.astuple(r) for r in self.bank.refs],
            }
        )

    @classmethod
    def from_bytes(cls, blob: bytes, device: str = "auto", what: str = "the saved model") -> Bundle:
        """The bundle `to_bytes` wrote; `CheckpointError` naming `what` for anything else (see `checkpoint`)."""
        saved = checkpoint.from_bytes(blob, what)
        try:
            config = TrainConfig(**saved["train_config"])
            # a CSI model's rotation head is part of its state dict, so the model must be built with it
            model = Con2Model(
                config.encoder,
                saved["image_size"],
                config.projection_dim,
                shift_classes(config.method, config.rotation_weight),
            )
            model.load_state_dict(saved["state_dict"])
            bank = ImageSet(saved["bank_pixels"], [SampleRef(*r) for r in saved["bank_refs"]])
            data = DataConfig(**saved["data_config"])
            history, wall_s, images_per_s = saved["history"], saved["wall_s"], saved["images_per_s"]
        except (KeyError, TypeError, ValueError, RuntimeError) as error:  # missing keys, wrong shapes or types
            problem = f"no {error}" if isinstance(error, KeyError) else str(error).strip().splitlines()[0]
            raise checkpoint.CheckpointError(f"{what} is not a model a con2 train run wrote ({problem})") from None
        if not all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point()):
            raise checkpoint.CheckpointError(f"{what} is broken: its weights hold NaN or infinite values")
        dev = resolve_device(device)
        model = model.to(dev, memory_format=torch.channels_last).eval()
        trained = TrainedModel(model, config, saved["image_size"], dev, history, wall_s, images_per_s)
        return cls(trained, bank, data)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.to_bytes())
        return path

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> Bundle:
        path = Path(path)
        if path.is_dir():
            path = path / MODEL_FILE
        if not path.exists():
            raise FileNotFoundError(f"no trained model at {path} (expected the {MODEL_FILE} a 'train' run writes)")
        try:
            blob = path.read_bytes()
        except OSError as error:
            raise checkpoint.CheckpointError(f"cannot read the model {path}: {error.strerror or error}") from None
        return cls.from_bytes(blob, device, what=f"the model {path}")


def write_results(
    directory: str | Path,
    scored: ImageSet,
    scores: ScoreResult,
    skipped: list[Skipped],
    summary: dict[str, Any],
) -> None:
    """scores.csv (ranked, most anomalous first), features.npz, skipped.csv and summary.json."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    order = np.argsort(-scores.s_nnd, kind="stable")
    with open(directory / "scores.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["rank", "sample_id", "label", "split", "s_nnd", "s_lh", "location"])
        for rank, i in enumerate(order, start=1):
            ref = scored.refs[i]
            writer.writerow(
                [rank, ref.sample_id, ref.label or "", ref.split or "", f"{scores.s_nnd[i]:.6f}",
                 f"{scores.s_lh[i]:.6f}", ref.location]
            )  # fmt: skip
    np.savez_compressed(
        directory / "features.npz",
        sample_id=np.array(scored.ids),
        features=scores.features,
        context_features=scores.context_features,
        s_nnd=scores.s_nnd,
        s_lh=scores.s_lh,
    )
    with open(directory / "skipped.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sample_id", "location", "reason"])
        for s in skipped:
            writer.writerow([s.ref.sample_id, s.ref.location, s.reason])
    (directory / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
