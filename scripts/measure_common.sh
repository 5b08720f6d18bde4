# Sourced by the measurement scripts (load.sh, throughput.sh, alert_latency.sh,
# webhook_throughput.sh) after their release build: the binaries' paths, a work directory, and
# every process a script lists in `pids` stopped when it exits, however it exits.
HEARBACK=${CARGO_TARGET_DIR:-target}/release/hearback
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
