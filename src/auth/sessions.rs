//! Sessions: the check behind every authenticated request, logout, and a
//! user's own list of sessions (`GET /sessions`, `DELETE /sessions/<id>`,
//! `DELETE /sessions?scope=...`).

use super::{Auth, AuthError, Caller};
use crate::audit::Event;
use crate::clock::unix_millis;
use crate::session::{Session, SessionId};
use crate::token::Token;
use crate::user::User;

/// Which sessions `DELETE /sessions?scope=` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every session of the caller's but the current one.
    Others,
    /// Every session of the caller's, the current one included.
    Global,
}

impl Auth {
    /// The user whose live session token is `token` (the reference's
    /// `get_user_from_session_id`).
    pub fn get_user_from_session_id(&self, token: &Token) -> Result<User, AuthError> {
        self.authenticate(token).map(|(_, user)| user)
    }

    /// The live session of `token` and its user: at most two reads (the
    /// session record, the user record). An expired session is removed on
    /// the spot and answers like an unknown one; a live one has its idle
    /// window extended when it has grown stale enough to be worth a write.
    pub fn authenticate(&self, token: &Token) -> Result<(Session, User), AuthError> {
        let (session, user) = self.live_session(token)?;
        let now = unix_millis();
        if now.saturating_sub(session.last_seen) >= self.rules.lifetimes.touch_interval() {
            // Best effort: failing to extend the idle window must not fail
            // the request it belongs to.
            if let Err(e) = self.store.touch_session(&session.token_hash, now) {
                eprintln!("authd: could not record session activity: {e}");
            }
        }
        Ok((session, user))
    }

    /// The session of `token` and its user if it is live; an expired one
    /// is removed. Records no activity.
    fn live_session(&self, token: &Token) -> Result<(Session, User), AuthError> {
        let hash = token.hash();
        let Some((session, user)) = self.store.session(&hash)? else {
            return Err(AuthError::InvalidSession);
        };
        if self
            .rules
            .lifetimes
            .session_expired(&session, unix_millis())
        {
            self.store.end_session(&hash)?;
            return Err(AuthError::InvalidSession);
        }
        Ok((session, user))
    }

    /// Ends the session of `token` on the server (logout), and only that
    /// one: the user's other sessions live on. Audited as `logout`.
    pub fn log_out(&self, caller: &Caller, token: &Token) -> Result<User, AuthError> {
        let user = self.destroy_session(token)?;
        self.record(
            Event::Logout,
            caller,
            Some(user.id),
            Some(user.email.as_str()),
        );
        Ok(user)
    }

    /// Ends the session `token` (the reference's `destroy_session`).
    pub fn destroy_session(&self, token: &Token) -> Result<User, AuthError> {
        // No activity to record on a session about to end.
        let (session, user) = self.live_session(token)?;
        if !self.store.end_session(&session.token_hash)? {
            return Err(AuthError::InvalidSession);
        }
        Ok(user)
    }

    /// The caller's sessions, newest first, with the current one's handle.
    pub fn list_sessions(&self, token: &Token) -> Result<(SessionId, Vec<Session>), AuthError> {
        let (current, user) = self.authenticate(token)?;
        let now = unix_millis();
        let sessions = self
            .store
            .sessions_of(user.id)?
            .into_iter()
            // Expired but not yet swept: not shown.
            .filter(|s| !self.rules.lifetimes.session_expired(s, now))
            .collect();
        Ok((current.id, sessions))
    }

    /// Ends the caller's session with handle `id`; returns whether it was
    /// the current one (whose cookie should then be cleared too). An
    /// unknown handle, or another user's, is `SessionNotFound`.
    pub fn end_session(&self, caller: &Caller, token: &Token, id: &str) -> Result<bool, AuthError> {
        let (current, user) = self.authenticate(token)?;
        let id = SessionId::parse(id).ok_or(AuthError::SessionNotFound)?;
        if !self.store.end_session_by_id(user.id, id)? {
            return Err(AuthError::SessionNotFound);
        }
        self.record(
            Event::SessionEnded,
            caller,
            Some(user.id),
            Some(user.email.as_str()),
        );
        Ok(id == current.id)
    }

    /// Ends the caller's sessions in `scope`; returns how many ended.
    pub fn end_sessions(
        &self,
        caller: &Caller,
        token: &Token,
        scope: Scope,
    ) -> Result<usize, AuthError> {
        let (current, user) = self.authenticate(token)?;
        let keep = match scope {
            Scope::Others => Some(&current.token_hash),
            Scope::Global => None,
        };
        let ended = self.store.end_sessions_of(user.id, keep)?;
        let event = match scope {
            Scope::Others => Event::SessionEnded,
            Scope::Global => Event::Logout,
        };
        self.record(event, caller, Some(user.id), Some(user.email.as_str()));
        Ok(ended)
    }
}

#[cfg(test)]
mod tests {
    use super::Scope;
    use crate::auth::test_support::*;
    use crate::auth::AuthError;

    #[test]
    fn sessions_are_several_and_end_one_by_one() {
        let (_dir, auth) = auth();
        auth.register_user(&email("a@x.io"), &password("pw"))
            .unwrap();
        let (_, first) = auth.log_in(&caller(), "a@x.io", "pw", None).unwrap();
        let (_, second) = auth.log_in(&caller(), "a@x.io", "pw", None).unwrap();
        // Logging in on a second device keeps the first.
        assert!(auth.get_user_from_session_id(&first).is_ok());
        let (current, list) = auth.list_sessions(&second).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].id, current);
        assert_eq!(list[0].user_agent.as_deref(), Some("test"));
        // Ending the first by its handle from the second.
        let was_current = auth
            .end_session(&caller(), &second, &list[1].id.to_string())
            .unwrap();
        assert!(!was_current);
        assert!(matches!(
            auth.get_user_from_session_id(&first),
            Err(AuthError::InvalidSession)
        ));
        assert!(matches!(
            auth.end_session(&caller(), &second, &list[1].id.to_string()),
            Err(AuthError::SessionNotFound)
        ));
        auth.destroy_session(&second).unwrap();
        assert!(matches!(
            auth.destroy_session(&second),
            Err(AuthError::InvalidSession)
        ));
    }

    #[test]
    fn another_users_session_is_not_found() {
        let (_dir, auth) = auth();
        for who in ["a@x.io", "b@x.io"] {
            auth.register_user(&email(who), &password("pw")).unwrap();
        }
        let (_, a) = auth.log_in(&caller(), "a@x.io", "pw", None).unwrap();
        let (_, b) = auth.log_in(&caller(), "b@x.io", "pw", None).unwrap();
        let (b_id, _) = auth.list_sessions(&b).unwrap();
        assert!(matches!(
            auth.end_session(&caller(), &a, &b_id.to_string()),
            Err(AuthError::SessionNotFound)
        ));
        assert!(auth.get_user_from_session_id(&b).is_ok());
    }

    #[test]
    fn scopes_end_others_or_all() {
        let (_dir, auth) = auth();
        auth.register_user(&email("a@x.io"), &password("pw"))
            .unwrap();
        let tokens: Vec<_> = (0..3)
            .map(|_| auth.log_in(&caller(), "a@x.io", "pw", None).unwrap().1)
            .collect();
        assert_eq!(
            auth.end_sessions(&caller(), &tokens[2], Scope::Others)
                .unwrap(),
            2
        );
        assert!(auth.get_user_from_session_id(&tokens[2]).is_ok());
        assert!(auth.get_user_from_session_id(&tokens[0]).is_err());
        assert_eq!(
            auth.end_sessions(&caller(), &tokens[2], Scope::Global)
                .unwrap(),
            1
        );
        assert!(auth.get_user_from_session_id(&tokens[2]).is_err());
    }
}
