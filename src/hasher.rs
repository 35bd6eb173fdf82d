//! A bounded pool of bcrypt workers.
//!
//! bcrypt is slow on purpose (about 0.27 s at cost 12 here). If request threads
//! hashed themselves, a burst of logins would occupy every HTTP thread and a
//! cheap `GET /profile` would wait behind them. Instead hashing runs on a
//! fixed set of workers (one per core by default) fed by a bounded queue;
//! request threads wait for their result, and when the queue is full the
//! request is refused at once with [`HashError::Busy`] (HTTP 503) rather than
//! queueing without bound.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;

use crate::user::Password;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Why a hash or verification did not happen.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("all bcrypt workers are busy and the queue is full")]
    Busy,
    #[error("the bcrypt worker pool has stopped")]
    Unavailable,
    #[error("bcrypt failed: {0}")]
    Bcrypt(#[from] bcrypt::BcryptError),
}

/// Counts of work done, for tests and diagnostics ("did this request cost a
/// bcrypt verification?" is answered by counting, never by timing).
#[derive(Debug, Default)]
pub struct HashStats {
    hashes: AtomicU64,
    verifies: AtomicU64,
}

impl HashStats {
    /// Passwords hashed so far.
    pub fn hashes(&self) -> u64 {
        self.hashes.load(Ordering::Relaxed)
    }

    /// Passwords verified so far (including dummy verifications).
    pub fn verifies(&self) -> u64 {
        self.verifies.load(Ordering::Relaxed)
    }
}

/// Handle to the worker pool. Cloning shares the pool.
#[derive(Clone)]
pub struct Hasher {
    queue: SyncSender<Job>,
    cost: u32,
    stats: Arc<HashStats>,
}

impl Hasher {
    /// Starts `workers` threads hashing at `cost`, with room for `queue`
    /// waiting jobs. The threads end when the last handle is dropped.
    pub fn start(workers: usize, queue: usize, cost: u32) -> std::io::Result<Hasher> {
        let (tx, rx) = mpsc::sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..workers.max(1) {
            let rx = Arc::clone(&rx);
            thread::Builder::new()
                .name(format!("bcrypt-{n}"))
                .spawn(move || work(&rx))?;
        }
        Ok(Hasher {
            queue: tx,
            cost,
            stats: Arc::default(),
        })
    }

    /// The configured bcrypt cost for new hashes.
    pub fn cost(&self) -> u32 {
        self.cost
    }

    /// Work counters.
    pub fn stats(&self) -> &HashStats {
        &self.stats
    }

    /// Hashes `password` at the configured cost.
    pub fn hash(&self, password: &Password) -> Result<String, HashError> {
        let secret = password.clone();
        let cost = self.cost;
        self.stats.hashes.fetch_add(1, Ordering::Relaxed);
        // Password::parse capped the length at 72 bytes, all of which bcrypt
        // reads, so plain `hash` is exact here. (`non_truncating_hash` would
        // also refuse a valid 72-byte password, as it counts the NUL.)
        self.run(move || bcrypt::hash(secret.expose(), cost))?
            .map_err(HashError::from)
    }

    /// Checks `password` against a stored bcrypt hash.
    pub fn verify(&self, password: &Password, hash: &str) -> Result<bool, HashError> {
        let secret = password.clone();
        let hash = hash.to_owned();
        self.stats.verifies.fetch_add(1, Ordering::Relaxed);
        self.run(move || bcrypt::verify(secret.expose(), &hash))?
            .map_err(HashError::from)
    }

    /// Runs `f` on a worker and waits for its result.
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let (reply, result) = mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            // The waiter may have gone; nothing to do about it then.
            let _ = reply.send(f());
        });
        match self.queue.try_send(job) {
            Ok(()) => result.recv().map_err(|_| HashError::Unavailable),
            Err(TrySendError::Full(_)) => Err(HashError::Busy),
            Err(TrySendError::Disconnected(_)) => Err(HashError::Unavailable),
        }
    }
}

/// Scheduling niceness of the bcrypt workers: they yield the CPU to the
/// HTTP threads, so cheap requests stay fast while logins keep every core
/// busy, and still take all the CPU that nothing else wants.
const WORKER_NICE: libc::c_int = 10;

/// Lowers the calling thread's scheduling priority (Linux: per thread).
/// Best effort: if the system refuses, hashing runs at normal priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid has no preconditions; setpriority on our own thread id
    // only changes this thread's niceness, and its failure is harmless.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, WORKER_NICE);
    }
}

/// A worker's loop: take the next job, run it, survive its panic.
fn work(jobs: &Mutex<Receiver<Job>>) {
    lower_priority();
    loop {
        let next = {
            let guard = jobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            guard.recv()
        };
        match next {
            // A panicking job drops its reply sender, which its waiter sees
            // as `Unavailable`; the worker itself carries on.
            Ok(job) => drop(catch_unwind(AssertUnwindSafe(job))),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn hashes_and_verifies_exactly() {
        let hasher = Hasher::start(2, 4, 4).unwrap();
        let password = Password::parse("correct horse").unwrap();
        let hash = hasher.hash(&password).unwrap();
        assert!(hash.starts_with("$2b$04$"));
        assert!(hasher.verify(&password, &hash).unwrap());
        let wrong = Password::parse("correct horsf").unwrap();
        assert!(!hasher.verify(&wrong, &hash).unwrap());
        assert_eq!(hasher.stats().hashes(), 1);
        assert_eq!(hasher.stats().verifies(), 2);
    }

    #[test]
    fn all_72_bytes_count() {
        let hasher = Hasher::start(1, 1, 4).unwrap();
        let long = "p".repeat(71) + "1";
        let hash = hasher.hash(&Password::parse(&long).unwrap()).unwrap();
        let other_last = "p".repeat(71) + "2";
        assert!(!hasher
            .verify(&Password::parse(&other_last).unwrap(), &hash)
            .unwrap());
        let prefix = "p".repeat(71);
        assert!(!hasher
            .verify(&Password::parse(&prefix).unwrap(), &hash)
            .unwrap());
    }

    #[test]
    fn a_malformed_stored_hash_is_an_error() {
        let hasher = Hasher::start(1, 1, 4).unwrap();
        let password = Password::parse("x").unwrap();
        assert!(matches!(
            hasher.verify(&password, "not a hash"),
            Err(HashError::Bcrypt(_))
        ));
    }

    #[test]
    fn full_queue_is_refused_not_queued() {
        let hasher = Hasher::start(1, 1, 4).unwrap();
        let (release, gate) = mpsc::channel::<()>();
        let (started, running) = mpsc::channel::<()>();
        // Occupy the single worker...
        let busy = hasher.clone();
        let worker = thread::spawn(move || {
            busy.run(move || {
                started.send(()).unwrap();
                gate.recv().unwrap();
            })
        });
        running.recv_timeout(Duration::from_secs(10)).unwrap();
        // ...and the single queue slot, without waiting for it.
        let (ran, queued_done) = mpsc::channel::<()>();
        hasher
            .queue
            .try_send(Box::new(move || ran.send(()).unwrap()))
            .unwrap();
        assert!(matches!(hasher.run(|| 2), Err(HashError::Busy)));
        release.send(()).unwrap();
        worker.join().unwrap().unwrap();
        queued_done.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(hasher.run(|| 3).unwrap(), 3);
    }

    #[test]
    fn a_panicking_job_does_not_kill_the_worker() {
        let hasher = Hasher::start(1, 1, 4).unwrap();
        let result: Result<(), _> = hasher.run(|| panic!("boom"));
        assert!(matches!(result, Err(HashError::Unavailable)));
        assert_eq!(hasher.run(|| 5).unwrap(), 5);
    }
}
