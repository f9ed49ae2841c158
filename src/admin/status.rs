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
    let (hash, loaded_at) = &table.loaded;
    let body = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "config": {
            "file": cfg.source.display().to_string(),
            "hash": hash,
            "loaded_at": loaded_at,
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
