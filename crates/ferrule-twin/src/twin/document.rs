//! Twin documents as JSON: merge patches, per-key update times, the delta,
//! and the bounds a document must keep. Pure functions, no I/O.
//!
//! A change is a JSON merge patch (RFC 7386): keys set, `null` deletes,
//! nested objects merge, anything else (arrays included) replaces. Beside
//! each document a metadata tree of the same shape holds, for each leaf,
//! when it last changed (ms since the Unix epoch).

use serde_json::{Map, Value};

/// Largest serialised desired or reported document, and largest patch.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// Deepest nesting of objects and arrays in a document or patch.
pub const MAX_DEPTH: usize = 8;

/// Why a patch cannot be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("state must be a JSON object")]
    NotAnObject,
    #[error("state nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("state would be {0} bytes, over the limit of {MAX_DOCUMENT_BYTES}")]
    TooLarge(usize),
}

/// Checks a patch's shape: an object within the depth limit.
pub fn check_patch(patch: &Value) -> Result<&Map<String, Value>, DocumentError> {
    let object = patch.as_object().ok_or(DocumentError::NotAnObject)?;
    if depth(patch) > MAX_DEPTH {
        return Err(DocumentError::TooDeep);
    }
    Ok(object)
}

/// Nesting depth: a scalar is 0, `{"a": 1}` is 1.
pub fn depth(v: &Value) -> usize {
    match v {
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The size of a document as stored.
pub fn size(doc: &Map<String, Value>) -> usize {
    serde_json::to_vec(doc).map_or(0, |v| v.len())
}

/// Applies `patch` to `doc`, stamping what changed with `now` in `meta`.
/// Returns whether anything changed.
pub fn merge(
    doc: &mut Map<String, Value>,
    meta: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    now: i64,
) -> bool {
    let mut changed = false;
    for (key, value) in patch {
        match value {
            Value::Null => {
                if doc.remove(key).is_some() {
                    meta.remove(key);
                    changed = true;
                }
            }
            Value::Object(inner) => {
                if !doc.get(key).is_some_and(Value::is_object) {
                    // RFC 7386: a non-object target becomes an object.
                    doc.insert(key.clone(), Value::Object(Map::new()));
                    meta.insert(key.clone(), Value::Object(Map::new()));
                    changed = true;
                }
                if !meta.get(key).is_some_and(Value::is_object) {
                    meta.insert(key.clone(), Value::Object(Map::new()));
                }
                let (Some(Value::Object(d)), Some(Value::Object(m))) =
                    (doc.get_mut(key), meta.get_mut(key))
                else {
                    unreachable!("both were made objects above");
                };
                changed |= merge(d, m, inner, now);
            }
            other => {
                if doc.get(key) != Some(other) {
                    doc.insert(key.clone(), other.clone());
                    meta.insert(key.clone(), Value::from(now));
                    changed = true;
                }
            }
        }
    }
    changed
}

/// The desired keys whose value reported does not have: nested objects
/// compare key by key, anything else (arrays too) as a whole.
pub fn delta(desired: &Map<String, Value>, reported: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, want) in desired {
        match (want, reported.get(key)) {
            (want, Some(have)) if want == have => {}
            (Value::Object(want), Some(Value::Object(have))) => {
                let inner = delta(want, have);
                if !inner.is_empty() {
                    out.insert(key.clone(), Value::Object(inner));
                }
            }
            (want, _) => {
                out.insert(key.clone(), want.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn merged(doc: Value, patch: Value) -> (Value, Value, bool) {
        let (mut d, mut m) = (obj(doc), Map::new());
        let changed = merge(&mut d, &mut m, &obj(patch), 7);
        (Value::Object(d), Value::Object(m), changed)
    }

    #[test]
    fn a_patch_sets_merges_and_deletes() {
        let (doc, meta, changed) = merged(
            json!({"a": 1, "b": {"x": 1, "y": 2}, "c": [1]}),
            json!({"a": null, "b": {"y": 3, "z": null}, "c": [2], "d": "new"}),
        );
        assert!(changed);
        assert_eq!(doc, json!({"b": {"x": 1, "y": 3}, "c": [2], "d": "new"}));
        assert_eq!(meta, json!({"b": {"y": 7}, "c": 7, "d": 7}));
    }

    #[test]
    fn a_patch_that_changes_nothing_says_so() {
        let (_, meta, changed) = merged(
            json!({"a": 1, "b": {"x": 1}}),
            json!({"a": 1, "b": {"x": 1}, "z": null}),
        );
        assert!(!changed);
        assert_eq!(meta, json!({"b": {}}));
    }

    #[test]
    fn a_type_change_replaces_the_value() {
        let (doc, _, _) = merged(
            json!({"a": {"x": 1}, "b": 5}),
            json!({"a": 3, "b": {"y": 1}}),
        );
        assert_eq!(doc, json!({"a": 3, "b": {"y": 1}}));
    }

    #[test]
    fn the_delta_is_what_desired_has_and_reported_lacks() {
        let desired = obj(json!({
            "same": 1, "differs": 2, "missing": true,
            "nested": {"ok": 1, "bad": 2, "deeper": {"k": "v"}},
            "array": [1, 2], "typed": "1", "whole": {"a": 1}
        }));
        let reported = obj(json!({
            "same": 1, "differs": 3, "extra": 9,
            "nested": {"ok": 1, "bad": 1, "deeper": {"k": "v"}},
            "array": [2, 1], "typed": 1, "whole": 5
        }));
        assert_eq!(
            Value::Object(delta(&desired, &reported)),
            json!({
                "differs": 2, "missing": true, "nested": {"bad": 2},
                "array": [1, 2], "typed": "1", "whole": {"a": 1}
            })
        );
    }

    #[test]
    fn desired_equal_to_reported_has_an_empty_delta() {
        let d = obj(json!({"a": {"b": [1, {"c": null}]}, "n": 1.5}));
        assert!(delta(&d, &d.clone()).is_empty());
    }

    #[test]
    fn patches_are_checked_for_shape_and_depth() {
        assert_eq!(check_patch(&json!([1])), Err(DocumentError::NotAnObject));
        assert_eq!(check_patch(&json!(1)), Err(DocumentError::NotAnObject));
        let mut deep = json!(1);
        for _ in 0..=MAX_DEPTH {
            deep = json!({ "k": deep });
        }
        assert_eq!(check_patch(&deep), Err(DocumentError::TooDeep));
        assert!(check_patch(&json!({"a": {"b": [1]}})).is_ok());
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-5i64..5).prop_map(Value::from),
            "[ab]{0,2}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
                prop::collection::btree_map("[abc]", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn arb_object() -> impl Strategy<Value = Map<String, Value>> {
        prop::collection::btree_map("[abc]", arb_json(), 0..4).prop_map(|m| m.into_iter().collect())
    }

    proptest! {
        /// Applying the delta to reported makes the delta empty: a device
        /// that does what the delta says ends up in the desired state.
        #[test]
        fn applying_the_delta_converges(desired in arb_object(), reported in arb_object()) {
            // Desired holds no nulls (a patch's nulls delete).
            let mut clean = Map::new();
            merge(&mut clean, &mut Map::new(), &desired, 0);
            let mut reported = reported;
            let d = delta(&clean, &reported);
            merge(&mut reported, &mut Map::new(), &d, 1);
            prop_assert!(delta(&clean, &reported).is_empty(), "{:?}", delta(&clean, &reported));
        }

        /// Merging the same patch twice changes nothing the second time.
        #[test]
        fn a_merge_is_idempotent(doc in arb_object(), patch in arb_object()) {
            let (mut d, mut m) = (doc, Map::new());
            merge(&mut d, &mut m, &patch, 1);
            let before = d.clone();
            prop_assert!(!merge(&mut d, &mut m, &patch, 2));
            prop_assert_eq!(d, before);
        }
    }
}
