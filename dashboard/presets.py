"""Where a run's settings start in the Train form: the engine's presets (engine/presets.py), their one owner."""

from __future__ import annotations

from engine.presets import PRESET_NOTES, PRESETS, SMALL_IMAGES_PX, preset_config

__all__ = ["PRESETS", "PRESET_NOTES", "SMALL_IMAGES_PX", "preset_config"]
