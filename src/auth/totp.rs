//! The TOTP second factor of an account: `POST /totp` (a pending secret),
//! `PUT /totp` (its first code enables it, recovery codes come back once),
//! `DELETE /totp` (password and a current code), the second step of a
//! login, and `authd user totp-disable`.
//!
//! Every code is checked against the record as read and written with a
//! precondition on it ([`UserChange::TotpStep`] and its siblings), so a
//! code, or a recovery code, works once even when two requests race with
//! it.

use super::account::notice;
use super::{Auth, AuthError, Caller};
use crate::audit::Event;
use crate::clock::unix_millis;
use crate::message::Kind;
use crate::outbox::AccountEvent;
use crate::store::{Ends, StoreError, UserChange};
use crate::token::Token;
use crate::totp::{holds_recovery, Factor, RecoveryCodes, Secret};
use crate::user::{Email, TotpState, User};

/// What `POST /totp` answers: the secret for an app, as text and as the
/// URI a QR code carries. `Debug` shows neither.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpEnrolment {
    pub secret: String,
    pub otpauth_uri: String,
}

impl std::fmt::Debug for TotpEnrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpEnrolment(<redacted>)")
    }
}

impl Auth {
    /// Starts an enrolment for the session's user: a new secret, pending
    /// until its first code (`PUT /totp`), replacing any pending one.
    /// 403 `totp already enabled` while one is enabled.
    pub fn begin_totp(&self, caller: &Caller, session: &Token) -> Result<TotpEnrolment, AuthError> {
        let (_, user) = self.authenticate(session)?;
        if user.totp_enabled().is_some() {
            return Err(AuthError::TotpAlreadyEnabled);
        }
        let secret = Secret::generate().map_err(totp_internal)?;
        let sealed = self.totp_sealer()?.seal(&secret).map_err(totp_internal)?;
        let otpauth_uri = secret
            .otpauth_uri(&self.rules.totp_issuer, user.email.as_str())
            .map_err(totp_internal)?;
        self.store
            .update_user(
                user.id,
                None,
                &[UserChange::TotpPending(sealed)],
                Ends::default(),
            )
            .map_err(|e| match e {
                StoreError::PreconditionFailed => AuthError::TotpAlreadyEnabled,
                StoreError::NotFound => AuthError::InvalidSession,
                other => other.into(),
            })?;
        self.record(
            Event::TotpPending,
            caller,
            Some(user.id),
            Some(user.email.as_str()),
        );
        Ok(TotpEnrolment {
            secret: secret.to_base32(),
            otpauth_uri,
        })
    }

    /// The session's pending enrolment, shown again (a page that lost it,
    /// a code typed wrong): the secret is not in use until a code
    /// confirms it, and only its own user sees it. `None` when nothing is
    /// pending.
    pub fn pending_totp(&self, session: &Token) -> Result<Option<TotpEnrolment>, AuthError> {
        let (_, user) = self.authenticate(session)?;
        let Some(pending) = user.totp.as_ref().filter(|totp| !totp.enabled) else {
            return Ok(None);
        };
        let secret = self.open_secret(pending)?;
        let otpauth_uri = secret
            .otpauth_uri(&self.rules.totp_issuer, user.email.as_str())
            .map_err(totp_internal)?;
        Ok(Some(TotpEnrolment {
            secret: secret.to_base32(),
            otpauth_uri,
        }))
    }

    /// Enables the pending secret with its first code; returns the
    /// recovery codes, shown this once. 403 `invalid totp code` for a
    /// wrong code, nothing pending, or a code of a step already used.
    pub fn confirm_totp(
        &self,
        caller: &Caller,
        session: &Token,
        typed: &str,
    ) -> Result<Vec<String>, AuthError> {
        let (_, user) = self.authenticate(session)?;
        let Some(pending) = user.totp.as_ref().filter(|totp| !totp.enabled) else {
            return Err(AuthError::TotpCodeRefused);
        };
        let secret = self.open_secret(pending)?;
        let step = secret
            .step_of(typed, unix_millis() / 1000)
            .filter(|step| *step > pending.last_step)
            .ok_or(AuthError::TotpCodeRefused)?;
        let codes = RecoveryCodes::generate().map_err(totp_internal)?;
        self.store
            .update_user(
                user.id,
                None,
                &[UserChange::TotpEnable {
                    sealed: pending.sealed_secret.clone(),
                    step,
                    recovery: codes.hashes,
                }],
                Ends::default(),
            )
            .map_err(|e| match e {
                // Replaced by a newer enrolment, or the step used meanwhile.
                StoreError::PreconditionFailed => AuthError::TotpCodeRefused,
                StoreError::NotFound => AuthError::InvalidSession,
                other => other.into(),
            })?;
        self.record(
            Event::TotpEnabled,
            caller,
            Some(user.id),
            Some(user.email.as_str()),
        );
        // Said to the address: a session thief who turned it on would
        // otherwise lock the owner out unseen.
        self.send_after(caller, notice(Kind::TotpEnabled, &user, None));
        self.announce(caller, AccountEvent::TotpEnabled, &user);
        Ok(codes.shown)
    }

    /// Turns the second factor off, after the password (401 `wrong
    /// password`, counted as a failed login) and, when one is enabled, a
    /// current code or a recovery code (401 `invalid totp code`, counted
    /// too). A pending enrolment is cancelled with the password alone.
    /// 403 `totp not enabled` when there is nothing to turn off.
    pub fn disable_totp(
        &self,
        caller: &Caller,
        session: &Token,
        typed_password: &str,
        typed_code: &str,
    ) -> Result<User, AuthError> {
        let (_, user) = self.authenticate(session)?;
        if user.totp.is_none() {
            return Err(AuthError::TotpNotEnabled);
        }
        let mut changes = Vec::with_capacity(2);
        let code = self.confirm_credentials(
            caller,
            &user,
            typed_password,
            Some(typed_code),
            "DELETE /totp",
        )?;
        changes.extend(code);
        changes.push(UserChange::TotpOff);
        let changed = self
            .store
            .update_user(
                user.id,
                Some(&user.hashed_password),
                &changes,
                Ends::default(),
            )
            .map_err(|e| match e {
                StoreError::PreconditionFailed => AuthError::WrongTotp,
                StoreError::NotFound => AuthError::InvalidSession,
                other => other.into(),
            })?;
        self.turned_off(caller, &changed);
        Ok(changed)
    }

    /// `authd user totp-disable`: the second factor of the user with this
    /// address goes, enabled or pending, for someone who lost their
    /// device and their recovery codes.
    pub fn admin_disable_totp(&self, caller: &Caller, email: &Email) -> Result<User, AuthError> {
        let user = self.find_user(email)?;
        if user.totp.is_none() {
            return Err(AuthError::TotpNotEnabled);
        }
        let changed =
            self.store
                .update_user(user.id, None, &[UserChange::TotpOff], Ends::default())?;
        self.turned_off(caller, &changed);
        Ok(changed)
    }

    /// Audits, tells the address and announces that `user`'s second
    /// factor went.
    fn turned_off(&self, caller: &Caller, user: &User) {
        self.record(
            Event::TotpDisabled,
            caller,
            Some(user.id),
            Some(user.email.as_str()),
        );
        self.send_after(caller, notice(Kind::TotpDisabled, user, None));
        self.announce(caller, AccountEvent::TotpDisabled, user);
    }

    /// The change a right second factor makes (its step recorded, or its
    /// recovery code spent), checked against `totp` as read; a wrong one
    /// is audited and refused with 401 `invalid totp code`. Its throttle
    /// accounting is the caller's: a login attempt, already reserved.
    pub(super) fn second_factor(
        &self,
        caller: &Caller,
        user: &User,
        totp: &TotpState,
        typed: &str,
        route: &str,
    ) -> Result<UserChange, AuthError> {
        let change = match Factor::parse(typed) {
            Some(Factor::Code(code)) => match self.open_secret(totp) {
                Ok(secret) => secret
                    .step_of(&code, unix_millis() / 1000)
                    .filter(|step| *step > totp.last_step)
                    .map(|step| UserChange::TotpStep {
                        sealed: totp.sealed_secret.clone(),
                        step,
                    }),
                Err(e) => {
                    // No key this server holds opens it (a --secret-key-file
                    // that lost the key): no code can be checked, a
                    // recovery code still works. Said to the operator.
                    eprintln!(
                        "authd: user {}'s second factor cannot be checked: {e}; \
                         their recovery codes still work, or `authd user totp-disable`",
                        user.id
                    );
                    None
                }
            },
            Some(Factor::Recovery(hash)) => {
                holds_recovery(&totp.recovery, &hash).then_some(UserChange::TotpRecovery(hash))
            }
            None => None,
        };
        change.ok_or_else(|| {
            self.audit.record(
                Event::TotpRefused,
                caller.ip,
                Some(user.id),
                Some(user.email.as_str()),
                Some(route),
            );
            AuthError::WrongTotp
        })
    }

    /// The secret of `user`'s second factor, in the clear for one check.
    fn open_secret(&self, totp: &TotpState) -> Result<Secret, AuthError> {
        self.totp_sealer()?
            .open(&totp.sealed_secret)
            .map_err(totp_internal)
    }

    fn totp_sealer(&self) -> Result<&crate::totp::Sealer, AuthError> {
        self.totp_sealer
            .as_ref()
            .ok_or_else(|| AuthError::Internal("no key to seal second factors with".to_owned()))
    }
}

fn totp_internal(e: crate::totp::TotpError) -> AuthError {
    AuthError::Internal(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::test_support::*;
    use crate::server_key::ServerKey;
    use crate::totp::{step_at, Sealer};

    fn enrolled() -> (tempfile::TempDir, Auth, Token, Secret, Vec<String>, u64) {
        let (dir, auth) = auth();
        let auth = auth.with_totp_sealer(Sealer::new(&ServerKey::new([3; 32], None)));
        auth.register(&caller(), &email("ann@x.io"), &password("pw"))
            .unwrap();
        let (_, session) = auth.log_in(&caller(), "ann@x.io", "pw", None).unwrap();
        let enrolment = auth.begin_totp(&caller(), &session).unwrap();
        let secret = Secret::from_base32(&enrolment.secret).unwrap();
        let step = step_at(unix_millis() / 1000);
        let codes = auth
            .confirm_totp(&caller(), &session, &secret.code_at(step).unwrap())
            .unwrap();
        (dir, auth, session, secret, codes, step)
    }

    #[test]
    fn a_code_works_once_per_step_and_recovery_codes_once_each() {
        let (_dir, auth, _session, secret, codes, step) = enrolled();
        let user = auth.find_user(&email("ann@x.io")).unwrap();
        let totp = user.totp_enabled().unwrap().clone();
        assert_eq!(totp.last_step, step);
        assert_eq!(totp.recovery.len(), 10);
        // The confirmation's own step is spent.
        let same = secret.code_at(step).unwrap();
        assert!(matches!(
            auth.second_factor(&caller(), &user, &totp, &same, "t"),
            Err(AuthError::WrongTotp)
        ));
        let next = secret.code_at(step + 1).unwrap();
        let change = auth
            .second_factor(&caller(), &user, &totp, &next, "t")
            .unwrap();
        assert!(matches!(change, UserChange::TotpStep { step: s, .. } if s == step + 1));
        let recovery = auth
            .second_factor(&caller(), &user, &totp, &codes[0], "t")
            .unwrap();
        assert!(matches!(recovery, UserChange::TotpRecovery(_)));
        for wrong in ["", "000000x", "abcd-abcd-abcd-abcd"] {
            assert!(matches!(
                auth.second_factor(&caller(), &user, &totp, wrong, "t"),
                Err(AuthError::WrongTotp)
            ));
        }
    }

    #[test]
    fn enrolment_refuses_a_second_while_enabled_and_admin_disable_clears() {
        let (_dir, auth, session, _secret, _codes, _) = enrolled();
        assert!(matches!(
            auth.begin_totp(&caller(), &session),
            Err(AuthError::TotpAlreadyEnabled)
        ));
        let user = auth
            .admin_disable_totp(&Caller::admin(), &email("ann@x.io"))
            .unwrap();
        assert!(user.totp.is_none());
        assert!(matches!(
            auth.admin_disable_totp(&Caller::admin(), &email("ann@x.io")),
            Err(AuthError::TotpNotEnabled)
        ));
        assert!(auth.begin_totp(&caller(), &session).is_ok());
    }
}
