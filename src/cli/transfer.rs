//! `authd export` and `authd import`: users as JSON lines.
//!
//! One user per line, `{"id", "email", "hashed_password"}`. Sessions and
//! reset tokens are not exported: moving a store logs everyone out, which
//! is what moving credentials should do. Import takes lines with at least
//! `email` and a standard bcrypt `hashed_password` (`$2a$`, `$2b$`, `$2y$`),
//! so users from another system (the reference's SQLite `users` table, for
//! one) keep their passwords.
//!
//! Import does not verify hashes, so it checks them strictly instead: a hash
//! that bcrypt could not read would answer every login of its user with a
//! 500, and one of a very high cost would occupy a bcrypt worker for minutes
//! per login attempt. The cost must be two digits, 4 to 31, and at most
//! `--max-bcrypt-cost` (by default the configured cost + 2).

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
use crate::config::DEFAULT_BCRYPT_COST;
use crate::store::StoreError;
use crate::user::Email;

/// Users written per transaction (and per progress step) during import.
const IMPORT_CHUNK: usize = 10_000;
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
    store: StoreArgs,
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
    let (users, errors) = parse_lines(reader, args.max_cost())?;
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
/// wrong with the others (including an email given twice in the file, and a
/// hash of a cost above `max_cost`).
fn parse_lines(reader: impl BufRead, max_cost: u32) -> Result<Parsed, CliError> {
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
        if let Err(problem) = check_bcrypt(&record.hashed_password, max_cost) {
            errors.push((number, problem));
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
        let (users, errors) = parse_lines(input.as_bytes(), 31).unwrap();
        let lines: Vec<usize> = errors.iter().map(|(n, _)| *n).collect();
        assert_eq!(lines, [3, 4, 5, 6, 7], "{errors:?}");
        assert!(errors[3].1.contains("also on line 1"));
        let emails: Vec<&str> = users.iter().map(|(_, e, _)| e.as_str()).collect();
        assert_eq!(emails, ["a@x.io", "d@x.io"]);
    }
}
