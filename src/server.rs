//! Turning a validated configuration into a running pingora server: the gateway service on
//! its listeners, the admin service, and the background runtime for chores; the graceful
//! upgrade (`serve --upgrade`: the listening sockets of every service — gateway, TLS and
//! admin alike — pass to the new process over `server.upgrade_sock`), `SIGHUP` reloads and
//! the systemd notifications.

use std::sync::Arc;

use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::ExecutionPhase;
use pingora::server::Server;
use pingora::server::configuration::ServerConf;
use pingora::services::listening::Service;

use crate::admin::Admin;
use crate::app::{App, StartError};
use crate::config::Config;
use crate::proxy::Gateway;
use crate::proxy::conn::{ConnLimits, Guarded};

/// How this process starts: fresh (binding its listeners), or taking them over from a
/// running nidan (a graceful upgrade).
#[derive(Debug, Clone, Copy, Default)]
pub struct Start {
    /// Take the listening sockets from the process serving now, over `server.upgrade_sock`.
    pub upgrade: bool,
    /// That process: sent `SIGQUIT` once this one is ready to take the sockets. Without it
    /// the operator sends `SIGQUIT` (pingora's sequence).
    pub old_pid: Option<u32>,
}

/// Builds everything and serves until a signal stops the process. Never returns on success.
pub fn run(cfg: Config, banner: Option<String>) -> Result<(), StartError> {
    run_with(cfg, banner, Start::default())
}

/// [`run`], fresh or as a graceful upgrade.
pub fn run_with(cfg: Config, banner: Option<String>, start: Start) -> Result<(), StartError> {
    if start.upgrade {
        // Before anything is built: a refused upgrade leaves the running process alone.
        upgrade::preflight(&cfg.server.upgrade_sock, start.old_pid).map_err(StartError::Upgrade)?;
    }
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
    {
        let _guard = background.enter();
        watch_reload_signal(app.clone());
    }
    let server = build(app.clone(), tunnels, start);
    {
        let _guard = background.enter();
        watch_phases(&server, start);
    }
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

fn build(app: Arc<App>, tunnels: Arc<crate::proxy::tunnel::Tunnels>, start: Start) -> Server {
    let cfg = app.cfg.clone();
    let grace = cfg.server.grace_period.as_secs();
    let conf = ServerConf {
        threads: cfg.server.threads.max(1),
        grace_period_seconds: Some(grace),
        graceful_shutdown_timeout_seconds: Some(grace.max(1)),
        // In a directory only this user can enter (pingora makes the socket 0666).
        upgrade_sock: upgrade::private_sock(&cfg.server.upgrade_sock)
            .to_string_lossy()
            .into_owned(),
        ..ServerConf::default()
    };
    let opt = pingora::server::configuration::Opt {
        upgrade: start.upgrade,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    if start.upgrade {
        upgrade::ask_old_process(
            &upgrade::private_sock(&cfg.server.upgrade_sock),
            start.old_pid,
        );
    }
    // Upgrading: blocks until the old process has sent its listening sockets.
    server.bootstrap();

    // Every client connection is guarded before pingora reads from it (SECURITY 42).
    let gateway = Gateway::with_tunnels(app.clone(), tunnels);
    let http = pingora::proxy::http_proxy(&server.configuration, gateway);
    let guarded =
        Guarded::new(http, ConnLimits::from_config(&cfg)).draining_for(cfg.server.grace_period);
    let mut proxy = Service::new("nidan gateway".to_owned(), guarded);
    for addr in &cfg.server.listen {
        // No 64 KiB read buffer per plain connection (pingora's default, allocated at the
        // accept): heads are read into the guard's and pingora's own small buffers, so an
        // open connection costs a few KiB until it sends something (SECURITY 42).
        let unbuffered = L4BufferSettings::default().read(0);
        proxy.add_listener(ListenerConfig::tcp(addr.to_string()).l4_buffer(unbuffered));
    }
    if let (Some(tls), Some(certs)) = (&cfg.server.tls, &app.certs) {
        for addr in &tls.listen {
            // The certificate comes from a resolver a reload swaps (`certs`): new handshakes
            // get the new one, open connections keep theirs.
            match TlsSettings::intermediate("", "") {
                Ok(mut settings) => {
                    settings.set_cert_resolver(certs.clone());
                    proxy.add_tls_with_settings(&addr.to_string(), None, settings);
                }
                Err(e) => tracing::error!(error = %e, "the TLS listener could not be set up"),
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

/// `SIGHUP` reloads the configuration. The handler is installed before the server starts,
/// so a `SIGHUP` never finds the default action (which ends the process).
fn watch_reload_signal(app: Arc<App>) {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(mut hangup) => {
            tokio::spawn(async move {
                while hangup.recv().await.is_some() {
                    tracing::info!("SIGHUP: reloading the configuration");
                    let app = app.clone();
                    // Reading files and keys: off the async workers.
                    let _ = tokio::task::spawn_blocking(move || app.reload_config()).await;
                }
            });
        }
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP cannot be handled: reload by editing the file")
        }
    }
}

/// Follows pingora's phases: tells systemd when this process serves (and, after an
/// upgrade, that it is the service's main process now), and drains the connections as
/// soon as the process hands over or stops.
fn watch_phases(server: &Server, start: Start) {
    let mut phases = server.watch_execution_phase();
    tokio::spawn(async move {
        while let Ok(phase) = phases.recv().await {
            match phase {
                ExecutionPhase::Running => {
                    upgrade::notify_systemd(start.upgrade);
                    if start.upgrade {
                        tracing::info!(
                            "graceful upgrade: this process serves the listening sockets now"
                        );
                    }
                }
                ExecutionPhase::GracefulUpgradeTransferringFds => {
                    tracing::info!(
                        "graceful upgrade: listening sockets handed over; in-flight requests finish here, kept-alive clients move on"
                    );
                    crate::proxy::conn::drain();
                }
                ExecutionPhase::GracefulTerminate | ExecutionPhase::ShutdownStarted => {
                    crate::proxy::conn::drain();
                }
                _ => {}
            }
        }
    });
}

mod upgrade {
    //! The two sides of a graceful upgrade that pingora leaves to the program: asking the
    //! old process to hand over once this one listens on the upgrade socket, and telling
    //! systemd (`Type=notify`) which process is the service now.

    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    /// Where the upgrade socket really is: `server.upgrade_sock` inside a directory
    /// `<upgrade_sock>.d/sock`, in a directory that only this process's user may enter. pingora makes the socket
    /// itself mode 0666, so in a directory others can enter (`/etc/nidan` usually is) any
    /// local user could connect while a new process waits and hand it sockets of his own.
    /// Both sides (the old process sending, the new one receiving) compute the same path.
    pub(crate) fn private_sock(sock: &Path) -> PathBuf {
        let mut dir = sock.as_os_str().to_owned();
        dir.push(".d");
        PathBuf::from(dir).join("sock")
    }

    /// What is checked before a graceful upgrade starts anything: the socket's private
    /// directory (made mode 0700, or already so and this user's), and that `old_pid` is a
    /// nidan (`SIGQUIT` ends most other programs). An error names the fix.
    pub(super) fn preflight(sock: &Path, old_pid: Option<u32>) -> Result<(), String> {
        let private = private_sock(sock);
        let dir = private.parent().unwrap_or(Path::new("."));
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(format!(
                    "server.upgrade_sock: cannot create the upgrade socket's directory {}: {e}\n  fix: let nidan's user write next to the upgrade socket, or set server.upgrade_sock to e.g. /run/nidan/upgrade.sock",
                    dir.display()
                ));
            }
        }
        let me = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
        let ok = std::fs::symlink_metadata(dir)
            .is_ok_and(|m| m.is_dir() && Some(m.uid()) == me && m.mode() & 0o077 == 0);
        if !ok {
            return Err(format!(
                "server.upgrade_sock: {} must be a directory of nidan's user that nobody else can enter (mode 0700): another local user could hand the new process listening sockets of his own\n  fix: `chmod 0700 {}` (owned by nidan's user), or remove it and nidan makes it",
                dir.display(),
                dir.display()
            ));
        }
        if let Some(pid) = old_pid {
            is_nidan(pid)?;
        }
        Ok(())
    }

    /// Is process `pid` a nidan (the same program name as this process)?
    fn is_nidan(pid: u32) -> Result<(), String> {
        let comm = |p: &str| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).map(|c| c.trim_end().to_owned())
        };
        let mine =
            comm("self").map_err(|e| format!("--old-pid: cannot read /proc/self/comm: {e}"))?;
        match comm(&pid.to_string()) {
            Ok(theirs) if theirs == mine => Ok(()),
            Ok(theirs) => Err(format!(
                "--old-pid {pid}: process {pid} is `{theirs}`, not nidan: no signal sent\n  fix: give the process ID of the running nidan (systemd: ${{MAINPID}})"
            )),
            Err(_) => Err(format!(
                "--old-pid {pid}: there is no process {pid}: no signal sent\n  fix: give the process ID of the running nidan (systemd: ${{MAINPID}})"
            )),
        }
    }

    /// Removes a stale upgrade socket, then (with `old_pid`) waits in a thread until pingora
    /// has bound a new one and sends the old process `SIGQUIT`: it connects and sends its
    /// listening sockets. Without `old_pid`, says that the operator sends the signal.
    pub(super) fn ask_old_process(sock: &Path, old_pid: Option<u32>) {
        let _ = std::fs::remove_file(sock);
        let Some(pid) = old_pid else {
            tracing::info!(
                socket = %sock.display(),
                "graceful upgrade: waiting for the running nidan's listening sockets; send it SIGQUIT"
            );
            return;
        };
        let sock: PathBuf = sock.to_path_buf();
        let spawned = std::thread::Builder::new()
            .name("nidan-upgrade".into())
            .spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(30);
                while !sock.exists() {
                    if Instant::now() > deadline {
                        tracing::error!(socket = %sock.display(), "graceful upgrade: the upgrade socket never appeared");
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                tracing::info!(pid, "graceful upgrade: asking the running nidan for its listening sockets (SIGQUIT)");
                let sent = std::process::Command::new("kill")
                    .args(["-QUIT", &pid.to_string()])
                    .status();
                if !sent.is_ok_and(|s| s.success()) {
                    tracing::error!(pid, "graceful upgrade: SIGQUIT could not be sent to the running nidan");
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "graceful upgrade: cannot ask the running nidan for its sockets");
        }
    }

    /// `READY=1` to systemd's notification socket (`NOTIFY_SOCKET`, `Type=notify`); after
    /// an upgrade also `MAINPID`, so systemd follows this process (`NotifyAccess=all`).
    pub(super) fn notify_systemd(upgraded: bool) {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return;
        };
        let message = if upgraded {
            format!("MAINPID={}\nREADY=1\n", std::process::id())
        } else {
            "READY=1\n".to_owned()
        };
        if let Err(e) = send(&path, message.as_bytes()) {
            tracing::warn!(error = %e, "could not notify systemd (NOTIFY_SOCKET)");
        }
    }

    fn send(path: &std::ffi::OsStr, message: &[u8]) -> std::io::Result<usize> {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::net::UnixDatagram;
        let socket = UnixDatagram::unbound()?;
        let bytes = path.as_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(message, &addr)
        } else {
            socket.send_to(message, path)
        }
    }
}
