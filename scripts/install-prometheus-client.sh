#!/usr/bin/env bash
# Install the Prometheus project's Python client 0.26.0 (pure Python, no
# dependencies) into the tools dir, and print the directory to put on
# PYTHONPATH. The tests parse /metrics with its OpenMetrics parser: the
# exposition must be what Prometheus itself accepts. Pinned, sha256-checked.
#
# Usage: scripts/install-prometheus-client.sh [TOOLS_DIR]   (default: ./.tools)
set -euo pipefail
. "$(dirname "$0")/pinned-wheel.sh"

tools_dir=${1:-"$(cd "$(dirname "$0")/.." && pwd)/.tools"}
version=0.26.0
wheel_sha256=fa93d06737aa02bacd05794768508bb97d2fbee28cb3bca04eaae92f0ca953d6
target_dir="$tools_dir/prometheus-client-$version"

check() {
    PYTHONPATH="$target_dir" python3 -c \
        'from prometheus_client.openmetrics.parser import text_string_to_metric_families' 2>/dev/null
}

if check; then
    echo "$target_dir"
    exit 0
fi

echo "installing prometheus_client $version into $target_dir" >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
wheel=$(download_pinned_wheel "prometheus_client==$version" "$wheel_sha256" "$work")
rm -rf "$target_dir"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --no-index \
    --target "$target_dir" "$wheel" >&2
check || { echo "installed prometheus_client does not import" >&2; exit 1; }
echo "$target_dir"
