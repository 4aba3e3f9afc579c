//! `weir-executor-redact`: the stock Weir executor plus one custom
//! operator, `redact@1`, which masks a string column:
//!
//! ```yaml
//! pipeline:
//!   - custom: { name: redact, version: 1, config: { column: user, keep: 2, mask: "#" } }
//! ```
//!
//! turns `alice` into `al###`. Config: `column` (required; a string
//! column), `keep` (leading characters left as they are, default 0),
//! `mask` (the replacement character, default `*`). Nulls stay null.
//!
//! Build and run it like `weir-executor` (same flags):
//! `cargo run -p weir-example-custom-operator -- --drivers 127.0.0.1:7070`.
//! See docs/custom-operators.md.

mod redact;

use std::process::ExitCode;
use weir_executor::custom::OperatorRegistry;

fn main() -> ExitCode {
    let mut operators = OperatorRegistry::new();
    if let Err(e) = operators.register("redact", "1", redact::create) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    weir_executor::main_with(operators)
}
