//! API tokens (app passwords): per-user secrets for programs that cannot do the two-step
//! login. A token identifies its user and counts as the password alone, so it is accepted
//! only on routes that list `token` in `accept` and where the password alone is enough.
//! Only the SHA-256 of a token is stored; the token is shown once, at creation.

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

/// Does this look like one of our tokens? (Cheap: decides whether a Basic password is a token.)
pub fn looks_like_token(s: &str) -> bool {
    s.strip_prefix(PREFIX).is_some_and(|rest| {
        rest.len() == 43
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// Creates a token; returns the plain token (to show once) and its record.
pub async fn create(
    store: &Store,
    user_id: &str,
    name: &str,
    now: i64,
) -> Result<(String, TokenRecord), TokenError> {
    let plain = format!("{PREFIX}{}", crate::secret::random_token(32));
    let rec = TokenRecord {
        id: crate::secret::random_token(12),
        user_id: user_id.to_owned(),
        name: name.to_owned(),
        hash: crate::secret::token_hash(&plain),
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
    if !looks_like_token(presented) {
        return Ok(Check::Unknown);
    }
    let hash = crate::secret::token_hash(presented);
    Ok(match store.token_by_hash(&hash).await? {
        Some(t) if t.revoked => Check::Revoked(t),
        Some(t) => Check::Valid(t),
        None => Check::Unknown,
    })
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
