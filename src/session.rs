//! Sessions as records of their own: one per login, any number per user.
//!
//! A session is found by the SHA-256 of its cookie token (the store never
//! sees the token) and shown to its owner by a separate random handle,
//! [`SessionId`], so a list of one's sessions can name each one without
//! revealing anything that would open it.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::token::{RandomError, TokenHash};
use crate::user::UserId;

/// Longest user agent kept with a session, in characters; the rest is cut.
pub const MAX_USER_AGENT_CHARS: usize = 256;

/// Bytes of a session handle: 128 random bits, so handles never collide
/// and cannot be guessed (they are not secrets, but guessing one should
/// not even find a session to be refused on).
const HANDLE_BYTES: usize = 16;

/// The public handle of a session (`id` in `GET /sessions`): random, never
/// derived from the token, 22 URL-safe characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub [u8; HANDLE_BYTES]);

impl SessionId {
    /// A fresh handle from the OS random source.
    pub fn generate() -> Result<SessionId, RandomError> {
        let mut bytes = [0u8; HANDLE_BYTES];
        crate::token::fill_random(&mut bytes)?;
        Ok(SessionId(bytes))
    }

    /// Reads a handle as [`fmt::Display`] writes it; anything else is
    /// `None` (and so belongs to no session).
    pub fn parse(text: &str) -> Option<SessionId> {
        if text.len() != 22 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        bytes.try_into().ok().map(SessionId)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

/// One login of one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The public handle.
    pub id: SessionId,
    /// SHA-256 of the cookie token: the key the session is found by.
    pub token_hash: TokenHash,
    /// Whose session it is.
    pub user: UserId,
    /// Unix milliseconds at login (the absolute lifetime counts from here).
    pub created_at: u64,
    /// Unix milliseconds of the last request that used the session, to
    /// within the touch interval (the idle timeout counts from here).
    pub last_seen: u64,
    /// The `User-Agent` of the login request, cut to
    /// [`MAX_USER_AGENT_CHARS`]; `None` when it sent none.
    pub user_agent: Option<String>,
    /// The client address of the login request, as the throttles saw it.
    pub ip: Option<String>,
}

/// A user agent as kept with a session: at most [`MAX_USER_AGENT_CHARS`]
/// characters; an empty one counts as none.
pub fn kept_user_agent(raw: Option<&str>) -> Option<String> {
    raw.filter(|ua| !ua.is_empty())
        .map(|ua| ua.chars().take(MAX_USER_AGENT_CHARS).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_round_trip_and_refuse_anything_else() {
        let id = SessionId::generate().unwrap();
        let text = id.to_string();
        assert_eq!(text.len(), 22);
        assert_eq!(SessionId::parse(&text), Some(id));
        assert_ne!(SessionId::generate().unwrap(), id);
        for bad in ["", "abc", &"a".repeat(23), &"+".repeat(22), &"é".repeat(11)] {
            assert_eq!(SessionId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn user_agents_are_cut_by_characters() {
        assert_eq!(kept_user_agent(None), None);
        assert_eq!(kept_user_agent(Some("")), None);
        assert_eq!(kept_user_agent(Some("curl/8")).as_deref(), Some("curl/8"));
        let long = "é".repeat(300);
        assert_eq!(kept_user_agent(Some(&long)).unwrap().chars().count(), 256);
    }
}
