#!/usr/bin/env bash
# Load benchmark: what nidan costs per request, side by side with the same backend reached
# directly, through a bare pingora passthrough, through nginx, through nginx with
# auth_request to a trivial endpoint, and through nginx with auth_request to nidan's
# forward-auth endpoint (docs/forward-auth.md's snippet). Loopback only, bounded in time (about 6
# minutes with the defaults, plus the build), stops everything it started.
#
#   benches/load.sh                      # build release, measure, write benches/results.md
#
# Needs: cargo, wrk, nginx (Debian packages `wrk nginx`), curl, python3.
# Knobs (environment):
#   DURATION=5      seconds per wrk run          RUNS=3        runs per target and connections
#   CONNS="1 32"    wrk connections              THREADS=2     pingora threads (nidan, bare)
#   SERVER_CPUS=1   CPUs for the proxies under test (taskset list; empty: no pinning)
#   CLIENT_CPUS=0   CPUs for wrk and the backend (taskset list; empty: no pinning)
#   FLOOD=1         also measure authenticated requests during a login flood (0: skip)
#   FLOOD_CONNS=4   concurrent flood connections (each: start a login, send a wrong password)
#   HASHES=0        nidan login_limits.max_concurrent_hashes (0: one per core)
#   HASH_NICE=      renice nidan's password-hashing threads to this (e.g. 19); empty: leave
#   ONLY=regex      measure only the targets whose name matches (e.g. ONLY='bare|nidan',
#                   ONLY='bare|auth' for bare pingora and both auth_request rows)
#   NO_BUILD=1      use the binaries already built (NIDAN_BIN, BARE_BIN: other binaries)
#   OUT=benches/results.md   where the markdown report goes ("-" for stdout only)
set -euo pipefail

DURATION=${DURATION:-5}
RUNS=${RUNS:-3}
CONNS=${CONNS:-"1 32"}
THREADS=${THREADS:-2}
SERVER_CPUS=${SERVER_CPUS-1}
CLIENT_CPUS=${CLIENT_CPUS-0}
FLOOD=${FLOOD:-1}
FLOOD_CONNS=${FLOOD_CONNS:-4}
HASHES=${HASHES:-0}
ONLY=${ONLY:-}
HASH_NICE=${HASH_NICE:-}
NO_BUILD=${NO_BUILD:-0}
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$REPO/benches/results.md}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/nidan-target}
BIN=$CARGO_TARGET_DIR/release
NIDAN_BIN=${NIDAN_BIN:-$BIN/nidan}
BARE_BIN=${BARE_BIN:-$BIN/examples/bare_pingora}

STARTED=$(date +%s)
W=$(mktemp -d /tmp/nidan-load.XXXXXX)
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -INT "$pid" 2>/dev/null || true
    done
    sleep 0.3
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$W"
}
trap cleanup EXIT

for tool in wrk nginx curl python3; do
    command -v "$tool" >/dev/null || { echo "load.sh needs $tool (apt-get install -y wrk nginx curl python3)" >&2; exit 1; }
done

# Command prefixes that pin to a CPU list (empty: no pinning). Arrays, not a function, so
# that `$!` of a background server is the server itself.
PIN_SERVER=()
PIN_CLIENT=()
[ -n "$SERVER_CPUS" ] && PIN_SERVER=(taskset -c "$SERVER_CPUS")
[ -n "$CLIENT_CPUS" ] && PIN_CLIENT=(taskset -c "$CLIENT_CPUS")

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # port
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$1; logs in $W" >&2
    tail -n 20 "$W"/*.log >&2 || true
    exit 1
}

if [ "$NO_BUILD" != 1 ]; then
    echo "== building release (target dir $CARGO_TARGET_DIR)"
    (cd "$REPO" && cargo build --release --bin nidan --example bare_pingora)
fi
BUILT=$(date +%s)

P_BACKEND=$(free_port)
P_AUTH=$(free_port)
P_BARE=$(free_port)
P_NGINX=$(free_port)
P_NGINX_AUTH=$(free_port)
P_NGINX_NIDAN=$(free_port)
P_NIDAN=$(free_port)

# --- backend: nginx answering a static 200 (the fastest small backend here) and the
# forward-auth endpoint (204), one worker, on the client CPUs so the proxy CPU is all theirs.
mkdir -p "$W/backend" "$W/proxy"
cat >"$W/backend/nginx.conf" <<EOF
worker_processes 1;
pid $W/backend/nginx.pid;
error_log $W/backend/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $W/backend; proxy_temp_path $W/backend; fastcgi_temp_path $W/backend;
    uwsgi_temp_path $W/backend; scgi_temp_path $W/backend;
    server {
        listen 127.0.0.1:$P_BACKEND;
        location / { default_type text/plain; return 200 "hello from the backend\n"; }
    }
    server {
        listen 127.0.0.1:$P_AUTH;
        location / { return 204; }
    }
}
EOF
"${PIN_CLIENT[@]}" nginx -c "$W/backend/nginx.conf" -p "$W/backend" -g 'daemon off;' \
    >"$W/backend.log" 2>&1 &
PIDS+=($!)

# --- nginx as the reverse proxy under test, with an upstream keepalive pool, the same with
# auth_request to the trivial 204 endpoint (the forward-auth design of Authelia and
# oauth2-proxy), and the same with auth_request to nidan's forward-auth endpoint: the
# nginx snippet of docs/forward-auth.md (identity headers passed on, a 401 turned into a 302 to the login),
# with a keepalive pool to nidan like the one to the trivial endpoint.
cat >"$W/proxy/nginx.conf" <<EOF
worker_processes 1;
pid $W/proxy/nginx.pid;
error_log $W/proxy/error.log warn;
events { worker_connections 4096; }
http {
    access_log $W/proxy/access.log;
    keepalive_requests 1000000;
    client_body_temp_path $W/proxy; proxy_temp_path $W/proxy; fastcgi_temp_path $W/proxy;
    uwsgi_temp_path $W/proxy; scgi_temp_path $W/proxy;
    upstream backend { server 127.0.0.1:$P_BACKEND; keepalive 64; }
    upstream auth { server 127.0.0.1:$P_AUTH; keepalive 64; }
    upstream nidan { server 127.0.0.1:$P_NIDAN; keepalive 64; }
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    server {
        listen 127.0.0.1:$P_NGINX;
        location / { proxy_pass http://backend; }
    }
    server {
        listen 127.0.0.1:$P_NGINX_AUTH;
        location / { auth_request /_auth; proxy_pass http://backend; }
        location = /_auth {
            internal;
            proxy_pass http://auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            # A location's own proxy_set_header drops the inherited ones: keep the pool.
            proxy_set_header Connection "";
            proxy_set_header X-Original-URI \$request_uri;
        }
    }
    server {
        listen 127.0.0.1:$P_NGINX_NIDAN;
        server_name 127.0.0.1;
        location /_nidan/ {
            proxy_pass http://nidan;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-For \$remote_addr;
        }
        location = /_nidan/api/authz/forward-auth { return 404; }
        location = /_nidan_authz {
            internal;
            proxy_pass http://nidan/_nidan/api/authz/forward-auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_set_header X-Original-URL \$scheme://\$server_name\$request_uri;
            proxy_set_header X-Original-Method \$request_method;
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_set_header X-Forwarded-Host "";
            proxy_set_header X-Forwarded-Uri "";
        }
        location @nidan_login { return 302 \$nidan_login; }
        location / {
            auth_request /_nidan_authz;
            auth_request_set \$nidan_user \$upstream_http_remote_user;
            auth_request_set \$nidan_name \$upstream_http_remote_name;
            auth_request_set \$nidan_email \$upstream_http_remote_email;
            auth_request_set \$nidan_groups \$upstream_http_remote_groups;
            auth_request_set \$nidan_assertion \$upstream_http_x_nidan_assertion;
            auth_request_set \$nidan_login \$upstream_http_location;
            auth_request_set \$nidan_cookie \$upstream_http_cookie;
            auth_request_set \$nidan_authorization \$upstream_http_authorization;
            error_page 401 = @nidan_login;
            proxy_set_header Cookie \$nidan_cookie;
            proxy_set_header Authorization \$nidan_authorization;
            proxy_set_header Connection "";
            proxy_set_header Remote-User \$nidan_user;
            proxy_set_header Remote-Name \$nidan_name;
            proxy_set_header Remote-Email \$nidan_email;
            proxy_set_header Remote-Groups \$nidan_groups;
            proxy_set_header X-Nidan-Assertion \$nidan_assertion;
            proxy_set_header Host \$http_host;
            proxy_pass http://backend;
        }
    }
}
EOF
"${PIN_SERVER[@]}" nginx -c "$W/proxy/nginx.conf" -p "$W/proxy" -g 'daemon off;' \
    >"$W/nginx-proxy.log" 2>&1 &
PIDS+=($!)

# --- bare pingora passthrough
"${PIN_SERVER[@]}" "$BARE_BIN" "127.0.0.1:$P_BARE" "127.0.0.1:$P_BACKEND" "$THREADS" \
    >"$W/bare.log" 2>&1 &
PIDS+=($!)
PID_BARE=$!

# --- nidan: a bypass route and a login route in front of the same backend; the test users.
# 127.0.0.1 is a trusted proxy so that the forward-auth endpoint answers nginx (the other
# rows send no X-Forwarded-For: their client is the TCP peer either way).
mkdir -p "$W/nidan"
cp "$REPO/config/test/users.yaml" "$W/nidan/users.yaml"
head -c 48 /dev/urandom | base64 >"$W/nidan/device-key"
cat >"$W/nidan/nidan.yaml" <<EOF
version: 1
server: { listen: ["127.0.0.1:$P_NIDAN"], threads: $THREADS, grace_period: 1s }
portal: { path_prefix: /_nidan, default_language: en, title: nidan bench }
trusted_devices:
  signing_keys: [{ id: k1, secret_file: device-key }]
notifiers: { outbox: { path: outbox.jsonl, console: false } }
users: { file: users.yaml }
storage: { sqlite: { path: nidan.db } }
login_limits: { max_concurrent_hashes: $HASHES }
trusted_proxies: ["127.0.0.1"]
routes:
  - { name: public, path_prefix: /public, upstream: ["127.0.0.1:$P_BACKEND"], policy: bypass }
  - { name: app, path_prefix: /, upstream: ["127.0.0.1:$P_BACKEND"], policy: login }
EOF
# The access log stays on (default level), written to a file as in production.
"${PIN_SERVER[@]}" "$NIDAN_BIN" serve --config "$W/nidan/nidan.yaml" >"$W/nidan.log" 2>&1 &
PIDS+=($!)
PID_NIDAN=$!

for p in $P_BACKEND $P_AUTH $P_NGINX $P_NGINX_AUTH $P_NGINX_NIDAN $P_BARE $P_NIDAN; do wait_port "$p"; done
PID_NGINX_BACKEND=$(cat "$W/backend/nginx.pid")
PID_NGINX_PROXY=$(cat "$W/proxy/nginx.pid")
if [ -n "$HASH_NICE" ]; then
    for task in /proc/"$PID_NIDAN"/task/*; do
        if grep -q '^nidan-hash' "$task/comm"; then renice -n "$HASH_NICE" -p "${task##*/}" >/dev/null; fi
    done
fi

# --- log in through the API (taro: password only) and keep the session cookie
N=http://127.0.0.1:$P_NIDAN
FLOW=$(curl -sf -H 'content-type: application/json' -d '{"id":"taro"}' "$N/_nidan/api/login" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["flow"])')
COOKIE=$(curl -sf -D - -o /dev/null -H 'content-type: application/json' \
    -d '{"password":"test-password-1"}' "$N/_nidan/api/login/$FLOW/complete" |
    sed -n 's/^[Ss]et-[Cc]ookie: *\(nidan_session=[^;]*\).*/\1/p' | tr -d '\r')
[ -n "$COOKIE" ] || { echo "login failed; see $W/nidan.log" >&2; exit 1; }

# name|url|expected status|server pids (CPU, RSS)|extra wrk header
# (nginx + nidan forward-auth: CPU and RSS are nginx's and nidan's together; the trivial
# auth endpoint of nginx + auth_request runs in the backend, on the client CPUs, uncounted.)
TARGETS=(
    "direct|http://127.0.0.1:$P_BACKEND/app|200|backend|"
    "bare pingora|http://127.0.0.1:$P_BARE/app|200|bare|"
    "nginx proxy|http://127.0.0.1:$P_NGINX/app|200|nginx|"
    "nginx + auth_request|http://127.0.0.1:$P_NGINX_AUTH/app|200|nginx|"
    "nginx + nidan forward-auth|http://127.0.0.1:$P_NGINX_NIDAN/app|200|nginx+nidan|Cookie: $COOKIE"
    "nidan login, session|$N/app|200|nidan|Cookie: $COOKIE"
    "nidan bypass|$N/public/app|200|nidan|"
    "nidan no session → 302|$N/app|302|nidan|Accept: text/html"
)

if [ -n "$ONLY" ]; then
    KEPT=()
    for t in "${TARGETS[@]}"; do
        if [[ ${t%%|*} =~ $ONLY ]]; then KEPT+=("$t"); fi
    done
    TARGETS=("${KEPT[@]}")
fi

pids_of() { # role → pids whose CPU and RSS count
    case $1 in
        backend) echo "$PID_NGINX_BACKEND $(pgrep -P "$PID_NGINX_BACKEND" | tr '\n' ' ')" ;;
        nginx) echo "$PID_NGINX_PROXY $(pgrep -P "$PID_NGINX_PROXY" | tr '\n' ' ')" ;;
        bare) echo "$PID_BARE" ;;
        nidan) echo "$PID_NIDAN" ;;
        nginx+nidan) echo "$(pids_of nginx) $PID_NIDAN" ;;
    esac
}

cpu_ticks() { # pids → utime+stime (clock ticks) summed
    local sum=0 p f
    for p in "$@"; do
        f=$(cut -d' ' -f14,15 "/proc/$p/stat" 2>/dev/null || echo "0 0")
        sum=$((sum + ${f% *} + ${f#* }))
    done
    echo "$sum"
}

rss_kib() {
    local sum=0 p v
    for p in "$@"; do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}

# --- every target answers what it should before anything is measured
for t in "${TARGETS[@]}"; do
    IFS='|' read -r name url want role hdr <<<"$t"
    args=(-s -o /dev/null -w '%{http_code}')
    [ -n "$hdr" ] && args+=(-H "$hdr")
    got=$(curl "${args[@]}" "$url")
    [ "$got" = "$want" ] || { echo "$name: expected $want, got $got" >&2; exit 1; }
    # The forward-auth row must really be decided by nidan: without the cookie, the login.
    if [ "$role" = nginx+nidan ]; then
        got=$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' "$url")
        [[ $got == "302 "*/_nidan/login* ]] || { echo "$name without a session: expected 302 to the login, got $got" >&2; exit 1; }
    fi
done

CLK=$(getconf CLK_TCK)
RAW=$W/raw.tsv
: >"$RAW"

measure() { # label conns run url role header [duration]
    local label=$1 c=$2 run=$3 url=$4 role=$5 hdr=$6 d=${7:-$DURATION}
    local pids t0 t1 out args
    read -r -a pids <<<"$(pids_of "$role")"
    args=(-t1 "-c$c" "-d${d}s" --latency)
    [ -n "$hdr" ] && args+=(-H "$hdr")
    t0=$(cpu_ticks "${pids[@]}")
    out=$("${PIN_CLIENT[@]}" wrk "${args[@]}" "$url")
    t1=$(cpu_ticks "${pids[@]}")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$c" "$run" "$((t1 - t0))" \
        "$(rss_kib "${pids[@]}")" "$(echo "$out" | tr '\n' '~')" >>"$RAW"
}

echo "== warm-up"
for t in "${TARGETS[@]}"; do
    IFS='|' read -r name url _ role hdr <<<"$t"
    args=(-t1 -c32 -d1s)
    [ -n "$hdr" ] && args+=(-H "$hdr")
    "${PIN_CLIENT[@]}" wrk "${args[@]}" "$url" >/dev/null
done

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for run in $(seq 1 "$RUNS"); do
    for c in $CONNS; do
        for t in "${TARGETS[@]}"; do
            IFS='|' read -r name url _ role hdr <<<"$t"
            echo "== run $run, $c connections: $name"
            measure "$name" "$c" "$run" "$url" "$role" "$hdr"
        done
    done
done

# --- logins under load: authenticated requests with and without a concurrent flood of
# wrong passwords for ever-new unknown IDs (each one still costs a full argon2id verify).
if [ "$FLOOD" = 1 ]; then
    cat >"$W/flood.lua" <<'EOF'
-- One connection per wrk thread: start a login for a new unknown ID, then send a wrong
-- password for it; repeat. Unknown IDs so the per-account failure limiter never engages,
-- and each login from its own address (X-Forwarded-For: nidan trusts 127.0.0.1 here), as a
-- flood spread over many networks would come, so the per-network ID-step budget does not
-- answer it with cheap 429s and every wrong password costs a full argon2id verify.
local counter, flow = 0, nil
local thread_id = 0
function setup(thread)
    thread_id = thread_id + 1
    thread:set("tid", thread_id)
end
function request()
    local h = { ["Content-Type"] = "application/json" }
    if not flow then
        counter = counter + 1
    end
    h["X-Forwarded-For"] = string.format("10.%d.%d.%d", tid % 256,
        math.floor(counter / 256) % 256, counter % 256)
    if flow then
        local path = "/_nidan/api/login/" .. flow .. "/complete"
        flow = nil
        return wrk.format("POST", path, h, '{"password":"wrong-password-123"}')
    end
    return wrk.format("POST", "/_nidan/api/login", h,
        '{"id":"flood' .. tostring(tid) .. "x" .. counter .. '"}')
end
function response(status, headers, body)
    local f = body and body:match('"flow"%s*:%s*"([^"]+)"')
    if f and status == 200 then flow = f end
end
function done(summary, latency, requests)
    io.write(string.format("flood: %d requests, %d non-2xx\n", summary.requests, summary.errors.status))
end
EOF
    for run in $(seq 1 "$RUNS"); do
        echo "== run $run: nidan login, session, 32 connections, no flood"
        measure flood-off 32 "$run" "$N/app" nidan "Cookie: $COOKIE"
        echo "== run $run: nidan login, session, 32 connections, during a login flood"
        "${PIN_CLIENT[@]}" wrk "-t$FLOOD_CONNS" "-c$FLOOD_CONNS" "-d$((DURATION + 2))s" \
            -s "$W/flood.lua" "$N/_nidan/api/login" >"$W/flood-$run.txt" 2>&1 &
        FLOOD_PID=$!
        sleep 1.5
        measure flood-on 32 "$run" "$N/app" nidan "Cookie: $COOKIE"
        wait "$FLOOD_PID" || true
        tail -n 1 "$W/flood-$run.txt" | sed "s/^/   /"
        printf 'flood-run\t%s\t%s\n' "$run" "$(grep -Eo '[0-9]+ requests in' "$W/flood-$run.txt" | head -1 | cut -d' ' -f1)" >>"$W/flood.tsv"
    done
fi
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
ENDED=$(date +%s)

# --- the report
export RAW CLK DURATION RUNS THREADS SERVER_CPUS CLIENT_CPUS LOAD_BEFORE LOAD_AFTER FLOOD_CONNS HASHES HASH_NICE
export ELAPSED=$((ENDED - STARTED)) BUILD_SECS=$((BUILT - STARTED)) FLOOD_TSV=$W/flood.tsv
REPORT=$(python3 - <<'PY'
import os, re, statistics as st

clk = int(os.environ["CLK"])
rows = []
for line in open(os.environ["RAW"]):
    label, conns, run, ticks, rss, out = line.rstrip("\n").split("\t", 5)
    out = out.replace("~", "\n")
    def lat(p):
        m = re.search(r"^\s*%s%%\s+([\d.]+)(us|ms|s)\s*$" % p, out, re.M)
        v, u = float(m.group(1)), m.group(2)
        return v * {"us": 1, "ms": 1e3, "s": 1e6}[u]
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errs = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs += int(m.group(1)) if m else 0
    rows.append(dict(label=label, c=int(conns), run=int(run), rps=rps, p50=lat(50), p99=lat(99),
                     cpu=int(ticks) * 1e6 / clk / max(reqs, 1), rss=int(rss) / 1024, errs=errs))

def med(label, c, key):
    v = [r[key] for r in rows if r["label"] == label and r["c"] == c]
    return st.median(v) if v else None

labels = []
for r in rows:
    if r["label"] not in labels and not r["label"].startswith("flood-"):
        labels.append(r["label"])
conns = sorted({r["c"] for r in rows if not r["label"].startswith("flood-")})

def fmt_ratio(a, b):
    return "—" if not a or not b else "%.2f×" % (a / b)

out = []
pin = lambda v: ("CPU " + v) if v else "not pinned"
out.append("Medians of %s runs of %s s each (wrk -t1, keep-alive); ratios are to bare pingora "
           "(÷bare) and to the direct backend (÷direct) from the same run. Proxies under test: %s; "
           "wrk and the backend: %s. pingora threads: %s. Load average before/after: %s / %s. "
           "Total time %s s (build %s s)."
           % (os.environ["RUNS"], os.environ["DURATION"], pin(os.environ["SERVER_CPUS"]),
              pin(os.environ["CLIENT_CPUS"]), os.environ["THREADS"], os.environ["LOAD_BEFORE"],
              os.environ["LOAD_AFTER"], os.environ["ELAPSED"], os.environ["BUILD_SECS"]))
out.append("")
for c in conns:
    out.append("**%d connection%s**" % (c, "" if c == 1 else "s"))
    out.append("")
    out.append("| target | req/s | ÷bare | ÷direct | p50 µs | ÷bare | p99 µs | ÷bare | CPU µs/req | ÷bare | −bare µs | RSS MiB | errors |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    b = {k: med("bare pingora", c, k) for k in ("rps", "p50", "p99", "cpu")}
    d = {k: med("direct", c, k) for k in ("rps", "p50", "p99", "cpu")}
    for l in labels:
        m = {k: med(l, c, k) for k in ("rps", "p50", "p99", "cpu", "rss")}
        if m["rps"] is None:
            continue
        errs = sum(r["errs"] for r in rows if r["label"] == l and r["c"] == c)
        out.append("| %s | %.0f | %s | %s | %.0f | %s | %.0f | %s | %.1f | %s | %+.1f | %.1f | %d |" % (
            l, m["rps"], fmt_ratio(m["rps"], b["rps"]), fmt_ratio(m["rps"], d["rps"]),
            m["p50"], fmt_ratio(m["p50"], b["p50"]), m["p99"], fmt_ratio(m["p99"], b["p99"]),
            m["cpu"], fmt_ratio(m["cpu"], b["cpu"]), m["cpu"] - (b["cpu"] or 0), m["rss"], errs))
    out.append("")
    out.append("Per run (req/s): " + "; ".join(
        "%s %s" % (l, "/".join("%.0f" % r["rps"] for r in rows if r["label"] == l and r["c"] == c))
        for l in labels))
    out.append("")

off = [r for r in rows if r["label"] == "flood-off"]
on = [r for r in rows if r["label"] == "flood-on"]
if off and on:
    fl = {}
    if os.path.exists(os.environ["FLOOD_TSV"]):
        for line in open(os.environ["FLOOD_TSV"]):
            _, run, n = line.split("\t")
            fl[int(run)] = int(n or 0)
    o = {k: st.median(r[k] for r in off) for k in ("rps", "p50", "p99", "cpu")}
    f = {k: st.median(r[k] for r in on) for k in ("rps", "p50", "p99", "cpu")}
    hashes = st.median(fl.values()) / 2 / (int(os.environ["DURATION"]) + 2) if fl else 0
    out.append("**Logins under load** (nidan, session cookie, 32 connections; flood: %s connections "
               "posting wrong passwords for new unknown IDs, ≈ %.0f password checks/s; "
               "max_concurrent_hashes %s%s)" % (os.environ["FLOOD_CONNS"], hashes,
               os.environ["HASHES"] or "0",
               ", hashing threads at nice " + os.environ["HASH_NICE"] if os.environ.get("HASH_NICE") else ""))
    out.append("")
    out.append("| | req/s | p50 µs | p99 µs | errors |")
    out.append("|---|---:|---:|---:|---:|")
    out.append("| no flood | %.0f | %.0f | %.0f | %d |" % (o["rps"], o["p50"], o["p99"], sum(r["errs"] for r in off)))
    out.append("| during the flood | %.0f | %.0f | %.0f | %d |" % (f["rps"], f["p50"], f["p99"], sum(r["errs"] for r in on)))
    out.append("| ratio | %.2f× | %.2f× | %.2f× | |" % (f["rps"] / o["rps"], f["p50"] / o["p50"], f["p99"] / o["p99"]))
    out.append("")
    out.append("Per run (req/s, off/on): " + "; ".join("%.0f/%.0f" % (a["rps"], b["rps"]) for a, b in zip(off, on)))
    out.append("")
print("\n".join(out))
PY
)
echo
echo "$REPORT"
if [ "$OUT" != "-" ]; then
    {
        echo "## Load benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
        echo
        echo "$REPORT"
    } >"$W/section.md"
    # Newest run first, below the marker line when the file has one (notes stay on top).
    MARK='<!-- runs: newest first -->'
    if [ -f "$OUT" ] && grep -qF "$MARK" "$OUT"; then
        awk -v mark="$MARK" -v sec="$W/section.md" '
            { print } $0 == mark { print ""; while ((getline l < sec) > 0) print l }' "$OUT" >"$W/out.md"
        cp "$W/out.md" "$OUT"
    else
        if [ -f "$OUT" ]; then cat "$OUT" >>"$W/section.md"; fi
        cp "$W/section.md" "$OUT"
    fi
    echo "(written to $OUT)"
fi
echo "total time: $((ENDED - STARTED)) s"
