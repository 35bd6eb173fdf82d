//! Upgrading in place: a store written by the previous release (the
//! fixture under tests/fixtures/, made by that release's binary) opens
//! with this one and keeps working; the migration is explicit for admin
//! commands, automatic for `serve`, backed up, and resumable after a
//! crash; a PostgreSQL schema at migration 1 is brought up to date.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::common::process::{Proc, BIN};
use crate::common::stores::run_authd;

/// The fixture's users: (email, password, session token, reset token).
fn fixture_users() -> Vec<(String, String, Option<String>, Option<String>)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v1.json");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    doc["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            let text = |key: &str| u[key].as_str().map(str::to_owned);
            (
                text("email").unwrap(),
                text("password").unwrap(),
                text("session"),
                text("reset_token"),
            )
        })
        .collect()
}

/// A copy of the fixture store in a fresh directory.
fn fixture_copy() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    crate::common::copy_fixture_store("store-v1", &dir);
    (tmp, dir)
}

/// Lifetimes long enough that the fixture's sessions and tokens (made when
/// it was) are still live whenever this runs.
const LONG_LIVED: [&str; 6] = [
    "--session-ttl",
    "3000000000",
    "--session-idle-ttl",
    "3000000000",
    "--reset-token-ttl",
    "3000000000",
];

#[test]
fn admin_commands_refuse_an_old_store_and_dry_run_changes_nothing() {
    let (_tmp, dir) = fixture_copy();
    for args in [&["user", "list"][..], &["check"], &["export"]] {
        let (code, out, err) = run_authd(&dir, args, None);
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        assert!(
            err.contains("is of format 1, older than this authd's (5)")
                && err.contains("authd migrate"),
            "{args:?}: {err}"
        );
    }
    let (code, out, err) = run_authd(&dir, &["migrate", "--dry-run"], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("pending migration to format 2"), "{out}");
    // Still format 1: still refused.
    let (code, _, err) = run_authd(&dir, &["user", "list"], None);
    assert_eq!(code, 1);
    assert!(err.contains("format 1"), "{err}");
}

#[test]
fn serve_migrates_at_start_and_everything_live_stays_live() {
    let (_tmp, dir) = fixture_copy();
    let server = Proc::start(&dir, &LONG_LIVED);
    let stderr = server.stderr();
    assert!(
        stderr.contains("migrating the store") && stderr.contains("to format 2"),
        "{stderr}"
    );
    let users = fixture_users();
    // Live sessions stay valid, and list as sessions of their own.
    for (email, _, session, _) in &users {
        if let Some(token) = session {
            let answer = server.send("GET", "/profile", "", Some(token));
            assert_eq!(answer.status, 200, "{email}: {answer:?}");
            assert_eq!(answer.json()["email"], email.as_str());
            let list = server.send("GET", "/sessions", "", Some(token));
            assert_eq!(list.json()["sessions"].as_array().unwrap().len(), 1);
            // Created under the old rules: verified, of unknown age.
            let account = server.send("GET", "/account", "", Some(token)).json();
            assert_eq!(
                (&account["email_verified"], &account["created_at"]),
                (&true.into(), &serde_json::Value::Null),
                "{email}"
            );
        }
    }
    // A pending reset token redeems once, and ends the user's sessions.
    for (email, _, session, reset) in &users {
        let Some(token) = reset else { continue };
        let form = format!("email={email}&reset_token={token}&new_password=after-{email}");
        let answer = server.send("PUT", "/reset_password", &form, None);
        assert_eq!(answer.status, 200, "{email}: {answer:?}");
        let again = server.send("PUT", "/reset_password", &form, None);
        assert_eq!(again.status, 403, "{email}: used twice");
        if let Some(session) = session {
            assert_eq!(
                server.profile(session),
                403,
                "{email}: session outlived the reset"
            );
        }
        assert!(server.log_in(email, &format!("after-{email}")).is_ok());
    }
    // Passwords of the others still log in; ids keep counting.
    for (email, password, _, reset) in &users {
        if reset.is_none() {
            assert!(server.log_in(email, password).is_ok(), "{email}");
        }
    }
    let (status, _) = server.post("/users", "email=new%40example.com&password=pw");
    assert_eq!(status, 200);
    drop(server);
    let (code, out, err) = run_authd(&dir, &["check"], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("5 users"), "{out}");
    // A second start has nothing to migrate.
    let server = Proc::start(&dir, &LONG_LIVED);
    assert!(
        !server.stderr().contains("migrating"),
        "{}",
        server.stderr()
    );
}

#[test]
fn migrate_backs_up_first_and_the_backup_is_the_old_store() {
    let (tmp, dir) = fixture_copy();
    let backup = tmp.path().join("before");
    let (code, out, err) = run_authd(
        &dir,
        &["migrate", "--backup-dir", backup.to_str().unwrap()],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("backed up the store"), "{out}");
    assert!(out.contains("migrated"), "{out}");
    let (code, out, err) = run_authd(&dir, &["user", "list"], None);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.lines().count(), 5, "{out}");
    // The backup is of the old format: refused as such.
    let (code, _, err) = run_authd(&backup, &["user", "list"], None);
    assert_eq!(code, 1);
    assert!(err.contains("format 1"), "{err}");
    // Nothing left to do; a backup directory that exists is refused.
    let (code, out, _) = run_authd(&dir, &["migrate"], None);
    assert_eq!(code, 0);
    assert!(out.contains("up to date"), "{out}");
    let (code, _, err) = run_authd(
        &backup,
        &["migrate", "--backup-dir", dir.to_str().unwrap()],
        None,
    );
    assert_eq!(code, 1);
    assert!(err.contains("exists already"), "{err}");
}

/// A format-1 store of `users` users, each with a session and a reset
/// grant, as the previous release laid it out.
fn write_format_1(dir: &Path, users: u64) {
    use authd::codec::{LegacyGrant, LegacySession};
    use authd::token::TokenHash;
    use authd::user::{Email, User, UserId};
    let made = (1..=users).map(|n| {
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&n.to_be_bytes());
        let mut r = s;
        r[31] = 1;
        let user = User::existing(
            UserId(n),
            Email::parse(&format!("u{n}@x.io")).unwrap(),
            "$2b$04$AAAAAAAAAAAAAAAAAAAAAOAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned(),
        );
        let session = LegacySession {
            token_hash: TokenHash(s),
            created_at: 1,
            last_seen: 2,
        };
        let grant = LegacyGrant {
            token_hash: TokenHash(r),
            created_at: 3,
        };
        (user, Some(session), Some(grant))
    });
    authd::store::sled::schema::write_format_1(dir, made).unwrap();
}

/// Runs `authd migrate` on `dir` with its backup in `backup`; returns the
/// child once it has said its backup is written (the conversion starts
/// then), and when that was.
fn migrate_past_backup(dir: &Path, backup: &str) -> (std::process::Child, Instant) {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(BIN)
        .args(["migrate", "--data-dir", dir.to_str().unwrap()])
        .args(["--backup-dir", backup])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    loop {
        let line = lines
            .next()
            .expect("migrate ended before its backup")
            .unwrap();
        if line.starts_with("backed up the store") {
            break;
        }
    }
    // Keep reading in the background, so the child never blocks on a
    // full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, Instant::now())
}

/// `authd migrate` killed with SIGKILL during the conversion (timed from
/// the end of its backup, measured on a copy first), then run again.
#[test]
fn a_migration_killed_half_way_resumes() {
    const USERS: u64 = 8_000;
    let tmp = tempfile::tempdir().unwrap();
    let (timed, dir) = (tmp.path().join("timed"), tmp.path().join("store"));
    write_format_1(&timed, USERS);
    write_format_1(&dir, USERS);
    let backup = |name: &str| tmp.path().join(name).to_str().unwrap().to_owned();
    let (mut child, converting) = migrate_past_backup(&timed, &backup("b0"));
    assert!(child.wait().unwrap().success());
    let took = converting.elapsed();

    let mut interrupted = false;
    for (attempt, fraction) in [0.5, 0.3, 0.7, 0.1].into_iter().enumerate() {
        let (mut child, converting) =
            migrate_past_backup(&dir, &backup(&format!("b{}", attempt + 1)));
        std::thread::sleep(took.mul_f64(fraction).saturating_sub(converting.elapsed()));
        let _ = child.kill();
        if child.wait().unwrap().success() {
            // Finished before the kill: nothing was interrupted this time.
            break;
        }
        // Killed during the conversion: the other commands refuse the
        // half-converted store, and say why.
        let (code, _, err) = run_authd(&dir, &["user", "list"], None);
        // (Format 1 goes through 2 to 3: either step may be the one cut.)
        if code == 1 && err.contains("was interrupted") {
            interrupted = true;
            break;
        }
        if code == 0 {
            // Killed after its last write: nothing left to interrupt.
            break;
        }
    }
    let (code, out, err) = run_authd(&dir, &["migrate", "--backup-dir", &backup("b9")], None);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run_authd(&dir, &["check"], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "{USERS} users, {USERS} sessions, {USERS} one-time tokens"
        )),
        "{out}"
    );
    assert!(
        interrupted,
        "no kill landed during the conversion (it took {took:?})"
    );
}

/// A PostgreSQL schema as the first release made it (migration 1: the
/// session and reset grant in the user's row), with one user holding both,
/// opened by this release: admin commands refuse it, `serve` migrates it,
/// and the session and the reset token still work.
#[cfg(feature = "postgres")]
fn a_schema_at_migration_1_is_brought_up_to_date() {
    use authd::token::Token;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let url = crate::common::stores::database_url(&dir).unwrap();
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    authd::store::postgres::schema::migrate_to(&mut client, 1).unwrap();
    let hash = bcrypt::hash_with_result("pw-ann", 4)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoB);
    let (session, reset) = (Token::generate().unwrap(), Token::generate().unwrap());
    let now = authd::clock::unix_millis() as i64;
    client
        .execute(
            "INSERT INTO authd_users (email, email_key, hashed_password, session_hash,
                session_created_at, session_last_seen, reset_hash, reset_created_at)
             VALUES ('Ann@example.com', 'ann@example.com', $1, $2, $3, $3, $4, $3)",
            &[
                &hash,
                &session.hash().as_bytes().as_slice(),
                &now,
                &reset.hash().as_bytes().as_slice(),
            ],
        )
        .unwrap();
    drop(client);

    let (code, _, err) = run_authd(&dir, &["user", "list"], None);
    assert_eq!(code, 1);
    assert!(
        err.contains("of format 1, older than this authd's (8)"),
        "{err}"
    );
    let (code, out, err) = run_authd(&dir, &["migrate", "--dry-run"], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("migration to format 2") && out.contains("migration to format 3"),
        "{out}"
    );

    let server = Proc::start(&dir, &[]);
    assert!(
        server.stderr().contains("migrating the store"),
        "{}",
        server.stderr()
    );
    let answer = server.send("GET", "/profile", "", Some(session.as_str()));
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json()["email"], "Ann@example.com");
    // Created under the old rules: verified, of unknown age.
    let account = server.send("GET", "/account", "", Some(session.as_str()));
    assert_eq!(
        account.text(),
        "{\"created_at\":null,\"email\":\"Ann@example.com\",\"email_verified\":true,\
         \"session_count\":1,\"totp_enabled\":false}\n"
    );
    let form = format!(
        "email=ann%40example.com&reset_token={}&new_password=pw-new",
        reset.as_str()
    );
    assert_eq!(
        server.send("PUT", "/reset_password", &form, None).status,
        200
    );
    assert_eq!(
        server.send("PUT", "/reset_password", &form, None).status,
        403
    );
    assert_eq!(server.profile(session.as_str()), 403);
    assert!(server.log_in("ann@example.com", "pw-new").is_ok());
    drop(server);
    let (code, out, err) = run_authd(&dir, &["check"], None);
    assert_eq!(code, 0, "{out}{err}");
}

#[cfg(feature = "postgres")]
crate::only_on_postgres!(a_schema_at_migration_1_is_brought_up_to_date);
