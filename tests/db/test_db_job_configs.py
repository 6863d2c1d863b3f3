"""Job configs: each kind's dataclass survives JSON, refuses what it does not know, and reads what the queue
stored before these types existed."""

import json

import pytest

from db import datasets, job_reads, job_submit, jobs
from db.job_configs import JobConfigError, RegisterJobConfig, ScoreJobConfig, TrainJobConfig, read_config, to_json
from db.jobs import JobError
from db.models import Job, utcnow
from engine.config import RunConfig, ScoreConfig

# What the queue wrote before db/job_configs.py, verbatim in shape (db/jobs.py at 5e5b6bb): a register job,
# a train job (RunConfig.to_dict() of its time, without the TrainConfig fields added since, plus projections),
# a train job queued by `submit(kind="train")` with no config, and a score job.
OLD_REGISTER = {"thumbnail_size": 64, "max_pixels": 100000000}
OLD_TRAIN = {
    "data": {
        "source": "digits",
        "normal_label": "0",
        "train_split": "train",
        "score_split": "test",
        "holdout_fraction": 0.3,
        "image_size": 16,
        "crop_fraction": 1.0,
        "max_pixels": 100000000,
        "seed": 0,
    },
    "train": {
        "method": "con2",
        "context": "invert",
        "encoder": "resnet_small",
        "projection_dim": 128,
        "epochs": 3,
        "batch_size": 32,
        "lr": 0.001,
        "weight_decay": 0.001,
        "alpha_schedule": "constant",
        "crop_min_area": 0.0,
        "context_weight": 1.0,
        "views_per_context": 1,
        "temperature": 0.2,
        "seed": 0,
        "device": "cpu",
        "amp": True,
        "checkpoint_every": 1,
    },
    "score": {"tta": 2, "tta_min_area": 0.0, "batchnorm": "training", "features": "grid", "k": 1},
    "projections": ["umap", "pca"],
}
OLD_SCORE = {"score": {"tta": 8}, "split": None, "normal_label": "0", "projections": ["pca"]}


@pytest.fixture
def dataset_id(sessions):
    with sessions.begin() as session:
        return datasets.create_dataset(session=session, location="digits").id


CONFIGS = [
    RegisterJobConfig(thumbnail_size=32, max_pixels=1_000),
    TrainJobConfig({"source": "digits", "image_size": 16}, {"epochs": 2}, {"tta": 4}, ("pca",)),
    TrainJobConfig(),
    ScoreJobConfig({"tta": 8}, split="test", normal_label="0", projections=["pca", "umap"]),
    ScoreJobConfig(),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: type(c).__name__)
def test_each_job_config_survives_json(config):
    kind = {RegisterJobConfig: "register", TrainJobConfig: "train", ScoreJobConfig: "score"}[type(config)]
    stored = json.loads(json.dumps(to_json(config)))
    assert read_config(kind, stored) == config


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        ("register", {**OLD_REGISTER, "thumbnail": 32}),
        ("train", {**OLD_TRAIN, "projection": ["pca"]}),
        ("score", {**OLD_SCORE, "normal": "0"}),
    ],
)
def test_an_unknown_field_is_refused_by_name(kind, raw):
    with pytest.raises(JobConfigError, match=rf"{kind} job config: unknown field\(s\) (thumbnail|projection|normal);"):
        read_config(kind, raw)


def test_wrong_types_and_projections_are_refused():
    with pytest.raises(JobConfigError, match="thumbnail_size must be a whole number"):
        read_config("register", {"thumbnail_size": "big"})
    with pytest.raises(JobConfigError, match="train must be a mapping"):
        read_config("train", {"train": ["epochs", 3]})
    with pytest.raises(JobConfigError, match="unknown projection"):
        read_config("score", {"projections": ["tsne"]})
    with pytest.raises(JobConfigError, match="unknown job kind"):
        read_config("export", {})


def test_jobs_stored_by_the_previous_code_read_back(sessions, dataset_id):
    with sessions.begin() as session:
        ids = {}
        for kind, raw in [("register", OLD_REGISTER), ("train", OLD_TRAIN), ("train", {}), ("score", OLD_SCORE)]:
            job = Job(kind=kind, status="queued", dataset_id=dataset_id, config=raw, created_at=utcnow())
            session.add(job)
            session.flush()
            ids[kind, bool(raw)] = job.id
    with sessions() as session:
        read = {key: jobs.read_job_config(job_reads.get_job(session=session, job_id=i)) for key, i in ids.items()}
    assert read["register", True] == RegisterJobConfig(64, 100_000_000)
    train = read["train", True]
    assert train.projections == ("umap", "pca") and train.data["source"] == "digits"
    run = RunConfig.from_dict(train.run())  # the engine still builds it: new TrainConfig fields take their defaults
    assert run.train.epochs == 3 and run.train.crop_max_area == 1.0 and run.score.tta == 2
    assert RunConfig.from_dict(read["train", False].run()) == RunConfig()
    assert read["train", False].projections == ("umap", "pca")  # a job stored without them fitted both
    score = read["score", True]
    assert (score.split, score.normal_label, score.projections) == (None, "0", ("pca",))
    assert ScoreConfig(**score.score) == ScoreConfig(tta=8)


def test_the_queue_stores_the_shape_it_always_stored(sessions, dataset_id):
    """Readers of the stored JSON (the dashboard's run listing) see the same keys as before."""
    run = RunConfig.from_dict({k: v for k, v in OLD_TRAIN.items() if k != "projections"}).to_dict()
    with sessions.begin() as session:
        register = job_submit.submit_register(session=session, dataset_id=dataset_id)
        assert register.config == OLD_REGISTER
        train = job_submit.submit_train(session=session, dataset_id=dataset_id, config=run)
        assert train.config == {**run, "projections": ["umap", "pca"]}
        train.status = "succeeded"
        score = job_submit.submit_score(
            session=session, parent_id=train.id, dataset_id=dataset_id, normal_label="0", projections=["pca"]
        )
        assert score.config == {**OLD_SCORE, "score": run["score"]}  # the parent run's score config by default
        with pytest.raises(JobError, match="unknown section"):
            job_submit.submit_train(session=session, dataset_id=dataset_id, config={**run, "extra": {}})
        with pytest.raises(JobError, match="needs a TrainJobConfig"):
            jobs.submit(session=session, kind="train", dataset_id=dataset_id, config=ScoreJobConfig())
