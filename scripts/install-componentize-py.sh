#!/usr/bin/env bash
# Install componentize-py 0.25.1 (builds Python wasi:http components; its
# wheel carries its own native binary) into the tools dir, and print the path
# of its launcher. The wheel is pinned and sha256-checked. The end-to-end
# tests build examples/components/python-hello with it.
#
# Usage: scripts/install-componentize-py.sh [TOOLS_DIR]   (default: ./.tools)
set -euo pipefail
. "$(dirname "$0")/pinned-wheel.sh"

tools_dir=${1:-"$(cd "$(dirname "$0")/.." && pwd)/.tools"}
version=0.25.1
wheel_sha256=8623cd8cab8453cb0cd8bf03f3c7103420d06f2f3d360186a280a70a1ca5e89f
target_dir="$tools_dir/componentize-py-$version"
launcher="$tools_dir/bin/componentize-py"

if [ -x "$launcher" ] && "$launcher" --version 2>/dev/null | grep -q "$version"; then
    echo "$launcher"
    exit 0
fi

echo "installing componentize-py $version into $target_dir" >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
wheel=$(download_pinned_wheel "componentize-py==$version" "$wheel_sha256" "$work")
rm -rf "$target_dir"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --no-index \
    --target "$target_dir" "$wheel" >&2
mkdir -p "$tools_dir/bin"
cat > "$launcher" <<SH
#!/usr/bin/env bash
PYTHONPATH="$target_dir\${PYTHONPATH:+:\$PYTHONPATH}" exec python3 -c 'import sys; from componentize_py import script; sys.argv[0] = "componentize-py"; sys.exit(script())' "\$@"
SH
chmod 0755 "$launcher"
"$launcher" --version >&2 || { echo "installed componentize-py does not run" >&2; exit 1; }
echo "$launcher"
