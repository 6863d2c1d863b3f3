#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests marked `postgres`.
#
#   eval "$(.ci/postgres.sh)"          # install if missing, start, export CON2_TEST_POSTGRES_URL (+ _DIR)
#   .venv/bin/pytest -m postgres ...   # the tests read CON2_TEST_POSTGRES_URL
#   .ci/postgres.sh stop               # stop it and delete its files (uses CON2_TEST_POSTGRES_DIR)
#
# Installs Debian's postgresql when no server binaries are found (needs root or sudo), initialises a
# cluster in a temporary directory owned by the `postgres` user (or the current user when not root),
# starts it on a free port on 127.0.0.1 with trust authentication and fsync off (test data only),
# and creates the database con2_test. Only the export lines go to stdout; progress goes to stderr.
set -euo pipefail

say() { echo "postgres.sh: $*" >&2; }

find_bin() {
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

as_owner() {  # run a command as the cluster's owner
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

if [ "${1:-}" = "stop" ]; then
    dir="${CON2_TEST_POSTGRES_DIR:?set by eval \"\$(.ci/postgres.sh)\"}"
    bin="$(find_bin)"
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast stop >&2 || true
    rm -rf "$dir"
    echo "unset CON2_TEST_POSTGRES_URL CON2_TEST_POSTGRES_DIR"
    exit 0
fi

if ! bin="$(find_bin)"; then
    say "installing postgresql (Debian package)"
    sudo_cmd=""
    [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq postgresql >&2
    bin="$(find_bin)"
fi

dir="$(mktemp -d /tmp/con2-postgres.XXXXXX)"
chmod 755 "$dir"
if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir "$dir" --shell /bin/sh postgres
    chown postgres "$dir"
fi
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

say "initialising a cluster in $dir/data ($("$bin/postgres" --version))"
as_owner "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale >/dev/null
as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start -o \
    "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" >&2
as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres con2_test

url="postgresql+psycopg://postgres@127.0.0.1:$port/con2_test"
say "running on port $port; stop with: .ci/postgres.sh stop"
echo "export CON2_TEST_POSTGRES_URL='$url'"
echo "export CON2_TEST_POSTGRES_DIR='$dir'"
