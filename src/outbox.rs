//! The queue between the use cases and the delivery worker: requests only
//! enqueue, so a slow or failing mailer never holds one up.

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};

use crate::one_time::Purpose;
use crate::token::Token;
use crate::user::{Email, UserId};

/// Jobs waiting for the worker at most; past that, requests get 503.
pub const QUEUE: usize = 1024;

/// Who a token goes to.
#[derive(Debug, Clone)]
pub enum Recipient {
    /// Whoever registered this address, if anyone (production: the
    /// request learns nothing either way).
    Address(Email),
    /// This user, at the pending address of their email change.
    PendingAddress(UserId),
}

/// A message with no token: something happened to the account, said to
/// the address that would want to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    PasswordChanged,
    /// To the old address, when a change to a new one is asked for.
    EmailChanged,
    AccountDeleted,
}

impl Notice {
    /// The message type, as webhook bodies and templates name it.
    pub fn name(self) -> &'static str {
        match self {
            Notice::PasswordChanged => "password_changed",
            Notice::EmailChanged => "email_changed",
            Notice::AccountDeleted => "account_deleted",
        }
    }
}

/// Work for the delivery worker.
#[derive(Debug)]
pub enum Job {
    /// Issue a token of `purpose` for `to` (if it names an account),
    /// then deliver it. The address is the requester's, for the audit
    /// line.
    Issue {
        purpose: Purpose,
        to: Recipient,
        ip: std::net::IpAddr,
    },
    /// Deliver a token already issued (dev, where the answer carries it
    /// too).
    Deliver {
        purpose: Purpose,
        email: String,
        token: Token,
        expires_at: String,
    },
    /// Send a notice to `email`; `new_email` says where an address change
    /// goes.
    Notify {
        notice: Notice,
        email: String,
        new_email: Option<String>,
    },
}

/// The sending side, held by the service.
#[derive(Debug, Clone)]
pub struct Outbox(SyncSender<Job>);

/// The queue is full: answer 503 and let the client retry.
#[derive(Debug)]
pub struct Full;

impl Outbox {
    /// Enqueues `job` without waiting.
    pub fn send(&self, job: Job) -> Result<(), Full> {
        match self.0.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(Full),
        }
    }
}

/// A bounded job queue: the outbox for the service, the inbox for the
/// worker.
pub fn queue() -> (Outbox, Receiver<Job>) {
    let (tx, rx) = mpsc::sync_channel(QUEUE);
    (Outbox(tx), rx)
}
