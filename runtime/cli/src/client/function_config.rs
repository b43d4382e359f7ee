//! The client's calls for a function's variables and secrets.

use std::collections::BTreeMap;

use nimbus_core::FunctionId;
use serde::Deserialize;

use super::Client;

/// A secret as listed: its name and when it was last set, never its value.
#[derive(Debug, Deserialize)]
pub struct SecretInfo {
    /// Its name.
    pub name: String,
    /// RFC 3339 time it was last set.
    pub updated: String,
}

#[derive(Deserialize)]
struct Vars {
    vars: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Secrets {
    secrets: Vec<SecretInfo>,
}

impl Client {
    /// `GET /functions/{id}/config`: the function's variables.
    pub async fn vars(&self, id: FunctionId) -> anyhow::Result<BTreeMap<String, String>> {
        let path = format!("/functions/{id}/config");
        let vars: Vars = self.call(self.authed(reqwest::Method::GET, &path)?).await?;
        Ok(vars.vars)
    }

    /// `PUT /functions/{id}/config`: replace the function's variables.
    pub async fn set_vars(
        &self,
        id: FunctionId,
        vars: &BTreeMap<String, String>,
    ) -> anyhow::Result<BTreeMap<String, String>> {
        let path = format!("/functions/{id}/config");
        let request = self
            .authed(reqwest::Method::PUT, &path)?
            .json(&serde_json::json!({ "vars": vars }));
        let vars: Vars = self.call(request).await?;
        Ok(vars.vars)
    }

    /// `GET /functions/{id}/secrets`: names and update times.
    pub async fn secrets(&self, id: FunctionId) -> anyhow::Result<Vec<SecretInfo>> {
        let path = format!("/functions/{id}/secrets");
        let secrets: Secrets = self.call(self.authed(reqwest::Method::GET, &path)?).await?;
        Ok(secrets.secrets)
    }

    /// `PUT /functions/{id}/secrets/{name}` with `value` as the body.
    pub async fn put_secret(&self, id: FunctionId, name: &str, value: &str) -> anyhow::Result<()> {
        let path = format!("/functions/{id}/secrets/{name}");
        let request = self
            .authed(reqwest::Method::PUT, &path)?
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(value.to_owned());
        self.send(request).await?;
        Ok(())
    }

    /// `DELETE /functions/{id}/secrets/{name}`.
    pub async fn delete_secret(&self, id: FunctionId, name: &str) -> anyhow::Result<()> {
        let path = format!("/functions/{id}/secrets/{name}");
        self.send(self.authed(reqwest::Method::DELETE, &path)?)
            .await?;
        Ok(())
    }
}
