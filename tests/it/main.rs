//! authd's integration tests, as one test binary (one link instead of one
//! per file): `cargo test --test it`, or one behaviour with its module
//! path, e.g. `cargo test --test it edge::` or `cargo test --test it
//! api::on_sled::`.
//!
//! Every module below shares this process, so none changes process-wide
//! state (umask, rlimits, environment variables, signal handlers): limits
//! are put on the `authd` processes a test starts (`prlimit`, `setpriv`),
//! and signals are sent to them, never to the test process.

mod common;

/// Abuse of the credential paths: parallel guessing, the audit log.
mod abuse;
/// A signed-in user's own account: a new password, deleting the account.
mod account;
/// The operator's commands: users, export/import, check, backup.
mod admin;
/// The reference API: the reference client's flow, body formats, bad input.
mod api;
/// Bearer tokens: the session in an Authorization header.
mod bearer;
/// The real binary: start-up, port 0, the store lock, signals, kill -9.
mod cli;
/// A drop-in for the reference: byte-exact answers, throttling rules.
mod compat;
/// Admin commands while a server runs, through its control socket.
mod control;
/// CORS for front ends on other origins; `--allowed-origins`.
mod cors;
/// SIGKILL at a random moment, then everything acknowledged still holds.
mod crash;
/// One cross-site rule for every state-changing route (production), none in dev.
mod cross_site;
/// Real delivery: dev outbox, SMTP, signed webhooks, retries, dead letters.
mod delivery;
/// Device cookies: a known browser's own failure budget (production).
mod device;
/// Attacks on the HTTP edge, each against the real binary.
mod edge;
/// Look-alike addresses: one account per address, deceptive ones refused, old stores re-keyed.
mod emails;
/// The README's examples of using authd from an app, run as written.
mod examples;
/// Forward-auth: a reverse proxy asks authd before serving another app.
mod forward_auth;
/// Credential lifecycle rules: expiry, throttling, lockout, rehash.
mod hardening;
/// Malformed HTTP and slow clients.
mod hostile;
/// HTTPS from the binary: the flow, Secure cookies, HSTS, SIGHUP reloads, the edge over TLS.
mod https;
/// `GET /metrics`: what is counted, under which labels, and where it is served.
mod metrics;
/// `/openapi.json` is valid and tells the truth about the live server.
mod openapi;
/// The operator's safety nets: no accidental stores, all-or-nothing import, private files.
mod operator;
/// Password hashing: argon2id or bcrypt, long passwords, a store moving between them.
mod passwords;
/// The PostgreSQL throttle table: bounded, evicting, never failing open.
#[cfg(feature = "postgres")]
mod pg_throttle;
/// PostgreSQL over TLS: every sslmode against a cluster the test starts.
#[cfg(feature = "postgres")]
mod pg_tls;
/// What only the PostgreSQL store can do: several instances on one database.
mod postgres;
/// The production profile: delivery channels, password policy, cookies.
mod production;
/// Behind a proxy: every header line counts, the right-most untrusted address is the client.
mod proxy;
/// Concurrent requests that must not break uniqueness or single use.
mod races;
/// Running as a service: `authd healthcheck`, contrib/'s systemd unit and settings.
mod service;
/// Several sessions per user: the list, ending one, others or all.
mod sessions;
/// A full disk under a running server.
mod storage_faults;
/// Both stores against an in-memory model (proptest).
mod store_model;
/// Sessions and reset tokens: replacement, logout, single use.
mod tokens;
/// The TOTP second factor and NFC-normalised passwords.
mod totp;
/// Delivery transports against test SMTP and webhook servers: TLS, AUTH, signatures, retry classes.
mod transport;
/// The hosted pages under /ui/: headers, forms' checks, return_to, profiles.
mod ui;
/// The hosted pages in a real browser: every flow, tidy, axe, screenshots.
mod ui_browser;
/// A store written by the previous release opens and keeps working.
mod upgrade;
/// Verified addresses, the account view and email changes.
mod verification;
