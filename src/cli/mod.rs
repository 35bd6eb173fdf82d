//! The command line: `authd [serve]`, the admin commands, and their errors.
//!
//! Every subcommand that touches the store takes `--data-dir` (or
//! `AUTHD_DATA_DIR`), or `--database` (`AUTHD_DATABASE_URL`) for
//! PostgreSQL. Only `serve` creates a store wherever it is pointed; the
//! admin commands refuse a directory (or database) without one, except
//! `import` and `user add`, which create one in a missing or empty
//! directory (or with `--create`) and say so. Exit codes: 0 success, 1 not
//! found or refused (one clear line on stderr), 2 usage (clap's
//! convention), 130 an import interrupted by a signal.

mod maintenance;
mod serve;
mod system;
mod transfer;
mod usage;
mod user;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory as _, Parser, Subcommand};

pub use serve::ServeArgs;

use crate::auth::AuthError;
use crate::config::Config;
use crate::store::{AnyStore, Location, OpenError, OpenMode, Opened, StoreError, Upgrade};

/// authd: a user authentication service (register, log in with a session
/// cookie, profile, log out, password reset) in one binary.
///
/// Without a subcommand authd serves the HTTP API (`authd serve`). The other
/// subcommands work on the store directly; on the embedded store they
/// refuse to run while a server holds it.
#[derive(Debug, Parser)]
#[command(name = "authd", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Without a subcommand, authd serves with these options.
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (what `authd` alone does).
    Serve(Box<ServeArgs>),
    /// Manage users: add, list, show, find, delete, set-password,
    /// sessions, logout.
    User(user::UserArgs),
    /// Write every user as a JSON line {"id", "email", "hashed_password"}.
    Export(transfer::ExportArgs),
    /// Add users from JSON lines with at least "email" and "hashed_password".
    Import(transfer::ImportArgs),
    /// Verify the store: records decode, indexes agree with records.
    Check(StoreArgs),
    /// Copy the store to a new directory (a consistent backup).
    Backup(maintenance::BackupArgs),
    /// Bring a store written by an older authd to this one's format (an
    /// embedded store is backed up first). `serve` does it at start too.
    Migrate(maintenance::MigrateArgs),
    /// The server key, from which authd derives its keyed hashes: `rotate`.
    Key(maintenance::KeyArgs),
}

/// Where the store is; shared by every subcommand.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Directory of the embedded store. Only `serve`, `import` and `user
    /// add` create a store (see --create); the other commands refuse a
    /// directory without one. One authd process at a time may use it.
    #[arg(long, env = "AUTHD_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// Use this PostgreSQL database instead of the embedded store, e.g.
    /// postgres://authd@db.internal/authd. Any number of authd instances
    /// may share it; `serve`, `import` and `user add` create its schema if
    /// missing, `serve` migrates it at start.
    #[arg(
        long,
        env = "AUTHD_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database: Option<String>,
}

impl StoreArgs {
    /// Where the store is, with the default cache and pool sizes.
    fn location(&self) -> Location {
        let mut config = Config::new(&self.data_dir);
        config.database_url = self.database.clone();
        config.location()
    }

    /// Opens the existing store: a sled directory fails at once if a
    /// server holds it; a database is shared with any servers running on
    /// it. A store of an older format is refused (`authd migrate` converts
    /// it), and a directory or database without a store is refused without
    /// creating anything.
    fn open(&self) -> Result<AnyStore, CliError> {
        self.open_existing(Upgrade::Refuse)
    }

    /// [`StoreArgs::open`] with what to do about an older format.
    fn open_existing(&self, upgrade: Upgrade) -> Result<AnyStore, CliError> {
        AnyStore::open_as(&self.location(), upgrade, OpenMode::Existing)
            .map(|opened| opened.store)
            .map_err(|e| self.no_store(e, false))
    }

    /// For the commands that may create a store (`import`, `user add`):
    /// the existing store, opened now (so one in use is refused before any
    /// input is read), or `None` where [`StoreArgs::create`] may make one
    /// once the input proved good: a missing or empty directory, a database
    /// without authd's schema, or anywhere with `--create` (`create`).
    fn open_or_plan(&self, create: bool) -> Result<Option<AnyStore>, CliError> {
        match AnyStore::open_as(&self.location(), Upgrade::Refuse, OpenMode::Existing) {
            Ok(opened) => Ok(Some(opened.store)),
            Err(OpenError::NoStore { found, .. })
                if create || found != crate::store::Found::OtherFiles =>
            {
                Ok(None)
            }
            Err(OpenError::NoSchema { .. }) => Ok(None),
            Err(e) => Err(self.no_store(e, true)),
        }
    }

    /// Creates the store [`StoreArgs::open_or_plan`] found missing (still
    /// only where it may: the directory may have changed meanwhile), and
    /// says so on stderr.
    fn create(&self, create: bool) -> Result<AnyStore, CliError> {
        let mode = if create {
            OpenMode::Create
        } else {
            OpenMode::CreateIfEmpty
        };
        let Opened { store, created } = AnyStore::open_as(&self.location(), Upgrade::Refuse, mode)
            .map_err(|e| self.no_store(e, true))?;
        if created {
            match &self.database {
                Some(_) => eprintln!("authd: created the authd schema in the {}", self.location()),
                None => eprintln!(
                    "authd: created a new authd store in {}",
                    crate::store::absolute(&self.data_dir).display()
                ),
            }
        }
        Ok(store)
    }

    /// `e`, with what to do when it says there is no store: check the
    /// flag, or (for `import` and `user add`, `creates`) pass --create.
    fn no_store(&self, e: OpenError, creates: bool) -> CliError {
        let hint = match &e {
            OpenError::NoStore { .. } if creates => {
                "; authd creates a store only in a missing or empty directory: \
                 check --data-dir (or AUTHD_DATA_DIR), or pass --create to make one there"
            }
            OpenError::NoStore { .. } => {
                "; check --data-dir (or AUTHD_DATA_DIR). `authd serve`, `authd import` \
                 and `authd user add` create a store"
            }
            OpenError::NoSchema { .. } => {
                "; check --database (or AUTHD_DATABASE_URL). `authd serve`, `authd import` \
                 and `authd user add` create the schema"
            }
            _ => return e.into(),
        };
        CliError::Refused(format!("{e}{hint}"))
    }
}

/// Errors that end a command with status 1 and one line on stderr.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Start(#[from] crate::server::StartError),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("cannot install the signal handler: {0}")]
    Signal(#[from] ctrlc::Error),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Auth(#[from] AuthError),
    /// Not found, already exists, invalid input: the message says which.
    #[error("{0}")]
    Refused(String),
    /// The command line cannot work as given (status 2); the message says
    /// what to change, without the whole usage.
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Io(String),
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli: Cli = usage::parse();
    // authd writes nothing anyone else should read (stores, exports,
    // backups): whatever it or sled creates is private even where no
    // explicit mode is set (sled's later snapshot files), serving included.
    // SAFETY: umask only sets this process's file mode mask.
    unsafe { libc::umask(0o077) };
    let result = match cli.command {
        None => serve_with(cli.serve),
        Some(Command::Serve(args)) => serve_with(*args),
        Some(Command::User(args)) => user::run(args),
        Some(Command::Export(args)) => transfer::export(args),
        Some(Command::Import(args)) => transfer::import(args),
        Some(Command::Check(args)) => maintenance::check(args),
        Some(Command::Backup(args)) => maintenance::backup(args),
        Some(Command::Migrate(args)) => maintenance::migrate(args),
        Some(Command::Key(args)) => maintenance::key(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("authd: error: {e}");
            match e {
                CliError::Usage(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

fn serve_with(args: ServeArgs) -> Result<ExitCode, CliError> {
    // Before the configuration: the default connection cap follows the
    // limit this leaves.
    system::raise_fd_limit();
    let config = args
        .into_config()
        .unwrap_or_else(|message| usage_error(&message));
    serve::serve(config)?;
    Ok(ExitCode::SUCCESS)
}

/// Exits with status 2 and clap's usage hint.
fn usage_error(message: &str) -> ! {
    Cli::command()
        .error(clap::error::ErrorKind::ArgumentConflict, message)
        .exit()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every argument and flag of the admin commands says what it is for
    /// in `--help` (serve's flags are its own module's).
    #[test]
    fn every_admin_argument_has_help_text() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.is_hide_set() || id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in command.get_subcommands() {
                let name = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() {
                    missing.push(format!("{name} (the command itself)"));
                }
                walk(sub, &name, missing);
            }
        }
        let cli = Cli::command();
        let mut missing = Vec::new();
        let mut walked = 0;
        for sub in cli.get_subcommands().filter(|s| s.get_name() != "serve") {
            walk(sub, &format!("authd {}", sub.get_name()), &mut missing);
            walked += 1;
        }
        assert!(walked >= 7, "{walked}");
        assert!(missing.is_empty(), "without help text: {missing:#?}");
    }
}
