"""Where does training lose the information the anomaly score needs? Probe the encoder every few epochs.

Trains one configuration and, every `--every` epochs (through the checkpoint store the loop already calls,
so nothing in the engine is patched), measures on the scored split without TTA:
- S_NND AUROC (k = 1) on the pooled output of layers 2, 3 and 4 of the encoder (layer 4 is what scoring
  uses), with the training batch-norm statistics and with statistics re-estimated on the plain training images;
- the effective rank of the centred layer-4 features of the training images;
- L_context and L_content of the last epoch (chance level of L_content: log(4N − 1)).
Then it scores the final model with the TTA variants of `--score` (JSON objects of ScoreConfig fields);
`--score-each` scores every probe with the first of them too, so a long schedule shows the run's own
S_NND / S_LH by epoch (how the paper's 2048 epochs were followed at 28 px).
The same encoder at random initialisation and the raw-pixel floor come first, as references.

    python benchmarks/probe.py --data ../shared/data/breastmnist.npz --normal 1 --image-size 28 \\
        --train '{"epochs": 60}' --every 10
    python benchmarks/probe.py --data digits --normal 3 --image-size 16 --train '{"epochs": 30, "batch_size": 32}'

Prints one JSON object; a line per probe goes to stderr. docs/quality.md quotes its figures.
"""

from __future__ import annotations

import engine  # noqa: F401  (first: it sets GOMP_SPINCOUNT)

# isort: split
import argparse
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F

from engine import batchnorm
from engine.augment import normalize, to_float
from engine.baseline import pixel_nnd_scores
from engine.config import DataConfig, ScoreConfig, TrainConfig, build
from engine.encoder_choice import resolve_encoder
from engine.loading import LoadedData, load_data
from engine.metrics import anomaly_targets, auroc
from engine.model import Con2Model
from engine.scoring import NNDScorer
from engine.train import TrainedModel, train
from engine.tta import score_images

DEFAULT_SCORES = '[{"tta": 1}, {"tta": 1, "batchnorm": "per_context"}, {}, {"batchnorm": "per_context"}]'


@torch.no_grad()
def pooled_layers(model: Con2Model, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Global-average-pooled outputs of layers 2, 3, 4 of a torchvision ResNet encoder: (N, C_l) each."""
    net = model.encoder
    out: dict[str, list[torch.Tensor]] = {"layer2": [], "layer3": [], "layer4": []}
    for start in range(0, len(pixels), 256):
        x = normalize(to_float(pixels[start : start + 256])).contiguous(memory_format=torch.channels_last)
        x = net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(x)))))
        for name in out:
            x = getattr(net, name)(x)
            out[name].append(F.adaptive_avg_pool2d(x, 1).flatten(1))
    return {name: torch.cat(parts) for name, parts in out.items()}


def effective_rank(features: torch.Tensor) -> float:
    centred = features.double() - features.double().mean(dim=0)
    power = torch.linalg.svdvals(centred) ** 2
    p = power / power.sum()
    return float(torch.exp(-(p * torch.log(p.clamp_min(1e-300))).sum()))


Features = Callable[[Con2Model, torch.Tensor], dict[str, torch.Tensor]]


def under_both_batchnorms(
    model: Con2Model, loaded: LoadedData, features: Features, tags: tuple[str, str] = ("", "bn_")
) -> Iterator[tuple[str, dict[str, torch.Tensor], dict[str, torch.Tensor]]]:
    """(tag, training-image features, scored-image features), first with the training batch-norm statistics,
    then with statistics re-estimated on the plain training images; `features` maps a name to (N, D)."""
    model.eval()
    for tag, stats in ((tags[0], None), (tags[1], batchnorm.estimate(model.encoder, loaded.train.pixels))):
        with batchnorm.using(model.encoder, stats):
            bank, queries = features(model, loaded.train.pixels), features(model, loaded.score.pixels)
        yield tag, bank, queries


def tta_aurocs(trained, loaded: LoadedData, targets, fields: dict[str, Any]) -> tuple[float, float]:
    """S_NND and S_LH AUROC (%) of the trained model scored with these ScoreConfig fields (no training scores)."""
    result = score_images(trained, loaded.train.pixels, loaded.score.pixels, build(ScoreConfig, fields),
                          query_in_bank=loaded.score_in_train, score_train=False)  # fmt: skip
    return round(100 * auroc(targets, result.s_nnd), 1), round(100 * auroc(targets, result.s_lh), 1)


def probe(model: Con2Model, loaded: LoadedData, targets) -> dict[str, float]:
    exclude = torch.as_tensor(loaded.score_in_train)
    result: dict[str, float] = {}
    own = None
    for tag, bank, queries in under_both_batchnorms(model, loaded, pooled_layers):
        for name in bank:
            scores = NNDScorer(1).fit(bank[name]).anomaly_scores(queries[name], exclude).numpy()
            result[f"{tag}{name}"] = round(100 * auroc(targets, scores), 1)
        own = own or bank
    result["rank"] = round(effective_rank(own["layer4"]), 2)
    return result


class Probes:
    """A checkpoint store that probes the model it is handed instead of saving it (train calls `save`)."""

    def __init__(
        self, config: TrainConfig, image_size: int, loaded: LoadedData, targets, scored: dict[str, Any] | None = None
    ) -> None:
        self.model = Con2Model(config.encoder, image_size, config.projection_dim)
        self.config, self.image_size = config, image_size
        self.loaded, self.targets = loaded, targets
        self.scored = scored  # ScoreConfig fields to score with at every probe, as a run would (None: not)
        self.rows: list[dict[str, Any]] = []

    def load(self) -> None:
        return None

    def save(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        last = state["history"][-1]
        row = {"epoch": state["epoch"], **probe(self.model, self.loaded, self.targets)}
        row.update({k: round(last[k], 3) for k in ("loss_context", "loss_content", "alpha")})
        if self.scored is not None:
            # the probe's copy of the weights lives on the CPU (train may run on a GPU), so it is scored there
            trained = TrainedModel(self.model, self.config, self.image_size, torch.device("cpu"))
            row["s_nnd"], row["s_lh"] = tta_aurocs(trained, self.loaded, self.targets, self.scored)
        self.rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a source (path or 'digits')")
    parser.add_argument("--normal", required=True, help="the normal label")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--holdout-fraction", type=float, default=0.3)
    parser.add_argument("--train", default="{}", help="TrainConfig fields as a JSON object")
    parser.add_argument("--score", default=DEFAULT_SCORES, help="a JSON list of ScoreConfig field objects")
    parser.add_argument("--every", type=int, default=10, help="probe every N epochs")
    parser.add_argument(
        "--score-each", action="store_true",
        help="at every probe, also score the model with the first --score entry (S_NND and S_LH with its TTA)",
    )  # fmt: skip
    args = parser.parse_args()
    data = DataConfig(source=args.data, normal_label=args.normal, image_size=args.image_size,
                      holdout_fraction=args.holdout_fraction)  # fmt: skip
    loaded = load_data(data)
    targets = anomaly_targets(loaded.score.labels, args.normal)
    config = build(TrainConfig, {**json.loads(args.train), "checkpoint_every": args.every})
    config = resolve_encoder(config, loaded.train.pixels)  # `auto` → the encoder train() would build
    torch.manual_seed(config.seed)
    out: dict[str, Any] = {
        "data": data.source, "normal": args.normal, "image_size": args.image_size, "train": json.loads(args.train),
        "n_train": len(loaded.train), "floor": round(100 * auroc(targets, pixel_nnd_scores(loaded)), 1),
        "random": probe(Con2Model(config.encoder, args.image_size, config.projection_dim), loaded, targets),
    }  # fmt: skip
    print(json.dumps(out), file=sys.stderr, flush=True)
    probes = Probes(config, args.image_size, loaded, targets, json.loads(args.score)[0] if args.score_each else None)
    trained = train(loaded.train.pixels, config, checkpoints=probes)
    out["by_epoch"] = probes.rows
    out["train_s"] = round(trained.wall_s, 1)
    out["scores"] = []
    for fields in json.loads(args.score):
        nnd, lh = tta_aurocs(trained, loaded, targets, fields)
        out["scores"].append({**fields, "s_nnd": nnd, "s_lh": lh})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
