//! [`Maintenance`] on PostgreSQL: bulk import, scans, counts and checks.

use std::ops::ControlFlow;

use postgres::Row;

use super::pool::Conn;
use super::rows::{self, violation};
use super::schema::{schema_version, APPLIED_VERSION};
use super::{ms, PgStore};
use crate::store::{Counts, Import, Maintenance, StoreError};
use crate::user::{NewUser, UserId};

/// Email keys asked about per query by `held_keys`.
const HELD_KEYS_CHUNK: usize = 10_000;

/// Creates `users` with one multi-row insert; the ids come back matched to
/// their emails, so the order of `RETURNING` does not matter.
fn insert_users(
    client: &mut impl postgres::GenericClient,
    users: &[NewUser],
) -> Result<Vec<UserId>, StoreError> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let emails: Vec<&str> = users.iter().map(|u| u.email.as_str()).collect();
    let keys: Vec<&str> = users.iter().map(|u| u.email.key()).collect();
    let hashes: Vec<&str> = users.iter().map(|u| u.hashed_password.as_str()).collect();
    let verified: Vec<bool> = users.iter().map(|u| u.email_verified).collect();
    let created: Vec<Option<i64>> = users.iter().map(|u| u.created_at.map(ms)).collect();
    let normalized: Vec<bool> = users.iter().map(|u| u.password_normalized).collect();
    let rows = client
        .query(
            "INSERT INTO authd_users (email, email_key, hashed_password, email_verified, created_at,
                password_normalized)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[], $5::int8[],
                $6::bool[])
             RETURNING id, email_key",
            &[&emails, &keys, &hashes, &verified, &created, &normalized],
        )
        .map_err(violation)?;
    let mut ids = std::collections::HashMap::with_capacity(rows.len());
    for row in &rows {
        let id: i64 = row.try_get(0)?;
        ids.insert(row.try_get::<_, String>(1)?, UserId(id as u64));
    }
    let ids: Vec<UserId> = keys
        .iter()
        .map(|key| {
            ids.get(*key)
                .copied()
                .ok_or_else(|| StoreError::Corrupt(format!("no id returned for {key}")))
        })
        .collect::<Result<_, _>>()?;
    // Second factors are rare in an import: a row each, in the same
    // transaction (a 2-D bytea array does not unnest by rows).
    for (user, id) in users.iter().zip(&ids) {
        if let Some(totp) = &user.totp {
            super::users::set_totp(client, *id, totp)?;
        }
    }
    Ok(ids)
}

/// An import in progress on PostgreSQL: one transaction on a connection of
/// its own, opened by `BEGIN` (a `postgres::Transaction` would borrow the
/// pooled connection it runs on). Its users are invisible to others until
/// the commit; a killed process's transaction is rolled back by the
/// server when the connection drops, and a dropped one by [`Drop`].
struct PgImport {
    conn: Conn,
    added: usize,
    finished: bool,
}

impl Import for PgImport {
    /// One batch under a savepoint, so a refused batch (an email taken
    /// meanwhile) leaves the transaction usable, as the trait promises.
    fn add_users(&mut self, users: &[NewUser]) -> Result<Vec<UserId>, StoreError> {
        self.conn.batch_execute("SAVEPOINT authd_import_batch")?;
        match insert_users(&mut self.conn.client, users) {
            Ok(ids) => {
                self.conn
                    .batch_execute("RELEASE SAVEPOINT authd_import_batch")?;
                self.added += ids.len();
                Ok(ids)
            }
            Err(e) => {
                self.conn
                    .batch_execute("ROLLBACK TO SAVEPOINT authd_import_batch")?;
                Err(e)
            }
        }
    }

    fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        self.finished = true;
        self.conn.batch_execute("COMMIT")?;
        Ok(())
    }

    fn roll_back(mut self: Box<Self>) -> Result<usize, StoreError> {
        self.finished = true;
        self.conn.batch_execute("ROLLBACK")?;
        Ok(self.added)
    }
}

impl Drop for PgImport {
    fn drop(&mut self) {
        if !self.finished {
            // The connection goes back to the pool: never inside the
            // import's transaction. A failure here means the connection
            // is broken, and the server rolls the transaction back.
            let _ = self.conn.batch_execute("ROLLBACK");
        }
    }
}

impl PgStore {
    /// Calls `visit` with every user row (`id, email, hashed_password,
    /// email_key`) in id order, a thousand rows per query, until it returns
    /// `Break`.
    fn each_row(
        &self,
        visit: &mut dyn FnMut(&Row) -> Result<ControlFlow<()>, StoreError>,
    ) -> Result<(), StoreError> {
        const PAGE: usize = 1000;
        let sql = format!(
            "SELECT {} FROM authd_users u WHERE u.id > $1 ORDER BY u.id LIMIT {PAGE}",
            rows::USER
        );
        let mut conn = self.conn()?;
        let mut after = 0i64;
        loop {
            let rows = conn.query(&sql, &[&after])?;
            for row in &rows {
                after = row.try_get(0)?;
                if visit(row)?.is_break() {
                    return Ok(());
                }
            }
            if rows.len() < PAGE {
                return Ok(());
            }
        }
    }
}

impl Maintenance for PgStore {
    /// One multi-row insert, one transaction.
    fn held_keys(&self, keys: &[&str]) -> Result<std::collections::HashSet<String>, StoreError> {
        let mut held = std::collections::HashSet::new();
        let mut conn = self.conn()?;
        for chunk in keys.chunks(HELD_KEYS_CHUNK) {
            let rows = conn.client.query(
                "SELECT email_key FROM authd_users WHERE email_key = ANY($1)",
                &[&chunk],
            )?;
            for row in rows {
                held.insert(row.try_get::<_, String>(0)?);
            }
        }
        Ok(held)
    }

    /// One transaction: the users and their second factors.
    fn add_users(&self, users: &[NewUser]) -> Result<Vec<UserId>, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.client.transaction()?;
        let ids = insert_users(&mut tx, users)?;
        tx.commit()?;
        Ok(ids)
    }

    fn begin_import(&self) -> Result<Box<dyn Import + '_>, StoreError> {
        let mut conn = self.conn()?;
        conn.batch_execute("BEGIN")?;
        Ok(Box::new(PgImport {
            conn,
            added: 0,
            finished: false,
        }))
    }

    fn each_user(
        &self,
        visit: &mut dyn FnMut(crate::user::User) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        self.each_row(&mut |row| Ok(visit(rows::user(row, 0)?)))
    }

    fn counts(&self) -> Result<Counts, StoreError> {
        let row = self.conn()?.query_one(
            "SELECT (SELECT count(*) FROM authd_users), (SELECT count(*) FROM authd_sessions),
                    (SELECT count(*) FROM authd_tokens)",
            &[],
        )?;
        let (users, sessions, tokens): (i64, i64, i64) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        Ok(Counts {
            users: users as usize,
            sessions: sessions as usize,
            tokens: tokens as usize,
        })
    }

    /// The schema is at this authd's version, and every row decodes, with
    /// an email key its email can have ([`crate::user::Email::key_fits`]). (The database itself enforces
    /// the uniqueness and the foreign keys that the sled store's `check`
    /// verifies by hand.)
    fn check(&self) -> Result<Vec<String>, StoreError> {
        let mut problems = Vec::new();
        let version: i32 = self.conn()?.query_one(APPLIED_VERSION, &[])?.try_get(0)?;
        let known = schema_version();
        if version != known {
            problems.push(format!(
                "schema version {version}, this authd expects {known}"
            ));
        }
        self.each_row(&mut |row| {
            let id: i64 = row.try_get(0)?;
            match rows::user(row, 0) {
                Err(e) => problems.push(format!("user {id}: {e}")),
                Ok(user) => {
                    if !user.email.key_fits() {
                        problems.push(format!(
                            "user {id}: email key {:?} is neither the key of {:?} nor its old key",
                            user.email.key(),
                            user.email.as_str()
                        ));
                    }
                    if !user.hashed_password.starts_with("$2") {
                        problems.push(format!("user {id}: password is not a bcrypt hash"));
                    }
                }
            }
            Ok(ControlFlow::Continue(()))
        })?;
        let mut conn = self.conn()?;
        for row in conn.query(
            &format!("SELECT {} FROM authd_sessions s", rows::SESSION),
            &[],
        )? {
            if let Err(e) = rows::session(&row, 0) {
                problems.push(format!("sessions: {e}"));
            }
        }
        for row in conn.query(&format!("SELECT {} FROM authd_tokens t", rows::TOKEN), &[])? {
            if let Err(e) = rows::token(&row, 0) {
                problems.push(format!("tokens: {e}"));
            }
        }
        Ok(problems)
    }
}
