//! The README's "Use it from your app" examples, run as written: a backend
//! forwarding a browser's session cookie to GET /profile, in Python and in
//! JavaScript (Node).

use std::path::Path;
use std::process::Command;

use crate::common::process::Proc;

/// Runs `program examples/FILE BASE TOKEN`; returns (exit code, stdout).
/// `None` when the program is not installed and this is not CI (where it
/// must be).
fn run_example(program: &str, file: &str, base: &str, token: &str) -> Option<(i32, String)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(file);
    match Command::new(program)
        .arg(&script)
        .args([base, token])
        .output()
    {
        Ok(output) => Some((
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && std::env::var("CI").is_err() => {
            eprintln!("skipping examples/{file}: {program} is not installed");
            None
        }
        Err(e) => panic!("cannot run {program}: {e}"),
    }
}

#[test]
fn backend_examples_tell_who_is_signed_in() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Proc::start(&tmp.path().join("store"), &[]);
    assert_eq!(
        server
            .post("/users", "email=ann%40example.com&password=pw-ann")
            .0,
        200
    );
    let token = server.log_in("ann@example.com", "pw-ann").unwrap();
    for (program, file) in [("python3", "whoami.py"), ("node", "whoami.mjs")] {
        let Some(signed_in) = run_example(program, file, &server.base, &token) else {
            continue;
        };
        assert_eq!(signed_in, (0, "ann@example.com".to_owned()), "{file}");
        let forged = "x".repeat(43);
        let refused = run_example(program, file, &server.base, &forged).unwrap();
        assert_eq!(refused, (1, "not signed in".to_owned()), "{file}");
    }
}
