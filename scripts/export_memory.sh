#!/usr/bin/env bash
# Memory of the responses export (docs/PERFORMANCE.md): a database is filled with completed
# delivery surveys (three answers each), `hearback serve` streams
# `GET /api/v1/responses` as CSV to curl (into /dev/null after counting its lines), and the
# server's peak resident memory (VmHWM) is read before and after the export. Run for each size
# in SIZES, each on a fresh database and a fresh server.
#
#   scripts/export_memory.sh                          # SIZES="100000 1000000"
#   SIZES=10000 scripts/export_memory.sh
#   CACHE_MIB=8 scripts/export_memory.sh              # database.sqlite_cache_mib (default 64)
#   DATABASE=postgres scripts/export_memory.sh        # PostgreSQL: a fresh database
#                                                     # hearback_export beside
#                                                     # HEARBACK_TEST_POSTGRES_URL's
#
# Builds the release binary into CARGO_TARGET_DIR (default target), unless HEARBACK names a
# binary to measure.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=${SIZES:-"100000 1000000"}
CACHE_MIB=${CACHE_MIB:-64}
PORT=${PORT:-18190}
TARGET=${CARGO_TARGET_DIR:-target}
DATABASE=${DATABASE:-sqlite}
PG=${HEARBACK_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
PG_EXPORT=${PG%/*}/hearback_export

if [ -z "${HEARBACK:-}" ]; then
    cargo build --release --bin hearback >&2
    HEARBACK=$TARGET/release/hearback
fi
work=$(mktemp -d)
server=
cleanup() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

case "$DATABASE" in
sqlite) url="sqlite://$work/export.db" ;;
postgres) url=$PG_EXPORT ;;
*)
    echo "DATABASE is sqlite or postgres, not $DATABASE" >&2
    exit 2
    ;;
esac

cat >"$work/hearback.toml" <<EOF
[database]
url = "$url"
sqlite_cache_mib = $CACHE_MIB

[log]
level = "warn"

[flows]
dir = "flows"
EOF

# N completed surveys of the delivery flow, one contact each, started a minute apart from
# 2026-01-01: a score, a text answer, a yes/no — what `answer_to_the_end` leaves in the tests.
fill() {
    local n=$1
    sqlite3 "$work/export.db" >/dev/null <<EOF
PRAGMA journal_mode = WAL;
PRAGMA synchronous = OFF;
BEGIN;
CREATE TEMP TABLE seq AS
    WITH RECURSIVE s (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < $n)
    SELECT n, 1767225600000 + n * 60000 AS at FROM s;
INSERT INTO contacts (id, phone, created_at, updated_at)
    SELECT printf('ct%09d', n), printf('+336%08d', n), at, at FROM seq;
INSERT INTO invitations (id, source, event_id, payload_hash, flow_id, contact_id, channel, locale,
                         variables, status, send_at, created_at, updated_at)
    SELECT printf('in%09d', n), 'bench', printf('order-%d', n), zeroblob(32), 'delivery',
           printf('ct%09d', n), 'console', 'fr',
           '{"first_name":"Ana","store":"Lyon 2","order_date":"12/11"}', 'sent', at, at, at
    FROM seq;
INSERT INTO conversations (id, invitation_id, contact_id, channel, sender, flow_id, state, status,
                           version, started_at, updated_at, closed_at)
    SELECT printf('cv%09d', n), printf('in%09d', n), printf('ct%09d', n), 'console', 'console',
           'delivery', '{}', 'completed', 4, at, at + 180000, at + 180000
    FROM seq;
INSERT INTO answers (id, conversation_id, question_id, kind, score, choice, text, answered_at)
    SELECT printf('a1%09d', n), printf('cv%09d', n), 'score', 'nps', n % 11, NULL, NULL, at + 60000
    FROM seq;
INSERT INTO answers (id, conversation_id, question_id, kind, score, choice, text, answered_at)
    SELECT printf('a2%09d', n), printf('cv%09d', n),
           CASE WHEN n % 11 <= 6 THEN 'why_detractor' WHEN n % 11 <= 8 THEN 'why_passive'
                ELSE 'why_promoter' END,
           'text', NULL, NULL, 'Livreur aimable mais colis en retard de deux jours', at + 120000
    FROM seq;
INSERT INTO answers (id, conversation_id, question_id, kind, score, choice, text, answered_at)
    SELECT printf('a3%09d', n), printf('cv%09d', n), 'consent', 'yesno', NULL,
           CASE WHEN n % 2 = 0 THEN 'yes' ELSE 'no' END, NULL, at + 180000
    FROM seq;
COMMIT;
EOF
}

# The same surveys on PostgreSQL.
fill_postgres() {
    local n=$1
    psql -q "$PG_EXPORT" -v ON_ERROR_STOP=1 >/dev/null <<EOF
BEGIN;
CREATE TEMP TABLE seq AS
    SELECT n, timestamptz '2026-01-01 00:00:00+00' + n * interval '1 minute' AS at
    FROM generate_series(1, $n) AS n;
INSERT INTO contacts (id, phone, created_at, updated_at)
    SELECT format('ct%s', lpad(n::text, 9, '0')), format('+336%s', lpad(n::text, 8, '0')), at, at
    FROM seq;
INSERT INTO invitations (id, source, event_id, payload_hash, flow_id, contact_id, channel, locale,
                         variables, status, send_at, created_at, updated_at)
    SELECT format('in%s', lpad(n::text, 9, '0')), 'bench', format('order-%s', n),
           decode(repeat('00', 32), 'hex'), 'delivery', format('ct%s', lpad(n::text, 9, '0')),
           'console', 'fr', '{"first_name":"Ana","store":"Lyon 2","order_date":"12/11"}',
           'sent', at, at, at
    FROM seq;
INSERT INTO conversations (id, invitation_id, contact_id, channel, sender, flow_id, state, status,
                           version, started_at, updated_at, closed_at)
    SELECT format('cv%s', lpad(n::text, 9, '0')), format('in%s', lpad(n::text, 9, '0')),
           format('ct%s', lpad(n::text, 9, '0')), 'console', 'console', 'delivery', '{}',
           'completed', 4, at, at + interval '3 minutes', at + interval '3 minutes'
    FROM seq;
INSERT INTO answers (id, conversation_id, question_id, kind, score, choice, text, answered_at)
    SELECT format('a1%s', lpad(n::text, 9, '0')), format('cv%s', lpad(n::text, 9, '0')), 'score',
           'nps', n % 11, NULL, NULL, at + interval '1 minute'
    FROM seq;
INSERT INTO answers (id, conversation_id, question_id, kind, score, choice, text, answered_at)
    SELECT format('a2%s', lpad(n::text, 9, '0')), format('cv%s', lpad(n::text, 9, '0')),
           CASE WHEN n % 11 <= 6 THEN 'why_detractor' WHEN n % 11 <= 8 THEN 'why_passive'
                ELSE 'why_promoter' END,
           'text', NULL, NULL, 'Livreur aimable mais colis en retard de deux jours',
           at + interval '2 minutes'
    FROM seq;
INSERT INTO answers (id, conversation_id, question_id, kind, score, choice, text, answered_at)
    SELECT format('a3%s', lpad(n::text, 9, '0')), format('cv%s', lpad(n::text, 9, '0')),
           'consent', 'yesno', NULL, CASE WHEN n % 2 = 0 THEN 'yes' ELSE 'no' END, NULL,
           at + interval '3 minutes'
    FROM seq;
COMMIT;
ANALYZE;
EOF
}

vmhwm() { awk '/^VmHWM/ { print $2 }' "/proc/$1/status"; }

for n in $SIZES; do
    if [ "$DATABASE" = postgres ]; then
        psql -q "$PG" -c "DROP DATABASE IF EXISTS hearback_export" -c "CREATE DATABASE hearback_export" >&2
    else
        rm -f "$work"/export.db*
    fi
    "$HEARBACK" --config "$work/hearback.toml" migrate >&2
    started=$(date +%s.%N)
    if [ "$DATABASE" = postgres ]; then fill_postgres "$n"; else fill "$n"; fi
    filled=$(date +%s.%N)
    key=$("$HEARBACK" --config "$work/hearback.toml" api-keys create --name bench 2>/dev/null)
    "$HEARBACK" --config "$work/hearback.toml" serve --listen "127.0.0.1:$PORT" &
    server=$!
    for _ in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break
        sleep 0.1
    done
    before=$(vmhwm "$server")
    t0=$(date +%s.%N)
    lines=$(curl -sf -H "Authorization: Bearer $key" -H "Accept: text/csv" \
        "http://127.0.0.1:$PORT/api/v1/responses" | wc -l)
    t1=$(date +%s.%N)
    after=$(vmhwm "$server")
    kill "$server"
    wait "$server" 2>/dev/null || true
    server=
    if [ "$DATABASE" = postgres ]; then
        size=$(($(psql -tA "$PG_EXPORT" -c "SELECT pg_database_size(current_database())") / 1048576))
    else
        size=$(du -m "$work/export.db" | cut -f1)
    fi
    printf '== %s responses on %s (database %s MB, filled in %.1f s, sqlite_cache_mib %s)\n' \
        "$n" "$DATABASE" "$size" "$(echo "$filled - $started" | bc)" "$CACHE_MIB"
    printf 'rows %s, %.1f s, %.0f rows/s; server peak RSS (VmHWM) %s kB before the export, %s kB after\n' \
        "$((lines - 1))" "$(echo "$t1 - $t0" | bc)" "$(echo "($lines - 1) / ($t1 - $t0)" | bc -l)" \
        "$before" "$after"
done
