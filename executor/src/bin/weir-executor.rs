//! `weir-executor`: runs tasks for the leader driver, owns state
//! partitions and serves shuffle blocks to other executors. It has no
//! custom operators; a binary with some is built the same way (see
//! docs/custom-operators.md).

fn main() -> std::process::ExitCode {
    weir_executor::main_with(weir_executor::custom::OperatorRegistry::new())
}
