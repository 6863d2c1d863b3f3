"""The data flows one way, and these tests hold every layer to it, following imports transitively:

    dashboard/ ──→ db/ ←── worker/ ──→ engine/
        └──────→ engine's light modules (config, presets, archives, sources, metrics, the context ops of augment)
        └──────→ worker.process (starts the local worker as a process; imports no engine)

The engine knows nothing of the database, the worker or the UI; db/ knows nothing of torch, the engine or
the UI; the dashboard builds no query of its own (it calls db's functions) and pages hold no SQL and no
torch. An import counts wherever it sits in a file (a lazy import inside a function is still a
dependency), and through every project module it leads to: `a` importing `b`
importing `sqlalchemy` is `a` importing `sqlalchemy`.
"""

from __future__ import annotations

import ast
from collections import deque
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "db", "worker", "dashboard")
APP = "streamlit_app"  # the dashboard's entry script, at the top of the repository

# The engine modules the dashboard may reach: forms (config, presets), the checks before a dataset is
# registered (archives, sources and what they read with; near_duplicates for its minimum side, without
# ImageHash, which it imports only to hash), the context previews of the gallery (augment),
# the ROC and its area (metrics: numpy and scikit-learn). Never the training or scoring pipeline:
# training runs in the worker, so the app never does.
DASHBOARD_ENGINE = {
    "engine",
    "engine.config",
    "engine.metrics",
    "engine.presets",
    "engine.archives",
    "engine.data",
    "engine.sources",
    "engine.images",
    "engine.augment",
    "engine.near_duplicates",
}
DATABASE = {"sqlalchemy", "alembic", "psycopg", "psycopg2"}
UI = {"streamlit", "plotly"}


@cache
def project_modules() -> dict[str, Path]:
    """Every module of the four packages (and the app script) by dotted name: 'db.jobs', 'worker'."""
    modules = {APP: ROOT / f"{APP}.py"}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _statements(tree: ast.Module, top_level_only: bool) -> list[ast.AST]:
    """All nodes of a file, or (top_level_only) those that run when it is imported: not function bodies."""
    if not top_level_only:
        return list(ast.walk(tree))
    found, todo = [], list(tree.body)
    while todo:
        node = todo.pop()
        found.append(node)
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            todo.extend(ast.iter_child_nodes(node))
    return found


@cache
def direct_imports(module: str, top_level_only: bool = False) -> frozenset[str]:
    """Dotted names one project module imports: a project module where one is named ('from db import jobs'
    is db.jobs), else the named module itself ('sqlalchemy.orm')."""
    path = project_modules()[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in _statements(ast.parse(path.read_text(), filename=str(path)), top_level_only):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the package, one level up per extra dot
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                names.add(submodule if submodule in project_modules() else base)
    return frozenset(names)


def _loaded(name: str) -> list[str]:
    """What importing `name` loads: 'db.jobs' loads the packages 'db' and 'db.jobs'."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def reach(*starts: str, top_level_only: bool = False) -> dict[str, list[str]]:
    """Everything importing `starts` leads to, transitively through project modules: each project module
    and each outside top-level package (`torch`, `sqlalchemy`), with the chain of imports that gets there."""
    chains: dict[str, list[str]] = {}
    todo = deque()
    for start in starts:
        chains[start] = [start]
        todo.append(start)
    while todo:
        module = todo.popleft()
        for name in sorted(direct_imports(module, top_level_only)):
            for loaded in _loaded(name):
                key = loaded if loaded in project_modules() else loaded.split(".")[0]
                if key in chains:
                    continue
                chains[key] = [*chains[module], key]
                if key in project_modules():
                    todo.append(key)
    return chains


def layer(package: str) -> list[str]:
    return sorted(m for m in project_modules() if m == package or m.startswith(f"{package}."))


def _is_in(name: str, packages: set[str]) -> bool:
    return name.split(".")[0] in packages


def violations(modules: list[str], forbidden, *, top_level_only: bool = False) -> list[str]:
    """'a → b → sqlalchemy': the shortest chain to each forbidden name (forbidden(name) is True) the
    modules reach."""
    found: dict[str, list[str]] = {}
    for module in modules:
        for name, chain in reach(module, top_level_only=top_level_only).items():
            if name != module and forbidden(name) and len(chain) < len(found.get(name, chain + [""])):
                found[name] = chain
    return [" → ".join(chain) for _, chain in sorted(found.items())]


def test_the_import_walk_follows_project_modules_transitively():
    """The rules below mean nothing if the walk stops at the first file: check it on known chains."""
    assert "torch" not in direct_imports("worker.loop")
    assert reach("worker.loop")["torch"][0] == "worker.loop"  # through the engine
    assert "sqlalchemy" in reach("dashboard.widgets")  # widgets → db.session → sqlalchemy
    assert "engine.config" in reach("engine.presets") and "db.models" in reach("db.jobs")
    assert "db.migrations" in reach("db.session")  # a lazy import, inside a function, counts
    assert "db.migrations" not in reach("db.session", top_level_only=True)
    assert set(layer("worker")) >= {"worker", "worker.loop", "worker.cli", "worker.process"}
    assert len(layer("dashboard")) > len(list((ROOT / "dashboard" / "pages").glob("*.py")))


def test_no_two_project_modules_import_each_other():
    """No import cycle, lazy imports included: db.session opens the database through db.migrations, so
    db.migrations takes an engine and never imports db.session back."""
    cycles = sorted(
        f"{a} ↔ {b}" for a in project_modules() for b in reach(a) if a < b and b in project_modules() and a in reach(b)
    )
    assert not cycles, "\n".join(cycles)


def test_engine_imports_neither_the_database_nor_the_worker_nor_the_ui():
    bad = violations(layer("engine"), lambda name: _is_in(name, {"db", "worker", "dashboard", APP} | DATABASE | UI))
    assert not bad, "\n".join(bad)


def test_db_imports_neither_torch_nor_the_engine_nor_the_worker_nor_the_ui():
    forbidden = {"torch", "torchvision", "engine", "worker", "dashboard", APP} | UI
    bad = violations(layer("db"), lambda name: _is_in(name, forbidden))
    assert not bad, "\n".join(bad)


def test_worker_joins_engine_and_db_and_knows_nothing_of_the_ui():
    bad = violations(layer("worker"), lambda name: _is_in(name, {"dashboard", APP} | UI))
    assert not bad, "\n".join(bad)


def test_what_others_load_of_the_worker_stays_light():
    """worker.process is imported by the dashboard to start a worker: no engine, no torch. worker.cli is
    the `con2` command for engine subcommands too: `con2 train` must load no database driver."""
    bad = violations(["worker", "worker.process"], lambda name: _is_in(name, {"engine", "torch", "torchvision"}))
    bad += violations(
        ["worker.cli"], lambda name: _is_in(name, {"db", "engine", "torch"} | DATABASE), top_level_only=True
    )
    assert not bad, "\n".join(bad)


def test_dashboard_reaches_no_training_code_and_no_worker_job_code():
    """The app queues jobs and reads results; the worker trains. The dashboard may use the engine's light
    modules (DASHBOARD_ENGINE) and start a worker process (worker.process), nothing more."""

    def forbidden(name: str) -> bool:
        if _is_in(name, {"engine"}):
            return name not in DASHBOARD_ENGINE
        if _is_in(name, {"worker"}):
            return name not in {"worker", "worker.process"}
        return _is_in(name, {"torchvision"})

    bad = violations([APP, *layer("dashboard")], forbidden)
    assert not bad, "\n".join(bad)


def test_dashboard_loads_torch_only_where_it_is_needed():
    """Opening the app loads no torch: the gallery's context previews, the GPU check and a dataset check
    import it inside the functions that need it, so every other page starts fast."""
    bad = violations([APP, *layer("dashboard")], lambda name: _is_in(name, {"torch"}), top_level_only=True)
    assert not bad, "\n".join(bad)


def test_the_dashboard_reads_the_database_only_through_db_functions():
    """Queries live in db/: a dashboard module passes a session to db's functions and builds no query of
    its own. Only dashboard.connection imports sqlalchemy (for the sessions it hands out), so select(),
    text() and friends are out of reach elsewhere; no module runs a statement on a session itself or
    holds SQL."""
    runs_statements = {"execute", "scalar", "scalars", "query"}
    sql = ("SELECT ", "INSERT INTO", "UPDATE ", "DELETE FROM")
    for module in [APP, *layer("dashboard")]:
        if module != "dashboard.connection":
            assert not _is_in_any(direct_imports(module), DATABASE), f"{module} imports sqlalchemy: query through db/"
        source = project_modules()[module].read_text()
        calls = {
            node.func.attr
            for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        }
        found = sorted(f".{name}()" for name in calls & runs_statements) + [s.strip() for s in sql if s in source]
        assert not found, f"{module} queries the database itself ({', '.join(found)}): move it into db/"


def _is_in_any(names, packages: set[str]) -> bool:
    return any(_is_in(name, packages) for name in names)


def test_pages_hold_no_sql_and_no_torch():
    pages = [m for m in layer("dashboard") if m.startswith("dashboard.pages.")]
    assert pages, "no pages found under dashboard/pages"
    for page in pages:
        direct = {name.split(".")[0] for name in direct_imports(page)}
        assert not direct & {"torch", "torchvision", "sqlalchemy", "db", "engine", "worker"}, page
        text = project_modules()[page].read_text().upper()
        assert "SELECT " not in text and "INSERT INTO" not in text, page
