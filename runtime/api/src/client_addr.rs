//! Who is asking, by network address: what per-client limits key on.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use crate::AppState;

/// The client's address: from the trusted gateway's header when one is
/// configured (`ApiConfig::client_ip_header`) and present, else the peer
/// of the connection (unspecified when serving without connection info,
/// as tests that call the router directly do).
pub(crate) struct ClientAddr(pub(crate) IpAddr);

impl FromRequestParts<Arc<AppState>> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let forwarded = state.config.client_ip_header.as_ref().and_then(|name| {
            let value = parts.headers.get(name.as_str())?.to_str().ok()?;
            // A list (X-Forwarded-For): the first is the client.
            value.split(',').next()?.trim().parse().ok()
        });
        let peer = || {
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip())
        };
        Ok(Self(
            forwarded
                .or_else(peer)
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        ))
    }
}
