//! The generated gRPC types of `proto/loggate/v1/loggate.proto`.

pub(crate) mod codec;

#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("loggate.v1");
}

/// The encoded `FileDescriptorSet` of our proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/loggate_descriptor.bin"));

/// The OTLP logs wire types and the `LogsService` server and client, as
/// opentelemetry-proto generates them (tonic 0.14, prost 0.14, like ours).
pub mod otlp {
    pub use opentelemetry_proto::tonic::collector::logs::v1 as collector;
    pub use opentelemetry_proto::tonic::common::v1 as common;
    pub use opentelemetry_proto::tonic::logs::v1 as logs;
    pub use opentelemetry_proto::tonic::resource::v1 as resource;

    /// The files `LogsService` is described by, for server reflection: the
    /// crate's set also holds the trace, metrics and profiles services,
    /// which this gateway does not serve, so reflection must not list them.
    pub fn logs_file_descriptor_set() -> prost_types::FileDescriptorSet {
        const LOGS_FILES: [&str; 4] = [
            "opentelemetry/proto/common/v1/common.proto",
            "opentelemetry/proto/resource/v1/resource.proto",
            "opentelemetry/proto/logs/v1/logs.proto",
            "opentelemetry/proto/collector/logs/v1/logs_service.proto",
        ];
        let mut set = <prost_types::FileDescriptorSet as prost::Message>::decode(
            opentelemetry_proto::DESCRIPTORS,
        )
        .expect("opentelemetry-proto ships a valid descriptor set");
        set.file.retain(|file| LOGS_FILES.contains(&file.name()));
        set
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn the_descriptor_set_describes_logs_service_and_its_messages_only() {
            let set = super::logs_file_descriptor_set();
            assert_eq!(set.file.len(), 4, "every file LogsService needs");
            let services: Vec<_> = set
                .file
                .iter()
                .flat_map(|file| file.service.iter().map(|s| (file.package(), s.name())))
                .collect();
            assert_eq!(
                services,
                [("opentelemetry.proto.collector.logs.v1", "LogsService")]
            );
        }
    }
}
