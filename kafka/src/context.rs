//! The client context of every Kafka client Weir creates: librdkafka's logs
//! and global errors at the level they mean.
//!
//! rdkafka's default context logs every global error at ERROR, including
//! the end-of-partition events a consumer with `enable.partition.eof` gets
//! at the end of each range it reads, which buries real errors. Most other
//! global errors (a broker connection lost, all brokers down) are ones
//! librdkafka recovers from by itself: Weir's own calls fail and are retried
//! by the batch policy, so the event is a warning. Only fatal errors are
//! errors.

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, NoCustomPartitioner, ProducerContext};

/// Logs librdkafka's events through `tracing` (target `librdkafka`) at the
/// level they mean.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogContext;

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
