//! Call another service: GET a URL and answer its status and body.
//!
//! The function may call only the hosts it is allowed:
//!
//! ```text
//! cargo build --release
//! nimbus deploy target/wasm32-wasip1/release/fetch.wasm --name fetch \
//!     --allow-outbound https://api.github.com
//! nimbus invoke <id> '{"url": "https://api.github.com/zen"}'
//! ```
//!
//! An optional `authorization` header value comes from the function's
//! secret `API_TOKEN`, if it has one (`nimbus secret put <id> API_TOKEN`).

use nimbus_sdk::http::{self, Request};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Input {
    url: String,
}

#[derive(Serialize)]
struct Output {
    status: u16,
    body: String,
}

#[nimbus_sdk::function]
fn fetch(input: Input) -> Result<Output, http::Error> {
    let mut request = Request::get(&input.url).header("user-agent", "nimbus-example");
    if let Ok(token) = std::env::var("API_TOKEN") {
        request = request.header("authorization", &format!("Bearer {token}"));
    }
    let response = http::send(&request)?;
    nimbus_sdk::log!("{} answered {}", input.url, response.status);
    Ok(Output {
        status: response.status,
        body: response.body,
    })
}
