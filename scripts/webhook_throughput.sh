#!/usr/bin/env bash
# Webhook delivery throughput (docs/PERFORMANCE.md): EVENTS events of CONTACTS customers already
# in the outbox, one endpoint, a CRM that answers 204 at once. Measures how fast hearback hands
# them out and delivers them, each customer's in order, from the first request to the last
# event. The server runs on core 0, the CRM stand-in on core 1.
#
#   scripts/webhook_throughput.sh                    # SQLite, 20 000 events of 1 000 customers
#   DATABASE=postgres scripts/webhook_throughput.sh
#   EVENTS=50000 CONTACTS=5000 scripts/webhook_throughput.sh
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS=${EVENTS:-20000}
CONTACTS=${CONTACTS:-1000}
DATABASE=${DATABASE:-sqlite}
PG=${HEARBACK_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
PORT=18080
CRM=127.0.0.1:18098

cargo build --release --bin hearback --example load_driver >&2
# shellcheck source=scripts/measure_common.sh
source scripts/measure_common.sh  # the working directory is the repository (cd above)

if [ "$DATABASE" = postgres ]; then
    psql -q "$PG" -c "DROP DATABASE IF EXISTS hearback_webhooks" -c "CREATE DATABASE hearback_webhooks" >&2
    export HEARBACK_DATABASE_URL=${PG%/*}/hearback_webhooks
    now="now()"
    sql() { psql -q "$HEARBACK_DATABASE_URL" -c "$1" >&2; }
else
    export HEARBACK_DATABASE_URL=sqlite://$work/hearback.db
    now="CAST(strftime('%s', 'now') AS INTEGER) * 1000"
    sql() { sqlite3 "$work/hearback.db" "$1" >&2; }
fi

cat >"$work/hearback.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"

[log]
level = "warn"

[privacy]
key_file = "$work/hearback.key"

[webhooks]
allow_networks = ["127.0.0.1/32"]

[webhooks.endpoints.crm]
url = "http://$CRM/hooks"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TOML

"$HEARBACK" --config "$work/hearback.toml" migrate >&2
# The customers, then their events round-robin (event n belongs to customer n mod CONTACTS).
sql "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $CONTACTS)
     INSERT INTO contacts (id, phone, created_at, updated_at)
     SELECT 'c' || i, '+3361' || (1000000 + i), $now, $now FROM n"
sql "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $EVENTS)
     INSERT INTO outbox (event_id, event_type, version, contact_id, occurred_at, payload)
     SELECT 'evt_load_' || i, 'response.answered', 1, 'c' || (i % $CONTACTS), $now,
            '{\"conversation\":{\"id\":\"x\"},\"question\":\"nps\",\"value\":9}' FROM n"

taskset -c 1 "$DRIVER" crm --listen "$CRM" --expect "$EVENTS" --server-pid-file "$work/server.pid" &
crm_pid=$!
pids+=($crm_pid)
sleep 0.3
taskset -c 0 "$HEARBACK" --config "$work/hearback.toml" serve &
pids+=($!)
echo $! >"$work/server.pid"
wait "$crm_pid"
