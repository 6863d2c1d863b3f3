"""Everything one run needs, as frozen dataclasses stored verbatim (JSON) with the run.

A run is: which data (`DataConfig`), how to learn (`TrainConfig`), how to score (`ScoreConfig`).
`RunConfig` bundles the three; the CLI, the worker and the dashboard form all build one.
Every field carries a `help` text, which the CLI and the form show as they are.

Why one module: most of it is those help texts, and the form, the CLI and the stored runs
must all read the same field list; split by section, a new field would need two files to agree.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

CONTEXTS = ("invert", "flip", "equalize")
# TrainConfig.context's default: chosen from the training images when a run starts (engine/context_choice.py)
AUTO_CONTEXT = "auto"
CONTEXT_CHOICES = (AUTO_CONTEXT, *CONTEXTS)
# Classical references (engine/classical.py): scikit-learn on raw pixels, no training; the floor a learned method
# must clear. Each is a value of TrainConfig.method like the learned ones.
CLASSICAL_METHODS = ("pixels_knn", "pixels_pca_knn", "pixels_iforest")
# Peer methods that shift normal images by rotation (engine/rotations.py) and treat the rotated ones as outliers:
# CSI (engine/csi.py), self-OECL (engine/oecl.py), FIRM (engine/firm.py) and masked contrastive learning
# (engine/masked.py). They have no context augmentation.
ROTATION_METHODS = ("csi", "self_oecl", "firm", "masked_contrastive")
# Con2 and its two ablations: the methods that train with a context augmentation
CON2_METHODS = ("con2", "context_only", "content_only")
METHODS = (*CON2_METHODS, "simclr", *ROTATION_METHODS, *CLASSICAL_METHODS)
ENCODERS = ("resnet18", "resnet_small", "resnet_small_s2", "resnet_half_s2", "resnet_half_late_s2")
# TrainConfig.encoder's default: chosen from the training images when a run starts (engine/encoder_choice.py)
AUTO_ENCODER = "auto"
ENCODER_CHOICES = (AUTO_ENCODER, *ENCODERS)
# TrainConfig.rotation_weight's default: the auxiliary rotation task on or off, chosen from the training images when
# a run starts (engine/encoder_choice.py). A number, not the word, so that a weight stays one numeric field.
AUTO_ROTATION = -1.0
# TrainConfig.batch_size's default: images per step chosen from the training images when a run starts
# (engine/encoder_choice.py); 0, since no real batch is 0
AUTO_BATCH = 0
CONTEXT_BANKS = ("context", "original")
LH_SHRINKAGE = ("ledoit_wolf", "fixed")
ALPHA_SCHEDULES = ("linear", "constant")
BATCHNORM_STATISTICS = ("training", "per_context")
FEATURES = ("pooled", "grid")
AUTO_NND_POOLED = "auto"  # ScoreConfig.nnd_pooled: on for colour photographs (engine.tta.nnd_reads_pooled)
NND_POOLED = (AUTO_NND_POOLED, "on", "off")
# TrainConfig.precision's default: resolved when a run starts, on the machine that trains it (engine/device.py)
AUTO_PRECISION = "auto"
PRECISIONS = (AUTO_PRECISION, "float32", "bfloat16")


class ConfigError(ValueError):
    """A configuration a user wrote that cannot run; the message says which field and why."""


def option(default: Any, text: str, **rules: Any) -> Any:
    """A config field: its default, the help text the CLI and the form show, and the checks `validate` makes
    (choices, min, max)."""
    return field(default=default, metadata={"help": text, **rules})


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and which of them train and which are scored."""

    source: str = option(
        "digits",
        "Image folder (root/<label>/* or flat; root/<split>/<label>/* too), a .zip of such a folder, "
        "a CSV manifest (path[,label][,split]), a MedMNIST-style .npz, or 'digits' for the bundled demo.",
    )
    normal_label: str | None = option(
        "0",
        "Label of the normal class: only these images train. Empty = train on every selected image "
        "(curating an unlabelled set).",
    )
    train_split: str | None = option("train", "Split whose images train (e.g. train). Empty = every split.")
    score_split: str | None = option("test", "Split whose images are scored (e.g. test). Empty = score every image.")
    holdout_fraction: float = option(
        0.3,
        "Only for sources without splits: the seeded fraction of normal images held out for "
        "testing; every non-normal image is test. 0 = no split (score what trains, leave-one-out).",
        min=0.0,
        max=0.9,
    )
    image_size: int = option(
        32, "Side in pixels the images are resized and center-cropped to (paper: 224; CIFAR 32).", min=8, max=512
    )
    crop_fraction: float = option(
        1.0,
        "Share of the resized image the center crop keeps: 1.0 = resize the short side to image_size; "
        "0.875 = the paper's resize 256 → crop 224.",
        min=0.5,
        max=1.0,
    )
    max_pixels: int = option(
        100_000_000, "Images with more pixels than this are skipped (decompression-bomb guard).", min=1
    )
    seed: int = option(0, "Seed of the holdout split.")

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True)
class TrainConfig:
    """How the encoder learns: method, model, optimisation."""

    method: str = option(
        "con2",
        "con2 = context contrasting + α·content alignment; context_only and content_only are the "
        "paper's ablations; simclr is the baseline without a context. Peer methods (no context; all four assume "
        "rotated images are abnormal: wrong for rotation-invariant data such as cell microscopy): csi = CSI "
        "(Tack et al. 2020), NT-Xent over the four rotations of each image as separate instances + a rotation "
        "classifier, scored by nearest-neighbour similarity × projection norm + the rotation logit; self_oecl = "
        "self-OECL (Le-Gia & Ahn 2023), NT-Xent on 0°/90° rotations while the projection norm of 180°/270° "
        "rotations is pushed down, scored by the projection norm; firm = FIRM (Lunardi et al. 2025), one "
        "contrastive loss in which all normal images are positives of each other and each image rotated by a "
        "random 90°/180°/270° is an outlier with only its own second view as positive, scored by "
        "nearest-neighbour distance averaged over the four rotations (assumes the normal images form one "
        "class); masked_contrastive = masked contrastive learning (Cho et al. 2021) with the four rotations as "
        "pseudo-classes: NT-Xent in which other images at the anchor's rotation are barely repelled (logit "
        "scale 0.05 instead of 1/τ) and rotated ones mildly (2), + a rotation classifier, scored by Gaussian "
        "likelihood averaged over 4 rotations × 2 mirrors. "
        "Classical references, no training "
        "(epochs, encoder, context and the other training and TTA settings are ignored; images compared at "
        "≤ 32 px; they assume the images are aligned alike, so that the same pixel means the same place): "
        "pixels_knn = cosine distance of the raw pixels to the nearest training image; pixels_pca_knn = "
        "the same on the PCA components that explain 0.95 of the training images' variance (also assumes "
        "normal images vary along few directions); pixels_iforest = scikit-learn's IsolationForest on the "
        "raw pixels, seeded (also assumes anomalies are few and isolated by single pixel values).",
        choices=METHODS,
    )
    context: str = option(
        AUTO_CONTEXT,
        "Context augmentation t_c: invert (1 − x), flip (vertical mirror) or equalize (histogram "
        "equalisation). It must make images distinct yet keep their content. auto (the default) chooses "
        "from the training images when the run starts: equalize for greyscale images larger than 16 px, "
        "invert otherwise (measured at the CPU recipe's budget, docs/quality.md finding 24; the paper "
        "uses invert unless it says otherwise). The run records the context it chose.",
        choices=CONTEXT_CHOICES,
    )
    encoder: str = option(
        AUTO_ENCODER,
        "resnet18 = the paper's encoder (512-d; slow on a CPU); resnet_small = a narrow ResNet (same design, ¼ "
        "width, 128-d) that makes CPU runs practical; resnet_small_s2 = its stem and first two stages alone (32-d; "
        "the grid features the scores compare are stage 2's, and a step costs 1.45–1.8× less); resnet_half_s2 = the "
        "same two stages at twice the width (64-d) behind a stride-2 stem, at about resnet_small_s2's cost: on "
        "BreastMNIST +3.7 S_NND at equal time, on chest x-rays −1.6 (docs/quality.md finding 44), so an option; "
        "resnet_half_late_s2 = resnet_half_s2 with the stride moved from the stem to stage 1's first block, so the "
        "stem sees every pixel: at equal time BreastMNIST +1.2, chest x-rays −2.2 (docs/quality.md finding 46), so an "
        "option too; "
        "auto (the default) "
        "= resnet_small_s2 for Con2 on greyscale images above 16 px, where it ranked better at equal time, "
        "resnet_small otherwise, where it ranked worse or was not measured better (photographs, the 16 px digits, "
        "SimCLR; docs/quality.md finding 27). The run records the encoder it chose.",
        choices=ENCODER_CHOICES,
    )
    projection_dim: int = option(128, "Output size of each projection head.", min=2)
    epochs: int = option(
        60,
        "Passes over the normal training images (paper: 2048). With one view per context an epoch costs half "
        "the paper's, so 60 take the time of the paper recipe's 30.",
        min=1,
    )
    batch_size: int = option(
        AUTO_BATCH,
        "Original images per step; a Con2 step embeds views_per_context views of each per context (paper: 64–512). "
        "0 = auto, the default: 16 for Con2 on greyscale images above 16 px, where more and smaller steps in the "
        "same time ranked better on every scan set of the quality suite, and 32 otherwise (docs/quality.md "
        "finding 34). Otherwise at least 2 (batch norm needs two images).",
        min=AUTO_BATCH,
    )
    lr: float = option(1e-3, "Peak AdamW learning rate, cosine-annealed to 0.", min=0.0)
    weight_decay: float = option(1e-3, "AdamW weight decay.", min=0.0)
    alpha_schedule: str = option(
        "constant",
        "Weight α of the content-alignment loss: constant = 1 from the first step (the default: with α near 0 "
        "early on, context contrasting collapses the features before content alignment can hold them, and "
        "a short schedule never recovers; docs/quality.md); linear = annealed 0 → 1 over training (the paper).",
        choices=ALPHA_SCHEDULES,
    )
    crop_min_area: float = option(
        0.0,
        "Smallest random crop of the content augmentations T while training, as a share of the image area; "
        "0 = SimCLR's range (0.2 below 64 px, 0.08 above).",
        min=0.0,
        max=1.0,
    )
    crop_max_area: float = option(
        1.0,
        "Largest random crop of the content augmentations T while training, as a share of the image area; "
        "1 = the whole image may be kept.",
        min=0.01,
        max=1.0,
    )
    jitter_strength: float = option(
        0.5,
        "Colour-jitter strength s of T (SimCLR's): brightness, contrast and saturation vary by ±0.8·s, hue by "
        "±0.2·s turns; 0 = no colour jitter.",
        min=0.0,
        max=1.0,
    )
    jitter_probability: float = option(
        0.8, "Share of T's views that are colour-jittered (SimCLR: 0.8).", min=0.0, max=1.0
    )
    blur_probability: float = option(
        0.5,
        "Share of T's views that are Gaussian-blurred (σ 0.1–2 px; SimCLR: 0.5), for images of at least "
        "blur_min_size px.",
        min=0.0,
        max=1.0,
    )
    blur_min_size: int = option(
        64,
        "Images smaller than this many pixels a side are never blurred: a blur is too destructive on tiny "
        "images (0 = blur at every size).",
        min=0,
    )
    context_weight: float = option(
        0.3,
        "Weight λ of the context-contrasting loss: L = λ·L_context + α·L_content (the paper: λ = 1). At 0.3 (the "
        "default) the content loss leaves its chance level within a short CPU schedule, where at 1 it stays there; "
        "the ranking is level (docs/quality.md).",
        min=0.0,
    )
    views_per_context: int = option(
        1,
        "Augmented views of each image per context in a step: 1 = one view of the image and one of its context "
        "image (the default: half the cost per step, so twice the epochs in the same time; the content positive "
        "is then the other context's view alone); 2 = the paper (4 views per image).",
        min=1,
        max=2,
    )
    rotation_weight: float = option(
        AUTO_ROTATION,
        "Con2 only, beyond the paper: weight of an auxiliary rotation-prediction loss (a linear head on the "
        "encoder features predicts which quarter turn an augmented view of the image was given; 0 = off, the "
        "paper; -1 = auto, the default: 1 on colour photographs, 0 on greyscale images). It teaches the encoder "
        "orientation-bound detail that Con2's own losses leave out at small budgets; the rotated views are never "
        "used as negatives, so no anomaly is assumed. It lifted the CIFAR-10 mean on two seeds on two CPUs and "
        "BreastMNIST by 2.3-4.3, and cost chest x-rays 2.7-15 (docs/quality.md findings 25, 29 and 30).",
        min=AUTO_ROTATION,
    )
    rotation_views: str = option(
        "shared",
        "With rotation_weight > 0: shared = the Con2 views themselves are turned (each original and its context "
        "image by the same random quarter turn), at no extra cost (the default); extra = one more view of each "
        "image per step, given a random quarter turn (3 views per image instead of 2; no better in finding 25).",
        choices=("shared", "extra"),
    )
    temperature: float = option(
        0.2, "Softmax temperature τ of both losses (of L_content alone when context_temperature is set).", min=1e-3
    )
    context_temperature: float = option(
        0.0,
        "Con2 only, beyond the paper: a temperature of L_context's own; 0 = temperature (one τ for both losses, "
        "the paper). A higher one makes the pull of every same-context view together gentler "
        "(docs/quality.md finding 20).",
        min=0.0,
    )
    split_batchnorm: bool = option(
        False,
        "Con2 only, beyond the paper: in training, the originals' views and the context images' views pass the "
        "encoder as two batches, so batch norm standardises each context by its own statistics (off = one batch "
        "of both contexts, the paper). Pair it with ScoreConfig.batchnorm = per_context, which scores the same "
        "way (docs/quality.md finding 20).",
    )
    ema_decay: float = option(
        0.0,
        "Beyond the paper: the trained encoder is an exponential moving average of the weights over the steps, "
        "with this decay per step (0 = off: the weights of the last step, the paper). The decay ramps up as "
        "(1 + t)/(10 + t) until it reaches this value (0.99 after ~900 steps), so a short run averages about its "
        "last tenth; no gain on the CPU recipe (docs/quality.md finding 23).",
        min=0.0,
        max=0.9999,
    )
    seed: int = option(0, "Seeds weights, batches and augmentations.")
    device: str = option("auto", "auto (CUDA when present), cpu or cuda.", choices=("auto", "cpu", "cuda"))
    amp: bool = option(
        True,
        "Mixed precision (bfloat16) where `precision` is auto: on CUDA always, on a CPU with bfloat16 units where it "
        "pays (see precision). Off: auto is float32.",
    )
    precision: str = option(
        AUTO_PRECISION,
        "Arithmetic of the model's forward passes, in training and whenever its model embeds later (the losses are "
        "float32 always). auto (the default) is chosen when the run starts, on the machine that trains, and the run "
        "records it: with amp, bfloat16 on CUDA, and on a CPU with bfloat16 units (Intel AMX, AVX512_BF16 e.g. AMD "
        "Zen 4) for resnet_small at 32 px or more and batches of 32 or more, where a step ran 1.4-1.5× "
        "faster at level AUROC (docs/quality.md findings 41 and 43); float32 otherwise. A worker's CON2_CPU_BF16=1 "
        "or 0 makes auto bfloat16 wherever the units are, or float32. On a CPU without the units bfloat16 runs as "
        "float32 (emulated, bfloat16 is 4.5× slower): a bfloat16 model scored there embeds in float32.",
        choices=PRECISIONS,
    )
    checkpoint_every: int = option(5, "Save a resumable checkpoint every N epochs.", min=1)

    def __post_init__(self) -> None:
        validate(self)
        if self.batch_size == 1:
            raise ConfigError("TrainConfig.batch_size: 1 is below the minimum 2 (0 = auto)")
        if self.crop_min_area >= self.crop_max_area:
            raise ConfigError(
                f"TrainConfig.crop_min_area: {self.crop_min_area} is not below crop_max_area {self.crop_max_area}"
            )


@dataclass(frozen=True)
class ScoreConfig:
    """How anomaly scores are computed from the encoder's features (heads discarded)."""

    tta: int = option(2, "Test-time views A: half on x, half on its context image (paper: 40). 1 = x alone.", min=1)
    tta_augment: bool = option(
        False,
        "Draw each test-time view from the content augmentations T (the paper). Off (the default): x and its "
        "context image, each once as they are, so A = 2 covers both and more views would only repeat them; "
        "augmented views cost BreastMNIST 5 points and helped no task by more than 1 (docs/quality.md).",
    )
    tta_min_area: float = option(
        0.0,
        "Smallest crop of a test-time augmentation, as a share of the image area; 0 = SimCLR's range (0.2 "
        "below 64 px, 0.08 above), whatever crop_min_area trained. Milder crops keep small lesions in view. The "
        "largest crop, the colour jitter and the blur are the training's (TrainConfig).",
        min=0.0,
        max=1.0,
    )
    batchnorm: str = option(
        "training",
        "Batch-norm statistics the encoder scores with: training = the running statistics of training "
        "(a mix of augmented originals and context images; the paper); per_context = re-estimated on the "
        "plain training images for the plain half and on their context images for the context half (on the grid: "
        "BreastMNIST +3.5 AUROC points, CIFAR-10 −3.5, level elsewhere; docs/quality.md finding 13).",
        choices=BATCHNORM_STATISTICS,
    )
    features: str = option(
        "grid",
        "Encoder features the scores compare: grid = the second stage's feature map averaged over a 4 × 4 grid "
        "of cells, which keeps where a structure sits (the default: far better on small aligned images such as "
        "digits and x-rays; docs/quality.md); pooled = the encoder's output averaged over the whole image "
        "(the paper).",
        choices=FEATURES,
    )
    lh_pooled: bool = option(
        True,
        "With grid features, S_LH adds a second Gaussian over the encoder's pooled output to the grid's (the two "
        "independent, each L2-normalised on its own; nnd_pooled does the same for S_NND). The grid keeps where "
        "things sit, the pooled output what is there wherever it sits, which photographs need: on CIFAR-10 S_LH "
        "+3.3 on the mean of the ten classes, every class up; level on the scans (docs/quality.md finding 42). Off "
        "= the grid's Gaussian alone.",
    )
    nnd_pooled: str = option(
        AUTO_NND_POOLED,
        "With grid features, whether S_NND also reads the encoder's pooled output: on = the mean of two cosine "
        "distances, to the nearest normal on the grid and to the nearest normal on the pooled output, each found "
        "on its own; off = the grid alone; auto = on for colour photographs, off for greyscale images. The grid "
        "ranks by where things sit, the pooled output by what is there wherever it sits: on CIFAR-10 the two "
        "together lift S_NND on the mean of the ten classes, on the aligned greyscale scans and digits they are "
        "level or lower (docs/quality.md finding 47). The nearest normals shown beside a sample are the grid's.",
        choices=NND_POOLED,
    )
    k: int = option(1, "Neighbours averaged by S_NND (paper: 1).", min=1)
    context_bank: str = option(
        "context",
        "Bank the context half compares with: context = context images of the training set (the "
        "cluster the sample should align with); original = Eq. 12 read literally.",
        choices=CONTEXT_BANKS,
    )
    lh_shrinkage: str = option(
        "ledoit_wolf", "Covariance shrinkage of S_LH: ledoit_wolf or fixed (Σ + εI).", choices=LH_SHRINKAGE
    )
    lh_epsilon: float = option(1e-3, "ε of the fixed shrinkage Σ + εI.", min=0.0)
    reference_size: int = option(
        5000,
        "Training images scored leave-one-out as the reference for percentiles and thresholds "
        "(a seeded subset when there are more).",
        min=3,
    )
    batch_size: int = option(256, "Images per forward pass while scoring.", min=1)
    seed: int = option(1234, "Seed of the test-time augmentations.")

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True)
class RunConfig:
    """One training run: data, training and scoring, stored verbatim with the run."""

    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        return cls(**{section: build(config, raw.get(section, {})) for section, config in SECTIONS.items()})


# A run's config file, its stored dict, the CLI's flags and the dashboard's form all have these three
# sections, in this order (RunConfig's fields).
SECTIONS: dict[str, type] = {"data": DataConfig, "train": TrainConfig, "score": ScoreConfig}


def build(cls: type, raw: dict[str, Any]) -> Any:
    """Build one config dataclass from a dict, checking names, types, ranges and choices."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}")
    values = {}
    for name, value in raw.items():
        values[name] = _coerce(cls.__name__, known[name], value)
    return cls(**values)


def _coerce(owner: str, f: dataclasses.Field, value: Any) -> Any:
    default = f.default
    if value is None or value == "":
        if f.type in ("str | None",) or default is None:
            return None
        raise ConfigError(f"{owner}.{f.name} may not be empty")
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if isinstance(default, float):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{owner}.{f.name}: {value!r} is not a valid {type(default).__name__}") from None


def validate(config: Any) -> None:
    """Check ranges and choices declared in each field's metadata; raise ConfigError on the first problem."""
    owner = type(config).__name__
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        meta = f.metadata
        if value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):  # NaN passes every < and > check below
            raise ConfigError(f"{owner}.{f.name}: {value} is not a finite number")
        if "choices" in meta and value not in meta["choices"]:
            raise ConfigError(f"{owner}.{f.name}: unknown value {value!r}; choose one of {', '.join(meta['choices'])}")
        if "min" in meta and value < meta["min"]:
            raise ConfigError(f"{owner}.{f.name}: {value} is below the minimum {meta['min']}")
        if "max" in meta and value > meta["max"]:
            raise ConfigError(f"{owner}.{f.name}: {value} is above the maximum {meta['max']}")
