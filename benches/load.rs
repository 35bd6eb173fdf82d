//! The performance harness: `cargo bench --bench load`.
//!
//! cargo bench builds the release binary; the harness builds the bare
//! rouille server (benches/bare, its own workspace and Cargo.lock, on
//! upstream tiny_http 0.12.0 rather than authd's patched copy) into
//! target/bare. It starts authd and the bare server on free ports, drives
//! them with wrk (Debian's `wrk` package), and prints four figures, each as
//! a ratio to a limit measured in the same run:
//!
//! 1. `GET /profile` at 16 keep-alive connections vs the bare rouille
//!    server answering a fixed JSON body with the same pool size;
//! 2. logins per second at bcrypt cost 12 vs the machine's bcrypt limit
//!    (verifications per second, one thread per core);
//! 3. `GET /profile` p99 latency and throughput while logins keep every
//!    core hashing, vs unloaded;
//! 4. `GET /profile` with 1,000,000 users vs 1,000 users, start-up time,
//!    resident memory and bytes on disk per user.
//!
//! 5. with `AUTHD_BENCH_DATABASE_URL` set (a PostgreSQL database the
//!    harness may create a schema `authd_bench` in): `GET /profile` and
//!    logins on the PostgreSQL store with one and with two instances, beside
//!    the sled store in the same run.
//! 6. the upgrade of a store of the previous format (format 1: sessions and
//!    reset grants inside the user records) with 1,000,000 users, half of
//!    them with a session and a tenth with a reset token: `authd migrate`
//!    (backup included) and `authd serve`'s migration at start.
//! 7. logins per second under argon2id at OWASP's minimum (19 MiB, 2
//!    passes, 1 lane) vs the machine's argon2id limit (verifications per
//!    second, one thread per core), and authd's resident memory while
//!    they run (every hash worker holding its 19 MiB).
//!
//! `AUTHD_BENCH_SECS` sets the length of each load (default 10 s);
//! `AUTHD_BENCH_ONLY=1,3` runs only those parts; `AUTHD_BENCH_ROUNDS`
//! sets the alternating rounds (default 3); `AUTHD_BENCH_FLAGS` adds
//! flags to every authd started (e.g. "--no-access-log");
//! `AUTHD_BENCH_BIN` runs another authd binary (an earlier build, to compare
//! against the current one on the same machine minutes apart).
//! No assertion anywhere: it prints figures, and BENCHMARKS.md keeps them.

use std::fs;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// The authd binary under test: this build's, or `AUTHD_BENCH_BIN`.
fn authd() -> PathBuf {
    std::env::var_os("AUTHD_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_authd")))
}
/// authd's default HTTP pool; the baseline gets the same (its own `POOL`
/// in benches/bare/src/main.rs, which must match).
const POOL: usize = 64;
const PASSWORD: &str = "bench-passphrase";

fn main() {
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("the harness needs wrk: apt-get install wrk");
        std::process::exit(1);
    }
    let secs: u64 = env_number("AUTHD_BENCH_SECS", 10);
    let rounds = env_number("AUTHD_BENCH_ROUNDS", 3) as usize;
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    let only = std::env::var("AUTHD_BENCH_ONLY").unwrap_or_default();
    let wanted = |n: &str| only.is_empty() || only.split(',').any(|x| x == n);
    let work = tempfile::tempdir().unwrap();
    println!(
        "authd benchmark: {cores} cores, {secs} s per load, median of {rounds} alternating rounds, wrk {}",
        wrk_version()
    );
    println!();

    let authd = Server::authd(&work.path().join("small"), &["--bcrypt-cost", "12"]);
    let token = authd.register_and_login("user0@bench.io");
    let cookie = format!("Cookie: session_id={token}");

    if wanted("1") {
        // Session checks vs the framework's ceiling, alternating so that
        // the machine's noise hits both alike.
        let (bare_bin, tiny_http) = build_bare();
        let base = Server::baseline(&bare_bin, work.path());
        let (bare, profile) = alternate(rounds, || {
            (
                // The same request, cookie included: reading its headers is
                // part of the framework's cost.
                wrk(&base, &base.url("/profile"), 2, 16, secs, &[&cookie], None),
                wrk(
                    &authd,
                    &authd.url("/profile"),
                    2,
                    16,
                    secs,
                    &[&cookie],
                    None,
                ),
            )
        });
        let bare_label = format!("bare rouille (fixed JSON, pool {POOL}) on {tiny_http}:");
        let width = bare_label.len();
        println!("1. GET /profile, 16 keep-alive connections");
        println!(
            "   {bare_label:<width$} {:>9.0} req/s  p99 {:.2} ms",
            bare.rps, bare.p99_ms
        );
        println!(
            "   {:<width$} {:>9.0} req/s  p99 {:.2} ms",
            "authd GET /profile:", profile.rps, profile.p99_ms
        );
        println!("   ratio {:.2} (target >= 0.90)", profile.rps / bare.rps);
        println!(
            "   server CPU per request: bare {:.1} us, authd {:.1} us (ratio {:.2})",
            bare.cpu_us,
            profile.cpu_us,
            bare.cpu_us / profile.cpu_us
        );
        println!();
    }

    let emails: Vec<String> = (1..=8).map(|i| format!("user{i}@bench.io")).collect();
    let script = login_script(work.path(), &emails);
    if wanted("2") || wanted("3") {
        for email in &emails {
            authd.register_and_login(email);
        }
    }
    if wanted("2") {
        let (limit, logins) = alternate(rounds, || {
            let limit = bcrypt_limit(cores, secs);
            let logins = wrk(
                &authd,
                &authd.url("/sessions"),
                1,
                8,
                secs,
                &[],
                Some(&script),
            );
            (
                Load {
                    rps: limit,
                    p99_ms: f64::NAN,
                    errors: 0,
                    cpu_us: f64::NAN,
                },
                logins,
            )
        });
        println!("2. POST /sessions at bcrypt cost 12");
        println!(
            "   bcrypt limit ({cores} threads):       {:>9.2} verify/s",
            limit.rps
        );
        println!(
            "   authd logins:                        {:>9.2} req/s  (non-2xx: {})",
            logins.rps, logins.errors
        );
        println!("   ratio {:.2} (target >= 0.95)", logins.rps / limit.rps);
        println!();
    }
    if wanted("7") {
        let argon = Server::authd(
            &work.path().join("argon2id"),
            &["--password-hash", "argon2id"],
        );
        for email in &emails {
            argon.register_and_login(email);
        }
        let mut peak_rss = 0;
        let (limit, logins) = alternate(rounds, || {
            let limit = argon2_limit(cores, secs);
            let logins = wrk(
                &argon,
                &argon.url("/sessions"),
                1,
                8,
                secs,
                &[],
                Some(&script),
            );
            peak_rss = peak_rss.max(argon.rss_mib());
            (
                Load {
                    rps: limit,
                    p99_ms: f64::NAN,
                    errors: 0,
                    cpu_us: f64::NAN,
                },
                logins,
            )
        });
        println!("7. POST /sessions under argon2id (m=19456 KiB, t=2, p=1)");
        println!(
            "   argon2id limit ({cores} threads):     {:>9.2} verify/s",
            limit.rps
        );
        println!(
            "   authd logins:                        {:>9.2} req/s  (non-2xx: {})",
            logins.rps, logins.errors
        );
        println!("   ratio {:.2}", logins.rps / limit.rps);
        println!("   resident memory after a round of logins: {peak_rss} MiB");
        println!();
    }

    if wanted("3") {
        // Throughput: as many profile requests as 16 connections can send.
        // Latency: a steady load (4 connections, one request per 5 ms
        // each), so p99 is the server's, not that of a client fighting the
        // server for the two cores.
        let paced = paced_script(work.path(), &token);
        let profile_loads = |authd: &Server| {
            (
                wrk(authd, &authd.url("/profile"), 1, 16, secs, &[&cookie], None),
                wrk(authd, &authd.url("/profile"), 1, 4, secs, &[], Some(&paced)),
            )
        };
        let mut quiet = Vec::new();
        let mut loaded = Vec::new();
        for _ in 0..rounds.max(1) {
            quiet.push(profile_loads(&authd));
            let url = authd.url("/sessions");
            let during = thread::scope(|scope| {
                let hashing =
                    scope.spawn(|| wrk(&authd, &url, 1, 8, 2 * secs + 3, &[], Some(&script)));
                thread::sleep(Duration::from_secs(1));
                loaded.push(profile_loads(&authd));
                hashing.join().unwrap()
            });
            println!(
                "   (round: logins meanwhile {:.2}/s, non-2xx {})",
                during.rps, during.errors
            );
        }
        let split = |v: Vec<(Load, Load)>| {
            let (a, b): (Vec<Load>, Vec<Load>) = v.into_iter().unzip();
            (median(a), median(b))
        };
        let (quiet_rps, quiet_paced) = split(quiet);
        let (loaded_rps, loaded_paced) = split(loaded);
        println!("3. GET /profile while logins keep every core hashing");
        println!(
            "   unloaded:  {:>9.0} req/s saturating; at {:.0} req/s p99 {:.2} ms",
            quiet_rps.rps, quiet_paced.rps, quiet_paced.p99_ms
        );
        println!(
            "   loaded:    {:>9.0} req/s saturating; at {:.0} req/s p99 {:.2} ms",
            loaded_rps.rps, loaded_paced.rps, loaded_paced.p99_ms
        );
        println!(
            "   p99 {:.2} ms (target < 5 ms), throughput ratio {:.2} (target > 0.50)",
            loaded_paced.p99_ms,
            loaded_rps.rps / quiet_rps.rps
        );
        println!();
    }
    drop(authd);

    if wanted("4") {
        let small = ScaleStore::prepare(work.path(), 1_000);
        let large = ScaleStore::prepare(work.path(), 1_000_000);
        let (a, b) = alternate(rounds, || {
            (
                small.measure(work.path(), secs),
                large.measure(work.path(), secs),
            )
        });
        println!("4. scale: GET /profile over 1,000 sessions of different users");
        for (store, load) in [(&small, a), (&large, b)] {
            println!(
                "   {:>9} users: import {:>5.1} s, start-up {:>6.0} ms, {:>9.0} req/s, p99 {:.2} ms, {:.1} us CPU/req, RSS {:>4} MiB, {:>5.0} bytes/user on disk",
                store.users, store.import_s, store.startup_ms, load.rps, load.p99_ms, load.cpu_us, store.server.rss_mib(), store.bytes_per_user
            );
        }
        println!(
            "   ratio {:.2} (target >= 0.90), start-up {:.0} ms (target < 2000), RSS {} MiB (target < 512)",
            b.rps / a.rps,
            large.startup_ms,
            large.server.rss_mib()
        );
        println!();
    }

    if wanted("5") {
        match std::env::var("AUTHD_BENCH_DATABASE_URL") {
            #[cfg(feature = "postgres")]
            Ok(url) if !url.is_empty() => postgres_part(work.path(), &url, secs, rounds, cores),
            #[cfg(not(feature = "postgres"))]
            Ok(url) if !url.is_empty() => {
                println!("5. PostgreSQL: skipped (built without the `postgres` feature)")
            }
            _ => println!("5. PostgreSQL: skipped (set AUTHD_BENCH_DATABASE_URL=postgres://...)"),
        }
    }

    if wanted("6") {
        upgrade_part(work.path(), 1_000_000);
    }
}

/// Part 6: a format-1 store of `users` users, migrated by `authd migrate`
/// (which writes a backup first) and, on a second copy, by `authd serve`
/// at start (until it answers).
fn upgrade_part(work: &Path, users: u64) {
    println!("6. upgrade of a format-1 store");
    let (first, second) = (work.join("v1-a"), work.join("v1-b"));
    let started = Instant::now();
    write_format_1(&first, users);
    let written = started.elapsed();
    let status = Command::new("cp")
        .args(["-r", first.to_str().unwrap(), second.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let before = dir_size(&first);
    let started = Instant::now();
    let output = Command::new(authd())
        .args(["migrate", "--data-dir", first.to_str().unwrap()])
        .args(["--backup-dir", work.join("v1-backup").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let migrate = started.elapsed();
    let (server, startup) = Server::authd_timed(&second, &["--bcrypt-cost", "4"]);
    drop(server);
    println!(
        "   {users} users ({} with a session, {} with a reset token; written in {:.1} s, {:.0} MiB): \
         authd migrate {:.1} s (backup included), serve ready after {:.1} s; {:.0} MiB after",
        users / 2,
        users / 10,
        written.as_secs_f64(),
        before as f64 / 1048576.0,
        migrate.as_secs_f64(),
        startup.as_secs_f64(),
        dir_size(&first) as f64 / 1048576.0
    );
    println!();
}

/// A format-1 store of `users` users: half of them with a session, a
/// tenth with a reset token.
fn write_format_1(dir: &Path, users: u64) {
    use authd::codec::{LegacyGrant, LegacySession};
    use authd::token::TokenHash;
    use authd::user::{Email, User, UserId};
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    let made = (1..=users).map(|n| {
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&n.to_be_bytes());
        let mut r = s;
        r[31] = 1;
        let user = User::existing(
            UserId(n),
            Email::parse(&format!("u{n}@scale.io")).unwrap(),
            hash.clone(),
        );
        let session = (n % 2 == 0).then_some(LegacySession {
            token_hash: TokenHash(s),
            created_at: 1,
            last_seen: 2,
        });
        let reset = (n % 10 == 0).then_some(LegacyGrant {
            token_hash: TokenHash(r),
            created_at: 3,
        });
        (user, session, reset)
    });
    authd::store::sled::schema::write_format_1(dir, made).unwrap();
}

/// Part 5: the same session checks and logins on the PostgreSQL store,
/// with one instance and with two on one database (each given half the
/// connections, their throughputs summed), and on sled in the same run.
#[cfg(feature = "postgres")]
fn postgres_part(work: &Path, url: &str, secs: u64, rounds: usize, cores: usize) {
    let mut admin =
        postgres::Client::connect(url, postgres::NoTls).expect("AUTHD_BENCH_DATABASE_URL");
    admin
        .batch_execute("DROP SCHEMA IF EXISTS authd_bench CASCADE; CREATE SCHEMA authd_bench")
        .unwrap();
    let separator = if url.contains('?') { '&' } else { '?' };
    let database = format!("{url}{separator}options=-c%20search_path%3Dauthd_bench");
    let on_db = |n: usize| {
        Server::authd_on(
            &["--database", &database],
            &work.join(format!("pg{n}.stderr")),
            &["--bcrypt-cost", "12"],
        )
        .0
    };
    let sled = Server::authd(&work.join("pg-sled"), &["--bcrypt-cost", "12"]);
    let (first, second) = (on_db(1), on_db(2));
    let emails: Vec<String> = (1..=8).map(|i| format!("user{i}@bench.io")).collect();
    for email in &emails {
        sled.register_and_login(email);
        first.register_and_login(email);
    }
    let script = login_script(work, &emails);
    let sled_cookie = format!(
        "Cookie: session_id={}",
        sled.register_and_login("p@bench.io")
    );
    // A session made on the first instance works on the second.
    let pg_cookie = format!(
        "Cookie: session_id={}",
        first.register_and_login("p@bench.io")
    );
    let profile = |server: &Server, cookie: &str, conns: usize| {
        wrk(
            server,
            &server.url("/profile"),
            1,
            conns,
            secs,
            &[cookie],
            None,
        )
    };
    let logins = |server: &Server, conns: usize| {
        wrk(
            server,
            &server.url("/sessions"),
            1,
            conns,
            secs,
            &[],
            Some(&script),
        )
    };
    let both = |a: &(dyn Fn() -> Load + Sync), b: &(dyn Fn() -> Load + Sync)| {
        let (x, y) = thread::scope(|scope| {
            let x = scope.spawn(a);
            let y = scope.spawn(b);
            (x.join().unwrap(), y.join().unwrap())
        });
        Load {
            rps: x.rps + y.rps,
            p99_ms: x.p99_ms.max(y.p99_ms),
            errors: x.errors + y.errors,
            cpu_us: f64::NAN,
        }
    };
    let mut rows: Vec<(&str, Vec<Load>)> = vec![
        ("sled, one instance", Vec::new()),
        ("PostgreSQL, one instance", Vec::new()),
        ("PostgreSQL, two instances", Vec::new()),
    ];
    let mut login_rows: Vec<(&str, Vec<Load>)> = vec![
        ("sled, one instance", Vec::new()),
        ("PostgreSQL, one instance", Vec::new()),
        ("PostgreSQL, two instances", Vec::new()),
    ];
    for _ in 0..rounds.max(1) {
        rows[0].1.push(profile(&sled, &sled_cookie, 16));
        rows[1].1.push(profile(&first, &pg_cookie, 16));
        rows[2]
            .1
            .push(both(&|| profile(&first, &pg_cookie, 8), &|| {
                profile(&second, &pg_cookie, 8)
            }));
        login_rows[0].1.push(logins(&sled, 8));
        login_rows[1].1.push(logins(&first, 8));
        login_rows[2]
            .1
            .push(both(&|| logins(&first, 4), &|| logins(&second, 4)));
    }
    let limit = bcrypt_limit(cores, secs);
    println!(
        "5. the PostgreSQL store (medians of {} rounds)",
        rounds.max(1)
    );
    println!("   GET /profile, 16 keep-alive connections in all:");
    for (name, loads) in rows {
        let load = median(loads);
        println!(
            "   {name:<27} {:>9.0} req/s  p99 {:.2} ms  (non-2xx: {})",
            load.rps, load.p99_ms, load.errors
        );
    }
    println!(
        "   POST /sessions at bcrypt cost 12, 8 connections in all (bcrypt limit {limit:.2}/s):"
    );
    for (name, loads) in login_rows {
        let load = median(loads);
        println!(
            "   {name:<27} {:>9.2} req/s  ratio to the limit {:.2}  (non-2xx: {})",
            load.rps,
            load.rps / limit,
            load.errors
        );
    }
    drop((first, second));
    let _ = admin.batch_execute("DROP SCHEMA IF EXISTS authd_bench CASCADE");
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `measure` `rounds` times and returns the median of each side (by
/// requests per second), so both sides of a ratio see the same noise.
fn alternate(rounds: usize, mut measure: impl FnMut() -> (Load, Load)) -> (Load, Load) {
    let mut left = Vec::new();
    let mut right = Vec::new();
    for _ in 0..rounds.max(1) {
        let (a, b) = measure();
        left.push(a);
        right.push(b);
    }
    (median(left), median(right))
}

fn median(mut loads: Vec<Load>) -> Load {
    loads.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    loads[loads.len() / 2]
}

/// Builds the bare rouille server (benches/bare: a fixed JSON body as small
/// as a profile answer) into target/bare, as benches/profile.sh does, and
/// returns its path and the tiny_http it is built on ("upstream tiny_http
/// 0.12.0"), read from its Cargo.lock. Its own workspace, so the root's
/// `[patch.crates-io]` of tiny_http does not reach it; `--locked` keeps it
/// on what its Cargo.lock pins.
fn build_bare() -> (PathBuf, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = root.join("benches/bare/Cargo.toml");
    let target = root.join("target/bare");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--locked",
            "--quiet",
            "--manifest-path",
        ])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "building benches/bare failed");
    let lock = fs::read_to_string(root.join("benches/bare/Cargo.lock")).unwrap();
    let (version, source) = lock
        .split("[[package]]")
        .find(|package| package.contains("\nname = \"tiny_http\"\n"))
        .map(|package| {
            let field = |key: &str| {
                package
                    .lines()
                    .find_map(|l| l.strip_prefix(key))
                    .map_or("", |v| v.trim_matches('"'))
                    .to_owned()
            };
            (field("version = "), field("source = "))
        })
        .expect("no tiny_http in benches/bare/Cargo.lock");
    assert!(
        source.starts_with("registry+"),
        "the bare server's tiny_http is not from the registry: {source}"
    );
    (
        target.join("release/authd-bench-bare"),
        format!("upstream tiny_http {version}"),
    )
}

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(mut command: Command, stderr: &Path) -> (Server, Duration) {
        let started = Instant::now();
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(fs::File::create(stderr).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let elapsed = started.elapsed();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "did not start: {}",
                    fs::read_to_string(stderr).unwrap_or_default()
                )
            })
            .to_owned();
        (Server { child, base }, elapsed)
    }

    fn baseline(bin: &Path, dir: &Path) -> Server {
        let mut command = Command::new(bin);
        command.arg("127.0.0.1:0");
        Self::start(command, &dir.join("baseline.stderr")).0
    }

    fn authd_timed(dir: &Path, extra: &[&str]) -> (Server, Duration) {
        let store = ["--data-dir", dir.to_str().unwrap()];
        Self::authd_on(&store, &dir.with_extension("stderr"), extra)
    }

    /// authd on the store named by `store` (`--data-dir DIR` or
    /// `--database URL`), with throttles and fairness limits out of the
    /// benchmark's way.
    fn authd_on(store: &[&str], stderr: &Path, extra: &[&str]) -> (Server, Duration) {
        let mut command = Command::new(authd());
        command
            .args(["serve", "--addr", "127.0.0.1:0"])
            .args(store)
            .args([
                "--login-free-failures",
                "100",
                "--request-free",
                "100000000",
                // wrk logs in from one address, in a loop: the fairness
                // limits would answer most of it 429.
                "--login-success-burst",
                "100000",
                "--hashes-per-address",
                "10000",
            ])
            .args(extra);
        Self::start(command, stderr)
    }

    fn authd(dir: &Path, extra: &[&str]) -> Server {
        Self::authd_timed(dir, extra).0
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn register_and_login(&self, email: &str) -> String {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let form = format!("email={}&password={PASSWORD}", email.replace('@', "%40"));
        agent
            .post(self.url("/users"))
            .content_type("application/x-www-form-urlencoded")
            .send(form.as_str())
            .unwrap();
        self.login(&agent, &form)
    }

    fn login(&self, agent: &ureq::Agent, form: &str) -> String {
        let response = agent
            .post(self.url("/sessions"))
            .content_type("application/x-www-form-urlencoded")
            .send(form)
            .unwrap();
        let cookie = response
            .headers()
            .get("set-cookie")
            .unwrap_or_else(|| panic!("login failed: {}", response.status()))
            .to_str()
            .unwrap();
        cookie["session_id=".len()..]
            .split(';')
            .next()
            .unwrap()
            .to_owned()
    }

    fn rss_mib(&self) -> u64 {
        let status =
            fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, Copy)]
struct Load {
    rps: f64,
    p99_ms: f64,
    errors: u64,
    /// Server CPU time (user + system) per request, in microseconds: much
    /// less sensitive than throughput to what else runs on the machine.
    cpu_us: f64,
}

/// CPU ticks (user + system) used so far by process `pid`.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the ")" that ends the command name: utime is the 12th,
    // stime the 13th.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| {
        fields
            .get(n)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

fn wrk_version() -> String {
    let out = Command::new("wrk").arg("--version").output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    text.split_whitespace().nth(1).unwrap_or("?").to_owned()
}

/// Runs wrk and reads requests/s, p99 latency and non-2xx/3xx answers.
fn wrk(
    server: &Server,
    url: &str,
    threads: usize,
    conns: usize,
    secs: u64,
    headers: &[&str],
    script: Option<&Path>,
) -> Load {
    let mut command = Command::new("wrk");
    command.args([
        "--latency",
        &format!("-t{threads}"),
        &format!("-c{conns}"),
        &format!("-d{secs}s"),
    ]);
    for header in headers {
        command.args(["-H", header]);
    }
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    let before = cpu_ticks(server.child.id());
    let out = command.arg(url).output().unwrap();
    let cpu_s = (cpu_ticks(server.child.id()) - before) as f64 / ticks_per_second();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let number = |prefix: &str| -> Option<String> {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .map(|l| {
                l[prefix.len()..]
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_owned()
            })
    };
    let rps = number("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let p99_ms = number("99%").map_or(f64::NAN, |v| millis(&v));
    let errors = number("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let requests: f64 = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let cpu_us = if requests > 0.0 {
        cpu_s * 1e6 / requests
    } else {
        f64::NAN
    };
    Load {
        rps,
        p99_ms,
        errors,
        cpu_us,
    }
}

/// "1.23ms", "456.00us", "1.01s" -> milliseconds.
fn millis(value: &str) -> f64 {
    let (number, scale) = if let Some(v) = value.strip_suffix("us") {
        (v, 0.001)
    } else if let Some(v) = value.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = value.strip_suffix('s') {
        (v, 1000.0)
    } else {
        (value, f64::NAN)
    };
    number.parse::<f64>().map_or(f64::NAN, |n| n * scale)
}

/// bcrypt verifications per second with one thread per core, at cost 12.
fn bcrypt_limit(cores: usize, secs: u64) -> f64 {
    let hash = bcrypt::hash(PASSWORD, 12).unwrap();
    verifications_per_second(cores, secs, move || {
        assert!(bcrypt::verify(PASSWORD, &hash).unwrap());
    })
}

/// How many times per second `cores` threads run `verify` (one
/// verification each), for `secs` seconds.
fn verifications_per_second(
    cores: usize,
    secs: u64,
    verify: impl Fn() + Send + Sync + 'static,
) -> f64 {
    let verify = Arc::new(verify);
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..cores)
        .map(|_| {
            let (verify, done, stop) = (Arc::clone(&verify), Arc::clone(&done), Arc::clone(&stop));
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    verify();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// Verifications per second of an argon2id hash at OWASP's minimum, one
/// thread per core: the machine's limit for logins under argon2id.
fn argon2_limit(cores: usize, secs: u64) -> f64 {
    use argon2::{Argon2, PasswordHash, PasswordVerifier as _};
    let scheme = authd::hasher::Scheme::Argon2id(authd::hasher::Argon2Params::OWASP);
    let hasher = authd::hasher::Hasher::start_scheme(1, 1, scheme, 64).unwrap();
    let password = authd::user::Password::parse(PASSWORD).unwrap();
    let hash = hasher.hash(&password).unwrap();
    verifications_per_second(cores, secs, move || {
        let parsed = PasswordHash::new(&hash).unwrap();
        Argon2::default()
            .verify_password(PASSWORD.as_bytes(), &parsed)
            .unwrap();
    })
}

/// A wrk script that logs in as each of `emails` in turn.
fn login_script(dir: &Path, emails: &[String]) -> PathBuf {
    let list = emails
        .iter()
        .map(|e| format!("\"{}\"", e.replace('@', "%40")))
        .collect::<Vec<_>>()
        .join(", ");
    let script = format!(
        "local users = {{{list}}}\nlocal i = 0\nrequest = function()\n  i = i + 1\n  local body = \"email=\" .. users[(i % #users) + 1] .. \"&password={PASSWORD}\"\n  return wrk.format(\"POST\", nil, {{[\"Content-Type\"] = \"application/x-www-form-urlencoded\"}}, body)\nend\n"
    );
    let path = dir.join("login.lua");
    fs::write(&path, script).unwrap();
    path
}

/// A wrk script for `GET /profile` with one session, each connection
/// waiting 5 ms between requests.
fn paced_script(dir: &Path, token: &str) -> PathBuf {
    let script = format!(
        "wrk.headers[\"Cookie\"] = \"session_id={token}\"\ndelay = function()\n  return 5\nend\n"
    );
    let path = dir.join("paced.lua");
    fs::write(&path, script).unwrap();
    path
}

/// A wrk script that cycles through session cookies.
fn sessions_script(dir: &Path, users: usize, tokens: &[String]) -> PathBuf {
    let list = tokens
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(",\n");
    let script = format!(
        "local tokens = {{{list}}}\nlocal i = 0\nrequest = function()\n  i = i + 1\n  return wrk.format(\"GET\", nil, {{[\"Cookie\"] = \"session_id=\" .. tokens[(i % #tokens) + 1]}})\nend\n"
    );
    let path = dir.join(format!("sessions-{users}.lua"));
    fs::write(&path, script).unwrap();
    path
}

/// A store of `users` users, served by authd, with 1,000 sessions spread
/// over the id range.
struct ScaleStore {
    users: usize,
    import_s: f64,
    startup_ms: f64,
    bytes_per_user: f64,
    server: Server,
    script: PathBuf,
}

impl ScaleStore {
    fn prepare(work: &Path, users: usize) -> ScaleStore {
        let dir = work.join(format!("scale-{users}"));
        let file = work.join(format!("users-{users}.jsonl"));
        let hash = bcrypt::hash(PASSWORD, 4).unwrap();
        {
            let mut out = std::io::BufWriter::new(fs::File::create(&file).unwrap());
            for i in 0..users {
                writeln!(
                    out,
                    "{{\"email\":\"u{i}@scale.io\",\"hashed_password\":\"{hash}\"}}"
                )
                .unwrap();
            }
        }
        let started = Instant::now();
        let status = Command::new(authd())
            .args([
                "import",
                file.to_str().unwrap(),
                "--data-dir",
                dir.to_str().unwrap(),
            ])
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "import failed");
        let import_s = started.elapsed().as_secs_f64();
        let _ = fs::remove_file(&file);
        let bytes_per_user = dir_size(&dir) as f64 / users as f64;
        // Cost 4 as the imported hashes: no rehash on these logins.
        let (server, startup) = Server::authd_timed(&dir, &["--bcrypt-cost", "4"]);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let step = users / 1_000;
        let tokens: Vec<String> = (0..1_000)
            .map(|n| {
                let form = format!("email=u{}%40scale.io&password={PASSWORD}", n * step);
                server.login(&agent, &form)
            })
            .collect();
        let script = sessions_script(work, users, &tokens);
        ScaleStore {
            users,
            import_s,
            startup_ms: startup.as_secs_f64() * 1000.0,
            bytes_per_user,
            server,
            script,
        }
    }

    fn measure(&self, _work: &Path, secs: u64) -> Load {
        wrk(
            &self.server,
            &self.server.url("/profile"),
            2,
            16,
            secs,
            &[],
            Some(self.script.as_path()),
        )
    }
}

fn dir_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    let path = e.path();
                    if path.is_dir() {
                        dir_size(&path)
                    } else {
                        // Blocks actually allocated, not the sparse length.
                        use std::os::unix::fs::MetadataExt;
                        e.metadata().map_or(0, |m| m.blocks() * 512)
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}
