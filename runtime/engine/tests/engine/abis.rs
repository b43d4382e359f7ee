//! The two ABIs (WASI command, scalar `handle`), the output and input rules,
//! and fuel.

use super::*;

#[tokio::test]
async fn seed_add_answers_eleven_and_reports_fuel() {
    let engine = engine();
    let invocation = run(&engine, ADD, "10", &Limits::DEFAULT).await;
    assert_eq!(ok_text(&invocation), "11");
    assert!(invocation.fuel_consumed > 0);
}

#[tokio::test]
async fn scalar_abi_takes_arrays_and_rejects_wrong_input() {
    let engine = engine();
    let sum2 = r#"(module (func (export "handle") (param i64 f64) (result f64 i64)
        (f64.add (f64.convert_i64_s (local.get 0)) (local.get 1))
        (local.get 0)))"#;
    let invocation = run(&engine, sum2, "[2, 0.5]", &Limits::DEFAULT).await;
    assert_eq!(ok_text(&invocation), "[2.5,2]");

    for bad in [r#""ten""#, "[1, 2]", "1.5", "not json", "4294967296"] {
        let invocation = run(&engine, ADD, bad, &Limits::DEFAULT).await;
        assert_eq!(
            failure_kind(&invocation),
            FunctionErrorKind::InvalidInput,
            "{bad}"
        );
        assert_eq!(invocation.fuel_consumed, 0, "refused before running");
    }
}

#[tokio::test]
async fn wasi_echo_round_trips_json() {
    let engine = engine();
    let input = r#"{"name":"nimbus","tags":["wasm","ünïcode ✓"],"n":[1,2.5,null,true]}"#;
    let invocation = run(&engine, ECHO, input, &Limits::DEFAULT).await;
    assert_eq!(ok_text(&invocation), input);
    let (module, _) = engine.compile(ECHO.as_bytes()).unwrap();
    assert_eq!(module.abi(), &Abi::Command);
}

#[tokio::test]
async fn unreachable_traps() {
    let engine = engine();
    let invocation = run(&engine, UNREACHABLE, "0", &Limits::DEFAULT).await;
    assert_eq!(failure_kind(&invocation), FunctionErrorKind::Trap);
    let message = &invocation.result.as_ref().unwrap_err().message;
    assert!(message.contains("unreachable"), "{message}");
    assert_still_serves(&engine).await;
}

#[tokio::test]
async fn nonzero_exit_is_an_exit_error_carrying_stderr() {
    let engine = engine();
    let invocation = run(&engine, EXIT_3, "null", &Limits::DEFAULT).await;
    assert_eq!(failure_kind(&invocation), FunctionErrorKind::Exit);
    let message = &invocation.result.as_ref().unwrap_err().message;
    assert!(
        message.contains("code 3") && message.contains("boom: bad input"),
        "{message}"
    );
    assert_eq!(invocation.logs, &b"boom: bad input\n"[..]);
    assert_still_serves(&engine).await;
}

#[tokio::test]
async fn command_output_is_one_document_without_surrounding_whitespace() {
    let engine = engine();
    let invocation = run(&engine, ECHO, " \n\t[1, {\"a\": 2}] \r\n", &Limits::DEFAULT).await;
    assert_eq!(ok_text(&invocation), r#"[1, {"a": 2}]"#);
    for blank in ["", " \n\t "] {
        let invocation = run(&engine, ECHO, blank, &Limits::DEFAULT).await;
        assert_eq!(ok_text(&invocation), "null", "{blank:?}");
    }
    for bad in ["1 2", "[1,", "\"\\u12\""] {
        let invocation = run(&engine, ECHO, bad, &Limits::DEFAULT).await;
        assert_eq!(
            failure_kind(&invocation),
            FunctionErrorKind::InvalidOutput,
            "{bad}"
        );
    }
    // JSON text is UTF-8: a string holding other bytes is not a document.
    let (echo, _) = engine.compile(ECHO.as_bytes()).unwrap();
    let invocation = engine
        .invoke(&echo, Bytes::from_static(b"\"\xff\""), &Limits::DEFAULT)
        .await;
    assert_eq!(failure_kind(&invocation), FunctionErrorKind::InvalidOutput);
}

#[tokio::test]
async fn output_that_is_not_json_is_invalid_output() {
    let engine = engine();
    let invocation = run(&engine, NOT_JSON, "null", &Limits::DEFAULT).await;
    assert_eq!(failure_kind(&invocation), FunctionErrorKind::InvalidOutput);
}

#[tokio::test]
async fn input_over_the_cap_is_refused() {
    let engine = engine();
    let limits = Limits {
        max_input_bytes: 8,
        ..Limits::DEFAULT
    };
    let invocation = run(&engine, ECHO, r#""0123456789""#, &limits).await;
    assert_eq!(failure_kind(&invocation), FunctionErrorKind::InvalidInput);
}

#[tokio::test]
async fn fuel_is_deterministic_and_grows_with_work() {
    let engine = engine();
    let first = run(&engine, SUM_LOOP, "1000", &Limits::DEFAULT).await;
    let second = run(&engine, SUM_LOOP, "1000", &Limits::DEFAULT).await;
    assert_eq!(ok_text(&first), "499500");
    assert_eq!(first.fuel_consumed, second.fuel_consumed);
    let other_engine = engine_with_fresh_cache();
    let third = run(&other_engine, SUM_LOOP, "1000", &Limits::DEFAULT).await;
    assert_eq!(first.fuel_consumed, third.fuel_consumed);
    let bigger = run(&engine, SUM_LOOP, "2000", &Limits::DEFAULT).await;
    assert!(bigger.fuel_consumed > first.fuel_consumed);
}
