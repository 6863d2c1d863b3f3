"""Where a run's settings start: a quick CPU preset and one closer to the paper for a GPU.

Overrides of the engine's defaults (engine/config.py); the Train form shows the result, every field editable.
"""

from __future__ import annotations

from typing import Any

from engine.config import RunConfig

# Presets: overrides of the engine's defaults. CPU: a quick run a laptop finishes in minutes; the
# bundled digits are 8×8, so 16 px loses nothing there. GPU: closer to the paper (ResNet18, TTA 40, AMP).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "CPU (quick)": {
        "data": {"image_size": 32},
        "train": {"encoder": "resnet_small", "epochs": 30, "batch_size": 32, "device": "auto", "amp": True},
        "score": {"tta": 8},
    },
    "GPU (closer to the paper)": {
        "data": {"image_size": 64},
        "train": {"encoder": "resnet18", "epochs": 200, "batch_size": 128, "device": "auto", "amp": True},
        "score": {"tta": 40},
    },
}
PRESET_NOTES = {
    "CPU (quick)": "resnet_small, 30 epochs, TTA 8. On the bundled digits (16 px) a 2-core CPU trains and "
    "scores in about 15 s, plus 10–20 s for the UMAP (measured 13 s + 11 s); a few thousand 32 px images take "
    "minutes. Far from the paper's 2048 epochs: good for a first ranking, not for a final number.",
    "GPU (closer to the paper)": "ResNet18 (the paper's encoder), 64 px, 200 epochs, TTA 40, bfloat16 mixed "
    "precision. Minutes to an hour on one GPU depending on the data; on a CPU it would take many hours.",
}
SMALL_IMAGES_PX = 16  # datasets whose images are at most this side (digits: 8 px) train at 16 px


def preset_config(preset: str, *, max_side: int | None = None, normal_label: str | None = "0") -> RunConfig:
    """The run config a preset starts from: engine defaults overlaid with the preset.

    `max_side`: the dataset's largest image side, when known; tiny images (≤ 16 px) train at 16 px
    with the CPU preset. `normal_label`: the label that trains (None = every sample).
    """
    raw = {section: dict(values) for section, values in PRESETS[preset].items()}
    if preset.startswith("CPU") and max_side is not None and max_side <= SMALL_IMAGES_PX:
        raw["data"]["image_size"] = 16
    raw["data"]["normal_label"] = normal_label
    return RunConfig.from_dict(raw)
