//! The configuration and users-file loaders (docs/fuzzing.md#config): any text gives a
//! configuration or errors, never a panic, and every error names a line and column inside
//! the text.
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use nidan::config::ConfigErrors;

/// An empty directory: relative file names in the text resolve here and find nothing.
static DIR: LazyLock<PathBuf> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("nidan-fuzz-config-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir
});

fn placed(errors: &ConfigErrors, text: &str) {
    // YAML's line breaks: LF, CRLF and a lone CR.
    let lines = text.replace("\r\n", "\n").split(['\n', '\r']).count();
    assert!(!errors.0.is_empty(), "an error without any entry");
    for e in &errors.0 {
        assert!(e.line >= 1 && e.column >= 1, "unplaced: {e}");
        assert!(e.line <= lines + 1, "line {} of {lines}: {e}", e.line);
        assert!(
            !e.message.is_empty() && !e.fix.is_empty(),
            "no message or fix: {e:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if mode & 1 == 0 {
        if let Err(errors) = nidan::config::load_str(text, &DIR.join("nidan.yaml")) {
            placed(&errors, text);
        }
    } else if let Err(errors) = nidan::users::file::parse_users(text, &DIR.join("users.yaml")) {
        placed(&errors, text);
    }
});
