//! `authd check`, `authd backup` and `authd migrate`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;

use super::{unwritten, CliError, Env, StoreArgs};
use crate::store::lookalikes::{lookalikes, Lookalike};
use crate::store::{AnyStore, Maintenance as _, StoreError, Upgrade};

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Directory to create the copy in; must not exist yet, or be empty.
    /// It is made private (0700, its files 0600): it holds every password
    /// hash.
    dest: PathBuf,
    #[command(flatten)]
    pub(super) store: StoreArgs,
}

/// Reports every inconsistency; exit 0 only for a clean store. Lists the
/// look-alike accounts an email-rule migration kept apart (not a fault).
/// A live store (through the control socket) is checked with its writers
/// paused, so what is compared is one state.
pub(super) fn check(args: StoreArgs, env: &mut Env<'_>) -> Result<ExitCode, CliError> {
    let store = args.open_in(env.store)?;
    let location = env.location(&args);
    let paused = env.store.and_then(|served| served.pause_writers());
    let problems = store.maintenance().check()?;
    let counts = store.maintenance().counts()?;
    let found = lookalikes(store.request().as_ref(), store.maintenance())?;
    drop(paused);
    print_lookalikes(env.out, &found).map_err(unwritten)?;
    if problems.is_empty() {
        writeln!(
            env.out,
            "store {location} is consistent: {} users, {} sessions, {} one-time tokens",
            counts.users, counts.sessions, counts.tokens
        )
        .map_err(unwritten)?;
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &problems {
        writeln!(env.out, "{problem}").map_err(unwritten)?;
    }
    Err(CliError::Refused(format!(
        "store {location} has {} problems",
        problems.len()
    )))
}

/// One line per account kept under its old key, addresses quoted with
/// invisible characters escaped (`\u{200b}`), so the pair can be told apart.
fn print_lookalikes(out: &mut dyn Write, found: &[Lookalike]) -> std::io::Result<()> {
    if found.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "{} look-alike account(s), each reachable by the spelling it registered with \
         (docs/how-it-works.md, \"Look-alike addresses\"):",
        found.len()
    )?;
    for pair in found {
        let kept = &pair.kept_old_key;
        match &pair.holder {
            Some(holder) => writeln!(
                out,
                "  user {} {:?} shares a key with user {} {:?}",
                kept.id,
                kept.email.as_str(),
                holder.id,
                holder.email.as_str()
            ),
            None => writeln!(
                out,
                "  user {} {:?} keeps its old key; no account holds its new key {:?}",
                kept.id,
                kept.email.as_str(),
                kept.email.rule_key().unwrap_or_default()
            ),
        }?;
    }
    Ok(())
}

/// Copies the store while holding its lock (so no server writes meanwhile),
/// then checks the copy. Through a server's control socket, the server's
/// writers pause for the copy instead (and how long is logged).
#[cfg_attr(not(feature = "postgres"), allow(irrefutable_let_patterns))]
pub(super) fn backup(args: BackupArgs, env: &mut Env<'_>) -> Result<ExitCode, CliError> {
    let dest = &env.path(&args.dest);
    if dest.exists()
        && std::fs::read_dir(dest)
            .map_err(|e| CliError::Io(format!("cannot read {}: {e}", dest.display())))?
            .next()
            .is_some()
    {
        return Err(CliError::Refused(format!(
            "{} exists and is not empty",
            dest.display()
        )));
    }
    let held = args.store.open_in(env.store)?;
    let AnyStore::Sled(store) = &*held else {
        return Err(CliError::Refused(
            "backup copies the embedded store; back up a PostgreSQL database with its own \
             tools (pg_dump, or your provider's snapshots), or take `authd export`"
                .to_owned(),
        ));
    };
    let paused = env.store.map(|_| (store.pause_writers(), Instant::now()));
    let copied = store.backup_to(dest);
    if let Some((guard, since)) = paused {
        drop(guard);
        eprintln!(
            "authd: backup to {}: writers paused for {} ms",
            dest.display(),
            since.elapsed().as_millis()
        );
    }
    let (copy, copied) = copied?;
    let problems = copy.check()?;
    if !problems.is_empty() {
        return Err(CliError::Refused(format!(
            "the copy in {} does not check clean: {}",
            dest.display(),
            problems.join("; ")
        )));
    }
    writeln!(
        env.out,
        "backed up {} users ({copied} entries) to {}; start authd with --data-dir {} to restore",
        copy.counts()?.users,
        args.dest.display(),
        args.dest.display()
    )
    .map_err(unwritten)?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Say which migrations the store needs, and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Where the backup of an embedded store goes before it is migrated
    /// (made private like `authd backup`'s) [default:
    /// DATA_DIR.before-migration-UNIXTIME beside it].
    #[arg(long, value_name = "DIR")]
    backup_dir: Option<PathBuf>,
    #[command(flatten)]
    pub(super) store: StoreArgs,
}

/// Brings the store to this authd's format: an embedded store is backed up
/// first (and the backup checked); a database migrates under its advisory
/// lock. With `--dry-run`, only says what it would do.
#[cfg_attr(not(feature = "postgres"), allow(irrefutable_let_patterns))]
pub(super) fn migrate(args: MigrateArgs, env: &mut Env<'_>) -> Result<ExitCode, CliError> {
    if let Some(served) = env.store {
        // A server migrates its store at start: the one it holds is current.
        if served.pending_migrations()?.is_empty() {
            writeln!(
                env.out,
                "store {} is up to date; nothing to migrate",
                env.location(&args.store)
            )
            .map_err(unwritten)?;
            return Ok(ExitCode::SUCCESS);
        }
        return Err(CliError::Refused(
            "a migration needs the server stopped: stop it, then run `authd migrate`".to_owned(),
        ));
    }
    let location = args.store.location();
    let store = args.store.open_existing(Upgrade::Inspect)?;
    let pending = store.pending_migrations()?;
    if pending.is_empty() {
        println!("store {location} is up to date; nothing to migrate");
        return Ok(ExitCode::SUCCESS);
    }
    for migration in &pending {
        println!(
            "{} migration to format {}: {}",
            if args.dry_run { "pending" } else { "applying" },
            migration.version,
            migration.description
        );
    }
    if args.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    if let AnyStore::Sled(sled) = &store {
        let dest = args.backup_dir.unwrap_or_else(|| {
            let mut name = args.store.data_dir.clone().into_os_string();
            name.push(format!(
                ".before-migration-{}",
                crate::clock::unix_millis() / 1000
            ));
            PathBuf::from(name)
        });
        if dest.exists() {
            return Err(CliError::Refused(format!(
                "the backup directory {} exists already",
                dest.display()
            )));
        }
        let (_copy, entries) = sled.backup_to(&dest)?;
        println!(
            "backed up the store ({entries} entries) to {}",
            dest.display()
        );
    }
    store.migrate()?;
    let problems = store.maintenance().check()?;
    if !problems.is_empty() {
        return Err(CliError::Refused(format!(
            "the migrated store does not check clean: {}",
            problems.join("; ")
        )));
    }
    println!("store {location} migrated");
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct KeyArgs {
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Debug, clap::Subcommand)]
enum KeyCommand {
    /// Make a new server key in the store; the current one stays accepted
    /// as the previous one until the next rotation. Servers pick the new
    /// key up when they restart. Second-factor secrets still sealed under
    /// the previous key, which this rotation drops, are first sealed
    /// again under the current one.
    Rotate {
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// `authd key rotate`: never prints a key.
pub(super) fn key(args: KeyArgs, env: &mut Env<'_>) -> Result<ExitCode, CliError> {
    match args.command {
        KeyCommand::Rotate { store: args } => {
            let store = args.open_in(env.store)?;
            let resealed = reseal_second_factors(&store)?;
            store.rotate_server_key()?;
            let location = env.location(&args);
            writeln!(
                env.out,
                "a new server key is in the store {location}; the previous one is still \
                 accepted. Restart the servers to use it."
            )
            .map_err(unwritten)?;
            if resealed > 0 {
                writeln!(
                    env.out,
                    "{resealed} second-factor secrets sealed under the key it drops were \
                     sealed again under the one it keeps"
                )
                .map_err(unwritten)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Seals again under the current server key every second-factor secret
/// that only the previous key opens, before a rotation drops that key;
/// returns how many. Both the servers not yet restarted (whose current key
/// this is) and those restarted after the rotation (whose previous key it
/// becomes) open the result. A secret changed meanwhile (a new enrolment)
/// is sealed under the current key already, and left alone.
fn reseal_second_factors(store: &AnyStore) -> Result<usize, CliError> {
    let sealer = crate::totp::Sealer::new(&store.server_key()?);
    let mut moves = Vec::new();
    let mut failed = None;
    store.maintenance().each_user(&mut |user| {
        if let Some(totp) = &user.totp {
            match sealer.reseal(&totp.sealed_secret) {
                Ok(Some(to)) => moves.push((user.id, totp.sealed_secret.clone(), to)),
                Ok(None) => {}
                Err(e) => {
                    failed = Some(e);
                    return std::ops::ControlFlow::Break(());
                }
            }
        }
        std::ops::ControlFlow::Continue(())
    })?;
    if let Some(e) = failed {
        return Err(CliError::Refused(e.to_string()));
    }
    let mut resealed = 0;
    for (id, from, to) in moves {
        let change = crate::store::UserChange::TotpReseal { from, to };
        match store
            .request()
            .update_user(id, None, &[change], crate::store::Ends::default())
        {
            Ok(_) => resealed += 1,
            Err(StoreError::PreconditionFailed | StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(resealed)
}

impl KeyArgs {
    /// The store flags of the subcommand.
    pub(super) fn store(&self) -> &StoreArgs {
        match &self.command {
            KeyCommand::Rotate { store } => store,
        }
    }
}
