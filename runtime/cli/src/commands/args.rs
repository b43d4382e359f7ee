//! Arguments the client commands share: which API to call and with what
//! token (flags, else what `login` saved), and a function's JSON input, so
//! every command finds the API and reads input the same way.

use anyhow::Context;
use clap::Args;
use nimbus_cli::client::{self, Client};

#[derive(Args)]
pub struct ClientArgs {
    /// API URL (default: the one saved by `login`, else http://127.0.0.1:8080).
    #[arg(long, env = "NIMBUS_URL")]
    url: Option<String>,
    /// Bearer token (default: the one saved by `login`).
    #[arg(long, env = "NIMBUS_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl ClientArgs {
    /// A client for the API these flags (or the saved config) point at.
    pub fn client(&self) -> Client {
        let saved = client::Config::load();
        let url = self
            .url
            .clone()
            .or(saved.url)
            .unwrap_or_else(|| client::DEFAULT_URL.to_owned());
        Client::new(&url, self.token.clone().or(saved.token))
    }
}

/// A function's input as given on the command line: JSON text, `-` for
/// stdin, or nothing for `null`.
pub fn parse_input(text: Option<&str>) -> anyhow::Result<serde_json::Value> {
    let text = match text {
        None => return Ok(serde_json::Value::Null),
        Some("-") => std::io::read_to_string(std::io::stdin())?,
        Some(text) => text.to_owned(),
    };
    serde_json::from_str(&text).with_context(|| format!("the input is not JSON: {text:?}"))
}
