//! loggate: a gRPC logging gateway in front of RabbitMQ.
//!
//! Layers, with dependencies pointing one way (see README.md, "Architecture"):
//! `api` → `record`, `broker`, `tail`; `tail` → `broker`, `record`; `broker` → `record`;
//! `record` → the generated wire types.

pub mod api;
pub mod auth;
pub mod broker;
pub mod cli;
pub mod config;
pub mod ingest;
pub mod proto;
pub mod record;
pub mod server;
pub mod spool;
pub mod sync;
pub mod tail;
pub mod tls;
