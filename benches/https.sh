#!/usr/bin/env bash
# Instructions per GET /profile over plain HTTP and over HTTPS (one
# keep-alive connection each, so the handshake is paid once), one release
# authd under callgrind per transport, in one run (benches/profile.sh's
# method): 300 warm-up requests, counters zeroed, N requests, dump.
#
#   benches/https.sh                 # 3,000 requests each
#   REQUESTS=10000 benches/https.sh
#
# Needs valgrind and openssl (a self-signed P-256 certificate made here);
# builds the release binary first.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=${AUTHD_BIN:-./target/release/authd}
n=${REQUESTS:-3000}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$out/key.pem" -out "$out/cert.pem" 2>/dev/null
drive() { # SCHEME PORT COUNT COOKIE
    python3 - "$@" <<'PY'
import http.client, ssl, sys
scheme, port, n, cookie = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
if scheme == "https":
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context)
else:
    conn = http.client.HTTPConnection("127.0.0.1", port)
for _ in range(n):
    conn.request("GET", "/profile", headers={"Cookie": "session_id=" + cookie})
    r = conn.getresponse(); r.read()
    if r.status != 200: sys.exit(f"/profile: {r.status}")
PY
}
measure() { # SCHEME EXTRA-FLAGS...
    local scheme=$1; shift
    local dir="$out/$scheme"
    mkdir -p "$dir"
    valgrind --tool=callgrind --callgrind-out-file="$dir/authd.%p" "$bin" --addr 127.0.0.1:0 \
        --data-dir "$dir/store" --bcrypt-cost 4 --no-access-log --no-audit-log "$@" \
        >"$dir/stdout" 2>"$dir/stderr" &
    local pid=$!
    for _ in $(seq 600); do grep -q '^listening on' "$dir/stdout" 2>/dev/null && break; sleep 0.1; done
    local port
    port=$(sed -n 's/^listening on https\{0,1\}:\/\/.*://p' "$dir/stdout")
    local curl=(curl -s -k)
    "${curl[@]}" -o /dev/null -X POST -d 'email=u@x.io&password=pw' "$scheme://127.0.0.1:$port/users"
    local token
    token=$("${curl[@]}" -i -X POST -d 'email=u@x.io&password=pw' "$scheme://127.0.0.1:$port/sessions" \
        | sed -n 's/^[Ss]et-[Cc]ookie: session_id=\([^;]*\).*/\1/p')
    drive "$scheme" "$port" 300 "$token"
    callgrind_control -z "$pid" >/dev/null 2>&1
    drive "$scheme" "$port" "$n" "$token"
    callgrind_control -d "$pid" >/dev/null 2>&1
    kill "$pid"; wait "$pid" 2>/dev/null || true
    local total
    total=$(callgrind_annotate "$dir"/authd.*.1 2>/dev/null | sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,)
    echo "GET /profile over $scheme: $((total / n)) instructions per request ($total for $n)"
}
measure http
measure https --tls-cert "$out/cert.pem" --tls-key "$out/key.pem"
