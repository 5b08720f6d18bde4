use super::*;
use proptest::prelude::*;
use std::net::IpAddr;
use std::time::Duration;

/// The specification's own test vector (standard-webhooks, spec and libraries' tests).
#[test]
fn a_signature_matches_the_standard_webhooks_test_vector() {
    let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    assert_eq!(
        secret.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#
        ),
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
}

#[test]
fn a_signature_changes_with_the_id_the_timestamp_and_the_body() {
    let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let base = secret.sign("msg_1", 1, b"{}");
    assert_ne!(base, secret.sign("msg_2", 1, b"{}"));
    assert_ne!(base, secret.sign("msg_1", 2, b"{}"));
    assert_ne!(base, secret.sign("msg_1", 1, b"{ }"));
}

#[test]
fn malformed_secrets_are_refused_with_the_reason() {
    assert_eq!(
        SigningSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap_err(),
        SecretError::Prefix
    );
    assert_eq!(
        SigningSecret::parse("whsec_not base64!").unwrap_err(),
        SecretError::NotBase64
    );
    assert_eq!(
        SigningSecret::parse("whsec_c2hvcnQ=").unwrap_err(),
        SecretError::Length(5)
    );
}

#[test]
fn generated_secrets_parse_and_differ() {
    let (a, b) = (SigningSecret::generate(), SigningSecret::generate());
    assert_ne!(a, b);
    assert!(SigningSecret::parse(&a).is_ok());
}

#[test]
fn only_public_addresses_are_public() {
    let cases = [
        ("8.8.8.8", true),
        ("1.1.1.1", true),
        ("2606:4700:4700::1111", true),
        ("127.0.0.1", false),
        ("127.8.9.1", false),
        ("10.1.2.3", false),
        ("172.16.0.1", false),
        ("172.31.255.255", false),
        ("172.32.0.1", true),
        ("192.168.1.1", false),
        ("169.254.169.254", false),
        ("100.64.0.1", false),
        ("0.0.0.0", false),
        ("224.0.0.1", false),
        ("255.255.255.255", false),
        ("::1", false),
        ("::", false),
        ("fd00::1", false),
        ("fe80::1", false),
        ("ff02::1", false),
        ("::ffff:127.0.0.1", false),
        ("::ffff:8.8.8.8", true),
        ("64:ff9b::a9fe:a9fe", false),
        ("64:ff9b::808:808", true),
    ];
    for (ip, public) in cases {
        let parsed: IpAddr = ip.parse().unwrap();
        assert_eq!(address::is_public(parsed), public, "{ip}");
    }
}

#[test]
fn an_allowed_network_opens_only_itself() {
    let policy = AddressPolicy::new(vec!["127.0.0.1/32".parse().unwrap()]);
    assert!(policy.permits("127.0.0.1".parse().unwrap()));
    assert!(!policy.permits("127.0.0.2".parse().unwrap()));
    assert!(!policy.permits("10.0.0.1".parse().unwrap()));
    let url = |u: &str| url::Url::parse(u).unwrap();
    assert!(policy.check_url(&url("http://127.0.0.1:9/x")).is_ok());
    assert!(policy.check_url(&url("http://127.0.0.2:9/x")).is_err());
    assert!(policy.check_url(&url("http://[::1]:9/x")).is_err());
    // Names are judged after resolution, by the resolver.
    assert!(policy.check_url(&url("http://localhost:9/x")).is_ok());
}

#[tokio::test]
async fn the_resolver_drops_refused_addresses_and_fails_when_none_is_left() {
    use reqwest::dns::Resolve;
    let strict = GuardedResolver::new(std::sync::Arc::new(AddressPolicy::default()));
    let refused = strict
        .resolve("localhost".parse().unwrap())
        .await
        .err()
        .expect("localhost is loopback");
    assert!(
        refused.to_string().contains("private or reserved"),
        "{refused}"
    );
    let loopback = GuardedResolver::new(std::sync::Arc::new(AddressPolicy::new(vec![
        "127.0.0.0/8".parse().unwrap(),
        "::1/128".parse().unwrap(),
    ])));
    let found: Vec<_> = loopback
        .resolve("localhost".parse().unwrap())
        .await
        .unwrap()
        .collect();
    assert!(!found.is_empty() && found.iter().all(|a| a.ip().is_loopback()));
}

#[test]
fn the_default_schedule_spans_more_than_a_day_in_eight_attempts() {
    let schedule = RetrySchedule::default();
    assert_eq!(schedule.attempts(), 8);
    let total: Duration = (1..8)
        .map(|n| schedule.after_failure(n, None, 0.0).unwrap())
        .sum();
    assert!(total > Duration::from_secs(24 * 3600), "{total:?}");
    assert_eq!(schedule.after_failure(8, None, 0.0), None);
    assert_eq!(schedule.after_failure(0, None, 0.0), None);
}

#[test]
fn retry_after_is_honoured_up_to_a_day() {
    let schedule = RetrySchedule::default();
    let first = |after| schedule.after_failure(1, after, 0.0).unwrap();
    assert_eq!(first(None), Duration::from_secs(5));
    assert_eq!(first(Some(Duration::from_secs(1))), Duration::from_secs(5));
    assert_eq!(
        first(Some(Duration::from_secs(90))),
        Duration::from_secs(90)
    );
    assert_eq!(
        first(Some(Duration::from_secs(7 * 24 * 3600))),
        Duration::from_secs(24 * 3600)
    );
}

#[test]
fn retry_after_is_read_as_seconds_or_as_an_http_date() {
    let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
    assert_eq!(
        retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now),
        Some(Duration::from_secs(120))
    );
    assert_eq!(
        retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
        Some(Duration::ZERO)
    );
    assert_eq!(retry_after("soon", now), None);
    assert_eq!(retry_after("-5", now), None);
}

#[test]
fn subscriptions_match_listed_types_or_everything() {
    assert!(subscribes(&[], "case.opened"));
    let some = vec!["case.opened".to_string()];
    assert!(subscribes(&some, "case.opened"));
    assert!(!subscribes(&some, "case.closed"));
    assert_eq!(
        unknown_event_types(&["case.opened".into(), "case.open".into()]),
        vec!["case.open"]
    );
}

proptest! {
    #[test]
    fn jitter_stays_within_a_tenth_of_the_scheduled_delay(failed in 1u32..8, spread in -1.0f64..=1.0) {
        let schedule = RetrySchedule::default();
        let base = schedule.after_failure(failed, None, 0.0).unwrap();
        let delay = schedule.after_failure(failed, None, spread).unwrap();
        prop_assert!(delay >= base.mul_f64(0.9) && delay <= base.mul_f64(1.1));
    }
}

#[test]
fn an_endpoint_url_is_shown_without_its_password_or_query_values() {
    let cases = [
        (
            "https://crm.example.com/hooks",
            "https://crm.example.com/hooks",
        ),
        (
            "https://hearback:s3cret@crm.example.com/hooks",
            "https://***:***@crm.example.com/hooks",
        ),
        (
            "https://crm.example.com/hooks?token=abc123&tenant=42",
            "https://crm.example.com/hooks?token=***&tenant=***",
        ),
        (
            "https://TOKEN@crm.example.com/",
            "https://***@crm.example.com/",
        ),
        ("not a url", "***"),
    ];
    for (url, shown) in cases {
        assert_eq!(shown_url(url), shown, "{url}");
    }
}
