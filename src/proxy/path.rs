//! The request target as the proxy reads it: canonicalisation lives in the leaf
//! [`crate::path`] (configuration checks route prefixes with it too); re-exported here so
//! the proxy's callers read `path::…` as before.

pub use crate::path::{Canonical, MAX_TARGET_LEN, PathError, canonicalize, canonicalize_parts};
