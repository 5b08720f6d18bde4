#!/usr/bin/env bash
# A morning's imported surveys falling due together (docs/PERFORMANCE.md): QUEUED rows of the
# delivery flow are imported (due two hours on, so each is recorded with its `invitation.open`
# job only), their jobs are then made due now, as the morning would, and one `hearback serve`
# with an unpaced console channel opens them and sends their first questions. Prints how long
# until every first question was sent, on SQLite and on PostgreSQL. Run it inside the delivery
# flow's window (Monday to Saturday, 09:00-19:00 in Paris): outside it, the questions wait for it.
#
#   scripts/opening.sh                  # QUEUED=20000
#
# PostgreSQL: HEARBACK_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test); a
# database `hearback_opening` is dropped and created on that server.
set -euo pipefail
cd "$(dirname "$0")/.."

QUEUED=${QUEUED:-20000}
PG=${HEARBACK_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
PG_DB=${PG%/*}/hearback_opening

cargo build --release --bin hearback >&2
# shellcheck source=scripts/measure_common.sh
source scripts/measure_common.sh  # the working directory is the repository (cd above)

delivery_events "$QUEUED" morning >"$work/events.csv"

# Runs SQL $2 on database URL $1 and prints the single value it answers.
scalar() {
    case "$1" in
        postgres*) psql -tA "$1" -c "$2" ;;
        *) python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])' "${1#sqlite://}" "$2" ;;
    esac
}

measure() {
    local url=$1
    cat >"$work/hearback.toml" <<EOF
[database]
url = "$url"

[log]
level = "warn"

[flows]
dir = "flows"

[dispatch]
frequency_cap_days = 0

[channels.console]
provider = "console"
EOF
    "$HEARBACK" --config "$work/hearback.toml" migrate >&2
    local report
    report=$("$HEARBACK" --config "$work/hearback.toml" import "$work/events.csv")
    echo "$report" >&2
    case "$report" in
        *"\"accepted\":$QUEUED,"*) ;;
        *) echo "the import did not accept all $QUEUED rows: $report" >&2; return 1 ;;
    esac
    local now_ms
    now_ms=$(date +%s%3N)
    case "$url" in
        postgres*) psql -q "$url" -c "UPDATE jobs SET run_at = now() WHERE kind = 'invitation.open'" >&2 ;;
        *) python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); c.commit()' "${url#sqlite://}" "UPDATE jobs SET run_at = $now_ms WHERE kind = 'invitation.open'" ;;
    esac
    local started sent=0
    started=$(date +%s%3N)
    "$HEARBACK" --config "$work/hearback.toml" serve --listen 127.0.0.1:18191 &
    local server=$!
    pids+=("$server")
    local deadline=$(( $(date +%s) + 300 ))
    while [ "$sent" -lt "$QUEUED" ]; do
        sleep 0.2
        sent=$(scalar "$url" "SELECT COUNT(*) FROM messages WHERE direction = 'outbound' AND status = 'sent'")
        if ! kill -0 "$server" 2>/dev/null; then
            echo "the server stopped with $sent of $QUEUED sent" >&2
            return 1
        fi
        if [ "$(date +%s)" -gt "$deadline" ]; then
            echo "only $sent of $QUEUED sent after 5 minutes (outside the flow's window?)" >&2
            return 1
        fi
    done
    local elapsed
    elapsed=$(python3 -c "print(($(date +%s%3N) - $started) / 1000)")
    kill "$server"
    wait "$server" 2>/dev/null || true
    echo "== $url: $QUEUED surveys opened and their first questions sent in ${elapsed} s (server start included)"
}

measure "sqlite://$work/opening.db"
psql -q "$PG" -c "DROP DATABASE IF EXISTS hearback_opening" -c "CREATE DATABASE hearback_opening" >&2
measure "$PG_DB"
