//! Device cookies: OWASP's "device cookie" pattern for login throttling.
//!
//! A browser that has logged in to an account holds a cookie naming a
//! random device nonce, with a MAC proving that authd issued it for that
//! account. A login that presents one for the account typed counts its
//! failures against that device's own budget instead of the budget the
//! account shares with every device it does not know
//! ([`Limits`](crate::auth::limits::Limits)): guesses from elsewhere lock
//! out unknown devices only, never the owner's own browser, and a cookie
//! is worth nothing on another account.
//!
//! The value is `base64url(nonce || HMAC-SHA-256(key, nonce || account))`:
//! 16 random bytes and a 32-byte tag, 64 characters. The account is the
//! typed email as the throttles normalise it, so a cookie is checked with
//! no store read, before the attempt reserves its place. The key is
//! derived from the server key under its own purpose label; a cookie
//! verifies under the current key or, during a rotation, the previous one,
//! and a renewed cookie (same nonce, so the same budget) is signed with
//! the current key. Tags are compared in constant time.

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

use crate::server_key::{ServerKey, KEY_BYTES};
use crate::token::{fill_random, RandomError};

/// The server key's purpose label for device cookies.
pub const PURPOSE: &str = "device_cookie";
/// Random bytes naming a device.
pub const NONCE_BYTES: usize = 16;
/// Bytes of the tag (HMAC-SHA-256).
const TAG_BYTES: usize = 32;
/// Length of a cookie's value: base64 of 48 bytes, without padding.
pub const COOKIE_CHARS: usize = 64;
/// How long a browser keeps its device cookie: a year, renewed at every
/// successful login.
pub const LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// One device, as its cookie names it: the nonce its failure budget is
/// keyed on. Only [`DeviceKeys::verify`] and [`DeviceKeys::issue`] make
/// one, so holding a `Device` means its cookie was genuine.
#[derive(Clone, PartialEq, Eq)]
pub struct Device([u8; NONCE_BYTES]);

impl Device {
    /// The nonce, for the key of the device's throttle entry.
    pub fn nonce(&self) -> &[u8; NONCE_BYTES] {
        &self.0
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Device(<redacted>)")
    }
}

/// A device cookie's value, as sent or received: shaped like one authd
/// issues (whether it is genuine is [`DeviceKeys::verify`]'s to say).
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceCookie(String);

impl DeviceCookie {
    /// Accepts a client-supplied value only if it has the exact shape of
    /// one authd issues, so an oversized or malformed value costs nothing.
    pub fn parse(raw: &str) -> Option<DeviceCookie> {
        let well_formed = raw.len() == COOKIE_CHARS
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        well_formed.then(|| DeviceCookie(raw.to_owned()))
    }

    /// The text to give to the client.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DeviceCookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeviceCookie(<redacted>)")
    }
}

/// The keys that sign device cookies: the current one, and during a
/// rotation the previous one, which still verifies.
#[derive(Clone)]
pub struct DeviceKeys {
    current: [u8; KEY_BYTES],
    previous: Option<[u8; KEY_BYTES]>,
}

impl DeviceKeys {
    /// Keys from their parts.
    pub fn new(current: [u8; KEY_BYTES], previous: Option<[u8; KEY_BYTES]>) -> DeviceKeys {
        DeviceKeys { current, previous }
    }

    /// The device keys derived from the server key (and from its previous
    /// key during a rotation).
    pub fn from_server_key(key: &ServerKey) -> DeviceKeys {
        let all = key.derive_all(PURPOSE);
        DeviceKeys {
            current: key.derive(PURPOSE),
            previous: all.get(1).copied(),
        }
    }

    /// A cookie for a new device of `account`, from a fresh nonce.
    pub fn issue(&self, account: &[u8]) -> Result<(Device, DeviceCookie), RandomError> {
        let mut nonce = [0u8; NONCE_BYTES];
        fill_random(&mut nonce)?;
        let device = Device(nonce);
        let cookie = self.sign(account, &device);
        Ok((device, cookie))
    }

    /// The cookie of `device` for `account`, signed with the current key:
    /// what renews a cookie (the same device, the same budget).
    pub fn sign(&self, account: &[u8], device: &Device) -> DeviceCookie {
        let mut value = [0u8; NONCE_BYTES + TAG_BYTES];
        value[..NONCE_BYTES].copy_from_slice(&device.0);
        if let Some(mac) = mac(&self.current, &device.0, account) {
            value[NONCE_BYTES..].copy_from_slice(&mac.finalize().into_bytes());
        }
        DeviceCookie(URL_SAFE_NO_PAD.encode(value))
    }

    /// The device `cookie` names, if authd issued it for `account` under
    /// the current key or the previous one; `None` for anything else (a
    /// cookie of another account, a tampered or forged one, one signed
    /// with a retired key).
    pub fn verify(&self, account: &[u8], cookie: &DeviceCookie) -> Option<Device> {
        let bytes = URL_SAFE_NO_PAD.decode(cookie.as_str()).ok()?;
        if bytes.len() != NONCE_BYTES + TAG_BYTES {
            return None;
        }
        let (nonce, tag) = bytes.split_at(NONCE_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().ok()?;
        // Every key is tried, so the time does not say which one matched.
        let mut genuine = false;
        for key in std::iter::once(&self.current).chain(self.previous.as_ref()) {
            if let Some(mac) = mac(key, &nonce, account) {
                genuine |= mac.verify_slice(tag).is_ok();
            }
        }
        genuine.then_some(Device(nonce))
    }
}

impl fmt::Debug for DeviceKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeviceKeys(<redacted>)")
    }
}

/// The MAC of `nonce || account` under `key`, not yet finalised. The
/// nonce has a fixed length, so the pair reads back one way only.
fn mac(key: &[u8; KEY_BYTES], nonce: &[u8; NONCE_BYTES], account: &[u8]) -> Option<Hmac<Sha256>> {
    // HMAC takes a key of any length: this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
    mac.update(nonce);
    mac.update(account);
    Some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANN: &[u8] = b"ann@x.io";

    fn keys() -> DeviceKeys {
        DeviceKeys::new([1; KEY_BYTES], None)
    }

    /// `cookie` with the character at `at` replaced by another of the
    /// alphabet.
    fn altered(cookie: &DeviceCookie, at: usize) -> DeviceCookie {
        let mut text = cookie.as_str().as_bytes().to_vec();
        text[at] = if text[at] == b'A' { b'B' } else { b'A' };
        DeviceCookie::parse(std::str::from_utf8(&text).unwrap()).unwrap()
    }

    #[test]
    fn an_issued_cookie_verifies_for_its_account_only() {
        let keys = keys();
        let (device, cookie) = keys.issue(ANN).unwrap();
        assert_eq!(cookie.as_str().len(), COOKIE_CHARS);
        assert_eq!(DeviceCookie::parse(cookie.as_str()), Some(cookie.clone()));
        assert_eq!(keys.verify(ANN, &cookie), Some(device.clone()));
        assert_eq!(keys.verify(b"bob@x.io", &cookie), None);
        assert_eq!(keys.verify(b"ann@x.i", &cookie), None);
        assert_eq!(keys.verify(b"", &cookie), None);
        // Each issue is a new device.
        let (other, again) = keys.issue(ANN).unwrap();
        assert_ne!(other, device);
        assert_ne!(again, cookie);
    }

    #[test]
    fn a_tampered_or_forged_cookie_is_refused() {
        let keys = keys();
        let (_, cookie) = keys.issue(ANN).unwrap();
        // Any character changed, in the nonce or in the tag.
        for at in 0..COOKIE_CHARS {
            assert_eq!(keys.verify(ANN, &altered(&cookie, at)), None, "{at}");
        }
        // The start of one genuine cookie with the end of another.
        let (_, second) = keys.issue(ANN).unwrap();
        let spliced = format!("{}{}", &cookie.as_str()[..22], &second.as_str()[22..]);
        assert_eq!(
            keys.verify(ANN, &DeviceCookie::parse(&spliced).unwrap()),
            None
        );
        // Made up, or signed with another key.
        let forged = DeviceCookie::parse(&"A".repeat(COOKIE_CHARS)).unwrap();
        assert_eq!(keys.verify(ANN, &forged), None);
        let (_, foreign) = DeviceKeys::new([2; KEY_BYTES], None).issue(ANN).unwrap();
        assert_eq!(keys.verify(ANN, &foreign), None);
    }

    #[test]
    fn only_values_shaped_like_a_cookie_are_read() {
        let (_, cookie) = keys().issue(ANN).unwrap();
        for bad in [
            "",
            &cookie.as_str()[1..],
            &format!("{}A", cookie.as_str()),
            &format!("{}=", &cookie.as_str()[1..]),
            &format!("{}+", &cookie.as_str()[1..]),
            &"é".repeat(32),
            &"A".repeat(10_000),
        ] {
            assert_eq!(DeviceCookie::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_previous_key_verifies_during_a_rotation_and_renewal_signs_with_the_new() {
        let old = ServerKey::new([3; KEY_BYTES], None);
        let rotating = ServerKey::new([4; KEY_BYTES], Some([3; KEY_BYTES]));
        let done = ServerKey::new([4; KEY_BYTES], None);
        let before = DeviceKeys::from_server_key(&old);
        let during = DeviceKeys::from_server_key(&rotating);
        let after = DeviceKeys::from_server_key(&done);
        let (device, cookie) = before.issue(ANN).unwrap();
        assert_eq!(during.verify(ANN, &cookie), Some(device.clone()));
        // The key is derived for this purpose, not the server key itself.
        assert_eq!(
            DeviceKeys::new([3; KEY_BYTES], None).verify(ANN, &cookie),
            None
        );
        // Renewed: the same device, now under the current key.
        let renewed = during.sign(ANN, &device);
        assert_ne!(renewed, cookie);
        assert_eq!(after.verify(ANN, &renewed), Some(device));
        // Once the old key is retired, its cookies are unknown.
        assert_eq!(after.verify(ANN, &cookie), None);
    }

    #[test]
    fn nothing_secret_is_shown() {
        let keys = keys();
        let (device, cookie) = keys.issue(ANN).unwrap();
        let shown = format!("{keys:?} {device:?} {cookie:?}");
        assert!(!shown.contains(cookie.as_str()), "{shown}");
        assert!(!shown.contains('1'), "{shown}");
    }
}
