//! The store a test runs on, so one test body runs against both stores.
//!
//! [`run_on`] sets the store kind for the current test thread; every place
//! the tests name a store by its directory ([`TestApp`](super::TestApp),
//! [`Proc`](super::process::Proc), [`store_args`]) then gets either that
//! sled directory or, on PostgreSQL, a fresh schema of its own in the test
//! database (`AUTHD_TEST_DATABASE_URL`), one per directory, dropped when
//! the test ends. Tests list their names in [`on_every_store!`].

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use authd::config::Config;

/// Which store the current test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sled,
    Postgres,
}

thread_local! {
    static KIND: Cell<Kind> = const { Cell::new(Kind::Sled) };
    static SCHEMAS: RefCell<HashMap<PathBuf, Schema>> = RefCell::new(HashMap::new());
}

/// Generates, for each test function named, `on_sled::NAME` and
/// `on_postgres::NAME`; the second is ignored (with the reason shown by
/// `cargo test`) unless the suite was built with AUTHD_TEST_DATABASE_URL.
#[macro_export]
macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {
        mod on_sled {
            $(
                #[test]
                fn $name() {
                    $crate::common::stores::run_on($crate::common::stores::Kind::Sled, super::$name);
                }
            )*
        }
        $crate::only_on_postgres!($($name),*);
    };
}

/// Generates a test for each function named that runs on PostgreSQL only
/// (what several instances share); ignored, with the reason, without a
/// test database or without the `postgres` feature.
#[macro_export]
macro_rules! only_on_postgres {
    ($($name:ident),* $(,)?) => {
        mod on_postgres {
            $(
                #[test]
                #[cfg_attr(
                    all(feature = "postgres", not(authd_pg_tests)),
                    ignore = "PostgreSQL: set AUTHD_TEST_DATABASE_URL=postgres://... to run"
                )]
                #[cfg_attr(
                    not(feature = "postgres"),
                    ignore = "PostgreSQL: built without the `postgres` feature"
                )]
                fn $name() {
                    $crate::common::stores::run_on($crate::common::stores::Kind::Postgres, super::$name);
                }
            )*
        }
    };
}

/// Runs `test` on `kind`, then drops the schemas it made (also when it
/// panics).
pub fn run_on(kind: Kind, test: fn()) {
    struct Cleanup;
    impl Drop for Cleanup {
        fn drop(&mut self) {
            SCHEMAS.with(|s| s.borrow_mut().clear());
            KIND.with(|k| k.set(Kind::Sled));
        }
    }
    KIND.with(|k| k.set(kind));
    let _cleanup = Cleanup;
    test();
}

/// The kind the current test runs on.
pub fn kind() -> Kind {
    KIND.with(Cell::get)
}

/// The test database's URL, from the environment.
pub fn test_database() -> String {
    std::env::var("AUTHD_TEST_DATABASE_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .expect("AUTHD_TEST_DATABASE_URL is not set (the suite was built with it)")
}

/// On PostgreSQL, the URL of the schema standing for `dir` (made on first
/// use); on sled, `None`.
pub fn database_url(dir: &Path) -> Option<String> {
    if kind() == Kind::Sled {
        return None;
    }
    Some(SCHEMAS.with(|s| {
        s.borrow_mut()
            .entry(dir.to_owned())
            .or_insert_with(Schema::create)
            .url
            .clone()
    }))
}

/// The name of the schema standing for `dir` (made on first use).
pub fn schema_name(dir: &Path) -> String {
    database_url(dir).expect("a PostgreSQL test");
    SCHEMAS.with(|s| s.borrow()[dir].name.clone())
}

/// Points `config` at the store for `dir`.
pub fn configure(config: &mut Config, dir: &Path) {
    config.data_dir = dir.to_owned();
    config.database_url = database_url(dir);
}

/// The command-line flags naming the store for `dir`.
pub fn store_args(dir: &Path) -> Vec<String> {
    match database_url(dir) {
        Some(url) => vec!["--database".to_owned(), url],
        None => vec!["--data-dir".to_owned(), dir.to_str().unwrap().to_owned()],
    }
}

/// Runs the binary with `args` and the flags naming the store for `dir`,
/// with `stdin`; returns (code, stdout, stderr).
pub fn run_authd(dir: &Path, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let store = store_args(dir);
    let mut all = args.to_vec();
    all.extend(store.iter().map(String::as_str));
    super::process::run_with_stdin(&all, stdin.map(str::as_bytes))
}

/// A schema of the test database, dropped with this value.
pub struct Schema {
    pub name: String,
    pub url: String,
}

impl Schema {
    /// A new empty schema with a unique name, and a URL whose connections
    /// use it (`search_path`).
    pub fn create() -> Schema {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let base = test_database();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "authd_t_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        admin(&format!("CREATE SCHEMA {name}"));
        let separator = if base.contains('?') { '&' } else { '?' };
        // The application name lets a test find (and cut) this schema's
        // connections without touching those of tests running beside it.
        let url =
            format!("{base}{separator}options=-c%20search_path%3D{name}&application_name={name}");
        Schema { name, url }
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        admin(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
    }
}

/// Runs `sql` in the schema standing for `dir` (PostgreSQL tests only);
/// returns the first column of the last row any statement returned.
#[cfg(feature = "postgres")]
pub fn sql(dir: &Path, sql: &str) -> Option<String> {
    let url = database_url(dir).expect("a PostgreSQL test");
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let mut last = None;
    for message in client
        .simple_query(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    {
        if let postgres::SimpleQueryMessage::Row(row) = message {
            last = row.get(0).map(str::to_owned);
        }
    }
    last
}

/// Without the `postgres` feature there is no client: the PostgreSQL tests
/// are ignored in such a build, and stop here if run anyway (`--ignored`).
#[cfg(not(feature = "postgres"))]
pub fn sql(_: &Path, _: &str) -> Option<String> {
    panic!("PostgreSQL: built without the `postgres` feature")
}

/// Runs `sql` on the test database.
#[cfg(feature = "postgres")]
pub fn admin(sql: &str) {
    let mut client = postgres::Client::connect(&test_database(), postgres::NoTls)
        .unwrap_or_else(|e| panic!("cannot reach AUTHD_TEST_DATABASE_URL: {e}"));
    client
        .batch_execute(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Without the `postgres` feature, as [`sql`]: the test stops here.
#[cfg(not(feature = "postgres"))]
pub fn admin(_: &str) {
    panic!("PostgreSQL: built without the `postgres` feature")
}
