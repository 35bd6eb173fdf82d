//! What only the PostgreSQL store can do: several authd processes on one
//! database, behind nothing but round-robin, behave as one server; and the
//! database side of start-up (migrations, refusals) and of moving from the
//! embedded store. The rest of the suite runs on both stores already.

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use crate::common::process::{enc, run, run_with_stdin, Proc};
use crate::common::raw::Client;
use crate::common::stores::{admin, run_authd as authd, sql, store_args};

/// `n` servers on the schema standing for `dir`.
fn instances(dir: &Path, n: usize, extra: &[&str]) -> Vec<Proc> {
    (0..n).map(|_| Proc::start(dir, extra)).collect()
}

fn register(client: &Client, email: &str, password: &str) -> u16 {
    let form = format!("email={}&password={}", enc(email), enc(password));
    client.post("/users", &form).0
}

fn spread_load_behaves_as_one_server() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shared");
    // Registrations from one IP are rate-limited across instances too.
    let servers = instances(&dir, 3, &["--request-free", "1000"]);
    // Each user registers on one instance, logs in on the next, reads the
    // profile on the third, and logs out on the first again.
    let mut sessions = Vec::new();
    for i in 0..30 {
        let email = format!("user{i}@x.io");
        assert_eq!(register(&servers[i % 3], &email, "pw"), 200);
        let session = servers[(i + 1) % 3].log_in(&email, "pw").unwrap();
        assert_eq!(servers[(i + 2) % 3].profile(&session), 200);
        sessions.push(session);
    }
    for (i, session) in sessions.iter().enumerate() {
        let status = servers[i % 3]
            .send("DELETE", "/sessions", "", Some(session))
            .status;
        assert_eq!(status, 302);
        for server in &servers {
            assert_eq!(
                server.profile(session),
                403,
                "a session ended elsewhere lives"
            );
        }
    }
    // A reset token asked for on one instance is redeemed on another, once.
    let (status, body) = servers[0].post("/reset_password", "email=user7%40x.io");
    assert_eq!(status, 200);
    let token: serde_json::Value = serde_json::from_str(&body).unwrap();
    let form = format!(
        "email=user7%40x.io&reset_token={}&new_password=new",
        token["reset_token"].as_str().unwrap()
    );
    assert_eq!(
        servers[1]
            .send("PUT", "/reset_password", &form, None)
            .status,
        200
    );
    assert_eq!(
        servers[2]
            .send("PUT", "/reset_password", &form, None)
            .status,
        403
    );
    assert!(servers[2].log_in("user7@x.io", "new").is_ok());
    drop(servers);
    let (code, out, err) = authd(&dir, &["check"], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("30 users"), "{out}");
}

fn one_email_raced_across_instances_makes_one_account() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shared");
    // The race is under test, not the per-address limits: one address
    // sends every request at once.
    let servers = instances(
        &dir,
        3,
        &["--request-free", "1000", "--hashes-per-address", "100"],
    );
    let clients: Vec<Client> = servers.iter().map(|s| (**s).clone()).collect();
    for round in 0..5 {
        let email = format!("Race{round}@x.io");
        let gate = Arc::new(Barrier::new(24));
        let handles: Vec<_> = (0..24)
            .map(|i| {
                let (client, gate) = (clients[i % 3].clone(), Arc::clone(&gate));
                // Letter case differs too: one account case-insensitively.
                let email = if i % 2 == 0 {
                    email.clone()
                } else {
                    email.to_lowercase()
                };
                thread::spawn(move || {
                    gate.wait();
                    register(&client, &email, &format!("pw{i}"))
                })
            })
            .collect();
        let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "{statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 400),
            "{statuses:?}"
        );
    }
    let users = sql(&dir, "SELECT count(*) FROM authd_users").unwrap();
    assert_eq!(users, "5");
}

fn failed_logins_are_counted_across_instances() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shared");
    let servers = instances(&dir, 3, &["--login-free-failures", "3"]);
    assert_eq!(register(&servers[0], "a@x.io", "right"), 200);
    // Three free failures in all, one on each instance...
    for server in &servers {
        assert_eq!(server.log_in("a@x.io", "wrong"), Err(401));
    }
    // ...and every instance now makes the account wait, even for the right
    // password.
    for server in &servers {
        assert_eq!(server.log_in("a@x.io", "right"), Err(429));
    }
    thread::sleep(Duration::from_millis(1100));
    assert!(servers[1].log_in("a@x.io", "right").is_ok());
    // The success cleared the account's count for everyone.
    for server in &servers {
        assert_eq!(server.log_in("a@x.io", "wrong"), Err(401));
    }
}

fn instances_starting_together_migrate_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fresh");
    // Make the schema on this thread (the per-test map is thread-local).
    let args = store_args(&dir);
    let gate = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (args, gate) = (args.clone(), Arc::clone(&gate));
            thread::spawn(move || {
                let mut command = std::process::Command::new(crate::common::process::BIN);
                command
                    .env("AUTHD_BCRYPT_COST", "4")
                    .args(["serve", "--addr", "127.0.0.1:0"])
                    .args(&args);
                let stderr = tempfile::NamedTempFile::new().unwrap();
                gate.wait();
                let proc = Proc::spawn(command, stderr.path());
                (proc, stderr)
            })
        })
        .collect();
    let servers: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for (i, (server, _)) in servers.iter().enumerate() {
        assert_eq!(register(server, &format!("u{i}@x.io"), "pw"), 200);
    }
    // Every migration recorded once, none twice.
    assert_eq!(
        sql(
            &dir,
            "SELECT count(*) - count(DISTINCT version) || ' ' || (count(*) > 1) FROM authd_migrations"
        )
        .unwrap(),
        "0 true"
    );
}

fn a_schema_newer_than_this_authd_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("newer");
    drop(Proc::start(&dir, &[]));
    sql(
        &dir,
        "INSERT INTO authd_migrations (version, description) VALUES (999, 'from the future')",
    );
    let mut args = vec!["--addr".to_owned(), "127.0.0.1:0".to_owned()];
    args.extend(store_args(&dir));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = run(&args);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("schema is at version 999"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

fn an_unreachable_database_is_one_clear_line_without_its_password() {
    let (code, stdout, stderr) = run(&[
        "--addr",
        "127.0.0.1:0",
        "--database",
        "postgres://authd:s3cret-pw@127.0.0.1:1/authd?connect_timeout=2",
    ]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.is_empty());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot use the PostgreSQL database \"authd\" on 127.0.0.1"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret-pw"), "{stderr}");
    assert!(stderr.contains("Connection refused"), "{stderr}");
    // The server's own reason, not only "db error".
    let missing = format!(
        "{}/authd_no_such_database",
        crate::common::stores::test_database()
            .rsplit_once('/')
            .unwrap()
            .0
    );
    let (code, _, stderr) = run(&["--addr", "127.0.0.1:0", "--database", &missing]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("database \"authd_no_such_database\" does not exist"),
        "{stderr}"
    );
}

fn moving_from_sled_is_export_then_import() {
    let tmp = tempfile::tempdir().unwrap();
    let old = tmp.path().join("sled");
    let old_arg = old.to_str().unwrap();
    for (email, password) in [("a@x.io", "pw a"), ("B@x.io", "pw b")] {
        let (code, _, err) = run_with_stdin(
            &[
                "user",
                "add",
                email,
                "--password-stdin",
                "--bcrypt-cost",
                "4",
                "--data-dir",
                old_arg,
            ],
            Some(format!("{password}\n").as_bytes()),
        );
        assert_eq!(code, 0, "{err}");
    }
    let (code, users, err) = run(&["export", "--data-dir", old_arg]);
    assert_eq!(code, 0, "{err}");
    let new = tmp.path().join("postgres");
    let (code, _, err) = authd(&new, &["import", "-"], Some(&users));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("imported 2 users"), "{err}");
    let server = Proc::start(&new, &[]);
    assert!(server.log_in("b@x.io", "pw b").is_ok());
    assert_eq!(server.log_in("a@x.io", "pw b"), Err(401));
    // And back: the export of the database is the same users.
    drop(server);
    let (_, again, _) = authd(&new, &["export"], None);
    assert_eq!(again, users);
}

fn check_reports_rows_that_disagree_and_backup_points_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let (code, _, err) = authd(
        &dir,
        &[
            "user",
            "add",
            "a@x.io",
            "--password-stdin",
            "--bcrypt-cost",
            "4",
        ],
        Some("pw\n"),
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = authd(&dir, &["check"], None);
    assert_eq!(code, 0, "{out}");
    sql(&dir, "UPDATE authd_users SET email_key = 'other@x.io'");
    let (code, out, err) = authd(&dir, &["check"], None);
    assert_eq!(code, 1);
    assert!(out.contains("is neither the key of"), "{out}");
    assert!(err.contains("1 problems"), "{err}");
    let copy = tmp.path().join("copy");
    let (code, _, err) = authd(&dir, &["backup", copy.to_str().unwrap()], None);
    assert_eq!(code, 1);
    assert!(err.contains("pg_dump"), "{err}");
}

fn the_database_url_may_come_from_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("env");
    let url = crate::common::stores::database_url(&dir).unwrap();
    let mut command = std::process::Command::new(crate::common::process::BIN);
    command
        .env("AUTHD_DATABASE_URL", &url)
        .env("AUTHD_BCRYPT_COST", "4")
        .args(["--addr", "127.0.0.1:0"]);
    let server = Proc::spawn(command, &tmp.path().join("env.stderr"));
    assert_eq!(register(&server, "env@x.io", "pw"), 200);
    assert!(
        server.stderr().contains("store PostgreSQL database"),
        "{}",
        server.stderr()
    );
    assert!(!server.stderr().contains(&url), "the URL is not logged");
    assert_eq!(
        sql(&dir, "SELECT email FROM authd_users").as_deref(),
        Some("env@x.io")
    );
}

fn tokens_are_stored_only_as_their_sha256() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hashes");
    let server = Proc::start(&dir, &[]);
    assert_eq!(register(&server, "h@x.io", "pw"), 200);
    let session = server.log_in("h@x.io", "pw").unwrap();
    let (_, body) = server.post("/reset_password", "email=h%40x.io");
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    let reset = reply["reset_token"].as_str().unwrap();
    let hex = |token: &str| -> String {
        let hash = authd::token::Token::parse(token).unwrap().hash();
        hash.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
    };
    let stored = sql(
        &dir,
        "SELECT (SELECT encode(token_hash, 'hex') FROM authd_sessions) || ' ' || \
         (SELECT encode(token_hash, 'hex') FROM authd_tokens WHERE purpose = 'reset')",
    )
    .unwrap();
    assert_eq!(stored, format!("{} {}", hex(&session), hex(reset)));
    // No column of these tables holds a token in clear. (The dev profile's
    // outbox keeps the text of what it caught, links included, by design:
    // `tests/it/delivery.rs` shows the production queue holds no token.)
    for table in ["authd_users", "authd_sessions", "authd_tokens"] {
        let dump = sql(
            &dir,
            &format!("SELECT string_agg(t::text, ' ') FROM (SELECT * FROM {table}) t"),
        )
        .unwrap();
        assert!(!dump.contains(&session) && !dump.contains(reset), "{dump}");
    }
}

fn cut_database_connections_are_replaced_unnoticed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cut");
    let server = Proc::start(&dir, &[]);
    assert_eq!(register(&server, "c@x.io", "pw"), 200);
    let session = server.log_in("c@x.io", "pw").unwrap();
    assert_eq!(server.profile(&session), 200);
    let schema = crate::common::stores::schema_name(&dir);
    // What a database restart or failover does to open connections.
    admin(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{schema}'"
    ));
    // The first read finds the dead connections, drops them and goes on
    // with a new one: no read notices.
    for _ in 0..20 {
        assert_eq!(server.profile(&session), 200, "{}", server.stderr());
    }
    // A write is never sent twice when it may have run: one that meets a
    // connection the database cut before the client saw it end answers
    // 503 (retry) once at most, and the retry goes through.
    let first = register(&server, "d@x.io", "pw");
    if first != 200 {
        assert_eq!(first, 503, "{}", server.stderr());
        assert_eq!(
            register(&server, "d@x.io", "pw"),
            200,
            "{}",
            server.stderr()
        );
    }
    assert!(server.log_in("d@x.io", "pw").is_ok());
}

crate::only_on_postgres!(
    cut_database_connections_are_replaced_unnoticed,
    the_database_url_may_come_from_the_environment,
    tokens_are_stored_only_as_their_sha256,
    spread_load_behaves_as_one_server,
    one_email_raced_across_instances_makes_one_account,
    failed_logins_are_counted_across_instances,
    instances_starting_together_migrate_once,
    a_schema_newer_than_this_authd_is_refused,
    an_unreachable_database_is_one_clear_line_without_its_password,
    moving_from_sled_is_export_then_import,
    check_reports_rows_that_disagree_and_backup_points_elsewhere,
);
