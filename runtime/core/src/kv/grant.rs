//! The grant that lets a worker act on its function's stores for one call
//! or job, signed by an API server.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};

use super::{KvError, KvErrorKind};
use crate::{FunctionId, SecretsKey};

/// What a worker may do with its function's stores while it runs one
/// call or job: the owner's stores the function declared, until
/// `expires_ms`. Made and signed by an API server with a key only API
/// servers hold ([`SecretsKey::grant_tag`]); a worker passes it along with
/// each operation and cannot forge or widen one, so a compromised worker
/// reaches only the stores of the calls it was given, and only for a while.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Whose stores.
    pub owner: String,
    /// The function it was made for: the API checks that it still exists
    /// and still declares the store.
    pub function_id: FunctionId,
    /// The stores the function declared.
    pub stores: Vec<String>,
    /// Unix time in milliseconds after which it is refused.
    pub expires_ms: u64,
}

impl Grant {
    /// The grant as a token: base64url of its JSON, `.`, base64url of the
    /// tag. No spaces or commas: it travels in a call's header.
    pub fn sign(&self, key: &SecretsKey) -> String {
        let body = serde_json::to_vec(self).expect("plain structs serialise");
        format!("{}.{}", B64.encode(&body), B64.encode(key.grant_tag(&body)))
    }

    /// What `token` grants, without checking its tag: for a worker, which
    /// cannot check it, to refuse early what the API would refuse anyway.
    pub fn read_unverified(token: &str) -> Option<Self> {
        let (body, _) = token.split_once('.')?;
        serde_json::from_slice(&B64.decode(body).ok()?).ok()
    }

    /// What `token` grants, if `key` signed it and it has not expired.
    pub fn verify(token: &str, key: &SecretsKey, now_ms: u64) -> Result<Self, KvError> {
        let denied = |why: &str| {
            KvError::new(
                KvErrorKind::AccessDenied,
                format!("the key-value grant {why}"),
            )
        };
        let (body, tag) = token
            .split_once('.')
            .ok_or_else(|| denied("is malformed"))?;
        let body = B64.decode(body).map_err(|_| denied("is malformed"))?;
        let tag = B64.decode(tag).map_err(|_| denied("is malformed"))?;
        if !key.grant_tag_matches(&body, &tag) {
            return Err(denied(
                "does not verify (forged, altered, or signed with another secrets key)",
            ));
        }
        let grant: Self = serde_json::from_slice(&body).map_err(|_| denied("is malformed"))?;
        if grant.expires_ms < now_ms {
            return Err(denied("has expired"));
        }
        Ok(grant)
    }

    /// Whether it lets its holder open `store`.
    pub fn allows(&self, store: &str) -> bool {
        self.stores.iter().any(|s| s == store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: char) -> SecretsKey {
        SecretsKey::from_secret(&seed.to_string().repeat(32)).unwrap()
    }

    fn grant() -> Grant {
        Grant {
            owner: "alice".into(),
            function_id: 7,
            stores: vec!["default".into(), "cache".into()],
            expires_ms: 2_000,
        }
    }

    #[test]
    fn a_grant_verifies_only_with_its_key_untouched_and_in_time() {
        let token = grant().sign(&key('a'));
        assert!(!token.contains([' ', ',']), "{token}");
        assert_eq!(Grant::verify(&token, &key('a'), 1_000), Ok(grant()));
        assert!(grant().allows("cache") && !grant().allows("other"));
        assert_eq!(Grant::read_unverified(&token), Some(grant()));
        let denied = |r: Result<Grant, KvError>| r.unwrap_err().kind == KvErrorKind::AccessDenied;
        assert!(
            denied(Grant::verify(&token, &key('b'), 1_000)),
            "another key"
        );
        assert!(denied(Grant::verify(&token, &key('a'), 3_000)), "expired");
        // A worker that widens the grant (another owner) breaks the tag.
        let mut wider = grant();
        wider.owner = "bob".into();
        let (_, tag) = token.split_once('.').unwrap();
        let forged = format!("{}.{tag}", B64.encode(serde_json::to_vec(&wider).unwrap()));
        assert!(denied(Grant::verify(&forged, &key('a'), 1_000)), "widened");
        assert!(denied(Grant::verify("nonsense", &key('a'), 1_000)));
    }
}
