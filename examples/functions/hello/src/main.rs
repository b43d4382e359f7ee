//! Hello, Nimbus: the smallest Rust function.
//!
//! Build and deploy (from examples/functions):
//!
//! ```text
//! cargo build --release
//! nimbus deploy target/wasm32-wasip1/release/hello.wasm --name hello
//! nimbus invoke <id> '"Ada"'          # "Hello, Ada!"
//! nimbus invoke <id>                  # "Hello, world!"
//! nimbus config set <id> GREETING=Hola
//! nimbus invoke <id> '"Ada"'          # "Hola, Ada!"
//! ```
//!
//! Variables and secrets of a function are environment variables of its
//! code: `std::env::var` reads them.

use std::convert::Infallible;

#[nimbus_sdk::function]
fn hello(name: Option<String>) -> Result<String, Infallible> {
    let name = name.unwrap_or_else(|| "world".to_owned());
    let greeting = std::env::var("GREETING").unwrap_or_else(|_| "Hello".to_owned());
    nimbus_sdk::log!("greeting {name}");
    Ok(format!("{greeting}, {name}!"))
}
