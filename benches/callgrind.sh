#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind: bare pingora, nidan on a bypass
# route and nidan with a session, the same requests each, as a ratio to bare pingora, plus
# what each of nidan's phases costs. Counting instructions is steady on a busy shared
# machine where req/s and CPU time are not.
#
#   benches/callgrind.sh                 # build release, measure, print the markdown
#
# How: each server runs under callgrind with instrumentation off while it starts; then,
# per connection count, warm-up requests, `callgrind_control --zero`, exactly N requests
# (benches/callgrind_client.py, keep-alive), `callgrind_control --dump`. The dump holds
# those N requests only (all threads), so startup and warm-up never count.
# Needs: valgrind (callgrind_control, callgrind_annotate), python3, curl; nginx (Debian
# `nginx`) as the backend when installed, else nidan's own echo backend.
# Knobs (environment):
#   N=1000           requests per measurement       CONNS="1 32"   connection counts
#   WARM=200         warm-up requests before each   THREADS=2      pingora threads
#   TOP=12           functions listed per target    ONLY=regex     targets by name
#   PROFILE=release  cargo profile to build/use     NO_BUILD=1     use built binaries
#   SYSCALLS=1       also count system calls per request with strace (0: skip)
#   STORE=sqlite     nidan's storage: sqlite (one machine) or replica (PostgreSQL on
#                    127.0.0.1:5432 with trust auth, a database made and dropped for the
#                    run, plus a redis-server of its own on a free port)
#   KEEP=dir         keep the callgrind files here (default: a temporary directory)
#   OUT=file         also append the markdown to this file
#   LABEL=text       what the heading names (default: the commit)
set -euo pipefail

N=${N:-1000}
CONNS=${CONNS:-"1 32"}
WARM=${WARM:-200}
THREADS=${THREADS:-2}
TOP=${TOP:-12}
ONLY=${ONLY:-}
PROFILE=${PROFILE:-release}
NO_BUILD=${NO_BUILD:-0}
SYSCALLS=${SYSCALLS:-1}
STORE=${STORE:-sqlite}
OUT=${OUT:-}
REPO=$(cd "$(dirname "$0")/.." && pwd)
LABEL=${LABEL:-$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/nidan-target}
BIN=$CARGO_TARGET_DIR/$PROFILE
NIDAN_BIN=${NIDAN_BIN:-$BIN/nidan}
BARE_BIN=${BARE_BIN:-$BIN/examples/bare_pingora}
CLIENT=$REPO/benches/callgrind_client.py

W=$(mktemp -d /tmp/nidan-callgrind.XXXXXX)
KEEP=${KEEP:-$W/out}
mkdir -p "$KEEP"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
    sleep 0.5
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ -n "${PG_DB:-}" ]; then
        psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    rm -rf "$W/nidan" "$W/backend"
    [ "$KEEP" = "$W/out" ] && rm -rf "$W"
    return 0
}
trap cleanup EXIT

for tool in valgrind callgrind_control callgrind_annotate python3 curl; do
    command -v "$tool" >/dev/null || { echo "callgrind.sh needs $tool (apt-get install -y valgrind python3 curl)" >&2; exit 1; }
done
if [ "$SYSCALLS" = 1 ] && ! command -v strace >/dev/null; then
    echo "strace not installed: system calls not counted (apt-get install -y strace)" >&2
    SYSCALLS=0
fi

if [ "$NO_BUILD" != 1 ]; then
    echo "== building $PROFILE (target dir $CARGO_TARGET_DIR)" >&2
    (cd "$REPO" && cargo build --profile "$PROFILE" --bin nidan --example bare_pingora >&2)
fi

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() { # port seconds
    for _ in $(seq 1 $(($2 * 10))); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$1; logs:" >&2
    tail -n 20 "$W"/*.log >&2 || true
    exit 1
}

# --- the backend: nginx answering a static 200 (else nidan's echo backend)
P_BACKEND=$(free_port)
mkdir -p "$W/backend"
if command -v nginx >/dev/null; then
    cat >"$W/backend/nginx.conf" <<EOF
worker_processes 1;
pid $W/backend/nginx.pid;
error_log $W/backend/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $W/backend; proxy_temp_path $W/backend; fastcgi_temp_path $W/backend;
    uwsgi_temp_path $W/backend; scgi_temp_path $W/backend;
    server {
        listen 127.0.0.1:$P_BACKEND;
        location / { default_type text/plain; return 200 "hello from the backend\n"; }
    }
}
EOF
    nginx -c "$W/backend/nginx.conf" -p "$W/backend" -g 'daemon off;' >"$W/backend.log" 2>&1 &
    BACKEND_NAME="nginx (static 200)"
else
    "$NIDAN_BIN" echo-backend --listen "127.0.0.1:$P_BACKEND" >"$W/backend.log" 2>&1 &
    BACKEND_NAME="nidan echo-backend"
fi
PIDS+=($!)
wait_port "$P_BACKEND" 10

# --- nidan's configuration: a bypass route and a login route, as in benches/load.sh
mkdir -p "$W/nidan"
cp "$REPO/config/test/users.yaml" "$W/nidan/users.yaml"
head -c 48 /dev/urandom | base64 >"$W/nidan/device-key"
P_NIDAN=$(free_port)
case $STORE in
    sqlite) STORAGE="{ sqlite: { path: nidan.db } }" ;;
    replica)
        for tool in psql redis-server; do
            command -v "$tool" >/dev/null || { echo "STORE=replica needs $tool" >&2; exit 1; }
        done
        PG_DB=nidan_callgrind_$$
        psql -q -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE $PG_DB" >/dev/null
        P_REDIS=$(free_port)
        redis-server --port "$P_REDIS" --bind 127.0.0.1 --save '' --appendonly no >"$W/redis.log" 2>&1 &
        PIDS+=($!)
        wait_port "$P_REDIS" 10
        export NIDAN_DATABASE_URL="postgres://postgres@127.0.0.1:5432/$PG_DB"
        export NIDAN_REDIS_URL="redis://127.0.0.1:$P_REDIS"
        STORAGE="{ postgres: { url_env: NIDAN_DATABASE_URL }, redis: { url_env: NIDAN_REDIS_URL } }"
        ;;
    *) echo "STORE is sqlite or replica" >&2; exit 1 ;;
esac
cat >"$W/nidan/nidan.yaml" <<EOF
version: 1
server: { listen: ["127.0.0.1:$P_NIDAN"], threads: $THREADS, grace_period: 1s }
portal: { path_prefix: /_nidan, default_language: en, title: nidan bench }
trusted_devices:
  signing_keys: [{ id: k1, secret_file: device-key }]
notifiers: { outbox: { path: outbox.jsonl, console: false } }
users: { file: users.yaml }
storage: $STORAGE
routes:
  - { name: public, path_prefix: /public, upstream: ["127.0.0.1:$P_BACKEND"], policy: bypass }
  - { name: app, path_prefix: /, upstream: ["127.0.0.1:$P_BACKEND"], policy: login }
EOF

# Logs in (taro, password only) and prints the session cookie.
login() { # base url
    local flow
    flow=$(curl -sf -H 'content-type: application/json' -d '{"id":"taro"}' "$1/_nidan/api/login" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["flow"])')
    curl -sf -D - -o /dev/null -H 'content-type: application/json' \
        -d '{"password":"test-password-1"}' "$1/_nidan/api/login/$flow/complete" |
        sed -n 's/^[Ss]et-[Cc]ookie: *\(nidan_session=[^;]*\).*/\1/p' | tr -d '\r'
}

# Starts a server (`$@`) under `$WRAP`, waits for its port; sets SERVER_PID.
start_server() { # name port cmd...
    local name=$1 port=$2
    shift 2
    "${WRAP[@]}" "$@" >"$W/$name.log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    wait_port "$port" 180
}
stop_server() {
    kill -INT "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
}

# name|port|path|expected status|cookie?
TARGETS=(
    "bare pingora|bare|/app|200|"
    "nidan bypass|nidan|/public/app|200|"
    "nidan session|nidan|/app|200|cookie"
)
if [ -n "$ONLY" ]; then
    KEPT=()
    for t in "${TARGETS[@]}"; do [[ ${t%%|*} =~ $ONLY ]] && KEPT+=("$t"); done
    TARGETS=("${KEPT[@]}")
fi

COOKIE=""
server_cmd() { # kind → the server's command line; sets PORT
    case $1 in
        bare)
            PORT=$(free_port)
            CMD=("$BARE_BIN" "127.0.0.1:$PORT" "127.0.0.1:$P_BACKEND" "$THREADS")
            ;;
        nidan)
            PORT=$P_NIDAN
            CMD=("$NIDAN_BIN" serve --config "$W/nidan/nidan.yaml")
            ;;
    esac
}

RESULTS=$W/results.tsv
: >"$RESULTS"
for t in "${TARGETS[@]}"; do
    IFS='|' read -r name kind path want cookie <<<"$t"
    slug=$(echo "$name" | tr ' ' '-')
    server_cmd "$kind"
    if [ "$kind" = nidan ] && [ -z "$COOKIE" ]; then
        # A session made once, natively (the password hash is slow under valgrind); the
        # store keeps it for the runs below.
        WRAP=()
        start_server "$slug-login" "$PORT" "${CMD[@]}"
        COOKIE=$(login "http://127.0.0.1:$PORT")
        [ -n "$COOKIE" ] || { echo "login failed; see $W/$slug-login.log" >&2; exit 1; }
        stop_server
    fi
    hdr=""
    [ -n "$cookie" ] && hdr="Cookie: $COOKIE"
    echo "== $name: starting under callgrind" >&2
    WRAP=(valgrind --tool=callgrind --instr-atstart=no --dump-instr=no
        --callgrind-out-file="$KEEP/$slug.%p")
    start_server "$slug" "$PORT" "${CMD[@]}"
    callgrind_control --instr=on "$SERVER_PID" >/dev/null
    for c in $CONNS; do
        python3 "$CLIENT" "127.0.0.1:$PORT" "$path" "$WARM" "$c" "$want" "$hdr"
        callgrind_control --zero "$SERVER_PID" >/dev/null
        echo "== $name: $N requests, $c connection(s)" >&2
        python3 "$CLIENT" "127.0.0.1:$PORT" "$path" "$N" "$c" "$want" "$hdr"
        callgrind_control --dump="$slug-c$c" "$SERVER_PID" >/dev/null
        dump=$(ls -t "$KEEP/$slug.$SERVER_PID".* | head -n 1)
        mv "$dump" "$KEEP/$slug-c$c.out"
        ir=$(sed -n 's/^summary: *\([0-9]*\).*/\1/p; s/^totals: *\([0-9]*\).*/\1/p' "$KEEP/$slug-c$c.out" | head -n 1)
        printf '%s\t%s\t%s\n' "$name" "$c" "$ir" >>"$RESULTS"
    done
    stop_server
    rm -f "$KEEP/$slug.$SERVER_PID"
done

# --- system calls per request (natively, under strace -f -c): what callgrind cannot see
SYSCALL_RESULTS=$W/syscalls.tsv
: >"$SYSCALL_RESULTS"
if [ "$SYSCALLS" = 1 ]; then
    for t in "${TARGETS[@]}"; do
        IFS='|' read -r name kind path want cookie <<<"$t"
        slug=$(echo "$name" | tr ' ' '-')
        server_cmd "$kind"
        hdr=""
        [ -n "$cookie" ] && hdr="Cookie: $COOKIE"
        WRAP=()
        start_server "$slug-strace" "$PORT" "${CMD[@]}"
        for c in $CONNS; do
            python3 "$CLIENT" "127.0.0.1:$PORT" "$path" "$WARM" "$c" "$want" "$hdr"
            strace -f -c -q -o "$KEEP/$slug-c$c.strace" -p "$SERVER_PID" &
            spid=$!
            sleep 1
            python3 "$CLIENT" "127.0.0.1:$PORT" "$path" "$N" "$c" "$want" "$hdr"
            sleep 0.5
            kill -INT "$spid" 2>/dev/null || true
            wait "$spid" 2>/dev/null || true
            # The per-call counts ("calls" column) of the summary table.
            python3 - "$KEEP/$slug-c$c.strace" "$N" "$name" "$c" >>"$SYSCALL_RESULTS" <<'EOF'
import sys
path, n, name, c = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
calls = {}
for line in open(path):
    f = line.split()
    if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
        try:
            calls[f[-1]] = int(f[3])
        except ValueError:
            pass
total = sum(calls.values())
top = ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(calls.items(), key=lambda kv: -kv[1])[:6])
print(f"{name}\t{c}\t{total / n:.2f}\t{top}")
EOF
        done
        stop_server
    done
fi

# --- the report
{
    echo "## Callgrind, $(date -u '+%Y-%m-%d %H:%M UTC'), $LABEL"
    echo
    echo "\`benches/callgrind.sh\` ($PROFILE profile): $N keep-alive requests per row after $WARM warm-up requests, instructions of every thread of the server counted by callgrind (startup and warm-up excluded); backend: $BACKEND_NAME; nidan's store: $STORE; pingora threads: $THREADS."
    echo
    python3 - "$RESULTS" "$N" <<'EOF'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
n = int(sys.argv[2])
bare = {c: int(ir) for name, c, ir in rows if name == "bare pingora"}
print("| target | connections | instructions/request | ÷ bare | − bare |")
print("|---|---:|---:|---:|---:|")
for name, c, ir in rows:
    per = int(ir) / n
    b = bare.get(c)
    ratio = f"{per / (b / n):.2f}×" if b else "—"
    diff = f"{per - b / n:+,.0f}" if b else "—"
    print(f"| {name} | {c} | {per:,.0f} | {ratio} | {diff} |")
EOF
    if [ -s "$SYSCALL_RESULTS" ]; then
        echo
        echo "System calls per request (strace -f -c, native run, same requests):"
        echo
        echo "| target | connections | syscalls/request | most frequent (per request) |"
        echo "|---|---:|---:|---|"
        while IFS=$'\t' read -r name c total top; do
            echo "| $name | $c | $total | $top |"
        done <"$SYSCALL_RESULTS"
    fi
    for f in "$KEEP"/*-c1.out; do
        [ -e "$f" ] || continue
        base=$(basename "$f" -c1.out)
        echo
        echo "<details><summary>$base, 1 connection: top $TOP functions by inclusive instructions per request</summary>"
        echo
        echo '```'
        callgrind_annotate --inclusive=yes --threshold=100 "$f" 2>/dev/null |
            awk -v n="$N" -v top="$TOP" '
                /^-+$/ { next }
                /PROGRAM TOTALS/ { ir = $1; gsub(/,/, "", ir); printf "%12.0f  PROGRAM TOTALS\n", ir / n; next }
                /^ *[0-9,]+ .*(\(|:)/ && shown < top {
                    ir = $1; gsub(/,/, "", ir); $1 = ""; sub(/^ +/, "");
                    sub(/ \[[^]]*\]$/, "");
                    if (length($0) > 150) $0 = substr($0, 1, 147) "...";
                    printf "%12.0f  %s\n", ir / n, $0; shown++
                }'
        echo '```'
        echo "</details>"
    done
    if ls "$KEEP"/nidan-*-c1.out >/dev/null 2>&1; then
        echo
        echo "nidan's phases (inclusive instructions per request, 1 connection):"
        echo
        echo "| phase | bypass | session |"
        echo "|---|---:|---:|"
        for phase in request_filter upstream_peer upstream_request_filter response_filter logging; do
            row="| \`$phase\` |"
            for slug in nidan-bypass nidan-session; do
                f=$KEEP/$slug-c1.out
                v="—"
                if [ -e "$f" ]; then
                    v=$(callgrind_annotate --inclusive=yes --threshold=100 "$f" 2>/dev/null |
                        awk -v n="$N" -v p="Gateway as pingora_proxy::proxy_trait::ProxyHttp>::$phase::" '
                            index($0, p) { ir = $1; gsub(/,/, "", ir); if (ir + 0 > best) best = ir + 0 }
                            END { if (best) printf "%.0f", best / n; else printf "—" }')
                fi
                row="$row $v |"
            done
            echo "$row"
        done
    fi
} >"$W/report.md"
cat "$W/report.md"
if [ -n "$OUT" ]; then
    cat "$W/report.md" >>"$OUT"
fi
[ "$KEEP" != "$W/out" ] && echo "callgrind files kept in $KEEP" >&2
exit 0
