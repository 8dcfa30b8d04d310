//! loggate's test harness, shared by the tests of `loggate` and by
//! `loggate-bench`: gateways in-process and as processes, an independent AMQP
//! probe, `rabbitmqctl`, record fixtures and bounded waits. Everything a test
//! declares on the broker is deleted when its guard drops, even when the test
//! fails.
//!
//! Each module owns one thing; the items are re-exported here so that a test
//! imports what it uses from the crate root.

#![warn(missing_docs)]

mod auth;
mod certs;
mod fixture;
mod gateway;
mod history;
mod names;
mod probe;
mod process;
mod rabbitmq;
mod wait;

pub use auth::{bearer, principal, AuthFile};
pub use certs::{CertFiles, TestPki};
pub use fixture::record;
pub use gateway::{Gateway, NOT_SERVING, SERVING};
pub use history::{history, next_record, slow_live_tail};
pub use names::{fresh_names, unique, Names};
pub use probe::{publish_raw, Probe};
pub use process::{
    loggate_bin, memory_bytes, serve_process, serve_process_logged, spawn_serving, MemoryField,
    SpawnError, Stderr,
};
pub use rabbitmq::{
    close_connections, connections_named, consumers_of_connection, rabbitmqctl, AmqpConnection,
    Rabbitmqctl, RabbitmqctlError, SuspendedStream, Vhost, AMQP_URL,
};
pub use wait::{eventually, eventually_async, WAIT};
