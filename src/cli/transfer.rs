//! `authd export` and `authd import`: users as JSON lines.
//!
//! One user per line, `{"id", "email", "hashed_password"}`. Sessions and
//! reset tokens are not exported: moving a store logs everyone out, which
//! is what moving credentials should do. Import takes lines with at least
//! `email` and a standard bcrypt `hashed_password` (`$2a$`, `$2b$`, `$2y$`)
//! or an argon2id PHC string (`$argon2id$v=19$m=..,t=..,p=..$salt$hash`,
//! what authd makes under `--password-hash argon2id`) or Django's
//! `pbkdf2_sha256$iterations$salt$hash` (the commonest migration source;
//! replaced by the configured scheme at the user's next login), so users
//! from another system (the reference's SQLite `users` table, for one) keep
//! their passwords, and an export of a store holding every kind imports again.
//!
//! Import does not verify hashes, so it checks them strictly instead: a hash
//! that bcrypt could not read would answer every login of its user with a
//! 500, and one of a very high cost would occupy a bcrypt worker for minutes
//! per login attempt. The cost must be two digits, 4 to 31, and at most
//! `--max-bcrypt-cost` (by default the configured cost + 2). An argon2id
//! hash must be version 19 with a salt and a hash, and at most 1 GiB,
//! 16 iterations and 16 lanes: each login of its user takes that memory.
//! A Django hash must have 1 to 2,000,000 iterations (each login of its
//! user until the rehash runs them all), a salt and 32 bytes of hash.
//!
//! An import is all or nothing: every line is checked before anything is
//! written, and the writing is one import of the store
//! ([`crate::store::Maintenance::begin_import`]), committed only after its
//! last batch. Interrupted (SIGINT, SIGTERM, SIGHUP), it rolls back what it
//! wrote and exits with status 130; killed, the database (PostgreSQL) or
//! the next open of the store (sled) rolls it back.
//!
//! An export holds every password hash: its file is made 0600.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, IsTerminal as _, Write};
use std::ops::ControlFlow;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use super::{unwritten, CliError, Env, Held, StoreArgs};
use crate::config::DEFAULT_BCRYPT_COST;
use crate::hasher::{DjangoPbkdf2, DJANGO_PBKDF2_PREFIX};
use crate::server_key::ServerKey;
use crate::store::StoreError;
use crate::totp::{Sealer, Secret};
use crate::user::{Email, NewUser, TotpState};

/// Users written per transaction (and per progress step) during import.
const IMPORT_CHUNK: usize = 10_000;
/// Without a terminal, the least time between two progress lines.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Status of an import ended by a signal (128 + SIGINT, as shells report).
const INTERRUPTED: u8 = 130;
/// Bad lines printed before the rest are only counted.
const MAX_REPORTED: usize = 50;
/// bcrypt's own cost bounds (the `$2?$NN$` field).
const BCRYPT_COSTS: std::ops::RangeInclusive<u32> = 4..=31;
/// How far above the configured cost an imported hash may be by default.
const DEFAULT_COST_MARGIN: u32 = 2;
/// bcrypt's base64 alphabet (not the standard one's order or symbols).
const BCRYPT_BASE64: &[u8] = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write to this file instead of standard output; it is made private
    /// (0600), as it holds every password hash and second-factor secret.
    #[arg(long, short, value_name = "FILE")]
    pub(super) output: Option<PathBuf>,
    #[command(flatten)]
    pub(super) store: StoreArgs,
    #[command(flatten)]
    key: KeyArgs,
}

/// Where the server key that seals second-factor secrets is.
#[derive(Debug, Args)]
struct KeyArgs {
    /// The server key file `authd serve` is given, if it is given one
    /// (otherwise the key is the store's own): second-factor secrets are
    /// sealed under it.
    #[arg(long, env = "AUTHD_SECRET_KEY_FILE", value_name = "PATH")]
    secret_key_file: Option<PathBuf>,
}

impl KeyArgs {
    /// The sealer of second-factor secrets for `store`.
    fn sealer(&self, store: &crate::store::AnyStore) -> Result<Sealer, CliError> {
        let key = match &self.secret_key_file {
            Some(path) => {
                ServerKey::from_file(path).map_err(|e| CliError::Refused(e.to_string()))?
            }
            None => store.server_key()?,
        };
        Ok(Sealer::new(&key))
    }
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// JSON-lines file to read, or - for standard input.
    pub(super) file: String,
    /// Create a store even in a data directory that holds other files (by
    /// default only a missing or empty one gets a new store).
    #[arg(long)]
    create: bool,
    /// Leave users whose email is already in the store as they are, instead
    /// of refusing the whole import.
    #[arg(long)]
    skip_existing: bool,
    /// Refuse hashes whose bcrypt cost is above N (4-31): each step doubles
    /// the work of every login attempt on that account [default:
    /// --bcrypt-cost + 2].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(4..=31))]
    max_bcrypt_cost: Option<u32>,
    /// The bcrypt cost `authd serve` is configured with (4-31); only sets
    /// the default of --max-bcrypt-cost.
    #[arg(long, env = "AUTHD_BCRYPT_COST", default_value_t = DEFAULT_BCRYPT_COST,
          value_parser = clap::value_parser!(u32).range(4..=31))]
    bcrypt_cost: u32,
    #[command(flatten)]
    pub(super) store: StoreArgs,
    #[command(flatten)]
    key: KeyArgs,
}

impl ImportArgs {
    /// The highest cost an imported hash may have.
    fn max_cost(&self) -> u32 {
        self.max_bcrypt_cost
            .unwrap_or_else(|| (self.bcrypt_cost + DEFAULT_COST_MARGIN).min(*BCRYPT_COSTS.end()))
    }
}

#[derive(Serialize)]
struct ExportLine<'a> {
    id: u64,
    email: &'a str,
    hashed_password: &'a str,
    /// The hash's kind (`bcrypt`, `argon2id`, `pbkdf2_sha256`), for the
    /// reader; import reads it from the hash itself.
    password_hash: Option<&'static str>,
    /// Whether the hash is of the password's NFC form (authd's own
    /// hashes) or of the password as typed (older, or from elsewhere).
    password_normalized: bool,
    email_verified: bool,
    /// RFC 3339 to the millisecond; `null` for an account older than the
    /// record of it.
    created_at: Option<String>,
    /// The second factor, enabled or pending; absent without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    totp: Option<TotpLine>,
}

/// A second factor as exported: its secret in the clear (base32, as an
/// app holds it), so that a store under another server key can seal it
/// again, with the last step used and the unused recovery codes' SHA-256.
#[derive(Serialize, Deserialize)]
struct TotpLine {
    secret: String,
    enabled: bool,
    #[serde(default)]
    last_step: u64,
    #[serde(default)]
    recovery: Vec<String>,
}

impl TotpLine {
    fn of(totp: &TotpState, sealer: &Sealer) -> Result<TotpLine, String> {
        let secret = sealer
            .open(&totp.sealed_secret)
            .map_err(|e| e.to_string())?;
        Ok(TotpLine {
            secret: secret.to_base32(),
            enabled: totp.enabled,
            last_step: totp.last_step,
            recovery: totp.recovery.iter().map(hex).collect(),
        })
    }

    /// The secret and the state it goes into, its seal still to be made
    /// (under the key of the store written to).
    fn parse(&self) -> Result<(Secret, TotpState), String> {
        let secret = Secret::from_base32(&self.secret)
            .ok_or("totp.secret is not base32 of at least 128 bits")?;
        if self.recovery.len() > crate::totp::RECOVERY_CODES {
            return Err(format!(
                "totp.recovery holds more than {} codes",
                crate::totp::RECOVERY_CODES
            ));
        }
        let recovery = self
            .recovery
            .iter()
            .map(|code| unhex(code).ok_or("totp.recovery holds a value that is not 64 hex digits"))
            .collect::<Result<_, _>>()?;
        Ok((
            secret,
            TotpState {
                sealed_secret: Vec::new(),
                enabled: self.enabled,
                last_step: self.last_step,
                recovery,
            },
        ))
    }
}

fn hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// A line of an import: an export's line, or a line written by hand or by
/// another system with only the first two fields. A missing
/// `email_verified` is `true`: the accounts come from a system that let
/// them sign in. A missing `password_normalized` is `false`: another
/// system hashed the password as typed (the next login rehashes it).
#[derive(Deserialize)]
struct ImportLine {
    email: String,
    hashed_password: String,
    #[serde(default)]
    password_normalized: bool,
    #[serde(default = "verified_by_default")]
    email_verified: bool,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    totp: Option<TotpLine>,
}

fn verified_by_default() -> bool {
    true
}

/// Streams every user out, one line each, in id order.
/// Through a control socket the lines go to the client, which writes
/// them to its --output file.
pub(super) fn export(args: ExportArgs, env: &mut Env<'_>) -> Result<ExitCode, CliError> {
    let store = args.store.open_in(env.store)?;
    let sink: Box<dyn Write + '_> = match &args.output {
        Some(path) if !env.served() => Box::new(
            create_private(path)
                .map_err(|e| CliError::Io(format!("cannot create {}: {e}", path.display())))?,
        ),
        _ => Box::new(&mut *env.out),
    };
    let mut out = BufWriter::new(sink);
    let mut count = 0u64;
    let mut failed = None;
    // Read only when a user has a second factor.
    let mut sealer = None;
    store.maintenance().each_user(&mut |user| {
        let totp = match &user.totp {
            None => None,
            Some(totp) => {
                let opened = match &sealer {
                    Some(sealer) => TotpLine::of(totp, sealer),
                    None => args
                        .key
                        .sealer(&store)
                        .map_err(|e| e.to_string())
                        .and_then(|s| TotpLine::of(totp, sealer.insert(s))),
                };
                match opened {
                    Ok(line) => Some(line),
                    Err(e) => {
                        failed = Some(std::io::Error::other(format!(
                            "user {} ({}): its second factor: {e}",
                            user.id, user.email
                        )));
                        return ControlFlow::Break(());
                    }
                }
            }
        };
        let line = ExportLine {
            id: user.id.0,
            email: user.email.as_str(),
            hashed_password: &user.hashed_password,
            password_hash: crate::hasher::kind_of(&user.hashed_password),
            password_normalized: user.password_normalized,
            email_verified: user.email_verified,
            created_at: user.created_at.map(crate::clock::rfc3339_millis),
            totp,
        };
        let written = serde_json::to_writer(&mut out, &line)
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"));
        match written {
            Ok(()) => {
                count += 1;
                ControlFlow::Continue(())
            }
            Err(e) => {
                failed = Some(e);
                ControlFlow::Break(())
            }
        }
    })?;
    if let Some(e) = failed.or_else(|| out.flush().err()) {
        return Err(CliError::Io(format!("cannot write the export: {e}")));
    }
    drop(out);
    writeln!(env.err, "authd: exported {count} users").map_err(unwritten)?;
    Ok(ExitCode::SUCCESS)
}

/// Creates (or truncates) `path` as a file only its owner may read: 0600
/// whatever the umask, also when it existed with a wider mode.
pub(super) fn create_private(path: &std::path::Path) -> std::io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// Checks that `hash` is a bcrypt hash every implementation reads, of a
/// cost from 4 to `max_cost`: `$2a$`, `$2b$` or `$2y$`, a two-digit cost,
/// `$`, then a 22-character salt and a 31-character hash in bcrypt's base64
/// (60 characters in all). Says what is wrong, without the hash itself.
fn check_bcrypt(hash: &str, max_cost: u32) -> Result<(), String> {
    const NOT_BCRYPT: &str = "hashed_password is not a $2a$, $2b$ or $2y$ bcrypt hash";
    if !["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
        return Err(NOT_BCRYPT.to_owned());
    }
    let bytes = hash.as_bytes();
    let field = &bytes[4..bytes.len().min(6)];
    if field.len() != 2 || !field.iter().all(u8::is_ascii_digit) || bytes.get(6) != Some(&b'$') {
        // Shown only when short: without its `$` the field runs into the salt.
        let field = hash[4..].split('$').next().unwrap_or_default();
        let shown = if field.chars().count() <= 4 {
            format!(" {field:?}")
        } else {
            String::new()
        };
        return Err(format!(
            "hashed_password has a malformed bcrypt cost field{shown} \
             (two digits, 04 to 31, then $)"
        ));
    }
    let cost = u32::from(field[0] - b'0') * 10 + u32::from(field[1] - b'0');
    if !BCRYPT_COSTS.contains(&cost) {
        return Err(format!(
            "hashed_password has bcrypt cost {cost:02}, outside 04 to 31"
        ));
    }
    if cost > max_cost {
        return Err(format!(
            "hashed_password has bcrypt cost {cost:02}, above --max-bcrypt-cost {max_cost}"
        ));
    }
    let rest = &bytes[7..];
    if rest.len() != 53 || !rest.iter().all(|b| BCRYPT_BASE64.contains(b)) {
        return Err(format!(
            "{NOT_BCRYPT} (after the cost, 53 characters of ./A-Za-z0-9)"
        ));
    }
    // The last character of the salt and of the hash carry unused bits,
    // which must be zero for bcrypt to read them.
    if hash.parse::<bcrypt::HashParts>().is_err() {
        return Err(format!("{NOT_BCRYPT} (its salt or hash is not canonical)"));
    }
    Ok(())
}

/// Most memory an imported argon2id hash may ask of each login, in KiB
/// (1 GiB: fifty times OWASP's minimum).
const MAX_ARGON2_MEMORY_KIB: u32 = 1_048_576;
/// Most iterations and lanes of an imported argon2id hash.
const MAX_ARGON2_ITERATIONS: u32 = 16;
const MAX_ARGON2_LANES: u32 = 16;

/// Most iterations of an imported Django pbkdf2_sha256 hash: twice Django
/// 5.2's default (1,000,000), as each login of its user until the rehash
/// runs them all on a hash worker.
const MAX_PBKDF2_ITERATIONS: u32 = 2_000_000;

/// Checks a stored hash of any kind authd verifies: argon2id
/// ([`check_argon2id`]), Django's pbkdf2_sha256 ([`check_pbkdf2`]) or
/// bcrypt ([`check_bcrypt`]).
fn check_hash(hash: &str, max_cost: u32) -> Result<(), String> {
    if hash.starts_with("$argon2") {
        check_argon2id(hash)
    } else if hash.starts_with("pbkdf2") {
        check_pbkdf2(hash)
    } else {
        check_bcrypt(hash, max_cost)
    }
}

/// Checks that `hash` is an argon2id PHC string authd can verify, of
/// bounded cost. Says what is wrong, without the hash itself.
fn check_argon2id(hash: &str) -> Result<(), String> {
    use argon2::password_hash::PasswordHash;
    const NOT_ARGON2ID: &str = "hashed_password is not an argon2id PHC string \
                                ($argon2id$v=19$m=..,t=..,p=..$salt$hash)";
    let parsed = PasswordHash::new(hash).map_err(|e| format!("{NOT_ARGON2ID}: {e}"))?;
    if parsed.algorithm != argon2::Algorithm::Argon2id.ident()
        || parsed.version != Some(0x13)
        || parsed.salt.is_none()
        || parsed.hash.is_none()
    {
        return Err(NOT_ARGON2ID.to_owned());
    }
    let params = argon2::Params::try_from(&parsed).map_err(|e| format!("{NOT_ARGON2ID}: {e}"))?;
    if params.m_cost() > MAX_ARGON2_MEMORY_KIB
        || params.t_cost() > MAX_ARGON2_ITERATIONS
        || params.p_cost() > MAX_ARGON2_LANES
    {
        return Err(format!(
            "hashed_password asks argon2id for m={} KiB, t={}, p={}: above {MAX_ARGON2_MEMORY_KIB} \
             KiB, {MAX_ARGON2_ITERATIONS} iterations or {MAX_ARGON2_LANES} lanes",
            params.m_cost(),
            params.t_cost(),
            params.p_cost()
        ));
    }
    Ok(())
}

/// Checks that `hash` is a Django `pbkdf2_sha256$iterations$salt$hash`
/// authd can verify ([`DjangoPbkdf2`]), of at most
/// [`MAX_PBKDF2_ITERATIONS`]. Says what is wrong, without the hash itself.
fn check_pbkdf2(hash: &str) -> Result<(), String> {
    let parsed = DjangoPbkdf2::parse(hash).map_err(|problem| {
        format!(
            "hashed_password is not a Django {DJANGO_PBKDF2_PREFIX}iterations$salt$hash: it {problem}"
        )
    })?;
    if parsed.iterations > MAX_PBKDF2_ITERATIONS {
        return Err(format!(
            "hashed_password asks pbkdf2_sha256 for {} iterations: above {MAX_PBKDF2_ITERATIONS}",
            parsed.iterations
        ));
    }
    Ok(())
}

/// Where an import is, for its signal handler.
const READING: u8 = 0;
const WRITING: u8 = 1;
const COMMITTING: u8 = 2;

/// What SIGINT, SIGTERM and SIGHUP do during an import. Before anything is
/// written, the process ends at once (nothing to undo). While batches are
/// written, the first signal asks the import to stop after the current
/// batch and roll back; a second ends the process at once (the rollback is
/// then the database's, or the next open's). During the commit (one short
/// write) the import completes.
struct Interrupt {
    raised: Arc<AtomicBool>,
    phase: Arc<AtomicU8>,
}

impl Interrupt {
    /// No handler: an import run in a server (through its control socket)
    /// must not take the server's signals; it runs to its end.
    fn none() -> Interrupt {
        Interrupt {
            raised: Arc::new(AtomicBool::new(false)),
            phase: Arc::new(AtomicU8::new(READING)),
        }
    }

    /// Installs the handler; `later` says who undoes a write cut short.
    fn install(later: &'static str) -> Result<Interrupt, CliError> {
        let raised = Arc::new(AtomicBool::new(false));
        let phase = Arc::new(AtomicU8::new(READING));
        let (flag, at) = (Arc::clone(&raised), Arc::clone(&phase));
        // SIGHUP too: a closed terminal interrupts an import as ^C does.
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
            .map_err(CliError::Signal)?;
        let on_signal = move || {
            let again = flag.swap(true, Ordering::SeqCst);
            match at.load(Ordering::SeqCst) {
                READING => {
                    eprintln!("\nauthd: import interrupted: nothing was imported");
                    std::process::exit(i32::from(INTERRUPTED));
                }
                WRITING if !again => eprintln!(
                    "\nauthd: interrupted: stopping the import and rolling back what it wrote \
                     (interrupt again to quit at once)"
                ),
                WRITING => {
                    eprintln!("\nauthd: import interrupted: nothing was imported ({later})");
                    std::process::exit(i32::from(INTERRUPTED));
                }
                _ => {}
            }
        };
        std::thread::Builder::new()
            .name("interrupt".to_owned())
            .spawn(move || signals.forever().for_each(|_| on_signal()))
            .map_err(CliError::Signal)?;
        Ok(Interrupt { raised, phase })
    }

    fn enter(&self, phase: u8) {
        self.phase.store(phase, Ordering::SeqCst);
    }

    fn raised(&self) -> bool {
        self.raised.load(Ordering::SeqCst)
    }
}

/// Validates every line, then writes them as one import of the store (all
/// or nothing), in chunks of one transaction and one flush each.
/// Through a control socket the client sends the lines (of its file or
/// its standard input).
pub(super) fn import(args: ImportArgs, env: &mut Env<'_>) -> Result<ExitCode, CliError> {
    // The rate reported covers the whole command: reading, checks, writes.
    let started = Instant::now();
    let interrupt = if env.served() {
        Interrupt::none()
    } else {
        Interrupt::install(if args.store.database.is_some() {
            "the database rolls back what was written"
        } else {
            "what was written is rolled back the next time the store is opened"
        })?
    };
    // An existing store first: one in use is refused before reading any
    // input. A new one is made only once the input proved good.
    let existing = match env.store {
        Some(store) => Some(Held::Served(store)),
        None => args.store.open_or_plan(args.create)?.map(Held::Own),
    };
    let reader: Box<dyn BufRead + '_> = if args.file == "-" || env.served() {
        Box::new(BufReader::new(&mut *env.input))
    } else {
        let file = File::open(&args.file)
            .map_err(|e| CliError::Io(format!("cannot open {}: {e}", args.file)))?;
        Box::new(BufReader::new(file))
    };
    let (users, errors, mut secrets) = parse_lines(reader, args.max_cost())?;
    if !errors.is_empty() {
        return Err(report(env.err, &errors, "nothing was imported"));
    }
    let mut fresh = Vec::with_capacity(users.len());
    let mut existing_emails = Vec::new();
    match &existing {
        Some(store) => {
            // As `user_by_email` finds an account (its key, or the old key
            // of a spelling whose key changed), for the whole input at once.
            let legacy: Vec<String> = users.iter().map(|(_, u)| u.email.legacy_key()).collect();
            let mut keys: Vec<&str> = users.iter().map(|(_, u)| u.email.key()).collect();
            keys.extend(legacy.iter().map(String::as_str));
            keys.sort_unstable();
            keys.dedup();
            let held = store.maintenance().held_keys(&keys)?;
            for ((line, user), legacy) in users.into_iter().zip(&legacy) {
                if held.contains(user.email.key()) || held.contains(legacy) {
                    existing_emails
                        .push((line, format!("email {} is already registered", user.email)));
                } else {
                    fresh.push(user);
                }
            }
        }
        None => fresh.extend(users.into_iter().map(|(_, user)| user)),
    }
    if !existing_emails.is_empty() && !args.skip_existing {
        return Err(report(
            env.err,
            &existing_emails,
            "nothing was imported (use --skip-existing to leave those users as they are)",
        ));
    }
    interrupt.enter(WRITING);
    let store = match existing {
        Some(store) => store,
        None => Held::Own(args.store.create(args.create)?),
    };
    if !secrets.is_empty() {
        // Sealed under the key of the store written to, which now exists.
        let sealer = args.key.sealer(&store)?;
        for user in &mut fresh {
            if let (Some(totp), Some(secret)) = (&mut user.totp, secrets.remove(user.email.key())) {
                totp.sealed_secret = sealer
                    .seal(&secret)
                    .map_err(|e| CliError::Refused(e.to_string()))?;
            }
        }
    }
    let mut import = store.maintenance().begin_import()?;
    let progress = Progress::new(fresh.len(), !env.served());
    // Through a control socket, a client that went away (interrupted)
    // stops the import as a signal would.
    let mut stopped = false;
    for chunk in fresh.chunks(IMPORT_CHUNK) {
        if interrupt.raised() || env.gone() {
            stopped = true;
            break;
        }
        if let Err(e) = import.add_users(chunk) {
            progress.finish();
            let undone = match import.roll_back() {
                Ok(_) => "nothing was imported".to_owned(),
                Err(undo) => format!(
                    "nothing was imported: rolling back failed ({undo}), and is done the next \
                     time the store is opened"
                ),
            };
            return Err(match e {
                StoreError::EmailTaken => CliError::Refused(format!(
                    "an email of the import was registered while it ran; {undone}"
                )),
                other => CliError::Refused(format!("{other}; {undone}")),
            });
        }
        progress.advance(chunk.len(), env.err);
    }
    progress.finish();
    if stopped || interrupt.raised() {
        let written = import.roll_back()?;
        // Said if anyone listens: through a socket, the client may be gone.
        let _ = writeln!(
            env.err,
            "authd: import interrupted: nothing was imported (the {} users written so far \
             were rolled back)",
            thousands(written as u64)
        );
        return Ok(ExitCode::from(INTERRUPTED));
    }
    interrupt.enter(COMMITTING);
    import.commit()?;
    let seconds = started.elapsed().as_secs_f64();
    writeln!(
        env.err,
        "authd: imported {} users{} in {seconds:.1} s ({}/s)",
        thousands(fresh.len() as u64),
        if existing_emails.is_empty() {
            String::new()
        } else {
            format!(", skipped {} already registered", existing_emails.len())
        },
        thousands(rate(fresh.len() as u64, seconds))
    )
    .map_err(unwritten)?;
    Ok(ExitCode::SUCCESS)
}

/// An import's progress: a bar on a terminal; otherwise a line after the
/// first batch and then at most one a second, for logs (and for tests,
/// which watch for the first batch written).
struct Progress {
    bar: ProgressBar,
    total: u64,
    done: std::cell::Cell<u64>,
    last_line: std::cell::Cell<Option<Instant>>,
}

impl Progress {
    /// `bar`: a bar may be drawn (on this process's stderr, a terminal).
    fn new(total: usize, bar: bool) -> Progress {
        let bar = if bar && std::io::stderr().is_terminal() {
            ProgressBar::new(total as u64)
        } else {
            ProgressBar::hidden()
        };
        if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} users {rate} {eta}") {
            bar.set_style(style.with_key(
                "rate",
                |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let per_sec = state.per_sec();
                    let shown = if per_sec.is_finite() && per_sec > 0.0 {
                        per_sec.round() as u64
                    } else {
                        0
                    };
                    let _ = write!(w, "{}/s", thousands(shown));
                },
            ));
        }
        Progress {
            bar,
            total: total as u64,
            done: std::cell::Cell::new(0),
            last_line: std::cell::Cell::new(None),
        }
    }

    fn advance(&self, written: usize, err: &mut dyn Write) {
        self.bar.inc(written as u64);
        self.done.set(self.done.get() + written as u64);
        if !self.bar.is_hidden() {
            return;
        }
        let now = Instant::now();
        if self
            .last_line
            .get()
            .is_some_and(|last| now.duration_since(last) < PROGRESS_EVERY)
            && self.done.get() < self.total
        {
            return;
        }
        self.last_line.set(Some(now));
        let _ = writeln!(
            err,
            "authd: import: {} of {} users written (not committed yet)",
            thousands(self.done.get()),
            thousands(self.total)
        );
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Users per second, rounded (0 when no time passed).
fn rate(users: u64, seconds: f64) -> u64 {
    if seconds > 0.0 {
        (users as f64 / seconds).round() as u64
    } else {
        0
    }
}

/// `n` with a comma between groups of three digits: `90,394`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The users by line, the problems by line, and the second-factor
/// secrets by email key (sealed once the store written to is open).
type Parsed = (
    Vec<(usize, NewUser)>,
    Vec<(usize, String)>,
    HashMap<String, Secret>,
);

/// Reads every line; returns the valid users and, by line number, what is
/// wrong with the others (including an email given twice in the file, and a
/// hash of a cost above `max_cost`).
fn parse_lines(reader: impl BufRead, max_cost: u32) -> Result<Parsed, CliError> {
    let mut users = Vec::new();
    let mut errors = Vec::new();
    let mut secrets = HashMap::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (index, line) in reader.split(b'\n').enumerate() {
        let number = index + 1;
        let bytes = line.map_err(|e| CliError::Io(format!("cannot read line {number}: {e}")))?;
        let Ok(text) = std::str::from_utf8(&bytes) else {
            errors.push((number, "not valid UTF-8".to_owned()));
            continue;
        };
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let record: ImportLine = match serde_json::from_str(text) {
            Ok(record) => record,
            Err(e) => {
                errors.push((number, format!("not a user object: {e}")));
                continue;
            }
        };
        let email = match Email::parse(&record.email) {
            Ok(email) => email,
            Err(e) => {
                errors.push((number, format!("email {e}")));
                continue;
            }
        };
        if let Err(problem) = check_hash(&record.hashed_password, max_cost) {
            errors.push((number, problem));
            continue;
        }
        let created_at = match record
            .created_at
            .as_deref()
            .map(crate::clock::parse_rfc3339)
        {
            None => None,
            Some(Some(ms)) => Some(ms),
            Some(None) => {
                errors.push((
                    number,
                    "created_at is not an RFC 3339 time after 1970".to_owned(),
                ));
                continue;
            }
        };
        let totp = match record.totp.as_ref().map(TotpLine::parse).transpose() {
            Ok(totp) => totp,
            Err(problem) => {
                errors.push((number, problem));
                continue;
            }
        };
        if let Some(first) = seen.insert(email.key().to_owned(), number) {
            errors.push((number, format!("email {email} is also on line {first}")));
            continue;
        }
        let totp = totp.map(|(secret, state)| {
            secrets.insert(email.key().to_owned(), secret);
            state
        });
        users.push((
            number,
            NewUser {
                email,
                hashed_password: record.hashed_password,
                password_normalized: record.password_normalized,
                email_verified: record.email_verified,
                created_at,
                totp,
            },
        ));
    }
    Ok((users, errors, secrets))
}

/// Prints each problem with its line number; returns the closing error.
fn report(err: &mut dyn Write, problems: &[(usize, String)], outcome: &str) -> CliError {
    for (line, message) in problems.iter().take(MAX_REPORTED) {
        let _ = writeln!(err, "line {line}: {message}");
    }
    if problems.len() > MAX_REPORTED {
        let _ = writeln!(err, "... and {} more", problems.len() - MAX_REPORTED);
    }
    CliError::Refused(format!("{} bad lines; {outcome}", problems.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2b$04$EGdrhbKUv8Oc9vGiXX0HQOxSg445d458Muh7DAHskb6QbtCvdxcie";

    #[test]
    fn argon2id_hashes_import_within_bounds() {
        use crate::hasher::{Argon2Params, Hasher, Scheme};
        let params = Argon2Params {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        };
        let hasher = Hasher::start_scheme(1, 1, Scheme::Argon2id(params), 1).unwrap();
        let hash = hasher
            .hash(&crate::user::Password::parse("pw").unwrap())
            .unwrap();
        assert_eq!(check_hash(&hash, 4), Ok(()));
        assert_eq!(check_hash(HASH, 4), Ok(()));
        let huge = hash.replace("m=1024", "m=2097152");
        assert!(check_hash(&huge, 4).unwrap_err().contains("m=2097152 KiB"));
        let slow = hash.replace("t=1", "t=17");
        assert!(check_hash(&slow, 4).unwrap_err().contains("16 iterations"));
        for bad in [
            hash.replace("$argon2id$", "$argon2i$"),
            hash.replace("v=19", "v=16"),
            hash.rsplit_once('$').unwrap().0.to_owned(),
            "$argon2id$nonsense".to_owned(),
        ] {
            let refused = check_hash(&bad, 4).unwrap_err();
            assert!(
                refused.contains("not an argon2id PHC string"),
                "{bad}: {refused}"
            );
            assert!(!refused.contains(&hash[30..]), "{refused}");
        }
    }

    #[test]
    fn django_pbkdf2_hashes_import_within_bounds() {
        // hashlib.pbkdf2_hmac('sha256', b'correct horse', b'seasalt', 1000)
        let derived = "mQnueSakb748zqBAC1tmWVZsZbi2zPGZarEzTGdfmso=";
        let with = |iterations: &str, salt: &str, hash: &str| {
            format!("pbkdf2_sha256${iterations}${salt}${hash}")
        };
        assert_eq!(check_hash(&with("1000", "seasalt", derived), 4), Ok(()));
        assert_eq!(check_hash(&with("1", "s", derived), 4), Ok(()));
        assert_eq!(check_hash(&with("2000000", "seasalt", derived), 4), Ok(()));
        let refused = check_hash(&with("2000001", "seasalt", derived), 4).unwrap_err();
        assert!(
            refused.contains("2000001 iterations: above 2000000"),
            "{refused}"
        );
        for (bad, why) in [
            (with("0", "seasalt", derived), "iteration count"),
            (with("lots", "seasalt", derived), "iteration count"),
            (with("99999999999", "seasalt", derived), "iteration count"),
            (with("1000", "", derived), "empty salt"),
            (with("1000", "sea$salt", derived), "fields"),
            (with("1000", "seasalt", &derived[..40]), "32 bytes"),
            (with("1000", "seasalt", "c2hvcnQ="), "32 bytes"),
            (
                "pbkdf2_sha1$1000$seasalt$c2hvcnQ=".to_owned(),
                "does not start",
            ),
            ("pbkdf2_sha256$1000$seasalt".to_owned(), "fields"),
        ] {
            let refused = check_hash(&bad, 4).unwrap_err();
            assert!(
                refused.contains("not a Django pbkdf2_sha256$") && refused.contains(why),
                "{bad}: {refused}"
            );
            assert!(!refused.contains(&derived[..20]), "{refused}");
        }
    }

    #[test]
    fn imported_accounts_are_verified_unless_said_otherwise() {
        let input = format!(
            "{{\"email\":\"a@x.io\",\"hashed_password\":\"{HASH}\"}}\n\
             {{\"email\":\"b@x.io\",\"hashed_password\":\"{HASH}\",\"email_verified\":false,\
             \"created_at\":\"2026-11-26T05:00:00.123Z\"}}\n\
             {{\"email\":\"c@x.io\",\"hashed_password\":\"{HASH}\",\"created_at\":\"soon\"}}\n\
             {{\"email\":\"d@x.io\",\"hashed_password\":\"{HASH}\",\"created_at\":null}}\n"
        );
        let (users, errors, _) = parse_lines(input.as_bytes(), 31).unwrap();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, 3);
        assert!(errors[0].1.starts_with("created_at"), "{errors:?}");
        let got: Vec<(bool, Option<u64>)> = users
            .iter()
            .map(|(_, u)| (u.email_verified, u.created_at))
            .collect();
        assert_eq!(
            got,
            [(true, None), (false, Some(1_795_669_200_123)), (true, None)]
        );
    }

    #[test]
    fn only_standard_bcrypt_hashes_are_accepted() {
        let ok = |hash: &str| check_bcrypt(hash, 31);
        assert_eq!(ok(HASH), Ok(()));
        assert_eq!(ok(&HASH.replace("$2b$", "$2y$")), Ok(()));
        assert_eq!(ok(&HASH.replace("$2b$", "$2a$")), Ok(()));
        for bad in [
            HASH.replace("$2b$", "$2x$"),
            "plaintext".to_owned(),
            HASH[..59].to_owned(),
            format!("{HASH}e"),
            // Outside bcrypt's alphabet, same length.
            HASH.replace("EGdr", "EG+r"),
            HASH.replace("EGdr", "EGér")[..60].to_owned(),
            // Unused bits of the salt's or the hash's last character set.
            format!("{}P{}", &HASH[..28], &HASH[29..]),
            format!("{}f", &HASH[..59]),
        ] {
            let refused = ok(&bad).unwrap_err();
            assert!(
                refused.contains("not a $2a$, $2b$ or $2y$"),
                "{bad}: {refused}"
            );
        }
    }

    #[test]
    fn costs_outside_bcrypt_or_above_the_maximum_are_refused() {
        let with_cost = |cost: &str| HASH.replacen("$04$", &format!("${cost}$"), 1);
        for cost in ["04", "14", "31"] {
            assert_eq!(check_bcrypt(&with_cost(cost), 31), Ok(()), "{cost}");
        }
        for cost in ["00", "03", "32", "99"] {
            let refused = check_bcrypt(&with_cost(cost), 31).unwrap_err();
            assert!(
                refused.contains(&format!("cost {cost}, outside 04 to 31")),
                "{refused}"
            );
        }
        for cost in ["x1", "+5", " 5", "5", "005", "", "1\u{e9}", "2b"] {
            let refused = check_bcrypt(&with_cost(cost), 31).unwrap_err();
            assert!(
                refused.contains("malformed bcrypt cost field"),
                "{cost}: {refused}"
            );
        }
        let refused = check_bcrypt(&with_cost("15"), 14).unwrap_err();
        assert!(
            refused.contains("cost 15, above --max-bcrypt-cost 14"),
            "{refused}"
        );
        assert_eq!(check_bcrypt(&with_cost("14"), 14), Ok(()));
        assert!(check_bcrypt(&with_cost("05"), 4).is_err());
    }

    #[test]
    fn rates_are_whole_numbers_with_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(90_394), "90,394");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(u64::MAX), "18,446,744,073,709,551,615");
        assert_eq!(rate(90_394, 1.0), 90_394);
        assert_eq!(rate(200_000, 2.2125), 90_395);
        assert_eq!(rate(5, 0.0), 0);
    }

    #[test]
    fn an_export_file_is_private_even_if_it_existed() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.jsonl");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        create_private(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), 0, "truncated");
    }

    #[test]
    fn every_bad_line_is_reported_with_its_number() {
        let input = format!(
            "{{\"email\":\"a@x.io\",\"hashed_password\":\"{HASH}\"}}\n\
             \n\
             not json\n\
             {{\"email\":\"bad\",\"hashed_password\":\"{HASH}\"}}\n\
             {{\"email\":\"b@x.io\",\"hashed_password\":\"secret\"}}\n\
             {{\"email\":\"A@X.io\",\"hashed_password\":\"{HASH}\"}}\n\
             {{\"email\":\"c@x.io\"}}\n\
             {{\"id\":9,\"email\":\"d@x.io\",\"hashed_password\":\"{HASH}\",\"extra\":1}}\n"
        );
        let (users, errors, _) = parse_lines(input.as_bytes(), 31).unwrap();
        let lines: Vec<usize> = errors.iter().map(|(n, _)| *n).collect();
        assert_eq!(lines, [3, 4, 5, 6, 7], "{errors:?}");
        assert!(errors[3].1.contains("also on line 1"));
        let emails: Vec<&str> = users.iter().map(|(_, u)| u.email.as_str()).collect();
        assert_eq!(emails, ["a@x.io", "d@x.io"]);
    }
}
