//! State across calls: a hit counter, and a list that many calls append
//! to at once without losing an item, in the owner's key-value store.
//!
//! ```text
//! cargo build --release
//! nimbus deploy target/wasm32-wasip1/release/counter.wasm --name counter --kv-store default
//! nimbus invoke <id> '{"op": "hit"}'                       # {"count": 1}, then 2, 3...
//! nimbus invoke <id> '{"op": "append", "item": "ada"}'     # {"count": 1}
//! nimbus kv get default hits                               # 3
//! ```
//!
//! `store` names another store (the function must declare it); `key`
//! another key.

use nimbus_sdk::kv::{Error, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Input {
    /// Add one to a counter.
    Hit {
        #[serde(default)]
        store: Option<String>,
        #[serde(default)]
        key: Option<String>,
    },
    /// Append `item` to a JSON list, with compare-and-swap.
    Append {
        #[serde(default)]
        store: Option<String>,
        #[serde(default)]
        key: Option<String>,
        item: Value,
    },
    /// A key's value as JSON.
    Get {
        #[serde(default)]
        store: Option<String>,
        key: String,
    },
    /// Keys starting with a prefix.
    Keys {
        #[serde(default)]
        store: Option<String>,
        #[serde(default)]
        prefix: String,
    },
    /// Set a key to a JSON value.
    Set {
        #[serde(default)]
        store: Option<String>,
        key: String,
        value: Value,
    },
}

#[derive(Serialize)]
#[serde(untagged)]
enum Output {
    Count { count: i64 },
    Value { value: Option<Value> },
    Keys { keys: Vec<String> },
}

fn store(name: Option<String>) -> Store {
    Store::open(name.as_deref().unwrap_or("default"))
}

#[nimbus_sdk::function]
fn counter(input: Input) -> Result<Output, Error> {
    Ok(match input {
        Input::Hit { store: s, key } => Output::Count {
            count: store(s).increment(key.as_deref().unwrap_or("hits"), 1)?,
        },
        Input::Append {
            store: s,
            key,
            item,
        } => {
            let store = store(s);
            let key = key.as_deref().unwrap_or("items");
            loop {
                let (value, revision) = store.read(key)?;
                let mut items: Vec<Value> = value
                    .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                    .unwrap_or_default();
                items.push(item.clone());
                let bytes = serde_json::to_vec(&items).expect("values serialise");
                if store.swap(key, revision, bytes)? {
                    break Output::Count {
                        count: items.len() as i64,
                    };
                }
                nimbus_sdk::log!("{key} changed under us; reading it again");
            }
        }
        Input::Get { store: s, key } => Output::Value {
            value: store(s).get_json(&key)?,
        },
        Input::Keys { store: s, prefix } => Output::Keys {
            keys: store(s).keys(&prefix)?,
        },
        Input::Set {
            store: s,
            key,
            value,
        } => {
            store(s).set_json(&key, &value)?;
            Output::Value { value: Some(value) }
        }
    })
}
