//! The API's message types, generated from the same proto as hoist-api's (messages only:
//! decoding is what is fuzzed, and tonic would only add build time).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../api/proto/hoist.proto");
    prost_build::compile_protos(&["../api/proto/hoist.proto"], &["../api/proto"])?;
    Ok(())
}
