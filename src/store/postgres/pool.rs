//! The connection pool: r2d2 over connections that keep their prepared
//! statements, and reads that survive a database restart.

use std::collections::HashMap;

use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Row, Statement};

use super::tls::MakeRustls;
use crate::store::StoreError;

/// A pooled connection and the statements prepared on it so far: a
/// prepared statement is parsed and planned once per connection instead of
/// once per request.
pub struct Connection {
    pub(super) client: postgres::Client,
    prepared: HashMap<&'static str, Statement>,
}

impl Connection {
    /// `sql` prepared on this connection (the first time, a round trip).
    pub(super) fn statement(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.prepared.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.prepared.insert(sql, statement.clone());
        Ok(statement)
    }

    /// Runs the prepared `sql`; returns at most one row.
    pub(super) fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.query_opt(&statement, params)
    }

    /// Runs the prepared `sql`; returns the rows it changed.
    pub(super) fn execute(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.execute(&statement, params)
    }
}

impl std::ops::Deref for Connection {
    type Target = postgres::Client;
    fn deref(&self) -> &postgres::Client {
        &self.client
    }
}

impl std::ops::DerefMut for Connection {
    fn deref_mut(&mut self) -> &mut postgres::Client {
        &mut self.client
    }
}

/// Opens [`Connection`]s for the pool (in place of `r2d2_postgres`, whose
/// connections cannot carry prepared statements).
pub(super) struct Manager {
    pub(super) config: postgres::Config,
    /// The URL's `sslmode` and `sslrootcert`, the same for every
    /// connection as for the first.
    pub(super) tls: MakeRustls,
}

impl r2d2::ManageConnection for Manager {
    type Connection = Connection;
    type Error = postgres::Error;

    fn connect(&self) -> Result<Connection, postgres::Error> {
        Ok(Connection {
            client: self.config.connect(self.tls.clone())?,
            prepared: HashMap::new(),
        })
    }

    fn is_valid(&self, conn: &mut Connection) -> Result<(), postgres::Error> {
        conn.client.simple_query("").map(|_| ())
    }

    fn has_broken(&self, conn: &mut Connection) -> bool {
        conn.client.is_closed()
    }
}

pub(super) type Pool = r2d2::Pool<Manager>;

/// Whether `e` says the connection is gone (the server restarted, failed
/// over, or ended the session), as opposed to the query failing. An I/O
/// error counts: a query written just as the server closed the socket
/// fails with one (a reset, an early end of stream) before the client has
/// seen the connection end.
fn connection_lost(e: &postgres::Error) -> bool {
    e.is_closed()
        || std::error::Error::source(e).is_some_and(|source| source.is::<std::io::Error>())
        || e.code().is_some_and(|code| {
            [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
            ]
            .contains(code)
        })
}

/// Whether `e` says the server ended the connection before running what
/// was sent (an administrator's termination, a restart refusing it): the
/// statement did not take effect, so a write may be sent again. A
/// connection that merely closed is not this: what was sent may have run.
fn ended_before_running(e: &postgres::Error) -> bool {
    e.code()
        .is_some_and(|code| [SqlState::ADMIN_SHUTDOWN, SqlState::CANNOT_CONNECT_NOW].contains(code))
}

/// Runs a single-statement write on a pooled connection, moving on to
/// another connection only while the server says it ended the one given
/// before running the statement ([`ended_before_running`]): never sent
/// twice if it may have run.
pub(super) fn write<T>(
    pool: &Pool,
    op: impl Fn(&mut Connection) -> Result<T, postgres::Error>,
) -> Result<Result<T, postgres::Error>, StoreError> {
    let mut attempts = pool.max_size() + 1;
    loop {
        let mut conn = pool.get()?;
        match op(&mut conn) {
            Err(e) if ended_before_running(&e) && attempts > 1 => attempts -= 1,
            other => return Ok(other),
        }
    }
}

/// Runs a read on a pooled connection, moving on to another connection
/// while the one given turns out dead (r2d2 drops a closed connection when
/// it comes back). Connections are not tested at checkout (that would cost
/// a round trip per request), so after a database restart the pool still
/// holds dead ones; every request path starts with a read, and reads may
/// be repeated safely, so this is where they are cleared out. Writes are
/// never repeated: a lost connection there answers 503.
pub(super) fn read<T>(
    pool: &Pool,
    op: impl Fn(&mut Connection) -> Result<T, postgres::Error>,
) -> Result<T, StoreError> {
    let mut attempts = pool.max_size() + 1;
    loop {
        let mut conn = pool.get()?;
        match op(&mut conn) {
            Err(e) if connection_lost(&e) && attempts > 1 => attempts -= 1,
            other => return Ok(other?),
        }
    }
}
pub(super) type Conn = r2d2::PooledConnection<Manager>;
