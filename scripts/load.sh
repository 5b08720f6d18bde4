#!/usr/bin/env bash
# The inbound load comparison of docs/PERFORMANCE.md: hearback's whole inbound path against the
# HTTP ceiling (a bare 200) and the durable-write ceiling (parse, HMAC, one naive transaction),
# on SQLite and PostgreSQL. Every server runs on core 0, the driver (and the provider stand-in)
# on core 1. See examples/load_driver.rs.
#
#   scripts/load.sh                      # 2 000 customers × 3 replies, 64 connections
#   CUSTOMERS=5000 CONNECTIONS=64 scripts/load.sh
#   RUNS="hearback-sqlite hearback-postgres" scripts/load.sh   # a subset of: bare naive-sqlite-normal
#                                        # naive-sqlite-full naive-postgres hearback-sqlite hearback-postgres
#
# PostgreSQL runs on core 0 with the server it serves (issue 4's protocol: the server and its
# database on one core, the driver on the other): every PostgreSQL process on this machine is
# pinned there for the script's run (taskset; it takes root or the postgres user) and given back
# every core when the script exits. DATABASE_CORES=all leaves it unpinned, as runs A–M of
# docs/PERFORMANCE.md were made.
#
# PostgreSQL: HEARBACK_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test); a
# database `hearback_load` is dropped and created on that server for each run, with
# LOAD_DATABASE_OPTIONS if set (e.g. "TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'").
set -euo pipefail
cd "$(dirname "$0")/.."

CUSTOMERS=${CUSTOMERS:-2000}
CONNECTIONS=${CONNECTIONS:-64}
RUNS=${RUNS:-bare naive-sqlite-normal naive-sqlite-full naive-postgres hearback-sqlite hearback-postgres}
PG=${HEARBACK_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
PG_LOAD=${PG%/*}/hearback_load
PORT=18080
STAND_IN=127.0.0.1:18099

cargo build --release --bin hearback --example load_driver >&2
# shellcheck source=scripts/measure_common.sh
source scripts/measure_common.sh  # the working directory is the repository (cd above)

stop() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

fresh_pg() {
    psql -q "$PG" -c "DROP DATABASE IF EXISTS hearback_load" -c "CREATE DATABASE hearback_load ${LOAD_DATABASE_OPTIONS:-}" >&2
}

# Sets the cores of every PostgreSQL process (new sessions inherit the postmaster's).
pin_postgres() {
    local pid
    for pid in $(pgrep -u postgres); do taskset -a -p -c "$1" "$pid" >/dev/null; done
}
if [ "${DATABASE_CORES:-0}" != all ] && [[ " $RUNS " == *postgres* ]]; then
    pin_postgres "${DATABASE_CORES:-0}"
    trap 'pin_postgres "0-$(($(nproc) - 1))"; cleanup' EXIT
fi

taskset -c 1 "$DRIVER" stand-in --listen "$STAND_IN" &
pids+=($!)

cat >"$work/hearback.toml" <<EOF
[server]
listen = "127.0.0.1:$PORT"

[log]
level = "warn"

[flows]
dir = "flows"

# The reply path is measured, not the scheduling: every first question goes out at once.
[dispatch]
immediate = true

[channels.twilio]
provider = "twilio"
account_sid = "AC00000000000000000000000000000000"
auth_token = "load-test-token"
senders = ["+33757000000"]
api_base_url = "http://$STAND_IN"
EOF

run_hearback() {
    local label=$1 url=$2
    export HEARBACK_DATABASE_URL=$url
    "$HEARBACK" --config "$work/hearback.toml" migrate >&2
    local key
    key=$("$HEARBACK" --config "$work/hearback.toml" api-keys create --name "load" 2>/dev/null)
    taskset -c 0 "$HEARBACK" --config "$work/hearback.toml" serve &
    local pid=$!
    pids+=("$pid")
    wait_for "http://127.0.0.1:$PORT/healthz"
    taskset -c 1 "$DRIVER" drive --url "http://127.0.0.1:$PORT" --api-key "$key" \
        --customers "$CUSTOMERS" --connections "$CONNECTIONS" --server-pid "$pid" --label "$label" \
        --verify-database "$url"
    stop "$pid"
    unset HEARBACK_DATABASE_URL
}

run_baseline() {
    local label=$1
    shift
    taskset -c 0 "$DRIVER" "$@" --listen "127.0.0.1:$PORT" &
    local pid=$!
    pids+=("$pid")
    wait_for "http://127.0.0.1:$PORT/"
    taskset -c 1 "$DRIVER" drive --url "http://127.0.0.1:$PORT" \
        --customers "$CUSTOMERS" --connections "$CONNECTIONS" --server-pid "$pid" --label "$label"
    stop "$pid"
}

wanted() { [[ " $RUNS " == *" $1 "* ]]; }

if wanted bare; then run_baseline "bare axum 200" bare; fi
if wanted naive-sqlite-normal; then
    run_baseline "naive, SQLite synchronous=NORMAL" naive --database "sqlite://$work/naive-normal.db" \
        --synchronous normal --public-url "http://127.0.0.1:$PORT"
fi
if wanted naive-sqlite-full; then
    run_baseline "naive, SQLite synchronous=FULL" naive --database "sqlite://$work/naive-full.db" \
        --synchronous full --public-url "http://127.0.0.1:$PORT"
fi
if wanted naive-postgres; then
    fresh_pg
    run_baseline "naive, PostgreSQL synchronous_commit=on" naive --database "$PG_LOAD" \
        --public-url "http://127.0.0.1:$PORT"
fi
if wanted hearback-sqlite; then run_hearback "hearback, SQLite" "sqlite://$work/hearback.db"; fi
if wanted hearback-postgres; then
    fresh_pg
    run_hearback "hearback, PostgreSQL" "$PG_LOAD"
fi
