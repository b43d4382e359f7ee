//! Builds the QuickJS shim (`shim/`, a guest crate for `wasm32-wasip1`) with
//! an inner cargo in its own target directory, and exports the path of the
//! resulting module as `NIMBUS_JS_SHIM_WASM` for `include_bytes!`.
//!
//! `NIMBUS_JS_SHIM` may point at a prebuilt shim instead (for machines
//! without the wasm C toolchain). Building needs the `wasm32-wasip1` Rust
//! target and Debian's `clang-19 llvm-19 lld-19 wasi-libc
//! libclang-rt-19-dev-wasm32`, which `make setup` installs; the env below
//! stops rquickjs from trying to download a wasi-sdk.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=NIMBUS_JS_SHIM");
    if let Some(prebuilt) = std::env::var_os("NIMBUS_JS_SHIM") {
        let path = PathBuf::from(prebuilt);
        assert!(
            path.is_file(),
            "NIMBUS_JS_SHIM={} is not a file",
            path.display()
        );
        println!("cargo:rustc-env=NIMBUS_JS_SHIM_WASM={}", path.display());
        return;
    }

    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let shim = manifest_dir.join("shim");
    for path in ["src", "Cargo.toml", "Cargo.lock", ".cargo/config.toml"] {
        println!("cargo:rerun-if-changed={}", shim.join(path).display());
    }
    // Its own target dir: sharing the outer build's hangs on the build lock.
    let target_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("shim-target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());

    let mut build = Command::new(cargo);
    build
        .current_dir(&shim)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip1",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("RQUICKJS_SYS_NO_WASI_SDK", "1")
        .env("CC_wasm32_wasip1", "clang-19")
        .env("AR_wasm32_wasip1", "llvm-ar-19")
        .env(
            "CFLAGS_wasm32_wasip1",
            "--sysroot=/usr/lib/wasm32-wasi -isystem /usr/include/wasm32-wasi",
        );
    // Settings of the outer (host) build must not leak into the guest build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        build.env_remove(var);
    }
    for (key, _) in std::env::vars() {
        if key.starts_with("CARGO_PROFILE_") || key.starts_with("CARGO_CFG_") {
            build.env_remove(key);
        }
    }
    let status = build
        .status()
        .expect("cannot run cargo to build the JS shim");
    assert!(
        status.success(),
        "building the QuickJS shim failed; it needs `rustup target add wasm32-wasip1` and \
         `apt-get install clang-19 llvm-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32` \
         (run `make setup`), or NIMBUS_JS_SHIM pointing at a prebuilt shim"
    );
    let wasm = target_dir.join("wasm32-wasip1/release/nimbus-js-shim.wasm");
    println!("cargo:rustc-env=NIMBUS_JS_SHIM_WASM={}", wasm.display());
}
