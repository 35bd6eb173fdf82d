//! Admin commands through a server's control socket (`crate::control`):
//! the client's plan (what to send, where the output goes) and the
//! server's runner (the same command code on the server's store).

use std::io::{IsTerminal as _, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser as _;

use super::{run_admin, Cli, CliError, Command, Env};
use crate::control::{self, client::Failure, Request, Streams};
use crate::store::{AnyStore, Location, OpenError};

/// What the client sends besides its command line, and where the output
/// goes, decided from the parsed command before it runs.
pub(super) struct Plan {
    input: Input,
    /// `export --output FILE`: the lines are written here, by the client.
    output: Option<PathBuf>,
    /// A value of an environment variable the server must see as a flag
    /// (the server parses the command line in its own environment).
    extra: Vec<String>,
}

enum Input {
    Nothing,
    Stdin,
    File(PathBuf),
    /// Prompt for a password here, send it as `--password-stdin` would.
    Prompt,
}

/// The variables of a new hash's settings and their flags: taken from the
/// client's environment, as the client's command would have been.
const HASH_SETTINGS: [(&str, &str); 5] = [
    ("AUTHD_BCRYPT_COST", "--bcrypt-cost"),
    ("AUTHD_PASSWORD_HASH", "--password-hash"),
    ("AUTHD_ARGON2_MEMORY_KIB", "--argon2-memory-kib"),
    ("AUTHD_ARGON2_ITERATIONS", "--argon2-iterations"),
    ("AUTHD_ARGON2_PARALLELISM", "--argon2-parallelism"),
];

/// Flags of the store: the client's own business, not sent.
const STORE_FLAGS: [&str; 3] = ["--data-dir", "--database", "--control-socket"];

impl Plan {
    pub(super) fn of(command: &Command) -> Plan {
        let mut plan = Plan {
            input: Input::Nothing,
            output: None,
            extra: Vec::new(),
        };
        // The hash settings of this client's environment, sent as flags
        // unless the command line has its own.
        let settings: Vec<(&str, String)> = HASH_SETTINGS
            .iter()
            .filter_map(|(variable, flag)| Some((*flag, std::env::var(variable).ok()?)))
            .collect();
        let with_cost = |plan: &mut Plan| {
            for (flag, value) in &settings {
                if !std::env::args_os().any(|a| a.to_string_lossy().starts_with(flag)) {
                    plan.extra.push(format!("{flag}={value}"));
                }
            }
        };
        match command {
            Command::User(args) => match args.password() {
                Some(true) => {
                    plan.input = Input::Stdin;
                    with_cost(&mut plan);
                }
                Some(false) => {
                    if std::io::stdin().is_terminal() {
                        plan.input = Input::Prompt;
                        plan.extra.push("--password-stdin".to_owned());
                    }
                    with_cost(&mut plan);
                }
                None => {}
            },
            Command::Import(args) => {
                plan.input = match args.file.as_str() {
                    "-" => Input::Stdin,
                    file => Input::File(PathBuf::from(file)),
                };
                with_cost(&mut plan);
            }
            Command::Export(args) => plan.output = args.output.clone(),
            _ => {}
        }
        plan
    }
}

/// The command line after the binary, without the store flags, plus what
/// the plan adds.
fn arguments(extra: &[String]) -> Result<Vec<String>, CliError> {
    let mut args = Vec::new();
    let mut skip = false;
    for arg in std::env::args_os().skip(1) {
        let Some(arg) = arg.to_str() else {
            return Err(CliError::Refused(
                "an argument is not valid UTF-8, which the control socket cannot carry".to_owned(),
            ));
        };
        if std::mem::take(&mut skip) {
            continue;
        }
        if arg == "--" {
            break;
        }
        if STORE_FLAGS.contains(&arg) {
            skip = true;
            continue;
        }
        if STORE_FLAGS
            .iter()
            .any(|flag| arg.strip_prefix(flag).is_some_and(|r| r.starts_with('=')))
        {
            continue;
        }
        args.push(arg.to_owned());
    }
    args.extend(extra.iter().cloned());
    Ok(args)
}

/// Runs the command in the server that holds the store in `dir`, through
/// `socket`. When the socket cannot serve it, the store-in-use error,
/// with why.
pub(super) fn run(socket: &Path, dir: &Path, plan: Plan) -> Result<ExitCode, CliError> {
    let in_use = |why: String| {
        CliError::Refused(format!(
            "{}; its control socket cannot serve this command: {why}",
            OpenError::InUse(dir.to_owned())
        ))
    };
    let request = Request {
        args: arguments(&plan.extra)?,
        cwd: std::env::current_dir()
            .map_err(|e| CliError::Io(format!("cannot tell the working directory: {e}")))?,
    };
    let mut input: Option<Box<dyn Read>> = match &plan.input {
        Input::Nothing => None,
        Input::Stdin => Some(Box::new(std::io::stdin())),
        Input::File(path) => {
            Some(Box::new(std::fs::File::open(path).map_err(|e| {
                CliError::Io(format!("cannot open {}: {e}", path.display()))
            })?))
        }
        Input::Prompt => Some(Box::new(std::io::Cursor::new(prompt()?))),
    };
    let mut out: Box<dyn Write> = match &plan.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            super::transfer::create_private(path)
                .map_err(|e| CliError::Io(format!("cannot create {}: {e}", path.display())))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut err = std::io::stderr();
    let input = input.as_mut().map(|i| i as &mut dyn Read);
    match control::client::run(socket, &request, input, &mut out, &mut err) {
        Ok(code) => {
            out.flush()
                .map_err(|e| CliError::Io(format!("cannot write the output: {e}")))?;
            Ok(ExitCode::from(code))
        }
        Err(Failure::Unavailable(why)) => {
            // A refused export leaves no empty file behind.
            if let Some(path) = &plan.output {
                drop(out);
                let _ = std::fs::remove_file(path);
            }
            Err(in_use(why))
        }
        Err(Failure::Lost(why)) => Err(CliError::Io(why)),
    }
}

/// Asks for the new password twice on the terminal, as the direct
/// command does; returns it as a `--password-stdin` line.
fn prompt() -> Result<Vec<u8>, CliError> {
    let ask = |label: &str| {
        rpassword::prompt_password(label)
            .map_err(|e| CliError::Io(format!("cannot read the password: {e}")))
    };
    let first = ask("Password: ")?;
    if first != ask("Repeat password: ")? {
        return Err(CliError::Refused("the passwords do not match".to_owned()));
    }
    Ok(format!("{first}\n").into_bytes())
}

/// The server's runner: each request is parsed as the command line it is
/// and run on the server's open store, with the socket's streams.
struct Served {
    store: AnyStore,
    location: Location,
}

/// What a server hands its control socket.
pub fn runner(store: AnyStore, location: Location) -> Arc<dyn control::Runner> {
    Arc::new(Served { store, location })
}

impl control::Runner for Served {
    fn run(&self, request: Request, streams: Streams<'_>) -> u8 {
        let Streams {
            out,
            err,
            input,
            gone,
        } = streams;
        let args = std::iter::once("authd".to_owned()).chain(request.args);
        let command = match Cli::try_parse_from(args) {
            Ok(Cli {
                command: Some(command),
                ..
            }) if !matches!(command, Command::Serve(_)) => command,
            Ok(_) => {
                let _ = writeln!(err, "authd: error: only admin commands run in a server");
                return 2;
            }
            Err(e) => {
                let shown = e.render().to_string();
                let _ = if e.use_stderr() {
                    err.write_all(shown.as_bytes())
                } else {
                    out.write_all(shown.as_bytes())
                };
                return u8::try_from(e.exit_code()).unwrap_or(2);
            }
        };
        let mut env = Env {
            store: Some(&self.store),
            location: Some(&self.location),
            out,
            err,
            input,
            terminal: false,
            cwd: Some(&request.cwd),
            gone: Some(gone),
        };
        let result = run_admin(command, &mut env);
        let _ = env.out.flush();
        match result {
            Ok(code) => exit_byte(code),
            Err(e) => {
                let _ = writeln!(env.err, "authd: error: {e}");
                match e {
                    CliError::Usage(_) => 2,
                    _ => 1,
                }
            }
        }
    }
}

/// The status an [`ExitCode`] stands for (the few the commands use).
fn exit_byte(code: ExitCode) -> u8 {
    if code == ExitCode::SUCCESS {
        0
    } else if code == ExitCode::from(130) {
        130
    } else {
        1
    }
}
