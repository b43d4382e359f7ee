//! Who is asking, by network address: what per-client limits key on.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use crate::AppState;

/// The client's network address (an IPv6 client's /64): from the trusted
/// gateway's header when one is
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
            // A list (X-Forwarded-For): the last entry is the one the
            // trusted gateway added; earlier ones are the client's word.
            value.rsplit(',').next()?.trim().parse().ok()
        });
        let peer = || {
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip())
        };
        let address = forwarded
            .or_else(peer)
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        Ok(Self(network_of(address)))
    }
}

/// The unit limits apply to: an IPv4 address, or the /64 an IPv6 address
/// is in (one subscriber usually holds a whole /64).
fn network_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        IpAddr::V6(v6) => IpAddr::V4(v6.to_ipv4_mapped().expect("checked")),
        v4 => v4,
    }
}
