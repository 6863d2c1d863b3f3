"""BreastMNIST on a CPU budget: the AUROC a documented configuration reaches, and what it costs.

Protocol (../shared/data/README.md): normal = label 1 (benign); train on the normal train images
(399); score the whole test split (114 normal, 42 malignant); AUROC with malignant as positive.
For each method and seed it trains with the engine, scores with S_NND and S_LH, and reports wall
times. A raw-pixel 1-NN (cosine on flattened pixels, no learning) is the floor every learned
method must beat. The paper's figure is Con2 (invert, S_NND) 81.7 ± 1.4 at 224 px, ResNet18,
2048 epochs; the defaults below are the CPU configuration chosen in docs/benchmarks.md.

    python benchmarks/breastmnist.py                       # the documented default, seed 0
    python benchmarks/breastmnist.py --seeds 0,1,2 --methods con2,simclr
    python benchmarks/breastmnist.py --epochs 150 --temperature 0.5 --tta 1 --threads 1

Prints one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import engine  # noqa: F401  (first: it sets GOMP_SPINCOUNT, which only works before torch loads)

# isort: split
import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from engine.baseline import pixel_nnd_scores
from engine.config import ALPHA_SCHEDULES, CONTEXTS, ENCODERS, METHODS, DataConfig, ScoreConfig, TrainConfig
from engine.embed import embed
from engine.loading import LoadedData, load_data
from engine.metrics import anomaly_targets, auroc
from engine.run import evaluate
from engine.scoring import NNDScorer
from engine.train import StepReport, TrainedModel, train
from engine.tta import score_images, tta_augmentation, view_plan

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "breastmnist.npz"
NORMAL_LABEL = "1"
PAPER = {"con2": 81.7, "simclr": 74.7}  # AUROC %, S_NND, 224 px, ResNet18, 2048 epochs (Table 1)

# The documented CPU configuration (docs/benchmarks.md), also the `cpu` budget of reproduce.py: about 2–3 minutes
# of training per Con2 run on 2 idle cores (half that for SimCLR), plus ≈ 20 s of TTA-40 scoring.
DEFAULTS = {
    "image_size": 28,
    "encoder": "resnet_small",
    "epochs": 60,
    "batch_size": 64,
    "temperature": 0.2,
    "lr": 1e-3,
    "context": "invert",
    "tta": "1,40",  # Eq. 16's A = 40 and the plain image (A = 1): scoring is cheap, and TTA does not always help
}


def pixel_nn_auroc(loaded: LoadedData, normal_label: str) -> float | None:
    """The floor: S_NND on raw pixels (engine.baseline)."""
    targets = anomaly_targets(loaded.score.labels, normal_label)
    return None if targets is None else auroc(targets, pixel_nnd_scores(loaded))


def step_logger(label: str, every_s: float = 15.0):
    """A progress callback that writes one line to stderr at most every `every_s` seconds."""
    last = [0.0]

    def on_progress(event: object) -> None:
        if isinstance(event, StepReport) and (event.elapsed_s - last[0] >= every_s or event.step == event.total_steps):
            last[0] = event.elapsed_s
            print(
                f"{label}: step {event.step}/{event.total_steps} epoch {event.epoch}/{event.epochs} "
                f"loss {event.loss:.3f} {event.images_per_s:.0f} img/s eta {event.eta_s:.0f}s",
                file=sys.stderr,
                flush=True,
            )

    return on_progress


def crop_scale(args: argparse.Namespace) -> tuple[float, float] | None:
    """--crop-scale LO,HI as numbers; None when not given (the engine's defaults)."""
    if not args.crop_scale:
        return None
    low, high = (float(v) for v in args.crop_scale.split(","))
    return low, high


def score_config(args: argparse.Namespace, tta: int) -> ScoreConfig:
    """Scoring with `tta` views; --crop-scale's LO is also the smallest test-time crop (its HI comes with the
    model's TrainConfig)."""
    crop = crop_scale(args)
    return ScoreConfig(tta=tta) if crop is None else ScoreConfig(tta=tta, tta_min_area=crop[0])


def run_one(args: argparse.Namespace, loaded: LoadedData, method: str, seed: int) -> list[dict[str, object]]:
    """Train one model and score it once per TTA setting (scoring is cheap; training is not)."""
    crop = crop_scale(args)
    train_config = TrainConfig(
        method=method,
        context=args.context,
        encoder=args.encoder,
        epochs=args.simclr_epochs if method == "simclr" and args.simclr_epochs else args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        temperature=args.temperature,
        alpha_schedule=args.alpha_schedule,
        seed=seed,
        device=args.device,
        **({} if crop is None else {"crop_min_area": crop[0], "crop_max_area": crop[1]}),
    )
    trained = train(loaded.train.pixels, train_config, on_step=step_logger(f"{method} seed {seed}"))
    rows = []
    for tta in args.tta:
        scores = score_images(
            trained,
            loaded.train.pixels,
            loaded.score.pixels,
            score_config(args, tta),
            query_in_bank=loaded.score_in_train,
        )
        m = evaluate(loaded.score, scores, NORMAL_LABEL)
        row = {
            "method": method,
            "seed": seed,
            "epochs": train_config.epochs,
            "tta": tta,
            "auroc_nnd": m["auroc_nnd"],
            "auroc_lh": m["auroc_lh"],
            "silhouette": m["silhouette"],
            "train_s": trained.wall_s,
            "score_s": scores.wall_s,
            "wall_s": trained.wall_s + scores.wall_s,
            "images_per_s": trained.images_per_s,
            "device": str(trained.device),
        }
        if tta > 1 and method != "simclr":
            row.update(tta_halves(trained, loaded, score_config(args, tta)))
        if tta == 1:
            row["auroc_nnd_centred"] = centred_nnd_auroc(trained, loaded)
        print(json.dumps(row), file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def centred_nnd_auroc(trained: TrainedModel, loaded: LoadedData) -> float | None:
    """Diagnostic: S_NND (no TTA) after subtracting the training features' mean. A direction every feature
    shares (e.g. the context cluster's centre) dominates cosine similarity; centring removes it."""
    bank = embed(trained.model.eval(), loaded.train.pixels)  # (n, D)
    queries = embed(trained.model, loaded.score.pixels)  # (M, D)
    mean = bank.mean(dim=0, keepdim=True)
    exclude = torch.as_tensor(loaded.score_in_train)
    scores = NNDScorer(k=1).fit(bank - mean).anomaly_scores(queries - mean, exclude).cpu()
    targets = anomaly_targets(loaded.score.labels, NORMAL_LABEL)
    return None if targets is None else auroc(targets, scores.numpy())


def tta_halves(trained: TrainedModel, loaded: LoadedData, config: ScoreConfig) -> dict[str, float | None]:
    """S_NND's AUROC from each half of Eq. 16 alone: the A/2 views of x, and the A/2 views of x^c against the
    context bank. Same draws as `engine.tta.score_images` (ScoreConfig's seed), so their mean is its S_NND."""
    model, device = trained.model.eval(), trained.device
    augmentation = tta_augmentation(trained, config)  # the one score_images uses
    generator = torch.Generator(device=device).manual_seed(config.seed)
    draws = [augmentation.sample(1, generator, device) for _ in range(config.tta)]
    halves = {"auroc_nnd_plain_half": 0.0, "auroc_nnd_context_half": 0.0}
    for query_context, bank_context, index in view_plan(config, trained.config.context, trained.config.method):
        params = draws[index]
        bank = embed(model, loaded.train.pixels, context=bank_context, params=params, augmentation=augmentation)
        queries = embed(model, loaded.score.pixels, context=query_context, params=params, augmentation=augmentation)
        exclude = torch.as_tensor(loaded.score_in_train)
        scores = NNDScorer(k=1).fit(bank).anomaly_scores(queries, exclude).double().cpu()
        halves["auroc_nnd_plain_half" if query_context is None else "auroc_nnd_context_half"] += scores
    targets = anomaly_targets(loaded.score.labels, NORMAL_LABEL)
    return {k: None if targets is None else auroc(targets, v.numpy()) for k, v in halves.items()}


def summarise(rows: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    """Per method and TTA: mean ± std (sample std, n − 1) over seeds of both AUROCs, and mean wall times."""
    out: dict[str, dict[str, object]] = {}
    for method, tta in dict.fromkeys((r["method"], r["tta"]) for r in rows):
        mine = [r for r in rows if r["method"] == method and r["tta"] == tta]
        entry: dict[str, object] = {"method": method, "tta": tta, "n_seeds": len(mine)}
        for key in ("auroc_nnd", "auroc_lh", "train_s", "score_s"):
            values = [float(r[key]) for r in mine]
            entry[key] = statistics.fmean(values)
            entry[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else None
        entry["paper_auroc_nnd"] = PAPER.get(method)
        out[f"{method} tta={tta}"] = entry
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="breastmnist.npz (default: ../shared/data)")
    parser.add_argument("--methods", default="con2,simclr", help=f"comma-separated, from {', '.join(METHODS)}")
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds")
    parser.add_argument("--image-size", type=int, default=DEFAULTS["image_size"])
    parser.add_argument("--encoder", default=DEFAULTS["encoder"], choices=ENCODERS)
    parser.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    parser.add_argument("--simclr-epochs", type=int, default=0, help="SimCLR's epochs if not --epochs (0 = same)")
    parser.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    parser.add_argument("--temperature", type=float, default=DEFAULTS["temperature"])
    parser.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    parser.add_argument("--context", default=DEFAULTS["context"], choices=CONTEXTS)
    parser.add_argument(
        "--alpha-schedule", default="linear", choices=ALPHA_SCHEDULES, help="α of L_content: linear 0 → 1 or constant 1"
    )
    parser.add_argument("--tta", default=DEFAULTS["tta"], help="comma-separated TTA counts, each scored (e.g. 1,40)")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--crop-scale",
        help="LO,HI area range of T's RandomResizedCrop, LO > 0: TrainConfig's crop_min_area and crop_max_area, and "
        "LO is also ScoreConfig's tta_min_area, so training and TTA crop alike",
    )
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's; 1 on a busy machine)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.data.exists():
        print(f"error: {args.data} not found (expected ../shared/data/breastmnist.npz)", file=sys.stderr)
        return 2
    methods = [m for m in args.methods.split(",") if m]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    args.tta = [int(t) for t in str(args.tta).split(",") if t]

    started = time.perf_counter()
    data = DataConfig(source=str(args.data), normal_label=NORMAL_LABEL, image_size=args.image_size)
    loaded = load_data(data)
    rows = [row for method in methods for seed in seeds for row in run_one(args, loaded, method, seed)]
    report = {
        "benchmark": "breastmnist",
        "settings": {k: getattr(args, k) for k in (*DEFAULTS, "simclr_epochs", "crop_scale", "alpha_schedule")},
        "protocol": "train on normal (label 1) train images; score the whole test split; AUROC, malignant positive",
        "n_train": len(loaded.train),
        "n_scored": len(loaded.score),
        "floor_pixel_1nn_auroc": pixel_nn_auroc(loaded, NORMAL_LABEL),
        "runs": rows,
        "summary": summarise(rows),
        "paper": "Con2 invert S_NND 81.7 ± 1.4, SimCLR 74.7 ± 3.1 (224 px, ResNet18, 2048 epochs, 3 seeds)",
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "cuda": torch.cuda.is_available(),
        },
        "total_s": time.perf_counter() - started,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
