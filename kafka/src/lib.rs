//! Kafka access shared by the Weir driver and executor.
//!
//! The driver lists partitions and their offsets to plan batches
//! ([`TopicOffsets`]); the executor reads offset ranges, writes sink output
//! in transactions and records commit markers ([`markers`]). Both go through
//! this crate so that the driver does not depend on the executor and the
//! workspace builds librdkafka once.
//!
//! All calls here are blocking; callers run them on their own threads.

mod context;
pub mod markers;
mod properties;
mod report_group;

pub use context::{is_refusal, severity, Consumer, LogContext, Producer, Severity, REFUSAL_WINDOW};
pub use properties::{check_properties, resolve_properties, ResolvedProperties};
pub use report_group::GroupReporter;

pub use rdkafka;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer as _;
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};
use std::time::Duration;

/// How long one metadata or offsets request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors talking to Kafka, classified for the retry policy.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KafkaError {
    /// No broker answered (or a request timed out): retry with backoff.
    #[error("Kafka at {brokers} is unreachable: {message}")]
    Unreachable {
        /// The bootstrap servers.
        brokers: String,
        /// librdkafka's error.
        message: String,
    },
    /// The topic does not exist (Weir never creates input topics).
    #[error("topic {topic} does not exist at {brokers}")]
    UnknownTopic {
        /// The bootstrap servers.
        brokers: String,
        /// The topic.
        topic: String,
    },
    /// The client's configuration cannot work: a property librdkafka
    /// refuses, credentials the cluster refused (failed SASL
    /// authentication, a TLS certificate that does not verify) or an
    /// operation the cluster does not authorize. Retrying cannot help; the
    /// job's properties or credentials must change.
    #[error("Kafka at {brokers} refused the client: {message}")]
    Refused {
        /// The bootstrap servers.
        brokers: String,
        /// The broker's or librdkafka's message.
        message: String,
    },
    /// A secret reference in the client's properties could not be resolved
    /// (boxed: it is larger than every other variant).
    #[error(transparent)]
    Secret(Box<weir_proto::spec::secrets::SecretError>),
    /// Any other error from the client or the broker.
    #[error("Kafka at {brokers}: {message}")]
    Other {
        /// The bootstrap servers.
        brokers: String,
        /// What failed.
        message: String,
    },
}

impl From<weir_proto::spec::secrets::SecretError> for KafkaError {
    fn from(e: weir_proto::spec::secrets::SecretError) -> KafkaError {
        KafkaError::Secret(Box::new(e))
    }
}

impl KafkaError {
    /// Classifies a librdkafka error.
    pub fn from_rd(brokers: &str, action: &str, e: &RdError) -> KafkaError {
        let refused = |message: String| KafkaError::Refused {
            brokers: brokers.to_string(),
            message,
        };
        match e {
            // Never the value: it may be a resolved secret, and
            // librdkafka's message quotes it ("Invalid value \"...\" for").
            RdError::ClientConfig(_, desc, key, value) => {
                let desc = if value.is_empty() {
                    desc.clone()
                } else {
                    desc.replace(&format!("\"{value}\""), "(value not shown)")
                };
                return refused(format!("{action}: property {key}: {desc}"));
            }
            // librdkafka checks the whole configuration when a client is
            // created (files named by ssl.*.location, SASL mechanisms):
            // its message names the property, not a secret's value.
            RdError::ClientCreation(message) => return refused(format!("{action}: {message}")),
            _ => {}
        }
        let message = format!("{action}: {e}");
        match e.rdkafka_error_code() {
            Some(code) if is_refusal(code) || is_unauthorized(code) => refused(message),
            Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
                KafkaError::Other {
                    brokers: brokers.to_string(),
                    message,
                }
            }
            // librdkafka's local "unknown partition" comes from its metadata
            // cache, which is empty while no broker answers: a partition
            // that was planned existed, so this is an outage until the
            // broker says otherwise (a deleted topic is reported by the
            // broker as UnknownTopicOrPartition, above).
            Some(
                RDKafkaErrorCode::UnknownPartition
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::MessageTimedOut
                | RDKafkaErrorCode::Resolve
                | RDKafkaErrorCode::BrokerNotAvailable
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::NetworkException
                | RDKafkaErrorCode::CoordinatorNotAvailable
                | RDKafkaErrorCode::NotCoordinator
                | RDKafkaErrorCode::CoordinatorLoadInProgress,
            )
            | None => KafkaError::Unreachable {
                brokers: brokers.to_string(),
                message,
            },
            Some(_) => KafkaError::Other {
                brokers: brokers.to_string(),
                message,
            },
        }
    }

    /// [`from_rd`](Self::from_rd) for a call on a client with `context`:
    /// a call that failed like an outage (a timeout, all brokers down) on a
    /// client whose connections the cluster refused reports the refusal,
    /// with the broker's message.
    pub fn from_client(
        brokers: &str,
        action: &str,
        e: &RdError,
        context: &LogContext,
    ) -> KafkaError {
        match KafkaError::from_rd(brokers, action, e) {
            KafkaError::Unreachable { .. } if context.refusal().is_some() => KafkaError::Refused {
                brokers: brokers.to_string(),
                message: format!("{action}: {}", context.refusal().unwrap_or_default()),
            },
            other => other,
        }
    }

    /// Whether the job's configuration or credentials are at fault
    /// ([`Refused`](Self::Refused), [`Secret`](Self::Secret)): a user
    /// error, which fails the job rather than being retried.
    pub fn is_refused(&self) -> bool {
        matches!(self, KafkaError::Refused { .. } | KafkaError::Secret(_))
    }

    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            KafkaError::Unreachable { .. } | KafkaError::UnknownTopic { .. }
        )
    }
}

/// Whether the cluster refused an operation for lack of an ACL.
fn is_unauthorized(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
            | RDKafkaErrorCode::DelegationTokenAuthorizationFailed
    )
}

/// A client configuration for `brokers` with the user's `properties`
/// (already validated: none of the keys Weir sets itself; secret
/// references already resolved, see [`resolve_properties`]).
pub fn client_config<'a>(
    brokers: &str,
    properties: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    // Fail requests within the planner's retry loop instead of hanging.
    c.set("socket.timeout.ms", "10000");
    for (k, v) in properties {
        c.set(k, v);
    }
    c
}

/// A consumer configuration: [`client_config`] with Weir's consumer
/// defaults, which `properties` may override.
pub fn consumer_config<'a>(
    brokers: &str,
    properties: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> ClientConfig {
    let mut c = client_config(brokers, []);
    // librdkafka 2.x pauses a partition's fetching for this long once its
    // local queue is full (default 1 s), which caps a fast reader at a few
    // hundred thousand records/s: resume almost at once instead.
    c.set("fetch.queue.backoff.ms", "10");
    for (k, v) in properties {
        c.set(k, v);
    }
    c
}

/// Waits until every record `producer` sent is acknowledged (or failed),
/// like `Producer::flush` but without its 100 ms polling granularity
/// (rdkafka's `BaseProducer::poll` always waits out its timeout): a
/// transaction's flush takes a round trip, not a tenth of a second.
pub fn flush<C: rdkafka::producer::ProducerContext>(
    producer: &rdkafka::producer::BaseProducer<C>,
    timeout: Duration,
) -> rdkafka::error::KafkaResult<()> {
    use rdkafka::producer::Producer;
    let deadline = std::time::Instant::now() + timeout;
    while producer.in_flight_count() > 0 && std::time::Instant::now() < deadline {
        producer.poll(Duration::from_millis(1));
    }
    producer.flush(deadline.saturating_duration_since(std::time::Instant::now()))
}

/// The low and high watermark of one partition. With the default
/// `isolation.level=read_committed` the high watermark is the last stable
/// offset: every offset below it is decided (committed or aborted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    /// Partition number.
    pub partition: u32,
    /// The first offset still in the log (older ones were deleted).
    pub low: u64,
    /// One past the last readable offset.
    pub high: u64,
}

/// Lists a topic's partitions and offsets (the driver's view of a source).
pub struct TopicOffsets {
    consumer: Consumer,
    brokers: String,
    topic: String,
}

impl std::fmt::Debug for TopicOffsets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicOffsets")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .finish()
    }
}

impl TopicOffsets {
    /// A lister for `topic`; does not connect yet.
    pub fn new<'a>(
        brokers: &str,
        topic: &str,
        properties: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<TopicOffsets, KafkaError> {
        let consumer: Consumer = client_config(brokers, properties)
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create_with_context(LogContext::new())
            .map_err(|e| KafkaError::from_rd(brokers, "create a client", &e))?;
        Ok(TopicOffsets {
            consumer,
            brokers: brokers.to_string(),
            topic: topic.to_string(),
        })
    }

    /// The topic's partitions, in order.
    pub fn partitions(&self) -> Result<Vec<u32>, KafkaError> {
        let md = fetch_metadata(
            self.consumer.client(),
            // No group and no assignment: polling serves only events.
            || {
                for _ in 0..EVENTS_PER_SERVE {
                    let _ = self.consumer.poll(Duration::ZERO);
                }
            },
            &self.brokers,
            Some(&self.topic),
            REQUEST_TIMEOUT,
        )?;
        let Some(t) = md.topics().iter().find(|t| t.name() == self.topic) else {
            return Err(self.unknown());
        };
        if let Some(err) = t.error() {
            let code = RDKafkaErrorCode::from(err);
            if matches!(
                code,
                RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic
            ) {
                return Err(self.unknown());
            }
            return Err(KafkaError::Unreachable {
                brokers: self.brokers.clone(),
                message: format!("metadata of topic {}: {code}", self.topic),
            });
        }
        if t.partitions().is_empty() {
            return Err(self.unknown());
        }
        let mut parts: Vec<u32> = t.partitions().iter().map(|p| p.id() as u32).collect();
        parts.sort_unstable();
        Ok(parts)
    }

    fn unknown(&self) -> KafkaError {
        KafkaError::UnknownTopic {
            brokers: self.brokers.clone(),
            topic: self.topic.clone(),
        }
    }

    /// Low and high watermarks of every partition.
    pub fn watermarks(&self) -> Result<Vec<Watermarks>, KafkaError> {
        let mut out = Vec::new();
        for p in self.partitions()? {
            let (low, high) = self
                .consumer
                .fetch_watermarks(&self.topic, p as i32, REQUEST_TIMEOUT)
                .map_err(|e| {
                    KafkaError::from_client(
                        &self.brokers,
                        &format!("list offsets of {}/{p}", self.topic),
                        &e,
                        self.consumer.context(),
                    )
                })?;
            out.push(Watermarks {
                partition: p,
                low: low.max(0) as u64,
                high: high.max(0) as u64,
            });
        }
        Ok(out)
    }

    /// The first offset of each partition whose record timestamp is at or
    /// after `timestamp_ms`; `None` when there is none yet (start at the end).
    pub fn offsets_for_timestamp(
        &self,
        partitions: &[u32],
        timestamp_ms: i64,
    ) -> Result<Vec<(u32, Option<u64>)>, KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            tpl.add_partition_offset(&self.topic, *p as i32, Offset::Offset(timestamp_ms))
                .map_err(|e| KafkaError::from_rd(&self.brokers, "build a request", &e))?;
        }
        let found = self
            .consumer
            .offsets_for_times(tpl, REQUEST_TIMEOUT)
            .map_err(|e| {
                KafkaError::from_client(
                    &self.brokers,
                    "look up offsets by time",
                    &e,
                    self.consumer.context(),
                )
            })?;
        Ok(found
            .elements()
            .iter()
            .map(|e| {
                let offset = match e.offset() {
                    Offset::Offset(o) if o >= 0 => Some(o as u64),
                    _ => None,
                };
                (e.partition() as u32, offset)
            })
            .collect())
    }
}

/// How long one attempt of [`fetch_metadata`] waits before the client's
/// events are served and its refusals checked.
const METADATA_ATTEMPT: Duration = Duration::from_millis(500);

/// How many queued events one serving of a client handles: a poll without
/// a timeout handles one, and a refusal's error event may wait behind a
/// few dozen log lines (each connection attempt logs). Polling an empty
/// queue costs next to nothing.
pub const EVENTS_PER_SERVE: usize = 1000;

/// Fetches cluster metadata (of `topic`, or of every topic) through
/// `client`, in short attempts until `timeout`. Between attempts `serve`
/// polls the client ([`EVENTS_PER_SERVE`] times), which delivers
/// librdkafka's global errors to its [`LogContext`]: a connection the cluster refused (failed SASL
/// authentication, a TLS certificate that does not verify) ends the wait at
/// once as [`KafkaError::Refused`] with the broker's message, where a
/// single long request would only time out like an outage.
pub fn fetch_metadata(
    client: &rdkafka::client::Client<LogContext>,
    serve: impl Fn(),
    brokers: &str,
    topic: Option<&str>,
    timeout: Duration,
) -> Result<rdkafka::metadata::Metadata, KafkaError> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match client.fetch_metadata(topic, left.min(METADATA_ATTEMPT)) {
            Ok(md) => {
                client.context().clear_refusal();
                return Ok(md);
            }
            Err(e) => {
                serve();
                let error =
                    KafkaError::from_client(brokers, "fetch metadata", &e, client.context());
                if !matches!(error, KafkaError::Unreachable { .. })
                    || std::time::Instant::now() >= deadline
                {
                    return Err(error);
                }
            }
        }
    }
}

/// Waits until `producer` has fetched the metadata of `topic`, or reports
/// why not ([`fetch_metadata`]): a producer whose credentials the cluster
/// refuses fails here within a second with the broker's message, where
/// `init_transactions` would wait out its whole timeout and report a
/// timeout.
pub fn connect_producer(producer: &Producer, brokers: &str, topic: &str) -> Result<(), KafkaError> {
    use rdkafka::producer::Producer as _;
    fetch_metadata(
        producer.client(),
        || {
            for _ in 0..EVENTS_PER_SERVE {
                producer.poll(Duration::ZERO);
            }
        },
        brokers,
        Some(topic),
        REQUEST_TIMEOUT,
    )
    .map(|_| ())
}

/// Blocks on an admin future on a private runtime (admin calls are rare).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime builds")
        .block_on(f)
}

fn admin<'a>(
    brokers: &str,
    properties: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<AdminClient<LogContext>, KafkaError> {
    client_config(brokers, properties)
        .create_with_context(LogContext::new())
        .map_err(|e| KafkaError::from_rd(brokers, "create an admin client", &e))
}

/// Creates `topic` unless it exists. `configs` are topic configs
/// (`cleanup.policy`, ...).
pub fn ensure_topic<'a>(
    brokers: &str,
    properties: impl IntoIterator<Item = (&'a str, &'a str)>,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> Result<(), KafkaError> {
    let admin = admin(brokers, properties)?;
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
    let results = block_on(admin.create_topics([&new], &opts))
        .map_err(|e| KafkaError::from_rd(brokers, &format!("create topic {topic}"), &e))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => {
                return Err(KafkaError::Other {
                    brokers: brokers.to_string(),
                    message: format!("create topic {t}: {code}"),
                })
            }
        }
    }
    Ok(())
}

/// Deletes the records of `topic` below `before` in each given partition
/// (what retention does; used by tests and tools).
pub fn delete_records(brokers: &str, topic: &str, before: &[(u32, u64)]) -> Result<(), KafkaError> {
    let admin = admin(brokers, [])?;
    let mut tpl = TopicPartitionList::new();
    for (p, o) in before {
        tpl.add_partition_offset(topic, *p as i32, Offset::Offset(*o as i64))
            .map_err(|e| KafkaError::from_rd(brokers, "build a request", &e))?;
    }
    let opts = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
    block_on(admin.delete_records(&tpl, &opts))
        .map_err(|e| KafkaError::from_rd(brokers, &format!("delete records of {topic}"), &e))?;
    Ok(())
}

/// Deletes topics, ignoring ones that do not exist (tests and tools).
pub fn delete_topics(brokers: &str, topics: &[&str]) -> Result<(), KafkaError> {
    let admin = admin(brokers, [])?;
    let opts = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
    let results = block_on(admin.delete_topics(topics, &opts))
        .map_err(|e| KafkaError::from_rd(brokers, "delete topics", &e))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((t, code)) => {
                return Err(KafkaError::Other {
                    brokers: brokers.to_string(),
                    message: format!("delete topic {t}: {code}"),
                })
            }
        }
    }
    Ok(())
}

/// Sends a record through `producer`, polling while its queue is full.
pub fn send_waiting<'a, K, P>(
    producer: &Producer,
    mut record: rdkafka::producer::BaseRecord<'a, K, P>,
) -> Result<(), RdError>
where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((e, back)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                producer.poll(Duration::from_millis(1));
                record = back;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::client::ClientContext;

    #[test]
    fn configuration_errors_are_refusals_without_the_value() {
        let e = client_config("b:1", [("linger.ms", "s3cret-value")])
            .create::<rdkafka::producer::BaseProducer>()
            .map(|_| ())
            .unwrap_err();
        let e = KafkaError::from_rd("b:1", "create a producer", &e);
        assert!(e.is_refused(), "{e}");
        let text = e.to_string();
        assert!(text.contains("linger.ms"), "{text}");
        assert!(!text.contains("s3cret-value"), "{text}");
    }

    #[test]
    fn outages_are_transient_and_refusals_are_not() {
        let outage = KafkaError::from_rd(
            "b:1",
            "fetch metadata",
            &RdError::MetadataFetch(RDKafkaErrorCode::AllBrokersDown),
        );
        assert!(outage.is_transient() && !outage.is_refused(), "{outage}");
        for code in [
            RDKafkaErrorCode::Authentication,
            RDKafkaErrorCode::SSL,
            RDKafkaErrorCode::SaslAuthenticationFailed,
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::TransactionalIdAuthorizationFailed,
        ] {
            let e = KafkaError::from_rd("b:1", "x", &RdError::MetadataFetch(code));
            assert!(e.is_refused() && !e.is_transient(), "{code:?}: {e}");
        }
        // An outage on a client the cluster refused is the refusal.
        let context = LogContext::new();
        context.error(
            RdError::Global(RDKafkaErrorCode::Authentication),
            "SASL authentication error: Authentication failed",
        );
        let e = KafkaError::from_client(
            "b:1",
            "fetch metadata",
            &RdError::MetadataFetch(RDKafkaErrorCode::OperationTimedOut),
            &context,
        );
        assert!(e.is_refused(), "{e}");
        assert!(e.to_string().contains("Authentication failed"), "{e}");
    }
}
