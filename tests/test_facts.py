"""One owner per fact: each constant the layers share is defined in one module and imported everywhere
else. Where the layering forbids the import (db/ may not import the engine), the copy is named here and
held equal to its owner."""

from __future__ import annotations

import ast

import pytest

from tests.test_architecture import project_modules

# fact -> the one module that may assign it at top level
OWNERS = {
    "IMAGE_EXTENSIONS": "engine.archives",
    "SPLIT_NAMES": "engine.archives",
    "SECTIONS": "engine.config",
    "STALE_AFTER_S": "db.jobs",
    "PROJECTIONS": "engine.projection",
}
# copies the layering makes necessary: (module, fact); each is checked equal to its owner below
MIRRORS = {("db.jobs", "PROJECTIONS")}  # db/ may not import the engine; the queue validates job configs


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


def test_the_mirrored_copies_equal_their_owners():
    import importlib

    for module, fact in MIRRORS:
        assert getattr(importlib.import_module(module), fact) == getattr(importlib.import_module(OWNERS[fact]), fact)


def test_the_dashboard_and_the_cli_use_the_engines_config_sections():
    from dashboard import intake, widgets
    from engine import archives, cli, config, sources

    assert widgets.SECTIONS is config.SECTIONS and cli.SECTIONS is config.SECTIONS
    assert list(config.SECTIONS) == [f.name for f in __import__("dataclasses").fields(config.RunConfig)]
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
    assert cli.main(["--once"]) == 0
    assert seen["stale_after_s"] == STALE_AFTER_S
    assert cli.main(["--once", "--stale-after", "5"]) == 0 and seen["stale_after_s"] == 5.0
