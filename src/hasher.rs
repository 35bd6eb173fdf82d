//! A bounded pool of password-hashing workers (bcrypt or argon2id).
//!
//! New hashes are made with the configured [`Scheme`] (`--password-hash`);
//! stored hashes of either kind verify, whatever is configured, so a store
//! moves from one algorithm to the other one login at a time (rehash on
//! login, [`Hasher::needs_rehash`]). Django's `pbkdf2_sha256` hashes
//! ([`DjangoPbkdf2`], brought in by `authd import`) verify too, and are
//! always replaced at the next login: authd never makes them.
//!
//! Password hashing is slow on purpose (about 0.27 s for bcrypt at cost 12
//! here). If request threads hashed themselves, a burst of logins would
//! occupy every HTTP thread and a cheap `GET /profile` would wait behind
//! them. Instead hashing runs on a fixed set of workers (one per core by
//! default) fed by a bounded queue;
//! request threads wait for their result, and when the queue is full the
//! request is refused at once with [`HashError::Busy`] (HTTP 503) rather than
//! queueing without bound.
//!
//! The queue is shared fairly: each job belongs to a key (the client
//! address), a key has at most two jobs running and a few places in all
//! (past them [`HashError::KeyBusy`], HTTP 429, for that client only), and
//! keys with work waiting take turns, so a client with forty requests
//! waits behind itself rather than in front of everyone else.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use base64::Engine as _;
use subtle::ConstantTimeEq as _;

use crate::user::{Password, PasswordLimit, MAX_PASSWORD_BYTES};

/// The name of the kind of a stored hash (`bcrypt`, `argon2id`, or
/// `pbkdf2_sha256` for an imported Django hash), as `authd user show`
/// and `authd export` write it; `None` for what is none of them.
pub fn kind_of(hash: &str) -> Option<&'static str> {
    Scheme::of(hash)
        .map(|scheme| scheme.algorithm().as_str())
        .or_else(|| DjangoPbkdf2::parse(hash).ok().map(|_| "pbkdf2_sha256"))
}

/// The algorithm new password hashes are made with (`--password-hash`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Algorithm {
    /// bcrypt: the reference's algorithm, reads 72 bytes of a password.
    Bcrypt,
    /// argon2id (RFC 9106): memory-hard, reads the whole password.
    Argon2id,
}

impl Algorithm {
    /// The name as `--password-hash` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Bcrypt => "bcrypt",
            Algorithm::Argon2id => "argon2id",
        }
    }
}

/// argon2id's cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory per hash, in KiB (`m`).
    pub memory_kib: u32,
    /// Passes over that memory (`t`).
    pub iterations: u32,
    /// Lanes (`p`); the hash still runs on one worker thread.
    pub parallelism: u32,
}

impl Argon2Params {
    /// OWASP's minimum for argon2id (Password Storage Cheat Sheet): 19 MiB,
    /// 2 iterations, 1 lane, the defaults of `--argon2-*`.
    pub const OWASP: Argon2Params = Argon2Params {
        memory_kib: 19_456,
        iterations: 2,
        parallelism: 1,
    };

    fn argon2(self) -> Result<argon2::Argon2<'static>, HashError> {
        let params = argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| HashError::Argon2(e.to_string()))?;
        Ok(argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params,
        ))
    }
}

/// How new hashes are made: an algorithm and its cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Bcrypt { cost: u32 },
    Argon2id(Argon2Params),
}

impl Scheme {
    /// The algorithm of this scheme.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Scheme::Bcrypt { .. } => Algorithm::Bcrypt,
            Scheme::Argon2id(_) => Algorithm::Argon2id,
        }
    }

    /// The longest new password this scheme hashes exactly: bcrypt reads
    /// 72 bytes and no more, argon2id reads everything (the bound only
    /// keeps one request's work small).
    pub fn password_limit(&self) -> PasswordLimit {
        match self {
            Scheme::Bcrypt { .. } => PasswordLimit::Bcrypt,
            Scheme::Argon2id(_) => PasswordLimit::Long,
        }
    }

    /// The scheme a stored hash was made with; `None` for what is neither
    /// a bcrypt hash nor an argon2id PHC string.
    pub fn of(hash: &str) -> Option<Scheme> {
        if hash.starts_with("$argon2id$") {
            let parsed = PasswordHash::new(hash).ok()?;
            let params = argon2::Params::try_from(&parsed).ok()?;
            return Some(Scheme::Argon2id(Argon2Params {
                memory_kib: params.m_cost(),
                iterations: params.t_cost(),
                parallelism: params.p_cost(),
            }));
        }
        hash.parse::<bcrypt::HashParts>()
            .ok()
            .map(|parts| Scheme::Bcrypt {
                cost: parts.get_cost(),
            })
    }

    /// For the start-up summary: `bcrypt cost 12`, `argon2id m=19456 KiB t=2 p=1`.
    pub fn describe(&self) -> String {
        match self {
            Scheme::Bcrypt { cost } => format!("bcrypt cost {cost}"),
            Scheme::Argon2id(p) => format!(
                "argon2id m={} KiB t={} p={}",
                p.memory_kib, p.iterations, p.parallelism
            ),
        }
    }

    /// Hashes `password` (on the calling thread: a worker's).
    fn hash(&self, password: &str) -> Result<String, HashError> {
        match self {
            Scheme::Bcrypt { cost } => {
                // bcrypt would silently keep only the first 72 bytes.
                if password.len() > MAX_PASSWORD_BYTES {
                    return Err(HashError::TooLong);
                }
                // All of the at most 72 bytes are read, so plain `hash` is
                // exact here. (`non_truncating_hash` would also refuse a
                // valid 72-byte password, as it counts the NUL.)
                Ok(bcrypt::hash(password, *cost)?)
            }
            Scheme::Argon2id(params) => {
                let mut salt = [0u8; 16];
                getrandom::fill(&mut salt).map_err(|e| HashError::Argon2(e.to_string()))?;
                let salt =
                    SaltString::encode_b64(&salt).map_err(|e| HashError::Argon2(e.to_string()))?;
                let hash = params
                    .argon2()?
                    .hash_password(password.as_bytes(), &salt)
                    .map_err(|e| HashError::Argon2(e.to_string()))?;
                Ok(hash.to_string())
            }
        }
    }
}

/// The prefix of Django's PBKDF2-HMAC-SHA256 hashes.
pub const DJANGO_PBKDF2_PREFIX: &str = "pbkdf2_sha256$";

/// A Django `pbkdf2_sha256$<iterations>$<salt>$<hash>` string, parsed.
///
/// Django's default hasher, the commonest source of users to migrate: such
/// a hash is verified as Django does (PBKDF2-HMAC-SHA256 of the password's
/// bytes with the salt's UTF-8 bytes as given, 32 bytes, standard base64
/// with padding), so imported users keep their passwords, and is replaced
/// by the configured scheme at their next login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DjangoPbkdf2<'a> {
    /// PBKDF2 rounds, at least 1.
    pub iterations: u32,
    /// The salt as written (never empty, never holds `$`).
    pub salt: &'a str,
    /// The derived key.
    pub hash: [u8; 32],
}

impl<'a> DjangoPbkdf2<'a> {
    /// Parses `hash`, saying what is wrong without repeating the hash
    /// (import errors are printed, and a hash is a secret of sorts).
    pub fn parse(hash: &'a str) -> Result<DjangoPbkdf2<'a>, String> {
        let rest = hash
            .strip_prefix(DJANGO_PBKDF2_PREFIX)
            .ok_or_else(|| format!("does not start with {DJANGO_PBKDF2_PREFIX}"))?;
        let fields: Vec<&str> = rest.split('$').collect();
        let [iterations, salt, derived] = fields[..] else {
            return Err(format!(
                "has {} fields after {DJANGO_PBKDF2_PREFIX}, not 3 (iterations$salt$hash; \
                 a salt holds no $)",
                fields.len()
            ));
        };
        let iterations =
            if iterations.is_empty() || !iterations.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                iterations.parse::<u32>().ok().filter(|&n| n >= 1)
            }
            .ok_or_else(|| {
                "has an iteration count that is not a number from 1 to 4294967295".to_owned()
            })?;
        if salt.is_empty() {
            return Err("has an empty salt".to_owned());
        }
        let hash = base64::engine::general_purpose::STANDARD
            .decode(derived)
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or_else(|| {
                "has a hash that is not 32 bytes of padded standard base64".to_owned()
            })?;
        Ok(DjangoPbkdf2 {
            iterations,
            salt,
            hash,
        })
    }

    /// Whether `password` derives this hash, compared in constant time.
    fn verify(&self, password: &str) -> bool {
        let mut derived = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<sha2::Sha256>(
            password.as_bytes(),
            self.salt.as_bytes(),
            self.iterations,
            &mut derived,
        );
        derived.ct_eq(&self.hash).into()
    }
}

/// Checks `password` against a stored hash of any kind authd verifies,
/// told apart by its prefix (on the calling thread: a worker's).
fn verify_any(password: &str, hash: &str) -> Result<bool, HashError> {
    if hash.starts_with(DJANGO_PBKDF2_PREFIX) {
        let parsed = DjangoPbkdf2::parse(hash).map_err(HashError::Pbkdf2)?;
        return Ok(parsed.verify(password));
    }
    if hash.starts_with("$argon2") {
        let parsed = PasswordHash::new(hash).map_err(|e| HashError::Argon2(e.to_string()))?;
        if parsed.hash.is_none() {
            return Err(HashError::Argon2("no hash in the PHC string".to_owned()));
        }
        if parsed.algorithm != argon2::Algorithm::Argon2id.ident() {
            return Err(HashError::Argon2(format!(
                "unsupported algorithm {}",
                parsed.algorithm
            )));
        }
        // The hash's own parameters are used (the verifier reads them
        // from the PHC string), not the configured ones.
        return match argon2::Argon2::default().verify_password(password.as_bytes(), &parsed) {
            Ok(()) => Ok(true),
            Err(argon2::password_hash::Error::Password) => Ok(false),
            Err(e) => Err(HashError::Argon2(e.to_string())),
        };
    }
    // bcrypt reads 72 bytes: a longer password (possible under argon2id)
    // must never match a hash of its prefix. The verification still runs,
    // so the refusal takes a verification's time.
    let matches = bcrypt::verify(password, hash)?;
    Ok(matches && password.len() <= MAX_PASSWORD_BYTES)
}

/// A job computes its result and returns what hands it to its waiter:
/// the worker gives its place back in between, so a waiter that sends its
/// next job at once never finds its previous one still counted.
type Job = Box<dyn FnOnce() -> Delivery + Send + 'static>;
type Delivery = Box<dyn FnOnce() + Send + 'static>;

/// Who a hash is done for: the client address, so that the queue is
/// shared fairly between clients. Work of the service's own (the dummy
/// hash, admin commands) has a key of its own.
pub type HashKey = IpAddr;

/// The key of the service's own work.
pub const OWN_WORK: HashKey = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// Hashes of one key that run at once, at most (the rest of its places
/// wait in its own queue).
const RUNNING_PER_KEY: usize = 2;

/// Why a hash or verification did not happen.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("all hash workers are busy and the queue is full")]
    Busy,
    /// This key holds all of its places (running and waiting): the client
    /// should slow down (429), others are still served.
    #[error("this client has as many password operations in progress as it may")]
    KeyBusy,
    #[error("the hash worker pool has stopped")]
    Unavailable,
    #[error("bcrypt failed: {0}")]
    Bcrypt(#[from] bcrypt::BcryptError),
    #[error("argon2 failed: {0}")]
    Argon2(String),
    /// A stored `pbkdf2_sha256$` hash that is not Django's format.
    #[error("the pbkdf2_sha256 hash {0}")]
    Pbkdf2(String),
    /// A password longer than bcrypt reads, given to bcrypt to hash (a
    /// rehash to bcrypt of a long password set under argon2id, say).
    #[error("the password is longer than bcrypt's 72 bytes")]
    TooLong,
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

/// The jobs waiting and running, by key. Keys with waiting jobs and a free
/// running place take turns (round robin), so one client with many
/// requests waits behind itself, not in front of everyone else.
struct Schedule {
    waiting: HashMap<HashKey, VecDeque<Job>>,
    /// Keys whose next job may start, in turn order.
    turns: VecDeque<HashKey>,
    in_turns: HashSet<HashKey>,
    running: HashMap<HashKey, usize>,
    /// Jobs waiting, all keys together.
    queued: usize,
    /// Most jobs waiting, all keys together.
    capacity: usize,
    /// Places of one key: running and waiting together.
    per_key: usize,
    stopped: bool,
}

impl Schedule {
    /// Puts `key` in line for a turn if it has a job waiting and a free
    /// running place.
    fn line_up(&mut self, key: HashKey) {
        let waiting = self.waiting.get(&key).is_some_and(|q| !q.is_empty());
        let running = self.running.get(&key).copied().unwrap_or(0);
        if waiting && running < RUNNING_PER_KEY.min(self.per_key) && self.in_turns.insert(key) {
            self.turns.push_back(key);
        }
    }

    /// The next job in turn, with its key.
    fn next(&mut self) -> Option<(HashKey, Job)> {
        let key = self.turns.pop_front()?;
        self.in_turns.remove(&key);
        let queue = self.waiting.get_mut(&key)?;
        let job = queue.pop_front()?;
        if queue.is_empty() {
            self.waiting.remove(&key);
        }
        self.queued -= 1;
        *self.running.entry(key).or_insert(0) += 1;
        self.line_up(key);
        Some((key, job))
    }

    /// A job of `key` has ended.
    fn done(&mut self, key: HashKey) {
        if let Some(running) = self.running.get_mut(&key) {
            *running -= 1;
            if *running == 0 {
                self.running.remove(&key);
            }
        }
        self.line_up(key);
    }
}

/// The schedule and the bell the workers wait on.
struct Pool {
    schedule: Mutex<Schedule>,
    bell: Condvar,
}

impl Pool {
    fn schedule(&self) -> MutexGuard<'_, Schedule> {
        self.schedule.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The memory argon2 work may take at once, all workers together: each
/// argon2 job takes its hash's memory (`m`) from the budget before it runs
/// and gives it back after, waiting (on its worker, the jobs behind it in
/// the bounded queue) while the rest is taken. A job larger than the whole
/// budget runs alone. bcrypt's 4 KiB are not counted.
struct MemoryBudget {
    /// KiB taken now, and the most ever taken at once (for tests).
    taken: Mutex<(u64, u64)>,
    freed: Condvar,
    limit_kib: u64,
}

impl MemoryBudget {
    fn new(limit_kib: u64) -> MemoryBudget {
        MemoryBudget {
            taken: Mutex::new((0, 0)),
            freed: Condvar::new(),
            limit_kib,
        }
    }

    /// Waits until `kib` fits (or nothing else is taken), then takes it
    /// until the grant is dropped.
    fn take(&self, kib: u64) -> MemoryGrant<'_> {
        let mut taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        while taken.0 > 0 && taken.0 + kib > self.limit_kib {
            taken = self.freed.wait(taken).unwrap_or_else(|p| p.into_inner());
        }
        taken.0 += kib;
        taken.1 = taken.1.max(taken.0);
        MemoryGrant { budget: self, kib }
    }

    /// KiB taken now.
    fn in_use(&self) -> u64 {
        self.taken.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    #[cfg(test)]
    fn peak(&self) -> u64 {
        self.taken.lock().unwrap_or_else(|p| p.into_inner()).1
    }
}

/// Memory taken from a [`MemoryBudget`], given back when dropped (a
/// panicking hash included).
struct MemoryGrant<'a> {
    budget: &'a MemoryBudget,
    kib: u64,
}

impl Drop for MemoryGrant<'_> {
    fn drop(&mut self) {
        let mut taken = self.budget.taken.lock().unwrap_or_else(|p| p.into_inner());
        taken.0 -= self.kib;
        drop(taken);
        self.budget.freed.notify_all();
    }
}

/// The memory an argon2 operation on `scheme` takes, in KiB; `None` for
/// bcrypt.
fn memory_of(scheme: Option<Scheme>) -> Option<u64> {
    match scheme? {
        Scheme::Argon2id(params) => Some(u64::from(params.memory_kib)),
        Scheme::Bcrypt { .. } => None,
    }
}

/// Stops the workers when the last [`Hasher`] handle goes.
struct Owner(Arc<Pool>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.schedule().stopped = true;
        self.0.bell.notify_all();
    }
}

/// Told how long each job waited in the queue before a worker took it
/// (the metrics' histogram); called on the worker, so it must be cheap.
pub type WaitObserver = Arc<dyn Fn(Duration) + Send + Sync>;

/// Jobs in the pool at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Depth {
    /// Waiting for a worker.
    pub waiting: usize,
    /// On a worker now.
    pub running: usize,
}

/// Handle to the worker pool. Cloning shares the pool.
#[derive(Clone)]
pub struct Hasher {
    pool: Arc<Owner>,
    scheme: Scheme,
    /// What argon2 work may take at once (unbounded unless set).
    memory: Arc<MemoryBudget>,
    stats: Arc<HashStats>,
    /// Told each job's wait, when metrics are kept.
    waits: Option<WaitObserver>,
}

impl Hasher {
    /// Starts `workers` threads hashing at `cost`, with room for `queue`
    /// waiting jobs, a key holding at most 6 places (see
    /// [`Hasher::start_fair`]). The threads end when the last handle is
    /// dropped.
    pub fn start(workers: usize, queue: usize, cost: u32) -> std::io::Result<Hasher> {
        Self::start_fair(workers, queue, cost, DEFAULT_PLACES_PER_KEY)
    }

    /// [`Hasher::start`] with at most `per_key` places (running and
    /// waiting) for one key: past them its work is refused with
    /// [`HashError::KeyBusy`], whatever room the queue has.
    pub fn start_fair(
        workers: usize,
        queue: usize,
        cost: u32,
        per_key: usize,
    ) -> std::io::Result<Hasher> {
        Self::start_scheme(workers, queue, Scheme::Bcrypt { cost }, per_key)
    }

    /// [`Hasher::start_fair`] making new hashes with `scheme`.
    pub fn start_scheme(
        workers: usize,
        queue: usize,
        scheme: Scheme,
        per_key: usize,
    ) -> std::io::Result<Hasher> {
        let pool = Arc::new(Pool {
            schedule: Mutex::new(Schedule {
                waiting: HashMap::new(),
                turns: VecDeque::new(),
                in_turns: HashSet::new(),
                running: HashMap::new(),
                queued: 0,
                capacity: queue.max(1),
                per_key: per_key.max(1),
                stopped: false,
            }),
            bell: Condvar::new(),
        });
        for n in 0..workers.max(1) {
            let pool = Arc::clone(&pool);
            thread::Builder::new()
                .name(format!("hash-{n}"))
                .spawn(move || work(&pool))?;
        }
        Ok(Hasher {
            pool: Arc::new(Owner(pool)),
            scheme,
            memory: Arc::new(MemoryBudget::new(u64::MAX)),
            stats: Arc::default(),
            waits: None,
        })
    }

    /// This pool, telling `observer` how long each job of this handle (and
    /// of its clones) waits for a worker.
    pub fn with_wait_observer(self, observer: WaitObserver) -> Hasher {
        Hasher {
            waits: Some(observer),
            ..self
        }
    }

    /// This pool, its argon2 work bounded to `mib` MiB at once
    /// (`--hash-memory-mb`): with every hash at the configured memory
    /// `m`, `max(1, mib * 1024 / m)` of them run at once, the rest wait.
    pub fn with_memory_limit(self, mib: u32) -> Hasher {
        Hasher {
            memory: Arc::new(MemoryBudget::new(u64::from(mib) * 1024)),
            ..self
        }
    }

    /// Jobs waiting and running now, for the metrics (one short lock).
    pub fn depth(&self) -> Depth {
        let schedule = self.pool.0.schedule();
        Depth {
            waiting: schedule.queued,
            running: schedule.running.values().sum(),
        }
    }

    /// Memory the argon2 jobs running now hold, in bytes, for the
    /// metrics (one short lock).
    pub fn memory_in_use(&self) -> u64 {
        self.memory.in_use().saturating_mul(1024)
    }

    /// How new hashes are made.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// Whether `hash` was made exactly as a new one would be now (same
    /// algorithm and cost): its verification time is the configured one.
    pub fn is_current(&self, hash: &str) -> bool {
        Scheme::of(hash) == Some(self.scheme)
    }

    /// Whether a stored `hash` should be replaced at the next login: it is
    /// of the other algorithm, a bcrypt hash of a lower cost (a higher one
    /// is kept: never weaken a hash), or an argon2id hash of other
    /// parameters (lower ones are weaker; higher memory is memory every
    /// login of that account takes beyond what `--hash-memory-mb` plans).
    /// A Django `pbkdf2_sha256` hash (imported) is always replaced: authd
    /// makes none. A hash of no known kind is left alone: it verifies
    /// nothing anyway.
    pub fn needs_rehash(&self, hash: &str) -> bool {
        if hash.starts_with(DJANGO_PBKDF2_PREFIX) {
            return DjangoPbkdf2::parse(hash).is_ok();
        }
        match (Scheme::of(hash), self.scheme) {
            (None, _) => false,
            (Some(Scheme::Bcrypt { cost: stored }), Scheme::Bcrypt { cost }) => stored < cost,
            (Some(stored), configured) => stored != configured,
        }
    }

    /// Work counters.
    pub fn stats(&self) -> &HashStats {
        &self.stats
    }

    /// Hashes `password`'s NFC form with the configured scheme, as the
    /// service's own work: every hash authd makes is of a normalised
    /// password ([`crate::user::User::password_normalized`]).
    pub fn hash(&self, password: &Password) -> Result<String, HashError> {
        self.hash_for(OWN_WORK, password)
    }

    /// Hashes `password`'s NFC form with the configured scheme for `key`.
    pub fn hash_for(&self, key: HashKey, password: &Password) -> Result<String, HashError> {
        let secret = password.hash_input(true).into_owned();
        let scheme = self.scheme;
        let memory = Arc::clone(&self.memory);
        self.stats.hashes.fetch_add(1, Ordering::Relaxed);
        self.run_for(key, move || {
            let _grant = memory_of(Some(scheme)).map(|kib| memory.take(kib));
            scheme.hash(&secret)
        })?
    }

    /// Checks `password` against a stored hash (bcrypt, argon2id or Django's
    /// pbkdf2_sha256) made by authd (of the NFC form), as the service's
    /// own work.
    pub fn verify(&self, password: &Password, hash: &str) -> Result<bool, HashError> {
        self.verify_for(OWN_WORK, password, hash, true)
    }

    /// Checks `password` against a stored hash (bcrypt, argon2id or Django's
    /// pbkdf2_sha256) for `key`: its NFC form if the hash was made of a
    /// normalised password (`normalized`), else the password as typed.
    pub fn verify_for(
        &self,
        key: HashKey,
        password: &Password,
        hash: &str,
        normalized: bool,
    ) -> Result<bool, HashError> {
        let secret = password.hash_input(normalized).into_owned();
        let hash = hash.to_owned();
        let memory = Arc::clone(&self.memory);
        self.stats.verifies.fetch_add(1, Ordering::Relaxed);
        self.run_for(key, move || {
            // The stored hash's own memory, which is what verifying takes.
            let _grant = memory_of(Scheme::of(&hash)).map(|kib| memory.take(kib));
            verify_any(&secret, &hash)
        })?
    }

    /// Runs `f` on a worker, in `key`'s turn, and waits for its result.
    fn run_for<T: Send + 'static>(
        &self,
        key: HashKey,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let (reply, result) = mpsc::sync_channel(1);
        let waits = self.waits.clone();
        let queued_at = Instant::now();
        let job: Job = Box::new(move || {
            if let Some(observe) = waits {
                observe(queued_at.elapsed());
            }
            let value = f();
            Box::new(move || {
                // The waiter may have gone; nothing to do about it then.
                let _ = reply.send(value);
            })
        });
        let pool = &self.pool.0;
        {
            let mut schedule = pool.schedule();
            if schedule.stopped {
                return Err(HashError::Unavailable);
            }
            let held = schedule.running.get(&key).copied().unwrap_or(0)
                + schedule.waiting.get(&key).map_or(0, VecDeque::len);
            if held >= schedule.per_key {
                return Err(HashError::KeyBusy);
            }
            if schedule.queued >= schedule.capacity {
                return Err(HashError::Busy);
            }
            schedule.waiting.entry(key).or_default().push_back(job);
            schedule.queued += 1;
            schedule.line_up(key);
        }
        pool.bell.notify_one();
        result.recv().map_err(|_| HashError::Unavailable)
    }

    #[cfg(test)]
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        self.run_for(OWN_WORK, f)
    }
}

/// Places of one key by default: two running and four waiting, so a
/// prototype's test suite with a few parallel workers on one machine is
/// never refused.
pub const DEFAULT_PLACES_PER_KEY: usize = 6;

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

/// A worker's loop: take the job whose turn it is, run it, survive its
/// panic, until the pool stops (then what is queued is dropped, and its
/// waiters see `Unavailable`).
fn work(pool: &Pool) {
    lower_priority();
    loop {
        let (key, job) = {
            let mut schedule = pool.schedule();
            loop {
                if schedule.stopped {
                    return;
                }
                if let Some(next) = schedule.next() {
                    break next;
                }
                schedule = pool.bell.wait(schedule).unwrap_or_else(|p| p.into_inner());
            }
        };
        // A panicking job drops its reply sender, which its waiter sees as
        // `Unavailable`; the worker itself carries on.
        let delivery = catch_unwind(AssertUnwindSafe(job)).ok();
        pool.schedule().done(key);
        // The key may have its next job ready now.
        pool.bell.notify_one();
        if let Some(deliver) = delivery {
            deliver();
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

    /// Small argon2id parameters: the tests check behaviour, not cost.
    const SMALL: Argon2Params = Argon2Params {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
    };

    fn argon2_hasher(params: Argon2Params) -> Hasher {
        Hasher::start_scheme(1, 4, Scheme::Argon2id(params), DEFAULT_PLACES_PER_KEY).unwrap()
    }

    #[test]
    fn argon2id_hashes_and_verifies_exactly() {
        let hasher = argon2_hasher(SMALL);
        let password = Password::parse("correct horse").unwrap();
        let hash = hasher.hash(&password).unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{hash}");
        assert!(hasher.verify(&password, &hash).unwrap());
        let wrong = Password::parse("correct horsf").unwrap();
        assert!(!hasher.verify(&wrong, &hash).unwrap());
        // Salted: the same password hashes differently.
        assert_ne!(hasher.hash(&password).unwrap(), hash);
        // All of a long password counts, not a prefix.
        let long = "ж".repeat(500);
        let hash = hasher
            .hash(&Password::parse_for(&long, PasswordLimit::Long).unwrap())
            .unwrap();
        let other_last = "ж".repeat(499) + "з";
        assert!(!hasher
            .verify(
                &Password::parse_for(&other_last, PasswordLimit::Long).unwrap(),
                &hash
            )
            .unwrap());
    }

    #[test]
    fn either_kind_verifies_whatever_is_configured() {
        let bcrypt = Hasher::start(1, 4, 4).unwrap();
        let argon2 = argon2_hasher(SMALL);
        let password = Password::parse("pw").unwrap();
        let wrong = Password::parse("pW").unwrap();
        let by_bcrypt = bcrypt.hash(&password).unwrap();
        let by_argon2 = argon2.hash(&password).unwrap();
        for hasher in [&bcrypt, &argon2] {
            for hash in [&by_bcrypt, &by_argon2] {
                assert!(hasher.verify(&password, hash).unwrap(), "{hash}");
                assert!(!hasher.verify(&wrong, hash).unwrap(), "{hash}");
            }
        }
        // Another argon2id cost still verifies: the hash's own is used.
        let other = argon2_hasher(Argon2Params {
            memory_kib: 2048,
            iterations: 2,
            parallelism: 2,
        });
        assert!(other.verify(&password, &by_argon2).unwrap());
    }

    #[test]
    fn a_long_password_never_matches_a_bcrypt_hash_of_its_prefix() {
        let bcrypt = Hasher::start(1, 4, 4).unwrap();
        let prefix = "p".repeat(72);
        let hash = bcrypt.hash(&Password::parse(&prefix).unwrap()).unwrap();
        let longer = Password::parse_for(&(prefix + "more"), PasswordLimit::Long).unwrap();
        // bcrypt alone would say yes (it reads 72 bytes).
        assert!(!bcrypt.verify(&longer, &hash).unwrap());
        // And bcrypt refuses to hash it rather than truncate.
        assert!(matches!(bcrypt.hash(&longer), Err(HashError::TooLong)));
        assert!(argon2_hasher(SMALL).hash(&longer).is_ok());
    }

    #[test]
    fn rehash_follows_the_configured_algorithm_and_parameters() {
        let password = Password::parse("pw").unwrap();
        let bcrypt_4 = Hasher::start(1, 4, 4).unwrap();
        let bcrypt_5 = Hasher::start(1, 4, 5).unwrap();
        let argon2 = argon2_hasher(SMALL);
        let argon2_more = argon2_hasher(Argon2Params {
            memory_kib: 2048,
            ..SMALL
        });
        let hash_b4 = bcrypt_4.hash(&password).unwrap();
        let hash_b5 = bcrypt_5.hash(&password).unwrap();
        let hash_a = argon2.hash(&password).unwrap();
        let hash_a_more = argon2_more.hash(&password).unwrap();
        // Current: nothing to do.
        assert!(!bcrypt_4.needs_rehash(&hash_b4));
        assert!(!argon2.needs_rehash(&hash_a));
        assert!(bcrypt_4.is_current(&hash_b4) && argon2.is_current(&hash_a));
        // bcrypt: a lower cost is raised, a higher one kept.
        assert!(bcrypt_5.needs_rehash(&hash_b4));
        assert!(!bcrypt_4.needs_rehash(&hash_b5));
        assert!(!bcrypt_4.is_current(&hash_b5));
        // Across algorithms, either way.
        assert!(argon2.needs_rehash(&hash_b4));
        assert!(bcrypt_4.needs_rehash(&hash_a));
        // argon2id: other parameters, either way.
        assert!(argon2_more.needs_rehash(&hash_a));
        assert!(argon2.needs_rehash(&hash_a_more));
        // What is no hash is left alone.
        assert!(!argon2.needs_rehash("not a hash"));
        assert_eq!(
            Scheme::of(&hash_a_more),
            Some(Scheme::Argon2id(Argon2Params {
                memory_kib: 2048,
                ..SMALL
            }))
        );
        assert_eq!(Scheme::of(&hash_b5), Some(Scheme::Bcrypt { cost: 5 }));
    }

    /// With room for one hash of 1 MiB, no two run at once however many
    /// are asked for on two workers; with room for two, never three.
    #[test]
    fn argon2_memory_stays_within_its_budget() {
        for (mib, most) in [(1, 1024), (2, 2048)] {
            let hasher = Hasher::start_scheme(3, 16, Scheme::Argon2id(SMALL), 16)
                .unwrap()
                .with_memory_limit(mib);
            let password = Password::parse("pw").unwrap();
            let hash = hasher.hash(&password).unwrap();
            let handles: Vec<_> = (0..8)
                .map(|n| {
                    let (hasher, password, hash) = (hasher.clone(), password.clone(), hash.clone());
                    thread::spawn(move || {
                        if n % 2 == 0 {
                            hasher.hash_for(key(n), &password).map(|_| true)
                        } else {
                            hasher.verify_for(key(n), &password, &hash, true)
                        }
                    })
                })
                .collect();
            for handle in handles {
                assert!(handle.join().unwrap().unwrap());
            }
            assert!(
                hasher.memory.peak() <= most,
                "{mib} MiB: {}",
                hasher.memory.peak()
            );
            assert!(hasher.memory.peak() >= 1024);
            // All given back.
            assert_eq!(hasher.memory_in_use(), 0);
        }
        // A hash larger than the whole budget still runs, alone.
        let small_budget = argon2_hasher(Argon2Params {
            memory_kib: 2048,
            ..SMALL
        })
        .with_memory_limit(1);
        assert!(small_budget.hash(&Password::parse("pw").unwrap()).is_ok());
    }

    #[test]
    fn malformed_argon2_hashes_are_errors() {
        let hasher = argon2_hasher(SMALL);
        let password = Password::parse("x").unwrap();
        for bad in [
            "$argon2id$v=19$m=1024",
            "$argon2i$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
        ] {
            assert!(
                matches!(hasher.verify(&password, bad), Err(HashError::Argon2(_))),
                "{bad}"
            );
        }
    }

    /// Django's hash for ("correct horse", "seasalt", 1000), made by
    /// Python's hashlib, not by this crate:
    /// `python3 -c "import hashlib,base64;print(base64.b64encode(hashlib.pbkdf2_hmac(
    /// 'sha256',b'correct horse',b'seasalt',1000)).decode())"`.
    const DJANGO: &str = "pbkdf2_sha256$1000$seasalt$mQnueSakb748zqBAC1tmWVZsZbi2zPGZarEzTGdfmso=";

    /// Django's hash of `password` made by Python's hashlib now, when
    /// python3 is installed (it is in CI); `None` without it.
    fn django_by_python(password: &str, salt: &str, iterations: u32) -> Option<String> {
        let script = "import base64,hashlib,sys\n\
                      p,s,n=sys.argv[1],sys.argv[2],int(sys.argv[3])\n\
                      h=hashlib.pbkdf2_hmac('sha256',p.encode(),s.encode(),n)\n\
                      print('pbkdf2_sha256$%d$%s$%s'%(n,s,base64.b64encode(h).decode()))";
        let output = std::process::Command::new("python3")
            .args(["-c", script, password, salt, &iterations.to_string()])
            .output()
            .ok()?;
        assert!(output.status.success(), "{output:?}");
        Some(String::from_utf8(output.stdout).unwrap().trim().to_owned())
    }

    #[test]
    fn django_pbkdf2_hashes_verify_under_either_scheme_and_are_replaced() {
        let mut hashes = vec![("correct horse".to_owned(), DJANGO.to_owned())];
        // A password past bcrypt's 72 bytes, not ASCII: all of it counts.
        let long = "ж".repeat(60);
        if let Some(hash) = django_by_python(&long, "Xy7salt0Q", 1200) {
            hashes.push((long, hash));
        }
        for hasher in [Hasher::start(1, 4, 4).unwrap(), argon2_hasher(SMALL)] {
            for (password, hash) in &hashes {
                let right = Password::parse_for(password, PasswordLimit::Long).unwrap();
                assert!(hasher.verify(&right, hash).unwrap(), "{hash}");
                let wrong =
                    Password::parse_for(&format!("{password}!"), PasswordLimit::Long).unwrap();
                assert!(!hasher.verify(&wrong, hash).unwrap(), "{hash}");
                // authd makes none: the next login stores the configured scheme.
                assert!(hasher.needs_rehash(hash) && !hasher.is_current(hash));
                assert_eq!(Scheme::of(hash), None);
            }
        }
        let wrong = Password::parse("correct horsf").unwrap();
        assert!(!Hasher::start(1, 4, 4)
            .unwrap()
            .verify(&wrong, DJANGO)
            .unwrap());
        let parsed = DjangoPbkdf2::parse(DJANGO).unwrap();
        assert_eq!((parsed.iterations, parsed.salt), (1000, "seasalt"));
    }

    #[test]
    fn malformed_django_pbkdf2_hashes_are_errors_not_rehashed() {
        let hasher = Hasher::start(1, 4, 4).unwrap();
        let password = Password::parse("correct horse").unwrap();
        let derived = "mQnueSakb748zqBAC1tmWVZsZbi2zPGZarEzTGdfmso=";
        for bad in [
            "pbkdf2_sha256$".to_owned(),
            "pbkdf2_sha256$1000$seasalt".to_owned(),
            format!("pbkdf2_sha256$0$seasalt${derived}"),
            format!("pbkdf2_sha256$-1$seasalt${derived}"),
            format!("pbkdf2_sha256$+1000$seasalt${derived}"),
            format!("pbkdf2_sha256$4294967296$seasalt${derived}"),
            format!("pbkdf2_sha256$1000$$${derived}"),
            format!("pbkdf2_sha256$1000$sea$salt${derived}"),
            format!("pbkdf2_sha256$1000$${derived}"),
            // Unpadded, 31 bytes, not base64.
            format!(
                "pbkdf2_sha256$1000$seasalt${}",
                derived.trim_end_matches('=')
            ),
            "pbkdf2_sha256$1000$seasalt$mQnueSakb748zqBAC1tmWVZsZbi2zPGZarEzTGdfmQ==".to_owned(),
            format!("pbkdf2_sha256$1000$seasalt${}", derived.replace('m', "*")),
        ] {
            assert!(
                matches!(hasher.verify(&password, &bad), Err(HashError::Pbkdf2(_))),
                "{bad}"
            );
            assert!(!hasher.needs_rehash(&bad), "{bad}");
        }
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
        // ...and the single queue place, from another key.
        let queued = hasher.clone();
        let waiter = thread::spawn(move || queued.run_for(key(1), || 1));
        wait_until(|| hasher.pool.0.schedule().queued == 1);
        assert!(matches!(hasher.run_for(key(2), || 2), Err(HashError::Busy)));
        release.send(()).unwrap();
        worker.join().unwrap().unwrap();
        assert_eq!(waiter.join().unwrap().unwrap(), 1);
        assert_eq!(hasher.run(|| 3).unwrap(), 3);
    }

    fn key(n: u8) -> HashKey {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, n))
    }

    fn wait_until(condition: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(std::time::Instant::now() < deadline, "timed out");
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// One key with many jobs waits behind itself: another key's job runs
    /// at the next free worker, before the first key's queued ones; and a
    /// key past its places is refused while others are served.
    #[test]
    fn keys_take_turns_and_hold_few_places() {
        let hasher = Hasher::start_fair(1, 16, 4, 4).unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let (release, gate) = mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        // Key 1 takes the worker (blocked on the gate) and queues 3 more.
        let mut handles = Vec::new();
        for n in 0..4 {
            let (worker, order, gate) = (hasher.clone(), Arc::clone(&order), Arc::clone(&gate));
            handles.push(thread::spawn(move || {
                worker.run_for(key(1), move || {
                    gate.lock().unwrap().recv().unwrap();
                    order.lock().unwrap().push((1, n));
                })
            }));
            wait_until(|| {
                let s = hasher.pool.0.schedule();
                s.running.values().sum::<usize>() + s.queued == n + 1
            });
        }
        // Its places are all held: refused, while key 2 still gets in.
        assert!(matches!(
            hasher.run_for(key(1), || ()),
            Err(HashError::KeyBusy)
        ));
        let (h2, o2, g2) = (hasher.clone(), Arc::clone(&order), Arc::clone(&gate));
        handles.push(thread::spawn(move || {
            h2.run_for(key(2), move || {
                g2.lock().unwrap().recv().unwrap();
                o2.lock().unwrap().push((2, 0));
            })
        }));
        wait_until(|| hasher.pool.0.schedule().queued == 4);
        for _ in 0..5 {
            release.send(()).unwrap();
        }
        for handle in handles {
            handle.join().unwrap().unwrap();
        }
        let order = order.lock().unwrap().clone();
        // Key 2 waited for one turn of key 1 at most (the one already in
        // line when it came), not for all of key 1's queue.
        let turn = order.iter().position(|job| job.0 == 2).unwrap();
        assert!(turn <= 2, "{order:?}");
    }

    #[test]
    fn a_panicking_job_does_not_kill_the_worker() {
        let hasher = Hasher::start(1, 1, 4).unwrap();
        let result: Result<(), _> = hasher.run(|| panic!("boom"));
        assert!(matches!(result, Err(HashError::Unavailable)));
        assert_eq!(hasher.run(|| 5).unwrap(), 5);
    }
}
