//! `GET /metrics` on the real server, read with a parser of the test's
//! own (not the crate's): requests by route template (never an id, an
//! email or a token), logins by outcome, the histograms, the store's
//! numbers and their cache, the delivery queue with a failing webhook,
//! and where `/metrics` is served (`--metrics-addr`, `--metrics-public`,
//! the production profile's 404).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::raw::{exchange, request, Answer, IO_LIMIT};
use crate::common::webhook_sink::{Answer as Reply, WebhookSink};
use crate::common::{Format, TestApp};
use authd::config::{Config, Profile};
use authd::delivery::Channel;
use authd::policy::PasswordPolicy;

/// One sample: its labels, sorted, and its value.
type Labels = BTreeMap<String, String>;

/// The samples of a text exposition: name -> [(labels, value)].
#[derive(Debug, Default)]
struct Samples(BTreeMap<String, Vec<(Labels, f64)>>);

impl Samples {
    /// Parses the classic text format (and OpenMetrics, whose extra lines
    /// are comments too): `name{a="x",b="y"} value`, `# ...` skipped.
    fn parse(text: &str) -> Samples {
        let mut samples = Samples::default();
        for line in text.lines() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}').unwrap())),
                None => (series, Labels::new()),
            };
            samples
                .0
                .entry(name.to_owned())
                .or_default()
                .push((labels, value));
        }
        samples
    }

    /// The value of `name` with exactly these labels, if present.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: Labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.0
            .get(name)?
            .iter()
            .find(|(l, _)| *l == wanted)
            .map(|(_, v)| *v)
    }

    /// The value, failing the test if the sample is missing.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in {:#?}", self.0.get(name)))
    }

    /// Every sample of `name`.
    fn all(&self, name: &str) -> &[(Labels, f64)] {
        self.0.get(name).map_or(&[], Vec::as_slice)
    }
}

/// `a="x",b="y \"quoted\""` as a map.
fn parse_labels(text: &str) -> Labels {
    let mut labels = Labels::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").expect("label=\"value\"");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect("a closing quote") {
                (_, '\\') => match chars.next().expect("an escape").1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.to_owned(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    labels
}

/// GET /metrics at `addr`, on a connection of its own.
fn scrape_at(addr: SocketAddr, accept: Option<&str>) -> Answer {
    let mut head = vec![("Host", "localhost"), ("Connection", "close")];
    head.extend(accept.map(|a| ("Accept", a)));
    exchange(addr, &request("GET", "/metrics", &head, b""), IO_LIMIT).unwrap()
}

/// The metrics of `addr`, parsed (the answer must be a 200 in the
/// classic format).
fn samples_at(addr: SocketAddr) -> (Samples, String) {
    let reply = scrape_at(addr, None);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = reply.text().to_owned();
    (Samples::parse(&text), text)
}

/// Waits (up to 20 s) until `ready` holds of the metrics at `addr`.
fn wait_for(addr: SocketAddr, ready: impl Fn(&Samples) -> bool) -> Samples {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (samples, _) = samples_at(addr);
        if ready(&samples) {
            return samples;
        }
        assert!(Instant::now() < deadline, "timed out: {samples:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The route templates the server counts under.
const TEMPLATES: [&str; 17] = authd::http::ROUTES;

fn requests_logins_histograms_and_store_gauges() {
    let app = TestApp::spawn_with(|c| {
        // Locked out at the first failure; one success per account, the
        // next an hour later (a delay no clock undoes during the test).
        c.limits.login_free_failures = 1;
        c.limits.lockout_failures = 1;
        c.limits.login_success_burst = 1;
        c.limits.login_success_refill = Duration::from_secs(3600);
        c.metrics_cache = Duration::ZERO;
    });
    let addr = app.running.addr();
    for email in ["ann@x.io", "bob@x.io", "cat@x.io"] {
        assert_eq!(app.register(email, "pw-secret-1").status, 200);
    }
    let login = app.log_in("ann@x.io", "pw-secret-1");
    assert_eq!(login.status, 200, "{login:?}");
    let token = app.session_of(&login);
    assert_eq!(app.log_in("ann@x.io", "pw-secret-1").status, 429);
    assert_eq!(app.log_in("bob@x.io", "wrong").status, 401);
    assert_eq!(app.log_in("bob@x.io", "pw-secret-1").status, 429);
    assert_eq!(app.profile(Some(&token)).status, 200);
    assert_eq!(app.profile(Some(&token)).status, 200);
    let id = "AbCdEf0123456789xyz";
    let ended = app.request(
        "DELETE",
        &format!("/sessions/{id}"),
        None,
        b"",
        Some(&token),
    );
    assert!(matches!(ended.status, 400 | 404), "{ended:?}");
    let unknown = app.request("GET", "/no/such/place-zz9", None, b"", None);
    assert_eq!(unknown.status, 404);
    // Hosted pages, whatever the page: one template.
    assert_eq!(
        app.request("GET", "/ui/sign-in", None, b"", None).status,
        200
    );
    let page = app.request("GET", "/ui/no-such-page-zz9", None, b"", None);
    assert_eq!(page.status, 404);

    let (samples, text) = samples_at(addr);
    let requests = "authd_http_requests_total";
    let req = |route: &str, method: &str, status: &str| {
        samples
            .get(
                requests,
                &[("route", route), ("method", method), ("status", status)],
            )
            .unwrap_or(0.0)
    };
    assert_eq!(req("/users", "POST", "200"), 3.0);
    assert_eq!(req("/sessions", "POST", "200"), 1.0);
    assert_eq!(req("/sessions", "POST", "429"), 2.0);
    assert_eq!(req("/sessions", "POST", "401"), 1.0);
    assert_eq!(req("/profile", "GET", "200"), 2.0);
    assert_eq!(req("other", "GET", "404"), 1.0);
    assert_eq!(req("/ui/{page}", "GET", "200"), 1.0);
    assert_eq!(req("/ui/{page}", "GET", "404"), 1.0);
    assert!(samples
        .all(requests)
        .iter()
        .any(|(l, _)| l["route"] == "/sessions/{id}" && l["method"] == "DELETE"));
    // Every label is a template, a method or a status: nothing a client
    // chose, no email, no token.
    for (labels, _) in samples.all(requests) {
        assert!(TEMPLATES.contains(&labels["route"].as_str()), "{labels:?}");
        assert!(labels["status"].parse::<u16>().is_ok(), "{labels:?}");
    }
    for secret in [id, "ann@x.io", "bob@x.io", token.as_str(), "no/such", "zz9"] {
        assert!(!text.contains(secret), "{secret} in the metrics");
    }

    // Logins by outcome.
    let logins = |outcome: &str| samples.value("authd_logins_total", &[("outcome", outcome)]);
    assert_eq!(logins("ok"), 1.0);
    assert_eq!(logins("wrong_password"), 1.0);
    assert_eq!(logins("throttled"), 1.0);
    assert_eq!(logins("locked"), 1.0);
    assert_eq!(logins("unverified"), 0.0);

    // The latency histogram: buckets, sum and count, the count that of
    // the route's requests.
    let profile = [("route", "/profile")];
    let buckets: Vec<&(Labels, f64)> = samples
        .all("authd_http_request_duration_seconds_bucket")
        .iter()
        .filter(|(l, _)| l["route"] == "/profile")
        .collect();
    assert!(buckets.len() >= 10, "{buckets:?}");
    let inf = buckets.iter().find(|(l, _)| l["le"] == "+Inf").unwrap();
    assert_eq!(inf.1, 2.0);
    assert_eq!(
        samples.value("authd_http_request_duration_seconds_count", &profile),
        2.0
    );
    assert!(samples.value("authd_http_request_duration_seconds_sum", &profile) > 0.0);
    // Every registration and login waited for a bcrypt worker.
    assert!(samples.value("authd_hash_queue_wait_seconds_count", &[]) >= 6.0);
    assert!(samples
        .get("authd_hash_queue_wait_seconds_sum", &[])
        .is_some());
    assert!(samples.get("authd_hash_queue_waiting", &[]).is_some());
    assert!(samples.get("authd_hash_running", &[]).is_some());
    // No argon2 work runs between requests (and bcrypt takes none).
    assert_eq!(samples.value("authd_hash_memory_bytes", &[]), 0.0);

    // The store's numbers, read afresh (no cache here).
    assert_eq!(samples.value("authd_users", &[]), 3.0);
    assert_eq!(samples.value("authd_sessions", &[]), 1.0);
    assert!(samples.get("authd_one_time_tokens", &[]).is_some());
    assert_eq!(app.register("dan@x.io", "pw-secret-1").status, 200);
    let (samples, _) = samples_at(addr);
    assert_eq!(samples.value("authd_users", &[]), 4.0);
    // The scrapes are counted too, under their own route.
    let scrapes = [("route", "/metrics"), ("method", "GET"), ("status", "200")];
    assert!(samples.value(requests, &scrapes) >= 1.0);

    // OpenMetrics to a scraper that asks for it.
    let open = scrape_at(
        addr,
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    );
    assert_eq!(open.status, 200);
    assert_eq!(
        open.header("Content-Type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(open.text().ends_with("# EOF\n"));
    assert!(open.text().contains("# TYPE authd_logins counter"));
    assert_eq!(
        Samples::parse(open.text()).value("authd_logins_total", &[("outcome", "ok")]),
        1.0
    );
    // GET only.
    assert_eq!(app.request("POST", "/metrics", None, b"", None).status, 405);
}

fn store_numbers_are_cached_for_the_period() {
    let app = TestApp::spawn_with(|c| c.metrics_cache = Duration::from_secs(3600));
    assert_eq!(app.register("ann@x.io", "pw").status, 200);
    let (first, _) = samples_at(app.running.addr());
    assert_eq!(first.value("authd_users", &[]), 1.0);
    assert_eq!(app.register("bob@x.io", "pw").status, 200);
    // Within the period: the number read before, the store not read again.
    let (second, _) = samples_at(app.running.addr());
    assert_eq!(second.value("authd_users", &[]), 1.0);
    // What is counted per request is never cached.
    assert_eq!(
        second.value(
            "authd_http_requests_total",
            &[("route", "/users"), ("method", "POST"), ("status", "200")]
        ),
        2.0
    );
    assert_eq!(app.user_count(), 2);
}

fn production(c: &mut Config) {
    c.profile = Profile::Production;
    c.password_policy = PasswordPolicy::PRODUCTION;
    c.bcrypt_cost = 10;
    c.metrics_cache = Duration::ZERO;
}

const STRONG: &str = "correct horse battery staple";

fn a_failing_webhook_shows_in_the_delivery_metrics_on_the_metrics_listener() {
    let sink = WebhookSink::http();
    // Refused: the verification message of the registration is a dead
    // letter at its first attempt.
    sink.answer(Reply::Status(400));
    let app = TestApp::spawn_with(|c| {
        production(c);
        c.delivery = Some(Channel::Webhook(sink.url("/authd")));
        c.metrics_addr = Some("127.0.0.1:0".to_owned());
    });
    let metrics = app.running.metrics_addr().expect("a metrics listener");
    assert_ne!(metrics, app.running.addr());
    // Production: the main listener has no /metrics at all.
    let main = scrape_at(app.running.addr(), None);
    assert_eq!(main.status, 404, "{main:?}");
    assert_eq!(main.message(), "not found");

    assert_eq!(app.register("ann@x.io", STRONG).status, 200);
    let dead = wait_for(metrics, |s| {
        s.get("authd_delivery_queue_dead", &[]) == Some(1.0)
            && s.get("authd_delivery_attempts_total", &[("outcome", "dead")]) == Some(1.0)
    });
    assert_eq!(dead.value("authd_delivery_failures_total", &[]), 1.0);
    assert_eq!(
        dead.value("authd_delivery_attempts_total", &[("outcome", "sent")]),
        0.0
    );
    // A failure the receiver may get over: retried, waiting meanwhile.
    sink.answer(Reply::Status(500));
    let reply = app.send(
        "POST",
        "/reset_password",
        Format::Form,
        &[("email", "ann@x.io")],
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    let retrying = wait_for(metrics, |s| {
        s.get("authd_delivery_attempts_total", &[("outcome", "retry")])
            .is_some_and(|n| n >= 1.0)
            && s.get("authd_delivery_queue_waiting", &[]) == Some(1.0)
    });
    assert!(retrying.value("authd_delivery_failures_total", &[]) >= 2.0);
    // The main listener's 404 for /metrics is counted as any unknown path.
    assert!(
        retrying.value(
            "authd_http_requests_total",
            &[("route", "other"), ("method", "GET"), ("status", "404")]
        ) >= 1.0
    );
    assert_eq!(retrying.value("authd_users", &[]), 1.0);
    // The metrics listener serves /metrics and nothing else.
    let head = [("Host", "localhost"), ("Connection", "close")];
    for (method, path, status) in [
        ("GET", "/", 404),
        ("GET", "/profile", 404),
        ("POST", "/metrics", 405),
        ("GET", "/metrics/", 200),
    ] {
        let reply = exchange(metrics, &request(method, path, &head, b""), IO_LIMIT).unwrap();
        assert_eq!(reply.status, status, "{method} {path}: {reply:?}");
    }
}

fn production_serves_metrics_publicly_only_when_told() {
    let app = TestApp::spawn_with(|c| {
        production(c);
        c.delivery = Some(Channel::Log);
        c.metrics_public = true;
    });
    assert_eq!(app.running.metrics_addr(), None);
    let (samples, _) = samples_at(app.running.addr());
    assert!(samples.get("authd_users", &[]).is_some());
    // With a listener of its own as well, both serve it.
    let app = app.restart_with(|c| {
        production(c);
        c.delivery = Some(Channel::Log);
        c.metrics_public = true;
        c.metrics_addr = Some("127.0.0.1:0".to_owned());
    });
    samples_at(app.running.addr());
    samples_at(app.running.metrics_addr().unwrap());
}

fn dev_serves_metrics_on_the_main_listener_unless_moved() {
    let app = TestApp::spawn();
    samples_at(app.running.addr());
    let app = app.restart_with(|c| c.metrics_addr = Some("127.0.0.1:0".to_owned()));
    assert_eq!(scrape_at(app.running.addr(), None).status, 404);
    samples_at(app.running.metrics_addr().unwrap());
}

crate::on_every_store!(
    requests_logins_histograms_and_store_gauges,
    store_numbers_are_cached_for_the_period,
    a_failing_webhook_shows_in_the_delivery_metrics_on_the_metrics_listener,
    production_serves_metrics_publicly_only_when_told,
    dev_serves_metrics_on_the_main_listener_unless_moved,
);
