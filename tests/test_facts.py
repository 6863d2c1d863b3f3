"""One owner per fact: each constant the layers share is defined in one module and imported everywhere
else. Where the layering forbids the import (db/ may not import the engine), the copy is named here and
held equal to its owner."""

from __future__ import annotations

import ast

import numpy as np
import pytest

from tests.test_architecture import ROOT, project_modules

# fact -> the one module that may assign it at top level
OWNERS = {
    "IMAGE_EXTENSIONS": "engine.archives",
    "SPLIT_NAMES": "engine.archives",
    "SECTIONS": "engine.config",
    "STALE_AFTER_S": "db.jobs",
    "PROJECTIONS": "engine.projection",
}
# copies the layering makes necessary: (module, fact); each is checked equal to its owner below
MIRRORS = {("db.job_configs", "PROJECTIONS")}  # db/ may not import the engine; the queue validates job configs


def top_level_names(module: str) -> set[str]:
    """The names a module assigns at its top level (imports excluded)."""
    tree = ast.parse(project_modules()[module].read_text())
    names = set()
    for node in tree.body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


@pytest.mark.parametrize("fact", sorted(OWNERS))
def test_each_fact_is_assigned_by_its_owner_alone(fact):
    assigned = {module for module in project_modules() if fact in top_level_names(module)}
    assert assigned - {module for module, name in MIRRORS if name == fact} == {OWNERS[fact]}


# the device policy's decisions (engine/device.py): no other module of the four packages makes them
DEVICE_DECISIONS = ("torch.autocast(", "pin_memory", "cudnn.", "float32_matmul_precision", "torch.device(")
DEVICE_OWNER = "engine.device"


def test_the_device_precision_and_batch_transfer_have_one_owner():
    """Device choice, autocast, determinism flags and pinning are decided in engine/device.py alone; whether a GPU
    is there at all may also be asked by the dashboard, which shows it (and may not import the engine's device)."""
    deciding = {
        module: [d for d in DEVICE_DECISIONS + ("cuda.is_available",) if d in path.read_text()]
        for module, path in project_modules().items()
        if module not in (DEVICE_OWNER, "dashboard.settings")
    }
    assert {module: found for module, found in deciding.items() if found} == {}
    assert all(d in project_modules()[DEVICE_OWNER].read_text() for d in DEVICE_DECISIONS)


def test_the_mirrored_copies_equal_their_owners():
    import importlib

    for module, fact in MIRRORS:
        assert getattr(importlib.import_module(module), fact) == getattr(importlib.import_module(OWNERS[fact]), fact)


def test_the_dashboard_and_the_cli_use_the_engines_config_sections():
    from dashboard import intake, widgets
    from db.job_configs import TrainJobConfig
    from engine import archives, cli, config, sources

    assert widgets.SECTIONS is config.SECTIONS and cli.SECTIONS is config.SECTIONS
    assert list(config.SECTIONS) == [f.name for f in __import__("dataclasses").fields(config.RunConfig)]
    assert TrainJobConfig.sections() == list(config.SECTIONS)  # a train job carries them, as plain dicts
    assert intake.IMAGE_EXTENSIONS is archives.IMAGE_EXTENSIONS is sources.IMAGE_EXTENSIONS


def test_worker_stale_after_defaults_to_the_queues_value(monkeypatch, capsys):
    """`con2 worker --help` loads no database driver, so its help text names the default: held equal here."""
    from db.jobs import STALE_AFTER_S
    from worker import cli

    with pytest.raises(SystemExit):
        cli.parser().parse_args(["--help"])
    assert f"default: {STALE_AFTER_S:g}," in " ".join(capsys.readouterr().out.split())
    seen = {}
    monkeypatch.setattr("worker.loop.run_worker", lambda *args, **kwargs: seen.update(kwargs))
    assert cli.main(["--once", "--lane", "all"]) == 0  # one process: "both" would start the quick lane's
    assert seen["stale_after_s"] == STALE_AFTER_S and seen["lane"] is None
    assert cli.main(["--once", "--lane", "quick", "--stale-after", "5"]) == 0 and seen["stale_after_s"] == 5.0
    assert seen["lane"] == "quick"


def test_the_workers_lane_choices_are_the_queues_lanes():
    """`con2 worker --lane` names db.jobs.LANES without importing db/ (its --help loads no driver)."""
    from db.jobs import LANES
    from worker import cli

    assert set(cli.LANE_CHOICES) == {"both", "all", *LANES}


def test_the_engines_scores_csv_ranks_as_db_ranking_does(tmp_path):
    """scores.csv is written by the engine, which may not import db/: its rank column must still be
    db.ranking.ranks, ties in input order."""
    import csv
    from types import SimpleNamespace

    from db.ranking import ranks
    from engine.artifacts import write_results
    from engine.data import SampleRef

    s_nnd = np.array([0.5, 0.9, 0.5, 0.1, 0.9, 0.7])
    refs = [SampleRef(f"s{i}", f"/x/s{i}.png") for i in range(len(s_nnd))]
    scored = SimpleNamespace(refs=refs, ids=[r.sample_id for r in refs])
    features = np.zeros((len(s_nnd), 2), dtype=np.float32)
    scores = SimpleNamespace(s_nnd=s_nnd, s_lh=-s_nnd, features=features, context_features=features)
    write_results(tmp_path, scored, scores, [], {})
    with open(tmp_path / "scores.csv", newline="") as handle:
        written = {row["sample_id"]: int(row["rank"]) for row in csv.DictReader(handle)}
    assert [written[r.sample_id] for r in refs] == ranks(s_nnd).tolist()


def test_ranks_and_percentiles_have_one_owner():
    from dashboard import triage
    from db import ranking, results

    assert results.ranks is ranking.ranks and results.percentile is ranking.percentile
    assert triage.threshold_at_percentile is ranking.threshold_at_percentile
    assert triage.reference_share_above is ranking.reference_share_above
    reference = np.arange(100, dtype=float)
    threshold = ranking.threshold_at_percentile(reference, 98)
    # the two directions agree: the share above the 98th percentile is 2 %, and a score just above it
    # is more anomalous than 98 % of the reference
    assert ranking.reference_share_above(reference, threshold) == pytest.approx(2.0)
    assert ranking.percentile(np.array([threshold + 1e-9]), reference)[0] == pytest.approx(98.0)


def _pins(name: str) -> dict[str, str]:
    """package -> pinned version of a requirements file (its `-r` includes left out)."""
    lines = (ROOT / name).read_text().splitlines()
    pins = [line.split("==") for line in lines if line.strip() and not line.startswith(("#", "-r"))]
    return {package.strip(): version.strip() for package, version in pins}


def test_pyproject_declares_what_the_requirements_files_pin():
    """Runtime dependencies in pyproject.toml's `dependencies` and requirements.txt, the tools in the `dev`
    extra and requirements-dev.txt: the same packages, each pin within its declared range."""
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for declared, pinned in (
        (project["dependencies"], _pins("requirements.txt")),
        (project["optional-dependencies"]["dev"], _pins("requirements-dev.txt")),
    ):
        requirements = [Requirement(text) for text in declared]
        assert {str(r).split(">=")[0].split("==")[0] for r in requirements} == set(pinned)
        for requirement in requirements:
            key = requirement.name + (f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else "")
            assert requirement.specifier.contains(pinned[key]), requirement
    assert "-r requirements.txt" in (ROOT / "requirements-dev.txt").read_text().splitlines()
    assert "requirements-dev.txt" in (ROOT / "setup.sh").read_text()  # the tests' tools are installed
