//! Where this worker's guests may connect: the operator's rules
//! ([`nimbus_engine::Reach`], from the worker's settings) with the NATS
//! servers the worker learns of at start, and its own metrics listener,
//! added to the platform's own endpoints, which guests never reach.

use std::net::{IpAddr, SocketAddr};

use async_nats::ServerInfo;

use crate::WorkerConfig;

/// The worker's outbound rules, its NATS servers included: the server it
/// is connected to, as that server describes itself, and the client URLs
/// the server lists for the rest of its cluster (as they are at start).
/// The URLs the worker was given are added by whoever resolved them (the
/// `nimbus` command); `own` are the worker's own listeners.
pub(crate) fn outbound_reach(
    config: &WorkerConfig,
    info: &ServerInfo,
    own: impl IntoIterator<Item = SocketAddr>,
) -> nimbus_engine::Reach {
    let mut reach = config.outbound_reach.clone();
    reach.platform.extend(nats_endpoints(info));
    reach.platform.extend(own);
    reach
}

/// The addresses in `info`; names among them are left out (no lookup at
/// start: a cluster advertises addresses).
fn nats_endpoints(info: &ServerInfo) -> Vec<SocketAddr> {
    let own = info
        .host
        .trim_matches(['[', ']'])
        .parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, info.port));
    own.into_iter()
        .chain(info.connect_urls.iter().filter_map(|url| url.parse().ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_own_address_and_its_clusters_are_endpoints() {
        let info = ServerInfo {
            host: "0.0.0.0".into(),
            port: 4222,
            connect_urls: vec![
                "10.0.0.7:4222".into(),
                "[fd00::7]:4222".into(),
                "nats-2.nats:4222".into(),
            ],
            ..ServerInfo::default()
        };
        assert_eq!(
            nats_endpoints(&info),
            ["0.0.0.0:4222", "10.0.0.7:4222", "[fd00::7]:4222"]
                .map(|a| a.parse::<SocketAddr>().unwrap())
        );
    }
}
