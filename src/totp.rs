//! The TOTP second factor: RFC 6238 codes (HMAC-SHA-1, 6 digits, 30 s
//! steps, one step of drift either way), their secrets sealed under the
//! server key, and single-use recovery codes.
//!
//! The codes themselves come from `totp-rs`; what is here is what an
//! account needs around them. A code is accepted once per time step
//! (the caller records the step, [`crate::store::UserChange::TotpStep`]):
//! a code seen over a shoulder or in a log cannot be replayed. The secret
//! never rests in the store in the clear: it is sealed with
//! ChaCha20-Poly1305 (ring, already the TLS provider) under a key derived
//! from the server key. (It is not bound to the user's id: an import seals
//! before the id exists, and whoever can write a user's record can as
//! well remove its second factor.)
//! Recovery codes are 80 random bits each, stored as SHA-256 (a code is
//! random enough that a slow hash would add nothing).

use std::fmt;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use totp_rs::{Builder, Totp};

use crate::server_key::{ServerKey, KEY_BYTES};

/// Bytes of a new secret: 160 bits, RFC 4226's recommendation and what
/// authenticator apps expect.
pub const SECRET_BYTES: usize = 20;
/// Recovery codes given at enrolment.
pub const RECOVERY_CODES: usize = 10;
/// Random bytes in a recovery code (80 bits: 16 base32 characters).
const RECOVERY_BYTES: usize = 10;
/// The purpose label of the sealing key ([`ServerKey::derive`]), and the
/// associated data of every seal (the format's name).
const SEAL_PURPOSE: &str = "totp secret";
const SEAL_AAD: &[u8] = b"authd totp secret v1";
/// Seconds per time step (RFC 6238's default, and every app's).
const STEP_SECONDS: u64 = 30;
/// The lowercase RFC 4648 base32 alphabet recovery codes are written in
/// (no 0/1/8/9: nothing to confuse with O, I or B).
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Why a second-factor operation could not be done.
#[derive(Debug, thiserror::Error)]
pub enum TotpError {
    /// No key this server holds opens the sealed secret: the server key
    /// was rotated twice since it was sealed, or the record is damaged.
    #[error("the second factor's secret cannot be opened with the server key")]
    Unsealable,
    #[error("cannot seal the second factor's secret")]
    Seal,
    #[error("random source: {0}")]
    Random(String),
    #[error("{0}")]
    Code(String),
}

/// A TOTP shared secret in the clear: held only while a request needs it.
/// `Debug` shows nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// A new random secret from the OS.
    pub fn generate() -> Result<Secret, TotpError> {
        let mut bytes = vec![0; SECRET_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| TotpError::Random(e.to_string()))?;
        Ok(Secret(bytes))
    }

    /// A secret from its base32 form (an export's), if it is one of at
    /// least 128 bits.
    pub fn from_base32(text: &str) -> Option<Secret> {
        let bytes = totp_rs::Secret::try_from_base32(text.trim()).ok()?;
        (bytes.len() >= 16).then(|| Secret(bytes.to_vec()))
    }

    /// The base32 form an authenticator app is given (no padding).
    pub fn to_base32(&self) -> String {
        totp_rs::Secret::from(self.0.clone()).to_base32()
    }

    /// The code generator for this secret, labelled `issuer` and
    /// `account` in the `otpauth://` URI. Neither may hold a `:` (the
    /// URI's separator): a `:` in an address becomes a `.` in the label,
    /// which is only what the app shows.
    fn totp(&self, issuer: &str, account: &str) -> Result<Totp, TotpError> {
        Builder::new()
            .with_secret(self.0.clone())
            .with_issuer(Some(issuer))
            .with_account_name(account.replace(':', "."))
            .build()
            .map_err(|e| TotpError::Code(e.to_string()))
    }

    /// The `otpauth://totp/...` URI an app reads (as text, or from a QR
    /// code of it).
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> Result<String, TotpError> {
        self.totp(issuer, account)?
            .to_url()
            .map_err(|e| TotpError::Code(e.to_string()))
    }

    /// The time step whose code `typed` is, among the steps at `now` (Unix
    /// seconds) and one either side; `None` if it is none of them or not
    /// six ASCII digits.
    pub fn step_of(&self, typed: &str, now: u64) -> Option<u64> {
        // The issuer and account only label the URI.
        let totp = self.totp("authd", "user").ok()?;
        totp.check(typed.trim(), now)
    }

    /// The code of `step` (tests and `authd` tooling compute codes with it).
    pub fn code_at(&self, step: u64) -> Option<String> {
        let totp = self.totp("authd", "user").ok()?;
        Some(totp.generate(step * STEP_SECONDS).to_string())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Seals and opens secrets under keys derived from the server key: the
/// current one seals, and during a rotation the previous one still opens.
#[derive(Clone)]
pub struct Sealer {
    /// The current key first.
    keys: Vec<[u8; KEY_BYTES]>,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer(<keys>)")
    }
}

impl Sealer {
    /// The sealer of this server key.
    pub fn new(key: &ServerKey) -> Sealer {
        Sealer {
            keys: key.derive_all(SEAL_PURPOSE),
        }
    }

    /// `secret` sealed: a random nonce, then the ciphertext and its tag.
    pub fn seal(&self, secret: &Secret) -> Result<Vec<u8>, TotpError> {
        let key = self.keys.first().ok_or(TotpError::Seal)?;
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| TotpError::Random(e.to_string()))?;
        let mut body = secret.0.clone();
        aead_key(key)?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(SEAL_AAD),
                &mut body,
            )
            .map_err(|_| TotpError::Seal)?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&body);
        Ok(sealed)
    }

    /// The secret `sealed` holds, under the current key or the previous
    /// one.
    pub fn open(&self, sealed: &[u8]) -> Result<Secret, TotpError> {
        let (nonce, body) = sealed
            .split_at_checked(NONCE_LEN)
            .ok_or(TotpError::Unsealable)?;
        let nonce = <[u8; NONCE_LEN]>::try_from(nonce).map_err(|_| TotpError::Unsealable)?;
        for key in &self.keys {
            let mut buffer = body.to_vec();
            if let Ok(plain) = aead_key(key)?.open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(SEAL_AAD),
                &mut buffer,
            ) {
                return Ok(Secret(plain.to_vec()));
            }
        }
        Err(TotpError::Unsealable)
    }
}

impl Sealer {
    /// `sealed` sealed again under the current key, when only the previous
    /// key opens it (`None` when the current one does, or none does): what
    /// a key rotation does first, as the key it drops is that previous one.
    pub fn reseal(&self, sealed: &[u8]) -> Result<Option<Vec<u8>>, TotpError> {
        let current = Sealer {
            keys: self.keys.iter().take(1).copied().collect(),
        };
        if current.open(sealed).is_ok() {
            return Ok(None);
        }
        match self.open(sealed) {
            Ok(secret) => self.seal(&secret).map(Some),
            Err(_) => Ok(None),
        }
    }
}

fn aead_key(key: &[u8; KEY_BYTES]) -> Result<LessSafeKey, TotpError> {
    UnboundKey::new(&CHACHA20_POLY1305, key)
        .map(LessSafeKey::new)
        .map_err(|_| TotpError::Seal)
}

/// Recovery codes as shown once (`xxxx-xxxx-xxxx-xxxx`) and as stored.
/// `Debug` shows how many, never the codes.
pub struct RecoveryCodes {
    pub shown: Vec<String>,
    pub hashes: Vec<[u8; 32]>,
}

impl fmt::Debug for RecoveryCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecoveryCodes({} codes)", self.shown.len())
    }
}

impl RecoveryCodes {
    /// [`RECOVERY_CODES`] new codes from the OS random source.
    pub fn generate() -> Result<RecoveryCodes, TotpError> {
        let mut shown = Vec::with_capacity(RECOVERY_CODES);
        let mut hashes = Vec::with_capacity(RECOVERY_CODES);
        for _ in 0..RECOVERY_CODES {
            let mut bytes = [0u8; RECOVERY_BYTES];
            getrandom::fill(&mut bytes).map_err(|e| TotpError::Random(e.to_string()))?;
            let plain = base32(&bytes);
            hashes.push(recovery_hash_of(&plain));
            let groups: Vec<&str> = plain
                .as_bytes()
                .chunks(4)
                .filter_map(|chunk| std::str::from_utf8(chunk).ok())
                .collect();
            shown.push(groups.join("-"));
        }
        Ok(RecoveryCodes { shown, hashes })
    }
}

/// 80 bits as 16 base32 characters.
fn base32(bytes: &[u8; RECOVERY_BYTES]) -> String {
    let mut bits: u128 = 0;
    for byte in bytes {
        bits = (bits << 8) | u128::from(*byte);
    }
    (0..16)
        .rev()
        .map(|group| char::from(BASE32[((bits >> (group * 5)) & 31) as usize]))
        .collect()
}

fn recovery_hash_of(plain: &str) -> [u8; 32] {
    Sha256::digest(plain.as_bytes()).into()
}

/// What a typed second factor is: a six-digit code, or a recovery code
/// (its hash; any case, with or without its dashes and spaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Factor {
    Code(String),
    Recovery([u8; 32]),
}

impl Factor {
    /// Reads what was typed; `None` if it is neither shape.
    pub fn parse(typed: &str) -> Option<Factor> {
        let typed = typed.trim();
        if typed.len() == 6 && typed.bytes().all(|b| b.is_ascii_digit()) {
            return Some(Factor::Code(typed.to_owned()));
        }
        if typed.len() > 32 {
            return None;
        }
        let plain: String = typed
            .chars()
            .filter(|c| *c != '-' && *c != ' ')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        (plain.len() == 16 && plain.bytes().all(|b| BASE32.contains(&b)))
            .then(|| Factor::Recovery(recovery_hash_of(&plain)))
    }
}

/// Whether `hash` is among `hashes`, without an early exit.
pub fn holds_recovery(hashes: &[[u8; 32]], hash: &[u8; 32]) -> bool {
    hashes
        .iter()
        .fold(0u8, |found, kept| found | kept.ct_eq(hash).unwrap_u8())
        == 1
}

/// Checks `--totp-issuer`: what the otpauth URI can carry and an app can
/// show (no `:`, the label's separator; no control characters).
pub fn parse_issuer(text: &str) -> Result<String, String> {
    let count = text.chars().count();
    if count == 0 || count > 64 {
        return Err("must be 1 to 64 characters".to_owned());
    }
    if text.contains(':') || text.chars().any(char::is_control) {
        return Err("must not contain ':' or control characters".to_owned());
    }
    Ok(text.to_owned())
}

/// The time step of `now` (Unix seconds).
pub fn step_at(now: u64) -> u64 {
    now / STEP_SECONDS
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 rows: the secret is ASCII
    /// "12345678901234567890"; the RFC prints 8 digits, of which a
    /// 6-digit code is the last six.
    #[test]
    fn codes_match_rfc_6238_test_vectors() {
        let secret = Secret(b"12345678901234567890".to_vec());
        let vectors = [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ];
        for (time, eight) in vectors {
            let six = &eight[2..];
            assert_eq!(secret.code_at(step_at(time)).unwrap(), six, "{time}");
            assert_eq!(secret.step_of(six, time), Some(step_at(time)), "{time}");
        }
    }

    #[test]
    fn one_step_of_drift_either_way_and_no_more() {
        let secret = Secret::generate().unwrap();
        let now = 1_800_000_015;
        let step = step_at(now);
        for drift in [-1i64, 0, 1] {
            let at = step.checked_add_signed(drift).unwrap();
            let code = secret.code_at(at).unwrap();
            assert_eq!(secret.step_of(&code, now), Some(at), "{drift}");
        }
        for far in [step - 2, step + 2] {
            let code = secret.code_at(far).unwrap();
            // A far step's code may collide with a near one's (1 in 10^6).
            if (step - 1..=step + 1).all(|s| secret.code_at(s).unwrap() != code) {
                assert_eq!(secret.step_of(&code, now), None);
            }
        }
        for bad in ["", "12345", "1234567", "+12345", "12a456", "１２３４５６"] {
            assert_eq!(secret.step_of(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn the_uri_names_issuer_account_and_secret() {
        let secret = Secret(b"12345678901234567890".to_vec());
        let uri = secret.otpauth_uri("My App", "ann@example.com").unwrap();
        assert!(
            uri.starts_with("otpauth://totp/My%20App:ann%40example.com?"),
            "{uri}"
        );
        assert!(
            uri.contains("secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"),
            "{uri}"
        );
        assert!(uri.contains("issuer=My%20App"), "{uri}");
        assert_eq!(
            Secret::from_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"),
            Some(secret.clone())
        );
        assert!(secret.otpauth_uri("a", "odd:local@x.io").is_ok());
        assert_eq!(Secret::from_base32("GEZDGNBV"), None);
        assert_eq!(Secret::from_base32("not base32!"), None);
    }

    #[test]
    fn sealed_secrets_open_under_their_key_only() {
        let key = ServerKey::new([7; 32], None);
        let sealer = Sealer::new(&key);
        let secret = Secret::generate().unwrap();
        let sealed = sealer.seal(&secret).unwrap();
        assert!(!sealed
            .windows(SECRET_BYTES)
            .any(|w| w == secret.0.as_slice()));
        assert_eq!(sealer.open(&sealed).unwrap(), secret);
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(sealer.open(&flipped).is_err());
        assert!(sealer.open(&sealed[..5]).is_err());
        // After a rotation the previous key still opens; after a second,
        // nothing does.
        let rotated = Sealer::new(&ServerKey::new([8; 32], Some([7; 32])));
        assert_eq!(rotated.open(&sealed).unwrap(), secret);
        let resealed = rotated.seal(&secret).unwrap();
        assert!(sealer.open(&resealed).is_err());
        let twice = Sealer::new(&ServerKey::new([9; 32], Some([8; 32])));
        assert!(twice.open(&sealed).is_err());
        // Two seals of one secret differ (fresh nonces).
        assert_ne!(sealer.seal(&secret).unwrap(), sealed);
        // A reseal moves what only the previous key opens to the current.
        assert_eq!(sealer.reseal(&sealed).unwrap(), None);
        let moved = rotated.reseal(&sealed).unwrap().unwrap();
        assert_eq!(twice.open(&moved).unwrap(), secret);
        assert_eq!(rotated.reseal(&moved).unwrap(), None);
        assert_eq!(twice.reseal(&sealed).unwrap(), None);
    }

    #[test]
    fn recovery_codes_are_shown_grouped_and_read_back_loosely() {
        let codes = RecoveryCodes::generate().unwrap();
        assert_eq!(codes.shown.len(), RECOVERY_CODES);
        assert_eq!(codes.hashes.len(), RECOVERY_CODES);
        for (shown, hash) in codes.shown.iter().zip(&codes.hashes) {
            assert_eq!(shown.len(), 19, "{shown}");
            assert_eq!(shown.matches('-').count(), 3, "{shown}");
            assert_eq!(Factor::parse(shown), Some(Factor::Recovery(*hash)));
            let loose = shown.replace('-', " ").to_uppercase();
            assert_eq!(Factor::parse(&loose), Some(Factor::Recovery(*hash)));
            assert!(holds_recovery(&codes.hashes, hash));
        }
        let distinct: std::collections::HashSet<_> = codes.shown.iter().collect();
        assert_eq!(distinct.len(), RECOVERY_CODES);
        assert!(!holds_recovery(&codes.hashes, &[0; 32]));
        assert_eq!(Factor::parse("123456"), Some(Factor::Code("123456".into())));
        for bad in [
            "",
            "12345",
            "abcd-efgh-ijkl-mno1",
            "abcd-efgh-ijkl",
            "x".repeat(40).as_str(),
        ] {
            assert_eq!(Factor::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn base32_writes_all_80_bits() {
        assert_eq!(base32(&[0; 10]), "aaaaaaaaaaaaaaaa");
        assert_eq!(base32(&[0xff; 10]), "7777777777777777");
        // RFC 4648 test vector "fooba" (5 bytes = 8 chars), twice.
        assert_eq!(base32(b"foobafooba"), "mzxw6ytbmzxw6ytb");
    }
}
