//! The operator's commands, run as the real binary: users, export/import,
//! check, backup, and their refusals.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::process::{run, Proc};
use crate::common::stores::run_authd as authd;
use authd::store::SledStore;

/// Hashes made by another bcrypt implementation: libxcrypt (Openwall's
/// crypt_blowfish, Debian's libc `crypt`), through Python's `crypt` module.
/// The third is Openwall's own published test vector.
const FOREIGN: [(&str, &str, &str); 4] = [
    (
        "lib@x.io",
        "correct horse",
        "$2b$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e",
    ),
    (
        "php@x.io",
        "Tr0ub4dor&3",
        "$2y$05$0123456789ABCDEFGHIJKuHKYztPaan670Fh/IZbBTHO5hFVlAKJC",
    ),
    (
        "owall@x.io",
        "U*U",
        "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
    ),
    (
        "utf8@x.io",
        "pässwörd ü",
        "$2b$04$zyxwvutsrqponmlkjihgfeGieri7OZqKY6oXXlVz.TL610pT3aR96",
    ),
];

/// Waits until no sled handle in this process holds the store in `dir`
/// (sled flocks its `db` file and lets go a moment after the last handle
/// is dropped), so the binary run next finds it free.
fn wait_released(dir: &Path) {
    use std::os::unix::io::AsRawFd;
    let file = std::fs::File::open(dir.join("db")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    // SAFETY: flock on a descriptor we own; released at once on success.
    while unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        assert!(Instant::now() < deadline, "sled kept the store locked");
        std::thread::sleep(Duration::from_millis(10));
    }
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
}

fn dir_arg(dir: &Path) -> &str {
    dir.to_str().unwrap()
}

fn add(dir: &Path, email: &str, password: &str) {
    let (code, out, err) = authd(
        dir,
        &[
            "user",
            "add",
            email,
            "--password-stdin",
            "--bcrypt-cost",
            "4",
        ],
        Some(&format!("{password}\n")),
    );
    assert_eq!(code, 0, "{out}{err}");
}

fn user_add_list_show_delete() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    add(&dir, "Ann@x.io", "pw one");
    add(&dir, "bob@x.io", "pw two");

    let (code, out, _) = authd(&dir, &["user", "list"], None);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].contains("ID") && lines[0].contains("EMAIL"));
    assert!(lines[1].trim_start().starts_with('1') && lines[1].ends_with("Ann@x.io"));
    assert!(lines[2].ends_with("bob@x.io"));

    let (code, out, _) = authd(&dir, &["user", "list", "--json"], None);
    assert_eq!(code, 0);
    let users: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(users.len(), 2);
    assert_eq!(users[0]["email"], "Ann@x.io");
    assert_eq!(users[0]["bcrypt_cost"], 4);
    assert!(!out.contains("$2b$"), "list must not show hashes");

    let (code, out, _) = authd(&dir, &["user", "show", "ANN@X.IO", "--json"], None);
    assert_eq!(code, 0);
    let shown: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(shown["id"], 1);
    assert_eq!(shown["sessions"], 0);
    let (code, out, _) = authd(&dir, &["user", "show", "bob@x.io"], None);
    assert_eq!(code, 0);
    assert!(out.contains("email:") && out.contains("bob@x.io"), "{out}");

    let (code, out, _) = authd(&dir, &["user", "delete", "bob@x.io"], None);
    assert_eq!(code, 0, "{out}");
    let (code, _, err) = authd(&dir, &["user", "show", "bob@x.io"], None);
    assert_eq!(code, 1);
    assert!(err.contains("no user with email bob@x.io"), "{err}");
    let (code, _, err) = authd(&dir, &["user", "delete", "bob@x.io"], None);
    assert_eq!(code, 1, "{err}");
    let (code, out, _) = authd(&dir, &["check"], None);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 users"), "{out}");
}

fn user_add_applies_the_api_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    add(&dir, "a@x.io", "pw");
    let cases: [(&[&str], Option<&str>, i32, &str); 6] = [
        (
            &["user", "add", "A@X.IO", "--password-stdin"],
            Some("pw\n"),
            1,
            "email already registered",
        ),
        (
            &["user", "add", "not-an-email", "--password-stdin"],
            Some("pw\n"),
            1,
            "email must contain",
        ),
        (
            &["user", "add", "b@x.io", "--password-stdin"],
            Some(&*"p".repeat(73)),
            1,
            "72 bytes",
        ),
        (
            &["user", "add", "b@x.io", "--password-stdin"],
            Some("\n"),
            1,
            "password must not be empty",
        ),
        (&["user", "add", "b@x.io"], None, 2, "--password-stdin"),
        (
            &[
                "user",
                "add",
                "b@x.io",
                "--password-stdin",
                "--bcrypt-cost",
                "3",
            ],
            Some("pw\n"),
            2,
            "3",
        ),
    ];
    for (args, stdin, want, message) in cases {
        let (code, _, err) = authd(&dir, args, stdin);
        assert_eq!(code, want, "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
    }
    let (_, out, _) = authd(&dir, &["user", "list", "--json"], None);
    assert_eq!(out.lines().count(), 1, "nothing else was added: {out}");
}

fn set_password_and_logout_end_the_session() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    add(&dir, "a@x.io", "old");
    let server = Proc::start(&dir, &[]);
    let session = server.log_in("a@x.io", "old").unwrap();
    drop(server);

    let (code, out, err) = authd(&dir, &["user", "logout", "a@x.io"], None);
    assert_eq!(code, 0, "{out}{err}");
    let server = Proc::start(&dir, &[]);
    assert_eq!(server.profile(&session), 403);
    let session = server.log_in("a@x.io", "old").unwrap();
    drop(server);

    let (code, out, err) = authd(
        &dir,
        &[
            "user",
            "set-password",
            "a@x.io",
            "--password-stdin",
            "--bcrypt-cost",
            "4",
        ],
        Some("new one\r\n"),
    );
    assert_eq!(code, 0, "{out}{err}");
    let server = Proc::start(&dir, &[]);
    assert_eq!(server.profile(&session), 403);
    assert_eq!(server.log_in("a@x.io", "old"), Err(401));
    assert!(server.log_in("a@x.io", "new one").is_ok());
    drop(server);
    let (code, _, err) = authd(&dir, &["user", "logout", "nobody@x.io"], None);
    assert_eq!(code, 1);
    assert!(err.contains("no user with email"), "{err}");
}

#[test]
fn every_command_refuses_a_store_in_use_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    add(&dir, "a@x.io", "pw");
    // The server's control socket is elsewhere, so the commands (looking
    // for it in the data directory) find none: that is said, with the rest.
    let socket = tmp.path().join("elsewhere.sock");
    let server = Proc::start(&dir, &["--control-socket", socket.to_str().unwrap()]);
    let backup = tmp.path().join("backup");
    let commands: [&[&str]; 9] = [
        &["user", "list"],
        &["user", "show", "a@x.io"],
        &["user", "delete", "a@x.io"],
        &["user", "logout", "a@x.io"],
        &["user", "add", "b@x.io", "--password-stdin"],
        &["export"],
        &["import", "-"],
        &["check"],
        &["backup", dir_arg(&backup)],
    ];
    for args in commands {
        let started = Instant::now();
        let (code, _, err) = authd(&dir, args, Some("pw\n"));
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(
            err.contains("in use by another authd process"),
            "{args:?}: {err}"
        );
        assert!(
            err.contains("its control socket cannot serve this command: cannot connect"),
            "{args:?}: {err}"
        );
        assert!(started.elapsed() < Duration::from_secs(10), "{args:?} hung");
    }
    // Nothing changed: the user still logs in.
    assert!(server.log_in("a@x.io", "pw").is_ok());
}

fn export_then_import_keeps_every_password() {
    let tmp = tempfile::tempdir().unwrap();
    let old = tmp.path().join("old");
    let users: Vec<(String, String)> = (0..20)
        .map(|i| (format!("user{i}@x.io"), format!("password {i}")))
        .collect();
    for (email, password) in &users {
        add(&old, email, password);
    }
    let file = tmp.path().join("users.jsonl");
    let (code, _, err) = authd(&old, &["export", "--output", file.to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("exported 20 users"), "{err}");
    let text = std::fs::read_to_string(&file).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let keys: Vec<&String> = first.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "created_at",
            "email",
            "email_verified",
            "hashed_password",
            "id",
            "password_hash",
            "password_normalized",
        ]
    );
    // Created by `authd user add` now, its address not proven.
    assert_eq!(first["email_verified"], false);
    assert!(first["created_at"].as_str().unwrap().ends_with('Z'));
    // Export to stdout gives the same lines.
    let (_, stdout, _) = authd(&old, &["export"], None);
    assert_eq!(stdout, text);

    let new = tmp.path().join("new");
    let (code, _, err) = authd(&new, &["import", "-"], Some(&text));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("imported 20 users"), "{err}");
    let (code, out, _) = authd(&new, &["check"], None);
    assert_eq!(code, 0, "{out}");
    // Verification state and creation times made the trip too.
    let (_, again, _) = authd(&new, &["export"], None);
    assert_eq!(again, text);
    let server = Proc::start(&new, &[]);
    for (email, password) in &users {
        assert!(server.log_in(email, password).is_ok(), "{email}");
    }
}

fn import_takes_hashes_from_other_implementations() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let file = tmp.path().join("legacy.jsonl");
    // The shape of the reference's SQLite `users` table, as JSON.
    let lines: String = FOREIGN
        .iter()
        .enumerate()
        .map(|(i, (email, _, hash))| {
            format!(
                "{{\"id\": {}, \"email\": \"{email}\", \"hashed_password\": \"{hash}\", \"session_id\": null, \"reset_token\": null}}\n",
                i + 7
            )
        })
        .collect();
    std::fs::write(&file, lines).unwrap();
    let (code, _, err) = authd(&dir, &["import", file.to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}");
    let server = Proc::start(&dir, &[]);
    for (email, password, _) in FOREIGN {
        assert!(server.log_in(email, password).is_ok(), "{email}");
        assert_eq!(server.log_in(email, "wrong"), Err(401), "{email}");
    }
}

fn import_reports_every_bad_line_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let hash = FOREIGN[0].2;
    let input = format!(
        "{{\"email\":\"ok@x.io\",\"hashed_password\":\"{hash}\"}}\n\
         {{\"email\":\"broken\n\
         {{\"email\":\"no-at\",\"hashed_password\":\"{hash}\"}}\n\
         {{\"email\":\"plain@x.io\",\"hashed_password\":\"hunter2\"}}\n\
         {{\"email\":\"OK@x.io\",\"hashed_password\":\"{hash}\"}}\n"
    );
    let (code, _, err) = authd(&dir, &["import", "-"], Some(&input));
    assert_eq!(code, 1);
    for line in ["line 2:", "line 3:", "line 4:", "line 5:"] {
        assert!(err.contains(line), "{line} missing from {err}");
    }
    assert!(!err.contains("line 1:"));
    assert!(err.contains("4 bad lines; nothing was imported"), "{err}");
    assert_no_store(&dir);
}

fn import_refuses_or_skips_existing_emails() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    add(&dir, "lib@x.io", "mine");
    let input: String = FOREIGN
        .iter()
        .map(|(email, _, hash)| {
            format!("{{\"email\":\"{email}\",\"hashed_password\":\"{hash}\"}}\n")
        })
        .collect();
    let (code, _, err) = authd(&dir, &["import", "-"], Some(&input));
    assert_eq!(code, 1);
    assert!(
        err.contains("line 1: email lib@x.io is already registered"),
        "{err}"
    );
    assert!(err.contains("--skip-existing"), "{err}");
    // Another spelling of the address is the same account.
    let shouting = input.replacen("lib@x.io", "LIB@X.IO", 1);
    let (code, _, err) = authd(&dir, &["import", "-"], Some(&shouting));
    assert_eq!(code, 1);
    assert!(
        err.contains("line 1: email LIB@X.IO is already registered"),
        "{err}"
    );
    let (code, _, err) = authd(&dir, &["import", "-", "--skip-existing"], Some(&input));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("imported 3 users, skipped 1"), "{err}");
    let server = Proc::start(&dir, &[]);
    // The existing user kept their own password.
    assert!(server.log_in("lib@x.io", "mine").is_ok());
    assert!(server.log_in("owall@x.io", "U*U").is_ok());
}

#[test]
fn check_finds_a_planted_inconsistency() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    add(&dir, "a@x.io", "pw");
    let (code, out, _) = authd(&dir, &["check"], None);
    assert_eq!(code, 0, "{out}");
    {
        let db = sled::open(&dir).unwrap();
        let by_email = db.open_tree("by_email").unwrap();
        by_email.insert("ghost@x.io", &7u64.to_be_bytes()).unwrap();
        by_email.remove("a@x.io").unwrap();
        db.flush().unwrap();
    }
    wait_released(&dir);
    let (code, out, err) = authd(&dir, &["check"], None);
    assert_eq!(code, 1);
    assert!(out.contains("missing user 7"), "{out}");
    assert!(out.contains("user 1: missing from by_email"), "{out}");
    assert!(err.contains("2 problems"), "{err}");
}

#[test]
fn backup_copies_a_store_that_serves_as_is() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    add(&dir, "a@x.io", "pw a");
    add(&dir, "b@x.io", "pw b");
    let copy = tmp.path().join("copy");
    let (code, out, err) = authd(&dir, &["backup", dir_arg(&copy)], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("backed up 2 users"), "{out}");
    let (code, _, err) = authd(&dir, &["backup", dir_arg(&copy)], None);
    assert_eq!(code, 1);
    assert!(err.contains("not empty"), "{err}");
    // The copy is a store: check it and serve from it.
    let store = SledStore::open(&copy).unwrap();
    use authd::store::Maintenance as _;
    assert!(store.check().unwrap().is_empty());
    assert_eq!(store.counts().unwrap().users, 2);
    drop(store);
    wait_released(&copy);
    let server = Proc::start(&copy, &[]);
    assert!(server.log_in("b@x.io", "pw b").is_ok());
    // New users continue the id sequence.
    let (status, _) = server.post("/users", "email=c%40x.io&password=c");
    assert_eq!(status, 200);
}

#[test]
fn every_subcommand_documents_its_flags() {
    for (args, expect) in [
        (
            &["--help"][..],
            &[
                "serve", "user", "export", "import", "check", "backup", "migrate", "key",
            ][..],
        ),
        (
            &["user", "add", "--help"],
            &[
                "--password-stdin",
                "AUTHD_BCRYPT_COST",
                "AUTHD_DATA_DIR",
                "[default: 12]",
            ],
        ),
        (
            &["export", "--help"],
            &["--output", "AUTHD_DATA_DIR", "[default: data]"],
        ),
        (
            &["import", "--help"],
            &["--skip-existing", "--max-bcrypt-cost", "AUTHD_DATA_DIR"],
        ),
        (
            &["migrate", "--help"],
            &["--dry-run", "--backup-dir", "AUTHD_DATA_DIR"],
        ),
        (
            &["key", "rotate", "--help"],
            &["AUTHD_DATA_DIR", "AUTHD_DATABASE_URL"],
        ),
        (
            &["user", "--help"],
            &["sessions", "logout", "find", "set-password"],
        ),
        (
            &["serve", "--help"],
            &[
                "AUTHD_SESSION_TTL",
                "[default: 86400]",
                "AUTHD_ADDR",
                "AUTHD_DATABASE_URL",
                "AUTHD_DB_POOL_SIZE",
                "AUTHD_MAX_SESSIONS_PER_USER",
                "AUTHD_SECRET_KEY_FILE",
            ],
        ),
        (&["backup", "--help"], &["AUTHD_DATA_DIR"]),
        (
            &["check", "--help"],
            &["AUTHD_DATA_DIR", "AUTHD_DATABASE_URL"],
        ),
    ] {
        let (code, out, err) = run(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        for word in expect {
            assert!(out.contains(word), "{args:?} lacks {word}: {out}");
        }
    }
}

crate::on_every_store!(
    the_server_key_rotates_and_a_key_file_is_checked,
    user_add_list_show_delete,
    user_add_applies_the_api_rules,
    set_password_and_logout_end_the_session,
    export_then_import_keeps_every_password,
    import_takes_hashes_from_other_implementations,
    import_reports_every_bad_line_and_writes_nothing,
    import_refuses_or_skips_existing_emails,
    import_refuses_impossible_bcrypt_costs,
    import_caps_the_bcrypt_cost,
    a_hash_of_a_higher_cost_than_configured_logs_in,
    import_takes_django_pbkdf2_hashes_and_login_replaces_them,
    import_refuses_django_hashes_out_of_bounds,
);

/// The server key: `authd key rotate` replaces it in the store without
/// printing it; `--secret-key-file` is read strictly and refused with a
/// clear line when malformed; neither key reaches a log line.
fn the_server_key_rotates_and_a_key_file_is_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    add(&dir, "a@x.io", "pw");
    let (code, out, err) = authd(&dir, &["key", "rotate"], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("new server key"), "{out}");
    // Nothing as long as a key (64 hex digits, 43 base64 characters) is
    // printed.
    assert!(
        !out.split_whitespace().any(|w| w.len() >= 43),
        "a key was printed: {out}"
    );

    let key_file = tmp.path().join("key");
    std::fs::write(&key_file, "not a key\n").unwrap();
    let (code, out, err) = authd(
        &dir,
        &[
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--secret-key-file",
            key_file.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("64 hex digits"), "{err}");

    let key = "0123456789abcdef".repeat(4);
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let server = Proc::start(&dir, &["--secret-key-file", key_file.to_str().unwrap()]);
    assert!(server.log_in("a@x.io", "pw").is_ok());
    assert!(server.log_in("a@x.io", "wrong").is_err());
    drop(server);
    let stderr = std::fs::read_to_string(dir.with_extension("stderr")).unwrap();
    assert!(!stderr.contains(&key), "the key reached the log: {stderr}");
}

/// `FOREIGN[0]`'s hash with its cost field replaced: well-formed apart from
/// the cost (import does not verify, so none of these is ever computed).
fn with_cost(cost: &str) -> String {
    FOREIGN[0].2.replacen("$04$", &format!("${cost}$"), 1)
}

fn import_line(email: &str, hash: &str) -> String {
    format!("{{\"email\":\"{email}\",\"hashed_password\":\"{hash}\"}}\n")
}

/// A refused import into a new place created no store there (`check`
/// finds none).
fn assert_no_store(dir: &Path) {
    let (code, out, err) = authd(dir, &["check"], None);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("no authd store in") || err.contains("no authd schema in"),
        "{err}"
    );
}

fn users_in(dir: &Path) -> String {
    let (code, out, err) = authd(dir, &["check"], None);
    assert_eq!(code, 0, "{out}{err}");
    out
}

/// Costs bcrypt cannot run (00, 03, 32, 99), a cost field that is not two
/// digits, and one above the default cap (the configured 12 + 2) are each
/// refused with their line; 04 and 14 pass; nothing is imported.
fn import_refuses_impossible_bcrypt_costs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let input: String = [
        ("ok@x.io", with_cost("04")),
        ("c00@x.io", with_cost("00")),
        ("c03@x.io", with_cost("03")),
        ("c32@x.io", with_cost("32")),
        ("c99@x.io", with_cost("99")),
        ("nan@x.io", with_cost("x5")),
        ("c15@x.io", with_cost("15")),
        ("c14@x.io", with_cost("14")),
        ("short@x.io", FOREIGN[0].2.replacen("$04$", "$4$", 1)),
    ]
    .iter()
    .map(|(email, hash)| import_line(email, hash))
    .collect();
    let (code, _, err) = authd(&dir, &["import", "-"], Some(&input));
    assert_eq!(code, 1, "{err}");
    for expected in [
        "line 2: hashed_password has bcrypt cost 00, outside 04 to 31",
        "line 3: hashed_password has bcrypt cost 03, outside 04 to 31",
        "line 4: hashed_password has bcrypt cost 32, outside 04 to 31",
        "line 5: hashed_password has bcrypt cost 99, outside 04 to 31",
        "line 6: hashed_password has a malformed bcrypt cost field \"x5\"",
        "line 7: hashed_password has bcrypt cost 15, above --max-bcrypt-cost 14",
        "line 9: hashed_password has a malformed bcrypt cost field \"4\"",
    ] {
        assert!(err.contains(expected), "{expected} missing from {err}");
    }
    assert!(
        !err.contains("line 1:") && !err.contains("line 8:"),
        "{err}"
    );
    assert!(err.contains("7 bad lines; nothing was imported"), "{err}");
    assert!(
        !err.contains("jydOTSfIH"),
        "a hash reached the output: {err}"
    );
    assert_no_store(&dir);
}

/// --max-bcrypt-cost sets the cap; without it the cap follows the
/// configured cost (--bcrypt-cost or AUTHD_BCRYPT_COST) + 2.
fn import_caps_the_bcrypt_cost() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let (lib, password, hash) = FOREIGN[0];
    let over = format!(
        "{}{}",
        import_line(lib, hash),
        import_line("c05@x.io", &with_cost("05"))
    );
    let (code, _, err) = authd(
        &dir,
        &["import", "-", "--max-bcrypt-cost", "4"],
        Some(&over),
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("line 2: hashed_password has bcrypt cost 05, above --max-bcrypt-cost 4"),
        "{err}"
    );
    assert!(err.contains("1 bad lines; nothing was imported"), "{err}");
    assert_no_store(&dir);

    // The configured cost moves the default cap: 5 + 2 = 7.
    let eight = import_line("c08@x.io", &with_cost("08"));
    let (code, _, err) = authd(&dir, &["import", "-", "--bcrypt-cost", "5"], Some(&eight));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("line 1: hashed_password has bcrypt cost 08, above --max-bcrypt-cost 7"),
        "{err}"
    );
    let mut command = std::process::Command::new(crate::common::process::BIN);
    command
        .env("AUTHD_BCRYPT_COST", "5")
        .args(["import", "-"])
        .args(crate::common::stores::store_args(&dir))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    {
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(eight.as_bytes())
            .unwrap();
    }
    let output = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(err.contains("above --max-bcrypt-cost 7"), "{err}");
    // An explicit cap wins over the configured cost's.
    let (code, _, err) = authd(
        &dir,
        &[
            "import",
            "-",
            "--bcrypt-cost",
            "5",
            "--max-bcrypt-cost",
            "8",
        ],
        Some(&eight),
    );
    assert_eq!(code, 0, "{err}");
    assert!(users_in(&dir).contains("1 users"));
    // The cap itself is a bcrypt cost.
    for cap in ["3", "32", "x"] {
        let (code, _, err) = authd(&dir, &["import", "-", "--max-bcrypt-cost", cap], Some(""));
        assert_eq!(code, 2, "{cap}: {err}");
    }

    // A cost-4 hash at a cap of 4 imports, and its user logs in.
    let (code, _, err) = authd(
        &dir,
        &["import", "-", "--max-bcrypt-cost", "4"],
        Some(&import_line(lib, hash)),
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("imported 1 users"), "{err}");
    let server = Proc::start(&dir, &[]);
    assert!(server.log_in(lib, password).is_ok());
}

/// A hash authd made at a higher cost than the one it now runs with (the
/// cost was lowered, or the hash is above import's cap) verifies, and is
/// not rehashed down. (The other way round, a lower-cost hash verifies and
/// is rehashed up: hardening's `a_low_cost_hash_is_upgraded_at_login`.)
fn a_hash_of_a_higher_cost_than_configured_logs_in() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let (code, out, err) = authd(
        &dir,
        &[
            "user",
            "add",
            "a@x.io",
            "--password-stdin",
            "--bcrypt-cost",
            "7",
        ],
        Some("pw seven\n"),
    );
    assert_eq!(code, 0, "{out}{err}");
    // Proc::start serves at cost 4 (AUTHD_BCRYPT_COST); 7 is above 4 + 2.
    let server = Proc::start(&dir, &[]);
    assert_eq!(server.log_in("a@x.io", "wrong"), Err(401));
    let session = server.log_in("a@x.io", "pw seven").unwrap();
    assert_eq!(server.profile(&session), 200);
    drop(server);
    let (code, out, _) = authd(&dir, &["user", "list", "--json"], None);
    assert_eq!(code, 0, "{out}");
    let user: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(user["bcrypt_cost"], 7, "the hash was rewritten: {out}");
}

/// Django's `pbkdf2_sha256` of ("correct horse", "seasalt", 1000), made by
/// Python's hashlib, not by authd:
/// `python3 -c "import hashlib,base64;print(base64.b64encode(hashlib.pbkdf2_hmac(
/// 'sha256',b'correct horse',b'seasalt',1000)).decode())"`.
const DJANGO: &str = "pbkdf2_sha256$1000$seasalt$mQnueSakb748zqBAC1tmWVZsZbi2zPGZarEzTGdfmso=";

/// The `hashed_password` of `email` in an export of the store in `dir`.
fn exported_hash(dir: &Path, email: &str) -> String {
    let (code, out, err) = authd(dir, &["export"], None);
    assert_eq!(code, 0, "{out}{err}");
    out.lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .find(|user| user["email"] == email)
        .unwrap_or_else(|| panic!("{email} not in {out}"))["hashed_password"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A Django user imports, logs in with its password through the real
/// server (not with a wrong one), and that login stores the configured
/// scheme's hash (bcrypt cost 4 under `Proc::start`), which logs in too.
fn import_takes_django_pbkdf2_hashes_and_login_replaces_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let input = import_line("dj@x.io", DJANGO);
    let (code, out, err) = authd(&dir, &["import", "-"], Some(&input));
    assert_eq!(code, 0, "{out}{err}");
    // Export writes what is stored; `user show` names it.
    assert_eq!(exported_hash(&dir, "dj@x.io"), DJANGO);
    let (code, out, err) = authd(&dir, &["user", "show", "dj@x.io"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pbkdf2_sha256, 1000 iterations"), "{out}");
    let server = Proc::start(&dir, &[]);
    assert_eq!(server.log_in("dj@x.io", "correct horsf"), Err(401));
    assert_eq!(server.log_in("dj@x.io", "correct horse!"), Err(401));
    let session = server.log_in("dj@x.io", "correct horse").unwrap();
    assert_eq!(server.profile(&session), 200);
    drop(server);
    let rehashed = exported_hash(&dir, "dj@x.io");
    assert!(rehashed.starts_with("$2b$04$"), "not rehashed: {rehashed}");
    let server = Proc::start(&dir, &[]);
    assert!(server.log_in("dj@x.io", "correct horse").is_ok());
    assert_eq!(server.log_in("dj@x.io", "correct horsf"), Err(401));
}

/// Django hashes past the 2,000,000-iteration cap, of no iterations, an
/// empty salt, a salt with `$`, or a hash that is not 32 bytes of base64
/// are each refused with their line; the cap itself passes; nothing is
/// imported and no hash reaches the output.
fn import_refuses_django_hashes_out_of_bounds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let derived = DJANGO.rsplit_once('$').unwrap().1;
    let with = |iterations: &str, salt: &str, hash: &str| {
        format!("pbkdf2_sha256${iterations}${salt}${hash}")
    };
    let input: String = [
        ("ok@x.io", DJANGO.to_owned()),
        ("many@x.io", with("3000000", "seasalt", derived)),
        ("cap@x.io", with("2000000", "seasalt", derived)),
        ("none@x.io", with("0", "seasalt", derived)),
        ("nosalt@x.io", with("1000", "", derived)),
        ("dollar@x.io", with("1000", "sea$salt", derived)),
        ("short@x.io", with("1000", "seasalt", "c2hvcnQ=")),
        (
            "nopad@x.io",
            with("1000", "seasalt", derived.trim_end_matches('=')),
        ),
        (
            "sha1@x.io",
            DJANGO.replacen("pbkdf2_sha256", "pbkdf2_sha1", 1),
        ),
    ]
    .iter()
    .map(|(email, hash)| import_line(email, hash))
    .collect();
    let (code, _, err) = authd(&dir, &["import", "-"], Some(&input));
    assert_eq!(code, 1, "{err}");
    let not_django = "hashed_password is not a Django pbkdf2_sha256$iterations$salt$hash: it";
    for expected in [
        "line 2: hashed_password asks pbkdf2_sha256 for 3000000 iterations: above 2000000"
            .to_owned(),
        format!("line 4: {not_django} has an iteration count that is not a number"),
        format!("line 5: {not_django} has an empty salt"),
        format!("line 6: {not_django} has 4 fields"),
        format!("line 7: {not_django} has a hash that is not 32 bytes"),
        format!("line 8: {not_django} has a hash that is not 32 bytes"),
        format!("line 9: {not_django} does not start with pbkdf2_sha256$"),
    ] {
        assert!(err.contains(&expected), "{expected} missing from {err}");
    }
    assert!(
        !err.contains("line 1:") && !err.contains("line 3:"),
        "{err}"
    );
    assert!(err.contains("7 bad lines; nothing was imported"), "{err}");
    assert!(
        !err.contains(&derived[..20]),
        "a hash reached the output: {err}"
    );
    assert_no_store(&dir);
}
