//! `authd export` and `authd import`: users as JSON lines.
//!
//! One user per line, `{"id", "email", "hashed_password"}`. Sessions and
//! reset tokens are not exported: moving a store logs everyone out, which
//! is what moving credentials should do. Import takes lines with at least
//! `email` and a standard bcrypt `hashed_password` (`$2a$`, `$2b$`, `$2y$`),
//! so users from another system (the reference's SQLite `users` table, for
//! one) keep their passwords.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use super::{CliError, StoreArgs};
use crate::store::StoreError;
use crate::user::Email;

/// Users written per transaction (and per progress step) during import.
const IMPORT_CHUNK: usize = 10_000;
/// Bad lines printed before the rest are only counted.
const MAX_REPORTED: usize = 50;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// JSON-lines file to read, or - for standard input.
    file: String,
    /// Leave users whose email is already in the store as they are, instead
    /// of refusing the whole import.
    #[arg(long)]
    skip_existing: bool,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Serialize)]
struct ExportLine<'a> {
    id: u64,
    email: &'a str,
    hashed_password: &'a str,
}

#[derive(Deserialize)]
struct ImportLine {
    email: String,
    hashed_password: String,
}

/// Streams every user out, one line each, in id order.
pub fn export(args: ExportArgs) -> Result<ExitCode, CliError> {
    let store = args.store.open()?;
    let sink: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(
            File::create(path)
                .map_err(|e| CliError::Io(format!("cannot create {}: {e}", path.display())))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::new(sink);
    let mut count = 0u64;
    let mut failed = None;
    store.maintenance().each_user(&mut |user| {
        let line = ExportLine {
            id: user.id.0,
            email: user.email.as_str(),
            hashed_password: &user.hashed_password,
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
    eprintln!("authd: exported {count} users");
    Ok(ExitCode::SUCCESS)
}

/// Whether `hash` is a bcrypt hash every implementation reads.
fn standard_bcrypt(hash: &str) -> bool {
    ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p))
        && hash.parse::<bcrypt::HashParts>().is_ok()
}

/// Validates every line, then writes in chunks with one flush each.
pub fn import(args: ImportArgs) -> Result<ExitCode, CliError> {
    // Open first: a store in use is refused before reading any input.
    let store = args.store.open()?;
    let reader: Box<dyn BufRead> = if args.file == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let file = File::open(&args.file)
            .map_err(|e| CliError::Io(format!("cannot open {}: {e}", args.file)))?;
        Box::new(BufReader::new(file))
    };
    let (users, errors) = parse_lines(reader)?;
    if !errors.is_empty() {
        return Err(report(&errors, "nothing was imported"));
    }
    let mut fresh = Vec::with_capacity(users.len());
    let mut existing = Vec::new();
    for (line, email, hash) in users {
        match store.request().user_by_email(&email) {
            Ok(_) => existing.push((line, format!("email {email} is already registered"))),
            Err(StoreError::NotFound) => fresh.push((email, hash)),
            Err(e) => return Err(e.into()),
        }
    }
    if !existing.is_empty() && !args.skip_existing {
        return Err(report(
            &existing,
            "nothing was imported (use --skip-existing to leave those users as they are)",
        ));
    }
    let progress = ProgressBar::new(fresh.len() as u64);
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} users {per_sec} {eta}") {
        progress.set_style(style);
    }
    for chunk in fresh.chunks(IMPORT_CHUNK) {
        store.maintenance().add_users(chunk)?;
        progress.inc(chunk.len() as u64);
    }
    progress.finish_and_clear();
    eprintln!(
        "authd: imported {} users{}",
        fresh.len(),
        if existing.is_empty() {
            String::new()
        } else {
            format!(", skipped {} already registered", existing.len())
        }
    );
    Ok(ExitCode::SUCCESS)
}

type Parsed = (Vec<(usize, Email, String)>, Vec<(usize, String)>);

/// Reads every line; returns the valid users and, by line number, what is
/// wrong with the others (including an email given twice in the file).
fn parse_lines(reader: impl BufRead) -> Result<Parsed, CliError> {
    let mut users = Vec::new();
    let mut errors = Vec::new();
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
        if !standard_bcrypt(&record.hashed_password) {
            errors.push((
                number,
                "hashed_password is not a $2a$, $2b$ or $2y$ bcrypt hash".to_owned(),
            ));
            continue;
        }
        if let Some(first) = seen.insert(email.key().to_owned(), number) {
            errors.push((number, format!("email {email} is also on line {first}")));
            continue;
        }
        users.push((number, email, record.hashed_password));
    }
    Ok((users, errors))
}

/// Prints each problem with its line number; returns the closing error.
fn report(problems: &[(usize, String)], outcome: &str) -> CliError {
    for (line, message) in problems.iter().take(MAX_REPORTED) {
        eprintln!("line {line}: {message}");
    }
    if problems.len() > MAX_REPORTED {
        eprintln!("... and {} more", problems.len() - MAX_REPORTED);
    }
    CliError::Refused(format!("{} bad lines; {outcome}", problems.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2b$04$EGdrhbKUv8Oc9vGiXX0HQOxSg445d458Muh7DAHskb6QbtCvdxcie";

    #[test]
    fn only_standard_bcrypt_hashes_are_accepted() {
        assert!(standard_bcrypt(HASH));
        assert!(standard_bcrypt(&HASH.replace("$2b$", "$2y$")));
        assert!(standard_bcrypt(&HASH.replace("$2b$", "$2a$")));
        assert!(!standard_bcrypt(&HASH.replace("$2b$", "$2x$")));
        assert!(!standard_bcrypt("plaintext"));
        assert!(!standard_bcrypt(&HASH[..59]));
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
        let (users, errors) = parse_lines(input.as_bytes()).unwrap();
        let lines: Vec<usize> = errors.iter().map(|(n, _)| *n).collect();
        assert_eq!(lines, [3, 4, 5, 6, 7], "{errors:?}");
        assert!(errors[3].1.contains("also on line 1"));
        let emails: Vec<&str> = users.iter().map(|(_, e, _)| e.as_str()).collect();
        assert_eq!(emails, ["a@x.io", "d@x.io"]);
    }
}
