//! What a new password must be (NIST 800-63B 3.1.1.2): long enough, not longer than nidan
//! hashes, not the user's ID (nor containing it), and not one of the most common passwords (a
//! list compiled in, `scommon-passwords.txt`; nothing is fetched at run time).

use std::collections::HashSet;
use std::sync::OnceLock;

/// Shortest new password accepted.
pub const MIN_CHARS: usize = 8;

/// Why a new password is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Weak {
    #[error("the new password is shorter than {MIN_CHARS} characters")]
    TooShort,
    #[error("the new password is too long")]
    TooLong,
    #[error("the new password contains the user's ID")]
    LikeId,
    #[error("the new password is one of the most common passwords")]
    Common,
    #[error("the new password is the current one")]
    Unchanged,
    #[error("the new password contains a control character")]
    Control,
}

impl Weak {
    /// The code the JSON API answers with.
    pub fn code(self) -> &'static str {
        match self {
            Self::TooShort => "password_too_short",
            Self::TooLong => "password_too_long",
            Self::LikeId => "password_like_id",
            Self::Common => "password_too_common",
            Self::Unchanged => "password_unchanged",
            Self::Control => "password_invalid",
        }
    }
}

static LIST: &str = include_str!("common-passwords.txt");

fn common() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| {
        LIST.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    })
}

/// How many passwords the compiled-in list holds.
pub fn common_count() -> usize {
    common().len()
}

/// Checks `new` for user `id` (the current password is compared by the caller, who knows it
/// was just verified).
pub fn check(id: &str, current: &str, new: &str) -> Result<(), Weak> {
    if new.chars().any(char::is_control) {
        return Err(Weak::Control);
    }
    if new.chars().count() < MIN_CHARS {
        return Err(Weak::TooShort);
    }
    if new.len() > crate::login::password::MAX_PASSWORD_BYTES {
        return Err(Weak::TooLong);
    }
    if new == current {
        return Err(Weak::Unchanged);
    }
    let lower = new.to_lowercase();
    let id = id.to_lowercase();
    if id.chars().count() >= 3
        && (lower.contains(&id) || lower.contains(&id.chars().rev().collect::<String>()))
    {
        return Err(Weak::LikeId);
    }
    if common().contains(lower.as_str()) || common().contains(new) {
        return Err(Weak::Common);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_new_passwords_are_refused_with_their_reason() {
        assert!(common_count() > 5_000);
        assert_eq!(check("hanako", "old-pass-1", "short"), Err(Weak::TooShort));
        assert_eq!(
            check("hanako", "old-pass-1", "hanako2024!"),
            Err(Weak::LikeId)
        );
        assert_eq!(
            check("hanako", "old-pass-1", "xOKANAHx99"),
            Err(Weak::LikeId)
        );
        assert_eq!(check("hanako", "old-pass-1", "password"), Err(Weak::Common));
        assert_eq!(
            check("hanako", "old-pass-1", "PassWord1"),
            Err(Weak::Common)
        );
        assert_eq!(
            check("hanako", "old-pass-1", "qwertyuiop"),
            Err(Weak::Common)
        );
        assert_eq!(
            check("hanako", "old-pass-1", "old-pass-1"),
            Err(Weak::Unchanged)
        );
        assert_eq!(
            check("hanako", "old-pass-1", "tab\there12"),
            Err(Weak::Control)
        );
        let long = "x".repeat(crate::login::password::MAX_PASSWORD_BYTES + 1);
        assert_eq!(check("hanako", "old-pass-1", &long), Err(Weak::TooLong));
        assert_eq!(check("hanako", "old-pass-1", "violet-harbor-lamp"), Ok(()));
        // Characters, not bytes: eight kana are long enough.
        assert_eq!(check("hanako", "old-pass-1", "あいうえおかきく"), Ok(()));
    }
}
