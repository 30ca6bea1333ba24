//! Compiles the control API (proto/hoist.proto) with protoc.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/hoist.proto");
    tonic_prost_build::configure().build_transport(false).compile_protos(&["proto/hoist.proto"], &["proto"])?;
    Ok(())
}
