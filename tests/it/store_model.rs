//! Model-based tests of both stores: random sequences of operations on
//! users, sessions and one-time tokens run against the store and against a
//! plain in-memory model, where sessions and tokens are records of their
//! own as in the store. After every step both agree on everything a
//! caller can read (every user, in `each_user`, by id and by email; every
//! session a login was tried with, by its hash, and each user's list,
//! newest first; every token of the pool, by its hash), `counts` matches
//! the model and `check` finds nothing wrong. proptest shrinks a failing
//! sequence to a minimal one.
//!
//! What the operations cover: adds (one, and bulk, all or nothing) with
//! email collisions in any letter case; updates of email and password,
//! with or without a password precondition, ending the user's sessions or
//! not; deletes, which take the user's sessions and tokens along; logins
//! (`open_session`) under a small, varying cap so the oldest sessions are
//! evicted often, with stale passwords (refused) and rehashes; touches
//! (which never lower `last_seen`); ending one session by hash or by
//! handle (only the owner's), all of a user's but one, or all; expiry of
//! sessions (by age or idleness) and of tokens (by expiry or age); issuing
//! tokens (replacing the user's earlier one, refusing a hash another user
//! holds), dropping them by hash or by user, and redeeming a reset (the
//! password changes, the token is consumed, every session of the user
//! ends). Operations also name users that were deleted, sessions that
//! ended or never opened and tokens no one holds, so the refusals are
//! checked too.
//!
//! Pools are small so collisions happen: five emails (three of them one
//! address in different cases), four reset tokens, three password hashes
//! (a guessed precondition is often right), a cap of one to three sessions.
//! Each login has a fresh token hash and handle, as in the service (256
//! random bits: they do not collide), so a login's hash already in use is
//! not part of the model. Times come from the model's clock, which only
//! moves forward, so a user's logins are in `created_at` order.
//!
//! The PostgreSQL run (with AUTHD_TEST_DATABASE_URL) gets a fresh schema per
//! case. Its ids may skip numbers (a refused insert still takes a sequence
//! value), so there the model checks that ids only grow.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::ops::ControlFlow;

use authd::one_time::{OneTimeToken, Purpose};
use authd::session::{Session, SessionId};
use authd::store::{
    Counts, Ends, Maintenance, Redemption, RequestStore, SledStore, StoreError, UserChange,
};
use authd::token::{Token, TokenHash};
use authd::user::{Email, NewUser, User, UserId};
use proptest::prelude::*;

/// Small pools, so collisions (taken emails, reused tokens, right and
/// wrong password guesses) happen often.
const EMAILS: [&str; 5] = ["a@x.io", "B@x.io", "b@X.IO", "c@x.io", "d@y.io"];
const TOKENS: usize = 4;
const PASSWORDS: u8 = 3;
/// Logins ask for a cap of 0 to 3 sessions per user (0 counts as 1).
const MAX_CAP: usize = 3;
/// The hash every user starts with.
const FIRST_HASH: &str = "$2b$04$first";

fn hash(p: u8) -> String {
    format!("$2b$04$p{p}")
}

/// A password precondition: the user's current hash, or one of the pool
/// (which may or may not be the current one).
#[derive(Debug, Clone, Copy)]
enum Guess {
    Current,
    Hash(u8),
}

fn guess() -> impl Strategy<Value = Guess> {
    prop_oneof![
        3 => Just(Guess::Current),
        1 => (0..PASSWORDS).prop_map(Guess::Hash),
    ]
}

/// A cutoff for an expiry: a time of a record the model picks (a
/// session's or a token's, by number) give or take a millisecond, so the
/// bounds (strictly before, or at) are hit exactly.
type Near = (usize, i64);

fn near() -> impl Strategy<Value = Near> {
    (0..16usize, -1..=1i64)
}

/// One step. `user`, `session` and `token` numbers pick among the users,
/// sessions and tokens the model knows of (mostly live ones, sometimes
/// gone ones or, for tokens, any of the pool); times are relative to the
/// model's clock.
#[derive(Debug, Clone)]
enum Op {
    Add(usize),
    AddMany(Vec<usize>),
    Update {
        user: usize,
        email: Option<usize>,
        password: Option<u8>,
        password_is: Option<Guess>,
        end_sessions: bool,
    },
    Delete(usize),
    /// A login `wait` ms after the previous step.
    Open {
        wait: u64,
        user: usize,
        password_is: Guess,
        rehash: Option<u8>,
        cap: usize,
        agent: Option<u8>,
        ip: bool,
    },
    /// Activity at the clock give or take `delta` ms (earlier than the
    /// session's `last_seen` sometimes, which must not lower it).
    Touch {
        session: usize,
        delta: i64,
    },
    EndSession(usize),
    /// `user: None` names the session's own user.
    EndById {
        user: Option<usize>,
        session: usize,
    },
    EndSessionsOf {
        user: usize,
        keep: Option<usize>,
    },
    /// `None`: no bound (0).
    ExpireSessions {
        created: Option<Near>,
        seen: Option<Near>,
    },
    /// A token issued `wait` ms after the previous step, valid for
    /// `life` ms.
    Issue {
        wait: u64,
        user: usize,
        token: usize,
        life: u64,
    },
    DropToken(usize),
    DropTokenOf(usize),
    Redeem {
        token: usize,
        password: u8,
    },
    /// `at` near a token's expiry; `issued: None` is no bound (0).
    ExpireTokens {
        at: Near,
        issued: Option<Near>,
    },
    /// The clock moves on.
    Tick(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let e = 0..EMAILS.len();
    let u = 0..16usize;
    let s = 0..16usize;
    let t = 0..2 * TOKENS;
    let p = 0..PASSWORDS;
    prop_oneof![
        3 => e.clone().prop_map(Op::Add),
        1 => proptest::collection::vec(e.clone(), 1..=3).prop_map(Op::AddMany),
        2 => (
            u.clone(),
            proptest::option::of(e),
            proptest::option::of(p.clone()),
            proptest::option::of(guess()),
            any::<bool>(),
        )
            .prop_map(|(user, email, password, password_is, end_sessions)| Op::Update {
                user,
                email,
                password,
                password_is,
                end_sessions,
            }),
        1 => u.clone().prop_map(Op::Delete),
        8 => (
            0..3u64,
            u.clone(),
            guess(),
            proptest::option::of(p.clone()),
            0..=MAX_CAP,
            proptest::option::of(0..3u8),
            any::<bool>(),
        )
            .prop_map(|(wait, user, password_is, rehash, cap, agent, ip)| Op::Open {
                wait,
                user,
                password_is,
                rehash,
                cap,
                agent,
                ip,
            }),
        2 => (s.clone(), -5..=5i64).prop_map(|(session, delta)| Op::Touch { session, delta }),
        2 => s.clone().prop_map(Op::EndSession),
        2 => (proptest::option::of(u.clone()), s.clone())
            .prop_map(|(user, session)| Op::EndById { user, session }),
        1 => (u.clone(), proptest::option::of(s))
            .prop_map(|(user, keep)| Op::EndSessionsOf { user, keep }),
        2 => (
            proptest::option::weighted(0.7, near()),
            proptest::option::weighted(0.7, near()),
        )
            .prop_map(|(created, seen)| Op::ExpireSessions { created, seen }),
        3 => (0..3u64, u.clone(), t.clone(), 0..8u64).prop_map(|(wait, user, token, life)| {
            Op::Issue {
                wait,
                user,
                token,
                life,
            }
        }),
        1 => t.clone().prop_map(Op::DropToken),
        1 => u.prop_map(Op::DropTokenOf),
        2 => (t, p).prop_map(|(token, password)| Op::Redeem { token, password }),
        2 => (near(), proptest::option::weighted(0.5, near()))
            .prop_map(|(at, issued)| Op::ExpireTokens { at, issued }),
        2 => (1..10u64).prop_map(Op::Tick),
    ]
}

#[derive(Debug, Clone)]
struct ModelUser {
    email: String,
    hash: String,
    verified: bool,
    created_at: Option<u64>,
}

struct Model {
    users: BTreeMap<u64, ModelUser>,
    /// Every id handed out, deleted users' too, in order.
    known: Vec<u64>,
    next_id: u64,
    /// Live sessions in login order, each with its login number (the
    /// eviction order, and the order among equal `created_at`).
    sessions: Vec<(u64, Session)>,
    logins: u64,
    /// Every session a login was attempted with, ended and refused ones
    /// too, for lookups that must find nothing.
    made: Vec<Session>,
    /// A session that was never opened.
    stray: Session,
    tokens: Vec<OneTimeToken>,
    pool: Vec<TokenHash>,
    /// The clock, in Unix ms.
    now: u64,
}

impl Model {
    fn new() -> Model {
        Model {
            users: BTreeMap::new(),
            known: Vec::new(),
            next_id: 1,
            sessions: Vec::new(),
            logins: 0,
            made: Vec::new(),
            stray: Session {
                id: SessionId::generate().unwrap(),
                token_hash: Token::generate().unwrap().hash(),
                user: UserId(u64::MAX),
                created_at: 0,
                last_seen: 0,
                user_agent: None,
                ip: None,
            },
            tokens: Vec::new(),
            pool: (0..TOKENS)
                .map(|_| Token::generate().unwrap().hash())
                .collect(),
            now: 1_000,
        }
    }

    fn key(email: &str) -> String {
        email.to_lowercase()
    }

    fn by_email(&self, email: &str) -> Option<u64> {
        self.users
            .iter()
            .find(|(_, u)| Self::key(&u.email) == Self::key(email))
            .map(|(id, _)| *id)
    }

    fn user(&self, id: u64) -> Option<User> {
        self.users.get(&id).map(|u| User {
            id: UserId(id),
            email: Email::parse(&u.email).unwrap(),
            hashed_password: u.hash.clone(),
            // Every hash the model makes stands for an authd hash.
            password_normalized: true,
            email_verified: u.verified,
            created_at: u.created_at,
            pending_email: None,
            totp: None,
        })
    }

    /// A user id: mostly a live user's, one time in four any id handed
    /// out (so deleted ones too); `None` before the first add.
    fn pick_user(&self, n: usize) -> Option<u64> {
        if n % 4 != 3 && !self.users.is_empty() {
            self.users.keys().nth(n / 4 % self.users.len()).copied()
        } else if !self.known.is_empty() {
            Some(self.known[n % self.known.len()])
        } else {
            None
        }
    }

    /// A session (its hash, handle and user): mostly a live one, else
    /// any ever tried, else one never opened.
    fn pick_session(&self, n: usize) -> &Session {
        if n % 4 != 3 && !self.sessions.is_empty() {
            &self.sessions[n / 4 % self.sessions.len()].1
        } else if !self.made.is_empty() {
            &self.made[n % self.made.len()]
        } else {
            &self.stray
        }
    }

    /// A token hash: for even `n` a live token's, if any, else one of the
    /// pool (held or not).
    fn pick_token(&self, n: usize) -> TokenHash {
        if n.is_multiple_of(2) && !self.tokens.is_empty() {
            self.tokens[n / 2 % self.tokens.len()].token_hash
        } else {
            self.pool[n / 2 % self.pool.len()]
        }
    }

    fn session(&self, hash: &TokenHash) -> Option<&Session> {
        self.sessions
            .iter()
            .map(|(_, s)| s)
            .find(|s| s.token_hash == *hash)
    }

    /// `user`'s sessions, newest first (equal times: the later login first).
    fn sessions_of(&self, user: u64) -> Vec<Session> {
        let mut mine: Vec<&(u64, Session)> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.user.0 == user)
            .collect();
        mine.sort_by_key(|(n, s)| (Reverse(s.created_at), Reverse(*n)));
        mine.into_iter().map(|(_, s)| s.clone()).collect()
    }

    /// Ends the sessions `end` picks; returns how many.
    fn end_sessions(&mut self, end: impl Fn(&Session) -> bool) -> usize {
        let before = self.sessions.len();
        self.sessions.retain(|(_, s)| !end(s));
        before - self.sessions.len()
    }

    /// A time of the token `pick_token(n)` names, give or take `d` ms; the
    /// clock's if it names none.
    fn token_time(&self, (n, d): Near, time: fn(&OneTimeToken) -> u64) -> u64 {
        let base = self.token(&self.pick_token(n)).map_or(self.now, time);
        base.saturating_add_signed(d)
    }

    fn token(&self, hash: &TokenHash) -> Option<&OneTimeToken> {
        self.tokens.iter().find(|t| t.token_hash == *hash)
    }

    fn counts(&self) -> Counts {
        Counts {
            users: self.users.len(),
            sessions: self.sessions.len(),
            tokens: self.tokens.len(),
        }
    }

    /// A clock reading `delta` ms from now.
    fn at(&self, delta: i64) -> u64 {
        self.now.saturating_add_signed(delta)
    }
}

/// The refusals the model predicts; anything else from the store fails
/// the test.
#[derive(Debug, PartialEq)]
enum Refused {
    NotFound,
    EmailTaken,
    PreconditionFailed,
    HashHeld,
}

fn outcome<T>(result: Result<T, StoreError>) -> Result<T, Refused> {
    result.map_err(|e| match e {
        StoreError::NotFound => Refused::NotFound,
        StoreError::EmailTaken => Refused::EmailTaken,
        StoreError::PreconditionFailed => Refused::PreconditionFailed,
        StoreError::InvalidValue { field: "token", .. } => Refused::HashHeld,
        other => panic!("unexpected store error: {other}"),
    })
}

fn found(result: Result<User, StoreError>) -> Option<User> {
    match outcome(result) {
        Ok(user) => Some(user),
        Err(Refused::NotFound) => None,
        Err(e) => panic!("a lookup refused with {e:?}"),
    }
}

/// Both halves of a store.
trait Store: RequestStore + Maintenance {}

impl<T: RequestStore + Maintenance> Store for T {}

/// Everything a caller can read agrees with the model, and the store
/// finds itself consistent.
fn assert_agree(store: &dyn Store, model: &Model) {
    assert_eq!(store.check().unwrap(), Vec::<String>::new());
    assert_eq!(store.counts().unwrap(), model.counts());
    let mut seen = Vec::new();
    store
        .each_user(&mut |user| {
            seen.push(user);
            ControlFlow::Continue(())
        })
        .unwrap();
    let expected: Vec<User> = model
        .users
        .keys()
        .map(|id| model.user(*id).unwrap())
        .collect();
    assert_eq!(seen, expected, "each_user");
    for &id in &model.known {
        assert_eq!(
            found(store.user_by_id(UserId(id))),
            model.user(id),
            "user {id}"
        );
        assert_eq!(
            store.sessions_of(UserId(id)).unwrap(),
            model.sessions_of(id),
            "sessions of user {id}"
        );
    }
    for raw in EMAILS {
        let email = Email::parse(raw).unwrap();
        assert_eq!(
            found(store.user_by_email(&email)),
            model.by_email(raw).and_then(|id| model.user(id)),
            "user by email {raw}"
        );
    }
    for hash in model
        .made
        .iter()
        .chain([&model.stray])
        .map(|s| &s.token_hash)
    {
        let expected = model
            .session(hash)
            .map(|s| (s.clone(), model.user(s.user.0).unwrap()));
        assert_eq!(store.session(hash).unwrap(), expected, "session {hash:?}");
    }
    for hash in &model.pool {
        let expected = model
            .token(hash)
            .map(|t| (*t, model.user(t.user.0).unwrap()));
        assert_eq!(store.token(hash).unwrap(), expected, "token {hash:?}");
    }
}

/// Ids exactly 1, 2, 3... (sled), or only growing (PostgreSQL).
#[derive(Clone, Copy, PartialEq)]
enum Ids {
    Dense,
    Growing,
}

impl Model {
    /// Checks the ids the store gave to users just added, and records them.
    fn added(&mut self, ids: Ids, emails: &[&str], got: &[UserId]) {
        assert_eq!(got.len(), emails.len());
        for (email, id) in emails.iter().zip(got) {
            match ids {
                Ids::Dense => assert_eq!(id.0, self.next_id, "ids are dense on sled"),
                Ids::Growing => assert!(id.0 >= self.next_id, "{id} reused"),
            }
            assert!(!self.known.contains(&id.0), "{id} reused");
            self.next_id = id.0 + 1;
            self.known.push(id.0);
            self.users.insert(
                id.0,
                ModelUser {
                    email: (*email).to_owned(),
                    hash: FIRST_HASH.to_owned(),
                    // As an import's users are (`AddMany`); one `Add` sets
                    // its own.
                    verified: true,
                    created_at: None,
                },
            );
        }
    }
}

/// A few users to start with (so that fewer operations find nobody to
/// act on), then the operations.
fn ops() -> impl Strategy<Value = Vec<Op>> {
    (
        proptest::collection::vec((0..EMAILS.len()).prop_map(Op::Add), 0..=3),
        proptest::collection::vec(op(), 1..40),
    )
        .prop_map(|(mut adds, ops)| {
            adds.extend(ops);
            adds
        })
}

fn run(store: &dyn Store, ids: Ids, ops: Vec<Op>) {
    let mut model = Model::new();
    for op in ops {
        step(store, &mut model, ids, op);
        assert_agree(store, &model);
    }
}

fn step(store: &dyn Store, model: &mut Model, ids: Ids, op: Op) {
    match op {
        Op::Add(e) => {
            let new = NewUser {
                email: Email::parse(EMAILS[e]).unwrap(),
                hashed_password: FIRST_HASH.to_owned(),
                password_normalized: true,
                email_verified: false,
                created_at: Some(1_000 + e as u64),
                totp: None,
            };
            let result = outcome(store.create_user(&new));
            if model.by_email(EMAILS[e]).is_some() {
                assert_eq!(result, Err(Refused::EmailTaken));
            } else {
                let user = result.unwrap();
                model.added(ids, &[EMAILS[e]], &[user.id]);
                if let Some(added) = model.users.get_mut(&user.id.0) {
                    added.verified = false;
                    added.created_at = new.created_at;
                }
                assert_eq!(Some(user), model.user(model.next_id - 1));
            }
        }
        Op::AddMany(batch) => {
            let emails: Vec<&str> = batch.iter().map(|e| EMAILS[*e]).collect();
            let users: Vec<NewUser> = emails
                .iter()
                .map(|e| NewUser {
                    email: Email::parse(e).unwrap(),
                    hashed_password: FIRST_HASH.to_owned(),
                    password_normalized: true,
                    email_verified: true,
                    created_at: None,
                    totp: None,
                })
                .collect();
            let result = outcome(store.add_users(&users));
            let mut keys: Vec<String> = emails.iter().map(|e| Model::key(e)).collect();
            keys.sort();
            keys.dedup();
            let taken = emails.iter().any(|e| model.by_email(e).is_some());
            if taken || keys.len() < emails.len() {
                assert_eq!(result, Err(Refused::EmailTaken));
            } else {
                let got = result.unwrap();
                if ids == Ids::Growing {
                    // Matched to their emails, but not necessarily
                    // numbered in order on PostgreSQL.
                    let mut sorted = got.clone();
                    sorted.sort();
                    let order: Vec<&str> = sorted
                        .iter()
                        .map(|id| emails[got.iter().position(|g| g == id).unwrap()])
                        .collect();
                    model.added(ids, &order, &sorted);
                } else {
                    model.added(ids, &emails, &got);
                }
            }
        }
        Op::Update {
            user,
            email,
            password,
            password_is,
            end_sessions,
        } => {
            let Some(id) = model.pick_user(user) else {
                return;
            };
            let mut changes = Vec::new();
            if let Some(e) = email {
                changes.push(UserChange::Email(Email::parse(EMAILS[e]).unwrap()));
            }
            if let Some(p) = password {
                changes.push(UserChange::HashedPassword(hash(p)));
            }
            let current = model.users.get(&id).map(|u| u.hash.clone());
            let password_is = password_is.map(|g| match g {
                Guess::Current => current.clone().unwrap_or_else(|| hash(0)),
                Guess::Hash(p) => hash(p),
            });
            // A password change that ends the sessions drops the pending
            // reset token too (what an administrator's change does).
            let ends = Ends {
                sessions: end_sessions,
                tokens: if end_sessions && password.is_some() {
                    &[Purpose::Reset]
                } else {
                    &[]
                },
                ..Ends::default()
            };
            let result =
                outcome(store.update_user(UserId(id), password_is.as_deref(), &changes, ends));
            let expected = match &current {
                None => Err(Refused::NotFound),
                Some(now) if password_is.as_ref().is_some_and(|p| p != now) => {
                    Err(Refused::PreconditionFailed)
                }
                Some(_)
                    if email.is_some_and(|e| {
                        model.by_email(EMAILS[e]).is_some_and(|other| other != id)
                    }) =>
                {
                    Err(Refused::EmailTaken)
                }
                Some(_) => {
                    let user = model.users.get_mut(&id).unwrap();
                    if let Some(e) = email {
                        user.email = EMAILS[e].to_owned();
                    }
                    if let Some(p) = password {
                        user.hash = hash(p);
                    }
                    if ends.sessions {
                        model.end_sessions(|s| s.user.0 == id);
                    }
                    if !ends.tokens.is_empty() {
                        model
                            .tokens
                            .retain(|t| !(t.user.0 == id && t.purpose == Purpose::Reset));
                    }
                    Ok(model.user(id).unwrap())
                }
            };
            assert_eq!(result, expected);
        }
        Op::Delete(user) => {
            let Some(id) = model.pick_user(user) else {
                return;
            };
            let result = outcome(store.delete_user(UserId(id)));
            if model.users.remove(&id).is_some() {
                assert_eq!(result, Ok(()));
                model.end_sessions(|s| s.user.0 == id);
                model.tokens.retain(|t| t.user.0 != id);
            } else {
                assert_eq!(result, Err(Refused::NotFound));
            }
        }
        Op::Open {
            wait,
            user,
            password_is,
            rehash,
            cap,
            agent,
            ip,
        } => {
            model.now += wait;
            let Some(id) = model.pick_user(user) else {
                return;
            };
            let session = Session {
                id: SessionId::generate().unwrap(),
                token_hash: Token::generate().unwrap().hash(),
                user: UserId(id),
                created_at: model.now,
                last_seen: model.now,
                user_agent: agent.map(|a| format!("agent/{a}")),
                ip: ip.then(|| "192.0.2.7".to_owned()),
            };
            model.made.push(session.clone());
            let current = model.users.get(&id).map(|u| u.hash.clone());
            let password_is = match password_is {
                Guess::Current => current.clone().unwrap_or_else(|| hash(0)),
                Guess::Hash(p) => hash(p),
            };
            let rehashed = rehash.map(hash);
            let changes: Vec<UserChange> = rehashed
                .iter()
                .map(|h| UserChange::HashedPassword(h.clone()))
                .collect();
            let result = outcome(store.open_session(&session, &password_is, &changes, cap));
            let expected = match current {
                None => Err(Refused::NotFound),
                Some(now) if now != password_is => Err(Refused::PreconditionFailed),
                Some(_) => {
                    if let Some(h) = rehashed {
                        model.users.get_mut(&id).unwrap().hash = h;
                    }
                    model.logins += 1;
                    model.sessions.push((model.logins, session));
                    // The user's oldest logins end first.
                    let mine: Vec<u64> = model
                        .sessions
                        .iter()
                        .filter(|(_, s)| s.user.0 == id)
                        .map(|(n, _)| *n)
                        .collect();
                    let excess = mine.len().saturating_sub(cap.max(1));
                    model.sessions.retain(|(n, _)| !mine[..excess].contains(n));
                    Ok(())
                }
            };
            assert_eq!(result, expected);
        }
        Op::Touch { session, delta } => {
            let hash = model.pick_session(session).token_hash;
            let at = model.at(delta);
            store.touch_session(&hash, at).unwrap();
            if let Some((_, s)) = model
                .sessions
                .iter_mut()
                .find(|(_, s)| s.token_hash == hash)
            {
                s.last_seen = s.last_seen.max(at);
            }
        }
        Op::EndSession(session) => {
            let hash = model.pick_session(session).token_hash;
            let ended = store.end_session(&hash).unwrap();
            assert_eq!(ended, model.end_sessions(|s| s.token_hash == hash) == 1);
        }
        Op::EndById { user, session } => {
            let picked = model.pick_session(session);
            let handle = picked.id;
            let Some(id) = user.map_or(Some(picked.user.0), |n| model.pick_user(n)) else {
                return;
            };
            let ended = store.end_session_by_id(UserId(id), handle).unwrap();
            let expected = model.end_sessions(|s| s.id == handle && s.user.0 == id) == 1;
            assert_eq!(ended, expected, "ending {handle:?} of user {id}");
        }
        Op::EndSessionsOf { user, keep } => {
            let Some(id) = model.pick_user(user) else {
                return;
            };
            let keep = keep.map(|n| model.pick_session(n).token_hash);
            let ended = store.end_sessions_of(UserId(id), keep.as_ref()).unwrap();
            let expected = model.end_sessions(|s| s.user.0 == id && Some(s.token_hash) != keep);
            assert_eq!(ended, expected);
        }
        Op::ExpireSessions { created, seen } => {
            let created_before = created.map_or(0, |(n, d)| {
                model.pick_session(n).created_at.saturating_add_signed(d)
            });
            let seen_before = seen.map_or(0, |(n, d)| {
                model.pick_session(n).last_seen.saturating_add_signed(d)
            });
            let ended = store.expire_sessions(created_before, seen_before).unwrap();
            let expected =
                model.end_sessions(|s| s.created_at < created_before || s.last_seen < seen_before);
            assert_eq!(ended, expected);
        }
        Op::Issue {
            wait,
            user,
            token,
            life,
        } => {
            model.now += wait;
            let Some(id) = model.pick_user(user) else {
                return;
            };
            let issued = OneTimeToken {
                token_hash: model.pick_token(token),
                user: UserId(id),
                purpose: Purpose::Reset,
                created_at: model.now,
                expires_at: model.now + life,
            };
            let result = outcome(store.issue_token(&issued));
            // A hash held by another user is refused first (on PostgreSQL
            // the insert meets the hash's key before the user's foreign
            // key; sled checks in the same order).
            let expected = if model
                .token(&issued.token_hash)
                .is_some_and(|t| t.user.0 != id)
            {
                Err(Refused::HashHeld)
            } else if !model.users.contains_key(&id) {
                Err(Refused::NotFound)
            } else {
                model.tokens.retain(|t| {
                    !(t.user.0 == id && t.purpose == Purpose::Reset)
                        && t.token_hash != issued.token_hash
                });
                model.tokens.push(issued);
                Ok(())
            };
            assert_eq!(result, expected);
        }
        Op::DropToken(token) => {
            let hash = model.pick_token(token);
            let dropped = store.drop_token(&hash).unwrap();
            let before = model.tokens.len();
            model.tokens.retain(|t| t.token_hash != hash);
            assert_eq!(dropped, model.tokens.len() < before);
        }
        Op::DropTokenOf(user) => {
            let Some(id) = model.pick_user(user) else {
                return;
            };
            let dropped = store.drop_token_of(UserId(id), Purpose::Reset).unwrap();
            let before = model.tokens.len();
            model
                .tokens
                .retain(|t| !(t.user.0 == id && t.purpose == Purpose::Reset));
            assert_eq!(dropped, model.tokens.len() < before);
        }
        Op::Redeem { token, password } => {
            let hash_of_token = model.pick_token(token);
            // Redeemed as the service does: for the token's own user (or
            // user 1 for a token nobody holds), at the model's time.
            let owner = model.token(&hash_of_token).map_or(UserId(1), |t| t.user);
            let hashed = hash(password);
            let ends = Ends {
                sessions: true,
                ..Ends::default()
            };
            let redemption = Redemption {
                token_hash: &hash_of_token,
                user: owner,
                purpose: Purpose::Reset,
                now: model.now,
                issued_from: 0,
            };
            let changes = [UserChange::HashedPassword(hashed)];
            let result = outcome(store.redeem(&redemption, &changes, ends));
            let expected = match model.token(&hash_of_token).copied() {
                Some(t) if t.purpose == Purpose::Reset && model.now < t.expires_at => {
                    let id = t.user.0;
                    model.users.get_mut(&id).unwrap().hash = hash(password);
                    model.tokens.retain(|t| t.token_hash != hash_of_token);
                    model.end_sessions(|s| s.user.0 == id);
                    Ok(model.user(id).unwrap())
                }
                _ => Err(Refused::PreconditionFailed),
            };
            assert_eq!(result, expected);
        }
        Op::ExpireTokens { at, issued } => {
            let now = model.token_time(at, |t| t.expires_at);
            let issued_before = issued.map_or(0, |near| model.token_time(near, |t| t.created_at));
            let dropped = store.expire_tokens(now, issued_before).unwrap();
            let before = model.tokens.len();
            model
                .tokens
                .retain(|t| !(now >= t.expires_at || t.created_at < issued_before));
            assert_eq!(dropped, before - model.tokens.len());
        }
        Op::Tick(ms) => model.now += ms,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn the_sled_store_behaves_like_the_model(ops in ops()) {
        let dir = tempfile::tempdir().unwrap();
        run(&SledStore::open(dir.path()).unwrap(), Ids::Dense, ops);
    }
}

#[cfg(feature = "postgres")]
proptest! {
    // Each case makes and drops a schema: fewer cases keep the suite quick.
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    #[cfg_attr(
        not(authd_pg_tests),
        ignore = "PostgreSQL: set AUTHD_TEST_DATABASE_URL=postgres://... to run"
    )]
    fn the_postgres_store_behaves_like_the_model(ops in ops()) {
        use crate::common::stores::Schema;
        use authd::store::Upgrade;
        let schema = Schema::create();
        let store =
            authd::store::postgres::PgStore::connect(&schema.url, 2, Upgrade::Apply).unwrap();
        run(&store, Ids::Growing, ops);
    }
}
