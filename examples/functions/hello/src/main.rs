//! Hello, Nimbus: the smallest Rust function.
//!
//! Build and deploy (from examples/functions):
//!
//! ```text
//! cargo build --release
//! nimbus deploy target/wasm32-wasip1/release/hello.wasm --name hello
//! nimbus invoke <id> '"Ada"'          # "Hello, Ada!"
//! nimbus invoke <id>                  # "Hello, world!"
//! ```

use std::convert::Infallible;

#[nimbus_sdk::function]
fn hello(name: Option<String>) -> Result<String, Infallible> {
    let name = name.unwrap_or_else(|| "world".to_owned());
    nimbus_sdk::log!("greeting {name}");
    Ok(format!("Hello, {name}!"))
}
