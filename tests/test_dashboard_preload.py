"""The chart preload (dashboard/preload.py) points at the chunk Streamlit's front end really imports."""

from __future__ import annotations

import re
from pathlib import Path

import streamlit as st

from dashboard import preload


def test_the_preloaded_chunk_is_the_one_the_front_end_imports_for_plotly_charts():
    chunk = preload.chart_chunk()
    # None would silently turn the preload off: a Streamlit upgrade that renames the chunk must show up here
    assert chunk is not None, f"no single {preload.CHUNK_GLOB} in this Streamlit install"
    static = Path(st.__file__).parent / "static"
    # the page's entry script, whose URL the preload takes (SCRIPT's pattern): the one script tag of index.html
    entries = re.findall(
        r'<script type="module"[^>]* src="\./(static/js/index\.[^/"]+\.js)"', (static / "index.html").read_text()
    )
    assert len(entries) == 1, entries
    assert f"import(`./{chunk}`)" in (static / entries[0]).read_text(encoding="utf-8")
    assert re.search(preload.ENTRY_PATTERN, f"http://127.0.0.1:8501/{entries[0]}")  # the preload finds the entry
