//! The texts nidan sends (mails, SMS, pushes), in Japanese and English, in the words of
//! [`super::terms`].
//!
//! Every function returns `(subject, body)`. Values are inserted as given: these are
//! plain-text messages, never HTML.

use super::terms::terms;
use crate::config::Language;

const FOOTER_JA: &str =
    "※このメッセージは送信専用のアドレスからお送りしています。ご返信いただいてもお答えできません。";
const FOOTER_EN: &str = "This is an automated message; replies are not read.";

fn with_footer(lang: Language, body: String) -> String {
    let footer = match lang {
        Language::Ja => FOOTER_JA,
        Language::En => FOOTER_EN,
    };
    format!("{body}\n\n--\n{footer}\n")
}

/// A notice's body with the date and time it happened on its first line.
pub fn stamped(lang: Language, body: &str, when: &str) -> String {
    let label = match lang {
        Language::Ja => "日時",
        Language::En => "Date and time",
    };
    format!("{label}: {when}\n\n{body}")
}

/// A security code for the second step, as an email.
pub fn security_code(lang: Language, code: &str, minutes: u64, site: &str) -> (String, String) {
    let code_word = terms(lang).security_code;
    match lang {
        Language::Ja => (
            format!("【{site}】{code_word}のお知らせ"),
            with_footer(
                lang,
                format!(
                    "{site} へのログインに使う{code_word}は次のとおりです。\n\n\
                     \u{3000}\u{3000}{code}\n\n\
                     このコードの有効期限は{minutes}分間です。\n\
                     このコードは他人に教えないでください。{site} の担当者がコードをお尋ねすることはありません。\n\n\
                     お心当たりのない場合は、このメッセージを破棄してください。\
                     第三者があなたのパスワードを知っている可能性がありますので、パスワードの変更をおすすめします。"
                ),
            ),
        ),
        Language::En => (
            format!("Your {site} {code_word}"),
            with_footer(
                lang,
                format!(
                    "Your {code_word} for logging in to {site} is:\n\n\
                     \x20   {code}\n\n\
                     It is valid for {minutes} {}.\n\
                     Do not share this code with anyone. {site} staff will never ask you for it.\n\n\
                     If you did not try to log in, you can ignore this message, but someone may \
                     know your password: we recommend changing it.",
                    plural_minutes(minutes)
                ),
            ),
        ),
    }
}

/// The same security code as a short SMS text (the `body` of an SMS message).
pub fn security_code_sms(lang: Language, code: &str, minutes: u64, site: &str) -> String {
    let code_word = terms(lang).security_code;
    match lang {
        Language::Ja => {
            format!("{site}: {code_word} {code}（{minutes}分間有効）。他人に教えないでください。")
        }
        Language::En => format!(
            "{site}: your {code_word} is {code} (valid for {minutes} {}). Do not share it.",
            plural_minutes(minutes)
        ),
    }
}

/// A browser was registered as a trusted device (the second step is skipped there).
pub fn device_added(
    lang: Language,
    device_name: &str,
    browser: &str,
    ip: &str,
    site: &str,
) -> (String, String) {
    let w = terms(lang);
    let (trusted, device, page) = (w.trusted_device, w.device, w.devices_page);
    match lang {
        Language::Ja => (
            format!("【{site}】{trusted}が追加されました"),
            with_footer(
                lang,
                format!(
                    "お使いの {site} アカウントに、{trusted}が追加されました。\
                     この{device}では、次回から{}が省略されます。\n\n\
                     {device}名: {device_name}\n\
                     ブラウザ: {browser}\n\
                     IPアドレス: {ip}\n\n\
                     お心当たりのない場合は、すぐにパスワードを変更し、\
                     「{page}」からこの{device}を{}してください。",
                    w.two_step, w.remove
                ),
            ),
        ),
        Language::En => (
            format!("A {trusted} was added to your {site} account"),
            with_footer(
                lang,
                format!(
                    "A {trusted} was added to your {site} account. \
                     Logging in on this {device} will no longer ask for {}.\n\n\
                     Device name: {device_name}\n\
                     Browser: {browser}\n\
                     IP address: {ip}\n\n\
                     If this was not you, change your password right away and {} the {device} \
                     under \"{page}\".",
                    w.two_step, w.remove
                ),
            ),
        ),
    }
}

/// A passkey was registered: it logs in without the password or a second step.
pub fn passkey_added(
    lang: Language,
    name: &str,
    browser: &str,
    ip: &str,
    site: &str,
) -> (String, String) {
    let w = terms(lang);
    let (passkey, page) = (w.passkey, w.passkeys_page);
    match lang {
        Language::Ja => (
            format!("【{site}】{passkey}が登録されました"),
            with_footer(
                lang,
                format!(
                    "お使いの {site} アカウントに、{passkey}が登録されました。\
                     この{passkey}では、パスワードや{}なしでログインできます。\n\n\
                     名前: {name}\n\
                     ブラウザ: {browser}\n\
                     IPアドレス: {ip}\n\n\
                     お心当たりのない場合は、すぐにパスワードを変更し、\
                     「{page}」からこの{passkey}を{}してください。",
                    w.two_step, w.remove
                ),
            ),
        ),
        Language::En => (
            format!("A {passkey} was registered for your {site} account"),
            with_footer(
                lang,
                format!(
                    "A {passkey} was registered for your {site} account. \
                     It logs in without your password or {}.\n\n\
                     Name: {name}\n\
                     Browser: {browser}\n\
                     IP address: {ip}\n\n\
                     If this was not you, change your password right away and {} the {passkey} \
                     under \"{page}\".",
                    w.two_step, w.remove
                ),
            ),
        ),
    }
}

/// A phone app was enrolled: it can approve logins from now on.
pub fn app_enrolled(lang: Language, name: &str, ip: &str, site: &str) -> (String, String) {
    let w = terms(lang);
    let page = w.app_page;
    match lang {
        Language::Ja => (
            format!("【{site}】{}のアプリが登録されました", w.two_step),
            with_footer(
                lang,
                format!(
                    "お使いの {site} アカウントに、{}のアプリが登録されました。\
                     このアプリでログインを許可できるようになりました。\n\n\
                     アプリ名: {name}\n\
                     IPアドレス: {ip}\n\n\
                     お心当たりのない場合は、すぐにパスワードを変更し、\
                     「{page}」からこのアプリを{}してください。",
                    w.two_step, w.remove
                ),
            ),
        ),
        Language::En => (
            format!(
                "An app for {} was set up on your {site} account",
                w.two_step
            ),
            with_footer(
                lang,
                format!(
                    "An app for {} was set up on your {site} account. \
                     It can now approve logins.\n\n\
                     App name: {name}\n\
                     IP address: {ip}\n\n\
                     If this was not you, change your password right away and {} the app \
                     under \"{page}\".",
                    w.two_step, w.remove
                ),
            ),
        ),
    }
}

/// The user changed their password in the portal: every other session ended.
pub fn password_changed(lang: Language, ip: &str, site: &str) -> (String, String) {
    match lang {
        Language::Ja => (
            format!("【{site}】パスワードが変更されました"),
            with_footer(
                lang,
                format!(
                    "お使いの {site} アカウントのパスワードが変更されました。\
                     変更した画面以外のログインはすべて終了し、アプリ用パスワードは無効になりました。\n\n\
                     IPアドレス: {ip}\n\n\
                     お心当たりのない場合は、すぐに管理者にお問い合わせください。"
                ),
            ),
        ),
        Language::En => (
            format!("The password of your {site} account was changed"),
            with_footer(
                lang,
                format!(
                    "The password of your {site} account was changed. Every sign-in except \
                     the one it was changed from has ended, and app passwords no longer work.\n\n\
                     IP address: {ip}\n\n\
                     If this was not you, contact your administrator right away."
                ),
            ),
        ),
    }
}

/// "This wasn't me" in the app: the login was refused and app prompts are paused.
pub fn not_me_refused(lang: Language, minutes: u64, site: &str) -> (String, String) {
    match lang {
        Language::Ja => (
            format!("【{site}】心当たりのないログインを拒否しました"),
            with_footer(
                lang,
                format!(
                    "アプリで「心当たりがない」が選ばれたため、ログインを拒否し、\
                     {minutes}分間アプリでの確認を停止しました。\n\
                     パスワードの変更をおすすめします。"
                ),
            ),
        ),
        Language::En => (
            format!("[{site}] A login you did not recognise was refused"),
            with_footer(
                lang,
                format!(
                    "\"This wasn't me\" was chosen in the app: the login was refused and app \
                     requests are paused for {minutes} {}.\n\
                     We recommend changing your password.",
                    plural_minutes(minutes)
                ),
            ),
        ),
    }
}

/// The push to the phone app when a login waits for it (title, body).
pub fn approval_push(lang: Language, browser: &str, ip: &str) -> (String, String) {
    match lang {
        Language::Ja => (
            "ログインの確認".to_owned(),
            format!("{browser}（{ip}）からのログインです。アプリを開いて確認してください。"),
        ),
        Language::En => (
            "Login request".to_owned(),
            format!("A login from {browser} ({ip}). Open the app to answer."),
        ),
    }
}

/// One of each message with neutral values, for the vocabulary test.
#[cfg(test)]
pub(crate) fn samples(lang: Language) -> Vec<(String, String)> {
    let (site, name, browser, ip) = match lang {
        Language::Ja => ("サイト", "名前", "ブラウザ", "アドレス"),
        Language::En => ("site", "name", "browser", "address"),
    };
    let label = match lang {
        Language::Ja => "メール",
        Language::En => "email",
    };
    vec![
        security_code(lang, "123456", 5, site),
        ("SMS".to_owned(), security_code_sms(lang, "123456", 5, site)),
        device_added(lang, name, browser, ip, site),
        passkey_added(lang, name, browser, ip, site),
        app_enrolled(lang, name, ip, site),
        not_me_refused(lang, 15, site),
        approval_push(lang, browser, ip),
        two_step_changed(lang, true, false, label, site),
        two_step_changed(lang, false, true, label, site),
        two_step_changed(lang, true, true, label, site),
        two_step_disabled_phone_gone(lang, site),
        two_step_switched_to_email_phone_gone(lang, site),
        new_browser_signin(lang, browser, ip, site),
        login_approval_request(lang, 42, site),
    ]
}

/// 2-step verification was turned on (with `method_label`) or off (`method_label` is the
/// method used until now; may be empty).
pub fn two_step_changed(
    lang: Language,
    enabled: bool,
    was_enabled: bool,
    method_label: &str,
    site: &str,
) -> (String, String) {
    if enabled && was_enabled {
        return two_step_method_changed(lang, method_label, site);
    }
    match (lang, enabled) {
        (Language::Ja, true) => (
            format!("【{site}】2段階認証が有効になりました"),
            with_footer(
                lang,
                format!(
                    "お使いの {site} アカウントで、2段階認証が有効になりました。{}\n\n\
                     今後のログインでは、パスワードに加えて確認が必要になります。\n\n\
                     お心当たりのない場合は、すぐにパスワードを変更し、管理者にお問い合わせください。",
                    label_line_ja("確認方法", method_label)
                ),
            ),
        ),
        (Language::Ja, false) => (
            format!("【{site}】2段階認証が無効になりました"),
            with_footer(
                lang,
                format!(
                    "お使いの {site} アカウントで、2段階認証が無効になりました。{}\n\n\
                     現在はパスワードだけでログインできる状態です。\n\n\
                     お心当たりのない場合は、すぐにパスワードを変更し、\
                     設定画面から2段階認証をもう一度有効にしてください。",
                    label_line_ja("これまでの確認方法", method_label)
                ),
            ),
        ),
        (Language::En, true) => (
            format!("2-step verification is now on for your {site} account"),
            with_footer(
                lang,
                format!(
                    "2-step verification was turned on for your {site} account.{}\n\n\
                     From now on, logging in needs a second step after your password.\n\n\
                     If this was not you, change your password right away and contact your \
                     administrator.",
                    label_line_en("Method", method_label)
                ),
            ),
        ),
        (Language::En, false) => (
            format!("2-step verification is now off for your {site} account"),
            with_footer(
                lang,
                format!(
                    "2-step verification was turned off for your {site} account.{}\n\n\
                     Your password alone is now enough to log in.\n\n\
                     If this was not you, change your password right away and turn 2-step \
                     verification back on in your settings.",
                    label_line_en("Previous method", method_label)
                ),
            ),
        ),
    }
}

/// 2-step stays on with another method (SMS → email, say): not "turned on".
fn two_step_method_changed(lang: Language, method_label: &str, site: &str) -> (String, String) {
    match lang {
        Language::Ja => (
            format!("【{site}】2段階認証の方法が変更されました"),
            with_footer(
                lang,
                format!(
                    "お使いの {site} アカウントで、2段階認証の方法が変更されました。{}\n\n\
                     お心当たりのない場合は、すぐにパスワードを変更し、管理者にお問い合わせください。",
                    label_line_ja("新しい確認方法", method_label)
                ),
            ),
        ),
        Language::En => (
            format!("Your 2-step verification method changed for your {site} account"),
            with_footer(
                lang,
                format!(
                    "The 2-step verification method of your {site} account was changed.{}\n\n\
                     If this was not you, change your password right away and contact your \
                     administrator.",
                    label_line_en("New method", method_label)
                ),
            ),
        ),
    }
}

/// The operator marked the user's phone as gone; 2-step was turned off because of it.
pub fn two_step_disabled_phone_gone(lang: Language, site: &str) -> (String, String) {
    match lang {
        Language::Ja => (
            format!("【{site}】電話番号の解約にともない2段階認証を無効にしました"),
            with_footer(
                lang,
                format!(
                    "お使いの {site} アカウントに登録されていた電話番号が利用できなくなったと\
                     管理者から連絡があったため、2段階認証を無効にしました。\
                     あわせて、登録済みのアプリを削除しました。\n\n\
                     現在はパスワードだけでログインできる状態です。\
                     アカウントを守るため、ログイン後に設定画面から2段階認証をもう一度有効にしてください。\n\n\
                     お心当たりのない場合は、管理者にお問い合わせください。"
                ),
            ),
        ),
        Language::En => (
            format!(
                "2-step verification was turned off because your phone is no longer on file ({site})"
            ),
            with_footer(
                lang,
                format!(
                    "Your administrator reported that the phone number on your {site} account is \
                     no longer in use, so 2-step verification was turned off and the \
                     enrolled app was removed.\n\n\
                     Your password alone is now enough to log in. To keep your account safe, \
                     please log in and turn 2-step verification back on in your settings.\n\n\
                     If you did not expect this, contact your administrator."
                ),
            ),
        ),
    }
}

/// A sign-in from a browser not seen before.
/// The phone is gone and 2-step now sends codes to the contact email
/// (`users.on_phone_loss: switch_to_email`).
pub fn two_step_switched_to_email_phone_gone(lang: Language, site: &str) -> (String, String) {
    match lang {
        Language::Ja => (
            format!("【{site}】電話番号の解約にともない2段階認証の方法をメールに変更しました"),
            with_footer(
                lang,
                format!(
                    "お使いの {site} アカウントに登録されていた電話番号が利用できなくなったと\
                     管理者から連絡があったため、セキュリティコードの送り先をこのメールアドレスに変更しました。\
                     あわせて、登録済みのアプリと信頼できる端末を削除しました。\n\n\
                     新しい電話番号をお持ちの場合は、ログイン後に設定画面から変更してください。\n\n\
                     お心当たりのない場合は、管理者にお問い合わせください。"
                ),
            ),
        ),
        Language::En => (
            format!(
                "2-step verification now sends codes by email: your phone is no longer on file ({site})"
            ),
            with_footer(
                lang,
                format!(
                    "Your administrator reported that the phone number on your {site} account is \
                     no longer in use, so security codes are now sent to this email address. \
                     The enrolled app was removed and your trusted devices were removed.\n\n\
                     If you have a new phone number, log in and update your settings.\n\n\
                     If you did not expect this, contact your administrator."
                ),
            ),
        ),
    }
}

pub fn new_browser_signin(lang: Language, browser: &str, ip: &str, site: &str) -> (String, String) {
    match lang {
        Language::Ja => (
            format!("【{site}】新しいブラウザからログインがありました"),
            with_footer(
                lang,
                format!(
                    "お使いの {site} アカウントに、これまでに使われていないブラウザからログインがありました。\n\n\
                     ブラウザ: {browser}\n\
                     IPアドレス: {ip}\n\n\
                     ご本人によるログインであれば、対応は不要です。\n\
                     お心当たりのない場合は、すぐにパスワードを変更し、2段階認証を有効にしてください。"
                ),
            ),
        ),
        Language::En => (
            format!("New login to your {site} account"),
            with_footer(
                lang,
                format!(
                    "Your {site} account was just logged in to from a browser not used before.\n\n\
                     Browser: {browser}\n\
                     IP address: {ip}\n\n\
                     If this was you, there is nothing to do.\n\
                     If not, change your password right away and turn on 2-step verification."
                ),
            ),
        ),
    }
}

/// A push to the phone app asking to approve a sign-in; `number` is shown on the login page.
pub fn login_approval_request(
    lang: Language,
    number: impl std::fmt::Display,
    site: &str,
) -> (String, String) {
    match lang {
        Language::Ja => (
            format!("【{site}】ログインの承認リクエスト"),
            format!(
                "{site} へのログインを承認しますか？ログイン画面に表示されている番号「{number}」を選んでください。\
                 ご自身のログインでない場合は、拒否してください。"
            ),
        ),
        Language::En => (
            format!("Approve login to {site}?"),
            format!(
                "Someone is logging in to {site}. If it is you, choose the number {number} shown on \
                 the login page. If it is not you, deny the request."
            ),
        ),
    }
}

fn label_line_ja(key: &str, label: &str) -> String {
    if label.is_empty() {
        String::new()
    } else {
        format!("\n\n{key}: {label}")
    }
}

fn label_line_en(key: &str, label: &str) -> String {
    if label.is_empty() {
        String::new()
    } else {
        format!("\n\n{key}: {label}")
    }
}

fn plural_minutes(n: u64) -> &'static str {
    if n == 1 { "minute" } else { "minutes" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_texts_contain_code_and_lifetime() {
        let (s, b) = security_code(Language::Ja, "123456", 5, "nidan");
        assert!(s.contains("nidan") && !s.contains("123456"));
        assert!(b.contains("123456") && b.contains("5分間"));
        let (s, b) = security_code(Language::En, "123456", 1, "nidan");
        assert!(s.contains("security code"));
        assert!(b.contains("123456") && b.contains("1 minute."));
        assert_eq!(
            security_code_sms(Language::Ja, "123456", 5, "nidan"),
            "nidan: セキュリティコード 123456（5分間有効）。他人に教えないでください。"
        );
        assert!(security_code_sms(Language::En, "123456", 5, "nidan").len() < 160);
    }

    #[test]
    fn other_texts_carry_their_details() {
        let (_, b) = device_added(
            Language::Ja,
            "会社PC",
            "Firefox on Linux",
            "192.0.2.1",
            "nidan",
        );
        assert!(b.contains("会社PC") && b.contains("192.0.2.1"));
        let (s, b) = two_step_changed(Language::En, true, false, "SMS", "nidan");
        assert!(s.contains("on") && b.contains("Method: SMS"));
        let (s2, _) = two_step_changed(Language::Ja, true, true, "メール", "nidan");
        assert!(s2.contains("方法が変更") && !s2.contains("有効"), "{s2}");
        let (s, b) = two_step_changed(Language::Ja, false, true, "", "nidan");
        assert!(s.contains("無効") && !b.contains("確認方法:"));
        let (_, b) = two_step_disabled_phone_gone(Language::Ja, "nidan");
        assert!(b.contains("電話番号"));
        let (_, b) = new_browser_signin(Language::En, "Safari", "2001:db8::1", "nidan");
        assert!(b.contains("Safari") && b.contains("2001:db8::1"));
        let (_, b) = login_approval_request(Language::Ja, 42, "nidan");
        assert!(b.contains("「42」"));
    }
}
