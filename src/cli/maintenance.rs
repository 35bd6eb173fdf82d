//! `authd check` and `authd backup`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{CliError, StoreArgs};
use crate::store::{AnyStore, UserStore as _};

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Directory to create the copy in; must not exist yet, or be empty.
    dest: PathBuf,
    #[command(flatten)]
    store: StoreArgs,
}

/// Reports every inconsistency; exit 0 only for a clean store.
pub fn check(args: StoreArgs) -> Result<ExitCode, CliError> {
    let store = args.open()?;
    let problems = store.check()?;
    let users = store.count_users()?;
    let location = args.location();
    if problems.is_empty() {
        println!("store {location} is consistent: {users} users");
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &problems {
        println!("{problem}");
    }
    Err(CliError::Refused(format!(
        "store {location} has {} problems",
        problems.len()
    )))
}

/// Copies the store while holding its lock (so no server writes meanwhile),
/// then checks the copy.
#[cfg_attr(not(feature = "postgres"), allow(irrefutable_let_patterns))]
pub fn backup(args: BackupArgs) -> Result<ExitCode, CliError> {
    let dest = &args.dest;
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
    let AnyStore::Sled(store) = args.store.open()? else {
        return Err(CliError::Refused(
            "backup copies the embedded store; back up a PostgreSQL database with its own \
             tools (pg_dump, or your provider's snapshots), or take `authd export`"
                .to_owned(),
        ));
    };
    let (copy, copied) = store.backup_to(dest)?;
    let problems = copy.check()?;
    if !problems.is_empty() {
        return Err(CliError::Refused(format!(
            "the copy in {} does not check clean: {}",
            dest.display(),
            problems.join("; ")
        )));
    }
    println!(
        "backed up {} users ({copied} entries) to {}; start authd with --data-dir {} to restore",
        copy.count_users()?,
        dest.display(),
        dest.display()
    );
    Ok(ExitCode::SUCCESS)
}
