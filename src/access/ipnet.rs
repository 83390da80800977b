//! IP networks in CIDR notation, for trusted proxies (`--trusted-proxies`) and the
//! `ClientIP` access rule.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IP network in CIDR notation (`10.0.0.0/8`, `fd00::/8`); a bare address is a single host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// A CIDR that does not parse: the text, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CIDR `{input}`: {reason}")]
pub struct IpNetParseError {
    pub input: String,
    pub reason: String,
}

impl IpNet {
    /// The network `addr/prefix`; host bits are cleared. `None` when the prefix is too long.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let addr = addr.to_canonical();
        let max = max_prefix(addr);
        (prefix <= max).then(|| IpNet {
            addr: mask(addr, prefix),
            prefix,
        })
    }

    /// Whether `ip` is inside the network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.addr
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

impl FromStr for IpNet {
    type Err = IpNetParseError;

    /// `ADDRESS` or `ADDRESS/PREFIX`. An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) with
    /// a prefix of 96 or more is the IPv4 network it maps (`10.0.0.0/8`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| IpNetParseError {
            input: s.to_string(),
            reason,
        };
        let text = s.trim();
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr = IpAddr::from_str(addr_text)
            .map_err(|_| err(format!("`{addr_text}` is not an IPv4 or IPv6 address")))?;
        let max = max_prefix(addr);
        let prefix = match prefix_text {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|n| *n <= max && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| {
                    err(format!(
                        "prefix length `{p}` must be a number from 0 to {max}"
                    ))
                })?,
        };
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if prefix >= 96 => (IpAddr::V4(v4), prefix - 96),
                _ => (addr, prefix),
            },
            IpAddr::V4(_) => (addr, prefix),
        };
        Ok(IpNet {
            addr: mask(addr, prefix),
            prefix,
        })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((bits & m).into())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn networks_parse_and_contain() {
        let net: IpNet = "10.1.2.3/8".parse().unwrap();
        assert_eq!(net.to_string(), "10.0.0.0/8");
        assert!(net.contains("10.200.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.200.0.1".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        let mapped: IpNet = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(mapped, net);
        let host: IpNet = "192.168.1.1".parse().unwrap();
        assert_eq!(host.prefix(), 32);
        assert!(host.contains("192.168.1.1".parse().unwrap()));
        assert!(!host.contains("192.168.1.2".parse().unwrap()));
        let v6: IpNet = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        assert!(!all.contains("::1".parse().unwrap()));
        for bad in [
            "10.0.0.0/33",
            "fd00::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "nope",
            "10.0.0.0/-1",
            "10.0.0.0/0008",
            "",
        ] {
            let error = bad.parse::<IpNet>().unwrap_err().to_string();
            assert!(
                error.starts_with(&format!("invalid CIDR `{bad}`: ")),
                "{error}"
            );
        }
    }
}
