//! Word count: text in, counts and the most frequent words out.
//!
//! Build and deploy (from examples/functions):
//!
//! ```text
//! cargo build --release
//! nimbus deploy target/wasm32-wasip1/release/wordcount.wasm --name wordcount
//! nimbus invoke <id> '"the quick brown fox jumps over the lazy dog"'
//! ```

use std::collections::HashMap;
use std::convert::Infallible;

use serde::Serialize;

#[derive(Serialize)]
struct Counts {
    lines: usize,
    words: usize,
    chars: usize,
    /// The five most frequent words (lowercased), most frequent first.
    top: Vec<(String, usize)>,
}

#[nimbus_sdk::function]
fn wordcount(text: String) -> Result<Counts, Infallible> {
    let mut frequency: HashMap<String, usize> = HashMap::new();
    let mut words = 0;
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        words += 1;
        *frequency.entry(word.to_lowercase()).or_default() += 1;
    }
    let mut top: Vec<(String, usize)> = frequency.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(5);
    Ok(Counts {
        lines: text.lines().count(),
        words,
        chars: text.chars().count(),
        top,
    })
}
