//! Tests of the rule language: each function and operator, the errors'
//! positions, and properties over arbitrary payloads and rules.

use serde_json::{Map, Value, json};

use super::*;

const TOPIC: &str = "devices/d1/telemetry";

fn input(payload: &Value) -> Input<'_> {
    Input {
        tenant: "acme",
        topic: TOPIC,
        payload,
        client_id: Some("client-1"),
        device_id: Some("d1"),
        timestamp_ms: 1_700_000_000_123,
        attributes: None,
        defaults: None,
    }
}

/// The output of `sql` on `payload`, `None` when WHERE does not hold.
fn run(sql: &str, payload: Value) -> Option<Map<String, Value>> {
    let program = compile(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    program.evaluate(&input(&payload)).unwrap()
}

/// The value of one expression on `payload`.
fn value_on(expr: &str, payload: Value) -> Value {
    let out = run(&format!("SELECT {expr} AS v FROM '#'"), payload).expect("no WHERE");
    out["v"].clone()
}

fn value(expr: &str) -> Value {
    value_on(
        expr,
        json!({"temp": 21.5, "seq": 1, "name": "Sensor-A", "tags": ["a", "b"]}),
    )
}

fn refused(sql: &str) -> SqlError {
    match compile(sql) {
        Ok(_) => panic!("{sql:?} compiled"),
        Err(e) => e,
    }
}

fn at(sql: &str) -> (u64, u64) {
    let e = refused(sql);
    (e.line, e.column)
}

// ---- SELECT, FROM, WHERE ----

#[test]
fn select_star_takes_the_payload_fields() {
    let out = run(
        "SELECT * FROM 'devices/+/telemetry'",
        json!({"a": 1, "b": "x"}),
    )
    .unwrap();
    assert_eq!(Value::Object(out), json!({"a": 1, "b": "x"}));
}

#[test]
fn select_star_of_a_non_object_payload_is_named_payload() {
    let out = run("SELECT * FROM '#'", json!(42)).unwrap();
    assert_eq!(Value::Object(out), json!({"payload": 42}));
}

#[test]
fn columns_merge_in_order_and_later_wins() {
    let out = run(
        "SELECT *, temp * 2 AS temp, 'x' AS tag FROM '#'",
        json!({"temp": 2, "k": 1}),
    )
    .unwrap();
    assert_eq!(Value::Object(out), json!({"temp": 4, "k": 1, "tag": "x"}));
}

#[test]
fn unaliased_columns_are_named_after_the_path_or_function() {
    let out = run(
        "SELECT payload.a.b, c[0], topic(2), temp + 1 FROM '#'",
        json!({"a": {"b": 5}, "c": [7], "temp": 1}),
    )
    .unwrap();
    assert_eq!(out["b"], json!(5));
    assert_eq!(out["c"], json!(7));
    assert_eq!(out["topic"], json!("d1"));
    assert_eq!(out["temp + 1"], json!(2));
}

#[test]
fn where_passes_only_when_exactly_true() {
    assert!(run("SELECT * FROM '#' WHERE temp > 20", json!({"temp": 25})).is_some());
    assert!(run("SELECT * FROM '#' WHERE temp > 20", json!({"temp": 5})).is_none());
    // Unknown (missing field) and non-boolean do not pass.
    assert!(run("SELECT * FROM '#' WHERE temp > 20", json!({})).is_none());
    assert!(run("SELECT * FROM '#' WHERE temp", json!({"temp": 1})).is_none());
    assert!(run("SELECT * FROM '#' WHERE flag", json!({"flag": true})).is_some());
}

#[test]
fn sources_and_topic_matching() {
    let p = compile("SELECT * FROM 'devices/+/telemetry', 'alerts/#'").unwrap();
    assert_eq!(p.sources(), ["devices/+/telemetry", "alerts/#"]);
    assert!(p.matches_topic("devices/d1/telemetry"));
    assert!(!p.matches_topic("devices/d1/telemetry/x"));
    assert!(!p.matches_topic("devices/d1"));
    assert!(p.matches_topic("alerts"));
    assert!(p.matches_topic("alerts/a/b"));
    assert!(!p.matches_topic("other"));
    // MQTT §4.7.2: a leading wildcard does not reach `$` topics.
    let all = compile("SELECT * FROM '#'").unwrap();
    assert!(!all.matches_topic("$ferrule/devices/d1/twin"));
    let internal = compile("SELECT * FROM '$ferrule/devices/+/twin'").unwrap();
    assert!(internal.matches_topic("$ferrule/devices/d1/twin"));
}

#[test]
fn needs_attributes_and_defaults_follow_the_references() {
    let plain = compile("SELECT temp FROM '#'").unwrap();
    assert!(!plain.needs_attributes() && !plain.needs_defaults());
    let attrs = compile("SELECT * FROM '#' WHERE temp > attributes.limit").unwrap();
    assert!(attrs.needs_attributes() && !attrs.needs_defaults());
    let defaults = compile("SELECT coalesce(limit, defaults['limit']) FROM '#'").unwrap();
    assert!(!defaults.needs_attributes() && defaults.needs_defaults());
    // A quoted name is a payload field, not the reserved root.
    let quoted = compile("SELECT \"attributes\".x FROM '#'").unwrap();
    assert!(!quoted.needs_attributes());
}

#[test]
fn attributes_and_defaults_are_read() {
    let p = compile("SELECT attributes.location.lat AS lat, defaults.max AS max FROM '#'").unwrap();
    let payload = json!({});
    let attributes = json!({"location": {"lat": 48.1}});
    let defaults = json!({"max": 30});
    let mut i = input(&payload);
    i.attributes = Some(&attributes);
    i.defaults = Some(&defaults);
    let out = p.evaluate(&i).unwrap().unwrap();
    assert_eq!(out["lat"], json!(48.1));
    assert_eq!(out["max"], json!(30));
    // Not looked up: null, not an error.
    let out = p.evaluate(&input(&payload)).unwrap().unwrap();
    assert_eq!(out["lat"], Value::Null);
}

// ---- paths ----

#[test]
fn paths_read_nested_fields_and_array_items() {
    let payload = json!({"a": {"b": {"c": 1}, "list": [10, 20, {"x": "y"}]}, "k y": 3});
    assert_eq!(value_on("a.b.c", payload.clone()), json!(1));
    assert_eq!(value_on("payload.a.b.c", payload.clone()), json!(1));
    assert_eq!(value_on("a['b']['c']", payload.clone()), json!(1));
    assert_eq!(value_on("a.list[1]", payload.clone()), json!(20));
    assert_eq!(value_on("a.list[2].x", payload.clone()), json!("y"));
    assert_eq!(value_on("payload['k y']", payload.clone()), json!(3));
    assert_eq!(value_on("payload", json!(5)), json!(5));
    assert_eq!(value_on("a.b", payload.clone()), json!({"c": 1}));
}

#[test]
fn missing_paths_are_null() {
    let payload = json!({"a": {"list": [1]}, "s": "text"});
    for path in [
        "nope",
        "a.nope",
        "a.list[5]",
        "a.list.x",
        "s.x",
        "s[0]",
        "a[0]",
    ] {
        assert_eq!(value_on(path, payload.clone()), Value::Null, "{path}");
    }
    assert_eq!(value_on("temp", json!([1, 2])), Value::Null);
}

// ---- functions ----

#[test]
fn fn_topic_whole_and_levels() {
    assert_eq!(value("topic()"), json!(TOPIC));
    assert_eq!(value("topic(1)"), json!("devices"));
    assert_eq!(value("topic(3)"), json!("telemetry"));
    assert_eq!(value("topic(4)"), Value::Null);
    assert_eq!(value("topic(0)"), Value::Null);
    assert_eq!(value("topic(-1)"), Value::Null);
    assert_eq!(value("topic('x')"), Value::Null);
    assert_eq!(value("TOPIC(2)"), json!("d1"));
}

#[test]
fn fn_device_id_clientid_tenant_timestamp() {
    assert_eq!(value("device_id()"), json!("d1"));
    assert_eq!(value("clientid()"), json!("client-1"));
    assert_eq!(value("tenant()"), json!("acme"));
    assert_eq!(value("timestamp()"), json!(1_700_000_000_123_i64));
    let p = compile("SELECT device_id() AS d, clientid() AS c FROM '#'").unwrap();
    let payload = json!({});
    let mut i = input(&payload);
    i.device_id = None;
    i.client_id = None;
    let out = p.evaluate(&i).unwrap().unwrap();
    assert_eq!(out["d"], Value::Null);
    assert_eq!(out["c"], Value::Null);
}

#[test]
fn fn_abs() {
    assert_eq!(value("abs(-3)"), json!(3));
    assert_eq!(value("abs(-2.5)"), json!(2.5));
    assert_eq!(value("abs(missing)"), Value::Null);
    assert_eq!(value("abs('x')"), Value::Null);
    assert_eq!(
        value("abs(-9223372036854775808)"),
        json!(9_223_372_036_854_775_808.0)
    );
}

#[test]
fn fn_round_whole_and_with_digits() {
    assert_eq!(value("round(2.5)"), json!(3));
    assert_eq!(value("round(-2.5)"), json!(-3));
    assert_eq!(value("round(2.71828, 2)"), json!(2.72));
    assert_eq!(value("round(1234, -2)"), json!(1200));
    assert_eq!(value("round(7, 2)"), json!(7));
    assert_eq!(value("round(1.5, 400)"), json!(1.5));
    assert_eq!(value("round(missing)"), Value::Null);
    assert_eq!(value("round(1.5, 'x')"), Value::Null);
}

#[test]
fn fn_floor_and_ceil() {
    assert_eq!(value("floor(2.7)"), json!(2));
    assert_eq!(value("floor(-2.1)"), json!(-3));
    assert_eq!(value("ceil(2.1)"), json!(3));
    assert_eq!(value("ceil(5)"), json!(5));
    assert_eq!(value("ceil('x')"), Value::Null);
    assert_eq!(value("floor(1e300)"), json!(1e300));
}

#[test]
fn fn_lower_and_upper() {
    assert_eq!(value("lower(name)"), json!("sensor-a"));
    assert_eq!(value("upper(name)"), json!("SENSOR-A"));
    assert_eq!(value("upper('straße')"), json!("STRASSE"));
    // Lenient: a number is taken as its text.
    assert_eq!(value("lower(5)"), json!("5"));
    assert_eq!(value("lower(missing)"), Value::Null);
}

#[test]
fn fn_concat_skips_nulls_and_renders_values() {
    assert_eq!(value("concat(name, '/', seq)"), json!("Sensor-A/1"));
    assert_eq!(value("concat('a', missing, 'b')"), json!("ab"));
    assert_eq!(value("concat(tags)"), json!(r#"["a","b"]"#));
    assert_eq!(value("concat(temp, true)"), json!("21.5true"));
    assert_eq!(value("name || '!'"), json!("Sensor-A!"));
}

#[test]
fn fn_substring_counts_characters_from_one() {
    assert_eq!(value("substring('hello', 2)"), json!("ello"));
    assert_eq!(value("substring('hello', 2, 3)"), json!("ell"));
    assert_eq!(value("substring('hello', 0, 3)"), json!("he"));
    assert_eq!(value("substring('hello', -5, 3)"), json!(""));
    assert_eq!(value("substring('hello', 4, 100)"), json!("lo"));
    assert_eq!(value("substring('hello', 9)"), json!(""));
    assert_eq!(value("substring('hello', 1, 0)"), json!(""));
    assert_eq!(value("substring('hello', 1, -1)"), Value::Null);
    assert_eq!(value("substring('héllo', 2, 2)"), json!("él"));
    assert_eq!(value("substring(missing, 1)"), Value::Null);
    assert_eq!(value("substring('hello', 'x')"), Value::Null);
    assert_eq!(
        value("substring('hello', 9223372036854775807, 9223372036854775807)"),
        json!("")
    );
    assert_eq!(
        value("substring('hello', -9223372036854775808, 9223372036854775807)"),
        json!("")
    );
    // The SQL-standard spelling parses too.
    assert_eq!(value("SUBSTRING('hello' FROM 2 FOR 2)"), json!("el"));
}

#[test]
fn fn_coalesce_takes_the_first_non_null() {
    assert_eq!(value("coalesce(missing, other, seq, 9)"), json!(1));
    assert_eq!(value("coalesce(missing)"), Value::Null);
}

#[test]
fn fn_is_null() {
    assert_eq!(value("is_null(missing)"), json!(true));
    assert_eq!(value("is_null(seq)"), json!(false));
    assert_eq!(value("is_null(NULL)"), json!(true));
}

#[test]
fn fn_to_number() {
    assert_eq!(value("to_number('42')"), json!(42));
    assert_eq!(value("to_number(' 2.5 ')"), json!(2.5));
    assert_eq!(value("to_number('1e3')"), json!(1000));
    assert_eq!(value("to_number('abc')"), Value::Null);
    assert_eq!(value("to_number('inf')"), Value::Null);
    assert_eq!(value("to_number('NaN')"), Value::Null);
    assert_eq!(value("to_number('')"), Value::Null);
    assert_eq!(value("to_number(7)"), json!(7));
    assert_eq!(value("to_number(true)"), Value::Null);
}

#[test]
fn fn_to_string() {
    assert_eq!(value("to_string(seq)"), json!("1"));
    assert_eq!(value("to_string(temp)"), json!("21.5"));
    assert_eq!(value("to_string(name)"), json!("Sensor-A"));
    assert_eq!(value("to_string(tags)"), json!(r#"["a","b"]"#));
    assert_eq!(value("to_string(false)"), json!("false"));
    assert_eq!(value("to_string(missing)"), Value::Null);
}

#[test]
fn strings_built_beyond_the_limit_are_errors() {
    let big = "x".repeat(40 * 1024);
    let payload = json!({"s": big});
    let p = compile("SELECT concat(s, s) AS v FROM '#'").unwrap();
    let err = p.evaluate(&input(&payload)).unwrap_err();
    assert!(err.0.contains("longer than the limit"), "{err}");
    let p = compile("SELECT s + s AS v FROM '#'").unwrap();
    assert!(p.evaluate(&input(&payload)).is_err());
    let p = compile("SELECT concat(s) AS v FROM '#'").unwrap();
    assert!(p.evaluate(&input(&payload)).is_ok());
}

// ---- operators ----

#[test]
fn arithmetic_keeps_integers_integral() {
    assert_eq!(value("seq + 1"), json!(2));
    assert!(value("seq + 1").is_i64());
    assert_eq!(value("temp + 1"), json!(22.5));
    assert_eq!(value("1.5 * 2"), json!(3));
    assert!(value("1.5 * 2").is_i64());
    assert_eq!(value("10 - 15"), json!(-5));
    assert_eq!(value("7 / 2"), json!(3.5));
    assert_eq!(value("8 / 2"), json!(4));
    assert_eq!(value("7 % 3"), json!(1));
    assert_eq!(value("-7 % 3"), json!(-1));
    assert_eq!(value("7.5 % 2"), json!(1.5));
    assert_eq!(value("-seq"), json!(-1));
    assert_eq!(value("-(-temp)"), json!(21.5));
}

#[test]
fn arithmetic_edge_cases() {
    assert_eq!(value("1 / 0"), Value::Null);
    assert_eq!(value("1 % 0"), Value::Null);
    assert_eq!(value("1.5 / 0.0"), Value::Null);
    assert_eq!(value("missing + 1"), Value::Null);
    assert_eq!(value("'a' * 2"), Value::Null);
    assert_eq!(value("true + 1"), Value::Null);
    // Overflow goes to floating point, not to a panic or a wrap.
    assert_eq!(
        value("9223372036854775807 + 1"),
        json!(9_223_372_036_854_775_808.0)
    );
    assert_eq!(
        value("-9223372036854775808 / -1"),
        json!(9_223_372_036_854_775_808.0)
    );
    assert_eq!(value("-9223372036854775808 % -1"), json!(0));
    assert_eq!(
        value("-(-9223372036854775808)"),
        json!(9_223_372_036_854_775_808.0)
    );
    assert_eq!(value("1e308 * 10"), Value::Null);
}

#[test]
fn plus_joins_two_strings() {
    assert_eq!(value("'a' + 'b'"), json!("ab"));
    assert_eq!(value("'a' + 1"), Value::Null);
}

#[test]
fn comparisons() {
    assert_eq!(value("temp > 20"), json!(true));
    assert_eq!(value("temp >= 21.5"), json!(true));
    assert_eq!(value("temp < 21.5"), json!(false));
    assert_eq!(value("seq <= 1"), json!(true));
    assert_eq!(value("seq = 1.0"), json!(true));
    assert_eq!(value("seq != 2"), json!(true));
    assert_eq!(value("seq <> 1"), json!(false));
    assert_eq!(value("name = 'Sensor-A'"), json!(true));
    assert_eq!(value("'abc' < 'abd'"), json!(true));
    assert_eq!(value("'B' < 'a'"), json!(true));
    assert_eq!(value("tags = tags"), json!(true));
    assert_eq!(value("false < true"), json!(true));
}

#[test]
fn comparisons_with_null_or_mixed_types() {
    assert_eq!(value("missing = 1"), Value::Null);
    assert_eq!(value("NULL = NULL"), Value::Null);
    assert_eq!(value("missing != 1"), Value::Null);
    assert_eq!(value("'1' = 1"), json!(false));
    assert_eq!(value("'1' != 1"), json!(true));
    assert_eq!(value("'1' < 2"), Value::Null);
}

#[test]
fn and_or_not_are_three_valued() {
    assert_eq!(value("true AND false"), json!(false));
    assert_eq!(value("true AND true"), json!(true));
    assert_eq!(value("missing > 1 AND false"), json!(false));
    assert_eq!(value("missing > 1 AND true"), Value::Null);
    assert_eq!(value("true OR missing > 1"), json!(true));
    assert_eq!(value("false OR missing > 1"), Value::Null);
    assert_eq!(value("false OR false"), json!(false));
    assert_eq!(value("NOT true"), json!(false));
    assert_eq!(value("NOT (missing > 1)"), Value::Null);
    assert_eq!(value("NOT 5"), Value::Null);
    // Precedence: AND binds tighter than OR.
    assert_eq!(value("true OR true AND false"), json!(true));
}

#[test]
fn in_and_not_in() {
    assert_eq!(value("seq IN (1, 2)"), json!(true));
    assert_eq!(value("seq IN (3, 4)"), json!(false));
    assert_eq!(value("name IN ('x', 'Sensor-A')"), json!(true));
    assert_eq!(value("seq NOT IN (3, 4)"), json!(true));
    assert_eq!(value("seq NOT IN (1)"), json!(false));
    assert_eq!(value("missing IN (1)"), Value::Null);
    // No match but a null in the list: unknown, as in SQL.
    assert_eq!(value("seq IN (3, NULL)"), Value::Null);
    assert_eq!(value("seq IN (1, NULL)"), json!(true));
}

#[test]
fn like_and_not_like() {
    assert_eq!(value("name LIKE 'Sensor%'"), json!(true));
    assert_eq!(value("name LIKE 'sensor%'"), json!(false));
    assert_eq!(value("name LIKE 'Sensor-_'"), json!(true));
    assert_eq!(value("name LIKE '%-_'"), json!(true));
    assert_eq!(value("name NOT LIKE '%B'"), json!(true));
    assert_eq!(value("'50%' LIKE '50!%' ESCAPE '!'"), json!(true));
    assert_eq!(value("'500' LIKE '50!%' ESCAPE '!'"), json!(false));
    assert_eq!(value("missing LIKE '%'"), Value::Null);
    assert_eq!(value("seq LIKE '%'"), Value::Null);
    // A computed pattern.
    assert_eq!(
        value("name LIKE concat(substring(name, 1, 3), '%')"),
        json!(true)
    );
}

#[test]
fn is_null_and_is_not_null() {
    assert_eq!(value("missing IS NULL"), json!(true));
    assert_eq!(value("seq IS NULL"), json!(false));
    assert_eq!(value("seq IS NOT NULL"), json!(true));
    assert_eq!(value_on("x IS NULL", json!({"x": null})), json!(true));
}

#[test]
fn between() {
    assert_eq!(value("temp BETWEEN 20 AND 22"), json!(true));
    assert_eq!(value("temp BETWEEN 22 AND 30"), json!(false));
    assert_eq!(value("seq BETWEEN 1 AND 1"), json!(true));
    assert_eq!(value("temp NOT BETWEEN 20 AND 22"), json!(false));
    assert_eq!(value("missing BETWEEN 1 AND 2"), Value::Null);
    // Below the low bound: false even with an unknown high bound.
    assert_eq!(value("seq BETWEEN 5 AND missing"), json!(false));
}

#[test]
fn case_searched_and_simple() {
    assert_eq!(
        value("CASE WHEN temp > 30 THEN 'hot' WHEN temp > 20 THEN 'warm' ELSE 'cold' END"),
        json!("warm")
    );
    assert_eq!(value("CASE WHEN temp > 30 THEN 'hot' END"), Value::Null);
    assert_eq!(
        value("CASE seq WHEN 0 THEN 'zero' WHEN 1 THEN 'one' ELSE 'many' END"),
        json!("one")
    );
    assert_eq!(
        value("CASE missing WHEN NULL THEN 'null' ELSE 'other' END"),
        json!("other")
    );
    // A non-boolean WHEN does not hold.
    assert_eq!(value("CASE WHEN seq THEN 1 ELSE 2 END"), json!(2));
}

#[test]
fn literals_and_parentheses() {
    assert_eq!(value("'it''s'"), json!("it's"));
    assert_eq!(value("TRUE"), json!(true));
    assert_eq!(value("false"), json!(false));
    assert_eq!(value("NULL"), Value::Null);
    assert_eq!(value("1.5e3"), json!(1500.0));
    assert_eq!(value("-9223372036854775808"), json!(i64::MIN));
    assert_eq!(value("(1 + 2) * 3"), json!(9));
    assert_eq!(value("1 + 2 * 3"), json!(7));
}

// ---- errors, with line and column ----

#[test]
fn syntax_error_on_line_two_names_line_and_column() {
    let e = refused("SELECT temp\nFROM 'a/b' WHERE temp >> > 3");
    assert_eq!((e.line, e.column), (2, 26), "{e}");
    let e = refused("SELECT temp\n  FROM 'a' WHERE temp = = 1");
    assert_eq!((e.line, e.column), (2, 25), "{e}");
    // Cut short: the end of the text.
    let e = refused("SELECT a FROM 'x' WHERE (");
    assert_eq!((e.line, e.column), (1, 26), "{e}");
    assert!(!e.message.contains("Line:"), "{e}");
}

#[test]
fn unknown_function_is_refused_where_it_is_named() {
    let e = refused("SELECT temp,\n  nope(temp) AS x FROM 'a'");
    assert_eq!((e.line, e.column), (2, 3), "{e}");
    assert!(e.message.contains("unknown function nope()"), "{e}");
    assert_eq!(at("SELECT count(*) FROM 'a'"), (1, 8));
}

#[test]
fn wrong_arity_is_refused_where_the_function_is_named() {
    let e = refused("SELECT * FROM 'a'\nWHERE abs(1, 2) > 0");
    assert_eq!((e.line, e.column), (2, 7), "{e}");
    assert!(e.message.contains("abs() takes 1 argument, not 2"), "{e}");
    assert!(
        refused("SELECT topic(1, 2) FROM 'a'")
            .message
            .contains("0 to 1 arguments")
    );
    assert!(
        refused("SELECT concat() FROM 'a'")
            .message
            .contains("at least 1")
    );
    assert_eq!(at("SELECT device_id(1) FROM 'a'"), (1, 8));
    assert_eq!(at("SELECT round() FROM 'a'"), (1, 8));
}

#[test]
fn bad_topic_filter_is_refused_where_it_is() {
    let e = refused("SELECT *\nFROM 'ok/+', 'bad/#/x'");
    assert_eq!((e.line, e.column), (2, 14), "{e}");
    assert!(e.message.contains("not a valid topic filter"), "{e}");
    assert_eq!(at("SELECT * FROM 'a+'"), (1, 15));
    assert_eq!(at("SELECT * FROM ''"), (1, 15));
    // A bare or double-quoted name is not a topic filter.
    assert_eq!(at("SELECT * FROM telemetry"), (1, 15));
    assert_eq!(at("SELECT * FROM \"a/b\""), (1, 15));
    assert_eq!(at("SELECT * FROM 'a' AS t"), (1, 15));
    assert_eq!(at("SELECT * FROM 'a', '$share/g/b'"), (1, 20));
}

#[test]
fn join_group_by_and_friends_are_refused_at_their_keyword() {
    assert_eq!(at("SELECT * FROM 'a'\n  JOIN 'b' ON true"), (2, 3));
    assert_eq!(at("SELECT * FROM 'a' LEFT JOIN 'b' ON true"), (1, 24));
    assert_eq!(at("SELECT count FROM 'a'\nGROUP BY x"), (2, 1));
    assert_eq!(at("SELECT * FROM 'a' ORDER BY x"), (1, 19));
    assert_eq!(at("SELECT * FROM 'a' LIMIT 1"), (1, 19));
    assert_eq!(at("SELECT DISTINCT x FROM 'a'"), (1, 8));
    assert_eq!(at("SELECT * FROM 'a' UNION SELECT * FROM 'b'"), (1, 19));
    assert_eq!(at("SELECT * FROM 'a' WHERE x IN (SELECT 1)"), (1, 25));
    assert_eq!(at("SELECT x FROM 'a' GROUP BY x HAVING x > 1"), (1, 19));
    assert!(
        refused("SELECT * FROM 'a' GROUP BY x")
            .message
            .contains("GROUP BY")
    );
    assert!(
        refused("SELECT *\nFROM 'a' JOIN 'b' ON true")
            .message
            .contains("JOIN")
    );
}

#[test]
fn two_statements_are_refused_at_the_second() {
    let e = refused("SELECT * FROM 'a';\nSELECT * FROM 'b'");
    assert_eq!((e.line, e.column), (2, 1), "{e}");
    // A trailing semicolon is fine.
    assert!(compile("SELECT * FROM 'a';").is_ok());
    assert_eq!(at("DELETE FROM t"), (1, 1));
    assert_eq!(at("SELECT 1"), (1, 1));
}

#[test]
fn too_long_is_refused() {
    let sql = format!(
        "SELECT * FROM 'a' WHERE x = '{}'",
        "y".repeat(model_limit())
    );
    let e = refused(&sql);
    assert!(e.message.contains("limit"), "{e}");
    assert_eq!((e.line, e.column), (1, model_limit() as u64 + 1));
    // Just under the limit compiles.
    let filler = model_limit() - "SELECT * FROM 'a' WHERE x = ''".len();
    assert!(
        compile(&format!(
            "SELECT * FROM 'a' WHERE x = '{}'",
            "y".repeat(filler)
        ))
        .is_ok()
    );
}

fn model_limit() -> usize {
    crate::model::MAX_SQL_BYTES
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let chain = format!("SELECT {}1 FROM 'a'", "1 + ".repeat(3_000));
    let e = refused(&chain);
    assert!(e.message.contains("nested deeper"), "{e}");
    let parens = format!("SELECT {}1{} FROM 'a'", "(".repeat(200), ")".repeat(200));
    assert!(refused(&parens).message.contains("nested too deeply"));
    let ok = format!("SELECT {}1 AS v FROM 'a'", "1 + ".repeat(MAX_DEPTH - 1));
    let out = run(&ok, json!({})).unwrap();
    assert_eq!(out["v"], json!(MAX_DEPTH));
}

#[test]
fn long_chains_inside_refused_expressions_do_not_overflow() {
    // sqlparser builds `1 + 1 + …` as a left-leaning tree of any depth;
    // reporting on a node above one must not walk it recursively.
    let chain = format!("{}1", "1+".repeat(7_500));
    for sql in [
        format!("SELECT CAST({chain} AS INT) FROM 'a'"),
        format!("SELECT ({chain}, 1) FROM 'a'"),
        format!("SELECT x FROM 'a' WHERE x ILIKE {chain}"),
        format!("SELECT [{chain}] FROM 'a'"),
        format!("SELECT x FROM 'a' GROUP BY {chain}"),
        format!("SELECT * FROM 'a' WHERE x IN (SELECT {chain})"),
    ] {
        // A 2 MiB stack, as the engine's worker threads have.
        let handle = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || compile(&sql).is_err())
            .unwrap();
        assert!(handle.join().unwrap());
    }
}

#[test]
fn unsupported_expressions_are_refused_where_they_start() {
    assert_eq!(at("SELECT x FROM 'a' WHERE\n  CAST(x AS INT) > 1"), (2, 8));
    assert_eq!(at("SELECT a[i] FROM 'a'"), (1, 10));
    assert_eq!(at("SELECT a[-1] FROM 'a'"), (1, 11));
    assert_eq!(at("SELECT payload.* FROM 'a'"), (1, 16));
    assert!(compile("SELECT x ILIKE 'a' FROM 'a'").is_err());
    assert!(compile("SELECT x LIKE 'a' ESCAPE 'ab' FROM 'a'").is_err());
    assert!(compile("SELECT 1e999 FROM 'a'").is_err());
}

#[test]
fn sql_error_displays_its_position() {
    let e = refused("SELECT nope() FROM 'a'");
    assert_eq!(e.to_string(), "line 1, column 8: unknown function nope()");
}

// ---- properties ----

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "[a-z%_é]{0,6}".prop_map(Value::String),
            prop_oneof![Just("temp"), Just("a"), Just("1.5"), Just("")].prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("temp".to_owned()),
                        Just("a".to_owned()),
                        Just("b".to_owned()),
                        Just("list".to_owned()),
                        "[a-z]{1,3}",
                    ],
                    inner,
                    0..5
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Expressions of the rule language, from its grammar.
    fn expr() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(|i| i.to_string()),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| format!("{f:e}")),
            "[a-z%_ ]{0,5}".prop_map(|s| format!("'{s}'")),
            Just("NULL".to_owned()),
            Just("TRUE".to_owned()),
            prop_oneof![
                Just("temp"),
                Just("a.b"),
                Just("payload"),
                Just("payload.list[0]"),
                Just("a['b'][1]"),
                Just("attributes.x"),
                Just("defaults['y']"),
                Just("topic()"),
                Just("topic(2)"),
                Just("device_id()"),
                Just("clientid()"),
                Just("tenant()"),
                Just("timestamp()"),
            ]
            .prop_map(str::to_owned),
        ];
        leaf.prop_recursive(5, 48, 4, |inner| {
            let two = (inner.clone(), inner.clone());
            prop_oneof![
                (
                    inner.clone(),
                    prop_oneof![
                        Just("+"),
                        Just("-"),
                        Just("*"),
                        Just("/"),
                        Just("%"),
                        Just("="),
                        Just("<>"),
                        Just("<"),
                        Just(">="),
                        Just("AND"),
                        Just("OR"),
                        Just("||"),
                    ],
                    inner.clone()
                )
                    .prop_map(|(l, op, r)| format!("({l} {op} {r})")),
                // A space: `--` would start a comment.
                inner.clone().prop_map(|e| format!("(- {e})")),
                inner.clone().prop_map(|e| format!("(NOT {e})")),
                inner.clone().prop_map(|e| format!("({e} IS NOT NULL)")),
                (
                    prop_oneof![
                        Just("abs"),
                        Just("round"),
                        Just("floor"),
                        Just("ceil"),
                        Just("lower"),
                        Just("upper"),
                        Just("to_number"),
                        Just("to_string"),
                        Just("is_null"),
                        Just("topic"),
                    ],
                    inner.clone()
                )
                    .prop_map(|(f, e)| format!("{f}({e})")),
                two.clone().prop_map(|(a, b)| format!("round({a}, {b})")),
                two.clone()
                    .prop_map(|(a, b)| format!("substring({a}, {b})")),
                (inner.clone(), inner.clone(), inner.clone())
                    .prop_map(|(a, b, c)| format!("substring({a}, {b}, {c})")),
                prop::collection::vec(inner.clone(), 1..4)
                    .prop_map(|v| format!("concat({})", v.join(", "))),
                prop::collection::vec(inner.clone(), 1..4)
                    .prop_map(|v| format!("coalesce({})", v.join(", "))),
                (inner.clone(), prop::collection::vec(inner.clone(), 1..4))
                    .prop_map(|(e, v)| format!("({e} NOT IN ({}))", v.join(", "))),
                (inner.clone(), "[a-z%_]{0,6}").prop_map(|(e, p)| format!("({e} LIKE '{p}')")),
                two.clone().prop_map(|(e, p)| format!("({e} NOT LIKE {p})")),
                (inner.clone(), inner.clone(), inner.clone())
                    .prop_map(|(a, b, c)| format!("({a} BETWEEN {b} AND {c})")),
                (inner.clone(), inner.clone(), inner.clone())
                    .prop_map(|(a, b, c)| format!("CASE WHEN {a} THEN {b} ELSE {c} END")),
                (inner.clone(), inner.clone(), inner)
                    .prop_map(|(a, b, c)| format!("CASE {a} WHEN {b} THEN {c} END")),
            ]
        })
    }

    fn rule() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(expr(), 1..4),
            any::<bool>(),
            prop::option::of(expr()),
        )
            .prop_map(|(columns, star, condition)| {
                let mut list: Vec<String> = columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("{c} AS c{i}"))
                    .collect();
                if star {
                    list.insert(0, "*".into());
                }
                let mut sql = format!("SELECT {} FROM 'devices/+/telemetry'", list.join(", "));
                if let Some(c) = condition {
                    sql.push_str(&format!(" WHERE {c}"));
                }
                sql
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn valid_rules_compile_and_never_panic_on_any_payload(
            sql in rule(),
            payload in json_value(),
            attributes in json_value(),
        ) {
            let program = compile(&sql).map_err(|e| TestCaseError::fail(format!("{sql}: {e}")))?;
            let mut i = input(&payload);
            i.attributes = Some(&attributes);
            if let Ok(Some(out)) = program.evaluate(&i) {
                // Every named column is in the output.
                for name in program.column_names().filter(|n| *n != "*") {
                    prop_assert!(out.contains_key(name));
                }
            }
        }

        #[test]
        fn compiling_any_text_never_panics(sql in "\\PC{0,200}") {
            let _ = compile(&sql);
        }

        #[test]
        fn compiling_rule_shaped_text_never_panics(
            sql in "(SELECT|FROM|WHERE|'a/+'|'#'|\\*|,|\\(|\\)|\\[|\\]|\\.|[a-z]{1,3}|[0-9]{1,3}|'x'|=|<|\\+|-|AND|OR|NOT|IN|LIKE|CASE|WHEN|THEN|END|;| ){0,30}"
        ) {
            let _ = compile(&sql).map(|p| p.evaluate(&input(&json!({"a": [1, {"b": "c"}]}))));
        }

        #[test]
        fn like_agrees_with_a_naive_matcher(text in "[ab%_]{0,8}", pattern in "[ab%_]{0,6}") {
            let sql = format!("SELECT '{text}' LIKE '{pattern}' AS v FROM '#'");
            let out = run(&sql, json!({})).unwrap();
            prop_assert_eq!(out["v"].as_bool(), Some(naive_like(&text.chars().collect::<Vec<_>>(), &pattern.chars().collect::<Vec<_>>())));
        }

        #[test]
        fn topic_matching_agrees_with_the_broker(
            filter in "(a|b|\\+|\\$x)(/(a|b|\\+)){0,3}(/#)?",
            topic in "(a|b|\\$x)(/(a|b)){0,4}",
        ) {
            let program = compile(&format!("SELECT * FROM '{filter}'")).unwrap();
            prop_assert_eq!(
                program.matches_topic(&topic),
                ferrule_core::topic::matches(&filter, &topic)
            );
        }
    }

    fn naive_like(t: &[char], p: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('%', rest)) => (0..=t.len()).any(|i| naive_like(&t[i..], rest)),
            Some(('_', rest)) => !t.is_empty() && naive_like(&t[1..], rest),
            Some((c, rest)) => t.first() == Some(c) && naive_like(&t[1..], rest),
        }
    }
}

/// A rough figure for the engine's budget, printed, never asserted:
/// `cargo test -p ferrule-rules --release -- --ignored --nocapture rule_throughput`
#[test]
#[ignore = "a measurement, run by hand in release"]
fn rule_throughput() {
    let program = compile(
        "SELECT temp, device_id() AS device, topic(2) AS id FROM 'devices/+/telemetry' \
         WHERE temp > 20 AND status = 'on'",
    )
    .unwrap();
    let payload = json!({"temp": 25.5, "status": "on", "seq": 7, "extra": {"a": [1, 2, 3]}});
    let n = 1_000_000u32;
    let start = std::time::Instant::now();
    let mut passed = 0u32;
    for _ in 0..n {
        let i = input(&payload);
        if program.matches_topic(i.topic) && program.evaluate(&i).unwrap().is_some() {
            passed += 1;
        }
    }
    let elapsed = start.elapsed();
    assert_eq!(passed, n);
    println!(
        "{n} evaluations in {elapsed:?}: {:.0}/s on one core",
        f64::from(n) / elapsed.as_secs_f64()
    );
}
