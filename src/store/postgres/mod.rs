//! The PostgreSQL stores: the same traits on a shared database, so several
//! authd instances can serve one set of users.
//!
//! Users, sessions and one-time tokens are tables of their own
//! (`authd_users`, `authd_sessions`, `authd_tokens`), the latter two with
//! foreign keys `ON DELETE CASCADE`. The guarantees the sled store gets
//! from its index trees come from the database here: a unique index on
//! the case-folded email (concurrent registrations from any number of
//! instances yield one account), primary keys on the SHA-256 of the
//! tokens (lookups by hash, never by the token), and row locks for
//! writes under a precondition, which makes a reset token single-use
//! across instances. Every write is a committed transaction before the
//! call returns; with PostgreSQL's default `synchronous_commit = on` that
//! means it is on disk.
//!
//! Throttle counts live in `authd_throttle` ([`PgLimiter`]), so failed
//! logins are counted across instances, on the database's clock.
//!
//! The files split by concern: [`schema`] (the migration chain), `pool`,
//! `rows` (decoding), `users`, `sessions`, `tokens`, `maintenance`,
//! `throttle` and `tls` (`sslmode` and `sslrootcert` on rustls). Every table name starts with `authd_`, so the database can
//! be shared with the application.

mod maintenance;
mod pool;
mod queue;
mod rekey;
mod rows;
pub mod schema;
mod sessions;
mod throttle;
mod tls;
mod tokens;
mod users;

use std::time::Duration;

pub use pool::Connection;
use pool::{Conn, Manager, Pool};
pub use throttle::PgLimiter;

use crate::server_key::ServerKey;
use crate::store::{OpenError, OpenMode, StoreError, Upgrade};
use crate::throttle::Rule;

/// How long opening a connection may take, unless the URL says
/// (`connect_timeout=`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a request waits for a free connection before a 503.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);

const SECRET_OFFER: &str =
    "INSERT INTO authd_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";
const SECRET_READ: &str = "SELECT value FROM authd_secrets WHERE name = $1";
/// Names of the server key and the previous one in `authd_secrets`.
const SERVER_KEY: &str = "server_key";
const PREVIOUS_SERVER_KEY: &str = "server_key_previous";

/// The PostgreSQL-backed store. Cheap to clone: clones share the pool.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("connections", &self.pool.state().connections)
            .finish()
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        StoreError::Backend(format!("PostgreSQL: {}", describe(&e)))
    }
}

/// One line saying what went wrong: the server's own message for an error
/// it reported (the crate's `Display` says only "db error"), else the
/// client's.
fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

impl From<r2d2::Error> for StoreError {
    fn from(e: r2d2::Error) -> Self {
        StoreError::Backend(format!("no PostgreSQL connection available: {e}"))
    }
}

/// A database URL with any password replaced, for messages and logs.
pub fn redact(url: &str) -> String {
    match tls::parse_config(url) {
        Ok(config) => {
            let hosts: Vec<String> = config
                .get_hosts()
                .iter()
                .map(|h| match h {
                    postgres::config::Host::Tcp(name) => name.clone(),
                    postgres::config::Host::Unix(path) => path.display().to_string(),
                })
                .collect();
            format!(
                "PostgreSQL database {:?} on {} as {:?}",
                config.get_dbname().unwrap_or("(default)"),
                if hosts.is_empty() {
                    "the default host".to_owned()
                } else {
                    hosts.join(",")
                },
                config.get_user().unwrap_or("(default user)"),
            )
        }
        Err(_) => "PostgreSQL database (unparsable URL)".to_owned(),
    }
}

impl PgStore {
    /// Connects to the database at `url` with a pool of at most
    /// `pool_size` connections and brings its schema up to date, creating
    /// it in a database that has none.
    ///
    /// Fails if the database cannot be reached, or holds a schema newer
    /// than this authd knows (a newer authd migrated it: run that one).
    pub fn connect(url: &str, pool_size: u32, upgrade: Upgrade) -> Result<PgStore, OpenError> {
        Self::connect_as(url, pool_size, upgrade, OpenMode::Create).map(|(store, _)| store)
    }

    /// [`PgStore::connect`], creating the schema in a database without one
    /// only as `mode` allows ([`OpenMode::Existing`] refuses with
    /// [`OpenError::NoSchema`]; a database is never "not empty" for
    /// [`OpenMode::CreateIfEmpty`]: authd's tables share it with the
    /// application's). Returns the store and whether the database had no
    /// schema.
    pub fn connect_as(
        url: &str,
        pool_size: u32,
        upgrade: Upgrade,
        mode: OpenMode,
    ) -> Result<(PgStore, bool), OpenError> {
        let failed = |reason: String| OpenError::Database {
            target: redact(url),
            reason,
        };
        // `sslmode` and `sslrootcert` come out of the URL: the client
        // library knows neither `verify-ca`/`verify-full` nor root
        // certificates, the connector does (tls.rs).
        let (mut config, tls) = tls::configure(url).map_err(failed)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        // One connection first, for a clear error (the pool reports only
        // that it timed out) and to migrate on.
        let mut first = config
            .connect(tls.clone())
            .map_err(|e| failed(describe(&e)))?;
        let fresh = !schema_exists(&mut first).map_err(|e| failed(e.to_string()))?;
        if fresh && mode == OpenMode::Existing {
            return Err(OpenError::NoSchema {
                target: redact(url),
            });
        }
        let applied = schema::applied(&mut first).map_err(|e| failed(e.to_string()))?;
        schema::refuse_newer(applied).map_err(|e| failed(e.to_string()))?;
        if applied < schema::schema_version() {
            match upgrade {
                Upgrade::Apply => {
                    schema::migrate_to(&mut first, schema::schema_version())
                        .map_err(|e| failed(e.to_string()))?;
                }
                Upgrade::Refuse if applied > 0 => {
                    return Err(OpenError::Outdated {
                        target: redact(url),
                        found: applied as u32,
                        current: schema::schema_version() as u32,
                        note: String::new(),
                    })
                }
                // A database without any authd table is new, not old: an
                // admin command allowed to create one creates the schema
                // rather than refuse.
                Upgrade::Refuse => {
                    schema::migrate_to(&mut first, schema::schema_version())
                        .map_err(|e| failed(e.to_string()))?;
                }
                Upgrade::Inspect => {}
            }
        }
        drop(first);
        let pool = r2d2::Pool::builder()
            .max_size(pool_size.max(1))
            .min_idle(Some(pool_size.clamp(1, 2)))
            .connection_timeout(CHECKOUT_TIMEOUT)
            // A health query on every checkout would double the round trips
            // of a session check; a broken connection is dropped when it is
            // returned, and the request that met it answers 503.
            .test_on_check_out(false)
            // r2d2 would otherwise log connection errors through `log`,
            // which authd does not use; they reach the caller anyway.
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build(Manager { config, tls })
            .map_err(|e| failed(e.to_string()))?;
        Ok((PgStore { pool }, fresh))
    }

    /// A pooled connection not already known to be closed. After a
    /// database restart the pool holds dead connections that the client
    /// has seen end (the server says so as it ends them); a write must not
    /// be sent on one, since a write is never repeated. Checking costs no
    /// round trip: a dead one goes back to the pool, which drops it.
    fn conn(&self) -> Result<Conn, StoreError> {
        let mut attempts = self.pool.max_size() + 1;
        loop {
            let conn = self.pool.get()?;
            if !conn.client.is_closed() || attempts <= 1 {
                return Ok(conn);
            }
            attempts -= 1;
        }
    }

    /// The secret named `name`, the same for every instance on this
    /// database: made by the first instance that asks, from the OS random
    /// generator.
    pub fn shared_secret(&self, name: &str) -> Result<[u8; 32], StoreError> {
        let mut fresh = [0u8; 32];
        getrandom::fill(&mut fresh).map_err(|e| StoreError::Backend(e.to_string()))?;
        let mut conn = self.pool.get()?;
        conn.execute(SECRET_OFFER, &[&name, &&fresh[..]])?;
        let row = conn
            .query_opt(SECRET_READ, &[&name])?
            .ok_or_else(|| StoreError::Backend(format!("secret {name} vanished")))?;
        let value: Vec<u8> = row.try_get(0)?;
        value
            .try_into()
            .map_err(|_| StoreError::Backend(format!("secret {name} is not 32 bytes")))
    }

    /// The server key, shared by every instance: made by the first that
    /// asks; with the previous one during a rotation.
    pub fn server_key(&self) -> Result<ServerKey, StoreError> {
        let current = self.shared_secret(SERVER_KEY)?;
        let previous = self
            .conn()?
            .query_opt(SECRET_READ, &[&PREVIOUS_SERVER_KEY])?
            .map(|row| row.try_get::<_, Vec<u8>>(0))
            .transpose()?
            .map(|value| {
                <[u8; 32]>::try_from(value.as_slice()).map_err(|_| {
                    StoreError::Corrupt("the previous server key is not 32 bytes".into())
                })
            })
            .transpose()?;
        Ok(ServerKey::new(current, previous))
    }

    /// Makes a new server key in one transaction: the current one becomes
    /// the previous one, and the one before is dropped. Instances pick the
    /// new key up when they restart.
    pub fn rotate_server_key(&self) -> Result<ServerKey, StoreError> {
        self.shared_secret(SERVER_KEY)?;
        let mut fresh = [0u8; 32];
        crate::token::fill_random(&mut fresh).map_err(|e| StoreError::Backend(e.to_string()))?;
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        let row = tx.query_one(
            "SELECT value FROM authd_secrets WHERE name = $1 FOR UPDATE",
            &[&SERVER_KEY],
        )?;
        let previous: Vec<u8> = row.try_get(0)?;
        tx.execute(
            "INSERT INTO authd_secrets (name, value) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
            &[&PREVIOUS_SERVER_KEY, &previous],
        )?;
        tx.execute(
            "UPDATE authd_secrets SET value = $2 WHERE name = $1",
            &[&SERVER_KEY, &&fresh[..]],
        )?;
        tx.commit()?;
        let previous = <[u8; 32]>::try_from(previous.as_slice())
            .map_err(|_| StoreError::Corrupt("the server key is not 32 bytes".into()))?;
        Ok(ServerKey::new(fresh, Some(previous)))
    }

    /// The throttle named `scope` with `rule`, its counts kept in the
    /// database for every instance to see.
    pub fn limiter(&self, scope: &'static str, rule: Rule) -> PgLimiter {
        PgLimiter::new(self.pool.clone(), scope, rule)
    }
}

/// Whether the database (in the connection's `search_path`) holds authd's
/// schema: its `authd_migrations` table, made by the first migration.
fn schema_exists(conn: &mut postgres::Client) -> Result<bool, StoreError> {
    Ok(conn
        .query_one("SELECT to_regclass('authd_migrations') IS NOT NULL", &[])?
        .try_get(0)?)
}

/// Milliseconds as stored (BIGINT).
fn ms(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A user id as stored; `None` for one no row can have.
fn key(id: crate::user::UserId) -> Option<i64> {
    i64::try_from(id.0).ok()
}
