//! Anti-forgery tokens for the pages' forms (OWASP's signed double-submit
//! cookie).
//!
//! Every page gives the browser a random cookie of its own (`authd_csrf`,
//! `__Host-authd_csrf` when cookies are `Secure`) and every form a hidden
//! token: an HMAC under a key derived from the server key, over that
//! cookie, the session cookie the browser presented (if any) and the time
//! the token was made. A POST passes only with a token that matches its
//! own cookies and is less than [`LIFETIME`] old. A page elsewhere can make
//! a browser send the cookies, but can neither read them nor the token
//! (no CORS on `/ui/*`), and cannot make a token without the server key.
//! Binding the session too means a token shown to one signed-in session
//! is worth nothing to another, even if an attacker managed to plant the
//! random cookie (subdomain cookie tossing, outside the `__Host-` prefix).
//!
//! Nothing is stored on the server, so several instances on one database
//! accept each other's tokens (they share the server key), and a key
//! rotation keeps open forms working: the previous key still verifies.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

use crate::server_key::{ServerKey, KEY_BYTES};
use crate::token::Token;

/// The purpose label the form key is derived under ([`ServerKey::derive`]).
const PURPOSE: &str = "ui-form";

/// How long a form stays valid once shown: a form left open over a long
/// lunch still works; one from yesterday is shown again, filled in where
/// it can be, with a fresh token.
pub const LIFETIME_SECS: u64 = 12 * 3600;

/// A token made up to this far in the future is still accepted: several
/// instances' clocks are never exactly alike.
const SKEW_SECS: u64 = 60;

/// Bytes of the MAC kept in a token (all of SHA-256's).
const MAC_BYTES: usize = 32;

/// The keys forms are signed and checked with: the current one first,
/// then the previous one during a server key rotation. Its `Debug` shows
/// nothing.
#[derive(Clone)]
pub struct FormKeys(Vec<[u8; KEY_BYTES]>);

impl fmt::Debug for FormKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FormKeys(<redacted>)")
    }
}

/// What a token is bound to: the browser's form cookie and the session
/// cookie it presented, as sent (a stale session's too: it is the same
/// when the form comes back).
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    pub form_cookie: &'a str,
    pub session: Option<&'a str>,
}

impl FormKeys {
    /// The form keys of `key`.
    pub fn from_server_key(key: &ServerKey) -> FormKeys {
        FormKeys(key.derive_all(PURPOSE))
    }

    /// A token for a form shown now (`now`: Unix seconds) to `binding`.
    pub fn issue(&self, binding: Binding<'_>, now: u64) -> String {
        let mut bytes = Vec::with_capacity(8 + MAC_BYTES);
        bytes.extend_from_slice(&now.to_be_bytes());
        if let Some(key) = self.0.first() {
            bytes.extend_from_slice(&mac(key, binding, now));
        }
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Whether `token` was issued by [`FormKeys::issue`] under one of the
    /// keys, for `binding`, less than [`LIFETIME_SECS`] before `now`. The
    /// MAC is compared in constant time.
    pub fn verify(&self, token: &str, binding: Binding<'_>, now: u64) -> bool {
        // Shape first: nothing oversized is decoded.
        if token.len() > 64 {
            return false;
        }
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(token) else {
            return false;
        };
        let Some((time, tag)) = bytes.split_first_chunk::<8>() else {
            return false;
        };
        let issued = u64::from_be_bytes(*time);
        let fresh =
            issued <= now.saturating_add(SKEW_SECS) && now.saturating_sub(issued) < LIFETIME_SECS;
        fresh
            && tag.len() == MAC_BYTES
            && self.0.iter().any(|key| {
                let Ok(mut check) = Hmac::<Sha256>::new_from_slice(key) else {
                    return false;
                };
                feed(&mut check, binding, issued);
                check.verify_slice(tag).is_ok()
            })
    }
}

/// A new value for the form cookie: as random as a session token.
pub fn new_form_cookie() -> Result<Token, crate::token::RandomError> {
    Token::generate()
}

fn mac(key: &[u8; KEY_BYTES], binding: Binding<'_>, issued: u64) -> [u8; MAC_BYTES] {
    // HMAC takes a key of any length: this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return [0; MAC_BYTES];
    };
    feed(&mut mac, binding, issued);
    mac.finalize().into_bytes().into()
}

/// The MAC's input: each part length-prefixed, so no two bindings run
/// together into the same bytes.
fn feed(mac: &mut Hmac<Sha256>, binding: Binding<'_>, issued: u64) {
    let session = binding.session.unwrap_or("");
    for part in [binding.form_cookie.as_bytes(), session.as_bytes()] {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac.update(&[u8::from(binding.session.is_some())]);
    mac.update(&issued.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(current: u8, previous: Option<u8>) -> FormKeys {
        FormKeys::from_server_key(&ServerKey::new([current; 32], previous.map(|p| [p; 32])))
    }

    const NOW: u64 = 1_800_000_000;

    fn bound<'a>(cookie: &'a str, session: Option<&'a str>) -> Binding<'a> {
        Binding {
            form_cookie: cookie,
            session,
        }
    }

    #[test]
    fn a_token_passes_only_for_its_own_cookies_key_and_time() {
        let keys = keys(1, None);
        let binding = bound("cookie-a", Some("session-a"));
        let token = keys.issue(binding, NOW);
        assert!(keys.verify(&token, binding, NOW));
        assert!(keys.verify(&token, binding, NOW + LIFETIME_SECS - 1));
        assert!(!keys.verify(&token, binding, NOW + LIFETIME_SECS));
        // From the future: only within the clock skew.
        assert!(keys.verify(&token, binding, NOW - SKEW_SECS));
        assert!(!keys.verify(&token, binding, NOW - SKEW_SECS - 1));
        for other in [
            bound("cookie-b", Some("session-a")),
            bound("cookie-a", Some("session-b")),
            bound("cookie-a", None),
            bound("cookie-as", Some("ession-a")),
            bound("cookie-a", Some("")),
        ] {
            assert!(!keys.verify(&token, other, NOW), "{other:?}");
        }
        assert!(!self::keys(2, None).verify(&token, binding, NOW));
        for bad in ["", "x", "%%%", &"A".repeat(65), &token[..token.len() - 1]] {
            assert!(!keys.verify(bad, binding, NOW), "{bad}");
        }
        // Another time in the token breaks its MAC.
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        bytes[7] ^= 1;
        assert!(!keys.verify(&URL_SAFE_NO_PAD.encode(bytes), binding, NOW));
    }

    #[test]
    fn a_rotation_keeps_forms_signed_with_the_previous_key() {
        let binding = bound("c", None);
        let old = keys(1, None).issue(binding, NOW);
        let rotated = keys(2, Some(1));
        assert!(rotated.verify(&old, binding, NOW));
        assert!(keys(2, None).issue(binding, NOW) == rotated.issue(binding, NOW));
        assert!(!keys(3, Some(2)).verify(&old, binding, NOW));
        assert_eq!(format!("{rotated:?}"), "FormKeys(<redacted>)");
    }
}
