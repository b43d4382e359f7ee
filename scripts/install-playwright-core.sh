#!/usr/bin/env bash
# Install playwright-core 1.64.1 (the browser driver only: no browser
# download, no install scripts) from the npm registry into the tools dir,
# and print the package's directory, for `require()`. The browser test of
# the web console (tests/browser/console.cjs) drives Debian's `chromium`
# with it; the Makefile installs that package, not this script.
#
# Usage: scripts/install-playwright-core.sh [TOOLS_DIR]   (default: ./.tools)
# Prints only the absolute package directory on stdout; diagnostics go to
# stderr.
set -euo pipefail

tools_dir=${1:-"$(cd "$(dirname "$0")/.." && pwd)/.tools"}
version=1.64.1
mkdir -p "$tools_dir"
prefix="$(cd "$tools_dir" && pwd)/playwright"
package_dir="$prefix/node_modules/playwright-core"

# The version installed there, or nothing.
installed() {
    node -e 'process.stdout.write(require(process.argv[1]).version)' \
        "$package_dir/package.json" 2>/dev/null || true
}

if [ "$(installed)" = "$version" ]; then
    echo "$package_dir"
    exit 0
fi

# Node.js and npm from Debian when the machine has neither (a machine with
# NodeSource's nodejs has npm already; Debian's npm would conflict with it).
command -v npm >/dev/null || "$(dirname "$0")/install-apt-packages.sh" nodejs npm
command -v npm >/dev/null || { echo "npm is missing (Debian packages: nodejs npm)" >&2; exit 1; }
echo "installing playwright-core $version into $prefix" >&2
mkdir -p "$prefix"
# --ignore-scripts: nothing runs at install (and no browser is downloaded);
# --save-exact keeps the pin in the prefix's own package.json.
npm install --prefix "$prefix" --no-audit --no-fund --ignore-scripts \
    --save-exact --loglevel=error "playwright-core@$version" >&2
[ "$(installed)" = "$version" ] || {
    echo "playwright-core $version did not install in $package_dir" >&2
    exit 1
}
echo "$package_dir"
