//! What a configuration check reports: one error placed at its file, line and column, and
//! every error of one file in file order.

use std::fmt;
use std::path::{Path, PathBuf};

use super::locate::Locator;

/// One problem in a configuration (or users) file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{column}: {message}\n  fix: {fix}", file.display())]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the file could not be read at all.
    pub line: usize,
    /// 1-based; 0 when the file could not be read at all.
    pub column: usize,
    pub message: String,
    pub fix: String,
}

/// Every problem found in one file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// Collects errors placed by path inside one document.
pub(crate) struct Errors {
    source: PathBuf,
    locator: Locator,
    list: Vec<ConfigError>,
}

impl Errors {
    pub(crate) fn new(text: &str, source: &Path) -> Self {
        Errors {
            source: source.to_path_buf(),
            locator: Locator::new(text),
            list: Vec::new(),
        }
    }

    /// Records an error at the node `path` (or its nearest ancestor).
    pub(crate) fn at(&mut self, path: &str, message: impl Into<String>, fix: impl Into<String>) {
        let (line, column) = self.locator.find(path);
        self.list.push(ConfigError {
            file: self.source.clone(),
            line,
            column,
            message: message.into(),
            fix: fix.into(),
        });
    }

    /// The line where the node at `path` starts.
    pub(crate) fn line_of(&self, path: &str) -> usize {
        self.locator.find(path).0
    }

    /// `Ok` when nothing was recorded, else every error in file order.
    pub(crate) fn finish(mut self) -> Result<(), ConfigErrors> {
        if self.list.is_empty() {
            return Ok(());
        }
        self.list.sort_by_key(|e| (e.line, e.column));
        Err(ConfigErrors(self.list))
    }
}
