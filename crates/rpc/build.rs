//! Generates the tonic/prost code for `proto/swarmd.proto`.
//!
//! The proto is parsed by protox (pure Rust) instead of `protoc`, so building needs no
//! protobuf toolchain on the machine (there is none on CI or developer machines).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let proto = proto_dir.join("swarmd.proto");
    println!("cargo:rerun-if-changed={}", proto.display());

    let fds = protox::compile([&proto], [&proto_dir])?;
    tonic_prost_build::configure()
        // `bytes json` payloads become `bytes::Bytes`: decoded without a copy.
        .bytes(".")
        .build_client(true)
        .build_server(true)
        // We bring our own (TLS) transport; generated `connect()` helpers would bypass it.
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}
