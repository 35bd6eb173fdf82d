//! authd: the Flask "user authentication service" API as one Rust binary.
//!
//! Layers, from the inside out: [`user`] (the model and its newtypes),
//! [`token`] and [`codec`] (secrets and the on-disk format), [`store`]
//! (the storage trait and its sled implementation), [`hasher`] (a bounded
//! bcrypt worker pool), [`auth`] (the service rules), [`http`] (routes,
//! bodies, error mapping), [`server`] (the HTTP server's lifecycle) and
//! [`cli`] (flags into a validated [`config::Config`]).

// Library code must not panic on a request path: no unwrap, expect or
// panic outside tests (as kanidm does).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod audit;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod codec;
pub mod config;
pub mod delivery;
pub mod hasher;
pub mod http;
pub mod permits;
pub mod policy;
pub mod server;
pub mod store;
pub mod throttle;
pub mod token;
pub mod user;
