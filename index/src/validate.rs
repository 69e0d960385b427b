//! The rules a namespace, a memory's text and its metadata must satisfy. Node and clients share them, so a
//! client can reject bad input before a round trip and the node names the offending field in its error.

use std::collections::BTreeMap;

/// Configurable size limits for memories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest text in bytes (default 64 KiB).
    pub max_text_bytes: usize,
    /// Most metadata entries per memory (default 64).
    pub max_metadata_entries: usize,
    /// Largest metadata key in bytes (default 128).
    pub max_key_bytes: usize,
    /// Largest metadata value in bytes (default 4 KiB).
    pub max_value_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_text_bytes: 64 * 1024,
            max_metadata_entries: 64,
            max_key_bytes: 128,
            max_value_bytes: 4 * 1024,
        }
    }
}

/// Longest namespace, in characters (all of them ASCII).
pub const MAX_NAMESPACE_LEN: usize = 128;

/// What kind of rule was broken; the node maps it to a gRPC status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// Malformed input (INVALID_ARGUMENT).
    Invalid,
    /// Over a size limit (RESOURCE_EXHAUSTED).
    TooLarge,
}

/// A broken rule, naming the field (e.g. `items[2].metadata["k"]`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ValidationError {
    /// The offending field, in the request's terms.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
    /// Which kind of rule it broke.
    pub violation: Violation,
}

impl ValidationError {
    /// A malformed-input error.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ValidationError {
            field: field.into(),
            reason: reason.into(),
            violation: Violation::Invalid,
        }
    }

    /// A size-limit error.
    pub fn too_large(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ValidationError {
            field: field.into(),
            reason: reason.into(),
            violation: Violation::TooLarge,
        }
    }
}

/// Checks a namespace: 1..=128 characters of `[A-Za-z0-9._:/-]`, no empty `/` segment, no `..`.
pub fn namespace(ns: &str) -> Result<(), ValidationError> {
    const FIELD: &str = "namespace";
    if ns.is_empty() {
        return Err(ValidationError::invalid(FIELD, "must not be empty"));
    }
    if ns.len() > MAX_NAMESPACE_LEN {
        return Err(ValidationError::invalid(
            FIELD,
            format!(
                "{} characters, at most {MAX_NAMESPACE_LEN} allowed",
                ns.chars().count()
            ),
        ));
    }
    if let Some(c) = ns
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '/' | '-')))
    {
        return Err(ValidationError::invalid(
            FIELD,
            format!("character {c:?} not allowed (use A-Z a-z 0-9 . _ : / -)"),
        ));
    }
    if ns.split('/').any(str::is_empty) {
        return Err(ValidationError::invalid(
            FIELD,
            "empty `/` segment (leading, trailing or doubled `/`)",
        ));
    }
    if ns.contains("..") {
        return Err(ValidationError::invalid(FIELD, "must not contain `..`"));
    }
    Ok(())
}

/// Latest created_at a memory may have: 2^53 − 1 ms (about the year 287,000). Every memory stays listable
/// (List's `until` is exclusive, so a bound above the cap includes it), and the value is exact in JSON numbers
/// and in JavaScript.
pub const MAX_CREATED_AT: u64 = (1 << 53) - 1;

/// Checks a caller-given created_at: at most [`MAX_CREATED_AT`].
pub fn created_at(field: &str, ms: u64) -> Result<(), ValidationError> {
    if ms > MAX_CREATED_AT {
        return Err(ValidationError::invalid(
            field,
            format!("{ms} is later than {MAX_CREATED_AT} (2^53 - 1 ms)"),
        ));
    }
    Ok(())
}

/// Checks a memory's (or a query's) text: not blank, at most `limits.max_text_bytes` bytes.
/// (UTF-8 validity is guaranteed by the type; the wire decoder rejects invalid UTF-8.)
pub fn text(field: &str, text: &str, limits: &Limits) -> Result<(), ValidationError> {
    if text.trim().is_empty() {
        return Err(ValidationError::invalid(
            field,
            "must not be empty or only whitespace",
        ));
    }
    if text.len() > limits.max_text_bytes {
        return Err(ValidationError::too_large(
            field,
            format!(
                "{} bytes, at most {} allowed",
                text.len(),
                limits.max_text_bytes
            ),
        ));
    }
    Ok(())
}

/// Checks metadata: at most `max_metadata_entries` entries, keys 1..=`max_key_bytes` bytes, values at most
/// `max_value_bytes` bytes. `field` is the map's name, e.g. `items[0].metadata`.
pub fn metadata(
    field: &str,
    metadata: &BTreeMap<String, String>,
    limits: &Limits,
) -> Result<(), ValidationError> {
    if metadata.len() > limits.max_metadata_entries {
        return Err(ValidationError::too_large(
            field,
            format!(
                "{} entries, at most {} allowed",
                metadata.len(),
                limits.max_metadata_entries
            ),
        ));
    }
    for (k, v) in metadata {
        let shown: String = k.chars().take(40).collect();
        if k.is_empty() {
            return Err(ValidationError::invalid(field, "empty key"));
        }
        if k.len() > limits.max_key_bytes {
            return Err(ValidationError::too_large(
                format!("{field}[{shown:?}]"),
                format!(
                    "key is {} bytes, at most {} allowed",
                    k.len(),
                    limits.max_key_bytes
                ),
            ));
        }
        if v.len() > limits.max_value_bytes {
            return Err(ValidationError::too_large(
                format!("{field}[{shown:?}]"),
                format!(
                    "value is {} bytes, at most {} allowed",
                    v.len(),
                    limits.max_value_bytes
                ),
            ));
        }
    }
    if let Some(k) = metadata.get(KEY_META) {
        key(&format!("{field}[{KEY_META:?}]"), k)?;
    }
    Ok(())
}

/// The metadata entry that holds a memory's caller-chosen key (unique within its namespace; writing the key again
/// replaces the memory). Kept in the record so that the key is committed and proven with it.
pub const KEY_META: &str = "cairn.key";

/// Most bytes in a memory key.
pub const MAX_KEY_BYTES: usize = 256;

/// Checks a memory key: 1..=256 bytes, no control characters.
pub fn key(field: &str, k: &str) -> Result<(), ValidationError> {
    if k.is_empty() {
        return Err(ValidationError::invalid(field, "a key must not be empty"));
    }
    if k.len() > MAX_KEY_BYTES {
        return Err(ValidationError::too_large(
            field,
            format!("key is {} bytes, at most {MAX_KEY_BYTES} allowed", k.len()),
        ));
    }
    if k.chars().any(char::is_control) {
        return Err(ValidationError::invalid(
            field,
            "a key must not contain control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces() {
        for ok in ["a", "agents/alice", "a.b:c_d-e/f", &"x".repeat(128), "v1.2"] {
            assert!(namespace(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "a/../b",
            "..",
            "a..b",
            "sp ace",
            "é",
            "a\0",
            &"x".repeat(129),
        ] {
            let e = namespace(bad).unwrap_err();
            assert_eq!(e.field, "namespace");
            assert_eq!(e.violation, Violation::Invalid, "{bad}");
        }
    }

    #[test]
    fn texts() {
        let l = Limits::default();
        assert!(text("text", "hi", &l).is_ok());
        assert_eq!(
            text("t", " \n\t", &l).unwrap_err().violation,
            Violation::Invalid
        );
        assert_eq!(text("t", "", &l).unwrap_err().violation, Violation::Invalid);
        assert!(text("t", &"a".repeat(64 * 1024), &l).is_ok());
        let e = text("items[3].text", &"a".repeat(64 * 1024 + 1), &l).unwrap_err();
        assert_eq!(
            (e.violation, e.field.as_str()),
            (Violation::TooLarge, "items[3].text")
        );
    }

    #[test]
    fn metadata_rules() {
        let l = Limits::default();
        let mut m = BTreeMap::new();
        m.insert("k".to_string(), "v".repeat(4096));
        assert!(metadata("m", &m, &l).is_ok());
        m.insert("k".to_string(), "v".repeat(4097));
        assert_eq!(
            metadata("m", &m, &l).unwrap_err().violation,
            Violation::TooLarge
        );
        let mut m = BTreeMap::new();
        m.insert("k".repeat(129), "v".into());
        assert_eq!(
            metadata("m", &m, &l).unwrap_err().violation,
            Violation::TooLarge
        );
        let mut m = BTreeMap::new();
        m.insert(String::new(), "v".into());
        assert_eq!(
            metadata("m", &m, &l).unwrap_err().violation,
            Violation::Invalid
        );
        let m: BTreeMap<_, _> = (0..65).map(|i| (i.to_string(), String::new())).collect();
        assert_eq!(
            metadata("m", &m, &l).unwrap_err().violation,
            Violation::TooLarge
        );
    }

    #[test]
    fn keys() {
        assert!(key("k", "user/42:profile").is_ok());
        assert!(key("k", &"x".repeat(256)).is_ok());
        assert_eq!(key("k", "").unwrap_err().violation, Violation::Invalid);
        assert_eq!(key("k", "a\nb").unwrap_err().violation, Violation::Invalid);
        assert_eq!(
            key("k", &"x".repeat(257)).unwrap_err().violation,
            Violation::TooLarge
        );
        let mut m = BTreeMap::new();
        m.insert(KEY_META.to_owned(), String::new());
        assert!(metadata("m", &m, &Limits::default()).is_err());
    }
}
