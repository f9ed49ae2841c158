//! The trusted-device cookie check on the ID step: `Devices::check` when the device is in
//! the cache and when it must be read from SQLite, `KeyRing::verify` alone, and the
//! refusal of a forged cookie. `cargo bench --bench device_check`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use nidan::config::{Secret, SigningKey};
use nidan::session::device::Devices;
use nidan::session::token::KeyRing;
use nidan::store::Store;

const LIFETIME: Duration = Duration::from_secs(30 * 86_400);

fn ring() -> KeyRing {
    KeyRing::new(&[SigningKey {
        id: "k1".into(),
        secret: Secret(b"bench-device-signing-key-0123456789abcdef".to_vec()),
    }])
}

fn device_check(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = rt
        .block_on(Store::open(&dir.path().join("bench.db")))
        .unwrap();
    let devices = Devices::new(store.clone(), ring(), LIFETIME, 10);
    let now = nidan::time::now();
    let (token, rec) = rt
        .block_on(devices.register(
            "hanako",
            "bench-credential",
            "My laptop",
            "Firefox on Linux",
            "127.0.0.1",
            now,
        ))
        .unwrap();
    assert_eq!(
        rt.block_on(devices.check(&token, "hanako", now)).as_deref(),
        Some(rec.id.as_str())
    );
    // Same claims, signature of another key: fails at the signature, never reaches the store.
    let forged = {
        let other = KeyRing::new(&[SigningKey {
            id: "k1".into(),
            secret: Secret(b"another-key-another-key-another-key-0000".to_vec()),
        }]);
        other.sign(&ring().verify(&token, now).unwrap()).unwrap()
    };
    let verifier = ring();

    let mut g = c.benchmark_group("device_check");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    g.bench_function("keyring_verify", |b| {
        b.iter(|| verifier.verify(black_box(&token), now).unwrap())
    });
    g.bench_function("check_cache_hit", |b| {
        b.iter(|| {
            rt.block_on(devices.check(black_box(&token), "hanako", now))
                .unwrap()
        })
    });
    g.bench_function("check_cache_miss", |b| {
        // A fresh `Devices` (empty cache) over the same store for every iteration; making
        // it is setup, not measured.
        b.iter_batched(
            || Devices::new(store.clone(), ring(), LIFETIME, 10),
            |fresh| {
                let id = rt
                    .block_on(fresh.check(black_box(&token), "hanako", now))
                    .unwrap();
                (fresh, id)
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("check_forged_signature", |b| {
        b.iter(|| {
            assert!(
                rt.block_on(devices.check(black_box(&forged), "hanako", now))
                    .is_none()
            )
        })
    });
    g.finish();
}

criterion_group!(benches, device_check);
criterion_main!(benches);
