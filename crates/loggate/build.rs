//! Compiles proto/ with protox (pure Rust, so no system protoc is needed) and
//! writes the descriptor set that server reflection serves.

use std::{env, fs, path::PathBuf};

use prost::Message as _;

/// The proto tree stays at the top of the workspace: the clients use it too.
const PROTO_ROOT: &str = "../../proto";
const PROTO: &str = "../../proto/loggate/v1/loggate.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");

    let descriptors = protox::compile([PROTO], [PROTO_ROOT])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("loggate_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        // Sorted maps make the JSON body and the text output deterministic.
        .btree_map(".")
        // prost's codec, decoding from one slice with the records presized.
        .codec_path("crate::proto::codec::Codec")
        .compile_fds(descriptors)?;
    Ok(())
}
