use serde_json::{Map, Value, json};

use super::*;

fn output() -> Map<String, Value> {
    match json!({
        "device_id": "d1",
        "temp": 21.5,
        "count": 3,
        "ok": true,
        "gone": null,
        "loc": {"lat": 48.1, "tags": ["a", "b"]},
        "list": [10, {"x": "y"}],
        "odd key": "o",
    }) {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

fn render(text: &str) -> String {
    Template::parse(text).unwrap().render(&output())
}

#[test]
fn fields_are_replaced_in_text() {
    assert_eq!(render("alerts/${device_id}/temp"), "alerts/d1/temp");
    assert_eq!(
        render("${temp}°C, ${count} times, ${ok}"),
        "21.5°C, 3 times, true"
    );
    assert_eq!(render("${loc.lat}"), "48.1");
    assert_eq!(render("${loc.tags[1]}"), "b");
    assert_eq!(render("${list[1].x}"), "y");
    assert_eq!(render("${loc['lat']}"), "48.1");
    assert_eq!(render("${ device_id }"), "d1");
}

#[test]
fn non_strings_render_as_compact_json() {
    assert_eq!(render("${loc}"), r#"{"lat":48.1,"tags":["a","b"]}"#);
    assert_eq!(render("${list}"), r#"[10,{"x":"y"}]"#);
}

#[test]
fn missing_and_null_render_empty() {
    assert_eq!(render("a${nope}b"), "ab");
    assert_eq!(render("a${gone}b"), "ab");
    assert_eq!(render("${loc.nope}|${list[9]}|${temp.x}"), "||");
}

#[test]
fn dollar_dollar_brace_escapes() {
    assert_eq!(render("cost: $${count} = ${count}"), "cost: ${count} = 3");
    let t = Template::parse("$${x}").unwrap();
    assert!(t.is_constant());
    // A lone `$` is just a dollar.
    assert_eq!(render("$5 and $"), "$5 and $");
    assert_eq!(render("$$"), "$$");
}

#[test]
fn parse_errors() {
    let e = Template::parse("alerts/${device_id").unwrap_err();
    assert!(e.contains("not closed") && e.contains("byte 7"), "{e}");
    assert!(Template::parse("${}").is_err());
    assert!(Template::parse("${a.}").is_err());
    assert!(Template::parse("${a[x]}").is_err());
    assert!(Template::parse("${a['b}").is_err());
    assert!(Template::parse("${a[1}").is_err());
    assert!(Template::parse("${a]}").is_err());
}

#[test]
fn constant_source_and_fields() {
    let t = Template::parse("plain/topic").unwrap();
    assert!(t.is_constant());
    assert_eq!(t.render(&Map::new()), "plain/topic");
    let t = Template::parse("a/${device_id}/${loc.lat}").unwrap();
    assert!(!t.is_constant());
    assert_eq!(t.source(), "a/${device_id}/${loc.lat}");
    assert_eq!(t.fields().collect::<Vec<_>>(), ["device_id", "loc.lat"]);
}

#[test]
fn json_template_keeps_types_of_whole_fields() {
    let t = JsonTemplate::parse(&json!({
        "t": "${temp}",
        "n": "${count}",
        "loc": "${loc}",
        "missing": "${nope}",
        "text": "temp=${temp}",
        "nested": [{"id": "${device_id}"}, 1, "fixed"],
        "${count}": "keys are not templates",
        "escaped": "$${temp}",
    }))
    .unwrap();
    assert_eq!(
        t.render(&output()),
        json!({
            "t": 21.5,
            "n": 3,
            "loc": {"lat": 48.1, "tags": ["a", "b"]},
            "missing": null,
            "text": "temp=21.5",
            "nested": [{"id": "d1"}, 1, "fixed"],
            "${count}": "keys are not templates",
            "escaped": "${temp}",
        })
    );
}

#[test]
fn json_template_constant_and_errors() {
    let value = json!({"a": [1, true, null, "x"]});
    assert_eq!(
        JsonTemplate::parse(&value).unwrap().render(&output()),
        value
    );
    assert!(JsonTemplate::parse(&json!({"a": ["${oops"]})).is_err());
}
