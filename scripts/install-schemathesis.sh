#!/usr/bin/env bash
# Install schemathesis 4.32.5 into its own virtualenv in the tools dir and
# print the path of its `schemathesis` command. The tests run it against a
# live platform with the API's own /openapi.json. Every wheel is pinned by
# version and sha256 (scripts/schemathesis-requirements.txt).
#
# Usage: scripts/install-schemathesis.sh [TOOLS_DIR]   (default: ./.tools)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
tools_dir=${1:-"$root/.tools"}
mkdir -p "$tools_dir"
tools_dir=$(cd "$tools_dir" && pwd)
version=4.32.5
venv="$tools_dir/schemathesis-$version"
cli="$venv/bin/schemathesis"

if "$cli" --version 2>/dev/null | grep -q "version $version\$"; then
    echo "$cli"
    exit 0
fi

echo "installing schemathesis $version into $venv" >&2
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
    --only-binary=:all: --require-hashes -r "$root/scripts/schemathesis-requirements.txt" >&2
"$cli" --version 2>/dev/null | grep -q "version $version\$" || {
    echo "installed schemathesis does not run" >&2
    exit 1
}
echo "$cli"
