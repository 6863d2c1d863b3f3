"""The data flows one way: the engine core knows nothing of the database or the UI; pages hold no SQL or torch."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imports(path: Path) -> set[str]:
    """Top-level module names a file imports, wherever in the file the import sits."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_engine_core_imports_neither_db_nor_sqlalchemy_nor_streamlit():
    bridge = {"worker.py"}  # the one module that joins the engine to the database
    for path in sorted((ROOT / "engine").glob("*.py")):
        if path.name in bridge:
            continue
        assert not imports(path) & {"db", "sqlalchemy", "streamlit", "dashboard"}, path.name


def test_db_imports_neither_torch_nor_streamlit_nor_the_dashboard():
    for path in sorted((ROOT / "db").rglob("*.py")):
        assert not imports(path) & {"torch", "torchvision", "streamlit", "dashboard"}, path


def test_pages_hold_no_sql_and_no_torch():
    pages = sorted((ROOT / "dashboard" / "pages").glob("*.py"))
    assert pages, "no pages found under dashboard/pages"
    for path in pages:
        assert not imports(path) & {"torch", "torchvision", "sqlalchemy", "db", "engine"}, path.name
        text = path.read_text().upper()
        assert "SELECT " not in text and "INSERT INTO" not in text, path.name
