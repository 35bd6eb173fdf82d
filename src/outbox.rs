//! The queue between the use cases and the delivery worker: requests only
//! enqueue, so a slow or failing mailer never holds one up.

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};

use crate::token::Token;
use crate::user::Email;

/// Jobs waiting for the worker at most; past that, requests get 503.
pub const QUEUE: usize = 1024;

/// Work for the delivery worker.
#[derive(Debug)]
pub enum Job {
    /// Issue a token for this email if it is registered, then deliver it
    /// (production: the request learns nothing either way). The address
    /// is the requester's, for the audit line.
    Issue { email: Email, ip: std::net::IpAddr },
    /// Deliver a token already issued (dev with a channel).
    Deliver {
        email: String,
        token: Token,
        expires_at: String,
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
