//! Write Nimbus functions in Rust.
//!
//! A Nimbus function is a WASI command: it reads its input JSON on stdin and
//! writes its result JSON on stdout. This crate does that plumbing. You write
//! an ordinary function from a deserialisable input to a serialisable output,
//! and mark it with [`function`]:
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct Order {
//!     items: Vec<Item>,
//! }
//!
//! #[derive(Deserialize)]
//! struct Item {
//!     price_cents: u64,
//!     quantity: u32,
//! }
//!
//! #[derive(Serialize)]
//! struct Total {
//!     total_cents: u64,
//!     items: usize,
//! }
//!
//! #[nimbus_sdk::function]
//! fn total(order: Order) -> Result<Total, String> {
//!     if order.items.is_empty() {
//!         return Err("an order needs at least one item".into());
//!     }
//!     nimbus_sdk::log!("totalling {} items", order.items.len());
//!     Ok(Total {
//!         total_cents: order.items.iter().map(|i| i.price_cents * i.quantity as u64).sum(),
//!         items: order.items.len(),
//!     })
//! }
//! ```
//!
//! Build it for `wasm32-wasip1` as a binary crate (the attribute writes
//! `main`), then deploy and invoke it:
//!
//! ```text
//! cargo build --release --target wasm32-wasip1
//! nimbus deploy target/wasm32-wasip1/release/total.wasm --name total
//! nimbus invoke 1 '{"items": [{"price_cents": 250, "quantity": 2}]}'
//! ```
//!
//! What happens at run time:
//! - the input is deserialised into your input type; if it does not fit, the
//!   function fails with exit code 2 and serde's message;
//! - `Ok(out)` is serialised to stdout as the result;
//! - `Err(e)` writes `e` (its `Display`) to stderr and exits with code 1: the
//!   caller gets a function error (`exit`) whose message ends with your text;
//! - [`log!`] lines go to stderr, the function's log, never into the result.
//!
//! For raw bytes, take `Vec<u8>` and return `Result<Vec<u8>, E>`; the bytes
//! you return must still be a JSON document.
//!
//! The function's variables and secrets are environment variables
//! (`std::env::var`); [`http`] calls the hosts it is allowed to; [`kv`]
//! keeps state in the owner's key-value stores.
#![deny(missing_docs)]

pub use nimbus_sdk_macro::function;

#[cfg(target_family = "wasm")]
mod host_call;
pub mod http;
pub mod kv;

/// Write a line to the function's log (stderr). Same syntax as `println!`.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::__private::log_line(::std::format_args!($($arg)*))
    };
}

#[doc(hidden)]
pub mod __private {
    //! What the attribute's generated `main` calls. Not a stable API.

    use std::fmt::Display;
    use std::io::{Read, Write};

    use serde::Serialize;
    use serde::de::DeserializeOwned;

    /// Exit code when the input does not deserialise.
    pub const EXIT_BAD_INPUT: i32 = 2;
    /// Exit code when the function returns `Err`.
    pub const EXIT_ERROR: i32 = 1;

    fn read_input() -> Vec<u8> {
        let mut input = Vec::new();
        if let Err(e) = std::io::stdin().read_to_end(&mut input) {
            fail(EXIT_BAD_INPUT, format_args!("cannot read the input: {e}"));
        }
        input
    }

    fn fail(code: i32, message: std::fmt::Arguments<'_>) -> ! {
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "{message}");
        let _ = stderr.flush();
        std::process::exit(code)
    }

    fn write_output(bytes: &[u8]) {
        let mut stdout = std::io::stdout().lock();
        if let Err(e) = stdout.write_all(bytes).and_then(|()| stdout.flush()) {
            fail(EXIT_ERROR, format_args!("cannot write the result: {e}"));
        }
    }

    /// Run a typed function.
    pub fn run<I, O, E>(function: fn(I) -> Result<O, E>)
    where
        I: DeserializeOwned,
        O: Serialize,
        E: Display,
    {
        let input = read_input();
        let input: I = match serde_json::from_slice(&input) {
            Ok(input) => input,
            Err(e) => fail(EXIT_BAD_INPUT, format_args!("invalid input: {e}")),
        };
        match function(input) {
            Ok(output) => match serde_json::to_vec(&output) {
                Ok(bytes) => write_output(&bytes),
                Err(e) => fail(EXIT_ERROR, format_args!("cannot serialise the result: {e}")),
            },
            Err(e) => fail(EXIT_ERROR, format_args!("{e}")),
        }
    }

    /// Run a raw-bytes function.
    pub fn run_raw<E: Display>(function: fn(Vec<u8>) -> Result<Vec<u8>, E>) {
        match function(read_input()) {
            Ok(bytes) => write_output(&bytes),
            Err(e) => fail(EXIT_ERROR, format_args!("{e}")),
        }
    }

    /// Backs [`log!`](crate::log).
    pub fn log_line(line: std::fmt::Arguments<'_>) {
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "{line}");
    }
}
