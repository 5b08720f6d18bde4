# Sourced by the measurement scripts (load.sh, throughput.sh, opening.sh, alert_latency.sh,
# webhook_throughput.sh) after their release build: the binaries' paths, a work directory, and
# every process a script lists in `pids` stopped when it exits, however it exits.
# MEASURED_BINARY runs another build of hearback (a copy of an earlier commit's, to compare two
# versions side by side in one hour); the default is the one just built.
HEARBACK=${MEASURED_BINARY:-${CARGO_TARGET_DIR:-target}/release/hearback}
DRIVER=${CARGO_TARGET_DIR:-target}/release/examples/load_driver
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# Waits (up to 10 s) until something answers at URL $1.
wait_for() {
    for _ in $(seq 1 200); do
        curl -s -o /dev/null "$1" && return 0
        sleep 0.05
    done
    echo "nothing answers at $1" >&2
    return 1
}

# Prints a CSV of $1 events of the delivery flow, each for a new number, event ids "$2-<n>".
delivery_events() {
    python3 - "$1" "$2" <<'EOF'
import sys
print("event_id,flow,phone,first_name,store,order_date")
for i in range(int(sys.argv[1])):
    print(f"{sys.argv[2]}-{i},delivery,+336{i:08d},Ana,Lyon 2,12/11")
EOF
}
