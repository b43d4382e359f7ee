#!/usr/bin/env python3
"""Cold starts, measured against a running `nimbus up` (part of `make bench`).

usage: bench-cold.py URL OUT.json IDS.txt [PYTHON_COMPONENT.wasm]

Times, over HTTP on loopback, what a function costs from upload to first
answer:
- JavaScript: upload (source -> bytecode) and the first call right after it,
  then a warm call, for 20 distinct functions;
- a ~1 MB module (generated, real code): its upload (Cranelift compiles it
  once, at upload) and its first call on the worker, which has never run it
  and loads the sealed artifact the upload stored;
- the ~22 MB componentize-py component, the same way (when given);
and deploys 500 distinct functions (written to IDS.txt, one id per line)
for the round-robin run `make bench` makes right after.
"""

import json
import statistics
import sys
import time
import urllib.error
import urllib.request

base, out_path, ids_path = sys.argv[1], sys.argv[2], sys.argv[3]
component_path = sys.argv[4] if len(sys.argv) > 4 else None
token = None


def call(method, path, body=None, content_type="application/json"):
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        request.add_header("content-type", content_type)
    if token:
        request.add_header("authorization", "Bearer " + token)
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            answer = json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        sys.exit(f"{method} {path}: {error.code} {error.read()[:500]!r}")
    return answer, (time.perf_counter() - started) * 1000


def summary(values):
    values = sorted(values)
    return {
        "median": statistics.median(values),
        "p90": values[min(len(values) - 1, int(len(values) * 0.9))],
        "max": values[-1],
        "n": len(values),
    }


def big_module_wat(n, functions=1300):
    """About 1 MB of wasm: functions of arithmetic over a few locals."""
    parts = ["(module\n"]
    for f in range(functions):
        parts.append(
            f"(func $f{f} (param i32) (result i32) (local i32 i32)\n"
            f"local.get 0 i32.const {n * 100000 + f} i32.add local.set 1\n"
        )
        for k in range(40):
            parts.append(
                f"local.get 1 i32.const {k} i32.mul local.get 2 i32.xor local.set 2 "
                f"local.get 2 local.get 1 i32.add i32.const {k % 31} i32.rotl local.set 1\n"
            )
        parts.append("local.get 1 local.get 2 i32.add)\n")
    parts.append('(func (export "handle") (param i32) (result i32) local.get 0 call $f0 drop local.get 0 i32.const 1 i32.add))')
    return "".join(parts)


def first_call(created, path_or_id, payload, expect):
    """Time the first call of a just-uploaded function, then a warm one."""
    times = []
    for _ in range(2):
        if isinstance(path_or_id, int):
            answer, ms = call("POST", f"/functions/{path_or_id}/execute", {"input": payload})
            result = answer["result"]
        else:
            answer, ms = call("POST", path_or_id, payload)
            result = answer.get("result")
        assert result == expect, (created, answer)
        times.append(ms)
    return times


call("POST", "/auth/register", {"username": "cold", "password": "coldpassword"})
token = call("POST", "/auth/login", {"username": "cold", "password": "coldpassword"})[0]["token"]
report = {}

js_upload, js_first, js_warm = [], [], []
for i in range(20):
    created, ms = call("POST", "/functions", {"code": f"return input + {i};", "runtime": "js"})
    js_upload.append(ms)
    first, warm = first_call(created, created["id"], 1, 1 + i)
    js_first.append(first)
    js_warm.append(warm)
report["js"] = {
    "upload_ms": summary(js_upload),
    "first_call_ms": summary(js_first),
    "warm_call_ms": summary(js_warm),
    "module_bytes": created["size"],
}

big = []
for n in range(2):
    created, upload_ms = call("POST", "/functions", {"code": big_module_wat(n)})
    first, warm = first_call(created, created["id"], 41, 42)
    big.append({"bytes": created["size"], "upload_ms": upload_ms, "first_call_ms": first, "warm_call_ms": warm})
report["module_1mb"] = big

if component_path:
    with open(component_path, "rb") as f:
        wasm = f.read()
    created, upload_ms = call("POST", "/functions?name=py-cold&access=public", wasm, "application/wasm")
    first, warm = first_call(created, "/fn/cold/py-cold", {"input": 41}, 42)
    report["component_python"] = {"bytes": created["size"], "upload_ms": upload_ms, "first_call_ms": first, "warm_call_ms": warm}

ids = []
for n in range(500):
    wat = f'(module (func (export "handle") (param i32) (result i32) local.get 0 i32.const {n} i32.add))'
    ids.append(call("POST", "/functions", {"code": wat})[0]["id"])
with open(ids_path, "w") as f:
    f.write("\n".join(map(str, ids)) + "\n")

with open(out_path, "w") as f:
    json.dump(report, f, indent=2)
print(json.dumps(report, indent=2), file=sys.stderr)
