//! Outbound HTTP from guests (`wasi:http/outgoing-handler`, and the
//! `nimbus_http` import of `http_import.rs`), deny by default: a request
//! goes out only to a host the function's `allowed_outbound_hosts` names,
//! and only to a public address that is not this host's own, unless the
//! operator allows private ones ([`Reach`]); never to the platform's own
//! NATS and API endpoints. The address check is made on the
//! addresses the name resolved to, and the connection is made to a checked
//! address (never by name again), so DNS rebinding cannot get around it.
//! Redirects are the guest's own new requests and are checked the same way.
//!
//! Metered like everything a guest does: the invocation's deadline covers
//! the time spent waiting on the network (the outer timeout of a run stops
//! a guest parked in a host call), each invocation may attempt at most
//! `max_requests` requests (Cloudflare Workers' subrequest limit is 50;
//! refused ones count), a request body at most the function's
//! `max_output_bytes` and a response body at most its `max_input_bytes`.
//! The platform sets `Host` (to the checked host) and the connection-level
//! headers, whatever the guest wrote; name lookups are bounded per process
//! and connections end with their invocation.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::body::Body as _;
use nimbus_core::outbound::{AllowedHost, is_public};
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{DEFAULT_FORBIDDEN_HEADERS, Error, WasiBody};

/// What one invocation may reach.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// The function's `allowed_outbound_hosts`, parsed.
    pub allowed: Vec<AllowedHost>,
    /// The operator's rules on addresses, the same for every function.
    pub reach: Arc<Reach>,
    /// Requests one invocation may attempt.
    pub max_requests: u32,
}

/// The addresses guests may connect to, whatever their functions declare:
/// public ones that are not this host's own, plus what the operator
/// allows, minus the platform's own endpoints.
#[derive(Debug, Clone, Default)]
pub struct Reach {
    /// Private, loopback, link-local, reserved and this host's own
    /// addresses allowed (`--outbound-allow-private`: tests and
    /// development).
    pub private: bool,
    /// Networks reachable although private (`--outbound-allow-net`: a
    /// service on the operator's own network, allowed by name).
    pub networks: Vec<ipnet::IpNet>,
    /// The platform's own endpoints (its NATS servers and API servers):
    /// refused even where private addresses are allowed. One on this host
    /// (loopback, unspecified or an address of its interfaces) is refused
    /// on every address of the host, at its port.
    pub platform: Vec<SocketAddr>,
}

impl Reach {
    /// Whether a guest may connect to `address`.
    pub fn allows(&self, address: SocketAddr) -> bool {
        let ip = address.ip().to_canonical();
        if self.is_platform(ip, address.port()) {
            return false;
        }
        self.private
            || self.networks.iter().any(|network| network.contains(&ip))
            || (is_public(ip) && !LOCAL_ADDRESSES.contains(&ip))
    }

    fn is_platform(&self, ip: IpAddr, port: u16) -> bool {
        let on_this_host =
            |ip: IpAddr| ip.is_loopback() || ip.is_unspecified() || LOCAL_ADDRESSES.contains(&ip);
        self.platform.iter().any(|endpoint| {
            let endpoint_ip = endpoint.ip().to_canonical();
            endpoint.port() == port
                && (endpoint_ip == ip || (on_this_host(endpoint_ip) && on_this_host(ip)))
        })
    }
}

impl Outbound {
    /// Requests one invocation may attempt unless the operator says
    /// otherwise (Cloudflare Workers' subrequest limit).
    pub const DEFAULT_MAX_REQUESTS: u32 = 50;
}

impl Default for Outbound {
    /// No host allowed.
    fn default() -> Self {
        Self {
            allowed: Vec::new(),
            reach: Arc::default(),
            max_requests: Self::DEFAULT_MAX_REQUESTS,
        }
    }
}

/// The outbound state of one invocation.
pub(crate) struct OutboundCalls {
    policy: Outbound,
    /// Requests attempted (allowed or not): the cap counts every attempt,
    /// so a guest cannot make the host check requests without end.
    attempts: u32,
    max_request_bytes: u64,
    max_response_bytes: u64,
    /// The tasks driving this invocation's connections, ended with it
    /// (made on the first request: most invocations make none).
    connections: Option<Arc<Mutex<Vec<AbortHandle>>>>,
}

impl Drop for OutboundCalls {
    fn drop(&mut self) {
        if let Some(connections) = &self.connections {
            for connection in connections.lock().unwrap().drain(..) {
                connection.abort();
            }
        }
    }
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
            attempts: 0,
            max_request_bytes,
            max_response_bytes,
            connections: None,
        }
    }

    /// The largest request `nimbus_http` reads out of a guest's memory.
    pub(crate) fn max_request_json(&self) -> u64 {
        self.max_request_bytes.saturating_add(64 << 10)
    }

    /// Count one attempt against the cap: every request counts, allowed or
    /// not, sent or malformed.
    pub(crate) fn count_attempt(&mut self) -> Result<(), Error> {
        if self.attempts >= self.policy.max_requests {
            return Err(Error::ConnectionLimitReached);
        }
        self.attempts += 1;
        Ok(())
    }

    /// Count `request`, check it against the policy, then send it.
    pub(crate) fn send(
        &mut self,
        request: http::Request<WasiBody>,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        if let Err(e) = self.count_attempt() {
            return Box::new(async { Err(e) });
        }
        self.send_counted(request)
    }

    /// [`OutboundCalls::send`] for a request already counted.
    pub(crate) fn send_counted(
        &mut self,
        request: http::Request<WasiBody>,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        let checked = self.check(&request);
        let reach = self.policy.reach.clone();
        let (request_cap, response_cap) = (self.max_request_bytes, self.max_response_bytes);
        let connections = self.connections.get_or_insert_default().clone();
        Box::new(async move {
            let destination = checked?;
            if request.body().size_hint().lower() > request_cap {
                return Err(Error::HttpRequestBodySize(Some(request_cap)));
            }
            let (parts, body) = request.into_parts();
            let body = Limited::new(body, usize::try_from(request_cap).unwrap_or(usize::MAX))
                .map_err(move |e| match e.downcast::<Error>() {
                    Ok(e) => *e,
                    Err(_) => Error::HttpRequestBodySize(Some(request_cap)),
                })
                .boxed_unsync();
            let request = http::Request::from_parts(parts, body);
            let response = send_to(destination, &reach, request, &connections).await?;
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

    fn check(&self, request: &http::Request<WasiBody>) -> Result<Destination, Error> {
        let uri = request.uri();
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            // Credentials belong in a header, not in the URL.
            return Err(Error::HttpRequestUriInvalid);
        }
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
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Ok(Destination { tls, host, port })
    }
}

/// Name lookups running at once for guests, in the whole process: each
/// holds a blocking thread until the system resolver answers, which a
/// deadline cannot cut short, so they are bounded here (the permit is held
/// by the lookup's thread, not by the guest's request).
static LOOKUPS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| Arc::new(Semaphore::new(16)));

/// How long a guest's name lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// This host's own addresses (every interface), which guests never reach
/// unless private addresses are allowed: services listening on all
/// interfaces (the platform's own, the node's) stay out of reach even on a
/// public address.
static LOCAL_ADDRESSES: LazyLock<Vec<IpAddr>> = LazyLock::new(local_addresses);

/// `host:port` resolved, on a blocking thread that holds one of
/// [`LOOKUPS`]'s permits until it ends.
async fn resolve(host: String, port: u16) -> Result<Vec<SocketAddr>, Error> {
    let permit = LOOKUPS
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| Error::DnsTimeout)?;
    let lookup = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        (host.as_str(), port)
            .to_socket_addrs()
            .map(|addresses| addresses.collect::<Vec<_>>())
    });
    match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
        Err(_) => Err(Error::DnsTimeout),
        Ok(Err(_)) => Err(Error::InternalError(Some("the name lookup failed".into()))),
        Ok(Ok(found)) => found.map_err(|_| Error::DestinationNotFound),
    }
}

/// Resolve, keep the addresses the policy allows, connect to one of them,
/// and send `request` over that connection.
async fn send_to(
    destination: Destination,
    reach: &Reach,
    mut request: http::Request<WasiBody>,
    connections: &Mutex<Vec<AbortHandle>>,
) -> Result<http::Response<hyper::body::Incoming>, Error> {
    let Destination { tls, host, port } = destination;
    let resolved = resolve(host.clone(), port).await?;
    let addresses: Vec<SocketAddr> = resolved
        .iter()
        .copied()
        .filter(|address| reach.allows(*address))
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
    // The request line carries only the path; `Host` is the checked host
    // (whatever the guest set: it picks the virtual host at the address),
    // and connection-level headers are the platform's.
    let bracketed = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    let host_header = match request.uri().port_u16() {
        Some(port) => format!("{bracketed}:{port}"),
        None => bracketed,
    };
    for forbidden in &DEFAULT_FORBIDDEN_HEADERS {
        request.headers_mut().remove(forbidden);
    }
    let host_header =
        http::HeaderValue::from_str(&host_header).map_err(|_| Error::HttpRequestUriInvalid)?;
    request
        .headers_mut()
        .insert(http::header::HOST, host_header);
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(request.uri().path_and_query().map_or("/", |p| p.as_str()))
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    if tls {
        let name = rustls::pki_types::ServerName::try_from(host)
            .map_err(|_| Error::HttpRequestUriInvalid)?;
        let stream = tokio_rustls::TlsConnector::from(tls_config())
            .connect(name, stream)
            .await
            .map_err(Error::Tls)?;
        exchange(TokioIo::new(stream), request, connections).await
    } else {
        exchange(TokioIo::new(stream), request, connections).await
    }
}

/// One HTTP/1.1 exchange over `io`; the connection is driven by a task that
/// ends with it, or with the invocation (`connections`).
async fn exchange<T>(
    io: T,
    request: http::Request<WasiBody>,
    connections: &Mutex<Vec<AbortHandle>>,
) -> Result<http::Response<hyper::body::Incoming>, Error>
where
    T: hyper::rt::Read + hyper::rt::Write + Send + Unpin + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake::<_, WasiBody>(io)
        .await
        .map_err(Error::Hyper)?;
    let task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "outbound connection ended");
        }
    });
    connections.lock().unwrap().push(task.abort_handle());
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

/// Every address of this host's interfaces (`getifaddrs`).
#[allow(unsafe_code)]
fn local_addresses() -> Vec<IpAddr> {
    let mut found = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list that is only read,
    // then freed with freeifaddrs; each `ifa_addr` is null or points to a
    // sockaddr of the family it names.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return found;
        }
        let mut next = list;
        while !next.is_null() {
            let address = (*next).ifa_addr;
            if !address.is_null() {
                match i32::from((*address).sa_family) {
                    libc::AF_INET => {
                        let v4 = &*(address as *const libc::sockaddr_in);
                        found.push(IpAddr::from(u32::from_be(v4.sin_addr.s_addr).to_be_bytes()));
                    }
                    libc::AF_INET6 => {
                        let v6 = &*(address as *const libc::sockaddr_in6);
                        found.push(IpAddr::from(v6.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            next = (*next).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn private_addresses_are_refused_unless_allowed_the_platforms_always() {
        let strict = Reach::default();
        assert!(strict.allows(address("93.184.215.14:443")));
        assert!(!strict.allows(address("127.0.0.1:8080")));
        assert!(!strict.allows(address("10.1.2.3:80")));
        assert!(!strict.allows(address("[::ffff:10.1.2.3]:80")));

        let platform = vec![address("0.0.0.0:4222"), address("10.1.2.3:8080")];
        let open = Reach {
            private: true,
            platform: platform.clone(),
            ..Reach::default()
        };
        assert!(open.allows(address("127.0.0.1:8080")));
        assert!(open.allows(address("10.1.2.3:80")));
        // A platform endpoint listening on every address of this host is
        // refused on any of them, at its port only.
        assert!(!open.allows(address("127.0.0.1:4222")));
        assert!(!open.allows(address("[::1]:4222")));
        assert!(open.allows(address("10.9.9.9:4222")));
        // Another host's endpoint: at that address and port only.
        assert!(!open.allows(address("10.1.2.3:8080")));
        assert!(!open.allows(address("[::ffff:10.1.2.3]:8080")));

        let network = Reach {
            networks: vec!["10.1.0.0/16".parse().unwrap()],
            platform,
            ..Reach::default()
        };
        assert!(network.allows(address("10.1.200.7:80")));
        assert!(!network.allows(address("10.2.0.1:80")));
        assert!(!network.allows(address("127.0.0.1:80")));
        assert!(!network.allows(address("10.1.2.3:8080")));
        assert!(network.allows(address("93.184.215.14:443")));
    }

    #[test]
    fn this_hosts_addresses_are_found() {
        let local = super::local_addresses();
        assert!(
            local.contains(&std::net::IpAddr::from([127, 0, 0, 1])),
            "{local:?}"
        );
    }
}
