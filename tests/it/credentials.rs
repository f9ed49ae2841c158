//! Credential changes in the users file as durable facts, applied exactly once (issue 22):
//! three real replicas on one PostgreSQL and Redis. A change is applied by whichever
//! replica reads it first — not by the chores holder only — so it survives the holder's
//! death, a lost broadcast and restarts; sessions made before it are refused everywhere,
//! sessions made after it are never touched, and the audit trail records it once.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use std::time::{Duration, Instant};

use crate::common::cluster::*;
use serde_json::json;

/// Two reload intervals (1 s each in the cluster's configuration) and some slack.
const TWO_RELOADS: Duration = Duration::from_millis(2_500);

/// Waits until replica `i` starts logins again (its short-lived state reconnects to a
/// restarted Redis on its own schedule).
async fn logins_work(c: &Cluster, i: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Browser::default()
        .post(c, i, "/login", json!({"id": "noah"}))
        .await
        .0
        != 200
    {
        assert!(
            Instant::now() < deadline,
            "replica {i}: no login\n{}",
            c.log(i)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The users file rewritten as it is (a new modification time): every replica reads it
/// again.
fn touch_users(c: &Cluster) {
    c.edit_users("taro", "password_hash", "password_hash");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_while_the_chores_holder_is_dead_is_applied_once() {
    let mut c = Cluster::start(3, "60s");
    let holder = c.wait_holder().await;
    let other = (holder + 1) % 3;
    let mut old = Browser::default();
    old.login(&c, other, other, "taro", false).await;
    for i in 0..3 {
        assert!(old.signed_in(&c, i).await, "replica {i}");
    }

    // The holder dies; the password changes; the dead replica comes back with the new file
    // (and nothing pending), before the lease it held has expired.
    c.kill9(holder);
    c.change_password("taro", "hanako");
    c.restart(holder);
    everywhere(
        &c,
        "the old password's session refused",
        TWO_RELOADS,
        async |i| !old.signed_in(&c, i).await,
    )
    .await;

    // A login with the new password works on every replica, and stays: nothing applies
    // the change again.
    let mut new = Browser::default();
    new.login(&c, holder, other, "taro", false).await;
    tokio::time::sleep(TWO_RELOADS).await;
    for i in 0..3 {
        assert!(new.signed_in(&c, i).await, "replica {i}");
        assert!(!old.signed_in(&c, i).await, "replica {i}");
    }
    assert_eq!(
        c.audited("taro", "credentials_revoked").await,
        1,
        "{:?}",
        c.audit("taro").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_made_after_a_change_survives_lost_broadcasts_and_restarts() {
    let mut c = Cluster::start(3, "60s");
    let holder = c.wait_holder().await;
    let others = [(holder + 1) % 3, (holder + 2) % 3];
    let mut old = Browser::default();
    old.login(&c, others[0], others[1], "taro", false).await;

    // The change is read while Redis is down (every broadcast about it is queued), and the
    // holder dies with its queue: nothing published about the change ever arrives.
    c.redis.stop();
    c.change_password("taro", "hanako");
    tokio::time::sleep(TWO_RELOADS).await;
    c.kill9(holder);
    c.redis.restart();
    for &i in &others {
        c.wait_ready(i);
        logins_work(&c, i).await;
    }
    // Made with the new password at once, on the replicas that read the change.
    let mut new = Browser::default();
    new.login(&c, others[0], others[1], "taro", false).await;
    for &i in &others {
        assert!(!old.signed_in(&c, i).await, "replica {i}");
        assert!(new.signed_in(&c, i).await, "replica {i}");
    }
    // The lease moves on (the dead holder's expires), the dead replica comes back.
    tokio::time::sleep(Duration::from_secs(6)).await;
    c.restart(holder);
    for i in 0..3 {
        assert!(
            new.signed_in(&c, i).await,
            "replica {i}, after the lease moved"
        );
    }

    // Every replica restarted, Redis restarted empty, the users file read again: the change
    // is not applied again.
    for i in 0..3 {
        c.kill9(i);
    }
    c.redis.restart();
    for i in 0..3 {
        c.restart(i);
    }
    touch_users(&c);
    tokio::time::sleep(TWO_RELOADS).await;
    for i in 0..3 {
        assert!(
            new.signed_in(&c, i).await,
            "replica {i}, after the restarts"
        );
        assert!(!old.signed_in(&c, i).await, "replica {i}");
    }
    assert_eq!(
        c.audited("taro", "credentials_revoked").await,
        1,
        "{:?}",
        c.audit("taro").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_while_no_replica_ran_is_applied_once_at_start() {
    let mut c = Cluster::start(3, "60s");
    let mut old = Browser::default();
    old.login(&c, 0, 1, "taro", false).await;
    let mut kept = Browser::default();
    kept.login(&c, 1, 2, "noah", false).await;
    for i in 0..3 {
        c.kill9(i);
    }
    c.change_password("taro", "hanako");
    // Three replicas start together and compare the stored digests with the file.
    for i in 0..3 {
        c.restart(i);
    }
    let started = Instant::now();
    everywhere(
        &c,
        "the old password's session refused",
        TWO_RELOADS,
        async |i| !old.signed_in(&c, i).await,
    )
    .await;
    assert!(started.elapsed() < TWO_RELOADS);
    // Another user's session is not touched; the change is recorded once.
    for i in 0..3 {
        assert!(kept.signed_in(&c, i).await, "replica {i}");
    }
    let mut new = Browser::default();
    new.login(&c, 2, 0, "taro", false).await;
    tokio::time::sleep(TWO_RELOADS).await;
    for i in 0..3 {
        assert!(new.signed_in(&c, i).await, "replica {i}");
    }
    assert_eq!(
        c.audited("taro", "credentials_revoked").await,
        1,
        "{:?}",
        c.audit("taro").await
    );
    assert_eq!(c.audited("noah", "credentials_revoked").await, 0);
}
