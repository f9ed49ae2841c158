//! What the configuration unit tests share: a test environment, a minimal file and loaders.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::Config;
use super::load::{ConfigError, ConfigErrors, load_with_env};

pub(super) const DEVICE_KEY: &str = "device-key-for-tests-0123456789-abcdefgh";

pub(super) fn test_env(name: &str) -> Option<OsString> {
    match name {
        "NIDAN_TEST_DEVICE_KEY" | "NIDAN_DEVICE_KEY_K0" => Some(DEVICE_KEY.into()),
        "NIDAN_SMS_TOKEN" => Some("sms-token-for-tests".into()),
        "NIDAN_EMPTY" => Some("".into()),
        "NIDAN_TEST_PG" => Some("postgres://nidan:s3cret@db.internal/nidan".into()),
        "NIDAN_TEST_REDIS" => Some("redis://:s3cret@cache.internal:6379/0".into()),
        "NIDAN_TEST_NOT_A_URL" => Some("mysql://nidan:s3cret@db/nidan".into()),
        _ => None,
    }
}

pub(super) fn load_t(text: &str) -> Result<Config, ConfigErrors> {
    load_with_env(text, Path::new("/etc/nidan/nidan.yaml"), &test_env)
}

pub(super) fn errors(text: &str) -> Vec<ConfigError> {
    match load_t(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.0,
    }
}

pub(super) const MINIMAL: &str = "\
version: 1
trusted_devices:
  signing_keys: [{ id: k1, secret_env: NIDAN_TEST_DEVICE_KEY }]
routes:
  - { name: app, upstream: [\"127.0.0.1:3000\"], policy: login }
";

/// MINIMAL with `extra` top-level YAML inserted after `version` (line 2 onwards).
pub(super) fn with(extra: &str) -> String {
    MINIMAL.replacen("version: 1\n", &format!("version: 1\n{extra}"), 1)
}

pub(super) fn manifest(rel: &str) -> PathBuf {
    std::path::PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join(rel)
}
