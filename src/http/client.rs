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

use std::net::IpAddr;

use rouille::Request;

pub use crate::cidr::Cidr;

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
}
