//! Login approval in the phone app: approvals with number matching (SECURITY 10–12), the
//! fatigue limits (one pending per account, a few per window, a pause after "this wasn't
//! me"), enrollment of an app's Ed25519 key, and the signature check on every app request
//! (fresh timestamp, single-use nonce: a captured request cannot be replayed).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use moka::future::Cache;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex as AsyncMutex;

use crate::config::AppApproval;
use crate::login::limits::Window;
use crate::secret;
use crate::store::{EnrollmentRecord, Store, StoreError};

/// How far an app request's timestamp may be from ours, in seconds.
const CLOCK_SKEW: i64 = 120;

/// What the app shows the user about the login it is asked to approve.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
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

impl Status {
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
    /// The enrollment that answered.
    pub answered_by: Option<String>,
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
}

/// A one-time enrollment ticket: the app presents its code together with a security code.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub user_id: String,
    pub code: Option<crate::login::code::IssuedCode>,
}

pub struct Approvals {
    cfg: AppApproval,
    store: Store,
    approvals: Cache<String, Arc<AsyncMutex<Approval>>>,
    /// The pending approval of each account (at most one).
    current: Cache<String, String>,
    per_window: Window,
    /// Accounts whose prompts are paused, until when (Unix seconds).
    suspended: Cache<String, i64>,
    nonces: Cache<String, ()>,
    tickets: Cache<String, Arc<AsyncMutex<Ticket>>>,
}

impl Approvals {
    pub fn new(cfg: AppApproval, store: Store) -> Self {
        let keep = cfg.lifetime + Duration::from_secs(600);
        Self {
            per_window: Window::new(cfg.max_per_window, cfg.window),
            approvals: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(keep)
                .build(),
            current: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(keep)
                .build(),
            suspended: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(cfg.suspend_after_denial.max(Duration::from_secs(1)))
                .build(),
            nonces: Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(Duration::from_secs(
                    u64::try_from(2 * CLOCK_SKEW + 10).unwrap_or(300),
                ))
                .build(),
            tickets: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(cfg.enrollment_lifetime)
                .build(),
            cfg,
            store,
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
    ) -> Result<Approval, Refused> {
        if let Some(until) = self.suspended.get(user_id).await
            && until > now
        {
            return Err(Refused::Suspended(u64::try_from(until - now).unwrap_or(1)));
        }
        self.per_window
            .hit(user_id, now)
            .map_err(Refused::TooMany)?;
        if let Some(old) = self.current.get(user_id).await
            && let Some(a) = self.approvals.get(&old).await
        {
            let mut a = a.lock().await;
            if a.status == Status::Pending {
                a.status = Status::Expired;
            }
        }
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
            answered_by: None,
        };
        self.approvals
            .insert(
                approval.id.clone(),
                Arc::new(AsyncMutex::new(approval.clone())),
            )
            .await;
        self.current
            .insert(user_id.to_owned(), approval.id.clone())
            .await;
        Ok(approval)
    }

    /// The approval as it stands now.
    pub async fn get(&self, id: &str, now: i64) -> Option<Approval> {
        let a = self.approvals.get(id).await?;
        let mut a = a.lock().await.clone();
        a.status = a.status_at(now);
        Some(a)
    }

    /// Ends an approval that is no longer wanted (the user switched to a code).
    pub async fn cancel(&self, id: &str) {
        if let Some(a) = self.approvals.get(id).await {
            let mut a = a.lock().await;
            if a.status == Status::Pending {
                a.status = Status::Expired;
            }
        }
    }

    /// The user's pending approval, for the app (never the number).
    pub async fn pending(&self, user_id: &str, now: i64) -> Vec<Approval> {
        let Some(id) = self.current.get(user_id).await else {
            return Vec::new();
        };
        match self.get(&id, now).await {
            Some(a) if a.status == Status::Pending => vec![a],
            _ => Vec::new(),
        }
    }

    /// The app answers an approval of its own user.
    pub async fn answer(
        &self,
        user_id: &str,
        enrollment: &str,
        id: &str,
        answer: &Answer,
        now: i64,
    ) -> Result<Status, AnswerError> {
        let slot = self.approvals.get(id).await.ok_or(AnswerError::NotFound)?;
        let mut a = slot.lock().await;
        if a.user_id != user_id {
            return Err(AnswerError::NotFound);
        }
        if a.status_at(now) != Status::Pending {
            return Err(AnswerError::NotPending);
        }
        a.answered_by = Some(enrollment.to_owned());
        match answer {
            Answer::Approve { number } => {
                if secret::equal(number.trim().as_bytes(), a.number.as_bytes()) {
                    a.status = Status::Approved;
                } else {
                    // A wrong number ends the approval: guessing gets one try.
                    a.status = Status::Denied;
                    return Err(AnswerError::WrongNumber);
                }
            }
            Answer::Deny => a.status = Status::Denied,
            Answer::NotMe => {
                a.status = Status::Denied;
                let pause = i64::try_from(self.cfg.suspend_after_denial.as_secs()).unwrap_or(900);
                self.suspended.insert(user_id.to_owned(), now + pause).await;
            }
        }
        Ok(a.status)
    }

    // --- enrollment -------------------------------------------------------------------

    /// Opens an enrollment for a user under a one-time enrollment code.
    pub async fn open_ticket(
        &self,
        enrollment_code: &str,
        user_id: &str,
        code: Option<crate::login::code::IssuedCode>,
    ) {
        let ticket = Ticket {
            user_id: user_id.to_owned(),
            code,
        };
        self.tickets
            .insert(
                secret::token_hash(enrollment_code),
                Arc::new(AsyncMutex::new(ticket)),
            )
            .await;
    }

    /// The ticket for an enrollment code, if it is still open.
    pub async fn ticket(&self, enrollment_code: &str) -> Option<Arc<AsyncMutex<Ticket>>> {
        if enrollment_code.len() > 64 {
            return None;
        }
        self.tickets.get(&secret::token_hash(enrollment_code)).await
    }

    pub async fn close_ticket(&self, enrollment_code: &str) {
        self.tickets
            .invalidate(&secret::token_hash(enrollment_code))
            .await;
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
        let entry = self.nonces.entry(nonce_key).or_insert(()).await;
        if !entry.is_fresh() {
            return Err(AppAuthError::Replayed);
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
        (dir, Approvals::new(cfg(), store))
    }

    #[tokio::test]
    async fn number_matching_and_single_use() {
        let (_d, a) = approvals().await;
        let ap = a.create("jiro", "f1", ctx(), 100).await.unwrap();
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
        assert_eq!(a.get(&ap.id, 101).await.unwrap().status, Status::Denied);
        let ap = a.create("jiro", "f2", ctx(), 102).await.unwrap();
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
        let first = a.create("jiro", "f1", ctx(), 0).await.unwrap();
        let second = a.create("jiro", "f2", ctx(), 1).await.unwrap();
        assert_eq!(
            a.get(&first.id, 1).await.unwrap().status,
            Status::Expired,
            "one pending per account"
        );
        assert_eq!(a.pending("jiro", 1).await.len(), 1);
        a.create("jiro", "f3", ctx(), 2).await.unwrap();
        assert!(matches!(
            a.create("jiro", "f4", ctx(), 3).await,
            Err(Refused::TooMany(_))
        ));
        let _ = second;
        let ap = a.create("hanako", "g1", ctx(), 0).await.unwrap();
        a.answer("hanako", "e", &ap.id, &Answer::NotMe, 1)
            .await
            .unwrap();
        assert_eq!(
            a.create("hanako", "g2", ctx(), 2).await.err(),
            Some(Refused::Suspended(899))
        );
        assert_eq!(a.get(&ap.id, 200).await.unwrap().status, Status::Denied);
        let ap = a.create("emi", "h", ctx(), 0).await.unwrap();
        assert_eq!(a.get(&ap.id, 120).await.unwrap().status, Status::Expired);
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
