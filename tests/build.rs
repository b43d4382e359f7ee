//! Builds the Rust example functions (examples/functions, for
//! wasm32-wasip1) so the end-to-end tests run the real artifacts; exports
//! their directory as `NIMBUS_EXAMPLES_WASM_DIR`.

use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let examples = manifest_dir.join("../examples/functions");
    let target_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("examples-target");
    let out = nimbus_guest_build::build(
        &examples,
        &target_dir,
        &[],
        "The examples need `rustup target add wasm32-wasip1` (run `make setup`).",
    );
    println!("cargo:rustc-env=NIMBUS_EXAMPLES_WASM_DIR={}", out.display());
}
