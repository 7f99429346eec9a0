//! Automerge documents as JSON: the JSON view of a document (what the API
//! answers) and writing a JSON object into a document's root.
//!
//! Strings are stored as Automerge scalar strings, integers as `Int` (or
//! `Uint` above `i64::MAX`), other numbers as `F64`; objects and arrays
//! become maps and lists. [`read_json`] reads a stored document that way.

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjId, ObjType, ROOT, ReadDoc, ScalarValue};
use kith::store::Store;
use kith::{NamespaceId, Path};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The JSON view of a document.
///
/// # Errors
/// [`Error::BadInput`] if Automerge cannot render it (it always can for
/// documents the store accepted).
pub fn to_json(doc: &AutoCommit) -> Result<Value> {
    serde_json::to_value(automerge::AutoSerde::from(doc))
        .map_err(|e| Error::BadInput(format!("document cannot be shown as JSON: {e}")))
}

/// Replaces the root's keys of `doc` with `object`'s: keys missing from
/// `object` are removed, the others set.
///
/// # Errors
/// Automerge errors (as [`Error::BadInput`]).
pub fn replace_root(doc: &mut AutoCommit, object: &Map<String, Value>) -> Result<()> {
    let old: Vec<String> = doc.keys(ROOT).collect();
    for key in old {
        if !object.contains_key(&key) {
            doc.delete(ROOT, key.as_str()).map_err(am)?;
        }
    }
    set_keys(doc, object)
}

/// Sets `object`'s keys in the root of `doc`, leaving other keys alone.
///
/// # Errors
/// Automerge errors (as [`Error::BadInput`]).
pub fn set_keys(doc: &mut AutoCommit, object: &Map<String, Value>) -> Result<()> {
    for (key, value) in object {
        put_in_map(doc, &ROOT, key, value)?;
    }
    Ok(())
}

/// A new document holding `object`.
///
/// # Errors
/// Automerge errors (as [`Error::BadInput`]).
pub fn new_doc(object: &Map<String, Value>) -> Result<AutoCommit> {
    let mut doc = AutoCommit::new();
    set_keys(&mut doc, object)?;
    Ok(doc)
}

fn am(e: automerge::AutomergeError) -> Error {
    Error::BadInput(format!("automerge: {e}"))
}

fn scalar(value: &Value) -> Option<ScalarValue> {
    Some(match value {
        Value::Null => ScalarValue::Null,
        Value::Bool(b) => ScalarValue::Boolean(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                ScalarValue::Int(i)
            } else if let Some(u) = n.as_u64() {
                ScalarValue::Uint(u)
            } else {
                ScalarValue::F64(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::String(s) => ScalarValue::Str(s.as_str().into()),
        Value::Array(_) | Value::Object(_) => return None,
    })
}

fn put_in_map(doc: &mut AutoCommit, obj: &ObjId, key: &str, value: &Value) -> Result<()> {
    match value {
        Value::Object(map) => {
            let child = doc.put_object(obj, key, ObjType::Map).map_err(am)?;
            for (k, v) in map {
                put_in_map(doc, &child, k, v)?;
            }
        }
        Value::Array(items) => {
            let child = doc.put_object(obj, key, ObjType::List).map_err(am)?;
            fill_list(doc, &child, items)?;
        }
        other => {
            if let Some(s) = scalar(other) {
                doc.put(obj, key, s).map_err(am)?;
            }
        }
    }
    Ok(())
}

fn fill_list(doc: &mut AutoCommit, list: &ObjId, items: &[Value]) -> Result<()> {
    for (i, item) in items.iter().enumerate() {
        match item {
            Value::Object(map) => {
                let child = doc.insert_object(list, i, ObjType::Map).map_err(am)?;
                for (k, v) in map {
                    put_in_map(doc, &child, k, v)?;
                }
            }
            Value::Array(inner) => {
                let child = doc.insert_object(list, i, ObjType::List).map_err(am)?;
                fill_list(doc, &child, inner)?;
            }
            other => {
                if let Some(s) = scalar(other) {
                    doc.insert(list, i, s).map_err(am)?;
                }
            }
        }
    }
    Ok(())
}

/// Longest text field the app writes (a post, a comment, a bio), in bytes.
pub const MAX_TEXT_LEN: usize = 64 << 10;

/// A path the app names in its code (the root if the text is not one).
pub(crate) fn const_path(text: &str) -> Path {
    Path::parse(text).unwrap_or_else(|_| Path::root())
}

/// The document at `path` of `ns` as JSON; `None` if there is none (or a
/// blob is there). Blocks.
///
/// # Errors
/// Store errors and documents that cannot be read as JSON.
pub fn read_json(store: &Store, ns: &NamespaceId, path: &Path) -> Result<Option<Value>> {
    match store.document(ns, path) {
        Ok(Some(doc)) => Ok(Some(to_json(&doc)?)),
        Ok(None) => Ok(None),
        // A blob where a document was expected: not ours to show.
        Err(kith::store::Error::WrongKind { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The string at `key` of a JSON object (empty if none).
pub fn text_field(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

/// The `time` field of a JSON object (µs since the Unix epoch; 0 if none).
pub fn time_field(v: &Value) -> u64 {
    v.get("time")
        .and_then(|t| t.as_u64().or_else(|| t.as_f64().map(|f| f as u64)))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn json_round_trips_through_a_document() {
        let value = serde_json::json!({
            "text": "hello", "n": 3, "big": u64::MAX, "f": 1.5, "ok": true, "none": null,
            "list": [1, "two", {"three": 3}, [4]], "map": {"a": {"b": "c"}}
        });
        let doc = new_doc(value.as_object().unwrap()).unwrap();
        assert_eq!(to_json(&doc).unwrap(), value);
    }

    #[test]
    fn replace_root_removes_keys_not_given() {
        let mut doc = new_doc(serde_json::json!({"a": 1, "b": 2}).as_object().unwrap()).unwrap();
        replace_root(&mut doc, serde_json::json!({"b": 3}).as_object().unwrap()).unwrap();
        assert_eq!(to_json(&doc).unwrap(), serde_json::json!({"b": 3}));
    }
}
