//! The store's contract, run against SQLite and against a fresh PostgreSQL database: every
//! test body below becomes `<name>::sqlite` and `<name>::postgres`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use super::testing::TestDb;
use super::*;

/// What a replica logs for a credential change: one event for cached Basic credentials,
/// one per kind of thing revoked.
fn log_events(r: &credentials::Revoked) -> Vec<String> {
    let mut v = vec!["basic".to_owned()];
    if !r.sessions.is_empty() {
        v.push(format!("sessions {}", r.sessions.join(",")));
    }
    if !r.devices.is_empty() {
        v.push(format!("devices {}", r.devices.join(",")));
    }
    v
}

/// A store of one backend for one test, with what must live as long as it.
struct Fixture {
    store: Store,
    _dir: Option<tempfile::TempDir>,
    _pg: Option<TestDb>,
}

async fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("c.db")).await.unwrap();
    Fixture {
        store,
        _dir: Some(dir),
        _pg: None,
    }
}

async fn postgres() -> Fixture {
    let pg = TestDb::create();
    let store = Store::open_postgres(&pg.url, 16, false).await.unwrap();
    assert!(store.is_postgres());
    Fixture {
        store,
        _dir: None,
        _pg: Some(pg),
    }
}

macro_rules! contract {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let f = super::sqlite().await;
                ($body)(f.store.clone()).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let f = super::postgres().await;
                ($body)(f.store.clone()).await;
            }
        }
    };
}

fn session(id: &str, user: &str, proof: Proof) -> SessionRecord {
    SessionRecord {
        id_hash: id.into(),
        user_id: user.into(),
        created: 10,
        auth_time: 10,
        last_seen: 10,
        expires: 1_000,
        proof,
        methods: "password+sms".into(),
        device_id: Some("d1".into()),
        ip: "192.0.2.1".into(),
        user_agent: "ua".into(),
        credential: None,
    }
}

fn device(id: &str, user: &str, created: i64) -> DeviceRecord {
    DeviceRecord {
        id: id.into(),
        user_id: user.into(),
        name: "laptop".into(),
        created,
        last_used: created,
        browser: "Firefox on Linux".into(),
        ip: "127.0.0.1".into(),
        expires: 1_000,
        revoked: false,
    }
}

fn token(id: &str, user: &str) -> TokenRecord {
    TokenRecord {
        id: id.into(),
        user_id: user.into(),
        name: format!("token {id}"),
        hash: format!("hash-{id}"),
        created: 5,
        last_used: None,
        revoked: false,
    }
}

fn passkey(id: &str, user: &str) -> PasskeyRecord {
    PasskeyRecord {
        id: id.into(),
        user_id: user.into(),
        name: format!("key {id}"),
        credential_id: format!("cred-{id}"),
        user_handle: "handle".into(),
        public_key: vec![0, 1, 2, 255],
        alg: -7,
        sign_count: 3,
        created: 7,
        last_used: None,
    }
}

contract!(sessions, |store: Store| async move {
    let sms = Proof {
        first: FirstFactor::Password,
        second: Some(SecondFactor::Sms),
        exemption: None,
        required: false,
    };
    let net = Proof {
        first: FirstFactor::Password,
        second: None,
        exemption: Some(Exemption::Network("10.0.0.0/8".parse().unwrap())),
        required: true,
    };
    store
        .insert_session(&session("h1", "taro", sms))
        .await
        .unwrap();
    let mut s2 = session("h2", "taro", net);
    s2.device_id = None;
    s2.created = 20;
    store.insert_session(&s2).await.unwrap();
    store
        .insert_session(&session("h3", "hanako", sms))
        .await
        .unwrap();

    let back = store.session("h1").await.unwrap().unwrap();
    assert_eq!(back, session("h1", "taro", sms));
    assert_eq!(store.session("h2").await.unwrap().unwrap(), s2);
    assert!(store.session("nope").await.unwrap().is_none());

    // last_seen only moves forward.
    store.touch_session("h1", 50).await.unwrap();
    store.touch_session("h1", 40).await.unwrap();
    assert_eq!(store.session("h1").await.unwrap().unwrap().last_seen, 50);

    let mine: Vec<_> = store
        .user_sessions("taro")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id_hash)
        .collect();
    assert_eq!(mine, ["h1", "h2"]);

    store.delete_session("h3").await.unwrap();
    assert!(store.session("h3").await.unwrap().is_none());

    // Expired (h2: expires 1000 <= now) or idle (last_seen <= now - idle) go.
    store
        .insert_session(&session("h4", "jiro", sms))
        .await
        .unwrap();
    store.touch_session("h4", 990).await.unwrap();
    assert_eq!(store.purge_sessions(995, 100).await.unwrap(), 2);
    assert!(store.session("h4").await.unwrap().is_some());

    let mut gone = store.delete_user_sessions("jiro").await.unwrap();
    gone.sort();
    assert_eq!(gone, ["h4"]);
    assert!(store.user_sessions("jiro").await.unwrap().is_empty());
});

contract!(devices, |store: Store| async move {
    assert!(
        store
            .insert_device(&device("d1", "taro", 1), 2, 20)
            .await
            .unwrap()
    );
    assert!(
        store
            .insert_device(&device("d2", "taro", 2), 2, 20)
            .await
            .unwrap()
    );
    assert!(
        !store
            .insert_device(&device("d3", "taro", 3), 2, 20)
            .await
            .unwrap()
    );
    // Another user's cap is their own.
    assert!(
        store
            .insert_device(&device("d4", "hanako", 4), 2, 20)
            .await
            .unwrap()
    );
    // Expired devices do not count.
    assert!(
        store
            .insert_device(&device("d5", "taro", 5), 2, 1_000)
            .await
            .unwrap()
    );

    let live: Vec<_> = store
        .live_devices("taro", 20)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(live, ["d5", "d2", "d1"]);
    assert_eq!(
        store.device("d1").await.unwrap().unwrap(),
        device("d1", "taro", 1)
    );
    assert!(store.device("zz").await.unwrap().is_none());

    assert!(store.rename_device("taro", "d1", "desk").await.unwrap());
    assert!(!store.rename_device("hanako", "d1", "theirs").await.unwrap());
    store.device_used("d1", 99).await.unwrap();
    let d1 = store.device("d1").await.unwrap().unwrap();
    assert_eq!((d1.name.as_str(), d1.last_used), ("desk", 99));

    assert!(!store.revoke_device("hanako", "d1").await.unwrap());
    assert!(store.revoke_device("taro", "d1").await.unwrap());
    assert!(!store.revoke_device("taro", "d1").await.unwrap());
    assert!(store.device("d1").await.unwrap().unwrap().revoked);
    assert!(!store.rename_device("taro", "d1", "again").await.unwrap());

    let mut gone = store.revoke_user_devices("taro").await.unwrap();
    gone.sort();
    assert_eq!(gone, ["d2", "d5"]);
    assert!(store.live_devices("taro", 0).await.unwrap().is_empty());
    assert_eq!(store.live_devices("hanako", 20).await.unwrap().len(), 1);
});

contract!(enrollments, |store: Store| async move {
    for (id, created) in [("e1", 1), ("e2", 2)] {
        store
            .insert_enrollment(&EnrollmentRecord {
                id: id.into(),
                user_id: "taro".into(),
                name: "phone".into(),
                public_key: "pk".into(),
                created,
                last_used: created,
                revoked: false,
            })
            .await
            .unwrap();
    }
    store.enrollment_used("e1", 30).await.unwrap();
    assert_eq!(store.enrollment("e1").await.unwrap().unwrap().last_used, 30);
    let live: Vec<_> = store
        .live_enrollments("taro")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(live, ["e2", "e1"]);
    assert_eq!(
        store.revoke_enrollments("taro", Some("e1")).await.unwrap(),
        1
    );
    assert!(store.enrollment("e1").await.unwrap().unwrap().revoked);
    assert_eq!(store.revoke_user_enrollments("taro").await.unwrap(), 1);
    assert_eq!(store.revoke_enrollments("taro", None).await.unwrap(), 0);
    assert!(store.live_enrollments("taro").await.unwrap().is_empty());
});

contract!(settings, |store: Store| async move {
    assert!(store.setting("taro").await.unwrap().is_none());
    let mut s = SettingRecord {
        user_id: "taro".into(),
        enabled: true,
        method: "sms".into(),
        updated: 1,
    };
    store.put_setting(&s).await.unwrap();
    assert_eq!(store.setting("taro").await.unwrap().unwrap(), s);
    s.enabled = false;
    s.method = "email".into();
    s.updated = 2;
    store.put_setting(&s).await.unwrap();
    assert_eq!(store.setting("taro").await.unwrap().unwrap(), s);
});

contract!(failures, |store: Store| async move {
    for ts in [5, 1, 9] {
        store.record_failure("taro", false, ts).await.unwrap();
    }
    store.record_failure("taro", true, 7).await.unwrap();
    assert_eq!(
        store.failures_since("taro", false, 2).await.unwrap(),
        [5, 9]
    );
    assert_eq!(store.failures_since("taro", true, 0).await.unwrap(), [7]);
    store.purge_failures(6).await.unwrap();
    assert_eq!(store.failures_since("taro", false, 0).await.unwrap(), [9]);
    assert_eq!(store.failures_since("taro", true, 0).await.unwrap(), [7]);
    store.clear_failures("taro", false).await.unwrap();
    assert!(
        store
            .failures_since("taro", false, 0)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.failures_since("taro", true, 0).await.unwrap(), [7]);
});

contract!(audit, |store: Store| async move {
    let rec = |ts: i64, event: &str, user: &str| AuditRecord {
        ts,
        event: event.into(),
        user_id: user.into(),
        ip: "192.0.2.7".into(),
        detail: format!("{event} {ts}"),
    };
    store.audit(&rec(1, "login_ok", "taro")).await.unwrap();
    for ts in 2..6 {
        store
            .audit(&rec(ts, "login_failed", "mallory"))
            .await
            .unwrap();
    }
    store.audit(&rec(6, "login_ok", "taro")).await.unwrap();
    store.audit(&rec(7, "login_failed", "taro")).await.unwrap();
    assert_eq!(store.audit_rows().await.unwrap(), 7);

    let taro = store.audit_trail(Some("taro"), 10).await.unwrap();
    assert_eq!(taro.iter().map(|a| a.ts).collect::<Vec<_>>(), [7, 6, 1]);
    assert_eq!(taro[0], rec(7, "login_failed", "taro"));
    assert_eq!(store.audit_trail(None, 2).await.unwrap().len(), 2);

    assert_eq!(
        store.recent_failures("taro", "192.0.2.7", 0).await.unwrap(),
        (1, 5)
    );
    assert_eq!(
        store.recent_failures("taro", "192.0.2.8", 6).await.unwrap(),
        (1, 0)
    );

    // Age first (ts < 2 goes), then the `first` events beyond the cap, oldest first.
    let removed = store
        .purge_audit(2, 3, &["login_failed", "other"])
        .await
        .unwrap();
    assert_eq!(removed, 4);
    let left: Vec<_> = store
        .audit_trail(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.ts, a.event))
        .collect();
    assert_eq!(
        left,
        [
            (7, "login_failed".to_string()),
            (6, "login_ok".to_string()),
            (5, "login_failed".to_string())
        ]
    );
    // Then any event, oldest first, when the preferred ones are not enough.
    assert_eq!(store.purge_audit(0, 1, &["nothing"]).await.unwrap(), 2);
    assert_eq!(store.audit_trail(None, 10).await.unwrap()[0].ts, 7);
    assert_eq!(store.purge_audit(0, 0, &[]).await.unwrap(), 1);
    assert_eq!(store.audit_rows().await.unwrap(), 0);
});

contract!(tokens, |store: Store| async move {
    assert!(store.insert_token(&token("t1", "taro"), 2).await.unwrap());
    assert!(store.insert_token(&token("t2", "taro"), 2).await.unwrap());
    assert!(!store.insert_token(&token("t3", "taro"), 2).await.unwrap());
    assert_eq!(
        store.token_by_hash("hash-t1").await.unwrap().unwrap(),
        token("t1", "taro")
    );
    assert!(store.token_used("t1", 100, 50).await.unwrap());
    assert!(!store.token_used("t1", 101, 50).await.unwrap());
    assert_eq!(
        store
            .token_by_hash("hash-t1")
            .await
            .unwrap()
            .unwrap()
            .last_used,
        Some(100)
    );
    assert!(!store.revoke_token("hanako", "t1").await.unwrap());
    assert!(store.revoke_token("taro", "t1").await.unwrap());
    assert!(
        store
            .token_by_hash("hash-t1")
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
    // A revoked token frees its place.
    assert!(store.insert_token(&token("t3", "taro"), 2).await.unwrap());
    let live: Vec<_> = store
        .user_tokens("taro")
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(live, ["t2", "t3"]);
    assert_eq!(store.revoke_user_tokens("taro").await.unwrap(), 2);
    assert!(store.user_tokens("taro").await.unwrap().is_empty());
});

contract!(passkeys, |store: Store| async move {
    assert_eq!(
        store
            .insert_passkey(&passkey("p1", "taro"), 2)
            .await
            .unwrap(),
        PasskeyInsert::Added
    );
    let mut dup = passkey("p2", "hanako");
    dup.credential_id = "cred-p1".into();
    assert_eq!(
        store.insert_passkey(&dup, 2).await.unwrap(),
        PasskeyInsert::Duplicate
    );
    let mut p2 = passkey("p2", "taro");
    p2.created = 8;
    assert_eq!(
        store.insert_passkey(&p2, 2).await.unwrap(),
        PasskeyInsert::Added
    );
    assert_eq!(
        store
            .insert_passkey(&passkey("p3", "taro"), 2)
            .await
            .unwrap(),
        PasskeyInsert::Full
    );
    assert_eq!(
        store
            .passkey_by_credential("cred-p1")
            .await
            .unwrap()
            .unwrap(),
        passkey("p1", "taro")
    );
    let ids: Vec<_> = store
        .user_passkeys("taro")
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(ids, ["p2", "p1"]);
    // The counter moves only from the value read.
    assert!(store.passkey_used("p1", 3, 4, 60).await.unwrap());
    assert!(!store.passkey_used("p1", 3, 5, 61).await.unwrap());
    let p1 = store
        .passkey_by_credential("cred-p1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((p1.sign_count, p1.last_used), (4, Some(60)));
    assert!(store.rename_passkey("taro", "p1", "yubikey").await.unwrap());
    assert!(!store.rename_passkey("hanako", "p1", "x").await.unwrap());
    assert!(!store.delete_passkey("hanako", "p1").await.unwrap());
    assert!(store.delete_passkey("taro", "p1").await.unwrap());
    assert!(
        store
            .passkey_by_credential("cred-p1")
            .await
            .unwrap()
            .is_none()
    );
});

contract!(phones, |store: Store| async move {
    let mut p = PhoneOverrideRecord {
        user_id: "taro".into(),
        status: "gone".into(),
        phone: None,
        updated: 1,
    };
    store.put_phone_override(&p).await.unwrap();
    p.status = "active".into();
    p.phone = Some("+81000".into());
    p.updated = 2;
    store.put_phone_override(&p).await.unwrap();
    assert_eq!(store.phone_overrides().await.unwrap(), [p]);
    store.delete_phone_override("taro").await.unwrap();
    assert!(store.phone_overrides().await.unwrap().is_empty());
});

contract!(risk_seen, |store: Store| async move {
    assert!(!store.has_history("taro").await.unwrap());
    store
        .remember_seen("taro", SeenKind::Network, "192.0.2.0/24", 10)
        .await
        .unwrap();
    store
        .remember_seen("taro", SeenKind::Network, "192.0.2.0/24", 20)
        .await
        .unwrap();
    assert!(store.has_history("taro").await.unwrap());
    assert!(
        store
            .seen_since("taro", SeenKind::Network, "192.0.2.0/24", 15)
            .await
            .unwrap()
    );
    assert!(
        !store
            .seen_since("taro", SeenKind::Network, "192.0.2.0/24", 21)
            .await
            .unwrap()
    );
    assert!(
        !store
            .seen_since("taro", SeenKind::Agent, "192.0.2.0/24", 0)
            .await
            .unwrap()
    );
    assert!(!store.has_history("hanako").await.unwrap());
});

// Many concurrent inserts for one user (on PostgreSQL through many connections) never
// exceed the cap: exactly `max` succeed.
contract!(caps_hold_under_concurrency, |store: Store| async move {
    const MAX: usize = 3;
    const TRIES: usize = 24;
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for i in 0..TRIES {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            let d = s
                .insert_device(&device(&format!("d{i}"), "taro", 1), MAX, 20)
                .await
                .unwrap();
            let t = s
                .insert_token(&token(&format!("t{i}"), "taro"), MAX)
                .await
                .unwrap();
            let p = s
                .insert_passkey(&passkey(&format!("p{i}"), "taro"), MAX)
                .await
                .unwrap();
            (d, t, p == PasskeyInsert::Added)
        }));
    }
    let mut counts = (0, 0, 0);
    for t in tasks {
        let (d, t, p) = t.await.unwrap();
        counts.0 += usize::from(d);
        counts.1 += usize::from(t);
        counts.2 += usize::from(p);
    }
    assert_eq!(counts, (MAX, MAX, MAX));
    assert_eq!(store.live_devices("taro", 20).await.unwrap().len(), MAX);
    assert_eq!(store.user_tokens("taro").await.unwrap().len(), MAX);
    assert_eq!(store.user_passkeys("taro").await.unwrap().len(), MAX);
});

#[tokio::test]
async fn postgres_errors_never_show_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://nidan:Sup3rS3cretPw@127.0.0.1:{port}/nidan");
    let started = std::time::Instant::now();
    let err = Store::open_postgres(&url, 2, false)
        .await
        .err()
        .expect("nothing listens there");
    let text = format!("{err} {err:?}");
    assert!(!text.contains("Sup3rS3cretPw"), "{text}");
    assert!(!text.contains(&url), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    // Fails fast: the connect timeout, not a hang.
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    // A malformed URL is refused without echoing it either.
    let err = Store::open_postgres("postgres://u:Sup3rS3cretPw@[bad/x", 1, false)
        .await
        .err()
        .unwrap();
    assert!(!format!("{err} {err:?}").contains("Sup3rS3cretPw"));
}

/// A SQLite file made before migrations (the old start-up schema, without the session
/// proof columns) opens, gains the columns, and keeps its rows.
#[tokio::test]
async fn old_sqlite_files_are_migrated_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await
            .unwrap();
        sqlx::raw_sql(
            "CREATE TABLE sessions (
                id_hash TEXT PRIMARY KEY, user_id TEXT NOT NULL, created INTEGER NOT NULL,
                auth_time INTEGER NOT NULL, last_seen INTEGER NOT NULL, expires INTEGER NOT NULL,
                two_step INTEGER NOT NULL, methods TEXT NOT NULL, device_id TEXT,
                ip TEXT NOT NULL, user_agent TEXT NOT NULL);
             INSERT INTO sessions VALUES ('old', 'taro', 1, 1, 1, 100, 1, 'password+sms',
                NULL, '127.0.0.1', 'ua');
             CREATE TABLE devices (
                id TEXT PRIMARY KEY, user_id TEXT NOT NULL, name TEXT NOT NULL,
                created INTEGER NOT NULL, last_used INTEGER NOT NULL, browser TEXT NOT NULL,
                ip TEXT NOT NULL, expires INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
             INSERT INTO devices VALUES ('d1', 'taro', 'pc', 1, 1, 'b', 'ip', 100, 0);",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    let store = Store::open(&path).await.unwrap();
    let old = store.session("old").await.unwrap().unwrap();
    assert_eq!(
        old.credential, None,
        "accepted until the user's next change"
    );
    assert_eq!(old.proof.second, Some(SecondFactor::Sms));
    assert!(old.proof.required);
    assert_eq!(store.live_devices("taro", 10).await.unwrap().len(), 1);
    // New rows carry their proof; a second open changes nothing.
    store
        .insert_session(&session(
            "new",
            "taro",
            Proof {
                first: FirstFactor::Passkey,
                second: Some(SecondFactor::Passkey),
                exemption: Some(Exemption::Route),
                required: false,
            },
        ))
        .await
        .unwrap();
    drop(store);
    let store = Store::open(&path).await.unwrap();
    let new = store.session("new").await.unwrap().unwrap();
    assert_eq!(new.proof.exemption, Some(Exemption::Route));
    assert!(!new.proof.required);
}

/// The read-only opening (for `nidan explain`) reads PostgreSQL and refuses writes.
#[tokio::test]
async fn postgres_read_only_reads_and_refuses_writes() {
    let pg = TestDb::create();
    let rw = Store::open_postgres(&pg.url, 2, false).await.unwrap();
    rw.put_setting(&SettingRecord {
        user_id: "taro".into(),
        enabled: true,
        method: "sms".into(),
        updated: 1,
    })
    .await
    .unwrap();
    let ro = Store::open_postgres(&pg.url, 1, true).await.unwrap();
    assert!(ro.setting("taro").await.unwrap().unwrap().enabled);
    assert!(ro.record_failure("taro", false, 1).await.is_err());
}

/// A session of `user` whose login checked the credential digest `c`.
fn checked(id: &str, user: &str, c: Option<&str>) -> SessionRecord {
    let mut s = session(
        id,
        user,
        Proof {
            first: FirstFactor::Password,
            second: Some(SecondFactor::Sms),
            exemption: None,
            required: true,
        },
    );
    s.credential = c.map(str::to_owned);
    s
}

async fn ids_of(store: &Store, user: &str) -> Vec<(String, Option<String>)> {
    let mut v: Vec<_> = store
        .user_sessions(user)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.id_hash, s.credential))
        .collect();
    v.sort();
    v
}

// Issue 22: a credential change is one compare-and-set, applied once; sessions and devices
// are stored only under the current digest.
contract!(credential_changes_apply_once, |store: Store| async move {
    // The first session of a user stores its digest.
    assert!(
        store
            .insert_session_if_current(&checked("a1", "taro", Some("A")))
            .await
            .unwrap()
    );
    assert_eq!(
        store.credential("taro").await.unwrap(),
        Some(("A".into(), 0))
    );
    // A session from before digests, a trusted device, an app password; another user.
    store
        .insert_session(&checked("legacy", "taro", None))
        .await
        .unwrap();
    assert_eq!(
        store
            .insert_device_if_current(&device("d1", "taro", 10), 5, 20, "A")
            .await
            .unwrap(),
        DeviceInsert::Inserted
    );
    assert!(store.insert_token(&token("t1", "taro"), 5).await.unwrap());
    assert!(
        store
            .insert_session_if_current(&checked("h1", "hanako", Some("H")))
            .await
            .unwrap()
    );
    let logged = store.latest_revocation().await.unwrap();

    let CredentialChange::Applied(r) = store
        .change_credential("taro", "A", "B", 30, &log_events)
        .await
        .unwrap()
    else {
        panic!("the change must apply");
    };
    let mut ended = r.sessions.clone();
    ended.sort();
    assert_eq!(ended, ["a1", "legacy"]);
    assert_eq!(
        (r.devices.as_slice(), r.tokens),
        (["d1".to_owned()].as_slice(), 1)
    );
    assert_eq!(store.revocations_after(logged, 100).await.unwrap().len(), 3);
    assert_eq!(
        store.credential("taro").await.unwrap(),
        Some(("B".into(), 1))
    );
    assert!(store.live_devices("taro", 20).await.unwrap().is_empty());
    assert!(
        store
            .user_tokens("taro")
            .await
            .unwrap()
            .iter()
            .all(|t| t.revoked)
    );

    // The old digest makes nothing any more; the new one does.
    assert!(
        !store
            .insert_session_if_current(&checked("a2", "taro", Some("A")))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .insert_device_if_current(&device("d2", "taro", 10), 5, 20, "A")
            .await
            .unwrap(),
        DeviceInsert::Stale
    );
    assert!(
        store
            .insert_session_if_current(&checked("b1", "taro", Some("B")))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .insert_device_if_current(&device("d3", "taro", 10), 5, 20, "B")
            .await
            .unwrap(),
        DeviceInsert::Inserted
    );
    assert_eq!(
        ids_of(&store, "taro").await,
        [("b1".into(), Some("B".into()))]
    );

    // A replay changes nothing: what was made after the change stays, nothing is counted.
    assert_eq!(
        store
            .change_credential("taro", "A", "B", 40, &log_events)
            .await
            .unwrap(),
        CredentialChange::Already
    );
    assert_eq!(
        ids_of(&store, "taro").await,
        [("b1".into(), Some("B".into()))]
    );
    assert_eq!(store.live_devices("taro", 20).await.unwrap().len(), 1);
    assert_eq!(store.revocations_after(logged, 100).await.unwrap().len(), 3);
    // A change from a digest that is not the stored one changes nothing either.
    assert_eq!(
        store
            .change_credential("taro", "C", "D", 50, &log_events)
            .await
            .unwrap(),
        CredentialChange::Differs("B".into())
    );
    assert_eq!(
        store.credential("taro").await.unwrap(),
        Some(("B".into(), 1))
    );

    // A user with no stored digest: the change stores it and ends what there is.
    store
        .insert_session(&checked("m1", "mika", None))
        .await
        .unwrap();
    let CredentialChange::Applied(r) = store
        .change_credential("mika", "X", "Y", 60, &log_events)
        .await
        .unwrap()
    else {
        panic!("a missing row counts as a change");
    };
    assert_eq!(
        (r.sessions.as_slice(), log_events(&r).len()),
        (["m1".to_owned()].as_slice(), 2)
    );
    let mut all = store.credentials().await.unwrap();
    all.sort();
    assert_eq!(
        all,
        [
            ("hanako".into(), "H".into()),
            ("mika".into(), "Y".into()),
            ("taro".into(), "B".into())
        ]
    );
    // Another user's session was never touched.
    assert!(store.session("h1").await.unwrap().is_some());
});

contract!(phone_states_change_once, |store: Store| async move {
    assert!(store.put_phone_state("yuki", "P1", 1).await.unwrap());
    assert!(!store.put_phone_state("yuki", "P1", 2).await.unwrap());
    assert!(store.put_phone_state("yuki", "P2", 3).await.unwrap());
    assert!(!store.put_phone_state("yuki", "P2", 4).await.unwrap());
    assert!(store.put_phone_state("ken", "P2", 4).await.unwrap());
});

// Logins with the old password racing the change, read by two replicas at once, on any
// connections: the change applies once, and whichever commits first, no session of the
// old digest is left (run a few hundred times).
contract!(
    a_change_racing_logins_never_leaves_an_old_session,
    |store: Store| async move {
        const ROUNDS: usize = 300;
        let mut refused = 0;
        for i in 0..ROUNDS {
            let user = format!("u{i}");
            if i % 2 == 0 {
                // Half the users have a stored digest already, half have none.
                assert!(
                    store
                        .insert_session_if_current(&checked(&format!("p{i}"), &user, Some("old")))
                        .await
                        .unwrap()
                );
            }
            let mut tasks = Vec::new();
            for j in 0..3 {
                let (store, s) = (
                    store.clone(),
                    checked(&format!("s{i}-{j}"), &user, Some("old")),
                );
                tasks.push(tokio::spawn(async move {
                    store.insert_session_if_current(&s).await.unwrap()
                }));
            }
            // Two replicas read the change at once: one applies it.
            let changes: Vec<_> = (0..2)
                .map(|_| {
                    let (store, user) = (store.clone(), user.clone());
                    tokio::spawn(async move {
                        store
                            .change_credential(&user, "old", "new", 1, &log_events)
                            .await
                    })
                })
                .collect();
            for t in tasks {
                refused += usize::from(!t.await.unwrap());
            }
            let mut outcomes = Vec::new();
            for c in changes {
                outcomes.push(match c.await.unwrap().unwrap() {
                    CredentialChange::Applied(_) => "applied",
                    CredentialChange::Already => "already",
                    CredentialChange::Differs(d) => panic!("round {i}: differs ({d})"),
                });
            }
            outcomes.sort_unstable();
            assert_eq!(outcomes, ["already", "applied"], "round {i}");
            assert_eq!(ids_of(&store, &user).await, [], "round {i}");
            assert_eq!(
                store.credential(&user).await.unwrap(),
                Some(("new".into(), 1))
            );
        }
        // Both orders happened (a login after the change is refused).
        assert!(refused > 0 && refused < 3 * ROUNDS, "{refused}");
    }
);

/// The migrations of the previous version, then the current ones: sessions already there
/// gain an empty credential column, and the credentials table appears.
async fn previous_version(pool_dir: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let from = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(pool_dir);
    for name in ["0001_initial.sql", "0002_revocation_count.sql"] {
        std::fs::copy(from.join(name), dir.path().join(name)).unwrap();
    }
    dir
}

#[tokio::test]
async fn existing_databases_gain_the_credential_column() {
    // PostgreSQL at the previous version, with a session.
    let pg = TestDb::create();
    {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect(&pg.url)
            .await
            .unwrap();
        let dir = previous_version("postgres").await;
        sqlx::migrate::Migrator::new(dir.path())
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        sqlx::raw_sql(
            "INSERT INTO sessions (id_hash, user_id, created, auth_time, last_seen, expires,
             two_step, methods, ip, user_agent) VALUES ('old', 'taro', 1, 1, 1, 100, TRUE,
             'password+sms', '127.0.0.1', 'ua')",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    let store = Store::open_postgres(&pg.url, 2, false).await.unwrap();
    assert_eq!(
        store.session("old").await.unwrap().unwrap().credential,
        None
    );
    assert!(
        store
            .insert_session_if_current(&checked("new", "taro", Some("A")))
            .await
            .unwrap()
    );
    assert_eq!(
        store.credential("taro").await.unwrap(),
        Some(("A".into(), 0))
    );

    // SQLite at the previous version, likewise.
    let file = tempfile::tempdir().unwrap();
    let path = file.path().join("prev.db");
    {
        use sqlx::Connection;
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let mut conn = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
        let dir = previous_version("sqlite").await;
        sqlx::migrate::Migrator::new(dir.path())
            .await
            .unwrap()
            .run(&mut conn)
            .await
            .unwrap();
        sqlx::raw_sql(
            "INSERT INTO sessions (id_hash, user_id, created, auth_time, last_seen, expires,
             two_step, methods, ip, user_agent) VALUES ('old', 'taro', 1, 1, 1, 100, 1,
             'password+sms', '127.0.0.1', 'ua')",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
    }
    let store = Store::open(&path).await.unwrap();
    assert_eq!(
        store.session("old").await.unwrap().unwrap().credential,
        None
    );
    assert!(
        store
            .insert_session_if_current(&checked("new", "taro", Some("A")))
            .await
            .unwrap()
    );
}

// Rolling upgrades (issue 25): a session a newer version wrote with a first factor this
// version does not know is no session here (its holder logs in again), not a store error
// that would answer 503 on every request; the user's other sessions still list.
contract!(
    a_session_from_a_newer_version_is_no_session_here,
    |store: Store| async move {
        let proof = Proof {
            first: FirstFactor::Password,
            second: None,
            exemption: None,
            required: false,
        };
        store
            .insert_session(&session("old", "taro", proof))
            .await
            .unwrap();
        store
            .insert_session(&session("new", "taro", proof))
            .await
            .unwrap();
        let newer: Result<()> = async {
            on_db!(&store.db, pool => {
                sqlx::query("UPDATE sessions SET first_factor = 'sso' WHERE id_hash = 'new'")
                    .execute(pool)
                    .await?;
            });
            Ok(())
        }
        .await;
        newer.unwrap();
        assert!(store.session("new").await.unwrap().is_none());
        assert!(store.session("old").await.unwrap().is_some());
        let listed = store.user_sessions("taro").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id_hash, "old");
        // Revoking everything still reaches it.
        assert_eq!(store.delete_user_sessions("taro").await.unwrap().len(), 2);
    }
);
