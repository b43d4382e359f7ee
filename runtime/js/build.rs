//! Builds the QuickJS shim (`shim/`, a guest crate for `wasm32-wasip1`) and
//! exports the path of the module as `NIMBUS_JS_SHIM_WASM` for `include_bytes!`.
//!
//! `NIMBUS_JS_SHIM` may point at a prebuilt shim instead (for machines
//! without the wasm C toolchain). Building needs the `wasm32-wasip1` Rust
//! target and Debian's `clang-19 llvm-19 lld-19 wasi-libc
//! libclang-rt-19-dev-wasm32`, which `make setup` installs; the env below
//! stops rquickjs from trying to download a wasi-sdk.

use std::path::PathBuf;

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
    let shim = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("shim");
    let target_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("shim-target");
    let out = nimbus_guest_build::build(
        &shim,
        &target_dir,
        &[
            ("RQUICKJS_SYS_NO_WASI_SDK", "1"),
            ("CC_wasm32_wasip1", "clang-19"),
            ("AR_wasm32_wasip1", "llvm-ar-19"),
            (
                "CFLAGS_wasm32_wasip1",
                "--sysroot=/usr/lib/wasm32-wasi -isystem /usr/include/wasm32-wasi",
            ),
        ],
        "The shim needs `rustup target add wasm32-wasip1` and `apt-get install clang-19 llvm-19 \
         lld-19 wasi-libc libclang-rt-19-dev-wasm32` (run `make setup`), or NIMBUS_JS_SHIM \
         pointing at a prebuilt shim.",
    );
    println!(
        "cargo:rustc-env=NIMBUS_JS_SHIM_WASM={}",
        out.join("nimbus-js-shim.wasm").display()
    );
}
