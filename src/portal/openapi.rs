//! The OpenAPI 3.1 description of the JSON API (and the admin API), written by hand in
//! `openapi.yaml` and served as JSON at `{prefix}/api/openapi.json` with this deployment's
//! server URL. A test holds it to the dispatcher's table (`endpoints::ENDPOINTS`).

use std::sync::LazyLock;

use serde_json::Value;

use super::Ctx;
use super::http::Response;

const SOURCE: &str = include_str!("openapi.yaml");

/// The parsed description; `None` only if the file shipped broken (the tests parse it).
static DOCUMENT: LazyLock<Option<Value>> =
    LazyLock::new(|| serde_yaml::from_str::<Value>(SOURCE).ok());

/// The prefix the file is written with; each server URL under it is moved to the
/// configured one.
const WRITTEN_PREFIX: &str = "/_nidan";

/// The description for a portal under `prefix`.
pub fn document(prefix: &str) -> Option<Value> {
    let mut doc = DOCUMENT.as_ref()?.clone();
    rebase(&mut doc, prefix);
    Some(doc)
}

/// Moves every server URL written under [`WRITTEN_PREFIX`] (the document's and a path's
/// own) under `prefix`.
fn rebase(v: &mut Value, prefix: &str) {
    match v {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if key != "servers" {
                    rebase(child, prefix);
                    continue;
                }
                for server in child.as_array_mut().into_iter().flatten() {
                    let moved = server["url"]
                        .as_str()
                        .and_then(|u| u.strip_prefix(WRITTEN_PREFIX))
                        .map(|rest| format!("{prefix}{rest}"));
                    if let Some(url) = moved {
                        server["url"] = Value::String(url);
                    }
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| rebase(i, prefix)),
        _ => {}
    }
}

/// `GET {prefix}/api/openapi.json`.
pub fn serve(ctx: &Ctx<'_>) -> Response {
    match document(ctx.prefix()) {
        Some(doc) => Response::json(200, &doc),
        None => Response::json_error(500, "internal", "internal error"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::portal::endpoints::ENDPOINTS;

    const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

    fn doc() -> Value {
        document("/_nidan").expect("openapi.yaml parses")
    }

    /// Every (METHOD, path) the description has, with the path's tags.
    fn operations(doc: &Value) -> Vec<(String, String, Vec<String>)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for m in METHODS {
                if let Some(op) = item.get(m) {
                    let tags = op["tags"]
                        .as_array()
                        .map(|t| {
                            t.iter()
                                .filter_map(|v| v.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default();
                    out.push((m.to_uppercase(), path.clone(), tags));
                }
            }
        }
        out
    }

    #[test]
    fn describes_exactly_the_endpoints_the_api_answers() {
        let doc = doc();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["servers"][0]["url"], "/_nidan/api");
        // Forward-auth is answered by the request edge, the keys outside `/api`, the admin
        // API on its own listener: each is compared apart.
        let apart = ["admin", "forward-auth", "keys"];
        let described: BTreeSet<(String, String)> = operations(&doc)
            .into_iter()
            .filter(|(_, _, tags)| !tags.iter().any(|t| apart.contains(&t.as_str())))
            .map(|(m, p, _)| (m, p))
            .collect();
        let answered: BTreeSet<(String, String)> = ENDPOINTS
            .iter()
            .map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        let undocumented: Vec<_> = answered.difference(&described).collect();
        let unanswered: Vec<_> = described.difference(&answered).collect();
        assert!(
            undocumented.is_empty() && unanswered.is_empty(),
            "answered but not described: {undocumented:?}; described but not answered: {unanswered:?}"
        );
    }

    #[test]
    fn describes_forward_auth_and_the_keys_where_they_are_answered() {
        let doc = doc();
        let tagged = |tag: &str| -> Vec<String> {
            operations(&doc)
                .into_iter()
                .filter(|(_, _, tags)| tags.iter().any(|t| t == tag))
                .map(|(_, p, _)| p)
                .collect()
        };
        let edge = crate::proxy::forward_auth::PATH.strip_prefix("/api");
        assert_eq!(
            tagged("forward-auth"),
            vec![edge.unwrap_or_default().to_owned()]
        );
        assert_eq!(tagged("keys"), vec!["/.well-known/jwks.json".to_owned()]);
        let keys = &doc["paths"]["/.well-known/jwks.json"]["servers"][0]["url"];
        assert_eq!(keys, "/_nidan");
        assert_eq!(
            document("/auth").unwrap()["paths"]["/.well-known/jwks.json"]["servers"][0]["url"],
            "/auth"
        );
    }

    #[test]
    fn describes_exactly_the_admin_endpoints() {
        let admin: BTreeSet<(String, String)> = operations(&doc())
            .into_iter()
            .filter(|(_, _, tags)| tags.iter().any(|t| t == "admin"))
            .map(|(m, p, _)| (m, p))
            .collect();
        let answered: BTreeSet<(String, String)> = crate::admin::api::ENDPOINTS
            .iter()
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        assert_eq!(admin, answered);
    }

    #[test]
    fn every_operation_is_complete() {
        let doc = doc();
        let mut ids = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for m in METHODS {
                let Some(op) = item.get(m) else { continue };
                let id = op["operationId"].as_str().expect("operationId");
                assert!(ids.insert(id.to_owned()), "operationId {id} twice");
                assert!(op["summary"].is_string(), "{m} {path}: summary");
                let responses = op["responses"].as_object().expect("responses");
                assert!(
                    responses.keys().any(|k| k.starts_with('2')),
                    "{m} {path}: a success answer"
                );
                // Every `{name}` in the path is a declared path parameter.
                for name in path.split('/').filter_map(|s| s.strip_prefix('{')) {
                    let name = name.trim_end_matches('}');
                    let params = item["parameters"].as_array().cloned().unwrap_or_default();
                    let declared = params.iter().any(|p| {
                        let p = match p["$ref"].as_str() {
                            Some(r) => {
                                &doc["components"]["parameters"][r.rsplit('/').next().unwrap_or("")]
                            }
                            None => p,
                        };
                        p["name"] == name && p["in"] == "path"
                    });
                    assert!(declared, "{m} {path}: parameter {name}");
                }
            }
        }
    }
}
