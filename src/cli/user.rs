//! `authd user ...`: add, list, show, find, delete, set-password,
//! sessions, logout.
//!
//! Each command calls the service's own use case (`auth::admin`), so the
//! rules and the audit lines are the API's: emails and passwords go
//! through the same parsers, and a password change ends every session.

use std::io::{Read as _, Write};
use std::ops::ControlFlow;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use super::{unwritten, usage_error, CliError, Env, Held, StoreArgs};
use crate::audit::Audit;
use crate::auth::limits::{LimitSettings, Limits};
use crate::auth::{Auth, AuthError, Caller, Rules};
use crate::config::DEFAULT_BCRYPT_COST;
use crate::hasher::{Algorithm, DjangoPbkdf2, Hasher, Scheme};
use crate::session::Session;
use crate::store::{keyword, AnyStore, StoreError};
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

    /// Algorithm of the new hash: bcrypt (72 bytes of a password at most)
    /// or argon2id (up to 1,024 bytes). A server configured otherwise
    /// rehashes it at the user's next login.
    #[arg(
        long,
        env = "AUTHD_PASSWORD_HASH",
        value_enum,
        value_name = "bcrypt|argon2id",
        default_value = "bcrypt"
    )]
    password_hash: Algorithm,

    #[command(flatten)]
    argon2: super::serve::Argon2Args,
}

impl PasswordArgs {
    /// How the new hash is made.
    fn scheme(&self) -> Result<Scheme, CliError> {
        Ok(match self.password_hash {
            Algorithm::Bcrypt => Scheme::Bcrypt {
                cost: self.bcrypt_cost,
            },
            Algorithm::Argon2id => {
                let params = self.argon2.params();
                // Refused here, not by the hash: a usage error.
                argon2::Params::new(
                    params.memory_kib,
                    params.iterations,
                    params.parallelism,
                    None,
                )
                .map_err(|e| {
                    CliError::Usage(format!(
                        "argon2id parameters: {e} (at least 8 KiB per lane)"
                    ))
                })?;
                Scheme::Argon2id(params)
            }
        })
    }
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user. In a missing or empty data directory (or a database
    /// without authd's schema) this creates the store first, and says so.
    Add {
        /// The new user's email address (the rules of registration apply).
        email: String,
        /// Create a store even in a data directory that holds other files
        /// (by default only a missing or empty one gets a new store).
        #[arg(long)]
        create: bool,
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
        /// The user's email address, in any letter case.
        email: String,
        /// Print a JSON object instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Delete a user, its sessions and any reset token.
    Delete {
        /// The email address of the user to delete.
        email: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Set a user's password; ends every session and any pending reset.
    SetPassword {
        /// The email address of the user whose password to set.
        email: String,
        #[command(flatten)]
        password: PasswordArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Mark a user's address verified (as redeeming a verification token
    /// would), e.g. for an account an administrator vouches for.
    Verify {
        /// The email address of the user to mark verified.
        email: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Turn off a user's TOTP second factor (enabled or pending), for
    /// someone who lost their device and their recovery codes; their next
    /// login asks for the password alone.
    TotpDisable {
        /// The email address of the user whose second factor goes.
        email: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List a user's sessions, newest first (never their tokens).
    Sessions {
        /// The email address of the user whose sessions to list.
        email: String,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// End a user's sessions: all of them, or the one given. A user without
    /// sessions is not an error: it says "no session to end" and exits 0.
    Logout {
        /// The email address of the user to log out.
        email: String,
        /// The id of the session to end (from `authd user sessions`).
        #[arg(long, value_name = "ID")]
        session: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Find the user whose FIELD is VALUE (the reference's
    /// `find_user_by`): id, email, session_id or reset_token.
    Find {
        /// FIELD=VALUE, e.g. email=ann@example.com or id=7.
        query: String,
        /// Print a JSON object instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// The scheme of commands that hash nothing (delete, verify, logout...).
const NO_HASHING: Scheme = Scheme::Bcrypt {
    cost: DEFAULT_BCRYPT_COST,
};

/// The service on the store, for one admin command: the same use cases
/// and audit lines as the API.
fn service(store: &AnyStore, scheme: Scheme) -> Result<Auth, CliError> {
    let hasher = Hasher::start_scheme(1, 1, scheme, crate::hasher::DEFAULT_PLACES_PER_KEY)
        .map_err(|e| CliError::Io(e.to_string()))?;
    let limits = Limits::new(LimitSettings::default());
    Ok(Auth::for_admin(
        store.request(),
        hasher,
        Rules::dev(),
        limits,
        Audit::new(true),
    ))
}

impl UserArgs {
    /// The store flags of the subcommand.
    pub(super) fn store(&self) -> &StoreArgs {
        match &self.command {
            UserCommand::Add { store, .. }
            | UserCommand::List { store, .. }
            | UserCommand::Show { store, .. }
            | UserCommand::Delete { store, .. }
            | UserCommand::SetPassword { store, .. }
            | UserCommand::Verify { store, .. }
            | UserCommand::TotpDisable { store, .. }
            | UserCommand::Sessions { store, .. }
            | UserCommand::Logout { store, .. }
            | UserCommand::Find { store, .. } => store,
        }
    }

    /// Whether the subcommand reads a password from standard input, and
    /// whether it was asked to with --password-stdin.
    pub(super) fn password(&self) -> Option<bool> {
        match &self.command {
            UserCommand::Add { password, .. } | UserCommand::SetPassword { password, .. } => {
                Some(password.password_stdin)
            }
            _ => None,
        }
    }
}

pub(super) fn run(args: UserArgs, env: &mut Env<'_>) -> Result<ExitCode, CliError> {
    let admin = Caller::admin();
    match args.command {
        UserCommand::Add {
            email,
            create,
            password,
            store: args,
        } => {
            let email = parse_new_email(&email)?;
            // An existing store is opened (and one in use refused) before
            // the password is asked for; a new one is made only once there
            // is a password to give its first user.
            let existing = match env.store {
                Some(store) => Some(Held::Served(store)),
                None => args.open_or_plan(create)?.map(Held::Own),
            };
            let scheme = password.scheme()?;
            let secret = read_password(password.password_stdin, scheme, env)?;
            let store = match existing {
                Some(store) => store,
                None => Held::Own(args.create(create)?),
            };
            let user = service(&store, scheme)?
                .add_user(&admin, &email, &secret)
                .map_err(refused(&email))?;
            writeln!(env.out, "created user {} <{}>", user.id, shown(&user.email))
                .map_err(unwritten)?;
        }
        UserCommand::List { json, store } => {
            let store = store.open_in(env.store)?;
            let out = &mut *env.out;
            let mut failed = None;
            if !json {
                let _ = writeln!(out, "{:>8}  EMAIL", "ID");
            }
            store.maintenance().each_user(&mut |user| {
                let line = if json {
                    summary(&user).to_string()
                } else {
                    format!("{:>8}  {}", user.id.0, shown(&user.email))
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
            let email = parse_email(&email)?;
            let store = store.open_in(env.store)?;
            let (user, sessions) = service(&store, NO_HASHING)?
                .sessions_of(&email)
                .map_err(refused(&email))?;
            show(env.out, &user, sessions.len(), json).map_err(unwritten)?;
        }
        UserCommand::Find { query, json, store } => {
            let Some((field, value)) = query.split_once('=') else {
                const QUERY: &str = "the query is FIELD=VALUE, e.g. email=ann@example.com";
                if env.served() {
                    return Err(CliError::Usage(QUERY.to_owned()));
                }
                usage_error(QUERY);
            };
            let store = store.open_in(env.store)?;
            let user =
                keyword::find_user_by(&*store.request(), field, value).map_err(|e| match e {
                    StoreError::NotFound => {
                        CliError::Refused(format!("no user with {field}={value}"))
                    }
                    StoreError::UnknownField(field) => {
                        CliError::Refused(format!("users have no field {field:?}"))
                    }
                    other => other.into(),
                })?;
            let sessions = store.request().sessions_of(user.id)?.len();
            show(env.out, &user, sessions, json).map_err(unwritten)?;
        }
        UserCommand::Delete { email, store } => {
            let email = parse_email(&email)?;
            let store = store.open_in(env.store)?;
            let user = service(&store, NO_HASHING)?
                .delete_user(&admin, &email)
                .map_err(refused(&email))?;
            writeln!(env.out, "deleted user {} <{}>", user.id, shown(&user.email))
                .map_err(unwritten)?;
        }
        UserCommand::SetPassword {
            email,
            password,
            store,
        } => {
            let email = parse_email(&email)?;
            let store = store.open_in(env.store)?;
            let scheme = password.scheme()?;
            let secret = read_password(password.password_stdin, scheme, env)?;
            let user = service(&store, scheme)?
                .set_password(&admin, &email, &secret)
                .map_err(refused(&email))?;
            writeln!(
                env.out,
                "password set for user {} <{}>; sessions ended",
                user.id, user.email
            )
            .map_err(unwritten)?;
        }
        UserCommand::Verify { email, store } => {
            let email = parse_email(&email)?;
            let store = store.open_in(env.store)?;
            let user = service(&store, NO_HASHING)?
                .verify_user(&admin, &email)
                .map_err(refused(&email))?;
            writeln!(
                env.out,
                "email verified for user {} <{}>",
                user.id,
                shown(&user.email)
            )
            .map_err(unwritten)?;
        }
        UserCommand::TotpDisable { email, store } => {
            let email = parse_email(&email)?;
            let store = store.open_in(env.store)?;
            let user = service(&store, NO_HASHING)?
                .admin_disable_totp(&admin, &email)
                .map_err(refused(&email))?;
            writeln!(
                env.out,
                "second factor turned off for user {} <{}>",
                user.id,
                shown(&user.email)
            )
            .map_err(unwritten)?;
        }
        UserCommand::Sessions { email, json, store } => {
            let email = parse_email(&email)?;
            let store = store.open_in(env.store)?;
            let (_, sessions) = service(&store, NO_HASHING)?
                .sessions_of(&email)
                .map_err(refused(&email))?;
            let out = &mut *env.out;
            let written = if json {
                sessions
                    .iter()
                    .try_for_each(|s| writeln!(out, "{}", session_json(s)))
            } else {
                writeln!(
                    out,
                    "{:<22}  {:<20}  {:<20}  {:<15}  USER AGENT",
                    "ID", "CREATED", "LAST SEEN", "IP"
                )
                .and_then(|()| {
                    sessions.iter().try_for_each(|s| {
                        writeln!(
                            out,
                            "{:<22}  {:<20}  {:<20}  {:<15}  {}",
                            s.id.to_string(),
                            crate::clock::rfc3339(s.created_at),
                            crate::clock::rfc3339(s.last_seen),
                            s.ip.as_deref().unwrap_or("-"),
                            s.user_agent.as_deref().map_or("-".into(), printable)
                        )
                    })
                })
            };
            written.map_err(|e| CliError::Io(format!("cannot write the list: {e}")))?;
        }
        UserCommand::Logout {
            email,
            session,
            store,
        } => {
            let email = parse_email(&email)?;
            let store = store.open_in(env.store)?;
            let (user, ended) = service(&store, NO_HASHING)?
                .log_out_user(&admin, &email, session.as_deref())
                .map_err(refused(&email))?;
            writeln!(env.out, "{}", logout_report(ended, &user)).map_err(unwritten)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What `user logout` says it did: how many sessions ended, or that there
/// was none to end (the user is logged out either way: exit 0).
fn logout_report(ended: usize, user: &User) -> String {
    let who = format!("user {} <{}>", user.id, shown(&user.email));
    match ended {
        0 => format!("no session to end: {who} had none"),
        1 => format!("1 session ended for {who}"),
        n => format!("{n} sessions ended for {who}"),
    }
}

/// `text` with control characters escaped: a user agent is whatever a
/// client sent, and must not reach the operator's terminal as escape
/// sequences.
fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// Prints one user: text, or a JSON object.
fn show(out: &mut dyn Write, user: &User, sessions: usize, json: bool) -> std::io::Result<()> {
    if json {
        let mut value = summary(user);
        value["sessions"] = sessions.into();
        writeln!(out, "{value}")
    } else {
        writeln!(out, "id:             {}", user.id)?;
        writeln!(out, "email:          {}", shown(&user.email))?;
        writeln!(
            out,
            "verified:       {}",
            if user.email_verified { "yes" } else { "no" }
        )?;
        if let Some(pending) = &user.pending_email {
            writeln!(out, "changing to:    {} (not verified yet)", shown(pending))?;
        }
        writeln!(
            out,
            "created:        {}",
            user.created_at
                .map_or("before authd recorded it".to_owned(), crate::clock::rfc3339)
        )?;
        writeln!(
            out,
            "password hash:  {}{}",
            describe_hash(&user.hashed_password),
            if user.password_normalized {
                ""
            } else {
                " (of the password as typed; made NFC at the next login)"
            }
        )?;
        writeln!(out, "second factor:  {}", second_factor(user))?;
        writeln!(out, "sessions:       {sessions}")
    }
}

/// What `show` says of the second factor.
fn second_factor(user: &User) -> String {
    match &user.totp {
        None => "none".to_owned(),
        Some(totp) if !totp.enabled => "TOTP pending (not confirmed yet)".to_owned(),
        Some(totp) => format!("TOTP, {} recovery codes left", totp.recovery.len()),
    }
}

/// What `show` says of a stored hash: its scheme and parameters; an
/// imported Django hash is named as such (replaced at the next login).
fn describe_hash(hash: &str) -> String {
    if let Some(scheme) = Scheme::of(hash) {
        return scheme.describe();
    }
    match DjangoPbkdf2::parse(hash) {
        Ok(django) => format!(
            "pbkdf2_sha256, {} iterations (imported from Django; replaced at the next login)",
            django.iterations
        ),
        Err(_) => "?".to_owned(),
    }
}

/// The bcrypt cost of the user's hash; `None` for an argon2id hash.
fn cost_of(user: &User) -> Option<u32> {
    match Scheme::of(&user.hashed_password)? {
        Scheme::Bcrypt { cost } => Some(cost),
        Scheme::Argon2id(_) => None,
    }
}

/// What `list --json` and `show --json` print: no hash, no token hashes.
fn summary(user: &User) -> serde_json::Value {
    json!({
        "id": user.id.0,
        "email": user.email.as_str(),
        "email_verified": user.email_verified,
        "created_at": user.created_at.map(crate::clock::rfc3339),
        "bcrypt_cost": cost_of(user),
        "totp": match &user.totp {
            None => "none",
            Some(totp) if !totp.enabled => "pending",
            Some(_) => "enabled",
        },
        "password_hash": crate::hasher::kind_of(&user.hashed_password),
    })
}

/// A session as `sessions --json` prints it: what `GET /sessions` shows.
fn session_json(session: &Session) -> serde_json::Value {
    json!({
        "id": session.id.to_string(),
        "created_at": crate::clock::rfc3339(session.created_at),
        "last_seen_at": crate::clock::rfc3339(session.last_seen),
        "ip": session.ip,
        "user_agent": session.user_agent,
    })
}

/// An address as a terminal should show it: characters that are invisible
/// or reorder text (zero-width spaces, direction overrides, which older
/// stores may hold) escaped as `\u{200b}`, so two look-alike accounts can be
/// told apart and a listing cannot be made to read backwards.
fn shown(email: &Email) -> String {
    email
        .as_str()
        .chars()
        .map(|c| {
            if c.is_control() || crate::email_key::is_invisible(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// An address to find an account by.
fn parse_email(raw: &str) -> Result<Email, CliError> {
    Email::parse(raw).map_err(|e| CliError::Refused(format!("email {e}")))
}

/// The address of a new account: the rules of registration.
fn parse_new_email(raw: &str) -> Result<Email, CliError> {
    Email::parse_new(raw).map_err(|e| CliError::Refused(format!("email {e}")))
}

/// An admin use case's refusal about `email`, as one line.
fn refused(email: &Email) -> impl Fn(AuthError) -> CliError + '_ {
    move |e| match e {
        AuthError::EmailTaken => CliError::Refused("email already registered".to_owned()),
        AuthError::UnknownEmail => CliError::Refused(format!("no user with email {email}")),
        AuthError::SessionNotFound => {
            CliError::Refused(format!("{email} has no session with this id"))
        }
        AuthError::TotpNotEnabled => CliError::Refused(format!("{email} has no second factor")),
        other => other.into(),
    }
}

/// How to give a password without a terminal, for the refusals below.
const PASSWORD_HINT: &str = "write it to standard input with --password-stdin \
     (e.g. printf '%s\\n' \"$PASSWORD\" | authd user add EMAIL --password-stdin), \
     or run the command in a terminal to be prompted";

/// Reads the new password: from stdin with `--password-stdin`, else from a
/// no-echo prompt (twice) when stdin is a terminal. Without either there is
/// no password: a usage error (status 2), since silently reading a pipe
/// would surprise; with `--password-stdin` and nothing on stdin, a refusal
/// (status 1). An empty line is a password, refused by its rules.
fn read_password(
    from_stdin: bool,
    scheme: Scheme,
    env: &mut Env<'_>,
) -> Result<Password, CliError> {
    let raw = if from_stdin {
        let mut buf = Vec::new();
        (&mut *env.input)
            .take(4096)
            .read_to_end(&mut buf)
            .map_err(|e| CliError::Io(format!("cannot read the password: {e}")))?;
        if buf.is_empty() {
            return Err(CliError::Refused(format!(
                "no password on standard input (it was empty): {PASSWORD_HINT}"
            )));
        }
        let text = String::from_utf8(buf)
            .map_err(|_| CliError::Refused("password is not valid UTF-8".to_owned()))?;
        let line = text.strip_suffix('\n').unwrap_or(&text);
        line.strip_suffix('\r').unwrap_or(line).to_owned()
    } else if env.terminal {
        let first = rpassword::prompt_password("Password: ")
            .map_err(|e| CliError::Io(format!("cannot read the password: {e}")))?;
        let again = rpassword::prompt_password("Repeat password: ")
            .map_err(|e| CliError::Io(format!("cannot read the password: {e}")))?;
        if first != again {
            return Err(CliError::Refused("the passwords do not match".to_owned()));
        }
        first
    } else {
        return Err(CliError::Usage(format!(
            "no password on standard input, and no terminal to prompt on: {PASSWORD_HINT}"
        )));
    };
    Password::parse_for(&raw, scheme.password_limit())
        .map_err(|e| CliError::Refused(format!("password {e}")))
}
