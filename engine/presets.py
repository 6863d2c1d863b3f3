"""Named starting points for a run: overrides of the engine's defaults (engine/config.py).

One owner for the CLI (`con2 train --preset paper`) and the dashboard's Train form. A preset never hides
a setting: the form shows the result with every field editable, and flags given after it win.
"""

from __future__ import annotations

from typing import Any

from engine.config import AUTO_BATCH, RunConfig

CPU, GPU, PAPER = "CPU (quick)", "GPU (closer to the paper)", "Paper (as published)"
# short names for the command line
NAMES = {"cpu": CPU, "gpu": GPU, "paper": PAPER}

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # The engine's defaults are the CPU recipe (α = 1 throughout, λ = 0.3, one view per context, grid features,
    # test-time views without augmentation, the context and the encoder chosen from the images: equalize and
    # resnet_small's first two stages for greyscale images above 16 px, invert and resnet_small otherwise, and the
    # auxiliary rotation task on colour photographs;
    # docs/quality.md says how each was chosen); this preset keeps first runs short (60 epochs at 32 px, tiny images
    # at 16 px) and spells out the scoring it shares with the engine.
    CPU: {
        "data": {"image_size": 32},
        "train": {"encoder": "auto", "epochs": 60, "batch_size": AUTO_BATCH, "device": "auto", "amp": True},
        "score": {"tta": 2, "tta_augment": False},
    },
    # The paper's method at a GPU budget: nothing measured yet says the CPU recipe's departures help at 64 px
    # and 200 epochs (no GPU has run this code), so the method's own settings.
    GPU: {
        "data": {"image_size": 64},
        "train": {
            "encoder": "resnet18",
            "epochs": 200,
            "batch_size": 128,
            "context": "invert",
            "alpha_schedule": "linear",
            "context_weight": 1.0,
            "views_per_context": 2,
            "rotation_weight": 0.0,
            "device": "auto",
            "amp": True,
        },
        "score": {"tta": 40, "tta_augment": True, "features": "pooled"},
    },
    # Con2 exactly as the paper trains it (App. C–D): resize 256 → center crop 224, ResNet18, 2048 epochs,
    # α annealed linearly from 0, λ = 1, every training view drawn from SimCLR's crop range, TTA 40.
    PAPER: {
        "data": {"image_size": 224, "crop_fraction": 0.875},
        "train": {
            "encoder": "resnet18",
            "epochs": 2048,
            "batch_size": 64,
            "context": "invert",
            "alpha_schedule": "linear",
            "context_weight": 1.0,
            "views_per_context": 2,
            "crop_min_area": 0.0,
            "rotation_weight": 0.0,
            "temperature": 0.2,
            "device": "auto",
            "amp": True,
        },
        "score": {"tta": 40, "tta_augment": True, "tta_min_area": 0.0, "batchnorm": "training", "features": "pooled"},
    },
}
PRESET_NOTES = {
    CPU: "resnet_small (its first two stages alone on greyscale scans), 60 epochs of one view per context in "
    "steps of 16 images on greyscale scans (32 otherwise), grid features, each image and its context image scored "
    "once without test-time augmentation. On the bundled digits (16 px) a "
    "2-core CPU trains and scores in about 15 s, 30 s with the UMAP; a few thousand 32 px images take minutes. "
    "docs/quality.md has how it ranks against raw pixels and SimCLR.",
    GPU: "The paper's method: ResNet18, 64 px, 200 epochs, α annealed, 4 views, TTA 40, bfloat16 mixed precision. "
    "Minutes to an hour "
    "on one GPU depending on the data; on a CPU it would take many hours.",
    PAPER: "The paper's own settings: 224 px, ResNet18, 2048 epochs, α annealed from 0, TTA 40. About a GPU-hour "
    "for BreastMNIST's 399 normals; days on a CPU.",
}
SMALL_IMAGES_PX = 16  # datasets whose images are at most this side (digits: 8 px) train at 16 px on a CPU


def preset_config(preset: str, *, max_side: int | None = None, normal_label: str | None = "0") -> RunConfig:
    """The run config a preset starts from: engine defaults overlaid with the preset.

    `preset`: a name of PRESETS or of NAMES. `max_side`: the dataset's largest image side, when known; tiny
    images (≤ 16 px) train at 16 px with the CPU preset. `normal_label`: the label that trains (None = all).
    """
    preset = NAMES.get(preset, preset)
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(NAMES)}")
    raw = preset_overrides(preset)
    if preset == CPU and max_side is not None and max_side <= SMALL_IMAGES_PX:
        raw["data"]["image_size"] = 16
    raw["data"]["normal_label"] = normal_label
    return RunConfig.from_dict(raw)


def preset_overrides(preset: str) -> dict[str, dict[str, Any]]:
    """A copy of a preset's overrides by section, to lay under a user's own settings."""
    return {section: dict(values) for section, values in PRESETS[NAMES.get(preset, preset)].items()}
