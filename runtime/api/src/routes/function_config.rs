//! Configuration routes: a function's variables (`GET/PUT
//! /functions/{id}/config`) and its write-only secrets (`GET
//! /functions/{id}/secrets` lists names, `PUT/DELETE
//! /functions/{id}/secrets/{name}`). The guest reads both as environment
//! variables; a change applies to the function's next call.
//!
//! A change is a compare-and-set on the function's entry in the
//! `function_config` bucket, then raises the function's `config_revision`
//! (see `function_env.rs`). A secret's value is sealed before it is stored
//! and is never answered, logged or quoted in an error.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use nimbus_core::env::{self, EnvError};
use nimbus_core::{FunctionId, Username};
use nimbus_store::{FunctionConfig, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::body::{Body, FunctionIdPath, parse_json};
use crate::function_env::{no_key, seal_secret};
use crate::routes::functions::not_found;
use crate::{ApiError, AppState};

/// The body of `PUT /functions/{id}/config`: the whole set of variables.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Vars {
    vars: BTreeMap<String, String>,
}

/// `GET /functions/{id}/config`: the function's variables.
pub async fn get_config(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    FunctionIdPath(id): FunctionIdPath,
) -> Result<Json<Value>, ApiError> {
    let config = owned_config(&state, &caller, id).await?;
    Ok(Json(json!({ "vars": config.vars })))
}

/// `PUT /functions/{id}/config`: replace the function's variables.
pub async fn put_config(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    FunctionIdPath(id): FunctionIdPath,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let Vars { vars } = parse_json(&body)?;
    for (name, value) in &vars {
        env::check_value(name, value).map_err(refused)?;
    }
    let config = change(&state, &caller, id, |config| {
        if let Some(name) = vars.keys().find(|n| config.secrets.contains_key(*n)) {
            return Err(EnvError::Taken {
                name: name.clone(),
                taken_by: "secret",
            });
        }
        config.vars = vars.clone();
        Ok(())
    })
    .await?;
    tracing::info!(id, owner = %caller, vars = config.vars.len(), "function variables set");
    Ok(Json(json!({ "vars": config.vars })))
}

/// `GET /functions/{id}/secrets`: names and update times, never values.
pub async fn list_secrets(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    FunctionIdPath(id): FunctionIdPath,
) -> Result<Json<Value>, ApiError> {
    let config = owned_config(&state, &caller, id).await?;
    let secrets: Vec<Value> = config
        .secrets
        .iter()
        .map(|(name, secret)| json!({"name": name, "updated": secret.updated}))
        .collect();
    Ok(Json(json!({ "secrets": secrets })))
}

/// `PUT /functions/{id}/secrets/{name}`: set a secret to the body (UTF-8
/// text, taken as is). 201 when it is new, 200 when it replaced one.
pub async fn put_secret(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    SecretPath(id, name): SecretPath,
    Body(body): Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let key = state.config.secrets_key.clone().ok_or_else(no_key)?;
    let value = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::BadRequest("a secret's value must be UTF-8 text".into()))?;
    env::check_value(&name, &value).map_err(refused)?;
    let mut created = false;
    let config = change(&state, &caller, id, |config| {
        if config.vars.contains_key(&name) {
            return Err(EnvError::Taken {
                name: name.clone(),
                taken_by: "variable",
            });
        }
        let secret = seal_secret(&key, id, &name, &value);
        created = config.secrets.insert(name.clone(), secret).is_none();
        Ok(())
    })
    .await?;
    tracing::info!(id, owner = %caller, secret = %name, "function secret set");
    let updated = &config.secrets[&name].updated;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({"name": name, "updated": updated}))))
}

/// `DELETE /functions/{id}/secrets/{name}`.
pub async fn delete_secret(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    SecretPath(id, name): SecretPath,
) -> Result<Json<Value>, ApiError> {
    let mut found = false;
    change(&state, &caller, id, |config| {
        found = config.secrets.remove(&name).is_some();
        Ok(())
    })
    .await?;
    if !found {
        return Err(ApiError::NotFound(format!(
            "function {id} has no secret {name}"
        )));
    }
    tracing::info!(id, owner = %caller, secret = %name, "function secret deleted");
    Ok(Json(json!({"message": format!("secret {name} deleted")})))
}

/// A function id and a secret name from the path.
pub struct SecretPath(FunctionId, String);

impl<S: Send + Sync> FromRequestParts<S> for SecretPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path((id, name)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound("no such secret".into()))?;
        let id = id
            .parse()
            .map_err(|_| ApiError::NotFound(format!("no function with id `{id}`")))?;
        env::check_name(&name).map_err(refused)?;
        Ok(Self(id, name))
    }
}

/// 404 unless `caller` owns function `id`.
async fn owned(state: &AppState, caller: &Username, id: FunctionId) -> Result<(), ApiError> {
    state
        .functions
        .get(state.storage(), caller, id)
        .await?
        .map(|_| ())
        .ok_or_else(|| not_found(id))
}

/// `caller`'s function `id`'s configuration (404 if not theirs).
async fn owned_config(
    state: &AppState,
    caller: &Username,
    id: FunctionId,
) -> Result<FunctionConfig, ApiError> {
    owned(state, caller, id).await?;
    Ok(state.storage()?.function_config(id).await?.0)
}

fn refused(error: EnvError) -> ApiError {
    match error {
        EnvError::Taken { .. } => ApiError::Conflict(error.to_string()),
        _ => ApiError::BadRequest(error.to_string()),
    }
}

/// Attempts of one change against concurrent ones before it gives up.
const CHANGE_ATTEMPTS: usize = 50;

/// Apply `edit` to function `id`'s configuration (compare-and-set, again on
/// a concurrent change), check the whole against the limits, store it, and
/// raise the function's `config_revision`: the configuration as stored.
async fn change(
    state: &AppState,
    caller: &Username,
    id: FunctionId,
    mut edit: impl FnMut(&mut FunctionConfig) -> Result<(), EnvError>,
) -> Result<FunctionConfig, ApiError> {
    if state.config.secrets_key.is_none() {
        return Err(no_key());
    }
    owned(state, caller, id).await?;
    let storage = state.storage()?;
    for _ in 0..CHANGE_ATTEMPTS {
        let (mut config, revision) = storage.function_config(id).await?;
        let before = config.clone();
        edit(&mut config).map_err(refused)?;
        if config == before {
            // Nothing to store (a secret that is not there to delete, the
            // same variables again). The metadata is still made to name
            // this revision: a retry after a change whose raise failed
            // applies it.
            raise_revision(state, caller, id, revision).await?;
            return Ok(config);
        }
        let sizes = config.vars.iter().map(|(n, v)| (n.as_str(), v.len()));
        let secrets = config.secrets.iter().map(|(n, s)| (n.as_str(), s.len));
        env::check_totals(sizes.chain(secrets)).map_err(refused)?;
        match storage.put_function_config(id, &config, revision).await {
            Ok(revision) => {
                raise_revision(state, caller, id, revision).await?;
                return Ok(config);
            }
            Err(StoreError::AlreadyExists) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Conflict(
        "the configuration kept changing concurrently; try again".into(),
    ))
}

/// Make function `id`'s metadata name configuration `revision` (or a later
/// one), so every API server's next call carries it: a compare-and-set on
/// the metadata as read, redone on a concurrent change (a `PATCH`, another
/// configuration change) so that neither is lost.
async fn raise_revision(
    state: &AppState,
    caller: &Username,
    id: FunctionId,
    revision: u64,
) -> Result<(), ApiError> {
    let storage = state.storage()?;
    for _ in 0..CHANGE_ATTEMPTS {
        let Some((mut meta, entry)) = storage.function_entry(caller, id).await? else {
            // Deleted meanwhile: its configuration goes too.
            storage.delete_function_config(id).await?;
            return Err(not_found(id));
        };
        if meta.config_revision < revision {
            meta.config_revision = revision;
            match storage.update_function(&meta, entry).await {
                Ok(()) => {}
                Err(StoreError::AlreadyExists) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        state.functions.insert(meta);
        return Ok(());
    }
    Err(ApiError::Conflict(
        "the function kept changing concurrently; its configuration is stored, \
         try again to apply it"
            .into(),
    ))
}
