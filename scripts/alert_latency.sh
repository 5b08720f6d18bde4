#!/usr/bin/env bash
# Time to alert (docs/PERFORMANCE.md): signed Twilio webhooks carrying each customer's score at a
# fixed rate, a share of them detractors; for each detractor, the webhook's answer (it comes
# after the commit that holds alert.raised) and the case's e-mail reaching an SMTP server. The
# server runs on core 0, the driver (with the SMTP server and the Twilio stand-in) on core 1.
#
#   scripts/alert_latency.sh                         # SQLite, 5 000 customers, 500 replies/s, 20 % detractors
#   DATABASE=postgres scripts/alert_latency.sh
#   CUSTOMERS=10000 RATE=500 DETRACTORS=20 scripts/alert_latency.sh
set -euo pipefail
cd "$(dirname "$0")/.."

CUSTOMERS=${CUSTOMERS:-5000}
RATE=${RATE:-500}
DETRACTORS=${DETRACTORS:-20}
DATABASE=${DATABASE:-sqlite}
PG=${HEARBACK_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
PORT=18080
STAND_IN=127.0.0.1:18099
SMTP=127.0.0.1:18025

cargo build --release --bin hearback --example load_driver >&2
# shellcheck source=scripts/measure_common.sh
source scripts/measure_common.sh  # the working directory is the repository (cd above)

if [ "$DATABASE" = postgres ]; then
    psql -q "$PG" -c "DROP DATABASE IF EXISTS hearback_alerts" -c "CREATE DATABASE hearback_alerts" >&2
    export HEARBACK_DATABASE_URL=${PG%/*}/hearback_alerts
else
    export HEARBACK_DATABASE_URL=sqlite://$work/hearback.db
fi

# Every detractor's case is e-mailed to one address, whatever its unit.
cat >"$work/alerts.yaml" <<'RULES'
rules:
  - id: detractor
    when:
      - answer: nps <= 6
    case:
      priority: high
      sla: 4h
    notify: [alerts@load.example]
RULES

cat >"$work/hearback.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"

[log]
level = "warn"

[flows]
dir = "$PWD/flows"
alerts = "$work/alerts.yaml"

[dispatch]
immediate = true

[email]
smtp_url = "smtp://$SMTP"
from = "hearback <alerts@example.com>"

[channels.twilio]
provider = "twilio"
account_sid = "AC00000000000000000000000000000000"
auth_token = "load-test-token"
senders = ["+33757000000"]
api_base_url = "http://$STAND_IN"
TOML

taskset -c 1 "$DRIVER" stand-in --listen "$STAND_IN" &
pids+=($!)
"$HEARBACK" --config "$work/hearback.toml" migrate >&2
key=$("$HEARBACK" --config "$work/hearback.toml" api-keys create --name load 2>/dev/null)
taskset -c 0 "$HEARBACK" --config "$work/hearback.toml" serve &
pids+=($!)
wait_for "http://127.0.0.1:$PORT/healthz"
taskset -c 1 "$DRIVER" alerts --url "http://127.0.0.1:$PORT" --api-key "$key" \
    --customers "$CUSTOMERS" --rate "$RATE" --detractors-percent "$DETRACTORS" \
    --smtp-listen "$SMTP" --verify-database "$HEARBACK_DATABASE_URL"
