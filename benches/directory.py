#!/usr/bin/env python3
"""The user directory at scale (issue 24): start time and memory against the number of
users, for a users file and for the database directory; a users-file reload under load;
`nidan users import` into PostgreSQL; a login through a big database directory.

Loopback only, bounded in time, stops everything it started. Needs a built `nidan`
(NIDAN_BIN, default target/release/nidan), python3, and for the database rows PostgreSQL
on 127.0.0.1:5432 with trust auth (`psql`) and `redis-server`.

    benches/directory.py                       # 0, 100k and 1M users, file and database
    SIZES="0 100000" benches/directory.py      # fewer
    ONLY=file benches/directory.py             # file rows only (ONLY=database: the others)

Prints a markdown table; docs/directory.md has the figures it gave. RSS is read a second
after the gateway is ready, before any login (a login's argon2id hash alone takes 19 MiB).
"""

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

NIDAN = os.environ.get("NIDAN_BIN", "target/release/nidan")
SIZES = [int(s) for s in os.environ.get("SIZES", "0 100000 1000000").split()]
ONLY = os.environ.get("ONLY", "")
PASSWORD = "bench-password-1"
RELOAD_SIZE = int(os.environ.get("RELOAD_SIZE", "1000000"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hash_password(pw):
    out = subprocess.run([NIDAN, "hash-password"], input=pw + "\n", capture_output=True,
                         text=True, check=True)
    return out.stdout.strip()


def users_file(path, n, h, first_hash=None):
    with open(path, "w") as f:
        f.write("version: 1\nusers:\n")
        for i in range(n):
            hh = first_hash if (first_hash and i == 0) else h
            f.write(f'  - {{ id: u{i:07d}, password_hash: "{hh}", email: u{i:07d}@example.com, '
                    f'two_step: {{ enabled: true, method: email }} }}\n')


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def get(port, path, timeout=5):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def post_json(port, path, body, cookie=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"content-type": "application/json"}
    if cookie:
        headers["cookie"] = cookie
    c.request("POST", path, json.dumps(body), headers)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, json.loads(data or b"null")


def wait_ready(proc, admin, limit=600):
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if proc.poll() is not None:
            raise RuntimeError("nidan stopped")
        try:
            if get(admin, "/readyz", timeout=1) == 200:
                return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError("not ready in time")


def config(d, port, admin, backend, users, storage):
    text = f"""version: 1
server: {{ listen: ["127.0.0.1:{port}"], admin_listen: "127.0.0.1:{admin}", threads: 2 }}
portal: {{ path_prefix: /_nidan, default_language: en }}
trusted_devices:
  signing_keys: [{{ id: k1, secret_file: device-key }}]
notifiers: {{ outbox: {{ path: outbox.jsonl, console: false }} }}
users: {users}
login_limits: {{ max_failures_per_account: 100, free_failures: 100 }}
storage: {storage}
routes:
  - {{ name: public, path_prefix: /public, upstream: ["127.0.0.1:{backend}"], policy: bypass }}
  - {{ name: app, path_prefix: /, upstream: ["127.0.0.1:{backend}"], policy: login }}
"""
    with open(os.path.join(d, "nidan.yaml"), "w") as f:
        f.write(text)
    with open(os.path.join(d, "device-key"), "w") as f:
        f.write("bench-device-signing-key-0123456789abcdef\n")
    return os.path.join(d, "nidan.yaml")


def serve(cfg, env=None):
    log = open(cfg + ".log", "w")
    return subprocess.Popen([NIDAN, "serve", "--config", cfg], stdout=log, stderr=log,
                            env={**os.environ, **(env or {})})


def stop(p):
    p.terminate()
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def login(port, d, user):
    """ID step, then password + the emailed code; seconds for the whole login."""
    start = time.monotonic()
    s, v = post_json(port, "/_nidan/api/login", {"id": user})
    assert s == 200, v
    code = None
    for _ in range(200):
        try:
            with open(os.path.join(d, "outbox.jsonl")) as f:
                for line in f:
                    m = json.loads(line)
                    if m.get("user") == user and m.get("code"):
                        code = m["code"]
        except FileNotFoundError:
            pass
        if code:
            break
        time.sleep(0.01)
    s, v = post_json(port, f"/_nidan/api/login/{v['flow']}/complete",
                     {"password": PASSWORD, "code": code})
    assert s == 200, v
    return time.monotonic() - start


def file_rows(h, backend, rows):
    for n in SIZES:
        d = tempfile.mkdtemp(prefix="nidan-dir-bench-")
        try:
            users_file(os.path.join(d, "users.yaml"), n, h)
            port, admin = free_port(), free_port()
            cfg = config(d, port, admin, backend, "{ file: users.yaml, reload_interval: 1s }",
                         "{ sqlite: { path: nidan.db } }")
            p = serve(cfg)
            try:
                ready = wait_ready(p, admin)
                time.sleep(1)
                rss = rss_kib(p.pid)
                took = login(port, d, "u0000000") if n else None
                rows.append(("file", n, ready, rss, took))
                print(f"file {n}: ready {ready:.2f}s rss {rss / 1024:.0f} MiB", file=sys.stderr)
                if n == RELOAD_SIZE:
                    rows.append(("reload", n) + reload_under_load(d, port, h))
            finally:
                stop(p)
        finally:
            shutil.rmtree(d, ignore_errors=True)


def reload_under_load(d, port, h):
    """Rewrites the users file (one password changed) and sends requests to a bypass route
    until the reload is logged; returns (reload seconds, p99 ms, max ms, requests)."""
    other = hash_password("changed-" + PASSWORD)
    n = RELOAD_SIZE
    users_file(os.path.join(d, "users.yaml.new"), n, h, first_hash=other)
    log = os.path.join(d, "nidan.yaml.log")
    before = open(log).read().count("users file reloaded")
    os.replace(os.path.join(d, "users.yaml.new"), os.path.join(d, "users.yaml"))
    start = time.monotonic()
    lat = []
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    done = None
    while time.monotonic() - start < 120:
        t = time.monotonic()
        c.request("GET", "/public/x")
        c.getresponse().read()
        lat.append((time.monotonic() - t) * 1000)
        if done is None and open(log).read().count("users file reloaded") > before:
            done = time.monotonic() - start
            end = time.monotonic() + 1
        if done is not None and time.monotonic() > end:
            break
    c.close()
    lat.sort()
    p99 = lat[int(len(lat) * 0.99) - 1]
    return (done or -1.0, p99, lat[-1], len(lat))


def database_rows(h, backend, rows):
    redis_port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--save", "",
                              "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        for n in SIZES:
            db = f"nidan_dir_bench_{os.getpid()}_{n}"
            subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-c",
                            f"CREATE DATABASE {db}"], check=True, capture_output=True)
            d = tempfile.mkdtemp(prefix="nidan-dir-bench-")
            env = {"NIDAN_DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{db}",
                   "NIDAN_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0"}
            try:
                port, admin = free_port(), free_port()
                cfg = config(d, port, admin, backend, "{ database: {} }",
                             "{ postgres: { url_env: NIDAN_DATABASE_URL, timeout: 10s }, "
                             "redis: { url_env: NIDAN_REDIS_URL, key_prefix: bench } }")
                imported = None
                if n:
                    users_file(os.path.join(d, "users.yaml"), n, h)
                    t = time.monotonic()
                    out = subprocess.run([NIDAN, "users", "import", "--config", cfg,
                                          os.path.join(d, "users.yaml")],
                                         env={**os.environ, **env}, capture_output=True,
                                         text=True)
                    imported = time.monotonic() - t
                    print(out.stdout.strip(), out.stderr.strip()[-400:], file=sys.stderr)
                    rows.append(("import", n, imported, 0, None))
                p = serve(cfg, env)
                try:
                    ready = wait_ready(p, admin)
                    time.sleep(1)
                    rss = rss_kib(p.pid)
                    took = login(port, d, "u0000000") if n else None
                    rows.append(("database", n, ready, rss, took))
                    print(f"database {n}: ready {ready:.2f}s rss {rss / 1024:.0f} MiB",
                          file=sys.stderr)
                finally:
                    stop(p)
            finally:
                shutil.rmtree(d, ignore_errors=True)
                subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-c",
                                f"DROP DATABASE IF EXISTS {db}"], capture_output=True)
    finally:
        redis.terminate()
        redis.wait()


def main():
    h = hash_password(PASSWORD)
    backend_port = free_port()
    backend = subprocess.Popen([NIDAN, "echo-backend", "--listen", f"127.0.0.1:{backend_port}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = []
    try:
        if ONLY in ("", "file"):
            file_rows(h, backend_port, rows)
        if ONLY in ("", "database"):
            database_rows(h, backend_port, rows)
    finally:
        backend.terminate()
        backend.wait()
    print("| directory | users | ready (s) | RSS (MiB) | login: ID step + password + code (s) |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        if r[0] == "reload":
            _, n, took, p99, mx, count = r
            print(f"| file reload | {n:,} | {took:.1f} (reload) | | p99 {p99:.1f} ms, max {mx:.1f} ms over {count} requests |")
        elif r[0] == "import":
            print(f"| `nidan users import` (PostgreSQL) | {r[1]:,} | {r[2]:.1f} (import) | | |")
        else:
            kind, n, ready, rss, took = r
            login_s = f"{took:.2f}" if took is not None else ""
            print(f"| {kind} | {n:,} | {ready:.2f} | {rss / 1024:.0f} | {login_s} |")


if __name__ == "__main__":
    main()
