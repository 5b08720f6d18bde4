#!/usr/bin/env bash
# Sending throughput of one channel (docs/PERFORMANCE.md): 10 000 surveys queued at once on a
# channel set to RATE messages/s, sent by one `hearback serve`, then by two on the same
# PostgreSQL. Prints the messages sent in each second of a WINDOW-second measurement, from the
# time each message went to the provider (`messages.sent_at`).
#
#   scripts/throughput.sh                     # RATE=10 WINDOW=60
#   RATE=50 WINDOW=30 scripts/throughput.sh
#
# PostgreSQL: HEARBACK_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test); a
# database `hearback_throughput` is dropped and created on that server.
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${RATE:-10}
WINDOW=${WINDOW:-60}
QUEUED=${QUEUED:-10000}
PG=${HEARBACK_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
DB=${PG%/*}/hearback_throughput

cargo build --release --bin hearback >&2
# shellcheck source=scripts/measure_common.sh
source scripts/measure_common.sh  # the working directory is the repository (cd above)

cat >"$work/hearback.toml" <<EOF
[database]
url = "$DB"

[log]
level = "warn"

[flows]
dir = "flows"

# Every survey is due at once: the pacing is measured, not the scheduling.
[dispatch]
immediate = true
frequency_cap_days = 0

[channels.console]
provider = "console"
messages_per_second = $RATE
EOF

delivery_events "$QUEUED" burst >"$work/events.csv"

measure() {
    local instances=$1
    psql -q "$PG" -c "DROP DATABASE IF EXISTS hearback_throughput" -c "CREATE DATABASE hearback_throughput" >&2
    "$HEARBACK" --config "$work/hearback.toml" migrate >&2
    "$HEARBACK" --config "$work/hearback.toml" import "$work/events.csv" >&2
    local started
    started=$(date -u +%s)
    local serving=()
    for n in $(seq 1 "$instances"); do
        "$HEARBACK" --config "$work/hearback.toml" serve --listen "127.0.0.1:$((18180 + n))" &
        serving+=($!)
        pids+=($!)
    done
    # The first seconds take the channel's lease and warm up; measure the WINDOW after them.
    sleep $((WINDOW + 5))
    for pid in "${serving[@]}"; do kill "$pid"; wait "$pid" 2>/dev/null || true; done
    echo "== $instances instance(s), channel at $RATE/s, $QUEUED queued"
    psql -tA "$DB" -F ' ' -c "
        WITH per_second AS (
            SELECT date_trunc('second', sent_at) AS second, count(*) AS sent
            FROM messages WHERE direction = 'outbound' AND sent_at IS NOT NULL
              AND sent_at >= to_timestamp($started + 5) AND sent_at < to_timestamp($started + 5 + $WINDOW)
            GROUP BY 1)
        SELECT 'seconds', count(*), 'sent', sum(sent), 'per second: mean',
               round(sum(sent)::numeric / $WINDOW, 2), 'min', min(sent), 'max', max(sent)
        FROM per_second"
}

measure 1
measure 2
