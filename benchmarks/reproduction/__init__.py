"""Reproduce the paper: one command runs the Con2 protocol on real data and writes the results table.

Protocol (../shared/data/README.md, paper Table 1): train on the normal train images, score the whole
test split, AUROC with "anomalous" as the positive class, three seeds, mean ± std. Every
dataset × method × seed is a *cell*. A finished cell is one `result.json` under the state directory;
an unfinished one keeps its training checkpoint there, so a rerun skips finished cells and resumes an
unfinished one from its last checkpoint, on this machine or another. After every cell,
`docs/results.md` and `docs/results.json` are rewritten from the finished cells of every budget.

    protocol.py   datasets, methods, the paper's figures, budgets, cells, the settings a cell compares
    cells.py      one cell through engine.run.train_run (or the raw-pixel floor), resumable
    timelimit.py  stopping cleanly before an outer time limit; progress lines
    state.py      the state directory's files: result.json, sessions.json, atomic writes
    tables.py     finished cells → docs/results.json and docs/results.md
    cli.py        the command line (`python benchmarks/reproduce.py`, `python -m benchmarks.reproduction`)
"""

import engine  # noqa: F401  (first: it sets GOMP_SPINCOUNT, which only works before torch loads)
