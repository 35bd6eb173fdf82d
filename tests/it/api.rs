//! The reference API against the real server: the reference client's flow,
//! every body format, and every class of bad input.

use authd::config::Profile;

use crate::common::raw::session_cookie_name;
use crate::common::{encode, Format, TestApp, FORMATS};
use serde_json::json;

const EMAIL: &str = "guillaume@holberton.io";
const PASSWD: &str = "b4l0u";
const NEW_PASSWD: &str = "t4rt1fl3tt3";

/// The reference's integration client, step by step.
fn reference_client_flow() {
    let app = TestApp::spawn();

    let reply = app.register(EMAIL, PASSWD);
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        json!({"email": EMAIL, "message": "user created"})
    );

    let reply = app.register(EMAIL, PASSWD);
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json(), json!({"message": "email already registered"}));

    assert_eq!(app.log_in(EMAIL, NEW_PASSWD).status, 401);
    assert_eq!(app.profile(None).status, 403);

    let reply = app.log_in(EMAIL, PASSWD);
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        json!({"email": EMAIL, "message": "logged in"})
    );
    let session = reply.session();

    let reply = app.profile(Some(&session));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!({"email": EMAIL}));

    // Log out: 302 to /, which the client follows and gets 200.
    let reply = app.log_out(Some(&session));
    assert_eq!(reply.status, 302);
    assert_eq!(reply.header("Location"), Some("/"));
    let home = app.request("GET", reply.header("Location").unwrap(), None, b"", None);
    assert_eq!(home.status, 200);
    assert_eq!(home.json(), json!({"message": "Bienvenue"}));
    assert_eq!(app.profile(Some(&session)).status, 403);

    let reply = app.reset_token(EMAIL);
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["email"], EMAIL);
    let token = body["reset_token"].as_str().unwrap().to_owned();
    assert_eq!(body.as_object().unwrap().len(), 2);

    let reply = app.update_password(EMAIL, &token, NEW_PASSWD);
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        json!({"email": EMAIL, "message": "Password updated"})
    );

    assert_eq!(app.log_in(EMAIL, NEW_PASSWD).status, 200);
    assert_eq!(app.log_in(EMAIL, PASSWD).status, 401);
    assert!(app.store_problems().is_empty());
}

fn every_route_accepts_form_multipart_and_json() {
    let app = TestApp::spawn();
    for (n, format) in FORMATS.into_iter().enumerate() {
        let email = format!("user{n}@example.com");
        let reply = app.send(
            "POST",
            "/users",
            format,
            &[("email", &email), ("password", "pw one")],
        );
        assert_eq!(reply.status, 200, "{format:?} {reply:?}");
        let reply = app.send(
            "POST",
            "/sessions",
            format,
            &[("email", &email), ("password", "pw one")],
        );
        assert_eq!(reply.status, 200, "{format:?} {reply:?}");
        let reply = app.send("POST", "/reset_password", format, &[("email", &email)]);
        assert_eq!(reply.status, 200, "{format:?} {reply:?}");
        let token = reply.json()["reset_token"].as_str().unwrap().to_owned();
        let reply = app.send(
            "PUT",
            "/reset_password",
            format,
            &[
                ("email", &email),
                ("reset_token", &token),
                ("new_password", "pw & two=2"),
            ],
        );
        assert_eq!(reply.status, 200, "{format:?} {reply:?}");
        assert_eq!(app.log_in(&email, "pw & two=2").status, 200, "{format:?}");
    }
}

fn get_root_and_trailing_slashes() {
    let app = TestApp::spawn();
    let reply = app.request("GET", "/", None, b"", None);
    assert_eq!(reply.json(), json!({"message": "Bienvenue"}));
    let reply = app.send(
        "POST",
        "/users/",
        Format::Form,
        &[("email", "a@b.io"), ("password", "p")],
    );
    assert_eq!(reply.status, 200);
    let reply = app.send(
        "POST",
        "/sessions/",
        Format::Form,
        &[("email", "a@b.io"), ("password", "p")],
    );
    assert_eq!(reply.status, 200);
    let session = reply.session();
    assert_eq!(
        app.request("GET", "/profile/", None, b"", Some(&session))
            .status,
        200
    );
    assert_eq!(
        app.send(
            "POST",
            "/reset_password/",
            Format::Form,
            &[("email", "a@b.io")]
        )
        .status,
        200
    );
    assert_eq!(
        app.request("DELETE", "/sessions/", None, b"", Some(&session))
            .status,
        302
    );
}

fn unknown_routes_and_wrong_methods_are_json() {
    let app = TestApp::spawn();
    for path in ["/nope", "/users/1", "/index.html", "/%FF"] {
        let reply = app.request("GET", path, None, b"", None);
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.message(), "not found");
    }
    let cases = [
        ("POST", "/", "GET"),
        ("GET", "/users", "POST"),
        ("PUT", "/sessions", "GET, POST, DELETE"),
        ("GET", "/sessions/abc", "DELETE"),
        ("POST", "/profile", "GET"),
        ("DELETE", "/reset_password", "POST, PUT"),
        ("PATCH", "/users", "POST"),
    ];
    for (method, path, allow) in cases {
        let reply = app.request(method, path, None, b"", None);
        assert_eq!(reply.status, 405, "{method} {path}");
        assert_eq!(reply.header("Allow"), Some(allow));
        assert!(reply.message().contains("not allowed"));
        assert!(reply
            .header("Content-Type")
            .unwrap()
            .starts_with("application/json"));
    }
}

/// What the reference answers where it looks a user up by what it was given:
/// a missing email, or an empty email, token or login password, is a wrong
/// one (401 on login, 403 on reset), never a 400. Other missing fields are
/// 400.
fn lookup_status(method: &str, path: &str, field: &str, missing: bool) -> Option<u16> {
    match (method, path, field, missing) {
        ("POST", "/sessions", "email", _) | ("POST", "/sessions", "password", false) => Some(401),
        ("POST", "/reset_password", "email", _) => Some(403),
        ("PUT", "/reset_password", "email", _)
        | ("PUT", "/reset_password", "reset_token", false) => Some(403),
        _ => None,
    }
}

fn missing_and_empty_fields_are_400_naming_the_field() {
    // Every format tries the same empty email: more failures than the
    // account backoff lets through by default.
    let app = TestApp::spawn_with(|c| c.limits.login_free_failures = 100);
    let routes: [(&str, &str, &[&str]); 4] = [
        ("POST", "/users", &["email", "password"]),
        ("POST", "/sessions", &["email", "password"]),
        ("POST", "/reset_password", &["email"]),
        (
            "PUT",
            "/reset_password",
            &["email", "reset_token", "new_password"],
        ),
    ];
    let valid = |name: &str| match name {
        "email" => "a@b.io",
        "reset_token" => "x".repeat(43).leak(),
        _ => "pw",
    };
    for format in FORMATS {
        for (method, path, names) in routes {
            for missing in names.iter() {
                let fields: Vec<(&str, &str)> = names
                    .iter()
                    .filter(|n| n != &missing)
                    .map(|n| (*n, valid(n)))
                    .collect();
                let reply = app.send(method, path, format, &fields);
                let expected = lookup_status(method, path, missing, true).unwrap_or(400);
                assert_eq!(
                    reply.status, expected,
                    "{format:?} {method} {path} without {missing}"
                );
                if expected == 400 {
                    assert_eq!(reply.message(), format!("missing field \"{missing}\""));
                }

                let fields: Vec<(&str, &str)> = names
                    .iter()
                    .map(|n| (*n, if n == missing { "" } else { valid(n) }))
                    .collect();
                let reply = app.send(method, path, format, &fields);
                let expected = lookup_status(method, path, missing, false).unwrap_or(400);
                assert_eq!(
                    reply.status, expected,
                    "{format:?} {method} {path} empty {missing}"
                );
                if expected == 400 {
                    assert!(reply.message().contains(missing), "{:?}", reply.message());
                }
            }
        }
        // No body at all.
        let reply = app.request("POST", "/users", None, b"", None);
        assert_eq!(reply.status, 400);
        assert_eq!(reply.message(), "missing field \"email\"");
    }
    assert_eq!(app.user_count(), 0);
}

fn malformed_bodies_are_400_and_change_nothing() {
    let app = TestApp::spawn();
    let json = Some("application/json");
    let form = Some("application/x-www-form-urlencoded");
    let cases: Vec<(Option<&str>, Vec<u8>, &str)> = vec![
        (json, b"{".to_vec(), "malformed JSON"),
        (json, b"not json".to_vec(), "malformed JSON"),
        (json, b"[\"a@b.io\", \"pw\"]".to_vec(), "must be an object"),
        (json, b"\"a@b.io\"".to_vec(), "must be an object"),
        (
            json,
            br#"{"email": 5, "password": "pw"}"#.to_vec(),
            "\"email\" must be a string",
        ),
        (
            json,
            br#"{"email": "a@b.io", "password": ["pw"]}"#.to_vec(),
            "\"password\" must be a string",
        ),
        (
            json,
            br#"{"email": "a@b.io", "password": null}"#.to_vec(),
            "\"password\" must be a string",
        ),
        (
            json,
            br#"{"email": {"$ne": 1}, "password": "pw"}"#.to_vec(),
            "\"email\" must be a string",
        ),
        (
            json,
            b"{\"email\": \"a\xff@b.io\", \"password\": \"pw\"}".to_vec(),
            "UTF-8",
        ),
        (json, "[".repeat(5000).into_bytes(), "malformed JSON"),
        (form, b"email=a%FF%40b.io&password=pw".to_vec(), "UTF-8"),
        (form, b"email=a\xff@b.io&password=pw".to_vec(), "UTF-8"),
        (
            form,
            b"email=a@b.io&email=c@d.io&password=pw".to_vec(),
            "more than once",
        ),
        (
            Some("multipart/form-data"),
            b"--x\r\n".to_vec(),
            "no boundary",
        ),
        (
            Some("multipart/form-data; boundary=zz"),
            b"garbage".to_vec(),
            "multipart",
        ),
        (
            Some("multipart/form-data; boundary=b"),
            b"--b\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\n\xff\r\n--b--\r\n"
                .to_vec(),
            "UTF-8",
        ),
    ];
    for (content_type, body, expect) in &cases {
        let reply = app.request("POST", "/users", *content_type, body, None);
        assert_eq!(
            reply.status,
            400,
            "{content_type:?} {:?}: {reply:?}",
            String::from_utf8_lossy(body)
        );
        assert!(
            reply.message().contains(expect),
            "{content_type:?}: {:?} lacks {expect:?}",
            reply.message()
        );
    }
    assert_eq!(app.user_count(), 0);
}

fn unsupported_content_types_are_415() {
    let app = TestApp::spawn();
    for content_type in [Some("text/plain"), Some("application/xml"), None] {
        let reply = app.request(
            "POST",
            "/users",
            content_type,
            b"email=a@b.io&password=pw",
            None,
        );
        assert_eq!(reply.status, 415, "{content_type:?}");
        assert!(reply.message().contains("Content-Type"));
    }
    assert_eq!(app.user_count(), 0);
}

fn oversized_bodies_are_413() {
    let app = TestApp::spawn_with(|c| c.max_body_bytes = 1024);
    let password = "p".repeat(2000);
    let (content_type, body) = encode(
        Format::Form,
        &[("email", "a@b.io"), ("password", &password)],
    );
    let reply = app.request("POST", "/users", Some(&content_type), &body, None);
    assert_eq!(reply.status, 413);
    assert!(reply.message().contains("1024"));
    // Just under the limit is read (and then refused for its content).
    let password = "p".repeat(900);
    let (content_type, body) = encode(
        Format::Form,
        &[("email", "a@b.io"), ("password", &password)],
    );
    let reply = app.request("POST", "/users", Some(&content_type), &body, None);
    assert_eq!(reply.status, 400);
    assert_eq!(app.user_count(), 0);
}

fn emails_are_trimmed_and_case_insensitive() {
    let app = TestApp::spawn();
    let reply = app.register("  Bob@Example.COM ", "pw");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["email"], "Bob@Example.COM");
    let reply = app.register("bob@example.com", "other");
    assert_eq!(reply.status, 400);
    assert_eq!(reply.message(), "email already registered");
    let reply = app.log_in("BOB@EXAMPLE.COM", "pw");
    assert_eq!(reply.status, 200);
    let session = reply.session();
    assert_eq!(
        app.profile(Some(&session)).json(),
        json!({"email": "Bob@Example.COM"})
    );
    let token = app.reset_token("bob@example.com").json()["reset_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.update_password("BOB@example.com", &token, "new").status,
        200
    );
    assert_eq!(app.user_count(), 1);
}

fn invalid_emails_are_400_on_registration_and_unknown_elsewhere() {
    let app = TestApp::spawn();
    let long = format!("{}@example.com", "a".repeat(250));
    let bad = [
        "no-at-sign",
        "@example.com",
        "bob@",
        "a@b@c.io",
        "b ob@x.io",
        "bob@x..io",
        &long,
    ];
    // What an unknown but valid address gets, byte for byte.
    let unknown_login = app.log_in("nobody@example.com", "pw");
    let unknown_reset = app.reset_token("nobody@example.com");
    assert_eq!(unknown_login.status, 401);
    assert_eq!(unknown_reset.status, 403);
    for email in bad {
        let reply = app.register(email, "pw");
        assert_eq!(reply.status, 400, "{email:?}");
        assert!(
            reply.message().starts_with("email"),
            "{:?}",
            reply.message()
        );
        let reply = app.log_in(email, "pw");
        assert_eq!(
            (reply.status, reply.text()),
            (401, unknown_login.text()),
            "{email:?}"
        );
        let reply = app.reset_token(email);
        assert_eq!(
            (reply.status, reply.text()),
            (403, unknown_reset.text()),
            "{email:?}"
        );
        let reply = app.update_password(email, &"x".repeat(43), "new");
        assert_eq!(reply.status, 403, "{email:?}");
        assert_eq!(reply.message(), "invalid reset token");
    }
    assert_eq!(app.user_count(), 0);
}

fn passwords_past_72_bytes_are_refused_not_truncated() {
    let app = TestApp::spawn();
    let p72 = "x".repeat(71) + "!";
    let p73 = p72.clone() + "?";
    let reply = app.register("long@x.io", &p73);
    assert_eq!(reply.status, 400);
    assert!(reply.message().contains("72 bytes"));
    assert_eq!(app.user_count(), 0);

    assert_eq!(app.register("long@x.io", &p72).status, 200);
    assert_eq!(app.log_in("long@x.io", &p72).status, 200);
    // Neither a prefix nor a longer password with that prefix logs in.
    assert_eq!(app.log_in("long@x.io", &p72[..71]).status, 401);
    // A password no account can have is a wrong password, as it is for
    // the reference.
    assert_eq!(app.log_in("long@x.io", &p73).status, 401);
    // Multi-byte characters count in bytes.
    assert_eq!(app.register("euro@x.io", &"€".repeat(25)).status, 400);
    assert_eq!(app.register("euro@x.io", &"€".repeat(24)).status, 200);
}

fn cookie_attributes_and_secure_option() {
    let app = TestApp::spawn();
    assert_eq!(app.register("a@b.io", "pw").status, 200);
    let reply = app.log_in("a@b.io", "pw");
    let token = reply.session();
    assert_eq!(token.len(), 43);
    let name = session_cookie_name(Profile::Dev);
    assert_eq!(
        reply.set_cookie(name).unwrap(),
        format!("session_id={token}; Max-Age=86400; HttpOnly; SameSite=Lax; Path=/")
    );
    let reply = app.log_out(Some(&token));
    let cleared = reply.set_cookie(name).unwrap();
    assert!(cleared.starts_with("session_id=;"), "{cleared}");
    assert!(
        cleared.contains("Max-Age=0") && cleared.contains("Path=/"),
        "{cleared}"
    );

    let secure = TestApp::spawn_with(|c| c.secure_cookies = true);
    assert_eq!(secure.register("a@b.io", "pw").status, 200);
    let reply = secure.log_in("a@b.io", "pw");
    assert!(reply.set_cookie(name).unwrap().ends_with("; Secure"));
}

fn common_headers_on_every_answer() {
    let app = TestApp::spawn();
    let replies = [
        app.request("GET", "/", None, b"", None),
        app.register("a@b.io", "pw"),
        app.log_in("a@b.io", "pw"),
        app.reset_token("a@b.io"),
        app.profile(None),
        app.request("GET", "/nowhere", None, b"", None),
    ];
    for reply in replies {
        assert_eq!(
            reply.header("X-Content-Type-Options"),
            Some("nosniff"),
            "{reply:?}"
        );
        assert_eq!(reply.header("Cache-Control"), Some("no-store"), "{reply:?}");
        assert!(reply
            .header("Content-Type")
            .unwrap()
            .starts_with("application/json"));
    }
}

crate::on_every_store!(
    reference_client_flow,
    every_route_accepts_form_multipart_and_json,
    get_root_and_trailing_slashes,
    unknown_routes_and_wrong_methods_are_json,
    missing_and_empty_fields_are_400_naming_the_field,
    malformed_bodies_are_400_and_change_nothing,
    unsupported_content_types_are_415,
    oversized_bodies_are_413,
    emails_are_trimmed_and_case_insensitive,
    invalid_emails_are_400_on_registration_and_unknown_elsewhere,
    passwords_past_72_bytes_are_refused_not_truncated,
    cookie_attributes_and_secure_option,
    common_headers_on_every_answer,
);
