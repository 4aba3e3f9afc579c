//! The PostgreSQL sink: exactly-once rows through a staging table and
//! commit markers, both in the database.
//!
//! Weir keeps two tables of its own next to the user's (created when first
//! needed, in the connection's default schema): `weir_staged` holds the
//! rows of batches not yet committed, as JSON, and `weir_commits` one
//! marker per committed `(job, batch, partition)`. The job is named with
//! its incarnation (`name@created_at_ms`), so a job created again under the
//! same name never meets its predecessor's markers.
//!
//! - `pre_commit(batch, p)`, in one transaction: unless the marker of
//!   `(batch, p)` exists (the batch already committed; a re-run writes
//!   nothing), replace the staged rows of `(batch, p)` with the output
//!   (`COPY`). Staged rows are invisible to readers of the table.
//! - `commit(batch, p)`, in one transaction: unless the marker exists,
//!   move the staged rows into the table (an upsert on the key columns,
//!   the last row of a key winning, or an append), write the marker and
//!   delete the staged rows. The marker and the rows commit together, so a
//!   partition is never half-written, and a commit run again (a restart,
//!   another executor finishing the batch) finds the marker and writes
//!   nothing: exactly once.
//!
//! The table is checked against the output before the first write: it
//! must exist, have every output column with a compatible type and, for
//! an upsert, a unique index on exactly the key columns. Those are user
//! errors (the job fails naming what to change); a lost connection is an
//! outage (the job is degraded and the batch retried).

use super::{lock, Sink};
use crate::error::ExecError;
use crate::json::{json_field_names, write_json_row};
use arrow_array::RecordBatch;
use arrow_schema::DataType;
use postgres::error::SqlState;
use postgres::{Client, NoTls};
use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Mutex;
use std::time::Duration;
use weir_proto::pb;
use weir_proto::spec::secrets::{resolve, ProcessLookup};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Markers kept per partition behind the newest (older ones are pruned).
const KEEP_MARKERS: i64 = 1_000;
/// Idle connections kept.
const MAX_IDLE: usize = 16;

/// The tables Weir keeps in the database.
const SETUP: &str = "
SET client_min_messages = warning;
CREATE TABLE IF NOT EXISTS weir_staged (
    job text NOT NULL, batch bigint NOT NULL, part integer NOT NULL,
    seq integer NOT NULL, row jsonb NOT NULL);
CREATE INDEX IF NOT EXISTS weir_staged_batch ON weir_staged (job, batch, part);
CREATE TABLE IF NOT EXISTS weir_commits (
    job text NOT NULL, batch bigint NOT NULL, part integer NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job, part, batch));";

/// What the sink learnt of the table.
#[derive(Debug, Clone)]
struct Checked {
    /// The output's columns, in order (all in the table).
    columns: Vec<String>,
}

/// Writes batch output into a PostgreSQL table, exactly once.
pub struct PostgresSink {
    name: String,
    job: String,
    sink: pb::PostgresSink,
    idle: Mutex<Vec<Client>>,
    /// The table's check, by the output's columns.
    checked: Mutex<HashMap<Vec<String>, Checked>>,
    /// Weir's tables exist.
    set_up: Mutex<bool>,
}

impl std::fmt::Debug for PostgresSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSink")
            .field("job", &self.job)
            .field("table", &self.sink.table)
            .finish()
    }
}

/// A failure, classified: a user error fails the job, the rest is retried.
enum Failure {
    User(String),
    Outage(String),
}

impl From<postgres::Error> for Failure {
    fn from(e: postgres::Error) -> Self {
        // The server's message with its hint, never the URL (it may hold
        // a password).
        let message = match e.as_db_error() {
            Some(db) => match db.hint() {
                Some(h) => format!("{} ({h})", db.message()),
                None => db.message().to_string(),
            },
            None => e.to_string(),
        };
        let user = e.code().is_some_and(|c| {
            let class = &c.code()[..2];
            // Credentials, missing or wrong objects, bad data, privileges.
            matches!(class, "28" | "42" | "22" | "23" | "3D" | "3F")
                && *c != SqlState::T_R_DEADLOCK_DETECTED
        });
        if user {
            Failure::User(message)
        } else {
            Failure::Outage(message)
        }
    }
}

/// Whether a column of PostgreSQL type `pg` takes values of `arrow`.
fn compatible(arrow: &DataType, pg: &str) -> bool {
    let numeric = [
        "bigint",
        "integer",
        "smallint",
        "numeric",
        "double precision",
        "real",
    ];
    match arrow {
        DataType::Int64 | DataType::Int32 => numeric.contains(&pg),
        DataType::Float64 => matches!(pg, "double precision" | "real" | "numeric"),
        DataType::Boolean => pg == "boolean",
        DataType::Utf8 | DataType::Dictionary(_, _) => {
            matches!(pg, "text" | "character varying" | "character")
        }
        _ => false,
    }
}

fn arrow_name(t: &DataType) -> &'static str {
    match t {
        DataType::Int64 | DataType::Int32 => "BIGINT",
        DataType::Float64 => "DOUBLE",
        DataType::Boolean => "BOOLEAN",
        _ => "STRING",
    }
}

/// `text` with the escapes of `COPY`'s text format: backslashes doubled
/// (JSON has no raw tabs or newlines).
fn copy_escape(text: &str, out: &mut Vec<u8>) {
    for b in text.bytes() {
        if b == b'\\' {
            out.extend_from_slice(b"\\\\");
        } else {
            out.push(b);
        }
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
            checked: Mutex::new(HashMap::new()),
            set_up: Mutex::new(false),
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
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e: postgres::Error| Failure::User(format!("sink.postgres.url: {e}")))?;
        config.connect_timeout(CONNECT_TIMEOUT);
        config.application_name("weir");
        let client = config.connect(NoTls)?;
        Ok(client)
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
    fn check(&self, client: &mut Client, batch: &RecordBatch) -> Result<Checked, Failure> {
        let schema = batch.schema();
        let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        if let Some(c) = lock(&self.checked).get(&names) {
            return Ok(c.clone());
        }
        let table = &self.sink.table;
        let (schema_name, table_name) = match table.split_once('.') {
            Some((s, t)) => (Some(s), t),
            None => (None, table.as_str()),
        };
        let rows = client.query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_name = $1 AND table_schema = coalesce($2, current_schema()) \
             ORDER BY ordinal_position",
            &[&table_name, &schema_name],
        )?;
        if rows.is_empty() {
            let wanted: Vec<String> = schema
                .fields()
                .iter()
                .map(|f| format!("{} {}", f.name(), arrow_name(f.data_type())))
                .collect();
            return Err(Failure::User(format!(
                "the table does not exist (or this user cannot see it); create it with the job's output columns: {}",
                wanted.join(", ")
            )));
        }
        let types: HashMap<String, String> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        for f in schema.fields() {
            match types.get(f.name()) {
                None => {
                    let mut have: Vec<&String> = types.keys().collect();
                    have.sort();
                    return Err(Failure::User(format!(
                        "the job's output has column {} ({}) that the table lacks (its columns: {})",
                        f.name(),
                        arrow_name(f.data_type()),
                        have.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                    )));
                }
                Some(pg) if !compatible(f.data_type(), pg) => {
                    return Err(Failure::User(format!(
                        "column {} is {pg} in the table but the job writes {} there",
                        f.name(),
                        arrow_name(f.data_type())
                    )))
                }
                Some(_) => {}
            }
        }
        for k in &self.sink.key {
            if !names.contains(k) {
                return Err(Failure::User(format!(
                    "key column {k} is not in the job's output (its columns: {})",
                    names.join(", ")
                )));
            }
        }
        if self.upsert() {
            let unique = client.query(
                "SELECT array_agg(a.attname::text ORDER BY a.attname::text) \
                 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                 WHERE i.indrelid = $1::text::regclass AND i.indisunique GROUP BY i.indexrelid",
                &[table],
            )?;
            let mut key = self.sink.key.clone();
            key.sort();
            let covered = unique.iter().any(|r| r.get::<_, Vec<String>>(0) == key);
            if !covered {
                return Err(Failure::User(format!(
                    "an upsert on ({}) needs a unique index on exactly those columns: CREATE UNIQUE INDEX ON {table} ({}) (or a primary key)",
                    self.sink.key.join(", "),
                    self.sink.key.join(", ")
                )));
            }
        }
        let checked = Checked {
            columns: names.clone(),
        };
        lock(&self.checked).insert(names, checked.clone());
        Ok(checked)
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

    /// The statement moving a staged `(batch, part)` into the table.
    fn move_statement(&self, columns: &[String]) -> String {
        let table = &self.sink.table;
        let cols = columns.join(", ");
        let r_cols: Vec<String> = columns.iter().map(|c| format!("r.{c}")).collect();
        let staged = format!(
            "FROM weir_staged s CROSS JOIN LATERAL jsonb_populate_record(NULL::{table}, s.row) r \
             WHERE s.job = $1 AND s.batch = $2 AND s.part = $3"
        );
        if !self.upsert() {
            return format!(
                "INSERT INTO {table} ({cols}) SELECT {} {staged} ORDER BY s.seq",
                r_cols.join(", ")
            );
        }
        let key = self.sink.key.join(", ");
        let r_key: Vec<String> = self.sink.key.iter().map(|k| format!("r.{k}")).collect();
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
        // The last row of a key in the batch wins (an upsert cannot touch
        // a row twice in one statement).
        format!(
            "INSERT INTO {table} ({cols}) SELECT {cols} FROM (\
               SELECT DISTINCT ON ({}) {} {staged} ORDER BY {}, s.seq DESC) latest \
             ON CONFLICT ({key}) {on_conflict}",
            r_key.join(", "),
            r_cols.join(", "),
            r_key.join(", ")
        )
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
        let rows: u64 = output.iter().map(|b| b.num_rows() as u64).sum();
        let output = self.project(output)?;
        let output = output.as_slice();
        let batch = i64::try_from(batch_id).unwrap_or(i64::MAX);
        let part = i32::try_from(partition).unwrap_or(i32::MAX);
        self.with_client(|client| {
            self.set_up(client)?;
            for b in output.iter().filter(|b| b.num_rows() > 0) {
                self.check(client, b)?;
            }
            let mut txn = client.transaction()?;
            if Self::marked(&mut txn, &self.job, batch, part)? {
                return Ok(());
            }
            txn.execute(
                "DELETE FROM weir_staged WHERE job = $1 AND batch = $2 AND part = $3",
                &[&self.job, &batch, &part],
            )?;
            if rows > 0 {
                let mut data = Vec::new();
                let mut seq = 0u64;
                let mut json = String::new();
                for b in output {
                    let names = json_field_names(b);
                    for row in 0..b.num_rows() {
                        json.clear();
                        write_json_row(b, &names, row, &mut json);
                        let _ = write!(data, "{}\t{batch}\t{part}\t{seq}\t", self.job);
                        copy_escape(&json, &mut data);
                        data.push(b'\n');
                        seq += 1;
                    }
                }
                let mut copy =
                    txn.copy_in("COPY weir_staged (job, batch, part, seq, row) FROM STDIN")?;
                copy.write_all(&data)
                    .map_err(|e| Failure::Outage(format!("COPY: {e}")))?;
                copy.finish()?;
            }
            txn.commit()?;
            Ok(())
        })?;
        Ok(rows)
    }

    fn commit(&self, batch_id: u64, partition: u32) -> Result<(), ExecError> {
        let batch = i64::try_from(batch_id).unwrap_or(i64::MAX);
        let part = i32::try_from(partition).unwrap_or(i32::MAX);
        self.with_client(|client| {
            self.set_up(client)?;
            let mut txn = client.transaction()?;
            if !Self::marked(&mut txn, &self.job, batch, part)? {
                // The staged rows' columns: those of the output.
                let keys = txn.query(
                    "SELECT k::text FROM (SELECT row FROM weir_staged \
                     WHERE job = $1 AND batch = $2 AND part = $3 LIMIT 1) s, jsonb_object_keys(s.row) k",
                    &[&self.job, &batch, &part],
                )?;
                if !keys.is_empty() {
                    let columns: Vec<String> = keys.iter().map(|r| r.get(0)).collect();
                    let checked = lock(&self.checked)
                        .values()
                        .find(|c| {
                            let mut a = c.columns.clone();
                            let mut b = columns.clone();
                            a.sort();
                            b.sort();
                            a == b
                        })
                        .cloned();
                    let columns = checked.map_or(columns, |c| c.columns);
                    if columns.iter().any(|c| {
                        !weir_proto::spec::is_sql_identifier(c)
                    }) {
                        return Err(Failure::User(format!(
                            "the output's columns ({}) must be lower-case SQL names (letters, digits, '_') to be written to a table",
                            columns.join(", ")
                        )));
                    }
                    txn.execute(
                        self.move_statement(&columns).as_str(),
                        &[&self.job, &batch, &part],
                    )?;
                    // A crash here: the rows are in, the marker is not;
                    // the transaction dies with the connection.
                    weir_proto::failpoint::hit("postgres-commit");
                }
                txn.execute(
                    "INSERT INTO weir_commits (job, batch, part) VALUES ($1, $2, $3)",
                    &[&self.job, &batch, &part],
                )?;
                txn.execute(
                    "DELETE FROM weir_commits WHERE job = $1 AND part = $2 AND batch < $3",
                    &[&self.job, &part, &(batch - KEEP_MARKERS)],
                )?;
            }
            txn.execute(
                "DELETE FROM weir_staged WHERE job = $1 AND batch = $2 AND part = $3",
                &[&self.job, &batch, &part],
            )?;
            txn.commit()?;
            Ok(())
        })
    }
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
        let sql = s.move_statement(&["key".into(), "count".into()]);
        assert!(sql.contains("DISTINCT ON (r.key)"), "{sql}");
        assert!(sql.contains("ORDER BY r.key, s.seq DESC"), "{sql}");
        assert!(
            sql.contains("ON CONFLICT (key) DO UPDATE SET count = EXCLUDED.count"),
            "{sql}"
        );
        let only_key = s.move_statement(&["key".into()]);
        assert!(
            only_key.ends_with("ON CONFLICT (key) DO NOTHING"),
            "{only_key}"
        );
        let append = sink(pb::PostgresMode::Append, &[]).move_statement(&["a".into(), "b".into()]);
        assert!(
            append.starts_with("INSERT INTO public.counts (a, b) SELECT r.a, r.b"),
            "{append}"
        );
        assert!(append.ends_with("ORDER BY s.seq"), "{append}");
        assert_eq!(s.job, "j@7");
    }

    #[test]
    fn copy_text_doubles_backslashes_and_types_match() {
        let mut out = Vec::new();
        copy_escape(r#"{"a":"x\"y\\z"}"#, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"a":"x\\"y\\\\z"}"#);
        assert!(compatible(&DataType::Int64, "bigint"));
        assert!(compatible(&DataType::Int64, "numeric"));
        assert!(!compatible(&DataType::Utf8, "bigint"));
        assert!(!compatible(&DataType::Float64, "integer"));
        assert!(compatible(&DataType::Boolean, "boolean"));
    }
}
