"""Label-free ways to read the same trained encoder: do any rank a suite cell's anomalies better than S_NND?

At 15 minutes of BreastMNIST training S_LH (a Gaussian over every normal) reads 79.7 where S_NND (the nearest
normal) reads 75.8 (docs/quality.md, finding 28); at the suite's budget the two are level there and S_NND leads by
4 on PneumoniaMNIST. This trains one quality-suite cell per seed (benchmarks/quality.py: the task's budget, the
engine's defaults or --train overrides) and scores it, from the same features, with:

- `nnd`, `lh`: the product's S_NND and S_LH (score_images, as the suite reads them; since finding 42 the engine's
  S_LH is `lh_grid_pooled` below, and `lh_grid_4` with `--grids 4` is the grid's Gaussian alone);
- `z_nnd_lh`: both put on their normal data's scale (minus the mean, over the standard deviation, of the same
  score's leave-one-out values on the training images) and added;
- `wnn`: the nearest normal in whitened space: the L2-normalised features minus the normals' mean, times L⁻¹ of
  S_LH's shrunk covariance (Σ = LLᵀ), Euclidean 1-NN; each of the score's views (x against the training images,
  x^c against their context images) whitened by its own bank, and the views summed, as every reading here;
- `grid_G`, `lh_grid_G`: S_NND and S_LH on the second stage's map averaged over a G × G grid of cells instead of the
  engine's 4 × 4 (`engine.model.GRID`): a finer grid keeps more of where things sit, as raw pixels do, a coarser one
  less;
- `pooled_nnd`, `pooled_lh`: S_NND and S_LH of the pooled output (`ScoreConfig.features = pooled`, the paper's);
- `lh_fixed`: S_LH with a fixed ridge, Σ = S + 0.01·I (`lh_shrinkage = fixed`), instead of Ledoit–Wolf's shrinkage;
- `nnd_mirror_tta`, `lh_mirror_tta`: each score view read twice, as it is and with query and bank mirrored left to
  right (training's content views are mirrored half the time, so the encoder should be nearly indifferent), the
  two readings added: a test-time view that averages out what the encoder did not learn to ignore;
- `nnd_mirror_bank`, `lh_mirror_bank`: the bank holds every training image and its mirror image (twice the normals
  to compare with), the query as it is;
- `lh_cells`, `nnd_cells` (grid features only): one S_LH, or one S_NND, per grid cell on that cell's features
  alone, summed over the cells: a block-diagonal Gaussian that drops the correlations between cells, and a nearest
  normal found cell by cell instead of for the whole image;
- `lh_shared` (grid features only): one Gaussian fitted to every cell of every training image (each cell's features
  a sample of it, wherever it sits), the query's cells' negative log-likelihoods summed: a model of what local
  structure looks like that ignores where it sits, for photographs whose objects move from one image to the next;
- `lh_grid_pooled` (grid features only): one Gaussian over the grid features and the pooled output together, the
  two blocks independent (each L2-normalised on its own): the sum of the grid's S_LH and the pooled output's;
- `nnd_grid_pooled` (grid features only): S_NND's counterpart, the grid's S_NND plus the pooled output's (each the
  cosine distance to its own nearest normal, so both on one scale; since finding 47 the engine's S_NND, halved);
  `nnd_grid` the grid's alone (the engine's S_NND before it, `nnd_pooled = False`), and `z_nnd_grid_pooled` the two
  on their normal data's scale (z-scores against their leave-one-out values on the training images), added.

`--lean` reads only `nnd`, `lh`, `nnd_grid`, the pooled scores and `z_nnd_grid_pooled` (a few seconds a cell where
the full set takes minutes).

    python benchmarks/score_variants.py --task breastmnist --seeds 0,1,2 [--grids 2,7] [--train epochs=1350]
    python benchmarks/score_variants.py --task cifar10 --normal airplane,bird   # several classes, one at a time

One JSON line per seed, AUROC %. Every reading is a sum over the score's views (x against the training images, x^c
against their context images); the engine's S_NND and S_LH average them, which ranks the same (tests/test_benchmarks.py
checks `grid_4` against the engine's S_NND, score for score).
"""

from __future__ import annotations

import engine  # noqa: F401  (first: it sets GOMP_SPINCOUNT)

# isort: split
import argparse
import dataclasses
import json
import time

import numpy as np
import quality  # benchmarks/quality.py, beside this script: the suite's tasks and budgets
import torch
import torch.nn.functional as F
from pixel_fusion import z  # a score on its normal data's scale, as finding 31 used it

from engine import model as model_module
from engine.config import ScoreConfig
from engine.embed import embed
from engine.metrics import auroc
from engine.scoring import LHScorer, NNDScorer
from engine.train import TrainedModel, train
from engine.tta import score_images, view_plan


def whitened(lh: LHScorer, x: torch.Tensor) -> torch.Tensor:
    """L⁻¹(x/‖x‖ − μ) for S_LH's fitted mean μ and shrunk covariance Σ = LLᵀ: the space S_LH measures in."""
    return torch.linalg.solve_triangular(lh.chol_, (F.normalize(x.double(), dim=1) - lh.mean_).T, upper=False).T


@torch.no_grad()
def whitened_nn(bank: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """Euclidean distance of each query to its nearest bank row after S_LH's whitening (module docstring)."""
    lh = LHScorer().fit(bank)
    return torch.cdist(whitened(lh, queries), whitened(lh, bank)).min(dim=1).values


@torch.no_grad()
def read_variants(
    trained: TrainedModel, config: ScoreConfig, bank: torch.Tensor, queries: torch.Tensor, grids: list[int]
) -> dict[str, np.ndarray]:
    """The module docstring's readings beyond the engine's own scores, per query, summed over the score's views."""
    model = trained.model.eval()
    plan = view_plan(config, trained.config.context, trained.config.method)
    if any(draw is not None for _, _, draw in plan):
        raise SystemExit("score_variants: augmented test-time views are not handled")

    def feats(pixels: torch.Tensor, context: str | None) -> torch.Tensor:
        return embed(model, pixels, context=context, features=config.features)

    # each view's features once (x against the bank, x^c against the context bank), plain and mirrored left to right;
    # every reading below is a sum over the views
    views = [
        (feats(bank, b), feats(queries, q), feats(bank.flip(-1), b), feats(queries.flip(-1), q)) for q, b, _ in plan
    ]
    out = {"wnn": sum(whitened_nn(bank_f, query_f) for bank_f, query_f, _, _ in views)}
    plain_scores = {}  # the grid's S_NND and S_LH per view, kept for the grid-plus-pooled readings
    for name, scorer in (("nnd", NNDScorer), ("lh", LHScorer)):
        plain = plain_scores[name] = [scorer().fit(bank_f).anomaly_scores(query_f) for bank_f, query_f, _, _ in views]
        mirrored = [scorer().fit(bank_m).anomaly_scores(query_m) for _, _, bank_m, query_m in views]
        out[f"{name}_mirror_tta"] = sum(plain) + sum(mirrored)
        out[f"{name}_mirror_bank"] = sum(
            scorer().fit(torch.cat([bank_f, bank_m])).anomaly_scores(query_f) for bank_f, query_f, bank_m, _ in views
        )
    if config.features == "grid":
        cells = model_module.GRID**2  # grid features are (channels, GRID, GRID) flattened: a cell is every GRID²-th
        for name, scorer in (("nnd", NNDScorer), ("lh", LHScorer)):
            out[f"{name}_cells"] = sum(
                scorer()
                .fit(bank_f.unflatten(1, (-1, cells))[:, :, j])
                .anomaly_scores(query_f.unflatten(1, (-1, cells))[:, :, j])
                for bank_f, query_f, _, _ in views
                for j in range(cells)
            )
        # one Gaussian shared by every cell (each cell's vector a sample of it), the query's cells' NLLs summed:
        # where an object sits differs from photo to photo, so a per-position model is fitted to chance alignments
        out["lh_shared"] = sum(
            LHScorer()
            .fit(bank_f.unflatten(1, (-1, cells)).transpose(1, 2).flatten(0, 1))
            .anomaly_scores(query_f.unflatten(1, (-1, cells)).transpose(1, 2).flatten(0, 1))
            .unflatten(0, (-1, cells))
            .sum(dim=1)
            for bank_f, query_f, _, _ in views
        )
        # the pooled output of each view, embedded once for both grid-plus-pooled readings below
        pooled = [
            (embed(model, bank, context=b, features="pooled"), embed(model, queries, context=q, features="pooled"))
            for q, b, _ in plan
        ]
        # the grid's nearest normal and the pooled output's, each found on its own (the engine's nnd_pooled, summed)
        out["nnd_grid_pooled"] = sum(
            grid_nnd + NNDScorer().fit(bank_p).anomaly_scores(query_p)
            for grid_nnd, (bank_p, query_p) in zip(plain_scores["nnd"], pooled, strict=True)
        )
        # the grid's Gaussian and the pooled output's as one Gaussian over both, independent of each other (a
        # block-diagonal covariance, each block's features L2-normalised on their own): its NLL is the two summed
        out["lh_grid_pooled"] = sum(
            grid_lh + LHScorer().fit(bank_p).anomaly_scores(query_p)
            for grid_lh, (bank_p, query_p) in zip(plain_scores["lh"], pooled, strict=True)
        )
    for size in grids:
        engine_grid, model_module.GRID = model_module.GRID, size  # what Con2Model.features("grid") pools to
        try:
            grid_feats = [(feats(bank, b), feats(queries, q)) for q, b, _ in plan]
            out[f"grid_{size}"] = sum(NNDScorer().fit(bf).anomaly_scores(qf) for bf, qf in grid_feats)
            out[f"lh_grid_{size}"] = sum(LHScorer().fit(bf).anomaly_scores(qf) for bf, qf in grid_feats)
        finally:
            model_module.GRID = engine_grid
    return {name: scores.cpu().numpy() for name, scores in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="breastmnist", choices=sorted(quality.TASKS))
    parser.add_argument("--normal", help="the normal class, or several comma-separated (default: the task's first)")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--grids", default="", help="comma-separated grid sizes to score besides the engine's")
    parser.add_argument("--train", nargs="*", default=[], help="TrainConfig overrides, field=value")
    parser.add_argument("--lean", action="store_true", help="only the engine's scores and the grid-plus-pooled sums")
    args = parser.parse_args()
    task = quality.TASKS[args.task]
    train_over = quality.parse_overrides(args.train)
    grids = [int(g) for g in args.grids.split(",") if g]
    for normal in (args.normal or task.normals[0]).split(","):
        read_normal(task, normal, [int(s) for s in args.seeds.split(",")], train_over, grids, lean=args.lean)


def read_normal(
    task: quality.Task, normal: str, seeds: list[int], train_over: dict, grids: list[int], *, lean: bool = False
) -> None:
    """Train the suite's cell of `normal` once per seed and print every reading of it as one JSON line."""
    loaded, targets, references = quality.split(task, normal)
    if (loaded.score_in_train >= 0).any():
        raise SystemExit("score_variants: scored images that are training images need leave-one-out; not handled")
    bank, queries = loaded.train.pixels, loaded.score.pixels
    for seed in seeds:
        config, score_config = quality.cell_configs(task, seed, "recipe", train_over, {}, bank)
        started = time.perf_counter()
        trained = train(bank, config)
        train_s = time.perf_counter() - started
        r = score_images(trained, bank, queries, score_config, score_train=True)
        pooled = score_images(
            trained, bank, queries, dataclasses.replace(score_config, features="pooled"), score_train=True
        )
        grid = score_images(
            trained, bank, queries, dataclasses.replace(score_config, nnd_pooled="off"), score_train=True
        )
        out = {
            "task": task.name, "normal": normal, "seed": seed, "encoder": trained.config.encoder,
            "epochs": config.epochs, "train_s": round(train_s), "pix": references["auroc_pixels"],
            "nnd": auroc(targets, r.s_nnd), "lh": auroc(targets, r.s_lh), "nnd_grid": auroc(targets, grid.s_nnd),
            "pooled_nnd": auroc(targets, pooled.s_nnd), "pooled_lh": auroc(targets, pooled.s_lh),
            "z_nnd_grid_pooled": auroc(targets, z(grid.train_s_nnd, grid.s_nnd) + z(pooled.train_s_nnd, pooled.s_nnd)),
        }  # fmt: skip
        if not lean:
            fixed = score_images(trained, bank, queries, dataclasses.replace(score_config, lh_shrinkage="fixed",
                                                                             lh_epsilon=0.01))  # fmt: skip
            variants = read_variants(trained, score_config, bank, queries, grids)
            out |= {
                "z_nnd_lh": auroc(targets, z(r.train_s_nnd, r.s_nnd) + z(r.train_s_lh, r.s_lh)),
                "lh_fixed": auroc(targets, fixed.s_lh),
                **{name: auroc(targets, scores) for name, scores in variants.items()},
            }
        print(json.dumps({k: round(100 * v, 1) if isinstance(v, float) else v for k, v in out.items()}), flush=True)


if __name__ == "__main__":
    main()
