//! The command line: `authd [serve]`, the admin commands, and their errors.
//!
//! Every subcommand that touches the store takes `--data-dir` (or
//! `AUTHD_DATA_DIR`), or `--database` (`AUTHD_DATABASE_URL`) for
//! PostgreSQL. Only `serve` creates a store wherever it is pointed; the
//! admin commands refuse a directory (or database) without one, except
//! `import` and `user add`, which create one in a missing or empty
//! directory (or with `--create`) and say so. While `authd serve` holds an
//! embedded store, the admin commands run in it through its control socket
//! (`remote`, `crate::control`): same code, output and exit codes; the
//! store-in-use error remains for when the socket cannot serve, with why.
//! `healthcheck` is neither: a client of a running server (one GET), with
//! no store and none of `serve`'s settings.
//! Exit codes: 0 success, 1 not
//! found or refused (one clear line on stderr), 2 usage (clap's
//! convention), 130 an import interrupted by a signal.

mod healthcheck;
mod maintenance;
mod outbox;
mod remote;
mod serve;
mod system;
mod transfer;
mod usage;
mod user;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
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
/// subcommands work on the store directly; while a server holds the
/// embedded store, they run in that server through its control socket.
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
    /// Write every user as a JSON line {"id", "email", "hashed_password",
    /// "email_verified", "created_at"}.
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
    /// The delivery queue and the dev outbox: list, show, retry, purge.
    Outbox(outbox::OutboxArgs),
    /// GET a URL (a server's /healthz): exit 0 on a 2xx answer, 1
    /// otherwise, for container and supervisor health checks.
    Healthcheck(healthcheck::HealthcheckArgs),
}

/// A named subcommand other than `serve`, parsed on its own. Through
/// [`Cli`], clap would also read and check the `AUTHD_*` variables of the
/// top-level serve flags, so a bad `AUTHD_ADDR` in the environment would
/// fail `authd check`, `authd user list` or a container's health check
/// with a usage error about a server setting they do not use. `authd
/// --help` still lists every subcommand through [`Cli`].
#[derive(Debug, Parser)]
#[command(name = "authd", version)]
struct SubcommandCli {
    #[command(subcommand)]
    command: Command,
}

/// Whether the command line names a subcommand other than `serve` (its
/// first argument, before any flag).
fn names_other_subcommand() -> bool {
    let Some(first) = std::env::args_os().nth(1) else {
        return false;
    };
    let first = first.to_string_lossy();
    first != "serve"
        && Cli::command()
            .get_subcommands()
            .any(|sub| sub.get_name() == first)
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

    /// The control socket: where `authd serve` takes admin commands while
    /// it holds the embedded store, and where admin commands reach it
    /// (owner and root only; never over HTTP). Set it when the data
    /// directory's path is long: a socket path has at most 107 bytes
    /// [default: DATA_DIR/authd.sock].
    #[arg(long, env = "AUTHD_CONTROL_SOCKET", value_name = "PATH")]
    pub control_socket: Option<PathBuf>,
}

/// Where a command's store, input and output are: this process's own
/// (`store` is `None`: the command opens the store), or a server's, the
/// command having come through its control socket (`store` is the server's
/// open store, the streams are the socket's frames).
pub(crate) struct Env<'a> {
    /// The store a server holds, when the command runs in that server,
    /// and where it is.
    pub store: Option<&'a AnyStore>,
    pub location: Option<&'a Location>,
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
    pub input: &'a mut dyn Read,
    /// Whether `input` is a terminal one may prompt on.
    pub terminal: bool,
    /// The client's working directory, against which a relative path it
    /// named is read (`backup DEST`); `None` in the direct case.
    pub cwd: Option<&'a Path>,
    /// Through a socket: whether the client went away.
    pub gone: Option<&'a dyn Fn() -> bool>,
}

impl Env<'_> {
    /// Runs `command` on this process's own standard streams.
    fn direct<T>(command: impl FnOnce(&mut Env<'_>) -> T) -> T {
        use std::io::IsTerminal as _;
        let (mut out, mut err, mut input) =
            (std::io::stdout(), std::io::stderr(), std::io::stdin());
        let terminal = input.is_terminal();
        command(&mut Env {
            store: None,
            location: None,
            out: &mut out,
            err: &mut err,
            input: &mut input,
            terminal,
            cwd: None,
            gone: None,
        })
    }

    /// Whether the command runs inside a server, through its control socket.
    fn served(&self) -> bool {
        self.store.is_some()
    }

    /// Whether the client of a command run through a socket went away (an
    /// import then stops and rolls back, as on a signal).
    fn gone(&self) -> bool {
        self.gone.is_some_and(|gone| gone())
    }

    /// Where the store is: the server's, or the one `args` name.
    fn location(&self, args: &StoreArgs) -> Location {
        match self.location {
            Some(location) => location.clone(),
            None => args.location(),
        }
    }

    /// `path` as the client meant it.
    fn path(&self, path: &Path) -> PathBuf {
        match self.cwd {
            Some(cwd) => cwd.join(path),
            None => path.to_owned(),
        }
    }
}

/// An open store: one a command opened itself, or the server's.
pub(crate) enum Held<'a> {
    Own(AnyStore),
    Served(&'a AnyStore),
}

impl std::ops::Deref for Held<'_> {
    type Target = AnyStore;
    fn deref(&self) -> &AnyStore {
        match self {
            Held::Own(store) => store,
            Held::Served(store) => store,
        }
    }
}

impl StoreArgs {
    /// The control socket of a server holding this store.
    pub fn socket(&self) -> PathBuf {
        self.control_socket
            .clone()
            .unwrap_or_else(|| self.data_dir.join(crate::control::DEFAULT_SOCKET_NAME))
    }

    /// The server's store when the command runs in it, else
    /// [`StoreArgs::open`].
    fn open_in<'a>(&self, served: Option<&'a AnyStore>) -> Result<Held<'a>, CliError> {
        match served {
            Some(store) => Ok(Held::Served(store)),
            None => self.open().map(Held::Own),
        }
    }

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
    Signal(std::io::Error),
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
    // The subcommand, or (none named) the serve flags.
    let command = if names_other_subcommand() {
        let SubcommandCli { command } = usage::parse();
        Ok(command)
    } else {
        let cli: Cli = usage::parse();
        cli.command.ok_or(cli.serve)
    };
    // One crypto provider for the whole process, before anything uses TLS.
    crate::tls::install_crypto_provider();
    // authd writes nothing anyone else should read (stores, exports,
    // backups): whatever it or sled creates is private even where no
    // explicit mode is set (sled's later snapshot files), serving included.
    // SAFETY: umask only sets this process's file mode mask.
    unsafe { libc::umask(0o077) };
    let result = match command {
        Err(serve) => serve_with(serve),
        Ok(Command::Serve(args)) => serve_with(*args),
        Ok(Command::Healthcheck(args)) => healthcheck::run(args),
        Ok(command) => {
            let socket = command.store().map(StoreArgs::socket);
            let plan = remote::Plan::of(&command);
            match Env::direct(|env| run_admin(command, env)) {
                // A server holds the embedded store: run the command in it,
                // through its control socket.
                Err(CliError::Open(OpenError::InUse(dir))) => match socket {
                    Some(socket) => remote::run(&socket, &dir, plan),
                    None => Err(CliError::Open(OpenError::InUse(dir))),
                },
                other => other,
            }
        }
    };
    report(result)
}

/// An admin command, on the store and streams of `env`.
fn run_admin(command: Command, env: &mut Env<'_>) -> Result<ExitCode, CliError> {
    match command {
        Command::Serve(_) => Err(CliError::Refused(
            "`serve` is not an admin command".to_owned(),
        )),
        Command::Healthcheck(_) => Err(CliError::Refused(
            "`healthcheck` is not an admin command".to_owned(),
        )),
        Command::User(args) => user::run(args, env),
        Command::Export(args) => transfer::export(args, env),
        Command::Import(args) => transfer::import(args, env),
        Command::Check(args) => maintenance::check(args, env),
        Command::Backup(args) => maintenance::backup(args, env),
        Command::Migrate(args) => maintenance::migrate(args, env),
        Command::Key(args) => maintenance::key(args, env),
        Command::Outbox(args) => outbox::run(args, env),
    }
}

impl Command {
    /// The store flags of an admin command.
    fn store(&self) -> Option<&StoreArgs> {
        match self {
            Command::Serve(_) | Command::Healthcheck(_) => None,
            Command::User(args) => Some(args.store()),
            Command::Export(args) => Some(&args.store),
            Command::Import(args) => Some(&args.store),
            Command::Check(args) => Some(args),
            Command::Backup(args) => Some(&args.store),
            Command::Migrate(args) => Some(&args.store),
            Command::Key(args) => Some(args.store()),
            Command::Outbox(args) => Some(args.store()),
        }
    }
}

/// A failed write of a command's output.
fn unwritten(e: std::io::Error) -> CliError {
    CliError::Io(format!("cannot write the output: {e}"))
}

/// The exit status of `result`, its error said on stderr.
fn report(result: Result<ExitCode, CliError>) -> ExitCode {
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
    let socket = args.control_socket();
    let config = args
        .into_config()
        .unwrap_or_else(|message| usage_error(&message));
    serve::serve(config, socket)?;
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
