//! `/sessions`: log in (`POST`), log out (`DELETE`), a user's list of
//! sessions (`GET`), and ending them (`DELETE /sessions/<id>`,
//! `DELETE /sessions?scope=others|global`).

use rouille::{Request, Response};
use serde_json::json;

use crate::auth::{Caller, Scope};
use crate::http::body::read_fields;
use crate::http::error::ApiError;
use crate::http::json;
use crate::http::{cookie, App};
use crate::session::Session;

/// Logs in: 200 `{"email", "message": "logged in"}` and a fresh session
/// cookie, 401 for any wrong email/password pair, 429 (before any bcrypt
/// work) while the account or the client IP is backing off. In production
/// 403 first for a cross-site request: a page elsewhere must not log its
/// visitor into an account it controls (login CSRF). The device cookie
/// is carried in and, when the use case gives one (production), out.
/// With `token` set (JSON `true`, or `true`/`1`), the answer also carries
/// `session_token`, for clients that authenticate with a Bearer header.
/// An account with a second factor needs `totp` too (a current code or a
/// recovery code): 401 `totp required` without it, `invalid totp code`
/// for a wrong one.
pub fn post(app: &App, request: &Request, caller: &Caller) -> Result<Response, ApiError> {
    app.refuse_cross_site(request)?;
    let fields = read_fields(request, app.settings.max_body_bytes)?;
    let typed = fields.optional("email")?.unwrap_or("");
    let password = fields.required("password")?;
    let totp = fields.optional("totp")?;
    let wants_token = fields.flag("token")?;
    let caller = Caller {
        user_agent: request.header("User-Agent").map(str::to_owned),
        ..caller.clone()
    };
    // The session this client presents, if any, ends with the login that
    // overwrites its cookie.
    let replacing = cookie::session_token(request, app.settings.cookie_name);
    let device = cookie::device_cookie(request);
    let login = app.auth.log_in_from_device(
        &caller,
        typed,
        password,
        totp,
        replacing.as_ref(),
        device.as_ref(),
    )?;
    // `token` asks for the session token in the answer too (API clients,
    // which send it back as a Bearer token); without it the answer is the
    // reference's.
    let response = if wants_token {
        json::fields(&[
            ("email", login.user.email.as_str()),
            ("message", "logged in"),
            ("session_token", login.token.as_str()),
        ])
    } else {
        json::fields(&[
            ("email", login.user.email.as_str()),
            ("message", "logged in"),
        ])
    };
    let response = cookie::set_session(
        response,
        app.settings.cookie_name,
        &login.token,
        app.auth.lifetimes().session,
        app.settings.secure_cookies,
    );
    Ok(match &login.device {
        Some(device) => cookie::set_device(response, device),
        None => response,
    })
}

/// The 302 to `/` that clears the cookie: the reference's logout answer.
fn logged_out(app: &App) -> Response {
    cookie::clear_session(
        Response::redirect_302("/"),
        app.settings.cookie_name,
        app.settings.secure_cookies,
    )
}

/// `DELETE /sessions`: without `scope`, logs out (the reference): ends this
/// session, clears the cookie and redirects (302) to `/`. `scope=others`
/// ends every other session of the caller's (204); `scope=global` ends all
/// of them, answered like a logout. Another scope: 400. 403 without a
/// valid session, and in production 403 for a cross-site request.
pub fn delete(app: &App, request: &Request, caller: &Caller) -> Result<Response, ApiError> {
    let token = super::state_change(app, request)?;
    let scope = match scope(request.raw_query_string()) {
        Ok(None) => None,
        Ok(Some("others")) => Some(Scope::Others),
        Ok(Some("global")) => Some(Scope::Global),
        _ => {
            // Who asks is settled first: without a live session, 403.
            app.auth.authenticate(&token)?;
            return Err(ApiError::BadRequest(
                "scope must be \"others\" or \"global\"".to_owned(),
            ));
        }
    };
    match scope {
        None => {
            app.auth.log_out(caller, &token)?;
            Ok(logged_out(app))
        }
        Some(Scope::Others) => {
            app.auth.end_sessions(caller, &token, Scope::Others)?;
            Ok(Response::empty_204())
        }
        Some(Scope::Global) => {
            app.auth.end_sessions(caller, &token, Scope::Global)?;
            Ok(logged_out(app))
        }
    }
}

/// The `scope` of a query string, percent-decoded; other parameters are
/// ignored, as the reference ignores the query. `Err` for a `scope` given
/// twice or that does not decode.
fn scope(query: &str) -> Result<Option<&'static str>, ()> {
    let mut found = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name != "scope" {
            continue;
        }
        if found.is_some() {
            return Err(());
        }
        let value = percent_encoding::percent_decode_str(value)
            .decode_utf8()
            .map_err(|_| ())?;
        found = Some(match value.as_ref() {
            "others" => "others",
            "global" => "global",
            _ => "",
        });
    }
    Ok(found)
}

/// `DELETE /sessions/<id>`: ends that session of the caller's, 204 (its
/// own current one: the cookie is cleared too); 404 `{"message": "session
/// not found"}` for an unknown id or another user's.
pub fn delete_one(
    app: &App,
    request: &Request,
    caller: &Caller,
    id: &str,
) -> Result<Response, ApiError> {
    let token = super::state_change(app, request)?;
    let was_current = app.auth.end_session(caller, &token, id)?;
    let response = Response::empty_204();
    Ok(if was_current {
        cookie::clear_session(
            response,
            app.settings.cookie_name,
            app.settings.secure_cookies,
        )
    } else {
        response
    })
}

/// `GET /sessions`: 200 `{"sessions": [...]}`, the caller's sessions newest
/// first, each `{"created_at", "current", "id", "ip", "last_seen_at",
/// "user_agent"}`; 403 without a valid session.
pub fn list(app: &App, request: &Request) -> Result<Response, ApiError> {
    let token = super::session(app, request)?;
    let (current, sessions) = app.auth.list_sessions(&token)?;
    let sessions: Vec<_> = sessions
        .iter()
        .map(|session| describe(session, session.id == current))
        .collect();
    Ok(json::response(&json!({ "sessions": sessions })))
}

fn describe(session: &Session, current: bool) -> serde_json::Value {
    json!({
        "created_at": crate::clock::rfc3339(session.created_at),
        "current": current,
        "id": session.id.to_string(),
        "ip": session.ip,
        "last_seen_at": crate::clock::rfc3339(session.last_seen),
        "user_agent": session.user_agent,
    })
}

#[cfg(test)]
mod tests {
    use super::scope;

    #[test]
    fn the_scope_is_read_alone_and_once() {
        assert_eq!(scope(""), Ok(None));
        assert_eq!(scope("x=1&y=2&x=3"), Ok(None));
        assert_eq!(scope("scope=others"), Ok(Some("others")));
        assert_eq!(scope("a=1&scope=%67lobal"), Ok(Some("global")));
        assert_eq!(scope("scope=sideways"), Ok(Some("")));
        assert_eq!(scope("scope=others=x"), Ok(Some("")));
        assert_eq!(scope("scope="), Ok(Some("")));
        assert_eq!(scope("scope=others&scope=others"), Err(()));
        assert_eq!(scope("scope=%ff"), Err(()));
    }
}
