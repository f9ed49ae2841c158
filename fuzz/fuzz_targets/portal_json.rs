//! The portal's JSON bodies, one per endpoint, the phone app's enrollment, and
//! `Accept-Language` (docs/fuzzing.md#portal_json). Properties: a body accepted is a JSON
//! object naming only the endpoint's fields (each once); an enrollment accepted has a clean
//! name and a valid Ed25519 key; a language is always one nidan speaks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nidan::fuzzing::{PORTAL_BODIES, app_enroll, portal_body};
use nidan::portal::i18n::Lang;
use serde_json::Value;

/// The fields each body may name, in `PORTAL_BODIES` order.
const FIELDS: [&[&str]; 11] = [
    &["id", "return_to"],
    &["password", "code", "trust_device", "device_name"],
    &["name"],
    &["enabled", "method"],
    &["name", "credential"],
    &["return_to"],
    &["credential"],
    &["name"],
    &[
        "user",
        "enrollment_code",
        "security_code",
        "public_key",
        "name",
    ],
    &["approve", "number", "not_me"],
    &["name"],
];

fuzz_target!(|data: &[u8]| {
    let Some((mode, body)) = data.split_first() else {
        return;
    };
    let which = usize::from(*mode);
    if which < PORTAL_BODIES.len() {
        if portal_body(which, body).is_ok() {
            // Fields a body type ignores (inside `credential`) are skipped unread, so a lone
            // surrogate escape there is accepted where a full JSON reader refuses it.
            let Ok(v) = serde_json::from_slice::<Value>(body) else {
                return;
            };
            // serde also reads a struct from an array of its fields in order (`["alice"]`):
            // the same fields by position, a known leniency (docs/fuzzing.md).
            let Some(obj) = v.as_object() else {
                let n = v.as_array().map_or(usize::MAX, Vec::len);
                assert!(n <= FIELDS[which].len(), "not an object: {v}");
                return;
            };
            for k in obj.keys() {
                assert!(
                    FIELDS[which].contains(&k.as_str()),
                    "unknown field {k:?} accepted"
                );
            }
        }
    } else if which < 200 {
        if let Ok((name, key)) = app_enroll(body) {
            let count = name.chars().count();
            assert!((1..=64).contains(&count), "name of {count} characters");
            assert!(!name.chars().any(char::is_control), "control in {name:?}");
            assert_eq!(name, name.trim());
            assert!(ed25519_dalek::VerifyingKey::from_bytes(&key).is_ok());
        }
    } else {
        let header = String::from_utf8_lossy(body);
        for default in [Lang::Ja, Lang::En] {
            let lang = Lang::from_accept_language(Some(header.as_ref()), default);
            assert!(matches!(lang, Lang::Ja | Lang::En));
        }
    }
});
