//! A user's sessions: several at once, listed with `GET /sessions`, ended
//! one by one (`DELETE /sessions/<id>`), all others or all
//! (`DELETE /sessions?scope=`), and what a password reset ends.

use crate::common::TestApp;

/// `GET /sessions` with the session `token`: the list, newest first.
fn sessions(app: &TestApp, token: &str) -> Vec<serde_json::Value> {
    let reply = app.request("GET", "/sessions", None, b"", Some(token));
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("Content-Type"), Some("application/json"));
    reply.json()["sessions"].as_array().unwrap().clone()
}

/// Logs in with this `User-Agent` (or none); returns the session token.
fn log_in_as(app: &TestApp, email: &str, password: &str, agent: Option<&str>) -> String {
    let mut headers = vec![(
        "Content-Type",
        "application/x-www-form-urlencoded".to_owned(),
    )];
    if let Some(agent) = agent {
        headers.push(("User-Agent", agent.to_owned()));
    }
    let body = format!("email={email}&password={password}");
    let reply = app.request_with("POST", "/sessions", &headers, body.as_bytes());
    assert_eq!(reply.status, 200, "{reply:?}");
    app.session_of(&reply)
}

fn the_list_shows_each_device_newest_first() {
    let app = TestApp::spawn();
    assert_eq!(app.register("a@b.io", "pw").status, 200);
    let laptop = log_in_as(&app, "a@b.io", "pw", Some("laptop/1"));
    // The edge takes ASCII heads only; 300 characters, 256 kept.
    let long = "Mozilla/5.0 ".repeat(25);
    let phone = log_in_as(&app, "a@b.io", "pw", Some(&long));
    let bare = log_in_as(&app, "a@b.io", "pw", None);
    let list = sessions(&app, &phone);
    assert_eq!(list.len(), 3, "{list:?}");
    let keys: Vec<&str> = list[0]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "created_at",
            "current",
            "id",
            "ip",
            "last_seen_at",
            "user_agent"
        ]
    );
    // Newest first: the one without an agent, the phone, the laptop.
    assert_eq!(list[0]["user_agent"], serde_json::Value::Null);
    assert_eq!(
        list[1]["user_agent"].as_str().unwrap().chars().count(),
        256,
        "cut at 256 characters"
    );
    assert_eq!(list[2]["user_agent"], "laptop/1");
    let current: Vec<bool> = list
        .iter()
        .map(|s| s["current"].as_bool().unwrap())
        .collect();
    assert_eq!(current, [false, true, false]);
    for session in &list {
        assert_eq!(session["ip"], "127.0.0.1");
        let created = session["created_at"].as_str().unwrap();
        assert!(
            created.len() == 20 && created.ends_with('Z') && created.as_bytes()[10] == b'T',
            "RFC 3339 UTC to the second: {created}"
        );
        let id = session["id"].as_str().unwrap();
        assert_eq!(id.len(), 22);
        // The handle is not the token, nor part of it.
        for token in [&laptop, &phone, &bare] {
            assert!(!token.contains(id));
        }
    }
    // Without a session: 403.
    let reply = app.request("GET", "/sessions", None, b"", None);
    assert_eq!(reply.status, 403);
    assert_eq!(reply.message(), "no valid session");
}

fn a_session_ends_by_its_id_and_only_its_owners() {
    let app = TestApp::spawn();
    let first = app.signed_in("a@b.io", "pw");
    let second = app.log_in("a@b.io", "pw").session();
    let other = app.signed_in("c@d.io", "pw");
    let list = sessions(&app, &second);
    let first_id = list[1]["id"].as_str().unwrap().to_owned();
    assert_eq!(list[1]["current"], false);
    // Another user cannot end it, nor learn it exists.
    let reply = app.request(
        "DELETE",
        &format!("/sessions/{first_id}"),
        None,
        b"",
        Some(&other),
    );
    assert_eq!(reply.status, 404);
    assert_eq!(reply.message(), "session not found");
    assert_eq!(app.profile(Some(&first)).status, 200);
    // Its owner can, from another device; the cookie of this one stays.
    let reply = app.request(
        "DELETE",
        &format!("/sessions/{first_id}"),
        None,
        b"",
        Some(&second),
    );
    assert_eq!(reply.status, 204, "{reply:?}");
    assert!(reply.text().is_empty());
    assert!(reply.header("Set-Cookie").is_none(), "{reply:?}");
    assert_eq!(app.profile(Some(&first)).status, 403);
    assert_eq!(app.profile(Some(&second)).status, 200);
    // Again, or an id of no session at all: 404.
    for id in [
        first_id.as_str(),
        "AAAAAAAAAAAAAAAAAAAAAA",
        "not-an-id",
        "%00",
    ] {
        let reply = app.request(
            "DELETE",
            &format!("/sessions/{id}"),
            None,
            b"",
            Some(&second),
        );
        assert_eq!(reply.status, 404, "{id}: {reply:?}");
    }
    // Its own current session: ended, and the cookie cleared.
    let own = sessions(&app, &second)[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let reply = app.request(
        "DELETE",
        &format!("/sessions/{own}/"),
        None,
        b"",
        Some(&second),
    );
    assert_eq!(reply.status, 204, "{reply:?}");
    let cleared = reply.header("Set-Cookie").unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(app.profile(Some(&second)).status, 403);
    // Without a session: 403.
    let reply = app.request("DELETE", &format!("/sessions/{own}"), None, b"", None);
    assert_eq!(reply.status, 403);
    assert!(app.store_problems().is_empty());
}

fn scopes_end_the_others_or_all() {
    let app = TestApp::spawn();
    let tokens: Vec<String> = std::iter::once(app.signed_in("a@b.io", "pw"))
        .chain((0..3).map(|_| app.log_in("a@b.io", "pw").session()))
        .collect();
    let reply = app.request(
        "DELETE",
        "/sessions?scope=sideways",
        None,
        b"",
        Some(&tokens[3]),
    );
    assert_eq!(reply.status, 400);
    assert_eq!(reply.message(), "scope must be \"others\" or \"global\"");
    assert_eq!(app.token_counts().0, 4, "a refused scope ends nothing");

    let reply = app.request(
        "DELETE",
        "/sessions?scope=others",
        None,
        b"",
        Some(&tokens[3]),
    );
    assert_eq!(reply.status, 204, "{reply:?}");
    assert!(reply.header("Set-Cookie").is_none());
    for token in &tokens[..3] {
        assert_eq!(app.profile(Some(token)).status, 403);
    }
    assert_eq!(app.profile(Some(&tokens[3])).status, 200);

    let more = app.log_in("a@b.io", "pw").session();
    let reply = app.request("DELETE", "/sessions?scope=global", None, b"", Some(&more));
    assert_eq!(reply.status, 302, "{reply:?}");
    assert_eq!(reply.header("Location"), Some("/"));
    assert!(reply.header("Set-Cookie").unwrap().contains("Max-Age=0"));
    for token in [&tokens[3], &more] {
        assert_eq!(app.profile(Some(token)).status, 403);
    }
    assert_eq!(app.token_counts().0, 0);
    assert!(app.store_problems().is_empty());
}

fn a_reset_ends_every_session_and_logout_only_its_own() {
    let app = TestApp::spawn();
    let laptop = app.signed_in("a@b.io", "pw");
    let phone = app.log_in("a@b.io", "pw").session();
    assert_eq!(app.log_out(Some(&phone)).status, 302);
    assert_eq!(app.profile(Some(&laptop)).status, 200);
    let tablet = app.log_in("a@b.io", "pw").session();
    let reply = app.reset_token("a@b.io");
    let token = reply.json()["reset_token"].as_str().unwrap().to_owned();
    assert_eq!(app.update_password("a@b.io", &token, "new").status, 200);
    for session in [&laptop, &tablet] {
        assert_eq!(app.profile(Some(session)).status, 403);
    }
    assert_eq!(app.token_counts(), (0, 0));
}

crate::on_every_store!(
    the_list_shows_each_device_newest_first,
    a_login_ends_the_session_its_client_presents,
    a_session_ends_by_its_id_and_only_its_owners,
    scopes_end_the_others_or_all,
    a_reset_ends_every_session_and_logout_only_its_own,
);

/// A login from a client that presents a session ends that session: its
/// cookie is about to be overwritten, so nothing would end it otherwise.
fn a_login_ends_the_session_its_client_presents() {
    let app = TestApp::spawn();
    let first = app.signed_in("a@b.io", "pw");
    let laptop = app.log_in("a@b.io", "pw").session();
    assert_eq!(app.register("c@d.io", "pw").status, 200);
    // The same browser logs in again, then as another user.
    let headers = [
        (
            "Content-Type",
            "application/x-www-form-urlencoded".to_owned(),
        ),
        app.cookie(&first),
    ];
    let reply = app.request_with("POST", "/sessions", &headers, b"email=a%40b.io&password=pw");
    let second = app.session_of(&reply);
    assert_eq!(app.profile(Some(&first)).status, 403);
    let headers = [
        (
            "Content-Type",
            "application/x-www-form-urlencoded".to_owned(),
        ),
        app.cookie(&second),
    ];
    let reply = app.request_with("POST", "/sessions", &headers, b"email=c%40d.io&password=pw");
    assert_eq!(reply.status, 200);
    assert_eq!(app.profile(Some(&second)).status, 403);
    // The other device was not presented: it lives on.
    assert_eq!(app.profile(Some(&laptop)).status, 200);
    // A failed login ends nothing.
    let headers = [
        (
            "Content-Type",
            "application/x-www-form-urlencoded".to_owned(),
        ),
        app.cookie(&laptop),
    ];
    let reply = app.request_with("POST", "/sessions", &headers, b"email=a%40b.io&password=no");
    assert_eq!(reply.status, 401);
    assert_eq!(app.profile(Some(&laptop)).status, 200);
    assert!(app.store_problems().is_empty());
}
