//! Sources: read exactly one offset range of one source partition as Arrow
//! record batches. Ranges are the replay unit: reading the same range twice
//! yields the same records.

pub mod budget;
pub mod csv;
pub mod generator;
pub mod kafka;
pub mod records;

pub use generator::GeneratorReader;
pub use kafka::KafkaReader;

use crate::error::ExecError;
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

/// Reads offset ranges of a source.
pub trait SourceReader: Send + Sync {
    /// Schema of the batches this reader produces.
    fn schema(&self) -> SchemaRef;

    /// Reads offsets `[start, end)` of `partition` (its range in batch
    /// `batch_id`), handing batches of at most a few tens of thousands of
    /// rows to `sink` in offset order. Returns the records skipped
    /// (malformed under `on_error: skip` or `dead_letter`). `replay` is set
    /// when the range is read again only to rebuild state: side effects
    /// such as dead letters are not repeated.
    fn read(
        &self,
        batch_id: u64,
        partition: u32,
        start: u64,
        end: u64,
        replay: bool,
        sink: &mut dyn FnMut(RecordBatch) -> Result<(), ExecError>,
    ) -> Result<u64, ExecError>;
}
