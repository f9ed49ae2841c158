//! Every string a user reads, in Japanese and English: the portal's pages ([`Texts`],
//! [`PasskeyTexts`], [`TokenTexts`]), the mails, SMS and pushes ([`messages`]), all in
//! the words of one table ([`terms`]).
//!
//! Templates read `t.xxx`; handlers pick messages (errors, notices) from the same
//! [`Texts`] so a page never mixes languages. nidan.js shows only texts the page hands it
//! in `data-` attributes.

pub use crate::i18n::messages;
pub use crate::i18n::terms;

/// A language the portal speaks (the configuration's `Language`, under a shorter name).
pub use crate::config::Language as Lang;

impl Lang {
    /// The BCP 47 code used in `<html lang>` and in `?lang=`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Ja => "ja",
            Lang::En => "en",
        }
    }

    /// The other language, for the language switch.
    pub fn other(self) -> Lang {
        match self {
            Lang::Ja => Lang::En,
            Lang::En => Lang::Ja,
        }
    }

    /// Parses a language tag (`ja`, `EN`, `ja-JP`, `en_US`); only the primary subtag counts.
    pub fn parse(s: &str) -> Option<Lang> {
        let primary = s.trim().split(['-', '_']).next().unwrap_or("");
        if primary.eq_ignore_ascii_case("ja") {
            Some(Lang::Ja)
        } else if primary.eq_ignore_ascii_case("en") {
            Some(Lang::En)
        } else {
            None
        }
    }

    /// Picks the language the browser prefers most among those the portal speaks.
    ///
    /// Follows the `q` weights of RFC 9110 §12.5.4; `q=0` means "not this one"; ties
    /// keep header order. Anything unparsable is skipped, never an error.
    pub fn from_accept_language(header: Option<&str>, default: Lang) -> Lang {
        let Some(header) = header else {
            return default;
        };
        let mut best: Option<(u16, Lang)> = None;
        // Bounded: a hostile header cannot make this loop long.
        for item in header.split(',').take(32) {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or("").trim();
            let mut q: u16 = 1000;
            for param in parts {
                let param = param.trim();
                if let Some(v) = param
                    .strip_prefix("q=")
                    .or_else(|| param.strip_prefix("Q="))
                {
                    q = parse_qvalue(v).unwrap_or(0);
                }
            }
            if q == 0 {
                continue;
            }
            let Some(lang) = Lang::parse(tag) else {
                continue;
            };
            if best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, lang));
            }
        }
        best.map_or(default, |(_, lang)| lang)
    }
}

/// A qvalue ("0", "0.8", "1.000") in thousandths.
fn parse_qvalue(v: &str) -> Option<u16> {
    let v = v.trim();
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Every user-visible string of the portal, for one language.
///
/// `{n}` in a string is a number filled in by one of the methods below.
#[derive(Debug)]
pub struct Texts {
    // ---- layout ----
    /// Name of the *other* language, shown as the language switch link.
    pub switch_lang: &'static str,
    pub switch_lang_label: &'static str,
    pub back: &'static str,

    // ---- step 1: ID ----
    pub id_heading: &'static str,
    pub id_lead: &'static str,
    pub id_label: &'static str,
    pub next: &'static str,

    // ---- step 2: password (+ security code) ----
    pub pw_heading: &'static str,
    pub pw_code_heading: &'static str,
    pub pw_lead: &'static str,
    pub pw_code_lead: &'static str,
    pub your_id: &'static str,
    pub use_other_id: &'static str,
    pub code_sent_sms: &'static str,
    pub code_sent_email: &'static str,
    pub code_sent: &'static str,
    pub code_destination: &'static str,
    pub password_label: &'static str,
    pub code_label: &'static str,
    pub code_help: &'static str,
    pub login_button: &'static str,
    pub app_approved: &'static str,
    pub trust_label: &'static str,
    pub trust_help: &'static str,
    pub device_name_label: &'static str,
    pub device_name_help: &'static str,
    pub device_name_placeholder: &'static str,
    pub trust_cookie_note: &'static str,
    pub resend_button: &'static str,
    pub use_email_button: &'static str,
    pub help_summary: &'static str,
    pub help_wait: &'static str,
    pub help_kept: &'static str,
    pub help_no_phone: &'static str,
    pub help_email: &'static str,
    /// Notice for the password page when the phone is kept (suspended).
    pub notice_phone_kept: &'static str,
    /// Notice after the user switched to email.
    pub notice_switched_to_email: &'static str,
    /// Notice after a resend.
    pub notice_code_resent: &'static str,
    /// Notice when the login asks for a code because of unusual activity (risk).
    pub notice_risk_step_up: &'static str,
    /// The ID page after a step-up redirect: the session lacks the second step here.
    pub notice_step_up: &'static str,
    /// App enrollment refused: the login's second step is not one every page accepts.
    pub err_enroll_step_up: &'static str,
    /// A logout the store did not take: the session still works.
    pub err_logout_failed: &'static str,
    /// The password page of a step-up: the password is already proved.
    pub step_up_code_only: &'static str,

    // ---- app approval ----
    pub wait_heading: &'static str,
    pub wait_lead: &'static str,
    pub wait_number_label: &'static str,
    pub wait_number_help: &'static str,
    pub use_code_button: &'static str,
    pub use_code_help: &'static str,

    // ---- signed in ----
    pub signed_in_heading: &'static str,
    pub signed_in_lead: &'static str,
    pub name_label: &'static str,
    pub email_label: &'static str,
    pub groups_label: &'static str,
    pub none: &'static str,
    pub two_step_label: &'static str,
    pub login_at_label: &'static str,
    pub expires_at_label: &'static str,
    pub nav_devices: &'static str,
    pub nav_settings: &'static str,
    pub nav_app: &'static str,
    pub app_heading: &'static str,
    pub app_lead: &'static str,
    pub app_none: &'static str,
    pub app_setup_button: &'static str,
    pub app_setup_heading: &'static str,
    pub app_setup_lead: &'static str,
    pub app_code_sent_to: &'static str,
    pub app_qr_alt: &'static str,
    pub app_enrollment_code_label: &'static str,
    pub app_uri_label: &'static str,
    pub msg_app_removed: &'static str,
    pub err_approval_required: &'static str,
    pub logout_button: &'static str,
    /// Descriptions of how the second step was done, for `SignedInPage::two_step`.
    pub two_step_code_sms: &'static str,
    pub two_step_code_email: &'static str,
    pub two_step_app: &'static str,
    pub two_step_trusted_device: &'static str,
    pub two_step_exempt: &'static str,
    pub two_step_passkey: &'static str,
    pub two_step_none: &'static str,

    // ---- trusted devices ----
    pub devices_heading: &'static str,
    pub devices_lead: &'static str,
    pub devices_max: &'static str,
    pub devices_none: &'static str,
    pub device_created: &'static str,
    pub device_last_used: &'static str,
    /// When a trusted device's registration lapses.
    pub device_expires: &'static str,
    pub device_browser: &'static str,
    pub this_browser: &'static str,
    pub rename_label: &'static str,
    pub rename_button: &'static str,
    pub remove_button: &'static str,
    pub remove_all_button: &'static str,
    pub remove_all_help: &'static str,
    pub reauth_notice: &'static str,
    pub reauth_link: &'static str,
    pub msg_device_renamed: &'static str,
    pub msg_device_removed: &'static str,
    pub msg_devices_all_removed: &'static str,
    pub msg_device_registered: &'static str,

    // ---- 2-step settings ----
    pub settings_heading: &'static str,
    pub settings_lead: &'static str,
    pub settings_enabled_legend: &'static str,
    pub settings_on: &'static str,
    pub settings_off: &'static str,
    pub settings_method_legend: &'static str,
    pub method_sms: &'static str,
    pub method_email: &'static str,
    pub method_app: &'static str,
    pub method_sms_unavailable: &'static str,
    pub method_email_unavailable: &'static str,
    pub method_email_weaker: &'static str,
    pub settings_change_note: &'static str,
    pub settings_current: &'static str,
    pub save_button: &'static str,
    pub msg_settings_saved: &'static str,
    pub err_method_unavailable: &'static str,
    /// The second step is needed but no phone or email can receive a code.
    pub err_no_destination: &'static str,
    /// The route accepts none of the user's second-step channels.
    pub err_no_allowed_channel: &'static str,

    // ---- errors and messages (for handlers) ----
    pub err_generic_login: &'static str,
    pub err_id_required: &'static str,
    pub err_password_required: &'static str,
    pub err_code_required: &'static str,
    pub err_code_format: &'static str,
    pub err_code_expired: &'static str,
    pub err_code_attempts: &'static str,
    pub err_device_name_required: &'static str,
    pub err_device_name_invalid: &'static str,
    pub err_device_limit: &'static str,
    pub err_device_not_found: &'static str,
    pub err_too_many_heading: &'static str,
    pub err_too_many: &'static str,
    /// "Try again in {n} seconds" — use [`Texts::retry_in`].
    pub err_retry_in: &'static str,
    /// "You can resend in {n} seconds" — use [`Texts::resend_in`].
    pub err_resend_in: &'static str,
    pub err_delivery_failed: &'static str,
    pub err_flow_expired_heading: &'static str,
    pub err_flow_expired: &'static str,
    pub err_approval_denied: &'static str,
    pub err_approval_expired: &'static str,
    pub err_app_unavailable: &'static str,
    pub err_csrf: &'static str,
    pub err_forbidden_heading: &'static str,
    pub err_forbidden: &'static str,
    pub err_not_found_heading: &'static str,
    pub err_not_found: &'static str,
    pub err_bad_request_heading: &'static str,
    pub err_bad_request: &'static str,
    pub err_bad_gateway_heading: &'static str,
    pub err_bad_gateway: &'static str,
    pub err_internal_heading: &'static str,
    pub err_internal: &'static str,
    /// Before the request id on error pages (what to quote to support).
    pub reference_label: &'static str,
    pub err_unavailable_heading: &'static str,
    pub err_unavailable: &'static str,
    pub logged_out_heading: &'static str,
    pub logged_out: &'static str,
    pub link_login: &'static str,
    pub link_login_again: &'static str,
    pub link_home: &'static str,

    // ---- what happened and what to do next; removals; the operator's look ----
    /// The user chose the app, but none is enrolled: a code went instead.
    pub notice_app_not_enrolled: &'static str,
    /// The page asked for does not accept the app as the second step.
    pub notice_app_not_accepted: &'static str,
    /// Feature phones do not get the app step.
    pub notice_app_feature_phone: &'static str,
    /// The user chose the code on the waiting page.
    pub notice_app_code_chosen: &'static str,
    /// Too many app requests lately; `{n}` minutes until the app is asked again.
    pub notice_app_too_many: &'static str,
    /// App prompts are paused after "this wasn't me"; `{n}` minutes left.
    pub notice_app_paused: &'static str,
    /// The app sent another number than the page showed.
    pub err_approval_wrong_number: &'static str,
    /// "This wasn't me" was chosen in the app.
    pub err_approval_not_me: &'static str,
    /// Heading of the list of other ways in (throttling pages).
    pub other_ways_heading: &'static str,
    pub other_way_passkey: &'static str,
    pub other_way_device: &'static str,
    /// The step indicator's name (ID → verification → done).
    pub steps_label: &'static str,
    pub step_id: &'static str,
    pub step_verify: &'static str,
    pub step_done: &'static str,
    /// The confirmation page before a removal.
    pub confirm_heading: &'static str,
    /// `{name}`: the device's name.
    pub confirm_device: &'static str,
    pub confirm_device_help: &'static str,
    pub confirm_all_devices: &'static str,
    /// `{name}`: the app's name.
    pub confirm_app: &'static str,
    pub confirm_app_help: &'static str,
    /// `{name}`: the passkey's name.
    pub confirm_passkey: &'static str,
    pub confirm_passkey_help: &'static str,
    /// `{name}`: the app password's name.
    pub confirm_token: &'static str,
    pub confirm_token_help: &'static str,
    pub confirm_button: &'static str,
    pub cancel: &'static str,
    /// Heading of the page after the app denied a login.
    pub approval_stopped_heading: &'static str,
    /// The app page after the QR code, until the app has enrolled.
    pub app_waiting: &'static str,
    /// The set-up link that opens the app on the same phone (the `nidan-app://` URI).
    pub app_open_link: &'static str,
    /// The link that checks by hand (without JavaScript).
    pub app_waiting_check: &'static str,
    pub app_not_yet: &'static str,
    pub msg_app_enrolled: &'static str,
    /// After enrolling: the setting to switch to the app.
    pub app_use_hint: &'static str,
    pub method_app_unavailable: &'static str,
    pub err_method_app_not_enrolled: &'static str,
    /// A rename with an empty name.
    pub err_device_name_empty: &'static str,
    /// A passkey or app password without a name.
    pub err_name_empty: &'static str,
    /// The footer's links (operator's help, terms…).
    pub footer_label: &'static str,
    /// The logo's text alternative: `{name}` is the brand name.
    pub logo_alt: &'static str,
    /// The settings page's link to app passwords.
    pub app_passwords_link: &'static str,
    /// The step-up page's heading: only the code is asked.
    pub code_only_heading: &'static str,
    pub code_only_lead: &'static str,
    /// How long a code works: `{n}` minutes.
    pub code_valid: &'static str,
    /// The link to the operator's help page (`portal.help_url`).
    pub help_link: &'static str,
    /// The footer's link to the operator's account page (`portal.account_url`).
    pub account_link: &'static str,
    /// The ID page's link to `portal.recovery_url`.
    pub forgot_link: &'static str,
    /// The login page seen by someone logged in: `{name}` is the ID.
    pub signed_in_as: &'static str,
    /// Back to the portal's own page.
    pub link_account: &'static str,
    /// The idle timeout, said as one (`{n}` minutes), not as a deadline.
    pub idle_note: &'static str,
    /// The app's waiting page without JavaScript: the user moves on.
    pub wait_no_js: &'static str,
    pub wait_approved_button: &'static str,
    /// How long an approval can be answered: `{n}` minutes.
    pub wait_expiry_minutes: &'static str,
}

impl Texts {
    /// "Try again in about N minutes." (rounded up: a wait is never shorter than said).
    pub fn retry_in(&self, secs: u64) -> String {
        let minutes = minutes(secs);
        let text = self.err_retry_in.replace("{n}", &minutes.to_string());
        if minutes == 1 {
            text.replace("1 minutes", "1 minute")
        } else {
            text
        }
    }

    /// A notice with `{n}` minutes until `until` (Unix seconds), rounded up.
    pub fn minutes_until(&self, text: &str, until: i64, now: i64) -> String {
        let secs = u64::try_from(until - now).unwrap_or(0);
        let minutes = minutes(secs);
        let out = text.replace("{n}", &minutes.to_string());
        if minutes == 1 {
            out.replace("1 minutes", "1 minute")
        } else {
            out
        }
    }

    /// A text with `{name}` filled in.
    pub fn named(&self, text: &str, name: &str) -> String {
        text.replace("{name}", name)
    }

    /// "You can request a new code in N seconds."
    pub fn resend_in(&self, secs: u64) -> String {
        self.err_resend_in.replace("{n}", &secs.to_string())
    }

    /// "The code is valid for N minutes."
    pub fn code_valid_for(&self, minutes: u64) -> String {
        plural(
            self.code_valid.replace("{n}", &minutes.to_string()),
            minutes,
        )
    }

    /// "Logged out after N minutes without activity."
    pub fn idle_line(&self, minutes: u64) -> String {
        plural(self.idle_note.replace("{n}", &minutes.to_string()), minutes)
    }

    /// "The request expires after N minutes."
    pub fn wait_expiry_line(&self, minutes: u64) -> String {
        plural(
            self.wait_expiry_minutes
                .replace("{n}", &minutes.to_string()),
            minutes,
        )
    }

    /// How a session proved the second step (its `methods`), in words: never the internal
    /// name (`password+sms`).
    pub fn how_logged_in(&self, lang: Lang, methods: &str) -> &'static str {
        match methods {
            "password+sms" => self.two_step_code_sms,
            "password+email" => self.two_step_code_email,
            "password+device" => self.two_step_trusted_device,
            "password+app" => self.two_step_app,
            "password+network" => self.two_step_exempt,
            "passkey" => lang.passkeys().two_step_passkey,
            _ => self.two_step_none,
        }
    }

    /// "Up to N devices can be registered."
    pub fn devices_max_line(&self, n: usize) -> String {
        self.devices_max.replace("{n}", &n.to_string())
    }
}

/// "1 minutes" said right.
fn plural(text: String, n: u64) -> String {
    if n == 1 {
        text.replace("1 minutes", "1 minute")
    } else {
        text
    }
}

/// Seconds as whole minutes, rounded up, at least 1.
pub fn minutes(secs: u64) -> u64 {
    secs.div_ceil(60).max(1)
}

/// The strings for `lang`.
pub fn texts(lang: Lang) -> &'static Texts {
    match lang {
        Lang::Ja => &JA,
        Lang::En => &EN,
    }
}

static JA: Texts = Texts {
    switch_lang: "English",
    switch_lang_label: "Language",
    back: "戻る",

    id_heading: "ログイン",
    id_lead: "IDを入力し、「次へ」を押してください。",
    id_label: "ID",
    next: "次へ",

    pw_heading: "パスワード入力",
    pw_code_heading: "パスワード/セキュリティコード入力",
    pw_lead: "パスワードを入力し、「ログイン」を押してください。",
    pw_code_lead: "パスワードと、届いたセキュリティコードを入力し、「ログイン」を押してください。",
    your_id: "ID",
    use_other_id: "別のIDでログインする",
    code_sent_sms: "セキュリティコードをSMSで送信しました。",
    code_sent_email: "セキュリティコードをメールで送信しました。",
    code_sent: "セキュリティコードを送信しました。",
    code_destination: "送信先",
    password_label: "パスワード",
    code_label: "セキュリティコード",
    code_help: "半角数字で入力してください。",
    login_button: "ログイン",
    app_approved: "アプリでログインが許可されました。パスワードを入力してください。",
    trust_label: "信頼できる端末（ブラウザ等）として登録する",
    trust_help: "登録すると、次回以降このブラウザでは2段階認証が省略されます。共用のパソコンでは登録しないでください。",
    device_name_label: "端末名",
    device_name_help: "後から確認・削除できるよう、名前の入力が必要です（64文字以内）。",
    device_name_placeholder: "例：自宅のパソコン",
    trust_cookie_note: "ブラウザのCookie・キャッシュを削除すると、信頼できる端末の登録も消えます。",
    resend_button: "セキュリティコードを再送信する",
    use_email_button: "メールでセキュリティコードを受け取る",
    help_summary: "セキュリティコードが届かない方",
    help_wait: "セキュリティコードが届くまで時間がかかる場合があります。しばらく待ってから再送信してください。メールの場合は迷惑メールフォルダもご確認ください。",
    help_kept: "セキュリティコード送信先の電話番号を電話番号保管（利用休止）されている場合、SMSを受信できません。電話番号保管を解除してからご利用ください。",
    help_no_phone: "セキュリティコード送信先の携帯電話がお手元にない場合（紛失・盗難等を含みます）、2段階認証が利用できず、ログインできません。必ずお手元にご準備ください。",
    help_email: "SMSを受信できない場合は、ご登録のメールアドレスでセキュリティコードを受け取ることもできます。",
    notice_phone_kept: "電話番号が保管（利用休止）中のため、SMSを受信できません。セキュリティコードをメールで送信しました。",
    notice_switched_to_email: "セキュリティコードをメールで送信しました。",
    notice_code_resent: "新しいセキュリティコードを送信しました。以前のセキュリティコードは使用できません。",
    notice_risk_step_up: "安全にご利用いただくため、セキュリティコードによる確認をお願いしています。",
    notice_step_up: "このページを表示するには、2段階認証での確認が必要です。IDを確認して「次へ」を押してください。",
    err_logout_failed: "ログアウトできませんでした。ログインしたままの状態です。しばらくしてからもう一度お試しください。",
    err_enroll_step_up: "アプリを登録するには、SMSで届くセキュリティコードなど、すべてのページで使える方法でログインし直してください。",
    step_up_code_only: "パスワードは確認済みです。2段階目の確認だけをお願いします。",

    wait_heading: "アプリでログインを許可してください",
    wait_lead: "2段階認証を設定したスマートフォンのアプリに、ログインしてよいか確認する画面が表示されます。下の番号を選び、「はい」を選択してください。",
    wait_number_label: "確認番号",
    wait_number_help: "アプリで同じ番号を選んでください。",
    use_code_button: "セキュリティコードでログインする",
    use_code_help: "アプリの画面が表示されない場合（アプリを削除した場合など）は、セキュリティコードでログインしてください。",

    signed_in_heading: "ログイン中",
    signed_in_lead: "ログインしています。",
    name_label: "お名前",
    email_label: "メールアドレス",
    groups_label: "グループ",
    none: "なし",
    two_step_label: "2段階認証",
    login_at_label: "ログイン日時",
    expires_at_label: "ログインの有効期限",
    nav_devices: "信頼できる端末の確認・削除",
    nav_settings: "2段階認証の設定",
    nav_app: "アプリによる2段階認証の設定",
    app_heading: "アプリによる2段階認証",
    app_lead: "登録したアプリで「はい」を選ぶと、パスワードの前にログインを許可できます。ブラウザに表示される数字をアプリで選んでください。",
    app_none: "登録済みのアプリはありません。",
    app_setup_button: "アプリを設定する",
    app_setup_heading: "アプリの設定",
    app_setup_lead: "アプリで下のQRコードを読み取るか登録コードを入力し、届いたセキュリティコードを入力してください。",
    app_code_sent_to: "セキュリティコードの送信先",
    app_qr_alt: "アプリ設定用のQRコード",
    app_enrollment_code_label: "登録コード",
    app_uri_label: "設定用URI",
    msg_app_removed: "アプリを削除しました。",
    err_approval_required: "アプリでログインが許可されていません。アプリで許可するか、セキュリティコードでログインしてください。",
    logout_button: "ログアウト",
    two_step_code_sms: "SMSのセキュリティコードで確認済み",
    two_step_code_email: "メールのセキュリティコードで確認済み",
    two_step_app: "アプリで許可済み",
    two_step_trusted_device: "信頼できる端末のため省略",
    two_step_exempt: "対象外（信頼できるネットワーク等）",
    two_step_passkey: "生体認証（パスキー）で確認済み",
    two_step_none: "なし（ID/パスワードのみ）",

    devices_heading: "信頼できる端末",
    devices_lead: "信頼できる端末として登録したブラウザでは、2段階認証が省略されます。心当たりのない端末は削除してください。",
    devices_max: "登録できる端末は最大{n}台です。",
    devices_none: "信頼できる端末は登録されていません。",
    device_created: "登録日時",
    device_last_used: "最終利用日時",
    device_expires: "登録の有効期限",
    device_browser: "ブラウザ",
    this_browser: "このブラウザ",
    rename_label: "新しい端末名",
    rename_button: "名前を変更",
    remove_button: "削除する",
    remove_all_button: "すべての信頼できる端末を削除する",
    remove_all_help: "すべてのブラウザで、次回のログインから2段階認証が必要になります。",
    reauth_notice: "信頼できる端末の管理や設定の変更には、もう一度ログインが必要です。",
    reauth_link: "もう一度ログインする",
    msg_device_renamed: "端末名を変更しました。",
    msg_device_removed: "信頼できる端末を削除しました。",
    msg_devices_all_removed: "すべての信頼できる端末を削除しました。",
    msg_device_registered: "このブラウザを信頼できる端末として登録しました。",

    settings_heading: "2段階認証の設定",
    settings_lead: "ID/パスワードに加えて、セキュリティコードの入力やアプリでのログイン許可を求めることで、お客様以外による不正なログインを防ぎます。設定を強くおすすめします。",
    settings_enabled_legend: "2段階認証",
    settings_on: "利用する",
    settings_off: "利用しない",
    settings_method_legend: "確認方法",
    method_sms: "SMSでセキュリティコードを受け取る",
    method_email: "メールでセキュリティコードを受け取る",
    method_app: "アプリでログインを許可する",
    method_sms_unavailable: "電話番号が登録されていないため選択できません。",
    method_email_unavailable: "メールアドレスが登録されていないため選択できません。",
    method_email_weaker: "メールはSMSやアプリに比べて安全性が低い方法です。",
    settings_change_note: "設定を変更すると、登録済みの信頼できる端末はすべて削除されます。",
    settings_current: "現在の設定",
    save_button: "設定する",
    msg_settings_saved: "設定を変更しました。信頼できる端末はすべて削除されました。",
    err_method_unavailable: "選択した確認方法はご利用いただけません。",
    err_no_destination: "セキュリティコードを受け取れる電話番号またはメールアドレスが登録されていないため、ログインできません。管理者にお問い合わせください。",
    err_no_allowed_channel: "このサービスでは、ご登録の受け取り方法ではセキュリティコードを送信できません。管理者にお問い合わせください。",

    err_generic_login: "ID、パスワードまたはセキュリティコードが正しくありません。",
    err_id_required: "IDを入力してください。",
    err_password_required: "パスワードを入力してください。",
    err_code_required: "セキュリティコードを入力してください。",
    err_code_format: "セキュリティコードは半角数字で入力してください。",
    err_code_expired: "セキュリティコードの有効期限が切れました。再送信してください。",
    err_code_attempts: "セキュリティコードの入力回数が上限に達しました。新しいセキュリティコードを送信してください。",
    err_device_name_required: "信頼できる端末として登録するには、端末名を入力してください。",
    err_device_name_invalid: "端末名は64文字以内で入力してください（改行などの制御文字は使用できません）。",
    err_device_limit: "登録できる端末数の上限に達しています。不要な端末を削除してください。",
    err_device_not_found: "指定された端末は見つかりませんでした。",
    err_too_many_heading: "しばらくお待ちください",
    err_too_many: "短時間に多くの操作が行われたため、一時的にご利用を制限しています。",
    err_retry_in: "約{n}分後にもう一度お試しください。",
    err_resend_in: "セキュリティコードの再送信は{n}秒後から可能です。",
    err_delivery_failed: "セキュリティコードを送信できませんでした。しばらくしてからもう一度お試しください。",
    err_flow_expired_heading: "有効期限切れ",
    err_flow_expired: "ログインの有効期限が切れました。お手数ですが、最初からやり直してください。",
    err_approval_denied: "アプリで「いいえ」が選ばれたため、ログインを中止しました。ご自身の操作だった場合は、もう一度ログインしてください。",
    err_approval_expired: "アプリでの確認の有効期限が切れました。もう一度ログインしてください。",
    err_app_unavailable: "アプリでの確認は現在ご利用いただけません。セキュリティコードでログインしてください。",
    err_csrf: "画面の有効期限が切れました。もう一度操作してください。",
    err_forbidden_heading: "アクセスできません",
    err_forbidden: "このページへのアクセスは許可されていません。",
    err_not_found_heading: "ページが見つかりません",
    err_not_found: "お探しのページは見つかりませんでした。",
    err_bad_request_heading: "入力内容をご確認ください",
    err_bad_request: "送信された内容を処理できませんでした。",
    err_bad_gateway_heading: "サービスに接続できません",
    err_bad_gateway: "接続先のサービスが応答していません。しばらくしてからもう一度お試しください。",
    err_internal_heading: "エラーが発生しました",
    reference_label: "お問い合わせ番号",
    err_internal: "システムエラーが発生しました。しばらくしてからもう一度お試しください。",
    err_unavailable_heading: "ただいま混み合っています",
    err_unavailable: "ただいまアクセスが集中しています。しばらくしてからもう一度お試しください。",
    logged_out_heading: "ログアウトしました",
    logged_out: "ログアウトしました。ご利用ありがとうございました。",
    link_login: "ログイン画面へ",
    link_login_again: "最初からログインする",
    link_home: "トップへ戻る",
    notice_app_not_enrolled: "2段階認証の確認方法に「アプリ」を選んでいますが、アプリがまだ登録されていないため、セキュリティコードを送信しました。ログイン後、「アプリによる2段階認証の設定」からアプリを登録できます。",
    notice_app_not_accepted: "このページはアプリでの確認に対応していないため、セキュリティコードを送信しました。",
    notice_app_feature_phone: "この端末ではアプリでの確認を利用できないため、セキュリティコードを送信しました。",
    notice_app_code_chosen: "「セキュリティコードでログインする」が選ばれたため、アプリでの確認を取り消し、セキュリティコードを送信しました。",
    notice_app_too_many: "短時間にアプリでの確認が続いたため、約{n}分間はアプリでの確認を行いません。代わりにセキュリティコードを送信しました。",
    notice_app_paused: "アプリで「心当たりがない」が選ばれたため、アプリでの確認を約{n}分間停止しています。代わりにセキュリティコードを送信しました。ご自身の操作でない場合は、パスワードを変更してください。",
    err_approval_wrong_number: "アプリで選ばれた番号が、ログイン画面に表示した番号と一致しなかったため、ログインを中止しました。もう一度ログインし、画面に表示される番号をアプリで選んでください。",
    err_approval_not_me: "アプリで「心当たりがない」が選ばれたため、ログインを拒否し、アプリでの確認を一時停止しました。ご自身の操作だった場合は、もう一度ログインすると、セキュリティコードでログインできます。心当たりがない場合は、パスワードを変更してください。",
    other_ways_heading: "ほかのログイン方法",
    other_way_passkey: "パスキーを登録している場合は、ログイン画面の「パスキーでログイン」からログインできます。",
    other_way_device: "信頼できる端末として登録したブラウザでは、2段階認証を省略してログインできます。",
    steps_label: "ログインの手順",
    step_id: "ID",
    step_verify: "確認",
    step_done: "完了",
    confirm_heading: "削除の確認",
    confirm_device: "信頼できる端末「{name}」を削除しますか？",
    confirm_device_help: "削除したブラウザでは、次回のログインから2段階認証が必要になります。",
    confirm_all_devices: "すべての信頼できる端末を削除しますか？",
    confirm_app: "アプリ「{name}」を削除しますか？",
    confirm_app_help: "削除すると、このアプリではログインを許可できなくなります。確認方法がアプリの場合は、セキュリティコードでログインすることになります。",
    confirm_passkey: "パスキー「{name}」を削除しますか？",
    confirm_passkey_help: "削除すると、このパスキーではログインできなくなります。",
    confirm_token: "アプリパスワード「{name}」を削除しますか？",
    confirm_token_help: "削除すると、このアプリパスワードを使っているアプリはログインできなくなります。",
    confirm_button: "削除する",
    cancel: "キャンセル",
    approval_stopped_heading: "ログインを中止しました",
    app_waiting: "アプリでの登録を待っています。アプリでQRコードを読み取り（このスマートフォンでは下のボタンからアプリを開けます）、届いたセキュリティコードを入力してください。登録が終わったら、下のボタンで確認してください。",
    app_open_link: "このスマートフォンでアプリを開く",
    app_waiting_check: "登録が終わったので確認する",
    app_not_yet: "まだアプリが登録されていません。アプリでの登録を済ませてから、もう一度確認してください。",
    msg_app_enrolled: "アプリを登録しました。",
    app_use_hint: "ログインの確認にアプリを使うには、「2段階認証の設定」で確認方法を「アプリでログインを許可する」にしてください。",
    method_app_unavailable: "アプリが登録されていないため選択できません。",
    err_method_app_not_enrolled: "アプリによる2段階認証を選ぶには、先にアプリを登録してください。",
    err_device_name_empty: "端末名を入力してください。",
    err_name_empty: "名前を入力してください。",
    footer_label: "サイト情報",
    logo_alt: "{name}のロゴ",
    app_passwords_link: "アプリパスワード（2段階認証に対応していないアプリ用）",
    code_only_heading: "セキュリティコード入力",
    code_only_lead: "届いたセキュリティコードを入力し、「ログイン」を押してください。",
    code_valid: "セキュリティコードの有効期限は{n}分間です。",
    help_link: "ヘルプ",
    account_link: "アカウント情報",
    forgot_link: "IDまたはパスワードをお忘れの方",
    signed_in_as: "このブラウザでは、ID「{name}」でログインしています。",
    link_account: "ログイン中の画面へ",
    idle_note: "{n}分間操作がない場合は、自動的にログアウトします。",
    wait_no_js: "アプリで「はい」を選んだら、下のボタンを押してください。",
    wait_approved_button: "アプリで許可したので次へ",
    wait_expiry_minutes: "{n}分以内に操作がない場合、確認は無効になります。",
};

static EN: Texts = Texts {
    switch_lang: "日本語",
    switch_lang_label: "言語",
    back: "Back",

    id_heading: "Log in",
    id_lead: "Enter your ID and select Next.",
    id_label: "ID",
    next: "Next",

    pw_heading: "Enter your password",
    pw_code_heading: "Enter your password and security code",
    pw_lead: "Enter your password and select Log in.",
    pw_code_lead: "Enter your password and the security code you received, then select Log in.",
    your_id: "ID",
    use_other_id: "Use a different ID",
    code_sent_sms: "We sent a security code by SMS.",
    code_sent_email: "We sent a security code by email.",
    code_sent: "We sent a security code.",
    code_destination: "Sent to",
    password_label: "Password",
    code_label: "Security code",
    code_help: "Digits only.",
    login_button: "Log in",
    app_approved: "You approved this login in the app. Now enter your password.",
    trust_label: "Register as a trusted device (browser etc.)",
    trust_help: "This browser will then skip 2-step verification from next time. Do not register a shared computer.",
    device_name_label: "Device name",
    device_name_help: "A name is required so you can review and remove the device later (up to 64 characters).",
    device_name_placeholder: "e.g. Home laptop",
    trust_cookie_note: "Clearing this browser's cookies or cache removes the trusted-device registration.",
    resend_button: "Send the code again",
    use_email_button: "Get the code by email instead",
    help_summary: "Security code not arriving?",
    help_wait: "A code can take a little while to arrive. Wait a moment, then send it again. For email, also check your spam folder.",
    help_kept: "If the phone number that receives codes is kept (the line is suspended), SMS cannot be received. Lift the keeping (the suspension) first, then try again.",
    help_no_phone: "Without the phone that receives the codes at hand (including when it is lost or stolen), 2-step verification cannot be completed and you cannot log in. Keep it at hand.",
    help_email: "If you cannot receive SMS, you can get the code at your registered email address instead.",
    notice_phone_kept: "Your phone number is kept (suspended), so it cannot receive SMS. We sent the security code by email instead.",
    notice_switched_to_email: "We sent the security code by email.",
    notice_code_resent: "We sent a new security code. The previous code no longer works.",
    notice_risk_step_up: "To keep your account safe, we ask you to confirm this login with a security code.",
    notice_step_up: "This page needs the second step of the login. Check your ID and choose Next.",
    err_logout_failed: "You are not logged out yet: the service is unavailable. Please try again shortly.",
    err_enroll_step_up: "To set up the app, log in again with a second step every page accepts (a security code by SMS, say).",
    step_up_code_only: "Your password is already confirmed: only the second step is left.",

    wait_heading: "Approve the login in the app",
    wait_lead: "The app on the smartphone where you set up 2-step verification asks whether this login may go ahead. Choose the number below and select Yes.",
    wait_number_label: "Number",
    wait_number_help: "Choose the same number in the app.",
    use_code_button: "Log in with a security code instead",
    use_code_help: "If the app does not show the request (for example, it was uninstalled), log in with a security code.",

    signed_in_heading: "Logged in",
    signed_in_lead: "You are logged in.",
    name_label: "Name",
    email_label: "Email",
    groups_label: "Groups",
    none: "None",
    two_step_label: "2-step verification",
    login_at_label: "Logged in at",
    expires_at_label: "Login expires at",
    nav_devices: "Review or remove trusted devices",
    nav_settings: "2-step verification settings",
    nav_app: "2-step verification with the app",
    app_heading: "2-step verification with the app",
    app_lead: "Answer \"Yes\" in your enrolled app to allow a login before the password. Pick the number the browser shows.",
    app_none: "No app is enrolled.",
    app_setup_button: "Set up the app",
    app_setup_heading: "Setting up the app",
    app_setup_lead: "Scan the QR code below with the app, or enter the enrollment code, then enter the security code you received.",
    app_code_sent_to: "Security code sent to",
    app_qr_alt: "QR code for setting up the app",
    app_enrollment_code_label: "Enrollment code",
    app_uri_label: "Setup URI",
    msg_app_removed: "The app was removed.",
    err_approval_required: "The login has not been allowed in the app. Allow it in the app, or log in with a security code.",
    logout_button: "Log out",
    two_step_code_sms: "Confirmed with a security code by SMS",
    two_step_code_email: "Confirmed with a security code by email",
    two_step_app: "Approved in the app",
    two_step_trusted_device: "Skipped on a trusted device",
    two_step_exempt: "Not required here (trusted network etc.)",
    two_step_passkey: "Confirmed with a passkey (biometrics)",
    two_step_none: "None (ID and password only)",

    devices_heading: "Trusted devices",
    devices_lead: "Browsers registered as trusted devices skip 2-step verification. Remove any device you do not recognise.",
    devices_max: "Up to {n} devices can be registered.",
    devices_none: "No trusted devices are registered.",
    device_created: "Registered",
    device_last_used: "Last used",
    device_expires: "Registered until",
    device_browser: "Browser",
    this_browser: "This browser",
    rename_label: "New name",
    rename_button: "Rename",
    remove_button: "Remove",
    remove_all_button: "Remove all trusted devices",
    remove_all_help: "Every browser will need 2-step verification at its next login.",
    reauth_notice: "Please log in again to manage trusted devices or change settings.",
    reauth_link: "Log in again",
    msg_device_renamed: "The device was renamed.",
    msg_device_removed: "The trusted device was removed.",
    msg_devices_all_removed: "All trusted devices were removed.",
    msg_device_registered: "This browser is now registered as a trusted device.",

    settings_heading: "2-step verification settings",
    settings_lead: "Besides your ID and password, a security code or an approval in the app is asked for, so no one else can log in as you. We strongly recommend turning it on.",
    settings_enabled_legend: "2-step verification",
    settings_on: "Use",
    settings_off: "Do not use",
    settings_method_legend: "How to confirm",
    method_sms: "Security code by SMS",
    method_email: "Security code by email",
    method_app: "Approve in the app",
    method_sms_unavailable: "Not available: no phone number is registered.",
    method_email_unavailable: "Not available: no email address is registered.",
    method_email_weaker: "Email is less secure than SMS or the app.",
    settings_change_note: "Changing this setting removes all your trusted devices.",
    settings_current: "Current setting",
    save_button: "Save",
    msg_settings_saved: "Your settings were changed. All trusted devices were removed.",
    err_method_unavailable: "The chosen method is not available.",
    err_no_destination: "No phone number or email address that can receive a security code is registered, so you cannot log in. Please contact your administrator.",
    err_no_allowed_channel: "This service cannot send a security code to the contact methods you have registered. Please contact your administrator.",

    err_generic_login: "The ID, password or security code is incorrect.",
    err_id_required: "Enter your ID.",
    err_password_required: "Enter your password.",
    err_code_required: "Enter the security code.",
    err_code_format: "The security code is digits only.",
    err_code_expired: "The security code has expired. Send a new one.",
    err_code_attempts: "Too many wrong security codes. Send a new one.",
    err_device_name_required: "Enter a device name to register this browser as a trusted device.",
    err_device_name_invalid: "Device names are up to 64 characters, without control characters such as line breaks.",
    err_device_limit: "You have registered the maximum number of devices. Remove one you no longer use.",
    err_device_not_found: "That device was not found.",
    err_too_many_heading: "Please wait",
    err_too_many: "Too many attempts in a short time, so this is paused for now.",
    err_retry_in: "Try again in about {n} minutes.",
    err_resend_in: "You can send a new code in {n} seconds.",
    err_delivery_failed: "We could not send the security code. Please try again later.",
    err_flow_expired_heading: "Expired",
    err_flow_expired: "This login has expired. Please start again.",
    err_approval_denied: "\"No\" was chosen in the app, so the login was stopped. If it was you, log in again.",
    err_approval_expired: "The app request has expired. Please log in again.",
    err_app_unavailable: "App approval is not available right now. Log in with a security code.",
    err_csrf: "This page has expired. Please try again.",
    err_forbidden_heading: "Access denied",
    err_forbidden: "You are not allowed to access this page.",
    err_not_found_heading: "Page not found",
    err_not_found: "The page you are looking for does not exist.",
    err_bad_request_heading: "Please check your input",
    err_bad_request: "What was sent could not be processed.",
    err_bad_gateway_heading: "Service unavailable",
    err_bad_gateway: "The service behind this address is not responding. Please try again later.",
    err_internal_heading: "Something went wrong",
    reference_label: "Reference",
    err_internal: "An internal error occurred. Please try again later.",
    err_unavailable_heading: "Busy",
    err_unavailable: "We are busy right now. Please try again later.",
    logged_out_heading: "Logged out",
    logged_out: "You have logged out.",
    link_login: "Go to login",
    link_login_again: "Start the login again",
    link_home: "Back to the top",
    notice_app_not_enrolled: "Your 2-step verification method is the app, but no app is set up yet, so we sent a security code instead. After logging in, you can set up the app under \"2-step verification with the app\".",
    notice_app_not_accepted: "The page you asked for does not accept approval in the app, so we sent a security code instead.",
    notice_app_feature_phone: "Approval in the app is not available on this phone, so we sent a security code instead.",
    notice_app_code_chosen: "You chose to log in with a security code: the request in the app was withdrawn and we sent a security code.",
    notice_app_too_many: "The app was asked too often in a short time, so it will not be asked for about {n} minutes. We sent a security code instead.",
    notice_app_paused: "\"This wasn't me\" was chosen in the app, so app requests are paused for about {n} minutes. We sent a security code instead. If the earlier login was not yours, change your password.",
    err_approval_wrong_number: "The number chosen in the app did not match the one this page showed, so the login was stopped. Log in again and choose the number shown on the page.",
    err_approval_not_me: "\"This wasn't me\" was chosen in the app: the login was refused and app requests are paused for a while. If it was you, log in again and you will get a security code. If not, change your password.",
    other_ways_heading: "Other ways to log in",
    other_way_passkey: "If you have registered a passkey, use \"Log in with a passkey\" on the login page.",
    other_way_device: "A browser registered as a trusted device skips 2-step verification.",
    steps_label: "Login steps",
    step_id: "ID",
    step_verify: "Verify",
    step_done: "Done",
    confirm_heading: "Confirm removal",
    confirm_device: "Remove the trusted device \"{name}\"?",
    confirm_device_help: "That browser will need 2-step verification at its next login.",
    confirm_all_devices: "Remove all trusted devices?",
    confirm_app: "Remove the app \"{name}\"?",
    confirm_app_help: "That app can then no longer approve logins; if your method is the app, logins will ask for a security code.",
    confirm_passkey: "Remove the passkey \"{name}\"?",
    confirm_passkey_help: "You will no longer be able to log in with that passkey.",
    confirm_token: "Remove the app password \"{name}\"?",
    confirm_token_help: "Apps using that app password will no longer be able to log in.",
    confirm_button: "Remove",
    cancel: "Cancel",
    approval_stopped_heading: "Login stopped",
    app_waiting: "Waiting for the app. Scan the QR code in the app (on this phone, open the app with the button below) and enter the security code you received. Once the app is set up, check with the button below.",
    app_open_link: "Open the app on this phone",
    app_waiting_check: "The app is set up: check",
    app_not_yet: "No app is set up yet. Finish the setup in the app, then check again.",
    msg_app_enrolled: "The app is set up.",
    app_use_hint: "To use the app at login, choose \"Approve in the app\" under 2-step verification settings.",
    method_app_unavailable: "Not available: no app is set up.",
    err_method_app_not_enrolled: "To choose the app, set up the app first.",
    err_device_name_empty: "Enter a device name.",
    err_name_empty: "Enter a name.",
    footer_label: "Site information",
    logo_alt: "{name} logo",
    app_passwords_link: "App passwords (for apps that cannot do 2-step verification)",
    code_only_heading: "Enter your security code",
    code_only_lead: "Enter the security code you received, then select Log in.",
    code_valid: "The code is valid for {n} minutes.",
    help_link: "Help",
    account_link: "Your account",
    forgot_link: "Forgot your ID or password?",
    signed_in_as: "This browser is logged in with the ID \"{name}\".",
    link_account: "Go to your account page",
    idle_note: "You are logged out automatically after {n} minutes without activity.",
    wait_no_js: "Once you have selected Yes in the app, select the button below.",
    wait_approved_button: "I approved it in the app: continue",
    wait_expiry_minutes: "If you do not respond within {n} minutes, the request expires.",
};

/// The passkey texts (login button, the passkeys page, the signed-in link).
#[derive(Debug)]
pub struct PasskeyTexts {
    pub login_button: &'static str,
    pub login_failed: &'static str,
    pub unsupported: &'static str,
    pub nav: &'static str,
    pub heading: &'static str,
    pub lead: &'static str,
    pub none: &'static str,
    pub name_label: &'static str,
    pub register_button: &'static str,
    pub needs_js: &'static str,
    pub needs_two_step: &'static str,
    pub created: &'static str,
    pub last_used: &'static str,
    pub never: &'static str,
    pub rename_button: &'static str,
    pub delete_button: &'static str,
    pub msg_registered: &'static str,
    pub msg_renamed: &'static str,
    pub msg_deleted: &'static str,
    pub err_name: &'static str,
    pub err_register: &'static str,
    pub err_full: &'static str,
    pub err_not_found: &'static str,
    pub two_step_passkey: &'static str,
}

static PASSKEY_JA: PasskeyTexts = PasskeyTexts {
    login_button: "パスキーでログイン",
    login_failed: "パスキーでログインできませんでした。もう一度お試しいただくか、IDを入力してログインしてください。",
    unsupported: "このブラウザはパスキーに対応していません。",
    nav: "パスキー（生体認証）",
    heading: "パスキー",
    lead: "パスキーを登録すると、指紋・顔認証や画面ロックでログインできます。パスキーでのログインは2段階認証を済ませたものとして扱われます。",
    none: "パスキーは登録されていません。",
    name_label: "名前（どの端末のパスキーか）",
    register_button: "パスキーを登録する",
    needs_js: "パスキーの登録にはJavaScriptが必要です。",
    needs_two_step: "パスキーを登録するには、セキュリティコードなど2段階認証でログインし直してください。",
    created: "登録日時",
    last_used: "最終利用日時",
    never: "未使用",
    rename_button: "名前を変更",
    delete_button: "削除する",
    msg_registered: "パスキーを登録しました。",
    msg_renamed: "名前を変更しました。",
    msg_deleted: "パスキーを削除しました。",
    err_name: "名前は1〜64文字で、制御文字は使えません。",
    err_register: "パスキーを登録できませんでした。もう一度お試しください。",
    err_full: "パスキーの数が上限に達しています。使っていないものを削除してください。",
    err_not_found: "そのパスキーは見つかりません。",
    two_step_passkey: "パスキー（生体認証）",
};

static PASSKEY_EN: PasskeyTexts = PasskeyTexts {
    login_button: "Log in with a passkey",
    login_failed: "The passkey login did not work. Try again, or enter your ID to log in.",
    unsupported: "This browser does not support passkeys.",
    nav: "Passkeys (biometrics)",
    heading: "Passkeys",
    lead: "With a passkey you log in with your fingerprint, face or screen lock. A passkey login counts as both steps of the 2-step verification.",
    none: "You have no passkeys.",
    name_label: "Name (which device holds the passkey)",
    register_button: "Register a passkey",
    needs_js: "Registering a passkey needs JavaScript.",
    needs_two_step: "To register a passkey, log in again with both steps (a security code, say).",
    created: "Registered",
    last_used: "Last used",
    never: "Never used",
    rename_button: "Rename",
    delete_button: "Remove",
    msg_registered: "The passkey was registered.",
    msg_renamed: "The name was changed.",
    msg_deleted: "The passkey was removed.",
    err_name: "A name has 1 to 64 characters and no control characters.",
    err_register: "The passkey could not be registered. Please try again.",
    err_full: "You have the maximum number of passkeys. Remove one you no longer use.",
    err_not_found: "No such passkey.",
    two_step_passkey: "Passkey (biometrics)",
};

impl Lang {
    /// The passkey texts in this language (templates call `lang.passkeys()`).
    pub fn passkeys(self) -> &'static PasskeyTexts {
        match self {
            Lang::Ja => &PASSKEY_JA,
            Lang::En => &PASSKEY_EN,
        }
    }
}

/// The app-password page's texts (the rest come from [`Texts`]).
#[derive(Debug)]
pub struct TokenTexts {
    pub heading: &'static str,
    pub lead: &'static str,
    pub none: &'static str,
    pub name_label: &'static str,
    pub create_button: &'static str,
    pub created: &'static str,
    pub last_used: &'static str,
    pub never: &'static str,
    pub revoke_button: &'static str,
    pub new_token_heading: &'static str,
    pub new_token_help: &'static str,
    /// A reload of the page that showed a new app password.
    pub new_token_gone: &'static str,
    pub copy_button: &'static str,
    pub copied: &'static str,
    pub msg_created: &'static str,
    pub msg_revoked: &'static str,
    pub err_name: &'static str,
    pub err_full: &'static str,
    pub err_not_found: &'static str,
    pub link: &'static str,
}

static TOKEN_JA: TokenTexts = TokenTexts {
    heading: "アプリパスワード",
    lead: "メールアプリや同期ツールなど、2段階認証に対応していないアプリのためのパスワードです。許可されたサービスでのみ、IDとパスワードの代わりに使えます。使わなくなったものは削除してください。",
    none: "アプリパスワードはありません。",
    name_label: "名前（どのアプリで使うか）",
    create_button: "作成する",
    created: "作成日時",
    last_used: "最終利用日時",
    never: "未使用",
    revoke_button: "削除する",
    new_token_heading: "新しいアプリパスワード",
    new_token_help: "この画面を離れると二度と表示されません。今すぐアプリに設定してください。",
    new_token_gone: "新しいアプリパスワードは一度だけ表示され、もう表示できません。控えていない場合は、それを削除して作り直してください。",
    copy_button: "コピー",
    copied: "コピーしました。",
    msg_created: "アプリパスワードを作成しました。",
    msg_revoked: "アプリパスワードを削除しました。",
    err_name: "名前は1〜64文字で、制御文字は使えません。",
    err_full: "アプリパスワードの数が上限に達しています。使っていないものを削除してください。",
    err_not_found: "そのアプリパスワードは見つかりません。",
    link: "アプリパスワード",
};

static TOKEN_EN: TokenTexts = TokenTexts {
    heading: "App passwords",
    lead: "Passwords for apps that cannot do 2-step verification, such as mail clients or sync tools. They work instead of your password only on the services that allow them. Remove the ones you no longer use.",
    none: "You have no app passwords.",
    name_label: "Name (which app uses it)",
    create_button: "Create",
    created: "Created",
    last_used: "Last used",
    never: "Never used",
    revoke_button: "Remove",
    new_token_heading: "Your new app password",
    new_token_help: "It will not be shown again once you leave this page. Set it in your app now.",
    new_token_gone: "A new app password is shown only once and cannot be shown again. If you did not save it, remove it and create another.",
    copy_button: "Copy",
    copied: "Copied.",
    msg_created: "The app password was created.",
    msg_revoked: "The app password was removed.",
    err_name: "A name has 1 to 64 characters and no control characters.",
    err_full: "You have the maximum number of app passwords. Remove one you no longer use.",
    err_not_found: "No such app password.",
    link: "App passwords",
};

impl Lang {
    /// The app-password texts in this language.
    pub fn tokens(self) -> &'static TokenTexts {
        match self {
            Lang::Ja => &TOKEN_JA,
            Lang::En => &TOKEN_EN,
        }
    }
}

/// The strings of the password page (`{prefix}/password`).
pub struct PasswordTexts {
    pub heading: &'static str,
    pub lead: &'static str,
    pub current_label: &'static str,
    pub new_label: &'static str,
    pub new_help: &'static str,
    pub confirm_label: &'static str,
    pub change_button: &'static str,
    pub msg_changed: &'static str,
    pub err_wrong: &'static str,
    pub err_mismatch: &'static str,
    pub err_too_short: &'static str,
    pub err_too_long: &'static str,
    pub err_like_id: &'static str,
    pub err_common: &'static str,
    pub err_unchanged: &'static str,
    pub err_invalid: &'static str,
    pub err_rejected: &'static str,
    pub err_wait: &'static str,
    pub managed_heading: &'static str,
    pub managed: &'static str,
    pub managed_link: &'static str,
    pub link: &'static str,
}

static PASSWORD_JA: PasswordTexts = PasswordTexts {
    heading: "パスワードの変更",
    lead: "今のパスワードと新しいパスワードを入力してください。変更すると、この画面以外のログインはすべて終了し、登録済みのデバイスとアプリパスワードは使えなくなります。",
    current_label: "今のパスワード",
    new_label: "新しいパスワード",
    new_help: "8文字以上。IDを含むものや、よく使われるパスワードは使えません。",
    confirm_label: "新しいパスワード（確認）",
    change_button: "変更する",
    msg_changed: "パスワードを変更しました。この画面以外のログインはすべて終了しました。",
    err_wrong: "今のパスワードが正しくありません。",
    err_mismatch: "確認のために入力した新しいパスワードが一致しません。",
    err_too_short: "新しいパスワードは8文字以上にしてください。",
    err_too_long: "新しいパスワードが長すぎます。",
    err_like_id: "IDを含むパスワードは使えません。",
    err_common: "よく使われているパスワードなので使えません。推測されにくいものにしてください。",
    err_unchanged: "新しいパスワードが今のパスワードと同じです。",
    err_invalid: "新しいパスワードに使えない文字が含まれています。",
    err_rejected: "ディレクトリの規則により、このパスワードは使えません（以前のパスワードと同じなど）。",
    err_wait: "失敗が続いたため、しばらく待ってからもう一度お試しください。",
    managed_heading: "パスワードは管理者が管理しています",
    managed: "このサービスでは、パスワードの変更は管理者が行います。変更が必要な場合は管理者のページから手続きしてください。",
    managed_link: "アカウント管理のページへ",
    link: "パスワードの変更",
};

static PASSWORD_EN: PasswordTexts = PasswordTexts {
    heading: "Change your password",
    lead: "Enter your current password and a new one. After the change every other sign-in ends, and your trusted devices and app passwords stop working.",
    current_label: "Current password",
    new_label: "New password",
    new_help: "At least 8 characters. It cannot contain your ID or be a commonly used password.",
    confirm_label: "New password again",
    change_button: "Change password",
    msg_changed: "Your password was changed. Every other sign-in has ended.",
    err_wrong: "The current password is not right.",
    err_mismatch: "The two new passwords are not the same.",
    err_too_short: "The new password needs at least 8 characters.",
    err_too_long: "The new password is too long.",
    err_like_id: "The new password cannot contain your ID.",
    err_common: "That password is too common. Choose one that is harder to guess.",
    err_unchanged: "The new password is the same as the current one.",
    err_invalid: "The new password contains characters that cannot be used.",
    err_rejected: "The directory's rules do not allow this password (for example, one you used before).",
    err_wait: "Too many wrong passwords. Wait a while and try again.",
    managed_heading: "Your administrator manages passwords",
    managed: "Passwords for this service are changed by your administrator. Use their account page if you need a new one.",
    managed_link: "Go to the account page",
    link: "Change password",
};

impl Lang {
    /// The password page's texts in this language.
    pub fn password(self) -> &'static PasswordTexts {
        match self {
            Lang::Ja => &PASSWORD_JA,
            Lang::En => &PASSWORD_EN,
        }
    }
}

/// The strings of "where you are signed in" (`{prefix}/sessions`), kept apart from
/// [`Texts`] so the page can grow without touching every other page's table.
#[derive(Debug)]
pub struct SessionTexts {
    pub heading: &'static str,
    pub lead: &'static str,
    pub nav: &'static str,
    pub address: &'static str,
    pub signed_in: &'static str,
    pub last_seen: &'static str,
    pub how: &'static str,
    pub end_button: &'static str,
    /// "Sign out everywhere else": the two choices, each saying exactly what it does.
    pub end_others_heading: &'static str,
    pub end_others_help: &'static str,
    pub end_others_button: &'static str,
    pub forget_help: &'static str,
    pub forget_button: &'static str,
    /// Their confirmation pages.
    pub confirm_end_others: &'static str,
    pub confirm_forget: &'static str,
    pub msg_ended: &'static str,
    pub msg_others_ended: &'static str,
    pub msg_forgotten: &'static str,
    pub err_not_found: &'static str,
}

pub fn session_texts(lang: Lang) -> &'static SessionTexts {
    match lang {
        Lang::Ja => &SESSIONS_JA,
        Lang::En => &SESSIONS_EN,
    }
}

static SESSIONS_JA: SessionTexts = SessionTexts {
    heading: "ログイン中のブラウザ",
    lead: "このアカウントでログインしているブラウザの一覧です。心当たりのないものはログアウトさせてください。",
    nav: "ログイン中のブラウザの確認",
    address: "IPアドレス",
    signed_in: "ログイン日時",
    last_seen: "最終利用日時",
    how: "2段階認証",
    end_button: "ログアウトさせる",
    end_others_heading: "他のすべてのブラウザからログアウト",
    end_others_help: "このブラウザ以外のすべてのブラウザからログアウトします。信頼できる端末とアプリパスワードはそのまま使えます（信頼できる端末では次回のログインでも2段階認証が省略され、アプリパスワードを使っているアプリもそのまま動きます）。",
    end_others_button: "他のブラウザからログアウト",
    forget_help: "このブラウザ以外のすべてのブラウザからログアウトし、さらにすべての信頼できる端末を削除し（このブラウザも含め、次回のログインからは2段階認証が必要です）、すべてのアプリパスワードを削除します（使っているアプリは、新しいアプリパスワードを設定するまでログインできません）。パスキーと登録済みのアプリはそのまま残ります。",
    forget_button: "信頼できる端末とアプリパスワードも削除",
    confirm_end_others: "このブラウザ以外のすべてのブラウザからログアウトしますか？",
    confirm_forget: "このブラウザ以外のすべてのブラウザからログアウトし、信頼できる端末とアプリパスワードをすべて削除しますか？",
    msg_ended: "そのブラウザをログアウトさせました。",
    msg_others_ended: "他のすべてのブラウザからログアウトしました。信頼できる端末とアプリパスワードはそのまま使えます。",
    msg_forgotten: "他のすべてのブラウザからログアウトし、信頼できる端末とアプリパスワードをすべて削除しました。",
    err_not_found: "そのログインは見つかりません（すでに終了しています）。",
};

static SESSIONS_EN: SessionTexts = SessionTexts {
    heading: "Where you are logged in",
    lead: "Browsers logged in to this account. Log out any you do not recognise.",
    nav: "See where you are logged in",
    address: "IP address",
    signed_in: "Logged in",
    last_seen: "Last active",
    how: "2-step verification",
    end_button: "Log out",
    end_others_heading: "Log out everywhere else",
    end_others_help: "Logs out every browser but this one. Trusted devices and app passwords keep working: a trusted device still skips the second step at its next login, and apps that use an app password stay logged in.",
    end_others_button: "Log out other browsers",
    forget_help: "Logs out every browser but this one, and also forgets every trusted device (this browser's too: every next login asks for the second step) and removes every app password (apps that use one cannot log in until you give them a new one). Passkeys and enrolled phone apps stay.",
    forget_button: "Also forget trusted devices and app passwords",
    confirm_end_others: "Log out every other browser?",
    confirm_forget: "Log out every other browser, and forget all trusted devices and app passwords?",
    msg_ended: "That browser is logged out.",
    msg_others_ended: "Every other browser is logged out. Trusted devices and app passwords still work.",
    msg_forgotten: "Every other browser is logged out, and every trusted device and app password is forgotten.",
    err_not_found: "That login no longer exists.",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_follows_weights() {
        assert_eq!(Lang::from_accept_language(None, Lang::Ja), Lang::Ja);
        assert_eq!(Lang::from_accept_language(Some(""), Lang::En), Lang::En);
        assert_eq!(
            Lang::from_accept_language(Some("en-US,en;q=0.9"), Lang::Ja),
            Lang::En
        );
        assert_eq!(
            Lang::from_accept_language(Some("ja-JP,ja;q=0.9,en;q=0.8"), Lang::En),
            Lang::Ja
        );
        assert_eq!(
            Lang::from_accept_language(Some("en;q=0.5, ja;q=0.8"), Lang::En),
            Lang::Ja
        );
        assert_eq!(
            Lang::from_accept_language(Some("fr, de;q=0.9, en;q=0.1"), Lang::Ja),
            Lang::En
        );
        assert_eq!(
            Lang::from_accept_language(Some("fr, de"), Lang::Ja),
            Lang::Ja
        );
        assert_eq!(
            Lang::from_accept_language(Some("en;q=0, ja;q=0.1"), Lang::En),
            Lang::Ja
        );
        assert_eq!(
            Lang::from_accept_language(Some("en;q=0"), Lang::Ja),
            Lang::Ja
        );
        assert_eq!(Lang::from_accept_language(Some("*"), Lang::En), Lang::En);
        assert_eq!(
            Lang::from_accept_language(Some("ja;q=abc, en"), Lang::Ja),
            Lang::En
        );
        assert_eq!(
            Lang::from_accept_language(Some("en;q=1.5, ja;q=0.2"), Lang::En),
            Lang::Ja
        );
        assert_eq!(
            Lang::from_accept_language(Some("EN-gb;Q=0.7, ja;q=0.700"), Lang::Ja),
            Lang::En
        );
    }

    #[test]
    fn parse_and_code() {
        assert_eq!(Lang::parse("ja"), Some(Lang::Ja));
        assert_eq!(Lang::parse("EN"), Some(Lang::En));
        assert_eq!(Lang::parse("ja-JP"), Some(Lang::Ja));
        assert_eq!(Lang::parse("en_US"), Some(Lang::En));
        assert_eq!(Lang::parse("fr"), None);
        assert_eq!(Lang::parse(""), None);
        assert_eq!(Lang::parse("japanese"), None);
        for l in [Lang::Ja, Lang::En] {
            assert_eq!(Lang::parse(l.code()), Some(l));
            assert_eq!(l.other().other(), l);
        }
    }

    #[test]
    fn no_text_is_empty() {
        for lang in [Lang::Ja, Lang::En] {
            let dump = format!("{:?}", texts(lang));
            assert!(!dump.contains(": \"\""), "{lang:?} has an empty text");
        }
        // The switch link names the other language in that language.
        assert_eq!(texts(Lang::Ja).switch_lang, "English");
        assert_eq!(texts(Lang::En).switch_lang, "日本語");
    }

    #[test]
    fn placeholders_fill_in() {
        assert_eq!(
            texts(Lang::Ja).retry_in(707),
            "約12分後にもう一度お試しください。"
        );
        assert_eq!(texts(Lang::En).retry_in(5), "Try again in about 1 minute.");
        assert_eq!(
            texts(Lang::En).retry_in(61),
            "Try again in about 2 minutes."
        );
        assert!(texts(Lang::En).resend_in(12).contains("12"));
        assert!(texts(Lang::Ja).devices_max_line(10).contains("10台"));
    }
}
