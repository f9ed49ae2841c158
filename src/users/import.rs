//! `nidan users import --config FILE USERS.yaml`: a bulk load of a users file into the
//! database directory. The file is checked whole first (the users file's rules and
//! messages; nothing is written when any entry is wrong); then batches of
//! [`BATCH`] users, each one transaction that writes only new and changed users, with the
//! credential compare-and-set of every changed credential (what the old one opened ends,
//! on every replica). Pre-hashed passwords only. Idempotent: a second run finds every user
//! unchanged.

use std::path::Path;

use crate::config::{Config, ConfigErrors, DirectoryKind};
use crate::replica::Event;
use crate::store::{ImportCounts, Revoked, Store, StoreError, UserRecord};

/// Users per transaction.
pub const BATCH: usize = 1_000;

/// The longest one batch may take.
const IMPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(
        "the configuration keeps its users in a users file (`users.file`): import needs `users: {{ database: {{}} }}`"
    )]
    NotDatabase,
    #[error("{0}")]
    File(#[from] ConfigErrors),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// Imports `path` into the store `cfg` names. `progress` is told the counts after each
/// batch.
pub async fn import(
    cfg: &Config,
    path: &Path,
    progress: &mut dyn FnMut(&ImportCounts),
) -> Result<ImportCounts, ImportError> {
    if cfg.users.directory != DirectoryKind::Database {
        return Err(ImportError::NotDatabase);
    }
    let file = path.to_path_buf();
    let users = tokio::task::spawn_blocking(move || super::file::load_users(&file))
        .await
        .map_err(|e| ImportError::Store(StoreError::Connect(e.to_string())))??;
    // A batch is one transaction of a thousand rows: the serving bound on one call
    // (`storage.postgres.timeout`, a second by default) is for requests, not for this.
    let mut storage = cfg.storage.clone();
    storage.postgres_timeout = storage.postgres_timeout.max(IMPORT_TIMEOUT);
    let store = Store::connect(&storage).await?;
    let replicated = cfg.storage.replicated.is_some();
    let log = |r: &Revoked| -> Vec<String> {
        if replicated {
            crate::accounts::revocation_events(r)
                .iter()
                .map(Event::text)
                .collect()
        } else {
            Vec::new()
        }
    };
    let mut total = ImportCounts::default();
    for chunk in users.chunks(BATCH) {
        let batch: Vec<(UserRecord, String)> = chunk
            .iter()
            .map(|u| (super::database::to_record(u), u.credential()))
            .collect();
        let (counts, _) = store.import_users(&batch, crate::time::now(), &log).await?;
        total.created += counts.created;
        total.updated += counts.updated;
        total.unchanged += counts.unchanged;
        progress(&total);
    }
    if replicated && total.created + total.updated > 0 {
        // The replicas drop what they cached of users.
        store.log_revocation(&Event::Users.text()).await?;
    }
    Ok(total)
}
