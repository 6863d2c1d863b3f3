"""Configs read back from stored dicts: round trip, defaults for missing fields, refusals that name the field."""

from __future__ import annotations

import json

import pytest

from engine.config import ConfigError, DataConfig, RunConfig, ScoreConfig, TrainConfig, build


def test_a_stored_config_reads_back_equal_through_json():
    config = RunConfig(
        DataConfig(source="/data/xray", normal_label=None, image_size=64, crop_fraction=0.875),
        TrainConfig(context="equalize", encoder="resnet18", epochs=7, lr=3e-4, amp=False, alpha_schedule="linear"),
        ScoreConfig(tta=6, features="pooled", lh_shrinkage="fixed", lh_epsilon=0.01),
    )
    stored = json.loads(json.dumps(config.to_dict()))  # as the database and run directories keep it
    assert RunConfig.from_dict(stored) == config


def test_missing_fields_and_sections_take_their_defaults():
    # a config stored before a field existed, or a form that set only a few fields
    config = RunConfig.from_dict({"train": {"epochs": 3}})
    assert config.train == TrainConfig(epochs=3)
    assert config.data == DataConfig() and config.score == ScoreConfig()


def test_extra_top_level_keys_beside_the_sections_are_left_to_their_owner():
    # a train job stores its projections next to the three sections (db/jobs.py) and the worker reads the
    # whole dict through from_dict: a key outside the sections is not a config field
    config = RunConfig.from_dict({"train": {"epochs": 2}, "projections": ["pca"]})
    assert config.train.epochs == 2


@pytest.mark.parametrize(
    "section,raw,message",
    [
        ("train", {"epochs": 2, "epoch": 3}, "TrainConfig: unknown field(s) epoch"),
        ("score", {"tta": 2, "zz": 1, "aa": 0}, "ScoreConfig: unknown field(s) aa, zz"),
        ("data", {"image_sise": 32}, "DataConfig: unknown field(s) image_sise"),
    ],
)
def test_an_unknown_field_is_refused_by_name_not_dropped(section, raw, message):
    with pytest.raises(ConfigError) as error:
        RunConfig.from_dict({section: raw})
    assert str(error.value) == message


def test_values_from_text_are_coerced_to_the_fields_types():
    # the CLI's flags and the form's widgets give text
    train = build(TrainConfig, {"epochs": "5", "lr": "0.01", "amp": "false", "context": "flip"})
    assert (train.epochs, train.lr, train.amp, train.context) == (5, 0.01, False, "flip")
    assert build(TrainConfig, {"amp": "yes", "epochs": 4.0}).amp is True
    assert build(DataConfig, {"normal_label": ""}).normal_label is None  # empty = train on every image


@pytest.mark.parametrize(
    "cls,raw,message",
    [
        (TrainConfig, {"epochs": "many"}, "TrainConfig.epochs: 'many' is not a valid int"),
        (TrainConfig, {"epochs": 2.5}, "TrainConfig.epochs: 2.5 is not a valid int"),
        (TrainConfig, {"amp": "maybe"}, "TrainConfig.amp: 'maybe' is not a valid bool"),
        (TrainConfig, {"epochs": ""}, "TrainConfig.epochs may not be empty"),
        (TrainConfig, {"context": "rotate"}, "TrainConfig.context: unknown value 'rotate'; choose one of auto, invert"),
        (TrainConfig, {"epochs": 0}, "TrainConfig.epochs: 0 is below the minimum 1"),
        (DataConfig, {"crop_fraction": 1.5}, "DataConfig.crop_fraction: 1.5 is above the maximum 1.0"),
        (ScoreConfig, {"lh_epsilon": "nan"}, "ScoreConfig.lh_epsilon: nan is not a finite number"),
    ],
)
def test_a_bad_value_is_one_sentence_naming_the_field(cls, raw, message):
    with pytest.raises(ConfigError) as error:
        build(cls, raw)
    assert str(error.value).startswith(message)
