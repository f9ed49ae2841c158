//! A bare pingora passthrough: the baseline the load benchmark compares nidan against.
//!
//! Same pingora settings and allocator as `nidan serve` (see `src/server.rs` and
//! `src/main.rs`): `threads` workers, the default upstream keepalive pool, mimalloc; one
//! upstream, no filters, no access log.
//!
//! ```text
//! cargo run --release --example bare_pingora -- 127.0.0.1:8090 127.0.0.1:8081 [threads]
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::Server;
use pingora::server::configuration::ServerConf;
use pingora::upstreams::peer::HttpPeer;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Passthrough {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Passthrough {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.upstream, false, String::new());
        // The same per-peer option nidan sets (src/proxy/mod.rs).
        peer.options.connection_timeout = Some(Duration::from_secs(5));
        Ok(Box::new(peer))
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(listen), Some(upstream)) = (args.first(), args.get(1)) else {
        eprintln!("usage: bare_pingora LISTEN_ADDR UPSTREAM_ADDR [THREADS]");
        return ExitCode::FAILURE;
    };
    let Ok(upstream) = upstream.parse::<SocketAddr>() else {
        eprintln!("UPSTREAM_ADDR must be ip:port");
        return ExitCode::FAILURE;
    };
    let threads = match args.get(2).map(|t| t.parse::<usize>()) {
        None => 2,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("THREADS must be a positive number");
            return ExitCode::FAILURE;
        }
    };
    pingora::tls::install_default_crypto_provider();
    // nidan's defaults: 2 threads, grace period 5 s.
    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(5),
        graceful_shutdown_timeout_seconds: Some(5),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy =
        pingora::proxy::http_proxy_service(&server.configuration, Passthrough { upstream });
    proxy.add_tcp(listen);
    server.add_service(proxy);
    println!("bare pingora listening on http://{listen}, forwarding to {upstream}");
    server.run_forever();
}
