//! The `nidan` command: serve, demo, check-config, status, hash-password, echo-backend.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: fewer cycles per request than glibc malloc on the proxy path (benches/results.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "nidan",
    version,
    about = "Two-step login gateway in front of unchanged web apps"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway with a configuration file.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
        /// Graceful upgrade: take the listening sockets from the nidan serving now (over
        /// `server.upgrade_sock`) instead of binding them; the old process finishes its
        /// in-flight requests within `server.grace_period` and exits.
        #[arg(long)]
        upgrade: bool,
        /// With --upgrade: the running nidan's process ID, sent SIGQUIT once this process is
        /// ready to take its sockets (systemd: `$MAINPID`). Without it, send SIGQUIT yourself.
        #[arg(long, requires = "upgrade", value_name = "PID")]
        old_pid: Option<u32>,
    },
    /// Run the gateway on its embedded defaults, in front of a built-in echo backend.
    Demo {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Also append every message (codes, notices) to this JSON-lines file.
        #[arg(long)]
        outbox: Option<PathBuf>,
        /// Keep the database and keys here (default: a new temporary directory).
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Validate a configuration file; lists every problem with file, line and column.
    /// With --diff OLD NEW: validate both and name what changed, and what of it a reload
    /// applies and what needs a restart (exit 3 when something does).
    CheckConfig {
        #[arg(long, short, required_unless_present = "diff")]
        config: Option<PathBuf>,
        #[arg(long, num_args = 2, value_names = ["OLD", "NEW"], conflicts_with = "config")]
        diff: Option<Vec<PathBuf>>,
    },
    /// Explain what the gateway would do with a URL: route, policy, exemptions, and for a
    /// user their 2-step setting and the risk signals known offline. Sends no traffic.
    Explain {
        #[arg(long, short)]
        config: PathBuf,
        /// Absolute URL, e.g. https://wiki.example.com/page
        #[arg(long)]
        url: String,
        /// A user ID from the users file.
        #[arg(long)]
        user: Option<String>,
        /// The client address (after trusted proxies), for exemptions and risk.
        #[arg(long)]
        ip: Option<std::net::IpAddr>,
    },
    /// Ask the running gateway (its `server.admin_listen`) for its status: version,
    /// configuration, listeners, upstream health, stores, replica role. Exit 1 when a store
    /// is down, 2 when it cannot be asked.
    Status {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Read a password on standard input and print its argon2id hash for the users file.
    HashPassword,
    /// The database directory (`users: { database: {} }`).
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Run only the echo backend (for tests and trials).
    EchoBackend {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// The reference phone-app client: enroll, list and answer login approvals.
    App {
        /// The key file written at enrollment and read by the other commands.
        #[arg(long, global = true, default_value = "nidan-app.json")]
        key: PathBuf,
        #[command(subcommand)]
        command: AppCommand,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Load a users file (pre-hashed passwords) into the database directory: creates new
    /// users, updates changed ones, leaves the rest; reports the counts. Idempotent.
    Import {
        #[arg(long, short)]
        config: PathBuf,
        /// A users file (`version: 1`, `users: [...]`).
        users: PathBuf,
    },
}

#[derive(Subcommand)]
enum AppCommand {
    /// Enroll this client with the URI from the portal's app page and the security code.
    Enroll {
        #[arg(long)]
        uri: String,
        #[arg(long)]
        security_code: String,
        #[arg(long, default_value = "nidan reference app")]
        name: String,
    },
    /// List the login approvals waiting for an answer.
    List,
    /// Allow a login: give the number the browser shows.
    Approve {
        id: String,
        #[arg(long)]
        number: String,
    },
    /// Refuse a login; with --not-me app prompts pause and the user is notified.
    Deny {
        id: String,
        #[arg(long)]
        not_me: bool,
    },
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,pingora_core=warn,pingora_proxy=warn,sqlx=warn")
    });
    let json = std::env::var("NIDAN_LOG_FORMAT").is_ok_and(|v| v == "json");
    use std::io::IsTerminal;
    // Colour codes only for a terminal: in files they cost CPU on every access line.
    let builder = tracing_subscriber::fmt()
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
    // The access log has its own writer (one line per request, written in batches off the
    // worker threads); `RUST_LOG` still decides whether it is on (`access=off`).
    if tracing::enabled!(target: "access", tracing::Level::INFO) {
        use nidan::proxy::access::{self, Format};
        let format = if json { Format::Json } else { Format::Text };
        if let Err(e) = access::start(format) {
            tracing::error!(error = %e, "the access log writer did not start: no access log");
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig {
            diff: Some(files), ..
        } => check_diff(&files),
        Command::CheckConfig { config: None, .. } => ExitCode::FAILURE,
        Command::CheckConfig {
            config: Some(config),
            ..
        } => match nidan::config::load(&config) {
            Ok(cfg) => {
                println!("{}: valid ({} routes)", config.display(), cfg.routes.len());
                for k in placeholder_keys(&cfg) {
                    println!(
                        "warning: trusted_devices.signing_keys `{k}` is the example's published placeholder; `nidan serve` refuses it until you write a secret of your own into its file"
                    );
                }
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                eprintln!(
                    "{} problem(s) found; nidan will not start with this file.",
                    errors.0.len()
                );
                ExitCode::FAILURE
            }
        },
        Command::Explain {
            config,
            url,
            user,
            ip,
        } => explain(&config, &url, user.as_deref(), ip),
        Command::Status { config } => match nidan::admin::status::ask(&config) {
            Ok((code, body)) => {
                print!("{body}");
                if code == 200 {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(why) => {
                eprintln!("{why}");
                ExitCode::from(2)
            }
        },
        Command::HashPassword => {
            let mut input = String::new();
            if std::io::stdin().read_to_string(&mut input).is_err() {
                eprintln!("could not read the password from standard input");
                return ExitCode::FAILURE;
            }
            let password = input.strip_suffix('\n').unwrap_or(&input);
            let password = password.strip_suffix('\r').unwrap_or(password);
            if password.is_empty() {
                eprintln!("the password is empty");
                return ExitCode::FAILURE;
            }
            match nidan::login::password::hash_password(password) {
                Ok(h) => {
                    println!("{h}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve {
            config,
            upgrade,
            old_pid,
        } => serve(&config, nidan::server::Start { upgrade, old_pid }),
        Command::Demo {
            listen,
            outbox,
            data,
        } => {
            init_logging();
            demo(listen, outbox, data)
        }
        Command::EchoBackend { listen } => {
            init_logging();
            echo(listen)
        }
        Command::App { key, command } => app_client(&key, command),
        Command::Users {
            command: UsersCommand::Import { config, users },
        } => import_users(&config, &users),
    }
}

fn import_users(config: &std::path::Path, users: &std::path::Path) -> ExitCode {
    let cfg = match nidan::config::load(config) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("fix the configuration first (`nidan check-config`).");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let started = std::time::Instant::now();
    let mut last = std::time::Instant::now();
    let mut progress = |c: &nidan::store::ImportCounts| {
        if last.elapsed() >= std::time::Duration::from_secs(5) {
            last = std::time::Instant::now();
            eprintln!("… {} users so far", c.created + c.updated + c.unchanged);
        }
    };
    match rt.block_on(nidan::users::import::import(&cfg, users, &mut progress)) {
        Ok(c) => {
            println!(
                "{}: {} created, {} updated, {} unchanged ({:.1} s)",
                users.display(),
                c.created,
                c.updated,
                c.unchanged,
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            eprintln!("nothing more was imported.");
            ExitCode::FAILURE
        }
    }
}

/// `check-config --diff OLD NEW`: both must be valid; names every changed setting and
/// whether a reload applies it. Exit 0: nothing needs a restart; 3: something does.
fn check_diff(files: &[PathBuf]) -> ExitCode {
    let [old, new] = files else {
        return ExitCode::FAILURE;
    };
    let mut loaded = Vec::new();
    for path in [old, new] {
        match nidan::config::load(path) {
            Ok(c) => loaded.push(c),
            Err(errors) => {
                eprintln!("{errors}");
                eprintln!("{} problem(s) found in {}.", errors.0.len(), path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    let changes = nidan::config::diff::diff(&loaded[0], &loaded[1]);
    if changes.is_empty() {
        println!("{} → {}: no setting changed", old.display(), new.display());
        return ExitCode::SUCCESS;
    }
    println!("{} → {}:", old.display(), new.display());
    for c in &changes {
        if c.reloads {
            println!(
                "  {}: applied by a reload (SIGHUP or the file watch)",
                c.key
            );
        } else {
            println!(
                "  {}: needs a restart (`nidan serve --upgrade`); a reload keeps the running value",
                c.key
            );
        }
    }
    if nidan::config::diff::needs_restart(&changes).is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}

/// The IDs of signing keys that are the annotated example's placeholder.
fn placeholder_keys(cfg: &nidan::config::Config) -> Vec<String> {
    cfg.trusted_devices
        .signing_keys
        .iter()
        .filter(|k| k.is_placeholder())
        .map(|k| k.id.clone())
        .collect()
}

fn explain(
    config: &std::path::Path,
    url: &str,
    user: Option<&str>,
    ip: Option<std::net::IpAddr>,
) -> ExitCode {
    let cfg = match nidan::config::load(config) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("fix the configuration first (`nidan check-config`).");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(nidan::explain::explain(&cfg, url, user, ip)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

/// `nidan serve`: fresh, or a graceful upgrade (`start`).
fn serve(config: &std::path::Path, start: nidan::server::Start) -> ExitCode {
    init_logging();
    let cfg = match nidan::config::load(config) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("nidan did not start: fix the configuration above.");
            return ExitCode::FAILURE;
        }
    };
    // A published key would let anyone forge trusted-device cookies.
    let placeholders = placeholder_keys(&cfg);
    if !placeholders.is_empty() {
        eprintln!(
            "{}: trusted_devices.signing_keys {} hold the example's published placeholder: anyone could forge trusted-device cookies.\n  fix: write a secret of your own into the key file, e.g. `head -c 48 /dev/urandom | base64 > secrets/device-k1`\nnidan did not start.",
            config.display(),
            placeholders.join(", ")
        );
        return ExitCode::FAILURE;
    }
    report(nidan::server::run_with(cfg, None, start))
}

fn report(r: Result<(), nidan::app::StartError>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nidan did not start: {e}");
            ExitCode::FAILURE
        }
    }
}

fn demo(listen: SocketAddr, outbox: Option<PathBuf>, data: Option<PathBuf>) -> ExitCode {
    // A temporary directory lives as long as the process.
    let temp;
    let data = match data {
        Some(d) => d,
        None => match tempfile::Builder::new().prefix("nidan-demo-").tempdir() {
            Ok(t) => {
                temp = t;
                temp.path().to_path_buf()
            }
            Err(e) => {
                eprintln!("could not create a temporary directory: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let backend = match nidan::demo::start_echo() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("the echo backend could not start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = nidan::demo::DemoOptions {
        listen,
        outbox,
        data: Some(data.clone()),
    };
    let cfg = match nidan::demo::prepare(&opts, backend, &data) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let banner = nidan::demo::banner(listen, &data, opts.outbox.as_deref());
    report(nidan::server::run(cfg, Some(banner)))
}

fn app_client(key_file: &std::path::Path, command: AppCommand) -> ExitCode {
    use nidan::approver;
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match command {
            AppCommand::Enroll { uri, security_code, name } => approver::enroll(&uri, &security_code, &name, key_file)
                .await
                .map(|k| serde_json::json!({"enrolled": k.app_id, "user": k.user, "key_file": key_file.display().to_string()})),
            AppCommand::List => match approver::load(key_file) {
                Ok(k) => approver::list(&k).await,
                Err(e) => Err(e),
            },
            AppCommand::Approve { id, number } => match approver::load(key_file) {
                Ok(k) => approver::answer(&k, &id, true, Some(&number), false).await,
                Err(e) => Err(e),
            },
            AppCommand::Deny { id, not_me } => match approver::load(key_file) {
                Ok(k) => approver::answer(&k, &id, false, None, not_me).await,
                Err(e) => Err(e),
            },
        }
    });
    match result {
        Ok(v) => {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn echo(listen: SocketAddr) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("could not listen on {listen}: {e}");
                return ExitCode::FAILURE;
            }
        };
        match listener.local_addr() {
            Ok(a) => println!("echo backend listening on http://{a}"),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        }
        match nidan::demo::echo::serve(listener).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("echo backend stopped: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
