//! Outbound HTTP: the hosts a function may call (`allowed_outbound_hosts`,
//! in the syntax Spin uses) and the addresses the platform never lets a
//! guest reach, whatever the function declares.
//!
//! A pattern is `scheme://host[:port]`: the scheme `http`, `https` or `*`;
//! the host a name, an IP address, `*.` and a domain (its subdomains, not the
//! domain itself), or `*`; the port a number or `*` (without one: the
//! scheme's default, 80 or 443). `https://api.example.com`,
//! `https://*.example.org:8443`, `*://example.com:*`.

use std::net::IpAddr;

/// Patterns one function may declare.
pub const MAX_ALLOWED_HOSTS: usize = 32;

/// One parsed `allowed_outbound_hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    scheme: Option<String>,
    host: HostPattern,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    Exact(String),
    /// `*.suffix`: any name ending in `.suffix`.
    SubdomainsOf(String),
}

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not an allowed outbound host: write scheme://host[:port] with scheme http, https or *, \
     host a name, an address, *.domain or *, port a number or *"
)]
pub struct InvalidAllowedHost(pub String);

impl AllowedHost {
    /// Parse one pattern.
    pub fn parse(pattern: &str) -> Result<Self, InvalidAllowedHost> {
        let invalid = || InvalidAllowedHost(pattern.chars().take(300).collect());
        let (scheme, rest) = pattern.split_once("://").ok_or_else(invalid)?;
        let scheme = match scheme {
            "*" => None,
            "http" | "https" => Some(scheme.to_owned()),
            _ => return Err(invalid()),
        };
        if rest.is_empty() || rest.len() > 255 || rest.contains(['/', '?', '#', '@', ' ', ',']) {
            return Err(invalid());
        }
        // `[v6]:port`, `host:port`, or a bare host.
        let (host, port) = match rest.strip_prefix('[') {
            Some(v6) => {
                let (address, after) = v6.split_once(']').ok_or_else(invalid)?;
                address
                    .parse::<std::net::Ipv6Addr>()
                    .map_err(|_| invalid())?;
                match after {
                    "" => (address.to_owned(), None),
                    after => (
                        address.to_owned(),
                        Some(after.strip_prefix(':').ok_or_else(invalid)?),
                    ),
                }
            }
            None => match rest.rsplit_once(':') {
                Some((host, port)) => (host.to_owned(), Some(port)),
                None => (rest.to_owned(), None),
            },
        };
        let port = match port {
            None => match scheme.as_deref() {
                Some("http") => Some(80),
                Some("https") => Some(443),
                _ => return Err(invalid()),
            },
            Some("*") => None,
            Some(port) => Some(port.parse().ok().filter(|&p| p != 0).ok_or_else(invalid)?),
        };
        let host = host.to_ascii_lowercase();
        let valid_name = |name: &str| {
            !name.is_empty()
                && name.split('.').all(|label| {
                    !label.is_empty()
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        };
        let host = if host == "*" {
            HostPattern::Any
        } else if let Some(domain) = host.strip_prefix("*.") {
            if !valid_name(domain) {
                return Err(invalid());
            }
            HostPattern::SubdomainsOf(domain.to_owned())
        } else if valid_name(&host) || host.parse::<IpAddr>().is_ok() {
            HostPattern::Exact(host)
        } else {
            return Err(invalid());
        };
        Ok(Self { scheme, host, port })
    }

    /// Whether a request to `scheme://host:port` matches (the port is the
    /// request's, its scheme's default when it names none).
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        self.scheme.as_deref().is_none_or(|s| s == scheme)
            && self.port.is_none_or(|p| p == port)
            && match &self.host {
                HostPattern::Any => true,
                HostPattern::Exact(exact) => *exact == host,
                HostPattern::SubdomainsOf(domain) => host
                    .strip_suffix(domain.as_str())
                    .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
            }
    }
}

/// Check a whole `allowed_outbound_hosts` list.
pub fn check_allowed_hosts(patterns: &[String]) -> Result<Vec<AllowedHost>, InvalidAllowedHost> {
    if patterns.len() > MAX_ALLOWED_HOSTS {
        return Err(InvalidAllowedHost(format!(
            "{} patterns (at most {MAX_ALLOWED_HOSTS})",
            patterns.len()
        )));
    }
    patterns.iter().map(|p| AllowedHost::parse(p)).collect()
}

/// Whether `ip` is an address on the public internet: not loopback,
/// private (RFC 1918, unique local), link-local (where cloud metadata
/// services answer), shared (CGNAT), unspecified, broadcast, multicast,
/// documentation or otherwise reserved. Guests reach only these, unless
/// the operator allows private addresses.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
                || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
                || (a == 198 && (18..20).contains(&b)) // benchmarking
                || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
                || v4 == std::net::Ipv4Addr::new(168, 63, 129, 16) // Azure WireServer
                || a >= 240) // reserved
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            let first = s[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || s[..6] == [0; 6] // IPv4-compatible (::a.b.c.d), deprecated
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first & 0xffc0) == 0xfec0 // site-local, deprecated
                || (first == 0x0100 && s[1..4] == [0, 0, 0]) // discard
                || (first == 0x2001 && s[1] == 0x0db8) // documentation
                || (first == 0x2001 && s[1] == 0) // Teredo, embeds IPv4
                || first == 0x2002 // 6to4, embeds IPv4
                || (first == 0x0064 && s[1] == 0xff9b)) // NAT64, embeds IPv4
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(pattern: &str, scheme: &str, host: &str, port: u16) -> bool {
        AllowedHost::parse(pattern)
            .unwrap()
            .allows(scheme, host, port)
    }

    #[test]
    fn patterns_match_as_spin_writes_them() {
        assert!(allows(
            "https://api.example.com",
            "https",
            "api.example.com",
            443
        ));
        assert!(allows(
            "https://api.example.com",
            "https",
            "API.example.com",
            443
        ));
        assert!(!allows(
            "https://api.example.com",
            "http",
            "api.example.com",
            443
        ));
        assert!(!allows(
            "https://api.example.com",
            "https",
            "api.example.com",
            8443
        ));
        assert!(!allows("https://api.example.com", "https", "evil.com", 443));
        assert!(allows(
            "https://*.example.org:8443",
            "https",
            "a.b.example.org",
            8443
        ));
        assert!(!allows(
            "https://*.example.org:8443",
            "https",
            "example.org",
            8443
        ));
        assert!(!allows(
            "https://*.example.org:8443",
            "https",
            "badexample.org",
            8443
        ));
        assert!(allows("*://example.com:*", "http", "example.com", 1234));
        assert!(allows("http://127.0.0.1:3000", "http", "127.0.0.1", 3000));
        assert!(allows("http://[::1]:3000", "http", "[::1]", 3000));
        assert!(allows("*://*:*", "https", "anything.at.all", 1));
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in [
            "example.com",
            "ftp://example.com",
            "https://",
            "https://example.com/path",
            "https://user@example.com",
            "https://example.com:0",
            "https://example.com:99999",
            "*://example.com",
            "https://exa mple.com",
            "https://*example.com",
            "https://[::1",
        ] {
            assert!(AllowedHost::parse(bad).is_err(), "{bad}");
        }
        let many: Vec<String> = (0..33).map(|i| format!("https://h{i}.example")).collect();
        assert!(check_allowed_hosts(&many).is_err());
    }

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }
}
