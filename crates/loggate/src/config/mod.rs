//! Command-line and environment configuration (clap derive). Every flag can
//! also be set through a `LOGGATE_*` environment variable; the doc comments
//! are the `--help` text.
//!
//! `serve`'s flags are in groups ([`serve`]), one per module they configure,
//! each turning itself into that module's settings; the client subcommands'
//! flags are in [`client`]; the value parsers, which make out-of-range values
//! a parse error, in `parse`; `serve`'s `--config` TOML file, below flags and
//! environment variables, in [`file`].

pub mod client;
pub mod file;
mod parse;
pub mod security;
pub mod serve;

use clap::{Parser, Subcommand};

pub use client::{LogArgs, Output, ServerArg, TailArgs, TokenArgs, TokenCommand, TokenNewArgs};
pub use security::SecurityArgs;
pub use serve::{
    BrokerArg, HistoryArgs, LimitsArgs, ListenArgs, RabbitMqArgs, ServeConfig, SpoolArgs, TailsArgs,
};
pub use serve::{LogFormat, ObservabilityArgs};

#[derive(Debug, Parser)]
#[command(
    name = "loggate",
    version,
    about = "A gRPC logging gateway in front of RabbitMQ"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway. (Boxed: its flags outweigh every other command's.)
    Serve(Box<ServeConfig>),
    /// Send one record and print its id.
    Log(LogArgs),
    /// Follow records live.
    Tail(TailArgs),
    /// Issue bearer tokens for --auth-file.
    Token(TokenArgs),
    /// Check `serve`'s configuration (--config file, environment, flags).
    Config(ConfigArgs),
}

/// `loggate config …`.
#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check `serve`'s flags, environment and --config file; print the settings.
    ///
    /// Validates them as `serve` would (without opening the files they name
    /// or connecting) and prints every setting in effect and where it came
    /// from, in the form of a config file, with passwords hidden.
    Check(Box<CheckArgs>),
}

/// `loggate config check`: `serve`'s flags, and the report `file::parse` writes.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub serve: ServeConfig,
    /// The effective settings, filled in by [`file::parse_from`].
    #[arg(skip)]
    pub report: String,
}
