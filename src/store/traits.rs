//! The storage traits, by purpose: what a request needs ([`UserStore`],
//! [`SessionStore`], [`TokenStore`]) apart from what the admin commands
//! need ([`Maintenance`]).

use std::ops::ControlFlow;

use super::StoreError;
use crate::message::Message;
use crate::one_time::{OneTimeToken, Purpose};
use crate::outbox::{Caught, Intent, Queued};
use crate::session::{Session, SessionId};
use crate::token::TokenHash;
use crate::user::{Email, NewUser, TotpState, User, UserId};

/// One field update of a user. The second-factor changes carry their own
/// precondition, checked in the same transaction as the write, so two
/// requests racing with one code cannot both succeed.
#[derive(Debug, Clone)]
pub enum UserChange {
    Email(Email),
    /// A hash authd made ([`crate::hasher::Hasher::hash`]): of the
    /// password's NFC form, so it also marks the password normalised.
    HashedPassword(String),
    EmailVerified(bool),
    /// The address an email change waits to verify (`None`: none).
    PendingEmail(Option<Email>),
    /// A new secret waiting for its first code, replacing any pending
    /// one; `PreconditionFailed` if a second factor is enabled.
    TotpPending(Vec<u8>),
    /// Enables the pending secret `sealed` whose code of `step` was
    /// shown, with these recovery code hashes; `PreconditionFailed` if
    /// that secret is no longer the pending one or `step` was used.
    TotpEnable {
        sealed: Vec<u8>,
        step: u64,
        recovery: Vec<[u8; 32]>,
    },
    /// The enabled second factor sealed as `sealed` had its code of
    /// `step` shown; `PreconditionFailed` if that step, or a later one,
    /// was used, or the second factor is another one now (turned off and
    /// enrolled again meanwhile).
    TotpStep {
        sealed: Vec<u8>,
        step: u64,
    },
    /// A recovery code with this SHA-256 was shown, and goes;
    /// `PreconditionFailed` if it is not (or no longer) one of them.
    TotpRecovery([u8; 32]),
    /// The second factor goes, enabled or pending.
    TotpOff,
    /// The secret sealed as `from` is sealed again as `to` (a key
    /// rotation); `PreconditionFailed` if it is no longer `from`.
    TotpReseal {
        from: Vec<u8>,
        to: Vec<u8>,
    },
}

impl UserChange {
    /// Makes this change to `user` in memory, or refuses it with
    /// `PreconditionFailed` when the record no longer allows it; the store
    /// writes the result and keeps its email index in step.
    pub fn apply_to(&self, user: &mut User) -> Result<(), StoreError> {
        match self {
            UserChange::Email(email) => user.email = email.clone(),
            UserChange::HashedPassword(hash) => {
                user.hashed_password = hash.clone();
                user.password_normalized = true;
            }
            UserChange::EmailVerified(verified) => user.email_verified = *verified,
            UserChange::PendingEmail(pending) => user.pending_email = pending.clone(),
            UserChange::TotpPending(sealed) => {
                if user.totp_enabled().is_some() {
                    return Err(StoreError::PreconditionFailed);
                }
                user.totp = Some(TotpState {
                    sealed_secret: sealed.clone(),
                    enabled: false,
                    last_step: 0,
                    recovery: Vec::new(),
                });
            }
            UserChange::TotpEnable {
                sealed,
                step,
                recovery,
            } => match &mut user.totp {
                Some(totp) if !totp.enabled && totp.sealed_secret == *sealed => {
                    if *step <= totp.last_step {
                        return Err(StoreError::PreconditionFailed);
                    }
                    totp.enabled = true;
                    totp.last_step = *step;
                    totp.recovery = recovery.clone();
                }
                _ => return Err(StoreError::PreconditionFailed),
            },
            UserChange::TotpStep { sealed, step } => match &mut user.totp {
                Some(totp)
                    if totp.enabled && totp.sealed_secret == *sealed && *step > totp.last_step =>
                {
                    totp.last_step = *step;
                }
                _ => return Err(StoreError::PreconditionFailed),
            },
            UserChange::TotpRecovery(hash) => match &mut user.totp {
                Some(totp) if totp.enabled && totp.recovery.contains(hash) => {
                    totp.recovery.retain(|kept| kept != hash);
                }
                _ => return Err(StoreError::PreconditionFailed),
            },
            UserChange::TotpOff => user.totp = None,
            UserChange::TotpReseal { from, to } => match &mut user.totp {
                Some(totp) if totp.sealed_secret == *from => totp.sealed_secret = to.clone(),
                _ => return Err(StoreError::PreconditionFailed),
            },
        }
        Ok(())
    }
}

/// What else a user update ends, in its own transaction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ends {
    /// Every session of the user (a password set by an administrator must
    /// not leave an attacker's session alive).
    pub sessions: bool,
    /// The user's one-time tokens of these purposes: a pending reset
    /// asked for before a password change must not undo it, and after a
    /// password or address change no link mailed before it may act
    /// ([`Purpose::ALL`]).
    pub tokens: &'static [Purpose],
    /// With `sessions`: the one session that stays (the caller's own, when
    /// a signed-in user changes their password).
    pub keep_session: Option<TokenHash>,
}

/// A one-time token's redemption, with what must still hold when it
/// writes: the token is the user's, of `purpose`, not expired at `now`,
/// and issued at or after `issued_from` (the configured lifetime, counted
/// back from `now`).
#[derive(Debug, Clone, Copy)]
pub struct Redemption<'a> {
    pub token_hash: &'a TokenHash,
    pub user: UserId,
    pub purpose: Purpose,
    pub now: u64,
    pub issued_from: u64,
}

/// Users: identity and credentials.
pub trait UserStore: Send + Sync {
    /// Creates a user; `EmailTaken` if the email's key exists.
    fn create_user(&self, new: &NewUser) -> Result<User, StoreError>;

    /// Creates a user as registration does: unverified, created now, its
    /// password hashed by authd (normalised).
    fn add_user(&self, email: &Email, hashed_password: &str) -> Result<User, StoreError> {
        self.create_user(&NewUser {
            email: email.clone(),
            hashed_password: hashed_password.to_owned(),
            password_normalized: true,
            email_verified: false,
            created_at: Some(crate::clock::unix_millis()),
            totp: None,
        })
    }

    /// User `id`; `NotFound` if none.
    fn user_by_id(&self, id: UserId) -> Result<User, StoreError>;

    /// The user whose address is stored under `key`; `NotFound` if none.
    fn user_by_key(&self, key: &str) -> Result<User, StoreError>;

    /// The user `email` is the address of (in any letter case, any Unicode
    /// spelling of it: [`Email::key`]); `NotFound` if none.
    ///
    /// A spelling whose key changed with the email rules of store format 3
    /// / schema 5 is first looked up under its old key
    /// ([`Email::legacy_key`]): two old accounts that came to share a key
    /// keep their old ones, and each stays reachable by the spelling it
    /// registered with. Only spellings outside lowercase ASCII take the
    /// second read.
    fn user_by_email(&self, email: &Email) -> Result<User, StoreError> {
        let legacy = email.legacy_key();
        if legacy != email.key() {
            match self.user_by_key(&legacy) {
                Err(StoreError::NotFound) => {}
                found => return found,
            }
        }
        self.user_by_key(email.key())
    }

    /// Applies `changes` to user `id`, if its password hash is still
    /// `password_is` (when given), atomically with the email index and with
    /// what `ends` names.
    fn update_user(
        &self,
        id: UserId,
        password_is: Option<&str>,
        changes: &[UserChange],
        ends: Ends,
    ) -> Result<User, StoreError>;

    /// Removes user `id` with its sessions and tokens, atomically.
    fn delete_user(&self, id: UserId) -> Result<(), StoreError>;

    /// Reads and writes the store, proving it answers (health checks).
    fn ping(&self) -> Result<(), StoreError>;

    /// Makes durable what was written without waiting for the disk
    /// (session activity); called once at shutdown.
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Sessions: any number per user, each found by its token's hash.
pub trait SessionStore: Send + Sync {
    /// Stores `session`, if its user's password hash is still
    /// `password_is` (a login must not outlive a password change that
    /// raced it), making `changes` to the user (a rehashed password, the
    /// second factor's step or recovery code) in the same transaction.
    /// The user's oldest sessions end so that at most `max_per_user`
    /// remain. `PreconditionFailed` if the password changed or a change
    /// is refused ([`UserChange::apply_to`]), `NotFound` if the user is
    /// gone. `changes` never change the address.
    fn open_session(
        &self,
        session: &Session,
        password_is: &str,
        changes: &[UserChange],
        max_per_user: usize,
    ) -> Result<(), StoreError>;

    /// The session with this token hash and its user: the whole of a
    /// session check, at most two reads.
    fn session(&self, token_hash: &TokenHash) -> Result<Option<(Session, User)>, StoreError>;

    /// Records activity on a session (for the idle timeout). Not flushed:
    /// losing it in a crash only shortens one idle window, and flushing on
    /// every authenticated read would cost far more. Does nothing if the
    /// session has ended.
    fn touch_session(&self, token_hash: &TokenHash, last_seen: u64) -> Result<(), StoreError>;

    /// Every session of `user`, newest first.
    fn sessions_of(&self, user: UserId) -> Result<Vec<Session>, StoreError>;

    /// Ends the session with this token hash; `false` if it had ended.
    fn end_session(&self, token_hash: &TokenHash) -> Result<bool, StoreError>;

    /// Ends the session of `user` with handle `id`; `false` if the user
    /// has no such session.
    fn end_session_by_id(&self, user: UserId, id: SessionId) -> Result<bool, StoreError>;

    /// Ends every session of `user` but the one with hash `keep`, if
    /// given; returns how many ended.
    fn end_sessions_of(&self, user: UserId, keep: Option<&TokenHash>) -> Result<usize, StoreError>;

    /// Ends every session created before `created_before` or last used
    /// before `seen_before` (Unix ms); returns how many. Its cost follows
    /// the number of sessions, not of users.
    fn expire_sessions(&self, created_before: u64, seen_before: u64) -> Result<usize, StoreError>;
}

/// One-time tokens: at most one per user and purpose.
pub trait TokenStore: Send + Sync {
    /// Stores `token`, replacing the user's earlier token of its purpose;
    /// `NotFound` if the user is gone.
    fn issue_token(&self, token: &OneTimeToken) -> Result<(), StoreError>;

    /// The token with this hash and its user.
    fn token(&self, token_hash: &TokenHash) -> Result<Option<(OneTimeToken, User)>, StoreError>;

    /// Drops the token with this hash; `false` if it was gone.
    fn drop_token(&self, token_hash: &TokenHash) -> Result<bool, StoreError>;

    /// Drops `user`'s token of `purpose`; `false` if there was none.
    fn drop_token_of(&self, user: UserId, purpose: Purpose) -> Result<bool, StoreError>;

    /// Redeems a one-time token in one transaction: if the token still
    /// exists and is as `redemption` requires (its user's, its purpose,
    /// unexpired), consumes it and makes `changes` to its user with what
    /// `ends` names, as [`UserStore::update_user`] does (`EmailTaken` if
    /// a new address's key is held). `PreconditionFailed` otherwise (used,
    /// replaced or expired meanwhile), so two redemptions racing cannot
    /// both succeed.
    fn redeem(
        &self,
        redemption: &Redemption<'_>,
        changes: &[UserChange],
        ends: Ends,
    ) -> Result<User, StoreError>;

    /// Drops every token that expired by `now` or was issued before
    /// `issued_before` (Unix ms); returns how many.
    fn expire_tokens(&self, now: u64, issued_before: u64) -> Result<usize, StoreError>;
}

/// The delivery queue and the dev outbox ([`crate::outbox`]). On
/// PostgreSQL several instances share them: a claimed message is leased
/// to one worker (`FOR UPDATE SKIP LOCKED`), so none is sent twice by two
/// instances while its lease runs.
pub trait QueueStore: Send + Sync {
    /// Queues `intent`, due at `now`, durably; `QueueFull` when `max`
    /// messages wait already (dead letters not counted).
    fn enqueue(&self, intent: &Intent, now: u64, max: usize) -> Result<u64, StoreError>;

    /// Takes the message due first (`next_at` at or before `now`, not
    /// dead) and leases it until `now + lease`: until then no other
    /// worker takes it. `None` if nothing is due.
    fn claim(&self, now: u64, lease: u64) -> Result<Option<Queued>, StoreError>;

    /// Removes message `id`: sent, or nothing to send.
    fn finish(&self, id: u64) -> Result<(), StoreError>;

    /// Records failed attempt number `attempts` of message `id` with its
    /// reason: tried again from `next_at`, or, `dead`, kept as a dead
    /// letter.
    fn fail(
        &self,
        id: u64,
        attempts: u32,
        next_at: u64,
        error: &str,
        dead: bool,
    ) -> Result<(), StoreError>;

    /// When the first waiting message is due; `None` if none waits.
    fn next_due(&self) -> Result<Option<u64>, StoreError>;

    /// Every queued message, waiting and dead, in id order.
    fn queued(&self) -> Result<Vec<Queued>, StoreError>;

    /// How many messages wait and how many are dead letters, without
    /// reading them (the metrics; [`QueueStore::queued`] decodes all).
    fn queue_counts(&self) -> Result<QueueCounts, StoreError>;

    /// Puts dead letters (all, or the one with `id`) back in the queue,
    /// due at `now`, their attempts counted afresh; returns how many.
    fn revive(&self, id: Option<u64>, now: u64) -> Result<usize, StoreError>;

    /// Removes dead letters (all, or the one with `id`); returns how many.
    fn purge_dead(&self, id: Option<u64>) -> Result<usize, StoreError>;

    /// Keeps `message` in the dev outbox, caught at `now`, dropping the
    /// oldest past `keep`; returns its id.
    fn catch(&self, message: &Message, now: u64, keep: usize) -> Result<u64, StoreError>;

    /// What the dev outbox caught, oldest first.
    fn caught(&self) -> Result<Vec<Caught>, StoreError>;

    /// Empties the dev outbox; returns how many messages went.
    fn purge_caught(&self) -> Result<usize, StoreError>;
}

/// What a request needs of a store: the request-path traits.
pub trait RequestStore: UserStore + SessionStore + TokenStore + QueueStore {}

impl<T: UserStore + SessionStore + TokenStore + QueueStore> RequestStore for T {}

/// Messages in the delivery queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Still to be sent (due now or later).
    pub waiting: usize,
    /// Kept as dead letters after their last attempt.
    pub dead: usize,
}

/// Numbers of records, for `authd check` and the operator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub users: usize,
    pub sessions: usize,
    pub tokens: usize,
}

/// What the admin commands need beyond the request path: scans, bulk
/// writes and checks.
pub trait Maintenance: Send + Sync {
    /// Creates many users in as few durable writes as possible (bulk
    /// import), in order, returning their ids. All or nothing per call:
    /// `EmailTaken` if any email exists already or twice in `users`.
    fn add_users(&self, users: &[NewUser]) -> Result<Vec<UserId>, StoreError>;

    /// Starts an import that is all or nothing across any number of
    /// [`Import::add_users`] calls: until [`Import::commit`], a crash, a
    /// kill or [`Import::roll_back`] leaves none of its users. On
    /// PostgreSQL it is one transaction (its users invisible until the
    /// commit); on sled, whose transactions must stay small, each batch is
    /// its own transaction tagged with the import's id, the commit removes
    /// the tags in one more, and the next open of the store removes the
    /// users of any batch still tagged.
    fn begin_import(&self) -> Result<Box<dyn Import + '_>, StoreError>;

    /// Calls `visit` with every user in id order, without loading them all
    /// into memory; stops early when `visit` returns `Break`.
    fn each_user(&self, visit: &mut dyn FnMut(User) -> ControlFlow<()>) -> Result<(), StoreError>;

    /// Which of `keys` are the key of a user's address: what an import
    /// checks for its whole input at once (one query per 10,000 keys on
    /// PostgreSQL rather than a round trip per user).
    fn held_keys(&self, keys: &[&str]) -> Result<std::collections::HashSet<String>, StoreError>;

    /// Numbers of users, sessions and one-time tokens.
    fn counts(&self) -> Result<Counts, StoreError>;

    /// Walks every record (and index, where the store keeps its own) and
    /// lists each inconsistency in words; empty means consistent.
    fn check(&self) -> Result<Vec<String>, StoreError>;
}

/// An import in progress (see [`Maintenance::begin_import`]). Dropped
/// without [`Import::commit`], it leaves nothing: PostgreSQL rolls its
/// transaction back, sled rolls its batches back at the next open.
pub trait Import {
    /// Creates `users` in order, returning their ids; `EmailTaken` if any
    /// email exists already or twice in `users` (this call then wrote
    /// nothing, and the import may still be rolled back or committed).
    fn add_users(&mut self, users: &[NewUser]) -> Result<Vec<UserId>, StoreError>;

    /// Makes every user added so far permanent, in one durable write.
    fn commit(self: Box<Self>) -> Result<(), StoreError>;

    /// Removes every user added so far; returns how many were added.
    fn roll_back(self: Box<Self>) -> Result<usize, StoreError>;
}
