//! The portal's HTML pages: one askama view per page, one template per login step.
//!
//! Every view carries the same layout fields (texts, language, portal prefix, product
//! title, CSRF token). Templates auto-escape everything they print, and contain no
//! inline script or style, so the portal CSP can stay `script-src 'self'`.

use askama::Template;

use super::i18n::{Lang, Texts};

/// What every page's layout shows around its content: the operator's name, logo, colour and
/// footer links (`portal.brand`).
#[derive(Clone, Debug, Default)]
pub struct Site {
    pub name: String,
    /// The logo's URL (served by the portal).
    pub logo: Option<String>,
    /// The stylesheet with the operator's primary colour.
    pub brand_css: Option<String>,
    /// `(href, label)` in the page's language.
    pub footer: Vec<(String, String)>,
}

impl Site {
    /// A site with a name only (tests, gateway error pages).
    pub fn named(name: &str) -> Self {
        Site {
            name: name.to_owned(),
            ..Site::default()
        }
    }
}

/// Where a login page is among the steps shown at its top (ID → verify → done).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginStep {
    Id = 1,
    Verify = 2,
    Done = 3,
}

impl LoginStep {
    pub fn n(self) -> u8 {
        self as u8
    }
}

/// Step 1: the ID.
#[derive(Template)]
#[template(path = "login_id.html")]
pub struct IdPage {
    pub t: &'static Texts,
    pub lang: Lang,
    pub other_lang: Lang,
    pub prefix: String,
    pub site: Site,
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
    /// This browser is logged in as this ID (the page says so, with a way back).
    pub signed_in_as: Option<String>,
    /// "Forgot your ID or password?" (`portal.recovery_url`).
    pub recovery_url: Option<String>,
}

/// Step 2: the password, with the security code when `with_code`.
#[derive(Template)]
#[template(path = "login_password.html")]
pub struct PasswordPage {
    pub t: &'static Texts,
    pub lang: Lang,
    pub other_lang: Lang,
    pub prefix: String,
    pub site: Site,
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
    /// The fields the error is about (`password`, `code`, `device_name`): marked
    /// `aria-invalid` and described by the error.
    pub error_fields: &'static [&'static str],
    /// The app approved this login; only the password is left.
    pub app_approved: bool,
    /// A step-up: the session proved the password, which is not asked again.
    pub password_known: bool,
    /// Where the login leads: the forms carry it, so a login that expired starts again
    /// towards it.
    pub return_to: String,
    /// The code is asked because the risk engine asked for it: the page says so.
    pub risk_reason: bool,
    /// "Register as a trusted device" is ticked: by default (the seed), and as the user
    /// left it after an error.
    pub trust_checked: bool,
    /// The device name as the user typed it (kept after an error), else a suggestion.
    pub device_name: String,
    /// How many minutes a code is valid.
    pub code_minutes: u64,
    /// The operator's help page (`portal.help_url`).
    pub help_url: Option<String>,
}

/// Step 2 (app): waiting for the approval in the phone app.
#[derive(Template)]
#[template(path = "login_waiting.html")]
pub struct WaitingPage {
    pub t: &'static Texts,
    pub lang: Lang,
    pub other_lang: Lang,
    pub prefix: String,
    pub site: Site,
    pub csrf: String,
    pub flow: String,
    pub user_id: String,
    /// The 2-digit number the user picks in the app.
    pub number: String,
    /// JSON status URL polled by nidan.js.
    pub poll_url: String,
    /// How long the approval can be answered, in minutes.
    pub expiry_minutes: u64,
    /// Where the login leads (carried by the forms, see [`PasswordPage::return_to`]).
    pub return_to: String,
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
    pub site: Site,
    pub csrf: String,
    pub user_id: String,
    pub name: String,
    pub email: Option<String>,
    pub groups: Vec<String>,
    /// How the second step was done (one of `t.two_step_*`).
    pub two_step: String,
    pub login_at: String,
    /// The absolute end of the login.
    pub expires_at: String,
    /// The idle timeout, in words.
    pub idle_line: String,
    /// Link to the passkeys page.
    pub passkeys: bool,
    /// Came here at the end of a login started on the portal: the last step is shown.
    pub just_signed_in: bool,
}

/// One trusted device in [`DevicesPage`].
#[derive(Clone, Debug)]
pub struct DeviceRow {
    pub id: String,
    pub name: String,
    pub created: String,
    pub last_used: String,
    /// When the registration lapses (the second step is asked again).
    pub expires: String,
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
    pub site: Site,
    pub csrf: String,
    pub devices: Vec<DeviceRow>,
    /// The session is too old to manage devices: show a re-login link instead of forms.
    pub needs_recent_login: bool,
    pub message: Option<String>,
    pub error: Option<String>,
    /// The device whose rename field the error is about.
    pub error_for: Option<String>,
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
    pub site: Site,
    pub csrf: String,
    pub enabled: bool,
    /// `sms`, `email` or `app`.
    pub method: String,
    pub has_phone: bool,
    pub has_email: bool,
    pub phone_masked: Option<String>,
    pub email_masked: Option<String>,
    /// An app is enrolled (else the app choice links to setting one up).
    pub has_app: bool,
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
    pub site: Site,
    pub csrf: String,
    pub heading: String,
    pub message: String,
    /// Other ways forward, under `t.other_ways_heading` (throttling pages).
    pub hints: Vec<String>,
    /// `(href, label)`.
    pub link: Option<(String, String)>,
    /// The request id to quote to support ("reference: …"), on the gateway's error pages.
    pub reference: Option<String>,
}

/// "Remove this?": the step before a removal, a form that works without JavaScript.
#[derive(Template)]
#[template(path = "confirm.html")]
pub struct ConfirmPage {
    pub t: &'static Texts,
    pub lang: Lang,
    pub other_lang: Lang,
    pub prefix: String,
    pub site: Site,
    pub csrf: String,
    pub question: String,
    pub help: String,
    /// Where the confirmed removal is posted.
    pub action: String,
    /// Back to the list.
    pub cancel: String,
    /// The confirming button's label.
    pub button: String,
}

impl ConfirmPage {
    pub fn page_heading(&self) -> &str {
        self.t.confirm_heading
    }
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
    pub site: Site,
    pub csrf: String,
    pub apps: Vec<AppRow>,
    pub setup: Option<AppSetup>,
    /// `{prefix}/api/app/enrollments`, polled by nidan.js after the QR code.
    pub poll_url: String,
    /// Shown after an enrollment: how to make the app the login's method.
    pub use_hint: bool,
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
    /// Is `field` one the error is about?
    pub fn invalid(&self, field: &str) -> bool {
        self.error.is_some() && self.error_fields.contains(&field)
    }

    /// Does `field` get the focus: the first field in error, else the first field to fill.
    pub fn focus(&self, field: &str) -> bool {
        let shown = |f: &str| match f {
            "password" => !self.password_known,
            "code" => self.with_code,
            "device_name" => self.offer_trust,
            _ => false,
        };
        let mut fields = ["password", "code", "device_name"]
            .into_iter()
            .filter(|f| shown(f));
        let first = fields
            .clone()
            .find(|f| self.invalid(f))
            .or_else(|| fields.next());
        first == Some(field)
    }

    /// "The code is valid for N minutes."
    pub fn code_validity(&self) -> String {
        self.t.code_valid_for(self.code_minutes)
    }

    pub fn page_heading(&self) -> &str {
        match (self.with_code, self.password_known) {
            (true, true) => self.t.code_only_heading,
            (true, false) => self.t.pw_code_heading,
            _ => self.t.pw_heading,
        }
    }
}

impl WaitingPage {
    pub fn page_heading(&self) -> &str {
        self.t.wait_heading
    }

    pub fn expiry_line(&self) -> String {
        self.t.wait_expiry_line(self.expiry_minutes)
    }
}

impl SignedInPage {
    pub fn page_heading(&self) -> &str {
        self.t.signed_in_heading
    }
}

impl DevicesPage {
    /// Is the rename field of device `id` the one the error is about?
    pub fn invalid(&self, id: &str) -> bool {
        self.error_for.as_deref() == Some(id)
    }

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
            site: Site::named("nidan"),
            csrf: "CSRFTOKEN".into(),
            rd: "/app?x=1&y=2".into(),
            id: EVIL.into(),
            error: Some(EVIL.into()),
            passkeys: true,
            step_up: true,
            signed_in_as: Some(EVIL.into()),
            recovery_url: Some("/forgot".into()),
        }
    }

    fn password_page(lang: Lang, with_code: bool, offer_trust: bool) -> PasswordPage {
        PasswordPage {
            t: texts(lang),
            lang,
            other_lang: lang.other(),
            prefix: "/_nidan".into(),
            site: Site::named("nidan"),
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
            error_fields: &["password", "code"],
            app_approved: !with_code,
            password_known: false,
            return_to: "/app?x=1".into(),
            risk_reason: false,
            trust_checked: true,
            device_name: EVIL.into(),
            code_minutes: 5,
            help_url: Some("/help".into()),
        }
    }

    fn waiting_page(lang: Lang) -> WaitingPage {
        WaitingPage {
            t: texts(lang),
            lang,
            other_lang: lang.other(),
            prefix: "/_nidan".into(),
            site: Site::named("nidan"),
            csrf: "CSRFTOKEN".into(),
            flow: "FLOW123".into(),
            user_id: "alice".into(),
            number: "42".into(),
            poll_url: "/_nidan/api/login/FLOW123".into(),
            expiry_minutes: 2,
            return_to: "/app?x=1".into(),
            error: Some(EVIL.into()),
        }
    }

    fn signed_in_page(lang: Lang) -> SignedInPage {
        SignedInPage {
            t: texts(lang),
            lang,
            other_lang: lang.other(),
            prefix: "/_nidan".into(),
            site: Site::named(EVIL),
            csrf: "CSRFTOKEN".into(),
            user_id: "alice".into(),
            name: EVIL.into(),
            email: Some("a@example.com".into()),
            groups: vec!["admins".into(), EVIL.into()],
            two_step: texts(lang).two_step_app.into(),
            login_at: "2026-05-01 10:00".into(),
            expires_at: "2026-05-01 22:00".into(),
            idle_line: texts(lang).idle_line(30),
            passkeys: true,
            just_signed_in: false,
        }
    }

    fn devices_page(lang: Lang, needs_recent_login: bool) -> DevicesPage {
        DevicesPage {
            t: texts(lang),
            lang,
            other_lang: lang.other(),
            prefix: "/_nidan".into(),
            site: Site::named("nidan"),
            csrf: "CSRFTOKEN".into(),
            devices: vec![
                DeviceRow {
                    id: "dev1".into(),
                    name: EVIL.into(),
                    created: "2026-04-01".into(),
                    last_used: "2026-05-01".into(),
                    expires: "2026-05-31".into(),
                    browser: EVIL.into(),
                    current: true,
                },
                DeviceRow {
                    id: "dev2".into(),
                    name: "Work PC".into(),
                    created: "2026-03-01".into(),
                    last_used: "2026-03-02".into(),
                    expires: "2026-03-31".into(),
                    browser: "Firefox on Linux".into(),
                    current: false,
                },
            ],
            needs_recent_login,
            message: Some(EVIL.into()),
            error: Some(EVIL.into()),
            error_for: Some("dev2".into()),
            max_devices: 10,
        }
    }

    fn settings_page(lang: Lang, needs_recent_login: bool) -> SettingsPage {
        SettingsPage {
            t: texts(lang),
            lang,
            other_lang: lang.other(),
            prefix: "/_nidan".into(),
            site: Site::named("nidan"),
            csrf: "CSRFTOKEN".into(),
            enabled: true,
            method: "email".into(),
            has_phone: false,
            has_email: true,
            phone_masked: None,
            email_masked: Some(EVIL.into()),
            has_app: false,
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
            site: Site::named("nidan"),
            csrf: String::new(),
            heading: texts(lang).err_too_many_heading.into(),
            message: EVIL.into(),
            hints: vec![EVIL.into()],
            link: Some(("/_nidan/login?rd=/a&b".into(), EVIL.into())),
            reference: Some(EVIL.into()),
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
            ("confirm", confirm_page(lang).render().unwrap()),
        ]
    }

    fn confirm_page(lang: Lang) -> ConfirmPage {
        ConfirmPage {
            t: texts(lang),
            lang,
            other_lang: lang.other(),
            prefix: "/_nidan".into(),
            site: Site::named("nidan"),
            csrf: "CSRFTOKEN".into(),
            question: texts(lang).named(texts(lang).confirm_device, EVIL),
            help: texts(lang).confirm_device_help.into(),
            action: "/_nidan/devices/dev1/delete".into(),
            cancel: "/_nidan/devices".into(),
            button: texts(lang).confirm_button.into(),
        }
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
            assert!(total >= 10, "only {total} forms");
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
    fn script_on_every_page_refresh_only_without_it() {
        for lang in LANGS {
            for (name, html) in all_pages(lang) {
                // Every page loads it once (it reports the browser's time zone); none needs it.
                assert_eq!(
                    html.matches("<script src=\"/_nidan/static/nidan.js\" defer></script>")
                        .count(),
                    1,
                    "{name}"
                );
                // No page reloads itself (axe `meta-refresh`): the waiting page has a button.
                assert!(!html.contains("http-equiv=\"refresh\""), "{name}");
            }
            let mut no_passkeys = id_page(lang);
            no_passkeys.passkeys = false;
            let html = no_passkeys.render().unwrap();
            assert!(!html.contains("nidan-passkey-login"));
            let html = id_page(lang).render().unwrap();
            assert!(html.contains("id=\"nidan-passkey-login\"") && html.contains(" hidden>"));
            let w = waiting_page(lang).render().unwrap();
            // Without JavaScript the user moves on with a button; with it, the page polls.
            assert!(w.contains("class=\"button primary\" href=\"/_nidan/login/FLOW123\""));
            assert!(w.contains("data-poll=\"/_nidan/api/login/FLOW123\""));
            assert!(w.contains(">42<"));
            assert!(w.contains("action=\"/_nidan/login/FLOW123/use-code\""));
        }
    }

    #[test]
    fn errors_are_alerts_and_fields_labelled() {
        for lang in LANGS {
            for (name, html) in all_pages(lang) {
                if !["message", "signed_in", "confirm"].contains(&name) {
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
            // Removals go through a confirmation page first (a link, then its form).
            assert!(html.contains("href=\"/_nidan/devices/dev2/delete\""));
            assert!(html.contains("href=\"/_nidan/devices/delete-all\""));
            assert!(!html.contains("action=\"/_nidan/devices/dev2/delete\""));
            // The error is about dev2's name: that field, and only it, is marked.
            assert_eq!(html.matches("aria-invalid=\"true\"").count(), 1);
            assert!(html.contains(
                "id=\"name-2\" name=\"name\" value=\"Work PC\" maxlength=\"64\" autocomplete=\"off\" required aria-invalid=\"true\" aria-describedby=\"form-error\""
            ));
            assert!(html.contains("<p class=\"error\" id=\"form-error\" role=\"alert\">"));
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
    fn fields_in_error_are_marked_and_described() {
        for lang in LANGS {
            // ID page: the ID field carries the error.
            let html = id_page(lang).render().unwrap();
            assert!(html.contains("aria-invalid=\"true\" aria-describedby=\"form-error\""));
            assert!(html.contains("id=\"form-error\""));
            let mut fine = id_page(lang);
            fine.error = None;
            assert!(!fine.render().unwrap().contains("aria-invalid"));
            // Password page: the fields the error names, the code keeping its help.
            let html = password_page(lang, true, true).render().unwrap();
            assert_eq!(html.matches("aria-invalid=\"true\"").count(), 2, "{html}");
            assert!(html.contains("aria-describedby=\"form-error code-help\""));
            let mut page = password_page(lang, true, true);
            page.error_fields = &["device_name"];
            let html = page.render().unwrap();
            assert_eq!(html.matches("aria-invalid=\"true\"").count(), 1);
            assert!(html.contains("aria-describedby=\"form-error device-name-help\""));
            assert!(html.contains("aria-describedby=\"code-help\""));
        }
    }

    #[test]
    fn login_pages_show_where_the_user_is() {
        for lang in LANGS {
            let t = texts(lang);
            for (name, html, step) in [
                ("id", id_page(lang).render().unwrap(), t.step_id),
                (
                    "password",
                    password_page(lang, true, false).render().unwrap(),
                    t.step_verify,
                ),
                (
                    "waiting",
                    waiting_page(lang).render().unwrap(),
                    t.step_verify,
                ),
            ] {
                assert!(html.contains("<ol class=\"steps\""), "{name}");
                assert_eq!(html.matches("aria-current=\"step\"").count(), 1, "{name}");
                assert!(
                    html.contains(&format!("aria-current=\"step\">{step}</li>")),
                    "{name}"
                );
            }
            let mut page = signed_in_page(lang);
            assert!(!page.render().unwrap().contains("class=\"steps\""));
            page.just_signed_in = true;
            assert!(
                page.render()
                    .unwrap()
                    .contains(&format!("aria-current=\"step\">{}</li>", t.step_done))
            );
            assert!(
                !devices_page(lang, false)
                    .render()
                    .unwrap()
                    .contains("class=\"steps\"")
            );
        }
    }

    #[test]
    fn the_operators_look() {
        let mut page = message_page(Lang::Ja);
        page.site = Site {
            name: "Example ID".into(),
            logo: Some("/_nidan/static/logo".into()),
            brand_css: Some("/_nidan/static/brand.css".into()),
            footer: vec![
                ("/help".into(), "ヘルプ".into()),
                ("/terms?a=1&b=2".into(), EVIL.into()),
            ],
        };
        let html = page.render().unwrap();
        assert!(html.contains("<title>"));
        assert!(html.contains("| Example ID</title>"));
        assert!(
            html.contains(
                "<img class=\"logo\" src=\"/_nidan/static/logo\" alt=\"Example IDのロゴ\""
            )
        );
        assert!(html.contains("<link rel=\"stylesheet\" href=\"/_nidan/static/brand.css\">"));
        assert!(html.contains("<footer class=\"site-footer\">"));
        assert!(html.contains("<li><a href=\"/help\">ヘルプ</a></li>"));
        assert!(html.contains("/terms?a=1&#38;b=2") || html.contains("/terms?a=1&amp;b=2"));
        assert!(!html.contains(EVIL));
        // Without a brand: no footer, no logo, no extra stylesheet.
        let html = message_page(Lang::Ja).render().unwrap();
        assert!(
            !html.contains("<footer")
                && !html.contains("class=\"logo\"")
                && !html.contains("brand.css")
        );
    }

    #[test]
    fn message_page_lists_other_ways() {
        for lang in LANGS {
            let html = message_page(lang).render().unwrap();
            assert!(html.contains(texts(lang).other_ways_heading));
            assert!(html.contains("<ul class=\"hints\">"));
            let mut page = message_page(lang);
            page.hints.clear();
            assert!(!page.render().unwrap().contains("hints"));
        }
    }

    #[test]
    fn id_page_offers_passkey_autofill_help_and_says_who_is_logged_in() {
        for lang in LANGS {
            let t = texts(lang);
            let html = id_page(lang).render().unwrap();
            assert!(html.contains("autocomplete=\"username webauthn\""));
            assert!(html.contains(&format!("<a href=\"/forgot\">{}</a>", t.forgot_link)));
            assert!(
                html.contains("href=\"/_nidan/\""),
                "a way back to the portal"
            );
            let mut plain = id_page(lang);
            plain.passkeys = false;
            plain.recovery_url = None;
            plain.signed_in_as = None;
            let html = plain.render().unwrap();
            assert!(html.contains("autocomplete=\"username\""));
            assert!(!html.contains(t.forgot_link) && !html.contains(t.link_account));
        }
    }

    #[test]
    fn the_code_page_says_why_how_long_and_focuses_what_to_fix() {
        for lang in LANGS {
            let t = texts(lang);
            let mut page = password_page(lang, true, true);
            page.risk_reason = true;
            page.error_fields = &["device_name"];
            let html = page.render().unwrap();
            assert!(html.contains(t.notice_risk_step_up));
            assert!(html.contains(&t.code_valid_for(5)));
            assert_eq!(html.matches(" autofocus").count(), 1);
            assert!(
                html.contains("id=\"device_name\" name=\"device_name\" value=\"&#60;script")
                    || html.contains("value=\"&lt;script")
            );
            assert!(page.focus("device_name") && !page.focus("password"));
            // A step-up: no password field, the heading asks for the code only.
            page.password_known = true;
            page.error = None;
            let html = page.render().unwrap();
            assert!(!html.contains("name=\"password\""));
            assert!(html.contains(&format!("<h1>{}</h1>", t.code_only_heading)));
            assert!(page.focus("code"));
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
