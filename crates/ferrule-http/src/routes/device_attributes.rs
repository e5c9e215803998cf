//! Device attributes and the device list's filters on them.
//!
//! Attributes are a free JSON object, bounded in size and depth, with
//! three conventions whose shape is checked when present: `labels` (an
//! object of string → string, what `?label=` filters on), `location`
//! (`{"lat", "lon"}` in degrees) and `customer` (a string).

use ferrule_store::DeviceFilter;
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::IntoParams;

use crate::error::ApiError;

/// Largest attributes object, serialized.
pub const MAX_ATTRIBUTES_BYTES: usize = 16 * 1024;
/// Deepest nesting of attributes (the object itself is level 1).
pub const MAX_ATTRIBUTES_DEPTH: usize = 8;
/// Most `label` conditions one listing may carry.
const MAX_LABEL_FILTERS: usize = 16;
/// Longest label key or value, and filter value.
const MAX_LABEL_LEN: usize = 256;

/// Checks a device's attributes: an object, within bounds, conventions
/// well shaped.
pub fn check(attributes: &Value) -> Result<(), ApiError> {
    let Some(object) = attributes.as_object() else {
        return Err(ApiError::invalid("attributes", "must be a JSON object"));
    };
    if depth(attributes) > MAX_ATTRIBUTES_DEPTH {
        return Err(ApiError::invalid(
            "attributes",
            format!("must be nested at most {MAX_ATTRIBUTES_DEPTH} levels deep"),
        ));
    }
    let size = serde_json::to_vec(attributes).map_or(usize::MAX, |b| b.len());
    if size > MAX_ATTRIBUTES_BYTES {
        return Err(ApiError::FieldTooLarge {
            field: "attributes".into(),
            limit: MAX_ATTRIBUTES_BYTES,
        });
    }
    if let Some(labels) = object.get("labels") {
        check_labels(labels)?;
    }
    if let Some(location) = object.get("location") {
        check_location(location)?;
    }
    if let Some(customer) = object.get("customer")
        && !customer.is_string()
    {
        return Err(ApiError::invalid("attributes.customer", "must be a string"));
    }
    Ok(())
}

fn check_labels(labels: &Value) -> Result<(), ApiError> {
    let Some(labels) = labels.as_object() else {
        return Err(ApiError::invalid(
            "attributes.labels",
            "must be an object of string → string",
        ));
    };
    for (key, value) in labels {
        let field = || format!("attributes.labels.{key}");
        if key.is_empty() || key.len() > MAX_LABEL_LEN || key.contains('=') {
            return Err(ApiError::invalid(
                field(),
                format!("a label key is 1 to {MAX_LABEL_LEN} bytes without `=`"),
            ));
        }
        match value.as_str() {
            Some(v) if v.len() <= MAX_LABEL_LEN => {}
            Some(_) => {
                return Err(ApiError::invalid(
                    field(),
                    format!("a label value is at most {MAX_LABEL_LEN} bytes"),
                ));
            }
            None => return Err(ApiError::invalid(field(), "a label value must be a string")),
        }
    }
    Ok(())
}

fn check_location(location: &Value) -> Result<(), ApiError> {
    let coordinate = |object: &Map<String, Value>, key: &str, bound: f64| {
        let field = format!("attributes.location.{key}");
        match object.get(key).and_then(Value::as_f64) {
            Some(v) if (-bound..=bound).contains(&v) => Ok(()),
            Some(_) => Err(ApiError::invalid(
                field,
                format!("must be between -{bound} and {bound} degrees"),
            )),
            None => Err(ApiError::invalid(field, "must be a number")),
        }
    };
    let Some(object) = location.as_object() else {
        return Err(ApiError::invalid(
            "attributes.location",
            "must be an object {\"lat\", \"lon\"} of numbers",
        ));
    };
    coordinate(object, "lat", 90.0)?;
    coordinate(object, "lon", 180.0)
}

/// Nesting depth of objects and arrays, counted without recursion so a
/// hostile document cannot exhaust the stack.
fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(value, 1)];
    while let Some((v, level)) = pending.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Object(o) => Box::new(o.values()),
            Value::Array(a) => Box::new(a.iter()),
            _ => continue,
        };
        deepest = deepest.max(level);
        if level > MAX_ATTRIBUTES_DEPTH {
            return level;
        }
        pending.extend(children.map(|c| (c, level + 1)));
    }
    deepest
}

/// RFC 7386 JSON merge patch: `patch`'s members replace `target`'s, a
/// `null` member deletes, objects merge recursively.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target) = target else {
        return;
    };
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// The device list's filters (documentation; parsed by [`filter`]).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct DeviceFilterQuery {
    /// `KEY=VALUE`: the device's label KEY is VALUE; `KEY`: it has label
    /// KEY. Repeatable (at most 16); every one must hold. A key no label
    /// can have (empty, over 256 bytes) matches no device.
    #[param(max_items = 16)]
    pub label: Option<Vec<String>>,
    /// Only devices in this profile.
    #[param(max_length = 64)]
    pub profile: Option<String>,
}

/// The filters of a device list's query string.
pub fn filter(query: Option<&str>) -> Result<DeviceFilter, ApiError> {
    let mut filter = DeviceFilter::default();
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*key {
            "label" => {
                if filter.labels.len() == MAX_LABEL_FILTERS {
                    return Err(ApiError::invalid(
                        "label",
                        format!("at most {MAX_LABEL_FILTERS} label filters"),
                    ));
                }
                let (k, v) = match value.split_once('=') {
                    Some((k, v)) => (k, Some(v.to_owned())),
                    None => (&*value, None),
                };
                filter.labels.push((k.to_owned(), v));
            }
            "profile" if value.len() > 64 => {
                return Err(ApiError::invalid(
                    "profile",
                    "a profile name is at most 64 bytes",
                ));
            }
            "profile" => filter.profile = Some(value.into_owned()),
            _ => {}
        }
    }
    Ok(filter)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn conventions_are_checked_when_present() {
        assert!(check(&json!({"labels": {"site": "north"}, "location": {"lat": 1, "lon": 2.5}, "customer": "c", "free": [1]})).is_ok());
        for (bad, field) in [
            (json!({"labels": {"site": 1}}), "attributes.labels.site"),
            (json!({"labels": []}), "attributes.labels"),
            (
                json!({"location": {"lat": 91, "lon": 0}}),
                "attributes.location.lat",
            ),
            (json!({"location": {"lat": 1}}), "attributes.location.lon"),
            (json!({"customer": 5}), "attributes.customer"),
        ] {
            match check(&bad) {
                Err(ApiError::Invalid { field: Some(f), .. }) => assert_eq!(f, field),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn attributes_are_bounded_in_depth_and_size() {
        let mut deep = json!(1);
        for _ in 0..MAX_ATTRIBUTES_DEPTH {
            deep = json!({ "a": deep });
        }
        assert!(check(&deep).is_ok());
        assert!(matches!(
            check(&json!({ "a": deep })),
            Err(ApiError::Invalid { .. })
        ));
        let big = json!({"a": "x".repeat(MAX_ATTRIBUTES_BYTES)});
        assert!(matches!(check(&big), Err(ApiError::FieldTooLarge { .. })));
    }

    #[test]
    fn a_merge_patch_sets_and_deletes() {
        let mut a = json!({"labels": {"a": "1", "b": "2"}, "x": 1});
        merge_patch(
            &mut a,
            &json!({"labels": {"a": null, "c": "3"}, "x": null, "y": [1]}),
        );
        assert_eq!(a, json!({"labels": {"b": "2", "c": "3"}, "y": [1]}));
    }

    #[test]
    fn label_filters_are_parsed() {
        let f = filter(Some("label=site%3Dnorth&label=edge&profile=pumps&limit=5")).unwrap();
        assert_eq!(
            f.labels,
            vec![("site".into(), Some("north".into())), ("edge".into(), None)]
        );
        assert_eq!(f.profile.as_deref(), Some("pumps"));
        // A key no label can have is kept, and matches nothing.
        assert_eq!(
            filter(Some("label==x")).unwrap().labels,
            vec![("".into(), Some("x".into()))]
        );
        assert!(filter(Some(&vec!["label=a"; 17].join("&"))).is_err());
        assert!(filter(Some(&format!("profile={}", "p".repeat(65)))).is_err());
    }
}
