//! [`QueueStore`] on sled: `queue` (id -> message), `queue_due` ((due
//! time, id) -> nothing, for the messages still waiting, so the worker
//! finds the one due first without a scan), `caught` (id -> a message the
//! dev outbox caught), and in `meta` the number of waiting messages (the
//! queue's bound is checked in the enqueue's transaction).
//!
//! One process holds a sled store, so a lease only keeps this process's
//! worker from taking a message twice; it is the same code as several
//! instances need on PostgreSQL.

use sled::transaction::TransactionalTree;
use sled::Transactional;

use super::{abort, flatten, tx, SledStore, TxResult};
use crate::codec::{decode_caught, decode_queued, encode_caught, encode_queued};
use crate::message::Message;
use crate::outbox::{Caught, Intent, Queued};
use crate::store::{QueueCounts, QueueStore, StoreError};

/// Key in `meta` holding how many messages wait (not dead).
const WAITING_KEY: &[u8] = b"queue_waiting";

/// What a claim found at the head of the due index.
enum Claim {
    Leased(Box<Queued>),
    /// An entry that did not match its record, now removed.
    Stale,
}

/// The `queue_due` key of a waiting message.
fn due_key(next_at: u64, id: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&next_at.to_be_bytes());
    key[8..].copy_from_slice(&id.to_be_bytes());
    key
}

fn id_of(bytes: &[u8]) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt(format!("queue key has {} bytes", bytes.len())))
}

fn waiting_in(meta: &TransactionalTree) -> TxResult<u64> {
    Ok(match meta.get(WAITING_KEY)? {
        Some(bytes) => match <[u8; 8]>::try_from(bytes.as_ref()) {
            Ok(b) => u64::from_be_bytes(b),
            Err(_) => return abort(StoreError::Corrupt("queue count is not 8 bytes".to_owned())),
        },
        None => 0,
    })
}

fn set_waiting(meta: &TransactionalTree, n: u64) -> TxResult<()> {
    meta.insert(WAITING_KEY, &n.to_be_bytes())?;
    Ok(())
}

impl SledStore {
    /// Rewrites message `id` as `change` says, keeping `queue_due` and the
    /// count in step with whether it waits; `false` if it is gone.
    fn change_queued(&self, id: u64, change: &dyn Fn(&mut Queued)) -> Result<bool, StoreError> {
        let _writing = self.writing();
        let key = id.to_be_bytes();
        let changed = (&self.queue, &self.queue_due, &self.meta)
            .transaction(|(queue, due, meta)| {
                let Some(bytes) = queue.get(key)? else {
                    return Ok(false);
                };
                let old = tx(decode_queued(id, &bytes))?;
                let mut new = old.clone();
                change(&mut new);
                if !old.dead {
                    due.remove(due_key(old.next_at, id).as_slice())?;
                }
                if !new.dead {
                    due.insert(due_key(new.next_at, id).as_slice(), &[])?;
                }
                let waiting = waiting_in(meta)?;
                match (old.dead, new.dead) {
                    (false, true) => set_waiting(meta, waiting.saturating_sub(1))?,
                    (true, false) => set_waiting(meta, waiting + 1)?,
                    _ => {}
                }
                queue.insert(key.as_slice(), tx(encode_queued(&new))?)?;
                Ok(true)
            })
            .map_err(flatten)?;
        self.flush()?;
        Ok(changed)
    }

    /// Ids of the dead letters, or of the one with `id` if it is dead.
    fn dead_ids(&self, id: Option<u64>) -> Result<Vec<u64>, StoreError> {
        let mut ids = Vec::new();
        for entry in self.queue.iter() {
            let (key, value) = entry?;
            let found = id_of(&key)?;
            if id.is_some_and(|wanted| wanted != found) {
                continue;
            }
            if decode_queued(found, &value)?.dead {
                ids.push(found);
            }
        }
        Ok(ids)
    }
}

impl QueueStore for SledStore {
    fn enqueue(&self, intent: &Intent, now: u64, max: usize) -> Result<u64, StoreError> {
        let _writing = self.writing();
        let id = self.db.generate_id()?;
        let record = encode_queued(&Queued {
            id,
            intent: intent.clone(),
            created_at: now,
            attempts: 0,
            next_at: now,
            last_error: None,
            dead: false,
        })?;
        (&self.queue, &self.queue_due, &self.meta)
            .transaction(|(queue, due, meta)| {
                let waiting = waiting_in(meta)?;
                if waiting >= max as u64 {
                    return abort(StoreError::QueueFull);
                }
                queue.insert(id.to_be_bytes().as_slice(), record.as_slice())?;
                due.insert(due_key(now, id).as_slice(), &[])?;
                set_waiting(meta, waiting + 1)
            })
            .map_err(flatten)?;
        self.flush()?;
        Ok(id)
    }

    /// A due-index entry that disagrees with its record (the record
    /// gone, dead, or due at another time: which only a damaged store
    /// holds) is removed as it is met, so it cannot stand at the head of
    /// the index and hold up every message behind it.
    fn claim(&self, now: u64, lease: u64) -> Result<Option<Queued>, StoreError> {
        let until = now.saturating_add(lease);
        loop {
            let Some((key, _)) = self.queue_due.first()? else {
                return Ok(None);
            };
            let Ok(key) = <[u8; 16]>::try_from(key.as_ref()) else {
                return Err(StoreError::Corrupt(
                    "queue_due key is not 16 bytes".to_owned(),
                ));
            };
            let (due_at, id) = (id_of(&key[..8])?, id_of(&key[8..])?);
            if due_at > now {
                return Ok(None);
            }
            let _writing = self.writing();
            // Leased by moving its due time: the worker's next look, or
            // another worker's, passes it over until the lease ends.
            // Checked again inside the transaction: another claim may have
            // won.
            let claimed = (&self.queue, &self.queue_due)
                .transaction(|(queue, due)| {
                    let record = match queue.get(id.to_be_bytes())? {
                        Some(bytes) => Some(tx(decode_queued(id, &bytes))?),
                        None => None,
                    };
                    let Some(mut queued) = record.filter(|q| !q.dead && q.next_at == due_at) else {
                        due.remove(key.as_slice())?;
                        return Ok(Claim::Stale);
                    };
                    due.remove(key.as_slice())?;
                    queued.next_at = until;
                    due.insert(due_key(until, id).as_slice(), &[])?;
                    queue.insert(id.to_be_bytes().as_slice(), tx(encode_queued(&queued))?)?;
                    Ok(Claim::Leased(Box::new(queued)))
                })
                .map_err(flatten)?;
            self.flush()?;
            match claimed {
                Claim::Leased(queued) => return Ok(Some(*queued)),
                Claim::Stale => continue,
            }
        }
    }

    fn finish(&self, id: u64) -> Result<(), StoreError> {
        let _writing = self.writing();
        let key = id.to_be_bytes();
        (&self.queue, &self.queue_due, &self.meta)
            .transaction(|(queue, due, meta)| {
                let Some(bytes) = queue.remove(key.as_slice())? else {
                    return Ok(());
                };
                let old = tx(decode_queued(id, &bytes))?;
                if !old.dead {
                    due.remove(due_key(old.next_at, id).as_slice())?;
                    let waiting = waiting_in(meta)?;
                    set_waiting(meta, waiting.saturating_sub(1))?;
                }
                Ok(())
            })
            .map_err(flatten)?;
        self.flush()
    }

    fn fail(
        &self,
        id: u64,
        attempts: u32,
        next_at: u64,
        error: &str,
        dead: bool,
    ) -> Result<(), StoreError> {
        self.change_queued(id, &|queued| {
            queued.attempts = attempts;
            queued.next_at = next_at;
            queued.last_error = Some(error.to_owned());
            queued.dead = dead;
        })
        .map(|_| ())
    }

    fn next_due(&self) -> Result<Option<u64>, StoreError> {
        match self.queue_due.first()? {
            Some((key, _)) => match <[u8; 8]>::try_from(key.get(..8).unwrap_or_default()) {
                Ok(bytes) => Ok(Some(u64::from_be_bytes(bytes))),
                Err(_) => Err(StoreError::Corrupt(
                    "queue_due key is not 16 bytes".to_owned(),
                )),
            },
            None => Ok(None),
        }
    }

    fn queued(&self) -> Result<Vec<Queued>, StoreError> {
        self.queue
            .iter()
            .map(|entry| {
                let (key, value) = entry?;
                Ok(decode_queued(id_of(&key)?, &value)?)
            })
            .collect()
    }

    /// The waiting count kept in `meta`; the dead letters are the rest
    /// of `queue` (its length is a walk of its keys, bounded by the
    /// queue's own bound and the dead letters kept).
    fn queue_counts(&self) -> Result<QueueCounts, StoreError> {
        let waiting = match self.meta.get(WAITING_KEY)? {
            Some(bytes) => <[u8; 8]>::try_from(bytes.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt("queue count is not 8 bytes".to_owned()))?,
            None => 0,
        };
        let waiting = usize::try_from(waiting).unwrap_or(usize::MAX);
        Ok(QueueCounts {
            waiting,
            dead: self.queue.len().saturating_sub(waiting),
        })
    }

    fn revive(&self, id: Option<u64>, now: u64) -> Result<usize, StoreError> {
        let mut revived = 0;
        for id in self.dead_ids(id)? {
            let changed = self.change_queued(id, &|queued| {
                queued.dead = false;
                queued.attempts = 0;
                queued.next_at = now;
            })?;
            revived += usize::from(changed);
        }
        Ok(revived)
    }

    /// Each dead letter goes in a transaction that checks it is still
    /// dead: one revived meanwhile (`authd outbox retry` through the
    /// control socket) stays.
    fn purge_dead(&self, id: Option<u64>) -> Result<usize, StoreError> {
        let _writing = self.writing();
        let mut purged = 0;
        for id in self.dead_ids(id)? {
            let key = id.to_be_bytes();
            let gone = self
                .queue
                .transaction(|queue| {
                    let Some(bytes) = queue.get(key)? else {
                        return Ok(false);
                    };
                    if !tx(decode_queued(id, &bytes))?.dead {
                        return Ok(false);
                    }
                    queue.remove(key.as_slice())?;
                    Ok(true)
                })
                .map_err(flatten)?;
            purged += usize::from(gone);
        }
        self.flush()?;
        Ok(purged)
    }

    fn catch(&self, message: &Message, now: u64, keep: usize) -> Result<u64, StoreError> {
        let _writing = self.writing();
        let id = self.db.generate_id()?;
        let record = encode_caught(&Caught {
            id,
            created_at: now,
            message: message.clone(),
        })?;
        self.caught.insert(id.to_be_bytes(), record)?;
        // The oldest go once there are more than `keep`.
        while self.caught.len() > keep {
            if self.caught.pop_min()?.is_none() {
                break;
            }
        }
        self.flush()?;
        Ok(id)
    }

    fn caught(&self) -> Result<Vec<Caught>, StoreError> {
        self.caught
            .iter()
            .map(|entry| {
                let (key, value) = entry?;
                Ok(decode_caught(id_of(&key)?, &value)?)
            })
            .collect()
    }

    fn purge_caught(&self) -> Result<usize, StoreError> {
        let _writing = self.writing();
        let n = self.caught.len();
        self.caught.clear()?;
        self.flush()?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::store;
    use super::*;
    use crate::message::Kind;
    use crate::outbox::Topic;

    fn intent(to: &str) -> Intent {
        Intent {
            kind: Topic::Message(Kind::Verify),
            to: to.to_owned(),
            user: None,
            new_email: None,
            token: None,
            ip: Some("192.0.2.1".to_owned()),
        }
    }

    #[test]
    fn messages_are_claimed_in_due_order_under_a_lease() {
        let (_dir, store) = store();
        let a = store.enqueue(&intent("a@x.io"), 100, 10).unwrap();
        let b = store.enqueue(&intent("b@x.io"), 100, 10).unwrap();
        assert!(store.claim(99, 50).unwrap().is_none(), "nothing due yet");
        let first = store.claim(100, 50).unwrap().unwrap();
        assert_eq!((first.id, first.next_at), (a, 150));
        assert_eq!(first.intent, intent("a@x.io"));
        // Leased: the next claim takes the other one, then nothing.
        assert_eq!(store.claim(100, 50).unwrap().unwrap().id, b);
        assert!(store.claim(120, 50).unwrap().is_none());
        // An unfinished lease runs out and the message comes back.
        assert_eq!(store.claim(150, 50).unwrap().unwrap().id, a);
        store.finish(a).unwrap();
        store.fail(b, 1, 400, "451 try later", false).unwrap();
        assert_eq!(store.next_due().unwrap(), Some(400));
        let again = store.claim(400, 50).unwrap().unwrap();
        assert_eq!(
            (again.id, again.attempts, again.last_error.as_deref()),
            (b, 1, Some("451 try later"))
        );
    }

    #[test]
    fn a_due_entry_without_its_message_holds_up_nothing() {
        let (_dir, store) = store();
        let a = store.enqueue(&intent("a@x.io"), 100, 10).unwrap();
        let b = store.enqueue(&intent("b@x.io"), 100, 10).unwrap();
        // Damage: a's record gone, its due entry left at the head.
        store.queue.remove(a.to_be_bytes()).unwrap();
        assert_eq!(store.claim(100, 50).unwrap().unwrap().id, b);
        assert!(store.queue_due.get(due_key(100, a)).unwrap().is_none());
        // And an entry due at another time than its record says.
        store.queue_due.insert(due_key(5, b), &[]).unwrap();
        assert!(
            store.claim(120, 50).unwrap().is_none(),
            "b is leased until 150"
        );
        assert_eq!(store.claim(150, 50).unwrap().unwrap().id, b);
    }

    #[test]
    fn the_bound_counts_waiting_messages_only() {
        let (_dir, store) = store();
        let a = store.enqueue(&intent("a@x.io"), 1, 2).unwrap();
        store.enqueue(&intent("b@x.io"), 1, 2).unwrap();
        assert!(matches!(
            store.enqueue(&intent("c@x.io"), 1, 2),
            Err(StoreError::QueueFull)
        ));
        // A dead letter no longer counts; reviving it does again.
        store.fail(a, 5, 0, "550 no such user", true).unwrap();
        assert_eq!(store.next_due().unwrap(), Some(1));
        let c = store.enqueue(&intent("c@x.io"), 1, 2).unwrap();
        assert_eq!(store.revive(Some(c), 5).unwrap(), 0, "c is not dead");
        assert_eq!(store.revive(None, 5).unwrap(), 1);
        let revived = store.queued().unwrap()[0].clone();
        assert_eq!((revived.id, revived.dead, revived.attempts), (a, false, 0));
        store.finish(c).unwrap();
        store.fail(a, 5, 0, "550", true).unwrap();
        assert_eq!(store.purge_dead(None).unwrap(), 1);
        assert_eq!(store.queued().unwrap().len(), 1);
        store.enqueue(&intent("d@x.io"), 1, 2).unwrap();
    }

    #[test]
    fn the_dev_outbox_keeps_the_newest() {
        let (_dir, store) = store();
        for n in 0..5 {
            let message = Message {
                kind: Kind::Reset,
                to: format!("u{n}@x.io"),
                subject: "Reset".to_owned(),
                text: format!("text {n}"),
                html: String::new(),
            };
            store.catch(&message, n, 3).unwrap();
        }
        let kept: Vec<String> = store
            .caught()
            .unwrap()
            .into_iter()
            .map(|c| c.message.to)
            .collect();
        assert_eq!(kept, ["u2@x.io", "u3@x.io", "u4@x.io"]);
        assert_eq!(store.purge_caught().unwrap(), 3);
        assert!(store.caught().unwrap().is_empty());
    }
}
