//! Function metadata and the identifiers it is keyed by.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::Limits;

/// A function's id: a number allocated by the platform, so the seed's
/// `/functions/1/execute` works on a fresh install.
pub type FunctionId = u64;

/// What language the function was uploaded in. Everything runs as Wasm in the
/// end; the runtime records how the module came to be.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// WebAssembly text, compiled to binary at upload.
    Wat,
    /// A WebAssembly binary.
    Wasm,
    /// JavaScript source run by the bundled QuickJS shim.
    Js,
    /// A WebAssembly component (WASI 0.2); its [`World`] says how it is called.
    Component,
}

/// The WASI world a component implements: how the platform calls it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum World {
    /// Exports `wasi:http/incoming-handler`: a web handler.
    #[serde(rename = "wasi:http/proxy")]
    HttpProxy,
    /// Exports `wasi:cli/run`: input on stdin, result on stdout.
    #[serde(rename = "wasi:cli/command")]
    CliCommand,
}

/// Who may call a function on its URL.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Only its owner, with their bearer token.
    #[default]
    Private,
    /// Anyone, without credentials.
    Public,
}

impl Access {
    /// The lowercase name used in JSON and query strings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Private => "private",
            Self::Public => "public",
        }
    }
}

impl std::str::FromStr for Access {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "private" => Ok(Self::Private),
            "public" => Ok(Self::Public),
            other => Err(format!(
                "access must be \"private\" or \"public\", not {other:?}"
            )),
        }
    }
}

impl Runtime {
    /// The lowercase name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wat => "wat",
            Self::Wasm => "wasm",
            Self::Js => "js",
            Self::Component => "component",
        }
    }

    /// The runtime of code uploaded without one: WAT when its first token,
    /// after whitespace and WAT comments (`;; line`, `(; block ;)`), is
    /// `(module`; JavaScript otherwise, as in the seed (`return input + 1;`).
    pub fn detect(code: &str) -> Self {
        let mut rest = code;
        loop {
            rest = rest.trim_start();
            if let Some(comment) = rest.strip_prefix(";;") {
                rest = comment.split_once('\n').map_or("", |(_, after)| after);
            } else if let Some(comment) = rest.strip_prefix("(;") {
                rest = comment.split_once(";)").map_or("", |(_, after)| after);
            } else if rest.starts_with("(module") {
                return Self::Wat;
            } else {
                return Self::Js;
            }
        }
    }
}

/// Everything the platform knows about a function, stored in the `functions` bucket.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionMeta {
    /// Platform-wide unique id.
    pub id: FunctionId,
    /// The user who uploaded it; only they may see or touch it.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub owner: Username,
    /// Optional name, unique among its owner's functions (a
    /// [`FunctionName`] for functions created since names became unique):
    /// the function answers on `/fn/<owner>/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// How it was uploaded.
    pub runtime: Runtime,
    /// For a component, the world it implements; a JavaScript `fetch`
    /// handler (`export default { fetch }`) is `wasi:http/proxy` too, since
    /// it answers HTTP the same way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub world: Option<World>,
    /// Who may call it on its URL.
    #[serde(default)]
    pub access: Access,
    /// sha256 of the module bytes, hex; the key in the `modules` object store.
    pub digest: String,
    /// Module size in bytes.
    pub size: u64,
    /// Limits each invocation runs under.
    pub limits: Limits,
    /// RFC 3339 creation time.
    pub created: String,
    /// Revision of the function's entry in the `function_config` bucket
    /// (its variables and secrets) that calls must carry; 0: it has none.
    /// Raised by every change of the configuration, so every API server
    /// learns of the change with the metadata it already follows.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub config_revision: u64,
    /// The hosts it may call over HTTP (`crate::outbound`); none by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_outbound_hosts: Vec<String>,
    /// The owner's key-value stores it may open (`crate::kv`); none by
    /// default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_value_stores: Vec<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A validated function name: 1 to 63 characters from `[a-z0-9-]`, starting
/// with a letter or digit, so it can be a URL path segment and a NATS KV key
/// as it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FunctionName(String);

/// Why a function name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "function name {0:?} is invalid: 1-63 characters of lowercase letters, digits or '-', starting with a letter or digit"
)]
pub struct InvalidFunctionName(String);

impl FunctionName {
    /// Validate `name`.
    pub fn parse(name: &str) -> Result<Self, InvalidFunctionName> {
        let ok_len = (1..=63).contains(&name.len());
        let ok_chars = name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let ok_first = name.bytes().next().is_some_and(|b| b != b'-');
        if ok_len && ok_chars && ok_first {
            Ok(Self(name.to_owned()))
        } else {
            Err(InvalidFunctionName(name.chars().take(80).collect()))
        }
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for FunctionName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for FunctionName {
    type Error = InvalidFunctionName;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<FunctionName> for String {
    fn from(value: FunctionName) -> Self {
        value.0
    }
}

impl fmt::Display for FunctionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated username: 3 to 32 characters from `[A-Za-z0-9_-]`, starting
/// with a letter or digit.
///
/// The restriction is deliberate: usernames become NATS KV keys and subject
/// tokens (`<owner>.<id>`), where `.`, `*`, `>` and whitespace have meaning.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username(String);

/// Why a username was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "username must be 3-32 characters of letters, digits, '_' or '-', starting with a letter or digit"
)]
pub struct InvalidUsername;

impl Username {
    /// Validate `name`.
    pub fn parse(name: &str) -> Result<Self, InvalidUsername> {
        let ok_len = (3..=32).contains(&name.len());
        let ok_chars = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        let ok_first = name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric());
        if ok_len && ok_chars && ok_first {
            Ok(Self(name.to_owned()))
        } else {
            Err(InvalidUsername)
        }
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A username is a string wherever one is read: a key, a subject token, a
/// header value.
impl std::ops::Deref for Username {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Username {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Username {
    type Error = InvalidUsername;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Username> for String {
    fn from(value: Username) -> Self {
        value.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wat_is_recognised_after_comments_and_js_is_not_wat() {
        assert_eq!(Runtime::detect("(module)"), Runtime::Wat);
        assert_eq!(
            Runtime::detect("  ;; adds one\n(; block ;)\n (module (func))"),
            Runtime::Wat
        );
        assert_eq!(Runtime::detect("return input + 1;"), Runtime::Js);
        assert_eq!(
            Runtime::detect("// (module\nfunction handler(x) { return x }"),
            Runtime::Js
        );
        assert_eq!(Runtime::detect(";; only a comment"), Runtime::Js);
    }

    #[test]
    fn function_names_are_url_and_key_safe() {
        for bad in [
            "",
            "-lead",
            "Upper",
            "a.b",
            "a/b",
            "a b",
            "ñ",
            &"x".repeat(64),
        ] {
            assert!(
                FunctionName::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
        for good in ["add", "0", "web-hook-2", &"x".repeat(63)] {
            assert!(
                FunctionName::parse(good).is_ok(),
                "{good:?} should be accepted"
            );
        }
    }

    #[test]
    fn metadata_written_before_urls_reads_as_private() {
        let old = r#"{"id":1,"owner":"ada","runtime":"js","digest":"d","size":1,
            "limits":{"fuel":1,"memory_bytes":1,"timeout_ms":1,"max_input_bytes":1,
            "max_output_bytes":1,"max_log_bytes":1},"created":"now"}"#;
        let meta: FunctionMeta = serde_json::from_str(old).unwrap();
        assert_eq!((meta.access, meta.world), (Access::Private, None));
    }

    #[test]
    fn usernames_that_are_not_subject_safe_are_refused() {
        for bad in [
            "",
            "ab",
            "a.b.c",
            "a*bc",
            "a>bc",
            "has space",
            "_lead",
            "ñandú",
            &"x".repeat(33),
        ] {
            assert!(Username::parse(bad).is_err(), "{bad:?} should be refused");
        }
        for good in ["testuser", "abc", "A-b_9", &"x".repeat(32)] {
            assert!(Username::parse(good).is_ok(), "{good:?} should be accepted");
        }
    }
}
