//! The Kafka `properties` of a job spec: checked against librdkafka at
//! `weir validate` and at submit, and resolved (secret references
//! substituted) where a client is created.
//!
//! The check asks librdkafka itself, setting each property on an empty
//! configuration: it knows every property name of the version Weir links
//! and the type and range of each value. It does not connect, and it does
//! not read files or resolve references: `ssl.ca.location` and
//! `${file:...}` name files on the machines that run the clients, which
//! need not exist where the spec is validated. A property whose value holds
//! a reference is checked by name only.

use crate::KafkaError;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError as RdError;
use rdkafka::types::RDKafkaConfRes;
use weir_proto::pb;
use weir_proto::spec::secrets::{self, ProcessLookup};
use weir_proto::spec::{SpecError, SpecIssue};

/// The SASL mechanisms Weir's librdkafka is built with.
const SASL_MECHANISMS: &[&str] = &[
    "GSSAPI",
    "PLAIN",
    "SCRAM-SHA-256",
    "SCRAM-SHA-512",
    "OAUTHBEARER",
];

/// Java client settings people copy into `properties`, with what
/// librdkafka takes instead.
const JAVA_HINTS: &[(&str, &str)] = &[
    (
        "sasl.jaas.config",
        "librdkafka has no JAAS: set sasl.mechanism with sasl.username and sasl.password (PLAIN, SCRAM) or sasl.kerberos.* (GSSAPI)",
    ),
    (
        "ssl.truststore.location",
        "librdkafka reads CA certificates in PEM: use ssl.ca.location",
    ),
    (
        "ssl.truststore.password",
        "librdkafka reads CA certificates in PEM (ssl.ca.location), which have no password",
    ),
    (
        "ssl.truststore.type",
        "librdkafka reads CA certificates in PEM: use ssl.ca.location",
    ),
    (
        "ssl.keystore.type",
        "ssl.keystore.location takes a PKCS#12 file; for PEM use ssl.certificate.location and ssl.key.location",
    ),
    (
        "sasl.login.callback.handler.class",
        "Java classes cannot be loaded by librdkafka; for OAUTHBEARER use sasl.oauthbearer.method=oidc",
    ),
    (
        "sasl.client.callback.handler.class",
        "Java classes cannot be loaded by librdkafka",
    ),
    (
        "key.serializer",
        "Weir encodes records itself (see docs/kafka.md)",
    ),
    (
        "value.serializer",
        "Weir encodes records itself (see docs/kafka.md)",
    ),
    (
        "key.deserializer",
        "Weir decodes records itself (format in the spec)",
    ),
    (
        "value.deserializer",
        "Weir decodes records itself (format in the spec)",
    ),
];

/// Checks every Kafka `properties` entry of `spec` against librdkafka:
/// an unknown property or an invalid value is refused with its path
/// (`source.kafka.properties.foo.bar`). Names that Weir sets itself and the
/// syntax of secret references are checked by
/// [`validate`](weir_proto::spec::validate).
pub fn check_properties(spec: &pb::JobSpec) -> Result<(), SpecError> {
    let mut issues = Vec::new();
    if let Some(pb::source::Kind::Kafka(k)) = spec.source.as_ref().and_then(|s| s.kind.as_ref()) {
        check_list("source.kafka.properties", &k.properties, &mut issues);
    }
    if let Some(pb::sink::Kind::Kafka(k)) = spec.sink.as_ref().and_then(|s| s.kind.as_ref()) {
        check_list("sink.kafka.properties", &k.properties, &mut issues);
    }
    if issues.is_empty() {
        Ok(())
    } else {
        Err(SpecError { issues })
    }
}

fn check_list(path: &str, properties: &[pb::Property], issues: &mut Vec<SpecIssue>) {
    for p in properties {
        if let Err(message) = check_one(&p.key, &p.value) {
            issues.push(SpecIssue {
                path: format!("{path}.{}", p.key),
                message,
            });
        }
    }
}

fn check_one(key: &str, value: &str) -> Result<(), String> {
    if let Some((_, hint)) = JAVA_HINTS.iter().find(|(k, _)| *k == key) {
        return Err(format!(
            "is a Java client setting, not a librdkafka one: {hint}"
        ));
    }
    // C strings cannot carry it.
    if key.contains('\0') || value.contains('\0') {
        return Err("must not contain a NUL byte".into());
    }
    // A value known only where it is resolved is checked by name: any
    // value librdkafka refuses still shows that the name exists.
    let referenced = secrets::has_references(value);
    let probe = if referenced { "" } else { value };
    match ClientConfig::new().set(key, probe).create_native_config() {
        Ok(_) => {}
        Err(RdError::ClientConfig(RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN, ..)) => {
            return Err("is not a librdkafka property (the properties are listed in librdkafka's CONFIGURATION.md)".into())
        }
        Err(_) if referenced => {}
        Err(RdError::ClientConfig(_, desc, ..)) => return Err(format!("invalid value: {desc}")),
        Err(e) => return Err(e.to_string()),
    }
    if referenced {
        return Ok(());
    }
    // librdkafka checks the mechanism only when a client is created.
    if key == "sasl.mechanism" || key == "sasl.mechanisms" {
        let mechanism = value.trim();
        if !SASL_MECHANISMS.contains(&mechanism) {
            return Err(format!(
                "unsupported SASL mechanism {mechanism:?}: use one of {}",
                SASL_MECHANISMS.join(", ")
            ));
        }
    }
    Ok(())
}

/// A spec's Kafka properties with their secret references resolved, ready
/// for [`client_config`](crate::client_config). Its `Debug` output shows the
/// keys only: the values may be secrets.
#[derive(Clone, Default)]
pub struct ResolvedProperties {
    pairs: Vec<(String, String)>,
}

impl std::fmt::Debug for ResolvedProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.pairs.iter().map(|(k, _)| k))
            .finish()
    }
}

impl ResolvedProperties {
    /// The `(key, value)` pairs, resolved.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Resolves the secret references (`${env:NAME}`, `${file:PATH}`) in
/// `properties` (at spec path `path`, e.g. `sink.kafka.properties`) from
/// this process's environment and files; `process` names this process in
/// errors (`driver`, `executor`). Called each time a client is created, so
/// a rotated secret file is read by the next client. An unresolvable
/// reference is [`KafkaError::Secret`], naming the property and the
/// variable or file, never a value.
pub fn resolve_properties(
    path: &str,
    properties: &[pb::Property],
    process: &str,
) -> Result<ResolvedProperties, KafkaError> {
    let mut pairs = Vec::with_capacity(properties.len());
    for p in properties {
        let at = format!("{path}.{}", p.key);
        let value = secrets::resolve(&at, &p.value, process, &ProcessLookup)?;
        pairs.push((p.key.clone(), value));
    }
    Ok(ResolvedProperties { pairs })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(source: &[(&str, &str)], sink: &[(&str, &str)]) -> pb::JobSpec {
        let props = |l: &[(&str, &str)]| {
            l.iter()
                .map(|(k, v)| pb::Property {
                    key: k.to_string(),
                    value: v.to_string(),
                })
                .collect()
        };
        pb::JobSpec {
            source: Some(pb::Source {
                kind: Some(pb::source::Kind::Kafka(pb::KafkaSource {
                    properties: props(source),
                    ..Default::default()
                })),
            }),
            sink: Some(pb::Sink {
                kind: Some(pb::sink::Kind::Kafka(pb::KafkaSink {
                    properties: props(sink),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        }
    }

    fn issues(source: &[(&str, &str)], sink: &[(&str, &str)]) -> Vec<String> {
        match check_properties(&spec(source, sink)) {
            Ok(()) => vec![],
            Err(e) => e.issues.iter().map(|i| i.to_string()).collect(),
        }
    }

    #[test]
    fn production_settings_pass() {
        let ok = [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "weir"),
            ("sasl.password", "${env:KAFKA_PASSWORD}"),
            ("ssl.ca.location", "/etc/kafka/ca.pem"),
            ("ssl.endpoint.identification.algorithm", "https"),
            ("fetch.min.bytes", "1"),
            // Only a build with libcurl (OIDC) and Cyrus SASL takes these.
            ("sasl.oauthbearer.method", "oidc"),
            (
                "sasl.oauthbearer.token.endpoint.url",
                "https://idp.example/token",
            ),
            ("sasl.kerberos.service.name", "kafka"),
            ("sasl.kerberos.keytab", "/etc/weir/weir.keytab"),
        ];
        assert_eq!(
            issues(&ok, &[("compression.type", "zstd")]),
            Vec::<String>::new()
        );
        for codec in ["lz4", "snappy", "gzip", "zstd"] {
            assert_eq!(
                issues(&[], &[("compression.type", codec)]),
                Vec::<String>::new(),
                "{codec}"
            );
        }
        for m in SASL_MECHANISMS {
            assert_eq!(
                issues(&[("sasl.mechanism", m)], &[]),
                Vec::<String>::new(),
                "{m}"
            );
        }
        // A reference is checked by name only, whatever the type.
        assert_eq!(
            issues(&[("linger.ms", "${env:LINGER}")], &[]),
            Vec::<String>::new()
        );
    }

    #[test]
    fn unknown_and_invalid_settings_are_refused_with_their_path() {
        let got = issues(
            &[("foo.bar", "1"), ("security.protocol", "tls")],
            &[
                ("linger.ms", "soon"),
                ("sasl.jaas.config", "x"),
                ("sasl.mechanism", "SCRAM-SHA-1"),
                ("no.such.secret", "${file:/run/s}"),
            ],
        );
        let want = [
            "source.kafka.properties.foo.bar: is not a librdkafka property",
            "source.kafka.properties.security.protocol: invalid value",
            "sink.kafka.properties.linger.ms: invalid value",
            "sink.kafka.properties.sasl.jaas.config: is a Java client setting, not a librdkafka one: librdkafka has no JAAS",
            "sink.kafka.properties.sasl.mechanism: unsupported SASL mechanism \"SCRAM-SHA-1\"",
            "sink.kafka.properties.no.such.secret: is not a librdkafka property",
        ];
        assert_eq!(got.len(), want.len(), "{got:#?}");
        for (g, w) in got.iter().zip(want) {
            assert!(g.starts_with(w), "{g:?} should start with {w:?}");
        }
    }

    #[test]
    fn hostile_values_are_refused_not_panics() {
        let got = issues(&[("client.id", "a\0b"), ("", "x")], &[]);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].contains("NUL"), "{got:?}");
    }

    #[test]
    fn resolved_properties_hide_their_values() {
        let props = vec![pb::Property {
            key: "sasl.password".into(),
            value: "lit${env:PATH}".into(),
        }];
        let r = resolve_properties("sink.kafka.properties", &props, "executor").unwrap();
        let shown = format!("{r:?}");
        assert_eq!(shown, "[\"sasl.password\"]");
        let (k, v) = r.iter().next().unwrap();
        assert_eq!(k, "sasl.password");
        assert!(v.starts_with("lit") && v.len() > 3);
        let missing = vec![pb::Property {
            key: "sasl.password".into(),
            value: "${env:WEIR_TEST_SURELY_UNSET}".into(),
        }];
        let e = resolve_properties("sink.kafka.properties", &missing, "executor").unwrap_err();
        assert!(e.is_refused());
        assert_eq!(
            e.to_string(),
            "sink.kafka.properties.sasl.password: environment variable WEIR_TEST_SURELY_UNSET (from ${env:WEIR_TEST_SURELY_UNSET}) is not set in the executor's environment"
        );
    }
}
