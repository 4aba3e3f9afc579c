//! Rows/s of expressions over one 1-million-row batch, for the guards that
//! short-circuit (`CASE`, `AND`, `coalesce`): when evaluating every operand
//! on every row succeeds, and when it fails and the guard evaluates its
//! operands on the rows that need them; plain arithmetic next to them.
//!
//!     cargo bench -p weir-plan --bench expressions

use std::sync::Arc;
use std::time::Instant;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use weir_plan::expr::CompiledExpr;

const ROWS: i64 = 1_000_000;

const EXPRESSIONS: [&str; 8] = [
    "value * 3 + 1",
    "CASE WHEN value % 2 = 0 THEN value * 3 ELSE value + 1 END",
    "CASE WHEN value % 2 = 0 THEN value / 3 ELSE value END",
    "value % 2 = 0 AND value * 3 > 10",
    "value % 2 = 0 AND value > 10",
    "coalesce(n, value * 2)",
    // The guard keeps the rows whose product would overflow out: the
    // eager pass fails and the lazy one runs.
    "CASE WHEN value < 1000 THEN value * 4611686018427387 ELSE 0 END",
    "value < 1000 AND value * 4611686018427387 > 0",
];

fn main() -> anyhow::Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("value", DataType::Int64, false),
        Field::new("n", DataType::Int64, true),
        Field::new("text", DataType::Utf8, false),
    ]));
    let value: ArrayRef = Arc::new(Int64Array::from_iter_values(0..ROWS));
    let n: ArrayRef = Arc::new(Int64Array::from_iter(
        (0..ROWS).map(|v| (v % 3 != 0).then_some(v)),
    ));
    let text: ArrayRef = Arc::new(StringArray::from_iter_values(
        (0..ROWS).map(|v| format!("row {v}")),
    ));
    let batch = RecordBatch::try_new(schema.clone(), vec![value, n, text])?;
    println!("| expression | rows/s |");
    println!("|---|---:|");
    for sql in EXPRESSIONS {
        let e = CompiledExpr::compile(sql, &schema)?;
        // Best of 5 runs.
        let mut best = f64::MAX;
        for _ in 0..5 {
            let started = Instant::now();
            let out = e.evaluate(&batch)?;
            best = best.min(started.elapsed().as_secs_f64());
            anyhow::ensure!(out.len() == ROWS as usize);
        }
        println!("| `{sql}` | {:.0} |", ROWS as f64 / best);
    }
    Ok(())
}
