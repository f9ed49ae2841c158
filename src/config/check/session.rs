//! The `session` and `trusted_devices` sections: cookies, lifetimes, signing keys.

use std::time::Duration;

use crate::config::file;
use crate::config::{Portal, SecureCookies, SessionSettings, SigningKey, TrustedDevices};

use super::{Checker, Zero, name_ok};

impl Checker<'_> {
    pub(super) fn cookie_name(
        &mut self,
        path: &str,
        value: Option<String>,
        default: &str,
    ) -> String {
        match value {
            None => default.to_string(),
            Some(v)
                if !v.is_empty()
                    && v.len() <= 64
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                    && !v.starts_with("__") =>
            {
                v
            }
            Some(_) => {
                self.err(
                    path,
                    format!("`{path}` is not a usable cookie name"),
                    format!("use letters, digits, `_` and `-` only (nidan adds the `__Host-` prefix itself), e.g. `{default}`"),
                );
                default.to_string()
            }
        }
    }

    /// `session.secure_cookies`: `auto` (default) or `always` (`true`). Nothing sends
    /// cookies without `Secure` over HTTPS (SECURITY 19, 44), so `false` is refused, and
    /// `always` with a plain-HTTP `public_url` would leave nobody able to log in.
    pub(super) fn secure_cookies(
        &mut self,
        value: Option<file::SecureCookiesFile>,
        portal: &Portal,
    ) -> SecureCookies {
        const P: &str = "session.secure_cookies";
        let public_http = portal
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("http://"));
        match value {
            None => SecureCookies::Auto,
            Some(file::SecureCookiesFile::Word(w)) if w.trim() == "auto" => SecureCookies::Auto,
            Some(file::SecureCookiesFile::Word(w)) if w.trim() == "always" && public_http => {
                self.err(
                    P,
                    "`session.secure_cookies: always` makes every cookie `Secure`, but `portal.public_url` is http://: browsers would drop the cookies and nobody could log in",
                    "make `portal.public_url` an https:// address (TLS in front), or remove `session.secure_cookies`",
                );
                SecureCookies::Always
            }
            Some(file::SecureCookiesFile::Flag(true)) => SecureCookies::Always,
            Some(file::SecureCookiesFile::Word(w)) if w.trim() == "always" => SecureCookies::Always,
            Some(file::SecureCookiesFile::Flag(false)) if portal.public_https() => {
                self.err(
                    P,
                    "`session.secure_cookies: false` would send cookies without `Secure` while `portal.public_url` is https://",
                    "remove `session.secure_cookies`: with an https `portal.public_url` every cookie is `__Host-` + `Secure` and HSTS is sent",
                );
                SecureCookies::Always
            }
            Some(file::SecureCookiesFile::Flag(false)) => {
                self.err(
                    P,
                    "`session.secure_cookies: false` is not offered: over HTTPS every cookie carries `Secure` (SECURITY 19, 44)",
                    "remove the key: over plain HTTP cookies go without `Secure` anyway (`auto`)",
                );
                SecureCookies::Auto
            }
            Some(file::SecureCookiesFile::Word(_)) => {
                self.err(
                    P,
                    "`session.secure_cookies` is neither `auto` nor `always`",
                    "write `auto` (HTTPS per request: an https `portal.public_url`, TLS, or a trusted proxy's `X-Forwarded-Proto: https`) or `always`, or remove the key",
                );
                SecureCookies::Auto
            }
        }
    }

    pub(super) fn session(&mut self, s: file::SessionFile, portal: &Portal) -> SessionSettings {
        let idle_timeout = self.duration(
            "session.idle_timeout",
            s.idle_timeout.as_ref(),
            Duration::from_secs(30 * 60),
            Zero::Refused,
        );
        let absolute_timeout = self.duration(
            "session.absolute_timeout",
            s.absolute_timeout.as_ref(),
            Duration::from_secs(12 * 3600),
            Zero::Refused,
        );
        if idle_timeout > absolute_timeout {
            self.err(
                "session.idle_timeout",
                "`session.idle_timeout` is longer than `session.absolute_timeout`",
                "make `idle_timeout` at most `absolute_timeout` (defaults: 30m and 12h)",
            );
        }
        SessionSettings {
            idle_timeout,
            absolute_timeout,
            cookie_name: self.cookie_name("session.cookie_name", s.cookie_name, "nidan_session"),
            secure_cookies: self.secure_cookies(s.secure_cookies, portal),
        }
    }

    pub(super) fn trusted_devices(
        &mut self,
        t: file::TrustedDevicesFile,
        session: &SessionSettings,
    ) -> TrustedDevices {
        let lifetime = self.duration(
            "trusted_devices.lifetime",
            t.lifetime.as_ref(),
            Duration::from_secs(30 * 86400),
            Zero::Refused,
        );
        let max_per_user =
            self.number("trusted_devices.max_per_user", t.max_per_user, 10, 1..=1000);
        let cookie_name =
            self.cookie_name("trusted_devices.cookie_name", t.cookie_name, "nidan_device");
        if cookie_name == session.cookie_name {
            self.err(
                "trusted_devices.cookie_name",
                "`trusted_devices.cookie_name` is the same as `session.cookie_name`",
                "give the two cookies different names, e.g. `nidan_device` and `nidan_session`",
            );
        }
        let keys = t.signing_keys.unwrap_or_default();
        if keys.is_empty() {
            self.err(
                "trusted_devices.signing_keys",
                "`trusted_devices.signing_keys` has no key",
                "add `signing_keys: [{ id: k1, secret_file: secrets/device-k1 }]` under `trusted_devices` \
                 and create the file with `head -c 48 /dev/urandom | base64 > secrets/device-k1`",
            );
        }
        let mut signing_keys: Vec<SigningKey> = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let path = format!("trusted_devices.signing_keys[{i}]");
            if !name_ok(&k.id, 32) {
                self.err(
                    &format!("{path}.id"),
                    format!("`{path}.id` is not a usable key ID"),
                    "use 1 to 32 letters, digits, `.`, `_` or `-`, e.g. `k1`",
                );
            } else if signing_keys.iter().any(|s| s.id == k.id) {
                self.err(
                    &format!("{path}.id"),
                    format!("signing key ID `{}` is used twice", k.id),
                    "give every signing key its own ID",
                );
            }
            match self.secret(
                &path,
                "secret",
                k.secret_file.as_ref(),
                k.secret_env.as_ref(),
            ) {
                None if k.secret_file.is_none() && k.secret_env.is_none() => self.err(
                    &path,
                    format!("`{path}` has no secret"),
                    "add `secret_file: path` or `secret_env: VARIABLE` to the key",
                ),
                None => {}
                Some(secret) if secret.0.len() < 32 => self.err(
                    &path,
                    format!(
                        "the secret of signing key `{}` is {} bytes; at least 32 are needed",
                        k.id,
                        secret.0.len()
                    ),
                    "generate a longer one, e.g. `head -c 48 /dev/urandom | base64`",
                ),
                Some(secret) => signing_keys.push(SigningKey {
                    id: k.id.clone(),
                    secret,
                }),
            }
        }
        TrustedDevices {
            lifetime,
            max_per_user: usize::try_from(max_per_user).unwrap_or(10),
            cookie_name,
            signing_keys,
        }
    }
}
