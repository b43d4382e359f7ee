//! Wrong signatures are compile errors that say what to write instead.
//! (Right signatures are exercised by the example functions, which the
//! end-to-end tests build for wasm32-wasip1 and run through the platform.)

#[test]
fn wrong_signatures_are_rejected_at_compile_time() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
