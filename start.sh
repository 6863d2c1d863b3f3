#!/usr/bin/env bash
# Sets everything up on first use (.venv with the pinned requirements) and starts the dashboard with
# one local worker and the default SQLite database in the data directory ($CON2_DATA_DIR, else
# ~/.local/share/con2). Extra arguments go to `streamlit run` (e.g. --server.port 8600).
# CON2_DATABASE_URL=postgresql+psycopg://... points the app and its worker at a shared database.
#
# It listens on 127.0.0.1 only (.streamlit/config.toml). Team mode (README): a wider address, e.g.
# --server.address 0.0.0.0, is served only with a login file named by CON2_AUTH_CONFIG; without one
# this script refuses to start (exit status 2).
set -euo pipefail
cd "$(dirname "$0")"

# The address streamlit will use: a flag wins over STREAMLIT_SERVER_ADDRESS, which wins over config.toml.
address="${STREAMLIT_SERVER_ADDRESS:-127.0.0.1}"
previous=""
for arg in "$@"; do
  case "$arg" in
    --server.address=*) address="${arg#--server.address=}" ;;
  esac
  if [ "$previous" = "--server.address" ]; then address="$arg"; fi
  previous="$arg"
done
case "$address" in
  127.*|localhost|::1|"[::1]") ;;
  *)
    if [ -z "${CON2_AUTH_CONFIG:-}" ]; then
      echo "error: the server address '${address:-every interface}' can be reached from other machines and no" \
           "login is configured: set CON2_AUTH_CONFIG to a login file (README: team mode), or serve on 127.0.0.1" >&2
      exit 2
    fi ;;
esac

./setup.sh
# checks the login file itself (hashed passwords, a cookie key) now rather than at the first request
.venv/bin/python -m dashboard.auth check --address "$address"
exec .venv/bin/streamlit run streamlit_app.py --server.headless true --browser.gatherUsageStats false "$@"
