//! The soak (issue 22, item 6): three `nidan serve` replicas reaching PostgreSQL and Redis
//! through forwarders the test controls, a round-robin client side (each request picks its
//! replica, no stickiness) with simulated users signing in, browsing, trusting devices,
//! signing out, ending sessions from the list and changing their 2-step setting, while the
//! test changes passwords in the users file — and, one after the other, the faults an
//! operator's bad day brings: PostgreSQL cut then blackholed, Redis cut then blackholed, the
//! chores holder killed (`kill -9`) with a password change made while it is dead, Redis
//! restarted empty. Every request and every revocation is recorded; five checks are stated
//! over the record (what the gateway answered, never how fast the test ran), and a table of
//! figures is printed. `cargo test --test it soak:: -- --nocapture` shows it; the rules and
//! the figures are in docs/replicas.md, "The soak test".
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

mod check;
mod traffic;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::cluster::{Codes, Faulty, http_from};

// The run's shape: about 90 s of traffic; the whole test takes about 95 s on the shared
// 2-core machine. Lengthen the phases here for a longer soak.
/// Traffic before the first fault (a password change is made in it).
const WARMUP: Duration = Duration::from_secs(6);
/// How long each fault lasts.
const FAULT: Duration = Duration::from_secs(8);
/// Calm between two faults.
const CALM: Duration = Duration::from_secs(5);
/// How long Redis stays stopped before it starts again, empty.
const REDIS_DOWN: Duration = Duration::from_secs(2);
/// Traffic after the last fault, before the checks.
const SETTLE: Duration = Duration::from_secs(8);

// The traffic.
/// Users who sign in once and browse all along: no session of theirs may be lost.
const STEADY: usize = 10;
/// Users who sign in, browse, then sign out, end their other session or change their 2-step
/// setting, and again.
const CHURN: usize = 12;
/// A simulated user's pause between two requests.
const THINK: Duration = Duration::from_millis(200);
/// Requests a churning user makes between signing in and its revocation.
const BROWSE: usize = 40;
/// A person reads the login page before signing in again after being signed out.
const RELOGIN_PAUSE: Duration = Duration::from_millis(2500);
/// Generous: a loaded machine must not fail the run (a slow answer is still an answer).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

// The rules.
/// No replica may accept a revoked credential longer than this after the revocation's ack.
const BOUND: Duration = Duration::from_secs(1);
/// Revoked sessions are probed on every replica this often…
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// …for this long after the ack.
const PROBE_FOR: Duration = Duration::from_secs(3);
/// `users.reload_interval` of the replicas (common/cluster.rs): a users-file change counts
/// as acknowledged one interval after the file was written (every replica has re-read it
/// by then), and the same bound applies from there.
const RELOAD: Duration = Duration::from_secs(1);
/// `storage.outage_grace`: longer than any fault, so cached sessions serve through them.
const GRACE: &str = "30s";

/// Microseconds since the run started.
type Micros = u64;

fn micros(d: Duration) -> Micros {
    u64::try_from(d.as_micros()).unwrap()
}

/// What revoked a credential.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// `POST /api/logout`: that session.
    Logout,
    /// `DELETE /api/sessions` ("sign out everywhere else"): the account's other sessions.
    EndOthers,
    /// `PUT /api/settings`: every session of the account (the browser that asked gets a new
    /// one).
    Setting,
    /// A password change in the users file: every session of the account made before it.
    File,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Logout => "logout",
            Kind::EndOthers => "end others",
            Kind::Setting => "setting",
            Kind::File => "password file",
        }
    }
}

/// One HTTP request as the client saw it.
struct Req {
    sent: Micros,
    answered: Micros,
    replica: usize,
    what: &'static str,
    /// 0: no answer (connection refused or reset, or the client's timeout).
    status: u16,
    retry_after: bool,
}

/// A session cookie some browser was given.
struct Session {
    account: String,
    cookie: String,
    /// When the request that made it was sent / answered.
    login_sent: Micros,
    made: Micros,
}

/// A revocation some request or the test asked for.
struct Revocation {
    kind: Kind,
    account: String,
    sent: Micros,
    /// Answered with success: probed, and held to the bound. Otherwise (503, another 5xx,
    /// no answer) it may or may not have happened: it only excuses what it could have ended.
    acked: bool,
    /// The ack (for a file change: written + `RELOAD`), or when the unacknowledged request
    /// ended.
    ack: Micros,
    /// The session that asked (it stays, or is replaced).
    acting: Option<usize>,
    /// The sessions it must end (made before it was sent, not revoked already).
    must: Vec<usize>,
}

/// One look at a revoked session on one replica.
struct Probe {
    rev: usize,
    sess: usize,
    replica: usize,
    sent: Micros,
    accepted: bool,
    /// The look after the traffic stopped (not one of the probing window's).
    last: bool,
}

/// A session refused to its browser (a redirect to the login, or 401).
struct Refusal {
    sess: usize,
    replica: usize,
    what: &'static str,
    status: u16,
    sent: Micros,
    answered: Micros,
}

/// A password change in the users file.
struct FileChange {
    account: String,
    written: Micros,
    rev: usize,
}

#[derive(Default)]
struct Record {
    reqs: Vec<Req>,
    sessions: Vec<Session>,
    revs: Vec<Revocation>,
    probes: Vec<Probe>,
    refusals: Vec<Refusal>,
    files: Vec<FileChange>,
    /// Phase names and when each started.
    phases: Vec<(Micros, String)>,
}

impl Record {
    fn phase_at(&self, t: Micros) -> usize {
        self.phases
            .iter()
            .rposition(|(start, _)| *start <= t)
            .unwrap_or(0)
    }

    /// The account's sessions made before `t` that no acknowledged revocation ended yet,
    /// but `except`.
    fn live_before(&self, account: &str, t: Micros, except: Option<usize>) -> Vec<usize> {
        let ended: std::collections::HashSet<usize> = self
            .revs
            .iter()
            .filter(|r| r.acked)
            .flat_map(|r| r.must.iter().copied())
            .collect();
        (0..self.sessions.len())
            .filter(|&s| Some(s) != except && !ended.contains(&s))
            .filter(|&s| self.sessions[s].account == account && self.sessions[s].made < t)
            .collect()
    }
}

/// What the traffic, the prober and the fault schedule share.
struct World {
    t0: Instant,
    rec: Mutex<Record>,
    addrs: Vec<SocketAddr>,
    /// Replicas the round-robin balancer sends to (a killed one is taken out, as a
    /// balancer's health check would).
    up: Vec<AtomicBool>,
    codes: Codes,
    stop: AtomicBool,
    /// Probes not answered yet.
    probing: AtomicUsize,
    prober: reqwest::Client,
    rt: tokio::runtime::Handle,
}

impl World {
    fn now(&self) -> Micros {
        micros(self.t0.elapsed())
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn url(&self, i: usize, path: &str) -> String {
        format!("http://{}{path}", self.addrs[i])
    }

    /// Round robin over the replicas in the balancer.
    fn pick(&self, n: usize) -> usize {
        let k = self.addrs.len();
        (0..k)
            .map(|d| (n + d) % k)
            .find(|&i| self.up[i].load(Ordering::SeqCst))
            .unwrap_or(n % k)
    }

    fn phase(&self, name: &str) {
        let t = self.now();
        eprintln!("soak: {:>6.1} s  {name}", t as f64 / 1e6);
        self.rec.lock().unwrap().phases.push((t, name.to_owned()));
    }

    /// Records a revocation; when acknowledged, probes what it must end on every replica
    /// from `from` until `PROBE_FOR` after its ack.
    fn revoked(self: &Arc<Self>, r: Revocation, from: Micros) -> usize {
        let (acked, until) = (r.acked, r.ack + micros(PROBE_FOR));
        let (id, targets) = {
            let mut rec = self.rec.lock().unwrap();
            let targets: Vec<(usize, String)> = r
                .must
                .iter()
                .map(|&s| (s, rec.sessions[s].cookie.clone()))
                .collect();
            rec.revs.push(r);
            (rec.revs.len() - 1, targets)
        };
        if acked && !targets.is_empty() {
            traffic::probe(self, id, targets, from, until);
        }
        id
    }
}

/// The soak users: `STEADY` then `CHURN` accounts, each with its own password hash (taken
/// in turn from the test users', all of `PASSWORD`) and email 2-step, as users-file YAML.
fn soak_users() -> (Vec<String>, String) {
    let text =
        std::fs::read_to_string(crate::common::repo().join("config/test/users.yaml")).unwrap();
    let hashes: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("password_hash:"))
        .collect();
    let accounts: Vec<String> = (0..STEADY)
        .map(|k| format!("soak-s{k:02}"))
        .chain((0..CHURN).map(|k| format!("soak-c{k:02}")))
        .collect();
    let mut yaml = String::new();
    for (k, id) in accounts.iter().enumerate() {
        yaml.push_str(&format!(
            "  - id: {id}\n{hash}\n    name: Soak {id}\n    email: {id}@example.com\n    \
             phone: \"+81 90-2000-{k:04}\"\n    phone_status: active\n    groups: [staff]\n    \
             two_step: {{ enabled: true, method: email }}\n",
            hash = hashes[k % hashes.len()],
        ));
    }
    (accounts, yaml)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_hold_their_promises_through_store_faults() {
    let (accounts, users) = soak_users();
    let f = Faulty::start(3, GRACE, "", &users);
    let world = Arc::new(World {
        t0: Instant::now(),
        rec: Mutex::new(Record::default()),
        addrs: f.c.nodes.iter().map(|n| n.addr).collect(),
        up: (0..3).map(|_| AtomicBool::new(true)).collect(),
        codes: f.c.codes(),
        stop: AtomicBool::new(false),
        probing: AtomicUsize::new(0),
        prober: http_from("127.0.0.2".parse().unwrap(), CLIENT_TIMEOUT),
        rt: tokio::runtime::Handle::current(),
    });
    let users = traffic::start(&world, &accounts);
    let w = world.clone();
    let steady: Vec<String> = accounts[..STEADY].to_vec();
    let f = tokio::task::spawn_blocking(move || {
        let mut f = f;
        traffic::faults(&w, &mut f, &steady);
        f
    })
    .await
    .unwrap();
    world.stop.store(true, Ordering::SeqCst);
    for u in users {
        u.await.unwrap();
    }
    let deadline = Instant::now() + PROBE_FOR + CLIENT_TIMEOUT;
    while world.probing.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    world.phase("final look");
    traffic::final_look(&world).await;
    let failures = check::all(&world, &f).await;
    assert!(
        failures.is_empty(),
        "the soak found {} broken promise(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
