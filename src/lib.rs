//! authd: the Flask "user authentication service" API as one Rust binary.
//!
//! Layers, from the inside out: [`user`], [`session`] and [`one_time`]
//! (the records and their newtypes), [`token`] and [`codec`] (secrets and
//! the on-disk format), [`store`] (storage traits by purpose, on sled and
//! on PostgreSQL), [`hasher`] (a bounded bcrypt worker pool),
//! [`throttle`], [`audit`] and [`outbox`], [`auth`] (every use case),
//! [`delivery`] (the worker that sends reset tokens), [`http`] (transport
//! only: extract, call, map errors), [`server`] (the HTTP server's
//! lifecycle), [`control`] (admin commands through a local socket while a
//! server holds the embedded store) and [`cli`] (flags into a validated [`config::Config`]).

// Library code must not panic on a request path: no unwrap, expect or
// panic outside tests (as kanidm does).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod audit;
pub mod auth;
pub mod cidr;
pub mod cli;
pub mod clock;
pub mod codec;
pub mod config;
pub mod control;
pub mod delivery;
pub mod device;
pub mod email_key;
pub mod hasher;
pub mod http;
pub mod message;
pub mod metrics;
pub mod one_time;
pub mod outbox;
pub mod permits;
pub mod policy;
pub mod server;
pub mod server_key;
pub mod session;
pub mod store;
pub mod throttle;
pub mod tls;
pub mod token;
pub mod totp;
pub mod transport;
pub mod user;
