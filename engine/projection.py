"""2-D projections of both contexts' features in one shared space (the paper's Figure 1).

Originals and context images are fitted together, so a sample's two points can be joined by a line:
for normal samples these alignment lines run parallel between the two context clusters.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Callable

import numpy as np
from sklearn.decomposition import PCA

PROJECTIONS = ("umap", "pca")
# How far along a projection is (0..1) and what it is doing, in words; it may raise to stop the projection.
ProjectionProgress = Callable[[float, str], None]
# UMAP's share before its layout: the neighbour graph and the spectral initialisation report nothing while they
# run; the layout's epochs take the rest, one report per epoch tqdm shows.
LAYOUT_START = 0.3
# Seconds between two layout reports at least: a report writes the job row, and a fast layout would otherwise write
# every epoch (how many reports a fit makes therefore depends on the CPU's speed)
LAYOUT_REPORT_S = 0.2

_warm = threading.Event()  # UMAP's numba code is compiled in this process (warm_up ran to its end)
_warming = threading.Lock()


def project(
    features: np.ndarray,
    context_features: np.ndarray,
    method: str = "umap",
    seed: int = 0,
    on_progress: ProjectionProgress | None = None,
) -> np.ndarray:
    """Project (M, D) original and (M, D) context features together → (M, 4): x, y, context x, context y.

    Features are L2-normalised first (the scores compare them by cosine). UMAP uses the cosine
    metric, a fixed seed and at most 15 neighbours; PCA is exact and deterministic. `on_progress(fraction,
    stage)` hears how far it is, through UMAP's layout epoch by epoch; an exception it raises stops the fit.
    """
    report = on_progress or (lambda fraction, stage: None)
    m = features.shape[0]
    points = np.concatenate([features, context_features]).astype(np.float32)  # (2M, D)
    points /= np.linalg.norm(points, axis=1, keepdims=True).clip(min=1e-12)
    if method == "pca":
        xy = PCA(n_components=2, random_state=seed).fit_transform(points)
    elif method == "umap":
        xy = _umap(points, seed, report)
    else:
        raise ValueError(f"unknown projection {method!r}; choose one of {', '.join(PROJECTIONS)}")
    report(1.0, "done")
    return np.concatenate([xy[:m], xy[m:]], axis=1).astype(np.float32)


class _EpochReport:
    """A file for tqdm's progress bar over UMAP's layout epochs: each line it draws ("n/total", our bar_format)
    becomes a report. The epoch loop is UMAP's own Python loop around its numba step, so the report (and an
    exception it raises, a cancel) comes between two epochs. After one exception it keeps quiet: tqdm draws
    once more while it closes, and must not raise the same stop twice."""

    def __init__(self, report: ProjectionProgress) -> None:
        self.report, self.stopped = report, False

    def write(self, text: str) -> int:
        found = re.findall(r"(\d+)/(\d+)", text)
        if found and not self.stopped:
            done, total = (int(v) for v in found[-1])
            try:
                self.report(LAYOUT_START + (1 - LAYOUT_START) * done / max(total, 1), f"layout, epoch {done}/{total}")
            except BaseException:
                self.stopped = True
                raise
        return len(text)

    def flush(self) -> None:
        pass


def _umap(points: np.ndarray, seed: int, report: ProjectionProgress, *, quiet: bool = False) -> np.ndarray:
    if points.shape[0] < 4:  # UMAP's spectral layout needs a few points; fall back to PCA
        return PCA(n_components=2).fit_transform(points)
    if not _warm.is_set():
        report(0.0, "compiling UMAP (once per worker process; about half a minute)")
    import umap  # imported late: numba compilation costs seconds at import

    report(0.05, f"neighbour graph of {points.shape[0]} points")
    # tqdm draws "n/total" into _EpochReport at most every LAYOUT_REPORT_S: the layout's progress, without verbose's
    # log (miniters = 1: tqdm checks the time every epoch instead of guessing how many to skip)
    epochs = {
        "disable": False,
        "file": _EpochReport(report),
        "bar_format": "{n}/{total}",
        "mininterval": LAYOUT_REPORT_S,
        "miniters": 1,
    }
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=min(15, points.shape[0] - 1),
        metric="cosine",
        random_state=seed,
        init="spectral" if points.shape[0] > 10 else "random",
        tqdm_kwds=None if quiet else epochs,
    )
    with warnings.catch_warnings():  # a fixed seed makes UMAP single-threaded, as intended here
        warnings.filterwarnings("ignore", message=".*overridden to 1 by setting random_state.*")
        xy = reducer.fit_transform(points)
    _warm.set()  # compiled now: the next fit in this process says nothing about compiling
    return xy


def warm_up() -> None:
    """Compile UMAP's numba code in this process by fitting a few random points, once (later calls return at once).

    Measured on the 2-core machine: the first UMAP fit of a process took 36 s on 1,078 points, 31 s of it
    compiling; the next fit 6 s. Fewer epochs (200 instead of 500: 4 s) or a PCA initialisation (8 s) barely
    matter next to that, so the worker compiles while a run trains (`warm_up_in_background`) instead."""
    with _warming:
        if _warm.is_set():
            return
        points = np.random.default_rng(0).normal(size=(64, 16)).astype(np.float32)
        points /= np.linalg.norm(points, axis=1, keepdims=True)
        _umap(points, 0, lambda fraction, stage: None, quiet=True)


def warm_up_in_background() -> threading.Thread | None:
    """`warm_up` in a daemon thread, unless UMAP is compiled already; the thread, to join if wanted."""
    if _warm.is_set():
        return None
    thread = threading.Thread(target=warm_up, name="umap-warm-up", daemon=True)
    thread.start()
    return thread
