//! The disk fills up under a running server: writes fail with 503 and a
//! clear log line, reads keep working, the health check says unhealthy,
//! and nothing acknowledged is lost. Needs to mount a small tmpfs (root on
//! Linux, as in CI); elsewhere it says so and skips.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::process::{run, Proc};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Option<Mount> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then(|| Mount(at.to_owned()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes zeros into `path` until the filesystem is full.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 64 * 1024];
    while file.write_all(&block).is_ok() {}
    // Then byte by byte, so not even a partial page is left.
    while file.write_all(&[0]).is_ok() {}
}

#[test]
fn a_full_disk_fails_writes_with_503_and_loses_nothing_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(mount) = Mount::tmpfs(&tmp.path().join("disk"), "4m") else {
        println!(
            "SKIPPED a_full_disk_fails_writes_with_503: cannot mount a tmpfs here (needs root)"
        );
        return;
    };
    let dir = mount.0.join("store");
    let server = Proc::start(&dir, &["--request-free", "1000000"]);
    assert_eq!(
        server.post("/users", "email=first%40x.io&password=pw").0,
        200
    );
    let session = server.log_in("first@x.io", "pw").unwrap();
    let filler = mount.0.join("filler");
    fill(&filler);

    let mut acknowledged = Vec::new();
    let mut refused = None;
    for i in 0..5000 {
        let email = format!("u{i}@x.io");
        let answer = server.send(
            "POST",
            "/users",
            &format!("email={email}&password=pw"),
            None,
        );
        let body = answer.text().to_owned();
        match answer.status {
            200 => acknowledged.push(email),
            503 => {
                refused = Some(body);
                break;
            }
            other => panic!("registration {i} answered {other}: {body}"),
        }
    }
    let body = refused.expect("the full disk was never noticed");
    assert!(body.contains("storage unavailable"), "{body}");
    // Reads still work; the health check reports the broken store.
    assert_eq!(server.profile(&session), 200);
    assert_eq!(server.send("GET", "/", "", None).status, 200);
    let health = server.send("GET", "/healthz", "", None);
    assert_eq!(health.status, 503, "{health:?}");
    assert!(health.text().contains("unavailable"), "{health:?}");
    let stderr = server.stderr();
    assert!(stderr.contains("storage failure"), "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");

    // Crash, make room, restart: every acknowledged account is there.
    drop(server);
    std::fs::remove_file(&filler).unwrap();
    let server = Proc::start(&dir, &["--request-free", "1000000"]);
    assert!(server.log_in("first@x.io", "pw").is_ok());
    for email in &acknowledged {
        assert!(
            server.log_in(email, "pw").is_ok(),
            "{email} was acknowledged, then lost"
        );
    }
    assert_eq!(
        server.post("/users", "email=later%40x.io&password=pw").0,
        200
    );
    drop(server);
    let (code, out, err) = run(&["check", "--data-dir", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
}
