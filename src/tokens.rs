//! API tokens (app passwords): per-user secrets for programs that cannot do the two-step
//! login. A token identifies its user and counts as the password alone, so it is accepted
//! only on routes that list `token` in `accept` and where the password alone is enough.
//! Only the SHA-256 of a token is stored; the token is shown once, at creation.

use crate::state::{Ephemeral, StateError};
use crate::store::{Store, StoreError, TokenRecord};

/// Every token starts with this, so a token sent as a Basic password is recognised.
pub const PREFIX: &str = "nidan_";
/// Live tokens per user.
pub const MAX_PER_USER: usize = 20;
/// `last_used` (and the `token_used` audit record) is written at most this often per token.
pub const USE_RECORD_INTERVAL: i64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("this account already has the maximum number of API tokens")]
    Full,
    #[error("no such token")]
    NotFound,
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// What checking a presented token found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Valid(TokenRecord),
    Revoked(TokenRecord),
    Unknown,
}

/// The letters of a token: no look-alikes (no 0/O/o, 1/l/I), 32 of them (5 bits each).
pub const ALPHABET: &[u8; 32] = b"23456789abcdefghijkmnpqrstuvwxyz";
/// Letters in a token: 52 x 5 = 260 bits, no fewer than the 256 of the first format.
pub const LETTERS: usize = 52;
/// Letters per group as shown (`abcd-efgh-...`); the dashes are optional when typed.
const GROUP: usize = 4;

/// Does this look like one of our tokens? (Cheap: decides whether a Basic password is a token.)
pub fn looks_like_token(s: &str) -> bool {
    canonical(s).is_some()
}

/// The first format (until 2026-12): 32 random bytes in base64url, 43 letters.
fn first_format(rest: &str) -> bool {
    rest.len() == 43
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The form of a presented token that is hashed: a first-format token as it is; a current
/// one without its group dashes, in lower case (as it may be typed from the screen).
fn canonical(s: &str) -> Option<String> {
    let rest = s.strip_prefix(PREFIX)?;
    if first_format(rest) {
        return Some(s.to_owned());
    }
    if rest.len() > LETTERS * 2 {
        return None;
    }
    let body: String = rest
        .bytes()
        .filter(|b| *b != b'-')
        .map(|b| char::from(b.to_ascii_lowercase()))
        .collect();
    (body.len() == LETTERS && body.bytes().all(|b| ALPHABET.contains(&b)))
        .then(|| format!("{PREFIX}{body}"))
}

/// A new token's letters, uniform over [`ALPHABET`] (32 divides 256: no bias).
fn random_letters() -> String {
    use rand::RngCore;
    let mut buf = [0u8; LETTERS];
    rand::rng().fill_bytes(&mut buf);
    buf.iter()
        .map(|b| char::from(ALPHABET[usize::from(b & 31)]))
        .collect()
}

/// The letters in groups, for reading.
fn grouped(letters: &str) -> String {
    letters
        .as_bytes()
        .chunks(GROUP)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

/// Creates a token; returns the plain token (to show once) and its record.
pub async fn create(
    store: &Store,
    user_id: &str,
    name: &str,
    now: i64,
) -> Result<(String, TokenRecord), TokenError> {
    let letters = random_letters();
    let plain = format!("{PREFIX}{}", grouped(&letters));
    let rec = TokenRecord {
        id: crate::secret::random_token(12),
        user_id: user_id.to_owned(),
        name: name.to_owned(),
        hash: crate::secret::token_hash(&format!("{PREFIX}{letters}")),
        created: now,
        last_used: None,
        revoked: false,
    };
    if store.insert_token(&rec, MAX_PER_USER).await? {
        Ok((plain, rec))
    } else {
        Err(TokenError::Full)
    }
}

/// Looks a presented token up by its hash (a 256-bit secret: the lookup itself leaks
/// nothing useful, and the plain token is never compared or stored).
pub async fn check(store: &Store, presented: &str) -> Result<Check, TokenError> {
    let Some(canonical) = canonical(presented) else {
        return Ok(Check::Unknown);
    };
    let hash = crate::secret::token_hash(&canonical);
    Ok(match store.token_by_hash(&hash).await? {
        Some(t) if t.revoked => Check::Revoked(t),
        Some(t) => Check::Valid(t),
        None => Check::Unknown,
    })
}

/// How long a new token waits for the page that shows it (Post/Redirect/Get).
pub const REVEAL_LIFETIME: std::time::Duration = std::time::Duration::from_secs(300);

/// The state key of a waiting token: bound to the session (another session, holding the
/// handle, finds nothing), and not the handle itself (reading the state store gives no
/// handle).
fn reveal_key(session: &str, handle: &str) -> String {
    hex::encode(crate::secret::digest(&[
        b"nidan token reveal",
        session.as_bytes(),
        handle.as_bytes(),
    ]))
}

/// A one-time pad for a waiting token, drawn from the handle (SHA-256 in counter mode,
/// under a fresh 256-bit handle each time): what the state store holds is not the token,
/// so read access to Redis reveals no app password.
fn reveal_pad(handle: &str, len: usize) -> Vec<u8> {
    let mut pad = Vec::with_capacity(len + 32);
    let mut block: u64 = 0;
    while pad.len() < len {
        pad.extend_from_slice(&crate::secret::digest(&[
            b"nidan token reveal pad",
            handle.as_bytes(),
            &block.to_be_bytes(),
        ]));
        block += 1;
    }
    pad.truncate(len);
    pad
}

/// Keeps a new token for the page that shows it once, for this session only; returns the
/// random one-time handle that page is asked for with (never the token).
pub async fn stash_reveal(
    state: &dyn Ephemeral,
    session: &str,
    plain: &str,
) -> Result<String, StateError> {
    let handle = crate::secret::random_token(32);
    let sealed: Vec<u8> = plain
        .bytes()
        .zip(reveal_pad(&handle, plain.len()))
        .map(|(a, b)| a ^ b)
        .collect();
    state
        .put(
            "token_reveal",
            &reveal_key(session, &handle),
            &sealed,
            REVEAL_LIFETIME,
        )
        .await?;
    Ok(handle)
}

/// Takes the token kept under `handle` for this session out: it is shown once, so a
/// reload, another session or a stale handle finds nothing.
pub async fn take_reveal(
    state: &dyn Ephemeral,
    session: &str,
    handle: &str,
) -> Result<Option<String>, StateError> {
    if handle.len() != 43 {
        return Ok(None);
    }
    let Some(sealed) = state
        .take("token_reveal", &reveal_key(session, handle))
        .await?
    else {
        return Ok(None);
    };
    let plain: Vec<u8> = sealed
        .iter()
        .zip(reveal_pad(handle, sealed.len()))
        .map(|(a, b)| a ^ b)
        .collect();
    String::from_utf8(plain)
        .map(Some)
        .map_err(|_| StateError::Corrupt)
}

pub async fn list(store: &Store, user_id: &str) -> Result<Vec<TokenRecord>, TokenError> {
    Ok(store.user_tokens(user_id).await?)
}

pub async fn revoke(store: &Store, user_id: &str, id: &str) -> Result<(), TokenError> {
    if id.len() > 64 {
        return Err(TokenError::NotFound);
    }
    if store.revoke_token(user_id, id).await? {
        Ok(())
    } else {
        Err(TokenError::NotFound)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn create_check_list_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).await.unwrap();
        let (plain, rec) = create(&store, "taro", "mail app", 10).await.unwrap();
        assert!(looks_like_token(&plain));
        assert_ne!(rec.hash, plain);
        assert!(!rec.hash.contains(&plain[PREFIX.len()..]));
        assert!(
            matches!(check(&store, &plain).await.unwrap(), Check::Valid(t) if t.user_id == "taro")
        );
        assert_eq!(check(&store, "nidan_nope").await.unwrap(), Check::Unknown);
        let forged = format!("{PREFIX}{}", crate::secret::random_token(32));
        assert_eq!(check(&store, &forged).await.unwrap(), Check::Unknown);
        assert_eq!(list(&store, "taro").await.unwrap().len(), 1);
        assert!(
            store
                .token_used(&rec.id, 20, 20 - USE_RECORD_INTERVAL)
                .await
                .unwrap()
        );
        assert!(
            !store
                .token_used(&rec.id, 30, 30 - USE_RECORD_INTERVAL)
                .await
                .unwrap()
        );
        assert!(matches!(
            revoke(&store, "hanako", &rec.id).await,
            Err(TokenError::NotFound)
        ));
        revoke(&store, "taro", &rec.id).await.unwrap();
        assert!(matches!(
            check(&store, &plain).await.unwrap(),
            Check::Revoked(_)
        ));
        assert!(list(&store, "taro").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn tokens_have_no_look_alikes_and_old_ones_still_work() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).await.unwrap();
        let (plain, _) = create(&store, "taro", "mail app", 10).await.unwrap();
        let body = &plain[PREFIX.len()..];
        assert_eq!(body.len(), LETTERS + LETTERS / GROUP - 1, "{plain}");
        assert!(body.split('-').all(|g| g.len() == GROUP), "{plain}");
        assert!(!body.contains(['0', 'O', 'o', '1', 'l', 'I']), "{plain}");
        // Typed without the dashes, or in capitals, it is the same token.
        let bare = format!("{PREFIX}{}", body.replace('-', ""));
        let upper = format!("{PREFIX}{}", body.to_ascii_uppercase());
        for p in [&plain, &bare, &upper] {
            assert!(
                matches!(check(&store, p).await.unwrap(), Check::Valid(_)),
                "{p}"
            );
        }
        let wrong = format!("{PREFIX}{}", "2".repeat(LETTERS));
        assert_eq!(check(&store, &wrong).await.unwrap(), Check::Unknown);
        // A token of the first format (base64url, 43 letters) still works as it was made.
        let old = format!("{PREFIX}{}", crate::secret::random_token(32));
        let rec = TokenRecord {
            id: "old".into(),
            user_id: "taro".into(),
            name: "old".into(),
            hash: crate::secret::token_hash(&old),
            created: 1,
            last_used: None,
            revoked: false,
        };
        assert!(store.insert_token(&rec, MAX_PER_USER).await.unwrap());
        assert!(looks_like_token(&old));
        assert!(matches!(check(&store, &old).await.unwrap(), Check::Valid(t) if t.id == "old"));
    }

    #[tokio::test]
    async fn tokens_per_user_are_capped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).await.unwrap();
        for i in 0..MAX_PER_USER {
            create(&store, "taro", &format!("t{i}"), 1).await.unwrap();
        }
        assert!(matches!(
            create(&store, "taro", "x", 1).await,
            Err(TokenError::Full)
        ));
        assert!(create(&store, "hanako", "x", 1).await.is_ok());
    }
}
