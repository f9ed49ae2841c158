//! Reads the YAML file, checks every value and builds the runtime [`Config`]. Each problem
//! becomes a [`ConfigError`] with file, line, column and a sentence on how to fix it;
//! semantic problems are all collected, not just the first.

use std::ffi::OsString;
use std::path::Path;

use serde::de::DeserializeOwned;

use super::Config;
use super::file::File;

pub(crate) use super::errors::Errors;
pub use super::errors::{ConfigError, ConfigErrors};

/// Reads and checks the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = read_file(path, "configuration")?;
    load_str(&text, path)
}

/// Checks configuration `text` that came from `source` (used in messages and to resolve
/// relative paths against its directory).
pub fn load_str(text: &str, source: &Path) -> Result<Config, ConfigErrors> {
    load_with_env(text, source, &|name| std::env::var_os(name))
}

/// [`load_str`] with the environment supplied by the caller (tests cannot safely set
/// process environment variables).
pub(crate) fn load_with_env(
    text: &str,
    source: &Path,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Config, ConfigErrors> {
    let file: File = parse_yaml(text, source)?;
    super::check::config(file, text, source, env)
}

/// Reads a whole text file; a failure is one error naming the file.
pub(crate) fn read_file(path: &Path, what: &str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        line: 0,
        column: 0,
        message: format!("cannot read the {what} file {}: {e}", path.display()),
        fix: format!("check that the {what} file exists, is UTF-8 text and is readable by nidan"),
    })
}

/// The one place YAML text is turned into data, so the YAML library can be swapped.
pub(crate) fn parse_yaml<T: DeserializeOwned>(text: &str, source: &Path) -> Result<T, ConfigError> {
    if text.trim().is_empty() {
        return Err(ConfigError {
            file: source.to_path_buf(),
            line: 1,
            column: 1,
            message: "the file is empty".into(),
            fix: "start the file with `version: 1`".into(),
        });
    }
    serde_yaml::from_str(text).map_err(|e| {
        let (line, column) = e
            .location()
            .map_or((1, 1), |l| (l.line().max(1), l.column().max(1)));
        let message = plain_types(&strip_marks(&redact(&e.to_string())));
        let fix = fix_for(&message);
        ConfigError {
            file: source.to_path_buf(),
            line,
            column,
            message,
            fix,
        }
    })
}

/// Removes quoted scalar values and unknown enum values from a serde message: they are
/// the file's text and may be a misplaced secret. Key names (in backticks) are kept.
fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' {
            // Skip to the closing quote (serde writes values with `{:?}`, so inner quotes are escaped).
            while let Some(d) = chars.next() {
                match d {
                    '\\' => {
                        chars.next();
                    }
                    '"' => break,
                    _ => {}
                }
            }
            if out.ends_with(' ') {
                out.pop();
            }
        } else {
            out.push(c);
        }
    }
    const VARIANT: &str = "unknown variant `";
    if let Some(start) = out.find(VARIANT) {
        let after = &out[start + VARIANT.len()..];
        let rest = match after.rfind("`, expected") {
            Some(end) => after[end + 1..].to_string(),
            None => String::new(),
        };
        out = format!("{}unknown value{rest}", &out[..start]);
    }
    out
}

/// Replaces Rust type names in serde messages with words an operator knows.
fn plain_types(message: &str) -> String {
    let Some(i) = message.find(", expected ") else {
        return message.to_string();
    };
    let (head, expected) = message.split_at(i + ", expected ".len());
    let words = if expected.starts_with("struct ") || expected == "a map" {
        "a mapping (`key: value`)"
    } else if matches!(expected, "u8" | "u16" | "u32" | "u64" | "usize") {
        "a whole number"
    } else if expected == "a sequence" {
        "a list (`[a, b]` or `- ` items)"
    } else if expected == "a boolean" {
        "`true` or `false`"
    } else if expected.contains("YAML tag") {
        "one of the documented words"
    } else {
        expected
    };
    format!("{head}{words}")
}

/// Removes `at line N column M` (serde_yaml appends it; we report it separately).
fn strip_marks(message: &str) -> String {
    let mut out = message.to_string();
    while let Some(start) = out.find(" at line ") {
        let rest = &out[start + " at line ".len()..];
        let digits = |s: &str| s.chars().take_while(char::is_ascii_digit).count();
        let n = digits(rest);
        let Some(after_col) = rest[n..].strip_prefix(" column ") else {
            break;
        };
        let m = digits(after_col);
        let end = start + " at line ".len() + n + " column ".len() + m;
        out.replace_range(start..end, "");
    }
    out
}

fn fix_for(message: &str) -> String {
    let expected = message
        .find(", expected ")
        .map(|i| &message[i + ", expected ".len()..]);
    if message.contains("unknown field") {
        match expected {
            Some(keys) => format!(
                "remove this key or correct its spelling; the keys accepted here are {}",
                keys.trim_start_matches("one of ")
            ),
            None => "remove this key: nothing is accepted here".into(),
        }
    } else if message.contains("unknown value") {
        match expected {
            Some(values) => format!("use {values}"),
            None => "use one of the documented values".into(),
        }
    } else if let Some(i) = message.find("missing field `") {
        let name = message[i + "missing field `".len()..]
            .split('`')
            .next()
            .unwrap_or_default();
        format!("add the required key `{name}` here")
    } else if message.contains("duplicate field") || message.contains("duplicate entry") {
        "write each key only once in a mapping".into()
    } else if message.contains("invalid type") || message.contains("invalid value") {
        match expected {
            Some(what) => format!("give {what} here"),
            None => "give a value of the documented type here".into(),
        }
    } else {
        "check the YAML syntax here: indentation, a `:` after each key, a `- ` before list \
         items, and quotes around values that contain `: ` or ` #`"
            .into()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::config::testing::*;
    use crate::config::{
        Accept, HostPattern, Language, Policy, SecondStep, SmtpSecurity, TwoStepMethod,
    };
    use ipnet::IpNet;
    use std::path::PathBuf;
    use std::time::Duration;

    #[test]
    fn minimal_config_gets_the_documented_defaults() {
        let c = load_t(MINIMAL).unwrap();
        assert_eq!(c.server.listen, vec!["127.0.0.1:8080".parse().unwrap()]);
        assert!(
            c.server.tls.is_none()
                && c.server.admin_listen.is_none()
                && c.server.admin_token.is_none()
        );
        assert_eq!(c.server.threads, 2);
        assert_eq!(c.server.grace_period, Duration::from_secs(5));
        assert_eq!(c.portal.path_prefix, "/_nidan");
        assert_eq!(c.portal.default_language, Language::Ja);
        assert_eq!(c.portal.title, "nidan");
        assert_eq!(c.portal.recent_login, Duration::from_secs(300));
        assert_eq!(c.portal.flow_lifetime, Duration::from_secs(600));
        assert_eq!(c.session.idle_timeout, Duration::from_secs(1800));
        assert_eq!(c.session.absolute_timeout, Duration::from_secs(12 * 3600));
        assert_eq!(c.session.cookie_name, "nidan_session");
        assert_eq!(c.trusted_devices.lifetime, Duration::from_secs(30 * 86400));
        assert_eq!(c.trusted_devices.max_per_user, 10);
        assert_eq!(c.trusted_devices.cookie_name, "nidan_device");
        assert_eq!(c.trusted_devices.signing_keys[0].id, "k1");
        assert_eq!(
            c.trusted_devices.signing_keys[0].secret.expose(),
            DEVICE_KEY.as_bytes()
        );
        assert_eq!(c.security_code.length, 6);
        assert_eq!(c.security_code.lifetime, Duration::from_secs(300));
        assert_eq!(c.security_code.max_attempts, 5);
        assert_eq!(c.security_code.resend_cooldown, Duration::from_secs(30));
        assert_eq!(c.security_code.max_sends_per_account, 5);
        assert_eq!(c.security_code.send_window, Duration::from_secs(900));
        assert_eq!(c.security_code.max_sends_per_ip, 20);
        assert_eq!(c.security_code.max_sends_global_per_hour, 1000);
        assert_eq!(c.login_limits.max_failures_per_account, 100);
        assert_eq!(c.login_limits.free_failures, 5);
        assert_eq!(c.login_limits.base_delay, Duration::from_secs(1));
        assert_eq!(c.login_limits.max_delay, Duration::from_secs(900));
        assert!(c.login_limits.max_concurrent_hashes >= 1);
        assert!(
            c.notifiers.email.is_none()
                && c.notifiers.sms.is_none()
                && c.notifiers.outbox.is_none()
        );
        assert_eq!(c.users.file, PathBuf::from("/etc/nidan/users.yaml"));
        assert_eq!(c.users.reload_interval, Duration::from_secs(2));
        assert!(!c.users.default_two_step);
        assert_eq!(c.users.default_method, TwoStepMethod::Sms);
        assert_eq!(c.storage.sqlite_path, PathBuf::from("/etc/nidan/nidan.db"));
        assert_eq!(c.identity_headers.user, "Remote-User");
        assert_eq!(c.identity_headers.groups, "Remote-Groups");
        assert!(c.trusted_proxies.is_empty());
        let r = &c.routes[0];
        assert_eq!(r.name, "app");
        assert_eq!(r.hosts, vec![HostPattern::Any]);
        assert_eq!(r.path_prefix, "/");
        assert_eq!(r.upstreams[0].addr, "127.0.0.1:3000".parse().unwrap());
        assert!(!r.upstreams[0].tls);
        assert_eq!(r.policy, Policy::Login);
        assert_eq!(r.second_step, SecondStep::Required);
        assert_eq!(
            r.accept,
            Accept {
                session: true,
                basic: false,
                token: false
            }
        );
        assert!(r.groups.is_empty());
        assert_eq!(
            r.allowed_methods,
            vec![TwoStepMethod::Sms, TwoStepMethod::Email, TwoStepMethod::App]
        );
    }

    /// Switches on the example's commented-out keys: an indented `# key:` or `# - key:`
    /// becomes `key:` at the column of the `#`.
    fn uncommented(text: &str) -> String {
        let mut out = String::new();
        for line in text.lines() {
            let indent = line.len() - line.trim_start().len();
            let rest = line.trim_start().strip_prefix("# ").unwrap_or("");
            let key = rest.trim_start();
            let key = key.strip_prefix("- ").unwrap_or(key);
            let name_len = key
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                .count();
            let is_key = indent > 0 && name_len > 0 && key[name_len..].starts_with(':');
            if is_key {
                out.push_str(&" ".repeat(indent));
                out.push_str(rest);
            } else {
                out.push_str(line);
            }
            out.push('\n');
        }
        out
    }

    #[test]
    fn the_annotated_example_loads() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("secrets")).unwrap();
        std::fs::create_dir_all(d.join("tls")).unwrap();
        std::fs::create_dir_all(d.join("brand")).unwrap();
        std::fs::write(
            d.join("brand/logo.svg"),
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1\" height=\"1\"/>",
        )
        .unwrap();
        std::fs::write(
            d.join("secrets/device-k1"),
            "k1-secret-0123456789-0123456789-0123456789\n",
        )
        .unwrap();
        std::fs::write(d.join("secrets/admin-token"), "admin-token\n").unwrap();
        std::fs::write(d.join("secrets/smtp-password"), "smtp-password\r\n").unwrap();
        std::fs::write(d.join("tls/cert.pem"), "cert").unwrap();
        std::fs::write(d.join("tls/key.pem"), "key").unwrap();
        // With the parts shown commented out (they need files and variables a fresh
        // checkout lacks) switched on, every key of the example is loaded.
        let text = uncommented(&std::fs::read_to_string(manifest("config/nidan.yaml")).unwrap());
        assert!(text.contains("\n  tls: "), "{text}");
        let source = d.join("nidan.yaml");
        std::fs::write(&source, &text).unwrap();
        let c = match load_with_env(&text, &source, &test_env) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.source, source);
        assert_eq!(c.server.tls.as_ref().unwrap().cert, d.join("tls/cert.pem"));
        assert_eq!(
            c.server.admin_token.as_ref().unwrap().expose(),
            b"admin-token"
        );
        let keys = &c.trusted_devices.signing_keys;
        assert_eq!(keys.len(), 2);
        assert_eq!(
            keys[0].secret.expose(),
            b"k1-secret-0123456789-0123456789-0123456789"
        );
        assert_eq!(keys[1].secret.expose(), DEVICE_KEY.as_bytes());
        let email = c.notifiers.email.as_ref().unwrap();
        assert_eq!(email.security, SmtpSecurity::StartTls);
        assert_eq!(email.password.as_ref().unwrap().expose(), b"smtp-password");
        let sms = c.notifiers.sms.as_ref().unwrap();
        assert_eq!(
            sms.headers,
            vec![("Authorization".to_string(), "Bearer {secret}".to_string())]
        );
        assert_eq!(sms.success_status, vec![200, 201, 202]);
        assert_eq!(
            sms.secret.as_ref().unwrap().expose(),
            b"sms-token-for-tests"
        );
        assert_eq!(
            c.notifiers.outbox.as_ref().unwrap().path,
            Some(d.join("outbox.jsonl"))
        );
        assert_eq!(c.users.file, d.join("users.example.yaml"));
        assert_eq!(c.storage.sqlite_path, d.join("nidan.db"));
        assert_eq!(
            c.trusted_proxies,
            vec!["10.0.0.0/8".parse::<IpNet>().unwrap()]
        );
        assert_eq!(c.routes.len(), 5);
        let sync = &c.routes[1];
        assert!(sync.upstreams[0].tls);
        assert_eq!(sync.upstreams[0].sni, "10.0.0.5");
        assert_eq!(sync.second_step, SecondStep::Exempt);
        assert_eq!(
            sync.accept,
            Accept {
                session: true,
                basic: true,
                token: true
            }
        );
        assert_eq!(c.routes[2].groups, vec!["admins".to_string()]);
        assert_eq!(
            c.routes[2].allowed_methods,
            vec![TwoStepMethod::App, TwoStepMethod::Sms]
        );
        assert_eq!(
            c.routes[0].hosts,
            vec![HostPattern::Suffix("example.org".into())]
        );
        assert_eq!(c.routes[4].policy, Policy::Deny);
        assert!(c.routes[4].upstreams.is_empty());
    }

    #[test]
    fn each_broken_example_is_placed_and_explained() {
        // (file, line, column, words in the message)
        let cases = [
            (
                "broken-unknown-key.yaml",
                4,
                3,
                "unknown field `idle_timout`",
            ),
            (
                "broken-duration.yaml",
                5,
                21,
                "`session.absolute_timeout` is not a duration",
            ),
            (
                "broken-cidr.yaml",
                7,
                5,
                "`trusted_proxies[1]` is not an IP network",
            ),
            (
                "broken-upstream.yaml",
                7,
                34,
                "`routes[0].upstream[1]` is not a usable upstream: the port is missing",
            ),
            (
                "broken-shadowed-route.yaml",
                10,
                5,
                "route wiki can never match: route all (line 6) catches every request it would",
            ),
            (
                "broken-missing-secret.yaml",
                6,
                20,
                "cannot read the secret file",
            ),
        ];
        for (name, line, column, words) in cases {
            let path = manifest(&format!("config/test/{name}"));
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                text.starts_with("# broken: "),
                "{name}: line 1 must say what is wrong"
            );
            let errs = match load_with_env(&text, &path, &test_env) {
                Ok(_) => panic!("{name} loaded"),
                Err(e) => e.0,
            };
            assert_eq!(errs.len(), 1, "{name}: {errs:?}");
            let e = &errs[0];
            assert_eq!((e.line, e.column), (line, column), "{name}: {e}");
            assert!(e.message.contains(words), "{name}: {e}");
            assert!(!e.fix.is_empty(), "{name}");
            assert_eq!(e.file, path);
        }
    }

    #[test]
    fn unknown_key_lists_the_accepted_keys() {
        let e = &errors(&with("session:\n  idle_timout: 30m\n"))[0];
        assert_eq!((e.line, e.column), (3, 3));
        assert!(
            e.message.contains("session: unknown field `idle_timout`"),
            "{e}"
        );
        assert!(
            e.fix
                .contains("`idle_timeout`, `absolute_timeout`, `cookie_name`"),
            "{e}"
        );
        assert!(!e.message.contains("at line"), "{e}");
        let e = &errors(&with("sesion: {}\n"))[0];
        assert!(
            e.fix.contains("`session`") && e.fix.contains("`routes`"),
            "{e}"
        );
    }

    #[test]
    fn wrong_values_for_enums_and_types_are_placed() {
        let e = &errors(&with("portal: { default_language: fr }\n"))[0];
        assert_eq!(e.line, 2);
        assert!(e.message.contains("unknown value"), "{e}");
        assert_eq!(e.fix, "use `ja` or `en`");
        let e = &errors(&with("server:\n  threads: many\n"))[0];
        assert_eq!((e.line, e.column), (3, 12));
        assert!(
            e.message
                .contains("invalid type: string, expected a whole number"),
            "{e}"
        );
        assert_eq!(e.fix, "give a whole number here");
        let e = &errors("version: 1\nroutes:\n  - a\n")[0];
        assert!(
            e.message
                .ends_with("routes[0]: invalid type: string, expected a mapping (`key: value`)"),
            "{e}"
        );
        let e = &errors("routes: []\n")[0];
        assert!(e.message.contains("missing field `version`"), "{e}");
        assert!(e.fix.contains("add the required key `version`"), "{e}");
        let e = &errors("version: 1\nroutes: [\n")[0];
        assert!(e.line >= 2, "{e}");
        assert!(e.fix.contains("YAML syntax"), "{e}");
        let e = &errors("  \n")[0];
        assert!(e.message.contains("empty"), "{e}");
        let e = &errors(&MINIMAL.replace("version: 1", "version: 2"))[0];
        assert_eq!((e.line, e.column), (1, 10));
    }

    #[test]
    fn all_semantic_errors_are_reported_in_file_order() {
        let text = with(
            "session:\n  idle_timeout: soon\n\
             security_code:\n  length: 11\n  max_attempts: 9\n  lifetime: 11m\n\
             trusted_proxies: [\"10.0.0.0/8\", \"nope\"]\n\
             login_limits: { max_failures_per_account: 0 }\n",
        )
        .replace("\"127.0.0.1:3000\"", "\"127.0.0.1:http\"");
        let errs = errors(&text);
        let got: Vec<(usize, usize)> = errs.iter().map(|e| (e.line, e.column)).collect();
        assert_eq!(
            got,
            vec![
                (3, 17),
                (5, 11),
                (6, 17),
                (7, 13),
                (8, 33),
                (9, 43),
                (13, 29)
            ],
            "{errs:#?}"
        );
        assert!(errs[1].fix.contains("from 6 to 10"));
        assert!(errs[2].fix.contains("from 1 to 5"));
        assert!(errs[3].fix.contains("at most 10m"));
        assert!(errs[5].fix.contains("from 1 to 100"));
        let shown = ConfigErrors(errs).to_string();
        assert_eq!(shown.lines().count(), 14);
        assert!(shown.starts_with(
            "/etc/nidan/nidan.yaml:3:17: `session.idle_timeout` is not a duration\n  fix: "
        ));
    }

    #[test]
    fn secret_values_never_appear_in_errors() {
        const SECRET: &str = "TOPSECRET-zq9";
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("short-key"), format!("{SECRET}\n")).unwrap();
        let source = dir.path().join("nidan.yaml");
        let keyed = MINIMAL.replace(
            "secret_env: NIDAN_TEST_DEVICE_KEY",
            "secret_file: short-key",
        );
        let docs = [
            // Too short to sign with: the error names the key, not the content.
            keyed.clone(),
            // The secret pasted where other values belong.
            keyed.replace("policy: login", &format!("policy: {SECRET}")),
            keyed.replace("policy: login", &format!("policy: \"{SECRET}\"")),
            format!("server: {{ threads: \"{SECRET}\" }}\n{keyed}"),
            format!("server: {{ threads: [{SECRET}] }}\n{keyed}"),
            format!("server: {{ listen: [\"{SECRET}\"] }}\n{keyed}"),
            format!("{keyed}trusted_proxies: [{SECRET}]\n"),
            format!("session: {{ idle_timeout: {SECRET} }}\n{keyed}"),
            keyed.replace("[\"127.0.0.1:3000\"]", &format!("[\"{SECRET}\"]")),
            keyed.replace(
                "name: app",
                &format!("name: app, hosts: [\"{SECRET}.example/\"]"),
            ),
            format!("{keyed}users: {{ default_method: {{ {SECRET}: 1 }} }}\n"),
            format!("server: {{ admin_token_env: {SECRET} }}\n{keyed}"),
        ];
        for doc in docs {
            let doc = doc.replacen("version: 1\n", "", 1);
            let doc = format!("version: 1\n{doc}");
            match load_with_env(&doc, &source, &test_env) {
                Ok(_) => panic!("loaded:\n{doc}"),
                Err(e) => {
                    let shown = format!("{e} {e:?}");
                    assert!(!shown.contains(SECRET), "secret echoed: {shown}");
                    assert!(!shown.contains("zq9"), "secret echoed: {shown}");
                }
            }
        }
    }

    #[test]
    fn other_sections_are_checked() {
        let e = &errors(&with("portal: { path_prefix: /_nidan/ }\n"))[0];
        assert!(e.message.contains("portal.path_prefix"), "{e}");
        for bad in ["/", "_nidan", "/a//b", "/a/../b", "/a b"] {
            assert!(
                load_t(&with(&format!("portal: {{ path_prefix: \"{bad}\" }}\n"))).is_err(),
                "{bad}"
            );
        }
        assert_eq!(
            load_t(&with("portal: { path_prefix: /auth/x }\n"))
                .unwrap()
                .portal
                .path_prefix,
            "/auth/x"
        );
        let e = &errors(&with("session: { cookie_name: nidan_device }\n"))[0];
        assert!(e.message.contains("same as"), "{e}");
        let e = &errors(&with("identity_headers: { name: remote-user }\n"))[0];
        assert!(e.message.contains("same header"), "{e}");
        let e = &errors(&with("server: { listen: [] }\n"))[0];
        assert!(e.message.contains("listen nowhere"), "{e}");
        let e = &errors(&with(
            "server: { tls: { listen: [\"0.0.0.0:8443\"], cert: no.pem, key: no.pem } }\n",
        ));
        assert_eq!(e.len(), 2);
        assert!(e[0].message.contains("/etc/nidan/no.pem"), "{}", e[0]);
        let c = load_t(&with(
            "notifiers: { email: { host: mail, security: tls, from: a@b.c }, outbox: {} }\n",
        ))
        .unwrap();
        assert_eq!(c.notifiers.email.as_ref().unwrap().port, 465);
        assert!(c.notifiers.outbox.as_ref().unwrap().console);
        let e = errors(&with("notifiers: { email: { username: u } }\n"));
        assert_eq!(e.len(), 3, "{e:?}");
        let c = load_t(&with("notifiers: { sms: { url: \"https://x\" } }\n")).unwrap();
        let sms = c.notifiers.sms.unwrap();
        assert_eq!(sms.success_status.len(), 100);
        assert_eq!(sms.method, "POST");
        assert_eq!(sms.content_type, "application/x-www-form-urlencoded");
        let c = load_t(&with("login_limits: { max_concurrent_hashes: 3 }\n")).unwrap();
        assert_eq!(c.login_limits.max_concurrent_hashes, 3);
    }

    #[test]
    fn upstream_timeouts_and_health_checks_are_checked() {
        let route =
            |extra: &str| MINIMAL.replace("policy: login }", &format!("policy: login, {extra} }}"));
        let c = load_t(MINIMAL).unwrap();
        let u = &c.routes[0].upstream;
        assert_eq!(u, &crate::config::UpstreamSettings::default());
        assert_eq!(u.connect_timeout, Duration::from_secs(5));
        assert!(u.health_check.is_none());
        let c = load_t(&route(
            "connect_timeout: 1s, read_timeout: 2m, fail_timeout: 3s, health_check: { path: /healthz, interval: 2s }",
        ))
        .unwrap();
        let u = &c.routes[0].upstream;
        assert_eq!(u.read_timeout, Duration::from_secs(120));
        assert_eq!(u.fail_timeout, Duration::from_secs(3));
        let h = u.health_check.as_ref().unwrap();
        assert_eq!(
            (
                h.path.as_str(),
                h.interval,
                h.timeout,
                h.healthy,
                h.unhealthy
            ),
            (
                "/healthz",
                Duration::from_secs(2),
                Duration::from_secs(2),
                2,
                2
            )
        );
        // Each mistake is placed and explained; nothing is guessed.
        let e = &errors(&route("connect_timeout: 0s"))[0];
        assert!(e.message.contains("routes[0].connect_timeout"), "{e}");
        let e = &errors(&route("health_check: { path: healthz }"))[0];
        assert!(
            e.message.contains("routes[0].health_check.path") && e.fix.contains("/healthz"),
            "{e}"
        );
        let e = &errors(&route("health_check: { interval: 1s, timeout: 2s }"))[0];
        assert!(e.message.contains("longer than the interval"), "{e}");
        let e = &errors(&route("health_check: { unhealthy: 0 }"))[0];
        assert!(e.fix.contains("from 1 to 100"), "{e}");
        let e = &errors(&route("health_check: { path: /, every: 1s }"))[0];
        assert!(e.message.contains("every"), "{e}");
        assert_eq!((e.line, e.column > 0), (5, true), "{e}");
    }

    #[test]
    fn unreadable_file_names_it() {
        let e = load(Path::new("/nonexistent/nidan.yaml")).unwrap_err();
        assert_eq!((e.0[0].line, e.0[0].column), (0, 0));
        assert!(e.to_string().contains("/nonexistent/nidan.yaml"), "{e}");
    }

    #[test]
    fn redaction_keeps_keys_and_drops_values() {
        assert_eq!(
            redact("invalid type: string \"a\\\"b\", expected u64"),
            "invalid type: string, expected u64"
        );
        assert_eq!(
            redact("routes[0].policy: unknown variant `s3cr`t`, expected one of `a`, `b`"),
            "routes[0].policy: unknown value, expected one of `a`, `b`"
        );
        assert_eq!(
            strip_marks("x at line 3 column 14, y at line 1 column 1"),
            "x, y"
        );
    }
}
