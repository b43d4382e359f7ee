#!/usr/bin/env bash
# `make bench`: engine benchmarks (criterion), then end-to-end runs of
# `nimbus bench` against `nimbus up` on loopback for the WAT add, the Rust JSON
# transform example and the JS add, side by side with the floor (the same
# HTTP -> API -> NATS -> worker round trip, answered without running wasm);
# then a key-value counter (one hot key incremented from every connection,
# and reads of it); then the Rust wasi:http example component served by `wasmtime serve` and
# on a Nimbus function URL, same load generator, at 16 and 1 connections;
# then cold starts (scripts/bench-cold.py: upload to first answer, and 500
# functions called round-robin right after their upload). Writes
# docs/benchmarks.md.
#
# Settings: BENCH_SECONDS (default 10), BENCH_CONCURRENCY (default 16).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
seconds=${BENCH_SECONDS:-10}
concurrency=${BENCH_CONCURRENCY:-16}
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "== engine benchmarks" >&2
cargo bench -p nimbus-engine --bench engine -- --noplot >&2

echo "== building release binaries and the examples" >&2
cargo build --release -p nimbus-cli >&2
(cd examples/functions && cargo build --release --locked >&2)
(cd examples/components && cargo build --release --locked >&2)
wasmtime_cli=$(scripts/install-wasmtime-cli.sh "$root/.tools")
nimbus=$root/target/release/nimbus
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_stack NAME [extra nimbus up flags...] -> sets $url
start_stack() {
    local name=$1; shift
    local port; port=$(free_port)
    RUST_LOG=warn "$nimbus" up --data-dir "$work/$name" --listen "127.0.0.1:$port" \
        --bcrypt-cost 4 "$@" >"$work/$name.log" 2>&1 &
    pids+=($!)
    url="http://127.0.0.1:$port"
    for _ in $(seq 1 200); do
        curl -fsS "$url/healthz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "nimbus up ($name) did not start; log:" >&2
    cat "$work/$name.log" >&2
    exit 1
}

client() { NIMBUS_CONFIG_DIR="$work/config" "$nimbus" "$@"; }

run_bench() { # NAME ID-OR-URL INPUT [CONCURRENCY]
    local c=${4:-$concurrency}
    echo "== $1: ${seconds}s at concurrency $c" >&2
    client bench "$2" --duration "$seconds" --concurrency "$c" --input "$3" --json \
        >"$work/e2e-$1.json"
}

# One user uploads the 500 functions of the cold-start run (quotas: 100
# functions, 512 MiB of logs reserved).
start_stack functions --max-functions-per-user 1000 --log-mb-per-user 100000
client register bench --password benchpassword --url "$url" >/dev/null
client login bench --password benchpassword --url "$url" >/dev/null
add=$(client deploy examples/functions/add.wat --name add)
transform=$(client deploy examples/functions/target/wasm32-wasip1/release/transform.wasm --name transform)
add_js=$(client deploy examples/functions/add.js --name add-js)
order='{"customer":"ada","discount_percent":10,"items":[{"sku":"tea","price_cents":250,"quantity":2},{"sku":"cake","price_cents":400,"quantity":1}]}'
run_bench wat-add "$add" 10
run_bench rust-transform "$transform" "$order"
run_bench js-add "$add_js" 10
# Key-value state (examples/functions/counter): increments of one key from
# every connection at once (the worst case: every write races), and reads.
counter=$(client deploy examples/functions/target/wasm32-wasip1/release/counter.wasm --name counter --kv-store default)
run_bench kv-increment "$counter" '{"op": "hit"}'
run_bench kv-get "$counter" '{"op": "get", "key": "hits"}'

# The same wasi:http component, on a Nimbus function URL and under
# `wasmtime serve` (-Scli: Rust's std imports wasi:cli/environment).
hello=examples/components/target/wasm32-wasip2/release/hello_http.wasm
client deploy "$hello" --name hello --public >/dev/null
wasmtime_port=$(free_port)
"$wasmtime_cli" serve -Scli --addr "127.0.0.1:$wasmtime_port" "$hello" >"$work/wasmtime.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 200); do
    curl -fsS -X POST "http://127.0.0.1:$wasmtime_port/" -d '{"input": 1}' >/dev/null 2>&1 && break
    sleep 0.1
done
for c in "$concurrency" 1; do
    run_bench "component-nimbus-c$c" "/fn/bench/hello" '{"input": 10}' "$c"
    run_bench "component-wasmtime-c$c" "http://127.0.0.1:$wasmtime_port/" '{"input": 10}' "$c"
done

# Cold starts: upload to first answer (JS, a ~1 MB module, the ~22 MB
# Python component), then 500 distinct functions called round-robin right
# after their upload, against the same load on one function.
echo "== cold starts" >&2
python_dir=$work/python
mkdir -p "$python_dir"
componentize=("$(cat "$root/.tools/componentize-py-path")" -d examples/components/python-hello/wit -w wasi:http/proxy@0.2.12)
PYTHONDONTWRITEBYTECODE=1 "${componentize[@]}" bindings "$python_dir" >&2
PYTHONDONTWRITEBYTECODE=1 "${componentize[@]}" componentize -p "$python_dir" \
    -p examples/components/python-hello app -o "$python_dir/app.wasm" >&2
python3 scripts/bench-cold.py "$url" "$work/cold.json" "$work/ids.txt" "$python_dir/app.wasm"
mapfile -t ids <"$work/ids.txt"
client login cold --password coldpassword --url "$url" >/dev/null
echo "== 500 functions round-robin: ${seconds}s at concurrency 8" >&2
client bench "${ids[@]}" --duration "$seconds" --concurrency 8 --input 1 --json >"$work/many-functions.json"
echo "== one function: ${seconds}s at concurrency 8" >&2
client bench "${ids[0]}" --duration "$seconds" --concurrency 8 --input 1 --json >"$work/one-function.json"
echo "== the Python component's first call, by where its artifact comes from" >&2
python3 scripts/bench-first-call.py "$nimbus" "$python_dir/app.wasm" "$work/first-call.json"

start_stack floor --benchmark-floor
client register bench --password benchpassword --url "$url" >/dev/null
client login bench --password benchpassword --url "$url" >/dev/null
floor=$(client deploy examples/functions/add.wat --name floor)
run_bench floor "$floor" 10

# Via a temporary file: the report keeps a section of the current one.
python3 scripts/bench-report.py "$work" > "$work/benchmarks.md"
mv "$work/benchmarks.md" docs/benchmarks.md
echo "wrote docs/benchmarks.md" >&2
