//! The client's IP address, behind reverse proxies we trust.
//!
//! Admission (per-address caps, bans) is keyed on the client's IP. Behind a
//! reverse proxy (nginx, a load balancer) every TCP peer is the proxy, so
//! the client's address has to come from the header the proxy adds:
//! `X-Forwarded-For` (de facto) or `Forwarded` (RFC 7239). Anyone can send
//! those headers, so they are read only when the TCP peer is inside one of
//! the `--trusted-proxies` networks; with none configured (the default)
//! they are never read, and the peer is the client.
//!
//! Each proxy appends the address it received the request from to the
//! right of the list, so only the right end can be believed: the address
//! taken is the rightmost one that is not itself a trusted proxy (RFC 7239
//! §5.2 and §8.1; MDN's "X-Forwarded-For, selecting an IP address").
//! Anything to its left was written by the client and may be forged. An
//! entry that is not an address (`unknown`, an obfuscated `_node`, junk)
//! stops the walk at the nearest trusted proxy, which is then the address
//! used: forging an unparsable entry can only put the forger behind the
//! proxy's own per-address cap, never under someone else's address.
//!
//! Only one header is read, the one the proxy writes (`--forwarded-header`,
//! `X-Forwarded-For` by default as nginx's `$proxy_add_x_forwarded_for`
//! writes): a proxy passes the header it does not manage through untouched,
//! so reading the other one would take a client-written address as the
//! proxy's.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use clap::ValueEnum;
use ipnet::IpNet;

/// The header a trusted proxy writes the client's address into.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`.
    #[default]
    #[value(name = "x-forwarded-for")]
    XForwardedFor,
    /// `Forwarded: for=client, for="[2001:db8::1]:4711";proto=https` (RFC 7239).
    Forwarded,
}

/// Resolves a connection's client address from its TCP peer and headers.
#[derive(Debug, Clone, Default)]
pub struct ClientAddr {
    proxies: Vec<IpNet>,
    header: ForwardedHeader,
}

impl ClientAddr {
    /// Trusts `proxies` (none: headers are never read) to write `header`.
    pub fn new(proxies: Vec<IpNet>, header: ForwardedHeader) -> Self {
        Self { proxies, header }
    }

    /// Whether `ip` is inside a trusted proxy network.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.proxies.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: `peer` itself unless it is a trusted proxy,
    /// else the rightmost forwarded address that is not a trusted proxy.
    /// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, a dual-stack
    /// listener's peers) come back as IPv4.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.is_trusted(client) {
            return client;
        }
        let name = match self.header {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        };
        // Repeated header lines are one comma-separated list, in order
        // (RFC 9110 §5.3).
        let hops: Vec<&str> = headers
            .get_all(name)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .filter_map(|hop| std::str::from_utf8(hop).ok())
            .collect();
        for hop in hops.iter().rev() {
            let node = match self.header {
                ForwardedHeader::XForwardedFor => Some(*hop),
                ForwardedHeader::Forwarded => forwarded_for(hop),
            };
            match node.and_then(parse_node) {
                Some(ip) if self.is_trusted(ip) => client = ip,
                Some(ip) => return ip,
                None => return client,
            }
        }
        // Every hop is a trusted proxy: the leftmost is as far as we can see.
        client
    }
}

/// Parses a `--trusted-proxies` entry: a CIDR network (`10.0.0.0/8`,
/// `fd00::/8`) or a single address.
///
/// # Errors
/// The entry and what was expected.
pub fn parse_proxy(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map(|net| net.trunc())
        .map_err(|_| format!("{s:?} is not a CIDR network (like 10.0.0.0/8) or an IP address"))
}

/// The `for=` value of one `Forwarded` element (`for=a;proto=b;by=c`),
/// parameter names being case-insensitive (RFC 7239 §4).
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        name.trim().eq_ignore_ascii_case("for").then_some(value)
    })
}

/// An address from a node: `192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`,
/// `[2001:db8::1]`, `"[2001:db8::1]:4711"`. `None` for `unknown`,
/// obfuscated identifiers and anything else.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim().trim_matches('"');
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = node.parse::<SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    let inner = node.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn resolver(proxies: &[&str], header: ForwardedHeader) -> ClientAddr {
        let nets = proxies
            .iter()
            .map(|p| parse_proxy(p).expect("test network"))
            .collect();
        ClientAddr::new(nets, header)
    }

    fn with(name: &'static str, values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn headers_are_ignored_unless_the_peer_is_trusted() {
        let h = with("x-forwarded-for", &["203.0.113.9"]);
        let none = ClientAddr::default();
        assert_eq!(none.resolve(ip("127.0.0.1"), &h), ip("127.0.0.1"));
        let other = resolver(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        assert_eq!(other.resolve(ip("192.0.2.7"), &h), ip("192.0.2.7"));
        assert_eq!(other.resolve(ip("10.1.2.3"), &h), ip("203.0.113.9"));
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let r = resolver(&["10.0.0.0/8", "127.0.0.1"], ForwardedHeader::XForwardedFor);
        // A forged entry on the left is not believed.
        let h = with("x-forwarded-for", &["6.6.6.6, 198.51.100.4, 10.0.0.2"]);
        assert_eq!(r.resolve(ip("127.0.0.1"), &h), ip("198.51.100.4"));
        // Repeated lines are one list.
        let h = with("x-forwarded-for", &["6.6.6.6", "198.51.100.4:5555"]);
        assert_eq!(r.resolve(ip("10.9.9.9"), &h), ip("198.51.100.4"));
        // Only proxies: the leftmost.
        let h = with("x-forwarded-for", &["10.0.0.3, 10.0.0.2"]);
        assert_eq!(r.resolve(ip("127.0.0.1"), &h), ip("10.0.0.3"));
        // An unparsable hop stops at the nearest trusted proxy.
        let h = with("x-forwarded-for", &["198.51.100.4, unknown, 10.0.0.2"]);
        assert_eq!(r.resolve(ip("127.0.0.1"), &h), ip("10.0.0.2"));
        // No header: the proxy itself.
        assert_eq!(
            r.resolve(ip("127.0.0.1"), &HeaderMap::new()),
            ip("127.0.0.1")
        );
        // A dual-stack listener's mapped peer is trusted as IPv4.
        let h = with("x-forwarded-for", &["[2001:db8::7]"]);
        assert_eq!(r.resolve(ip("::ffff:127.0.0.1"), &h), ip("2001:db8::7"));
    }

    #[test]
    fn forwarded_is_parsed_per_rfc_7239() {
        let r = resolver(&["127.0.0.0/8"], ForwardedHeader::Forwarded);
        let h = with(
            "forwarded",
            &[r#"for=6.6.6.6, For="[2001:db8:cafe::17]:4711";proto=https;by=127.0.0.1"#],
        );
        assert_eq!(r.resolve(ip("127.0.0.1"), &h), ip("2001:db8:cafe::17"));
        let h = with("forwarded", &["for=192.0.2.60;proto=http, for=127.0.0.5"]);
        assert_eq!(r.resolve(ip("127.0.0.1"), &h), ip("192.0.2.60"));
        let h = with("forwarded", &["for=_hidden"]);
        assert_eq!(r.resolve(ip("127.0.0.1"), &h), ip("127.0.0.1"));
        // The header not configured is never read.
        let h = with("x-forwarded-for", &["192.0.2.60"]);
        assert_eq!(r.resolve(ip("127.0.0.1"), &h), ip("127.0.0.1"));
    }

    #[test]
    fn proxies_parse_as_networks_or_addresses() {
        assert_eq!(
            parse_proxy("10.1.2.3/8").expect("net"),
            "10.0.0.0/8".parse::<IpNet>().expect("net")
        );
        assert!(parse_proxy("::1").expect("addr").contains(&ip("::1")));
        assert!(parse_proxy("10.0.0.0/33").is_err());
        assert!(parse_proxy("proxy.internal").is_err());
    }
}
