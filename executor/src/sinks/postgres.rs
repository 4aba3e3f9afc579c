//! The PostgreSQL sink: exactly-once rows through one transaction per
//! batch and partition that writes the rows and a commit marker.
//!
//! Weir keeps one table of its own next to the user's (created when first
//! needed, in the connection's default schema): `weir_commits`, one marker
//! per committed `(job, batch, partition)`. The job is named with its
//! incarnation (`name@created_at_ms`), so a job created again under the
//! same name never meets its predecessor's markers.
//!
//! - `pre_commit(batch, p)` checks the table against the output (once),
//!   encodes the rows for `COPY` and keeps them in memory, replacing an
//!   earlier attempt's. Nothing reaches the database.
//! - `commit(batch, p)`, in one transaction: unless the marker of
//!   `(batch, p)` exists, write the rows (`COPY` straight into the table
//!   for an append; into a temporary table, then `INSERT … ON CONFLICT
//!   (key) DO UPDATE` for an upsert, the last row of a key winning) and
//!   the marker. Rows and marker commit together, so a partition is never
//!   half-written, and a commit run again finds the marker and writes
//!   nothing: exactly once. Without the rows in memory (the process
//!   restarted, the partition moved) and without a marker, the commit
//!   reports [`ExecError::OutputLost`]: the driver produces the batch
//!   again (its decision stands) and commits again, as with the Kafka sink.
//!
//! The table is checked against the output before the first write: it
//! must exist, have every output column with a compatible type and, for
//! an upsert, a unique index on exactly the key columns. Those are user
//! errors (the job fails naming what to change); a lost connection is an
//! outage (the job is degraded and the batch retried).

use super::{lock, Sink};
use crate::error::ExecError;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Mutex;
use std::time::Duration;
use weir_pg::postgres::error::SqlState;
use weir_pg::postgres::{self, Client};
use weir_pg::{check_table, connect, Failure};
use weir_proto::pb;
use weir_proto::spec::secrets::{resolve, ProcessLookup};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Markers kept per partition behind the newest (older ones are pruned).
const KEEP_MARKERS: i64 = 1_000;
/// Idle connections kept.
const MAX_IDLE: usize = 16;

/// The table Weir keeps in the database.
const SETUP: &str = "
SET client_min_messages = warning;
CREATE TABLE IF NOT EXISTS weir_commits (
    job text NOT NULL, batch bigint NOT NULL, part integer NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job, part, batch));";

/// One batch partition's rows, ready for `COPY`.
#[derive(Debug, Default)]
struct Staged {
    /// The columns, in the order of each line's values.
    columns: Vec<String>,
    /// `COPY` text: one line per row, the row's sequence number last.
    lines: Vec<u8>,
    rows: u64,
    /// No key appears twice (so an upsert need not pick the last row).
    unique_keys: bool,
}

/// Writes batch output into a PostgreSQL table, exactly once.
pub struct PostgresSink {
    name: String,
    job: String,
    sink: pb::PostgresSink,
    idle: Mutex<Vec<Client>>,
    /// The output shapes (column names) checked against the table.
    checked: Mutex<Vec<Vec<String>>>,
    /// Weir's table exists.
    set_up: Mutex<bool>,
    /// Pre-committed rows by `(batch, partition)`, until their commit.
    pending: Mutex<HashMap<(u64, u32), Staged>>,
}

impl std::fmt::Debug for PostgresSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSink")
            .field("job", &self.job)
            .field("table", &self.sink.table)
            .finish()
    }
}

impl PostgresSink {
    /// A sink for `job` (created at `incarnation`, ms) writing to
    /// `sink.table`. Nothing connects before the first write.
    pub fn new(job: &str, incarnation: i64, sink: &pb::PostgresSink) -> Self {
        PostgresSink {
            name: job.to_string(),
            job: format!("{job}@{incarnation}"),
            sink: sink.clone(),
            idle: Mutex::new(Vec::new()),
            checked: Mutex::new(Vec::new()),
            set_up: Mutex::new(false),
            pending: Mutex::new(HashMap::new()),
        }
    }

    fn error(&self, failure: Failure) -> ExecError {
        match failure {
            Failure::User(message) => ExecError::Plan {
                job: self.name.clone(),
                message: format!("sink postgres table {}: {message}", self.sink.table),
            },
            Failure::Outage(message) => ExecError::Sink {
                job: self.name.clone(),
                sink: format!("postgres table {}", self.sink.table),
                message: format!("{message}; retrying (is the database up and reachable?)"),
            },
        }
    }

    fn connect(&self) -> Result<Client, Failure> {
        let url = resolve(
            "sink.postgres.url",
            &self.sink.url,
            "executor",
            &ProcessLookup,
        )
        .map_err(|e| Failure::User(e.to_string()))?;
        connect(&url, CONNECT_TIMEOUT)
    }

    /// Runs `f` on a pooled connection; a connection that failed is
    /// dropped, not pooled.
    fn with_client<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, Failure>,
    ) -> Result<T, ExecError> {
        let pooled = lock(&self.idle).pop();
        let mut client = match pooled {
            Some(c) if !c.is_closed() => c,
            _ => self.connect().map_err(|e| self.error(e))?,
        };
        let out = f(&mut client);
        if out.is_ok() {
            let mut idle = lock(&self.idle);
            if idle.len() < MAX_IDLE {
                idle.push(client);
            }
        }
        out.map_err(|e| self.error(e))
    }

    fn set_up(&self, client: &mut Client) -> Result<(), Failure> {
        let mut done = lock(&self.set_up);
        if *done {
            return Ok(());
        }
        // Two executors creating the tables at once may collide on the
        // catalog: the loser finds them there.
        match client.batch_execute(SETUP) {
            Ok(()) => {}
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                client.batch_execute(SETUP)?;
            }
            Err(e) => return Err(e.into()),
        }
        *done = true;
        Ok(())
    }

    /// Checks the table against `batch`'s columns (once per shape).
    fn check(&self, client: &mut Client, batch: &RecordBatch) -> Result<(), Failure> {
        let schema = batch.schema();
        let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        if lock(&self.checked).contains(&names) {
            return Ok(());
        }
        check_table(
            client,
            &self.sink.table,
            &schema,
            &self.sink.key,
            self.upsert(),
        )?;
        lock(&self.checked).push(names);
        Ok(())
    }

    /// The output's `columns` (all of them when the sink names none).
    fn project(&self, output: &[RecordBatch]) -> Result<Vec<RecordBatch>, ExecError> {
        if self.sink.columns.is_empty() {
            return Ok(output.to_vec());
        }
        output
            .iter()
            .map(|b| {
                let schema = b.schema();
                let indices = self
                    .sink
                    .columns
                    .iter()
                    .map(|c| {
                        schema.index_of(c).map_err(|_| {
                            self.error(Failure::User(format!(
                                "column {c} of sink.postgres.columns is not in the job's output (its columns: {})",
                                schema
                                    .fields()
                                    .iter()
                                    .map(|f| f.name().as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )))
                        })
                    })
                    .collect::<Result<Vec<usize>, ExecError>>()?;
                b.project(&indices).map_err(|e| self.error(Failure::User(e.to_string())))
            })
            .collect()
    }

    fn upsert(&self) -> bool {
        self.sink.mode != pb::PostgresMode::Append as i32
    }

    /// The statement upserting the rows of the temporary table
    /// `weir_rows` into the table.
    fn upsert_statement(&self, columns: &[String], unique_keys: bool) -> String {
        let table = &self.sink.table;
        let cols = columns.join(", ");
        let key = self.sink.key.join(", ");
        let updates: Vec<String> = columns
            .iter()
            .filter(|c| !self.sink.key.contains(c))
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect();
        let on_conflict = if updates.is_empty() {
            "DO NOTHING".to_string()
        } else {
            format!("DO UPDATE SET {}", updates.join(", "))
        };
        if unique_keys {
            return format!(
                "INSERT INTO {table} ({cols}) SELECT {cols} FROM weir_rows ON CONFLICT ({key}) {on_conflict}"
            );
        }
        // The last row of a key in the batch wins (an upsert cannot touch
        // a row twice in one statement).
        format!(
            "INSERT INTO {table} ({cols}) SELECT {cols} FROM (\
               SELECT DISTINCT ON ({key}) {cols} FROM weir_rows ORDER BY {key}, weir_seq DESC) latest \
             ON CONFLICT ({key}) {on_conflict}"
        )
    }

    /// Writes `staged` into the table within `txn`.
    fn write(&self, txn: &mut postgres::Transaction<'_>, staged: &Staged) -> Result<(), Failure> {
        if staged.rows == 0 {
            return Ok(());
        }
        let table = &self.sink.table;
        let cols = staged.columns.join(", ");
        let target = if self.upsert() {
            txn.batch_execute(&format!(
                "CREATE TEMP TABLE IF NOT EXISTS weir_rows (LIKE {table}) ON COMMIT DROP; \
                 ALTER TABLE weir_rows ADD COLUMN IF NOT EXISTS weir_seq bigint"
            ))?;
            "weir_rows".to_string()
        } else {
            table.clone()
        };
        let seq = if self.upsert() { ", weir_seq" } else { "" };
        let mut copy = txn.copy_in(&format!("COPY {target} ({cols}{seq}) FROM STDIN"))?;
        let lines = if self.upsert() {
            staged.lines.clone()
        } else {
            strip_seq(&staged.lines)
        };
        copy.write_all(&lines)
            .map_err(|e| Failure::Outage(format!("COPY: {e}")))?;
        copy.finish()?;
        if self.upsert() {
            txn.execute(
                self.upsert_statement(&staged.columns, staged.unique_keys)
                    .as_str(),
                &[],
            )?;
        }
        Ok(())
    }

    fn marked(
        txn: &mut postgres::Transaction<'_>,
        job: &str,
        batch: i64,
        part: i32,
    ) -> Result<bool, Failure> {
        Ok(txn
            .query_opt(
                "SELECT 1 FROM weir_commits WHERE job = $1 AND part = $2 AND batch = $3",
                &[&job, &part, &batch],
            )?
            .is_some())
    }
}

impl Sink for PostgresSink {
    fn pre_commit(
        &self,
        batch_id: u64,
        partition: u32,
        output: &[RecordBatch],
    ) -> Result<u64, ExecError> {
        let output = self.project(output)?;
        let shapes: Vec<&RecordBatch> = output.iter().filter(|b| b.num_rows() > 0).collect();
        if !shapes.is_empty() {
            self.with_client(|client| {
                for b in &shapes {
                    self.check(client, b)?;
                }
                Ok(())
            })?;
        }
        let mut staged = Staged::default();
        for b in &shapes {
            let schema = b.schema();
            let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
            if staged.columns.is_empty() {
                staged.columns = columns;
            } else if staged.columns != columns {
                return Err(self.error(Failure::User(format!(
                    "the output's columns changed within a batch ({} then {})",
                    staged.columns.join(", "),
                    columns.join(", ")
                ))));
            }
            for row in 0..b.num_rows() {
                copy_line(b, row, staged.rows, &mut staged.lines);
                staged.rows += 1;
            }
        }
        staged.unique_keys = self.upsert() && unique_keys(&staged, &self.sink.key);
        let rows = staged.rows;
        let mut pending = lock(&self.pending);
        // Older batches were committed or abandoned: one batch runs at a
        // time.
        pending.retain(|(b, _), _| *b >= batch_id);
        pending.insert((batch_id, partition), staged);
        Ok(rows)
    }

    fn commit(&self, batch_id: u64, partition: u32) -> Result<(), ExecError> {
        let batch = i64::try_from(batch_id).unwrap_or(i64::MAX);
        let part = i32::try_from(partition).unwrap_or(i32::MAX);
        let staged = lock(&self.pending).remove(&(batch_id, partition));
        let result = self.with_client(|client| {
            self.set_up(client)?;
            let mut txn = client.transaction()?;
            if Self::marked(&mut txn, &self.job, batch, part)? {
                return Ok(true);
            }
            let Some(staged) = &staged else {
                return Ok(false);
            };
            self.write(&mut txn, staged)?;
            // A crash here: the rows are in, the marker is not; the
            // transaction dies with the connection.
            weir_proto::failpoint::hit("postgres-commit");
            txn.execute(
                "INSERT INTO weir_commits (job, batch, part) VALUES ($1, $2, $3)",
                &[&self.job, &batch, &part],
            )?;
            txn.execute(
                "DELETE FROM weir_commits WHERE job = $1 AND part = $2 AND batch < $3",
                &[&self.job, &part, &(batch - KEEP_MARKERS)],
            )?;
            txn.commit()?;
            Ok(true)
        });
        match result {
            Ok(true) => Ok(()),
            Ok(false) => Err(ExecError::OutputLost {
                job: self.name.clone(),
                sink: format!("postgres table {}", self.sink.table),
                batch: batch_id,
                partition,
            }),
            Err(e) => {
                // Kept for the retry.
                if let Some(staged) = staged {
                    lock(&self.pending).insert((batch_id, partition), staged);
                }
                Err(e)
            }
        }
    }
}

/// Appends row `row` of `batch` as a line of `COPY`'s text format, with
/// `seq` as a last value.
fn copy_line(batch: &RecordBatch, row: usize, seq: u64, out: &mut Vec<u8>) {
    for (i, col) in batch.columns().iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        copy_value(col.as_ref(), row, out);
    }
    let _ = writeln!(out, "\t{seq}");
}

/// One value in `COPY`'s text format: `\N` for null, special characters
/// escaped.
fn copy_value(col: &dyn Array, row: usize, out: &mut Vec<u8>) {
    if col.is_null(row) {
        out.extend_from_slice(b"\\N");
        return;
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
        DataType::Boolean => out.push(if col.as_boolean().value(row) {
            b't'
        } else {
            b'f'
        }),
        DataType::Utf8 => copy_text(col.as_string::<i32>().value(row), out),
        DataType::Dictionary(_, _) => {
            let dict = col.as_dictionary::<Int32Type>();
            let idx = dict.keys().value(row) as usize;
            copy_value(dict.values().as_ref(), idx, out);
        }
        other => copy_text(&format!("<{other}>"), out),
    }
}

/// `text` with the escapes of `COPY`'s text format.
fn copy_text(text: &str, out: &mut Vec<u8>) {
    for b in text.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b => out.push(b),
        }
    }
}

/// Whether no two lines of `staged` have the same values in the `key`
/// columns.
fn unique_keys(staged: &Staged, key: &[String]) -> bool {
    let at: Vec<usize> = key
        .iter()
        .filter_map(|k| staged.columns.iter().position(|c| c == k))
        .collect();
    let mut seen = std::collections::HashSet::with_capacity(staged.rows as usize);
    staged
        .lines
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .all(|line| {
            let values: Vec<&[u8]> = line.split(|b| *b == b'\t').collect();
            let k: Vec<&[u8]> = at.iter().filter_map(|&i| values.get(i).copied()).collect();
            seen.insert(k)
        })
}

/// `lines` without the last value of each line (the sequence number).
fn strip_seq(lines: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(lines.len());
    for line in lines.split_inclusive(|b| *b == b'\n') {
        let end = line.iter().rposition(|b| *b == b'\t').unwrap_or(line.len());
        out.extend_from_slice(&line[..end]);
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(mode: pb::PostgresMode, key: &[&str]) -> PostgresSink {
        PostgresSink::new(
            "j",
            7,
            &pb::PostgresSink {
                url: "postgres://u:p@127.0.0.1:1/d".into(),
                table: "public.counts".into(),
                key: key.iter().map(|k| k.to_string()).collect(),
                mode: mode as i32,
                columns: Vec::new(),
            },
        )
    }

    #[test]
    fn upserts_keep_the_last_row_of_a_key_and_update_the_rest() {
        let s = sink(pb::PostgresMode::Upsert, &["key"]);
        let sql = s.upsert_statement(&["key".into(), "count".into()], false);
        assert!(sql.contains("DISTINCT ON (key)"), "{sql}");
        assert!(sql.contains("ORDER BY key, weir_seq DESC"), "{sql}");
        assert!(
            sql.contains("ON CONFLICT (key) DO UPDATE SET count = EXCLUDED.count"),
            "{sql}"
        );
        let only_key = s.upsert_statement(&["key".into()], false);
        let unique = s.upsert_statement(&["key".into(), "count".into()], true);
        assert!(!unique.contains("DISTINCT ON"), "{unique}");
        let staged = |lines: &str| Staged {
            columns: vec!["key".into(), "count".into()],
            lines: lines.as_bytes().to_vec(),
            rows: 2,
            unique_keys: false,
        };
        let key = ["key".to_string()];
        assert!(unique_keys(&staged("a\t1\t0\nb\t1\t1\n"), &key));
        assert!(!unique_keys(&staged("a\t1\t0\na\t2\t1\n"), &key));
        assert!(
            only_key.ends_with("ON CONFLICT (key) DO NOTHING"),
            "{only_key}"
        );
        assert_eq!(s.job, "j@7");
    }

    #[test]
    fn copy_lines_escape_text_and_mark_nulls() {
        use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
        use std::sync::Arc;
        let batch = RecordBatch::try_from_iter(vec![
            (
                "s",
                Arc::new(StringArray::from(vec![Some("a\tb\\c\nd"), None])) as ArrayRef,
            ),
            (
                "n",
                Arc::new(Int64Array::from(vec![Some(-3), Some(4)])) as ArrayRef,
            ),
            (
                "f",
                Arc::new(Float64Array::from(vec![f64::NAN, 1.5])) as ArrayRef,
            ),
            (
                "b",
                Arc::new(BooleanArray::from(vec![Some(true), None])) as ArrayRef,
            ),
        ])
        .unwrap();
        let mut out = Vec::new();
        copy_line(&batch, 0, 0, &mut out);
        copy_line(&batch, 1, 1, &mut out);
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "a\\tb\\\\c\\nd\t-3\tNaN\tt\t0\n\\N\t4\t1.5\t\\N\t1\n"
        );
        assert_eq!(
            String::from_utf8(strip_seq(&out)).unwrap(),
            "a\\tb\\\\c\\nd\t-3\tNaN\tt\n\\N\t4\t1.5\t\\N\n"
        );
    }
}
