//! Provisioning through the admin API (issue 24): `PUT`, `PATCH`, `GET` and `DELETE
//! /admin/users/{id}`, and `GET /admin/users?after=ID&limit=N`. A thin edge: the body is
//! read into the users file's entry (`users::file::UserDoc`) and checked by the same code
//! as the users file; the write and its consequences are `Accounts`'. With a users file
//! the writes answer 409 (the file is the operator's).
// An edge's refusals are its answers: they are returned as they are sent.
#![allow(clippy::result_large_err)]

use http::Response;
use pingora::protocols::http::ServerSession;
use serde_json::{Map, Value, json};

use super::api::{body, error};
use super::reply;
use crate::app::App;
use crate::users::file::{UserDoc, check_one};
use crate::users::{DirectoryError, User};

/// Pages of `GET /admin/users` hold at most this many users.
pub const MAX_PAGE: usize = 1000;
const DEFAULT_PAGE: usize = 100;

/// Keys a body may not hold (the ID is the path's).
const NOT_IN_BODY: &[&str] = &["id"];

/// What a user looks like in answers: every field but the password hash.
pub fn user_json(u: &User) -> Value {
    json!({
        "id": u.id,
        "name": u.name,
        "email": u.email,
        "phone": u.phone,
        "phone_status": crate::users::database::status_str(u.phone_status),
        "groups": u.groups,
        "disabled": u.disabled,
        "two_step": u.two_step.map(|(enabled, m)| json!({"enabled": enabled, "method": m.as_str()})),
    })
}

fn client_ip(session: &ServerSession) -> String {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map_or_else(String::new, |a| a.ip().to_string())
}

fn invalid(field: &str, message: &str, fix: &str) -> Response<Vec<u8>> {
    invalid_all(&[(field.to_owned(), message.to_owned(), fix.to_owned())])
}

fn invalid_all(errors: &[(String, String, String)]) -> Response<Vec<u8>> {
    let (field, message, _) = errors.first().cloned().unwrap_or_default();
    reply(
        400,
        "application/json",
        json!({
            "error": "invalid",
            "field": field,
            "message": message,
            "errors": errors.iter().map(|(f, m, x)| json!({"field": f, "message": m, "fix": x})).collect::<Vec<_>>(),
        })
        .to_string(),
    )
}

/// The answer to a directory error.
fn failed(e: &DirectoryError) -> Response<Vec<u8>> {
    match e {
        DirectoryError::Unavailable(_) | DirectoryError::Busy => {
            tracing::error!(error = %e, "the user directory could not be used");
            error(
                503,
                "unavailable",
                "the user directory could not be reached; try again",
            )
        }
        DirectoryError::ReadOnly(m) => error(409, "read_only", m),
        DirectoryError::NotFound => error(404, "not_found", "no such user"),
        DirectoryError::Invalid { field, message } => invalid(field, message, ""),
    }
}

/// 409 unless the directory takes writes.
fn writable(app: &App) -> Option<Response<Vec<u8>>> {
    (!app.accounts.users.writes().users)
        .then(|| error(409, "read_only", crate::users::source::FILE_IS_READ_ONLY))
}

/// The ID in the path, percent-decoded.
fn path_id(raw: &str) -> Option<String> {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

async fn json_object(session: &mut ServerSession) -> Result<Map<String, Value>, Response<Vec<u8>>> {
    let json_body = session
        .req_header()
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    if !json_body {
        return Err(error(
            415,
            "json_required",
            "send Content-Type: application/json",
        ));
    }
    let raw = body(session).await?;
    match serde_json::from_slice::<Value>(&raw) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(invalid(
            "",
            "the body is not a JSON object",
            "send {\"password\" or \"password_hash\", \"name\"?, \"email\"?, \"phone\"?, \"phone_status\"?, \"groups\"?, \"disabled\"?, \"two_step\"?}",
        )),
    }
}

/// Checks an entry (`doc` holds every field, `password_hash` possibly a placeholder):
/// the users file's rules, then the plain password, if one was sent, hashed.
async fn checked(
    app: &App,
    id: &str,
    mut doc: Map<String, Value>,
    password: Option<String>,
) -> Result<User, Response<Vec<u8>>> {
    doc.insert("id".into(), Value::String(id.to_owned()));
    if password.is_some() {
        doc.insert("password_hash".into(), Value::String(PLACEHOLDER.into()));
    }
    let doc: UserDoc = serde_json::from_value(Value::Object(doc)).map_err(|e| {
        let message = e.to_string();
        let field = message.split('`').nth(1).unwrap_or_default().to_owned();
        invalid(&field, &message, "see the admin API in docs/directory.md")
    })?;
    let mut user = check_one(doc).map_err(|errs| invalid_all(&errs))?;
    if let Some(p) = password {
        user.password_hash = app
            .login
            .hasher
            .hash(&p)
            .await
            .map_err(|_| failed(&DirectoryError::Busy))?;
    }
    Ok(user)
}

/// A well-formed stand-in, checked in place of a password's hash before it is made.
const PLACEHOLDER: &str = "$argon2id$v=19$m=19456,t=2,p=1$cGxhY2Vob2xkZXI$cGxhY2Vob2xkZXI";

/// Takes the plain `password` out of a body (checked for length), refusing a body with
/// both or neither when `required`.
fn take_password(
    doc: &mut Map<String, Value>,
    required: bool,
) -> Result<Option<String>, Response<Vec<u8>>> {
    for key in NOT_IN_BODY {
        if doc.contains_key(*key) {
            return Err(invalid(
                key,
                "the ID is the path's, not the body's",
                "remove `id` from the body",
            ));
        }
    }
    let password = match doc.remove("password") {
        None => None,
        Some(Value::String(p))
            if !p.is_empty() && p.len() <= crate::login::password::MAX_PASSWORD_BYTES =>
        {
            Some(p)
        }
        Some(_) => {
            return Err(invalid(
                "password",
                "the password is not a string of 1 to 1024 bytes",
                "send the password as a JSON string",
            ));
        }
    };
    match (&password, doc.contains_key("password_hash")) {
        (Some(_), true) => Err(invalid(
            "password",
            "send `password` or `password_hash`, not both",
            "remove one of them",
        )),
        (None, false) if required => Err(invalid(
            "password",
            "a user needs `password` (hashed by nidan) or `password_hash` (an argon2id PHC string)",
            "add one of them",
        )),
        _ => Ok(password),
    }
}

/// `PUT /admin/users/{id}`: create or replace.
pub async fn put(app: &App, session: &mut ServerSession, raw_id: &str) -> Response<Vec<u8>> {
    if let Some(r) = writable(app) {
        return r;
    }
    let Some(id) = path_id(raw_id) else {
        return invalid(
            "id",
            "the ID is not UTF-8",
            "use 1 to 64 letters, digits, `.`, `_`, `@` or `-`",
        );
    };
    let mut doc = match json_object(session).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let password = match take_password(&mut doc, true) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let user = match checked(app, &id, doc, password).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    write(app, session, user).await
}

/// `PATCH /admin/users/{id}`: the fields sent replace the user's (`null` clears an optional
/// one); the result is checked as a whole.
pub async fn patch(app: &App, session: &mut ServerSession, raw_id: &str) -> Response<Vec<u8>> {
    if let Some(r) = writable(app) {
        return r;
    }
    let Some(id) = path_id(raw_id) else {
        return error(404, "not_found", "no such user");
    };
    let mut changes = match json_object(session).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let password = match take_password(&mut changes, false) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let current = match app.accounts.directory_user(&id).await {
        Ok(Some(u)) => u,
        Ok(None) => return error(404, "not_found", "no such user"),
        Err(e) => return failed(&e),
    };
    let Ok(Value::Object(mut doc)) = serde_json::to_value(UserDoc::of(&current)) else {
        return failed(&DirectoryError::Unavailable(
            "the user could not be read".into(),
        ));
    };
    for (k, v) in changes {
        if v.is_null() {
            doc.remove(&k);
        } else {
            doc.insert(k, v);
        }
    }
    let user = match checked(app, &id, doc, password).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    write(app, session, user).await
}

async fn write(app: &App, session: &ServerSession, user: User) -> Response<Vec<u8>> {
    let ip = client_ip(session);
    match app.accounts.put_user(&user, &ip).await {
        Ok(w) => {
            let mut out = user_json(&user);
            out["created"] = Value::Bool(w.created);
            reply(
                if w.created { 201 } else { 200 },
                "application/json",
                out.to_string(),
            )
        }
        Err(e) => failed(&e),
    }
}

/// `GET /admin/users/{id}`: the user, never the hash.
pub async fn get(app: &App, raw_id: &str) -> Response<Vec<u8>> {
    let Some(id) = path_id(raw_id) else {
        return error(404, "not_found", "no such user");
    };
    match app.accounts.directory_user(&id).await {
        Ok(Some(u)) => reply(200, "application/json", user_json(&u).to_string()),
        Ok(None) => error(404, "not_found", "no such user"),
        Err(e) => failed(&e),
    }
}

/// `DELETE /admin/users/{id}`.
pub async fn delete(app: &App, session: &ServerSession, raw_id: &str) -> Response<Vec<u8>> {
    if let Some(r) = writable(app) {
        return r;
    }
    let Some(id) = path_id(raw_id) else {
        return error(404, "not_found", "no such user");
    };
    match app.accounts.delete_user(&id, &client_ip(session)).await {
        Ok(_) => reply(200, "application/json", json!({"deleted": id}).to_string()),
        Err(e) => failed(&e),
    }
}

/// `GET /admin/users?after=ID&limit=N`: a page in ID order, and where the next one starts.
pub async fn list(app: &App, session: &ServerSession) -> Response<Vec<u8>> {
    let query = session.req_header().uri.query().unwrap_or("");
    let (mut after, mut limit) = (String::new(), DEFAULT_PAGE);
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "after" => after = v.into_owned(),
            "limit" => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => limit = n,
                _ => {
                    return invalid(
                        "limit",
                        "`limit` is not a number from 1 to 1000",
                        "send e.g. `limit=100`",
                    );
                }
            },
            _ => {}
        }
    }
    match app.accounts.users.page(&after, limit).await {
        Ok(users) => {
            let next = (users.len() == limit)
                .then(|| users.last().map(|u| u.id.clone()))
                .flatten();
            let users: Vec<Value> = users.iter().map(|u| user_json(u)).collect();
            reply(
                200,
                "application/json",
                json!({"users": users, "next": next}).to_string(),
            )
        }
        Err(e) => failed(&e),
    }
}
