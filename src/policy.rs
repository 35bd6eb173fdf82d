//! The password policy: a minimum length and a minimum strength score.
//!
//! NIST SP 800-63B asks for a minimum length and a check against common or
//! breached-pattern passwords, and no composition rules. Strength is
//! estimated with zxcvbn (dictionaries of common passwords, names, keyboard
//! patterns, dates, repeats, l33t substitutions) rather than a hand-made
//! list, and the user's own email counts against the password.

/// What a new password must satisfy, beyond [`crate::user::Password`]'s
/// hard limits (1 byte to the hash algorithm's limit, no NUL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// Fewest characters (not bytes).
    pub min_length: usize,
    /// Lowest zxcvbn score accepted, 0 (anything) to 4 (very strong).
    pub min_score: u8,
}

impl PasswordPolicy {
    /// The dev profile: anything bcrypt takes (the reference client uses a
    /// five-character password).
    pub const DEV: PasswordPolicy = PasswordPolicy {
        min_length: 1,
        min_score: 0,
    };

    /// The production profile: 8 characters (NIST's minimum) and a zxcvbn
    /// score of 3 ("safely unguessable: moderate protection from offline
    /// slow-hash scenario").
    pub const PRODUCTION: PasswordPolicy = PasswordPolicy {
        min_length: 8,
        min_score: 3,
    };

    /// `Err(reason)` if `password` may not be used by the owner of `email`.
    /// The reason is written for the person choosing the password.
    pub fn check(&self, password: &str, email: &str) -> Result<(), String> {
        let length = password.chars().count();
        if length < self.min_length {
            return Err(format!(
                "must be at least {} characters long (it has {length})",
                self.min_length
            ));
        }
        if self.min_score == 0 {
            return Ok(());
        }
        let local = email.split('@').next().unwrap_or(email);
        let estimate = zxcvbn::zxcvbn(password, &[email, local]);
        if u8::from(estimate.score()) >= self.min_score {
            return Ok(());
        }
        let mut reason = String::from("is too easy to guess");
        if let Some(feedback) = estimate.feedback() {
            if let Some(warning) = feedback.warning() {
                reason.push_str(&format!(": {warning}"));
            }
            let tips: Vec<String> = feedback
                .suggestions()
                .iter()
                .map(|s| s.to_string())
                .collect();
            if !tips.is_empty() {
                reason.push_str(&format!(" ({})", tips.join(" ")));
            }
        }
        Err(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_takes_anything() {
        assert_eq!(PasswordPolicy::DEV.check("b4l0u", "a@b.io"), Ok(()));
        assert_eq!(PasswordPolicy::DEV.check("1", "a@b.io"), Ok(()));
    }

    #[test]
    fn production_refuses_short_common_and_personal_passwords() {
        let p = PasswordPolicy::PRODUCTION;
        let short = p.check("Xq7#", "a@b.io").unwrap_err();
        assert!(short.contains("at least 8 characters"), "{short}");
        for weak in [
            "password",
            "password123",
            "qwertyuiop",
            "11111111",
            "iloveyou2",
        ] {
            let reason = p.check(weak, "a@b.io").unwrap_err();
            assert!(
                reason.starts_with("is too easy to guess"),
                "{weak}: {reason}"
            );
        }
        // The user's own email name is no secret.
        assert!(p
            .check("marguerite.durand1", "marguerite.durand1@example.com")
            .is_err());
        assert_eq!(p.check("correct horse battery staple", "a@b.io"), Ok(()));
        assert_eq!(p.check("vH8#kq2!Lz9@", "a@b.io"), Ok(()));
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        let p = PasswordPolicy {
            min_length: 8,
            min_score: 0,
        };
        assert!(p.check("ééééééé", "a@b.io").is_err());
        assert_eq!(p.check("éééééééé", "a@b.io"), Ok(()));
    }
}
