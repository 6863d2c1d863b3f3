#!/usr/bin/env bash
# Sets everything up on first use (.venv with the pinned requirements) and starts the dashboard with
# one local worker and the default SQLite database in the data directory ($CON2_DATA_DIR, else
# ~/.local/share/con2). Extra arguments go to `streamlit run` (e.g. --server.port 8600).
# CON2_DATABASE_URL=postgresql+psycopg://... points the app and its worker at a shared database.
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
exec .venv/bin/streamlit run streamlit_app.py --server.headless true --browser.gatherUsageStats false "$@"
