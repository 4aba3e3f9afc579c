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
    let on_error = if spec.on_error == pb::ErrorPolicy::Skip as i32 {
        "skip"
    } else {
        "fail"
    };
    let _ = writeln!(y, "on_error: {on_error}");
    y.push_str("source:\n");
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
        Some(pb::sink::Kind::Stdout(_)) => y.push_str("  stdout: {}\n"),
        Some(pb::sink::Kind::Noop(_)) | None => y.push_str("  noop: {}\n"),
    }
    y
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
                    - aggregate: { n: {}, s: { sum: value }, lo: { min: value }, m: { avg: value } }\n  - filter: \"n > 1\"\n\
                    sink:\n  file: { path: \"out dir/x\" }\n";
        let spec = parse_spec(yaml).unwrap();
        let rendered = to_yaml(&spec);
        assert_eq!(parse_spec(&rendered).unwrap(), spec, "{rendered}");
    }
}
