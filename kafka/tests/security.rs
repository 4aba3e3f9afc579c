//! The client against the dev broker's secured listeners
//! (deploy/dev/kafka.sh: SSL with client certificates, SASL_SSL with
//! SCRAM-SHA-512 and PLAIN; addresses and credentials in kafka.env): what
//! works, and that a refused connection is reported as such, quickly, with
//! the broker's reason, instead of as an outage.

use std::time::{Duration, Instant};
use weir_kafka::{KafkaError, TopicOffsets};

mod common;
use common::unique;

/// The secured listeners' settings from kafka.env, or `None` to skip (a
/// failure under `CI=true`).
struct Secure {
    plain: String,
    ssl: String,
    sasl_ssl: String,
    ca: String,
    cert: String,
    key: String,
    user: String,
    password: String,
}

fn secure(test: &str) -> Option<Secure> {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    match (
        var("WEIR_KAFKA_BROKERS"),
        var("WEIR_KAFKA_SSL_BROKERS"),
        var("WEIR_KAFKA_SASL_SSL_BROKERS"),
    ) {
        (Some(plain), Some(ssl), Some(sasl_ssl)) => Some(Secure {
            plain,
            ssl,
            sasl_ssl,
            ca: var("WEIR_KAFKA_CA").expect("WEIR_KAFKA_CA"),
            cert: var("WEIR_KAFKA_CLIENT_CERT").expect("WEIR_KAFKA_CLIENT_CERT"),
            key: var("WEIR_KAFKA_CLIENT_KEY").expect("WEIR_KAFKA_CLIENT_KEY"),
            user: var("WEIR_KAFKA_SASL_USER").expect("WEIR_KAFKA_SASL_USER"),
            password: var("WEIR_KAFKA_SASL_PASSWORD").expect("WEIR_KAFKA_SASL_PASSWORD"),
        }),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{test}: the secured Kafka listeners are not in the environment under CI (load kafka.env of deploy/dev/kafka.sh)")
        }
        _ => {
            eprintln!("SKIPPED {test}: WEIR_KAFKA_SASL_SSL_BROKERS is not set (deploy/dev/kafka.sh start, then load kafka.env)");
            None
        }
    }
}

fn list(brokers: &str, topic: &str, props: &[(&str, &str)]) -> Result<Vec<u32>, KafkaError> {
    TopicOffsets::new(brokers, topic, props.iter().copied())?.partitions()
}

#[test]
fn secured_listeners_accept_the_right_credentials() {
    let Some(s) = secure("secured_listeners_accept_the_right_credentials") else {
        return;
    };
    let topic = unique("secure");
    weir_kafka::ensure_topic(&s.plain, [], &topic, 3, &[]).unwrap();
    for mechanism in ["SCRAM-SHA-512", "PLAIN"] {
        let got = list(
            &s.sasl_ssl,
            &topic,
            &[
                ("security.protocol", "sasl_ssl"),
                ("sasl.mechanism", mechanism),
                ("sasl.username", &s.user),
                ("sasl.password", &s.password),
                ("ssl.ca.location", &s.ca),
            ],
        );
        assert_eq!(got.unwrap(), vec![0, 1, 2], "{mechanism}");
    }
    let got = list(
        &s.ssl,
        &topic,
        &[
            ("security.protocol", "ssl"),
            ("ssl.ca.location", &s.ca),
            ("ssl.certificate.location", &s.cert),
            ("ssl.key.location", &s.key),
        ],
    );
    assert_eq!(got.unwrap(), vec![0, 1, 2], "mutual TLS");
}

/// Runs `f`, which must fail as refused within `within`; returns the message.
fn refused(
    what: &str,
    within: Duration,
    f: impl FnOnce() -> Result<Vec<u32>, KafkaError>,
) -> String {
    let start = Instant::now();
    let e = f().expect_err(what);
    let took = start.elapsed();
    assert!(e.is_refused(), "{what}: not a refusal: {e}");
    assert!(!e.is_transient(), "{what}: {e}");
    assert!(took < within, "{what}: took {took:?}: {e}");
    e.to_string()
}

#[test]
fn refused_connections_fail_fast_with_the_brokers_reason() {
    let Some(s) = secure("refused_connections_fail_fast_with_the_brokers_reason") else {
        return;
    };
    let topic = unique("refused");
    weir_kafka::ensure_topic(&s.plain, [], &topic, 1, &[]).unwrap();
    let within = Duration::from_secs(5);
    let sasl = |password: &str, mechanism: &str| {
        vec![
            ("security.protocol", "sasl_ssl".to_string()),
            ("sasl.mechanism", mechanism.to_string()),
            ("sasl.username", s.user.clone()),
            ("sasl.password", password.to_string()),
            ("ssl.ca.location", s.ca.clone()),
        ]
    };
    let owned = |v: &[(&'static str, String)]| -> Vec<(&'static str, String)> { v.to_vec() };
    let run = |props: Vec<(&'static str, String)>| {
        let props: Vec<(&str, &str)> = props.iter().map(|(k, v)| (*k, v.as_str())).collect();
        list(&s.sasl_ssl, &topic, &props)
    };

    let m = refused("wrong SCRAM password", within, || {
        run(owned(&sasl("wrong-password", "SCRAM-SHA-512")))
    });
    assert!(m.contains("Authentication failed"), "{m}");
    assert!(!m.contains("wrong-password"), "{m}");

    let m = refused("wrong PLAIN password", within, || {
        run(owned(&sasl("wrong-password", "PLAIN")))
    });
    assert!(m.contains("Authentication failed"), "{m}");

    // The system's CAs do not know the dev CA.
    let m = refused("unknown CA", within, || {
        let mut p = sasl(&s.password, "SCRAM-SHA-512");
        p.retain(|(k, _)| *k != "ssl.ca.location");
        run(p)
    });
    assert!(m.contains("certificate verify failed"), "{m}");

    // Not tested: a missing client certificate. With TLS 1.3 the broker
    // refuses it after the client's side of the handshake has finished,
    // so librdkafka sees a disconnect, which is also what an outage looks
    // like (docs/kafka.md says so).

    // A file librdkafka cannot read is refused when the client is created.
    let m = refused("missing CA file", within, || {
        let mut p = sasl(&s.password, "SCRAM-SHA-512");
        p.retain(|(k, _)| *k != "ssl.ca.location");
        p.push(("ssl.ca.location", "/nonexistent/ca.pem".into()));
        run(p)
    });
    assert!(m.contains("ssl.ca.location"), "{m}");
}

#[test]
fn an_unreachable_broker_is_still_an_outage() {
    if secure("an_unreachable_broker_is_still_an_outage").is_none() {
        return;
    }
    // Nothing listens on port 1: transient, retried, never a refusal.
    let props = [
        ("security.protocol", "sasl_ssl"),
        ("sasl.mechanism", "PLAIN"),
        ("sasl.username", "u"),
        ("sasl.password", "p"),
    ];
    let e = list("127.0.0.1:1", "t", &props).unwrap_err();
    assert!(e.is_transient() && !e.is_refused(), "{e}");
}
