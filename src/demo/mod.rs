//! `nidan demo`: the gateway on its embedded defaults, in front of a built-in echo backend,
//! with demo users and security codes printed to the console. Nothing else to set up.

pub mod echo;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::config::{Config, ConfigErrors};

const CONFIG_TEMPLATE: &str = include_str!("../../config/demo.yaml");
const USERS: &str = include_str!("../../config/demo-users.yaml");

/// The demo's password for every demo user.
pub const PASSWORD: &str = "nidan-demo";

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("the demo data directory could not be prepared: {0}")]
    Io(#[from] std::io::Error),
    #[error("the demo configuration is invalid:\n{0}")]
    Config(#[from] ConfigErrors),
}

/// What `nidan demo` was asked for.
pub struct DemoOptions {
    pub listen: SocketAddr,
    pub outbox: Option<PathBuf>,
    pub data: Option<PathBuf>,
}

/// Starts the echo backend on its own thread; returns its address.
pub fn start_echo() -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("nidan-echo")
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("nidan-echo".into())
        .spawn(move || {
            rt.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => {
                        if let Err(e) = echo::serve(l).await {
                            tracing::error!(error = %e, "the echo backend stopped");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "the echo backend could not start"),
                }
            });
        })?;
    Ok(addr)
}

/// Prepares the data directory and the configuration for the demo.
pub fn prepare(opts: &DemoOptions, backend: SocketAddr, data: &Path) -> Result<Config, DemoError> {
    std::fs::create_dir_all(data)?;
    let key = data.join("device-key");
    if !key.exists() {
        std::fs::write(&key, crate::secret::random_token(48))?;
    }
    std::fs::write(data.join("users.yaml"), USERS)?;
    let outbox = match &opts.outbox {
        Some(p) => {
            let abs = std::path::absolute(p)?;
            format!("path: {}, ", yaml_string(&abs.to_string_lossy()))
        }
        None => String::new(),
    };
    let text = CONFIG_TEMPLATE
        .replace("${LISTEN}", &opts.listen.to_string())
        .replace("${PUBLIC_URL}", &public_url(opts.listen))
        .replace("${BACKEND}", &backend.to_string())
        .replace("${OUTBOX}", &outbox);
    let path = data.join("demo.yaml");
    std::fs::write(&path, &text)?;
    Ok(crate::config::load_str(&text, &path)?)
}

fn yaml_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// The address the demo is reached at: `localhost` for a loopback or unspecified listen
/// address (passkeys need a domain name in a secure context, which `http://localhost` is;
/// on `127.0.0.1` they cannot work), else the address itself.
fn public_url(listen: SocketAddr) -> String {
    let host = if listen.ip().is_unspecified() || listen.ip().is_loopback() {
        "localhost".to_owned()
    } else {
        match listen {
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
            SocketAddr::V4(a) => a.ip().to_string(),
        }
    };
    format!("http://{host}:{}", listen.port())
}

/// The text printed when the demo is up.
pub fn banner(listen: SocketAddr, data: &Path, outbox: Option<&Path>) -> String {
    let url = public_url(listen);
    let mut s = format!(
        "\n  nidan demo is running: open {url}/\n\n\
         \x20 users (password for all: {PASSWORD}):\n\
         \x20   taro    2-step off (admin pages still ask for a code)\n\
         \x20   hanako  2-step on, security code by SMS\n\
         \x20   jiro    2-step on, app (a code is sent until the app is enrolled)\n\n\
         \x20 routes: /public/… open to all · /admin/… always two steps · everything else needs a login\n\
         \x20 portal: {url}/_nidan/  (devices: /_nidan/devices, settings: /_nidan/settings)\n\
         \x20 security codes and notices are printed here as [nidan outbox] lines\n\
         \x20 data: {}\n",
        data.display()
    );
    if let Some(o) = outbox {
        s.push_str(&format!("  outbox file: {}\n", o.display()));
    }
    s
}
