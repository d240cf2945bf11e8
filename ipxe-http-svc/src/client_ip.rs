//! Who is asking: the client address behind trusted reverse proxies.
//!
//! `/auto.ipxe` identifies a machine by the address its request comes from, and every
//! route gates on that address too. Behind a load balancer or ingress the TCP peer is the
//! proxy, so `X-Forwarded-For` has to be read — but only when the peer is a proxy the
//! operator named, or any client could claim to be any machine by sending the header.
//! The walk is right to left (the nearest hop appended last): trusted proxies are
//! skipped, and the first address that is not one of them is the client.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An address block, `10.0.0.0/8`, `fd00::/8`, or a single address.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an address block (expected e.g. 10.0.0.0/8, 192.168.1.7 or fd00::/8)")]
pub struct ParseCidrError(pub String);

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, normalize(ip)) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(self.prefix))
                };
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(self.prefix))
                };
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = ParseCidrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseCidrError(s.to_string());
        let t = s.trim();
        let (a, p) = match t.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (t, None),
        };
        let addr = normalize(a.parse::<IpAddr>().map_err(|_| err())?);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.parse::<u8>().ok().filter(|n| *n <= max).ok_or_else(err)?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// IPv4-mapped IPv6 (`::ffff:10.0.0.5`, what a dual-stack listener reports) as IPv4, so
/// registry lookups and CIDR checks see the address the machine has.
pub fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// The IPv4 address registry lookups use, if the client has one.
pub fn ipv4(ip: IpAddr) -> Option<Ipv4Addr> {
    match normalize(ip) {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    }
}

fn is_trusted(ip: IpAddr, trusted: &[Cidr]) -> bool {
    trusted.iter().any(|c| c.contains(ip))
}

/// One `X-Forwarded-For` element: `10.0.0.5`, `10.0.0.5:1234`, `2001:db8::1`,
/// `[2001:db8::1]:1234`, optionally quoted.
fn parse_hop(s: &str) -> Option<IpAddr> {
    let t = s.trim().trim_matches('"');
    if let Ok(ip) = t.parse::<IpAddr>() {
        return Some(normalize(ip));
    }
    if let Some(rest) = t.strip_prefix('[') {
        let (inner, _) = rest.split_once(']')?;
        return inner
            .parse::<Ipv6Addr>()
            .ok()
            .map(|a| normalize(IpAddr::V6(a)));
    }
    let (host, port) = t.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// The client address. `forwarded_for` are the `X-Forwarded-For` header values in the
/// order they appeared. Pure.
///
/// Untrusted peer → the peer, whatever the headers say. Trusted peer → the rightmost
/// address that is not a trusted proxy. An element that does not parse stops the walk
/// at the hop that wrote it (that proxy is then the client: it will match no machine,
/// which is the safe failure), and a header naming only trusted proxies yields the
/// leftmost of them.
pub fn client_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl IntoIterator<Item = &'a str>,
    trusted: &[Cidr],
) -> IpAddr {
    let peer = normalize(peer);
    if trusted.is_empty() || !is_trusted(peer, trusted) {
        return peer;
    }
    let hops: Vec<&str> = forwarded_for
        .into_iter()
        .flat_map(|v| v.split(','))
        .collect();
    let mut current = peer;
    for hop in hops.iter().rev() {
        if hop.trim().is_empty() {
            continue;
        }
        let Some(ip) = parse_hop(hop) else {
            return current;
        };
        if !is_trusted(ip, trusted) {
            return ip;
        }
        current = ip;
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cidrs(s: &[&str]) -> Vec<Cidr> {
        s.iter().map(|c| c.parse().unwrap()).collect()
    }

    #[test]
    fn cidr_parsing_and_matching() {
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(c.contains(ip("10.1.200.3")));
        assert!(!c.contains(ip("10.2.0.1")));
        assert!(c.contains(ip("::ffff:10.1.0.9")), "mapped IPv4 matches");
        let host: Cidr = "192.168.1.7".parse().unwrap();
        assert!(host.contains(ip("192.168.1.7")) && !host.contains(ip("192.168.1.8")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")) && !all.contains(ip("::1")));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0/8",
            "fd00::/129",
            "x",
            "10.0.0.0/-1",
            "10.0.0.0/",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        assert_eq!(
            "10.1.0.0/16".parse::<Cidr>().unwrap().to_string(),
            "10.1.0.0/16"
        );
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_the_header_says() {
        let t = cidrs(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(ip("192.0.2.9"), ["10.0.5.5"], &t),
            ip("192.0.2.9")
        );
        assert_eq!(
            client_ip(ip("192.0.2.9"), ["10.0.5.5"], &[]),
            ip("192.0.2.9")
        );
    }

    #[test]
    fn trusted_peer_hands_over_to_the_header() {
        let t = cidrs(&["127.0.0.1", "10.0.0.0/8"]);
        assert_eq!(
            client_ip(ip("127.0.0.1"), ["172.16.0.5"], &t),
            ip("172.16.0.5")
        );
        // Spoofed leftmost entries are ignored: the nearest untrusted hop wins.
        assert_eq!(
            client_ip(ip("127.0.0.1"), ["6.6.6.6, 172.16.0.5, 10.0.0.2"], &t),
            ip("172.16.0.5")
        );
        // Several header lines are one list, in order.
        assert_eq!(
            client_ip(ip("127.0.0.1"), ["6.6.6.6", "172.16.0.5", "10.0.0.2"], &t),
            ip("172.16.0.5")
        );
        // Ports and brackets.
        assert_eq!(
            client_ip(ip("127.0.0.1"), ["172.16.0.5:4711"], &t),
            ip("172.16.0.5")
        );
        assert_eq!(
            client_ip(ip("127.0.0.1"), ["[2001:db8::5]:4711"], &t),
            ip("2001:db8::5")
        );
        // No header: the proxy itself.
        assert_eq!(client_ip(ip("127.0.0.1"), [], &t), ip("127.0.0.1"));
        // Only proxies: the leftmost.
        assert_eq!(
            client_ip(ip("127.0.0.1"), ["10.0.0.3, 10.0.0.2"], &t),
            ip("10.0.0.3")
        );
        // Garbage stops the walk at the hop that wrote it.
        assert_eq!(
            client_ip(ip("127.0.0.1"), ["172.16.0.5, garbage, 10.0.0.2"], &t),
            ip("10.0.0.2")
        );
        // Mapped peers count as their IPv4 address.
        assert_eq!(
            client_ip(ip("::ffff:127.0.0.1"), ["172.16.0.5"], &t),
            ip("172.16.0.5")
        );
    }

    proptest! {
        #[test]
        fn never_panics_and_untrusted_peers_win(h in "\\PC{0,200}", a in any::<u32>()) {
            let peer = IpAddr::V4(Ipv4Addr::from(a));
            let t = cidrs(&["127.0.0.0/8"]);
            let got = client_ip(peer, [h.as_str()], &t);
            if !t[0].contains(peer) {
                prop_assert_eq!(got, peer);
            }
        }
    }
}
