//! Brute-force and request-rate limits of the use cases.
//!
//! Logins are throttled on consecutive failures, per account and per client
//! IP; registration and reset requests on their rate (token buckets), per
//! IP and per email. A throttled request is answered 429 before any bcrypt
//! work or store write.
//!
//! Keys derived from what a client typed (an email, valid or not) are a
//! keyed hash of the normalised input: bounded in size whatever arrives,
//! and no address is kept in the clear. A developer's own machine in the
//! dev profile ([`Caller::local`]) skips the per-address and request-rate
//! limits, never the per-account backoff that protects an account.
//!
//! With device cookies (the production profile, [`crate::device`]), a
//! login from a browser holding a valid cookie for the account typed
//! counts its failures against that device's own budget ([`Budget`])
//! instead of the account's: failures from unknown devices lock out
//! unknown devices only, never a browser the owner has logged in with.

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

use super::{AuthError, Caller};
use crate::device::{Device, DeviceCookie, DeviceKeys};
use crate::throttle::{Limiter, Rule, Throttle, ThrottleError};
use crate::token::RandomError;
use crate::user::Email;

/// The tunable numbers behind every throttle.
#[derive(Debug, Clone, Copy)]
pub struct LimitSettings {
    /// Failed logins per account before delays start (per IP: ten times;
    /// per known device: the same).
    pub login_free_failures: u32,
    /// Consecutive failed logins after which an account refuses logins
    /// from unknown devices until `window` has passed or its password is
    /// reset (NIST SP 800-63B allows at most 100); a known device is
    /// locked out alike by its own failures.
    pub lockout_failures: u32,
    /// `POST /users` and `POST /reset_password` requests per IP and per
    /// email at once (the token bucket's size).
    pub request_free: u32,
    /// Time for one more such request to come back into a bucket.
    pub request_refill: Duration,
    /// Longest delay any throttle imposes.
    pub max_delay: Duration,
    /// Quiet time after which a key's count starts again.
    pub window: Duration,
    /// Keys tracked per throttle, to bound memory.
    pub max_entries: usize,
    /// Successful logins per account at once (a token bucket's size):
    /// logging in as oneself in a loop must not fill the bcrypt queue.
    pub login_success_burst: u32,
    /// Time for one more successful login to come back into its bucket.
    pub login_success_refill: Duration,
    /// Hashes one client address may have in flight, running or waiting.
    pub hashes_per_address: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            login_free_failures: 5,
            lockout_failures: 100,
            request_free: 10,
            request_refill: DEV_REQUEST_REFILL,
            max_delay: Duration::from_secs(15 * 60),
            window: Duration::from_secs(3600),
            max_entries: 100_000,
            login_success_burst: DEFAULT_LOGIN_SUCCESS_BURST,
            login_success_refill: DEFAULT_LOGIN_SUCCESS_REFILL,
            hashes_per_address: crate::hasher::DEFAULT_PLACES_PER_KEY,
        }
    }
}

/// Successful logins per account at once, by default: more than a person
/// and their devices need in a moment.
pub const DEFAULT_LOGIN_SUCCESS_BURST: u32 = 10;
/// One more successful login per account every 6 s once the burst is
/// spent: 600 an hour, far above a person, far below a login loop.
pub const DEFAULT_LOGIN_SUCCESS_REFILL: Duration = Duration::from_secs(6);

/// First delay once the free events are used up; it doubles from there.
const BASE_DELAY: Duration = Duration::from_secs(1);

/// Messages anyone can have sent to one address at once ...
pub const DELIVERY_TO_BURST: u32 = 3;
/// ... and the time for one more to come back: 3 an hour.
const DELIVERY_TO_REFILL: Duration = Duration::from_secs(20 * 60);
/// Such messages in all at once ...
pub const DELIVERY_ALL_BURST: u32 = 1_000;
/// ... and the time for one more: 1,000 an hour.
const DELIVERY_ALL_REFILL: Duration = Duration::from_millis(3_600);

/// Request refill of the dev profile: 3,600 an hour per address once the
/// burst is spent, so a prototype behind Docker's port mapping (not a
/// loopback peer) still seeds its data.
pub const DEV_REQUEST_REFILL: Duration = Duration::from_secs(1);
/// Request refill of the production profile: 60 an hour per address and
/// per email once the burst of 10 is spent; a person never gets near it,
/// an enumeration or mail-bombing run is slowed to a crawl.
pub const PRODUCTION_REQUEST_REFILL: Duration = Duration::from_secs(60);

/// All the throttles of the API.
pub struct Limits {
    /// The settings they were made with.
    pub settings: LimitSettings,
    /// Key of the hashes of typed input.
    secret: [u8; 32],
    login_ip: Box<dyn Limiter>,
    login_account: Box<dyn Limiter>,
    register_ip: Box<dyn Limiter>,
    register_email: Box<dyn Limiter>,
    reset_ip: Box<dyn Limiter>,
    reset_email: Box<dyn Limiter>,
    verify_ip: Box<dyn Limiter>,
    verify_email: Box<dyn Limiter>,
    /// Messages anyone can have sent, per recipient address.
    delivery_to: Box<dyn Limiter>,
    /// The same messages, in all.
    delivery_all: Box<dyn Limiter>,
    login_success: Box<dyn Limiter>,
    /// Failed logins per known device (keyed by a keyed hash of its nonce).
    login_device: Box<dyn Limiter>,
    /// The keys of device cookies; `None` when devices are not told apart
    /// (the dev profile): every login then counts against its account.
    devices: Option<DeviceKeys>,
}

/// The failure budget a login attempt counts against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Budget {
    /// The account's, shared by every device it does not know: no device
    /// cookie, or one that is not genuine for the account typed.
    Account,
    /// The device's own: it presented a genuine cookie for the account.
    Device(Device),
}

/// Makes the throttle named by its first argument (`"login_ip"`...) with
/// the rule given, keeping its counts wherever the store keeps them.
pub type MakeLimiter<'a> = &'a dyn Fn(&'static str, Rule) -> Box<dyn Limiter>;

impl Limits {
    /// Throttles with the given settings and no history, counted in this
    /// process's memory.
    pub fn new(s: LimitSettings) -> Limits {
        Self::with(s, [0; 32], &|_, rule| Box::new(Throttle::new(rule)))
    }

    /// Throttles with the given settings whose counts `make` keeps (in a
    /// shared database, for several instances), hashing typed input with
    /// `secret` (the same on every instance that shares the counts).
    pub fn with(s: LimitSettings, secret: [u8; 32], make: MakeLimiter<'_>) -> Limits {
        let rule = |free: u32, lockout: Option<u32>| Rule {
            free,
            base: BASE_DELAY,
            max_delay: s.max_delay,
            lockout,
            window: s.window,
            max_entries: s.max_entries,
            refill: None,
        };
        // A bucket is full again after `free` refills: nothing to keep
        // past that.
        let request = || Rule {
            refill: Some(s.request_refill),
            window: s.request_refill.saturating_mul(s.request_free),
            ..rule(s.request_free, None)
        };
        Limits {
            settings: s,
            secret,
            login_ip: make(
                "login_ip",
                rule(s.login_free_failures.saturating_mul(10), None),
            ),
            login_account: make(
                "login_account",
                rule(s.login_free_failures, Some(s.lockout_failures)),
            ),
            register_ip: make("register_ip", request()),
            register_email: make("register_email", request()),
            reset_ip: make("reset_ip", request()),
            reset_email: make("reset_email", request()),
            verify_ip: make("verify_ip", request()),
            verify_email: make("verify_email", request()),
            delivery_to: make(
                "delivery_to",
                Rule {
                    refill: Some(DELIVERY_TO_REFILL),
                    window: DELIVERY_TO_REFILL.saturating_mul(DELIVERY_TO_BURST),
                    ..rule(DELIVERY_TO_BURST, None)
                },
            ),
            delivery_all: make(
                "delivery_all",
                Rule {
                    refill: Some(DELIVERY_ALL_REFILL),
                    window: DELIVERY_ALL_REFILL.saturating_mul(DELIVERY_ALL_BURST),
                    ..rule(DELIVERY_ALL_BURST, None)
                },
            ),
            login_success: make(
                "login_success",
                Rule {
                    refill: Some(s.login_success_refill),
                    window: s.login_success_refill.saturating_mul(s.login_success_burst),
                    ..rule(s.login_success_burst, None)
                },
            ),
            login_device: make(
                "login_device",
                rule(s.login_free_failures, Some(s.lockout_failures)),
            ),
            devices: None,
        }
    }

    /// These throttles, telling known devices apart by their cookies
    /// signed with `keys` (the production profile).
    pub fn with_devices(self, keys: DeviceKeys) -> Limits {
        Limits {
            devices: Some(keys),
            ..self
        }
    }

    /// Whether logins issue and read device cookies.
    pub fn devices(&self) -> bool {
        self.devices.is_some()
    }

    /// What a client typed as an email, normalised as the throttles key
    /// it: an address's own key ([`Email::key`]: every spelling of one
    /// address counts against one budget), else (text that is no address)
    /// trimmed and lowercased. The one place this is decided: the
    /// per-account throttle keys and the account a device cookie is signed
    /// for both follow it.
    fn normalised(typed: &str) -> String {
        match Email::parse(typed) {
            Ok(email) => email.key().to_owned(),
            Err(_) => typed.trim().to_lowercase(),
        }
    }

    /// The key of what a client typed as an email: a keyed hash of it
    /// [normalised](Limits::normalised), 22 characters whatever arrived.
    fn account(&self, typed: &str) -> String {
        self.keyed(&[Self::normalised(typed).as_bytes()])
    }

    /// The key of a known device's entry: a keyed hash of its nonce (the
    /// store's throttle rows never hold a nonce itself).
    fn device(&self, device: &Device) -> String {
        self.keyed(&[b"device\0", &device.nonce()[..]])
    }

    /// A keyed hash of `parts`, 22 characters.
    fn keyed(&self, parts: &[&[u8]]) -> String {
        // HMAC takes a key of any length: `new_from_slice` cannot fail.
        let digest = match Hmac::<Sha256>::new_from_slice(&self.secret) {
            Ok(mut mac) => {
                for part in parts {
                    mac.update(part);
                }
                mac.finalize().into_bytes()
            }
            Err(_) => Default::default(),
        };
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16])
    }

    /// The keyed hash of what a client typed as an email, as the audit
    /// log shows text that is not a registered address.
    pub fn email_hmac(&self, typed: &str) -> String {
        self.account(typed)
    }

    /// The budget a login on the account `email` from a client presenting
    /// `cookie` counts against: its device's own if the cookie is genuine
    /// for that account, else the account's. A pure computation (no store
    /// read), made before the attempt reserves its place. Without device
    /// keys (the dev profile) the cookie is not even looked at.
    pub fn budget(&self, email: &str, cookie: Option<&DeviceCookie>) -> Budget {
        match (&self.devices, cookie) {
            (Some(keys), Some(cookie)) => keys
                .verify(Self::normalised(email).as_bytes(), cookie)
                .map_or(Budget::Account, Budget::Device),
            _ => Budget::Account,
        }
    }

    /// The device cookie a successful login on `email` gives its client:
    /// the same device renewed (signed with the current key) for a known
    /// device, a new device otherwise; `None` without device keys.
    pub fn device_cookie(
        &self,
        email: &str,
        budget: &Budget,
    ) -> Result<Option<DeviceCookie>, RandomError> {
        let Some(keys) = &self.devices else {
            return Ok(None);
        };
        let account = Self::normalised(email);
        Ok(Some(match budget {
            Budget::Device(device) => keys.sign(account.as_bytes(), device),
            Budget::Account => keys.issue(account.as_bytes())?.1,
        }))
    }

    /// The throttle and key of a login's failure budget.
    fn failures(&self, email: &str, budget: &Budget) -> (&dyn Limiter, String) {
        match budget {
            Budget::Account => (&*self.login_account, self.account(email)),
            Budget::Device(device) => (&*self.login_device, self.device(device)),
        }
    }

    /// Reserves a login attempt before any bcrypt work: it counts against
    /// the client's address and the `budget` (the account's, or a known
    /// device's) at once, as a failure, so attempts in flight count
    /// against those that follow (40 parallel guesses get no more
    /// verifications than 40 serial ones). Refused (429), it counts
    /// nowhere. Fails (503) if the counts cannot be kept: an uncounted
    /// guess is not allowed.
    pub fn reserve_login(
        &self,
        client: &Caller,
        email: &str,
        budget: &Budget,
    ) -> Result<(), AuthError> {
        let ip = client.ip.to_string();
        if !client.local {
            if let Some(wait) = self.login_ip.take(&ip).map_err(unavailable)? {
                return Err(AuthError::Throttled(wait));
            }
        }
        let (failures, key) = self.failures(email, budget);
        match failures.take(&key) {
            Ok(None) => Ok(()),
            refused => {
                // Not attempted after all: the address gets its slot back.
                if !client.local {
                    let _ = self.login_ip.release(&ip);
                }
                match refused {
                    Ok(Some(wait)) => Err(AuthError::Throttled(wait)),
                    Err(e) => Err(unavailable(e)),
                    Ok(None) => Ok(()),
                }
            }
        }
    }

    /// Whether the failure `budget` of a login on `email` is locked out
    /// (its lockout reached), not only delayed: asked after a refusal, for
    /// the metrics. A count that cannot be read is not a lockout.
    pub fn locked_out(&self, email: &str, budget: &Budget) -> bool {
        let (failures, key) = self.failures(email, budget);
        failures.locked(&key).unwrap_or(false)
    }

    /// A successful login: the attempt reserved against the client's
    /// address does not count (the account's count is cleared by
    /// [`Limits::account_recovered`]).
    pub fn login_succeeded(&self, client: &Caller) {
        if !client.local {
            if let Err(e) = self.login_ip.release(&client.ip.to_string()) {
                eprintln!("authd: cannot give back a login attempt of an address: {e}");
            }
        }
    }

    /// Reserves a possible success of a login on the account `email`
    /// (before any bcrypt work, like the failure budget): successful
    /// logins are rate-limited per account too, so a client logging in as
    /// itself in a loop cannot keep the bcrypt workers busy. Given back by
    /// [`Limits::success_not_used`] when the login does not succeed.
    pub fn reserve_success(&self, email: &str) -> Result<(), AuthError> {
        match self
            .login_success
            .take(&self.account(email))
            .map_err(unavailable)?
        {
            Some(wait) => Err(AuthError::Throttled(wait)),
            None => Ok(()),
        }
    }

    /// A login that failed: its reserved success is given back.
    pub fn success_not_used(&self, email: &str) {
        if let Err(e) = self.login_success.release(&self.account(email)) {
            eprintln!("authd: cannot give back a login of an account: {e}");
        }
    }

    /// A login that was reserved but not decided (the bcrypt queue was
    /// full, the store failed): it counts nowhere.
    pub fn login_not_attempted(&self, client: &Caller, email: &str, budget: &Budget) {
        self.login_succeeded(client);
        let (failures, key) = self.failures(email, budget);
        if let Err(e) = failures.release(&key) {
            eprintln!("authd: cannot give back a login attempt: {e}");
        }
    }

    /// A successful login or password reset ends the account's backoff.
    /// (The IP's count only decays: an attacker with an account of their
    /// own could otherwise reset it at will.) The success has happened by
    /// then, so a failure here is only logged: the backoff then lasts
    /// until its window ends.
    pub fn account_recovered(&self, email: &str) {
        if let Err(e) = self.login_account.clear(&self.account(email)) {
            eprintln!("authd: cannot clear the login backoff of an account: {e}");
        }
    }

    /// A successful login from a known device ends that device's backoff
    /// too; logged only on failure, as [`Limits::account_recovered`].
    pub fn device_recovered(&self, device: &Device) {
        if let Err(e) = self.login_device.clear(&self.device(device)) {
            eprintln!("authd: cannot clear the login backoff of a device: {e}");
        }
    }

    /// Checks and counts a registration attempt.
    pub fn register(&self, client: &Caller, email: &str) -> Result<(), AuthError> {
        self.rate(&*self.register_ip, &*self.register_email, client, email)
    }

    /// Checks and counts a reset-token request.
    pub fn reset_request(&self, client: &Caller, email: &str) -> Result<(), AuthError> {
        self.rate(&*self.reset_ip, &*self.reset_email, client, email)
    }

    /// Checks and counts a verification-token request (`POST
    /// /verify_email`): as reset requests, with counts of its own.
    pub fn verify_request(&self, client: &Caller, email: &str) -> Result<(), AuthError> {
        self.rate(&*self.verify_ip, &*self.verify_email, client, email)
    }

    /// Counts a message anyone can have sent to `address` (a reset or a
    /// verification asked for by address): at most [`DELIVERY_TO_BURST`]
    /// to one address at once, one more every 20 min (3 an hour), and
    /// [`DELIVERY_ALL_BURST`] in all, one more every 3.6 s (1,000 an
    /// hour), so open registration and reset requests are no mail cannon.
    /// Loopback callers in dev are not exempt: the limit is on mail, not
    /// on the caller.
    pub fn delivery(&self, address: &str) -> Result<(), AuthError> {
        let key = self.account(address);
        if let Some(wait) = self.delivery_to.take(&key).map_err(unavailable)? {
            return Err(AuthError::Throttled(wait));
        }
        match self.delivery_all.take("all").map_err(unavailable)? {
            Some(wait) => Err(AuthError::Throttled(wait)),
            None => Ok(()),
        }
    }

    fn rate(
        &self,
        by_ip: &dyn Limiter,
        by_email: &dyn Limiter,
        client: &Caller,
        email: &str,
    ) -> Result<(), AuthError> {
        if client.local {
            return Ok(());
        }
        let ip = client.ip.to_string();
        let email = self.account(email);
        if let Some(wait) = by_ip.take(&ip).map_err(unavailable)? {
            return Err(AuthError::Throttled(wait));
        }
        match by_email.take(&email).map_err(unavailable)? {
            Some(wait) => Err(AuthError::Throttled(wait)),
            None => Ok(()),
        }
    }

    /// Forgets entries past their window; run periodically.
    pub fn sweep(&self) -> Result<(), ThrottleError> {
        for throttle in [
            &self.login_success,
            &self.login_ip,
            &self.login_account,
            &self.login_device,
            &self.register_ip,
            &self.register_email,
            &self.reset_ip,
            &self.reset_email,
            &self.verify_ip,
            &self.verify_email,
            &self.delivery_to,
            &self.delivery_all,
        ] {
            throttle.sweep()?;
        }
        Ok(())
    }
}

/// Counts that cannot be read or kept refuse the request (503).
fn unavailable(e: ThrottleError) -> AuthError {
    AuthError::ThrottleUnavailable(e.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    const REMOTE: &Caller = &Caller {
        ip: IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)),
        local: false,
        user_agent: None,
    };
    const LOCAL: &Caller = &Caller {
        ip: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        local: true,
        user_agent: None,
    };

    #[test]
    fn logins_are_throttled_per_account_and_cleared_on_success() {
        let limits = Limits::new(LimitSettings {
            login_free_failures: 2,
            ..LimitSettings::default()
        });
        // Two reserved attempts, not yet decided, already count.
        for _ in 0..2 {
            assert!(limits
                .reserve_login(REMOTE, "a@x.io", &Budget::Account)
                .is_ok());
        }
        assert!(matches!(
            limits.reserve_login(REMOTE, "a@x.io", &Budget::Account),
            Err(AuthError::Throttled(_))
        ));
        // The same account however it is typed; a local client too.
        assert!(limits
            .reserve_login(REMOTE, "  A@X.io", &Budget::Account)
            .is_err());
        assert!(limits
            .reserve_login(LOCAL, "a@x.io", &Budget::Account)
            .is_err());
        // Another account from the same IP is not blocked (the IP allows 20).
        assert!(limits
            .reserve_login(REMOTE, "b@x.io", &Budget::Account)
            .is_ok());
        limits.account_recovered("a@x.io");
        assert!(limits
            .reserve_login(REMOTE, "a@x.io", &Budget::Account)
            .is_ok());
    }

    #[test]
    fn attempts_that_are_refused_or_not_decided_count_nowhere() {
        let limits = Limits::new(LimitSettings {
            login_free_failures: 1,
            ..LimitSettings::default()
        });
        // The address allows ten; refusals by the account give the
        // address its slot back, so it never fills.
        assert!(limits
            .reserve_login(REMOTE, "a@x.io", &Budget::Account)
            .is_ok());
        for _ in 0..30 {
            assert!(limits
                .reserve_login(REMOTE, "a@x.io", &Budget::Account)
                .is_err());
        }
        for n in 0..9 {
            assert!(
                limits
                    .reserve_login(REMOTE, &format!("{n}@x.io"), &Budget::Account)
                    .is_ok(),
                "{n}"
            );
        }
        // An attempt not decided (queue full) is given back in full.
        let fresh = Limits::new(LimitSettings {
            login_free_failures: 1,
            ..LimitSettings::default()
        });
        assert!(fresh
            .reserve_login(REMOTE, "c@x.io", &Budget::Account)
            .is_ok());
        fresh.login_not_attempted(REMOTE, "c@x.io", &Budget::Account);
        assert!(fresh
            .reserve_login(REMOTE, "c@x.io", &Budget::Account)
            .is_ok());
    }

    #[test]
    fn request_rates_count_every_request_except_a_local_clients() {
        let limits = Limits::new(LimitSettings {
            request_free: 2,
            ..LimitSettings::default()
        });
        assert!(limits.register(REMOTE, "a@x.io").is_ok());
        assert!(limits.register(REMOTE, "b@x.io").is_ok());
        // The IP has used its two; any email now waits.
        assert!(limits.register(REMOTE, "c@x.io").is_err());
        // Reset requests are counted separately.
        assert!(limits.reset_request(REMOTE, "a@x.io").is_ok());
        // A developer's own machine is not limited.
        for i in 0..50 {
            assert!(limits.register(LOCAL, &format!("{i}@x.io")).is_ok());
        }
    }

    #[test]
    fn keys_of_typed_input_are_bounded_and_keyed() {
        let limits = Limits::new(LimitSettings::default());
        let huge = "x".repeat(100_000);
        assert_eq!(limits.account(&huge).len(), 22);
        assert_eq!(limits.account("Bob@X.io "), limits.account("bob@x.io"));
        // Every spelling of one address is one account's budget.
        assert_eq!(
            limits.account("jose\u{301}@x.io"),
            limits.account("JOS\u{c9}@X.IO")
        );
        assert_eq!(
            limits.account("b\u{200b}ob@x.io"),
            limits.account("bob@x.io")
        );
        let other = Limits::with(LimitSettings::default(), [7; 32], &|_, rule| {
            Box::new(Throttle::new(rule))
        });
        assert_ne!(limits.account("bob@x.io"), other.account("bob@x.io"));
    }

    /// Throttles telling devices apart, two free failures, locked at two.
    fn with_devices() -> Limits {
        Limits::new(LimitSettings {
            login_free_failures: 2,
            lockout_failures: 2,
            ..LimitSettings::default()
        })
        .with_devices(DeviceKeys::new([9; 32], None))
    }

    /// The budget of a client presenting the cookie a success on `email`
    /// gave a new device.
    fn known_device(limits: &Limits, email: &str) -> (DeviceCookie, Budget) {
        let cookie = limits
            .device_cookie(email, &Budget::Account)
            .unwrap()
            .unwrap();
        let budget = limits.budget(email, Some(&cookie));
        assert!(matches!(budget, Budget::Device(_)), "{budget:?}");
        (cookie, budget)
    }

    #[test]
    fn a_known_device_has_its_own_budget() {
        let limits = with_devices();
        let (_, mine) = known_device(&limits, "a@x.io");
        // Unknown devices use up the account's budget...
        for _ in 0..2 {
            assert!(limits
                .reserve_login(REMOTE, "a@x.io", &Budget::Account)
                .is_ok());
        }
        assert!(matches!(
            limits.reserve_login(REMOTE, "a@x.io", &Budget::Account),
            Err(AuthError::Throttled(_))
        ));
        // ...and the known device still has all of its own.
        for _ in 0..2 {
            assert!(limits.reserve_login(REMOTE, "a@x.io", &mine).is_ok());
        }
        assert!(limits.reserve_login(REMOTE, "a@x.io", &mine).is_err());
        // Another known device of the account is a budget of its own too.
        let (_, other) = known_device(&limits, "a@x.io");
        assert!(limits.reserve_login(REMOTE, "a@x.io", &other).is_ok());
        // A success clears the device's count (the account's separately).
        if let Budget::Device(device) = &mine {
            limits.device_recovered(device);
        }
        assert!(limits.reserve_login(REMOTE, "a@x.io", &mine).is_ok());
        assert!(limits
            .reserve_login(REMOTE, "a@x.io", &Budget::Account)
            .is_err());
        limits.account_recovered("a@x.io");
        assert!(limits
            .reserve_login(REMOTE, "a@x.io", &Budget::Account)
            .is_ok());
    }

    #[test]
    fn a_cookie_counts_only_for_its_own_account() {
        let limits = with_devices();
        let (cookie, budget) = known_device(&limits, "a@x.io");
        // However the account is typed, the cookie is its own...
        assert_eq!(limits.budget("  A@X.io", Some(&cookie)), budget);
        // ...and on any other account it is an unknown device.
        assert_eq!(limits.budget("b@x.io", Some(&cookie)), Budget::Account);
        assert_eq!(limits.budget("b@x.io", None), Budget::Account);
        // Signed by another deployment: unknown.
        let other =
            Limits::new(LimitSettings::default()).with_devices(DeviceKeys::new([8; 32], None));
        assert_eq!(other.budget("a@x.io", Some(&cookie)), Budget::Account);
        // Renewing keeps the device (and so its budget).
        let renewed = limits.device_cookie("a@x.io", &budget).unwrap().unwrap();
        assert_eq!(renewed, cookie);
        let fresh = limits
            .device_cookie("a@x.io", &Budget::Account)
            .unwrap()
            .unwrap();
        assert_ne!(limits.budget("a@x.io", Some(&fresh)), budget);
    }

    #[test]
    fn an_attempt_not_decided_gives_back_the_budget_it_took() {
        let limits = with_devices();
        let (_, mine) = known_device(&limits, "a@x.io");
        for _ in 0..5 {
            assert!(limits.reserve_login(REMOTE, "a@x.io", &mine).is_ok());
            limits.login_not_attempted(REMOTE, "a@x.io", &mine);
        }
        // Neither the device nor the account kept anything.
        for budget in [&mine, &mine, &Budget::Account, &Budget::Account] {
            assert!(limits.reserve_login(REMOTE, "a@x.io", budget).is_ok());
        }
    }

    #[test]
    fn without_device_keys_cookies_are_neither_read_nor_issued() {
        let limits = with_devices();
        let (cookie, _) = known_device(&limits, "a@x.io");
        let plain = Limits::new(LimitSettings::default());
        assert!(!plain.devices());
        assert_eq!(plain.budget("a@x.io", Some(&cookie)), Budget::Account);
        assert_eq!(
            plain.device_cookie("a@x.io", &Budget::Account).unwrap(),
            None
        );
    }
}
