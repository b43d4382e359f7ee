//! Builds the Rust example functions (examples/functions, for
//! wasm32-wasip1), the test components (tests/guests) and the Rust example
//! components (examples/components, both for wasm32-wasip2) so the
//! end-to-end tests run the real artifacts; exports their directories as
//! `NIMBUS_EXAMPLES_WASM_DIR`, `NIMBUS_COMPONENTS_WASM_DIR` and
//! `NIMBUS_EXAMPLE_COMPONENTS_WASM_DIR`. (The Python example is built by
//! its test, with componentize-py.)

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
    let components = nimbus_guest_build::build_for(
        nimbus_guest_build::COMPONENT_TARGET,
        &manifest_dir.join("guests"),
        &PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("guests-target"),
        &[],
        "The test components need `rustup target add wasm32-wasip2` (run `make setup`).",
    );
    println!(
        "cargo:rustc-env=NIMBUS_COMPONENTS_WASM_DIR={}",
        components.display()
    );
    let example_components = nimbus_guest_build::build_for(
        nimbus_guest_build::COMPONENT_TARGET,
        &manifest_dir.join("../examples/components"),
        &PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("example-components-target"),
        &[],
        "The example components need `rustup target add wasm32-wasip2` (run `make setup`).",
    );
    println!(
        "cargo:rustc-env=NIMBUS_EXAMPLE_COMPONENTS_WASM_DIR={}",
        example_components.display()
    );
}
