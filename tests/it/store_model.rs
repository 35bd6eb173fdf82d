//! Model-based tests of both stores: random sequences of adds, finds,
//! updates (emails, passwords, token set/clear), expiries and deletes run
//! against the store and against a plain in-memory model. After every step
//! both agree, and `check` finds every index in step with the records.
//! proptest shrinks a failing sequence to a minimal one.
//!
//! The PostgreSQL run (with AUTHD_TEST_DATABASE_URL) gets a fresh schema per
//! case. Its ids may skip numbers (a refused insert still takes a sequence
//! value), so there the model checks that ids only grow.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use crate::common::stores::Schema;
use authd::store::{Change, Lookup, Precondition, SledStore, StoreError, UserStore};
use authd::token::{Token, TokenHash};
use authd::user::{Email, ResetGrant, Session, UserId};
use proptest::prelude::*;

/// Small pools, so collisions (taken emails, reused tokens) happen often.
const EMAILS: [&str; 5] = ["a@x.io", "B@x.io", "b@X.IO", "c@x.io", "d@y.io"];
const TOKENS: usize = 4;

#[derive(Debug, Clone)]
enum Op {
    Add(usize),
    SetEmail(usize, usize),
    SetPassword(usize, u8),
    SetSession(usize, usize, u64),
    ClearSession(usize),
    SetReset(usize, usize, u64),
    ConsumeReset(usize, usize),
    Delete(usize),
    FindEmail(usize),
    FindSession(usize),
    FindReset(usize),
    Expire(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let e = 0..EMAILS.len();
    let t = 0..TOKENS;
    let u = 0..6usize;
    prop_oneof![
        e.clone().prop_map(Op::Add),
        (u.clone(), e.clone()).prop_map(|(u, e)| Op::SetEmail(u, e)),
        (u.clone(), any::<u8>()).prop_map(|(u, p)| Op::SetPassword(u, p)),
        (u.clone(), t.clone(), 0..100u64).prop_map(|(u, t, at)| Op::SetSession(u, t, at)),
        u.clone().prop_map(Op::ClearSession),
        (u.clone(), t.clone(), 0..100u64).prop_map(|(u, t, at)| Op::SetReset(u, t, at)),
        (u.clone(), t.clone()).prop_map(|(u, t)| Op::ConsumeReset(u, t)),
        u.clone().prop_map(Op::Delete),
        e.prop_map(Op::FindEmail),
        t.clone().prop_map(Op::FindSession),
        t.prop_map(Op::FindReset),
        (0..100u64).prop_map(Op::Expire),
    ]
}

#[derive(Debug, Clone, PartialEq)]
struct ModelUser {
    email: String,
    hash: String,
    session: Option<(usize, u64)>,
    reset: Option<(usize, u64)>,
}

#[derive(Default)]
struct Model {
    users: BTreeMap<u64, ModelUser>,
    next_id: u64,
}

impl Model {
    fn key(email: &str) -> String {
        email.to_lowercase()
    }
    fn by_email(&self, email: &str) -> Option<u64> {
        self.users
            .iter()
            .find(|(_, u)| Self::key(&u.email) == Self::key(email))
            .map(|(id, _)| *id)
    }
    fn by_session(&self, t: usize) -> Option<u64> {
        self.users
            .iter()
            .find(|(_, u)| u.session.is_some_and(|(s, _)| s == t))
            .map(|(id, _)| *id)
    }
    fn by_reset(&self, t: usize) -> Option<u64> {
        self.users
            .iter()
            .find(|(_, u)| u.reset.is_some_and(|(r, _)| r == t))
            .map(|(id, _)| *id)
    }
    /// Model ids in order; op indexes pick among them (modulo).
    fn pick(&self, n: usize) -> Option<u64> {
        let ids: Vec<u64> = self.users.keys().copied().collect();
        (!ids.is_empty()).then(|| ids[n % ids.len()])
    }
}

fn tokens() -> Vec<Token> {
    (0..TOKENS).map(|_| Token::generate().unwrap()).collect()
}

fn hash_index(tokens: &[Token], hash: &TokenHash) -> usize {
    tokens.iter().position(|t| t.hash() == *hash).unwrap()
}

fn assert_agree(store: &dyn UserStore, model: &Model, tokens: &[Token]) {
    assert_eq!(store.check().unwrap(), Vec::<String>::new());
    let mut seen = Vec::new();
    store
        .each_user(&mut |user| {
            seen.push(user);
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(seen.len(), model.users.len());
    for user in seen {
        let expected = &model.users[&user.id.0];
        assert_eq!(user.email.as_str(), expected.email);
        assert_eq!(user.hashed_password, expected.hash);
        assert_eq!(
            user.session
                .map(|s| (hash_index(tokens, &s.token_hash), s.created_at)),
            expected.session
        );
        assert_eq!(
            user.reset
                .map(|r| (hash_index(tokens, &r.token_hash), r.created_at)),
            expected.reset
        );
    }
}

fn found(result: Result<authd::user::User, StoreError>) -> Option<u64> {
    match result {
        Ok(user) => Some(user.id.0),
        Err(StoreError::NotFound) => None,
        Err(e) => panic!("unexpected {e}"),
    }
}

/// Ids exactly 1, 2, 3... (sled), or only growing (PostgreSQL).
#[derive(Clone, Copy, PartialEq)]
enum Ids {
    Dense,
    Growing,
}

fn run(store: &dyn UserStore, ids: Ids, ops: Vec<Op>) {
    let tokens = tokens();
    let mut model = Model {
        next_id: 1,
        ..Model::default()
    };
    for op in ops {
        match op {
            Op::Add(e) => {
                let email = Email::parse(EMAILS[e]).unwrap();
                let result = store.add_user(&email, "$2b$04$h");
                if model.by_email(EMAILS[e]).is_some() {
                    assert!(matches!(result, Err(StoreError::EmailTaken)), "{result:?}");
                } else {
                    let id = result.unwrap().id;
                    match ids {
                        Ids::Dense => assert_eq!(id, UserId(model.next_id)),
                        Ids::Growing => assert!(id.0 >= model.next_id, "{id} reused"),
                    }
                    model.next_id = id.0;
                    model.users.insert(
                        model.next_id,
                        ModelUser {
                            email: EMAILS[e].to_owned(),
                            hash: "$2b$04$h".to_owned(),
                            session: None,
                            reset: None,
                        },
                    );
                    model.next_id += 1;
                }
            }
            Op::SetEmail(u, e) => {
                let Some(id) = model.pick(u) else { continue };
                let email = Email::parse(EMAILS[e]).unwrap();
                let result =
                    store.update_user(UserId(id), &Precondition::None, &[Change::Email(email)]);
                match model.by_email(EMAILS[e]) {
                    Some(other) if other != id => {
                        assert!(matches!(result, Err(StoreError::EmailTaken)), "{result:?}")
                    }
                    _ => {
                        result.unwrap();
                        model.users.get_mut(&id).unwrap().email = EMAILS[e].to_owned();
                    }
                }
            }
            Op::SetPassword(u, p) => {
                let Some(id) = model.pick(u) else { continue };
                let hash = format!("$2b$04${p}");
                store
                    .update_user(
                        UserId(id),
                        &Precondition::None,
                        &[Change::HashedPassword(hash.clone())],
                    )
                    .unwrap();
                model.users.get_mut(&id).unwrap().hash = hash;
            }
            Op::SetSession(u, t, at) => {
                let Some(id) = model.pick(u) else { continue };
                let session = Session {
                    token_hash: tokens[t].hash(),
                    created_at: at,
                    last_seen: at,
                };
                let result = store.update_user(
                    UserId(id),
                    &Precondition::None,
                    &[Change::Session(Some(session))],
                );
                match model.by_session(t) {
                    Some(other) if other != id => assert!(result.is_err()),
                    _ => {
                        result.unwrap();
                        model.users.get_mut(&id).unwrap().session = Some((t, at));
                    }
                }
            }
            Op::ClearSession(u) => {
                let Some(id) = model.pick(u) else { continue };
                store
                    .update_user(UserId(id), &Precondition::None, &[Change::Session(None)])
                    .unwrap();
                model.users.get_mut(&id).unwrap().session = None;
            }
            Op::SetReset(u, t, at) => {
                let Some(id) = model.pick(u) else { continue };
                let grant = ResetGrant {
                    token_hash: tokens[t].hash(),
                    created_at: at,
                };
                let result = store.update_user(
                    UserId(id),
                    &Precondition::None,
                    &[Change::Reset(Some(grant))],
                );
                match model.by_reset(t) {
                    Some(other) if other != id => assert!(result.is_err()),
                    _ => {
                        result.unwrap();
                        model.users.get_mut(&id).unwrap().reset = Some((t, at));
                    }
                }
            }
            Op::ConsumeReset(u, t) => {
                let Some(id) = model.pick(u) else { continue };
                let result = store.update_user(
                    UserId(id),
                    &Precondition::ResetIs(tokens[t].hash()),
                    &[Change::Reset(None), Change::Session(None)],
                );
                let user = model.users.get_mut(&id).unwrap();
                if user.reset.is_some_and(|(r, _)| r == t) {
                    result.unwrap();
                    user.reset = None;
                    user.session = None;
                } else {
                    assert!(
                        matches!(result, Err(StoreError::PreconditionFailed)),
                        "{result:?}"
                    );
                }
            }
            Op::Delete(u) => {
                let Some(id) = model.pick(u) else { continue };
                store.delete_user(UserId(id)).unwrap();
                model.users.remove(&id);
                assert!(matches!(
                    store.delete_user(UserId(id)),
                    Err(StoreError::NotFound)
                ));
            }
            Op::FindEmail(e) => {
                let got =
                    found(store.find_user_by(&Lookup::Email(Email::parse(EMAILS[e]).unwrap())));
                assert_eq!(got, model.by_email(EMAILS[e]));
            }
            Op::FindSession(t) => {
                let got = found(store.find_user_by(&Lookup::Session(tokens[t].hash())));
                assert_eq!(got, model.by_session(t));
            }
            Op::FindReset(t) => {
                let got = found(store.find_user_by(&Lookup::Reset(tokens[t].hash())));
                assert_eq!(got, model.by_reset(t));
            }
            Op::Expire(cutoff) => {
                let sessions = store.expire_sessions(cutoff, 0).unwrap();
                let resets = store.expire_resets(cutoff).unwrap();
                let (mut s, mut r) = (0, 0);
                for user in model.users.values_mut() {
                    if user.session.is_some_and(|(_, at)| at < cutoff) {
                        user.session = None;
                        s += 1;
                    }
                    if user.reset.is_some_and(|(_, at)| at < cutoff) {
                        user.reset = None;
                        r += 1;
                    }
                }
                assert_eq!((sessions, resets), (s, r));
            }
        }
        assert_agree(store, &model, &tokens);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn the_sled_store_behaves_like_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        run(&SledStore::open(dir.path()).unwrap(), Ids::Dense, ops);
    }
}

proptest! {
    // Each case makes and drops a schema: fewer cases keep the suite quick.
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    #[cfg_attr(
        not(authd_pg_tests),
        ignore = "PostgreSQL: set AUTHD_TEST_DATABASE_URL=postgres://... to run"
    )]
    fn the_postgres_store_behaves_like_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let schema = Schema::create();
        let store = authd::store::postgres::PgStore::connect(&schema.url, 2).unwrap();
        run(&store, Ids::Growing, ops);
    }
}
