//! Password hashing (#18): argon2id or bcrypt for new hashes, both kinds
//! verified, a store moved from one to the other one login at a time, the
//! length limit of the configured algorithm.

use std::time::{Duration, Instant};

use authd::config::Config;
use authd::hasher::{Algorithm, Argon2Params};

use crate::common::process::{run, Proc};
use crate::common::stores::run_authd;
use crate::common::{urlencode, TestApp};

/// 64 Cyrillic letters: 128 bytes, past bcrypt's 72.
fn cyrillic() -> String {
    let password = "пароль".repeat(10) + "ключ";
    assert_eq!((password.chars().count(), password.len()), (64, 128));
    password
}

/// argon2id at parameters small enough for a test: behaviour, not cost.
fn argon2id(config: &mut Config) {
    config.password_hash = Algorithm::Argon2id;
    config.argon2 = Argon2Params {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
    };
}

fn stored(app: &TestApp, email: &str) -> String {
    authd::store::keyword::find_user_by(app.running.store(), "email", email)
        .unwrap()
        .hashed_password
}

fn argon2id_takes_a_long_password_of_any_script() {
    let app = TestApp::spawn_with(argon2id);
    let password = cyrillic();
    let reply = app.register("a@b.io", &password);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        stored(&app, "a@b.io").starts_with("$argon2id$v=19$m=1024,t=1,p=1$"),
        "{}",
        stored(&app, "a@b.io")
    );
    // All of it counts: the same letters but the last refuse.
    let mut other = password.clone();
    other.pop();
    other.push('ж');
    assert_eq!(app.log_in("a@b.io", &other).status, 401);
    let session = app.log_in("a@b.io", &password).session();
    assert_eq!(app.profile(Some(&session)).status, 200);
    // The limit is 1,024 bytes, said as such.
    let reply = app.register("c@b.io", &"x".repeat(1025));
    assert_eq!(reply.status, 400);
    assert_eq!(reply.message(), "password must be at most 1024 bytes");
    assert_eq!(app.register("c@b.io", &"x".repeat(1024)).status, 200);
}

fn bcrypt_refuses_what_it_would_truncate() {
    let app = TestApp::spawn();
    let reply = app.register("a@b.io", &cyrillic());
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.message(),
        "password must be at most 72 bytes (bcrypt ignores anything longer)"
    );
    assert_eq!(app.user_count(), 0);
}

fn a_bcrypt_store_moves_to_argon2id_at_login() {
    let app = TestApp::spawn();
    assert_eq!(app.register("a@b.io", "pw").status, 200);
    let prefix = "p".repeat(72);
    assert_eq!(app.register("old@b.io", &prefix).status, 200);
    assert!(stored(&app, "a@b.io").starts_with("$2b$04$"));
    let app = app.restart_with(argon2id);
    // A failed login changes nothing.
    assert_eq!(app.log_in("a@b.io", "nope").status, 401);
    assert!(stored(&app, "a@b.io").starts_with("$2b$04$"));
    let session = app.log_in("a@b.io", "pw").session();
    assert!(
        stored(&app, "a@b.io").starts_with("$argon2id$"),
        "{}",
        stored(&app, "a@b.io")
    );
    assert_eq!(app.profile(Some(&session)).status, 200);
    assert_eq!(app.log_in("a@b.io", "pw").status, 200);
    // A password longer than bcrypt reads never matches an account's
    // bcrypt hash of its first 72 bytes.
    assert_eq!(app.log_in("old@b.io", &format!("{prefix}more")).status, 401);
    assert!(stored(&app, "old@b.io").starts_with("$2b$"));
}

fn an_argon2id_store_moves_to_bcrypt_at_login() {
    let app = TestApp::spawn_with(argon2id);
    assert_eq!(app.register("a@b.io", "pw").status, 200);
    let long = cyrillic();
    assert_eq!(app.register("long@b.io", &long).status, 200);
    assert!(stored(&app, "a@b.io").starts_with("$argon2id$"));
    let app = app.restart_with(|_| {});
    assert_eq!(app.log_in("a@b.io", "nope").status, 401);
    assert!(stored(&app, "a@b.io").starts_with("$argon2id$"));
    assert_eq!(app.log_in("a@b.io", "pw").status, 200);
    assert!(
        stored(&app, "a@b.io").starts_with("$2b$04$"),
        "{}",
        stored(&app, "a@b.io")
    );
    // A password bcrypt cannot hold still logs in; its hash stays argon2id
    // (bcrypt would keep 72 of its 128 bytes).
    let session = app.log_in("long@b.io", &long).session();
    assert_eq!(app.profile(Some(&session)).status, 200);
    assert!(stored(&app, "long@b.io").starts_with("$argon2id$"));
}

/// An argon2id store exported and imported into one served with bcrypt:
/// the hashes make the trip, a short password moves to bcrypt at login, a
/// long one logs in and keeps its argon2id hash.
fn argon2id_hashes_export_and_import() {
    let tmp = tempfile::tempdir().unwrap();
    let old = tmp.path().join("old");
    let long = cyrillic();
    let server = Proc::start(
        &old,
        &[
            "--password-hash",
            "argon2id",
            "--argon2-memory-kib",
            "1024",
            "--argon2-iterations",
            "1",
        ],
    );
    for (email, password) in [("short@x.io", "pw"), ("long@x.io", long.as_str())] {
        let form = format!(
            "email={}&password={}",
            urlencode(email),
            urlencode(password)
        );
        let (status, body) = server.post("/users", &form);
        assert_eq!(status, 200, "{body}");
    }
    drop(server);
    let (code, text, err) = run_authd(&old, &["export"], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        text.matches("\"$argon2id$v=19$m=1024,t=1,p=1$").count(),
        2,
        "{text}"
    );
    let new = tmp.path().join("new");
    let (code, _, err) = run_authd(&new, &["import", "-"], Some(&text));
    assert_eq!(code, 0, "{err}");
    let server = Proc::start(&new, &[]);
    assert_eq!(server.log_in("long@x.io", "wrong"), Err(401));
    assert!(server.log_in("short@x.io", "pw").is_ok());
    assert!(server.log_in("long@x.io", &long).is_ok());
    drop(server);
    let (_, text, _) = run_authd(&new, &["export"], None);
    let hash_of = |email: &str| {
        let line = text.lines().find(|l| l.contains(email)).unwrap();
        let user: serde_json::Value = serde_json::from_str(line).unwrap();
        user["hashed_password"].as_str().unwrap().to_owned()
    };
    assert!(hash_of("short@x.io").starts_with("$2b$04$"), "{text}");
    assert!(hash_of("long@x.io").starts_with("$argon2id$"), "{text}");
}

/// `authd user add` hashes with bcrypt unless told otherwise, with the
/// limit of the algorithm it uses.
fn admin_commands_hash_as_told() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let stdin = format!("{}\n", cyrillic());
    let (code, out, err) = run_authd(
        &dir,
        &["user", "add", "b@x.io", "--password-stdin"],
        Some(&stdin),
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("password must be at most 72 bytes (bcrypt ignores anything longer)"),
        "{err}"
    );
    let (code, out, err) = run_authd(
        &dir,
        &[
            "user",
            "add",
            "a@x.io",
            "--password-stdin",
            "--password-hash",
            "argon2id",
            "--argon2-memory-kib",
            "1024",
            "--argon2-iterations",
            "1",
        ],
        Some(&stdin),
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = run_authd(&dir, &["user", "list", "--json"], None);
    assert_eq!(code, 0, "{out}");
    let user: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(user["password_hash"], "argon2id", "{out}");
    assert_eq!(user["bcrypt_cost"], serde_json::Value::Null, "{out}");
    let (_, out, _) = run_authd(&dir, &["user", "show", "a@x.io"], None);
    assert!(
        out.contains("password hash:  argon2id m=1024 KiB t=1 p=1"),
        "{out}"
    );
    let server = Proc::start(&dir, &["--password-hash", "argon2id"]);
    assert!(server.log_in("a@x.io", &cyrillic()).is_ok());
}

/// With room for one argon2 hash at a time, parallel registrations and
/// logins on two workers all get through: the others wait their turn.
fn a_memory_budget_of_one_hash_serves_everyone_in_turn() {
    let app = std::sync::Arc::new(TestApp::spawn_with(|config| {
        argon2id(config);
        config.hash_memory_mb = 1;
        config.hash_workers = 2;
    }));
    let shared = std::sync::Arc::clone(&app);
    let statuses = crate::common::all_at_once(6, move |i| {
        let email = format!("u{i}@b.io");
        let registered = shared.register(&email, "pw").status;
        (registered, shared.log_in(&email, "pw").status)
    });
    assert_eq!(statuses, vec![(200, 200); 6]);
    assert_eq!(app.user_count(), 6);
}

/// An argon2id hash made by another implementation (Python's
/// argon2-cffi, the reference binding of the argon2 authors' C code):
/// `.ci/run` installs it; elsewhere the test says so and passes unless
/// `CI` is set.
fn argon2_cffi(password: &str) -> Option<String> {
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            "import argon2, sys; print(argon2.PasswordHasher(time_cost=1, memory_cost=1024, \
             parallelism=1).hash(sys.argv[1]))",
            password,
        ])
        .output();
    match output {
        Ok(output) if output.status.success() => {
            Some(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        }
        other => {
            let ci = std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "false" | "0"));
            assert!(!ci, "python3 with argon2-cffi is needed in CI: {other:?}");
            eprintln!("skipped: no python3 with argon2-cffi ({other:?})");
            None
        }
    }
}

fn argon2id_hashes_of_another_implementation_import_and_log_in() {
    let long = cyrillic();
    let (Some(short), Some(wide)) = (argon2_cffi("correct horse"), argon2_cffi(&long)) else {
        return;
    };
    assert!(
        short.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"),
        "{short}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let input = format!(
        "{{\"email\":\"py@x.io\",\"hashed_password\":\"{short}\"}}\n\
         {{\"email\":\"wide@x.io\",\"hashed_password\":\"{wide}\"}}\n"
    );
    let (code, _, err) = run_authd(&dir, &["import", "-"], Some(&input));
    assert_eq!(code, 0, "{err}");
    let server = Proc::start(&dir, &[]);
    assert_eq!(server.log_in("py@x.io", "correct horsf"), Err(401));
    assert!(server.log_in("py@x.io", "correct horse").is_ok());
    assert!(server.log_in("wide@x.io", &long).is_ok());
}

crate::on_every_store!(
    argon2id_hashes_of_another_implementation_import_and_log_in,
    a_memory_budget_of_one_hash_serves_everyone_in_turn,
    admin_commands_hash_as_told,
    argon2id_hashes_export_and_import,
    argon2id_takes_a_long_password_of_any_script,
    bcrypt_refuses_what_it_would_truncate,
    a_bcrypt_store_moves_to_argon2id_at_login,
    an_argon2id_store_moves_to_bcrypt_at_login,
);

/// Bad hash settings stop `serve` with a usage error, before any store is
/// made; production refuses a bcrypt cost under 10 under argon2id too.
#[test]
fn a_bad_password_hash_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let production = ["--profile", "production", "--delivery", "log"];
    let cases: [(Vec<&str>, &str); 5] = [
        (vec!["--password-hash", "md5"], "md5"),
        (
            vec!["--password-hash", "argon2id", "--argon2-memory-kib", "0"],
            "--argon2-memory-kib",
        ),
        (vec!["--argon2-iterations", "0"], "--argon2-iterations"),
        (
            vec![
                "--password-hash",
                "argon2id",
                "--argon2-parallelism",
                "4",
                "--argon2-memory-kib",
                "16",
            ],
            "at least 8 KiB per lane",
        ),
        (
            [
                &production[..],
                &["--password-hash", "argon2id", "--bcrypt-cost", "9"],
            ]
            .concat(),
            "--bcrypt-cost 10 or more",
        ),
    ];
    for (args, says) in cases {
        let mut all = vec!["serve", "--addr", "127.0.0.1:0", "--data-dir"];
        all.push(store.to_str().unwrap());
        all.extend(&args);
        let (code, _, stderr) = run(&all);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(
            stderr.contains("error:") && stderr.contains(says),
            "{args:?}: {stderr}"
        );
        assert!(!store.exists(), "{args:?}");
    }
}

/// Waits (bounded) for the start-up summary on the server's stderr.
fn summary_of(server: &Proc) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stderr = server.stderr();
        if let Some(line) = stderr.lines().find(|l| l.contains("authd: profile ")) {
            return line.to_owned();
        }
        assert!(Instant::now() < deadline, "no summary in {stderr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn production_hashes_with_argon2id_by_default_and_dev_with_bcrypt() {
    let tmp = tempfile::tempdir().unwrap();
    let production = Proc::start(
        &tmp.path().join("prod"),
        &[
            "--profile",
            "production",
            "--delivery",
            "log",
            "--bcrypt-cost",
            "10",
        ],
    );
    let line = summary_of(&production);
    assert!(
        line.contains("argon2id m=19456 KiB t=2 p=1 (64 MiB at once) on "),
        "{line}"
    );
    drop(production);
    let dev = Proc::start(&tmp.path().join("dev"), &[]);
    let line = summary_of(&dev);
    assert!(line.contains("bcrypt cost 4"), "{line}");
    drop(dev);
    // Either may be chosen in either profile.
    let chosen = Proc::start(
        &tmp.path().join("chosen"),
        &["--password-hash", "argon2id", "--argon2-memory-kib", "1024"],
    );
    let line = summary_of(&chosen);
    assert!(line.contains("argon2id m=1024 KiB t=2 p=1"), "{line}");
}
