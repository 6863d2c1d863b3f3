"""IsolationForest scoring: the engine's `depths` against the per-tree column copy it replaced, in one run.

    python benchmarks/iforest_speed.py [--bank 5000] [--queries 4096] [--dim 3072] [--rounds 3]

A CIFAR-10 class has 5,000 training images of 3,072 pixels, scored in chunks of 4,096. Before 2026-12-05
`IsolationForestScorer.depths` indexed the chunk by each tree's feature list (every column, in order, since
IsolationForest's max_features is 1.0) and made the copy contiguous, once per tree: 200 copies of a 50 MB
chunk. The engine now copies the chunk once. Both ways run here on the same fitted forest, interleaved, and
must give identical depths (exit 1 if not); JSON out with the median seconds of each and their ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from engine.classical import IsolationForestScorer


def depths_per_tree_copy(scorer: IsolationForestScorer, x: np.ndarray) -> np.ndarray:
    """The previous implementation, kept here as the reference the new one is timed against."""
    forest = scorer.forest_
    out = np.empty((x.shape[0], len(forest.estimators_)))
    for t, (tree, features) in enumerate(zip(forest.estimators_, forest.estimators_features_, strict=True)):
        out[:, t] = scorer.node_lengths_[t][tree.apply(np.ascontiguousarray(x[:, features], dtype=np.float32))]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bank", type=int, default=5000)
    parser.add_argument("--queries", type=int, default=4096)
    parser.add_argument("--dim", type=int, default=3072)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    bank = torch.as_tensor(rng.random((args.bank, args.dim), dtype=np.float32))
    queries = rng.random((args.queries, args.dim), dtype=np.float32)
    scorer = IsolationForestScorer(seed=0).fit(bank)
    seconds: dict[str, list[float]] = {"per_tree_copy": [], "engine": []}
    identical = True
    for _ in range(args.rounds):
        for name, run in (("per_tree_copy", lambda: depths_per_tree_copy(scorer, queries)),
                          ("engine", lambda: scorer.depths(queries))):  # fmt: skip
            started = time.perf_counter()
            result = run()
            seconds[name].append(time.perf_counter() - started)
            if name == "per_tree_copy":
                reference = result
            else:
                identical = identical and bool(np.array_equal(result, reference))
    median = {name: statistics.median(values) for name, values in seconds.items()}
    print(json.dumps({
        "bank": args.bank, "queries": args.queries, "dim": args.dim, "trees": len(scorer.forest_.estimators_),
        "rounds": args.rounds, "seconds_median": median, "seconds": seconds,
        "speedup": median["per_tree_copy"] / median["engine"], "identical": identical,
    }, indent=1))  # fmt: skip
    if not identical:
        raise SystemExit("the engine's depths differ from the per-tree copy's")


if __name__ == "__main__":
    main()
