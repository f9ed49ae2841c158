//! Password hashing and verification (argon2id) on a small pool of dedicated threads,
//! so the memory-hard hash never runs on the proxy's workers and never more than N at once.

use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::oneshot;

/// Longest password we hash; longer ones are refused before hashing (SECURITY 3).
pub const MAX_PASSWORD_BYTES: usize = 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HashError {
    #[error("the password hashing queue is full")]
    Busy,
    #[error("the password hashing pool stopped")]
    Stopped,
    #[error("the password could not be hashed")]
    Hash,
}

type Job = Box<dyn FnOnce() + Send>;

/// A bounded pool of hashing threads.
pub struct Hasher {
    queue: Mutex<SyncSender<Job>>,
    /// A hash of a random password, verified for unknown users so they take as long.
    dummy: String,
}

/// argon2id with OWASP's recommended parameters (19 MiB, 2 passes, 1 lane).
fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
}

/// Hashes a password into a PHC string (used by `nidan hash-password`).
pub fn hash_password(password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| HashError::Hash)
}

/// Checks a password against a PHC string; any malformed hash is a mismatch.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

impl Hasher {
    /// Starts `threads` hashing threads with room for `queue` waiting jobs.
    pub fn new(threads: usize, queue: usize) -> Result<Arc<Self>, HashError> {
        let (tx, rx) = sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("nidan-hash-{i}"))
                .spawn(move || {
                    // Hashing yields to proxied traffic: a login flood must not stall the
                    // proxy (nice 19 on Linux; failing to lower it is harmless).
                    let _ = thread_priority::set_current_thread_priority(
                        thread_priority::ThreadPriority::Min,
                    );
                    loop {
                        let job = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|_| HashError::Stopped)?;
        }
        let dummy = hash_password(&crate::secret::random_token(24))?;
        Ok(Arc::new(Self {
            queue: Mutex::new(tx),
            dummy,
        }))
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        {
            let queue = self.queue.lock().map_err(|_| HashError::Stopped)?;
            match queue.try_send(job) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => return Err(HashError::Busy),
                Err(TrySendError::Disconnected(_)) => return Err(HashError::Stopped),
            }
        }
        rx.await.map_err(|_| HashError::Stopped)
    }

    /// Verifies `password` against `phc`, or against the dummy hash when there is no user,
    /// so both take the same time. Returns false for the dummy.
    pub async fn verify(&self, password: &str, phc: Option<&str>) -> Result<bool, HashError> {
        let password = password.to_owned();
        let (phc, real) = match phc {
            Some(p) => (p.to_owned(), true),
            None => (self.dummy.clone(), false),
        };
        let ok = self.run(move || verify_password(&password, &phc)).await?;
        crate::metrics::password_checked();
        Ok(ok && real)
    }

    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let password = password.to_owned();
        self.run(move || hash_password(&password)).await?
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn verifies_right_and_wrong() {
        let h = Hasher::new(2, 8).unwrap();
        let phc = h.hash("correct horse").await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(h.verify("correct horse", Some(&phc)).await.unwrap());
        assert!(!h.verify("wrong", Some(&phc)).await.unwrap());
        assert!(!h.verify("correct horse", None).await.unwrap());
        assert!(!h.verify("x", Some("not a hash")).await.unwrap());
    }
}
