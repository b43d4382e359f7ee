//! The web console at `/ui`: a page, a script and a style sheet, embedded
//! in the binary (no CDN, nothing fetched at run time), that talk to this
//! same API with the user's token. The sources are in `runtime/api/ui/`.
//!
//! Every answer carries a Content-Security-Policy that allows only this
//! origin's own script, style and API: no inline script, no third party.

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use nimbus_core::http::ErrorBody;

use crate::ApiError;

const INDEX: &str = include_str!("../../ui/index.html");
const SCRIPT: &str = include_str!("../../ui/console.js");
const CHARTS: &str = include_str!("../../ui/charts.js");
const STYLE: &str = include_str!("../../ui/console.css");

const POLICY: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
    style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn page(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Assets change with the binary; a short cache keeps upgrades visible.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// `GET /ui`: the console's page.
#[utoipa::path(
    get,
    path = "/ui",
    tag = "operations",
    operation_id = "console",
    security(()),
    responses((status = 200, description = "The web console", content_type = "text/html", body = String)),
)]
pub async fn index() -> Response {
    page("text/html; charset=utf-8", INDEX)
}

/// `GET /ui/{asset}`: the console's scripts and style sheet.
#[utoipa::path(
    get,
    path = "/ui/{asset}",
    tag = "operations",
    operation_id = "console_asset",
    security(()),
    params(("asset" = String, Path, description = "`console.js`, `charts.js` or `console.css`")),
    responses(
        (status = 200, description = "The asset", content(
            (String = "text/javascript"),
            (String = "text/css"),
        )),
        (status = 404, description = "No such asset", body = ErrorBody),
    ),
)]
pub async fn asset(Path(asset): Path<String>) -> Result<Response, ApiError> {
    match asset.as_str() {
        "console.js" => Ok(page("text/javascript; charset=utf-8", SCRIPT)),
        "charts.js" => Ok(page("text/javascript; charset=utf-8", CHARTS)),
        "console.css" => Ok(page("text/css; charset=utf-8", STYLE)),
        _ => Err(ApiError::NotFound(format!("no console asset {asset:?}"))),
    }
}
