//! The admin listener: Prometheus metrics, liveness and readiness, and the admin API
//! (`api.rs`), on its own address.

pub mod api;
pub mod users;

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::app::App;

pub struct Admin {
    pub app: Arc<App>,
}

pub(crate) fn reply(status: u16, content_type: &str, body: String) -> Response<Vec<u8>> {
    let mut r = Response::new(body.into_bytes());
    *r.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    let len = r.body().len();
    r.headers_mut()
        .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    // Every 503 here is a store that cannot be reached: the one Retry-After policy.
    if status == 503 {
        r.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from(crate::outage::RETRY_AFTER_SECS),
        );
    }
    r
}

/// Ready when every store answers. The single-machine mode pings SQLite; the replica mode
/// reports each shared store as its probes last saw it (at most a second old):
/// `{"postgres":"ok"|"down","redis":"ok"|"down"}`, 503 when any is down.
async fn readyz(app: &App) -> Response<Vec<u8>> {
    match &app.replica {
        None => match app.store.ping().await {
            Ok(()) => reply(200, "text/plain", "ready\n".into()),
            Err(_) => reply(503, "text/plain", "store unavailable\n".into()),
        },
        Some(r) => {
            let h = &r.health;
            let body = serde_json::json!({
                "postgres": h.durable().as_str(),
                "redis": h.redis().as_str(),
            });
            let status = if h.all_ok() { 200 } else { 503 };
            reply(status, "application/json", format!("{body}\n"))
        }
    }
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_owned();
        match path.as_str() {
            "/healthz" => reply(200, "text/plain", "ok\n".into()),
            "/readyz" => readyz(&self.app).await,
            "/metrics" => {
                let mut text = crate::metrics::render();
                text.push_str(&format!(
                    "# HELP nidan_sessions_cached Sessions in the in-memory cache\n# TYPE nidan_sessions_cached gauge\nnidan_sessions_cached {}\n\
                     # HELP nidan_devices_cached Trusted devices in the in-memory cache\n# TYPE nidan_devices_cached gauge\nnidan_devices_cached {}\n\
                     # HELP nidan_users Users in the directory\n# TYPE nidan_users gauge\nnidan_users {}\n",
                    self.app.sessions.cached(),
                    self.app.devices.cached(),
                    self.app.accounts.users.len_hint().unwrap_or(0),
                ));
                reply(200, "text/plain; version=0.0.4", text)
            }
            p if p.starts_with("/admin/") => api::handle(&self.app, session, p).await,
            _ => reply(404, "text/plain", "not found\n".into()),
        }
    }
}
