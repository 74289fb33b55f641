//! The client's address, for the rate limits.
//!
//! `X-Forwarded-For` is believed only when the connection comes from a trusted proxy
//! (`TRUSTED_PROXIES`: addresses or CIDR blocks). Anyone can send the header, so without that
//! setting it is ignored and the peer address counts. With it, the header's entries are read
//! from the right (the nearest hop first), skipping trusted proxies: the first other address is
//! the client. Behind a proxy that is not listed, every client shares the proxy's address and
//! its limits — set `TRUSTED_PROXIES` there.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::HeaderMap;
use ipnet::IpNet;

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// An entry of `TRUSTED_PROXIES` that is neither an address nor a CIDR block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or a CIDR block (e.g. 10.0.0.0/8)")]
pub struct BadProxy(pub String);

impl TrustedProxies {
    /// Parses a comma-separated list such as `127.0.0.1, 10.0.0.0/8, fd00::/8`.
    pub fn parse(text: &str) -> Result<TrustedProxies, BadProxy> {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| BadProxy(s.to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: the peer's, or the one a trusted proxy forwarded.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Ok(ip) = hop.parse::<IpAddr>() else {
                // Not an address (a proxy's obfuscated name, or junk): stop at the last hop
                // we could vouch for.
                break;
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// The peer address of a request, when the server was started with connect info (unknown
/// peers all count as 0.0.0.0).
pub fn peer(info: Option<&ConnectInfo<SocketAddr>>) -> IpAddr {
    info.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |ConnectInfo(addr)| {
        addr.ip()
    })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(xff: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", HeaderValue::from_static(v));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_header_counts_only_from_a_trusted_proxy() {
        let none = TrustedProxies::default();
        let h = headers(&["203.0.113.7"]);
        assert_eq!(none.client(ip("10.0.0.2"), &h), ip("10.0.0.2"));

        let proxies = TrustedProxies::parse("10.0.0.0/8, 127.0.0.1").unwrap();
        assert_eq!(proxies.client(ip("10.0.0.2"), &h), ip("203.0.113.7"));
        assert_eq!(proxies.client(ip("192.0.2.1"), &h), ip("192.0.2.1"));
        // A client's forged entries sit left of what the trusted proxies appended.
        let h = headers(&["1.2.3.4, 203.0.113.7", "10.0.0.3"]);
        assert_eq!(proxies.client(ip("10.0.0.2"), &h), ip("203.0.113.7"));
        // No header, or junk: the proxy (or the last trusted hop) counts.
        assert_eq!(
            proxies.client(ip("10.0.0.2"), &HeaderMap::new()),
            ip("10.0.0.2")
        );
        let h = headers(&["unknown, 10.0.0.9"]);
        assert_eq!(proxies.client(ip("10.0.0.2"), &h), ip("10.0.0.9"));
        // IPv4-mapped peers match IPv4 blocks.
        let mapped = IpAddr::V6(std::net::Ipv4Addr::new(10, 1, 1, 1).to_ipv6_mapped());
        assert_eq!(
            proxies.client(mapped, &headers(&["203.0.113.7"])),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn parse_errors_name_the_entry() {
        assert_eq!(
            TrustedProxies::parse("10.0.0.1, nope"),
            Err(BadProxy("nope".into()))
        );
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        assert!(TrustedProxies::parse("::1, fd00::/8").is_ok());
    }
}
