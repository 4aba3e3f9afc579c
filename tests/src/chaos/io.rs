//! Where a chaos job's input comes from and where its output is read back.
//!
//! The verification only needs two things from either end: the input
//! records as their definition says they are ([`InputProducer`]), and every
//! committed output unit — one `(batch, partition)` with its rows
//! ([`OutputReader`]). Here: the generator source and the file sink; the
//! Kafka topics on either side are in [`super::kafka`].

use anyhow::{bail, Context};
use serde_json::Value;
use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

/// One input record as the verifier sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRecord {
    /// The grouping key.
    pub key: String,
    /// The `value` column.
    pub value: u64,
    /// Event time relative to the input's own origin (ms). The origin of
    /// the generator is the job's creation time, which is not exposed; the
    /// window check recovers it from the output.
    pub event_offset_ms: i64,
}

/// The input side of a chaos job.
pub trait InputProducer: Send + Sync {
    /// The job spec's `source:` value, as one YAML flow mapping.
    fn source_yaml(&self) -> String;
    /// Makes the input available before the job is submitted (a Kafka
    /// producer writes its records here; the generator needs nothing).
    fn produce(&self) -> anyhow::Result<()>;
    /// How many records the job reads in all.
    fn total(&self) -> u64;
    /// Calls `f` with every input record.
    fn for_each(&self, f: &mut dyn FnMut(&InputRecord));
    /// Whether the job ends by itself once it has read everything (the
    /// generator with a total). A Kafka source never ends: its job is
    /// stopped with `weir stop` once it has read [`InputProducer::total`]
    /// records.
    fn ends_by_itself(&self) -> bool {
        true
    }
    /// Whether every record is available to the job (a background
    /// producer has finished); its error if producing failed.
    fn produced(&self) -> anyhow::Result<bool> {
        Ok(true)
    }
}

/// The generator source: record `g` has key `"k" + (g % keys)`, value `g`
/// and event time `created_at + g * 1000 / event_time_rate` ms.
#[derive(Debug, Clone)]
pub struct GeneratorInput {
    /// Source partitions.
    pub partitions: u32,
    /// Distinct keys.
    pub keys: u64,
    /// Records per second (the job keeps running while faults happen).
    pub rate: u64,
    /// Records in all.
    pub total: u64,
    /// Event time records per second.
    pub event_time_rate: u64,
    /// Cap per partition and batch (catch-up batches after an outage).
    pub max_records_per_partition: u64,
}

impl InputProducer for GeneratorInput {
    fn source_yaml(&self) -> String {
        format!(
            "{{ generator: {{ partitions: {}, keys: {}, rate: {}, total: {}, event_time_rate: {}, max_records_per_partition: {} }} }}",
            self.partitions,
            self.keys,
            self.rate,
            self.total,
            self.event_time_rate,
            self.max_records_per_partition
        )
    }

    fn produce(&self) -> anyhow::Result<()> {
        Ok(())
    }

    fn total(&self) -> u64 {
        self.total
    }

    fn for_each(&self, f: &mut dyn FnMut(&InputRecord)) {
        for g in 0..self.total {
            f(&InputRecord {
                key: format!("k{}", g % self.keys),
                value: g,
                // the generator's definition, written out independently
                event_offset_ms: (u128::from(g) * 1_000 / u128::from(self.event_time_rate.max(1)))
                    as i64,
            });
        }
    }
}

/// One committed output unit: what one `(batch, partition)` published.
#[derive(Debug, Clone)]
pub struct OutputUnit {
    /// Batch id.
    pub batch: u64,
    /// Partition.
    pub partition: u32,
    /// Hash of the unit's bytes, to notice a unit published twice with
    /// different content.
    pub hash: u64,
    /// The rows, parsed.
    pub rows: Vec<Value>,
}

/// The output side of a chaos job.
pub trait OutputReader: Send + Sync {
    /// The job spec's `sink:` value, as one YAML flow mapping.
    fn sink_yaml(&self) -> String;
    /// Creates what the sink writes into, before the job is submitted (the
    /// Kafka topic; a file sink creates its directory itself).
    fn prepare(&self) -> anyhow::Result<()> {
        Ok(())
    }
    /// Every committed unit, sorted by `(batch, partition)`.
    fn read(&self) -> anyhow::Result<Vec<OutputUnit>>;
    /// Where the output is, for messages.
    fn describe(&self) -> String;
}

/// The file sink: `batch-<id>-part-<p>.jsonl`, renamed into place on
/// commit; hidden (`.`) files are uncommitted and ignored.
#[derive(Debug, Clone)]
pub struct FileSinkOutput {
    /// The sink directory.
    pub dir: PathBuf,
}

impl OutputReader for FileSinkOutput {
    fn sink_yaml(&self) -> String {
        format!(
            "{{ file: {{ path: \"{}\", format: jsonl }} }}",
            self.dir.display()
        )
    }

    fn read(&self) -> anyhow::Result<Vec<OutputUnit>> {
        read_units(&self.dir)
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
}

fn read_units(dir: &Path) -> anyhow::Result<Vec<OutputUnit>> {
    let mut units = Vec::new();
    if !dir.exists() {
        return Ok(units);
    }
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let Some((batch, partition)) = crate::sink_file_batch(&name) else {
            bail!("unexpected file {name} in sink directory {}", dir.display());
        };
        let bytes = match fs::read(dir.join(&name)) {
            Ok(b) => b,
            // renamed away between listing and reading: reported by the
            // history check as a vanished unit
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {name}")),
        };
        let mut h = DefaultHasher::new();
        bytes.hash(&mut h);
        let text = String::from_utf8(bytes).with_context(|| format!("{name}: not UTF-8"))?;
        let mut rows = Vec::new();
        for line in text.lines() {
            rows.push(
                serde_json::from_str(line)
                    .with_context(|| format!("{name}: bad JSON line {line:?}"))?,
            );
        }
        units.push(OutputUnit {
            batch,
            partition,
            hash: h.finish(),
            rows,
        });
    }
    units.sort_by_key(|u| (u.batch, u.partition));
    Ok(units)
}
