"""Which encoder features hold the anomaly signal? Train one configuration, then score many feature variants.

Without TTA, S_NND (k = 1) AUROC on: the global average of layers 2, 3, 4 (l2, l3, l4; l4 is the paper's
`pooled`), layer 2 averaged over a 4 × 4 grid (l2s, the engine's `grid`), layer 3 / 4 over 2 × 2 (l3s, l4s),
and concatenations of L2-normalised parts; each with the training batch-norm statistics (tr_) and with
statistics re-estimated on the plain training images (bn_); S_LH (_lh) for a few. `--random` adds the raw-pixel
floor and the same encoder at random initialisation; `--tta` scores the final model with ScoreConfig variants.

    python benchmarks/feature_probe.py --data ../shared/data/pneumoniamnist.npz --normal 0 --size 28 --random \
        --train '{"epochs": 40, "batch_size": 128, "alpha_schedule": "constant", "views_per_context": 1}'

Prints one JSON object. docs/quality.md quotes its figures.
"""

import engine  # noqa: F401  (first: it sets GOMP_SPINCOUNT)

# isort: split
import argparse
import json
import time

import torch
import torch.nn.functional as F
from probe import tta_aurocs, under_both_batchnorms  # benchmarks/probe.py, beside this script

from engine.augment import normalize, to_float
from engine.baseline import pixel_nnd_scores
from engine.config import DataConfig, TrainConfig, build
from engine.encoder_choice import resolve_encoder
from engine.loading import load_data
from engine.metrics import anomaly_targets, auroc
from engine.model import GRID, Con2Model
from engine.scoring import LHScorer, NNDScorer
from engine.train import train


@torch.no_grad()
def feats(model, pixels):
    net = model.encoder
    out = {}
    parts = {k: [] for k in ("l2", "l3", "l4", "l2s", "l3s", "l4s")}
    for s in range(0, len(pixels), 256):
        x = normalize(to_float(pixels[s : s + 256])).contiguous(memory_format=torch.channels_last)
        x = net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(x)))))
        x2 = net.layer2(x)
        x3 = net.layer3(x2)
        x4 = net.layer4(x3)
        parts["l2"].append(F.adaptive_avg_pool2d(x2, 1).flatten(1))
        parts["l3"].append(F.adaptive_avg_pool2d(x3, 1).flatten(1))
        parts["l4"].append(F.adaptive_avg_pool2d(x4, 1).flatten(1))
        parts["l2s"].append(F.adaptive_avg_pool2d(x2, GRID).flatten(1))  # the engine's "grid"
        parts["l3s"].append(F.adaptive_avg_pool2d(x3, 2).flatten(1))
        parts["l4s"].append(F.adaptive_avg_pool2d(x4, 2).flatten(1))
    out = {k: torch.cat(v) for k, v in parts.items()}

    def n(t):
        return F.normalize(t, dim=1)

    out["cat234"] = torch.cat([n(out["l2"]), n(out["l3"]), n(out["l4"])], 1)
    out["cat34"] = torch.cat([n(out["l3"]), n(out["l4"])], 1)
    out["l2s_l4"] = torch.cat([n(out["l2s"]), n(out["l4"])], 1)
    out["cat23s"] = torch.cat([n(out["l2s"]), n(out["l3s"])], 1)
    return out


def probe(model, loaded, targets):
    ex = torch.as_tensor(loaded.score_in_train)
    res = {}
    for tag, b, q in under_both_batchnorms(model, loaded, feats, tags=("tr", "bn")):
        for k in b:
            s = NNDScorer(1).fit(b[k]).anomaly_scores(q[k], ex).numpy()
            res[f"{tag}_{k}"] = round(100 * auroc(targets, s), 1)
        for k in ("l4", "l2s", "l2s_l4"):
            try:
                s = LHScorer("ledoit_wolf", 1e-3).fit(b[k]).anomaly_scores(q[k], ex).numpy()
                res[f"{tag}_{k}_lh"] = round(100 * auroc(targets, s), 1)
            except Exception as e:
                res[f"{tag}_{k}_lh"] = str(e)[:40]
    return res


p = argparse.ArgumentParser()
p.add_argument("--data")
p.add_argument("--normal")
p.add_argument("--size", type=int)
p.add_argument("--holdout", type=float, default=0.3)
p.add_argument("--train", default="{}")
p.add_argument("--tta", default="[]")
p.add_argument("--random", action="store_true")
a = p.parse_args()
data = DataConfig(source=a.data, normal_label=a.normal, image_size=a.size, holdout_fraction=a.holdout)
loaded = load_data(data)
targets = anomaly_targets(loaded.score.labels, a.normal)
cfg = resolve_encoder(build(TrainConfig, json.loads(a.train)), loaded.train.pixels)  # `auto` as train() resolves it
out = {"data": a.data, "normal": a.normal, "train": json.loads(a.train)}
if a.random:
    torch.manual_seed(cfg.seed)
    out["floor"] = round(100 * auroc(targets, pixel_nnd_scores(loaded)), 1)
    out["random"] = probe(Con2Model(cfg.encoder, a.size, cfg.projection_dim), loaded, targets)
t = time.time()
torch.manual_seed(cfg.seed)
tr = train(loaded.train.pixels, cfg)
out["train_s"] = round(time.time() - t, 1)
out["trained"] = probe(tr.model, loaded, targets)
for f in json.loads(a.tta):
    nnd, lh = tta_aurocs(tr, loaded, targets, f)
    out.setdefault("tta", []).append({**f, "nnd": nnd, "lh": lh})
print(json.dumps(out), flush=True)
