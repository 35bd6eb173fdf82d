//! Admin commands while a server runs, through its control socket
//! (embedded store only: on PostgreSQL the commands open the database
//! alongside the servers, as before).

use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::process::{enc, run_with_stdin, Proc, BIN};

/// A bcrypt hash of "correct horse" (cost 4), for imports.
const HASH: &str = "$2b$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e";

/// Runs `authd ARGS --data-dir DIR` with `stdin` (or none).
fn authd(dir: &Path, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut all = args.to_vec();
    all.extend(["--data-dir", dir.to_str().unwrap()]);
    run_with_stdin(&all, stdin.map(str::as_bytes))
}

/// A store in `dir` with one user, a@x.io / "pw one", made directly.
fn store_with_a(dir: &Path) {
    let (code, out, err) = authd(
        dir,
        &[
            "user",
            "add",
            "a@x.io",
            "--password-stdin",
            "--bcrypt-cost",
            "4",
        ],
        Some("pw one\n"),
    );
    assert_eq!(code, 0, "{out}{err}");
}

fn socket_of(dir: &Path) -> PathBuf {
    dir.join("authd.sock")
}

/// Waits for `what` to hold, at most `limit`.
fn eventually(limit: Duration, what: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if what() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    what()
}

#[test]
fn user_commands_run_in_the_server_and_their_effects_show_over_http() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    store_with_a(&dir);
    let server = Proc::start(&dir, &[]);
    let socket = socket_of(&dir);
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");

    // add: the new user logs in over HTTP at once.
    let (code, out, err) = authd(
        &dir,
        &[
            "user",
            "add",
            "b@x.io",
            "--password-stdin",
            "--bcrypt-cost",
            "4",
        ],
        Some("pw two\n"),
    );
    assert_eq!(
        (code, out.as_str()),
        (0, "created user 2 <b@x.io>\n"),
        "{err}"
    );
    assert!(server.log_in("b@x.io", "pw two").is_ok());
    // Its audit line is the server's, as for a registration.
    assert!(
        eventually(Duration::from_secs(5), || server
            .stderr()
            .contains("b@x.io")),
        "{}",
        server.stderr()
    );
    assert!(server.stderr().contains("control socket: `user add` (uid"));

    // list, show, find.
    let (code, out, _) = authd(&dir, &["user", "list"], None);
    assert_eq!(code, 0);
    assert_eq!(
        out, "      ID  EMAIL\n       1  a@x.io\n       2  b@x.io\n",
        "{out}"
    );
    let (code, out, _) = authd(&dir, &["user", "show", "B@x.io", "--json"], None);
    assert_eq!(code, 0);
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["email"], "b@x.io");
    assert_eq!(shown["sessions"], 1);
    let (code, out, _) = authd(&dir, &["user", "find", "id=1"], None);
    assert_eq!(code, 0);
    assert!(out.contains("email:          a@x.io"), "{out}");

    // sessions and logout end a live session.
    let session = server.log_in("a@x.io", "pw one").unwrap();
    assert_eq!(server.profile(&session), 200);
    let (code, out, _) = authd(&dir, &["user", "sessions", "a@x.io", "--json"], None);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 1, "{out}");
    let (code, out, _) = authd(&dir, &["user", "logout", "a@x.io"], None);
    assert_eq!(
        (code, out.as_str()),
        (0, "1 session ended for user 1 <a@x.io>\n")
    );
    assert_eq!(server.profile(&session), 403);
    let (code, out, _) = authd(&dir, &["user", "logout", "a@x.io"], None);
    assert_eq!(code, 0);
    assert!(out.starts_with("no session to end"), "{out}");

    // set-password: the old one stops working, the new one works.
    let (code, out, err) = authd(
        &dir,
        &["user", "set-password", "a@x.io", "--password-stdin"],
        Some("pw three\n"),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, "password set for user 1 <a@x.io>; sessions ended\n");
    assert_eq!(server.log_in("a@x.io", "pw one"), Err(401));
    assert!(server.log_in("a@x.io", "pw three").is_ok());

    // delete: the user can no longer log in.
    let (code, out, _) = authd(&dir, &["user", "delete", "b@x.io"], None);
    assert_eq!((code, out.as_str()), (0, "deleted user 2 <b@x.io>\n"));
    assert_eq!(server.log_in("b@x.io", "pw two"), Err(401));

    // Refusals: the same statuses and lines as without a server.
    let (code, out, err) = authd(&dir, &["user", "show", "nobody@x.io"], None);
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(err, "authd: error: no user with email nobody@x.io\n");
    let (code, _, err) = authd(
        &dir,
        &["user", "add", "a@x.io", "--password-stdin"],
        Some("x y z w\n"),
    );
    assert_eq!(
        (code, err.as_str()),
        (1, "authd: error: email already registered\n")
    );
    let (code, _, err) = authd(&dir, &["user", "add", "c@x.io"], None);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no password on standard input, and no terminal"),
        "{err}"
    );
    let (code, _, err) = authd(&dir, &["user", "find", "nonsense"], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("the query is FIELD=VALUE"), "{err}");
    let (code, _, err) = authd(&dir, &["user", "find", "colour=red"], None);
    assert_eq!(
        (code, err.as_str()),
        (1, "authd: error: users have no field \"colour\"\n")
    );

    // key rotate and migrate work too (the server migrated at start).
    let (code, out, _) = authd(&dir, &["key", "rotate"], None);
    assert_eq!(code, 0);
    assert!(out.starts_with("a new server key is in the store"), "{out}");
    let (code, out, _) = authd(&dir, &["migrate"], None);
    assert_eq!(code, 0);
    assert!(out.contains("is up to date; nothing to migrate"), "{out}");

    // The server still serves; stopped, it removes its socket.
    assert_eq!(
        server.post("/users", "email=c%40x.io&password=pw%20four").0,
        200
    );
    let mut server = server;
    server.signal("TERM");
    assert!(server.wait(Duration::from_secs(20)).success());
    assert!(!socket.exists(), "the socket outlived the server");
    // Stopped, the commands open the store directly, as before.
    let (code, out, _) = authd(&dir, &["user", "list"], None);
    assert_eq!(code, 0);
    assert!(out.contains("c@x.io"), "{out}");
}

#[test]
fn export_import_check_and_backup_run_in_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    store_with_a(&dir);
    let server = Proc::start(&dir, &[]);

    // import from a file and from stdin.
    let file = tmp.path().join("in.jsonl");
    std::fs::write(
        &file,
        format!("{{\"email\":\"i1@x.io\",\"hashed_password\":\"{HASH}\"}}\n"),
    )
    .unwrap();
    let (code, _, err) = authd(&dir, &["import", file.to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("imported 1 users"), "{err}");
    assert!(server.log_in("i1@x.io", "correct horse").is_ok());
    let line = format!("{{\"email\":\"i2@x.io\",\"hashed_password\":\"{HASH}\"}}\n");
    let (code, _, err) = authd(&dir, &["import", "-"], Some(&line));
    assert_eq!(code, 0, "{err}");
    assert!(server.log_in("i2@x.io", "correct horse").is_ok());
    // A refused import: nothing, and the lines said.
    let (code, _, err) = authd(&dir, &["import", "-"], Some(&line));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("line 1: email i2@x.io is already registered"),
        "{err}"
    );
    assert!(err.contains("nothing was imported"), "{err}");

    // export, to stdout and to a private file of the client's.
    let (code, out, err) = authd(&dir, &["export"], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
    assert_eq!(err, "authd: exported 3 users\n");
    let exported = tmp.path().join("out.jsonl");
    let (code, _, err) = authd(&dir, &["export", "-o", exported.to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(&exported).unwrap(), out);
    let mode = std::fs::metadata(&exported).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // check and backup (a relative destination is the client's).
    let (code, out, err) = authd(&dir, &["check"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("is consistent: 3 users"), "{out}");
    let (code, out, err) = run_in(tmp.path(), &["backup", "copy", "--data-dir", "store"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("backed up 3 users"), "{out}");
    assert!(tmp.path().join("copy").join("db").exists());
    let (code, _, err) = run_in(tmp.path(), &["backup", "copy", "--data-dir", "store"]);
    assert_eq!(code, 1);
    assert!(err.contains("exists and is not empty"), "{err}");
    drop(server);
    let (code, out, _) = authd(&tmp.path().join("copy"), &["user", "list"], None);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 4, "{out}");
}

/// Runs the binary in `cwd`.
fn run_in(cwd: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_peer_of_another_user_is_refused() {
    let python = Path::new("/usr/bin/python3");
    let setpriv = Command::new("setpriv").arg("--version").output();
    if !python.exists() || setpriv.is_err() || unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root, setpriv and /usr/bin/python3 to connect as another user");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    store_with_a(&dir);
    // The socket where another user can reach it, so that what refuses
    // the peer is the server's SO_PEERCRED check, not the file's mode.
    let open = tmp.path().join("open");
    std::fs::create_dir(&open).unwrap();
    let socket = open.join("ctl.sock");
    let server = Proc::start(&dir, &["--control-socket", socket.to_str().unwrap()]);
    for path in [tmp.path(), &open] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    // Greets, then prints the answer's kind and text (one short frame).
    let script = "import socket,struct,sys,time\n\
s=socket.socket(socket.AF_UNIX)\n\
s.connect(sys.argv[1])\n\
p=b'authd-control'+struct.pack('>I',1)\n\
s.sendall(bytes([1])+struct.pack('>I',len(p))+p)\n\
time.sleep(0.5)\n\
d=s.recv(70000)\n\
print(d[0], d[5:].decode())\n";
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(python)
        .args(["-c", script, socket.to_str().unwrap()])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        said.starts_with("8 ") && said.contains("not uid 65534"),
        "{said} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        eventually(Duration::from_secs(5), || server
            .stderr()
            .contains("refused a client of uid 65534")),
        "{}",
        server.stderr()
    );
    // The owner still gets through.
    let (code, out, err) = authd(
        &dir,
        &["user", "list", "--control-socket", socket.to_str().unwrap()],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("a@x.io"));
}

#[test]
fn garbage_oversized_and_stalled_clients_hold_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    store_with_a(&dir);
    let server = Proc::start(&dir, &[]);
    let socket = socket_of(&dir);
    // Garbage, and a frame claiming 4 GiB: each dropped at once.
    for bytes in [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        [&[1u8][..], &u32::MAX.to_be_bytes()].concat(),
    ] {
        let mut client = UnixStream::connect(&socket).unwrap();
        client.write_all(&bytes).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut rest = Vec::new();
        let started = Instant::now();
        let _ = client.read_to_end(&mut rest);
        assert!(started.elapsed() < Duration::from_secs(5), "not dropped");
        assert!(rest.is_empty(), "{rest:?}");
    }
    // Stalled clients: one silent, one that greets and stops half-way.
    let silent = UnixStream::connect(&socket).unwrap();
    let mut halfway = UnixStream::connect(&socket).unwrap();
    let hello = [&b"authd-control"[..], &1u32.to_be_bytes()].concat();
    halfway.write_all(&[1, 0, 0, 0, hello.len() as u8]).unwrap();
    halfway.write_all(&hello).unwrap();
    halfway.write_all(&[2, 0, 0, 1, 0, b'{']).unwrap();
    // Meanwhile HTTP and the next admin command are answered at once.
    let started = Instant::now();
    assert_eq!(
        server.post("/users", "email=h%40x.io&password=pw%20five").0,
        200
    );
    let (code, out, err) = authd(&dir, &["user", "list"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("h@x.io"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The stalled ones are dropped after the request timeout.
    for mut stalled in [silent, halfway] {
        stalled
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut rest = Vec::new();
        let _ = stalled.read_to_end(&mut rest);
    }
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(server.log_in("h@x.io", "pw five").is_ok());
}

#[test]
fn a_stale_socket_file_is_replaced_and_another_file_is_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    store_with_a(&dir);
    // What a server killed with SIGKILL leaves.
    drop(std::os::unix::net::UnixListener::bind(socket_of(&dir)).unwrap());
    assert!(socket_of(&dir).exists());
    let server = Proc::start(&dir, &[]);
    let (code, out, err) = authd(&dir, &["user", "list"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("a@x.io"));
    drop(server);

    // A file that is not a socket is not the server's to remove: it serves
    // without a control socket, says so, and the commands say why.
    let other = tmp.path().join("store2");
    store_with_a(&other);
    let _ = std::fs::remove_file(socket_of(&other));
    std::fs::write(socket_of(&other), "mine").unwrap();
    let server = Proc::start(&other, &[]);
    assert!(
        server.stderr().contains("no control socket at"),
        "{}",
        server.stderr()
    );
    let (code, _, err) = authd(&other, &["user", "list"], None);
    assert_eq!(code, 1);
    assert!(err.contains("in use by another authd process"), "{err}");
    assert!(
        err.contains("its control socket cannot serve this command"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(socket_of(&other)).unwrap(), "mine");
}

/// 10,000 users, then `backup` and `check` while requests register users
/// and log in: every copy checks clean, and the pause is measured.
#[test]
fn backup_and_check_of_a_live_store_see_one_state() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let lines: String = (0..10_000)
        .map(|i| format!("{{\"email\":\"u{i}@x.io\",\"hashed_password\":\"{HASH}\"}}\n"))
        .collect();
    let (code, _, err) = authd(&dir, &["import", "-"], Some(&lines));
    assert_eq!(code, 0, "{err}");
    let server = Arc::new(Proc::start(&dir, &[]));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (server, stop) = (Arc::clone(&server), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let email = format!("w{n}@x.io");
                let (status, _) = server.post(
                    "/users",
                    &format!("email={}&password=pw%20{n}%20x", enc(&email)),
                );
                assert_eq!(status, 200);
                let _ = server.log_in(&email, &format!("pw {n} x"));
                n += 1;
            }
            n
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    for round in 0..3 {
        let dest = tmp.path().join(format!("backup{round}"));
        let (code, out, err) = authd(&dir, &["backup", dest.to_str().unwrap()], None);
        assert_eq!(code, 0, "{out}{err}");
        let (code, out, err) = authd(&dir, &["check"], None);
        assert_eq!(code, 0, "{out}{err}");
    }
    stop.store(true, Ordering::SeqCst);
    let written = writer.join().unwrap();
    assert!(written > 0);
    let log = server.stderr();
    let pauses: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("writers paused for"))
        .collect();
    assert_eq!(pauses.len(), 3, "{log}");
    eprintln!("backup of 10,000 users (+{written} written meanwhile): {pauses:#?}");
    drop(server);
    for round in 0..3 {
        let (code, out, err) = authd(&tmp.path().join(format!("backup{round}")), &["check"], None);
        assert_eq!(code, 0, "{out}{err}");
    }
}

/// An import interrupted at its client (Ctrl-C) while the server writes
/// it: the server stops at the next batch and rolls back; nothing stays.
#[test]
fn an_import_whose_client_is_interrupted_leaves_nothing() {
    use std::io::{BufRead as _, BufReader};
    use std::process::Stdio;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    store_with_a(&dir);
    let server = Proc::start(&dir, &[]);
    let lines: String = (0..60_000)
        .map(|i| format!("{{\"email\":\"u{i}@x.io\",\"hashed_password\":\"{HASH}\"}}\n"))
        .collect();
    let mut client = Command::new(BIN)
        .args(["import", "-", "--data-dir", dir.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = client.stdin.take().unwrap();
    std::thread::spawn(move || {
        let _ = stdin.write_all(lines.as_bytes());
    });
    let mut stderr = BufReader::new(client.stderr.take().unwrap());
    let mut said = String::new();
    loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "{said}");
        said.push_str(&line);
        if line.contains("written (not committed yet)") {
            break;
        }
    }
    let killed = Command::new("kill")
        .args(["-INT", &client.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = client.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{said}");
    assert!(
        eventually(Duration::from_secs(20), || server
            .stderr()
            .contains("`import` (uid")),
        "{}",
        server.stderr()
    );
    assert!(
        server.stderr().contains("exited 130"),
        "{}",
        server.stderr()
    );
    let (code, out, err) = authd(&dir, &["user", "list"], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(server.log_in("a@x.io", "pw one").is_ok());
}
