//! The SMTP and webhook transports against real servers on 127.0.0.1:
//! the test SMTP sink (plain, STARTTLS, implicit TLS, AUTH, chosen RCPT
//! replies) and the webhook sink (HTTP and HTTPS, chosen statuses,
//! redirects), TLS verified against a CA made in the test.

use std::net::TcpListener;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use authd::message::{Kind, Message, PublicUrl, Templates, Vars};
use authd::transport::smtp::{Security, Smtp, SmtpConfig};
use authd::transport::webhook::{Webhook, WebhookSecret, WebhookTarget};
use authd::transport::SendError;

use crate::common::smtp_sink::{SinkOptions, SmtpSink};
use crate::common::webhook_sink::{verify_signature, Answer, WebhookSink};

const FROM: &str = "authd <noreply@example.com>";
const WAIT: Duration = Duration::from_secs(5);

fn reset_message() -> Message {
    let public = PublicUrl::parse("https://auth.example.com").unwrap();
    let vars = Vars {
        email: "ann@example.com".to_owned(),
        token: Some("tok-123".to_owned()),
        link: public.link(Kind::Reset, "ann@example.com", "tok-123"),
        expires_at: Some("2030-01-01T00:00:00Z".to_owned()),
        ..Vars::default()
    };
    Templates::load(None).unwrap().render(Kind::Reset, &vars)
}

fn smtp(url: &str, ca: Option<&std::path::Path>) -> Smtp {
    Smtp::new(SmtpConfig::parse(url, FROM).unwrap(), ca).unwrap()
}

#[test]
fn smtp_in_clear_to_loopback_when_no_starttls_is_offered() {
    let sink = SmtpSink::start(SinkOptions::default());
    let smtp = smtp(&format!("smtp://127.0.0.1:{}", sink.port()), None);
    assert_eq!(smtp.config().security(), Security::StartTlsIfOffered);
    smtp.send(&reset_message()).unwrap();
    let received = sink.wait_for(1, WAIT);
    assert_eq!(received.len(), 1);
    let mail = &received[0];
    assert_eq!(mail.from, "noreply@example.com");
    assert_eq!(mail.to, ["ann@example.com"]);
    assert!(!mail.tls);
    assert_eq!(mail.user, None);
    let data = &mail.data;
    for expected in [
        "Subject: Reset your password",
        "multipart/alternative",
        "text/plain",
        "text/html",
        "From: authd <noreply@example.com>",
        "To: ann@example.com",
    ] {
        assert!(data.contains(expected), "{expected:?} not in:\n{data}");
    }
}

#[test]
fn smtp_starttls_with_the_test_ca_on_loopback_and_when_required() {
    let sink = SmtpSink::start(SinkOptions {
        starttls: true,
        ..SinkOptions::default()
    });
    let url = format!("smtp://127.0.0.1:{}", sink.port());
    // Offered on loopback: used.
    smtp(&url, Some(sink.ca_file()))
        .send(&reset_message())
        .unwrap();
    // Required: used too.
    let config = SmtpConfig::parse(&url, FROM).unwrap().require_tls();
    Smtp::new(config, Some(sink.ca_file()))
        .unwrap()
        .send(&reset_message())
        .unwrap();
    let received = sink.wait_for(2, WAIT);
    assert_eq!(received.len(), 2);
    assert!(received.iter().all(|m| m.tls), "{received:?}");
}

#[test]
fn smtp_required_starttls_not_offered_sends_nothing() {
    let sink = SmtpSink::start(SinkOptions::default());
    let config = SmtpConfig::parse(&format!("smtp://127.0.0.1:{}", sink.port()), FROM)
        .unwrap()
        .require_tls();
    assert_eq!(config.security(), Security::StartTlsRequired);
    let err = Smtp::new(config, None)
        .unwrap()
        .send(&reset_message())
        .unwrap_err();
    assert!(matches!(err, SendError::Permanent(_)), "{err:?}");
    assert!(sink.received().is_empty());
    let commands = sink.commands();
    assert!(
        !commands.iter().any(|c| c.starts_with("MAIL")),
        "{commands:?}"
    );
}

#[test]
fn smtp_starttls_with_an_untrusted_certificate_sends_nothing() {
    let sink = SmtpSink::start(SinkOptions {
        starttls: true,
        ..SinkOptions::default()
    });
    // Another CA than the one that signed the sink's certificate.
    let other = SmtpSink::start(SinkOptions::default());
    let err = smtp(
        &format!("smtp://127.0.0.1:{}", sink.port()),
        Some(other.ca_file()),
    )
    .send(&reset_message())
    .unwrap_err();
    assert!(matches!(err, SendError::Permanent(_)), "{err:?}");
    assert!(sink.received().is_empty());
}

#[test]
fn smtps_uses_tls_from_the_first_byte() {
    let sink = SmtpSink::start(SinkOptions {
        implicit_tls: true,
        ..SinkOptions::default()
    });
    let smtp = smtp(
        &format!("smtps://127.0.0.1:{}", sink.port()),
        Some(sink.ca_file()),
    );
    assert_eq!(smtp.config().security(), Security::ImplicitTls);
    smtp.send(&reset_message()).unwrap();
    let received = sink.wait_for(1, WAIT);
    assert_eq!(received.len(), 1);
    assert!(received[0].tls);
}

#[test]
fn smtp_auth_with_the_right_password_and_the_wrong_one() {
    let sink = SmtpSink::start(SinkOptions {
        starttls: true,
        auth: Some(("mailer".to_owned(), "p@ss w0rd".to_owned())),
        ..SinkOptions::default()
    });
    let port = sink.port();
    smtp(
        &format!("smtp://mailer:p%40ss%20w0rd@127.0.0.1:{port}"),
        Some(sink.ca_file()),
    )
    .send(&reset_message())
    .unwrap();
    let received = sink.wait_for(1, WAIT);
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].user.as_deref(), Some("mailer"));
    assert!(received[0].tls);

    let wrong = "Wr0ngSecretPass";
    let err = smtp(
        &format!("smtp://mailer:{wrong}@127.0.0.1:{port}"),
        Some(sink.ca_file()),
    )
    .send(&reset_message())
    .unwrap_err();
    assert!(matches!(err, SendError::Permanent(_)), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(!text.contains(wrong), "{text}");
    assert_eq!(sink.auth_failures(), 1);
    assert_eq!(sink.received().len(), 1, "nothing more was accepted");
}

#[test]
fn smtp_4xx_is_transient_and_5xx_permanent() {
    for (line, transient) in [
        ("451 4.3.0 try again later", true),
        ("550 5.1.1 no such user", false),
    ] {
        let sink = SmtpSink::start(SinkOptions {
            rcpt_reply: Some(line.to_owned()),
            ..SinkOptions::default()
        });
        let err = smtp(&format!("smtp://127.0.0.1:{}", sink.port()), None)
            .send(&reset_message())
            .unwrap_err();
        assert_eq!(err.is_transient(), transient, "{line}: {err:?}");
        assert!(sink.received().is_empty());
    }
}

#[test]
fn smtp_connection_refused_is_transient() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let err = smtp(&format!("smtp://127.0.0.1:{port}"), None)
        .send(&reset_message())
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn body() -> Vec<u8> {
    br#"{"type":"reset","email":"ann@example.com","reset_token":"tok-123","expires_at":"2030-01-01T00:00:00Z"}"#.to_vec()
}

fn webhook(sink: &WebhookSink, secret: Option<&str>) -> Webhook {
    let (target, warning) = WebhookTarget::parse(&sink.url("/hook")).unwrap();
    assert_eq!(warning, None);
    Webhook::new(
        target,
        secret.map(|s| WebhookSecret::parse(s).unwrap()),
        Some(sink.ca_file()),
    )
    .unwrap()
}

#[test]
fn webhook_over_https_is_signed_per_standard_webhooks() {
    let sink = WebhookSink::https();
    let body = body();
    webhook(&sink, Some(SECRET))
        .send("msg_2a7f", &body)
        .unwrap();
    let requests = sink.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/hook")
    );
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("webhook-id"), Some("msg_2a7f"));
    assert_eq!(request.body, body);
    verify_signature(SECRET, request, now(), 300).unwrap();

    // The verifier is no rubber stamp: another body, another secret or a
    // stale timestamp fail.
    let mut tampered = request.clone();
    tampered.body = br#"{"email":"eve@example.com"}"#.to_vec();
    assert!(verify_signature(SECRET, &tampered, now(), 300).is_err());
    assert!(verify_signature(
        "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
        request,
        now(),
        300
    )
    .is_err());
    assert!(verify_signature(SECRET, request, now() + 600, 300).is_err());
}

#[test]
fn webhook_without_a_secret_sends_id_and_timestamp_only() {
    let sink = WebhookSink::https();
    webhook(&sink, None).send("msg_1", &body()).unwrap();
    let request = &sink.requests()[0];
    assert_eq!(request.header("webhook-id"), Some("msg_1"));
    let ts: i64 = request
        .header("webhook-timestamp")
        .unwrap()
        .parse()
        .unwrap();
    assert!((now() - ts).abs() < 60);
    assert_eq!(request.header("webhook-signature"), None);
}

#[test]
fn webhook_redirects_are_not_followed() {
    let sink = WebhookSink::https();
    let elsewhere = WebhookSink::https();
    sink.answer(Answer::Redirect(elsewhere.url("/stolen")));
    let err = webhook(&sink, Some(SECRET))
        .send("msg_1", &body())
        .unwrap_err();
    assert!(matches!(err, SendError::Permanent(_)), "{err:?}");
    assert_eq!(sink.requests().len(), 1);
    assert!(elsewhere.requests().is_empty());
}

#[test]
fn webhook_statuses_are_classified() {
    let sink = WebhookSink::https();
    let client = webhook(&sink, Some(SECRET));
    for (status, outcome) in [
        (200, None),
        (204, None),
        (500, Some(true)),
        (503, Some(true)),
        (429, Some(true)),
        (408, Some(true)),
        (400, Some(false)),
        (401, Some(false)),
        (404, Some(false)),
    ] {
        sink.answer(Answer::Status(status));
        let result = client.send("msg_1", &body());
        assert_eq!(
            result.as_ref().err().map(SendError::is_transient),
            outcome,
            "{status}: {result:?}"
        );
        if let Err(e) = result {
            assert!(e.to_string().contains(&status.to_string()), "{e}");
            assert!(!e.to_string().contains(&SECRET[6..]), "{e}");
        }
    }
    assert_eq!(sink.requests().len(), 9);
}

#[test]
fn webhook_with_an_untrusted_certificate_sends_nothing() {
    let sink = WebhookSink::https();
    let other = WebhookSink::https();
    let (target, _) = WebhookTarget::parse(&sink.url("/hook")).unwrap();
    let err = Webhook::new(target, None, Some(other.ca_file()))
        .unwrap()
        .send("msg_1", &body())
        .unwrap_err();
    assert!(matches!(err, SendError::Permanent(_)), "{err:?}");
    assert!(sink.requests().is_empty());
}

#[test]
fn webhook_plain_http_to_loopback_works_with_a_warning() {
    let sink = WebhookSink::http();
    let (target, warning) = WebhookTarget::parse(&sink.url("/hook")).unwrap();
    assert!(warning.unwrap().contains("plain HTTP"));
    Webhook::new(target, Some(WebhookSecret::parse(SECRET).unwrap()), None)
        .unwrap()
        .send("msg_1", &body())
        .unwrap();
    let requests = sink.requests();
    assert_eq!(requests.len(), 1);
    verify_signature(SECRET, &requests[0], now(), 300).unwrap();
    // A public name is refused before anything is sent.
    assert!(WebhookTarget::parse("http://hooks.example.com/hook").is_err());
}

#[test]
fn webhook_connection_refused_is_transient() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (target, _) = WebhookTarget::parse(&format!("http://127.0.0.1:{port}/hook")).unwrap();
    let err = Webhook::new(target, None, None)
        .unwrap()
        .send("msg_1", &body())
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}
