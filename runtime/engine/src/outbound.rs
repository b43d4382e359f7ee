//! Outbound HTTP from guests (`wasi:http/outgoing-handler`), deny by
//! default: a request goes out only to a host the function's
//! `allowed_outbound_hosts` names, and only to a public address unless the
//! operator allows private ones. The address check is made on the addresses
//! the name resolved to, and the connection is made to a checked address
//! (never by name again), so DNS rebinding cannot get around it. Redirects
//! are the guest's own new requests and are checked the same way.
//!
//! Metered like everything a guest does: the invocation's deadline covers
//! the time spent waiting on the network (the outer timeout of a run stops
//! a guest parked in a host call), each invocation may make at most
//! `max_requests` requests (Cloudflare Workers' subrequest limit is 50), a
//! request body at most the function's `max_output_bytes` and a response
//! body at most its `max_input_bytes`.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use http_body_util::{BodyExt, Limited};
use nimbus_core::outbound::{AllowedHost, is_public};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, WasiBody};

/// What one invocation may reach.
#[derive(Debug, Clone, Default)]
pub struct Outbound {
    /// The function's `allowed_outbound_hosts`, parsed.
    pub allowed: Vec<AllowedHost>,
    /// Whether private, loopback and link-local addresses may be reached
    /// (the operator's `--outbound-allow-private`, for tests and
    /// development).
    pub allow_private: bool,
    /// Requests one invocation may make.
    pub max_requests: u32,
}

/// The outbound state of one invocation.
pub(crate) struct OutboundCalls {
    policy: Outbound,
    sent: u32,
    max_request_bytes: u64,
    max_response_bytes: u64,
}

/// Where a checked request goes.
struct Destination {
    tls: bool,
    host: String,
    port: u16,
}

type Sent = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), Error>> + Send>,
    ),
    Error,
>;

impl OutboundCalls {
    pub(crate) fn new(policy: Outbound, max_request_bytes: u64, max_response_bytes: u64) -> Self {
        Self {
            policy,
            sent: 0,
            max_request_bytes,
            max_response_bytes,
        }
    }

    /// Check `request` against the policy, then send it.
    pub(crate) fn send(
        &mut self,
        request: http::Request<WasiBody>,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        let checked = self.check(&request);
        let allow_private = self.policy.allow_private;
        let (request_cap, response_cap) = (self.max_request_bytes, self.max_response_bytes);
        Box::new(async move {
            let destination = checked?;
            let (parts, body) = request.into_parts();
            let body = Limited::new(body, usize::try_from(request_cap).unwrap_or(usize::MAX))
                .map_err(move |e| match e.downcast::<Error>() {
                    Ok(e) => *e,
                    Err(_) => Error::HttpRequestBodySize(Some(request_cap)),
                })
                .boxed_unsync();
            let request = http::Request::from_parts(parts, body);
            let response = send_to(destination, allow_private, request).await?;
            let cap = usize::try_from(response_cap).unwrap_or(usize::MAX);
            let response = response.map(|body| {
                Limited::new(body, cap)
                    .map_err(move |e| match e.downcast::<hyper::Error>() {
                        Ok(e) => Error::Hyper(*e),
                        Err(_) => Error::HttpResponseBodySize(Some(response_cap)),
                    })
                    .boxed_unsync()
            });
            Ok((
                response,
                Box::new(async { Ok(()) }) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }

    fn check(&mut self, request: &http::Request<WasiBody>) -> Result<Destination, Error> {
        let uri = request.uri();
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(Error::HttpRequestUriInvalid),
        };
        let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?.to_owned();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let scheme = if tls { "https" } else { "http" };
        if !self
            .policy
            .allowed
            .iter()
            .any(|a| a.allows(scheme, &host, port))
        {
            return Err(Error::HttpRequestDenied);
        }
        if self.sent >= self.policy.max_requests {
            return Err(Error::ConnectionLimitReached);
        }
        self.sent += 1;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Ok(Destination { tls, host, port })
    }
}

/// Resolve, keep the addresses the policy allows, connect to one of them,
/// and send `request` over that connection.
async fn send_to(
    destination: Destination,
    allow_private: bool,
    mut request: http::Request<WasiBody>,
) -> Result<http::Response<hyper::body::Incoming>, Error> {
    let Destination { tls, host, port } = destination;
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|_| Error::DestinationNotFound)?
        .collect();
    let addresses: Vec<SocketAddr> = resolved
        .iter()
        .copied()
        .filter(|a| allow_private || is_public(a.ip()))
        .collect();
    if addresses.is_empty() {
        return Err(if resolved.is_empty() {
            Error::DestinationNotFound
        } else {
            Error::DestinationIpProhibited
        });
    }
    let stream = tokio::net::TcpStream::connect(addresses.as_slice())
        .await
        .map_err(Error::Connect)?;
    // The request line carries only the path; the host goes in `Host`.
    let authority = request.uri().authority().map(|a| a.as_str().to_owned());
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(request.uri().path_and_query().map_or("/", |p| p.as_str()))
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    if let Some(authority) = authority
        && !request.headers().contains_key(http::header::HOST)
    {
        let value =
            http::HeaderValue::from_str(&authority).map_err(|_| Error::HttpRequestUriInvalid)?;
        request.headers_mut().insert(http::header::HOST, value);
    }
    if tls {
        let name = rustls::pki_types::ServerName::try_from(host)
            .map_err(|_| Error::HttpRequestUriInvalid)?;
        let stream = tokio_rustls::TlsConnector::from(tls_config())
            .connect(name, stream)
            .await
            .map_err(Error::Tls)?;
        exchange(TokioIo::new(stream), request).await
    } else {
        exchange(TokioIo::new(stream), request).await
    }
}

/// One HTTP/1.1 exchange over `io`; the connection is driven by a task
/// that ends with it (when the response body is read or dropped).
async fn exchange<T>(
    io: T,
    request: http::Request<WasiBody>,
) -> Result<http::Response<hyper::body::Incoming>, Error>
where
    T: hyper::rt::Read + hyper::rt::Write + Send + Unpin + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake::<_, WasiBody>(io)
        .await
        .map_err(Error::Hyper)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "outbound connection ended");
        }
    });
    sender.send_request(request).await.map_err(Error::Hyper)
}

/// The client TLS configuration: the Mozilla roots, built once.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            };
            Arc::new(
                rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .expect("ring supports the default TLS versions")
                .with_root_certificates(roots)
                .with_no_client_auth(),
            )
        })
        .clone()
}
