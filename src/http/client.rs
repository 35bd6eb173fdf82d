//! Who a request comes from: the client address the throttles and the
//! audit log key on.
//!
//! Behind a reverse proxy the socket peer is the proxy, so the client's
//! address comes from a forwarding header (`--client-ip-header`). Such a
//! header is a list that each proxy appends to, and a client may send the
//! header itself, as one line or several: only the right-hand end of the
//! list, written by proxies, can be believed. So every line of the header
//! is read, in order, as one list (RFC 9110 section 5.3), and the address
//! is taken from its right-hand end: the last entry, or with
//! `--trusted-proxies`, the first entry from the right that is not one of
//! the trusted proxies (nginx's `real_ip_recursive on`).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use rouille::Request;

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

/// How the client address is found: the header to read, if any, and the
/// proxies whose entries in it are skipped.
#[derive(Debug, Clone, Copy)]
pub struct Forwarding<'a> {
    /// `--client-ip-header`; `None` uses the socket peer.
    pub header: Option<&'a str>,
    /// `--trusted-proxies`; empty trusts the header from any peer and
    /// takes its last entry, as before the option existed.
    pub trusted: &'a [Cidr],
}

/// The client's address: the socket peer, or, behind a reverse proxy, the
/// address the configured header names (see the module's documentation).
pub fn client_ip(request: &Request, forwarding: Forwarding<'_>) -> IpAddr {
    let peer = request.remote_addr().ip();
    let Some(name) = forwarding.header else {
        return peer;
    };
    // `Request::header` would give the first line only: the one a client
    // is most free to write.
    let lines: Vec<&str> = request
        .headers()
        .filter(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
        .collect();
    from_chain(peer, &lines, forwarding.trusted)
}

/// The client address given the socket `peer` and the header's `lines` in
/// the order received.
///
/// Without trusted proxies: the last entry of all the lines together, or
/// the peer when that entry is not an address (never an entry further
/// left, which the client may have written).
///
/// With them: a peer that is not trusted is the client (anyone else may
/// write the header); else the entries are walked from the right, past
/// trusted addresses, and the first untrusted one is the client. If every
/// entry is trusted, the left-most is. An entry that is not an address
/// ends the walk at the last address read (the peer if none), as in
/// nginx: what lies left of it cannot be vouched for.
fn from_chain(peer: IpAddr, lines: &[&str], trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|cidr| cidr.contains(ip));
    if !trusted.is_empty() && !is_trusted(peer) {
        return peer;
    }
    // Right to left: the lines from the last, each line's entries from its
    // last; empty entries are no entries (RFC 9110 section 5.6.1).
    let entries = lines
        .iter()
        .rev()
        .flat_map(|line| line.rsplit(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty());
    let mut client = peer;
    for entry in entries {
        match entry.parse::<IpAddr>() {
            Ok(ip) => client = ip,
            Err(_) => break,
        }
        if trusted.is_empty() || !is_trusted(client) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| c.parse().unwrap()).collect()
    }

    fn request(headers: &[(&str, &str)]) -> Request {
        let headers = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Request::fake_http_from(
            "10.0.0.1:4000".parse().unwrap(),
            "GET",
            "/",
            headers,
            vec![],
        )
    }

    fn via(header: Option<&str>) -> Forwarding<'_> {
        Forwarding {
            header,
            trusted: &[],
        }
    }

    #[test]
    fn client_ip_uses_the_configured_header_only() {
        let xff = [("X-Forwarded-For", "6.6.6.6, 192.0.2.7")];
        assert_eq!(client_ip(&request(&xff), via(None)), ip("10.0.0.1"));
        assert_eq!(
            client_ip(&request(&xff), via(Some("X-Forwarded-For"))),
            ip("192.0.2.7")
        );
        assert_eq!(
            client_ip(&request(&xff), via(Some("X-Real-IP"))),
            ip("10.0.0.1")
        );
        let junk = [("X-Forwarded-For", "not an ip")];
        assert_eq!(
            client_ip(&request(&junk), via(Some("X-Forwarded-For"))),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn every_line_of_the_header_counts_and_the_last_entry_wins() {
        // A client's own line first, the proxy's line (HAProxy's `option
        // forwardfor`) second: the first line is not the client.
        let two = [
            ("X-Forwarded-For", "6.6.6.6"),
            ("Accept", "*/*"),
            ("x-forwarded-for", "192.0.2.7"),
        ];
        assert_eq!(
            client_ip(&request(&two), via(Some("X-Forwarded-For"))),
            ip("192.0.2.7")
        );
        let lines = ["6.6.6.6, 7.7.7.7", "", "192.0.2.7 ,"];
        assert_eq!(from_chain(ip("10.0.0.1"), &lines, &[]), ip("192.0.2.7"));
        // X-Real-IP: one address, the same rule.
        let real = [("X-Real-IP", "192.0.2.8")];
        assert_eq!(
            client_ip(&request(&real), via(Some("X-Real-IP"))),
            ip("192.0.2.8")
        );
    }

    #[test]
    fn trusted_hops_are_walked_past_from_the_right() {
        let trusted = cidrs(&["10.0.0.0/8", "fd00::/8"]);
        let peer = ip("10.0.0.1");
        let walk = |lines: &[&str]| from_chain(peer, lines, &trusted);
        assert_eq!(walk(&["6.6.6.6, 192.0.2.7, 10.1.1.1"]), ip("192.0.2.7"));
        assert_eq!(
            walk(&["6.6.6.6", "192.0.2.7", "10.1.1.1, 10.2.2.2"]),
            ip("192.0.2.7")
        );
        // The right-most untrusted, never one further left.
        assert_eq!(walk(&["10.9.9.9, 6.6.6.6, 192.0.2.7"]), ip("192.0.2.7"));
        // No header: the (trusted) peer itself.
        assert_eq!(walk(&[]), peer);
        // IPv6 hops and clients.
        assert_eq!(walk(&["2001:db8::1, fd00::2"]), ip("2001:db8::1"));
        assert_eq!(
            walk(&["6.6.6.6", "2001:db8::7", "fd12:3456::1"]),
            ip("2001:db8::7")
        );
    }

    #[test]
    fn when_every_hop_is_trusted_the_left_most_is_the_client() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        let lines = ["10.0.0.5, 10.0.0.6", "10.0.0.7"];
        assert_eq!(from_chain(ip("10.0.0.1"), &lines, &trusted), ip("10.0.0.5"));
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        let lines = ["192.0.2.7"];
        assert_eq!(
            from_chain(ip("203.0.113.5"), &lines, &trusted),
            ip("203.0.113.5")
        );
        let forwarding = Forwarding {
            header: Some("X-Forwarded-For"),
            trusted: &trusted,
        };
        let from = |peer: &str| {
            Request::fake_http_from(
                peer.parse().unwrap(),
                "GET",
                "/",
                vec![("X-Forwarded-For".to_owned(), "192.0.2.7".to_owned())],
                vec![],
            )
        };
        assert_eq!(
            client_ip(&from("203.0.113.5:1"), forwarding),
            ip("203.0.113.5")
        );
        assert_eq!(client_ip(&from("10.0.0.1:1"), forwarding), ip("192.0.2.7"));
        // An IPv4 peer on a dual-stack socket is matched as IPv4.
        assert_eq!(
            client_ip(&from("[::ffff:10.0.0.1]:1"), forwarding),
            ip("192.0.2.7")
        );
    }

    #[test]
    fn garbage_ends_the_walk_at_the_last_address_read() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.1");
        let walk = |lines: &[&str]| from_chain(peer, lines, &trusted);
        assert_eq!(walk(&["192.0.2.7, junk, 10.0.0.9"]), ip("10.0.0.9"));
        assert_eq!(walk(&["192.0.2.7, 10.0.0.9:443"]), peer);
        assert_eq!(walk(&["unknown"]), peer);
        assert_eq!(walk(&["192.0.2.7, [2001:db8::1]"]), peer);
        // Without trusted proxies, only the last entry is ever read.
        let plain = |lines: &[&str]| from_chain(peer, lines, &[]);
        assert_eq!(plain(&["192.0.2.7, junk"]), peer);
        assert_eq!(plain(&["junk, 192.0.2.7"]), ip("192.0.2.7"));
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
