//! How client commands print: JSON shapes (documented in README.md) or plain text.

use cairn_client::{Hit, Memory};
use serde_json::{json, Value};

/// JSON of one recall hit.
pub fn hit_json(h: &Hit) -> Value {
    json!({
        "id": h.id,
        "text": h.text,
        "score": h.score,
        "metadata": h.metadata,
        "created_at": h.created_at,
    })
}

/// JSON of one memory.
pub fn memory_json(m: &Memory) -> Value {
    json!({
        "id": m.id,
        "namespace": m.namespace,
        "text": m.text,
        "metadata": m.metadata,
        "created_at": m.created_at,
    })
}

/// One line of text for a memory: id, time, metadata, text.
pub fn memory_line(m: &Memory) -> String {
    format!(
        "{}  {}{}  {}",
        m.id,
        m.created_at,
        meta_suffix(&m.metadata),
        one_line(&m.text)
    )
}

/// One line of text for a hit.
pub fn hit_line(h: &Hit) -> String {
    format!(
        "{:.4}  {}{}  {}",
        h.score,
        h.id,
        meta_suffix(&h.metadata),
        one_line(&h.text)
    )
}

fn meta_suffix(m: &std::collections::BTreeMap<String, String>) -> String {
    if m.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("  [{}]", parts.join(" "))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Prints a JSON value on one line.
pub fn print_json(v: &Value) {
    println!("{v}");
}
