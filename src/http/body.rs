//! Request bodies: form-urlencoded, multipart and JSON, read with a limit.
//!
//! The reference client sends forms; we also accept multipart and JSON. All
//! three become one [`Fields`] map, so handlers never care which was used.
//! The body is read through `take(limit + 1)`: a client can never make us
//! buffer more than the limit, whatever its `Content-Length` says.

use std::collections::HashMap;
use std::io::Read;

use percent_encoding::percent_decode;
use rouille::Request;

use super::form_data;

/// Why a body was refused. Each message is shown to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("unsupported Content-Type {0:?}: send application/x-www-form-urlencoded, multipart/form-data or application/json")]
    UnsupportedType(String),
    #[error("request body could not be read: {0}")]
    Unreadable(String),
    #[error("request body is not valid UTF-8")]
    InvalidUtf8,
    #[error("malformed JSON body: {0}")]
    MalformedJson(String),
    #[error("JSON body must be an object")]
    JsonNotObject,
    #[error("malformed multipart body: {0}")]
    MalformedMultipart(String),
    #[error("field {0:?} was given more than once")]
    Duplicate(String),
    #[error("missing field {0:?}")]
    Missing(&'static str),
    #[error("field {0:?} must be a string")]
    NotText(&'static str),
    #[error("field {0:?} must be true, false or a string")]
    NotFlag(&'static str),
}

/// A field's value: text, a JSON boolean, or something else that JSON
/// allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Text(String),
    Bool(bool),
    NotText,
}

/// The decoded fields of a body, by name.
#[derive(Debug, Default)]
pub struct Fields(HashMap<String, Value>);

impl Fields {
    /// The text of field `name`; an error names the field if it is absent or
    /// not a string. Emptiness is left to the domain parsers, which know
    /// what an empty email or password means.
    pub fn required(&self, name: &'static str) -> Result<&str, BodyError> {
        match self.0.get(name) {
            Some(Value::Text(text)) => Ok(text),
            Some(Value::Bool(_) | Value::NotText) => Err(BodyError::NotText(name)),
            None => Err(BodyError::Missing(name)),
        }
    }

    /// The text of field `name` if it was given; an error if it is not a
    /// string.
    pub fn optional(&self, name: &'static str) -> Result<Option<&str>, BodyError> {
        match self.0.get(name) {
            Some(Value::Text(text)) => Ok(Some(text)),
            Some(Value::Bool(_) | Value::NotText) => Err(BodyError::NotText(name)),
            None => Ok(None),
        }
    }

    /// Whether field `name` is set: JSON's `true`, or the text `true` or
    /// `1` (what a form can say); any other text, `false` or no field is
    /// not set. A JSON value that is neither text nor a boolean is an
    /// error, as for every field authd reads.
    pub fn flag(&self, name: &'static str) -> Result<bool, BodyError> {
        match self.0.get(name) {
            Some(Value::Bool(set)) => Ok(*set),
            Some(Value::Text(text)) => Ok(text == "true" || text == "1"),
            Some(Value::NotText) => Err(BodyError::NotFlag(name)),
            None => Ok(false),
        }
    }

    fn insert(&mut self, name: String, value: Value) -> Result<(), BodyError> {
        if self.0.contains_key(&name) {
            return Err(BodyError::Duplicate(name));
        }
        self.0.insert(name, value);
        Ok(())
    }
}

/// Reads and decodes the body of `request`, refusing more than `limit`
/// bytes.
pub fn read_fields(request: &Request, limit: usize) -> Result<Fields, BodyError> {
    let content_type = request.header("Content-Type").unwrap_or("");
    if let Some(declared) = request
        .header("Content-Length")
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        if declared > limit as u64 {
            return Err(BodyError::TooLarge(limit));
        }
    }
    let body = match request.data() {
        Some(reader) => read_limited(reader, limit)?,
        None => return Err(BodyError::Unreadable("body already consumed".to_owned())),
    };
    decode(content_type, &body)
}

fn read_limited(reader: impl Read, limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| BodyError::Unreadable(e.to_string()))?;
    if body.len() > limit {
        return Err(BodyError::TooLarge(limit));
    }
    Ok(body)
}

/// Decodes `body` according to `content_type`. Pure, so it is tested
/// without a socket.
pub fn decode(content_type: &str, body: &[u8]) -> Result<Fields, BodyError> {
    let mut params = content_type.split(';');
    let media_type = params.next().unwrap_or("").trim().to_ascii_lowercase();
    match media_type.as_str() {
        "application/x-www-form-urlencoded" => decode_form(body),
        "application/json" => decode_json(body),
        "multipart/form-data" => {
            let boundary = params
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
                .map(|(_, v)| v.trim().trim_matches('"').to_owned())
                .filter(|b| !b.is_empty())
                .ok_or_else(|| {
                    BodyError::MalformedMultipart("Content-Type has no boundary".to_owned())
                })?;
            decode_multipart(&boundary, body)
        }
        // No type and no body: a request without fields, which the handler
        // reports as a missing field.
        "" if body.is_empty() => Ok(Fields::default()),
        _ => Err(BodyError::UnsupportedType(media_type)),
    }
}

/// `a=1&b=2`, with `+` for space and strict UTF-8 after percent-decoding.
fn decode_form(body: &[u8]) -> Result<Fields, BodyError> {
    let mut fields = Fields::default();
    for pair in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        fields.insert(form_component(name)?, Value::Text(form_component(value)?))?;
    }
    Ok(fields)
}

fn form_component(raw: &[u8]) -> Result<String, BodyError> {
    let spaced: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_decode(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| BodyError::InvalidUtf8)
}

fn decode_json(body: &[u8]) -> Result<Fields, BodyError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        if e.is_syntax() && std::str::from_utf8(body).is_err() {
            BodyError::InvalidUtf8
        } else {
            BodyError::MalformedJson(e.to_string())
        }
    })?;
    let serde_json::Value::Object(map) = value else {
        return Err(BodyError::JsonNotObject);
    };
    // serde_json keeps the last of duplicate keys; there is no way to see
    // them, so JSON duplicates are the one case we cannot refuse.
    let mut fields = Fields::default();
    for (name, value) in map {
        let value = match value {
            serde_json::Value::String(text) => Value::Text(text),
            serde_json::Value::Bool(set) => Value::Bool(set),
            _ => Value::NotText,
        };
        fields.insert(name, value)?;
    }
    Ok(fields)
}

fn decode_multipart(boundary: &str, body: &[u8]) -> Result<Fields, BodyError> {
    let mut fields = Fields::default();
    for (name, content) in
        form_data::parse(boundary, body).map_err(BodyError::MalformedMultipart)?
    {
        let text = String::from_utf8(content).map_err(|_| BodyError::InvalidUtf8)?;
        fields.insert(name, Value::Text(text))?;
    }
    Ok(fields)
}

#[cfg(test)]
mod flag_tests {
    use super::*;

    #[test]
    fn a_flag_is_true_or_1_in_any_body_and_json_true() {
        let json = |body: &str| decode("application/json", body.as_bytes()).unwrap();
        let form =
            |body: &str| decode("application/x-www-form-urlencoded", body.as_bytes()).unwrap();
        assert_eq!(json(r#"{"token": true}"#).flag("token"), Ok(true));
        assert_eq!(json(r#"{"token": "1"}"#).flag("token"), Ok(true));
        assert_eq!(form("token=true").flag("token"), Ok(true));
        assert_eq!(form("token=1").flag("token"), Ok(true));
        for off in [r#"{"token": false}"#, r#"{"token": "yes"}"#, "{}"] {
            assert_eq!(json(off).flag("token"), Ok(false), "{off}");
        }
        assert_eq!(form("token=0").flag("token"), Ok(false));
        assert_eq!(form("a=b").flag("token"), Ok(false));
        // Neither text nor a boolean: refused, as for any field read.
        assert_eq!(
            json(r#"{"token": 1}"#).flag("token"),
            Err(BodyError::NotFlag("token"))
        );
        // A boolean is no text where text is asked for.
        assert_eq!(
            json(r#"{"email": true}"#).required("email"),
            Err(BodyError::NotText("email"))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORM: &str = "application/x-www-form-urlencoded";

    #[test]
    fn form_decodes_plus_and_percent() {
        let fields = decode(FORM, b"email=a%40b.io&password=p+w%2Bd%C3%A9").unwrap();
        assert_eq!(fields.required("email").unwrap(), "a@b.io");
        assert_eq!(fields.required("password").unwrap(), "p w+dé");
    }

    #[test]
    fn form_edge_cases() {
        let fields = decode(FORM, b"&&email&password=").unwrap();
        assert_eq!(fields.required("email").unwrap(), "");
        assert_eq!(fields.required("password").unwrap(), "");
        assert_eq!(
            decode(FORM, b"email=%FF").unwrap_err(),
            BodyError::InvalidUtf8
        );
        assert_eq!(
            decode(FORM, b"email=\xff").unwrap_err(),
            BodyError::InvalidUtf8
        );
        assert_eq!(
            decode(FORM, b"email=a&email=b").unwrap_err(),
            BodyError::Duplicate("email".to_owned())
        );
        // A stray percent sign is kept, as browsers do.
        assert_eq!(
            decode(FORM, b"password=100%")
                .unwrap()
                .required("password")
                .unwrap(),
            "100%"
        );
    }

    #[test]
    fn json_requires_an_object_of_strings() {
        let fields = decode(
            "application/json; charset=utf-8",
            br#"{"email":"a@b.io","n":1}"#,
        )
        .unwrap();
        assert_eq!(fields.required("email").unwrap(), "a@b.io");
        assert_eq!(fields.required("n").unwrap_err(), BodyError::NotText("n"));
        assert_eq!(
            fields.required("password").unwrap_err(),
            BodyError::Missing("password")
        );
        assert_eq!(
            decode("application/json", b"[1]").unwrap_err(),
            BodyError::JsonNotObject
        );
        assert!(matches!(
            decode("application/json", b"{").unwrap_err(),
            BodyError::MalformedJson(_)
        ));
        assert_eq!(
            decode("application/json", b"{\"email\":\"\xff\"}").unwrap_err(),
            BodyError::InvalidUtf8
        );
        let deep = "[".repeat(10_000);
        assert!(matches!(
            decode("application/json", deep.as_bytes()).unwrap_err(),
            BodyError::MalformedJson(_)
        ));
    }

    #[test]
    fn multipart_fields_are_read() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\na@b.io\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\npw\r\n--XyZ--\r\n";
        let fields = decode("multipart/form-data; boundary=XyZ", body.as_bytes()).unwrap();
        assert_eq!(fields.required("email").unwrap(), "a@b.io");
        assert_eq!(fields.required("password").unwrap(), "pw");
        let quoted = decode("multipart/form-data; boundary=\"XyZ\"", body.as_bytes()).unwrap();
        assert_eq!(quoted.required("password").unwrap(), "pw");
    }

    #[test]
    fn multipart_errors() {
        assert!(matches!(
            decode("multipart/form-data", b"x").unwrap_err(),
            BodyError::MalformedMultipart(_)
        ));
        let dup = "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n\
                   --b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n2\r\n--b--\r\n";
        assert_eq!(
            decode("multipart/form-data; boundary=b", dup.as_bytes()).unwrap_err(),
            BodyError::Duplicate("a".to_owned())
        );
        let bad_utf8 =
            b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n\xff\r\n--b--\r\n";
        assert_eq!(
            decode("multipart/form-data; boundary=b", bad_utf8).unwrap_err(),
            BodyError::InvalidUtf8
        );
    }

    #[test]
    fn unknown_types_are_refused_and_empty_is_fine() {
        assert!(matches!(
            decode("text/plain", b"hi").unwrap_err(),
            BodyError::UnsupportedType(_)
        ));
        assert!(matches!(
            decode("", b"hi").unwrap_err(),
            BodyError::UnsupportedType(_)
        ));
        assert_eq!(
            decode("", b"").unwrap().required("email").unwrap_err(),
            BodyError::Missing("email")
        );
    }

    #[test]
    fn reading_stops_past_the_limit() {
        assert_eq!(read_limited(&b"12345"[..], 5).unwrap(), b"12345");
        assert_eq!(
            read_limited(&b"123456"[..], 5).unwrap_err(),
            BodyError::TooLarge(5)
        );
        // An endless body is cut at limit + 1 bytes.
        assert_eq!(
            read_limited(std::io::repeat(b'a'), 1024).unwrap_err(),
            BodyError::TooLarge(1024)
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    const TYPES: [&str; 6] = [
        "application/x-www-form-urlencoded",
        "application/json",
        "multipart/form-data; boundary=b",
        "multipart/form-data",
        "",
        "text/plain",
    ];

    proptest! {
        /// No body, however malformed, makes the decoder panic.
        #[test]
        fn decode_never_panics(kind in 0..TYPES.len(), body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(TYPES[kind], &body);
        }

        /// Any fields encoded as a form come back exactly.
        #[test]
        fn form_round_trips(fields in proptest::collection::btree_map("[a-z_]{1,8}", "\\PC{0,20}", 0..5)) {
            let body = fields
                .iter()
                .map(|(k, v)| {
                    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
                    format!("{}={}", enc(k), enc(v))
                })
                .collect::<Vec<_>>()
                .join("&");
            let decoded = decode("application/x-www-form-urlencoded", body.as_bytes()).unwrap();
            for (k, v) in &fields {
                prop_assert_eq!(decoded.0.get(k), Some(&Value::Text(v.clone())));
            }
            prop_assert_eq!(decoded.0.len(), fields.len());
        }

        /// Any fields encoded as JSON come back exactly.
        #[test]
        fn json_round_trips(fields in proptest::collection::btree_map("\\PC{1,8}", "\\PC{0,20}", 0..5)) {
            let body = serde_json::to_vec(&fields).unwrap();
            let decoded = decode("application/json", &body).unwrap();
            for (k, v) in &fields {
                prop_assert_eq!(decoded.0.get(k), Some(&Value::Text(v.clone())));
            }
        }
    }
}
