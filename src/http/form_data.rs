//! `multipart/form-data` bodies of text fields, parsed strictly (RFC 7578,
//! and RFC 2046 section 5.1 for the framing).
//!
//! The `multipart` crate this replaces cut a part's name at its first `;`
//! and took a `filename` written before `name` for the name, so a proxy
//! that reads `name="email;x"` and authd could see different fields in one
//! body (found by fuzzing the OpenAPI document). Here a name is a token or
//! a quoted string, read whole; a part must say `form-data` and give its
//! name exactly once; file parts are refused, since no route takes one.

/// The parts of `body`, as (name, content), in order.
pub fn parse(boundary: &str, body: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    check_boundary(boundary)?;
    let dash = format!("--{boundary}").into_bytes();
    let mut delimiter = b"\r\n".to_vec();
    delimiter.extend_from_slice(&dash);
    // The first delimiter, after an optional preamble.
    let mut pos = if body.starts_with(&dash) {
        dash.len()
    } else {
        find(body, &delimiter).ok_or("no boundary line")? + delimiter.len()
    };
    let mut parts = Vec::new();
    loop {
        let rest = &body[pos..];
        if rest.starts_with(b"--") {
            // The closing delimiter; an epilogue may follow.
            return Ok(parts);
        }
        // Transport padding, then the line break that starts the part.
        let padding = rest
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        if !rest[padding..].starts_with(b"\r\n") {
            return Err("a boundary line does not end in CRLF".to_owned());
        }
        let start = pos + padding + 2;
        let length = find(&body[start..], &delimiter).ok_or("no closing boundary")?;
        parts.push(part(&body[start..start + length])?);
        pos = start + length + delimiter.len();
    }
}

/// RFC 2046: 1 to 70 characters from a small set, not ending in a space.
fn check_boundary(boundary: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "'()+_,-./:=? ".contains(c);
    if boundary.is_empty()
        || boundary.len() > 70
        || boundary.ends_with(' ')
        || !boundary.chars().all(allowed)
    {
        return Err("invalid boundary".to_owned());
    }
    Ok(())
}

/// One part: its headers, a blank line, its content.
fn part(raw: &[u8]) -> Result<(String, Vec<u8>), String> {
    let split = find(raw, b"\r\n\r\n").ok_or("a part has no blank line after its headers")?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| "a part header is not UTF-8")?;
    let mut name = None;
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            return Err("a folded part header".to_owned());
        }
        let (field, value) = line
            .split_once(':')
            .ok_or("a part header without a colon")?;
        if field.is_empty() || !field.bytes().all(is_token_byte) {
            return Err("an invalid part header name".to_owned());
        }
        if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Err("a control character in a part header".to_owned());
        }
        if field.eq_ignore_ascii_case("Content-Disposition") {
            if name.is_some() {
                return Err("a part with two Content-Disposition headers".to_owned());
            }
            name = Some(disposition(value.trim())?);
        }
    }
    let name = name.ok_or("a part without Content-Disposition")?;
    Ok((name, raw[split + 4..].to_vec()))
}

/// `form-data; name="..."`: the name; anything else refused.
fn disposition(value: &str) -> Result<String, String> {
    let (kind, mut params) = match value.split_once(';') {
        Some((kind, params)) => (kind.trim(), params),
        None => (value, ""),
    };
    if !kind.eq_ignore_ascii_case("form-data") {
        return Err("a part that is not form-data".to_owned());
    }
    let mut name = None;
    loop {
        params = params.trim_start_matches([' ', '\t']);
        if params.is_empty() {
            break;
        }
        let (key, rest) = params
            .split_once('=')
            .ok_or("a parameter without a value")?;
        let key = key.trim();
        let (value, rest) = parameter_value(rest.trim_start_matches([' ', '\t']))?;
        match key.to_ascii_lowercase().as_str() {
            "name" if name.is_none() => name = Some(value),
            "name" => return Err("a part named twice".to_owned()),
            "filename" | "filename*" => return Err("file parts are not accepted".to_owned()),
            _ if key.bytes().all(is_token_byte) && !key.is_empty() => {}
            _ => return Err("an invalid parameter".to_owned()),
        }
        let rest = rest.trim_start_matches([' ', '\t']);
        params = match rest.strip_prefix(';') {
            Some(next) => next,
            None if rest.is_empty() => "",
            None => return Err("garbage after a parameter".to_owned()),
        };
    }
    name.ok_or_else(|| "a part without a name".to_owned())
}

/// A token, or a quoted string; returns it and the rest. Inside quotes a
/// backslash is an ordinary character: clients follow the WHATWG encoding
/// (browsers, Python's requests), which writes `"` as `%22` and never
/// escapes with a backslash.
fn parameter_value(text: &str) -> Result<(String, &str), String> {
    let Some(quoted) = text.strip_prefix('"') else {
        let end = text
            .find(|c: char| !c.is_ascii() || !is_token_byte(c as u8))
            .unwrap_or(text.len());
        if end == 0 {
            return Err("an empty parameter value".to_owned());
        }
        return Ok((text[..end].to_owned(), &text[end..]));
    };
    match quoted.split_once('"') {
        Some((value, rest)) => Ok((value.to_owned(), rest)),
        None => Err("an unterminated quoted string".to_owned()),
    }
}

/// RFC 9110 token characters.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(parts: &[(&str, &str)]) -> Vec<u8> {
        let mut out = String::new();
        for (disposition, content) in parts {
            out.push_str(&format!(
                "--B\r\nContent-Disposition: {disposition}\r\n\r\n{content}\r\n"
            ));
        }
        out.push_str("--B--\r\n");
        out.into_bytes()
    }

    #[test]
    fn fields_are_read_whole() {
        let parts = parse(
            "B",
            &body(&[
                ("form-data; name=\"email\"", "a@b.io"),
                ("form-data; name=password", "p;w\r\nx"),
                ("FORM-DATA ; name=\"a;b \\c\u{99}\"", ""),
            ]),
        )
        .unwrap();
        assert_eq!(
            parts,
            [
                ("email".to_owned(), b"a@b.io".to_vec()),
                ("password".to_owned(), b"p;w\r\nx".to_vec()),
                ("a;b \\c\u{99}".to_owned(), b"".to_vec()),
            ]
        );
        // A preamble, padding after a boundary, an epilogue.
        let raw =
            b"ignored\r\n--B  \r\nContent-Disposition: form-data; name=x\r\n\r\n1\r\n--B--tail";
        assert_eq!(parse("B", raw).unwrap(), [("x".to_owned(), b"1".to_vec())]);
    }

    #[test]
    fn what_a_proxy_could_read_otherwise_is_refused() {
        for disposition in [
            "form-data; filename=\"email\"; name=\"x\"",
            "form-data; name=\"x\"; name=\"email\"",
            "form-data; name=\"email",
            "form-data",
            "attachment; name=\"email\"",
            "form-data; name=",
            "form-data; name=email x",
        ] {
            assert!(
                parse("B", &body(&[(disposition, "v")])).is_err(),
                "{disposition}"
            );
        }
        for raw in [
            &b"--B\r\nContent-Disposition: form-data; name=x\r\n\r\nno end"[..],
            b"--B\r\n\r\nno headers\r\n--B--",
            b"--B\r\nContent-Disposition: form-data; name=a\x01\r\n\r\nv\r\n--B--",
            b"--B\r\n Content-Disposition: form-data; name=x\r\n\r\nv\r\n--B--",
            b"no boundary at all",
        ] {
            assert!(
                parse("B", raw).is_err(),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        assert!(parse("", b"--\r\n").is_err());
        assert!(parse(&"b".repeat(71), b"").is_err());
    }
}
