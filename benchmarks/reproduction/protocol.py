"""The protocol: the datasets, methods and paper figures, the budgets, and the cells they make.

Every dataset × method × seed is a *cell*; `plan_cells` orders them and `run_config` turns one into the
engine's `RunConfig`. `comparable` says which of a config's settings make two runs of a cell the same
measurement, so a state directory made with other settings is refused instead of mixed in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config import CLASSICAL_METHODS, ConfigError, DataConfig, RunConfig, ScoreConfig, TrainConfig

REPO = Path(__file__).resolve().parents[2]
DATA_ROOT = REPO.parent / "shared" / "data"
STATE_ROOT = REPO / "benchmarks" / "state"
RESULTS_DIR = REPO / "docs"

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
    # the peer methods (docs/peer-methods.md): no context image; each trains on rotations and scores by its own
    # rule (the S_NND column is that score; S_LH is the Gaussian likelihood of the same encoder's features)
    "csi": Method("CSI", "csi", "invert"),
    "firm": Method("FIRM", "firm", "invert"),
    "masked_contrastive": Method("Masked contrastive", "masked_contrastive", "invert"),
    "self_oecl": Method("self-OECL", "self_oecl", "invert"),
    # the classical references (engine/classical.py): scikit-learn on the raw pixels, fitted, not trained
    "pixels_pca_knn": Method("Raw pixels, PCA + 1-NN", "pixels_pca_knn", "invert"),
    "pixels_iforest": Method("Raw pixels, IsolationForest", "pixels_iforest", "invert"),
}
# no model: no epochs, encoder or test-time views apply (the engine's list owns which methods those are)
CLASSICAL = tuple(name for name, spec in METHODS.items() if spec.method in CLASSICAL_METHODS)
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
    ("breastmnist", "csi"): ("77.3 ± 0.5", None),  # Table 1's CSI row
    ("pneumoniamnist", "csi"): ("73.9 ± 1.6", None),
    ("br35h", "csi"): ("95.1 ± 0.6", None),
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
    # 2 CPU cores. BreastMNIST: every method × 3 seeds, about an hour for Con2, its ablations and SimCLR
    # (docs/benchmarks.md) and about 50 minutes more for the four peer methods (~5 min a seed each). PneumoniaMNIST
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
            # the paper's method, spelled out: the engine's CPU recipe departs from it (docs/quality.md) and this
            # table measures the paper's protocol
            alpha_schedule="linear",
            context_weight=1.0,
            views_per_context=2,
        ),
        score=ScoreConfig(tta=1 if cell.method in CLASSICAL else plan.tta, tta_augment=True, features="pooled"),
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
    for key in ("device", "amp", "precision", "checkpoint_every"):
        raw["train"].pop(key, None)
    return {"data": raw["data"]} if floor else raw


# ------------------------------------------------------------------------------------------------ deviations

# Rendered under the tables (docs/results.md) and stored in docs/results.json.
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
