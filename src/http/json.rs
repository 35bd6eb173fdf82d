//! The one JSON writer of the API: byte for byte what Flask's `jsonify`
//! sends, so that clients written against the reference that compare raw
//! bodies or the `Content-Type` header as strings pass unchanged.
//!
//! `jsonify` (Flask 2 and later, outside debug mode) writes compact
//! separators, keys sorted at every depth, everything outside ASCII as
//! `\uXXXX` escapes (surrogate pairs above the Basic Multilingual Plane, as
//! Python's `ensure_ascii` does), a trailing newline, and
//! `Content-Type: application/json`. Keys are sorted here explicitly, so
//! the output does not depend on whether some dependency turns on
//! serde_json's `preserve_order`.

use std::fmt::Write as _;

use rouille::Response;
use serde_json::Value;

/// A response carrying `value` as `jsonify` writes it, status 200.
pub fn response(value: &Value) -> Response {
    Response::from_data("application/json", to_flask(value))
}

/// A response carrying a flat object of strings, such as
/// `{"email": E, "message": M}`, as `jsonify` writes it; the common case,
/// written without building a `Value` (it is on the session-check path).
pub fn fields(pairs: &[(&str, &str)]) -> Response {
    let mut sorted: Vec<&(&str, &str)> = pairs.iter().collect();
    sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut out = String::with_capacity(
        16 + pairs
            .iter()
            .map(|(k, v)| k.len() + v.len() + 6)
            .sum::<usize>(),
    );
    out.push('{');
    for (i, (key, value)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(&mut out, key);
        out.push(':');
        write_string(&mut out, value);
    }
    out.push_str("}\n");
    Response::from_data("application/json", out)
}

/// `value` as `jsonify` writes it, trailing newline included.
pub fn to_flask(value: &Value) -> String {
    let mut out = String::with_capacity(64);
    write_value(&mut out, value);
    out.push('\n');
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            // Python sorts str keys by code point; Rust's str order (by
            // UTF-8 bytes) is the same order.
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, key);
                out.push(':');
                write_value(out, item);
            }
            out.push('}');
        }
    }
}

/// A string as Python's `json.dumps(..., ensure_ascii=True)` writes it.
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            // Python escapes everything outside ' '..='~', DEL included.
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_what_jsonify_writes() {
        // Each expected string is what Python 3's
        // json.dumps(obj, separators=(",", ":"), sort_keys=True) + "\n" gives.
        let cases = [
            (
                json!({"message": "Bienvenue"}),
                "{\"message\":\"Bienvenue\"}\n",
            ),
            (
                json!({"message": "user created", "email": "josé@example.com"}),
                "{\"email\":\"jos\\u00e9@example.com\",\"message\":\"user created\"}\n",
            ),
            (
                json!({"b": {"z": 1, "a": [true, null, 2.5]}, "a": -3}),
                "{\"a\":-3,\"b\":{\"a\":[true,null,2.5],\"z\":1}}\n",
            ),
            (
                json!("\u{1F600} \"q\" \\ / \n\t\u{1}\u{7f}~"),
                "\"\\ud83d\\ude00 \\\"q\\\" \\\\ / \\n\\t\\u0001\\u007f~\"\n",
            ),
            (
                json!({"\u{e9}": 1, "z": 2, "a": 3}),
                "{\"a\":3,\"z\":2,\"\\u00e9\":1}\n",
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(to_flask(&value), expected);
        }
    }

    #[test]
    fn flat_fields_are_written_as_their_value_would_be() {
        let pairs = [
            ("message", "user created"),
            ("email", "jos\u{e9}@\u{1F600}.io"),
        ];
        let response = fields(&pairs);
        let (mut body, _) = response.data.into_reader_and_size();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut body, &mut text).unwrap();
        let value = json!({"message": "user created", "email": "jos\u{e9}@\u{1F600}.io"});
        assert_eq!(text, to_flask(&value));
    }

    #[test]
    fn keys_are_sorted_whatever_the_map_keeps() {
        // Built in reverse order: with serde_json's `preserve_order` the map
        // would keep this order; the writer must not.
        let mut map = serde_json::Map::new();
        map.insert("z".to_owned(), json!(1));
        map.insert("a".to_owned(), json!(2));
        assert_eq!(to_flask(&Value::Object(map)), "{\"a\":2,\"z\":1}\n");
    }

    #[test]
    fn the_content_type_is_exactly_application_json() {
        let response = response(&json!({}));
        let content_type: Vec<_> = response
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("Content-Type"))
            .map(|(_, v)| v.to_string())
            .collect();
        assert_eq!(content_type, ["application/json"]);
    }
}
