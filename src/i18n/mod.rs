//! The words and texts that leave the browser: the table of terms (pages, mails and SMS use
//! the same words) and the mails, SMS and pushes built from it. A leaf, so that `notify`
//! and `login` can use the texts without importing the portal; `portal::i18n` re-exports
//! both and keeps the pages' strings.

pub mod messages;
pub mod terms;

use crate::config::Language as Lang;
