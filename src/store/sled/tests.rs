//! The sled store's own tests: records, indexes, the consistency check,
//! opening refusals and the migration from format 1.

use std::path::Path;

use super::test_support::{open_when_free, store, wait_released};
use super::*;
use crate::codec::{LegacyGrant, LegacySession};
use crate::one_time::{OneTimeToken, Purpose};
use crate::session::{Session, SessionId};
use crate::store::{
    keyword, Ends, Maintenance, Redemption, SessionStore, TokenStore, UserChange, UserStore,
};
use crate::token::Token;
use crate::user::Email;

fn email(s: &str) -> Email {
    Email::parse(s).unwrap()
}

fn session(user: UserId, token: &Token, at: u64) -> Session {
    Session {
        id: SessionId::generate().unwrap(),
        token_hash: token.hash(),
        user,
        created_at: at,
        last_seen: at,
        user_agent: None,
        ip: Some("192.0.2.1".to_owned()),
    }
}

fn grant(user: UserId, token: &Token) -> OneTimeToken {
    OneTimeToken {
        token_hash: token.hash(),
        user,
        purpose: Purpose::Reset,
        created_at: 10,
        expires_at: 20,
    }
}

fn assert_consistent(store: &SledStore) {
    assert_eq!(store.check().unwrap(), Vec::<String>::new());
}

#[test]
fn ids_are_sequential_and_emails_unique_in_any_case() {
    let (_dir, store) = store();
    let a = store.add_user(&email("a@x.io"), "$2b$h").unwrap();
    let b = store.add_user(&email("b@x.io"), "$2b$h").unwrap();
    assert_eq!((a.id, b.id), (UserId(1), UserId(2)));
    assert!(matches!(
        store.add_user(&email("A@X.IO"), "$2b$h"),
        Err(StoreError::EmailTaken)
    ));
    assert_eq!(store.counts().unwrap().users, 2);
    assert_eq!(store.user_by_email(&email("B@x.IO")).unwrap(), b);
    assert_eq!(store.user_by_id(UserId(1)).unwrap(), a);
    assert_consistent(&store);
}

#[test]
fn keyword_api_distinguishes_no_user_from_no_field() {
    let (_dir, store) = store();
    let user = store.add_user(&email("a@x.io"), "$2b$h").unwrap();
    let find = |f: &str, v: &str| keyword::find_user_by(&store, f, v);
    assert_eq!(find("email", "A@x.io").unwrap(), user);
    assert_eq!(find("id", "1").unwrap(), user);
    assert!(matches!(find("email", "b@x.io"), Err(StoreError::NotFound)));
    assert!(matches!(find("id", "99"), Err(StoreError::NotFound)));
    assert!(matches!(
        find("session_id", "not-a-token"),
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        find("password", "x"),
        Err(StoreError::UnknownField(f)) if f == "password"
    ));
    assert!(matches!(
        find("id", "one"),
        Err(StoreError::InvalidValue { field: "id", .. })
    ));
    // An unknown field anywhere in an update changes nothing at all.
    assert!(matches!(
        keyword::update_user(
            &store,
            user.id,
            &[("hashed_password", Some("$2b$new")), ("colour", Some("red"))]
        ),
        Err(StoreError::UnknownField(f)) if f == "colour"
    ));
    assert_eq!(store.user_by_id(user.id).unwrap(), user);
    assert!(matches!(
        keyword::update_user(&store, UserId(99), &[("hashed_password", Some("$2b$x"))]),
        Err(StoreError::NotFound)
    ));
}

#[test]
fn keyword_session_id_finds_and_none_ends_every_session() {
    let (_dir, store) = store();
    let user = store.add_user(&email("a@x.io"), "$2b$h").unwrap();
    let (t1, t2) = (Token::generate().unwrap(), Token::generate().unwrap());
    for token in [&t1, &t2] {
        store
            .open_session(&session(user.id, token, 10), "$2b$h", &[], 100)
            .unwrap();
    }
    assert_eq!(
        keyword::find_user_by(&store, "session_id", t1.as_str())
            .unwrap()
            .id,
        user.id
    );
    // A session cannot be set by keyword: it is opened by logging in.
    assert!(matches!(
        keyword::update_user(&store, user.id, &[("session_id", Some(t1.as_str()))]),
        Err(StoreError::InvalidValue {
            field: "session_id",
            ..
        })
    ));
    keyword::update_user(&store, user.id, &[("session_id", None)]).unwrap();
    for token in [&t1, &t2] {
        assert!(matches!(
            keyword::find_user_by(&store, "session_id", token.as_str()),
            Err(StoreError::NotFound)
        ));
    }
    // A reset token set by keyword is found by keyword, and cleared.
    let reset = Token::generate().unwrap();
    keyword::update_user(&store, user.id, &[("reset_token", Some(reset.as_str()))]).unwrap();
    assert_eq!(
        keyword::find_user_by(&store, "reset_token", reset.as_str())
            .unwrap()
            .id,
        user.id
    );
    keyword::update_user(&store, user.id, &[("reset_token", None)]).unwrap();
    assert!(keyword::find_user_by(&store, "reset_token", reset.as_str()).is_err());
    assert_consistent(&store);
}

#[test]
fn sessions_and_tokens_are_records_kept_in_step() {
    let (_dir, store) = store();
    let user = store.add_user(&email("a@x.io"), "$2b$h").unwrap();
    let other = store.add_user(&email("b@x.io"), "$2b$h").unwrap();
    let tokens: Vec<Token> = (0..3).map(|_| Token::generate().unwrap()).collect();
    for (n, token) in tokens.iter().enumerate() {
        store
            .open_session(&session(user.id, token, 10 + n as u64), "$2b$h", &[], 2)
            .unwrap();
    }
    // The cap of two ended the oldest.
    assert!(store.session(&tokens[0].hash()).unwrap().is_none());
    let listed = store.sessions_of(user.id).unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].token_hash, tokens[2].hash());
    assert_consistent(&store);

    // A password that changed refuses the login.
    let late = Token::generate().unwrap();
    assert!(matches!(
        store.open_session(&session(user.id, &late, 50), "$2b$old", &[], 2),
        Err(StoreError::PreconditionFailed)
    ));

    // One-time tokens: a newer one of a purpose replaces the older.
    let (r1, r2) = (Token::generate().unwrap(), Token::generate().unwrap());
    store.issue_token(&grant(user.id, &r1)).unwrap();
    store.issue_token(&grant(user.id, &r2)).unwrap();
    assert!(store.token(&r1.hash()).unwrap().is_none());
    assert_eq!(store.token(&r2.hash()).unwrap().unwrap().1.id, user.id);
    // Another user cannot take a hash held already.
    assert!(matches!(
        store.issue_token(&grant(other.id, &r2)),
        Err(StoreError::InvalidValue { .. })
    ));
    assert_consistent(&store);

    // Redeeming checks again, when it writes, that the token is the
    // user's and unexpired.
    let hash = r2.hash();
    let redeem = |user: UserId, now: u64, issued_from: u64, password: &'static str| {
        let ends = Ends {
            sessions: true,
            ..Ends::default()
        };
        store.redeem(
            &Redemption {
                token_hash: &hash,
                user,
                purpose: Purpose::Reset,
                now,
                issued_from,
            },
            &[UserChange::HashedPassword(password.to_owned())],
            ends,
        )
    };
    for (who, now, from) in [(other.id, 15, 0), (user.id, 20, 0), (user.id, 15, 11)] {
        assert!(
            matches!(
                redeem(who, now, from, "$2b$x"),
                Err(StoreError::PreconditionFailed)
            ),
            "{who:?} at {now} from {from}"
        );
    }
    assert_eq!(store.user_by_id(user.id).unwrap().hashed_password, "$2b$h");
    // Redeeming sets the password, consumes the token, ends the sessions.
    let after = redeem(user.id, 15, 10, "$2b$new").unwrap();
    assert_eq!(after.hashed_password, "$2b$new");
    assert!(store.sessions_of(user.id).unwrap().is_empty());
    assert!(matches!(
        redeem(user.id, 15, 10, "$2b$again"),
        Err(StoreError::PreconditionFailed)
    ));
    assert_consistent(&store);

    // Deleting a user takes its sessions and tokens along.
    let t = Token::generate().unwrap();
    store
        .open_session(&session(other.id, &t, 60), "$2b$h", &[], 2)
        .unwrap();
    store.issue_token(&grant(other.id, &r1)).unwrap();
    store.delete_user(other.id).unwrap();
    assert!(store.session(&t.hash()).unwrap().is_none());
    assert!(store.token(&r1.hash()).unwrap().is_none());
    assert_consistent(&store);
}

#[test]
fn expiry_sweeps_sessions_and_tokens() {
    let (_dir, store) = store();
    let user = store.add_user(&email("a@x.io"), "$2b$h").unwrap();
    let (old, new) = (Token::generate().unwrap(), Token::generate().unwrap());
    store
        .open_session(&session(user.id, &old, 10), "$2b$h", &[], 9)
        .unwrap();
    store
        .open_session(&session(user.id, &new, 1000), "$2b$h", &[], 9)
        .unwrap();
    store.touch_session(&old.hash(), 500).unwrap();
    assert_eq!(store.expire_sessions(0, 400).unwrap(), 0);
    assert_eq!(store.expire_sessions(0, 600).unwrap(), 1);
    assert!(store.session(&new.hash()).unwrap().is_some());
    store.issue_token(&grant(user.id, &old)).unwrap();
    assert_eq!(store.expire_tokens(19, 0).unwrap(), 0);
    assert_eq!(store.expire_tokens(20, 0).unwrap(), 1);
    assert_consistent(&store);
}

#[test]
fn only_token_hashes_reach_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let token = Token::generate().unwrap();
    let reset = Token::generate().unwrap();
    {
        let store = SledStore::open(dir.path()).unwrap();
        let user = store.add_user(&email("a@x.io"), "$2b$h").unwrap();
        store
            .open_session(&session(user.id, &token, 10), "$2b$h", &[], 9)
            .unwrap();
        store.issue_token(&grant(user.id, &reset)).unwrap();
    }
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        for secret in [token.as_str(), reset.as_str()] {
            let s = secret.as_bytes();
            assert!(!bytes.windows(s.len()).any(|w| w == s), "{entry:?}");
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let user = {
        let store = SledStore::open(dir.path()).unwrap();
        store.add_user(&email("a@x.io"), "$2b$h").unwrap()
    };
    let store = open_when_free(dir.path(), Upgrade::Refuse).unwrap();
    assert_eq!(store.user_by_email(&email("a@x.io")).unwrap(), user);
    // Ids keep counting where they were.
    assert_eq!(
        store.add_user(&email("b@x.io"), "$2b$h").unwrap().id,
        UserId(2)
    );
}

#[test]
fn check_reports_planted_damage() {
    let (_dir, store) = store();
    let user = store.add_user(&email("a@x.io"), "$2b$h").unwrap();
    let token = Token::generate().unwrap();
    store
        .open_session(&session(user.id, &token, 10), "$2b$h", &[], 9)
        .unwrap();
    store
        .by_email
        .insert("ghost@x.io", &encode_id(UserId(42)))
        .unwrap();
    store
        .users
        .insert(encode_id(UserId(3)), &[9u8, 1, 2][..])
        .unwrap();
    // A session whose user's list does not name it.
    let stray = session(user.id, &Token::generate().unwrap(), 5);
    store
        .sessions
        .insert(
            stray.token_hash.as_bytes(),
            crate::codec::encode_session(&stray).unwrap(),
        )
        .unwrap();
    let problems = store.check().unwrap();
    for expected in ["missing user 42", "user 3", "missing from its list"] {
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{expected}: {problems:?}"
        );
    }
    store.by_email.remove(user.email.key()).unwrap();
    store.sessions.remove(token.hash().as_bytes()).unwrap();
    let problems = store.check().unwrap();
    for expected in ["missing from by_email", "lists a session that is gone"] {
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{expected}: {problems:?}"
        );
    }
}

#[test]
fn a_store_in_use_is_refused_at_once() {
    let (dir, _store) = store();
    // sled's lock is per process and file; a second open in this process
    // is what a second server would hit too.
    match SledStore::open(dir.path()) {
        Err(OpenError::InUse(_)) => {}
        Err(other) => panic!("expected InUse, got {other}"),
        Ok(_) => panic!("a second open must fail"),
    }
}

#[test]
fn a_foreign_sled_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        db.open_tree("users").unwrap().insert("k", "v").unwrap();
        db.flush().unwrap();
    }
    assert!(matches!(
        open_when_free(dir.path(), Upgrade::Apply),
        Err(OpenError::Foreign { .. })
    ));
}

/// A store whose files were overwritten must be refused, not silently
/// replaced by an empty one.
#[test]
fn a_damaged_store_is_refused_with_a_clear_reason() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path()).unwrap();
        store.add_user(&email("a@x.io"), "$2b$04$h").unwrap();
    }
    wait_released(dir.path());
    let garbage: Vec<u8> = (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(dir.path().join("db"), garbage).unwrap();
    match open_when_free(dir.path(), Upgrade::Apply) {
        Err(OpenError::Foreign { reason, .. }) => assert!(reason.contains("damaged"), "{reason}"),
        Err(OpenError::Unusable { reason, .. }) => assert!(!reason.is_empty()),
        Err(other) => panic!("unexpected {other}"),
        Ok(_) => panic!("a damaged store opened as if empty"),
    }
}

/// A format-1 store of `users` users, each with a session and a reset
/// grant; returns each user's email, session token and reset token.
fn write_format_1(path: &Path, users: usize) -> Vec<(Email, Token, Token)> {
    let mut made = Vec::new();
    let mut records = Vec::new();
    for n in 1..=users as u64 {
        let user = User::existing(
            UserId(n),
            email(&format!("u{n}@x.io")),
            "$2b$04$hash".to_owned(),
        );
        let (s, r) = (Token::generate().unwrap(), Token::generate().unwrap());
        let session = LegacySession {
            token_hash: s.hash(),
            created_at: 100,
            last_seen: 200,
        };
        let grant = LegacyGrant {
            token_hash: r.hash(),
            created_at: 300,
        };
        made.push((user.email.clone(), s, r));
        records.push((user, Some(session), Some(grant)));
    }
    schema::write_format_1(path, records).unwrap();
    made
}

#[test]
fn format_1_is_refused_inspected_or_migrated_as_asked() {
    let dir = tempfile::tempdir().unwrap();
    let made = write_format_1(dir.path(), 3);
    wait_released(dir.path());
    assert!(matches!(
        open_when_free(dir.path(), Upgrade::Refuse),
        Err(OpenError::Outdated {
            found: 1,
            current: 5,
            ..
        })
    ));
    let store = open_when_free(dir.path(), Upgrade::Inspect).unwrap();
    let pending = store.pending_migrations().unwrap();
    assert_eq!(
        pending.iter().map(|m| m.version).collect::<Vec<_>>(),
        [2, 3, 4, 5]
    );
    store.migrate().unwrap();
    assert!(store.pending_migrations().unwrap().is_empty());
    assert_consistent(&store);
    for (email, session, reset) in &made {
        let user = store.user_by_email(email).unwrap();
        // Created under the old rules: verified, of unknown age.
        assert!(user.email_verified && user.created_at.is_none());
        let (found, owner) = store.session(&session.hash()).unwrap().unwrap();
        assert_eq!(
            (owner.id, found.created_at, found.last_seen),
            (user.id, 100, 200)
        );
        let (grant, owner) = store.token(&reset.hash()).unwrap().unwrap();
        assert_eq!(
            (owner.id, grant.purpose, grant.created_at),
            (user.id, Purpose::Reset, 300)
        );
    }
    assert!(!store
        .db
        .tree_names()
        .iter()
        .any(|n| n.as_ref() == b"by_session"));
}

#[test]
fn an_interrupted_migration_resumes_and_an_old_reader_is_kept_out() {
    let dir = tempfile::tempdir().unwrap();
    // More users than one batch, so stopping after one leaves work.
    let made = write_format_1(dir.path(), 600);
    wait_released(dir.path());
    {
        let store = open_when_free(dir.path(), Upgrade::Inspect).unwrap();
        assert!(!store.to_format_2(1).unwrap());
        // What an older authd reads: a marker it does not know.
        assert_eq!(
            store.meta.get("format").unwrap().as_deref(),
            Some(&b"authd-store-2"[..])
        );
    }
    wait_released(dir.path());
    // Half done is still behind: refused, not served half-converted.
    assert!(matches!(
        open_when_free(dir.path(), Upgrade::Refuse),
        Err(OpenError::Outdated { .. })
    ));
    let store = open_when_free(dir.path(), Upgrade::Apply).unwrap();
    assert!(store.pending_migrations().unwrap().is_empty());
    assert_consistent(&store);
    assert_eq!(store.counts().unwrap().sessions, 600);
    for (email, session, reset) in made.iter().step_by(97) {
        let user = store.user_by_email(email).unwrap();
        assert_eq!(
            store.session(&session.hash()).unwrap().unwrap().1.id,
            user.id
        );
        assert_eq!(store.token(&reset.hash()).unwrap().unwrap().1.id, user.id);
    }
}

/// The spelling of look-alike test user `n`: plain ones, ones that collide
/// with the user before them (a zero-width space), ones re-keyed alone
/// (fullwidth letters) and IDN domains re-keyed alone.
fn lookalike_spelling(n: u64) -> String {
    match n % 4 {
        0 => format!("user{n}@x.io"),
        1 => format!("user{}\u{200b}@x.io", n - 1),
        2 => format!("\u{ff35}\u{ff33}\u{ff25}\u{ff32}{n}@x.io"),
        _ => format!("user{n}@B\u{dc}CHER.example"),
    }
}

/// A format-2 store of `users` look-alike test users, keyed as format 2
/// keyed them (lowercased): format 1 records migrated to format 2 only.
fn write_format_2_lookalikes(path: &Path, users: u64) {
    let records = (4..4 + users).map(|n| {
        let spelling = lookalike_spelling(n);
        let user = User::existing(
            UserId(n),
            Email::stored(spelling.clone(), spelling.to_lowercase()),
            "$2b$04$hash".to_owned(),
        );
        (user, None, None)
    });
    schema::write_format_1(path, records).unwrap();
    wait_released(path);
    let store = open_when_free(path, Upgrade::Inspect).unwrap();
    assert!(store.to_format_2(usize::MAX).unwrap());
    assert_eq!(
        store
            .pending_migrations()
            .unwrap()
            .iter()
            .map(|m| m.version)
            .collect::<Vec<_>>(),
        [3, 4, 5]
    );
}

/// Every user's stored key, in id order.
fn stored_keys(store: &SledStore) -> Vec<(UserId, String)> {
    let mut keys = Vec::new();
    store
        .each_user(&mut |user| {
            keys.push((user.id, user.email.key().to_owned()));
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    keys
}

#[test]
fn format_3_rekeys_lookalikes_and_a_resumed_run_decides_alike() {
    // More users than one batch, with pairs across the batch boundary.
    let users = 600;
    let whole = tempfile::tempdir().unwrap();
    write_format_2_lookalikes(whole.path(), users);
    let store = open_when_free(whole.path(), Upgrade::Inspect).unwrap();
    assert!(store.to_format_3(usize::MAX).unwrap());
    let expected = stored_keys(&store);
    drop(store);

    let dir = tempfile::tempdir().unwrap();
    write_format_2_lookalikes(dir.path(), users);
    {
        let store = open_when_free(dir.path(), Upgrade::Inspect).unwrap();
        assert!(!store.to_format_3(1).unwrap());
        assert_eq!(
            store.meta.get("format").unwrap().as_deref(),
            Some(&b"authd-store-3"[..])
        );
    }
    wait_released(dir.path());
    assert!(matches!(
        open_when_free(dir.path(), Upgrade::Refuse),
        Err(OpenError::Outdated { found: 2, .. })
    ));
    let store = open_when_free(dir.path(), Upgrade::Apply).unwrap();
    assert!(store.pending_migrations().unwrap().is_empty());
    assert_consistent(&store);
    assert_eq!(stored_keys(&store), expected);

    for n in 4..4 + users {
        let spelling = lookalike_spelling(n);
        // Each account is reachable by the spelling it registered with.
        assert_eq!(
            store.user_by_email(&email(&spelling)).unwrap().id,
            UserId(n),
            "{spelling:?}"
        );
        let key = store.user_by_id(UserId(n)).unwrap().email.key().to_owned();
        match n % 4 {
            // The zero-width twin keeps its old key: the plain one had it.
            1 => assert_eq!(key, spelling.to_lowercase()),
            2 => assert_eq!(key, format!("user{n}@x.io")),
            3 => assert_eq!(key, format!("user{n}@xn--bcher-kva.example")),
            _ => assert_eq!(key, spelling),
        }
    }
    // Re-keyed accounts answer to their new spellings too.
    assert_eq!(
        store.user_by_email(&email("user6@x.io")).unwrap().id,
        UserId(6)
    );
    assert_eq!(
        store
            .user_by_email(&email("user7@xn--bcher-kva.example"))
            .unwrap()
            .id,
        UserId(7)
    );
    // And the pairs are listed, each with the account holding the key.
    let found = crate::store::lookalikes::lookalikes(&store, &store).unwrap();
    assert_eq!(found.len(), (users / 4) as usize);
    for pair in &found {
        let kept = pair.kept_old_key.id;
        assert_eq!(kept.0 % 4, 1);
        assert_eq!(pair.holder.as_ref().map(|h| h.id), Some(UserId(kept.0 - 1)));
    }
}

#[test]
fn a_newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path()).unwrap();
        store.meta.insert("format", "authd-store-9").unwrap();
        store.flush().unwrap();
    }
    wait_released(dir.path());
    assert!(matches!(
        open_when_free(dir.path(), Upgrade::Apply),
        Err(OpenError::TooNew { found: 9, .. })
    ));
}

#[test]
fn the_server_key_is_made_once_kept_and_rotated() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let store = SledStore::open(dir.path()).unwrap();
        let key = store.server_key().unwrap();
        assert_eq!(store.server_key().unwrap(), key);
        assert!(!key.rotating());
        key
    };
    let store = open_when_free(dir.path(), Upgrade::Refuse).unwrap();
    assert_eq!(store.server_key().unwrap(), first);
    let rotated = store.rotate_server_key().unwrap();
    assert_eq!(rotated.derive_all("x")[1], first.derive("x"));
    assert_eq!(store.server_key().unwrap(), rotated);
    // A backup carries it.
    let copy_dir = tempfile::tempdir().unwrap();
    let (copy, _) = store.backup_to(&copy_dir.path().join("copy")).unwrap();
    assert_eq!(copy.server_key().unwrap(), rotated);
}

#[test]
fn a_session_hash_in_use_is_refused() {
    let (_dir, store) = store();
    let a = store.add_user(&email("a@x.io"), "$2b$h").unwrap();
    let b = store.add_user(&email("b@x.io"), "$2b$h").unwrap();
    let token = Token::generate().unwrap();
    store
        .open_session(&session(a.id, &token, 10), "$2b$h", &[], 9)
        .unwrap();
    for user in [a.id, b.id] {
        assert!(matches!(
            store.open_session(&session(user, &token, 11), "$2b$h", &[], 9),
            Err(StoreError::InvalidValue { .. })
        ));
    }
    assert_eq!(store.sessions_of(a.id).unwrap().len(), 1);
    assert!(store.sessions_of(b.id).unwrap().is_empty());
    assert_consistent(&store);
}

#[test]
fn the_largest_session_cap_fits_a_record() {
    let (_dir, store) = store();
    let user = store.add_user(&email("a@x.io"), "$2b$h").unwrap();
    let cap = crate::auth::MAX_SESSIONS_LIMIT;
    store
        .issue_token(&grant(user.id, &Token::generate().unwrap()))
        .unwrap();
    let tokens: Vec<Token> = (0..cap + 3).map(|_| Token::generate().unwrap()).collect();
    for (n, token) in tokens.iter().enumerate() {
        store
            .open_session(&session(user.id, token, n as u64), "$2b$h", &[], cap)
            .unwrap();
    }
    assert_eq!(store.sessions_of(user.id).unwrap().len(), cap);
    assert!(store.session(&tokens[2].hash()).unwrap().is_none());
    assert_eq!(store.end_sessions_of(user.id, None).unwrap(), cap);
    assert_consistent(&store);
}
