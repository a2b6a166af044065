//! Who a request comes from: the peer address, or the client a trusted proxy names.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// Address of the peer of a connection, put into every request by the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer(pub std::net::SocketAddr);

/// The address a request comes from.
///
/// When the peer is one of `trusted` proxies, `X-Forwarded-For` is read from the right: the
/// first address that is not a trusted proxy is the client. A malformed header is ignored and
/// the peer is the client. Anyone else's `X-Forwarded-For` is ignored.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    if !is_in(peer, trusted) {
        return peer;
    }
    let mut client = peer;
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(value) = value.to_str() else {
            return peer;
        };
        for part in value.rsplit(',') {
            let Ok(address) = part.trim().parse::<IpAddr>() else {
                return peer;
            };
            client = canonical(address);
            if !is_in(client, trusted) {
                return client;
            }
        }
    }
    client
}

/// True when `address` is in one of `nets`.
pub fn is_in(address: IpAddr, nets: &[IpNet]) -> bool {
    let address = canonical(address);
    nets.iter().any(|net| net.contains(&address))
}

/// IPv4 addresses seen through an IPv6 socket (`::ffff:192.0.2.1`) as plain IPv4.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in xff {
            map.append("x-forwarded-for", value.parse().expect("header"));
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().expect("net")).collect()
    }

    #[test]
    fn forwarded_for_from_an_untrusted_peer_is_ignored() {
        let h = headers(&["203.0.113.9"]);
        assert_eq!(
            client_ip(ip("198.51.100.1"), &h, &nets(&["10.0.0.0/8"])),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn trusted_proxy_chain_is_read_from_the_right() {
        let h = headers(&["1.1.1.1, 203.0.113.9, 10.0.0.2"]);
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("203.0.113.9"));
        let h = headers(&["1.1.1.1", "203.0.113.9"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("203.0.113.9"));
    }

    #[test]
    fn malformed_forwarded_for_falls_back_to_the_peer() {
        let h = headers(&["not-an-ip"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &h, &nets(&["10.0.0.0/8"])),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn ipv4_mapped_ipv6_peers_match_ipv4_nets() {
        assert!(is_in(ip("::ffff:192.0.2.1"), &nets(&["192.0.2.0/24"])));
        assert_eq!(
            client_ip(ip("::ffff:192.0.2.1"), &HeaderMap::new(), &[]),
            ip("192.0.2.1")
        );
    }
}
