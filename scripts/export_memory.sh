#!/usr/bin/env bash
# Memory of the responses export (docs/PERFORMANCE.md): a SQLite database is filled with
# completed delivery surveys (three answers each), `hearback serve` streams
# `GET /api/v1/responses` as CSV to curl (into /dev/null after counting its lines), and the
# server's peak resident memory (VmHWM) is read before and after the export. Run for each size
# in SIZES, each on a fresh database and a fresh server.
#
#   scripts/export_memory.sh                          # SIZES="100000 1000000"
#   SIZES=10000 scripts/export_memory.sh
#   CACHE_MIB=8 scripts/export_memory.sh              # database.sqlite_cache_mib (default 64)
#
# Builds the release binary into CARGO_TARGET_DIR (default target), unless HEARBACK names a
# binary to measure.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=${SIZES:-"100000 1000000"}
CACHE_MIB=${CACHE_MIB:-64}
PORT=${PORT:-18190}
TARGET=${CARGO_TARGET_DIR:-target}

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

cat >"$work/hearback.toml" <<EOF
[database]
url = "sqlite://$work/export.db"
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

vmhwm() { awk '/^VmHWM/ { print $2 }' "/proc/$1/status"; }

for n in $SIZES; do
    rm -f "$work"/export.db*
    "$HEARBACK" --config "$work/hearback.toml" migrate >&2
    started=$(date +%s.%N)
    fill "$n"
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
    size=$(du -m "$work/export.db" | cut -f1)
    printf '== %s responses (database %s MB, filled in %.1f s, sqlite_cache_mib %s)\n' \
        "$n" "$size" "$(echo "$filled - $started" | bc)" "$CACHE_MIB"
    printf 'rows %s, %.1f s, %.0f rows/s; server peak RSS (VmHWM) %s kB before the export, %s kB after\n' \
        "$((lines - 1))" "$(echo "$t1 - $t0" | bc)" "$(echo "($lines - 1) / ($t1 - $t0)" | bc -l)" \
        "$before" "$after"
done
