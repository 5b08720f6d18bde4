#!/usr/bin/env bash
# What PostgreSQL alone costs for the rows hearback must write (docs/PERFORMANCE.md, "What the
# targets would take on PostgreSQL"): the rows of a real run are copied aside, removed, and
# written again by PostgreSQL itself with one set-based statement per table, with no client,
# no parsing or planning worth the name, no reads and no round trips: a program that writes the
# same rows under the same schema can hardly cost PostgreSQL less. Prints PostgreSQL's CPU time
# too, read from /proc (run it on the database's machine).
#
#   scripts/write_floor.sh import        # ROWS=200000: an import's contacts, invitations, jobs
#   scripts/write_floor.sh inbound       # CUSTOMERS=3000: the writes of 3 replies per customer
#
# import: `hearback import` of ROWS new events into a fresh database `hearback_floor` (timed,
# for comparison), then the same rows written again three times, in two sessions at once
# (each number's rows in one of them, as the import's two lanes), on both cores.
# inbound: scripts/load.sh on PostgreSQL (timed), then the rows its replies wrote (received and
# sent messages, answers, outbox events, send jobs) inserted again and updated as many times as
# the run updated them (conversations, messages, jobs, outbox), in one session, three times.
#
# PostgreSQL: HEARBACK_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test).
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${1:?usage: scripts/write_floor.sh import|inbound}
PG=${HEARBACK_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}

# Runs the SQL on standard input against database URL $1, printing the sum of its timed
# statements' milliseconds.
timed_sql() {
    psql -q "$1" -v ON_ERROR_STOP=1 | awk '/^Time:/ { ms += $2 } END { printf "%.0f\n", ms }'
}

# CPU time (user and system, in clock ticks) of PostgreSQL's processes on this machine: their
# own, and that of the ended ones their parent collected (a session's backend ends with it).
postgres_cpu_ticks() {
    local total=0 pid
    for pid in $(pgrep -u postgres); do
        # Fields 14 to 17 of /proc/PID/stat (utime, stime, cutime, cstime), counted after the
        # command name's closing bracket.
        total=$((total + $(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 + $14 + $15 }' || echo 0)))
    done
    echo "$total"
}

case "$MODE" in
import)
    ROWS=${ROWS:-200000}
    DB=${PG%/*}/hearback_floor
    cargo build --release --bin hearback >&2
    # shellcheck source=scripts/measure_common.sh
    source scripts/measure_common.sh
    delivery_events "$ROWS" floor >"$work/events.csv"
    cat >"$work/hearback.toml" <<EOF
[database]
url = "$DB"

[log]
level = "warn"

[flows]
dir = "flows"

[channels.console]
provider = "console"
EOF
    psql -q "$PG" -c "DROP DATABASE IF EXISTS hearback_floor" -c "CREATE DATABASE hearback_floor" >&2
    "$HEARBACK" --config "$work/hearback.toml" migrate >&2
    start=$(date +%s.%N)
    "$HEARBACK" --config "$work/hearback.toml" import "$work/events.csv" >/dev/null
    seconds=$(echo "$(date +%s.%N) - $start" | bc)
    printf 'hearback import: %s rows in %.2f s = %.0f rows/s\n' "$ROWS" "$seconds" \
        "$(echo "$ROWS / $seconds" | bc -l)"
    psql -q "$DB" -v ON_ERROR_STOP=1 <<'SQL'
CREATE TABLE floor_contacts AS SELECT *, hashtext(phone) & 1 AS lane FROM contacts;
CREATE TABLE floor_invitations AS
    SELECT i.*, c.lane FROM invitations i JOIN floor_contacts c ON c.id = i.contact_id;
CREATE TABLE floor_jobs AS
    SELECT j.*, i.lane FROM jobs j JOIN floor_invitations i ON split_part(j.unique_key, ':', 2) = i.id;
SQL
    for run in 1 2 3; do
        psql -q "$DB" -c "TRUNCATE import_rejections, imports, jobs, invitations, contacts CASCADE" \
            -c "CHECKPOINT" 2>/dev/null
        cpu_before=$(postgres_cpu_ticks)
        start=$(date +%s.%N)
        lanes=()
        for lane in 0 1; do
            psql -q "$DB" -v ON_ERROR_STOP=1 -v lane=$lane <<'SQL' &
BEGIN;
INSERT INTO contacts SELECT id, phone, locale, time_zone, number_status, opted_out_at,
    created_at, updated_at, erased_at FROM floor_contacts WHERE lane = :lane;
INSERT INTO invitations SELECT id, source, event_id, payload_hash, flow_id, contact_id, unit_id,
    channel, locale, variables, event_at, status, status_reason, send_at, created_at, updated_at
    FROM floor_invitations WHERE lane = :lane ON CONFLICT (source, event_id) DO NOTHING;
INSERT INTO jobs (kind, payload, unique_key, state, run_at, attempts, max_attempts, created_at,
    updated_at) SELECT kind, payload, unique_key, state, run_at, attempts, max_attempts,
    created_at, updated_at FROM floor_jobs WHERE lane = :lane;
COMMIT;
SQL
            lanes+=($!)
        done
        for pid in "${lanes[@]}"; do wait "$pid"; done
        seconds=$(echo "$(date +%s.%N) - $start" | bc)
        cpu=$(echo "($(postgres_cpu_ticks) - $cpu_before) / $(getconf CLK_TCK)" | bc -l)
        written=$(psql -tA "$DB" -c "SELECT (SELECT count(*) FROM invitations) + (SELECT count(*) FROM jobs)")
        if [ "$written" -ne $((2 * ROWS)) ]; then
            echo "run $run wrote $written invitations and jobs, not $((2 * ROWS))" >&2
            exit 1
        fi
        printf 'PostgreSQL alone, two sessions, run %s: %.2f s = %.0f rows/s; %.2f s of PostgreSQL CPU = %.1f µs per row\n' \
            "$run" "$seconds" "$(echo "$ROWS / $seconds" | bc -l)" "$cpu" "$(echo "$cpu * 1000000 / $ROWS" | bc -l)"
    done
    ;;
inbound)
    CUSTOMERS=${CUSTOMERS:-3000}
    DB=${PG%/*}/hearback_load
    RUNS=hearback-postgres CUSTOMERS=$CUSTOMERS scripts/load.sh
    # The replies' rows: everything written from the first reply on.
    psql -q "$DB" -v ON_ERROR_STOP=1 <<'SQL'
CREATE TABLE floor_since AS SELECT min(created_at) AS at FROM messages WHERE direction = 'inbound';
CREATE TABLE floor_messages AS SELECT * FROM messages WHERE created_at >= (SELECT at FROM floor_since);
CREATE TABLE floor_answers AS SELECT * FROM answers;
CREATE TABLE floor_outbox AS SELECT * FROM outbox WHERE occurred_at >= (SELECT at FROM floor_since);
CREATE TABLE floor_jobs AS SELECT * FROM jobs WHERE created_at >= (SELECT at FROM floor_since);
SQL
    replies=$(psql -tA "$DB" -c "SELECT count(*) FROM floor_messages WHERE direction = 'inbound'")
    updates=$((replies / $(psql -tA "$DB" -c "SELECT count(*) FROM conversations")))
    for run in 1 2 3; do
        psql -q "$DB" -v ON_ERROR_STOP=1 <<'SQL'
SET client_min_messages = warning;
BEGIN;
DELETE FROM message_statuses WHERE message_id IN (SELECT id FROM floor_messages);
DELETE FROM answers;
DELETE FROM messages WHERE id IN (SELECT id FROM floor_messages);
DELETE FROM outbox WHERE seq IN (SELECT seq FROM floor_outbox);
DELETE FROM jobs WHERE id IN (SELECT id FROM floor_jobs);
COMMIT;
VACUUM messages, answers, outbox, jobs, conversations;
CHECKPOINT;
SQL
        cpu_before=$(postgres_cpu_ticks)
        ms=$(
            {
                echo '\timing on'
                echo 'BEGIN;'
                echo 'INSERT INTO messages SELECT * FROM floor_messages;'
                echo 'INSERT INTO answers SELECT * FROM floor_answers;'
                echo 'INSERT INTO outbox OVERRIDING SYSTEM VALUE SELECT * FROM floor_outbox;'
                echo 'INSERT INTO jobs OVERRIDING SYSTEM VALUE SELECT * FROM floor_jobs;'
                # Each reply moved its conversation on once.
                for _ in $(seq 1 "$updates"); do
                    echo 'UPDATE conversations SET state = state, version = version + 1, updated_at = now();'
                done
                # Each text sent was marked sending, then sent; each send job claimed, then done;
                # each event handed to the webhooks.
                echo "UPDATE messages SET status = 'sending', updated_at = now() WHERE id IN (SELECT id FROM floor_messages WHERE direction = 'outbound');"
                echo "UPDATE messages SET status = 'sent', sent_at = now(), updated_at = now() WHERE id IN (SELECT id FROM floor_messages WHERE direction = 'outbound');"
                echo "UPDATE jobs SET state = 'running', lease_owner = 'floor', lease_expires_at = now(), attempts = 1 WHERE id IN (SELECT id FROM floor_jobs);"
                echo "UPDATE jobs SET state = 'succeeded', finished_at = now(), lease_owner = NULL, lease_expires_at = NULL WHERE id IN (SELECT id FROM floor_jobs);"
                echo 'UPDATE outbox SET dispatched = true WHERE seq IN (SELECT seq FROM floor_outbox);'
                echo 'COMMIT;'
            } | timed_sql "$DB"
        )
        cpu=$(echo "($(postgres_cpu_ticks) - $cpu_before) / $(getconf CLK_TCK)" | bc -l)
        printf 'PostgreSQL alone, one session, run %s: %s ms for %s replies = %.0f µs per reply; %.0f µs of PostgreSQL CPU per reply\n' \
            "$run" "$ms" "$replies" "$(echo "$ms * 1000 / $replies" | bc -l)" "$(echo "$cpu * 1000000 / $replies" | bc -l)"
    done
    ;;
*)
    echo "usage: scripts/write_floor.sh import|inbound" >&2
    exit 2
    ;;
esac
