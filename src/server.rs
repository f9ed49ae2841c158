//! Turning a validated configuration into a running pingora server: the gateway service on
//! its listeners, the admin service, and the background runtime for chores.

use std::sync::Arc;

use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::Server;
use pingora::server::configuration::ServerConf;
use pingora::services::listening::Service;

use crate::admin::Admin;
use crate::app::{App, StartError};
use crate::config::Config;
use crate::proxy::Gateway;
use crate::proxy::conn::{ConnLimits, Guarded};

/// Builds everything and serves until a signal stops the process. Never returns on success.
pub fn run(cfg: Config, banner: Option<String>) -> Result<(), StartError> {
    pingora::tls::install_default_crypto_provider();
    let background = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("nidan-bg")
        .enable_all()
        .build()
        .map_err(|e| StartError::Store(crate::store::StoreError::Db(sqlx::Error::Io(e))))?;
    let app = background.block_on(App::build(cfg))?;
    let tunnels = Arc::new(crate::proxy::tunnel::Tunnels::default());
    {
        let _guard = background.enter();
        app.spawn_background();
        tunnels.spawn(Arc::new(Gateway::with_tunnels(
            app.clone(),
            tunnels.clone(),
        )));
    }
    let server = build(app.clone(), tunnels);
    if app.cfg.server.tls.is_none() && !app.cfg.always_https() {
        if app.cfg.trusted_proxies.is_empty() {
            tracing::info!(
                "no TLS here: cookies go without Secure and the __Host- prefix; serve over TLS in production (server.tls, or TLS in front with portal.public_url: https://…)"
            );
        } else {
            tracing::info!(
                "no TLS here: a request counts as HTTPS (Secure, __Host- cookies, HSTS) only when a trusted proxy sends X-Forwarded-Proto: https; with TLS in front, set portal.public_url: https://…"
            );
        }
    }
    for addr in &app.cfg.server.listen {
        tracing::info!("nidan listening on http://{addr}");
    }
    if let Some(tls) = &app.cfg.server.tls {
        for addr in &tls.listen {
            tracing::info!("nidan listening on https://{addr}");
        }
    }
    if let Some(text) = banner {
        println!("{text}");
    }
    // `background` must outlive the server.
    let _keep = background;
    server.run(pingora::server::RunArgs::default());
    // Every request has finished: the access lines still queued go out before the exit.
    crate::proxy::access::flush();
    std::process::exit(0)
}

fn build(app: Arc<App>, tunnels: Arc<crate::proxy::tunnel::Tunnels>) -> Server {
    let cfg = app.cfg.clone();
    let grace = cfg.server.grace_period.as_secs();
    let conf = ServerConf {
        threads: cfg.server.threads.max(1),
        grace_period_seconds: Some(grace),
        graceful_shutdown_timeout_seconds: Some(grace.max(1)),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    // Every client connection is guarded before pingora reads from it (SECURITY 42).
    let gateway = Gateway::with_tunnels(app.clone(), tunnels);
    let http = pingora::proxy::http_proxy(&server.configuration, gateway);
    let guarded = Guarded::new(http, ConnLimits::from_config(&cfg));
    let mut proxy = Service::new("nidan gateway".to_owned(), guarded);
    for addr in &cfg.server.listen {
        // No 64 KiB read buffer per plain connection (pingora's default, allocated at the
        // accept): heads are read into the guard's and pingora's own small buffers, so an
        // open connection costs a few KiB until it sends something (SECURITY 42).
        let unbuffered = L4BufferSettings::default().read(0);
        proxy.add_listener(ListenerConfig::tcp(addr.to_string()).l4_buffer(unbuffered));
    }
    if let Some(tls) = &cfg.server.tls {
        for addr in &tls.listen {
            let cert = tls.cert.to_string_lossy();
            let key = tls.key.to_string_lossy();
            if let Err(e) = proxy.add_tls(&addr.to_string(), &cert, &key) {
                tracing::error!(error = %e, "the TLS listener could not be set up");
            }
        }
    }
    server.add_service(proxy);

    if let Some(addr) = cfg.server.admin_listen {
        let mut admin = Service::new("nidan admin".to_owned(), Admin { app });
        admin.add_tcp(&addr.to_string());
        server.add_service(admin);
    }
    server
}
