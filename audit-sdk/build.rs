//! Generates the gRPC client and server of `proto/audit.proto`.
//!
//! `protoc` comes from the `protoc-bin-vendored` crate, so building needs no
//! system package.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // prost-build finds protoc through PROTOC.
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto/audit.proto");
    tonic_prost_build::configure().compile_protos(&["proto/audit.proto"], &["proto"])?;
    Ok(())
}
