//! Secret tokens (session and one-time) and the hashes we store instead of them.
//!
//! A token is 256 bits from the OS CSPRNG, written in URL-safe base64 without
//! padding (43 characters). Only its SHA-256 ever reaches the store, so a copy
//! of the data directory grants no live session and no password reset.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;

/// Random bytes in a token: twice the 128 bits OWASP asks for.
const TOKEN_BYTES: usize = 32;
/// Length of a token's text form: base64 of 32 bytes without padding.
pub const TOKEN_CHARS: usize = 43;

/// The OS random source failed; nothing safe can be issued without it.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomError(String);

/// Fills `bytes` from the OS CSPRNG.
pub fn fill_random(bytes: &mut [u8]) -> Result<(), RandomError> {
    getrandom::fill(bytes).map_err(|e| RandomError(e.to_string()))
}

/// A freshly issued secret, handed to the client once and never stored.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Draws a new token from the OS CSPRNG.
    pub fn generate() -> Result<Token, RandomError> {
        let mut bytes = [0u8; TOKEN_BYTES];
        fill_random(&mut bytes)?;
        Ok(Token(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Accepts a client-supplied token only if it has the exact shape of one
    /// we issue, so malformed or oversized values cost no hashing or lookup.
    pub fn parse(raw: &str) -> Option<Token> {
        let well_formed = raw.len() == TOKEN_CHARS
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        well_formed.then(|| Token(raw.to_owned()))
    }

    /// The text to give to the client.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The SHA-256 of the token, the only form the store keeps.
    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0.as_bytes()).into())
    }

    /// The SHA-256 of the token bound to the address (key) it was sent
    /// to: how an email change's token is stored, so that it is found
    /// only together with that address. A token minted for one new
    /// address can then never apply another, whatever the account's
    /// pending address has become since.
    pub fn hash_for(&self, address_key: &str) -> TokenHash {
        let mut digest = Sha256::new();
        digest.update(self.0.as_bytes());
        digest.update([0]);
        digest.update(address_key.as_bytes());
        TokenHash(digest.finalize().into())
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// SHA-256 of a token: the index key under which its owner is found.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    /// Compares in constant time, so a mismatch reveals nothing about where
    /// the two hashes differ.
    pub fn ct_eq(&self, other: &TokenHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    /// The raw bytes, as stored in the token index trees.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A hash is not a secret, but eight hex digits are plenty to tell
        // two apart in a test failure.
        write!(f, "TokenHash(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_url_safe_and_distinct() {
        let a = Token::generate().unwrap();
        let b = Token::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), TOKEN_CHARS);
        assert!(Token::parse(a.as_str()).is_some());
        assert_eq!(URL_SAFE_NO_PAD.decode(a.as_str()).unwrap().len(), 32);
    }

    #[test]
    fn parse_refuses_anything_we_did_not_issue() {
        assert!(Token::parse("").is_none());
        assert!(Token::parse(&"a".repeat(42)).is_none());
        assert!(Token::parse(&"a".repeat(44)).is_none());
        assert!(Token::parse(&format!("{}=", "a".repeat(42))).is_none());
        assert!(Token::parse(&format!("{}+", "a".repeat(42))).is_none());
        assert!(Token::parse(&"é".repeat(21)).is_none());
        assert!(Token::parse(&"a".repeat(43)).is_some());
    }

    #[test]
    fn hash_is_sha256_of_the_text() {
        let token = Token::parse(&"a".repeat(43)).unwrap();
        let expected: [u8; 32] = Sha256::digest("a".repeat(43).as_bytes()).into();
        assert_eq!(token.hash().0, expected);
        assert!(token.hash().ct_eq(&token.hash()));
        let other = Token::parse(&"b".repeat(43)).unwrap();
        assert!(!token.hash().ct_eq(&other.hash()));
    }

    #[test]
    fn debug_does_not_leak_the_token() {
        let token = Token::generate().unwrap();
        assert!(!format!("{token:?}").contains(token.as_str()));
    }
}
