//! The `portal` section and its `brand`: prefix, public URL, languages, colours, logo, footer.

use std::time::Duration;

use crate::config::file;
use crate::config::{Brand, FooterLink, Language, Logo, Portal};

use super::{Checker, Zero, hostname_ok};

impl Checker<'_> {
    pub(super) fn brand(&mut self, b: file::BrandFile) -> Brand {
        const P: &str = "portal.brand";
        let name = b.name.map(|n| n.trim().to_owned());
        if name
            .as_deref()
            .is_some_and(|n| n.is_empty() || n.chars().count() > 64)
        {
            self.err(
                &format!("{P}.name"),
                "`portal.brand.name` is empty or longer than 64 characters",
                "give the name shown in the header and page titles, e.g. `Example ID`",
            );
        }
        let logo = b
            .logo_file
            .and_then(|f| self.logo(&format!("{P}.logo_file"), &f));
        let primary_color = b.primary_color.and_then(|c| {
            let path = format!("{P}.primary_color");
            let Some(rgb) = parse_hex_color(&c) else {
                self.err(
                    &path,
                    "`portal.brand.primary_color` is not a colour",
                    "write it as `#rrggbb`, e.g. `#0b3d91`",
                );
                return None;
            };
            let ratio = contrast_with_white(rgb);
            if ratio < 4.5 {
                self.err(
                    &path,
                    format!(
                        "`portal.brand.primary_color` {} has a contrast of {:.1}:1 against white; \
                         white text on it (buttons, the header) needs at least 4.5:1",
                        c.trim(),
                        (ratio * 10.0).floor() / 10.0
                    ),
                    "choose a darker colour, e.g. `#0b3d91` (10.0:1) or `#1a7f37` (5.0:1)",
                );
                return None;
            }
            Some(format!("#{:02x}{:02x}{:02x}", rgb.0, rgb.1, rgb.2))
        });
        let mut footer_links = Vec::new();
        for (i, l) in b.footer_links.unwrap_or_default().into_iter().enumerate() {
            let path = format!("{P}.footer_links[{i}]");
            let (ja, en) = match l.label {
                file::LabelFile::One(s) => (s.clone(), s),
                file::LabelFile::PerLanguage { ja, en } => (ja, en),
            };
            let (ja, en) = (ja.trim().to_owned(), en.trim().to_owned());
            let label_ok = |s: &str| {
                !s.is_empty() && s.chars().count() <= 64 && !s.chars().any(char::is_control)
            };
            if !label_ok(&ja) || !label_ok(&en) {
                self.err(
                    &format!("{path}.label"),
                    format!("`{path}.label` is empty, too long or has control characters"),
                    "write 1 to 64 characters, or `{ ja: ヘルプ, en: Help }` for one per language",
                );
                continue;
            }
            let url = l.url.trim().to_owned();
            if !footer_url_ok(&url) {
                self.err(
                    &format!("{path}.url"),
                    format!("`{path}.url` is not an http(s) address or a path on this site"),
                    "write e.g. `https://example.com/help` or `/help`",
                );
                continue;
            }
            footer_links.push(FooterLink {
                label_ja: ja,
                label_en: en,
                url,
            });
        }
        if footer_links.len() > 10 {
            self.err(
                &format!("{P}.footer_links"),
                "`portal.brand.footer_links` has more than 10 links",
                "keep the footer to a few links (help, terms, privacy)",
            );
        }
        Brand {
            name,
            logo,
            primary_color,
            footer_links,
        }
    }

    /// Reads the logo file (at most 512 KiB of PNG, SVG, JPEG, WebP or GIF).
    pub(super) fn logo(&mut self, path: &str, text: &str) -> Option<Logo> {
        let file = self.path(text);
        let ext = file
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        let content_type = match ext.as_str() {
            "png" => "image/png",
            "svg" => "image/svg+xml",
            "jpg" | "jpeg" => "image/jpeg",
            "webp" => "image/webp",
            "gif" => "image/gif",
            _ => {
                self.err(
                    path,
                    "the logo file is not a PNG, SVG, JPEG, WebP or GIF image",
                    "give a file ending in .png, .svg, .jpg, .webp or .gif",
                );
                return None;
            }
        };
        match std::fs::read(&file) {
            Ok(bytes) if bytes.len() <= 512 * 1024 && !bytes.is_empty() => Some(Logo {
                bytes: std::sync::Arc::new(bytes),
                content_type,
            }),
            Ok(_) => {
                self.err(
                    path,
                    "the logo file is empty or larger than 512 KiB",
                    "use a small image (a few KiB of SVG or PNG is plenty for a header)",
                );
                None
            }
            Err(e) => {
                self.err(
                    path,
                    format!("cannot read the logo file {}: {e}", file.display()),
                    "check the path (relative to the configuration file) and that nidan may read it",
                );
                None
            }
        }
    }

    /// An operator page the portal links to: an http(s) address or a path on this site.
    fn link_url(&mut self, key: &str, url: Option<String>) -> Option<String> {
        let url = url?.trim().to_owned();
        if footer_url_ok(&url) {
            return Some(url);
        }
        self.err(
            key,
            format!("`{key}` is not an http(s) address or a path on this site"),
            "write e.g. `https://example.com/help` or `/help`, or remove the key",
        );
        None
    }

    pub(super) fn portal(&mut self, p: file::PortalFile) -> Portal {
        let path_prefix = match p.path_prefix {
            None => "/_nidan".to_string(),
            Some(v) => {
                if portal_prefix_ok(&v) {
                    v
                } else {
                    self.err(
                        "portal.path_prefix",
                        "`portal.path_prefix` is not a plain path",
                        "write one or more plain segments starting with `/` and without a trailing `/`, e.g. `/_nidan`",
                    );
                    "/_nidan".to_string()
                }
            }
        };
        let title = p.title.unwrap_or_else(|| "nidan".into());
        if title.trim().is_empty() {
            self.err(
                "portal.title",
                "`portal.title` is empty",
                "give the product name shown on pages, e.g. `nidan`",
            );
        }
        let mut allowed_return_hosts = Vec::new();
        for (i, h) in p
            .allowed_return_hosts
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let h = h.trim().to_ascii_lowercase();
            if hostname_ok(&h) {
                allowed_return_hosts.push(h);
            } else {
                self.err(
                    &format!("portal.allowed_return_hosts[{i}]"),
                    format!("`portal.allowed_return_hosts[{i}]` is not a host name"),
                    "write a host name without scheme, port or path, e.g. `intranet.example.com`",
                );
            }
        }
        let public_url = p.public_url.and_then(|u| {
            let u = u.trim().trim_end_matches('/').to_ascii_lowercase();
            if public_url_ok(&u) {
                Some(u)
            } else {
                self.err(
                    "portal.public_url",
                    "`portal.public_url` is not an http(s) address of a host",
                    "write the scheme, host and optional port users reach nidan at, without a path, e.g. `https://login.example.com`",
                );
                None
            }
        });
        let time_zone = p.time_zone.and_then(|z| match z.trim().parse::<chrono_tz::Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                self.err(
                    "portal.time_zone",
                    "`portal.time_zone` is not a time zone of the IANA database",
                    "write a zone name such as `Asia/Tokyo`, `Europe/Berlin` or `UTC`, or remove the key (Japanese pages then show Asia/Tokyo, English ones UTC)",
                );
                None
            }
        });
        let brand = self.brand(p.brand.unwrap_or_default());
        let help_url = self.link_url("portal.help_url", p.help_url);
        let account_url = self.link_url("portal.account_url", p.account_url);
        let recovery_url = self.link_url("portal.recovery_url", p.recovery_url);
        Portal {
            time_zone,
            brand,
            help_url,
            account_url,
            recovery_url,
            path_prefix,
            public_url,
            default_language: match p.default_language {
                Some(file::LanguageFile::En) => Language::En,
                Some(file::LanguageFile::Ja) | None => Language::Ja,
            },
            title,
            allowed_return_hosts,
            recent_login: self.duration(
                "portal.recent_login",
                p.recent_login.as_ref(),
                Duration::from_secs(300),
                Zero::Refused,
            ),
            flow_lifetime: self.duration(
                "portal.flow_lifetime",
                p.flow_lifetime.as_ref(),
                Duration::from_secs(600),
                Zero::Refused,
            ),
        }
    }
}

/// `http(s)://host[:port]`, no path, query, userinfo or fragment.
/// `#rgb` or `#rrggbb`.
pub(super) fn parse_hex_color(text: &str) -> Option<(u8, u8, u8)> {
    let hex = text.trim().strip_prefix('#')?;
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let digit = |i: usize, n: usize| u8::from_str_radix(hex.get(i..i + n)?, 16).ok();
    match hex.len() {
        3 => Some((digit(0, 1)? * 17, digit(1, 1)? * 17, digit(2, 1)? * 17)),
        6 => Some((digit(0, 2)?, digit(2, 2)?, digit(4, 2)?)),
        _ => None,
    }
}

/// The WCAG 2 contrast ratio of a colour against white.
pub(crate) fn contrast_with_white((r, g, b): (u8, u8, u8)) -> f64 {
    let lin = |c: u8| {
        let c = f64::from(c) / 255.0;
        if c <= 0.039_28 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    let l = 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
    1.05 / (l + 0.05)
}

/// A footer link: an absolute http(s) URL, or a path on this site (never `//host`).
pub(super) fn footer_url_ok(u: &str) -> bool {
    if u.len() > 2048 || u.chars().any(|c| c.is_control() || c == ' ') {
        return false;
    }
    if let Some(rest) = u.strip_prefix('/') {
        return !rest.starts_with('/') && !rest.starts_with('\\');
    }
    let Some(rest) = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"))
    else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    !authority.contains('@') && hostname_ok(&host.to_ascii_lowercase())
}

pub(super) fn public_url_ok(u: &str) -> bool {
    let Some(rest) = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"))
    else {
        return false;
    };
    let (host_ok, port) = match rest.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((addr, after)) => (
                addr.parse::<std::net::Ipv6Addr>().is_ok(),
                after
                    .strip_prefix(':')
                    .or(Some(""))
                    .filter(|_| after.is_empty() || after.starts_with(':')),
            ),
            None => (false, None),
        },
        None => match rest.split_once(':') {
            Some((h, p)) => (hostname_ok(h), Some(p)),
            None => (hostname_ok(rest), Some("")),
        },
    };
    let port_ok = port.is_some_and(|p| p.is_empty() || p.parse::<u16>().is_ok_and(|n| n > 0));
    host_ok && port_ok
}

/// `/_nidan`, `/auth/portal`: plain segments, no trailing slash.
pub(super) fn portal_prefix_ok(p: &str) -> bool {
    let Some(rest) = p.strip_prefix('/') else {
        return false;
    };
    !rest.is_empty()
        && rest.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'~'))
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::config::testing::*;

    #[test]
    fn brand_colours_are_checked_for_contrast() {
        assert!((contrast_with_white((255, 255, 255)) - 1.0).abs() < 1e-9);
        assert!((contrast_with_white((0, 0, 0)) - 21.0).abs() < 1e-9);
        assert_eq!(parse_hex_color("#abc"), Some((0xaa, 0xbb, 0xcc)));
        assert_eq!(parse_hex_color("0b3d91"), None);
        assert_eq!(parse_hex_color("#0b3d9"), None);
        assert_eq!(parse_hex_color("#0b3d9g"), None);
        let c = load_t(&with("portal: { brand: { primary_color: \"#0B3D91\" } }\n")).unwrap();
        assert_eq!(c.portal.brand.primary_color.as_deref(), Some("#0b3d91"));
        // #777777 is 4.48:1: just short.
        let e = &errors(&with("portal: { brand: { primary_color: \"#777777\" } }\n"))[0];
        assert!(
            e.message.contains("4.4:1") && e.message.contains("4.5:1"),
            "{}",
            e.message
        );
        assert!(footer_url_ok("/help") && footer_url_ok("https://example.com/terms?x=1"));
        for bad in [
            "//evil.example",
            "javascript:alert(1)",
            "https://u@evil/",
            "help",
            "",
        ] {
            assert!(!footer_url_ok(bad), "{bad}");
        }
        let c = load_t(&with("portal: { time_zone: Asia/Tokyo }\n")).unwrap();
        assert_eq!(c.portal.time_zone, Some(chrono_tz::Tz::Asia__Tokyo));
    }

    #[test]
    fn operator_page_links_are_addresses_or_site_paths() {
        let c = load_t(&with(
            "portal: { help_url: /help, account_url: \"https://id.example.com/me\" }\n",
        ))
        .unwrap();
        assert_eq!(c.portal.help_url.as_deref(), Some("/help"));
        assert_eq!(
            c.portal.account_url.as_deref(),
            Some("https://id.example.com/me")
        );
        assert_eq!(c.portal.recovery_url, None);
        let e = &errors(&with("portal: { recovery_url: \"javascript:alert(1)\" }\n"))[0];
        assert!(e.message.contains("portal.recovery_url"), "{}", e.message);
    }
}
