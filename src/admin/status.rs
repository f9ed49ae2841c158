//! `GET /status` on the admin listener: what an operator asks a running replica in one
//! look — version, the live configuration (hash, load time), listeners, upstream health,
//! store and Redis health, and whether this replica holds the chores lease. No secret is in
//! it (store URLs are not shown).

use serde_json::{Value, json};

use crate::app::App;

/// The status document. 200 when every store answers, else 503 (as `/readyz`).
pub async fn status(app: &App) -> (u16, Value) {
    let cfg = &app.cfg;
    let table = app.routes();
    let routes: Vec<Value> = table
        .pools()
        .map(|(route, pool)| {
            let peers: Vec<Value> = pool
                .peers()
                .iter()
                .map(|p| json!({"upstream": p.name, "up": p.up()}))
                .collect();
            json!({
                "name": route.name,
                "health_check": route.upstream.health_check.as_ref().map(|h| h.path.as_str()),
                "upstreams": peers,
                "up": pool.peers().iter().any(|p| p.up()),
            })
        })
        .collect();
    let (store, redis, role) = match &app.replica {
        None => {
            let ok = app.store.ping().await.is_ok();
            (
                json!({"kind": "sqlite", "status": up(ok)}),
                Value::Null,
                "single",
            )
        }
        Some(r) => {
            let h = &r.health;
            let role = if r.lease.held() { "chores" } else { "standby" };
            (
                json!({"kind": "postgres", "status": h.durable().as_str()}),
                json!({"status": h.redis().as_str()}),
                role,
            )
        }
    };
    let ok = match &app.replica {
        None => store["status"] == "ok",
        Some(r) => r.health.all_ok(),
    };
    // The same hash and time as `nidan_config_info` / `nidan_config_loaded_timestamp_seconds`.
    let live = app.live_config();
    let body = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "config": {
            "file": cfg.source.display().to_string(),
            "hash": live.hash,
            "loaded_at": live.loaded,
        },
        "listeners": {
            "http": cfg.server.listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "https": cfg.server.tls.as_ref().map_or_else(Vec::new, |t| t.listen.iter().map(ToString::to_string).collect()),
            "admin": cfg.server.admin_listen.map(|a| a.to_string()),
        },
        "routes": routes,
        "store": store,
        "redis": redis,
        "replica": {
            "role": role,
            "id": app.replica.as_ref().map(|r| r.id.clone()),
        },
    });
    (if ok { 200 } else { 503 }, body)
}

fn up(ok: bool) -> &'static str {
    if ok { "ok" } else { "down" }
}

/// `nidan status --config FILE`: asks the running gateway's admin listener for `/status`.
/// The status code and the document, or why it could not be asked.
pub fn ask(config: &std::path::Path) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let cfg = crate::config::load(config).map_err(|e| e.to_string())?;
    let addr = cfg.server.admin_listen.ok_or_else(|| {
        format!(
            "{}: `server.admin_listen` is not set, so the gateway has no status to ask",
            config.display()
        )
    })?;
    let timeout = std::time::Duration::from_secs(5);
    let unreachable = |e: std::io::Error| format!("the admin listener {addr} did not answer: {e}");
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).map_err(unreachable)?;
    s.set_read_timeout(Some(timeout)).map_err(unreachable)?;
    write!(
        s,
        "GET /status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(unreachable)?;
    // Read up to the end of the body its Content-Length names (the listener may keep the
    // connection open).
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let (head, body) = loop {
        let n = s.read(&mut chunk).map_err(unreachable)?;
        raw.extend_from_slice(chunk.get(..n).unwrap_or_default());
        let text = String::from_utf8_lossy(&raw).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok());
            if n == 0 || length.is_none_or(|l| body.len() >= l) {
                break (head.to_owned(), body.to_owned());
            }
        } else if n == 0 || raw.len() > 1 << 20 {
            return Err(format!("the admin listener {addr} sent no HTTP answer"));
        }
    };
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("the admin listener {addr} sent no status code"))?;
    Ok((code, body))
}
