//! Usage errors that name where a bad value came from.
//!
//! clap reports a bad value by the flag it belongs to (`invalid value 'abc'
//! for '--bcrypt-cost <BCRYPT_COST>'`), even when the value came from the
//! flag's environment variable, which the user may not connect with the
//! flag. When the flag is not on the command line and its variable is set,
//! the message names the variable instead.

use std::ffi::OsString;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Command, CommandFactory, FromArgMatches};

/// Parses the command line into `T`, exiting with clap's usage error (exit
/// code 2) on a mistake; a bad value from an environment variable is
/// reported under the variable's name.
pub fn parse<T: CommandFactory + FromArgMatches>() -> T {
    let args: Vec<OsString> = std::env::args_os().collect();
    let command = T::command();
    match command
        .clone()
        .try_get_matches_from(&args)
        .and_then(|matches| T::from_arg_matches(&matches))
    {
        Ok(parsed) => parsed,
        Err(error) => {
            let error = from_environment(&error, &command, &args, |name| std::env::var_os(name))
                .and_then(|(variable, flag)| renamed(&error, &variable, &flag))
                .map(|message| clap::Error::raw(error.kind(), message).with_cmd(&command))
                .unwrap_or(error);
            error.exit()
        }
    }
}

/// The environment variable and the flag a bad value came from: when
/// `error` is about a value, its flag is absent from `args` and its
/// variable is set (`env` reads one).
fn from_environment(
    error: &clap::Error,
    command: &Command,
    args: &[OsString],
    env: impl Fn(&str) -> Option<OsString>,
) -> Option<(String, String)> {
    if !matches!(
        error.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation | ErrorKind::InvalidUtf8
    ) {
        return None;
    }
    // clap names the argument "--flag <VALUE>".
    let Some(ContextValue::String(named)) = error.get(ContextKind::InvalidArg) else {
        return None;
    };
    let flag = named.strip_prefix("--")?.split([' ', '=']).next()?;
    let arg = std::iter::once(command)
        .chain(command.get_subcommands())
        .flat_map(Command::get_arguments)
        .find(|arg| arg.get_long() == Some(flag))?;
    let variable = arg.get_env()?.to_str()?.to_owned();
    let long = format!("--{flag}");
    let on_the_line = args
        .iter()
        .filter_map(|a| a.to_str())
        .any(|a| a == long || a.starts_with(&format!("{long}=")));
    if on_the_line || env(&variable).is_none() {
        return None;
    }
    Some((variable, long))
}

/// clap's message for `error` with the flag's name replaced by the
/// variable's.
fn renamed(error: &clap::Error, variable: &str, flag: &str) -> Option<String> {
    let Some(ContextValue::String(named)) = error.get(ContextKind::InvalidArg) else {
        return None;
    };
    let text = error.render().to_string();
    let first = text.lines().next()?;
    let message = first.strip_prefix("error: ").unwrap_or(first);
    Some(format!(
        "{}\n",
        message.replace(
            &format!("'{named}'"),
            &format!("{variable} (the environment variable of {flag})")
        )
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Demo {
        #[arg(long, env = "DEMO_COST", value_parser = clap::value_parser!(u32).range(4..=31))]
        cost: Option<u32>,
    }

    fn error_of(args: &[&str]) -> clap::Error {
        Demo::try_parse_from(args).unwrap_err()
    }

    #[test]
    fn a_bad_value_from_the_environment_names_the_variable() {
        let args: Vec<OsString> = vec!["demo".into()];
        let error = {
            // What clap reports when DEMO_COST=abc: the flag's name.
            Demo::command()
                .try_get_matches_from(["demo", "--cost", "abc"])
                .unwrap_err()
        };
        let set = |name: &str| (name == "DEMO_COST").then(|| OsString::from("abc"));
        let (variable, flag) = from_environment(&error, &Demo::command(), &args, set).unwrap();
        assert_eq!((variable.as_str(), flag.as_str()), ("DEMO_COST", "--cost"));
        let message = renamed(&error, &variable, &flag).unwrap();
        assert!(
            message.starts_with(
                "invalid value 'abc' for DEMO_COST (the environment variable of --cost)"
            ),
            "{message}"
        );
    }

    #[test]
    fn a_bad_value_on_the_command_line_keeps_the_flag() {
        let args: Vec<OsString> = ["demo", "--cost=abc"].iter().map(OsString::from).collect();
        let error = error_of(&["demo", "--cost=abc"]);
        let set = |_: &str| Some(OsString::from("abc"));
        assert_eq!(from_environment(&error, &Demo::command(), &args, set), None);
        // Without the variable set, nothing to rename either.
        let none = |_: &str| None;
        assert_eq!(from_environment(&error, &Demo::command(), &[], none), None);
    }
}
