//! The generated gRPC types of `proto/loggate/v1/loggate.proto`.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

pub mod v1 {
    tonic::include_proto!("loggate.v1");
}

/// The encoded `FileDescriptorSet` of our proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/loggate_descriptor.bin"));
