//! `authd outbox list|show|retry|purge`: the delivery queue (messages
//! waiting, dead letters) and what the dev outbox caught.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use super::{unwritten, CliError, Env, StoreArgs};
use crate::clock::{rfc3339, unix_millis};
use crate::outbox::{Caught, Queued};

#[derive(Debug, Args)]
pub struct OutboxArgs {
    #[command(subcommand)]
    command: OutboxCommand,
}

#[derive(Debug, Subcommand)]
enum OutboxCommand {
    /// List the delivery queue (messages waiting, dead letters) and the
    /// messages the outbox caught: a table, or JSON lines with --json.
    List {
        /// One JSON object per line instead of tables.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print a message the outbox caught: its headers and text (or its
    /// HTML with --html).
    Show {
        /// The message's id (from `authd outbox list`).
        id: u64,
        /// Print the HTML part instead of the text.
        #[arg(long)]
        html: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Put dead letters back in the queue, their attempts counted
    /// afresh: the one with ID, or every one with --all.
    Retry {
        /// The dead letter's id.
        #[arg(required_unless_present = "all")]
        id: Option<u64>,
        /// Every dead letter.
        #[arg(long, conflicts_with = "id")]
        all: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove dead letters (--dead), the caught messages (--caught), or
    /// both (neither flag given). Messages still waiting are never
    /// removed.
    Purge {
        /// Remove the dead letters.
        #[arg(long)]
        dead: bool,
        /// Remove the messages the dev outbox caught.
        #[arg(long)]
        caught: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

impl OutboxArgs {
    /// The store flags of the subcommand.
    pub(super) fn store(&self) -> &StoreArgs {
        match &self.command {
            OutboxCommand::List { store, .. }
            | OutboxCommand::Show { store, .. }
            | OutboxCommand::Retry { store, .. }
            | OutboxCommand::Purge { store, .. } => store,
        }
    }
}

pub(super) fn run(args: OutboxArgs, env: &mut Env<'_>) -> Result<ExitCode, CliError> {
    match args.command {
        OutboxCommand::List { json, store } => {
            let store = store.open_in(env.store)?;
            let queued = store.request().queued()?;
            let caught = store.request().caught()?;
            if json {
                list_json(env.out, &queued, &caught)
            } else {
                list_tables(env.out, &queued, &caught)
            }
            .map_err(unwritten)?;
        }
        OutboxCommand::Show { id, html, store } => {
            let store = store.open_in(env.store)?;
            let Some(caught) = store.request().caught()?.into_iter().find(|c| c.id == id) else {
                return Err(CliError::Refused(format!(
                    "the outbox holds no message {id} (`authd outbox list` shows their ids)"
                )));
            };
            let message = &caught.message;
            let out = &mut *env.out;
            writeln!(out, "Date: {}", rfc3339(caught.created_at))
                .and_then(|()| writeln!(out, "To: {}", message.to))
                .and_then(|()| writeln!(out, "Subject: {}", message.subject))
                .and_then(|()| writeln!(out, "Kind: {}", message.kind))
                .and_then(|()| writeln!(out))
                .and_then(|()| {
                    let body = if html { &message.html } else { &message.text };
                    writeln!(out, "{}", body.trim_end())
                })
                .map_err(unwritten)?;
        }
        OutboxCommand::Retry { id, all: _, store } => {
            let store = store.open_in(env.store)?;
            let revived = store.request().revive(id, unix_millis())?;
            if revived == 0 {
                return Err(CliError::Refused(match id {
                    Some(id) => format!("message {id} is not a dead letter"),
                    None => "there is no dead letter".to_owned(),
                }));
            }
            writeln!(env.out, "{revived} dead letter(s) queued again").map_err(unwritten)?;
        }
        OutboxCommand::Purge {
            dead,
            caught,
            store,
        } => {
            let store = store.open_in(env.store)?;
            let both = !dead && !caught;
            let dead = if dead || both {
                store.request().purge_dead(None)?
            } else {
                0
            };
            let caught = if caught || both {
                store.request().purge_caught()?
            } else {
                0
            };
            writeln!(
                env.out,
                "removed {dead} dead letter(s) and {caught} caught message(s)"
            )
            .map_err(unwritten)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn state(queued: &Queued) -> &'static str {
    if queued.dead {
        "dead"
    } else {
        "waiting"
    }
}

fn list_tables(out: &mut dyn Write, queued: &[Queued], caught: &[Caught]) -> std::io::Result<()> {
    writeln!(out, "queue: {} message(s)", queued.len())?;
    if !queued.is_empty() {
        writeln!(
            out,
            "{:>8}  {:<7}  {:<16}  {:<30}  {:>8}  LAST ERROR",
            "ID", "STATE", "KIND", "TO", "ATTEMPTS"
        )?;
    }
    for q in queued {
        writeln!(
            out,
            "{:>8}  {:<7}  {:<16}  {:<30}  {:>8}  {}",
            q.id,
            state(q),
            q.intent.kind,
            q.intent.to,
            q.attempts,
            q.last_error.as_deref().unwrap_or("-")
        )?;
    }
    writeln!(out, "caught: {} message(s)", caught.len())?;
    if !caught.is_empty() {
        writeln!(
            out,
            "{:>8}  {:<20}  {:<16}  {:<30}  SUBJECT",
            "ID", "TIME", "KIND", "TO"
        )?;
    }
    for c in caught {
        writeln!(
            out,
            "{:>8}  {:<20}  {:<16}  {:<30}  {}",
            c.id,
            rfc3339(c.created_at),
            c.message.kind,
            c.message.to,
            c.message.subject
        )?;
    }
    Ok(())
}

/// One line per message: `{"state": "waiting"|"dead", ...}` for the queue
/// (never a token), `{"state": "caught", ...}` for the outbox.
fn list_json(out: &mut dyn Write, queued: &[Queued], caught: &[Caught]) -> std::io::Result<()> {
    for q in queued {
        let line = json!({
            "state": state(q),
            "id": q.id,
            "kind": q.intent.kind.name(),
            "to": q.intent.to,
            "created_at": rfc3339(q.created_at),
            "attempts": q.attempts,
            "next_at": rfc3339(q.next_at),
            "last_error": q.last_error,
        });
        writeln!(out, "{line}")?;
    }
    for c in caught {
        let line = json!({
            "state": "caught",
            "id": c.id,
            "kind": c.message.kind.name(),
            "to": c.message.to,
            "created_at": rfc3339(c.created_at),
            "subject": c.message.subject,
        });
        writeln!(out, "{line}")?;
    }
    Ok(())
}
