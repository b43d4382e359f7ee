#!/usr/bin/env bash
# Install the Debian packages given as arguments unless they are all present.
# Uses sudo when not root.
set -euo pipefail
missing=()
for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${missing[*]}" >&2
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get install -y -q "${missing[@]}" >&2 || {
    "${sudo_cmd[@]}" apt-get update -q >&2
    "${sudo_cmd[@]}" apt-get install -y -q "${missing[@]}" >&2
}
