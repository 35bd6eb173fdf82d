//! The server key: one secret per deployment, from which every keyed hash,
//! signature and encryption key of authd is derived.
//!
//! It is made on first start into the store (sled's `meta` tree; the
//! `authd_secrets` table on PostgreSQL, so every instance shares it), or
//! read from `--secret-key-file`. During a rotation the previous key is
//! kept beside the current one: what was signed with it still verifies,
//! while everything new uses the current key. It goes into backups with
//! the store, never into exports or logs (its `Debug` shows nothing).
//!
//! Each use derives its own key with HMAC-SHA-256 under a purpose label,
//! so no two uses ever share a key.

use std::fmt;
use std::path::Path;

use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

/// Bytes of a server key.
pub const KEY_BYTES: usize = 32;

/// The current key and, during a rotation, the previous one.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerKey {
    current: [u8; KEY_BYTES],
    previous: Option<[u8; KEY_BYTES]>,
}

/// Why a key file was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read the secret key file {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error(
        "the secret key file {path} must hold the key as 64 hex digits on its first line \
         (e.g. from `openssl rand -hex 32`), and optionally the previous key on a second line"
    )]
    Malformed { path: String },
}

impl ServerKey {
    /// A key from its parts.
    pub fn new(current: [u8; KEY_BYTES], previous: Option<[u8; KEY_BYTES]>) -> ServerKey {
        ServerKey { current, previous }
    }

    /// Reads `--secret-key-file`: the current key as 64 hex digits on the
    /// first line, the previous one (during a rotation) on the second.
    pub fn from_file(path: &Path) -> Result<ServerKey, KeyFileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| KeyFileError::Unreadable {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        let malformed = || KeyFileError::Malformed {
            path: shown.clone(),
        };
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let current = lines.next().and_then(parse_hex).ok_or_else(malformed)?;
        let previous = match lines.next() {
            Some(line) => Some(parse_hex(line).ok_or_else(malformed)?),
            None => None,
        };
        if lines.next().is_some() {
            return Err(malformed());
        }
        Ok(ServerKey { current, previous })
    }

    /// The key for `purpose` (a fixed label such as `"throttle"`) under
    /// the current server key.
    pub fn derive(&self, purpose: &str) -> [u8; KEY_BYTES] {
        derive(&self.current, purpose)
    }

    /// The keys for `purpose` a verifier accepts: the current one first,
    /// then the previous one during a rotation.
    pub fn derive_all(&self, purpose: &str) -> Vec<[u8; KEY_BYTES]> {
        std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .map(|key| derive(key, purpose))
            .collect()
    }

    /// Whether a previous key is still accepted.
    pub fn rotating(&self) -> bool {
        self.previous.is_some()
    }
}

impl fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerKey(<redacted>)")
    }
}

fn derive(key: &[u8; KEY_BYTES], purpose: &str) -> [u8; KEY_BYTES] {
    // HMAC takes a key of any length: this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return [0; KEY_BYTES];
    };
    mac.update(b"authd/");
    mac.update(purpose.as_bytes());
    mac.finalize().into_bytes().into()
}

fn parse_hex(text: &str) -> Option<[u8; KEY_BYTES]> {
    if text.len() != KEY_BYTES * 2 {
        return None;
    }
    let mut key = [0u8; KEY_BYTES];
    for (byte, pair) in key.iter_mut().zip(text.as_bytes().chunks(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_get_distinct_keys_and_rotation_keeps_the_old() {
        let old = ServerKey::new([1; 32], None);
        let new = ServerKey::new([2; 32], Some([1; 32]));
        assert_ne!(old.derive("throttle"), old.derive("csrf"));
        assert_ne!(old.derive("throttle"), new.derive("throttle"));
        assert_eq!(new.derive_all("throttle")[1], old.derive("throttle"));
        assert!(new.rotating() && !old.rotating());
        assert!(!format!("{new:?}").contains('1'));
    }

    #[test]
    fn key_files_are_strict() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let hex = "ab".repeat(32);
        std::fs::write(&path, format!("{hex}\n")).unwrap();
        assert_eq!(
            ServerKey::from_file(&path).unwrap(),
            ServerKey::new([0xab; 32], None)
        );
        std::fs::write(&path, format!("{hex}\n{}\n", "01".repeat(32))).unwrap();
        assert!(ServerKey::from_file(&path).unwrap().rotating());
        for bad in ["", "abc", &"zz".repeat(32), &format!("{hex}\n{hex}\n{hex}")] {
            std::fs::write(&path, bad).unwrap();
            assert!(
                matches!(
                    ServerKey::from_file(&path),
                    Err(KeyFileError::Malformed { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            ServerKey::from_file(&dir.path().join("missing")),
            Err(KeyFileError::Unreadable { .. })
        ));
    }
}
