//! What both sides of Weir need of PostgreSQL: the check that a table
//! takes a job's output (run by the driver at submit when the database is
//! reachable, and by the executors before their first write), errors
//! classified as the job's fault or an outage, and connecting from a spec's
//! URL (docs/sinks-and-lookups.md).

use arrow_schema::{DataType, Schema};
pub use postgres;
use postgres::error::SqlState;
use postgres::{Client, NoTls};
use std::collections::HashMap;
use std::time::Duration;

/// Connects to `url` (secret references already resolved), within
/// `timeout`, as application `weir`.
pub fn connect(url: &str, timeout: Duration) -> Result<Client, Failure> {
    let mut config: postgres::Config = url
        .parse()
        .map_err(|e: postgres::Error| Failure::User(format!("sink.postgres.url: {e}")))?;
    config.connect_timeout(timeout);
    config.application_name("weir");
    Ok(config.connect(NoTls)?)
}

/// Whether `name` is a plain lower-case SQL identifier.
fn is_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
        && name.len() <= 63
}

/// A failure, classified: a user error fails the job, the rest is retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The job's spec or the database's objects are wrong: fail the job.
    User(String),
    /// The database cannot be reached now: retry.
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
pub fn compatible(arrow: &DataType, pg: &str) -> bool {
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

pub fn arrow_name(t: &DataType) -> &'static str {
    match t {
        DataType::Int64 | DataType::Int32 => "BIGINT",
        DataType::Float64 => "DOUBLE",
        DataType::Boolean => "BOOLEAN",
        _ => "STRING",
    }
}

/// Checks that `table` takes rows of `schema`: it exists, has each column
/// with a compatible type, and, for an upsert on `key`, a unique index on
/// exactly those columns.
pub fn check_table(
    client: &mut Client,
    table: &str,
    schema: &Schema,
    key: &[String],
    upsert: bool,
) -> Result<(), Failure> {
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    if let Some(bad) = names.iter().find(|n| !is_identifier(n)) {
        return Err(Failure::User(format!(
            "output column {bad:?} is not a plain lower-case SQL name (letters, digits, '_'); rename it with a map step or choose columns"
        )));
    }
    let (schema_name, table_name) = match table.split_once('.') {
        Some((s, t)) => (Some(s), t),
        None => (None, table),
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
                    have.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
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
    for k in key {
        if !names.contains(k) {
            return Err(Failure::User(format!(
                "key column {k} is not in the job's output (its columns: {})",
                names.join(", ")
            )));
        }
    }
    if upsert {
        let unique = client.query(
            "SELECT array_agg(a.attname::text ORDER BY a.attname::text) \
             FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = $1::text::regclass AND i.indisunique GROUP BY i.indexrelid",
            &[&table],
        )?;
        let mut sorted = key.to_vec();
        sorted.sort();
        let covered = unique.iter().any(|r| r.get::<_, Vec<String>>(0) == sorted);
        if !covered {
            return Err(Failure::User(format!(
                "an upsert on ({}) needs a unique index on exactly those columns: CREATE UNIQUE INDEX ON {table} ({}) (or a primary key)",
                key.join(", "),
                key.join(", ")
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_that_take_the_output() {
        assert!(compatible(&DataType::Int64, "bigint"));
        assert!(compatible(&DataType::Int64, "numeric"));
        assert!(!compatible(&DataType::Utf8, "bigint"));
        assert!(!compatible(&DataType::Float64, "integer"));
        assert!(compatible(&DataType::Boolean, "boolean"));
        assert!(is_identifier("user_2") && !is_identifier("User") && !is_identifier("2x"));
    }
}
