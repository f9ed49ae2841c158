//! One vocabulary for pages, mails and SMS: the words nidan uses for its things, in
//! Japanese and English (the seed's own words: セキュリティコード, 信頼できる端末, 2段階認証),
//! and the words that drift from them.
//!
//! Mails and SMS are built from [`Terms`]; the pages' fixed sentences are held to the same
//! words by the test below, which reads every page, mail and SMS text in both languages.

use super::Lang;

/// The words for nidan's things in one language.
#[derive(Debug)]
pub struct Terms {
    pub security_code: &'static str,
    pub trusted_device: &'static str,
    pub two_step: &'static str,
    /// A browser or phone, as in 「端末名」.
    pub device: &'static str,
    pub passkey: &'static str,
    pub app_password: &'static str,
    /// The one verb for taking something away (a device, a passkey, an app, an app password).
    pub remove: &'static str,
    pub last_used: &'static str,
    pub registered: &'static str,
    /// Where the trusted devices are managed (the portal's link text).
    pub devices_page: &'static str,
    /// Where passkeys are managed.
    pub passkeys_page: &'static str,
    /// Where the phone app is managed.
    pub app_page: &'static str,
}

static JA: Terms = Terms {
    security_code: "セキュリティコード",
    trusted_device: "信頼できる端末",
    two_step: "2段階認証",
    device: "端末",
    passkey: "パスキー",
    app_password: "アプリパスワード",
    remove: "削除",
    last_used: "最終利用日時",
    registered: "登録日時",
    devices_page: "信頼できる端末の確認・削除",
    passkeys_page: "パスキー（生体認証）",
    app_page: "アプリによる2段階認証の設定",
};

static EN: Terms = Terms {
    security_code: "security code",
    trusted_device: "trusted device",
    two_step: "2-step verification",
    device: "device",
    passkey: "passkey",
    app_password: "app password",
    remove: "remove",
    last_used: "Last used",
    registered: "Registered",
    devices_page: "Review or remove trusted devices",
    passkeys_page: "Passkeys (biometrics)",
    app_page: "2-step verification with the app",
};

/// The terms in `lang`.
pub fn terms(lang: Lang) -> &'static Terms {
    match lang {
        Lang::Ja => &JA,
        Lang::En => &EN,
    }
}

/// Words that drift from the table, with the word to use instead.
pub const DRIFT_JA: &[(&str, &str)] = &[
    ("確認コード", "セキュリティコード"),
    ("認証コード", "セキュリティコード"),
    ("ワンタイム", "セキュリティコード"),
    ("デバイス", "端末"),
    ("二段階", "2段階"),
    ("２段階", "2段階"),
    ("登録を解除", "削除"),
    ("確認・解除", "確認・削除"),
    ("解除する", "削除する"),
    ("最終利用」", "最終利用日時"),
    // Mails say what the pages say.
    ("認証方法", "確認方法"),
    ("認証アプリ", "アプリ"),
    ("登録も解除", "削除"),
];

pub const DRIFT_EN: &[(&str, &str)] = &[
    ("two-step", "2-step"),
    ("Two-step", "2-step"),
    ("two step", "2-step"),
    ("verification code", "security code"),
    ("confirmation code", "security code"),
    ("Delete", "Remove"),
    ("delete", "remove"),
    ("Revoke", "Remove"),
    // One pair of words for the login: "log in" / "log out" (the buttons say so).
    ("Sign in", "Log in"),
    ("sign in", "log in"),
    ("Sign-in", "Login"),
    ("sign-in", "login"),
    ("Signed in", "Logged in"),
    ("signed in", "logged in"),
    ("signing in", "logging in"),
    ("Sign out", "Log out"),
    ("sign out", "log out"),
    ("Signs out", "Logs out"),
    ("signed out", "logged out"),
];

/// Latin words a Japanese page may show (names of things, not English sentences).
pub const LATIN_IN_JA: &[&str] = &[
    "ID",
    "SMS",
    "QR",
    "URI",
    "IP",
    "Cookie",
    "JavaScript",
    "English",
    "PC",
    // The language switch's tooltip, for someone who cannot read the page's language.
    "Language",
];

/// `text` without its `{placeholders}`.
fn without_placeholders(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut depth = 0u32;
    for c in text.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// What is wrong with one Japanese text: drift, English words, half-width brackets.
pub fn check_ja(text: &str) -> Vec<String> {
    let text = &without_placeholders(text);
    let mut problems = Vec::new();
    for (wrong, right) in DRIFT_JA {
        if text.contains(wrong) {
            problems.push(format!("「{wrong}」: write 「{right}」"));
        }
    }
    // A column of times is 「最終利用日時」 on every list.
    if text == "最終利用" {
        problems.push("「最終利用」: write 「最終利用日時」".to_owned());
    }
    if text.contains('(') || text.contains(')') {
        problems.push("half-width brackets: write （ ）".to_owned());
    }
    let words = text
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| w.len() >= 2);
    for w in words {
        if !LATIN_IN_JA.contains(&w) {
            problems.push(format!("English in Japanese: {w}"));
        }
    }
    problems
}

/// What is wrong with one English text: drift, Japanese characters.
pub fn check_en(text: &str) -> Vec<String> {
    let text = &without_placeholders(text);
    let mut problems = Vec::new();
    for (wrong, right) in DRIFT_EN {
        if text.contains(wrong) {
            problems.push(format!("\"{wrong}\": write \"{right}\""));
        }
    }
    // The language switch (and its tooltip) names Japanese in Japanese; nothing else does.
    if !["日本語", "言語"].contains(&text.as_str()) && text.chars().any(|c| c as u32 >= 0x3000)
    {
        problems.push("Japanese characters in English".to_owned());
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::portal::i18n::{messages, texts};

    /// Every `"…"` string in a `Debug` dump of a texts table.
    fn strings(dump: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = dump;
        while let Some(i) = rest.find(": \"") {
            let body = &rest[i + 3..];
            let mut end = 0;
            let mut escaped = false;
            for (j, c) in body.char_indices() {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    end = j;
                    break;
                }
            }
            out.push(body[..end].replace("\\\"", "\""));
            rest = &body[end..];
        }
        out
    }

    /// Every page, mail and SMS text in `lang`.
    fn every_text(lang: Lang) -> Vec<String> {
        let mut all = strings(&format!("{:?}", texts(lang)));
        all.extend(strings(&format!("{:?}", lang.passkeys())));
        all.extend(strings(&format!("{:?}", lang.tokens())));
        all.extend(strings(&format!(
            "{:?}",
            crate::portal::i18n::session_texts(lang)
        )));
        all.extend(strings(&format!("{:?}", terms(lang))));
        for (s, b) in messages::samples(lang) {
            all.push(s);
            all.push(b);
        }
        all
    }

    #[test]
    fn pages_mails_and_sms_use_one_vocabulary() {
        let mut problems = Vec::new();
        for text in every_text(Lang::Ja) {
            for p in check_ja(&text) {
                problems.push(format!("ja: {p} in {text:?}"));
            }
        }
        for text in every_text(Lang::En) {
            for p in check_en(&text) {
                problems.push(format!("en: {p} in {text:?}"));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn the_table_is_used_where_it_counts() {
        let count =
            |lang: Lang, word: &str| every_text(lang).iter().filter(|t| t.contains(word)).count();
        // The seed's words appear on pages and in mails alike.
        assert!(count(Lang::Ja, JA.security_code) > 10);
        assert!(count(Lang::Ja, JA.trusted_device) > 5);
        assert!(count(Lang::Ja, JA.two_step) > 5);
        assert!(count(Lang::En, EN.two_step) > 5);
        let (_, sms) = messages::samples(Lang::Ja)
            .into_iter()
            .find(|(s, _)| s == "SMS")
            .expect("an SMS sample");
        assert!(sms.contains(JA.security_code), "{sms}");
    }

    #[test]
    fn the_checks_catch_drift() {
        assert_eq!(check_ja("確認コードを入力").len(), 1);
        assert_eq!(check_ja("デバイス名(任意)").len(), 2);
        assert_eq!(check_ja("Release the keeping first.").len(), 4);
        assert!(check_ja("IDとSMSとQRコード").is_empty());
        assert_eq!(check_en("Delete the two-step device").len(), 2);
        assert_eq!(check_en("セキュリティ").len(), 1);
        assert!(check_en("日本語").is_empty());
        assert_eq!(check_en("Sign out other browsers").len(), 1);
        assert_eq!(check_en("Where you are signed in").len(), 1);
        assert_eq!(check_ja("認証方法: SMS").len(), 1);
        assert_eq!(check_ja("最終利用").len(), 1);
    }
}
