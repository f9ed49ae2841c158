//! Login approval in the phone app: approvals with number matching (SECURITY 10–12), the
//! fatigue limits (one pending per account, a few per window, a pause after "this wasn't
//! me"), enrollment of an app's Ed25519 key, and the signature check on every app request
//! (fresh timestamp, single-use nonce: a captured request cannot be replayed).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::AppApproval;
use crate::secret;
use crate::state::{
    ApprovalRefusal, ApprovalStatus, Ephemeral, NewApproval, Settle, Settled, StateError,
    WindowRule,
};
use crate::store::{EnrollmentRecord, Store, StoreError};

/// How far an app request's timestamp may be from ours, in seconds.
const CLOCK_SKEW: i64 = 120;

/// What the app shows the user about the login it is asked to approve.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LoginContext {
    pub browser: String,
    pub ip: String,
    pub time: String,
    pub route: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Approved,
    Denied,
    Expired,
}

/// Why an approval was denied: the page says what happened and what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Denial {
    /// "No" in the app.
    Denied,
    /// The app sent another number than the one the browser showed.
    WrongNumber,
    /// "This wasn't me": app prompts are paused for the account.
    NotMe,
}

impl Denial {
    pub fn as_str(self) -> &'static str {
        match self {
            Denial::Denied => "denied",
            Denial::WrongNumber => "wrong_number",
            Denial::NotMe => "not_me",
        }
    }
}

impl Status {
    fn of(s: ApprovalStatus) -> (Self, Option<Denial>) {
        match s {
            ApprovalStatus::Pending => (Status::Pending, None),
            ApprovalStatus::Approved => (Status::Approved, None),
            ApprovalStatus::Denied => (Status::Denied, Some(Denial::Denied)),
            ApprovalStatus::WrongNumber => (Status::Denied, Some(Denial::WrongNumber)),
            ApprovalStatus::NotMe => (Status::Denied, Some(Denial::NotMe)),
            // A newer replica's answer this version cannot read: never a grant.
            ApprovalStatus::Unknown => (Status::Denied, Some(Denial::Denied)),
            ApprovalStatus::Expired => (Status::Expired, None),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Approval {
    pub id: String,
    pub flow_id: String,
    pub user_id: String,
    /// The two-digit number the browser shows and the app must send back.
    pub number: String,
    pub context: LoginContext,
    pub expires: i64,
    pub status: Status,
    /// Why it was denied, when it was.
    pub denial: Option<Denial>,
    /// The enrollment that answered.
    pub answered_by: Option<String>,
}

/// An approval's fixed fields, as stored in the short-lived state.
#[derive(Serialize, Deserialize)]
struct Fixed {
    id: String,
    flow_id: String,
    user_id: String,
    number: String,
    context: LoginContext,
    expires: i64,
}

impl Approval {
    fn status_at(&self, now: i64) -> Status {
        if self.status == Status::Pending && now >= self.expires {
            Status::Expired
        } else {
            self.status
        }
    }
}

/// Why no approval could be asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// "This wasn't me" paused prompts; seconds left.
    Suspended(u64),
    /// Too many approvals in the window; seconds until one is allowed.
    TooMany(u64),
}

/// The app's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Approve { number: String },
    Deny,
    NotMe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("no such approval is waiting")]
    NotFound,
    #[error("the approval is no longer waiting")]
    NotPending,
    #[error("the number does not match the one the browser shows")]
    WrongNumber,
    #[error("the server is busy; try again shortly")]
    Unavailable,
}

#[derive(Debug, thiserror::Error)]
pub enum AppAuthError {
    #[error("the request is not signed")]
    Unsigned,
    #[error("the request's time is too far from the server's")]
    Stale,
    #[error("the request was already used")]
    Replayed,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the app is not enrolled")]
    UnknownApp,
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the server is busy; try again shortly")]
    Unavailable,
}

/// A one-time enrollment ticket: the app presents its code together with a security code.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ticket {
    pub user_id: String,
    pub code: Option<crate::login::code::IssuedCode>,
    /// Unix seconds.
    pub expires: i64,
}

/// Approvals, the fatigue limits and enrollment tickets, in the short-lived state (so the
/// app may answer through any replica).
pub struct Approvals {
    cfg: AppApproval,
    store: Store,
    state: Arc<dyn Ephemeral>,
    per_window: WindowRule,
}

const NONCE_TTL: Duration = Duration::from_secs(2 * CLOCK_SKEW.unsigned_abs() + 10);

impl Approvals {
    pub fn new(cfg: AppApproval, store: Store, state: Arc<dyn Ephemeral>) -> Self {
        Self {
            per_window: WindowRule::new("approvals", cfg.max_per_window, cfg.window),
            cfg,
            store,
            state,
        }
    }

    pub fn config(&self) -> &AppApproval {
        &self.cfg
    }

    /// Is this User-Agent a feature phone's?
    pub fn is_feature_phone(&self, user_agent: &str) -> bool {
        self.cfg
            .feature_phone_patterns
            .iter()
            .any(|p| user_agent.contains(p.as_str()))
    }

    pub async fn has_app(&self, user_id: &str) -> bool {
        self.store
            .live_enrollments(user_id)
            .await
            .is_ok_and(|e| !e.is_empty())
    }

    /// Asks the user's app to approve the login of `flow_id`. Supersedes any approval
    /// still pending for the account, so at most one is pending (SECURITY 11).
    pub async fn create(
        &self,
        user_id: &str,
        flow_id: &str,
        context: LoginContext,
        now: i64,
    ) -> Result<Result<Approval, Refused>, StateError> {
        // Two digits, 10..=99, uniformly (no leading zero to misread).
        let number = loop {
            let d = secret::random_digits(2);
            if !d.starts_with('0') {
                break d;
            }
        };
        let lifetime = i64::try_from(self.cfg.lifetime.as_secs()).unwrap_or(120);
        let approval = Approval {
            id: secret::random_token(16),
            flow_id: flow_id.to_owned(),
            user_id: user_id.to_owned(),
            number,
            context,
            expires: now + lifetime,
            status: Status::Pending,
            denial: None,
            answered_by: None,
        };
        let data = serde_json::to_vec(&Fixed {
            id: approval.id.clone(),
            flow_id: approval.flow_id.clone(),
            user_id: approval.user_id.clone(),
            number: approval.number.clone(),
            context: approval.context.clone(),
            expires: approval.expires,
        })
        .map_err(|_| StateError::Corrupt)?;
        let made = self
            .state
            .approval_create(
                &NewApproval {
                    id: &approval.id,
                    user: user_id,
                    data: &data,
                    expires: approval.expires,
                    keep: self.cfg.lifetime + Duration::from_secs(600),
                    // The seal (`state::sealed`) fills the tags in.
                    tag: &[],
                    expired_tag: &[],
                },
                &self.per_window,
                now,
            )
            .await?;
        Ok(match made {
            Ok(()) => Ok(approval),
            Err(ApprovalRefusal::Suspended(s)) => Err(Refused::Suspended(s)),
            Err(ApprovalRefusal::TooMany(s)) => Err(Refused::TooMany(s)),
        })
    }

    /// The approval as it stands now.
    pub async fn get(&self, id: &str, now: i64) -> Result<Option<Approval>, StateError> {
        if id.len() > 64 {
            return Ok(None);
        }
        let Some(stored) = self.state.approval_get(id).await? else {
            return Ok(None);
        };
        let f: Fixed = serde_json::from_slice(&stored.data).map_err(|_| StateError::Corrupt)?;
        let (status, denial) = Status::of(stored.status);
        let mut a = Approval {
            id: f.id,
            flow_id: f.flow_id,
            user_id: f.user_id,
            number: f.number,
            context: f.context,
            expires: f.expires,
            status,
            denial,
            answered_by: stored.answered_by,
        };
        a.status = a.status_at(now);
        Ok(Some(a))
    }

    /// Ends an approval that is no longer wanted (the user switched to a code).
    pub async fn cancel(&self, id: &str, now: i64) -> Result<(), StateError> {
        self.state
            .approval_settle(&Settle {
                id,
                user: None,
                to: ApprovalStatus::Expired,
                answered_by: None,
                suspend: None,
                now,
                tag: &[],
            })
            .await
            .map(|_| ())
    }

    /// The user's pending approval, for the app (never the number).
    pub async fn pending(&self, user_id: &str, now: i64) -> Result<Vec<Approval>, StateError> {
        let Some(id) = self.state.approval_current(user_id).await? else {
            return Ok(Vec::new());
        };
        Ok(match self.get(&id, now).await? {
            // The pointer is only a hint: the approval itself names its user.
            Some(a) if a.status == Status::Pending && a.user_id == user_id => vec![a],
            _ => Vec::new(),
        })
    }

    /// The app answers an approval of its own user. Exactly one answer moves it on, even
    /// when several arrive at once through different replicas.
    pub async fn answer(
        &self,
        user_id: &str,
        enrollment: &str,
        id: &str,
        answer: &Answer,
        now: i64,
    ) -> Result<Status, AnswerError> {
        let a = self
            .get(id, now)
            .await
            .map_err(|_| AnswerError::Unavailable)?
            .ok_or(AnswerError::NotFound)?;
        if a.user_id != user_id {
            return Err(AnswerError::NotFound);
        }
        if a.status != Status::Pending {
            return Err(AnswerError::NotPending);
        }
        let pause = i64::try_from(self.cfg.suspend_after_denial.as_secs()).unwrap_or(900);
        // The stored status keeps why it was denied, for the browser's page.
        let (to, stored, suspend, wrong) = match answer {
            Answer::Approve { number } => {
                if secret::equal(number.trim().as_bytes(), a.number.as_bytes()) {
                    (Status::Approved, ApprovalStatus::Approved, None, false)
                } else {
                    // A wrong number ends the approval: guessing gets one try.
                    (Status::Denied, ApprovalStatus::WrongNumber, None, true)
                }
            }
            Answer::Deny => (Status::Denied, ApprovalStatus::Denied, None, false),
            Answer::NotMe => (
                Status::Denied,
                ApprovalStatus::NotMe,
                Some((now + pause, self.cfg.suspend_after_denial)),
                false,
            ),
        };
        let settled = self
            .state
            .approval_settle(&Settle {
                id,
                user: Some(user_id),
                to: stored,
                answered_by: Some(enrollment),
                suspend,
                now,
                tag: &[],
            })
            .await
            .map_err(|_| AnswerError::Unavailable)?;
        match settled {
            Settled::Done if wrong => Err(AnswerError::WrongNumber),
            Settled::Done => Ok(to),
            Settled::NotFound => Err(AnswerError::NotFound),
            Settled::NotPending => Err(AnswerError::NotPending),
        }
    }

    // --- enrollment -------------------------------------------------------------------

    /// Opens an enrollment for a user under a one-time enrollment code.
    pub async fn open_ticket(
        &self,
        enrollment_code: &str,
        user_id: &str,
        code: Option<crate::login::code::IssuedCode>,
        now: i64,
    ) -> Result<(), StateError> {
        let life = self.cfg.enrollment_lifetime;
        let ticket = Ticket {
            user_id: user_id.to_owned(),
            code,
            expires: now + i64::try_from(life.as_secs()).unwrap_or(600),
        };
        let bytes = serde_json::to_vec(&ticket).map_err(|_| StateError::Corrupt)?;
        self.state
            .put("ticket", &secret::token_hash(enrollment_code), &bytes, life)
            .await
    }

    /// Takes the ticket for an enrollment code out, if it is still open: one check at a
    /// time, however many replicas are asked at once. Put it back with `return_ticket`.
    pub async fn take_ticket(
        &self,
        enrollment_code: &str,
        now: i64,
    ) -> Result<Option<Ticket>, StateError> {
        if enrollment_code.len() > 64 {
            return Ok(None);
        }
        let Some(bytes) = self
            .state
            .take("ticket", &secret::token_hash(enrollment_code))
            .await?
        else {
            return Ok(None);
        };
        let t: Ticket = serde_json::from_slice(&bytes).map_err(|_| StateError::Corrupt)?;
        Ok((t.expires > now).then_some(t))
    }

    /// Puts a ticket back after a wrong code (its count of wrong tries kept).
    pub async fn return_ticket(
        &self,
        enrollment_code: &str,
        ticket: &Ticket,
        now: i64,
    ) -> Result<(), StateError> {
        let left = u64::try_from(ticket.expires - now).unwrap_or(0);
        if left == 0 {
            return Ok(());
        }
        let bytes = serde_json::to_vec(ticket).map_err(|_| StateError::Corrupt)?;
        self.state
            .put(
                "ticket",
                &secret::token_hash(enrollment_code),
                &bytes,
                Duration::from_secs(left),
            )
            .await
    }

    pub async fn enroll(
        &self,
        user_id: &str,
        name: &str,
        public_key: &[u8; 32],
        now: i64,
    ) -> Result<EnrollmentRecord, StoreError> {
        let rec = EnrollmentRecord {
            id: secret::random_token(16),
            user_id: user_id.to_owned(),
            name: name.to_owned(),
            public_key: URL_SAFE_NO_PAD.encode(public_key),
            created: now,
            last_used: now,
            revoked: false,
        };
        self.store.insert_enrollment(&rec).await?;
        Ok(rec)
    }

    /// Checks an app request's signature; returns the enrollment that signed it.
    pub async fn authenticate(
        &self,
        req: &SignedRequest<'_>,
        now: i64,
    ) -> Result<EnrollmentRecord, AppAuthError> {
        let (Some(app), Some(time), Some(nonce), Some(sig)) =
            (req.app, req.time, req.nonce, req.signature)
        else {
            return Err(AppAuthError::Unsigned);
        };
        let time: i64 = time.parse().map_err(|_| AppAuthError::Unsigned)?;
        if (time - now).abs() > CLOCK_SKEW || nonce.len() < 16 || nonce.len() > 64 || app.len() > 64
        {
            return Err(AppAuthError::Stale);
        }
        let rec = self
            .store
            .enrollment(app)
            .await?
            .ok_or(AppAuthError::UnknownApp)?;
        if rec.revoked {
            return Err(AppAuthError::UnknownApp);
        }
        let key_bytes: [u8; 32] = URL_SAFE_NO_PAD
            .decode(&rec.public_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(AppAuthError::UnknownApp)?;
        let key = VerifyingKey::from_bytes(&key_bytes).map_err(|_| AppAuthError::UnknownApp)?;
        let sig_bytes: [u8; 64] = URL_SAFE_NO_PAD
            .decode(sig)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(AppAuthError::BadSignature)?;
        let message = signing_input(req.method, req.path, time, nonce, req.body);
        key.verify(message.as_bytes(), &Signature::from_bytes(&sig_bytes))
            .map_err(|_| AppAuthError::BadSignature)?;
        // Only a verified request may use up a nonce.
        let nonce_key = format!("{app}:{nonce}");
        match self.state.claim_once("nonce", &nonce_key, NONCE_TTL).await {
            Ok(true) => {}
            Ok(false) => return Err(AppAuthError::Replayed),
            Err(_) => return Err(AppAuthError::Unavailable),
        }
        let _ = self.store.enrollment_used(&rec.id, now).await;
        Ok(rec)
    }
}

/// The parts of an app request that its signature covers.
pub struct SignedRequest<'a> {
    pub app: Option<&'a str>,
    pub time: Option<&'a str>,
    pub nonce: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub method: &'a str,
    /// The full path as sent, including the portal prefix, without the query.
    pub path: &'a str,
    pub body: &'a [u8],
}

/// The text an app signs: `nidan-app-v1`, method, path, time, nonce, SHA-256 of the body.
pub fn signing_input(method: &str, path: &str, time: i64, nonce: &str, body: &[u8]) -> String {
    format!(
        "nidan-app-v1\n{}\n{path}\n{time}\n{nonce}\n{}",
        method.to_ascii_uppercase(),
        hex::encode(Sha256::digest(body))
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use ed25519_dalek::{Signer, SigningKey};

    use super::*;
    use crate::config::ApprovalOrder;

    /// Rolling upgrades (issue 25): the records of today, kept as fixtures, still read —
    /// and with a field a newer version adds.
    #[test]
    fn stored_records_of_the_previous_format_still_read() {
        let fixed = include_str!("../../tests/it/fixtures/v1/approval-fixed.json");
        let f: Fixed = serde_json::from_str(fixed).unwrap();
        assert_eq!((f.user_id.as_str(), f.number.as_str()), ("jiro", "42"));
        assert_eq!(f.context.route, "wiki.example.com/");
        let mut v: serde_json::Value = serde_json::from_str(fixed).unwrap();
        v["added_later"] = serde_json::json!(1);
        v["context"]["device"] = serde_json::json!("new");
        assert!(serde_json::from_value::<Fixed>(v).is_ok());
        let old: serde_json::Value = serde_json::from_str(fixed).unwrap();
        assert_eq!(serde_json::to_value(&f).unwrap(), old, "written as it was");
        let ticket = include_str!("../../tests/it/fixtures/v1/enrollment-ticket.json");
        let t: Ticket = serde_json::from_str(ticket).unwrap();
        assert_eq!(t.user_id, "jiro");
        // A status a newer version writes is a refusal here.
        assert_eq!(
            Status::of(ApprovalStatus::Unknown),
            (Status::Denied, Some(Denial::Denied))
        );
    }

    fn cfg() -> AppApproval {
        AppApproval {
            order: ApprovalOrder::BeforePassword,
            lifetime: Duration::from_secs(120),
            max_per_window: 3,
            window: Duration::from_secs(600),
            suspend_after_denial: Duration::from_secs(900),
            enrollment_lifetime: Duration::from_secs(600),
            feature_phone_patterns: vec!["DoCoMo/".into()],
        }
    }

    fn ctx() -> LoginContext {
        LoginContext {
            browser: "Firefox on Linux".into(),
            ip: "127.0.0.1".into(),
            time: "now".into(),
            route: "app".into(),
        }
    }

    async fn approvals() -> (tempfile::TempDir, Approvals) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a.db")).await.unwrap();
        (
            dir,
            Approvals::new(
                cfg(),
                store,
                Arc::new(crate::state::memory::MemoryState::new()),
            ),
        )
    }

    #[tokio::test]
    async fn number_matching_and_single_use() {
        let (_d, a) = approvals().await;
        let ap = a.create("jiro", "f1", ctx(), 100).await.unwrap().unwrap();
        assert_eq!(ap.number.len(), 2);
        let wrong = if ap.number == "42" { "43" } else { "42" };
        assert_eq!(
            a.answer(
                "jiro",
                "e",
                &ap.id,
                &Answer::Approve {
                    number: wrong.into()
                },
                101
            )
            .await,
            Err(AnswerError::WrongNumber)
        );
        let denied = a.get(&ap.id, 101).await.unwrap().unwrap();
        assert_eq!(
            (denied.status, denied.denial),
            (Status::Denied, Some(Denial::WrongNumber))
        );
        let ap = a.create("jiro", "f2", ctx(), 102).await.unwrap().unwrap();
        assert_eq!(
            a.answer(
                "taro",
                "e",
                &ap.id,
                &Answer::Approve {
                    number: ap.number.clone()
                },
                103
            )
            .await,
            Err(AnswerError::NotFound)
        );
        assert_eq!(
            a.answer(
                "jiro",
                "e",
                &ap.id,
                &Answer::Approve {
                    number: ap.number.clone()
                },
                103
            )
            .await,
            Ok(Status::Approved)
        );
        assert_eq!(
            a.answer(
                "jiro",
                "e",
                &ap.id,
                &Answer::Approve {
                    number: ap.number.clone()
                },
                103
            )
            .await,
            Err(AnswerError::NotPending)
        );
    }

    #[tokio::test]
    async fn fatigue_limits() {
        let (_d, a) = approvals().await;
        let first = a.create("jiro", "f1", ctx(), 0).await.unwrap().unwrap();
        let second = a.create("jiro", "f2", ctx(), 1).await.unwrap().unwrap();
        assert_eq!(
            a.get(&first.id, 1).await.unwrap().unwrap().status,
            Status::Expired,
            "one pending per account"
        );
        assert_eq!(a.pending("jiro", 1).await.unwrap().len(), 1);
        a.create("jiro", "f3", ctx(), 2).await.unwrap().unwrap();
        assert!(matches!(
            a.create("jiro", "f4", ctx(), 3).await.unwrap(),
            Err(Refused::TooMany(_))
        ));
        let _ = second;
        let ap = a.create("hanako", "g1", ctx(), 0).await.unwrap().unwrap();
        a.answer("hanako", "e", &ap.id, &Answer::NotMe, 1)
            .await
            .unwrap();
        assert_eq!(
            a.create("hanako", "g2", ctx(), 2).await.unwrap().err(),
            Some(Refused::Suspended(899))
        );
        let denied = a.get(&ap.id, 200).await.unwrap().unwrap();
        assert_eq!(
            (denied.status, denied.denial),
            (Status::Denied, Some(Denial::NotMe))
        );
        let ap = a.create("emi", "h", ctx(), 0).await.unwrap().unwrap();
        assert_eq!(
            a.get(&ap.id, 120).await.unwrap().unwrap().status,
            Status::Expired
        );
    }

    #[tokio::test]
    async fn signed_requests_verify_once() {
        let (_d, a) = approvals().await;
        let key = SigningKey::from_bytes(&[9u8; 32]);
        let rec = a
            .enroll("jiro", "phone", &key.verifying_key().to_bytes(), 0)
            .await
            .unwrap();
        let body = b"{}";
        let msg = signing_input(
            "GET",
            "/_nidan/api/app/approvals",
            1_000,
            "nonce-nonce-nonce-1",
            body,
        );
        let sig = URL_SAFE_NO_PAD.encode(key.sign(msg.as_bytes()).to_bytes());
        let time = "1000".to_string();
        let req = SignedRequest {
            app: Some(&rec.id),
            time: Some(&time),
            nonce: Some("nonce-nonce-nonce-1"),
            signature: Some(&sig),
            method: "GET",
            path: "/_nidan/api/app/approvals",
            body,
        };
        assert_eq!(a.authenticate(&req, 1_010).await.unwrap().user_id, "jiro");
        assert!(matches!(
            a.authenticate(&req, 1_010).await,
            Err(AppAuthError::Replayed)
        ));
        assert!(matches!(
            a.authenticate(&req, 2_000).await,
            Err(AppAuthError::Stale)
        ));
        let other = SignedRequest {
            path: "/_nidan/api/app/approvals/x",
            nonce: Some("nonce-nonce-nonce-2"),
            ..req
        };
        assert!(matches!(
            a.authenticate(&other, 1_010).await,
            Err(AppAuthError::BadSignature)
        ));
    }
}
