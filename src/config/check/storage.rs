//! The `storage` and `users` sections: SQLite, or PostgreSQL + Redis for replicas.

use std::time::Duration;

use crate::config::file;
use crate::config::{
    DirectoryKind, OnPhoneLoss, Replicated, Secret, Storage, TwoStepMethod, UsersSource,
};

use super::{Checker, Zero, method};

impl Checker<'_> {
    /// `sqlite` (one machine, the default) or `postgres` + `redis` (replicas): the two modes.
    pub(super) fn storage(&mut self, s: file::StorageFile) -> Storage {
        let outage_grace = self.duration(
            "storage.outage_grace",
            s.outage_grace.as_ref(),
            Duration::from_secs(60),
            Zero::Allowed,
        );
        let postgres_timeout = self.store_timeout(
            "storage.postgres.timeout",
            s.postgres.as_ref().and_then(|p| p.timeout.as_ref()),
        );
        let redis_timeout = self.store_timeout(
            "storage.redis.timeout",
            s.redis.as_ref().and_then(|r| r.timeout.as_ref()),
        );
        let sqlite_set = s.sqlite.is_some();
        let sqlite_path = self.path(
            s.sqlite
                .and_then(|s| s.path)
                .as_deref()
                .unwrap_or("nidan.db"),
        );
        let replicated = match (s.postgres, s.redis) {
            (None, None) => None,
            (Some(_), None) => {
                self.err(
                    "storage.postgres",
                    "`storage.postgres` is set without `storage.redis`",
                    "replicas share short-lived state (logins in progress, limits) and revocations through Redis: add `storage.redis: { url_env: NIDAN_REDIS_URL }`, or remove `storage.postgres` to run one machine on SQLite",
                );
                None
            }
            (None, Some(_)) => {
                self.err(
                    "storage.redis",
                    "`storage.redis` is set without `storage.postgres`",
                    "replicas keep what must last in PostgreSQL: add `storage.postgres: { url_env: NIDAN_DATABASE_URL }`, or remove `storage.redis` to run one machine on SQLite",
                );
                None
            }
            (Some(pg), Some(redis)) => self.replicated(pg, redis, sqlite_set),
        };
        Storage {
            sqlite_path,
            replicated,
            outage_grace,
            postgres_timeout,
            redis_timeout,
        }
    }

    /// `storage.postgres.timeout` / `storage.redis.timeout`: the bound of one call on that
    /// store (default 1s, from 10ms to 60s).
    fn store_timeout(&mut self, path: &str, value: Option<&String>) -> Duration {
        let d = self.duration(path, value, Duration::from_secs(1), Zero::Refused);
        if !d.is_zero() && d < Duration::from_millis(10) {
            self.err(
                path,
                format!("`{path}` is shorter than 10ms"),
                "use at least `10ms` (default `1s`): shorter, calls that are merely a little slow fail",
            );
            return Duration::from_millis(10);
        }
        self.at_most(path, d, Duration::from_secs(60), "60s")
    }

    /// The replica mode: PostgreSQL and Redis URLs (secrets: never shown), key prefix, pool.
    fn replicated(
        &mut self,
        pg: file::PostgresFile,
        redis: file::RedisFile,
        sqlite_set: bool,
    ) -> Option<Replicated> {
        if sqlite_set {
            self.err(
                "storage.sqlite",
                "`storage.sqlite` is set together with `storage.postgres` and `storage.redis`",
                "choose one mode: `sqlite` for one machine, or `postgres` + `redis` for replicas",
            );
        }
        let postgres_url = self.secret(
            "storage.postgres",
            "url",
            pg.url_file.as_ref(),
            pg.url_env.as_ref(),
        );
        if pg.url_file.is_none() && pg.url_env.is_none() {
            self.err(
                "storage.postgres",
                "`storage.postgres` names no URL",
                "add `url_env: NIDAN_DATABASE_URL` (or `url_file`) holding e.g. `postgres://nidan@db.internal/nidan`",
            );
        }
        let redis_url = self.secret(
            "storage.redis",
            "url",
            redis.url_file.as_ref(),
            redis.url_env.as_ref(),
        );
        if redis.url_file.is_none() && redis.url_env.is_none() {
            self.err(
                "storage.redis",
                "`storage.redis` names no URL",
                "add `url_env: NIDAN_REDIS_URL` (or `url_file`) holding e.g. `redis://cache.internal:6379/0`",
            );
        }
        self.url_schemes(postgres_url.as_ref(), redis_url.as_ref());
        let key_prefix = redis.key_prefix.unwrap_or_else(|| "nidan".into());
        if !key_prefix_ok(&key_prefix) {
            self.err(
                "storage.redis.key_prefix",
                "`storage.redis.key_prefix` is empty or has characters other than letters, digits, `-`, `_`, `.`",
                "use a short name such as `nidan` or `nidan-prod`",
            );
        }
        let max = pg.max_connections.unwrap_or(10);
        if max == 0 {
            self.err(
                "storage.postgres.max_connections",
                "`storage.postgres.max_connections` is 0",
                "use at least 1 (default 10)",
            );
        }
        Some(Replicated {
            postgres_url: postgres_url?,
            postgres_max_connections: max.max(1),
            redis_url: redis_url?,
            key_prefix,
        })
    }

    /// Each URL starts with its store's scheme (the text is never shown: it may hold a
    /// password).
    fn url_schemes(&mut self, postgres_url: Option<&Secret>, redis_url: Option<&Secret>) {
        let check = |u: &Secret, schemes: &[&str]| {
            u.expose_str()
                .is_some_and(|t| schemes.iter().any(|s| t.starts_with(s)))
        };
        if let Some(u) = postgres_url
            && !check(u, &["postgres://", "postgresql://"])
        {
            self.err(
                "storage.postgres",
                "the PostgreSQL URL does not start with `postgres://` or `postgresql://`",
                "give a URL such as `postgres://user@host:5432/db` (its text is not shown here: it may hold a password)",
            );
        }
        if let Some(u) = redis_url
            && !check(u, &["redis://", "rediss://"])
        {
            self.err(
                "storage.redis",
                "the Redis URL does not start with `redis://` or `rediss://`",
                "give a URL such as `redis://host:6379/0` (its text is not shown here: it may hold a password)",
            );
        }
    }

    pub(super) fn users(&mut self, u: file::UsersFile) -> UsersSource {
        let directory = if u.ldap.is_some() {
            if u.file.is_some() || u.database.is_some() {
                self.err(
                    "users.ldap",
                    "`users` names an `ldap` directory and also a `file` or `database` one",
                    "keep one: `ldap: {...}` for an LDAP / Active Directory server, `file:` or `database: {}` otherwise",
                );
            }
            DirectoryKind::Ldap
        } else if u.database.is_some() {
            if u.file.is_some() {
                self.err(
                    "users.database",
                    "`users` names both a `file` and a `database` directory",
                    "keep one: `file: users.yaml` for a users file, or `database: {}` to keep the users in the store",
                );
            }
            DirectoryKind::Database
        } else {
            DirectoryKind::File
        };
        UsersSource {
            directory,
            file: self.path(u.file.as_deref().unwrap_or("users.yaml")),
            reload_interval: self.duration(
                "users.reload_interval",
                u.reload_interval.as_ref(),
                Duration::from_secs(2),
                Zero::Refused,
            ),
            default_two_step: u.default_two_step.unwrap_or(false),
            default_method: u.default_method.map_or(TwoStepMethod::Sms, method),
            on_phone_loss: match u.on_phone_loss {
                None | Some(file::OnPhoneLossFile::Disable) => OnPhoneLoss::Disable,
                Some(file::OnPhoneLossFile::SwitchToEmail) => OnPhoneLoss::SwitchToEmail,
            },
            ldap: u.ldap.and_then(|l| self.ldap(l)),
        }
    }
}

/// A Redis key prefix: non-empty, letters, digits, `-`, `_`, `.`.
fn key_prefix_ok(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::config::testing::*;

    #[test]
    fn storage_modes() {
        let c = load_t(MINIMAL).unwrap();
        assert!(c.storage.replicated.is_none());
        assert_eq!(c.storage.outage_grace, Duration::from_secs(60));
        let both = "storage:\n  postgres: { url_env: NIDAN_TEST_PG }\n  redis: { url_env: NIDAN_TEST_REDIS, key_prefix: nidan-prod }\n";
        let c = load_t(&with(both)).unwrap();
        let r = c.storage.replicated.unwrap();
        assert_eq!(r.key_prefix, "nidan-prod");
        assert_eq!(r.postgres_max_connections, 10);
        // One without the other names the missing half.
        let e = &errors(&with("storage:\n  postgres: { url_env: NIDAN_TEST_PG }\n"))[0];
        assert_eq!(e.line, 3, "{e}");
        assert!(e.fix.contains("storage.redis"), "{e}");
        let e = &errors(&with("storage:\n  redis: { url_env: NIDAN_TEST_REDIS }\n"))[0];
        assert!(e.fix.contains("storage.postgres"), "{e}");
        let e = &errors(&with(&format!("{both}  sqlite: {{ path: n.db }}\n")))[0];
        assert!(e.message.contains("storage.sqlite"), "{e}");
        // A wrong scheme is named, the URL (and its password) never shown.
        let e = &errors(&with(
            "storage:\n  postgres: { url_env: NIDAN_TEST_NOT_A_URL }\n  redis: { url_env: NIDAN_TEST_REDIS }\n",
        ))[0];
        assert!(e.message.contains("postgres://"), "{e}");
        assert!(!e.to_string().contains("s3cret"), "{e}");
        let e = &errors(&with(
            "storage:\n  postgres: { url_env: NIDAN_MISSING }\n  redis: { url_env: NIDAN_TEST_REDIS }\n",
        ))[0];
        assert!(e.message.contains("not set"), "{e}");
    }

    #[test]
    fn store_timeouts_default_to_a_second_and_are_checked_where_written() {
        let c = load_t(MINIMAL).unwrap();
        assert_eq!(c.storage.postgres_timeout, Duration::from_secs(1));
        assert_eq!(c.storage.redis_timeout, Duration::from_secs(1));
        let set = "storage:\n  postgres: { url_env: NIDAN_TEST_PG, timeout: 500ms }\n  redis: { url_env: NIDAN_TEST_REDIS, timeout: 2s }\n";
        let c = load_t(&with(set)).unwrap();
        assert_eq!(c.storage.postgres_timeout, Duration::from_millis(500));
        assert_eq!(c.storage.redis_timeout, Duration::from_secs(2));
        for (bad, fix) in [
            ("0s", "`30s`"),
            ("soon", "`30s`"),
            ("2ms", "10ms"),
            ("5m", "60s"),
        ] {
            let text = format!(
                "storage:\n  postgres: {{ url_env: NIDAN_TEST_PG }}\n  redis: {{ url_env: NIDAN_TEST_REDIS, timeout: {bad} }}\n"
            );
            let e = &errors(&with(&text))[0];
            assert!(e.message.contains("storage.redis.timeout"), "{bad}: {e}");
            assert!(e.fix.contains(fix), "{bad}: {e}");
            assert_eq!((e.line, e.column), (4, 48), "{bad}: {e}");
        }
    }

    #[test]
    fn key_prefixes() {
        assert!(key_prefix_ok("nidan-prod.eu_1"));
        assert!(!key_prefix_ok(""));
        assert!(!key_prefix_ok("nidan:prod"));
        assert!(!key_prefix_ok("nidan prod"));
    }
}
