//! Short-lived records that grant something carry a MAC (SECURITY 48): login flows (the
//! plan that decides whether a second step is needed), app approvals (their fixed fields,
//! and each status the gateway gives them) and single-use values (enrollment tickets,
//! passkey challenges). Both backends are wrapped here, so no call site can forget it.
//!
//! The key is derived from each trusted-device signing key (which every replica has and
//! Redis never sees) and named by its `kid`, so a key rotation does not void records
//! written a moment before. The MAC binds the deployment's key prefix, the kind of record,
//! its key and its content: someone who can write to Redis but holds no signing key can
//! neither forge nor edit a record, nor move one to another key. A record that fails — or
//! has no MAC at all (written by an older version) — is treated as absent and audited
//! (`short_lived_record_rejected`).
//!
//! What a MAC cannot stop: deleting a record, or putting back an earlier state of the same
//! record; both only refuse, or repeat what that record already allowed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{
    ApprovalRefusal, ApprovalStatus, Ephemeral, FailurePolicy, FailureTicket, Hit, NewApproval,
    Outcome, Reserve, Settle, Settled, StateError, StoredApproval, Versioned, WindowRule,
};
use crate::secret::hmac_sha256;

/// The audit event of a record that failed its MAC.
pub const REJECTED_EVENT: &str = "short_lived_record_rejected";

/// How every sealed record begins: a NUL byte is never the first byte of JSON, so a record
/// written by an older version is recognised as unsealed, never misread.
const MAGIC: &[u8; 4] = b"\0nr1";
const PURPOSE: &[u8] = b"nidan short-lived record v1";
const TAG_LEN: usize = 32;

/// Why a record was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broken {
    /// No MAC at all: an older version wrote it, or someone wrote it by hand.
    Unsealed,
    /// Sealed under a signing key this replica does not have.
    UnknownKey,
    /// The MAC does not match the content, kind and key.
    Mismatch,
}

impl Broken {
    pub fn as_str(self) -> &'static str {
        match self {
            Broken::Unsealed => "unsealed",
            Broken::UnknownKey => "unknown_key",
            Broken::Mismatch => "mismatch",
        }
    }
}

/// What a MAC binds besides the content: the class of record, its kind within the class
/// (a value's kind, an approval's status) and its key.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    pub class: &'static str,
    pub kind: &'a str,
    pub key: &'a str,
}

impl<'a> Binding<'a> {
    pub fn flow(id: &'a str) -> Self {
        Self {
            class: "flow",
            kind: "",
            key: id,
        }
    }

    pub fn approval(id: &'a str) -> Self {
        Self {
            class: "approval",
            kind: "",
            key: id,
        }
    }

    /// An approval's status (the sealed content is who answered, if anyone).
    pub fn approval_status(id: &'a str, status: ApprovalStatus) -> Self {
        Self {
            class: "approval status",
            kind: status.as_str(),
            key: id,
        }
    }

    pub fn value(kind: &'a str, key: &'a str) -> Self {
        Self {
            class: "value",
            kind,
            key,
        }
    }
}

/// The keys records are MACed with: one per signing key, by `kid`; the first seals.
#[derive(Clone)]
pub struct RecordKeys {
    /// The deployment's key prefix (records of another deployment are not ours).
    scope: String,
    current: Option<String>,
    keys: HashMap<String, [u8; 32]>,
}

fn framed(b: &[u8]) -> [u8; 8] {
    (b.len() as u64).to_be_bytes()
}

impl RecordKeys {
    pub fn new(signing_keys: &[crate::config::SigningKey], scope: &str) -> Self {
        Self {
            scope: scope.to_owned(),
            current: signing_keys.first().map(|k| k.id.clone()),
            keys: signing_keys
                .iter()
                .map(|k| (k.id.clone(), hmac_sha256(k.secret.expose(), &[PURPOSE])))
                .collect(),
        }
    }

    fn mac(&self, key: &[u8; 32], b: Binding<'_>, payload: &[u8]) -> [u8; 32] {
        let parts: [&[u8]; 4] = [
            self.scope.as_bytes(),
            b.class.as_bytes(),
            b.kind.as_bytes(),
            b.key.as_bytes(),
        ];
        let lens = parts.map(framed);
        hmac_sha256(
            key,
            &[
                &lens[0], parts[0], &lens[1], parts[1], &lens[2], parts[2], &lens[3], parts[3],
                payload,
            ],
        )
    }

    /// `payload` as a sealed record: magic, `kid`, MAC, payload.
    pub fn seal(&self, b: Binding<'_>, payload: &[u8]) -> Result<Vec<u8>, StateError> {
        let no_key = || StateError::Unavailable("no key to seal short-lived records".into());
        let kid = self.current.as_deref().ok_or_else(no_key)?;
        let key = self.keys.get(kid).ok_or_else(no_key)?;
        let kid_len = u16::try_from(kid.len()).map_err(|_| no_key())?;
        let mut out = Vec::with_capacity(MAGIC.len() + 2 + kid.len() + TAG_LEN + payload.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&kid_len.to_be_bytes());
        out.extend_from_slice(kid.as_bytes());
        out.extend_from_slice(&self.mac(key, b, payload));
        out.extend_from_slice(payload);
        Ok(out)
    }

    /// The payload of a record sealed for `b`, or why it is refused.
    pub fn open<'r>(&self, b: Binding<'_>, record: &'r [u8]) -> Result<&'r [u8], Broken> {
        let rest = record.strip_prefix(MAGIC).ok_or(Broken::Unsealed)?;
        let (len, rest) = rest.split_at_checked(2).ok_or(Broken::Mismatch)?;
        let kid_len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let (kid, rest) = rest.split_at_checked(kid_len).ok_or(Broken::Mismatch)?;
        let (tag, payload) = rest.split_at_checked(TAG_LEN).ok_or(Broken::Mismatch)?;
        let key = std::str::from_utf8(kid)
            .ok()
            .and_then(|k| self.keys.get(k))
            .ok_or(Broken::UnknownKey)?;
        if crate::secret::equal(&self.mac(key, b, payload), tag) {
            Ok(payload)
        } else {
            Err(Broken::Mismatch)
        }
    }
}

/// A backend behind the seal: what goes in is sealed, what comes out is opened, and what
/// fails is absent.
pub struct Sealed {
    inner: Arc<dyn Ephemeral>,
    keys: RecordKeys,
    audit: Option<Arc<dyn RejectLog>>,
}

/// Where a record that failed its MAC is reported: the audit trail, handed in by the
/// composition root (this module knows nothing above the state).
#[async_trait]
pub trait RejectLog: Send + Sync {
    async fn rejected(&self, detail: serde_json::Value);
}

impl Sealed {
    pub fn new(
        inner: Arc<dyn Ephemeral>,
        keys: RecordKeys,
        audit: Option<Arc<dyn RejectLog>>,
    ) -> Self {
        Self { inner, keys, audit }
    }

    /// Opens a record; a failure is logged, audited, and reads as absent.
    async fn open(&self, b: Binding<'_>, record: Vec<u8>) -> Option<Vec<u8>> {
        match self.keys.open(b, &record) {
            Ok(payload) => Some(payload.to_vec()),
            Err(why) => {
                self.rejected(b.class, why).await;
                None
            }
        }
    }

    async fn rejected(&self, class: &'static str, why: Broken) {
        // Neither the record's key (a flow ID is a bearer secret) nor its content.
        tracing::warn!(
            event = REJECTED_EVENT,
            record = class,
            reason = why.as_str(),
            "a short-lived record failed its MAC and is treated as absent"
        );
        if let Some(a) = &self.audit {
            a.rejected(serde_json::json!({"record": class, "reason": why.as_str()}))
                .await;
        }
    }
}

#[async_trait]
impl Ephemeral for Sealed {
    async fn flow_create(&self, id: &str, data: &[u8], ttl: Duration) -> Result<bool, StateError> {
        let sealed = self.keys.seal(Binding::flow(id), data)?;
        self.inner.flow_create(id, &sealed, ttl).await
    }

    async fn flow_load(&self, id: &str) -> Result<Option<Versioned>, StateError> {
        let Some(v) = self.inner.flow_load(id).await? else {
            return Ok(None);
        };
        Ok(self
            .open(Binding::flow(id), v.data)
            .await
            .map(|data| Versioned {
                version: v.version,
                data,
            }))
    }

    async fn flow_cas(&self, id: &str, version: u64, data: &[u8]) -> Result<bool, StateError> {
        let sealed = self.keys.seal(Binding::flow(id), data)?;
        self.inner.flow_cas(id, version, &sealed).await
    }

    async fn window_hit(&self, hits: &[Hit<'_>], now: i64) -> Result<Result<(), u64>, StateError> {
        self.inner.window_hit(hits, now).await
    }

    async fn failure_reserve(
        &self,
        account: &str,
        known: bool,
        policy: &FailurePolicy,
        now: i64,
    ) -> Result<Reserve, StateError> {
        self.inner
            .failure_reserve(account, known, policy, now)
            .await
    }

    async fn failure_seed(
        &self,
        account: &str,
        strangers: &[i64],
        known: &[i64],
        now: i64,
    ) -> Result<(), StateError> {
        self.inner
            .failure_seed(account, strangers, known, now)
            .await
    }

    async fn failure_settle(
        &self,
        ticket: &FailureTicket,
        outcome: Outcome,
        now: i64,
    ) -> Result<(), StateError> {
        self.inner.failure_settle(ticket, outcome, now).await
    }

    async fn approval_create(
        &self,
        new: &NewApproval<'_>,
        window: &WindowRule,
        now: i64,
    ) -> Result<Result<(), ApprovalRefusal>, StateError> {
        let id = new.id;
        let data = self.keys.seal(Binding::approval(id), new.data)?;
        let pending = self
            .keys
            .seal(Binding::approval_status(id, ApprovalStatus::Pending), b"")?;
        let expired = self
            .keys
            .seal(Binding::approval_status(id, ApprovalStatus::Expired), b"")?;
        let sealed = NewApproval {
            data: &data,
            tag: &pending,
            expired_tag: &expired,
            ..new.clone()
        };
        self.inner.approval_create(&sealed, window, now).await
    }

    async fn approval_get(&self, id: &str) -> Result<Option<StoredApproval>, StateError> {
        let Some(a) = self.inner.approval_get(id).await? else {
            return Ok(None);
        };
        let by = a.answered_by.as_deref().unwrap_or("").as_bytes();
        // A newer replica's status this version cannot name cannot be checked against its
        // MAC (the binding names the status); it only ever refuses, so it is taken as it is.
        let unknown = a.status == ApprovalStatus::Unknown;
        let status = match self
            .keys
            .open(Binding::approval_status(id, a.status), &a.tag)
        {
            Ok(sealed_by) if crate::secret::equal(sealed_by, by) => Ok(()),
            _ if unknown => Ok(()),
            Ok(_) => Err(Broken::Mismatch),
            Err(why) => Err(why),
        };
        if let Err(why) = status {
            self.rejected("approval", why).await;
            return Ok(None);
        }
        let Some(data) = self.open(Binding::approval(id), a.data).await else {
            return Ok(None);
        };
        Ok(Some(StoredApproval { data, ..a }))
    }

    async fn approval_current(&self, user: &str) -> Result<Option<String>, StateError> {
        // Only a pointer: the approval it names is sealed under its own ID and names its
        // user inside.
        self.inner.approval_current(user).await
    }

    async fn approval_settle(&self, s: &Settle<'_>) -> Result<Settled, StateError> {
        let by = s.answered_by.unwrap_or("");
        let tag = self
            .keys
            .seal(Binding::approval_status(s.id, s.to), by.as_bytes())?;
        self.inner
            .approval_settle(&Settle {
                tag: &tag,
                ..s.clone()
            })
            .await
    }

    async fn claim_once(&self, kind: &str, key: &str, ttl: Duration) -> Result<bool, StateError> {
        // Holds nothing: a nonce is claimed or not.
        self.inner.claim_once(kind, key, ttl).await
    }

    async fn put(
        &self,
        kind: &str,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), StateError> {
        let sealed = self.keys.seal(Binding::value(kind, key), value)?;
        self.inner.put(kind, key, &sealed, ttl).await
    }

    async fn take(&self, kind: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let Some(v) = self.inner.take(kind, key).await? else {
            return Ok(None);
        };
        Ok(self.open(Binding::value(kind, key), v).await)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::{Secret, SigningKey};
    use crate::state::memory::MemoryState;

    fn key(id: &str, secret: &[u8]) -> SigningKey {
        SigningKey {
            id: id.into(),
            secret: Secret(secret.to_vec()),
        }
    }

    fn keys() -> RecordKeys {
        RecordKeys::new(&[key("k1", b"0123456789abcdef0123456789abcdef")], "nidan")
    }

    #[test]
    fn a_record_opens_only_as_it_was_sealed() {
        let k = keys();
        let sealed = k.seal(Binding::flow("f1"), b"{\"plan\":1}").unwrap();
        assert_eq!(
            k.open(Binding::flow("f1"), &sealed),
            Ok(&b"{\"plan\":1}"[..])
        );
        // Edited content, another key, another class, another deployment: refused.
        let mut edited = sealed.clone();
        *edited.last_mut().unwrap() ^= 1;
        assert_eq!(k.open(Binding::flow("f1"), &edited), Err(Broken::Mismatch));
        assert_eq!(k.open(Binding::flow("f2"), &sealed), Err(Broken::Mismatch));
        assert_eq!(
            k.open(Binding::approval("f1"), &sealed),
            Err(Broken::Mismatch)
        );
        let other = RecordKeys::new(&[key("k1", b"0123456789abcdef0123456789abcdef")], "x");
        assert_eq!(
            other.open(Binding::flow("f1"), &sealed),
            Err(Broken::Mismatch)
        );
        // Values: the kind is bound as well as the key.
        let v = k.seal(Binding::value("ticket", "t"), b"v").unwrap();
        assert_eq!(
            k.open(Binding::value("challenge", "t"), &v),
            Err(Broken::Mismatch)
        );
        // What an older version wrote, or a hand-made record, or a cut one.
        assert_eq!(
            k.open(Binding::flow("f1"), b"{\"plan\":1}"),
            Err(Broken::Unsealed)
        );
        for cut in [6, 8, 20, sealed.len() - 11] {
            assert_eq!(
                k.open(Binding::flow("f1"), &sealed[..cut]),
                Err(Broken::Mismatch),
                "{cut}"
            );
        }
    }

    #[test]
    fn a_rotation_keeps_records_sealed_under_the_previous_key() {
        let old = keys();
        let sealed = old.seal(Binding::flow("f"), b"x").unwrap();
        let rotated = RecordKeys::new(
            &[
                key("k2", b"another-secret-0123456789abcdef-0123"),
                key("k1", b"0123456789abcdef0123456789abcdef"),
            ],
            "nidan",
        );
        assert_eq!(rotated.open(Binding::flow("f"), &sealed), Ok(&b"x"[..]));
        let new = rotated.seal(Binding::flow("f"), b"x").unwrap();
        assert_eq!(old.open(Binding::flow("f"), &new), Err(Broken::UnknownKey));
        // A kid of the right name with a made-up MAC is still refused.
        let forged = RecordKeys::new(&[key("k1", b"not-the-deployment-key-0123456789")], "nidan")
            .seal(Binding::flow("f"), b"x")
            .unwrap();
        assert_eq!(old.open(Binding::flow("f"), &forged), Err(Broken::Mismatch));
    }

    #[tokio::test]
    async fn what_is_written_beside_the_seal_reads_as_absent() {
        let inner = Arc::new(MemoryState::new());
        let s = Sealed::new(inner.clone(), keys(), None);
        let ttl = Duration::from_secs(60);
        // Flows: a real one reads back; an edited or moved one does not.
        assert!(s.flow_create("f1", b"real", ttl).await.unwrap());
        assert_eq!(s.flow_load("f1").await.unwrap().unwrap().data, b"real");
        assert!(inner.flow_cas("f1", 1, b"forged").await.unwrap());
        assert!(s.flow_load("f1").await.unwrap().is_none());
        assert!(s.flow_create("f2", b"two", ttl).await.unwrap());
        let two = inner.flow_load("f2").await.unwrap().unwrap().data;
        assert!(inner.flow_create("f3", &two, ttl).await.unwrap());
        assert!(s.flow_load("f3").await.unwrap().is_none(), "moved");
        // Values: moved to another key, or put there by hand.
        s.put("ticket", "t1", b"ticket", ttl).await.unwrap();
        let t1 = inner.take("ticket", "t1").await.unwrap().unwrap();
        inner.put("ticket", "t2", &t1, ttl).await.unwrap();
        assert!(s.take("ticket", "t2").await.unwrap().is_none());
        inner.put("ticket", "t3", b"plain", ttl).await.unwrap();
        assert!(s.take("ticket", "t3").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_approval_is_approved_only_by_the_gateway() {
        let inner = Arc::new(MemoryState::new());
        let s = Sealed::new(inner.clone(), keys(), None);
        let w = WindowRule::new("ap", 10, Duration::from_secs(600));
        let new = |id| NewApproval {
            id,
            user: "jiro",
            data: b"fixed",
            expires: 100,
            keep: Duration::from_secs(60),
            tag: &[],
            expired_tag: &[],
        };
        let settle = |id, to| Settle {
            id,
            user: Some("jiro"),
            to,
            answered_by: Some("app"),
            suspend: None,
            now: 1,
            tag: &[],
        };
        s.approval_create(&new("a1"), &w, 0).await.unwrap().unwrap();
        let a = s.approval_get("a1").await.unwrap().unwrap();
        assert_eq!(
            (a.status, a.data.as_slice()),
            (ApprovalStatus::Pending, &b"fixed"[..])
        );
        // Approved behind the seal's back (no tag, or the pending one): absent.
        inner
            .approval_settle(&settle("a1", ApprovalStatus::Approved))
            .await
            .unwrap();
        assert!(s.approval_get("a1").await.unwrap().is_none());
        // Through the seal: approved, and superseding keeps the superseded one readable.
        s.approval_create(&new("a2"), &w, 0).await.unwrap().unwrap();
        s.approval_create(&new("a3"), &w, 0).await.unwrap().unwrap();
        assert_eq!(
            s.approval_get("a2").await.unwrap().unwrap().status,
            ApprovalStatus::Expired
        );
        s.approval_settle(&settle("a3", ApprovalStatus::Approved))
            .await
            .unwrap();
        let a = s.approval_get("a3").await.unwrap().unwrap();
        assert_eq!(a.status, ApprovalStatus::Approved);
        assert_eq!(a.answered_by.as_deref(), Some("app"));
        // The approved tag of one approval does not approve another.
        s.approval_create(&new("a4"), &w, 0).await.unwrap().unwrap();
        let tag = inner.approval_get("a3").await.unwrap().unwrap().tag;
        inner
            .approval_settle(&Settle {
                tag: &tag,
                ..settle("a4", ApprovalStatus::Approved)
            })
            .await
            .unwrap();
        assert!(s.approval_get("a4").await.unwrap().is_none());
    }
}
