//! The delivery queue's records: what a use case asks to be sent, and what
//! the dev outbox caught.
//!
//! The queue lives in the store, so a message accepted before a crash is
//! sent after the restart, and several instances on one database share it.
//! It holds the intent (the kind, the address, the account), never a token
//! in the production profile: the delivery worker mints the token when it
//! sends, so a copy of the store or a backup grants nothing. Only the dev
//! profile, whose answers carry the token anyway, queues the token it
//! minted, and only the dev outbox keeps sent text (the newest
//! [`CAUGHT_MAX`] messages).

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::message::{Kind, Message};
use crate::one_time::Purpose;
use crate::user::UserId;

/// Messages waiting at most (dead letters not counted); past that, a
/// request whose point is a message gets 503, so open registration cannot
/// grow the queue without bound.
pub const QUEUE_MAX: usize = 10_000;

/// Messages the dev outbox keeps; the oldest go first.
pub const CAUGHT_MAX: usize = 1_000;

/// Something that happened to an account, for the integrator's app
/// (`--events-webhook`), so it can react without polling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountEvent {
    UserCreated,
    UserVerified,
    PasswordChanged,
    UserDeleted,
    TotpEnabled,
    TotpDisabled,
}

impl AccountEvent {
    pub const ALL: [AccountEvent; 6] = [
        AccountEvent::UserCreated,
        AccountEvent::UserVerified,
        AccountEvent::PasswordChanged,
        AccountEvent::UserDeleted,
        AccountEvent::TotpEnabled,
        AccountEvent::TotpDisabled,
    ];

    /// The event's `type` (dotted, as Standard Webhooks' examples name
    /// them; never one of [`Kind`]'s names, so the two share a column).
    pub fn name(self) -> &'static str {
        match self {
            AccountEvent::UserCreated => "user.created",
            AccountEvent::UserVerified => "user.verified",
            AccountEvent::PasswordChanged => "password.changed",
            AccountEvent::UserDeleted => "user.deleted",
            AccountEvent::TotpEnabled => "totp.enabled",
            AccountEvent::TotpDisabled => "totp.disabled",
        }
    }
}

/// What a queued item is: a message to a person, or an event for the
/// integrator's app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    Message(Kind),
    Event(AccountEvent),
}

impl Topic {
    /// The stored name: the message kind's or the event's.
    pub fn name(self) -> &'static str {
        match self {
            Topic::Message(kind) => kind.name(),
            Topic::Event(event) => event.name(),
        }
    }

    /// The topic a stored name stands for.
    pub fn from_name(name: &str) -> Option<Topic> {
        Kind::from_name(name).map(Topic::Message).or_else(|| {
            AccountEvent::ALL
                .into_iter()
                .find(|event| event.name() == name)
                .map(Topic::Event)
        })
    }
}

impl std::fmt::Display for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A message to send, as queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub kind: Topic,
    /// The address it goes to. For a token asked for by address in the
    /// production profile, the address as typed: the worker looks the
    /// account up when it sends, and sends nothing if there is none.
    pub to: String,
    /// The account it is about, when the request knew it.
    pub user: Option<UserId>,
    /// An email change's new address (in the old address's notice).
    pub new_email: Option<String>,
    /// A token minted by the request: the dev profile only, where the
    /// answer carries it too.
    pub token: Option<String>,
    /// Who asked (for the worker's audit line).
    pub ip: Option<String>,
}

/// A queued message with its delivery state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// The queue's own numbering, increasing.
    pub id: u64,
    pub intent: Intent,
    /// Unix milliseconds at enqueue.
    pub created_at: u64,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Unix milliseconds from which it may be tried (again); while a
    /// worker holds it, the end of that worker's lease.
    pub next_at: u64,
    /// Why the last attempt failed, without secrets.
    pub last_error: Option<String>,
    /// Given up on: kept for `authd outbox` to show and retry.
    pub dead: bool,
}

/// A message the dev outbox caught: what it would have sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caught {
    pub id: u64,
    /// Unix milliseconds.
    pub created_at: u64,
    pub message: Message,
}

/// The message kind that carries a token of `purpose`.
pub fn kind_of(purpose: Purpose) -> Kind {
    match purpose {
        Purpose::Reset => Kind::Reset,
        Purpose::Verify => Kind::Verify,
        Purpose::EmailChange => Kind::EmailChange,
    }
}

/// The token purpose a message kind carries, if it carries one.
pub fn purpose_of(kind: Kind) -> Option<Purpose> {
    match kind {
        Kind::Reset => Some(Purpose::Reset),
        Kind::Verify => Some(Purpose::Verify),
        Kind::EmailChange => Some(Purpose::EmailChange),
        Kind::PasswordChanged
        | Kind::EmailChanged
        | Kind::AccountDeleted
        | Kind::TotpEnabled
        | Kind::TotpDisabled
        | Kind::RecoveryCodeUsed => None,
    }
}

/// Wakes the delivery worker when a message is queued, so delivery starts
/// at once rather than at the worker's next look (which is what picks up
/// messages other instances queued, and retries).
#[derive(Debug, Default)]
pub struct Bell {
    rung: Mutex<bool>,
    wake: Condvar,
}

impl Bell {
    /// Rings: the worker stops waiting.
    pub fn ring(&self) {
        if let Ok(mut rung) = self.rung.lock() {
            *rung = true;
            self.wake.notify_all();
        }
    }

    /// Waits until rung or `timeout` passed, and resets.
    pub fn wait(&self, timeout: Duration) {
        let Ok(rung) = self.rung.lock() else {
            return;
        };
        let result = self.wake.wait_timeout_while(rung, timeout, |rung| !*rung);
        if let Ok((mut rung, _)) = result {
            *rung = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn topics_round_trip_by_name() {
        for kind in Kind::ALL {
            assert_eq!(Topic::from_name(kind.name()), Some(Topic::Message(kind)));
        }
        for event in AccountEvent::ALL {
            assert_eq!(Topic::from_name(event.name()), Some(Topic::Event(event)));
        }
        assert_eq!(Topic::from_name("user.renamed"), None);
    }

    #[test]
    fn kinds_and_purposes_pair_up() {
        for purpose in Purpose::ALL {
            assert_eq!(purpose_of(kind_of(purpose)), Some(purpose));
        }
        assert_eq!(purpose_of(Kind::AccountDeleted), None);
    }

    #[test]
    fn a_bell_wakes_a_waiter_and_times_out_alone() {
        let bell = Arc::new(Bell::default());
        let started = Instant::now();
        bell.wait(Duration::from_millis(50));
        assert!(started.elapsed() >= Duration::from_millis(50));
        let ringer = Arc::clone(&bell);
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            ringer.ring();
        });
        let started = Instant::now();
        bell.wait(Duration::from_secs(30));
        assert!(started.elapsed() < Duration::from_secs(10));
        thread.join().unwrap();
        // A ring before the wait is not lost.
        bell.ring();
        let started = Instant::now();
        bell.wait(Duration::from_secs(30));
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
