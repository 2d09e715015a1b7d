//! Who is asking: the client's address as the flood limits count it.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::http::HeaderMap;

use crate::state::AppState;

/// The client's address as the flood limits count it; `X-Forwarded-For`
/// only when the operator says a proxy sets it.
pub fn client_ip(state: &AppState, headers: &HeaderMap, peer: SocketAddr) -> String {
    if state.config.trust_proxy_headers
        && let Some(ip) = forwarded_client(headers)
    {
        return limited_address(ip);
    }
    limited_address(peer.ip())
}

/// The client our proxy saw: the rightmost `X-Forwarded-For` entry of the
/// last header line (a proxy may add a line rather than append); the
/// entries before it are whatever the client claimed.
fn forwarded_client(headers: &HeaderMap) -> Option<IpAddr> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .map(str::trim)
        .and_then(|v| v.parse::<IpAddr>().ok())
}

/// An IPv4 address as it is; an IPv6 address as its /64 network, since one
/// subscriber usually holds a whole /64 (counting single IPv6 addresses
/// would give a flood 2^64 fresh starts).
fn limited_address(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                let net = Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                format!("{net}/64")
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forwarded_client_is_what_our_proxy_wrote_last() {
        let mut headers = HeaderMap::new();
        assert_eq!(forwarded_client(&headers), None);
        headers.append("x-forwarded-for", "6.6.6.6".parse().unwrap());
        headers.append(
            "x-forwarded-for",
            "198.51.100.1, 203.0.113.7".parse().unwrap(),
        );
        assert_eq!(
            forwarded_client(&headers),
            Some("203.0.113.7".parse().unwrap())
        );
        headers.append("x-forwarded-for", "not an address".parse().unwrap());
        assert_eq!(forwarded_client(&headers), None);
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_network() {
        let at = |s: &str| limited_address(s.parse().unwrap());
        assert_eq!(at("203.0.113.7"), "203.0.113.7");
        assert_eq!(at("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(at("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(at("2001:db8:1:2:bbbb::9"), at("2001:db8:1:2::1"));
        assert_ne!(at("2001:db8:1:3::1"), at("2001:db8:1:2::1"));
    }
}
