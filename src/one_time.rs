//! One-time tokens as records of their own: a password reset, an email
//! verification, an email change, each a purpose of the same record.
//!
//! A user holds at most one token per purpose (a newer request replaces
//! the older token); a token is found by its SHA-256 and consumed by the
//! write it authorises.

use crate::token::TokenHash;
use crate::user::UserId;

/// What a one-time token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// Setting a new password (`PUT /reset_password`).
    Reset,
    /// Proving the account's address (`PUT /verify_email`).
    Verify,
    /// Proving an email change's new address, which then becomes the
    /// account's (`PUT /verify_email` with the new address).
    EmailChange,
}

impl Purpose {
    /// Every purpose this authd knows.
    pub const ALL: [Purpose; 3] = [Purpose::Reset, Purpose::Verify, Purpose::EmailChange];

    /// The stored code (a byte on sled).
    pub fn code(self) -> u8 {
        match self {
            Purpose::Reset => 1,
            Purpose::Verify => 2,
            Purpose::EmailChange => 3,
        }
    }

    /// The purpose of a stored code, if this authd knows it.
    pub fn from_code(code: u8) -> Option<Purpose> {
        match code {
            1 => Some(Purpose::Reset),
            2 => Some(Purpose::Verify),
            3 => Some(Purpose::EmailChange),
            _ => None,
        }
    }

    /// The stored name (a column on PostgreSQL) and the name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Purpose::Reset => "reset",
            Purpose::Verify => "verify",
            Purpose::EmailChange => "email_change",
        }
    }

    /// The purpose of a stored name.
    pub fn from_name(name: &str) -> Option<Purpose> {
        match name {
            "reset" => Some(Purpose::Reset),
            "verify" => Some(Purpose::Verify),
            "email_change" => Some(Purpose::EmailChange),
            _ => None,
        }
    }
}

/// An outstanding one-time token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OneTimeToken {
    /// SHA-256 of the token: the key it is found by.
    pub token_hash: TokenHash,
    /// Whose token it is.
    pub user: UserId,
    pub purpose: Purpose,
    /// Unix milliseconds at issue.
    pub created_at: u64,
    /// Unix milliseconds from which it is refused.
    pub expires_at: u64,
}

impl OneTimeToken {
    /// Whether the token is past its expiry at `now`, or older than
    /// `lifetime_ms`: the configured lifetime also bounds tokens issued
    /// before it was shortened.
    pub fn expired(&self, now: u64, lifetime_ms: u64) -> bool {
        now >= self.expires_at || now >= self.created_at.saturating_add(lifetime_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_round_trip() {
        for purpose in Purpose::ALL {
            assert_eq!(Purpose::from_code(purpose.code()), Some(purpose));
            assert_eq!(Purpose::from_name(purpose.name()), Some(purpose));
        }
        assert_eq!(Purpose::from_code(0), None);
        assert_eq!(Purpose::from_name("login"), None);
    }

    #[test]
    fn expiry_takes_the_earlier_bound() {
        let token = OneTimeToken {
            token_hash: TokenHash([0; 32]),
            user: UserId(1),
            purpose: Purpose::Reset,
            created_at: 100,
            expires_at: 200,
        };
        assert!(!token.expired(199, 1000));
        assert!(token.expired(200, 1000));
        assert!(token.expired(150, 50));
    }
}
