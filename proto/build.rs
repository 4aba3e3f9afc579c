//! Generates the Rust code for Weir's protobuf definitions into `OUT_DIR`.
//!
//! `protoc` comes from the `protoc-bin-vendored` crate so a fresh machine
//! builds without a system protoc. `PROTOC` is set only inside this build
//! script's process: a global `PROTOC` would also reach `raft-proto`, which
//! rejects newer protoc releases.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; this only affects this process.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let protos = [
        "proto/weir/v1/spec.proto",
        "proto/weir/v1/meta.proto",
        "proto/weir/v1/client.proto",
        "proto/weir/v1/tasks.proto",
        "proto/weir/v1/executor.proto",
        "proto/weir/v1/cluster.proto",
    ];
    // The descriptor set is kept for code that walks the messages and
    // services themselves (tests that check every field or RPC has a rule).
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("weir_descriptor.bin"))
        .compile_protos(&protos, &["proto"])?;
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}
