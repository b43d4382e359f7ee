#!/usr/bin/env bash
# Compare two builds of `nimbus` end to end on this machine: the WAT add at
# 1 and 16 connections against each build's `nimbus up`, and the floor
# (`--benchmark-floor`) of the second build. Rounds alternate between the
# builds so that drift of the machine hits both alike; the report gives each
# figure's median over the rounds. The load generator is always the second
# build's `nimbus bench`, so only the servers differ.
#
# Usage: scripts/bench-compare.sh BEFORE_BINARY AFTER_BINARY > report.md
# Settings: BENCH_SECONDS (default 10), BENCH_ROUNDS (default 3),
# BENCH_RUST_LOG (the servers' RUST_LOG, default warn; `info` is what
# `nimbus up` runs with by default, and enables the invocations' log spans).
set -euo pipefail
cd "$(dirname "$0")/.."
before=$(realpath "$1")
after=$(realpath "$2")
seconds=${BENCH_SECONDS:-10}
rounds=${BENCH_ROUNDS:-3}
rust_log=${BENCH_RUST_LOG:-warn}
work=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
client() { NIMBUS_CONFIG_DIR="$work/config" "$after" "$@"; }

# wait_idle PID: until the process has used no CPU for two seconds in a row
# (at most a minute), so that start-up work (preparing JavaScript, compiling
# its interpreter, warming modules) does not overlap the first measurement.
wait_idle() {
    local last idle=0 now
    last=$(ps -o times= -p "$1")
    for _ in $(seq 1 60); do
        sleep 1
        now=$(ps -o times= -p "$1")
        if [ "$now" = "$last" ]; then idle=$((idle + 1)); else idle=0; fi
        [ "$idle" -ge 2 ] && return
        last=$now
    done
}

# run NAME BINARY [extra up flags...]: one stack, the add at 1 and 16 connections.
run() {
    local name=$1 binary=$2; shift 2
    local port; port=$(free_port)
    rm -rf "$work/data"
    RUST_LOG=$rust_log "$binary" up --data-dir "$work/data" --listen "127.0.0.1:$port" \
        --bcrypt-cost 4 "$@" >"$work/$name.log" 2>&1 &
    pid=$!
    local url="http://127.0.0.1:$port"
    for _ in $(seq 1 300); do curl -fsS "$url/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
    client register bench --password benchpassword --url "$url" >/dev/null
    client login bench --password benchpassword --url "$url" >/dev/null
    local id; id=$(client deploy examples/functions/add.wat --name add 2>/dev/null)
    client invoke "$id" 1 >/dev/null
    wait_idle "$pid"
    for c in 1 16; do
        echo "== $name, $c connections" >&2
        client bench "$id" --duration "$seconds" --concurrency "$c" --input 10 --json \
            >"$work/$name-c$c-$round.json"
    done
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=
}

for round in $(seq 1 "$rounds"); do
    run before "$before"
    run after "$after"
    run floor "$after" --benchmark-floor
done

python3 - "$work" "$rounds" <<'PY'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
def med(name, c, key):
    values = []
    for r in range(1, rounds + 1):
        report = json.load(open(f"{work}/{name}-c{c}-{r}.json"))
        assert not report["errors"], report["errors"]
        values.append(report["throughput_rps"] if key == "rps" else report["latency_ms"][key])
    return statistics.median(values)
print("| build | connections | req/s | p50 ms | p90 ms | p99 ms |")
print("|---|---|---|---|---|---|")
for name, label in [("before", "before (previous commit)"), ("after", "after"), ("floor", "floor (after, no wasm)")]:
    for c in (1, 16):
        print(f"| {label} | {c} | {med(name, c, 'rps'):.0f} | {med(name, c, 'p50'):.3f} | {med(name, c, 'p90'):.3f} | {med(name, c, 'p99'):.3f} |")
print()
p50_1 = med("after", 1, "p50") / med("before", 1, "p50")
rps_16 = med("after", 16, "rps") / med("before", 16, "rps")
floor_1 = med("after", 1, "p50") / med("floor", 1, "p50")
floor_16 = med("after", 16, "p50") / med("floor", 16, "p50")
rps_1 = med("after", 1, "rps") / med("before", 1, "rps")
print(f"- p50 at 1 connection, after / before: **{p50_1:.2f}x**")
print(f"- req/s after / before: **{rps_1:.3f}x** at 1 connection, **{rps_16:.3f}x** at 16")
print(f"- p50 after / floor: **{floor_1:.2f}x** at 1 connection, **{floor_16:.2f}x** at 16 (goal <= 1.1x)")
PY
