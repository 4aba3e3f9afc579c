//! The client context of every Kafka client Weir creates: librdkafka's logs
//! and global errors at the level they mean, and the errors that say the
//! cluster refused the client.
//!
//! rdkafka's default context logs every global error at ERROR, including
//! the end-of-partition events a consumer with `enable.partition.eof` gets
//! at the end of each range it reads, which buries real errors. Most other
//! global errors (a broker connection lost, all brokers down) are ones
//! librdkafka recovers from by itself: Weir's own calls fail and are retried
//! by the batch policy, so the event is a warning. Only fatal errors are
//! errors.
//!
//! A failed SASL authentication or TLS handshake reaches the client only as
//! such a global error: the calls themselves just time out, as they would
//! with the broker down. [`LogContext`] keeps the last one
//! ([`LogContext::refusal`]), so that a call that failed can report the
//! broker's reason and fail the job instead of retrying it forever.

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, NoCustomPartitioner, ProducerContext};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a recorded refusal explains a failed call. A client that was
/// refused once and then connected (credentials that reached the cluster
/// a moment late) must not have a later outage taken for a refusal;
/// librdkafka repeats a persisting refusal within this time.
pub const REFUSAL_WINDOW: Duration = Duration::from_secs(60);

/// Logs librdkafka's events through `tracing` (target `librdkafka`) at the
/// level they mean, and remembers the last error that says the cluster
/// refused the client's credentials or TLS settings.
#[derive(Debug, Clone, Default)]
pub struct LogContext {
    refusal: Arc<Mutex<Option<(Instant, String)>>>,
}

impl LogContext {
    /// A context with nothing recorded.
    pub fn new() -> LogContext {
        LogContext::default()
    }

    /// The broker's (or the TLS layer's) message of the last authentication
    /// or TLS failure, if there was one within [`REFUSAL_WINDOW`] and none
    /// was [cleared](Self::clear_refusal) since: the client cannot work
    /// until its configuration changes.
    pub fn refusal(&self) -> Option<String> {
        self.refusal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|(at, _)| at.elapsed() < REFUSAL_WINDOW)
            .map(|(_, message)| message.clone())
    }

    /// Forgets the recorded refusal: the client has since talked to the
    /// cluster.
    pub fn clear_refusal(&self) {
        *self.refusal.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Whether a global error means the cluster refused the client: failed
/// SASL authentication (wrong password, unknown user, a mechanism the
/// broker does not offer) or a TLS error (a certificate that does not
/// verify). A disconnect during the TLS handshake is a transport error in
/// librdkafka, not one of these, so an outage is never taken for a refusal.
pub fn is_refusal(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SSL
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::UnsupportedSASLMechanism
            | RDKafkaErrorCode::IllegalSASLState
    )
}

/// A consumer with Weir's [`LogContext`].
pub type Consumer = BaseConsumer<LogContext>;

/// A producer with Weir's [`LogContext`].
pub type Producer = BaseProducer<LogContext, NoCustomPartitioner>;

/// How a global error is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Normal operation (the end of a partition was reached).
    Debug,
    /// librdkafka recovers by itself; Weir's calls retry.
    Warn,
    /// The client is unusable.
    Error,
}

/// The severity of a global error.
pub fn severity(error: &RdError) -> Severity {
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::PartitionEOF) => Severity::Debug,
        Some(RDKafkaErrorCode::Fatal) => Severity::Error,
        _ if matches!(error, RdError::PartitionEOF(_)) => Severity::Debug,
        _ => Severity::Warn,
    }
}

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", facility = fac, "{message}")
            }
        }
    }

    fn error(&self, error: RdError, reason: &str) {
        if error.rdkafka_error_code().is_some_and(is_refusal) {
            *self.refusal.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((Instant::now(), reason.to_string()));
        }
        match severity(&error) {
            Severity::Debug => tracing::debug!(target: "librdkafka", %error, "{reason}"),
            Severity::Warn => tracing::warn!(target: "librdkafka", %error, "{reason}"),
            Severity::Error => tracing::error!(target: "librdkafka", %error, "{reason}"),
        }
    }
}

impl ConsumerContext for LogContext {}

impl ProducerContext for LogContext {
    type DeliveryOpaque = ();

    /// Weir's producers are transactional: a failed delivery fails the
    /// transaction's flush or commit, which is where it is handled.
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_remembered_and_outages_are_not() {
        let ctx = LogContext::new();
        ctx.error(
            RdError::Global(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        ctx.error(
            RdError::Global(RDKafkaErrorCode::BrokerTransportFailure),
            "SSL handshake failed: Disconnected",
        );
        assert_eq!(ctx.refusal(), None);
        ctx.error(
            RdError::Global(RDKafkaErrorCode::Authentication),
            "SASL authentication error: Authentication failed",
        );
        // Clones share what was recorded: rdkafka keeps its own copy.
        let other = ctx.clone();
        assert_eq!(
            other.refusal().as_deref(),
            Some("SASL authentication error: Authentication failed")
        );
        // Once the client got through, a later failure is not a refusal.
        ctx.clear_refusal();
        assert_eq!(other.refusal(), None);
    }

    #[test]
    fn end_of_partition_is_not_an_error() {
        assert_eq!(
            severity(&RdError::Global(RDKafkaErrorCode::PartitionEOF)),
            Severity::Debug
        );
        assert_eq!(severity(&RdError::PartitionEOF(3)), Severity::Debug);
        assert_eq!(
            severity(&RdError::Global(RDKafkaErrorCode::AllBrokersDown)),
            Severity::Warn
        );
        assert_eq!(
            severity(&RdError::Global(RDKafkaErrorCode::Fatal)),
            Severity::Error
        );
    }
}
