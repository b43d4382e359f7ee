//! A function's environment: the configuration variables and secrets its
//! guest reads as environment variables. Names, limits and the encoding in
//! which the whole environment travels, sealed, from API server to worker
//! (see [`crate::sealing`]).

use serde::{Deserialize, Serialize};

/// Variables and secrets one function may have, together.
pub const MAX_ENTRIES: usize = 64;
/// Bytes of names and values one function's environment may hold, together.
pub const MAX_BYTES: usize = 64 << 10;
/// Longest name.
pub const MAX_NAME_LEN: usize = 128;

/// Environment variables as the guest sees them, in name order. Variables
/// and secrets are merged: a name is one or the other, never both. Its
/// `Debug` shows names only: values may be secrets.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Env(pub Vec<(String, String)>);

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Env")
            .field(&self.0.iter().map(|(name, _)| name).collect::<Vec<_>>())
            .finish()
    }
}

impl Env {
    /// The encoding sealed into a call (JSON pairs).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&self.0).expect("strings serialise")
    }

    /// Read what [`Env::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes).map(Self)
    }

    /// Whether there is nothing in it.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Why a variable or secret was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// Not `[A-Z_][A-Z0-9_]*`, or too long.
    #[error(
        "{0:?} is not a valid name: 1-{MAX_NAME_LEN} characters of A-Z, 0-9 and _, not starting with a digit"
    )]
    InvalidName(String),
    /// Too many variables and secrets.
    #[error("a function may have at most {MAX_ENTRIES} variables and secrets together, not {0}")]
    TooMany(usize),
    /// Too many bytes.
    #[error(
        "a function's variables and secrets may hold at most {MAX_BYTES} bytes of names and values together, not {0}"
    )]
    TooLarge(usize),
    /// The name is already taken by the other kind.
    #[error("{name} is already a {taken_by} of this function: delete it first")]
    Taken {
        /// The name.
        name: String,
        /// `variable` or `secret`.
        taken_by: &'static str,
    },
    /// A value with a NUL byte (no environment can hold one).
    #[error("the value of {0} contains a NUL byte")]
    NulInValue(String),
}

/// Check a variable or secret name: `[A-Z_][A-Z0-9_]*`, at most
/// [`MAX_NAME_LEN`] characters.
pub fn check_name(name: &str) -> Result<(), EnvError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(EnvError::InvalidName(
            name.chars().take(MAX_NAME_LEN + 8).collect(),
        ))
    }
}

/// Check one entry: its name, and a value an environment can hold.
pub fn check_value(name: &str, value: &str) -> Result<(), EnvError> {
    check_name(name)?;
    if value.contains('\0') {
        return Err(EnvError::NulInValue(name.to_owned()));
    }
    Ok(())
}

/// Check the totals of a whole environment, given each entry's name and
/// value length.
pub fn check_totals<'a>(entries: impl Iterator<Item = (&'a str, usize)>) -> Result<(), EnvError> {
    let (mut count, mut bytes) = (0, 0);
    for (name, value_len) in entries {
        count += 1;
        bytes += name.len() + value_len;
    }
    if count > MAX_ENTRIES {
        return Err(EnvError::TooMany(count));
    }
    if bytes > MAX_BYTES {
        return Err(EnvError::TooLarge(bytes));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_upper_snake_case() {
        for good in ["A", "_", "API_KEY", "X1", "_9"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        let long = "A".repeat(MAX_NAME_LEN + 1);
        for bad in ["", "a", "1A", "API-KEY", "API KEY", "É", long.as_str()] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(
            check_value("A", "x\0y"),
            Err(EnvError::NulInValue("A".into()))
        );
    }

    #[test]
    fn totals_count_entries_and_bytes() {
        let names: Vec<String> = (0..=MAX_ENTRIES).map(|i| format!("V{i}")).collect();
        let entries = || names.iter().map(|n| (n.as_str(), 1));
        assert_eq!(check_totals(entries().take(MAX_ENTRIES)), Ok(()), "64 fit");
        assert_eq!(check_totals(entries()), Err(EnvError::TooMany(65)));
        assert_eq!(
            check_totals([("BIG", MAX_BYTES - 3)].into_iter()),
            Ok(()),
            "exactly the cap fits"
        );
        assert_eq!(
            check_totals([("BIG", MAX_BYTES - 2)].into_iter()),
            Err(EnvError::TooLarge(MAX_BYTES + 1))
        );
    }

    #[test]
    fn an_env_round_trips() {
        let env = Env(vec![
            ("A".into(), "1".into()),
            ("B".into(), "é \"q\"".into()),
        ]);
        assert_eq!(Env::decode(&env.encode()).unwrap(), env);
    }
}
