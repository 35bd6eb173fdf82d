#!/usr/bin/env bash
# Instructions per GET /profile and per GET /auth/verify, one release authd
# under callgrind (benches/profile.sh's method): 300 warm-up requests, then
# counters zeroed, N /profile requests, dump, N /auth/verify requests, dump.
#
#   benches/forward-auth.sh          # 3,000 requests to each route
#   REQUESTS=10000 benches/forward-auth.sh
#
# Needs valgrind; builds the release binary first.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=${AUTHD_BIN:-./target/release/authd}
n=${REQUESTS:-3000}
out=$(mktemp -d)
drive() { # PORT PATH COUNT COOKIE
    python3 - "$@" <<'PY'
import http.client, sys
port, path, n, cookie = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
conn = http.client.HTTPConnection("127.0.0.1", port)
for _ in range(n):
    conn.request("GET", path, headers={"Cookie": "session_id=" + cookie})
    r = conn.getresponse(); r.read()
    if r.status != 200: sys.exit(f"{path}: {r.status}")
PY
}
valgrind --tool=callgrind --callgrind-out-file="$out/authd.%p" "$bin" --addr 127.0.0.1:0 \
    --data-dir "$out/store" --bcrypt-cost 4 --no-access-log --no-audit-log >"$out/stdout" 2>"$out/stderr" &
pid=$!
for _ in $(seq 600); do grep -q '^listening on' "$out/stdout" 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's/^listening on http:\/\/.*://p' "$out/stdout")
curl -s -o /dev/null -X POST -d 'email=u@x.io&password=pw' "127.0.0.1:$port/users"
token=$(curl -s -i -X POST -d 'email=u@x.io&password=pw' "127.0.0.1:$port/sessions" | sed -n 's/^Set-Cookie: session_id=\([^;]*\).*/\1/p')
drive "$port" /profile 150 "$token"; drive "$port" /auth/verify 150 "$token"
callgrind_control -z "$pid" >/dev/null 2>&1
drive "$port" /profile "$n" "$token"
callgrind_control -d "$pid" >/dev/null 2>&1
drive "$port" /auth/verify "$n" "$token"
callgrind_control -d "$pid" >/dev/null 2>&1
kill "$pid"; wait "$pid" 2>/dev/null || true
for i in 1 2; do
    total=$(callgrind_annotate "$out"/authd.*.$i 2>/dev/null | sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,)
    name=$([ $i = 1 ] && echo "GET /profile" || echo "GET /auth/verify")
    echo "$name: $((total / n)) instructions per request ($total for $n)"
done
rm -rf "$out"
