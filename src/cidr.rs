//! Blocks of network addresses (`10.0.0.0/8`, `fd00::/8`), as
//! `--trusted-proxies` names a deployment's reverse proxies: parsed
//! strictly and matched by hand (no dependency for a dozen lines).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A block of addresses, `10.0.0.0/8` or `fd00::/8`: one entry of
/// `--trusted-proxies`. A bare address is a block of one (`/32`, `/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in the block. An IPv4 address written as IPv6
    /// (`::ffff:10.0.0.1`, as a dual-stack socket reports IPv4 peers) is
    /// matched as the IPv4 address it is, so it cannot slip past an IPv4
    /// block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.matches(ip) || self.matches(ip.to_canonical())
    }

    /// Whether `ip`, of the block's family, shares its first `prefix` bits.
    fn matches(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                (u32::from(net) ^ u32::from(ip)) & mask_v4(self.prefix) == 0
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                (u128::from(net) ^ u128::from(ip)) & mask_v6(self.prefix) == 0
            }
            _ => false,
        }
    }
}

/// The first `prefix` bits of 32 set (`prefix` at most 32).
fn mask_v4(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

/// The first `prefix` bits of 128 set (`prefix` at most 128).
fn mask_v6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

/// Strict on purpose: a typo in the list of proxies whose word is taken
/// for the client's address must stop the start, not widen or narrow the
/// list silently. So: an address as `std` parses it (no zone, no port, no
/// brackets), a decimal prefix length within the family's bits without
/// sign or leading zero, and no bits set past the prefix (`10.1.2.3/8` is
/// most likely a mistake for `/32`, or for `10.0.0.0/8`).
impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Cidr, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("an empty entry in the list of proxies".to_owned());
        }
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR block"))?;
        let bits: u8 = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => parse_prefix(p)
                .filter(|n| *n <= bits)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {bits}"))?,
        };
        let cidr = Cidr { network, prefix };
        let base = cidr.network_address();
        if base != network {
            return Err(format!(
                "{text:?} has bits set past its prefix length (did you mean {base}/{prefix}, \
                 or {network} alone?)"
            ));
        }
        Ok(cidr)
    }
}

/// A prefix length in plain decimal: `8`, `0`; not `08`, `+8` or ``.
fn parse_prefix(text: &str) -> Option<u8> {
    let plain = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if plain {
        text.parse().ok()
    } else {
        None
    }
}

impl Cidr {
    /// The block's address with the bits past the prefix cleared.
    fn network_address(&self) -> IpAddr {
        match self.network {
            IpAddr::V4(ip) => IpAddr::V4((u32::from(ip) & mask_v4(self.prefix)).into()),
            IpAddr::V6(ip) => IpAddr::V6((u128::from(ip) & mask_v6(self.prefix)).into()),
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn cidrs_are_parsed_strictly() {
        let parsed = |text: &str| text.parse::<Cidr>();
        assert_eq!(parsed("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parsed(" 127.0.0.1 ").unwrap().to_string(), "127.0.0.1/32");
        assert_eq!(parsed("::1").unwrap().to_string(), "::1/128");
        assert_eq!(parsed("fd00::/8").unwrap().to_string(), "fd00::/8");
        assert_eq!(parsed("0.0.0.0/0").unwrap().to_string(), "0.0.0.0/0");
        assert_eq!(parsed("::/0").unwrap().to_string(), "::/0");
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0.0/08",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "10.0.0.0/8/8",
            "10.0.0/8",
            "010.0.0.0/8",
            "10.1.2.3/8",
            "fd00::/129",
            "fd00::1/8",
            "[::1]",
            "fe80::1%eth0",
            "10.0.0.1:80",
            "localhost",
        ] {
            let error = parsed(bad).unwrap_err();
            assert!(error.contains(bad.trim()), "{bad}: {error}");
        }
    }

    #[test]
    fn cidrs_match_their_family_and_bits() {
        let block = |text: &str| text.parse::<Cidr>().unwrap();
        assert!(block("10.0.0.0/8").contains(ip("10.255.0.1")));
        assert!(!block("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(block("192.168.1.0/24").contains(ip("192.168.1.255")));
        assert!(!block("192.168.1.0/24").contains(ip("192.168.2.0")));
        assert!(block("127.0.0.2").contains(ip("127.0.0.2")));
        assert!(!block("127.0.0.2").contains(ip("127.0.0.3")));
        assert!(block("0.0.0.0/0").contains(ip("203.0.113.1")));
        assert!(!block("0.0.0.0/0").contains(ip("2001:db8::1")));
        assert!(block("::/0").contains(ip("2001:db8::1")));
        assert!(block("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
        assert!(!block("2001:db8::/32").contains(ip("2001:db9::1")));
        assert!(block("::1").contains(ip("::1")));
        assert!(!block("::1").contains(ip("127.0.0.1")));
        assert!(block("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")));
    }
}
