//! Turns on the PostgreSQL half of the test suite when a test database is
//! given (`AUTHD_TEST_DATABASE_URL`) and the `postgres` feature is built.
//! Without it those tests are compiled but ignored, and `cargo test` lists
//! them as ignored with the reason, so a laptop without PostgreSQL passes
//! and nobody mistakes a skip for a pass. (Without the feature, the few
//! that need its client or `authd::store::postgres` are left out.)

fn main() {
    println!("cargo::rustc-check-cfg=cfg(authd_pg_tests)");
    println!("cargo::rerun-if-env-changed=AUTHD_TEST_DATABASE_URL");
    println!("cargo::rerun-if-changed=build.rs");
    let database = std::env::var_os("AUTHD_TEST_DATABASE_URL").is_some_and(|v| !v.is_empty());
    let feature = std::env::var_os("CARGO_FEATURE_POSTGRES").is_some();
    if database && feature {
        println!("cargo::rustc-cfg=authd_pg_tests");
    }
}
