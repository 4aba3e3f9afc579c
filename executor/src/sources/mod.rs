//! Sources: read exactly one offset range of one source partition as Arrow
//! record batches. Ranges are the replay unit: reading the same range twice
//! yields the same records.

pub mod generator;

pub use generator::GeneratorReader;

use crate::error::ExecError;
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

/// Reads offset ranges of a source.
pub trait SourceReader: Send + Sync {
    /// Schema of the batches this reader produces.
    fn schema(&self) -> SchemaRef;

    /// Reads offsets `[start, end)` of `partition`, handing batches of at most
    /// a few tens of thousands of rows to `sink` in offset order.
    fn read(
        &self,
        partition: u32,
        start: u64,
        end: u64,
        sink: &mut dyn FnMut(RecordBatch) -> Result<(), ExecError>,
    ) -> Result<(), ExecError>;
}
