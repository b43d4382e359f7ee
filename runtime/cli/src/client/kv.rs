//! The client's calls for the caller's key-value stores (`/kv`).

use serde::Deserialize;

use super::Client;

/// One of the caller's stores, as `GET /kv` lists it.
#[derive(Debug, Deserialize)]
pub struct StoreInfo {
    /// Its name.
    pub name: String,
    /// Keys it holds.
    pub keys: u64,
    /// Bytes of keys and values.
    pub bytes: u64,
}

#[derive(Deserialize)]
struct Stores {
    stores: Vec<StoreInfo>,
}

#[derive(Deserialize)]
struct KeyPage {
    keys: Vec<String>,
    cursor: Option<String>,
}

#[derive(Deserialize)]
struct Written {
    revision: u64,
}

/// `key` for a URL path: bytes outside the unreserved set and `/`
/// percent-encoded (a key's `/` stays: the route takes the rest of the
/// path as the key).
fn path_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    /// `GET /kv`: the caller's stores.
    pub async fn kv_stores(&self) -> anyhow::Result<Vec<StoreInfo>> {
        let stores: Stores = self.call(self.authed(reqwest::Method::GET, "/kv")?).await?;
        Ok(stores.stores)
    }

    /// `GET /kv/{store}?prefix=`, every page: the keys starting with
    /// `prefix`, in byte order.
    pub async fn kv_keys(&self, store: &str, prefix: &str) -> anyhow::Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut request = self
                .authed(reqwest::Method::GET, &format!("/kv/{store}"))?
                .query(&[("prefix", prefix)]);
            if let Some(cursor) = &cursor {
                request = request.query(&[("cursor", cursor)]);
            }
            let page: KeyPage = self.call(request).await?;
            keys.extend(page.keys);
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(keys),
            }
        }
    }

    /// `GET /kv/{store}/{key}`: the value.
    pub async fn kv_get(&self, store: &str, key: &str) -> anyhow::Result<Vec<u8>> {
        let path = format!("/kv/{store}/{}", path_key(key));
        let response = self.send(self.authed(reqwest::Method::GET, &path)?).await?;
        Ok(response.bytes().await?.to_vec())
    }

    /// `PUT /kv/{store}/{key}`: its new revision.
    pub async fn kv_put(&self, store: &str, key: &str, value: Vec<u8>) -> anyhow::Result<u64> {
        let path = format!("/kv/{store}/{}", path_key(key));
        let request = self
            .authed(reqwest::Method::PUT, &path)?
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(value);
        let written: Written = self.call(request).await?;
        Ok(written.revision)
    }

    /// `DELETE /kv/{store}/{key}`.
    pub async fn kv_delete(&self, store: &str, key: &str) -> anyhow::Result<()> {
        let path = format!("/kv/{store}/{}", path_key(key));
        self.send(self.authed(reqwest::Method::DELETE, &path)?)
            .await?;
        Ok(())
    }
}
