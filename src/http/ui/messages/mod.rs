//! Every word the pages show, in one place.
//!
//! [`Messages`] has one field per text; [`en::EN`] fills them in plain
//! English. A translation is a new file beside it filling the same
//! struct: the compiler then names any text it forgets. Texts that take a
//! value hold a `{name}` placeholder, filled by [`fill`] (the result is
//! escaped like any text when the page is rendered).
//!
//! The API's own JSON messages are not here: clients compare them as
//! strings.

pub mod en;

/// The texts of the pages in one language.
#[derive(Debug)]
pub struct Messages {
    /// The page's `lang`, a BCP 47 tag.
    pub lang: &'static str,
    /// The name shown in the header and in every title.
    pub site: &'static str,

    // Navigation and common parts.
    pub nav_label: &'static str,
    pub nav_sign_in: &'static str,
    pub nav_sign_up: &'static str,
    pub nav_account: &'static str,
    pub nav_outbox: &'static str,
    pub sign_out: &'static str,
    /// `{email}`: who is signed in.
    pub signed_in_as: &'static str,
    pub dev_profile: &'static str,
    /// After a notice that a message went out, in the dev profile.
    pub dev_outbox_hint: &'static str,
    pub dev_outbox_link: &'static str,

    // Fields.
    pub email: &'static str,
    pub password: &'static str,
    pub current_password: &'static str,
    pub new_password: &'static str,
    pub new_email: &'static str,
    pub new_password_hint: &'static str,

    // Sign in.
    pub sign_in_title: &'static str,
    pub sign_in_button: &'static str,
    pub sign_in_forgot: &'static str,
    pub sign_in_no_account: &'static str,
    pub sign_in_create: &'static str,

    // Sign up.
    pub sign_up_title: &'static str,
    pub sign_up_button: &'static str,
    pub sign_up_have_account: &'static str,
    pub sign_up_sign_in: &'static str,

    // Forgot and reset.
    pub forgot_title: &'static str,
    pub forgot_intro: &'static str,
    pub forgot_button: &'static str,
    pub reset_title: &'static str,
    /// `{email}`: the account's address.
    pub reset_intro: &'static str,
    pub reset_button: &'static str,
    pub reset_incomplete: &'static str,
    pub reset_ask_again: &'static str,

    // Verify.
    pub verify_title: &'static str,
    /// `{email}`: the address to confirm.
    pub verify_intro: &'static str,
    pub verify_button: &'static str,
    pub verify_incomplete: &'static str,
    pub verified_title: &'static str,
    pub continue_to_account: &'static str,

    // Account.
    pub account_title: &'static str,
    pub account_email_heading: &'static str,
    pub account_verified: &'static str,
    pub account_unverified: &'static str,
    pub account_send_verification: &'static str,
    /// `{email}`: the address waiting for its confirmation.
    pub account_pending_email: &'static str,
    /// `{date}`: when the account was made.
    pub account_created: &'static str,
    pub password_heading: &'static str,
    pub password_button: &'static str,
    pub email_change_heading: &'static str,
    pub email_change_intro: &'static str,
    pub email_change_button: &'static str,
    pub sessions_heading: &'static str,
    pub sessions_intro: &'static str,
    pub session_current: &'static str,
    pub session_unknown_browser: &'static str,
    /// `{time}`: when the session began.
    pub session_started: &'static str,
    /// `{time}`: when it was last used.
    pub session_last_seen: &'static str,
    /// `{ip}`: where it signed in from.
    pub session_from: &'static str,
    pub session_end: &'static str,
    pub sessions_end_others: &'static str,
    pub delete_heading: &'static str,
    pub delete_intro: &'static str,
    pub delete_button: &'static str,
    pub totp_heading: &'static str,
    pub totp_off_intro: &'static str,
    pub totp_begin_button: &'static str,
    pub totp_scan: &'static str,
    pub totp_qr_label: &'static str,
    pub totp_key: &'static str,
    /// Before the otpauth:// URI, for apps that take one pasted.
    pub totp_uri: &'static str,
    pub totp_confirm_button: &'static str,
    pub totp_restart_button: &'static str,
    pub totp_on_intro: &'static str,
    pub totp_recovery_intro: &'static str,
    pub totp_disable_intro: &'static str,
    pub totp_disable_button: &'static str,
    /// The sign-in form's code field, and its hint.
    pub totp_code: &'static str,
    pub totp_code_hint: &'static str,

    // Dev outbox.
    pub outbox_title: &'static str,
    pub outbox_intro: &'static str,
    pub outbox_empty: &'static str,
    pub outbox_to: &'static str,
    pub outbox_caught: &'static str,

    // Error pages.
    pub not_found_title: &'static str,
    pub not_found_text: &'static str,
    pub not_allowed_title: &'static str,
    pub not_allowed_text: &'static str,
    pub error_title: &'static str,
    pub back_to_sign_in: &'static str,

    // What went wrong with a form.
    pub form_expired: &'static str,
    pub cross_site: &'static str,
    pub form_incomplete: &'static str,
    pub form_too_large: &'static str,
    pub wrong_credentials: &'static str,
    pub wrong_password: &'static str,
    pub email_taken: &'static str,
    pub unknown_email: &'static str,
    pub reset_link_invalid: &'static str,
    pub verify_link_invalid: &'static str,
    pub email_not_verified: &'static str,
    /// `{reason}`: the password policy's, in English.
    pub weak_password: &'static str,
    /// `{seconds}`: how long to wait.
    pub throttled: &'static str,
    pub busy: &'static str,
    pub our_fault: &'static str,
    pub session_not_found: &'static str,
    pub email_empty: &'static str,
    pub email_invalid: &'static str,
    pub email_too_long: &'static str,
    pub email_deceptive: &'static str,
    pub password_empty: &'static str,
    pub password_too_long_bcrypt: &'static str,
    pub password_too_long: &'static str,
    pub password_nul: &'static str,
    pub totp_required: &'static str,
    pub totp_wrong: &'static str,
    pub totp_code_refused: &'static str,
    pub totp_already_enabled: &'static str,
    pub totp_not_enabled: &'static str,

    // Notices after a change (see [`Notice`]).
    pub notice_registered: &'static str,
    pub notice_signed_out: &'static str,
    pub notice_reset_sent: &'static str,
    pub notice_password_reset: &'static str,
    pub notice_email_verified: &'static str,
    pub notice_password_changed: &'static str,
    pub notice_email_change_sent: &'static str,
    pub notice_verification_sent: &'static str,
    pub notice_session_ended: &'static str,
    pub notice_others_ended: &'static str,
    pub notice_account_deleted: &'static str,
    pub notice_sign_in_again: &'static str,
    pub notice_totp_disabled: &'static str,
}

/// What a page says after a change that sent the browser there (a
/// redirect after a POST): named in the query (`?notice=signed-out`), so
/// only these fixed texts can ever be shown, never text from the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    Registered,
    SignedOut,
    ResetSent,
    PasswordReset,
    EmailVerified,
    PasswordChanged,
    EmailChangeSent,
    VerificationSent,
    SessionEnded,
    OthersEnded,
    AccountDeleted,
    SignInAgain,
    TotpDisabled,
}

impl Notice {
    const ALL: [Notice; 13] = [
        Notice::Registered,
        Notice::SignedOut,
        Notice::ResetSent,
        Notice::PasswordReset,
        Notice::EmailVerified,
        Notice::PasswordChanged,
        Notice::EmailChangeSent,
        Notice::VerificationSent,
        Notice::SessionEnded,
        Notice::OthersEnded,
        Notice::AccountDeleted,
        Notice::SignInAgain,
        Notice::TotpDisabled,
    ];

    /// Its name in a query string.
    pub fn key(self) -> &'static str {
        match self {
            Notice::Registered => "registered",
            Notice::SignedOut => "signed-out",
            Notice::ResetSent => "reset-sent",
            Notice::PasswordReset => "password-reset",
            Notice::EmailVerified => "email-verified",
            Notice::PasswordChanged => "password-changed",
            Notice::EmailChangeSent => "email-change-sent",
            Notice::VerificationSent => "verification-sent",
            Notice::SessionEnded => "session-ended",
            Notice::OthersEnded => "others-ended",
            Notice::AccountDeleted => "account-deleted",
            Notice::SignInAgain => "sign-in-again",
            Notice::TotpDisabled => "totp-disabled",
        }
    }

    /// The notice named `key`; `None` for anything else (ignored).
    pub fn from_key(key: &str) -> Option<Notice> {
        Notice::ALL.into_iter().find(|notice| notice.key() == key)
    }

    /// Whether it says a message went out (the dev profile then points
    /// at its outbox).
    pub fn sent_a_message(self) -> bool {
        matches!(
            self,
            Notice::Registered
                | Notice::ResetSent
                | Notice::EmailChangeSent
                | Notice::VerificationSent
        )
    }
}

impl Messages {
    /// The text of `notice`.
    pub fn notice(&self, notice: Notice) -> &'static str {
        match notice {
            Notice::Registered => self.notice_registered,
            Notice::SignedOut => self.notice_signed_out,
            Notice::ResetSent => self.notice_reset_sent,
            Notice::PasswordReset => self.notice_password_reset,
            Notice::EmailVerified => self.notice_email_verified,
            Notice::PasswordChanged => self.notice_password_changed,
            Notice::EmailChangeSent => self.notice_email_change_sent,
            Notice::VerificationSent => self.notice_verification_sent,
            Notice::SessionEnded => self.notice_session_ended,
            Notice::OthersEnded => self.notice_others_ended,
            Notice::AccountDeleted => self.notice_account_deleted,
            Notice::SignInAgain => self.notice_sign_in_again,
            Notice::TotpDisabled => self.notice_totp_disabled,
        }
    }
}

/// `text` with its `{name}` placeholder replaced by `value`.
pub fn fill(text: &str, name: &str, value: &str) -> String {
    text.replace(&format!("{{{name}}}"), value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip_by_key_and_nothing_else_is_one() {
        for notice in Notice::ALL {
            assert_eq!(Notice::from_key(notice.key()), Some(notice));
            assert!(!en::EN.notice(notice).is_empty());
        }
        for other in ["", "Signed-out", "<script>", "signed-out "] {
            assert_eq!(Notice::from_key(other), None, "{other}");
        }
    }

    #[test]
    fn placeholders_are_filled() {
        assert_eq!(
            fill(en::EN.signed_in_as, "email", "a@b.io"),
            "Signed in as a@b.io"
        );
        assert_eq!(fill("no placeholder", "x", "y"), "no placeholder");
    }
}
