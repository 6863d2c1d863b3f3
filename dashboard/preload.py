"""Load the chart library in the background, so that the first chart page a tab opens does not wait for it.

Streamlit's front end fetches the code that draws a Plotly chart (one 4.7 MB script in Streamlit 1.67) only
when a page first shows a chart. So every page asks the browser, once per tab and when it is idle, to import that
script ahead of time; the page that needs it later finds it loaded. With an empty browser cache and 100,000
samples, Explore opened from the sidebar took 1.48 s with this against 1.79 s without (docs/benchmarks.md).

Only the script's location is found here, by the same file name the front end imports; if a Streamlit
release names it differently nothing is preloaded and every page works as before.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import streamlit as st

# The front end's lazily imported chunk for st.plotly_chart: static/js/PlotlyChart.<hash>.js
CHUNK_GLOB = "PlotlyChart.*.js"

# The front end's entry script, whose URL the chunk's is built from (a pattern both JavaScript and Python read alike)
ENTRY_PATTERN = r"\/static\/js\/index\.[^/]+\.js$"

# Runs in the page itself (st.html with JavaScript is not sandboxed). The chunk's URL is the entry script's,
# with the chunk's file name: the same absolute URL the front end imports, so the browser keeps one copy of
# the module. requestIdleCallback lets the page that is loading finish drawing first.
SCRIPT = """<script>
(() => {
  if (window.con2ChartsPreloaded) return;
  window.con2ChartsPreloaded = true;
  const entryName = /ENTRY/;
  const entry = [...document.querySelectorAll("script[src]")].find((s) => entryName.test(s.src));
  if (!entry) return;
  const url = entry.src.replace(/[^/]+$/, "CHUNK");
  const load = () => import(url).catch(() => { window.con2ChartsPreloaded = false; });
  (window.requestIdleCallback || ((f) => setTimeout(f, 500)))(load, { timeout: 3000 });
})();
</script>"""


@cache
def chart_chunk() -> str | None:
    """The file name of the front end's Plotly chunk in this Streamlit install, or None if there is none."""
    found = sorted((Path(st.__file__).parent / "static" / "static" / "js").glob(CHUNK_GLOB))
    return found[0].name if len(found) == 1 else None


def chart_library() -> None:
    """Ask this tab to import the chart code when idle (once per tab; later calls do nothing in the browser)."""
    chunk = chart_chunk()
    if chunk is not None:
        st.html(
            SCRIPT.replace("ENTRY", ENTRY_PATTERN).replace("CHUNK", chunk),
            unsafe_allow_javascript=True,
            width="content",
        )
