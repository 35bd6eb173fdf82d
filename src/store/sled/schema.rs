//! The sled store's format and its migration chain.
//!
//! `meta["format"]` says which layout a directory holds
//! (`authd-store-N`). Each migration brings format N to N + 1; they run in
//! order at start (`serve`) or by `authd migrate`. A migration first
//! writes the new marker and a `migrating` key, so an older authd refuses
//! a half-converted store; it then converts records in batches, each one
//! transaction and one flush, skipping records already converted, so a
//! crash at any point resumes where it stopped; the `migrating` key goes
//! last.

use std::path::Path;

use sled::Transactional;

use super::{flatten, owned_in, put_owned, tx, SledStore};
use crate::codec::{
    decode_id, decode_user_v1, decode_user_v2, encode_id, encode_session, encode_token,
    encode_user, encode_user_v2, is_user_v1, is_user_v2,
};
use crate::one_time::{OneTimeToken, Purpose};
use crate::server_key::ServerKey;
use crate::session::{Session, SessionId};
use crate::store::{absolute, Found, Migration, OpenError, OpenMode, StoreError, Upgrade};

/// 32 bytes from the OS random source.
pub(crate) fn random_key() -> Result<[u8; 32], StoreError> {
    let mut key = [0u8; 32];
    crate::token::fill_random(&mut key).map_err(|e| StoreError::Backend(e.to_string()))?;
    Ok(key)
}

/// Key in `meta` that marks a directory as an authd store, and its format.
const MARKER_KEY: &[u8] = b"format";
/// Prefix of the marker; the format number follows.
const MARKER_PREFIX: &str = "authd-store-";
/// Key in `meta` present while a migration runs: the format it started
/// from.
const MIGRATING_KEY: &[u8] = b"migrating";
/// Key in `meta` that health checks write, to prove the store can write.
pub(super) const HEARTBEAT_KEY: &[u8] = b"heartbeat";
/// Key in `meta` holding the next user id to hand out.
pub(super) const NEXT_ID_KEY: &[u8] = b"next_id";
/// Keys in `meta` holding the server key and, during a rotation, the
/// previous one.
const SERVER_KEY: &[u8] = b"server_key";
const PREVIOUS_SERVER_KEY: &[u8] = b"server_key_previous";

/// The format this authd writes.
pub const CURRENT_FORMAT: u32 = 5;

/// Users converted per transaction: small enough that a transaction stays
/// cheap, large enough that a million users take a few thousand flushes.
const BATCH: usize = 256;

/// Expiry given to a reset grant of format 1, which kept only its issue
/// time: none of its own, so the configured lifetime from its issue time
/// decides, exactly as it did before the migration.
const V1_RESET_EXPIRY: u64 = u64::MAX;

/// The chain: the migration to format `version` from the one before.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 2,
        description:
            "sessions and reset tokens move out of the user records into trees of their own",
    },
    Migration {
        version: 3,
        description: "email keys by Unicode and IDN rules (NFKC_Casefold, UTS 46); look-alike \
                      accounts keep their old keys and `authd check` lists them",
    },
    Migration {
        version: 4,
        description: "users record whether their address is verified (existing accounts are) \
                      and when they were created; records are rewritten as they change",
    },
    Migration {
        version: 5,
        description: "users record whether their password was normalised (NFC) before hashing \
                      (existing hashes were not: a login rehashes them) and their second factor; \
                      records are rewritten as they change",
    },
];

fn marker(format: u32) -> String {
    format!("{MARKER_PREFIX}{format}")
}

/// The format a marker names, if it is an authd marker.
fn format_of(value: &[u8]) -> Option<u32> {
    std::str::from_utf8(value)
        .ok()?
        .strip_prefix(MARKER_PREFIX)?
        .parse()
        .ok()
}

/// What state a directory's store is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// Current: nothing to do.
    Current,
    /// Of an older format, or (`interrupted`) in the middle of a
    /// migration from `from`.
    Behind { from: u32, interrupted: bool },
}

/// Reads the store's state from its marker.
fn state(store: &SledStore, path: &Path) -> Result<Option<State>, OpenError> {
    let unusable = |e: sled::Error| OpenError::Unusable {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let Some(value) = store.meta.get(MARKER_KEY).map_err(unusable)? else {
        return Ok(None);
    };
    let Some(format) = format_of(&value) else {
        return Err(OpenError::Foreign {
            path: path.to_owned(),
            reason: format!(
                "unknown format marker {:?}",
                String::from_utf8_lossy(&value)
            ),
        });
    };
    if format > CURRENT_FORMAT {
        return Err(OpenError::TooNew {
            target: path.display().to_string(),
            found: format,
            current: CURRENT_FORMAT,
        });
    }
    if let Some(from) = store.meta.get(MIGRATING_KEY).map_err(unusable)? {
        let from = decode_id(&from).map(|id| id.0 as u32).unwrap_or(1);
        return Ok(Some(State::Behind {
            from,
            interrupted: true,
        }));
    }
    Ok(Some(if format == CURRENT_FORMAT {
        State::Current
    } else {
        State::Behind {
            from: format,
            interrupted: false,
        }
    }))
}

/// Checks (or, for a new directory, writes) the marker, and migrates as
/// `upgrade` says; a store of the current format then has any interrupted
/// import rolled back. Returns whether it wrote a new store's marker
/// (`mode` permitting: [`OpenMode::Existing`] refuses instead).
pub(super) fn prepare(
    store: &SledStore,
    path: &Path,
    had_files: bool,
    upgrade: Upgrade,
    mode: OpenMode,
) -> Result<bool, OpenError> {
    let unusable = |e: StoreError| OpenError::Unusable {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    match state(store, path)? {
        Some(State::Current) => {
            store.recover_imports(path).map_err(unusable)?;
            Ok(false)
        }
        Some(State::Behind { from, interrupted }) => match upgrade {
            Upgrade::Apply => {
                store.migrate().map_err(unusable)?;
                store.recover_imports(path).map_err(unusable)?;
                Ok(false)
            }
            Upgrade::Inspect => Ok(false),
            Upgrade::Refuse => Err(OpenError::Outdated {
                target: path.display().to_string(),
                found: from,
                current: CURRENT_FORMAT,
                note: if interrupted {
                    format!("; a migration to format {} was interrupted", from + 1)
                } else {
                    String::new()
                },
            }),
        },
        None if !store.users.is_empty() => Err(OpenError::Foreign {
            path: path.to_owned(),
            reason: "it holds users but no authd format marker".to_owned(),
        }),
        // Existing store files that hold no marker: another program's
        // sled database, or a damaged one that recovered to nothing.
        // Starting afresh there would silently hide the loss.
        None if had_files => Err(OpenError::Foreign {
            path: path.to_owned(),
            reason: "its store files hold no authd data (damaged, or written by another \
                     program); restore a backup, or point --data-dir at a new directory"
                .to_owned(),
        }),
        // An empty `db` file (sled stopped while creating it): not a
        // store to open as existing.
        None if mode == OpenMode::Existing => Err(OpenError::NoStore {
            path: absolute(path),
            found: Found::OtherFiles,
        }),
        None => {
            store
                .meta
                .insert(MARKER_KEY, marker(CURRENT_FORMAT).as_bytes())
                .map_err(|e| unusable(e.into()))?;
            store.flush().map_err(unusable)?;
            Ok(true)
        }
    }
}

impl SledStore {
    /// The migrations this store still needs, oldest first.
    pub fn pending_migrations(&self) -> Result<Vec<Migration>, StoreError> {
        let from = match state(self, Path::new("store")) {
            Ok(Some(State::Behind { from, .. })) => from,
            Ok(_) => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::Corrupt(e.to_string())),
        };
        Ok(MIGRATIONS
            .iter()
            .filter(|m| m.version > from)
            .cloned()
            .collect())
    }

    /// Applies every pending migration, resuming one a crash interrupted;
    /// returns those applied.
    pub fn migrate(&self) -> Result<Vec<Migration>, StoreError> {
        let pending = self.pending_migrations()?;
        for migration in &pending {
            match migration.version {
                2 => self.to_format_2(usize::MAX)?,
                3 => self.to_format_3(usize::MAX)?,
                4 => self.to_format_4()?,
                5 => self.to_format_5()?,
                other => {
                    return Err(StoreError::Corrupt(format!(
                        "no migration to format {other}"
                    )))
                }
            };
        }
        Ok(pending)
    }

    /// Converts a format-1 store, at most `batches` batches of users (a
    /// test stops it early to stand for a crash); returns whether it
    /// finished.
    pub fn to_format_2(&self, batches: usize) -> Result<bool, StoreError> {
        // The marker and the `migrating` key in one write, and the marker
        // again on a resume: a crash can never leave a half-converted store
        // that an older authd would take for its own.
        self.begin_migration(1)?;
        let mut after: Option<sled::IVec> = None;
        for _ in 0..batches {
            let keys = self.users_to_convert(&after, is_user_v1)?;
            let Some(last) = keys.last().cloned() else {
                return self.finish_format_2().map(|()| true);
            };
            // Handles are drawn before the transaction, whose closure may
            // run more than once.
            let handles = keys
                .iter()
                .map(|_| SessionId::generate())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| StoreError::Backend(e.to_string()))?;
            self.convert_batch(&keys, &handles)?;
            self.flush()?;
            after = Some(last);
        }
        Ok(false)
    }

    /// Converts the format-1 records under `keys` in one transaction.
    fn convert_batch(&self, keys: &[sled::IVec], handles: &[SessionId]) -> Result<(), StoreError> {
        (&self.users, &self.sessions, &self.tokens, &self.owned)
            .transaction(|(users, sessions, tokens, owned)| {
                for (key, handle) in keys.iter().zip(handles) {
                    let Some(bytes) = users.get(key)? else {
                        continue;
                    };
                    if !is_user_v1(&bytes) {
                        continue;
                    }
                    let id = tx(decode_id(key))?;
                    let (user, session, reset) = tx(decode_user_v1(id, &bytes))?;
                    let mut list = owned_in(owned, id)?;
                    if let Some(old) = session {
                        let session = Session {
                            id: *handle,
                            token_hash: old.token_hash,
                            user: id,
                            created_at: old.created_at,
                            last_seen: old.last_seen,
                            user_agent: None,
                            ip: None,
                        };
                        sessions.insert(
                            old.token_hash.as_bytes().as_slice(),
                            tx(encode_session(&session))?,
                        )?;
                        list.sessions.push((old.token_hash, handle.0));
                    }
                    if let Some(grant) = reset {
                        let token = OneTimeToken {
                            token_hash: grant.token_hash,
                            user: id,
                            purpose: Purpose::Reset,
                            created_at: grant.created_at,
                            expires_at: V1_RESET_EXPIRY,
                        };
                        tokens.insert(
                            grant.token_hash.as_bytes().as_slice(),
                            tx(encode_token(&token))?,
                        )?;
                        list.tokens.push((Purpose::Reset.code(), grant.token_hash));
                    }
                    put_owned(owned, id, &list)?;
                    users.insert(key, tx(encode_user_v2(&user))?)?;
                }
                Ok(())
            })
            .map_err(flatten)
    }

    /// Drops format 1's token indexes and ends the migration.
    fn finish_format_2(&self) -> Result<(), StoreError> {
        for name in ["by_session", "by_reset"] {
            self.db.drop_tree(name)?;
        }
        self.meta.remove(MIGRATING_KEY)?;
        self.flush()
    }

    /// Writes the marker of format `from + 1` with the `migrating` key (kept
    /// from an interrupted run) in one write, and flushes: a crash can never
    /// leave a half-converted store that an older authd would take for its
    /// own.
    fn begin_migration(&self, from: u32) -> Result<(), StoreError> {
        let from_value = encode_id(crate::user::UserId(u64::from(from)));
        let new_marker = marker(from + 1);
        self.meta
            .transaction(|meta| -> super::TxResult<()> {
                if meta.get(MIGRATING_KEY)?.is_none() {
                    meta.insert(MIGRATING_KEY, from_value.as_slice())?;
                }
                meta.insert(MARKER_KEY, new_marker.as_bytes())?;
                Ok(())
            })
            .map_err(flatten)?;
        self.flush()
    }

    /// The next (up to [`BATCH`]) user keys after `after` whose records
    /// `pending` says are still to convert, in id order.
    fn users_to_convert(
        &self,
        after: &Option<sled::IVec>,
        pending: fn(&[u8]) -> bool,
    ) -> Result<Vec<sled::IVec>, StoreError> {
        Ok(match after {
            Some(last) => self.users.range::<&[u8], _>((
                std::ops::Bound::Excluded(last.as_ref()),
                std::ops::Bound::Unbounded,
            )),
            None => self.users.iter(),
        }
        .filter_map(|entry| match entry {
            Ok((key, value)) if pending(&value) => Some(Ok(key)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        })
        .take(BATCH)
        .collect::<Result<_, _>>()?)
    }

    /// Re-keys a format-2 store by the email rules of format 3, at most
    /// `batches` batches of users (a test stops it early to stand for a
    /// crash); returns whether it finished.
    ///
    /// Users go in id order. A user whose address keys as before keeps its
    /// index entry. One whose new key is free moves there. One whose new key
    /// is taken (by an account whose old key already was that key, or by an
    /// older account re-keyed before it) keeps its old key: both stay
    /// reachable by the spelling each registered with, no new account can
    /// take the new key, and `authd check` lists the pair. The decision
    /// depends only on records and index entries written before it, so a
    /// run resumed after a crash decides as an uninterrupted one would.
    pub fn to_format_3(&self, batches: usize) -> Result<bool, StoreError> {
        self.begin_migration(2)?;
        let mut after: Option<sled::IVec> = None;
        for _ in 0..batches {
            let keys = self.users_to_convert(&after, is_user_v2)?;
            let Some(last) = keys.last().cloned() else {
                self.meta.remove(MIGRATING_KEY)?;
                self.flush()?;
                return Ok(true);
            };
            self.rekey_batch(&keys)?;
            self.flush()?;
            after = Some(last);
        }
        Ok(false)
    }

    /// Brings a format-3 store to format 4 by its marker alone: format 4
    /// reads the version-3 user records it finds as accounts created under
    /// the old rules (verified, creation time unknown) and writes version
    /// 4 whenever a user changes, so a million users cost no start-up
    /// time. The new marker keeps an older authd, which cannot read
    /// version-4 records, away.
    pub fn to_format_4(&self) -> Result<bool, StoreError> {
        self.begin_migration(3)?;
        self.meta.remove(MIGRATING_KEY)?;
        self.flush()?;
        Ok(true)
    }

    /// Brings a format-4 store to format 5 by its marker alone, as
    /// [`SledStore::to_format_4`] did: version-4 user records read as
    /// passwords hashed as typed, with no second factor, and are written
    /// as version 5 when they change.
    pub fn to_format_5(&self) -> Result<bool, StoreError> {
        self.begin_migration(4)?;
        self.meta.remove(MIGRATING_KEY)?;
        self.flush()?;
        Ok(true)
    }

    /// Converts the format-2 records under `keys` in one transaction.
    fn rekey_batch(&self, keys: &[sled::IVec]) -> Result<(), StoreError> {
        (&self.users, &self.by_email)
            .transaction(|(users, by_email)| {
                for key in keys {
                    let Some(bytes) = users.get(key)? else {
                        continue;
                    };
                    if !is_user_v2(&bytes) {
                        continue;
                    }
                    let id = tx(decode_id(key))?;
                    let old = tx(decode_user_v2(id, &bytes))?;
                    let fresh = crate::user::Email::parse(old.email.as_str())
                        .map(|email| email.key().to_owned())
                        .unwrap_or_else(|_| old.email.key().to_owned());
                    let legacy = old.email.key().to_owned();
                    let kept = if fresh != legacy && by_email.get(fresh.as_bytes())?.is_none() {
                        // The old entry is this user's (format 2 kept
                        // them unique); it moves.
                        if by_email.get(legacy.as_bytes())?.as_deref() == Some(key.as_ref()) {
                            by_email.remove(legacy.as_bytes())?;
                        }
                        by_email.insert(fresh.as_bytes(), key.as_ref())?;
                        fresh
                    } else {
                        legacy
                    };
                    let user = crate::user::User {
                        email: crate::user::Email::stored(old.email.as_str().to_owned(), kept),
                        ..old
                    };
                    users.insert(key, tx(encode_user(&user))?)?;
                }
                Ok(())
            })
            .map_err(flatten)
    }

    /// The server key, made (and flushed) on first use.
    pub fn server_key(&self) -> Result<ServerKey, StoreError> {
        let fresh = random_key()?;
        self.meta
            .compare_and_swap(SERVER_KEY, None as Option<&[u8]>, Some(&fresh[..]))?
            .ok();
        let current = self.key_at(SERVER_KEY)?.ok_or_else(|| {
            StoreError::Corrupt("the server key vanished from the store".to_owned())
        })?;
        self.flush()?;
        Ok(ServerKey::new(current, self.key_at(PREVIOUS_SERVER_KEY)?))
    }

    /// Makes a new server key; the current one becomes the previous one
    /// (still accepted), and the one before is dropped.
    pub fn rotate_server_key(&self) -> Result<ServerKey, StoreError> {
        // Made first if this store never had one.
        self.server_key()?;
        let fresh = random_key()?;
        let Some(previous) = self.key_at(SERVER_KEY)? else {
            return Err(StoreError::Corrupt("no server key to rotate".to_owned()));
        };
        self.meta
            .transaction(|meta| -> super::TxResult<()> {
                meta.insert(PREVIOUS_SERVER_KEY, &previous[..])?;
                meta.insert(SERVER_KEY, &fresh[..])?;
                Ok(())
            })
            .map_err(flatten)?;
        self.flush()?;
        Ok(ServerKey::new(fresh, Some(previous)))
    }

    fn key_at(&self, name: &[u8]) -> Result<Option<[u8; 32]>, StoreError> {
        match self.meta.get(name)? {
            Some(bytes) => <[u8; 32]>::try_from(bytes.as_ref())
                .map(Some)
                .map_err(|_| StoreError::Corrupt("the server key is not 32 bytes".to_owned())),
            None => Ok(None),
        }
    }

    /// Reads the marker, then writes and flushes a heartbeat: a store that
    /// can no longer write (disk full, I/O errors) is not healthy, even if
    /// it still answers reads.
    pub(super) fn heartbeat(&self) -> Result<(), StoreError> {
        match self.meta.get(MARKER_KEY)?.as_deref().and_then(format_of) {
            Some(CURRENT_FORMAT) => {}
            _ => {
                return Err(StoreError::Corrupt(
                    "the store marker is missing or changed".to_owned(),
                ))
            }
        }
        self.meta
            .insert(HEARTBEAT_KEY, &crate::clock::unix_millis().to_be_bytes())?;
        self.flush()
    }
}

/// One user of a format-1 store, with what its record held.
pub type Format1User = (
    crate::user::User,
    Option<crate::codec::LegacySession>,
    Option<crate::codec::LegacyGrant>,
);

/// Writes a store in `path` as format 1 laid it out (the marker, user
/// records holding their session and reset grant, the email and token
/// indexes), in batches of 10,000 users, and flushes it. The tests and the
/// benchmark of the migration make old stores with it; authd itself never
/// writes format 1.
pub fn write_format_1(
    path: &std::path::Path,
    users: impl IntoIterator<Item = Format1User>,
) -> Result<(), StoreError> {
    use crate::codec::encode_user_v1;
    let db = sled::Config::new()
        .path(path)
        .cache_capacity(super::DEFAULT_CACHE_BYTES)
        .open()?;
    let trees = ["users", "by_email", "by_session", "by_reset"]
        .map(|name| db.open_tree(name))
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let mut next = 1;
    let mut users = users.into_iter().peekable();
    while users.peek().is_some() {
        let mut batches: Vec<sled::Batch> = trees.iter().map(|_| sled::Batch::default()).collect();
        for (user, session, reset) in users.by_ref().take(10_000) {
            let id = encode_id(user.id);
            batches[0].insert(&id, encode_user_v1(&user, session, reset)?);
            batches[1].insert(user.email.legacy_key().as_bytes(), &id);
            if let Some(session) = session {
                batches[2].insert(session.token_hash.as_bytes(), &id);
            }
            if let Some(grant) = reset {
                batches[3].insert(grant.token_hash.as_bytes(), &id);
            }
            next = next.max(user.id.0 + 1);
        }
        for (tree, batch) in trees.iter().zip(batches) {
            tree.apply_batch(batch)?;
        }
    }
    let meta = db.open_tree("meta")?;
    meta.insert(MARKER_KEY, marker(1).as_bytes())?;
    meta.insert(NEXT_ID_KEY, encode_id(crate::user::UserId(next)).as_slice())?;
    db.flush()?;
    Ok(())
}
