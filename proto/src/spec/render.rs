//! Protobuf → YAML: renders a stored spec the way users write it, so that
//! `parse_spec(&to_yaml(&spec)) == spec`.

use super::format_duration_ms;
use crate::pb::{self, step::Kind, AggregateFunction};
use std::fmt::Write;

/// Renders a spec as YAML.
pub fn to_yaml(spec: &pb::JobSpec) -> String {
    let mut y = String::new();
    let _ = writeln!(y, "name: {}", quote(&spec.name));
    let _ = writeln!(
        y,
        "batch_interval: {}",
        format_duration_ms(spec.batch_interval_ms)
    );
    let _ = writeln!(y, "checkpoint_every: {}", spec.checkpoint_every);
    let _ = writeln!(y, "state_partitions: {}", spec.state_partitions);
    let on_error = match pb::ErrorPolicy::try_from(spec.on_error) {
        Ok(pb::ErrorPolicy::Skip) => "skip",
        Ok(pb::ErrorPolicy::DeadLetter) => "dead_letter",
        _ => "fail",
    };
    let _ = writeln!(y, "on_error: {on_error}");
    if let Some(d) = &spec.dead_letter {
        let _ = write!(y, "dead_letter: {{ topic: {}", quote(&d.topic));
        if !d.brokers.is_empty() {
            let _ = write!(y, ", brokers: {}", quote(&d.brokers));
        }
        y.push_str(" }\n");
    }
    y.push_str("source:\n");
    if let Some(pb::source::Kind::Kafka(k)) = spec.source.as_ref().and_then(|s| s.kind.as_ref()) {
        render_kafka_source(k, &mut y);
    }
    if let Some(pb::source::Kind::Generator(g)) = spec.source.as_ref().and_then(|s| s.kind.as_ref())
    {
        let _ = write!(
            y,
            "  generator: {{ partitions: {}, keys: {}, rate: {}, seed: {}, max_records_per_partition: {}, event_time_rate: {}",
            g.partitions, g.keys, g.rate, g.seed, g.max_records_per_partition, g.event_time_rate
        );
        if let Some(t) = g.total {
            let _ = write!(y, ", total: {t}");
        }
        if g.max_bytes_per_partition != 0 {
            let _ = write!(
                y,
                ", max_bytes_per_partition: {}",
                super::format_bytes(g.max_bytes_per_partition)
            );
        }
        y.push_str(" }\n");
    }
    y.push_str("pipeline:\n");
    for step in &spec.pipeline {
        match &step.kind {
            Some(Kind::Filter(e)) => {
                let _ = writeln!(y, "  - filter: {}", quote(e));
            }
            Some(Kind::KeyBy(e)) => {
                let _ = writeln!(y, "  - key_by: {}", quote(e));
            }
            Some(Kind::Map(m)) => {
                let fields: Vec<String> = m
                    .fields
                    .iter()
                    .map(|a| format!("{}: {}", quote(&a.name), quote(&a.expr)))
                    .collect();
                let _ = writeln!(y, "  - map: {{ {} }}", fields.join(", "));
            }
            Some(Kind::FlatMap(f)) => {
                let _ = writeln!(
                    y,
                    "  - flat_map: {{ field: {}, separator: {}, as: {} }}",
                    quote(&f.field),
                    quote(&f.separator),
                    quote(&f.as_field)
                );
            }
            Some(Kind::Window(w)) => {
                let _ = writeln!(
                    y,
                    "  - window: {{ size: {}, slide: {}, time: {}, watermark: {} }}",
                    format_duration_ms(w.size_ms),
                    format_duration_ms(w.slide_ms),
                    quote(&w.time),
                    format_duration_ms(w.watermark_ms)
                );
            }
            Some(Kind::Aggregate(a)) => {
                let outputs: Vec<String> = a
                    .aggregates
                    .iter()
                    .map(|x| {
                        let f = match AggregateFunction::try_from(x.function) {
                            Ok(AggregateFunction::Sum) => "sum",
                            Ok(AggregateFunction::Min) => "min",
                            Ok(AggregateFunction::Max) => "max",
                            Ok(AggregateFunction::Avg) => "avg",
                            _ => "count",
                        };
                        let arg = if x.expr.is_empty() {
                            "{}".to_string()
                        } else {
                            quote(&x.expr)
                        };
                        format!("{}: {{ {f}: {arg} }}", quote(&x.name))
                    })
                    .collect();
                let _ = writeln!(y, "  - aggregate: {{ {} }}", outputs.join(", "));
            }
            Some(Kind::Lookup(l)) => {
                let _ = writeln!(y, "  - lookup: {}", super::lookup::render(l, quote));
            }
            Some(Kind::Custom(c)) => {
                let _ = writeln!(
                    y,
                    "  - custom: {{ name: {}, version: {}, config: {} }}",
                    quote(&c.name),
                    quote(&c.version),
                    properties(&c.config)
                );
            }
            None => {}
        }
    }
    y.push_str("sink:\n");
    match spec.sink.as_ref().and_then(|s| s.kind.as_ref()) {
        Some(pb::sink::Kind::File(f)) => {
            let _ = writeln!(
                y,
                "  file: {{ path: {}, format: {} }}",
                quote(&f.path),
                quote(&f.format)
            );
        }
        Some(pb::sink::Kind::Kafka(k)) => {
            let _ = writeln!(
                y,
                "  kafka: {{ brokers: {}, topic: {}, properties: {} }}",
                quote(&k.brokers),
                quote(&k.topic),
                properties(&k.properties)
            );
        }
        Some(pb::sink::Kind::Postgres(pg)) => {
            let mode = if pg.mode == pb::PostgresMode::Append as i32 {
                "append"
            } else {
                "upsert"
            };
            let key: Vec<String> = pg.key.iter().map(|k| quote(k)).collect();
            let columns: Vec<String> = pg.columns.iter().map(|k| quote(k)).collect();
            let _ = writeln!(
                y,
                "  postgres: {{ url: {}, table: {}, key: [{}], mode: {mode}, columns: [{}] }}",
                quote(&pg.url),
                quote(&pg.table),
                key.join(", "),
                columns.join(", ")
            );
        }
        Some(pb::sink::Kind::Hbase(h)) => {
            let _ = writeln!(
                y,
                "  hbase: {{ thrift: {}, table: {}, family: {}, row_key: {} }}",
                quote(&h.thrift),
                quote(&h.table),
                quote(&h.family),
                quote(&h.row_key)
            );
        }
        Some(pb::sink::Kind::Stdout(_)) => y.push_str("  stdout: {}\n"),
        Some(pb::sink::Kind::Noop(_)) | None => y.push_str("  noop: {}\n"),
    }
    y
}

fn render_kafka_source(k: &pb::KafkaSource, y: &mut String) {
    use pb::kafka_start::Kind as Start;
    let start = match k.start.as_ref().and_then(|s| s.kind.as_ref()) {
        Some(Start::Earliest(_)) => "earliest".to_string(),
        Some(Start::Offsets(o)) => {
            let pairs: Vec<String> = o
                .offsets
                .iter()
                .map(|p| format!("{}: {}", p.partition, p.offset))
                .collect();
            format!("{{ offsets: {{ {} }} }}", pairs.join(", "))
        }
        Some(Start::TimestampMs(t)) => format!("{{ timestamp_ms: {t} }}"),
        Some(Start::Latest(_)) | None => "latest".to_string(),
    };
    let format = match pb::KafkaFormat::try_from(k.format) {
        Ok(pb::KafkaFormat::Text) => "text",
        Ok(pb::KafkaFormat::Raw) => "raw",
        Ok(pb::KafkaFormat::Csv) => "csv",
        _ => "json",
    };
    let on_missing = if k.on_missing == pb::OnMissing::SkipToEarliest as i32 {
        "skip_to_earliest"
    } else {
        "fail"
    };
    let _ = write!(
        y,
        "  kafka: {{ brokers: {}, topic: {}, start: {start}, max_records_per_partition: {}, format: {format}, on_missing: {on_missing}, properties: {}",
        quote(&k.brokers),
        quote(&k.topic),
        k.max_records_per_partition,
        properties(&k.properties)
    );
    if !k.report_group.is_empty() {
        let _ = write!(y, ", report_group: {}", quote(&k.report_group));
    }
    if k.max_bytes_per_partition != 0 {
        let _ = write!(
            y,
            ", max_bytes_per_partition: {}",
            super::format_bytes(k.max_bytes_per_partition)
        );
    }
    if !k.schema.is_empty() {
        let fields: Vec<String> = k
            .schema
            .iter()
            .map(|f| {
                let ty = match pb::FieldType::try_from(f.r#type) {
                    Ok(pb::FieldType::Double) => "double",
                    Ok(pb::FieldType::String) => "string",
                    Ok(pb::FieldType::Boolean) => "boolean",
                    _ => "bigint",
                };
                format!("{}: {ty}", quote(&f.name))
            })
            .collect();
        let _ = write!(y, ", schema: {{ {} }}", fields.join(", "));
    }
    y.push_str(" }\n");
}

fn properties(props: &[pb::Property]) -> String {
    let pairs: Vec<String> = props
        .iter()
        .map(|p| format!("{}: {}", quote(&p.key), quote(&p.value)))
        .collect();
    format!("{{ {} }}", pairs.join(", "))
}

/// A YAML double-quoted string (JSON string syntax is valid YAML).
fn quote(s: &str) -> String {
    let mut out = String::new();
    crate::json::json_string(s, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse_spec;

    #[test]
    fn rendering_round_trips() {
        let yaml = "name: r\nbatch_interval: 500ms\ncheckpoint_every: 3\non_error: skip\n\
                    source:\n  generator: { partitions: 3, keys: 7, rate: 0, total: 99, seed: 4 }\n\
                    pipeline:\n  - filter: \"user <> 'a: b' AND value % 2 = 0\"\n  - map: { x: \"value * 2\", 'odd name': \"'#'\" }\n  \
                    - flat_map: { field: text, separator: \", \", as: word }\n  - key_by: word\n  \
                    - window: { size: 2s, slide: 1s, time: ts, watermark: 1500ms }\n  \
                    - aggregate: { n: {}, s: { sum: value }, lo: { min: value }, m: { avg: value } }\n  - filter: \"n > 1\"\n  \
                    - custom: { name: redact, version: 2, config: { column: key, keep: 1, \"mask char\": \"*\" } }\n  \
                    - lookup: { redis: { url: \"redis://:${env:P}@h:1/2\", key: \"'n:' || n\", fields: { name: string, \"odd: f\": bigint, x: double, ok: boolean } } }\n  \
                    - lookup: { redis: { url: \"rediss://h\", key: key, fields: { v: string }, hash: false }, cache: { ttl: 90s, max_entries: 7 }, on_missing: skip }\n  \
                    - lookup: { redis: { url: \"redis://h\", key: key, fields: { w: string } }, cache: {}, on_missing: fail }\n\
                    sink:\n  file: { path: \"out dir/x\" }\n";
        let spec = parse_spec(yaml).unwrap();
        let rendered = to_yaml(&spec);
        assert_eq!(parse_spec(&rendered).unwrap(), spec, "{rendered}");
    }

    #[test]
    fn kafka_specs_round_trip() {
        for start in [
            "earliest",
            "latest",
            "{ offsets: { 0: 5, 3: 7 } }",
            "{ timestamp_ms: 1700000000000 }",
        ] {
            let yaml = format!(
                "name: k\non_error: dead_letter\ndead_letter: {{ topic: bad-clicks }}\n\
                 source:\n  kafka: {{ brokers: \"127.0.0.1:9092\", topic: clicks, start: {start}, format: json, \
                 schema: {{ user: string, amount: bigint, price: double, ok: boolean }}, on_missing: skip_to_earliest, \
                 max_records_per_partition: 500, properties: {{ fetch.min.bytes: 1, \"client.id\": x }} }}\n\
                 pipeline:\n  - key_by: user\n  - aggregate: {{ n: {{}} }}\n\
                 sink:\n  kafka: {{ brokers: \"127.0.0.1:9092\", topic: out, properties: {{ linger.ms: 5 }} }}\n"
            );
            let spec = parse_spec(&yaml).unwrap();
            let rendered = to_yaml(&spec);
            assert_eq!(parse_spec(&rendered).unwrap(), spec, "{rendered}");
        }
        for format in ["text", "raw"] {
            let yaml = format!(
                "name: k\nsource:\n  kafka: {{ brokers: b, topic: t, format: {format} }}\nsink:\n  stdout: {{}}\n"
            );
            let spec = parse_spec(&yaml).unwrap();
            assert_eq!(parse_spec(&to_yaml(&spec)).unwrap(), spec);
        }
    }
}
