#!/usr/bin/env bash
# Runs the whole test suite, from a fresh machine too: sets up .venv, the system packages the real-part
# tests need (Debian's PostgreSQL server and Chromium, when run as root), a throwaway PostgreSQL
# cluster, then pytest. Extra arguments go to pytest (e.g. ./test.sh -m "not slow").
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
if [ "$(id -u)" = 0 ]; then
  missing=()
  command -v chromium >/dev/null || missing+=(chromium)
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} (Debian packages) for the browser and PostgreSQL tests" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi
if [ -z "${CON2_TEST_POSTGRES_URL:-}" ] && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  eval "$(.ci/postgres.sh)"  # starts a throwaway cluster and exports CON2_TEST_POSTGRES_URL and _DIR
  trap '.ci/postgres.sh stop >/dev/null' EXIT  # and removes it when the tests end
fi
.venv/bin/python -m pytest "$@"
