//! The client address, from the socket peer or, behind trusted proxies, from `X-Forwarded-For`.

use std::net::IpAddr;
use std::str::FromStr;

use http::HeaderMap;

use super::ipnet::IpNet;

/// Header appended to by proxies, client first.
pub const X_FORWARDED_FOR: &str = "x-forwarded-for";

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(ip))
}

/// Parses one `X-Forwarded-For` entry: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:443`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = IpAddr::from_str(entry) {
        return Some(ip.to_canonical());
    }
    if let Some(rest) = entry.strip_prefix('[') {
        let (inside, _) = rest.split_once(']')?;
        return IpAddr::from_str(inside).ok().map(|ip| ip.to_canonical());
    }
    let (host, port) = entry.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    std::net::Ipv4Addr::from_str(host).ok().map(IpAddr::V4)
}

/// The client address.
///
/// When `peer` is not in `trusted`, `X-Forwarded-For` is ignored (anyone can send it) and the
/// peer is the client. Otherwise the entries are walked right to left, skipping trusted proxies;
/// the first untrusted entry is the client. An entry that does not parse stops the walk (the last
/// trusted hop is returned); when every entry is trusted, the left-most one is returned.
pub fn client_ip(peer: IpAddr, xff: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let Some(xff) = xff else {
        return peer;
    };
    let mut client = peer;
    for entry in xff.rsplit(',') {
        if entry.trim().is_empty() {
            continue;
        }
        let Some(ip) = parse_entry(entry) else {
            return client;
        };
        client = ip;
        if !is_trusted(ip, trusted) {
            return ip;
        }
    }
    client
}

/// [`client_ip`] with every `X-Forwarded-For` header of the request (joined in order).
pub fn client_ip_from_headers(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    if trusted.is_empty() {
        return peer.to_canonical();
    }
    let values: Vec<&str> = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if values.is_empty() {
        return client_ip(peer, None, trusted);
    }
    client_ip(peer, Some(&values.join(",")), trusted)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_ignores_xff() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(ip("203.0.113.7"), Some("1.1.1.1"), &trusted),
            ip("203.0.113.7")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some("1.1.1.1"), &[]),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn trusted_peer_takes_rightmost_untrusted() {
        let trusted = nets(&["10.0.0.0/8", "fd00::/8"]);
        let peer = ip("10.0.0.1");
        assert_eq!(client_ip(peer, None, &trusted), peer);
        assert_eq!(
            client_ip(peer, Some("6.6.6.6, 1.2.3.4, 10.0.0.5"), &trusted),
            ip("1.2.3.4")
        );
        assert_eq!(
            client_ip(peer, Some("[2001:db8::1]:443, 1.2.3.4:80"), &trusted),
            ip("1.2.3.4")
        );
        assert_eq!(
            client_ip(peer, Some("2001:db8::1"), &trusted),
            ip("2001:db8::1")
        );
        // All trusted: the left-most entry.
        assert_eq!(
            client_ip(peer, Some("10.9.9.9, 10.0.0.5"), &trusted),
            ip("10.9.9.9")
        );
        // Garbage stops the walk at the last trusted hop.
        assert_eq!(
            client_ip(peer, Some("1.2.3.4, garbage, 10.0.0.5"), &trusted),
            ip("10.0.0.5")
        );
        assert_eq!(client_ip(peer, Some("garbage"), &trusted), peer);
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.1"), Some("1.2.3.4"), &trusted),
            ip("1.2.3.4")
        );
    }

    #[test]
    fn joins_repeated_headers() {
        let trusted = nets(&["10.0.0.0/8"]);
        let mut headers = HeaderMap::new();
        headers.append(X_FORWARDED_FOR, "6.6.6.6".parse().unwrap());
        headers.append(X_FORWARDED_FOR, "1.2.3.4, 10.0.0.3".parse().unwrap());
        assert_eq!(
            client_ip_from_headers(ip("10.0.0.1"), &headers, &trusted),
            ip("1.2.3.4")
        );
    }
}
