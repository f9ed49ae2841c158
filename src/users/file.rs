//! The users file: a YAML list of accounts, parsed and checked (password hashes are only
//! checked for shape here, never verified).

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use crate::config::ConfigErrors;
use crate::config::TwoStepMethod;
use crate::config::load::{Errors, parse_yaml, read_file};

/// Whether the phone number on file still reaches the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhoneStatus {
    /// In use: codes may be sent to it.
    Active,
    /// The user kept the number through a contract change.
    Kept,
    /// The number no longer belongs to the user: never send to it.
    Gone,
}

/// One account from the users file.
#[derive(Debug, Clone)]
pub struct UserEntry {
    pub id: String,
    /// PHC string, `$argon2id$...`.
    pub password_hash: String,
    /// Display name (defaults to the ID).
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub phone_status: PhoneStatus,
    pub groups: Vec<String>,
    pub disabled: bool,
    /// `(enabled, method)`; `None` means the configuration's default applies.
    pub two_step: Option<(bool, TwoStepMethod)>,
    /// What a backend is told about this user, made on first use ([`UserEntry::identity`]).
    pub identity: std::sync::OnceLock<std::sync::Arc<super::Identity>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersDoc {
    version: u32,
    #[serde(default)]
    users: Option<Vec<UserDoc>>,
}

/// One entry as written (in the users file, or as the admin API's body with the ID from the
/// path): checked by [`check_one`] or [`parse_users`], the same rules everywhere.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserDoc {
    pub id: String,
    pub password_hash: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_status: Option<PhoneStatusDoc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub two_step: Option<TwoStepDoc>,
}

impl UserDoc {
    /// The entry that describes `u` (checked again, it gives `u` back).
    pub fn of(u: &UserEntry) -> Self {
        Self {
            id: u.id.clone(),
            password_hash: u.password_hash.clone(),
            name: Some(u.name.clone()),
            email: u.email.clone(),
            phone: u.phone.clone(),
            phone_status: Some(match u.phone_status {
                PhoneStatus::Active => PhoneStatusDoc::Active,
                PhoneStatus::Kept => PhoneStatusDoc::Kept,
                PhoneStatus::Gone => PhoneStatusDoc::Gone,
            }),
            groups: Some(u.groups.clone()),
            disabled: Some(u.disabled),
            two_step: u.two_step.map(|(enabled, m)| TwoStepDoc {
                enabled,
                method: Some(match m {
                    TwoStepMethod::Sms => MethodDoc::Sms,
                    TwoStepMethod::Email => MethodDoc::Email,
                    TwoStepMethod::App => MethodDoc::App,
                }),
            }),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PhoneStatusDoc {
    Active,
    Kept,
    Gone,
}

#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MethodDoc {
    Sms,
    Email,
    App,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TwoStepDoc {
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<MethodDoc>,
}

/// Reads and checks the users file at `path`.
pub fn load_users(path: &Path) -> Result<Vec<UserEntry>, ConfigErrors> {
    let text = read_file(path, "users")?;
    parse_users(&text, path)
}

/// Parses and checks users-file `text` that came from `source` (for messages).
pub fn parse_users(text: &str, source: &Path) -> Result<Vec<UserEntry>, ConfigErrors> {
    let doc: UsersDoc = parse_yaml(text, source)?;
    let mut errors = Errors::new(text, source);
    if doc.version != 1 {
        errors.at(
            "version",
            format!("unsupported users file version {}", doc.version),
            "this nidan reads `version: 1`",
        );
    }
    let docs = doc.users.unwrap_or_default();
    let mut out: Vec<UserEntry> = Vec::with_capacity(docs.len());
    // Every well-formed ID seen so far with its entry's index, valid entry or not: a hash
    // set, so a million entries are checked in linear time.
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(docs.len());
    for (i, u) in docs.into_iter().enumerate() {
        if let Some(entry) = check_user(&mut errors, i, u, &mut seen) {
            out.push(entry);
        }
    }
    errors.finish().map(|()| out)
}

/// One entry that is not in a file (the admin API's body): checked by the same rules as
/// the users file's entries. The errors are (field, message, fix), the field as the entry
/// names it (`email`, `groups[1]`, `two_step`).
#[allow(clippy::type_complexity)]
pub fn check_one(doc: UserDoc) -> Result<UserEntry, Vec<(String, String, String)>> {
    let mut errors = Errors::new("", Path::new("-"));
    let mut seen = HashMap::new();
    match check_user(&mut errors, 0, doc, &mut seen) {
        Some(u) => Ok(u),
        None => Err(errors
            .by_field()
            .into_iter()
            .map(|(path, message, fix)| {
                let field = path.strip_prefix("users[0].").unwrap_or(&path).to_owned();
                (field, message, fix)
            })
            .collect()),
    }
}

fn id_ok(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'))
}

/// A PHC string for argon2id: `$argon2id$v=19$m=..,t=..,p=..$salt$hash` (no allocation:
/// it runs once per user at every load).
fn hash_ok(hash: &str) -> bool {
    hash.starts_with("$argon2id$")
        && hash.split('$').count() >= 5
        && hash.split('$').skip(1).all(|p| !p.is_empty())
        && !hash.chars().any(char::is_whitespace)
}

/// The group names, trimmed; false when one is empty.
fn check_groups(errors: &mut Errors, i: usize, list: Vec<String>) -> (Vec<String>, bool) {
    let mut ok = true;
    let mut groups = Vec::new();
    for (k, g) in list.into_iter().enumerate() {
        if g.trim().is_empty() {
            ok = false;
            errors.at(
                &format!("users[{i}].groups[{k}]"),
                "a group name is empty",
                "remove the entry or name a group",
            );
        } else {
            groups.push(g.trim().to_string());
        }
    }
    (groups, ok)
}

/// The user's 2-step setting (a method is needed to turn it on, and the method its contact
/// address); false when it is unusable.
fn check_two_step(
    errors: &mut Errors,
    i: usize,
    id: &str,
    doc: Option<TwoStepDoc>,
    has_phone: bool,
    has_email: bool,
) -> (Option<(bool, TwoStepMethod)>, bool) {
    let at = |key: &str| format!("users[{i}].{key}");
    let mut ok = true;
    let two_step = match doc {
        None => None,
        Some(TwoStepDoc {
            enabled,
            method: Some(m),
        }) => Some((enabled, method(m))),
        Some(TwoStepDoc {
            enabled: false,
            method: None,
        }) => Some((false, TwoStepMethod::Sms)),
        Some(TwoStepDoc {
            enabled: true,
            method: None,
        }) => {
            ok = false;
            errors.at(
                &at("two_step"),
                format!("user {id} enables two_step without a `method`"),
                "add `method: sms`, `method: email` or `method: app` to `two_step`",
            );
            None
        }
    };
    if let Some((true, m)) = two_step {
        let missing = match m {
            TwoStepMethod::Sms if !has_phone => Some("phone"),
            TwoStepMethod::Email if !has_email => Some("email"),
            _ => None,
        };
        if let Some(key) = missing {
            ok = false;
            errors.at(
                &at("two_step"),
                format!(
                    "user {} has two_step by {} but no `{key}`",
                    id,
                    if key == "phone" { "sms" } else { "email" }
                ),
                format!("add `{key}:` to the user, or choose another method"),
            );
        }
    }
    (two_step, ok)
}

/// An email address as far as the users file checks it: `local@domain.tld`, no spaces.
fn email_ok(e: &str) -> bool {
    e.split_once('@')
        .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.contains('@'))
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A phone number: 5 to 20 digits, with an optional `+`, spaces, `-` and parentheses.
fn phone_ok(p: &str) -> bool {
    let digits = p.bytes().filter(u8::is_ascii_digit).count();
    (5..=20).contains(&digits)
        && p.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b' ' | b'-' | b'(' | b')'))
}

fn check_user(
    errors: &mut Errors,
    i: usize,
    u: UserDoc,
    seen: &mut HashMap<String, usize>,
) -> Option<UserEntry> {
    let at = |key: &str| format!("users[{i}].{key}");
    let mut ok = true;
    if !id_ok(&u.id) {
        ok = false;
        errors.at(
            &at("id"),
            format!("`users[{i}].id` is not a usable user ID"),
            "use 1 to 64 letters, digits, `.`, `_`, `@` or `-`",
        );
    } else if let Some(k) = seen.get(&u.id) {
        ok = false;
        let line = errors.line_of(&format!("users[{k}]"));
        errors.at(
            &at("id"),
            format!("user ID {} is already used on line {line}", u.id),
            "give every user a unique ID, or remove the duplicate entry",
        );
    } else {
        seen.insert(u.id.clone(), i);
    }
    if !hash_ok(&u.password_hash) {
        ok = false;
        errors.at(
            &at("password_hash"),
            format!("the password hash of user {} is not an argon2id PHC string", u.id),
            "generate one with `nidan hash-password` and paste the whole `$argon2id$...` string in quotes",
        );
    }
    let name = match u.name.as_deref().map(str::trim) {
        None => u.id.clone(),
        Some("") => {
            ok = false;
            errors.at(
                &at("name"),
                format!("the name of user {} is empty", u.id),
                "write a display name or remove the key",
            );
            String::new()
        }
        Some(n) => n.to_string(),
    };
    let email = u.email.map(|e| e.trim().to_string());
    if let Some(e) = &email
        && !email_ok(e)
    {
        ok = false;
        errors.at(
            &at("email"),
            format!("the email of user {} is not an address", u.id),
            "write e.g. `taro@example.com`",
        );
    }
    let phone = u.phone.map(|p| p.trim().to_string());
    if let Some(p) = &phone
        && !phone_ok(p)
    {
        ok = false;
        errors.at(
            &at("phone"),
            format!("the phone number of user {} is not a phone number", u.id),
            "write digits with an optional leading `+`, spaces, `-` and parentheses, e.g. `+81 90-1234-5678`",
        );
    }
    let (groups, groups_ok) = check_groups(errors, i, u.groups.unwrap_or_default());
    ok &= groups_ok;
    let (two_step, two_step_ok) = check_two_step(
        errors,
        i,
        &u.id,
        u.two_step,
        phone.is_some(),
        email.is_some(),
    );
    ok &= two_step_ok;
    ok.then(|| UserEntry {
        id: u.id,
        password_hash: u.password_hash,
        name,
        email,
        phone,
        phone_status: match u.phone_status {
            None | Some(PhoneStatusDoc::Active) => PhoneStatus::Active,
            Some(PhoneStatusDoc::Kept) => PhoneStatus::Kept,
            Some(PhoneStatusDoc::Gone) => PhoneStatus::Gone,
        },
        groups,
        disabled: u.disabled.unwrap_or(false),
        two_step,
        identity: Default::default(),
    })
}

fn method(m: MethodDoc) -> TwoStepMethod {
    match m {
        MethodDoc::Sms => TwoStepMethod::Sms,
        MethodDoc::Email => TwoStepMethod::Email,
        MethodDoc::App => TwoStepMethod::App,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn contact_addresses() {
        assert!(email_ok("taro@example.com"));
        assert!(!email_ok("taro@localhost"));
        assert!(!email_ok("@example.com"));
        assert!(!email_ok("taro@a@example.com"));
        assert!(!email_ok("taro @example.com"));
        assert!(phone_ok("+81 90-1234-5678"));
        assert!(phone_ok("(03) 1234"));
        assert!(!phone_ok("1234"));
        assert!(!phone_ok("+81 90.1234.5678"));
        assert!(!phone_ok("123456789012345678901"));
    }

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA";

    fn parse(text: &str) -> Result<Vec<UserEntry>, ConfigErrors> {
        parse_users(text, Path::new("/etc/nidan/users.yaml"))
    }

    fn errors(text: &str) -> Vec<crate::config::ConfigError> {
        match parse(text) {
            Ok(_) => panic!("expected errors for:\n{text}"),
            Err(e) => e.0,
        }
    }

    fn user(extra: &str) -> String {
        format!("version: 1\nusers:\n  - id: taro\n    password_hash: \"{HASH}\"\n{extra}")
    }

    #[test]
    fn the_example_users_file_parses() {
        let path = std::path::PathBuf::from(
            std::env::var("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
        )
        .join("config/users.example.yaml");
        let users = load_users(&path).unwrap();
        assert_eq!(users.len(), 3);
        let taro = &users[0];
        assert_eq!(taro.id, "taro");
        assert_eq!(taro.name, "Taro Yamada");
        assert_eq!(taro.email.as_deref(), Some("taro@example.com"));
        assert_eq!(taro.phone.as_deref(), Some("+81 90-1234-5678"));
        assert_eq!(taro.phone_status, PhoneStatus::Active);
        assert_eq!(taro.groups, vec!["staff".to_string(), "admins".to_string()]);
        assert!(!taro.disabled);
        assert_eq!(taro.two_step, Some((true, TwoStepMethod::Sms)));
        assert_eq!(users[1].two_step, Some((true, TwoStepMethod::Email)));
        let guest = &users[2];
        assert_eq!(guest.name, "guest");
        assert!(guest.disabled && guest.two_step.is_none() && guest.email.is_none());
    }

    #[test]
    fn minimal_user_gets_defaults() {
        let users = parse(&user("")).unwrap();
        let u = &users[0];
        assert_eq!(u.name, "taro");
        assert_eq!(u.phone_status, PhoneStatus::Active);
        assert!(u.groups.is_empty() && !u.disabled && u.two_step.is_none());
        let users = parse(&user(
            "    phone: \"090 1234\"\n    phone_status: gone\n    two_step: { enabled: false }\n",
        ))
        .unwrap();
        assert_eq!(users[0].phone_status, PhoneStatus::Gone);
        assert_eq!(users[0].two_step, Some((false, TwoStepMethod::Sms)));
        assert!(parse("version: 1\n").unwrap().is_empty());
    }

    #[test]
    fn duplicate_ids_are_reported_at_the_second() {
        let text = format!(
            "{}  - id: hanako\n    password_hash: \"{HASH}\"\n  - id: taro\n    password_hash: \"{HASH}\"\n",
            user("")
        );
        let e = &errors(&text)[0];
        assert_eq!((e.line, e.column), (7, 9), "{e}");
        assert_eq!(e.message, "user ID taro is already used on line 3");
    }

    #[test]
    fn bad_entries_are_all_reported_without_echoing_hashes() {
        let text = "version: 1\nusers:\n  - id: \"bad id\"\n    password_hash: \"$2b$12$SECRETHASHVALUE\"\n    email: nope\n    phone: call me\n    two_step: { enabled: true }\n";
        let errs = errors(text);
        let places: Vec<(usize, usize)> = errs.iter().map(|e| (e.line, e.column)).collect();
        assert_eq!(
            places,
            vec![(3, 9), (4, 20), (5, 12), (6, 12), (7, 15)],
            "{errs:#?}"
        );
        let shown = ConfigErrors(errs).to_string();
        assert!(!shown.contains("SECRETHASHVALUE"), "{shown}");
        assert!(shown.contains("nidan hash-password"), "{shown}");
    }

    #[test]
    fn two_step_needs_a_way_to_reach_the_user() {
        let e = &errors(&user("    two_step: { enabled: true, method: sms }\n"))[0];
        assert!(e.message.contains("no `phone`"), "{e}");
        let e = &errors(&user("    two_step: { enabled: true, method: email }\n"))[0];
        assert!(e.message.contains("no `email`"), "{e}");
        assert!(parse(&user("    two_step: { enabled: true, method: app }\n")).is_ok());
    }

    #[test]
    fn structural_errors_are_placed() {
        let e = &errors(&user("    mail: x@example.com\n"))[0];
        assert_eq!((e.line, e.column), (5, 5));
        assert!(
            e.fix.contains("`email`") && e.fix.contains("`two_step`"),
            "{e}"
        );
        let e = &errors("version: 1\nusers:\n  - id: x\n")[0];
        assert!(e.message.contains("missing field `password_hash`"), "{e}");
        let e = &errors(&user("    phone_status: lost\n"))[0];
        assert_eq!(e.fix, "use one of `active`, `kept`, `gone`");
        let e = &errors(&user("").replace("version: 1", "version: 3"))[0];
        assert_eq!((e.line, e.column), (1, 10));
    }

    #[test]
    fn duplicates_are_found_in_linear_time_in_a_large_file() {
        use std::fmt::Write as _;
        let n = 50_000;
        let mut text = String::from("version: 1\nusers:\n");
        for i in 0..n {
            writeln!(text, "  - {{ id: u{i}, password_hash: \"{HASH}\" }}").unwrap();
        }
        let started = std::time::Instant::now();
        assert_eq!(parse(&text).unwrap().len(), n);
        writeln!(text, "  - {{ id: u7, password_hash: \"{HASH}\" }}").unwrap();
        let e = &errors(&text)[0];
        assert_eq!(e.message, "user ID u7 is already used on line 10");
        assert_eq!(e.line, n + 3);
        // Quadratic checking took minutes here; linear takes well under one.
        assert!(started.elapsed() < std::time::Duration::from_secs(60));
    }

    #[test]
    fn one_entry_is_checked_by_the_same_rules_with_its_fields_named() {
        let doc = |extra: &str| -> UserDoc {
            serde_yaml::from_str(&format!("{{ id: taro, password_hash: \"{HASH}\"{extra} }}"))
                .unwrap()
        };
        let u = check_one(doc(", name: Taro, groups: [staff]")).unwrap();
        assert_eq!((u.name.as_str(), u.groups.len()), ("Taro", 1));
        let errs = check_one(doc(", email: nope, groups: [a, \" \"]")).unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(fields, ["email", "groups[1]"]);
        // What it gives back describes the same user.
        let again = check_one(UserDoc::of(&u)).unwrap();
        assert_eq!((again.name, again.groups), (u.name, u.groups));
    }

    #[test]
    fn unreadable_file_names_it() {
        let e = load_users(Path::new("/nonexistent/users.yaml")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/users.yaml"), "{e}");
    }
}
