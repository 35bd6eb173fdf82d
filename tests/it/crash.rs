//! Crash recovery, in the spirit of sled's own crash tests: the real binary
//! serves concurrent registrations, logins, logouts and password resets;
//! it is killed with SIGKILL at a random moment; it restarts on the same
//! store, and everything it acknowledged must still hold:
//!
//! - every acknowledged account exists and logs in with its last
//!   acknowledged password (or the one a request in flight was setting);
//! - a consumed reset token stays consumed; an ended session stays ended;
//! - `authd check` finds every index in step with the records.
//!
//! `AUTHD_CRASH_ROUNDS` sets the number of rounds (default 3; run hundreds
//! with `AUTHD_CRASH_ROUNDS=300 cargo test --release --test it crash::`), and
//! `AUTHD_CRASH_SEED` replays one seed.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::process::{enc, run, Proc};
use crate::common::raw::Client;

const WORKERS: usize = 4;

/// xorshift64*: enough randomness for choosing operations and delays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the clients know about one account: only what was acknowledged,
/// plus what a request cut off by the crash may or may not have done.
#[derive(Debug, Default, Clone)]
struct Account {
    email: String,
    /// Registration acknowledged with 200.
    registered: bool,
    /// A registration was in flight at the crash.
    maybe_registered: bool,
    /// Last acknowledged password.
    password: String,
    /// A password change was in flight at the crash: this one may hold.
    maybe_password: Option<String>,
    /// Sessions whose end was acknowledged (logout, reset, newer login).
    ended_sessions: Vec<String>,
    /// Reset tokens whose use was acknowledged.
    consumed_tokens: Vec<String>,
}

/// One session per user (the reference's behaviour), which the model of
/// this test follows: a login ends the account's previous session.
const SERVER_FLAGS: [&str; 8] = [
    "--max-sessions-per-user",
    "1",
    "--login-free-failures",
    "100",
    "--lockout-failures",
    "100",
    "--request-free",
    "1000000",
];

/// One client: works on its own accounts until the server dies.
fn client(proc: &Client, worker: usize, seed: u64, dead: &AtomicBool) -> Vec<Account> {
    let mut rng = Rng(seed ^ (worker as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut accounts: Vec<Account> = Vec::new();
    let mut sessions: Vec<Option<String>> = Vec::new();
    let mut counter = 0;
    while !dead.load(Ordering::SeqCst) {
        let choice = if accounts.iter().filter(|a| a.registered).count() < 2 {
            0
        } else {
            rng.below(5)
        };
        let registered: Vec<usize> = (0..accounts.len())
            .filter(|&i| accounts[i].registered)
            .collect();
        match choice {
            0 => {
                counter += 1;
                let email = format!("r{seed:x}-w{worker}-{counter}@crash.io");
                let password = format!("p-{worker}-{counter}-0");
                let form = format!("email={}&password={}", enc(&email), enc(&password));
                let mut account = Account {
                    email,
                    password,
                    ..Account::default()
                };
                match proc.try_send("POST", "/users", &form, None) {
                    Ok(reply) if reply.status == 200 => account.registered = true,
                    Ok(reply) => panic!("register: {reply:?}"),
                    Err(_) => account.maybe_registered = true,
                }
                let stop = account.maybe_registered;
                accounts.push(account);
                sessions.push(None);
                if stop {
                    break;
                }
            }
            1 => {
                let i = registered[rng.below(registered.len() as u64) as usize];
                let a = &accounts[i];
                let form = format!("email={}&password={}", enc(&a.email), enc(&a.password));
                match proc.try_send("POST", "/sessions", &form, None) {
                    Ok(reply) if reply.status == 200 => {
                        let token = reply.session();
                        if let Some(old) = sessions[i].replace(token) {
                            accounts[i].ended_sessions.push(old);
                        }
                    }
                    Ok(reply) => panic!("login: {reply:?}"),
                    Err(_) => break,
                }
            }
            2 => {
                let i = registered[rng.below(registered.len() as u64) as usize];
                let Some(token) = sessions[i].clone() else {
                    continue;
                };
                match proc.try_send("DELETE", "/sessions", "", Some(&token)) {
                    Ok(reply) if reply.status == 302 => {
                        sessions[i] = None;
                        accounts[i].ended_sessions.push(token);
                    }
                    Ok(reply) => panic!("logout: {reply:?}"),
                    Err(_) => break,
                }
            }
            _ => {
                let i = registered[rng.below(registered.len() as u64) as usize];
                let email = accounts[i].email.clone();
                let token = match proc.try_send(
                    "POST",
                    "/reset_password",
                    &format!("email={}", enc(&email)),
                    None,
                ) {
                    Ok(reply) if reply.status == 200 => {
                        reply.json()["reset_token"].as_str().unwrap().to_owned()
                    }
                    Ok(reply) => panic!("reset request: {reply:?}"),
                    Err(_) => break,
                };
                counter += 1;
                let new_password = format!("p-{worker}-{counter}-r");
                let form = format!(
                    "email={}&reset_token={token}&new_password={}",
                    enc(&email),
                    enc(&new_password)
                );
                match proc.try_send("PUT", "/reset_password", &form, None) {
                    Ok(reply) if reply.status == 200 => {
                        let a = &mut accounts[i];
                        a.password = new_password;
                        a.consumed_tokens.push(token);
                        if let Some(old) = sessions[i].take() {
                            a.ended_sessions.push(old);
                        }
                    }
                    Ok(reply) => panic!("reset: {reply:?}"),
                    Err(_) => {
                        accounts[i].maybe_password = Some(new_password);
                        break;
                    }
                }
            }
        }
    }
    accounts
}

fn round(dir: &Path, seed: u64) {
    let mut rng = Rng(seed);
    let proc = Arc::new(Mutex::new(Proc::start(dir, &SERVER_FLAGS)));
    let dead = Arc::new(AtomicBool::new(false));
    let target: Client = (**proc.lock().unwrap()).clone();
    let handles: Vec<_> = (0..WORKERS)
        .map(|w| {
            let dead = Arc::clone(&dead);
            let view = target.clone();
            thread::spawn(move || client(&view, w, seed, &dead))
        })
        .collect();
    thread::sleep(Duration::from_millis(150 + rng.below(600)));
    {
        let mut proc = proc.lock().unwrap();
        proc.child.kill().unwrap();
        proc.child.wait().unwrap();
    }
    dead.store(true, Ordering::SeqCst);
    let accounts: Vec<Account> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();

    let server = Proc::start(dir, &SERVER_FLAGS);
    let mut checked = 0;
    for a in &accounts {
        if !a.registered && !a.maybe_registered {
            continue;
        }
        let mut candidates = vec![a.password.clone()];
        candidates.extend(a.maybe_password.clone());
        let logged_in = candidates
            .iter()
            .find_map(|p| server.log_in(&a.email, p).ok());
        if a.registered {
            assert!(
                logged_in.is_some(),
                "seed {seed}: {} lost (tried {candidates:?})",
                a.email
            );
            checked += 1;
        }
        for token in &a.ended_sessions {
            assert_eq!(
                server.profile(token),
                403,
                "seed {seed}: ended session of {} lives",
                a.email
            );
        }
        for token in &a.consumed_tokens {
            let form = format!(
                "email={}&reset_token={token}&new_password=again",
                enc(&a.email)
            );
            let status = server.send("PUT", "/reset_password", &form, None).status;
            assert_eq!(
                status, 403,
                "seed {seed}: consumed token of {} works again",
                a.email
            );
        }
    }
    assert!(checked > 0, "seed {seed}: the round acknowledged nothing");
    drop(server);
    let mut check = vec!["check".to_owned()];
    check.extend(crate::common::stores::store_args(dir));
    let check: Vec<&str> = check.iter().map(String::as_str).collect();
    let (code, out, err) = run(&check);
    assert_eq!(code, 0, "seed {seed}: {out}{err}");
}

fn acknowledged_state_survives_sigkill() {
    let rounds: usize = std::env::var("AUTHD_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let first_seed = std::env::var("AUTHD_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("crash test: {rounds} rounds from seed {first_seed}");
    let tmp = tempfile::tempdir().unwrap();
    // One store through all rounds: each crash lands on the previous ones.
    let dir = tmp.path().join("store");
    for n in 0..rounds {
        round(&dir, first_seed.wrapping_add(n as u64));
    }
}

crate::on_every_store!(acknowledged_state_survives_sigkill,);
