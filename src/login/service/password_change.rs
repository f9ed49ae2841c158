//! A user changing their password, as a `Login` method: the current password is a password
//! check like a login's (the same failure budget, counted on a wrong one; the answer is
//! the same whatever the new password was), then `Accounts` writes it to the directory and
//! ends every other session.

use crate::accounts::password::ChangeError;
use crate::config::Language;
use crate::login::limits::Refusal;
use crate::login::service::Login;
use crate::users::User;

/// Why a password change did not happen, as the edges answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordChangeRefused {
    Refused(ChangeError),
    /// Too many wrong passwords for this account: wait this many seconds.
    Wait(u64),
}

impl Login {
    /// Changes `user`'s password from the session whose ID hashes to `session_hash`.
    pub async fn change_password(
        &self,
        user: &User,
        session_hash: &str,
        current: &str,
        new: &str,
        ip: &str,
        lang: Language,
    ) -> Result<(), PasswordChangeRefused> {
        let refused = PasswordChangeRefused::Refused;
        self.accounts
            .check_new_password(user, current, new)
            .map_err(refused)?;
        let now = crate::time::now();
        // A signed-in user's own network: the known pool (strangers cannot lock them out).
        let attempt = match self.failures.begin_as(&user.id, true, now).await {
            Ok(a) => a,
            Err(Refusal::Wait(s)) => return Err(PasswordChangeRefused::Wait(s)),
            Err(Refusal::Busy) => {
                return Err(refused(ChangeError::Unavailable(
                    "the failure count could not be read".into(),
                )));
            }
        };
        match self
            .accounts
            .change_own_password(&self.hasher, user, session_hash, (current, new), ip, lang)
            .await
        {
            Ok(()) => {
                self.failures.succeeded(attempt).await;
                Ok(())
            }
            Err(ChangeError::WrongPassword) => {
                self.failures.failed(attempt, now).await;
                self.audit
                    .record(
                        crate::audit::Event::LoginFailed,
                        &user.id,
                        ip,
                        serde_json::json!({"reason": "wrong_password", "for": "password_change"}),
                    )
                    .await;
                Err(refused(ChangeError::WrongPassword))
            }
            Err(e) => {
                self.failures.abandon(attempt).await;
                Err(refused(e))
            }
        }
    }
}
