//! The bare rouille server of authd's benchmarks: `authd-bench-bare ADDR`.
//!
//! Answers every request with a fixed JSON body as small as a profile
//! answer, with authd's default pool size, and prints
//! `listening on http://ADDR` as its one line on stdout once it listens.
//! Built on upstream tiny_http 0.12.0 (this package's own Cargo.lock), not
//! on authd's patched copy, so the comparison shows what the patches cost.

use std::io::Write as _;

/// authd's default HTTP pool; the baseline gets the same.
const POOL: usize = 64;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(addr), None) = (args.next(), args.next()) else {
        eprintln!("usage: authd-bench-bare ADDR (e.g. 127.0.0.1:0)");
        std::process::exit(2);
    };
    let server = rouille::Server::new(addr, |_request| {
        rouille::Response::json(&serde_json::json!({ "email": "user0@bench.io" }))
    })
    .unwrap()
    .pool_size(POOL);
    println!("listening on http://{}", server.server_addr());
    std::io::stdout().flush().unwrap();
    server.run();
}
