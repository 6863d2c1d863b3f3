"""The dashboard: `streamlit run streamlit_app.py`.

Routes the pages (st.navigation) and, once per server process, opens the database (the SQLite file in
the data directory unless CON2_DATABASE_URL says otherwise), starts one local worker (unless
CON2_WORKER=off) and registers the bundled demo dataset on first start. The app itself never trains:
the worker does, so nothing depends on a browser staying open. In team mode (CON2_AUTH_CONFIG) a request
sees the login form and nothing else until its user signs in (dashboard/auth.py).
"""

from __future__ import annotations

import streamlit as st

from dashboard import auth, connection, preload, settings

st.set_page_config(page_title="Con2 screening", page_icon=":material/radar:", layout="wide")

PAGES = {
    "Prepare": [
        st.Page("dashboard/pages/datasets.py", title="Data", icon=":material/photo_library:", default=True),
        st.Page("dashboard/pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("dashboard/pages/runs.py", title="Runs", icon=":material/list_alt:"),
    ],
    "Inspect": [
        st.Page("dashboard/pages/explore.py", title="Explore", icon=":material/scatter_plot:"),
        st.Page("dashboard/pages/review.py", title="Review", icon=":material/fact_check:"),
        st.Page("dashboard/pages/evaluate.py", title="Evaluate", icon=":material/monitoring:"),
    ],
}
# The pages are routed first, so a page asked for by its URL stays the page after the login's reruns, but
# listed only for a signed-in user; none of them runs before require_login() has let this session through.
page = st.navigation(PAGES, position="sidebar" if auth.signed_in() else "hidden")
auth.require_login()  # in team mode a request without a signed-in user sees the login form and nothing else

status = connection.start()
if status.error:
    st.error(f"Cannot open the database: {status.error}", icon=":material/error:")
    st.caption(f"Set {connection.DATABASE_URL_ENV} (or CON2_DATA_DIR for the default SQLite file) and reload.")
    st.stop()

with st.sidebar:
    if not auth.team_mode():  # signed-in users are their own reviewer name; nobody can type another
        st.text_input(
            "Reviewer",
            value=settings.default_reviewer(),
            key=auth.REVIEWER_KEY,
            help="Saved with every verdict you record (default: CON2_REVIEWER, else your user name).",
        )
    st.caption(status.describe())
    preload.chart_library()  # the first chart page of a tab then finds Plotly's code loaded (dashboard/preload.py)

page.run()
