//! Real delivery against real receivers on loopback: the dev outbox, SMTP
//! (the test's own server, STARTTLS with a CA made in the test), signed
//! HTTPS webhooks checked by a verifier of the test's own; retries, dead
//! letters, a crash between acceptance and delivery, the per-address
//! limit, and several instances sharing one queue (PostgreSQL).

use std::time::{Duration, Instant};

use crate::common::process::{enc, Proc};
use crate::common::raw::{exchange, request, Answer};
use crate::common::smtp_sink::{SinkOptions, SmtpSink};
use crate::common::webhook_sink::{verify_signature, Answer as Reply, Request, WebhookSink};
use crate::common::{Format, TestApp};
use authd::config::{Config, Profile};
use authd::delivery::Channel;
use authd::policy::PasswordPolicy;

const STRONG: &str = "correct horse battery staple";
const LIMIT: Duration = Duration::from_secs(10);
/// A Standard Webhooks secret: `whsec_` and 32 bytes in base64.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn production(c: &mut Config, channel: Channel) {
    c.profile = Profile::Production;
    c.delivery = Some(channel);
    c.password_policy = PasswordPolicy::PRODUCTION;
    c.bcrypt_cost = 10;
}

/// `data` with quoted-printable soft line breaks and `=XX` escapes
/// undone, as a mail reader shows it (enough for ASCII links).
fn quoted_printable(data: &str) -> String {
    let joined = data.replace("=\r\n", "");
    let mut out = String::with_capacity(joined.len());
    let mut rest = joined.as_str();
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        match rest
            .get(at + 1..at + 3)
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[at + 3..];
            }
            None => {
                out.push('=');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn form(app: &TestApp, method: &str, path: &str, fields: &[(&str, &str)]) -> Answer {
    app.send(method, path, Format::Form, fields)
}

/// Waits (up to 20 s) until `ready` holds of what `get` returns.
fn wait_until<T>(mut get: impl FnMut() -> T, ready: impl Fn(&T) -> bool) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = get();
        if ready(&got) {
            return got;
        }
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The webhook bodies of `kind` the sink has received.
fn bodies(sink: &WebhookSink, kind: &str) -> Vec<serde_json::Value> {
    sink.requests()
        .iter()
        .filter_map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
        .filter(|body| body["type"] == kind)
        .collect()
}

fn the_dev_outbox_catches_every_message() {
    let app = TestApp::spawn_with(|c| {
        c.delivery = Some(Channel::Outbox);
        c.delivery_settings.links_to_listener = true;
    });
    assert_eq!(app.register("ann@x.io", "pw-ann-1").status, 200);
    // Sent as is: the test client names `localhost` itself.
    let outbox = |host: &str| {
        let head = [("Host", host), ("Connection", "close")];
        exchange(
            app.running.addr(),
            &request("GET", "/dev/outbox", &head, b""),
            LIMIT,
        )
        .unwrap()
    };
    let host = format!("127.0.0.1:{}", app.running.addr().port());
    let first = wait_until(
        || outbox(&host).json(),
        |v| v["messages"].as_array().is_some_and(|m| !m.is_empty()),
    );
    let verify = &first["messages"][0];
    assert_eq!(
        (&verify["kind"], &verify["to"]),
        (&"verify".into(), &"ann@x.io".into())
    );
    let link_base = format!("http://{}/ui/verify-email?", app.running.addr());
    assert!(
        verify["text"].as_str().unwrap().contains(&link_base),
        "{verify}"
    );

    // A reset: the answer's token (the reference) is the one caught.
    let token = app.reset_token("ann@x.io").json()["reset_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let all = wait_until(
        || outbox(&host).json(),
        |v| v["messages"].as_array().is_some_and(|m| m.len() == 2),
    );
    let reset = &all["messages"][0];
    assert_eq!(reset["kind"], "reset", "newest first: {all}");
    assert!(reset["text"].as_str().unwrap().contains(&token), "{reset}");
    assert!(reset["created_at"].as_str().unwrap().ends_with('Z'));

    // A page elsewhere, through a name rebound to 127.0.0.1, names its own
    // host: refused; so is a request a reverse proxy here forwarded.
    let rebound = outbox("rebound.example:80");
    assert_eq!(rebound.status, 403, "{rebound:?}");
    assert!(!rebound.text().contains(&token));
    let head = [
        ("Host", host.as_str()),
        ("X-Forwarded-For", "203.0.113.9"),
        ("Connection", "close"),
    ];
    let proxied = exchange(
        app.running.addr(),
        &request("GET", "/dev/outbox", &head, b""),
        LIMIT,
    )
    .unwrap();
    assert_eq!(proxied.status, 403, "{proxied:?}");
    assert_eq!(
        app.request("POST", "/dev/outbox", None, b"", None).status,
        405
    );
}

fn the_dev_outbox_is_not_served_in_production() {
    let app = TestApp::spawn_with(|c| production(c, Channel::Log));
    let reply = app.request("GET", "/dev/outbox", None, b"", None);
    assert_eq!(reply.status, 404, "{reply:?}");
}

fn smtp_mail_carries_links_from_the_public_url_only() {
    let sink = SmtpSink::start(SinkOptions {
        starttls: true,
        ..SinkOptions::default()
    });
    let app = TestApp::spawn_with(|c| {
        production(
            c,
            Channel::Smtp(format!("smtp://127.0.0.1:{}", sink.port())),
        );
        c.delivery_settings.mail_from = Some("Example <no-reply@example.com>".to_owned());
        c.delivery_settings.public_url = Some("https://auth.example.com".to_owned());
        c.delivery_settings.ca_file = Some(sink.ca_file().to_owned());
    });
    assert_eq!(app.register("ann@x.io", STRONG).status, 200);
    // Registration's verification, over STARTTLS.
    let mail = sink.wait_for(1, Duration::from_secs(20));
    assert_eq!(mail[0].to, ["ann@x.io"]);
    assert!(mail[0].tls, "STARTTLS was offered and used");
    assert!(mail[0].data.contains("no-reply@example.com"));
    // A reset asked for with a Host an attacker chose: the link is still
    // the public URL's.
    let body = b"email=ann%40x.io";
    let head = [
        ("Host", "evil.example"),
        ("Connection", "close"),
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Content-Length", "16"),
    ];
    let reply = exchange(
        app.running.addr(),
        &request("POST", "/reset_password", &head, body),
        LIMIT,
    )
    .unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");
    let mail = sink.wait_for(2, Duration::from_secs(20));
    let data = quoted_printable(&mail[1].data);
    assert!(!data.contains("evil.example"), "{data}");
    let link = "https://auth.example.com/ui/reset-password?email=ann%40x.io&token=";
    let at = data
        .find(link)
        .unwrap_or_else(|| panic!("no link in {data}"));
    let token: String = data[at + link.len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    assert_eq!(token.len(), 43, "{token}");
    let reset = form(
        &app,
        "PUT",
        "/reset_password",
        &[
            ("email", "ann@x.io"),
            ("reset_token", &token),
            ("new_password", "another strong passphrase"),
        ],
    );
    assert_eq!(reset.status, 200, "{reset:?}");
}

fn webhooks_are_signed_retried_and_kept_as_dead_letters() {
    let sink = WebhookSink::https();
    let app = TestApp::spawn_with(|c| {
        production(c, Channel::Webhook(sink.url("/authd")));
        c.delivery_settings.webhook_secret = Some(SECRET.to_owned());
        c.delivery_settings.ca_file = Some(sink.ca_file().to_owned());
    });
    assert_eq!(app.register("ann@x.io", STRONG).status, 200);
    let verify = wait_until(|| bodies(&sink, "verify"), |b| !b.is_empty());
    assert_eq!(verify[0]["email"], "ann@x.io");
    let now = chrono::Utc::now().timestamp();
    let signed: Vec<Request> = sink.requests();
    verify_signature(SECRET, &signed[0], now, 300).unwrap();
    assert!(verify_signature(
        "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &signed[0],
        now,
        300
    )
    .is_err());

    // A failure the receiver may get over (500): retried after a backoff.
    sink.answer(Reply::Status(500));
    let ask = || form(&app, "POST", "/reset_password", &[("email", "ann@x.io")]);
    assert_eq!(ask().status, 200);
    wait_until(|| sink.requests().len(), |n| *n >= 2);
    sink.answer(Reply::Status(204));
    let reset = wait_until(|| bodies(&sink, "reset"), |b| b.len() >= 2);
    let ids: Vec<String> = sink
        .requests()
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains("\"reset\""))
        .map(|r| r.header("webhook-id").unwrap().to_owned())
        .collect();
    // Each attempt's token is new, and so is its webhook-id: a receiver
    // dropping duplicates by id keeps the retry.
    assert_ne!(ids[0], ids[1], "{ids:?}");
    // The token is minted when sent: the retry's replaced the first.
    for (body, works) in [(&reset[0], false), (&reset[1], true)] {
        let token = body["reset_token"].as_str().unwrap();
        let fields = [
            ("email", "ann@x.io"),
            ("reset_token", token),
            ("new_password", "another strong passphrase"),
        ];
        let status = form(&app, "PUT", "/reset_password", &fields).status;
        assert_eq!(status == 200, works, "{body}");
    }

    // One the receiver refuses (400) is a dead letter at once: a reset,
    // kept without its token (minted again when revived and sent).
    sink.answer(Reply::Status(400));
    let before = sink.requests().len();
    assert_eq!(ask().status, 200);
    let store = app.running.store();
    let dead = wait_until(|| store.queued().unwrap(), |q| q.iter().any(|m| m.dead));
    assert_eq!(sink.requests().len(), before + 1);
    let letter = dead.iter().find(|m| m.dead).unwrap();
    assert_eq!(letter.intent.kind.name(), "reset");
    assert!(
        letter.last_error.as_deref().unwrap().contains("400"),
        "{letter:?}"
    );
    assert_eq!(letter.intent.token, None, "{letter:?}");
    sink.answer(Reply::Status(200));
    assert_eq!(store.revive(None, authd::clock::unix_millis()).unwrap(), 1);
    let resets = wait_until(|| bodies(&sink, "reset"), |b| b.len() >= 4);
    let token = resets[3]["reset_token"].as_str().unwrap();
    let fields = [
        ("email", "ann@x.io"),
        ("reset_token", token),
        ("new_password", "yet another strong passphrase"),
    ];
    assert_eq!(form(&app, "PUT", "/reset_password", &fields).status, 200);
    wait_until(|| store.queued().unwrap(), |q| q.is_empty());
}

fn a_message_accepted_before_a_crash_is_sent_after_the_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let sink = WebhookSink::http();
    sink.answer(Reply::Status(503));
    let flags = [
        "--profile",
        "production",
        "--bcrypt-cost",
        "10",
        "--delivery",
    ];
    let url = format!("webhook:{}", sink.url("/authd"));
    let mut args: Vec<&str> = flags.to_vec();
    args.push(&url);
    let server = Proc::start(&dir, &args);
    let form = format!("email=ann%40x.io&password={}", enc(STRONG));
    assert_eq!(server.post("/users", &form).0, 200);
    // The first attempt failed (503); the message waits for its retry.
    wait_until(|| sink.requests().len(), |n| *n >= 1);
    std::thread::sleep(Duration::from_millis(500));
    server.signal("KILL");
    drop(server);
    sink.answer(Reply::Status(200));
    let server = Proc::start(&dir, &args);
    let delivered = wait_until(|| bodies(&sink, "verify"), |b| b.len() >= 2);
    assert_eq!(delivered[1]["email"], "ann@x.io");
    drop(server);
}

fn messages_to_one_address_are_limited() {
    let sink = WebhookSink::http();
    let app = TestApp::spawn_with(|c| production(c, Channel::Webhook(sink.url("/authd"))));
    assert_eq!(app.register("ann@x.io", STRONG).status, 200);
    for _ in 0..4 {
        // The answer says nothing of the limit (it would tell who has an
        // account).
        let reply = form(&app, "POST", "/reset_password", &[("email", "ann@x.io")]);
        assert_eq!(reply.status, 200, "{reply:?}");
    }
    // Registration's verification and two resets: three an hour.
    wait_until(|| sink.requests().len(), |n| *n >= 3);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sink.requests().len(), 3);
    assert_eq!(bodies(&sink, "reset").len(), 2);
}

fn a_full_queue_answers_503() {
    let sink = WebhookSink::http();
    sink.answer(Reply::Status(503));
    let app = TestApp::spawn_with(|c| {
        production(c, Channel::Webhook(sink.url("/authd")));
        c.delivery_queue_max = 2;
    });
    assert_eq!(app.register("ann@x.io", STRONG).status, 200);
    assert_eq!(app.register("bob@x.io", STRONG).status, 200);
    // Two verifications wait (the receiver answers 503): the queue is full.
    let reply = form(&app, "POST", "/reset_password", &[("email", "cat@x.io")]);
    assert_eq!(reply.status, 503, "{reply:?}");
    assert!(reply.header("Retry-After").is_some());
    assert_eq!(reply.message(), "too many messages queued, retry shortly");
}

fn instances_share_the_queue_without_double_sends() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shared");
    let sink = WebhookSink::http();
    let url = format!("webhook:{}", sink.url("/authd"));
    // Production: the workers mint the tokens, whichever instance claims.
    let args = [
        "--profile",
        "production",
        "--bcrypt-cost",
        "10",
        "--delivery",
        url.as_str(),
        "--request-free",
        "1000",
    ];
    let servers: Vec<Proc> = (0..3).map(|_| Proc::start(&dir, &args)).collect();
    for i in 0..30 {
        let form = format!("email=u{i}%40x.io&password={}", enc(STRONG));
        assert_eq!(servers[i % 3].post("/users", &form).0, 200);
    }
    let sent = wait_until(|| bodies(&sink, "verify"), |b| b.len() >= 30);
    std::thread::sleep(Duration::from_millis(1500));
    let mut emails: Vec<String> = bodies(&sink, "verify")
        .iter()
        .map(|b| b["email"].as_str().unwrap().to_owned())
        .collect();
    emails.sort();
    let before = emails.len();
    emails.dedup();
    assert_eq!((before, emails.len()), (30, 30), "{sent:?}");
}

fn the_outbox_command_lists_shows_retries_and_purges() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    // The dev profile's default channel: the outbox.
    let server = Proc::start(&dir, &[]);
    assert_eq!(server.post("/users", "email=ann%40x.io&password=pw").0, 200);
    let caught = wait_until(
        || crate::common::stores::run_authd(&dir, &["outbox", "list", "--json"], None),
        |(_, out, _)| out.contains("\"caught\""),
    );
    assert_eq!(caught.0, 0, "{caught:?}");
    let line: serde_json::Value = serde_json::from_str(caught.1.lines().next().unwrap()).unwrap();
    assert_eq!(
        (&line["kind"], &line["to"]),
        (&"verify".into(), &"ann@x.io".into())
    );
    let id = line["id"].to_string();
    let (code, out, err) = crate::common::stores::run_authd(&dir, &["outbox", "show", &id], None);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("To: ann@x.io") && out.contains("/ui/verify-email?email=ann%40x.io&token="),
        "{out}"
    );
    let (code, _, err) =
        crate::common::stores::run_authd(&dir, &["outbox", "show", "999999"], None);
    assert_eq!(code, 1, "{err}");
    let (code, _, err) =
        crate::common::stores::run_authd(&dir, &["outbox", "retry", "--all"], None);
    assert_eq!(code, 1);
    assert!(err.contains("no dead letter"), "{err}");
    let (code, out, err) =
        crate::common::stores::run_authd(&dir, &["outbox", "purge", "--caught"], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        "removed 0 dead letter(s) and 1 caught message(s)"
    );
    let (_, out, _) = crate::common::stores::run_authd(&dir, &["outbox", "list"], None);
    assert!(
        out.contains("queue: 0 message(s)") && out.contains("caught: 0 message(s)"),
        "{out}"
    );
    drop(server);
}

fn account_events_go_signed_to_the_events_webhook() {
    let sink = WebhookSink::https();
    let app = TestApp::spawn_with(|c| {
        c.delivery = Some(Channel::Outbox);
        c.delivery_settings.links_to_listener = true;
        c.delivery_settings.events_webhook = Some(sink.url("/events"));
        c.delivery_settings.webhook_secret = Some(SECRET.to_owned());
        c.delivery_settings.ca_file = Some(sink.ca_file().to_owned());
    });
    let session = app.signed_in("ann@x.io", "pw-ann-1");
    let token = form(&app, "POST", "/verify_email", &[("email", "ann@x.io")]).json()
        ["verify_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let redeem = [("email", "ann@x.io"), ("verify_token", token.as_str())];
    assert_eq!(form(&app, "PUT", "/verify_email", &redeem).status, 200);
    let signed = |method: &str, path: &str, fields: &[(&str, &str)]| {
        let (content_type, body) = crate::common::encode(Format::Form, fields);
        app.request(method, path, Some(&content_type), &body, Some(&session))
    };
    let change = [("password", "pw-ann-1"), ("new_password", "pw-ann-2")];
    assert_eq!(signed("PUT", "/password", &change).status, 200);
    assert_eq!(
        signed("DELETE", "/account", &[("password", "pw-ann-2")]).status,
        200
    );
    let requests = wait_until(|| sink.requests(), |r| r.len() >= 4);
    let now = chrono::Utc::now().timestamp();
    let mut types = Vec::new();
    for request in &requests {
        assert_eq!(request.path, "/events");
        verify_signature(SECRET, request, now, 300).unwrap();
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["data"]["email"], "ann@x.io", "{body}");
        assert_eq!(body["data"]["user_id"], 1, "{body}");
        assert!(chrono::DateTime::parse_from_rfc3339(body["timestamp"].as_str().unwrap()).is_ok());
        assert!(!String::from_utf8_lossy(&request.body).contains(&token));
        types.push(body["type"].as_str().unwrap().to_owned());
    }
    types.sort();
    assert_eq!(
        types,
        [
            "password.changed",
            "user.created",
            "user.deleted",
            "user.verified"
        ]
    );
}

fn secrets_stay_out_of_start_up_lines_and_failure_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    // Nothing listens on port 9: every attempt fails and is logged.
    let mut command = std::process::Command::new(crate::common::process::BIN);
    command
        .env("AUTHD_BCRYPT_COST", "4")
        .env("AUTHD_WEBHOOK_SECRET", SECRET)
        .args(["serve", "--addr", "127.0.0.1:0"])
        .args(crate::common::stores::store_args(&dir))
        .args([
            "--delivery",
            "smtp://mailer:s3cret-pw@127.0.0.1:9",
            "--mail-from",
            "no-reply@example.com",
            "--events-webhook",
            "http://127.0.0.1:9/events",
        ]);
    let server = Proc::spawn(command, &dir.with_extension("stderr"));
    assert_eq!(server.post("/users", "email=ann%40x.io&password=pw").0, 200);
    let stderr = wait_until(
        || server.stderr(),
        |e| e.contains("failed (attempt 1 of 8)"),
    );
    assert!(stderr.contains("smtp://mailer:***@127.0.0.1:9"), "{stderr}");
    for secret in ["s3cret-pw", SECRET, &SECRET["whsec_".len()..]] {
        assert!(
            !stderr.contains(secret),
            "stderr leaks {secret:?}: {stderr}"
        );
    }
}

crate::on_every_store!(
    secrets_stay_out_of_start_up_lines_and_failure_logs,
    account_events_go_signed_to_the_events_webhook,
    the_outbox_command_lists_shows_retries_and_purges,
    the_dev_outbox_catches_every_message,
    the_dev_outbox_is_not_served_in_production,
    smtp_mail_carries_links_from_the_public_url_only,
    webhooks_are_signed_retried_and_kept_as_dead_letters,
    a_message_accepted_before_a_crash_is_sent_after_the_restart,
    messages_to_one_address_are_limited,
    a_full_queue_answers_503,
);

mod shared {
    crate::only_on_postgres!(instances_share_the_queue_without_double_sends);
    use super::instances_share_the_queue_without_double_sends;
}
