#!/usr/bin/env bash
# Instruction counts per `GET /profile`, for authd and the bare rouille
# server of the load harness (benches/bare, on upstream tiny_http 0.12.0),
# under valgrind's callgrind: deterministic, so unlike throughput it does
# not move with the machine's other load.
#
#   benches/profile.sh            # both servers, 3,000 requests each
#   REQUESTS=10000 benches/profile.sh
#
# Each server runs under callgrind; after a 300-request warm-up the counters
# are zeroed, one keep-alive client sends REQUESTS identical requests (the
# same cookie to both), and the counts are dumped. Prints instructions per
# request and leaves the profiles in target/profile/ for callgrind_annotate
# (e.g. `callgrind_annotate --inclusive=yes target/profile/authd.*.1`).
# Needs valgrind; builds the release binary and the bare server first.
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${REQUESTS:-3000}
out=target/profile
rm -rf "$out"; mkdir -p "$out"
cargo build --release --quiet
# Its own workspace and Cargo.lock: upstream tiny_http, not authd's patched
# copy (as benches/load.rs builds it).
cargo build --release --locked --quiet --manifest-path benches/bare/Cargo.toml --target-dir target/bare
bare=target/bare/release/authd-bench-bare

drive() { # PORT COUNT COOKIE
    python3 - "$@" <<'PY'
import http.client, sys
port, n, cookie = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
conn = http.client.HTTPConnection("127.0.0.1", port)
for _ in range(n):
    conn.request("GET", "/profile", headers={"Cookie": "session_id=" + cookie})
    response = conn.getresponse()
    response.read()
    if response.status != 200:
        sys.exit(f"answer {response.status}")
PY
}

measure() { # NAME COMMAND...
    local name=$1; shift
    valgrind --tool=callgrind --callgrind-out-file="$out/$name.%p" "$@" \
        >"$out/$name.stdout" 2>"$out/$name.stderr" &
    local pid=$!
    for _ in $(seq 600); do
        grep -q '^listening on' "$out/$name.stdout" 2>/dev/null && break
        sleep 0.1
    done
    local port
    port=$(sed -n 's/^listening on http:\/\/.*://p' "$out/$name.stdout")
    # A token of the real shape; the bare server ignores it.
    local token=Wd1xAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
    if [ "$name" = authd ]; then
        curl -s -o /dev/null -X POST -d 'email=u@x.io&password=pw' "127.0.0.1:$port/users"
        token=$(curl -s -i -X POST -d 'email=u@x.io&password=pw' "127.0.0.1:$port/sessions" |
            sed -n 's/^Set-Cookie: session_id=\([^;]*\).*/\1/p')
    fi
    drive "$port" 300 "$token"
    callgrind_control -z "$pid" >/dev/null 2>&1
    drive "$port" "$requests" "$token"
    callgrind_control -d "$pid" >/dev/null 2>&1
    kill "$pid"; wait "$pid" 2>/dev/null || true
    local total
    total=$(callgrind_annotate "$out/$name".*.1 2>/dev/null | sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,)
    echo "$name: $((total / requests)) instructions per request ($total for $requests)"
}

measure bare "$bare" 127.0.0.1:0
measure authd ./target/release/authd --addr 127.0.0.1:0 --data-dir "$out/store" --bcrypt-cost 4
