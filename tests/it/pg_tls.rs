//! PostgreSQL over TLS: every `sslmode` against a throwaway cluster that
//! this test starts (the installed server's `initdb` and `pg_ctl`, run as
//! the `postgres` user, on a port of its own, with a certificate made
//! here), so the machine's shared PostgreSQL is never reconfigured.
//!
//! Whether a connection is encrypted is asked of the server
//! (`pg_stat_ssl`), over a plain administrative connection, for the
//! connections carrying the `application_name` the case gave its URL.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use authd::store::postgres::PgStore;
use authd::store::Upgrade;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use crate::common::process::{enc, run, Proc, BIN};

/// A password in every URL, which no message may show (trust
/// authentication never asks for it).
const PASSWORD: &str = "hunter2-not-shown";

/// The highest installed server's binaries, or `None` (with a message) to
/// skip: outside CI only. Under CI (`CI` set, and not `false` or `0`)
/// missing binaries fail the test.
fn server_bin_or_skip() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    found.sort();
    let runuser = Path::new("/usr/sbin/runuser").is_file() || Path::new("/sbin/runuser").is_file();
    let has_user = Command::new("id")
        .args(["-u", "postgres"])
        .output()
        .is_ok_and(|o| o.status.success());
    if let (Some((_, bin)), true, true) = (found.pop(), runuser, has_user) {
        return Some(bin);
    }
    let ci = std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "false" | "0"));
    assert!(
        !ci,
        "no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb), runuser or \
         `postgres` user, and CI is set: the TLS tests must run in CI \
         (.ci/run installs them: apt-get install postgresql)"
    );
    eprintln!(
        "SKIPPED pg_tls::*: no PostgreSQL server binaries under /usr/lib/postgresql/*/bin \
         (Debian: apt-get install postgresql), runuser, or `postgres` user (with CI=true \
         this fails)"
    );
    None
}

/// A CA and PEM files: its certificate, and a server certificate and key
/// it signed for `names`.
struct Ca {
    cert_pem: String,
    key: KeyPair,
    params: CertificateParams,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert_pem = params.self_signed(&key).unwrap().pem();
        Ca {
            cert_pem,
            key,
            params,
        }
    }

    /// (certificate PEM, key PEM) of a server named `names`.
    fn server(&self, names: &[&str]) -> (String, String) {
        let issuer = Issuer::from_params(&self.params, &self.key);
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, &self.cert_pem).unwrap();
        path.to_owned()
    }
}

/// A PostgreSQL cluster of this test's own, stopped (`-m immediate`) and
/// removed when dropped.
struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    /// Removed after `drop` has stopped the server (fields drop last).
    _dir: tempfile::TempDir,
}

/// Runs `program args` as the `postgres` user (initdb and pg_ctl refuse
/// root); fails the test with its output if it fails.
fn as_postgres(program: &Path, args: &[&str]) {
    let mut command = Command::new("runuser");
    command
        .args(["-u", "postgres", "--"])
        .arg(program)
        .args(args);
    let output = crate::common::process::wait_output(
        command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
        Duration::from_secs(90),
    );
    assert!(
        output.status.success(),
        "{} {args:?} failed: {}{}",
        program.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    (id("-u"), id("-g"))
}

/// A port nothing listens on now (the cluster binds it a moment later).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    /// A cluster with `ssl = on`, presenting `cert`/`key`, trusting every
    /// connection from 127.0.0.1 (TLS or not).
    fn start(bin: &Path, cert: &str, key: &str) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let (uid, gid) = postgres_ids();
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        let data = dir.path().join("data");
        as_postgres(
            &bin.join("initdb"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        let owned = |name: &str, contents: &str, mode: u32| {
            use std::os::unix::fs::PermissionsExt as _;
            let path = data.join(name);
            std::fs::write(&path, contents).unwrap();
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        owned("server.crt", cert, 0o644);
        owned("server.key", key, 0o600);
        owned(
            "pg_hba.conf",
            "local all all trust\nhost all all 127.0.0.1/32 trust\n",
            0o600,
        );
        // Last settings win: appended to the generated file.
        let port = free_port();
        let mut conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        conf.push_str(&format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n\
             fsync = off\nshared_buffers = 16MB\nmax_connections = 30\n",
            dir.path().display()
        ));
        owned("postgresql.conf", &conf, 0o600);
        let log = dir.path().join("server.log");
        let cluster = Cluster {
            bin: bin.to_owned(),
            data,
            port,
            _dir: dir,
        };
        as_postgres(
            &bin.join("pg_ctl"),
            &[
                "-D",
                cluster.data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        cluster
    }

    /// A URL for `host` with `query` (starting without `?`), as user
    /// `postgres` with a password that must never be shown.
    fn url(&self, host: &str, query: &str) -> String {
        format!(
            "postgres://postgres:{PASSWORD}@{host}:{}/postgres?{query}",
            self.port
        )
    }

    /// Runs `sql` over a plain administrative connection; the first column
    /// of the last row.
    fn sql(&self, sql: &str) -> Option<String> {
        let admin = format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=disable",
            self.port
        );
        let mut client = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
        let mut last = None;
        for message in client.simple_query(sql).unwrap() {
            if let postgres::SimpleQueryMessage::Row(row) = message {
                last = row.get(0).map(str::to_owned);
            }
        }
        last
    }

    /// Whether the server's connections named `app` are encrypted: `Some`
    /// of every one agreeing, `None` if there is none.
    fn encrypted(&self, app: &str) -> Option<bool> {
        let answer = self.sql(&format!(
            "SELECT CASE WHEN count(*) = 0 THEN 'none' WHEN bool_and(s.ssl) THEN 'tls' \
             WHEN NOT bool_or(s.ssl) THEN 'plain' ELSE 'mixed' END \
             FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = '{app}'"
        ));
        match answer.as_deref() {
            Some("tls") => Some(true),
            Some("plain") => Some(false),
            Some("none") => None,
            other => panic!("connections of {app}: {other:?}"),
        }
    }

    /// `ssl = off` from now on (a reload applies it to new connections).
    fn turn_ssl_off(&self) {
        self.sql("ALTER SYSTEM SET ssl = off");
        self.sql("SELECT pg_reload_conf()");
        // The reload is asynchronous: wait until a new session sees it.
        for _ in 0..100 {
            if self.sql("SHOW ssl").as_deref() == Some("off") {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("ssl stayed on after the reload");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", self.data.to_str().unwrap_or_default()])
            .args(["-m", "immediate", "-w", "-t", "20", "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Opens the store at `url`; the error's text if it fails.
fn open(url: &str) -> Result<PgStore, String> {
    PgStore::connect(url, 2, Upgrade::Apply).map_err(|e| e.to_string())
}

/// The store opened, and its connections encrypted or not as `tls` says.
fn connects(cluster: &Cluster, url: &str, app: &str, tls: bool) {
    let store = open(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(
        cluster.encrypted(app),
        Some(tls),
        "{url}: connections encrypted?"
    );
    drop(store);
}

/// The store refused, in one line that says `why` and shows no password.
fn refused(url: &str, why: &str) -> String {
    let e = open(url).err().unwrap_or_else(|| panic!("{url} connected"));
    assert!(e.contains(why), "{url}: {e:?} does not say {why:?}");
    assert!(!e.contains(PASSWORD), "the password is shown: {e}");
    assert!(!e.contains('\n'), "more than one line: {e}");
    e
}

#[test]
fn every_sslmode_against_a_server_with_and_without_ssl() {
    let Some(bin) = server_bin_or_skip() else {
        return;
    };
    let files = tempfile::tempdir().unwrap();
    let ca = Ca::new("authd pg test CA");
    let other_ca = Ca::new("some other CA");
    let ca_file = ca.write(&files.path().join("ca.pem"));
    let other_file = other_ca.write(&files.path().join("other.pem"));
    let (ca_s, other_s) = (ca_file.to_str().unwrap(), other_file.to_str().unwrap());
    // Named `localhost` only: 127.0.0.1 is a name it does not hold.
    let (cert, key) = ca.server(&["localhost"]);
    let cluster = Cluster::start(&bin, &cert, &key);
    let url = |host: &str, query: &str| cluster.url(host, query);

    // disable: plain text although the server offers TLS.
    connects(
        &cluster,
        &url("127.0.0.1", "sslmode=disable&application_name=t_disable"),
        "t_disable",
        false,
    );
    // No sslmode is libpq's `prefer`: TLS when offered.
    connects(
        &cluster,
        &url("127.0.0.1", "application_name=t_default"),
        "t_default",
        true,
    );
    // require: encrypted, whatever the certificate (here from a CA the
    // client was not given).
    connects(
        &cluster,
        &url("127.0.0.1", "sslmode=require&application_name=t_require"),
        "t_require",
        true,
    );
    // verify-ca: the chain, not the name (127.0.0.1 is not in the SAN).
    connects(
        &cluster,
        &url(
            "127.0.0.1",
            &format!(
                "sslmode=verify-ca&sslrootcert={}&application_name=t_ca",
                enc(ca_s)
            ),
        ),
        "t_ca",
        true,
    );
    refused(
        &url(
            "127.0.0.1",
            &format!("sslmode=verify-ca&sslrootcert={}", enc(other_s)),
        ),
        "certificate is not trusted",
    );
    // require with sslrootcert checks the chain (libpq's rule).
    refused(
        &url(
            "127.0.0.1",
            &format!("sslmode=require&sslrootcert={}", enc(other_s)),
        ),
        "certificate is not trusted",
    );
    // verify-full: the chain and the name.
    connects(
        &cluster,
        &url(
            "localhost",
            &format!(
                "sslmode=verify-full&sslrootcert={}&application_name=t_full",
                enc(ca_s)
            ),
        ),
        "t_full",
        true,
    );
    refused(
        &url(
            "127.0.0.1",
            &format!("sslmode=verify-full&sslrootcert={}", enc(ca_s)),
        ),
        "does not name the host \"127.0.0.1\"",
    );
    refused(
        &url(
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={}", enc(other_s)),
        ),
        "certificate is not trusted",
    );
    // libpq's key=value form, with `options` kept.
    let key_values = format!(
        "host=localhost port={} user=postgres password={PASSWORD} dbname=postgres \
         sslmode=verify-full sslrootcert='{ca_s}' application_name=t_kv \
         options='-c search_path=public'",
        cluster.port
    );
    connects(&cluster, &key_values, "t_kv", true);
    // A verifying mode without a root certificate is a start-up error.
    refused(
        &url("localhost", "sslmode=verify-full"),
        "sslmode=verify-full needs sslrootcert",
    );

    // The same server without TLS.
    cluster.turn_ssl_off();
    refused(
        &url("127.0.0.1", "sslmode=require"),
        "server does not support TLS",
    );
    refused(
        &url(
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={}", enc(ca_s)),
        ),
        "server does not support TLS",
    );
    // prefer falls back to plain text (documented).
    connects(
        &cluster,
        &url("127.0.0.1", "sslmode=prefer&application_name=t_prefer"),
        "t_prefer",
        false,
    );
}

/// The real binary on `verify-full`: register, log in and read the
/// profile over HTTP, the store behind it over TLS; and a start-up
/// refused in one line for an untrusted certificate.
#[test]
fn the_binary_serves_over_verify_full() {
    let Some(bin) = server_bin_or_skip() else {
        return;
    };
    let files = tempfile::tempdir().unwrap();
    let ca = Ca::new("authd pg test CA");
    let ca_file = ca.write(&files.path().join("ca.pem"));
    let other_file = Ca::new("some other CA").write(&files.path().join("other.pem"));
    let (cert, key) = ca.server(&["localhost"]);
    let cluster = Cluster::start(&bin, &cert, &key);

    let url = cluster.url(
        "localhost",
        &format!(
            "sslmode=verify-full&sslrootcert={}&application_name=t_binary",
            enc(ca_file.to_str().unwrap())
        ),
    );
    let mut command = Command::new(BIN);
    command.env("AUTHD_BCRYPT_COST", "4").args([
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--database",
        &url,
    ]);
    let server = Proc::spawn(command, &files.path().join("authd.stderr"));
    let form = format!("email={}&password={}", enc("tls@x.io"), enc("pw"));
    assert_eq!(server.post("/users", &form).0, 200, "{}", server.stderr());
    let session = server.log_in("tls@x.io", "pw").unwrap();
    assert_eq!(server.profile(&session), 200);
    assert_eq!(cluster.encrypted("t_binary"), Some(true));
    drop(server);

    let wrong = cluster.url(
        "localhost",
        &format!(
            "sslmode=verify-full&sslrootcert={}",
            enc(other_file.to_str().unwrap())
        ),
    );
    let (code, _, stderr) = run(&["serve", "--addr", "127.0.0.1:0", "--database", &wrong]);
    assert_ne!(code, 0, "started with an untrusted certificate");
    assert!(
        stderr.contains("certificate is not trusted"),
        "stderr: {stderr}"
    );
    assert!(
        !stderr.contains(PASSWORD),
        "the password is shown: {stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "stderr: {stderr}");
}
