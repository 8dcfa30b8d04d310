//! Everything that speaks AMQP: connections that recover (plain or TLS), the
//! topology, the confirm-mode [`Publisher`] and the history-stream
//! [`StreamReader`]. lapin types stay inside this module.

mod amqps;
mod endpoint;
mod error;
mod link;
mod outgoing;
mod publisher;
mod stream_reader;
mod topology;

pub use amqps::{AmqpsFiles, AmqpsSettings};
pub use endpoint::{redact_url, Brokers, Endpoint};
pub use error::Error;
pub use link::FirstConnect;
pub use publisher::{Confirms, PinnedChannel, Publisher, PublisherSettings, Reservation};
pub use stream_reader::{Head, StreamMessage, StreamReader, StreamSource, StreamStart};
pub use topology::{Retention, Topology};
