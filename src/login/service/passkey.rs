//! Passkey registration and login as `Login` methods.

use serde_json::{Value, json};

use crate::login::client::{Client, Completed};
use crate::login::passkey::{
    ALG_EDDSA, ALG_ES256, Assertion, CredentialJson, Expected, MAX_PER_USER, PasskeyError, Pending,
    Purpose, TIMEOUT_MS, WebAuthnError, b64, unb64, verify_assertion, verify_registration,
};
use crate::login::service::Login;
use crate::session::{NewSession, SessionError};
use crate::store::PasskeyRecord;
use crate::users::User;

impl Login {
    /// PublicKeyCredentialCreationOptions for a signed-in user.
    pub async fn passkey_register_start(
        &self,
        user: &User,
        session_hash: &str,
        rp_id: &str,
        origin: &str,
    ) -> Result<Value, PasskeyError> {
        let existing = self
            .store
            .user_passkeys(&user.id)
            .await
            .map_err(|_| PasskeyError::Unavailable)?;
        if existing.len() >= MAX_PER_USER {
            return Err(PasskeyError::Full);
        }
        // One random handle per user (not the ID: authenticators may show or sync it).
        let handle = existing.first().map_or_else(
            || crate::secret::random_token(32),
            |p| p.user_handle.clone(),
        );
        let challenge = self
            .passkeys
            .issue(&Pending {
                purpose: Purpose::Register {
                    user: user.id.clone(),
                    session: session_hash.to_owned(),
                    handle: handle.clone(),
                },
                rp_id: rp_id.to_owned(),
                origin: origin.to_owned(),
            })
            .await
            .map_err(|_| PasskeyError::Busy)?;
        let display = if user.name.trim().is_empty() {
            user.id.clone()
        } else {
            user.name.clone()
        };
        Ok(json!({
            "challenge": challenge,
            "rp": {"id": rp_id, "name": self.cfg.passkeys.rp_name},
            "user": {"id": handle, "name": user.id, "displayName": display},
            "pubKeyCredParams": [
                {"type": "public-key", "alg": ALG_ES256},
                {"type": "public-key", "alg": ALG_EDDSA},
            ],
            "timeout": TIMEOUT_MS,
            "attestation": "none",
            "authenticatorSelection": {
                "residentKey": "required",
                "requireResidentKey": true,
                "userVerification": "required",
            },
            "excludeCredentials": existing
                .iter()
                .map(|p| json!({"type": "public-key", "id": p.credential_id}))
                .collect::<Vec<_>>(),
        }))
    }

    /// Checks the browser's new credential and stores it under `name`.
    pub async fn passkey_register_finish(
        &self,
        user: &User,
        session_hash: &str,
        origin: &str,
        name: &str,
        cred: &CredentialJson,
        ip: &str,
    ) -> Result<PasskeyRecord, PasskeyError> {
        let (raw_cd, cd) = cred.client_data()?;
        let attestation = cred
            .response
            .attestation_object
            .as_deref()
            .and_then(unb64)
            .ok_or(PasskeyError::BadInput("attestationObject"))?;
        let fail = |e: WebAuthnError| PasskeyError::Failed(e);
        let pending = self
            .passkeys
            .take(&cd.challenge)
            .await
            .map_err(|_| PasskeyError::Busy)?
            .ok_or(fail(WebAuthnError::WrongChallenge))?;
        let (bound, handle) = match &pending.purpose {
            Purpose::Register {
                user: u,
                session,
                handle,
            } => (
                u == &user.id && crate::secret::equal(session.as_bytes(), session_hash.as_bytes()),
                handle.clone(),
            ),
            Purpose::Login { .. } => (false, String::new()),
        };
        let result = if !bound {
            Err(WebAuthnError::WrongChallenge)
        } else if !pending.origin.eq_ignore_ascii_case(origin) {
            Err(WebAuthnError::WrongOrigin)
        } else {
            verify_registration(
                &raw_cd,
                &attestation,
                &Expected {
                    typ: "webauthn.create",
                    challenge: &cd.challenge,
                    origin,
                    rp_id: &pending.rp_id,
                },
            )
        };
        let new = match result {
            Ok(n) => n,
            Err(e) => {
                self.audit
                    .record(
                        crate::audit::Event::PasskeyRefused,
                        &user.id,
                        ip,
                        json!({"reason": e.code()}),
                    )
                    .await;
                return Err(fail(e));
            }
        };
        let now = crate::time::now();
        let rec = PasskeyRecord {
            id: crate::secret::random_token(16),
            user_id: user.id.clone(),
            name: name.to_owned(),
            credential_id: b64(&new.id),
            user_handle: handle,
            public_key: new.cose_key,
            alg: new.alg,
            sign_count: new.sign_count,
            created: now,
            last_used: None,
        };
        match self.store.insert_passkey(&rec, MAX_PER_USER).await {
            Ok(crate::store::PasskeyInsert::Added) => {}
            Ok(crate::store::PasskeyInsert::Full) => return Err(PasskeyError::Full),
            Ok(crate::store::PasskeyInsert::Duplicate) => return Err(PasskeyError::Duplicate),
            Err(_) => return Err(PasskeyError::Unavailable),
        }
        self.audit
            .record(
                crate::audit::Event::PasskeyRegistered,
                &user.id,
                ip,
                json!({"passkey": rec.id, "alg": rec.alg}),
            )
            .await;
        Ok(rec)
    }

    /// PublicKeyCredentialRequestOptions for a discoverable-credential self.
    pub async fn passkey_login_start(
        &self,
        rp_id: &str,
        origin: &str,
        return_to: &str,
    ) -> Result<Value, PasskeyError> {
        let challenge = self
            .passkeys
            .issue(&Pending {
                purpose: Purpose::Login {
                    return_to: return_to.to_owned(),
                },
                rp_id: rp_id.to_owned(),
                origin: origin.to_owned(),
            })
            .await
            .map_err(|_| PasskeyError::Busy)?;
        Ok(json!({
            "challenge": challenge,
            "rpId": rp_id,
            "timeout": TIMEOUT_MS,
            "userVerification": "required",
            "allowCredentials": [],
        }))
    }

    /// Checks an assertion and, when it holds, signs the user in with both steps done.
    /// The passkey's user, if they may log in; a directory that cannot answer is 503.
    async fn passkey_user(
        &self,
        id: &str,
    ) -> Result<Option<std::sync::Arc<crate::users::User>>, PasskeyError> {
        self.accounts
            .active_user(id)
            .await
            .map_err(|_| PasskeyError::Unavailable)
    }

    pub async fn passkey_login_finish(
        &self,
        client: &Client,
        origin: &str,
        cred: &CredentialJson,
    ) -> Result<Completed, PasskeyError> {
        let ip = client.ip.to_string();
        let cred_id = cred.credential_id()?;
        let (raw_cd, cd) = cred.client_data()?;
        let field = |v: &Option<String>, what: &'static str| {
            v.as_deref()
                .and_then(unb64)
                .ok_or(PasskeyError::BadInput(what))
        };
        let signed = Assertion {
            client_data_json: &raw_cd,
            authenticator_data: &field(&cred.response.authenticator_data, "authenticatorData")?,
            signature: &field(&cred.response.signature, "signature")?,
        };
        // The challenge goes first, so a refused attempt cannot be retried with it.
        let pending = self
            .passkeys
            .take(&cd.challenge)
            .await
            .map_err(|_| PasskeyError::Busy)?;
        let Ok(Some(stored)) = self.store.passkey_by_credential(&b64(&cred_id)).await else {
            return Err(PasskeyError::Failed(WebAuthnError::NoCredential));
        };
        let user = self.passkey_user(&stored.user_id).await?;
        let inactive = user.is_none();
        let now = crate::time::now();
        let attempt = self
            .passkey_attempt(client, &stored.user_id, &ip, now)
            .await?;
        let expected = Expected {
            typ: "webauthn.get",
            challenge: &cd.challenge,
            origin,
            rp_id: pending.as_ref().map_or("", |p| p.rp_id.as_str()),
        };
        let handle = cred.response.user_handle.as_deref();
        let verdict = check_login_assertion(
            &signed,
            &expected,
            pending.as_ref(),
            user.is_some(),
            handle,
            &stored,
        );
        // The counter moves only from the value we checked (parallel replays lose the race).
        let verdict = match verdict {
            Ok(count) => match self
                .store
                .passkey_used(&stored.id, stored.sign_count, count, now)
                .await
            {
                Ok(true) => Ok(()),
                Ok(false) => Err(WebAuthnError::CounterNotIncreased),
                Err(_) => {
                    self.failures.abandon(attempt).await;
                    return Err(PasskeyError::Unavailable);
                }
            },
            Err(e) => Err(e),
        };
        let (Ok(()), Some(user), Some(pending)) = (verdict, user, pending) else {
            let reason = match verdict {
                _ if inactive => "account_inactive",
                Err(e) => e.code(),
                Ok(()) => "internal",
            };
            self.failures.failed(attempt, now).await;
            self.audit
                .record(
                    crate::audit::Event::LoginFailed,
                    &stored.user_id,
                    &ip,
                    json!({"reason": reason, "method": "passkey", "passkey": stored.id}),
                )
                .await;
            return Err(PasskeyError::Failed(
                verdict.err().unwrap_or(WebAuthnError::NoCredential),
            ));
        };
        let Ok(session_token) = self
            .passkey_session(client, &user, &stored.id, &ip, now)
            .await
        else {
            self.failures.abandon(attempt).await;
            return Err(PasskeyError::Busy);
        };
        self.failures.succeeded(attempt).await;
        let seen_token = self.remember_seen(&user.id, client, now).await;
        let redirect = match &pending.purpose {
            Purpose::Login { return_to } => return_to.clone(),
            Purpose::Register { .. } => "/".to_owned(),
        };
        Ok(Completed {
            user_id: user.id.clone(),
            session_token,
            device_token: None,
            seen_token,
            redirect,
        })
    }

    /// An attempt from the failure limiter for a passkey login. From a browser the account
    /// knows, strangers' failures do not delay it (SECURITY 40).
    async fn passkey_attempt(
        &self,
        client: &Client,
        user: &str,
        ip: &str,
        now: i64,
    ) -> Result<crate::login::limits::Attempt, PasskeyError> {
        let known =
            self.browser_of(user, client, now).await == crate::login::budget::Browser::Known;
        match self.failures.begin_as(user, known, now).await {
            Ok(a) => Ok(a),
            Err(crate::login::limits::Refusal::Busy) => Err(PasskeyError::Busy),
            Err(crate::login::limits::Refusal::Wait(wait)) => {
                self.audit
                    .record(
                        crate::audit::Event::LoginThrottled,
                        user,
                        ip,
                        json!({"retry_after": wait, "method": "passkey"}),
                    )
                    .await;
                Err(PasskeyError::Throttled(wait))
            }
        }
    }

    /// The session of a passkey login (user verification makes a passkey both steps at
    /// once), with its audit records; the cookie value.
    async fn passkey_session(
        &self,
        client: &Client,
        user: &User,
        passkey: &str,
        ip: &str,
        now: i64,
    ) -> Result<String, PasskeyError> {
        let methods = "passkey";
        let credential = self.accounts.credential(user).await.map_err(|e| {
            tracing::error!(error = %e, "a passkey login's credentials could not be read");
            PasskeyError::Unavailable
        })?;
        let (session_token, _) = self
            .sessions
            .create(
                NewSession {
                    user_id: &user.id,
                    proof: crate::assurance::Proof {
                        first: crate::assurance::FirstFactor::Passkey,
                        second: Some(crate::assurance::SecondFactor::Passkey),
                        exemption: None,
                        required: true,
                    },
                    methods: methods.to_owned(),
                    device_id: None,
                    ip,
                    user_agent: &client.user_agent,
                },
                &credential,
                now,
            )
            .await
            // Stale: this replica has not read the users file's change yet; soon it has.
            .map_err(|e| match e {
                SessionError::Stale => PasskeyError::Busy,
                SessionError::Store(e) => {
                    tracing::error!(error = %e, "a passkey login's session could not be stored");
                    PasskeyError::Unavailable
                }
            })?;
        self.audit
            .record(
                crate::audit::Event::SecondStepSkipped,
                &user.id,
                ip,
                json!({"reason": "passkey", "passkey": passkey}),
            )
            .await;
        self.audit
            .record(
                crate::audit::Event::LoginSucceeded,
                &user.id,
                ip,
                json!({"methods": methods, "method": "passkey", "passkey": passkey}),
            )
            .await;
        Ok(session_token)
    }
}

/// The verdict on a passkey login's assertion: the challenge was issued for a login from
/// this origin, the account may log in, the user handle is the credential's, and the
/// signature holds (the authenticator's new counter).
fn check_login_assertion(
    signed: &Assertion<'_>,
    expected: &Expected<'_>,
    pending: Option<&Pending>,
    active: bool,
    handle: Option<&str>,
    stored: &PasskeyRecord,
) -> Result<u32, WebAuthnError> {
    let handle_ok =
        handle.is_none_or(|h| crate::secret::equal(h.as_bytes(), stored.user_handle.as_bytes()));
    match pending {
        None => Err(WebAuthnError::WrongChallenge),
        Some(p) if !matches!(p.purpose, Purpose::Login { .. }) => {
            Err(WebAuthnError::WrongChallenge)
        }
        Some(p) if !p.origin.eq_ignore_ascii_case(expected.origin) => {
            Err(WebAuthnError::WrongOrigin)
        }
        Some(_) if !active || !handle_ok => Err(WebAuthnError::NoCredential),
        Some(_) => verify_assertion(signed, expected, &stored.public_key, stored.sign_count),
    }
}
