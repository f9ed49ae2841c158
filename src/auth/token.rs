//! API tokens on proxied routes: `Authorization: Bearer <token>`, or the token as the
//! password of HTTP Basic, on routes whose `accept` lists `token`. A token counts as the
//! password alone, so it passes only where that is enough (see `Authenticator::password_alone`).

use std::net::IpAddr;

use serde_json::json;

use super::{Authenticator, CallerState, basic_credentials};
use crate::assurance::FirstFactor;
use crate::config::{Route, SecondStep};
use crate::tokens::{self, Check};

/// A token in the request: `(Basic user ID if sent that way, token)`.
pub fn presented(headers: &http::HeaderMap) -> Option<(Option<String>, String)> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some((None, rest.trim().to_owned()));
    }
    let (id, password) = basic_credentials(headers)?;
    tokens::looks_like_token(&password).then_some((Some(id), password))
}

impl Authenticator {
    pub(super) async fn token_caller(
        &self,
        route: &Route,
        basic_id: Option<&str>,
        presented: &str,
        client: IpAddr,
    ) -> CallerState {
        let ip = client.to_string();
        let rec = match tokens::check(&self.store, presented).await {
            Ok(Check::Valid(t)) => t,
            Ok(Check::Revoked(t)) => {
                self.audit
                    .record(
                        crate::audit::Event::TokenRejected,
                        &t.user_id,
                        &ip,
                        json!({"reason": "revoked", "token": t.id, "route": route.name}),
                    )
                    .await;
                return CallerState::BadBasic;
            }
            Ok(Check::Unknown) => return CallerState::BadBasic,
            Err(e) => {
                tracing::error!(error = %e, "API token check failed: refusing");
                return CallerState::Unavailable;
            }
        };
        let user = match self.accounts.active_user(&rec.user_id).await {
            Ok(Some(user)) => user,
            Ok(None) => return CallerState::BadBasic,
            Err(e) => {
                tracing::error!(error = %e, "user directory unreadable: refusing");
                return CallerState::Unavailable;
            }
        };
        if basic_id.is_some_and(|id| id != user.id) {
            return CallerState::BadBasic;
        }
        let state = match self.password_alone(route, &user, FirstFactor::Token).await {
            Ok(Some(proof)) => CallerState::Known(user, proof, None),
            Ok(None) => CallerState::BadBasic,
            Err(()) => return CallerState::Unavailable,
        };
        let now = crate::time::now();
        match &state {
            CallerState::Known(u, _, _) => {
                let first_in_a_while = self
                    .store
                    .token_used(&rec.id, now, now - tokens::USE_RECORD_INTERVAL)
                    .await
                    .unwrap_or(false);
                if first_in_a_while {
                    let exemption =
                        (route.second_step == SecondStep::Exempt).then_some("route_exempt");
                    self.audit
                        .record(
                            crate::audit::Event::TokenUsed,
                            &u.id,
                            &ip,
                            json!({"token": rec.id, "route": route.name, "exemption": exemption}),
                        )
                        .await;
                }
            }
            _ => {
                self.audit
                    .record(
                        crate::audit::Event::TokenRejected,
                        &rec.user_id,
                        &ip,
                        json!({"reason": "second_step_required", "token": rec.id, "route": route.name}),
                    )
                    .await;
            }
        }
        state
    }
}
