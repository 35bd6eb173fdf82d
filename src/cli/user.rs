//! `authd user ...`: add, list, show, delete, set-password, logout.
//!
//! The same rules as the HTTP API: emails and passwords go through the same
//! parsers, and a password change or a logout ends the user's session.

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::ops::ControlFlow;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use super::{usage_error, CliError, StoreArgs};
use crate::config::DEFAULT_BCRYPT_COST;
use crate::hasher::Hasher;
use crate::store::{Change, Lookup, Precondition, StoreError};
use crate::user::{Email, Password, User};

#[derive(Debug, Args)]
pub struct UserArgs {
    #[command(subcommand)]
    command: UserCommand,
}

/// Options shared by the commands that set a password.
#[derive(Debug, Args)]
struct PasswordArgs {
    /// Read the password from standard input (one line; the newline is not
    /// part of it). Without it, authd prompts when stdin is a terminal.
    #[arg(long)]
    password_stdin: bool,

    /// bcrypt cost of the new hash (4-31).
    #[arg(long, env = "AUTHD_BCRYPT_COST", default_value_t = DEFAULT_BCRYPT_COST,
          value_parser = clap::value_parser!(u32).range(4..=31))]
    bcrypt_cost: u32,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user.
    Add {
        email: String,
        #[command(flatten)]
        password: PasswordArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List every user: a table, or JSON lines with --json.
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Show one user (never its hash or tokens).
    Show {
        email: String,
        /// Print a JSON object instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Delete a user, its session and any reset token.
    Delete {
        email: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Set a user's password; ends the session and any pending reset.
    SetPassword {
        email: String,
        #[command(flatten)]
        password: PasswordArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// End a user's session.
    Logout {
        email: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub fn run(args: UserArgs) -> Result<ExitCode, CliError> {
    match args.command {
        UserCommand::Add {
            email,
            password,
            store,
        } => {
            let email = parse_email(&email)?;
            let store = store.open()?;
            let secret = read_password(password.password_stdin)?;
            if store.find_user_by(&Lookup::Email(email.clone())).is_ok() {
                return Err(CliError::Refused("email already registered".to_owned()));
            }
            let hash = hash(&secret, password.bcrypt_cost)?;
            let user = store.add_user(&email, &hash).map_err(refused)?;
            println!("created user {} <{}>", user.id, user.email);
        }
        UserCommand::List { json, store } => {
            let store = store.open()?;
            let mut out = std::io::stdout().lock();
            let mut failed = None;
            if !json {
                let _ = writeln!(out, "{:>8}  {:<7}  {:<5}  EMAIL", "ID", "SESSION", "RESET");
            }
            store.each_user(&mut |user| {
                let line = if json {
                    summary(&user).to_string()
                } else {
                    format!(
                        "{:>8}  {:<7}  {:<5}  {}",
                        user.id.0,
                        yes_no(user.session.is_some()),
                        yes_no(user.reset.is_some()),
                        user.email
                    )
                };
                match writeln!(out, "{line}") {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(e) => {
                        failed = Some(e);
                        ControlFlow::Break(())
                    }
                }
            })?;
            if let Some(e) = failed {
                return Err(CliError::Io(format!("cannot write the list: {e}")));
            }
        }
        UserCommand::Show { email, json, store } => {
            let user = find(&*store.open()?, &email)?;
            if json {
                println!("{}", summary(&user));
            } else {
                println!("id:             {}", user.id);
                println!("email:          {}", user.email);
                println!(
                    "bcrypt cost:    {}",
                    cost_of(&user).map_or("?".to_owned(), |c| c.to_string())
                );
                println!("session:        {}", yes_no(user.session.is_some()));
                println!("reset pending:  {}", yes_no(user.reset.is_some()));
            }
        }
        UserCommand::Delete { email, store } => {
            let store = store.open()?;
            let user = find(&*store, &email)?;
            store.delete_user(user.id).map_err(refused)?;
            println!("deleted user {} <{}>", user.id, user.email);
        }
        UserCommand::SetPassword {
            email,
            password,
            store,
        } => {
            let store = store.open()?;
            let user = find(&*store, &email)?;
            let secret = read_password(password.password_stdin)?;
            let hash = hash(&secret, password.bcrypt_cost)?;
            store
                .update_user(
                    user.id,
                    &Precondition::None,
                    &[
                        Change::HashedPassword(hash),
                        Change::Session(None),
                        Change::Reset(None),
                    ],
                )
                .map_err(refused)?;
            println!(
                "password set for user {} <{}>; session ended",
                user.id, user.email
            );
        }
        UserCommand::Logout { email, store } => {
            let store = store.open()?;
            let user = find(&*store, &email)?;
            store
                .update_user(user.id, &Precondition::None, &[Change::Session(None)])
                .map_err(refused)?;
            println!("session ended for user {} <{}>", user.id, user.email);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn cost_of(user: &User) -> Option<u32> {
    user.hashed_password
        .parse::<bcrypt::HashParts>()
        .ok()
        .map(|p| p.get_cost())
}

/// What `list --json` and `show --json` print: no hash, no token hashes.
fn summary(user: &User) -> serde_json::Value {
    json!({
        "id": user.id.0,
        "email": user.email.as_str(),
        "bcrypt_cost": cost_of(user),
        "session": user.session.is_some(),
        "reset_pending": user.reset.is_some(),
    })
}

fn parse_email(raw: &str) -> Result<Email, CliError> {
    Email::parse(raw).map_err(|e| CliError::Refused(format!("email {e}")))
}

fn find(store: &dyn crate::store::UserStore, raw: &str) -> Result<User, CliError> {
    let email = parse_email(raw)?;
    store
        .find_user_by(&Lookup::Email(email.clone()))
        .map_err(|e| match e {
            StoreError::NotFound => CliError::Refused(format!("no user with email {email}")),
            other => other.into(),
        })
}

fn refused(e: StoreError) -> CliError {
    match e {
        StoreError::EmailTaken => CliError::Refused("email already registered".to_owned()),
        StoreError::NotFound => CliError::Refused("no such user".to_owned()),
        other => other.into(),
    }
}

fn hash(password: &Password, cost: u32) -> Result<String, CliError> {
    let hasher = Hasher::start(1, 1, cost).map_err(|e| CliError::Io(e.to_string()))?;
    hasher
        .hash(password)
        .map_err(|e| CliError::Io(format!("cannot hash the password: {e}")))
}

/// Reads the new password: from stdin with `--password-stdin`, else from a
/// no-echo prompt (twice) when stdin is a terminal; else it is a usage
/// error, since silently reading a pipe would surprise.
fn read_password(from_stdin: bool) -> Result<Password, CliError> {
    let raw = if from_stdin {
        let mut buf = Vec::new();
        std::io::stdin()
            .lock()
            .take(4096)
            .read_to_end(&mut buf)
            .map_err(|e| CliError::Io(format!("cannot read the password: {e}")))?;
        let text = String::from_utf8(buf)
            .map_err(|_| CliError::Refused("password is not valid UTF-8".to_owned()))?;
        let line = text.strip_suffix('\n').unwrap_or(&text);
        line.strip_suffix('\r').unwrap_or(line).to_owned()
    } else if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")
            .map_err(|e| CliError::Io(format!("cannot read the password: {e}")))?;
        let again = rpassword::prompt_password("Repeat password: ")
            .map_err(|e| CliError::Io(format!("cannot read the password: {e}")))?;
        if first != again {
            return Err(CliError::Refused("the passwords do not match".to_owned()));
        }
        first
    } else {
        usage_error("no password given: pass --password-stdin to read it from standard input")
    };
    Password::parse(&raw).map_err(|e| CliError::Refused(format!("password {e}")))
}
