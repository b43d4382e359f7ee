//! The HTTP contract as an OpenAPI 3.1 document, generated from the code
//! and served at `GET /openapi.json`.
//!
//! Every handler carries a `#[utoipa::path]` naming its method, path,
//! parameters, bodies and answers; the router (`lib.rs`) registers handlers
//! through `utoipa_axum::routes!`, which takes method and path from that
//! same annotation, so a route cannot be served without being described.
//! The few routes axum needs in another form (wildcard tails such as
//! `/kv/{store}/{*key}`) are registered by hand and listed in [`ApiDoc`]'s
//! `paths`; a test compares the document with the README's table of routes
//! and probes every path for methods the document does not name.
//!
//! [`Contract`] adds what every operation shares: the bearer scheme, and the
//! error answers any operation can give (401 without a valid token where
//! one is needed, 400 and 413 for a body, 500 and 503), all in the error
//! shape `{"error": {"kind", "message"}}`.

use std::collections::BTreeMap;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use nimbus_core::http::{ErrorBody, ErrorDetail};
use serde_json::Value;
use utoipa::openapi::response::{Response as OpenApiResponse, ResponseBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, OpenApi as Document, RefOr};
use utoipa::{Modify, OpenApi, PartialSchema as _};

use crate::routes::{kv, urls};

/// Bytes, as they are (a key-value value, what a function URL answers).
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
pub(crate) struct Binary(#[allow(dead_code)] Vec<u8>);

/// What a function URL answers, for both its paths.
pub(crate) struct UrlAnswers;

impl utoipa::IntoResponses for UrlAnswers {
    fn responses() -> BTreeMap<String, RefOr<OpenApiResponse>> {
        let answered = ResponseBuilder::new()
            .description(
                "What the function answered: its result as JSON or, from a `wasi:http` \
                 component, the response it wrote (any status it chose)",
            )
            .content("application/json", Content::new(Some(Value::schema())))
            .content("*/*", Content::new(Some(Binary::schema())))
            .header(
                "Nimbus-Fuel-Consumed",
                number_header("Fuel the call burned"),
            )
            .header(
                "Nimbus-Duration-Us",
                number_header("Time in the engine, microseconds"),
            )
            .build();
        let mut responses = BTreeMap::from([("200".to_owned(), answered.into())]);
        for (status, description) in [
            ("401", "A private function, called without a token"),
            (
                "404",
                "No such function (or a private one of someone else's)",
            ),
            ("422", "The function failed"),
        ] {
            responses.insert(status.to_owned(), error_response(description));
        }
        responses
    }
}

/// A numeric response header.
fn number_header(description: &str) -> utoipa::openapi::Header {
    utoipa::openapi::HeaderBuilder::new()
        .schema(u64::schema())
        .description(Some(description))
        .build()
}

/// An answer in the error shape.
fn error_response(description: &str) -> RefOr<OpenApiResponse> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                "ErrorBody",
            )))),
        )
        .build()
        .into()
}

/// The name of the bearer (JWT) security scheme in the document.
pub(crate) const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Nimbus",
        description = "A WebAssembly-first Function-as-a-Service platform: accounts, \
            functions (WebAssembly modules and components, JavaScript), their \
            invocations with the fuel each burned, configuration and secrets, \
            key-value state, logs.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(ErrorBody, ErrorDetail, Binary)),
    paths(
        serve,
        kv::get,
        kv::put,
        kv::delete,
        urls::call,
        urls::call_subpath,
    ),
    tags(
        (name = "accounts", description = "Registration, login and the caller's usage"),
        (name = "functions", description = "Upload, list, change and delete functions"),
        (name = "config", description = "A function's variables and secrets"),
        (name = "invocations", description = "Calling functions and reading asynchronous calls"),
        (name = "logs", description = "What functions wrote to stderr"),
        (name = "kv", description = "The caller's key-value stores"),
        (name = "operations", description = "Health, metrics, this document, the console"),
    ),
)]
pub(crate) struct ApiDoc;

/// What every operation shares (see the module doc): applied to the whole
/// document once the router has added its routes.
pub(crate) struct Contract;

impl Modify for Contract {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("The token `POST /auth/login` answers"))
                    .build(),
            ),
        );
        for item in doc.paths.paths.values_mut() {
            // One handler for several methods (a function URL) is one
            // operation each: their ids get the method, to stay unique.
            let ids: Vec<_> = [&item.get, &item.post, &item.put, &item.patch, &item.delete]
                .into_iter()
                .flatten()
                .filter_map(|op| op.operation_id.as_deref())
                .collect();
            let shared = (1..ids.len()).any(|i| ids[..i].contains(&ids[i]));
            for (method, operation) in [
                ("get", &mut item.get),
                ("put", &mut item.put),
                ("post", &mut item.post),
                ("delete", &mut item.delete),
                ("options", &mut item.options),
                ("head", &mut item.head),
                ("patch", &mut item.patch),
                ("trace", &mut item.trace),
            ] {
                let Some(operation) = operation else {
                    continue;
                };
                if shared && let Some(id) = &mut operation.operation_id {
                    id.push('_');
                    id.push_str(method);
                }
                // A token is required unless an alternative asks for none.
                let authenticated = operation.security.as_ref().is_some_and(|alternatives| {
                    !alternatives.is_empty()
                        && alternatives
                            .iter()
                            .all(|a| a != &SecurityRequirement::default())
                });
                let mut shared_errors = vec![
                    ("500", "An internal error (details are in the server's log)"),
                    ("503", "JetStream unreachable, or no worker to run a call"),
                ];
                if authenticated {
                    shared_errors.push(("401", "No valid bearer token"));
                }
                if operation.request_body.is_some() {
                    shared_errors.push(("400", "A malformed request"));
                    shared_errors.push(("413", "A body over the route's cap"));
                }
                for (status, description) in shared_errors {
                    operation
                        .responses
                        .responses
                        .entry(status.into())
                        .or_insert_with(|| error_response(description));
                }
            }
        }
    }
}

/// The document, rendered once per router; answering it copies nothing.
#[derive(Clone)]
pub(crate) struct Rendered(bytes::Bytes);

impl Rendered {
    pub(crate) fn of(doc: &Document) -> Self {
        Self(
            doc.to_pretty_json()
                .expect("the OpenAPI document serialises")
                .into(),
        )
    }
}

/// `GET /openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    operation_id = "openapi",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = Object)),
)]
pub(crate) async fn serve(doc: Rendered) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], doc.0).into_response()
}
