//! SQL expressions compiled once, evaluated vectorized over Arrow record batches.
//!
//! Job specs contain Spark-style SQL expressions such as `type = 'click'`,
//! `amount * 2`, `lower(user)` or `value % 2 = 0 AND key <> 'k1'`.
//! [`CompiledExpr::compile`] parses such a string, type-checks it against an
//! Arrow [`Schema`] and binds column names to column indexes. The result is a
//! tree of physical operators evaluated with Arrow compute kernels, one kernel
//! call per operator per batch; literals are passed to kernels as
//! [`arrow_array::Scalar`]s and never materialized as full columns.
//!
//! # Supported SQL subset
//!
//! **Column types**: `Int64`, `Float64`, `Utf8`, `Boolean` and
//! `Dictionary(Int32, Utf8)`. Any sub-expression whose only column is a
//! dictionary column is evaluated once per distinct dictionary value and mapped
//! back through the keys; string results stay dictionary-encoded.
//!
//! **Identifiers**: case-sensitive column names, optionally double-quoted
//! (`"my col"`). Qualified names (`t.a`) are not supported.
//!
//! **Literals**: integers (`BIGINT`/`Int64`), decimals and exponents
//! (`DOUBLE`/`Float64`), `'single quoted strings'`, `TRUE`, `FALSE`, `NULL`.
//!
//! **Arithmetic**: `+ - * %` on numbers: `BIGINT op BIGINT` is `BIGINT`
//! (overflow is an evaluation error), otherwise `DOUBLE`. `/` always returns
//! `DOUBLE`. Division or modulo by zero yields `NULL`. Unary `-` and `+`.
//!
//! **Comparisons**: `= == != <> < <= > >=` between numbers (mixed `BIGINT` and
//! `DOUBLE` compare as `DOUBLE`), between strings, between booleans.
//! `x [NOT] BETWEEN a AND b`, `x [NOT] IN (a, b, ...)`,
//! `s [NOT] LIKE 'pat%'` (`%` any sequence, `_` one character, `\` escapes),
//! `s [NOT] ILIKE 'pat'`.
//!
//! **Logic**: `AND`, `OR` (three-valued, Kleene), `NOT`, `x IS [NOT] NULL`.
//!
//! **Conditionals**: `CASE WHEN c THEN a [WHEN ...] [ELSE b] END` and
//! `CASE x WHEN v THEN a ... END`; all branches must have the same type
//! (`BIGINT` and `DOUBLE` mix as `DOUBLE`); a missing `ELSE` is `NULL`.
//! `coalesce(a, b, ...)` (same type rules).
//!
//! **Casts**: `CAST(x AS BIGINT | INT | INTEGER | DOUBLE | STRING | VARCHAR |
//! TEXT | BOOLEAN)` and `x::type`. Unparseable strings become `NULL`;
//! `DOUBLE` to `BIGINT` truncates towards zero (`NULL` for NaN, infinities and
//! out-of-range values); strings `true/t/yes/y/1` and `false/f/no/n/0` (any
//! case) cast to booleans.
//!
//! **Functions** (names are case-insensitive): `lower(s)`, `upper(s)`,
//! `length(s)` (characters, `BIGINT`), `abs(n)`, `concat(s1, s2, ...)` (also
//! `s1 || s2`; `NULL` if any argument is `NULL`), `coalesce(a, b, ...)`,
//! `substr(s, start[, len])` / `substring(s, start[, len])` /
//! `SUBSTRING(s FROM start [FOR len])` (1-based; negative `start` counts from
//! the end).
//!
//! All operands are evaluated eagerly: a `CASE` branch that is not selected,
//! or the right side of an `AND`, is still computed, so it can raise an
//! integer overflow error for rows that would not have used it.

mod eval;
mod functions;
mod json_path;
mod library;
mod parse;
mod types;

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Schema};

use self::eval::Input;
use self::types::{Binder, Phys};

/// Errors from compiling or evaluating an expression. Every message contains
/// the expression text.
#[derive(Debug, thiserror::Error)]
pub enum ExprError {
    /// The text is not a syntactically valid SQL expression.
    #[error("cannot parse expression \"{sql}\": {message}")]
    Parse {
        /// The expression text.
        sql: String,
        /// The parser's description of the problem.
        message: String,
    },
    /// Valid SQL that Weir does not support.
    #[error("unsupported {construct} in \"{sql}\"")]
    Unsupported {
        /// The expression text.
        sql: String,
        /// The unsupported construct.
        construct: String,
    },
    /// A column name that is not in the schema.
    #[error("unknown column '{name}' in \"{sql}\"; available columns: {available}")]
    UnknownColumn {
        /// The expression text.
        sql: String,
        /// The unknown name.
        name: String,
        /// The schema's column names, comma-separated.
        available: String,
    },
    /// Operand types that an operator or function does not accept.
    #[error("{message} in \"{sql}\"")]
    Type {
        /// The expression text.
        sql: String,
        /// What was expected and what was found.
        message: String,
    },
    /// An expression over one of the limits on expressions
    /// (`max_expression_bytes`, `max_expression_depth`).
    #[error("expression \"{excerpt}\": {message}")]
    Limit {
        /// The start of the expression text.
        excerpt: String,
        /// Which limit, and by how much.
        message: String,
    },
    /// An integer `sum` aggregate overflowed BIGINT (see
    /// [`overflow_error`](crate::accumulator::overflow_error)).
    #[error("aggregate {aggregate}: the sum overflows BIGINT (beyond 9223372036854775807); sum a DOUBLE instead, e.g. {{ sum: \"CAST(value AS DOUBLE)\" }}")]
    Overflow {
        /// The aggregate's output name.
        aggregate: String,
    },
    /// A failure while evaluating over a batch, e.g. integer overflow.
    #[error("cannot evaluate \"{sql}\": {message}")]
    Eval {
        /// The expression text.
        sql: String,
        /// What went wrong.
        message: String,
    },
}

/// A SQL expression parsed, type-checked and bound to a schema, ready to be
/// evaluated over many batches.
#[derive(Debug, Clone)]
pub struct CompiledExpr {
    sql: Arc<str>,
    root: Arc<Phys>,
    /// Columns the expression reads, with the type it was compiled against.
    inputs: Arc<[(usize, DataType)]>,
}

impl CompiledExpr {
    /// Parses and type-checks `sql` against `schema`.
    pub fn compile(sql: &str, schema: &Schema) -> Result<CompiledExpr, ExprError> {
        let logical = parse::parse(sql)?;
        let binder = Binder::new(sql, schema);
        let root = binder.bind(&logical)?;
        let mut inputs = Vec::new();
        for name in logical.columns() {
            // Every name was resolved by the binder; look it up again for
            // the evaluation-time schema check.
            if let Some((idx, field)) = schema.column_with_name(&name) {
                inputs.push((idx, field.data_type().clone()));
            }
        }
        Ok(CompiledExpr {
            sql: Arc::from(sql),
            root: Arc::new(root),
            inputs: inputs.into(),
        })
    }

    /// Output type (known at compile time).
    pub fn data_type(&self) -> &DataType {
        &self.root.data_type
    }

    /// Whether the output may contain nulls.
    pub fn nullable(&self) -> bool {
        self.root.nullable
    }

    /// Evaluates over a batch whose schema matches the compile schema; returns
    /// an array of `batch.num_rows()` elements.
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef, ExprError> {
        let eval_err = |message: String| ExprError::Eval {
            sql: self.sql.to_string(),
            message,
        };
        for (idx, expected) in self.inputs.iter() {
            match batch.columns().get(*idx) {
                Some(col) if col.data_type() == expected => {}
                Some(col) => {
                    return Err(eval_err(format!(
                        "column {idx} has type {} but the expression was compiled for {expected}",
                        col.data_type()
                    )))
                }
                None => {
                    return Err(eval_err(format!(
                        "batch has {} columns, expression reads column {idx}",
                        batch.num_columns()
                    )))
                }
            }
        }
        let used: Vec<usize> = self.inputs.iter().map(|(i, _)| *i).collect();
        let input = Input {
            columns: batch.columns(),
            num_rows: batch.num_rows(),
            used: &used,
            lazy: false,
        };
        let out = self
            .root
            .eval(&input)
            .and_then(|v| v.into_array(batch.num_rows()))
            .map_err(|e| eval_err(eval::message(e)))?;
        if out.len() != batch.num_rows() {
            return Err(eval_err(format!(
                "internal error: result has {} rows, batch has {}",
                out.len(),
                batch.num_rows()
            )));
        }
        Ok(out)
    }

    /// The original SQL text.
    pub fn sql(&self) -> &str {
        &self.sql
    }
}

/// Names of the columns an expression refers to (for projection pushdown), in
/// order of first occurrence and without duplicates. Parse errors and
/// unsupported syntax are reported as [`ExprError`].
pub fn referenced_columns(sql: &str) -> Result<Vec<String>, ExprError> {
    Ok(parse::parse(sql)?.columns())
}

#[cfg(test)]
mod tests;
