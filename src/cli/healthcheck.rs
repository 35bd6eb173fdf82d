//! `authd healthcheck URL [--cacert FILE] [--timeout SECONDS]`: one GET,
//! exit 0 when it answers 2xx and 1 otherwise, for the health checks of
//! containers and supervisors (Docker's `HEALTHCHECK`, compose,
//! Kubernetes exec probes) where the image has no curl.
//!
//! It opens no store and reads none of `serve`'s settings: it is a
//! client of a running server, like `curl -f`, so it works in any shell
//! the server's environment variables (valid or not) are set in.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use clap::Args;

use super::CliError;

/// Default for `--timeout`, in seconds: Docker's own default check
/// timeout is 30 s, but a health endpoint that needs more than a few
/// seconds is as good as down.
const DEFAULT_TIMEOUT: &str = "5";

/// Longest `--timeout`, in seconds: a health check that waits longer
/// than an hour is a mistake, not a setting.
const MAX_TIMEOUT_SECS: f64 = 3600.0;

/// Options of `authd healthcheck`.
#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The URL to GET, e.g. http://127.0.0.1:5000/healthz (authd's health
    /// endpoint) or https://auth.example.com/healthz; healthy when it
    /// answers 2xx. Redirects are not followed; proxy variables are
    /// ignored.
    #[arg(value_name = "URL", value_parser = parse_url)]
    url: ureq::http::Uri,

    /// Trust the certificates of this PEM file, and only them, for an
    /// https:// URL (as `curl --cacert` does) [default: the Mozilla roots
    /// built into authd].
    #[arg(long, value_name = "FILE")]
    cacert: Option<PathBuf>,

    /// Seconds the whole check may take: name lookup, connection, TLS
    /// handshake and the answer's head (fractions allowed).
    #[arg(long, value_name = "SECONDS", default_value = DEFAULT_TIMEOUT,
          value_parser = parse_timeout)]
    timeout: Duration,
}

/// GETs the URL: `Ok(SUCCESS)` and one line on stdout on a 2xx answer;
/// otherwise [`CliError::Refused`] (status 1) with why, or
/// [`CliError::Usage`] (status 2) for a CA file that cannot be used.
pub fn run(args: HealthcheckArgs) -> Result<ExitCode, CliError> {
    let shown = shown(&args.url);
    let agent = agent(args.cacert.as_deref(), args.timeout)?;
    let timeout = args.timeout;
    // ureq bounds the call by `timeout`, but a name lookup blocks in the
    // C library where no timeout reaches it: the call runs on a thread of
    // its own, and a check past its deadline fails whatever it waits on.
    let (tx, rx) = mpsc::channel();
    let url = args.url;
    std::thread::Builder::new()
        .name("healthcheck".to_owned())
        .spawn(move || {
            let _ = tx.send(agent.get(url).call().map(|answer| answer.status()));
        })
        .map_err(|e| CliError::Io(format!("cannot start the check: {e}")))?;
    let unhealthy = |why: String| CliError::Refused(format!("unhealthy: {shown}: {why}"));
    match rx.recv_timeout(timeout + Duration::from_millis(250)) {
        Ok(Ok(status)) if status.is_success() => {
            println!("healthy: {shown} answered {}", status.as_u16());
            Ok(ExitCode::SUCCESS)
        }
        Ok(Ok(status)) => Err(unhealthy(format!("answered {status}"))),
        Ok(Err(e)) => Err(unhealthy(why(&e, timeout))),
        Err(_) => Err(unhealthy(no_answer(timeout))),
    }
}

/// The client: redirects off (a 3xx is an answer, and not a healthy one:
/// a health endpoint that moved is a configuration to fix), no proxy
/// from the environment (the check is of this server, not of whatever
/// `HTTP_PROXY` reaches), statuses as answers, and `timeout` for the
/// whole call. Certificates are checked against the roots built in, or
/// against `cacert`'s only, as the webhook transport does.
fn agent(cacert: Option<&Path>, timeout: Duration) -> Result<ureq::Agent, CliError> {
    let mut tls = ureq::tls::TlsConfig::builder().provider(ureq::tls::TlsProvider::Rustls);
    if let Some(path) = cacert {
        tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certificates(path)?));
    }
    Ok(ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .http_status_as_error(false)
        .proxy(None)
        .tls_config(tls.build())
        .user_agent("authd-healthcheck")
        .build()
        .into())
}

/// The certificates of a PEM file; a file that cannot be read or holds
/// none is a usage error (status 2), like a bad flag: the check was not
/// made, so it must not read as "unhealthy".
fn certificates(path: &Path) -> Result<Vec<ureq::tls::Certificate<'static>>, CliError> {
    let usage = |why: String| CliError::Usage(format!("--cacert {}: {why}", path.display()));
    let pem = std::fs::read(path).map_err(|e| usage(e.to_string()))?;
    let mut certificates = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(certificate)) => certificates.push(certificate),
            Ok(_) => {}
            Err(e) => return Err(usage(e.to_string())),
        }
    }
    if certificates.is_empty() {
        return Err(usage("no PEM certificate in it".to_owned()));
    }
    Ok(certificates)
}

/// Why a call failed, in a few words.
fn why(e: &ureq::Error, timeout: Duration) -> String {
    use ureq::Error as E;
    match e {
        E::Timeout(_) => no_answer(timeout),
        E::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused (is authd running, on this address?)".to_owned()
        }
        E::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => no_answer(timeout),
        // rustls reports a certificate it does not trust as InvalidData.
        E::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
            format!("TLS: {io} (--cacert FILE trusts a private CA)")
        }
        E::HostNotFound => "host not found".to_owned(),
        other => other.to_string(),
    }
}

fn no_answer(timeout: Duration) -> String {
    format!("no answer within {} s", timeout.as_secs_f64())
}

/// `url` without any user or password, for messages.
fn shown(url: &ureq::http::Uri) -> String {
    let host = url
        .authority()
        .map(|a| a.as_str().rsplit_once('@').map_or(a.as_str(), |(_, h)| h))
        .unwrap_or_default();
    let path = url.path_and_query().map_or("/", |p| p.as_str());
    format!("{}://{host}{path}", url.scheme_str().unwrap_or_default())
}

/// An http:// or https:// URL with a host: anything else is a usage
/// error before any connection is tried.
fn parse_url(text: &str) -> Result<ureq::http::Uri, String> {
    let uri: ureq::http::Uri = text
        .parse()
        .map_err(|e| format!("not a URL ({e}); e.g. http://127.0.0.1:5000/healthz"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err("must be http:// or https://, e.g. http://127.0.0.1:5000/healthz".to_owned());
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("has no host; e.g. http://127.0.0.1:5000/healthz".to_owned());
    }
    Ok(uri)
}

/// Seconds, fractions allowed ("5", "0.5"), from 1 ms to an hour.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(0.001..=MAX_TIMEOUT_SECS).contains(&seconds) {
        return Err(format!(
            "must be between 0.001 and {MAX_TIMEOUT_SECS} seconds"
        ));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_need_a_web_scheme_and_a_host() {
        for good in [
            "http://127.0.0.1:5000/healthz",
            "https://auth.example.com/healthz",
            "http://[::1]:5000/",
        ] {
            assert!(parse_url(good).is_ok(), "{good}");
        }
        for bad in ["127.0.0.1:5000", "ftp://h/x", "http:///x", "not a url", ""] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn messages_never_show_a_password() {
        let uri = parse_url("http://user:s3cret@h:1/healthz?x=1").unwrap();
        assert_eq!(shown(&uri), "http://h:1/healthz?x=1");
        let uri = parse_url("https://h").unwrap();
        assert_eq!(shown(&uri), "https://h/");
    }

    #[test]
    fn timeouts_take_fractions_within_bounds() {
        assert_eq!(parse_timeout("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_timeout("5"), Ok(Duration::from_secs(5)));
        for bad in ["0", "-1", "3601", "five", "NaN"] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
    }
}
