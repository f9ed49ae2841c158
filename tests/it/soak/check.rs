//! The soak's checks over its record, and the figures it prints. Each check is stated on
//! what the gateway answered and when the test sent what it sent — never on how fast the
//! test itself ran — and names the events that break it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::*;

/// Runs every check after the traffic stopped; prints the figures; the failures.
pub(super) async fn all(w: &World, f: &Faulty) -> Vec<String> {
    let changed: Vec<String> = w
        .rec
        .lock()
        .unwrap()
        .files
        .iter()
        .map(|c| c.account.clone())
        .collect();
    let audit = audited_revocations(f, &changed).await;
    let rec = std::mem::take(&mut *w.rec.lock().unwrap());
    println!("{}", figures(&rec));
    println!("{}", file_changes(&rec, &audit));
    let logs: Vec<String> = (0..f.c.nodes.len()).map(|i| f.c.log(i)).collect();
    [
        exercised(&rec),
        revoked_but_accepted(&rec),
        server_errors(&rec),
        lost_sessions(&rec),
        applied_once(&rec, &audit),
        panics(&logs),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn secs(t: Micros) -> String {
    format!("{:.3} s", t as f64 / 1e6)
}

fn ms(t: Micros) -> String {
    format!("{:.1}", t as f64 / 1e3)
}

/// At most `n` lines of `lines`, and how many were left out.
fn some(lines: &[String], n: usize) -> String {
    let mut out = lines
        .iter()
        .take(n)
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n");
    if lines.len() > n {
        let _ = write!(out, "\n  … and {} more", lines.len() - n);
    }
    out
}

/// A run that did not do what it is meant to (no logins, no revocations of a kind) proves
/// nothing: that is a failure of its own.
fn exercised(rec: &Record) -> Option<String> {
    let mut missing = Vec::new();
    if rec.sessions.len() < 20 {
        missing.push(format!("only {} logins", rec.sessions.len()));
    }
    for kind in [Kind::Logout, Kind::EndOthers, Kind::Setting, Kind::File] {
        let n = rec
            .revs
            .iter()
            .filter(|r| r.kind == kind && r.acked && !r.must.is_empty())
            .count();
        if n == 0 {
            missing.push(format!("no acknowledged {} revocation", kind.name()));
        }
    }
    if rec.probes.is_empty() {
        missing.push("no probe".to_owned());
    }
    let browsed = rec
        .reqs
        .iter()
        .filter(|r| r.what == "browse" && r.status == 200)
        .count();
    if browsed < 500 {
        missing.push(format!("only {browsed} pages browsed"));
    }
    (!missing.is_empty()).then(|| {
        format!(
            "0. the soak did not exercise the gateway enough to judge it:\n{}",
            some(&missing, 20)
        )
    })
}

/// How long after its ack a revocation's sessions were still accepted somewhere: the send
/// time of the last look any replica answered 200, minus the ack (0 when none did).
fn late(rec: &Record, rev: usize) -> Micros {
    let ack = rec.revs[rev].ack;
    rec.probes
        .iter()
        .filter(|p| p.rev == rev && p.accepted && !p.last)
        .map(|p| p.sent.saturating_sub(ack))
        .max()
        .unwrap_or(0)
}

/// Check 1: no revoked credential accepted by any replica more than `BOUND` after its ack.
fn revoked_but_accepted(rec: &Record) -> Option<String> {
    let bound = micros(BOUND);
    let mut lines = Vec::new();
    for (id, r) in rec.revs.iter().enumerate() {
        let bad: Vec<&Probe> = rec
            .probes
            .iter()
            .filter(|p| p.rev == id && p.accepted && p.sent > r.ack + bound)
            .collect();
        if bad.is_empty() {
            continue;
        }
        let replicas: std::collections::BTreeSet<usize> = bad.iter().map(|p| p.replica).collect();
        let sessions: std::collections::BTreeSet<usize> = bad.iter().map(|p| p.sess).collect();
        let late = late(rec, id);
        let how = if let Some(p) = bad.iter().find(|p| p.last) {
            format!(
                "accepted at the final look after the traffic, {} after the ack",
                secs(p.sent - r.ack)
            )
        } else if late + micros(PROBE_EVERY) * 2 > micros(PROBE_FOR) {
            format!("still accepted when the probing stopped, {PROBE_FOR:?} after the ack")
        } else {
            format!("still accepted {} ms after the ack", ms(late))
        };
        lines.push(format!(
            "{} of {} acked at {} ({}): {how}, by replica(s) {replicas:?} ({} looks, \
             sessions {sessions:?})",
            r.kind.name(),
            r.account,
            secs(r.ack),
            rec.phases[rec.phase_at(r.ack)].1,
            bad.len(),
        ));
    }
    let acked = rec
        .revs
        .iter()
        .filter(|r| r.acked && !r.must.is_empty())
        .count();
    (!lines.is_empty()).then(|| {
        format!(
            "1. {} of {acked} acknowledged revocations were accepted by a replica more than \
             {BOUND:?} after their ack:\n{}",
            lines.len(),
            some(&lines, 25)
        )
    })
}

/// Check 2: no 5xx other than 503, and every 503 with `Retry-After`.
fn server_errors(rec: &Record) -> Option<String> {
    let bad: Vec<&Req> = rec
        .reqs
        .iter()
        .filter(|r| r.status >= 500 && (r.status != 503 || !r.retry_after))
        .collect();
    if bad.is_empty() {
        return None;
    }
    let mut kinds: BTreeMap<(&str, u16, bool), usize> = BTreeMap::new();
    for r in &bad {
        *kinds.entry((r.what, r.status, r.retry_after)).or_default() += 1;
    }
    let mut lines: Vec<String> = kinds
        .iter()
        .map(|((what, s, ra), n)| {
            let ra = if *ra { "" } else { " without Retry-After" };
            format!("{n} × {what}: {s}{ra}")
        })
        .collect();
    lines.push("the first of them:".to_owned());
    for r in bad.iter().take(15) {
        lines.push(format!(
            "  sent {} to replica {} ({}): {} → {}{} after {} ms",
            secs(r.sent),
            r.replica,
            rec.phases[rec.phase_at(r.sent)].1,
            r.what,
            r.status,
            if r.retry_after {
                ""
            } else {
                " without Retry-After"
            },
            ms(r.answered - r.sent),
        ));
    }
    Some(format!(
        "2. {} answers were a 5xx other than 503, or a 503 without Retry-After:\n{}",
        bad.len(),
        some(&lines, 40)
    ))
}

/// Could revocation `r` have ended session `s`? A logout ends its own; "end the others"
/// the account's others made before its ack; a setting change every session of the account
/// made before its ack; a password change the sessions whose login was sent before every
/// replica must have read the file and acted (written + `RELOAD` + `BOUND`): a login after
/// that was made with the new password and must be left alone.
fn touches(r: &Revocation, s: usize, sess: &Session) -> bool {
    r.account == sess.account
        && match r.kind {
            Kind::Logout => r.must.contains(&s),
            Kind::EndOthers => r.acting != Some(s) && sess.login_sent < r.ack,
            Kind::Setting => sess.login_sent < r.ack,
            Kind::File => sess.login_sent < r.sent + micros(RELOAD + BOUND),
        }
}

/// Check 3: a session is only refused when something revoked it (a 503 is not a refusal).
fn lost_sessions(rec: &Record) -> Option<String> {
    let lines: Vec<String> = rec
        .refusals
        .iter()
        .filter(|f| {
            let sess = &rec.sessions[f.sess];
            !rec.revs
                .iter()
                .any(|r| r.sent < f.answered && touches(r, f.sess, sess))
        })
        .map(|f| {
            let sess = &rec.sessions[f.sess];
            format!(
                "session {} of {} (made at {}) refused at {} by replica {} ({}: {} → {}); \
                 nothing revoked it",
                f.sess,
                sess.account,
                secs(sess.made),
                secs(f.sent),
                f.replica,
                rec.phases[rec.phase_at(f.sent)].1,
                f.what,
                f.status
            )
        })
        .collect();
    (!lines.is_empty()).then(|| {
        format!(
            "3. {} signed-in sessions were lost that nothing revoked:\n{}",
            lines.len(),
            some(&lines, 25)
        )
    })
}

/// `credentials_revoked` audit rows with reason `password_changed`, per account, read from
/// PostgreSQL directly; waits a little for rows still on their way (an audit queue).
async fn audited_revocations(f: &Faulty, accounts: &[String]) -> BTreeMap<String, usize> {
    let store = nidan::store::Store::open_postgres(&f.c._db.url, 1, true)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let mut counts = BTreeMap::new();
        for a in accounts {
            let n = store
                .audit_trail(Some(a), 1000)
                .await
                .unwrap()
                .iter()
                .filter(|r| r.event == "credentials_revoked")
                .filter(|r| r.detail.contains("\"password_changed\""))
                .count();
            counts.insert(a.clone(), n);
        }
        if counts.values().all(|&n| n >= 1) || Instant::now() > deadline {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Check 4: every users-file password change applied exactly once.
fn applied_once(rec: &Record, audit: &BTreeMap<String, usize>) -> Option<String> {
    let lines: Vec<String> = rec
        .files
        .iter()
        .filter(|c| audit.get(&c.account) != Some(&1))
        .map(|c| {
            format!(
                "{}: password changed at {} ({}); {} credentials_revoked rows, want 1",
                c.account,
                secs(c.written),
                rec.phases[rec.phase_at(c.written)].1,
                audit.get(&c.account).copied().unwrap_or(0)
            )
        })
        .collect();
    (!lines.is_empty()).then(|| {
        format!(
            "4. {} of {} password changes were not applied exactly once:\n{}",
            lines.len(),
            rec.files.len(),
            some(&lines, 20)
        )
    })
}

/// Check 5: no panic in any replica's log.
fn panics(logs: &[String]) -> Option<String> {
    let lines: Vec<String> = logs
        .iter()
        .enumerate()
        .flat_map(|(i, log)| {
            log.lines()
                .filter(|l| l.contains("panicked"))
                .map(move |l| format!("replica {i}: {l}"))
        })
        .collect();
    (!lines.is_empty()).then(|| format!("5. replicas panicked:\n{}", some(&lines, 20)))
}

fn percentile(sorted: &[Micros], p: usize) -> Micros {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() * p).div_ceil(100)).clamp(1, sorted.len()) - 1]
}

/// The revocations' delays (see [`late`]), sorted, for those `pick` keeps.
fn delays(rec: &Record, pick: impl Fn(&Revocation) -> bool) -> Vec<Micros> {
    let mut d: Vec<Micros> = (0..rec.revs.len())
        .filter(|&id| rec.revs[id].acked && !rec.revs[id].must.is_empty() && pick(&rec.revs[id]))
        .map(|id| late(rec, id))
        .collect();
    d.sort_unstable();
    d
}

fn delay_columns(d: &[Micros]) -> String {
    format!(
        "{:>4} {:>7} {:>7} {:>7}",
        d.len(),
        ms(percentile(d, 50)),
        ms(percentile(d, 99)),
        ms(d.last().copied().unwrap_or(0))
    )
}

/// The tables: per phase, the traffic's requests by status, the probes, and the
/// revocation delays; then the delays per kind of revocation.
fn figures(rec: &Record) -> String {
    let end = rec.reqs.iter().map(|r| r.answered).max().unwrap_or(0);
    let mut out = format!(
        "{:<22} {:>5} {:>6} {:>5} {:>6} {:>5} {:>4} {:>5} {:>4} {:>4} {:>7} {:>7} | {:>6} | {:>4} {:>7} {:>7} {:>7}\n",
        "phase",
        "s",
        "reqs",
        "req/s",
        "2xx",
        "302",
        "401",
        "503",
        "5xx*",
        "none",
        "p99 ms",
        "max ms",
        "probes",
        "revs",
        "p50 ms",
        "p99 ms",
        "max ms"
    );
    let rows = rec.phases.len();
    for p in 0..=rows {
        out.push_str(&phase_row(rec, p, end));
    }
    out.push_str(
        "(reqs: the users' requests, by status (302: to the login), how long the answers \
         took (p99, max); req/s counts the probes too; 5xx*: other than 503; none: no answer; \
         revs: acknowledged revocations, by the phase of their ack, and their delay: the last \
         look a replica still accepted, after the ack)\n\n",
    );
    let _ = writeln!(
        out,
        "{:<14} {:>7} | acked  p50 ms  p99 ms  max ms",
        "revocation", "unacked"
    );
    for kind in [Kind::Logout, Kind::EndOthers, Kind::Setting, Kind::File] {
        let unacked = rec
            .revs
            .iter()
            .filter(|r| r.kind == kind && !r.acked)
            .count();
        let d = delays(rec, |r| r.kind == kind);
        let _ = writeln!(
            out,
            "{:<14} {unacked:>7} | {}",
            kind.name(),
            delay_columns(&d)
        );
    }
    let tried = rec
        .reqs
        .iter()
        .filter(|r| r.what == "login: password")
        .count();
    let replaced = rec
        .revs
        .iter()
        .filter(|r| r.kind == Kind::Setting && r.acked)
        .count();
    let _ = writeln!(
        out,
        "logins: {} of {tried} completed; sessions refused to their browser: {}",
        rec.sessions.len() - replaced,
        rec.refusals.len()
    );
    out
}

/// One row of the table: phase `p` (all of the run when `p` is past the last phase).
fn phase_row(rec: &Record, p: usize, end: Micros) -> String {
    let rows = rec.phases.len();
    let (from, to, name) = if p < rows {
        let to = rec.phases.get(p + 1).map_or(end, |n| n.0);
        (rec.phases[p].0, to, rec.phases[p].1.as_str())
    } else {
        (0, end, "all")
    };
    let in_phase = |t: Micros| p == rows || rec.phase_at(t) == p;
    let reqs: Vec<&Req> = rec
        .reqs
        .iter()
        .filter(|r| r.what != "probe" && in_phase(r.sent))
        .collect();
    let probes = rec.probes.iter().filter(|r| in_phase(r.sent)).count();
    let count = |f: &dyn Fn(&Req) -> bool| reqs.iter().filter(|r| f(r)).count();
    let secs = (to.saturating_sub(from)) as f64 / 1e6;
    let mut took: Vec<Micros> = reqs
        .iter()
        .filter(|r| r.status != 0)
        .map(|r| r.answered - r.sent)
        .collect();
    took.sort_unstable();
    format!(
        "{name:<22} {secs:>5.1} {:>6} {:>5.0} {:>6} {:>5} {:>4} {:>5} {:>4} {:>4} {:>7} {:>7} | {probes:>6} | {}\n",
        reqs.len(),
        (reqs.len() + probes) as f64 / secs.max(0.001),
        count(&|r| (200..300).contains(&r.status)),
        count(&|r| r.status == 302),
        count(&|r| r.status == 401),
        count(&|r| r.status == 503),
        count(&|r| r.status >= 500 && r.status != 503),
        count(&|r| r.status == 0),
        ms(percentile(&took, 99)),
        ms(took.last().copied().unwrap_or(0)),
        delay_columns(&delays(rec, |r| in_phase(r.ack))),
    )
}

/// The password changes: when each was written, how long replicas accepted the old
/// sessions after it, and the audit rows.
fn file_changes(rec: &Record, audit: &BTreeMap<String, usize>) -> String {
    let mut out = format!(
        "{:<10} {:<22} {:>9} {:>9} {:>12} {:>6}\n",
        "account", "phase", "written", "sessions", "accepted ms", "audit"
    );
    for c in &rec.files {
        let r = &rec.revs[c.rev];
        let seen = rec
            .probes
            .iter()
            .filter(|p| p.rev == c.rev && p.accepted && !p.last)
            .map(|p| p.sent.saturating_sub(c.written))
            .max();
        let _ = writeln!(
            out,
            "{:<10} {:<22} {:>9} {:>9} {:>12} {:>6}",
            c.account,
            rec.phases[rec.phase_at(c.written)].1,
            secs(c.written),
            r.must.len(),
            seen.map_or("-".to_owned(), ms),
            audit.get(&c.account).copied().unwrap_or(0)
        );
    }
    out.push_str(
        "(accepted ms: after the write, the last look a replica still accepted an old session; \
         the bound is reload interval + 1 s = 2000 ms)\n",
    );
    out
}
