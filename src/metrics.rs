//! Prometheus metrics, served as `GET /metrics`: requests by route
//! template, method and status with their latency, logins by outcome, the
//! bcrypt queue, the store's size and the delivery queue.
//!
//! Counting is on the request path, so it is kept to one atomic increment
//! and one histogram observation per request: the labelled children are
//! resolved once (on their first use) into arrays indexed by route,
//! method and status, so no label is formatted and nothing is allocated
//! per request. Routes are labelled by their template (`/sessions/{id}`,
//! never the id) with `other` for anything else, so no email, token or
//! path a client chose ever becomes a label.
//!
//! What costs a store read (the numbers of users, sessions, tokens and
//! queued messages: a walk of a tree on sled, `count(*)` on PostgreSQL)
//! is read at most once per cache period, however often `/metrics` is
//! scraped.
//!
//! This module knows the HTTP layer only through the list of route
//! templates it is given ([`Metrics::new`]), and the use cases only
//! through [`crate::auth::Observer`]: the module graph stays acyclic.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::auth::{LoginOutcome, Observer};
use crate::hasher::{Hasher, WaitObserver};
use crate::store::{AnyStore, RequestStore};

/// How long the store's numbers are kept before a scrape reads them
/// again, by default: a scrape interval (Prometheus's default is 15 s),
/// so scraping in a loop cannot load the store.
pub const DEFAULT_CACHE_PERIOD: Duration = Duration::from_secs(15);

/// The content type of the classic Prometheus text format, what
/// `/metrics` answers unless the scraper asks for OpenMetrics.
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The content type of OpenMetrics text, answered to a scraper whose
/// `Accept` names it (Prometheus does).
pub const OPENMETRICS_FORMAT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Request latency buckets, in seconds: from half a millisecond (a
/// session check) to 5 s (bcrypt behind a queue).
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets of the time a bcrypt job waits for a worker, in seconds.
const HASH_WAIT_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Methods counted by name; anything else is `other`.
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "other",
];

/// Statuses whose counters are resolved once; others (none that authd
/// gives today) are looked up in the family at each request.
const STATUSES: [u16; 18] = [
    200, 204, 302, 400, 401, 403, 404, 405, 408, 409, 413, 415, 429, 431, 500, 501, 503, 505,
];

/// Where a method's counters are in [`METHODS`].
fn method_index(method: &str) -> usize {
    match method {
        "GET" => 0,
        "HEAD" => 1,
        "POST" => 2,
        "PUT" => 3,
        "DELETE" => 4,
        "OPTIONS" => 5,
        "PATCH" => 6,
        _ => 7,
    }
}

/// Where a status's counters are in [`STATUSES`].
fn status_index(status: u16) -> Option<usize> {
    STATUSES.iter().position(|&s| s == status)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// How one delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Sent (or nothing left to send): the message is done.
    Sent,
    /// Failed; tried again after a backoff.
    Retry,
    /// Failed for the last time: kept as a dead letter.
    Dead,
}

impl DeliveryOutcome {
    const ALL: [DeliveryOutcome; 3] = [
        DeliveryOutcome::Sent,
        DeliveryOutcome::Retry,
        DeliveryOutcome::Dead,
    ];

    fn name(self) -> &'static str {
        match self {
            DeliveryOutcome::Sent => "sent",
            DeliveryOutcome::Retry => "retry",
            DeliveryOutcome::Dead => "dead",
        }
    }
}

/// What the gauges are read from, once the server has built it.
pub struct Sources {
    /// The store, for its numbers of records.
    pub store: AnyStore,
    /// The same store as requests see it, for the delivery queue.
    pub requests: Arc<dyn RequestStore>,
    /// The bcrypt pool, for its queue.
    pub hasher: Hasher,
}

/// Every metric of one server, registered once.
pub struct Metrics {
    registry: Registry,
    /// Route templates, by index ([`Metrics::observe_request`]); the
    /// last one is where anything out of range is counted.
    routes: &'static [&'static str],
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabel, Histogram, fn() -> Histogram>,
    /// `requests` children by (route, method, status) index, resolved on
    /// first use.
    request_counters: Box<[OnceLock<Counter>]>,
    /// `latency` children by route index, resolved on first use.
    latency_histograms: Box<[OnceLock<Histogram>]>,
    logins: [Counter; LoginOutcome::ALL.len()],
    hash_wait: Histogram,
    hash_waiting: Gauge,
    hash_running: Gauge,
    hash_memory: Gauge,
    users: Gauge,
    sessions: Gauge,
    tokens: Gauge,
    queue_waiting: Gauge,
    queue_dead: Gauge,
    delivery_attempts: [Counter; DeliveryOutcome::ALL.len()],
    delivery_failures: Counter,
    sources: OnceLock<Sources>,
    /// When the store's numbers were last read.
    refreshed: Mutex<Option<Instant>>,
    cache_period: Duration,
}

impl Metrics {
    /// Registers every metric, requests counted under `routes` (route
    /// templates; its last entry is the catch-all, `other`), the store's
    /// numbers read at most once per `cache_period`.
    pub fn new(routes: &'static [&'static str], cache_period: Duration) -> Metrics {
        let mut registry = Registry::with_prefix("authd");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template, method and status",
            requests.clone(),
        );
        let latency: Family<RouteLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS));
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request (until the answer is handed to the connection), \
             by route template",
            latency.clone(),
        );
        let login_family = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "logins",
            "Login attempts by outcome: ok, wrong_password, throttled (a delay), locked \
             (a lockout), unverified, error",
            login_family.clone(),
        );
        let logins = LoginOutcome::ALL.map(|outcome| {
            login_family
                .get_or_create(&OutcomeLabel {
                    outcome: outcome.name(),
                })
                .clone()
        });
        let hash_wait = Histogram::new(HASH_WAIT_BUCKETS);
        registry.register(
            "hash_queue_wait_seconds",
            "Time a bcrypt job waited for a worker",
            hash_wait.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let gauge = Gauge::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let hash_waiting = gauge(
            &mut registry,
            "hash_queue_waiting",
            "Password-hashing jobs (bcrypt or argon2id) waiting for a worker",
        );
        let hash_running = gauge(
            &mut registry,
            "hash_running",
            "Password-hashing jobs (bcrypt or argon2id) on a worker",
        );
        // Bytes: OpenMetrics' unit, so the name ends in `_bytes`.
        let hash_memory = gauge(
            &mut registry,
            "hash_memory_bytes",
            "Memory the running argon2 jobs hold (at most --hash-memory-mb)",
        );
        let users = gauge(&mut registry, "users", "Registered users (cached)");
        let sessions = gauge(
            &mut registry,
            "sessions",
            "Sessions in the store: live, or expired and not yet swept (cached)",
        );
        let tokens = gauge(
            &mut registry,
            "one_time_tokens",
            "Reset and verification tokens in the store (cached)",
        );
        let queue_waiting = gauge(
            &mut registry,
            "delivery_queue_waiting",
            "Messages waiting in the delivery queue (cached)",
        );
        let queue_dead = gauge(
            &mut registry,
            "delivery_queue_dead",
            "Dead letters in the delivery queue (cached)",
        );
        let attempt_family = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "delivery_attempts",
            "Delivery attempts by outcome: sent, retry (failed, tried again), dead (failed \
             for the last time)",
            attempt_family.clone(),
        );
        let delivery_attempts = DeliveryOutcome::ALL.map(|outcome| {
            attempt_family
                .get_or_create(&OutcomeLabel {
                    outcome: outcome.name(),
                })
                .clone()
        });
        let delivery_failures = Counter::default();
        registry.register(
            "delivery_failures",
            "Delivery attempts that failed (retry and dead)",
            delivery_failures.clone(),
        );
        let slots = routes.len().max(1) * METHODS.len() * STATUSES.len();
        Metrics {
            registry,
            routes,
            requests,
            latency,
            request_counters: (0..slots).map(|_| OnceLock::new()).collect(),
            latency_histograms: (0..routes.len().max(1)).map(|_| OnceLock::new()).collect(),
            logins,
            hash_wait,
            hash_waiting,
            hash_running,
            hash_memory,
            users,
            sessions,
            tokens,
            queue_waiting,
            queue_dead,
            delivery_attempts,
            delivery_failures,
            sources: OnceLock::new(),
            refreshed: Mutex::new(None),
            cache_period,
        }
    }

    /// Gives the gauges what they are read from (once; later calls are
    /// ignored).
    pub fn attach(&self, sources: Sources) {
        let _ = self.sources.set(sources);
    }

    /// What the bcrypt pool tells each job's wait to: the histogram only,
    /// so the pool holds no reference back to these metrics.
    pub fn hash_wait_observer(&self) -> WaitObserver {
        let histogram = self.hash_wait.clone();
        Arc::new(move |waited: Duration| histogram.observe(waited.as_secs_f64()))
    }

    /// Counts one answered request of route `route` (an index into the
    /// templates; out of range is the last, `other`), answered `status`
    /// after `elapsed`.
    pub fn observe_request(&self, route: usize, method: &str, status: u16, elapsed: Duration) {
        let route = route.min(self.routes.len().saturating_sub(1));
        let template = self.routes.get(route).copied().unwrap_or("other");
        let method = method_index(method);
        let labels = || RequestLabels {
            route: template,
            method: METHODS[method],
            status,
        };
        match status_index(status) {
            Some(index) => {
                let slot = (route * METHODS.len() + method) * STATUSES.len() + index;
                match self.request_counters.get(slot) {
                    Some(cell) => cell
                        .get_or_init(|| self.requests.get_or_create(&labels()).clone())
                        .inc(),
                    None => self.requests.get_or_create(&labels()).inc(),
                };
            }
            None => {
                self.requests.get_or_create(&labels()).inc();
            }
        }
        let seconds = elapsed.as_secs_f64();
        match self.latency_histograms.get(route) {
            Some(cell) => cell
                .get_or_init(|| {
                    self.latency
                        .get_or_create(&RouteLabel { route: template })
                        .clone()
                })
                .observe(seconds),
            None => self
                .latency
                .get_or_create(&RouteLabel { route: template })
                .observe(seconds),
        }
    }

    /// Counts one delivery attempt; a failure counts as such too.
    pub fn delivery_attempt(&self, outcome: DeliveryOutcome) {
        let index = DeliveryOutcome::ALL
            .iter()
            .position(|&o| o == outcome)
            .unwrap_or(0);
        if let Some(counter) = self.delivery_attempts.get(index) {
            counter.inc();
        }
        if outcome != DeliveryOutcome::Sent {
            self.delivery_failures.inc();
        }
    }

    /// The metrics as text: OpenMetrics when `openmetrics` (the scraper
    /// asked for it), else the classic Prometheus format; with its content
    /// type. The gauges are brought up to date first (the store's at most
    /// once per cache period).
    pub fn render(&self, openmetrics: bool) -> (&'static str, String) {
        self.refresh();
        let mut text = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail; an encoding error of the
        // crate leaves what was written.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            eprintln!("authd: encoding the metrics failed: {e}");
        }
        if openmetrics {
            (OPENMETRICS_FORMAT, text)
        } else {
            (TEXT_FORMAT, classic_text(&text))
        }
    }

    /// Reads the hash queue and memory (two short locks) at every scrape, and the
    /// store's numbers when they are older than the cache period. Scrapes
    /// at the same moment wait for one read rather than each making one.
    fn refresh(&self) {
        let Some(sources) = self.sources.get() else {
            return;
        };
        let depth = sources.hasher.depth();
        self.hash_waiting.set(gauge_value(depth.waiting));
        self.hash_running.set(gauge_value(depth.running));
        self.hash_memory
            .set(i64::try_from(sources.hasher.memory_in_use()).unwrap_or(i64::MAX));
        let mut refreshed = self.refreshed.lock().unwrap_or_else(|p| p.into_inner());
        if refreshed.is_some_and(|at| at.elapsed() < self.cache_period) {
            return;
        }
        // A failed read is not retried before the period is over either:
        // a store in trouble is not loaded more by its scrapers.
        *refreshed = Some(Instant::now());
        match sources.store.maintenance().counts() {
            Ok(counts) => {
                self.users.set(gauge_value(counts.users));
                self.sessions.set(gauge_value(counts.sessions));
                self.tokens.set(gauge_value(counts.tokens));
            }
            Err(e) => eprintln!("authd: metrics: cannot count the store's records: {e}"),
        }
        match sources.requests.queue_counts() {
            Ok(queue) => {
                self.queue_waiting.set(gauge_value(queue.waiting));
                self.queue_dead.set(gauge_value(queue.dead));
            }
            Err(e) => eprintln!("authd: metrics: cannot count the delivery queue: {e}"),
        }
    }
}

/// A count as a gauge's value.
fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Observer for Metrics {
    fn login(&self, outcome: LoginOutcome) {
        if let Some(counter) = self.logins.get(outcome.index()) {
            counter.inc();
        }
    }
}

/// OpenMetrics text made classic Prometheus text (format 0.0.4): a
/// counter's `# HELP` and `# TYPE` name its samples (`x_total`, where
/// OpenMetrics names the family `x`), and the `# EOF` and `# UNIT` lines
/// go. Everything else is the same in both.
fn classic_text(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let named = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match named {
            Some(line) => text.push_str(&line),
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: [&str; 3] = ["/", "/sessions/{id}", "other"];

    #[test]
    fn requests_are_counted_by_template_and_out_of_range_is_other() {
        let metrics = Metrics::new(&ROUTES, DEFAULT_CACHE_PERIOD);
        metrics.observe_request(1, "DELETE", 204, Duration::from_millis(2));
        metrics.observe_request(1, "DELETE", 204, Duration::from_millis(2));
        metrics.observe_request(99, "BREW", 418, Duration::from_millis(1));
        let (content_type, text) = metrics.render(false);
        assert_eq!(content_type, TEXT_FORMAT);
        assert!(text.contains(
            "authd_http_requests_total{route=\"/sessions/{id}\",method=\"DELETE\",status=\"204\"} 2"
        ));
        assert!(text.contains(
            "authd_http_requests_total{route=\"other\",method=\"other\",status=\"418\"} 1"
        ));
        assert!(text.contains("# TYPE authd_http_requests_total counter"));
        assert!(
            text.contains("authd_http_request_duration_seconds_count{route=\"/sessions/{id}\"} 2")
        );
        assert!(!text.contains("# EOF"));
        let (content_type, open) = metrics.render(true);
        assert_eq!(content_type, OPENMETRICS_FORMAT);
        assert!(open.contains("# TYPE authd_http_requests counter"));
        assert!(open.ends_with("# EOF\n"));
    }

    #[test]
    fn logins_and_deliveries_are_counted_by_outcome() {
        let metrics = Metrics::new(&ROUTES, DEFAULT_CACHE_PERIOD);
        metrics.login(LoginOutcome::Locked);
        metrics.login(LoginOutcome::Ok);
        metrics.login(LoginOutcome::Ok);
        metrics.delivery_attempt(DeliveryOutcome::Retry);
        metrics.delivery_attempt(DeliveryOutcome::Dead);
        metrics.delivery_attempt(DeliveryOutcome::Sent);
        let (_, text) = metrics.render(false);
        for line in [
            "authd_logins_total{outcome=\"ok\"} 2",
            "authd_logins_total{outcome=\"locked\"} 1",
            "authd_logins_total{outcome=\"wrong_password\"} 0",
            "authd_delivery_attempts_total{outcome=\"retry\"} 1",
            "authd_delivery_attempts_total{outcome=\"dead\"} 1",
            "authd_delivery_attempts_total{outcome=\"sent\"} 1",
            "authd_delivery_failures_total 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
