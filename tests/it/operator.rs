//! The operator's safety nets: admin commands never create a store by
//! accident, an import is all or nothing, and files are private.

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::process::{run_command, run_with_stdin, wait_output, Proc, BIN};
use crate::common::stores::{self, kind, run_authd as authd, store_args, Kind};

/// A bcrypt hash of "correct horse" (cost 4, libxcrypt's): import takes
/// hashes as they are, so every imported user may share it.
const HASH: &str = "$2b$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e";
const PASSWORD: &str = "correct horse";

/// Users in the import that is interrupted: several batches of 10,000, so
/// the import is still writing when its first batch is reported.
const LARGE_IMPORT: usize = 40_000;

/// A JSON-lines file of `n` users, `user0@x.io`...
fn import_file(tmp: &Path, n: usize) -> PathBuf {
    let path = tmp.join(format!("users{n}.jsonl"));
    let lines: String = (0..n)
        .map(|i| format!("{{\"email\":\"user{i}@x.io\",\"hashed_password\":\"{HASH}\"}}\n"))
        .collect();
    std::fs::write(&path, lines).unwrap();
    path
}

fn path_arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The number of users `authd check` counts (it must check clean).
fn users_in(dir: &Path) -> usize {
    let (code, out, err) = authd(dir, &["check"], None);
    assert_eq!(code, 0, "{out}{err}");
    let count = out
        .split("consistent: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok());
    count.unwrap_or_else(|| panic!("no user count in {out}"))
}

/// The files and directories in `dir`, recursively, with their modes.
fn modes_under(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut found = vec![(dir.to_owned(), mode(dir))];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(modes_under(&path));
        } else {
            found.push((path.clone(), mode(&path)));
        }
    }
    found
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

/// Every directory under (and including) `dir` is 0700, every file 0600.
fn assert_private(dir: &Path) {
    let modes = modes_under(dir);
    assert!(modes.len() > 2, "{modes:?}");
    for (path, mode) in modes {
        let wanted = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode, wanted, "{} is {mode:o}", path.display());
    }
}

/// Runs the binary with a umask that takes nothing off (so every mode it
/// leaves is its own doing); returns (code, stdout, stderr).
fn with_umask_000(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut command = Command::new("sh");
    command
        .args(["-c", "umask 000; exec \"$0\" \"$@\"", BIN])
        .args(args);
    run_command(command, stdin.map(str::as_bytes))
}

fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) on a child this test started and has not reaped.
    let sent = unsafe { libc::kill(pid as libc::pid_t, signal) };
    assert_eq!(sent, 0, "kill({pid}, {signal}) failed");
}

/// Whether the store for `dir` holds anything: on sled, whether `dir`
/// exists with anything in it; on PostgreSQL, whether its schema holds a
/// table.
fn store_is_untouched(dir: &Path, existed: bool) -> Result<(), String> {
    match kind() {
        Kind::Sled if existed => match std::fs::read_dir(dir).unwrap().count() {
            0 => Ok(()),
            n => Err(format!("{} now holds {n} entries", dir.display())),
        },
        Kind::Sled => match dir.exists() {
            false => Ok(()),
            true => Err(format!("{} was created", dir.display())),
        },
        Kind::Postgres => {
            let tables = stores::sql(
                dir,
                "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()",
            );
            match tables.as_deref() {
                Some("0") => Ok(()),
                other => Err(format!("the schema now holds {other:?} tables")),
            }
        }
    }
}

/// The commands that work on an existing store, with the input each needs.
fn reading_commands(elsewhere: &Path) -> Vec<(Vec<String>, Option<&'static str>)> {
    let out = elsewhere.join("export.jsonl");
    let copy = elsewhere.join("backup");
    let owned = |args: &[&str]| args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
    vec![
        (owned(&["check"]), None),
        (owned(&["export"]), None),
        (owned(&["export", "-o", path_arg(&out)]), None),
        (owned(&["backup", path_arg(&copy)]), None),
        (owned(&["user", "list"]), None),
        (owned(&["user", "show", "a@x.io"]), None),
        (owned(&["user", "delete", "a@x.io"]), None),
        (
            owned(&["user", "set-password", "a@x.io", "--password-stdin"]),
            Some("new pw\n"),
        ),
        (owned(&["user", "sessions", "a@x.io"]), None),
        (owned(&["user", "logout", "a@x.io"]), None),
        (owned(&["user", "find", "id=1"]), None),
        (owned(&["key", "rotate"]), None),
        (owned(&["migrate"]), None),
        (owned(&["migrate", "--dry-run"]), None),
    ]
}

/// Every command but `serve`, `import` and `user add` refuses a data
/// directory without a store (missing or empty), or a database without
/// authd's schema, with exit code 1, names it (absolute path; database
/// without its password), and creates nothing: not the directory, not sled
/// files, no table, no export file, no backup directory.
fn admin_commands_refuse_a_place_without_a_store() {
    let tmp = tempfile::tempdir().unwrap();
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let places: Vec<(PathBuf, bool)> = match kind() {
        Kind::Sled => {
            let empty = tmp.path().join("empty");
            std::fs::create_dir(&empty).unwrap();
            vec![
                (tmp.path().join("missing").join("store"), false),
                (empty, true),
            ]
        }
        Kind::Postgres => vec![(tmp.path().join("db"), true)],
    };
    for (dir, existed) in places {
        // On PostgreSQL, the URL given carries a password, which no message
        // may show (the test server trusts local connections and ignores it).
        let store = match stores::database_url(&dir) {
            Some(url) => {
                let (scheme, rest) = url.split_once("://").unwrap();
                let (user, host) = rest.split_once('@').unwrap();
                let user = user.split(':').next().unwrap();
                vec![
                    "--database".to_owned(),
                    format!("{scheme}://{user}:s3cret-pw@{host}"),
                ]
            }
            None => store_args(&dir),
        };
        let expected = match kind() {
            Kind::Sled => format!(
                "no authd store in {} (the directory {})",
                dir.display(),
                if existed {
                    "is empty"
                } else {
                    "does not exist"
                }
            ),
            Kind::Postgres => "no authd schema in the PostgreSQL database".to_owned(),
        };
        for (args, stdin) in reading_commands(&elsewhere) {
            let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
            all.extend(store.iter().map(String::as_str));
            let started = Instant::now();
            let (code, out, err) = run_with_stdin(&all, stdin.map(str::as_bytes));
            assert_eq!(code, 1, "{args:?}: {out}{err}");
            assert!(err.contains(&expected), "{args:?}: {err}");
            assert!(
                !err.contains("s3cret-pw"),
                "{args:?} leaked the password: {err}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{args:?} took {:?}",
                started.elapsed()
            );
            store_is_untouched(&dir, existed).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert!(
                !tmp.path().join("missing").exists(),
                "{args:?} created the parent directory"
            );
            let left: Vec<_> = std::fs::read_dir(&elsewhere).unwrap().collect();
            assert!(left.is_empty(), "{args:?} created {left:?}");
        }
    }
}

/// `import` and `user add` create a store in a missing or empty directory
/// (or a database without authd's schema) and say so; they refuse a
/// directory holding other files unless given --create; a refused import
/// creates nothing.
fn import_and_user_add_create_a_store_only_where_nothing_else_is() {
    let tmp = tempfile::tempdir().unwrap();
    let file = import_file(tmp.path(), 3);
    let announced = match kind() {
        Kind::Sled => "authd: created a new authd store in ",
        Kind::Postgres => "authd: created the authd schema in the PostgreSQL database",
    };

    // A refused import (a bad line) creates nothing.
    let dir = tmp.path().join("new").join("store");
    let existed = kind() == Kind::Postgres;
    let bad = format!("{}not json\n", std::fs::read_to_string(&file).unwrap());
    let (code, _, err) = authd(&dir, &["import", "-"], Some(&bad));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("nothing was imported"), "{err}");
    store_is_untouched(&dir, existed).unwrap();
    // So does a user add without a password.
    let (code, _, err) = authd(&dir, &["user", "add", "a@x.io"], None);
    assert_eq!(code, 2, "{err}");
    store_is_untouched(&dir, existed).unwrap();

    // Where nothing is, import creates the store and says so, once.
    let (code, _, err) = authd(&dir, &["import", path_arg(&file)], None);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(announced), "{err}");
    if kind() == Kind::Sled {
        assert!(err.contains(&dir.display().to_string()), "{err}");
    }
    assert!(err.contains("imported 3 users"), "{err}");
    let (code, _, err) = authd(
        &dir,
        &[
            "user",
            "add",
            "b@x.io",
            "--password-stdin",
            "--bcrypt-cost",
            "4",
        ],
        Some("pw\n"),
    );
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("created a new"), "{err}");
    assert!(!err.contains("created the"), "{err}");
    assert_eq!(users_in(&dir), 4);

    // user add in a fresh place: the same.
    let other = tmp.path().join("other");
    let (code, out, err) = authd(
        &other,
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
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains(announced), "{err}");
    assert_eq!(users_in(&other), 1);

    if kind() == Kind::Postgres {
        return;
    }
    // An empty directory gets a store; one holding anything else does not,
    // unless --create says so.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (code, _, err) = authd(&empty, &["import", path_arg(&file)], None);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(announced), "{err}");
    let busy = tmp.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("notes.txt"), "mine").unwrap();
    let refusal = format!(
        "no authd store in {} (the directory holds other files)",
        busy.display()
    );
    for (args, stdin) in [
        (&["import", path_arg(&file)][..], None),
        (
            &[
                "user",
                "add",
                "a@x.io",
                "--password-stdin",
                "--bcrypt-cost",
                "4",
            ],
            Some("pw\n"),
        ),
    ] {
        let (code, _, err) = authd(&busy, args, stdin);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains(&refusal), "{args:?}: {err}");
        assert!(err.contains("--create"), "{args:?}: {err}");
        let left: Vec<_> = std::fs::read_dir(&busy).unwrap().collect();
        assert_eq!(left.len(), 1, "{args:?} wrote {left:?}");
    }
    let (code, _, err) = authd(&busy, &["import", path_arg(&file), "--create"], None);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(announced), "{err}");
    assert_eq!(
        std::fs::read_to_string(busy.join("notes.txt")).unwrap(),
        "mine"
    );
    let (code, _, err) = authd(
        &busy,
        &[
            "user",
            "add",
            "z@x.io",
            "--create",
            "--password-stdin",
            "--bcrypt-cost",
            "4",
        ],
        Some("pw\n"),
    );
    assert_eq!(
        code, 0,
        "--create on an existing store just opens it: {err}"
    );
    assert!(!err.contains(announced), "{err}");
    assert_eq!(users_in(&busy), 4);
}

/// Starts `authd import FILE` on the store for `dir`, waits until its
/// progress says a batch was written, sends `sig`, and returns its exit
/// status and its whole stderr. Fails the test if the import ends before
/// the signal could land, or does not end within a minute of it.
fn interrupt_import(dir: &Path, file: &Path, sig: libc::c_int) -> (ExitStatus, String) {
    let mut child = Command::new(BIN)
        .args(["import", path_arg(file)])
        .args(store_args(dir))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                let written = line.contains("users written");
                seen.push(line);
                if written {
                    break;
                }
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no batch reported ({e}); stderr so far: {seen:#?}");
            }
        }
    }
    signal(child.id(), sig);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the import did not end after the signal: {seen:#?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    reader.join().unwrap();
    seen.extend(rx.try_iter());
    let stderr = seen.join("\n");
    assert!(
        !stderr.contains("authd: imported"),
        "the import completed before the signal landed; make LARGE_IMPORT larger: {stderr}"
    );
    (status, stderr)
}

/// An import killed (SIGKILL) after it wrote batches leaves no user of it:
/// on sled the next open (here `check`) rolls them back and says so, on
/// PostgreSQL the transaction never committed. `check` is clean, and the
/// same import then runs in full.
fn a_killed_import_leaves_nothing_and_can_be_rerun() {
    use std::os::unix::process::ExitStatusExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let file = import_file(tmp.path(), LARGE_IMPORT);
    let dir = tmp.path().join("store");
    let (status, stderr) = interrupt_import(&dir, &file, libc::SIGKILL);
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}: {stderr}");

    let (code, out, err) = authd(&dir, &["check"], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("consistent: 0 users"), "{out}{err}");
    if kind() == Kind::Sled {
        assert!(err.contains("rolled back 1 interrupted import"), "{err}");
        // Once: the rollback is done.
        let (_, _, err) = authd(&dir, &["check"], None);
        assert!(!err.contains("rolled back"), "{err}");
    }

    let (code, _, err) = authd(&dir, &["import", path_arg(&file)], None);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("imported 40,000 users in"), "{err}");
    // The rate: a whole number with thousands separators, e.g. (90,394/s).
    let rate = err
        .rsplit_once(" s (")
        .and_then(|(_, rest)| rest.split_once("/s)"))
        .map(|(rate, _)| rate.to_owned())
        .unwrap_or_else(|| panic!("no rate in {err}"));
    let groups: Vec<&str> = rate.split(',').collect();
    assert!(
        groups[0].len() <= 3
            && groups[1..].iter().all(|g| g.len() == 3)
            && groups
                .iter()
                .all(|g| !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit())),
        "rate {rate:?} in {err}"
    );
    assert_eq!(users_in(&dir), LARGE_IMPORT);
    let server = Proc::start(&dir, &[]);
    assert!(server.log_in("user39999@x.io", PASSWORD).is_ok());
}

/// SIGINT (Ctrl-C) or SIGTERM during an import's writes: it stops, rolls
/// back what it wrote, says nothing was imported, and exits with 130; the
/// store keeps exactly the users it had.
fn an_interrupted_import_rolls_back_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let file = import_file(tmp.path(), LARGE_IMPORT);
    let dir = tmp.path().join("store");
    let (code, _, err) = authd(
        &dir,
        &[
            "user",
            "add",
            "first@x.io",
            "--password-stdin",
            "--bcrypt-cost",
            "4",
        ],
        Some("pw\n"),
    );
    assert_eq!(code, 0, "{err}");
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let (status, stderr) = interrupt_import(&dir, &file, sig);
        assert_eq!(status.code(), Some(130), "signal {sig}: {stderr}");
        assert!(
            stderr.contains("import interrupted: nothing was imported"),
            "signal {sig}: {stderr}"
        );
        let (code, out, err) = authd(&dir, &["check"], None);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("consistent: 1 users"), "{out}");
        assert!(!err.contains("rolled back"), "rolled back already: {err}");
    }
    let server = Proc::start(&dir, &[]);
    assert!(server.log_in("first@x.io", "pw").is_ok());
    assert_eq!(server.log_in("user0@x.io", PASSWORD), Err(401));
}

/// Ctrl-C while import is still reading its input (here a pipe that never
/// ends) ends it at once: nothing was written.
#[test]
fn an_import_interrupted_while_reading_ends_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let (code, _, err) = authd(
        &dir,
        &[
            "user",
            "add",
            "first@x.io",
            "--password-stdin",
            "--bcrypt-cost",
            "4",
        ],
        Some("pw\n"),
    );
    assert_eq!(code, 0, "{err}");
    let mut child = Command::new(BIN)
        .args(["import", "-", "--data-dir", path_arg(&dir)])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    {
        use std::io::Write as _;
        stdin
            .write_all(
                format!("{{\"email\":\"x@x.io\",\"hashed_password\":\"{HASH}\"}}\n").as_bytes(),
            )
            .unwrap();
    }
    // The handler is in place once the store is open; give it a moment.
    std::thread::sleep(Duration::from_millis(500));
    signal(child.id(), libc::SIGINT);
    let output = wait_output(child, Duration::from_secs(20));
    drop(stdin);
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{err}");
    assert!(err.contains("nothing was imported"), "{err}");
    assert_eq!(users_in(&dir), 1);
}

/// The data directory is 0700 and its files 0600 whatever the umask (here
/// 000), when `user add` creates it, when `serve` writes in it, and in an
/// existing directory of mode 0755; exports are 0600 (also over an existing
/// file of mode 0666), backups 0700 with 0600 files.
#[test]
fn files_are_private_whatever_the_umask() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let data = ["--data-dir", path_arg(&dir)];
    let add = |email: &str| {
        let mut args = vec![
            "user",
            "add",
            email,
            "--password-stdin",
            "--bcrypt-cost",
            "4",
        ];
        args.extend_from_slice(&data);
        let (code, out, err) = with_umask_000(&args, Some("pw\n"));
        assert_eq!(code, 0, "{out}{err}");
    };
    add("a@x.io");
    assert_private(&dir);

    // A server under umask 000 makes its own store private, and keeps it
    // so while it writes; a file sled might make later would be out of
    // reach (the directory is 0700), and the next open makes it 0600.
    let served = tmp.path().join("served");
    let mut command = Command::new("sh");
    command
        .env("AUTHD_BCRYPT_COST", "4")
        .args(["-c", "umask 000; exec \"$0\" \"$@\"", BIN, "serve"])
        .args(["--addr", "127.0.0.1:0", "--data-dir", path_arg(&served)]);
    let mut server = Proc::spawn(command, &tmp.path().join("serve.stderr"));
    assert_eq!(server.post("/users", "email=b%40x.io&password=pw").0, 200);
    assert_eq!(mode(&served), 0o700);
    server.signal("TERM");
    server.wait(Duration::from_secs(20));
    assert_private(&served);
    let mut command = Command::new("sh");
    command
        .env("AUTHD_BCRYPT_COST", "4")
        .args(["-c", "umask 000; exec \"$0\" \"$@\"", BIN, "serve"])
        .args(["--addr", "127.0.0.1:0"])
        .args(data);
    let server = Proc::spawn(command, &tmp.path().join("serve2.stderr"));
    assert_eq!(server.post("/users", "email=b%40x.io&password=pw").0, 200);
    drop(server);
    let (code, out, err) = with_umask_000(&[&["check"][..], &data[..]].concat(), None);
    assert_eq!(code, 0, "{out}{err}");
    assert_private(&dir);

    // A directory the operator made with mode 0755 becomes private.
    let made = tmp.path().join("made");
    std::fs::create_dir(&made).unwrap();
    std::fs::set_permissions(&made, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, out, err) = with_umask_000(
        &[
            "user",
            "add",
            "a@x.io",
            "--password-stdin",
            "--bcrypt-cost",
            "4",
            "--data-dir",
            path_arg(&made),
        ],
        Some("pw\n"),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_private(&made);

    let export = tmp.path().join("users.jsonl");
    let (code, _, err) = with_umask_000(
        &[&["export", "-o", path_arg(&export)][..], &data[..]].concat(),
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(mode(&export), 0o600);
    assert!(std::fs::read_to_string(&export).unwrap().contains("b@x.io"));
    std::fs::set_permissions(&export, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, _, err) = with_umask_000(
        &[&["export", "-o", path_arg(&export)][..], &data[..]].concat(),
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        mode(&export),
        0o600,
        "an existing export file stays private"
    );

    let backup = tmp.path().join("backup");
    let (code, out, err) = with_umask_000(
        &[&["backup", path_arg(&backup)][..], &data[..]].concat(),
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_private(&backup);
    assert_eq!(users_in(&backup), 2);
}

/// `user logout` of a user without sessions says there was none (exit 0:
/// the user is logged out either way); `user add` without a password on
/// standard input and without a terminal says so, not the whole usage.
fn logout_without_sessions_and_add_without_a_password() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let (code, _, err) = authd(&dir, &["user", "add", "a@x.io"], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no password on standard input"), "{err}");
    assert!(err.contains("--password-stdin"), "{err}");
    assert!(
        !err.contains("Usage:"),
        "the usage instead of the reason: {err}"
    );
    let (code, _, err) = authd(
        &dir,
        &["user", "add", "a@x.io", "--password-stdin"],
        Some(""),
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("no password on standard input (it was empty)"),
        "{err}"
    );
    store_is_untouched(&dir, kind() == Kind::Postgres).unwrap();

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
    let (code, out, err) = authd(&dir, &["user", "logout", "a@x.io"], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("no session to end"), "{out}");
    assert!(!out.contains("ended for"), "{out}");

    let server = Proc::start(&dir, &[]);
    let first = server.log_in("a@x.io", "pw").unwrap();
    let second = server.log_in("a@x.io", "pw").unwrap();
    drop(server);
    let (code, out, err) = authd(&dir, &["user", "logout", "a@x.io"], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("2 sessions ended for user 1 <a@x.io>"),
        "{out}"
    );
    let server = Proc::start(&dir, &[]);
    assert_eq!(server.profile(&first), 403);
    assert_eq!(server.profile(&second), 403);
}

crate::on_every_store!(
    admin_commands_refuse_a_place_without_a_store,
    import_and_user_add_create_a_store_only_where_nothing_else_is,
    a_killed_import_leaves_nothing_and_can_be_rerun,
    an_interrupted_import_rolls_back_and_says_so,
    logout_without_sessions_and_add_without_a_password,
);
