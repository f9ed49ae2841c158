//! What the soak does: the simulated users (each its own task, client address and cookie
//! jars), the prober of revoked sessions, and the fault schedule (a thread of its own,
//! since it kills and starts processes and waits on them).

use super::*;

use crate::common::PASSWORD;
use crate::common::cluster::Browser;
use serde_json::{Value, json};

/// Starts one task per account: the first `STEADY` browse all along, the others churn.
pub(super) fn start(w: &Arc<World>, accounts: &[String]) -> Vec<tokio::task::JoinHandle<()>> {
    accounts
        .iter()
        .enumerate()
        .map(|(k, account)| {
            // Each user from an address of its own, as users are: the per-address limits
            // of the ID step and the code sends are not what is tested.
            let ip = format!("127.0.1.{}", 10 + k).parse().unwrap();
            let u = User {
                k,
                account: account.clone(),
                http: http_from(ip, CLIENT_TIMEOUT),
                n: k,
                next_method: "sms",
            };
            let w = w.clone();
            if k < STEADY {
                tokio::spawn(steady(w, u))
            } else {
                tokio::spawn(churn(w, u))
            }
        })
        .collect()
}

struct User {
    k: usize,
    account: String,
    http: reqwest::Client,
    /// Requests so far: the next one goes to replica `n % 3` (round robin, no stickiness).
    n: usize,
    /// What the next 2-step setting change asks for.
    next_method: &'static str,
}

impl User {
    fn next(&mut self) -> usize {
        self.n += 1;
        self.n
    }
}

/// One browser of a user (a laptop, a phone): its cookies and the session it holds.
#[derive(Default)]
struct Tab {
    b: Browser,
    sess: Option<usize>,
}

impl Tab {
    /// Signed out (the device cookie stays, as a browser keeps it).
    fn forget(&mut self) {
        self.b.session = None;
        self.sess = None;
    }
}

struct Answer {
    status: u16,
    sent: Micros,
    answered: Micros,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Sends one request to replica `i` and records it; `keep`: the browser takes the cookies
/// the answer sets.
async fn send(
    w: &World,
    i: usize,
    what: &'static str,
    rb: reqwest::RequestBuilder,
    keep: Option<&mut Browser>,
) -> Answer {
    let sent = w.now();
    let r = rb.send().await;
    let answered = w.now();
    let (status, retry_after, body) = match r {
        Ok(resp) => {
            if let Some(b) = keep {
                b.keep(&resp);
            }
            let status = resp.status().as_u16();
            let retry_after = resp.headers().contains_key("retry-after");
            let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
            (status, retry_after, body)
        }
        Err(_) => (0, false, Vec::new()),
    };
    w.rec.lock().unwrap().reqs.push(Req {
        sent,
        answered,
        replica: i,
        what,
        status,
        retry_after,
    });
    Answer {
        status,
        sent,
        answered,
        body,
    }
}

/// A whole login: the ID step on one replica, the password (and the code from the outbox,
/// trusting the device when `trust`) on the next. Whether it gave a session.
async fn login(w: &World, u: &mut User, tab: &mut Tab, trust: bool) -> bool {
    tab.forget();
    let before = w.codes.count(&u.account);
    let i = w.pick(u.next());
    let rb = u
        .http
        .post(w.url(i, "/_nidan/api/login"))
        .header("cookie", tab.b.cookies())
        .json(&json!({"id": u.account}));
    let a = send(w, i, "login: ID step", rb, Some(&mut tab.b)).await;
    let v = a.json();
    let Some(flow) = v["flow"].as_str().filter(|_| a.status == 200) else {
        return false;
    };
    let mut body = json!({"password": PASSWORD});
    match v["step"].as_str() {
        Some("password") => {}
        Some("password_and_code") => {
            let limit = Duration::from_secs(10);
            let Some(code) = w.codes.after(&u.account, before, limit).await else {
                return false;
            };
            body["code"] = json!(code);
            if trust {
                body["trust_device"] = json!(true);
                body["device_name"] = json!("laptop");
            }
        }
        _ => return false,
    }
    let i = w.pick(u.next());
    let rb = u
        .http
        .post(w.url(i, &format!("/_nidan/api/login/{flow}/complete")))
        .header("cookie", tab.b.cookies())
        .json(&body);
    let a = send(w, i, "login: password", rb, Some(&mut tab.b)).await;
    let Some(cookie) = tab.b.session.clone().filter(|_| a.status == 200) else {
        return false;
    };
    tab.sess = Some(w.session(&u.account, cookie, a.sent, a.answered));
    true
}

impl World {
    fn session(&self, account: &str, cookie: String, login_sent: Micros, made: Micros) -> usize {
        let mut rec = self.rec.lock().unwrap();
        rec.sessions.push(Session {
            account: account.to_owned(),
            cookie,
            login_sent,
            made,
        });
        rec.sessions.len() - 1
    }
}

/// One page through the gateway (the echo backend behind it), or `/api/me`. False when
/// the session was refused (the browser is then signed out).
async fn browse(w: &World, u: &mut User, tab: &mut Tab, api: bool) -> bool {
    let i = w.pick(u.next());
    let (what, path) = if api {
        ("me", "/_nidan/api/me".to_owned())
    } else {
        ("browse", format!("/app/{}/{}", u.account, u.n))
    };
    let rb = u
        .http
        .get(w.url(i, &path))
        .header("cookie", tab.b.cookies())
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8");
    let a = send(w, i, what, rb, None).await;
    if matches!(a.status, 302 | 401) {
        refused(w, tab, i, what, &a);
        return false;
    }
    true
}

/// The gateway refused the tab's session: recorded, and the tab is signed out.
fn refused(w: &World, tab: &mut Tab, replica: usize, what: &'static str, a: &Answer) {
    if let Some(sess) = tab.sess {
        w.rec.lock().unwrap().refusals.push(Refusal {
            sess,
            replica,
            what,
            status: a.status,
            sent: a.sent,
            answered: a.answered,
        });
    }
    tab.forget();
}

/// Signs in once and browses until the end; signs in again only when signed out.
async fn steady(w: Arc<World>, mut u: User) {
    let mut tab = Tab::default();
    while !w.stopped() {
        if tab.sess.is_none() && !login(&w, &mut u, &mut tab, false).await {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let api = u.n.is_multiple_of(8);
        if !browse(&w, &mut u, &mut tab, api).await {
            tokio::time::sleep(RELOGIN_PAUSE).await;
            continue;
        }
        tokio::time::sleep(THINK).await;
    }
}

/// Signs in on a laptop (trusting it) and, for the actions that end other sessions, on a
/// phone; browses; then one of: sign out, end the other sessions, the same forgetting
/// devices and app passwords, change the 2-step setting. And again.
async fn churn(w: Arc<World>, mut u: User) {
    let (mut laptop, mut phone) = (Tab::default(), Tab::default());
    let mut cycle = u.k;
    while !w.stopped() {
        if laptop.sess.is_none() && !login(&w, &mut u, &mut laptop, true).await {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let action = cycle % 4;
        if action != 0 && phone.sess.is_none() {
            login(&w, &mut u, &mut phone, false).await;
        }
        if !browse_a_while(&w, &mut u, &mut laptop, &mut phone).await {
            tokio::time::sleep(RELOGIN_PAUSE).await;
            continue;
        }
        if w.stopped() {
            break;
        }
        match action {
            0 => logout(&w, &mut u, &mut laptop).await,
            1 => end_others(&w, &mut u, &mut laptop, &mut phone, false).await,
            2 => change_setting(&w, &mut u, &mut laptop, &mut phone).await,
            _ => end_others(&w, &mut u, &mut laptop, &mut phone, true).await,
        }
        cycle += 1;
        tokio::time::sleep(THINK).await;
    }
}

/// `BROWSE` requests, one in four from the phone when it is signed in. False when the
/// laptop was signed out meanwhile.
async fn browse_a_while(w: &World, u: &mut User, laptop: &mut Tab, phone: &mut Tab) -> bool {
    for k in 0..BROWSE {
        if w.stopped() {
            return true;
        }
        let on_phone = k % 4 == 3 && phone.sess.is_some();
        let tab = if on_phone { &mut *phone } else { &mut *laptop };
        if !browse(w, u, tab, k % 8 == 7).await && !on_phone {
            return false;
        }
        tokio::time::sleep(THINK).await;
    }
    true
}

async fn logout(w: &Arc<World>, u: &mut User, tab: &mut Tab) {
    let i = w.pick(u.next());
    let rb = u
        .http
        .post(w.url(i, "/_nidan/api/logout"))
        .header("cookie", tab.b.cookies())
        .json(&json!({}));
    let a = send(w, i, "logout", rb, None).await;
    let r = Revocation {
        kind: Kind::Logout,
        account: u.account.clone(),
        sent: a.sent,
        acked: a.status == 200,
        ack: a.answered,
        acting: None,
        must: tab.sess.into_iter().collect(),
    };
    w.revoked(r, a.answered);
    // Not logged out yet (503) may still have ended it: the browser starts over either way.
    tab.forget();
}

/// "Sign out everywhere else" from the laptop (`forget`: trusted devices and app passwords
/// too).
async fn end_others(w: &Arc<World>, u: &mut User, laptop: &mut Tab, phone: &mut Tab, forget: bool) {
    let i = w.pick(u.next());
    let path = if forget {
        "/_nidan/api/sessions?forget=devices_and_app_passwords"
    } else {
        "/_nidan/api/sessions"
    };
    let rb = u
        .http
        .delete(w.url(i, path))
        .header("cookie", laptop.b.cookies())
        .header("origin", w.url(i, ""));
    let a = send(w, i, "end others", rb, None).await;
    match a.status {
        401 => refused(w, laptop, i, "end others", &a),
        400..=499 => {}
        status => {
            let must = w
                .rec
                .lock()
                .unwrap()
                .live_before(&u.account, a.sent, laptop.sess);
            let r = Revocation {
                kind: Kind::EndOthers,
                account: u.account.clone(),
                sent: a.sent,
                acked: status == 200,
                ack: a.answered,
                acting: laptop.sess,
                must,
            };
            w.revoked(r, a.answered);
            phone.forget();
        }
    }
}

/// Switches the 2-step method between email and SMS from the laptop: every session of the
/// account ends, the laptop's goes on under a new ID.
async fn change_setting(w: &Arc<World>, u: &mut User, laptop: &mut Tab, phone: &mut Tab) {
    let method = u.next_method;
    u.next_method = if method == "email" { "sms" } else { "email" };
    let i = w.pick(u.next());
    let old = (laptop.sess, laptop.b.session.clone());
    let rb = u
        .http
        .put(w.url(i, "/_nidan/api/settings"))
        .header("cookie", laptop.b.cookies())
        .header("origin", w.url(i, ""))
        .json(&json!({"enabled": true, "method": method}));
    let a = send(w, i, "setting", rb, Some(&mut laptop.b)).await;
    let replaced = laptop.b.session.is_some() && laptop.b.session != old.1;
    match a.status {
        401 => refused(w, laptop, i, "setting", &a),
        // 200 without a new cookie: the setting was that already, nothing changed.
        200 if !replaced => {}
        400..=499 => {}
        status => {
            let must = w.rec.lock().unwrap().live_before(&u.account, a.sent, None);
            let r = Revocation {
                kind: Kind::Setting,
                account: u.account.clone(),
                sent: a.sent,
                acked: status == 200,
                ack: a.answered,
                acting: old.0,
                must,
            };
            w.revoked(r, a.answered);
            phone.forget();
            match laptop.b.session.clone().filter(|_| status == 200) {
                Some(cookie) => {
                    let s = w.session(&u.account, cookie, a.answered, a.answered);
                    laptop.sess = Some(s);
                }
                None => laptop.forget(),
            }
        }
    }
}

/// Looks at each revoked session on every replica in the balancer every `PROBE_EVERY`
/// from `from` to `until`, each look a request of its own (a slow answer does not delay
/// the next look).
pub(super) fn probe(
    w: &Arc<World>,
    rev: usize,
    targets: Vec<(usize, String)>,
    from: Micros,
    until: Micros,
) {
    let w = w.clone();
    w.probing.fetch_add(1, Ordering::SeqCst);
    w.rt.clone().spawn(async move {
        let mut at = from;
        while at <= until {
            let now = w.now();
            if at > now {
                tokio::time::sleep(Duration::from_micros(at - now)).await;
            }
            for i in (0..w.addrs.len()).filter(|&i| w.up[i].load(Ordering::SeqCst)) {
                for (sess, cookie) in &targets {
                    let (w, sess, cookie) = (w.clone(), *sess, cookie.clone());
                    w.probing.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(async move {
                        look(&w, i, rev, sess, &cookie, false).await;
                        w.probing.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            }
            at += micros(PROBE_EVERY);
        }
        w.probing.fetch_sub(1, Ordering::SeqCst);
    });
}

/// One look at a revoked session on replica `i`: accepted if `/api/me` answers 200.
async fn look(w: &World, i: usize, rev: usize, sess: usize, cookie: &str, last: bool) {
    let rb = w
        .prober
        .get(w.url(i, "/_nidan/api/me"))
        .header("cookie", format!("nidan_session={cookie}"));
    let a = send(w, i, "probe", rb, None).await;
    w.rec.lock().unwrap().probes.push(Probe {
        rev,
        sess,
        replica: i,
        sent: a.sent,
        accepted: a.status == 200,
        last,
    });
}

/// After the traffic: one more look at every session an acknowledged revocation ended, on
/// every replica. None may have come back (a cache flushed, a replica restarted, a change
/// applied again).
pub(super) async fn final_look(w: &Arc<World>) {
    let targets: Vec<(usize, usize, String)> = {
        let rec = w.rec.lock().unwrap();
        let mut seen = std::collections::HashSet::new();
        let mut t = Vec::new();
        for (id, r) in rec.revs.iter().enumerate().filter(|(_, r)| r.acked) {
            for &s in r.must.iter().filter(|&&s| seen.insert(s)) {
                t.push((id, s, rec.sessions[s].cookie.clone()));
            }
        }
        t
    };
    let gate = Arc::new(tokio::sync::Semaphore::new(16));
    let mut looks = tokio::task::JoinSet::new();
    for (rev, sess, cookie) in targets {
        for i in 0..w.addrs.len() {
            let (w, gate, cookie) = (w.clone(), gate.clone(), cookie.clone());
            looks.spawn(async move {
                let _permit = gate.acquire().await.unwrap();
                look(&w, i, rev, sess, &cookie, true).await;
            });
        }
    }
    while looks.join_next().await.is_some() {}
}

/// The fault schedule, with a password change in the users file in the warm-up, during
/// the PostgreSQL and the Redis cut, while the chores holder is dead, and just before Redis
/// is restarted. `steady`: the accounts whose passwords change, each once, in order.
///
/// PostgreSQL's faults come before Redis's (the brief lists Redis's first) so that the
/// change made during the Redis cut is the last one before the kill: no replica holds the
/// chores while Redis is cut, each keeps the change pending, the one that takes the lease
/// back applies it, and what the others still keep is what a takeover after the kill
/// would apply a second time (issue 22, items 1 and 2). A change after it would clear it.
pub(super) fn faults(w: &Arc<World>, f: &mut Faulty, steady: &[String]) {
    let mut changes = steady.iter().zip(steady.iter().skip(1));
    let mut change = |f: &Faulty| {
        let (account, other) = changes.next().expect("enough steady users");
        file_change(w, f, account, other);
    };
    let t = phase(w, "warm-up");
    std::thread::sleep(WARMUP / 2);
    change(f);
    hold(t, WARMUP);

    let t = phase(w, "postgres cut");
    f.pg.cut();
    std::thread::sleep(Duration::from_secs(2));
    change(f);
    hold(t, FAULT);
    f.pg.restore();
    hold(phase(w, "calm"), CALM);

    let t = phase(w, "postgres blackhole");
    f.pg.blackhole();
    hold(t, FAULT);
    f.pg.restore();
    hold(phase(w, "calm"), CALM);

    let t = phase(w, "redis cut");
    f.redis.cut();
    std::thread::sleep(Duration::from_secs(2));
    change(f);
    hold(t, FAULT);
    f.redis.restore();
    hold(phase(w, "calm"), CALM);

    let t = phase(w, "redis blackhole");
    f.redis.blackhole();
    hold(t, FAULT);
    f.redis.restore();
    hold(phase(w, "calm"), CALM);

    kill_the_holder(w, f, &mut change);
    hold(phase(w, "calm"), CALM);

    let t = phase(w, "redis restarted empty");
    change(f);
    f.c.redis.stop();
    std::thread::sleep(REDIS_DOWN);
    f.c.redis.restart();
    hold(t, FAULT);
    hold(phase(w, "settle"), SETTLE);
}

/// `kill -9` of the chores holder; a password change while it is dead; started again.
fn kill_the_holder(w: &Arc<World>, f: &mut Faulty, change: &mut impl FnMut(&Faulty)) {
    let holder = f.c.wait_chores_holder(Duration::from_secs(20));
    let t = phase(w, "holder killed");
    // The logs name the holder; should a version stop saying so, a replica dies anyway.
    let h = holder.unwrap_or(0);
    match holder {
        Some(h) => eprintln!("soak: the chores holder was replica {h}"),
        None => eprintln!("soak: no log names a single chores holder: killing replica 0"),
    }
    w.up[h].store(false, Ordering::SeqCst);
    f.c.kill9(h);
    std::thread::sleep(Duration::from_secs(1));
    change(f);
    hold(t, FAULT);
    f.c.restart(h);
    w.up[h].store(true, Ordering::SeqCst);
}

fn phase(w: &World, name: &str) -> Instant {
    w.phase(name);
    Instant::now()
}

/// Sleeps until `d` after `t` (at once if that is past).
fn hold(t: Instant, d: Duration) {
    std::thread::sleep((t + d).saturating_duration_since(Instant::now()));
}

/// Gives `account` the password hash of `other` in the shared users file; the old
/// password's sessions (made before the write) must end. The ack is the write plus one
/// reload interval: every replica has read the file by then.
fn file_change(w: &Arc<World>, f: &Faulty, account: &str, other: &str) {
    f.c.change_password(account, other);
    let written = w.now();
    let must = w.rec.lock().unwrap().live_before(account, written, None);
    eprintln!(
        "soak: {:>6.1} s  password of {account} changed in the users file ({} session(s))",
        written as f64 / 1e6,
        must.len()
    );
    let r = Revocation {
        kind: Kind::File,
        account: account.to_owned(),
        sent: written,
        acked: true,
        ack: written + micros(RELOAD),
        acting: None,
        must,
    };
    let rev = w.revoked(r, written);
    w.rec.lock().unwrap().files.push(FileChange {
        account: account.to_owned(),
        written,
        rev,
    });
}
