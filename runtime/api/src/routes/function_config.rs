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
use nimbus_core::http::ErrorBody;
use nimbus_core::{FunctionId, Username};
use nimbus_store::{FunctionConfig, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::body::{Body, FunctionIdPath, parse_json};
use crate::function_env::{no_key, seal_secret};
use crate::routes::Message;
use crate::routes::functions::{not_found, owned};
use crate::{ApiError, AppState};

/// A function's variables: the body of `PUT /functions/{id}/config` (the
/// whole set) and the answer of both config routes.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Vars {
    /// Names `[A-Z_][A-Z0-9_]*`; 64 variables and secrets, 64 KiB in all.
    vars: BTreeMap<String, String>,
}

/// One secret, without its value.
#[derive(Serialize, ToSchema)]
pub struct SecretInfo {
    /// Its name.
    name: String,
    /// RFC 3339 time it was last set.
    updated: String,
}

/// `GET /functions/{id}/secrets` answers this.
#[derive(Serialize, ToSchema)]
pub struct SecretList {
    /// Names and update times, never values.
    secrets: Vec<SecretInfo>,
}

/// `GET /functions/{id}/config`: the function's variables.
#[utoipa::path(
    get,
    path = "/functions/{id}/config",
    tag = "config",
    operation_id = "get_config",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "A function id")),
    responses(
        (status = 200, description = "Its variables", body = Vars),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such function of the caller's", body = ErrorBody),
    ),
)]
pub async fn get_config(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    FunctionIdPath(id): FunctionIdPath,
) -> Result<Json<Vars>, ApiError> {
    let config = owned_config(&state, &caller, id).await?;
    Ok(Json(Vars { vars: config.vars }))
}

/// `PUT /functions/{id}/config`: replace the function's variables.
#[utoipa::path(
    put,
    path = "/functions/{id}/config",
    tag = "config",
    operation_id = "put_config",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "A function id")),
    request_body = Vars,
    responses(
        (status = 200, description = "Its variables, as set", body = Vars),
        (status = 400, description = "Malformed, or past the limits", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such function of the caller's", body = ErrorBody),
        (status = 409, description = "A secret has one of the names, or a concurrent change won", body = ErrorBody),
    ),
)]
pub async fn put_config(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    FunctionIdPath(id): FunctionIdPath,
    Body(body): Body,
) -> Result<Json<Vars>, ApiError> {
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
    Ok(Json(Vars { vars: config.vars }))
}

/// `GET /functions/{id}/secrets`: names and update times, never values.
#[utoipa::path(
    get,
    path = "/functions/{id}/secrets",
    tag = "config",
    operation_id = "list_secrets",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "A function id")),
    responses(
        (status = 200, description = "Its secrets' names", body = SecretList),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such function of the caller's", body = ErrorBody),
    ),
)]
pub async fn list_secrets(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    FunctionIdPath(id): FunctionIdPath,
) -> Result<Json<SecretList>, ApiError> {
    let config = owned_config(&state, &caller, id).await?;
    let secrets = config
        .secrets
        .into_iter()
        .map(|(name, secret)| SecretInfo {
            name,
            updated: secret.updated,
        })
        .collect();
    Ok(Json(SecretList { secrets }))
}

/// `PUT /functions/{id}/secrets/{name}`: set a secret to the body (UTF-8
/// text, taken as is). 201 when it is new, 200 when it replaced one.
#[utoipa::path(
    put,
    path = "/functions/{id}/secrets/{name}",
    tag = "config",
    operation_id = "put_secret",
    security(("bearer" = [])),
    params(
        ("id" = u64, Path, description = "A function id"),
        ("name" = String, Path, description = "`[A-Z_][A-Z0-9_]*`"),
    ),
    request_body(content = String, content_type = "text/plain", description = "The value, UTF-8"),
    responses(
        (status = 201, description = "A new secret", body = SecretInfo),
        (status = 200, description = "A secret replaced", body = SecretInfo),
        (status = 400, description = "Not UTF-8, or past the limits", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such function of the caller's", body = ErrorBody),
        (status = 409, description = "A variable has that name, or a concurrent change won", body = ErrorBody),
    ),
)]
pub async fn put_secret(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    SecretPath(id, name): SecretPath,
    Body(body): Body,
) -> Result<(StatusCode, Json<SecretInfo>), ApiError> {
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
    let updated = config.secrets[&name].updated.clone();
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(SecretInfo { name, updated })))
}

/// `DELETE /functions/{id}/secrets/{name}`.
#[utoipa::path(
    delete,
    path = "/functions/{id}/secrets/{name}",
    tag = "config",
    operation_id = "delete_secret",
    security(("bearer" = [])),
    params(
        ("id" = u64, Path, description = "A function id"),
        ("name" = String, Path, description = "`[A-Z_][A-Z0-9_]*`"),
    ),
    responses(
        (status = 200, description = "Deleted", body = Message),
        (status = 400, description = "Invalid name", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such function of the caller's, or no such secret", body = ErrorBody),
        (status = 409, description = "A concurrent change won", body = ErrorBody),
    ),
)]
pub async fn delete_secret(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    SecretPath(id, name): SecretPath,
) -> Result<Json<Message>, ApiError> {
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
    Ok(Json(Message::new(format!("secret {name} deleted"))))
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
