//! The HBase sink: each output row becomes one HBase row, written through
//! HBase's Thrift gateway (`mutateRowsTs`) with the batch id as every
//! cell's version timestamp. Writing a batch twice writes exactly the same
//! cells (same row, column, version and value), so a replayed batch
//! overwrites rather than adds: an exactly-once effect without markers.
//!
//! - `pre_commit(batch, p)` checks the table and family (once), evaluates
//!   the row key, encodes the rows as the `BatchMutation`s they will be
//!   sent as and keeps them in memory, replacing an earlier attempt's.
//!   Nothing reaches HBase.
//! - `commit(batch, p)` writes them, in requests of at most
//!   [`MAX_REQUEST_BYTES`] and [`MAX_REQUEST_ROWS`]. A crash part-way
//!   leaves some rows written at version `batch`; the batch's replay
//!   writes them all again, identically. Without the rows in memory (the
//!   process restarted, the partition moved) the commit reports
//!   [`ExecError::OutputLost`]: the driver produces the batch again and
//!   commits again, as with the Kafka sink.
//!
//! Cells: every output column but the one used verbatim as the row key is
//! written as `family:column`, its value as text (numbers in decimal,
//! booleans `true`/`false`, binary as is). A null is not written: the cell
//! keeps its earlier versions.
//!
//! A missing table or family, a family with a TTL and a row key that is
//! null or empty are user errors (the job fails naming what to change); a
//! lost connection or an HBase server error is an outage (the job is
//! degraded and the commit retried).

use super::{lock, Sink};
use crate::error::ExecError;
use crate::hbase_thrift::{encode_row, HbaseClient, ThriftError};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, SchemaRef};
use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::sync::Mutex;
use std::time::Duration;
use weir_plan::expr::CompiledExpr;
use weir_proto::pb;

/// How long connecting, and each call, may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The largest `mutateRowsTs` request (bytes of encoded rows).
pub const MAX_REQUEST_BYTES: usize = 4 << 20;
/// The most rows in one `mutateRowsTs` request.
pub const MAX_REQUEST_ROWS: i32 = 5_000;
/// Idle connections kept.
const MAX_IDLE: usize = 8;

/// Rows encoded for one request.
#[derive(Debug, Default)]
struct Chunk {
    rows: i32,
    bytes: Vec<u8>,
}

/// One batch partition's rows, ready to send.
#[derive(Debug, Default)]
struct Staged {
    chunks: Vec<Chunk>,
}

impl Staged {
    /// The chunk to append a row of about `size` bytes to.
    fn chunk_for(&mut self, size: usize) -> &mut Chunk {
        let full = self.chunks.last().is_none_or(|c| {
            c.rows >= MAX_REQUEST_ROWS || (c.rows > 0 && c.bytes.len() + size > MAX_REQUEST_BYTES)
        });
        if full {
            self.chunks.push(Chunk::default());
        }
        let last = self.chunks.len() - 1;
        &mut self.chunks[last]
    }
}

/// A row key compiled for one output schema.
struct Key {
    schema: SchemaRef,
    expr: CompiledExpr,
    /// The output column the key is (not written as a cell), if it is
    /// a bare column name.
    column: Option<usize>,
}

/// Writes batch output into an HBase table, each cell versioned by the
/// batch id.
pub struct HbaseSink {
    name: String,
    sink: pb::HbaseSink,
    idle: Mutex<Vec<HbaseClient>>,
    /// The table and family were found usable.
    checked: Mutex<bool>,
    keys: Mutex<Vec<Key>>,
    /// Pre-committed rows by `(batch, partition)`, until their commit.
    pending: Mutex<HashMap<(u64, u32), Staged>>,
    /// Committed `(batch, partition)`s of the newest batch, so a commit
    /// called again succeeds without producing the batch again.
    done: Mutex<HashSet<(u64, u32)>>,
}

impl std::fmt::Debug for HbaseSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HbaseSink")
            .field("job", &self.name)
            .field("table", &self.sink.table)
            .finish()
    }
}

/// A failure, classified: a user error fails the job, the rest is retried.
enum Failure {
    User(String),
    Outage(String),
}

impl From<ThriftError> for Failure {
    fn from(e: ThriftError) -> Self {
        match e {
            ThriftError::IllegalArgument(_) => Failure::User(e.to_string()),
            e if e.table_not_found() || e.no_such_family() => Failure::User(e.to_string()),
            e => Failure::Outage(e.to_string()),
        }
    }
}

impl HbaseSink {
    /// A sink for `job` writing to `sink.table`. Nothing connects before
    /// the first write.
    pub fn new(job: &str, sink: &pb::HbaseSink) -> Self {
        HbaseSink {
            name: job.to_string(),
            sink: sink.clone(),
            idle: Mutex::new(Vec::new()),
            checked: Mutex::new(false),
            keys: Mutex::new(Vec::new()),
            pending: Mutex::new(HashMap::new()),
            done: Mutex::new(HashSet::new()),
        }
    }

    fn describe(&self) -> String {
        format!("hbase table {}", self.sink.table)
    }

    fn error(&self, failure: Failure) -> ExecError {
        match failure {
            Failure::User(message) => ExecError::Plan {
                job: self.name.clone(),
                message: format!("sink {}: {message}", self.describe()),
            },
            Failure::Outage(message) => ExecError::Sink {
                job: self.name.clone(),
                sink: self.describe(),
                message: format!(
                    "{message}; retrying (are HBase and its Thrift gateway at {} up?)",
                    self.sink.thrift
                ),
            },
        }
    }

    /// Runs `f` on a pooled connection; a connection that failed mid-call
    /// is dropped, not pooled.
    fn with_client<T>(
        &self,
        f: impl FnOnce(&mut HbaseClient) -> Result<T, Failure>,
    ) -> Result<T, ExecError> {
        let pooled = lock(&self.idle).pop();
        let mut client = match pooled {
            Some(c) => c,
            None => HbaseClient::connect(&self.sink.thrift, TIMEOUT)
                .map_err(|e| self.error(e.into()))?,
        };
        let out = f(&mut client);
        if client.is_usable() {
            let mut idle = lock(&self.idle);
            if idle.len() < MAX_IDLE {
                idle.push(client);
            }
        }
        out.map_err(|e| self.error(e))
    }

    /// Checks that the table exists and has the family, without a TTL.
    fn check(&self, client: &mut HbaseClient) -> Result<(), Failure> {
        let mut checked = lock(&self.checked);
        if *checked {
            return Ok(());
        }
        let table = &self.sink.table;
        let family = &self.sink.family;
        let create = format!("create '{table}', {{NAME => '{family}', VERSIONS => 10}}");
        let families = match client.get_column_descriptors(table.as_bytes()) {
            Ok(f) => f,
            Err(e) if e.table_not_found() => {
                return Err(Failure::User(format!(
                    "the table does not exist; create it in the HBase shell: {create}"
                )))
            }
            Err(e) => return Err(e.into()),
        };
        let Some(f) = families.iter().find(|f| f.name == family.as_bytes()) else {
            let have: Vec<String> = families
                .iter()
                .map(|f| String::from_utf8_lossy(&f.name).into_owned())
                .collect();
            return Err(Failure::User(format!(
                "the table has no column family {family} (its families: {}); add it in the HBase shell: alter '{table}', {{NAME => '{family}', VERSIONS => 10}}",
                have.join(", ")
            )));
        };
        if f.time_to_live > 0 && f.time_to_live != i32::MAX {
            return Err(Failure::User(format!(
                "column family {family} has a TTL ({} s): cells are versioned by batch id, not wall time, so HBase would expire them at once; remove it: alter '{table}', {{NAME => '{family}', TTL => 'FOREVER'}}",
                f.time_to_live
            )));
        }
        *checked = true;
        Ok(())
    }

    /// Evaluates the row key over `batch`, compiling it for a new schema.
    fn row_keys(
        &self,
        batch: &RecordBatch,
    ) -> Result<(arrow_array::ArrayRef, Option<usize>), ExecError> {
        let schema = batch.schema();
        let mut keys = lock(&self.keys);
        let at = match keys.iter().position(|k| k.schema == schema) {
            Some(i) => i,
            None => {
                let expr = CompiledExpr::compile(&self.sink.row_key, &schema)
                    .map_err(|e| self.error(Failure::User(format!("sink.hbase.row_key: {e}"))))?;
                let column = schema.index_of(self.sink.row_key.trim()).ok();
                keys.push(Key {
                    schema: schema.clone(),
                    expr,
                    column,
                });
                keys.len() - 1
            }
        };
        let key = &keys[at];
        let values = key
            .expr
            .evaluate(batch)
            .map_err(|e| self.error(Failure::User(format!("sink.hbase.row_key: {e}"))))?;
        Ok((values, key.column))
    }

    /// Encodes `batch`'s rows into `staged`.
    fn stage(&self, batch: &RecordBatch, staged: &mut Staged) -> Result<u64, ExecError> {
        let (keys, key_column) = self.row_keys(batch)?;
        let schema = batch.schema();
        let family = self.sink.family.as_bytes();
        // `family:column` of each column written, and its index.
        let mut columns: Vec<(usize, Vec<u8>)> = Vec::new();
        for (i, f) in schema.fields().iter().enumerate() {
            if Some(i) == key_column {
                continue;
            }
            if !writable(f.data_type()) {
                return Err(self.error(Failure::User(format!(
                    "output column {} has type {} that the HBase sink cannot write; cast it in a map step (e.g. CAST({} AS STRING))",
                    f.name(),
                    f.data_type(),
                    f.name()
                ))));
            }
            let mut name = family.to_vec();
            name.push(b':');
            name.extend_from_slice(f.name().as_bytes());
            columns.push((i, name));
        }
        let mut key = Vec::new();
        let mut values: Vec<Vec<u8>> = vec![Vec::new(); columns.len()];
        for row in 0..batch.num_rows() {
            key.clear();
            if !text(keys.as_ref(), row, &mut key) || key.is_empty() {
                return Err(self.error(Failure::User(format!(
                    "sink.hbase.row_key \"{}\" is {} for an output row; HBase rows need a non-empty key (e.g. coalesce(…, 'none'))",
                    self.sink.row_key,
                    if key.is_empty() && !keys.is_null(row) { "empty" } else { "NULL" }
                ))));
            }
            let mut size = key.len() + 16;
            let mut present = Vec::with_capacity(columns.len());
            for (j, (i, name)) in columns.iter().enumerate() {
                values[j].clear();
                if text(batch.column(*i).as_ref(), row, &mut values[j]) {
                    size += name.len() + values[j].len() + 24;
                    present.push(j);
                }
            }
            let chunk = staged.chunk_for(size);
            encode_row(
                &mut chunk.bytes,
                &key,
                present
                    .iter()
                    .map(|&j| (columns[j].1.as_slice(), values[j].as_slice())),
            );
            chunk.rows += 1;
        }
        Ok(batch.num_rows() as u64)
    }
}

/// Whether values of `t` can be written as cells.
fn writable(t: &DataType) -> bool {
    match t {
        DataType::Int64
        | DataType::Int32
        | DataType::Float64
        | DataType::Boolean
        | DataType::Utf8
        | DataType::Binary => true,
        DataType::Dictionary(k, v) => **k == DataType::Int32 && writable(v),
        _ => false,
    }
}

/// Appends value `row` of `col` as a cell's bytes; `false` for a null.
fn text(col: &dyn Array, row: usize, out: &mut Vec<u8>) -> bool {
    if col.is_null(row) {
        return false;
    }
    match col.data_type() {
        DataType::Int64 => {
            let _ = write!(out, "{}", col.as_primitive::<Int64Type>().value(row));
        }
        DataType::Int32 => {
            let _ = write!(out, "{}", col.as_primitive::<Int32Type>().value(row));
        }
        DataType::Float64 => {
            let v = col.as_primitive::<Float64Type>().value(row);
            if v.is_nan() {
                out.extend_from_slice(b"NaN");
            } else if v.is_infinite() {
                out.extend_from_slice(if v > 0.0 { b"Infinity" } else { b"-Infinity" });
            } else {
                let _ = write!(out, "{v}");
            }
        }
        DataType::Boolean => out.extend_from_slice(if col.as_boolean().value(row) {
            b"true"
        } else {
            b"false"
        }),
        DataType::Utf8 => out.extend_from_slice(col.as_string::<i32>().value(row).as_bytes()),
        DataType::Binary => out.extend_from_slice(col.as_binary::<i32>().value(row)),
        DataType::Dictionary(_, _) => {
            let Some(dict) = col.as_dictionary_opt::<Int32Type>() else {
                return false;
            };
            let Ok(idx) = usize::try_from(dict.keys().value(row)) else {
                return false;
            };
            if idx >= dict.values().len() {
                return false;
            }
            return text(dict.values().as_ref(), idx, out);
        }
        // Refused by `writable` before any row is encoded.
        _ => return false,
    }
    true
}

impl Sink for HbaseSink {
    fn pre_commit(
        &self,
        batch_id: u64,
        partition: u32,
        output: &[RecordBatch],
    ) -> Result<u64, ExecError> {
        let batches: Vec<&RecordBatch> = output.iter().filter(|b| b.num_rows() > 0).collect();
        if !batches.is_empty() {
            self.with_client(|client| self.check(client))?;
        }
        let mut staged = Staged::default();
        let mut rows = 0;
        for b in batches {
            rows += self.stage(b, &mut staged)?;
        }
        let mut pending = lock(&self.pending);
        // Older batches were committed or abandoned: one batch runs at a
        // time.
        pending.retain(|(b, _), _| *b >= batch_id);
        pending.insert((batch_id, partition), staged);
        lock(&self.done).retain(|(b, _)| *b >= batch_id);
        Ok(rows)
    }

    fn commit(&self, batch_id: u64, partition: u32) -> Result<(), ExecError> {
        let Some(staged) = lock(&self.pending).remove(&(batch_id, partition)) else {
            if lock(&self.done).contains(&(batch_id, partition)) {
                return Ok(());
            }
            return Err(ExecError::OutputLost {
                job: self.name.clone(),
                sink: self.describe(),
                batch: batch_id,
                partition,
            });
        };
        if staged.chunks.is_empty() {
            lock(&self.done).insert((batch_id, partition));
            return Ok(());
        }
        let version = i64::try_from(batch_id).unwrap_or(i64::MAX);
        let table = self.sink.table.as_bytes();
        let result = self.with_client(|client| {
            for (i, chunk) in staged.chunks.iter().enumerate() {
                if i == 1 {
                    // A crash here: part of the partition is written, at
                    // this batch's version; its replay writes it all.
                    weir_proto::failpoint::hit("hbase-commit");
                }
                client.mutate_rows_ts(table, chunk.rows, &chunk.bytes, version)?;
            }
            Ok(())
        });
        match result {
            Ok(()) => {
                let mut done = lock(&self.done);
                done.retain(|(b, _)| *b >= batch_id);
                done.insert((batch_id, partition));
                Ok(())
            }
            Err(e) => {
                // Kept for the retry.
                lock(&self.pending).insert((batch_id, partition), staged);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
    use std::sync::Arc;

    fn sink(row_key: &str) -> HbaseSink {
        HbaseSink::new(
            "j",
            &pb::HbaseSink {
                thrift: "127.0.0.1:1".into(),
                table: "t".into(),
                family: "f".into(),
                row_key: row_key.into(),
            },
        )
    }

    fn batch() -> RecordBatch {
        RecordBatch::try_from_iter(vec![
            (
                "key",
                Arc::new(StringArray::from(vec![Some("a"), Some("b")])) as ArrayRef,
            ),
            (
                "n",
                Arc::new(Int64Array::from(vec![Some(-3), None])) as ArrayRef,
            ),
            (
                "x",
                Arc::new(Float64Array::from(vec![f64::NAN, 1.5])) as ArrayRef,
            ),
            (
                "ok",
                Arc::new(BooleanArray::from(vec![Some(true), Some(false)])) as ArrayRef,
            ),
        ])
        .unwrap()
    }

    /// The rows as `(key, [(column, value)])`, decoded from what would
    /// be sent.
    fn rows(staged: &Staged) -> Vec<(String, Vec<(String, String)>)> {
        let mut out = Vec::new();
        for c in &staged.chunks {
            let mut p = thrift::protocol::TBinaryInputProtocol::new(&c.bytes[..], true);
            for _ in 0..c.rows {
                out.push(decode_row(&mut p));
            }
        }
        out
    }

    fn decode_row(p: &mut dyn thrift::protocol::TInputProtocol) -> (String, Vec<(String, String)>) {
        use thrift::protocol::TType;
        let s = |b: Vec<u8>| String::from_utf8(b).unwrap();
        p.read_struct_begin().unwrap();
        p.read_field_begin().unwrap();
        let key = s(p.read_bytes().unwrap());
        p.read_field_end().unwrap();
        p.read_field_begin().unwrap();
        let list = p.read_list_begin().unwrap();
        let mut cells = Vec::new();
        for _ in 0..list.size {
            p.read_struct_begin().unwrap();
            let (mut column, mut value) = (String::new(), String::new());
            loop {
                let f = p.read_field_begin().unwrap();
                match (f.field_type, f.id) {
                    (TType::Stop, _) => break,
                    (TType::String, Some(2)) => column = s(p.read_bytes().unwrap()),
                    (TType::String, Some(3)) => value = s(p.read_bytes().unwrap()),
                    (TType::Bool, Some(1)) => assert!(!p.read_bool().unwrap()),
                    (t, _) => p.skip(t).unwrap(),
                }
            }
            p.read_struct_end().unwrap();
            cells.push((column, value));
        }
        p.read_list_end().unwrap();
        p.read_field_end().unwrap();
        assert_eq!(p.read_field_begin().unwrap().field_type, TType::Stop);
        p.read_struct_end().unwrap();
        (key, cells)
    }

    fn cells(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(c, v)| (c.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn rows_become_cells_of_the_family_as_text_nulls_skipped() {
        let s = sink("key");
        let mut staged = Staged::default();
        assert_eq!(s.stage(&batch(), &mut staged).unwrap(), 2);
        assert_eq!(
            rows(&staged),
            vec![
                (
                    "a".to_string(),
                    cells(&[("f:n", "-3"), ("f:x", "NaN"), ("f:ok", "true")])
                ),
                ("b".to_string(), cells(&[("f:x", "1.5"), ("f:ok", "false")])),
            ]
        );
        // An expression key: every column is a cell.
        let s = sink("concat(key, '#', CAST(ok AS STRING))");
        let mut staged = Staged::default();
        s.stage(&batch(), &mut staged).unwrap();
        let got = rows(&staged);
        assert_eq!(got[0].0, "a#true");
        assert_eq!(got[1].0, "b#false");
        assert_eq!(got[1].1[0], ("f:key".to_string(), "b".to_string()));
    }

    #[test]
    fn bad_row_keys_are_user_errors() {
        let mut staged = Staged::default();
        let e = sink("nope").stage(&batch(), &mut staged).unwrap_err();
        assert!(matches!(e, ExecError::Plan { .. }), "{e}");
        assert!(e.to_string().contains("unknown column 'nope'"), "{e}");
        let e = sink("CAST(n AS STRING)")
            .stage(&batch(), &mut staged)
            .unwrap_err();
        assert!(e.to_string().contains("is NULL for an output row"), "{e}");
        let e = sink("substr(key, 5)")
            .stage(&batch(), &mut staged)
            .unwrap_err();
        assert!(e.to_string().contains("is empty for an output row"), "{e}");
    }

    #[test]
    fn requests_are_bounded_and_commits_without_rows_are_lost_output() {
        let n = (MAX_REQUEST_ROWS as usize) * 2 + 7;
        let keys: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
        let big = RecordBatch::try_from_iter(vec![(
            "key",
            Arc::new(StringArray::from(keys)) as ArrayRef,
        )])
        .unwrap();
        let s = sink("key");
        let mut staged = Staged::default();
        s.stage(&big, &mut staged).unwrap();
        let sizes: Vec<i32> = staged.chunks.iter().map(|c| c.rows).collect();
        assert_eq!(sizes, [MAX_REQUEST_ROWS, MAX_REQUEST_ROWS, 7]);
        // Big values: split by bytes.
        let value = "v".repeat(MAX_REQUEST_BYTES / 3);
        let wide = RecordBatch::try_from_iter(vec![
            (
                "key",
                Arc::new(StringArray::from(vec!["a", "b", "c", "d"])) as ArrayRef,
            ),
            (
                "v",
                Arc::new(StringArray::from(vec![value.as_str(); 4])) as ArrayRef,
            ),
        ])
        .unwrap();
        let mut staged = Staged::default();
        s.stage(&wide, &mut staged).unwrap();
        assert!(staged.chunks.len() >= 2);
        assert!(staged
            .chunks
            .iter()
            .all(|c| c.bytes.len() <= MAX_REQUEST_BYTES));
        // Nothing in memory: the driver must produce the batch again. An
        // empty output commits without a connection.
        let e = s.commit(3, 0).unwrap_err();
        assert!(matches!(e, ExecError::OutputLost { batch: 3, .. }), "{e}");
        s.pre_commit(4, 0, &[]).unwrap();
        s.commit(4, 0).unwrap();
        s.commit(4, 0).unwrap();
    }
}
