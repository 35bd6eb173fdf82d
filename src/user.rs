//! The user model and the domain newtypes that guard it.
//!
//! Every value that reaches the store went through a `parse` constructor here,
//! so the rest of the code never re-checks an email or a password: a value of
//! type [`Email`] or [`Password`] is valid by construction.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

use icu_normalizer::ComposingNormalizerBorrowed;

use crate::email_key::{self, Refusal};

/// Longest address we accept, in bytes (RFC 5321 path limit less the brackets).
pub const MAX_EMAIL_BYTES: usize = 254;
/// Longest local part (before the `@`), in bytes (RFC 5321).
const MAX_LOCAL_BYTES: usize = 64;
/// bcrypt reads at most 72 bytes of a password; anything longer would be
/// silently truncated, so a longer password is refused instead.
pub const MAX_PASSWORD_BYTES: usize = 72;

/// Longest password under argon2id, which reads all of it: 1,024 bytes
/// holds 64 characters of any script (NIST asks for at least 64) many
/// times over, and keeps what one request makes a worker hash small.
pub const MAX_LONG_PASSWORD_BYTES: usize = 1024;

/// How long a password may be: what the configured hash algorithm reads
/// exactly ([`crate::hasher::Scheme::password_limit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordLimit {
    /// [`MAX_PASSWORD_BYTES`]: everything bcrypt reads.
    Bcrypt,
    /// [`MAX_LONG_PASSWORD_BYTES`]: argon2id.
    Long,
}

impl PasswordLimit {
    /// The limit in bytes.
    pub fn bytes(self) -> usize {
        match self {
            PasswordLimit::Bcrypt => MAX_PASSWORD_BYTES,
            PasswordLimit::Long => MAX_LONG_PASSWORD_BYTES,
        }
    }
}

/// Why a field value was refused. The text follows the field's name in the
/// message shown to the client ("new_password must not be empty").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInput {
    #[error("must not be empty")]
    EmptyEmail,
    #[error("must be at most {MAX_EMAIL_BYTES} bytes (local part at most 64)")]
    EmailTooLong,
    #[error("must contain exactly one '@' with text on both sides")]
    EmailShape,
    #[error("must not contain spaces or control characters")]
    EmailCharacters,
    #[error("has an invalid domain")]
    EmailDomain,
    #[error("must not contain invisible or direction-changing characters")]
    EmailInvisible,
    #[error("must not contain unassigned or private-use characters")]
    EmailUnassigned,
    #[error("must not mix letters of different scripts (such as Latin and Cyrillic) in one part")]
    EmailMixedScripts,
    #[error("is not an address once normalised (a fullwidth '@' or '.', say)")]
    EmailNormalised,
    #[error("must not be empty")]
    EmptyPassword,
    #[error("must be at most {MAX_PASSWORD_BYTES} bytes (bcrypt ignores anything longer)")]
    PasswordTooLong,
    #[error("must be at most {MAX_LONG_PASSWORD_BYTES} bytes")]
    PasswordTooLongLong,
    #[error("must not contain NUL characters")]
    PasswordNul,
}

/// A user's numeric key, as in the reference's integer primary key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UserId(pub u64);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A syntactically plausible email address.
///
/// The address is kept as the user typed it (trimmed) for display, and a
/// key is derived from it for uniqueness and lookups
/// ([`crate::email_key`]: case, Unicode normalisation, invisible
/// characters, IDN domains), so `Bob@X.com` and `bob@x.com` are one
/// account while the profile still shows the spelling chosen at
/// registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    display: String,
    key: String,
}

impl Email {
    /// Trims and checks the shape of an address someone typed to find an
    /// account (a login, a reset request, an admin lookup), and derives its
    /// key. A new account's address goes through [`Email::parse_new`].
    ///
    /// The rules catch what is obviously not an address (no `@`, an empty
    /// side, whitespace, over-long parts) without trying to implement all of
    /// RFC 5322: the only real proof of an address is a mail delivered to it.
    pub fn parse(raw: &str) -> Result<Email, InvalidInput> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(InvalidInput::EmptyEmail);
        }
        if trimmed.len() > MAX_EMAIL_BYTES {
            return Err(InvalidInput::EmailTooLong);
        }
        if trimmed.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(InvalidInput::EmailCharacters);
        }
        let (local, domain) = trimmed.split_once('@').ok_or(InvalidInput::EmailShape)?;
        if local.is_empty() || domain.is_empty() || domain.contains('@') {
            return Err(InvalidInput::EmailShape);
        }
        if local.len() > MAX_LOCAL_BYTES {
            return Err(InvalidInput::EmailTooLong);
        }
        if domain.starts_with('.') || domain.ends_with('.') || domain.contains("..") {
            return Err(InvalidInput::EmailDomain);
        }
        Ok(Email {
            display: trimmed.to_owned(),
            key: email_key::key(local, domain),
        })
    }

    /// [`Email::parse`], and also refuses what a new account's address may
    /// not hold: invisible, direction-changing, unassigned or private-use
    /// characters, mixed scripts, and spellings that normalise out of an
    /// address's shape ([`email_key::refusal`]).
    pub fn parse_new(raw: &str) -> Result<Email, InvalidInput> {
        let email = Email::parse(raw)?;
        let (local, domain) = email
            .display
            .split_once('@')
            .ok_or(InvalidInput::EmailShape)?;
        match email_key::refusal(local, domain) {
            None => Ok(email),
            Some(Refusal::Invisible) => Err(InvalidInput::EmailInvisible),
            Some(Refusal::Unassigned) => Err(InvalidInput::EmailUnassigned),
            Some(Refusal::MixedScripts) => Err(InvalidInput::EmailMixedScripts),
            Some(Refusal::Shape) => Err(InvalidInput::EmailNormalised),
        }
    }

    /// An address as a store keeps it, with the key it is stored under,
    /// unchecked: an address stored under older rules still loads.
    pub fn stored(display: String, key: String) -> Email {
        Email { display, key }
    }

    /// The address as registered (trimmed), for responses.
    pub fn as_str(&self) -> &str {
        &self.display
    }

    /// The key the address is one account under (the unique index key).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The key of this spelling under the rule of stores before format 3
    /// (sled) and schema 5 (PostgreSQL): the address lowercased. Two old
    /// accounts whose addresses now share a key keep these; a lookup tries
    /// it first when it differs from [`Email::key`].
    pub fn legacy_key(&self) -> String {
        self.display.to_lowercase()
    }

    /// The key today's rules give this address; `None` for a stored
    /// address that no longer has an address's shape.
    pub fn rule_key(&self) -> Option<String> {
        Email::parse(&self.display).ok().map(|email| email.key)
    }

    /// Whether the stored key is one this address can have: its key by
    /// today's rules, or its old key (an account whose address came to
    /// share its key with an older one's).
    pub fn key_fits(&self) -> bool {
        self.rule_key().as_deref() == Some(self.key.as_str()) || self.legacy_key() == self.key
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

/// A password exactly as the client sent it, checked against the hash
/// algorithm's limits.
///
/// No trimming and no composition rules (NIST SP 800-63B): the only
/// refusals are those that would otherwise make bcrypt silently weaken the
/// password, or (argon2id) bound one request's work. What is hashed is its
/// NFC form ([`Password::hash_input`]), so a password typed on a keyboard
/// that composes `é` and on one that sends `e` + U+0301 is one password.
/// `Debug` never prints the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Accepts any non-empty password of at most 72 bytes without NUL.
    ///
    /// 72 bytes is everything bcrypt reads; a NUL would end the password early
    /// in the C implementations a store may one day be exported to.
    pub fn parse(raw: &str) -> Result<Password, InvalidInput> {
        Password::parse_for(raw, PasswordLimit::Bcrypt)
    }

    /// [`Password::parse`] with the length limit of the configured
    /// algorithm: 72 bytes under bcrypt, 1,024 under argon2id. A password
    /// typed to log in is parsed with [`PasswordLimit::Long`] whatever is
    /// configured: an account whose hash is argon2id must still log in
    /// under bcrypt, and a bcrypt hash never matches a longer password.
    ///
    /// The limit holds for the NFC form too, which is what is hashed (it
    /// is rarely longer: a few characters decompose under NFC).
    pub fn parse_for(raw: &str, limit: PasswordLimit) -> Result<Password, InvalidInput> {
        if raw.is_empty() {
            return Err(InvalidInput::EmptyPassword);
        }
        if raw.len() > limit.bytes() || nfc(raw).len() > limit.bytes() {
            return Err(match limit {
                PasswordLimit::Bcrypt => InvalidInput::PasswordTooLong,
                PasswordLimit::Long => InvalidInput::PasswordTooLongLong,
            });
        }
        if raw.contains('\0') {
            return Err(InvalidInput::PasswordNul);
        }
        Ok(Password(raw.to_owned()))
    }

    /// The secret itself, exactly as typed.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What a hash is made of or checked against: the NFC form when the
    /// hash's input was normalised (every hash authd makes), the password
    /// as typed for a hash made before authd normalised or imported from
    /// elsewhere ([`User::password_normalized`]). One form per check: a
    /// login never costs two slow verifications.
    pub fn hash_input(&self, normalized: bool) -> Cow<'_, str> {
        if normalized {
            nfc(&self.0)
        } else {
            Cow::Borrowed(&self.0)
        }
    }
}

/// `text` in Unicode Normalization Form C (borrowed when it is already).
fn nfc(text: &str) -> Cow<'_, str> {
    ComposingNormalizerBorrowed::new_nfc().normalize(text)
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A stored user: identity, credentials and the state of the address.
/// Sessions and one-time tokens are records of their own
/// ([`crate::session`], [`crate::one_time`]), which is what lets a user
/// have several of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub email: Email,
    pub hashed_password: String,
    /// Whether `hashed_password` was made from the password's NFC form
    /// (every hash authd makes since user record v5 / schema 8): a login
    /// checks exactly that form, and a hash of the typed form (older, or
    /// imported) is replaced by a normalised one at the next login.
    pub password_normalized: bool,
    /// Whether a message sent to `email` came back with its token (or the
    /// account predates verification: those were created under the old
    /// rules and count as verified).
    pub email_verified: bool,
    /// Unix milliseconds at registration; `None` for accounts created
    /// before authd recorded it (user record v4, schema 6).
    pub created_at: Option<u64>,
    /// The address an email change is waiting to verify: it becomes
    /// `email` when the token sent to it is redeemed, and holds no claim
    /// on the address until then.
    pub pending_email: Option<Email>,
    /// The second factor: enrolled, or waiting for its first code.
    pub totp: Option<TotpState>,
}

impl User {
    /// A user as a store of an older layout held it: verified (created
    /// under the rules of its day), creation time unknown, nothing
    /// pending, its password hashed as typed, no second factor.
    pub fn existing(id: UserId, email: Email, hashed_password: String) -> User {
        User {
            id,
            email,
            hashed_password,
            password_normalized: false,
            email_verified: true,
            created_at: None,
            pending_email: None,
            totp: None,
        }
    }

    /// The second factor a login must show: `Some` once enrolment is
    /// confirmed (a pending secret asks nothing yet).
    pub fn totp_enabled(&self) -> Option<&TotpState> {
        self.totp.as_ref().filter(|totp| totp.enabled)
    }
}

/// A user's TOTP second factor as stored ([`crate::totp`] makes and
/// checks it).
#[derive(Clone, PartialEq, Eq)]
pub struct TotpState {
    /// The shared secret, sealed under a key derived from the server key
    /// ([`crate::totp::Sealer`]).
    pub sealed_secret: Vec<u8>,
    /// Confirmed by a first code (`PUT /totp`); until then the secret is
    /// pending and logins ask nothing.
    pub enabled: bool,
    /// The last time step whose code was accepted: each step's code works
    /// once (RFC 6238 section 5.2), so a seen code cannot be replayed.
    pub last_step: u64,
    /// SHA-256 of each unused recovery code; one goes with each use.
    pub recovery: Vec<[u8; 32]>,
}

impl fmt::Debug for TotpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TotpState")
            .field("enabled", &self.enabled)
            .field("last_step", &self.last_step)
            .field("recovery_left", &self.recovery.len())
            .finish_non_exhaustive()
    }
}

/// A user about to be created: by registration (unverified, created now)
/// or by an import (as exported).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub email: Email,
    pub hashed_password: String,
    /// See [`User::password_normalized`].
    pub password_normalized: bool,
    pub email_verified: bool,
    pub created_at: Option<u64>,
    /// An imported account's second factor, as exported.
    pub totp: Option<TotpState>,
}

impl NewUser {
    /// The user this becomes under `id`.
    pub fn with_id(&self, id: UserId) -> User {
        User {
            id,
            email: self.email.clone(),
            hashed_password: self.hashed_password.clone(),
            password_normalized: self.password_normalized,
            email_verified: self.email_verified,
            created_at: self.created_at,
            pending_email: None,
            totp: self.totp.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_trimmed_and_folded_for_the_key_only() {
        let email = Email::parse("  Bob@Example.COM \n").unwrap();
        assert_eq!(email.as_str(), "Bob@Example.COM");
        assert_eq!(email.key(), "bob@example.com");
        assert_eq!(email.legacy_key(), "bob@example.com");
        let decomposed = Email::parse("Jose\u{301}@Example.com").unwrap();
        assert_eq!(decomposed.key(), "jos\u{e9}@example.com");
        assert_eq!(decomposed.legacy_key(), "jose\u{301}@example.com");
    }

    #[test]
    fn new_addresses_refuse_what_only_deceives() {
        let cases = [
            ("bob\u{200b}@example.com", InvalidInput::EmailInvisible),
            ("bob\u{202e}@example.com", InvalidInput::EmailInvisible),
            ("bob\u{e000}@example.com", InvalidInput::EmailUnassigned),
            ("p\u{430}ypal@example.com", InvalidInput::EmailMixedScripts),
            ("bob\u{ff20}x@example.com", InvalidInput::EmailNormalised),
        ];
        for (raw, want) in cases {
            assert_eq!(Email::parse_new(raw), Err(want), "{raw:?}");
            // A lookup of what was typed still works: it finds the account
            // the spelling stands for.
            assert!(Email::parse(raw).is_ok(), "{raw:?}");
        }
        assert!(Email::parse_new("jos\u{e9}@b\u{fc}cher.example").is_ok());
    }

    #[test]
    fn obviously_invalid_emails_are_refused() {
        let cases = [
            ("", InvalidInput::EmptyEmail),
            ("   ", InvalidInput::EmptyEmail),
            ("no-at-sign", InvalidInput::EmailShape),
            ("@example.com", InvalidInput::EmailShape),
            ("bob@", InvalidInput::EmailShape),
            ("a@b@c", InvalidInput::EmailShape),
            ("bo b@example.com", InvalidInput::EmailCharacters),
            ("bob@exa\u{0}mple.com", InvalidInput::EmailCharacters),
            ("bob@.example.com", InvalidInput::EmailDomain),
            ("bob@example..com", InvalidInput::EmailDomain),
            ("bob@example.com.", InvalidInput::EmailDomain),
        ];
        for (raw, want) in cases {
            assert_eq!(Email::parse(raw), Err(want), "{raw:?}");
        }
    }

    #[test]
    fn email_length_limits_are_in_bytes() {
        let local = "a".repeat(64);
        let domain = format!("{}.com", "d".repeat(MAX_EMAIL_BYTES - 64 - 1 - 4));
        let longest = format!("{local}@{domain}");
        assert_eq!(longest.len(), MAX_EMAIL_BYTES);
        assert!(Email::parse(&longest).is_ok());
        assert_eq!(
            Email::parse(&format!("{longest}m")),
            Err(InvalidInput::EmailTooLong)
        );
        assert_eq!(
            Email::parse(&format!("{}@x.io", "a".repeat(65))),
            Err(InvalidInput::EmailTooLong)
        );
    }

    #[test]
    fn password_is_kept_exactly_and_bounded_by_bcrypt() {
        let spaced = Password::parse("  with spaces  ").unwrap();
        assert_eq!(spaced.expose(), "  with spaces  ");
        assert!(Password::parse(&"x".repeat(72)).is_ok());
        assert_eq!(
            Password::parse(&"x".repeat(73)),
            Err(InvalidInput::PasswordTooLong)
        );
        // 24 three-byte characters are 72 bytes; one more is over.
        assert!(Password::parse(&"€".repeat(24)).is_ok());
        assert_eq!(
            Password::parse(&"€".repeat(25)),
            Err(InvalidInput::PasswordTooLong)
        );
        assert_eq!(Password::parse(""), Err(InvalidInput::EmptyPassword));
        assert_eq!(Password::parse("a\0b"), Err(InvalidInput::PasswordNul));
    }

    #[test]
    fn the_limit_follows_the_algorithm() {
        // 64 Cyrillic letters: 128 bytes, too long for bcrypt only.
        let cyrillic = "пароль".repeat(10) + "ключ";
        assert_eq!(cyrillic.chars().count(), 64);
        assert_eq!(cyrillic.len(), 128);
        assert_eq!(
            Password::parse_for(&cyrillic, PasswordLimit::Bcrypt),
            Err(InvalidInput::PasswordTooLong)
        );
        let long = Password::parse_for(&cyrillic, PasswordLimit::Long).unwrap();
        assert_eq!(long.expose(), cyrillic);
        assert!(Password::parse_for(&"x".repeat(1024), PasswordLimit::Long).is_ok());
        assert_eq!(
            Password::parse_for(&"x".repeat(1025), PasswordLimit::Long),
            Err(InvalidInput::PasswordTooLongLong)
        );
        assert_eq!(
            InvalidInput::PasswordTooLong.to_string(),
            "must be at most 72 bytes (bcrypt ignores anything longer)"
        );
        assert_eq!(
            InvalidInput::PasswordTooLongLong.to_string(),
            "must be at most 1024 bytes"
        );
        for limit in [PasswordLimit::Bcrypt, PasswordLimit::Long] {
            assert_eq!(
                Password::parse_for("", limit),
                Err(InvalidInput::EmptyPassword)
            );
            assert_eq!(
                Password::parse_for("a\0b", limit),
                Err(InvalidInput::PasswordNul)
            );
        }
    }

    #[test]
    fn what_is_hashed_is_the_nfc_form_when_normalised() {
        let composed = Password::parse("caf\u{e9}").unwrap();
        let decomposed = Password::parse("cafe\u{301}").unwrap();
        assert_eq!(composed.hash_input(true), decomposed.hash_input(true));
        assert_eq!(decomposed.hash_input(true), "caf\u{e9}");
        // A hash of the typed form is checked against the typed form.
        assert_eq!(decomposed.hash_input(false), "cafe\u{301}");
        assert!(matches!(composed.hash_input(true), Cow::Borrowed(_)));
        // NFC is not NFKC: compatibility characters stay themselves.
        let ligature = Password::parse("\u{fb01}").unwrap();
        assert_eq!(ligature.hash_input(true), "\u{fb01}");
    }

    #[test]
    fn the_limit_holds_for_the_normalised_form() {
        // U+0958 (DEVANAGARI QA) is excluded from composition: NFC
        // decomposes it, 3 bytes into 6.
        let qa = "\u{958}";
        assert_eq!(nfc(qa).len(), 6);
        assert!(Password::parse(&qa.repeat(12)).is_ok());
        assert_eq!(qa.repeat(13).len(), 39);
        assert_eq!(
            Password::parse(&qa.repeat(13)),
            Err(InvalidInput::PasswordTooLong)
        );
    }

    #[test]
    fn password_debug_does_not_leak() {
        let password = Password::parse("hunter2").unwrap();
        assert!(!format!("{password:?}").contains("hunter2"));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Parsing never panics; what it accepts is trimmed, bounded, has one
        /// '@' with both sides present, and its legacy key is the folded
        /// display.
        #[test]
        fn email_parse_holds_its_promises(raw in "\\PC{0,80}|[ a-zA-Z0-9.@\u{0}\u{7f}é-]{0,300}") {
            if let Ok(email) = Email::parse(&raw) {
                prop_assert_eq!(email.as_str(), raw.trim());
                prop_assert!(email.as_str().len() <= MAX_EMAIL_BYTES);
                let (local, domain) = email.as_str().split_once('@').unwrap();
                prop_assert!(!local.is_empty() && !domain.is_empty() && !domain.contains('@'));
                prop_assert_eq!(email.legacy_key(), email.as_str().to_lowercase());
                // Parsing the stored form again gives the same key.
                let again = Email::parse(email.as_str()).unwrap();
                prop_assert_eq!(again.key(), email.key());
            }
        }

        /// Any valid-looking address differing only in case maps to one key.
        #[test]
        fn case_never_splits_an_account(local in "[a-zA-Z0-9._+-]{1,20}", domain in "[a-zA-Z0-9-]{1,20}\\.[a-zA-Z]{2,6}") {
            let raw = format!("{local}@{domain}");
            let a = Email::parse(&raw).unwrap();
            let b = Email::parse(&raw.to_uppercase()).unwrap();
            prop_assert_eq!(a.key(), b.key());
        }

        /// A password is accepted exactly when it is 1..=72 bytes without
        /// NUL, in the form typed and in its NFC form.
        #[test]
        fn password_rule_is_exact(raw in "\\PC{0,40}|[a\u{0}€\u{958}]{0,80}") {
            let ok = !raw.is_empty()
                && raw.len() <= MAX_PASSWORD_BYTES
                && nfc(&raw).len() <= MAX_PASSWORD_BYTES
                && !raw.contains('\0');
            prop_assert_eq!(Password::parse(&raw).is_ok(), ok);
        }
    }
}
