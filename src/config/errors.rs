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

/// Collects errors placed by path inside one document. The document's positions are
/// worked out only when an error is recorded: a valid users file of a million entries is
/// not parsed a second time for positions nobody asks for.
pub(crate) struct Errors {
    source: PathBuf,
    text: String,
    locator: std::sync::OnceLock<Locator>,
    list: Vec<ConfigError>,
    /// The path each error was recorded at, in recording order (see [`Errors::by_field`]).
    paths: Vec<String>,
}

impl Errors {
    pub(crate) fn new(text: &str, source: &Path) -> Self {
        Errors {
            source: source.to_path_buf(),
            text: text.to_owned(),
            locator: std::sync::OnceLock::new(),
            list: Vec::new(),
            paths: Vec::new(),
        }
    }

    fn locator(&self) -> &Locator {
        self.locator.get_or_init(|| Locator::new(&self.text))
    }

    /// Records an error at the node `path` (or its nearest ancestor).
    pub(crate) fn at(&mut self, path: &str, message: impl Into<String>, fix: impl Into<String>) {
        let (line, column) = self.locator().find(path);
        self.list.push(ConfigError {
            file: self.source.clone(),
            line,
            column,
            message: message.into(),
            fix: fix.into(),
        });
        self.paths.push(path.to_owned());
    }

    /// The line where the node at `path` starts.
    pub(crate) fn line_of(&self, path: &str) -> usize {
        self.locator().find(path).0
    }

    /// Every error as (path, message, fix), in recording order: for input that is not a
    /// file (an admin-API body), where the field matters and no line does.
    pub(crate) fn by_field(self) -> Vec<(String, String, String)> {
        self.paths
            .into_iter()
            .zip(self.list)
            .map(|(p, e)| (p, e.message, e.fix))
            .collect()
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
