//! loggate: a gRPC logging gateway in front of RabbitMQ.
//!
//! Dependencies point one way, down this list (ARCHITECTURE.md has the map):
//!
//! - `server` → `config`, `api`, `ingest`, `broker`, `spool`: assembles the
//!   gateway and runs it; `main.rs` and the tests call `server::run`.
//! - `config` → the settings types of `api`, `broker`, `spool`, `record`: each
//!   group of `serve` flags builds the settings of the module it configures.
//! - `api` → `ingest`, `tail`, `record`; → `broker` only for the consuming side
//!   (`StreamSource`, `StreamStart`), and → `broker`, `spool`, `ingest` errors
//!   in `api::status`, the one mapping to gRPC status.
//! - `ingest` → `broker`, `spool`, `record`: where an accepted record goes.
//! - `tail` → `broker`, `record`; `spool` → `broker` (its drainer publishes),
//!   `record`.
//! - `broker` → `record`: the only module that speaks AMQP (lapin).
//! - `record` → the generated wire types (`proto`) only: pure functions.
//! - `metrics` → nothing: names and recording helpers that every module
//!   may call; `http` → `metrics`: the `--metrics-listen` routes, served by `server`.
//! - `web` → `api`, `auth`, `tail`, `record`: the `--http-listen` page and its
//!   API (tails as Server-Sent Events through `api::open_tail`), served by
//!   `server` with `http`'s loop.
//! - `sync` → nothing; `cli` (the client subcommands) → `config`, `record`,
//!   `proto`, never the server side.
//!
//! `auth` (tokens, principals, scopes) and `tls` (issue 10) are being added:
//! a layer in front of the LogGateway service, wired in by `server`.

pub mod api;
pub mod auth;
pub mod broker;
pub mod cli;
pub mod config;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod proto;
pub mod record;
pub mod server;
pub mod spool;
pub mod sync;
pub mod tail;
pub mod tls;
pub mod web;
