//! Helpers for the processes' Prometheus metrics (prometheus-client): the
//! text a scrape gets, the buckets every duration histogram uses, and
//! writing labelled gauges and counters from a scrape-time collector.

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::fmt;

/// Labels of one sample: `(name, value)` pairs.
pub type Labels = Vec<(&'static str, String)>;

/// The registry's metrics in the text format (OpenMetrics, which
/// Prometheus reads as its text format).
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

/// A histogram of durations in seconds: 0.5 ms to about 65 s, doubling.
pub fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

/// `labels` with their values escaped for the text format (the encoder
/// writes values as given).
fn escaped(labels: Labels) -> Labels {
    labels
        .into_iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            (k, v)
        })
        .collect()
}

/// Writes one gauge family: a sample per `(labels, value)` row (a row
/// without labels is the family's only sample).
pub fn gauges(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, f64)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in rows {
        if labels.is_empty() {
            ConstGauge::new(value).encode(family)?;
            return Ok(());
        }
        let labels = escaped(labels);
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Writes one counter family (`name` without `_total`, which the format
/// adds): a sample per `(labels, value)` row.
pub fn counters(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, u64)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in rows {
        let labels = escaped(labels);
        ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::collector::Collector;

    #[derive(Debug)]
    struct Two;

    impl Collector for Two {
        fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
            gauges(
                &mut encoder,
                "weir_test_lag",
                "Lag",
                [(
                    vec![("job", "a\"b".to_string()), ("partition", "3".into())],
                    7.0,
                )],
            )?;
            counters(
                &mut encoder,
                "weir_test_done",
                "Done",
                [(vec![("job", "a".into())], 42)],
            )
        }
    }

    #[test]
    fn collected_families_encode_with_labels_and_escapes() {
        let mut r = Registry::default();
        r.register_collector(Box::new(Two));
        let h = seconds();
        h.observe(0.001);
        r.register("weir_test_seconds", "Time", h);
        let text = encode(&r);
        assert!(
            text.contains("weir_test_lag{job=\"a\\\"b\",partition=\"3\"} 7.0"),
            "{text}"
        );
        assert!(text.contains("# TYPE weir_test_done counter"), "{text}");
        assert!(
            text.contains("weir_test_done_total{job=\"a\"} 42"),
            "{text}"
        );
        assert!(text.contains("weir_test_seconds_count 1"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
