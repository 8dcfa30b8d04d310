//! Compiles proto/ with protox (pure Rust, so no system protoc is needed) and
//! writes the descriptor set that server reflection serves.

use std::{env, fs, path::PathBuf};

use prost::Message as _;

const PROTO: &str = "proto/loggate/v1/loggate.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");

    let descriptors = protox::compile([PROTO], ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("loggate_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        // Sorted maps make the JSON body and the text output deterministic.
        .btree_map(".")
        .compile_fds(descriptors)?;
    Ok(())
}
