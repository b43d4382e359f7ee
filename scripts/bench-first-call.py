#!/usr/bin/env python3
"""A big component's first call, by where its artifact comes from (part of `make bench`).

usage: bench-first-call.py NIMBUS COMPONENT.wasm OUT.json

Starts `nimbus up` (NIMBUS_NATS_SERVER names nats-server) with a fresh data
directory per case, uploads the component as a public function and times,
over HTTP on loopback, its first call and a second one:
- "loaded as stored": the defaults, the first call right after the upload
  (workers load an artifact as the upload stores it);
- "object store": warming off and nothing kept on disk (`--warm-modules 0
  --artifact-dir-mb 0`), the first call right after the upload, then after
  each restart of `nimbus up` (NATS included, so the server reads the
  artifact from its files);
- "kept on disk": warming off, the first call after each restart (the
  worker reads the copy it kept in `<data-dir>/worker-artifacts`).
Each restart waits SETTLE seconds (5) for start-up work to end first.
"""

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

nimbus, component_path, out_path = sys.argv[1], sys.argv[2], sys.argv[3]
settle = float(os.environ.get("SETTLE", "5"))
restarts = int(os.environ.get("RESTARTS", "7"))
with open(component_path, "rb") as f:
    component = f.read()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    def __init__(self, flags):
        self.dir = tempfile.mkdtemp(prefix="nimbus-first-call-")
        self.port = free_port()
        self.flags = flags
        self.token = None
        self.process = None

    def start(self):
        log = open(os.path.join(self.dir, "up.log"), "a")
        self.process = subprocess.Popen(
            [nimbus, "up", "--data-dir", os.path.join(self.dir, "data"),
             "--listen", f"127.0.0.1:{self.port}", "--bcrypt-cost", "4", *self.flags],
            stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, RUST_LOG="warn"))
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1)
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit(f"nimbus up did not start; see {self.dir}/up.log")

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)

    def call(self, method, path, body=None, content_type="application/json"):
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method)
        if data is not None:
            request.add_header("content-type", content_type)
        if self.token:
            request.add_header("authorization", "Bearer " + self.token)
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=300) as response:
            answer = response.read()
        return answer, (time.perf_counter() - started) * 1e3

    def deploy(self):
        account = {"username": "cold", "password": "coldpassword"}
        self.call("POST", "/auth/register", account)
        self.token = json.loads(self.call("POST", "/auth/login", account)[0])["token"]
        _, upload_ms = self.call("POST", "/functions?name=py&access=public", component, "application/wasm")
        return upload_ms

    def first_and_second(self):
        calls = []
        for _ in range(2):
            answer, ms = self.call("POST", "/fn/cold/py", {"input": 41})
            if b"42" not in answer:
                raise SystemExit(f"unexpected answer {answer!r}")
            calls.append(ms)
        return calls

    def after_restarts(self):
        firsts, seconds = [], []
        for _ in range(restarts):
            self.stop()
            self.start()
            time.sleep(settle)
            first, second = self.first_and_second()
            firsts.append(first)
            seconds.append(second)
        return {"first_ms": statistics.median(firsts), "all_first_ms": firsts,
                "second_ms": statistics.median(seconds)}

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


report = {"bytes": len(component), "settle_s": settle, "restarts": restarts}
for case, flags in [("loaded_as_stored", []),
                    ("object_store", ["--warm-modules", "0", "--artifact-dir-mb", "0"]),
                    ("kept_on_disk", ["--warm-modules", "0"])]:
    stack = Stack(flags)
    try:
        stack.start()
        upload_ms = stack.deploy()
        first, second = stack.first_and_second()
        entry = {"upload_ms": upload_ms, "after_upload": {"first_ms": first, "second_ms": second}}
        if case != "loaded_as_stored":
            entry["after_restart"] = stack.after_restarts()
        report[case] = entry
        print(f"{case}: {json.dumps(entry)}", file=sys.stderr)
    finally:
        if stack.process and stack.process.poll() is None:
            stack.stop()
        stack.remove()
with open(out_path, "w") as f:
    json.dump(report, f, indent=2)
