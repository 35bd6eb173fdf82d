//! Look-alike addresses: every spelling of an address is one account (case,
//! Unicode normalisation, invisible characters, final sigma, dotless i,
//! fullwidth letters, IDN domains), a new address that only serves to
//! deceive is refused, and a store keyed by the old rule is re-keyed with
//! every account still reachable by the spelling it registered with.

use std::path::{Path, PathBuf};

use crate::common::process::{enc, Proc};
use crate::common::stores::{self, run_authd, Kind};
use crate::common::TestApp;

fn lookalikes_are_one_account() {
    let app = TestApp::spawn();
    let accounts: [(&str, &[&str]); 6] = [
        (
            "jos\u{e9}@example.com",
            &["jose\u{301}@example.com", "JOS\u{c9}@EXAMPLE.COM"],
        ),
        (
            "bob@example.com",
            &[
                "\u{ff42}\u{ff4f}\u{ff42}@example.com",
                "BOB@example.com",
                "bob@\u{ff45}xample.com",
            ],
        ),
        (
            "\u{3bf}\u{3b4}\u{3bf}\u{3c2}@example.com",
            &[
                "\u{39f}\u{394}\u{39f}\u{3a3}@example.com",
                "\u{3bf}\u{3b4}\u{3bf}\u{3c3}@example.com",
            ],
        ),
        (
            "t\u{131}m@example.com",
            &["tim@example.com", "T\u{130}M@example.com"],
        ),
        ("stra\u{df}e@example.com", &["strasse@example.com"]),
        (
            "carol@b\u{fc}cher.example",
            &["carol@xn--bcher-kva.example", "carol@B\u{dc}CHER.example"],
        ),
    ];
    for (first, others) in accounts {
        let made = app.register(first, "pw-first-1");
        assert_eq!(made.status, 200, "{first:?}: {made:?}");
        assert_eq!(made.json()["email"], first);
        for other in others {
            let again = app.register(other, "pw-other-1");
            assert_eq!(
                (again.status, again.message()),
                (400, "email already registered".to_owned()),
                "{other:?} after {first:?}"
            );
            // Any spelling logs in to the one account, whose profile
            // shows the spelling it registered with.
            let login = app.log_in(other, "pw-first-1");
            assert_eq!(login.status, 200, "{other:?}: {login:?}");
            let profile = app.profile(Some(&app.session_of(&login)));
            assert_eq!(profile.json()["email"], first, "{other:?}");
        }
    }
    assert_eq!(app.user_count(), accounts.len());
    assert!(app.store_problems().is_empty());
}

fn deceptive_new_addresses_are_refused_and_change_nothing() {
    let app = TestApp::spawn();
    let invisible = "email must not contain invisible or direction-changing characters";
    let unassigned = "email must not contain unassigned or private-use characters";
    let cases = [
        ("bo\u{200b}b@example.com", invisible),
        ("bob\u{200d}@example.com", invisible),
        ("b\u{ad}ob@example.com", invisible),
        ("\u{2060}bob@example.com", invisible),
        ("bob\u{feff}@example.com", invisible),
        ("bob\u{202e}@example.com", invisible),
        ("bob@exa\u{200b}mple.com", invisible),
        ("bob\u{e000}@example.com", unassigned),
        ("bob\u{378}@example.com", unassigned),
        (
            "p\u{430}ypal@example.com",
            "email must not mix letters of different scripts (such as Latin and Cyrillic) in one part",
        ),
        (
            "bob\u{ff20}x@example.com",
            "email is not an address once normalised (a fullwidth '@' or '.', say)",
        ),
    ];
    for (email, message) in cases {
        let answer = app.register(email, "pw-deceive-1");
        assert_eq!(
            (answer.status, answer.message()),
            (400, message.to_owned()),
            "{email:?}"
        );
    }
    assert_eq!(app.user_count(), 0);
    // Typed at a login, such a spelling is looked up like any other: the
    // invisible character is no part of the key, so it finds bob, and a
    // wrong password is the reference's 401, not a 400.
    assert_eq!(app.register("bob@example.com", "pw-bob-1").status, 200);
    assert_eq!(app.log_in("bo\u{200b}b@example.com", "wrong").status, 401);
    assert_eq!(
        app.log_in("bo\u{200b}b@example.com", "pw-bob-1").status,
        200
    );
    assert_eq!(app.user_count(), 1);
}

/// One account of the format-2 fixture (tests/fixtures/store-v2.json).
struct Old {
    id: u64,
    email: String,
    password: String,
    key: String,
    collides_with: Option<u64>,
}

fn fixture() -> Vec<Old> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v2.json");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    doc["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| Old {
            id: u["id"].as_u64().unwrap(),
            email: u["email"].as_str().unwrap().to_owned(),
            password: u["password"].as_str().unwrap().to_owned(),
            key: u["key"].as_str().unwrap().to_owned(),
            collides_with: u["collides_with"].as_u64(),
        })
        .collect()
}

/// The fixture's accounts as the store before the email rules held them:
/// on sled, a copy of the store the previous release wrote (format 2); on
/// PostgreSQL, a schema at migration 4 with the same rows, keyed as that
/// release keyed them (lowercased).
#[cfg_attr(not(feature = "postgres"), allow(unused_variables))]
fn old_store(tmp: &Path, users: &[Old]) -> PathBuf {
    let dir = tmp.join("store");
    match stores::kind() {
        Kind::Sled => crate::common::copy_fixture_store("store-v2", &dir),
        #[cfg(not(feature = "postgres"))]
        Kind::Postgres => panic!("PostgreSQL: built without the `postgres` feature"),
        #[cfg(feature = "postgres")]
        Kind::Postgres => {
            let url = stores::database_url(&dir).unwrap();
            let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            authd::store::postgres::schema::migrate_to(&mut client, 4).unwrap();
            for user in users {
                let hash = bcrypt::hash_with_result(&user.password, 4)
                    .unwrap()
                    .format_for_version(bcrypt::Version::TwoB);
                client
                    .execute(
                        "INSERT INTO authd_users (id, email, email_key, hashed_password)
                         VALUES ($1, $2, $3, $4)",
                        &[
                            &(user.id as i64),
                            &user.email,
                            &user.email.to_lowercase(),
                            &hash,
                        ],
                    )
                    .unwrap();
            }
            client
                .execute(
                    "SELECT setval(pg_get_serial_sequence('authd_users', 'id'), $1)",
                    &[&(users.len() as i64)],
                )
                .unwrap();
        }
    }
    dir
}

fn an_old_store_is_rekeyed_and_every_lookalike_stays_reachable() {
    let tmp = tempfile::tempdir().unwrap();
    let users = fixture();
    let dir = old_store(tmp.path(), &users);
    let server = Proc::start(&dir, &[]);
    assert!(
        server.stderr().contains("migrating the store"),
        "{}",
        server.stderr()
    );
    for user in &users {
        // Reachable by the spelling it registered with, as itself.
        let token = server
            .log_in(&user.email, &user.password)
            .unwrap_or_else(|status| panic!("{:?}: {status}", user.email));
        let profile = server.send("GET", "/profile", "", Some(&token));
        assert_eq!(profile.json()["email"], user.email.as_str());
        // And by its key, when it holds the key its address has now.
        if user.collides_with.is_none() {
            assert!(
                server.log_in(&user.key, &user.password).is_ok(),
                "{:?} by {:?}",
                user.email,
                user.key
            );
        }
    }
    // No new account can take a key an old one holds, in any spelling.
    for taken in [
        "alice@example.com",
        "\u{ff54}\u{ff49}\u{ff4d}@example.com",
        "eve@example.com",
        "carol@xn--bcher-kva.example",
    ] {
        let (status, body) =
            server.post("/users", &format!("email={}&password=pw-new-1", enc(taken)));
        assert_eq!(status, 400, "{taken:?}: {body}");
        assert!(body.contains("email already registered"), "{body}");
    }
    drop(server);

    // `check` is clean, and lists each pair with the account holding the key.
    let (code, out, err) = run_authd(&dir, &["check"], None);
    assert_eq!(code, 0, "{out}{err}");
    let pairs: Vec<&Old> = users.iter().filter(|u| u.collides_with.is_some()).collect();
    assert!(
        out.contains(&format!("{} look-alike account(s)", pairs.len())),
        "{out}"
    );
    for kept in pairs {
        let holder = users
            .iter()
            .find(|u| Some(u.id) == kept.collides_with)
            .unwrap();
        let line = format!(
            "user {} {:?} shares a key with user {} {:?}",
            kept.id, kept.email, holder.id, holder.email
        );
        assert!(out.contains(&line), "missing {line:?} in:\n{out}");
    }
    // Export carries every address exactly as registered.
    let (code, out, err) = run_authd(&dir, &["export"], None);
    assert_eq!(code, 0, "{err}");
    for user in &users {
        let line = out
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|v| v["email"] == user.email.as_str());
        assert!(line.is_some(), "{:?} not exported:\n{out}", user.email);
    }
}

crate::on_every_store!(
    lookalikes_are_one_account,
    deceptive_new_addresses_are_refused_and_change_nothing,
    an_old_store_is_rekeyed_and_every_lookalike_stays_reachable,
);
