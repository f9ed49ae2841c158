//! The portal's HTML pages: one askama view per page, one template per login step.
//!
//! Every view carries the same layout fields (texts, language, portal prefix, product
//! title, CSRF token). Templates auto-escape everything they print, and contain no
//! inline script or style, so the portal CSP can stay `script-src 'self'`.

use askama::Template;

use super::i18n::{Lang, Texts};

/// Step 1: the ID.
#[derive(Template)]
#[template(path = "login_id.html")]
pub struct IdPage {
    pub t: &'static Texts,
    pub lang: Lang,
    pub other_lang: Lang,
    pub prefix: String,
    pub title: String,
    pub csrf: String,
    /// Return address, carried through as a hidden field.
    pub rd: String,
    /// ID to prefill (after an error).
    pub id: String,
    pub error: Option<String>,
    /// Offer "log in with a passkey" (shown by nidan.js where WebAuthn works).
    pub passkeys: bool,
    /// Came here by a step-up: the session lacks the second step for the page asked for.
    pub step_up: bool,
}

/// Step 2: the password, with the security code when `with_code`.
#[derive(Template)]
#[template(path = "login_password.html")]
pub struct PasswordPage {
    pub t: &'static Texts,
    pub lang: Lang,
    pub other_lang: Lang,
    pub prefix: String,
    pub title: String,
    pub csrf: String,
    pub flow: String,
    pub user_id: String,
    pub with_code: bool,
    /// Masked destination, e.g. `***-****-5678`.
    pub code_destination: Option<String>,
    /// `sms` or `email`.
    pub code_channel: Option<String>,
    pub notice: Option<String>,
    pub can_switch_to_email: bool,
    pub can_resend: bool,
    pub offer_trust: bool,
    pub error: Option<String>,
    /// The app approved this login; only the password is left.
    pub app_approved: bool,
    /// A step-up: the session proved the password, which is not asked again.
    pub password_known: bool,
}

/// Step 2 (app): waiting for the approval in the phone app.
#[derive(Template)]
#[template(path = "login_waiting.html")]
pub struct WaitingPage {
    pub t: &'static Texts,
    pub lang: Lang,
    pub other_lang: Lang,
    pub prefix: String,
    pub title: String,
    pub csrf: String,
    pub flow: String,
    pub user_id: String,
    /// The 2-digit number the user picks in the app.
    pub number: String,
    /// JSON status URL polled by nidan.js.
    pub poll_url: String,
    /// `<meta http-equiv=refresh>` interval for browsers without JavaScript.
    pub refresh_seconds: u32,
    pub error: Option<String>,
}

/// The portal's home once logged in.
#[derive(Template)]
#[template(path = "signed_in.html")]
pub struct SignedInPage {
    pub t: &'static Texts,
    pub lang: Lang,
    pub other_lang: Lang,
    pub prefix: String,
    pub title: String,
    pub csrf: String,
    pub user_id: String,
    pub name: String,
    pub email: Option<String>,
    pub groups: Vec<String>,
    /// How the second step was done (one of `t.two_step_*`).
    pub two_step: String,
    pub login_at: String,
    pub expires_at: String,
    /// Link to the passkeys page.
    pub passkeys: bool,
}

/// One trusted device in [`DevicesPage`].
#[derive(Clone, Debug)]
pub struct DeviceRow {
    pub id: String,
    pub name: String,
    pub created: String,
    pub last_used: String,
    pub browser: String,
    /// The device cookie of this very browser.
    pub current: bool,
}

/// The list of trusted devices, with rename and remove.
#[derive(Template)]
#[template(path = "devices.html")]
pub struct DevicesPage {
    pub t: &'static Texts,
    pub lang: Lang,
    pub other_lang: Lang,
    pub prefix: String,
    pub title: String,
    pub csrf: String,
    pub devices: Vec<DeviceRow>,
    /// The session is too old to manage devices: show a re-login link instead of forms.
    pub needs_recent_login: bool,
    pub message: Option<String>,
    pub error: Option<String>,
    pub max_devices: usize,
}

/// The user's 2-step setting: on/off and method.
#[derive(Template)]
#[template(path = "settings.html")]
pub struct SettingsPage {
    pub t: &'static Texts,
    pub lang: Lang,
    pub other_lang: Lang,
    pub prefix: String,
    pub title: String,
    pub csrf: String,
    pub enabled: bool,
    /// `sms`, `email` or `app`.
    pub method: String,
    pub has_phone: bool,
    pub has_email: bool,
    pub phone_masked: Option<String>,
    pub email_masked: Option<String>,
    pub needs_recent_login: bool,
    pub message: Option<String>,
    pub error: Option<String>,
}

/// A generic page: errors (403, 404, 429, 502, expired flow…) and notices (logged out).
#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub t: &'static Texts,
    pub lang: Lang,
    pub other_lang: Lang,
    pub prefix: String,
    pub title: String,
    pub csrf: String,
    pub heading: String,
    pub message: String,
    /// `(href, label)`.
    pub link: Option<(String, String)>,
}

/// One enrolled phone app on the app page.
#[derive(Clone, Debug)]
pub struct AppRow {
    pub id: String,
    pub name: String,
    pub created: String,
    pub last_used: String,
}

/// What the app page shows right after "set up the app".
#[derive(Clone, Debug)]
pub struct AppSetup {
    pub enrollment_code: String,
    pub uri: String,
    /// `data:` URI of an SVG QR code of `uri`.
    pub qr: Option<String>,
    pub code_destination: String,
}

/// The phone app: enrolled apps, and setting one up.
#[derive(Template)]
#[template(path = "app.html")]
pub struct AppPage {
    pub t: &'static Texts,
    pub lang: Lang,
    pub other_lang: Lang,
    pub prefix: String,
    pub title: String,
    pub csrf: String,
    pub apps: Vec<AppRow>,
    pub setup: Option<AppSetup>,
    pub needs_recent_login: bool,
    pub message: Option<String>,
    pub error: Option<String>,
}

impl AppPage {
    pub fn page_heading(&self) -> &str {
        self.t.app_heading
    }
}

// The `<title>` and `<h1>` of each page (base.html prints `self.page_heading()`).
impl IdPage {
    pub fn page_heading(&self) -> &str {
        self.t.id_heading
    }
}

impl PasswordPage {
    pub fn page_heading(&self) -> &str {
        if self.with_code {
            self.t.pw_code_heading
        } else {
            self.t.pw_heading
        }
    }
}

impl WaitingPage {
    pub fn page_heading(&self) -> &str {
        self.t.wait_heading
    }
}

impl SignedInPage {
    pub fn page_heading(&self) -> &str {
        self.t.signed_in_heading
    }
}

impl DevicesPage {
    pub fn page_heading(&self) -> &str {
        self.t.devices_heading
    }

    pub fn max_devices_line(&self) -> String {
        self.t.devices_max_line(self.max_devices)
    }
}

impl SettingsPage {
    pub fn page_heading(&self) -> &str {
        self.t.settings_heading
    }
}

impl MessagePage {
    pub fn page_heading(&self) -> &str {
        &self.heading
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use crate::portal::i18n::texts;

    const EVIL: &str = "<script>alert(1)</script>";
    const LANGS: [Lang; 2] = [Lang::Ja, Lang::En];

    fn id_page(lang: Lang) -> IdPage {
        IdPage {
            t: texts(lang),
            lang,
            other_lang: lang.other(),
            prefix: "/_nidan".into(),
            title: "nidan".into(),
            csrf: "CSRFTOKEN".into(),
            rd: "/app?x=1&y=2".into(),
            id: EVIL.into(),
            error: Some(EVIL.into()),
            passkeys: true,
            step_up: true,
        }
    }

    fn password_page(lang: Lang, with_code: bool, offer_trust: bool) -> PasswordPage {
        PasswordPage {
            t: texts(lang),
            lang,
            other_lang: lang.other(),
            prefix: "/_nidan".into(),
            title: "nidan".into(),
            csrf: "CSRFTOKEN".into(),
            flow: "FLOW123".into(),
            user_id: EVIL.into(),
            with_code,
            code_destination: with_code.then(|| "***-****-5678".into()),
            code_channel: with_code.then(|| "sms".into()),
            notice: Some(EVIL.into()),
            can_switch_to_email: with_code,
            can_resend: with_code,
            offer_trust,
            error: Some(EVIL.into()),
            app_approved: !with_code,
            password_known: false,
        }
    }

    fn waiting_page(lang: Lang) -> WaitingPage {
        WaitingPage {
            t: texts(lang),
            lang,
            other_lang: lang.other(),
            prefix: "/_nidan".into(),
            title: "nidan".into(),
            csrf: "CSRFTOKEN".into(),
            flow: "FLOW123".into(),
            user_id: "alice".into(),
            number: "42".into(),
            poll_url: "/_nidan/api/login/FLOW123".into(),
            refresh_seconds: 5,
            error: Some(EVIL.into()),
        }
    }

    fn signed_in_page(lang: Lang) -> SignedInPage {
        SignedInPage {
            t: texts(lang),
            lang,
            other_lang: lang.other(),
            prefix: "/_nidan".into(),
            title: EVIL.into(),
            csrf: "CSRFTOKEN".into(),
            user_id: "alice".into(),
            name: EVIL.into(),
            email: Some("a@example.com".into()),
            groups: vec!["admins".into(), EVIL.into()],
            two_step: texts(lang).two_step_app.into(),
            login_at: "2026-05-01 10:00".into(),
            expires_at: "2026-05-01 22:00".into(),
            passkeys: true,
        }
    }

    fn devices_page(lang: Lang, needs_recent_login: bool) -> DevicesPage {
        DevicesPage {
            t: texts(lang),
            lang,
            other_lang: lang.other(),
            prefix: "/_nidan".into(),
            title: "nidan".into(),
            csrf: "CSRFTOKEN".into(),
            devices: vec![
                DeviceRow {
                    id: "dev1".into(),
                    name: EVIL.into(),
                    created: "2026-04-01".into(),
                    last_used: "2026-05-01".into(),
                    browser: EVIL.into(),
                    current: true,
                },
                DeviceRow {
                    id: "dev2".into(),
                    name: "Work PC".into(),
                    created: "2026-03-01".into(),
                    last_used: "2026-03-02".into(),
                    browser: "Firefox on Linux".into(),
                    current: false,
                },
            ],
            needs_recent_login,
            message: Some(EVIL.into()),
            error: Some(EVIL.into()),
            max_devices: 10,
        }
    }

    fn settings_page(lang: Lang, needs_recent_login: bool) -> SettingsPage {
        SettingsPage {
            t: texts(lang),
            lang,
            other_lang: lang.other(),
            prefix: "/_nidan".into(),
            title: "nidan".into(),
            csrf: "CSRFTOKEN".into(),
            enabled: true,
            method: "email".into(),
            has_phone: false,
            has_email: true,
            phone_masked: None,
            email_masked: Some(EVIL.into()),
            needs_recent_login,
            message: Some(EVIL.into()),
            error: Some(EVIL.into()),
        }
    }

    fn message_page(lang: Lang) -> MessagePage {
        MessagePage {
            t: texts(lang),
            lang,
            other_lang: lang.other(),
            prefix: "/_nidan".into(),
            title: "nidan".into(),
            csrf: String::new(),
            heading: texts(lang).err_too_many_heading.into(),
            message: EVIL.into(),
            link: Some(("/_nidan/login?rd=/a&b".into(), EVIL.into())),
        }
    }

    /// Every page variant in one language.
    fn all_pages(lang: Lang) -> Vec<(&'static str, String)> {
        vec![
            ("id", id_page(lang).render().unwrap()),
            (
                "password+code+trust",
                password_page(lang, true, true).render().unwrap(),
            ),
            (
                "password",
                password_page(lang, false, false).render().unwrap(),
            ),
            ("waiting", waiting_page(lang).render().unwrap()),
            ("signed_in", signed_in_page(lang).render().unwrap()),
            ("devices", devices_page(lang, false).render().unwrap()),
            ("devices-reauth", devices_page(lang, true).render().unwrap()),
            ("settings", settings_page(lang, false).render().unwrap()),
            (
                "settings-reauth",
                settings_page(lang, true).render().unwrap(),
            ),
            ("message", message_page(lang).render().unwrap()),
        ]
    }

    #[test]
    fn every_page_renders_in_both_languages() {
        for lang in LANGS {
            for (name, html) in all_pages(lang) {
                assert!(html.starts_with("<!DOCTYPE html>"), "{name}");
                assert!(
                    html.contains(&format!("<html lang=\"{}\">", lang.code())),
                    "{name}"
                );
                assert!(
                    html.contains(&format!("?lang={}", lang.other().code())),
                    "{name}"
                );
                assert!(html.contains("href=\"/_nidan/static/nidan.css\""), "{name}");
                assert!(html.contains("name=\"viewport\""), "{name}");
                assert!(html.trim_end().ends_with("</html>"), "{name}");
            }
        }
        let ja = password_page(Lang::Ja, true, true).render().unwrap();
        assert!(ja.contains("セキュリティコード"));
        assert!(ja.contains("信頼できる端末（ブラウザ等）として登録する"));
        let en = password_page(Lang::En, true, true).render().unwrap();
        assert!(en.contains("Security code"));
        assert!(!en.contains("セキュリティコード"));
    }

    #[test]
    fn user_strings_are_escaped() {
        for lang in LANGS {
            for (name, html) in all_pages(lang) {
                assert!(!html.contains(EVIL), "{name}: raw user string");
                assert!(!html.contains("<script>alert"), "{name}");
            }
            for html in [
                id_page(lang).render().unwrap(),
                devices_page(lang, false).render().unwrap(),
                signed_in_page(lang).render().unwrap(),
                message_page(lang).render().unwrap(),
            ] {
                assert!(
                    html.contains("&#60;script&#62;alert(1)&#60;/script&#62;")
                        || html.contains("&lt;script&gt;alert(1)&lt;/script&gt;")
                );
            }
        }
    }

    #[test]
    fn code_field_only_with_code() {
        for lang in LANGS {
            let with = password_page(lang, true, false).render().unwrap();
            assert!(with.contains("name=\"code\""));
            assert!(with.contains("autocomplete=\"one-time-code\""));
            assert!(with.contains("inputmode=\"numeric\""));
            assert!(with.contains("/_nidan/login/FLOW123/resend"));
            assert!(with.contains("/_nidan/login/FLOW123/use-email"));
            assert!(with.contains("<details"));
            assert!(with.contains("***-****-5678"));
            let without = password_page(lang, false, false).render().unwrap();
            assert!(!without.contains("name=\"code\""));
            assert!(!without.contains("/resend"));
            assert!(without.contains("name=\"password\""));
            assert!(without.contains("autocomplete=\"current-password\""));
            assert!(without.contains(texts(lang).app_approved));
        }
    }

    #[test]
    fn trust_checkbox_only_when_offered() {
        for lang in LANGS {
            let with = password_page(lang, true, true).render().unwrap();
            assert!(with.contains("name=\"trust_device\""));
            assert!(with.contains("value=\"1\""));
            assert!(with.contains("name=\"device_name\""));
            assert!(with.contains("maxlength=\"64\""));
            let without = password_page(lang, true, false).render().unwrap();
            assert!(!without.contains("name=\"trust_device\""));
            assert!(!without.contains("name=\"device_name\""));
        }
    }

    /// Each `<form …>…</form>` in `html`.
    fn forms(html: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let mut rest = html;
        while let Some(start) = rest.find("<form") {
            let end = rest[start..].find("</form>").expect("unclosed form") + start;
            out.push(&rest[start..end]);
            rest = &rest[end..];
        }
        out
    }

    #[test]
    fn every_form_posts_with_csrf() {
        for lang in LANGS {
            let mut total = 0;
            for (name, html) in all_pages(lang) {
                for form in forms(&html) {
                    total += 1;
                    assert!(form.contains("method=\"post\""), "{name}: {form}");
                    assert!(
                        form.contains("<input type=\"hidden\" name=\"csrf\" value=\"CSRFTOKEN\">"),
                        "{name}: {form}"
                    );
                    assert!(form.contains("action=\"/_nidan/"), "{name}: {form}");
                }
            }
            assert!(total >= 12, "only {total} forms");
        }
    }

    /// ` onclick=`, ` onload=`… anywhere in the markup.
    fn has_event_handler(html: &str) -> bool {
        html.match_indices(" on").any(|(i, _)| {
            let rest = &html[i + 3..];
            let word: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase())
                .collect();
            !word.is_empty() && rest[word.len()..].starts_with('=')
        })
    }

    #[test]
    fn no_inline_script_or_style() {
        for lang in LANGS {
            for (name, html) in all_pages(lang) {
                assert!(!html.contains("style="), "{name}");
                assert!(!html.contains("<style"), "{name}");
                assert!(!has_event_handler(&html), "{name}: event handler attribute");
                let mut rest = html.as_str();
                while let Some(i) = rest.find("<script") {
                    let tag_end = rest[i..].find('>').unwrap() + i;
                    assert!(rest[i..tag_end].contains(" src="), "{name}: inline script");
                    assert!(
                        rest[tag_end + 1..].starts_with("</script>"),
                        "{name}: script body"
                    );
                    rest = &rest[tag_end..];
                }
                assert!(!html.contains("javascript:"), "{name}");
                assert!(
                    !html.contains("http://") && !html.contains("https://"),
                    "{name}: external resource"
                );
            }
        }
    }

    #[test]
    fn script_only_on_waiting_page() {
        for lang in LANGS {
            for (name, html) in all_pages(lang) {
                let has = html.contains("<script src=\"/_nidan/static/nidan.js\" defer></script>");
                // The ID page loads it for the passkey button (hidden without JavaScript).
                assert_eq!(has, name == "waiting" || name == "id", "{name}");
            }
            let mut no_passkeys = id_page(lang);
            no_passkeys.passkeys = false;
            let html = no_passkeys.render().unwrap();
            assert!(!html.contains("<script") && !html.contains("nidan-passkey-login"));
            let html = id_page(lang).render().unwrap();
            assert!(html.contains("id=\"nidan-passkey-login\"") && html.contains(" hidden>"));
            let w = waiting_page(lang).render().unwrap();
            // The reload only without JavaScript: with it, the page polls.
            assert!(w.contains("<noscript><meta http-equiv=\"refresh\" content=\"5\"></noscript>"));
            assert_eq!(w.matches("http-equiv=\"refresh\"").count(), 1);
            assert!(w.contains("data-poll=\"/_nidan/api/login/FLOW123\""));
            assert!(w.contains(">42<"));
            assert!(w.contains("action=\"/_nidan/login/FLOW123/use-code\""));
        }
    }

    #[test]
    fn errors_are_alerts_and_fields_labelled() {
        for lang in LANGS {
            for (name, html) in all_pages(lang) {
                if name != "message" && name != "signed_in" {
                    assert!(html.contains("role=\"alert\""), "{name}");
                }
                // Every visible text-like input has a label pointing at it.
                let mut rest = html.as_str();
                while let Some(i) = rest.find("<input") {
                    let end = rest[i..].find('>').unwrap() + i;
                    let tag = &rest[i..end];
                    rest = &rest[end..];
                    if tag.contains("type=\"hidden\"") || tag.contains(" hidden") {
                        continue;
                    }
                    let id = tag.split("id=\"").nth(1).and_then(|s| s.split('"').next());
                    let id = id.unwrap_or_else(|| panic!("{name}: input without id: {tag}"));
                    assert!(
                        html.contains(&format!("for=\"{id}\"")),
                        "{name}: no label for {id}"
                    );
                }
            }
        }
    }

    #[test]
    fn devices_page_forms_and_marker() {
        for lang in LANGS {
            let html = devices_page(lang, false).render().unwrap();
            assert!(html.contains("action=\"/_nidan/devices/dev1/rename\""));
            assert!(html.contains("action=\"/_nidan/devices/dev2/delete\""));
            assert!(html.contains("action=\"/_nidan/devices/delete-all\""));
            assert_eq!(html.matches(texts(lang).this_browser).count(), 1);
            let reauth = devices_page(lang, true).render().unwrap();
            assert!(reauth.contains("/_nidan/login?rd=/_nidan/devices&amp;reauth=1"));
            assert!(!reauth.contains("/rename"));
            assert!(!reauth.contains("delete-all"));
        }
    }

    #[test]
    fn device_ids_are_url_encoded_in_actions() {
        let mut page = devices_page(Lang::En, false);
        page.devices[0].id = "a/../b?c".into();
        let html = page.render().unwrap();
        assert!(!html.contains("/devices/a/../b"));
        assert!(html.contains("/devices/a%2F..%2Fb%3Fc/rename"));
    }

    #[test]
    fn settings_page_reflects_state() {
        for lang in LANGS {
            let html = settings_page(lang, false).render().unwrap();
            assert!(html.contains("action=\"/_nidan/settings\""));
            assert!(html.contains("value=\"on\" checked"));
            assert!(html.contains("value=\"email\" checked"));
            // No phone: the SMS choice is disabled.
            assert!(html.contains("value=\"sms\" disabled"));
            assert!(html.contains(texts(lang).settings_change_note));
            let reauth = settings_page(lang, true).render().unwrap();
            assert!(reauth.contains("/_nidan/login?rd=/_nidan/settings&amp;reauth=1"));
            assert!(!reauth.contains("action=\"/_nidan/settings\""));
        }
    }

    #[test]
    fn message_page_without_link() {
        let mut page = message_page(Lang::Ja);
        page.link = None;
        let html = page.render().unwrap();
        assert!(!html.contains("class=\"link\""));
    }
}
