//! The command line: `authd [serve]`, the admin commands, and their errors.
//!
//! Every subcommand that touches the store takes `--data-dir` (or
//! `AUTHD_DATA_DIR`), or `--database` (`AUTHD_DATABASE_URL`) for
//! PostgreSQL. Exit codes: 0 success, 1 not found or refused (one
//! clear line on stderr), 2 usage (clap's convention).

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
use crate::store::{AnyStore, Location, OpenError, StoreError, Upgrade};

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
    /// Directory of the embedded store; created if missing. One authd
    /// process at a time may use it.
    #[arg(long, env = "AUTHD_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// Use this PostgreSQL database instead of the embedded store, e.g.
    /// postgres://authd@db.internal/authd. Any number of authd instances
    /// may share it; its schema is created and migrated at start.
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

    /// Opens the store: a sled directory fails at once if a server holds
    /// it; a database is shared with any servers running on it. A store of
    /// an older format is refused: `authd migrate` converts it.
    fn open(&self) -> Result<AnyStore, CliError> {
        Ok(AnyStore::open(&self.location(), Upgrade::Refuse)?)
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
    #[error("{0}")]
    Io(String),
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli: Cli = usage::parse();
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
            ExitCode::FAILURE
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
