//! `loggate-bench`: the load and fault lab that measures a `loggate` gateway
//! from the outside. It starts the `loggate` binary as a process, speaks
//! lapin directly for RabbitMQ's own ceiling, runs `rabbitmqctl` to inject
//! faults and reads /proc for memory and CPU time, none of which belongs in
//! the product binary.

mod bench;
mod broker_node;
mod chaos;
mod config;
mod connect;
mod error;
mod process;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser as _;
use tracing_subscriber::EnvFilter;

use config::{Cli, Command, GatewayBin};
use error::Error;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("loggate-bench: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Bench(args) => bench::run(args).await,
            Command::Chaos(args) => chaos::run(args).await,
        }
    });
    let code = match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("loggate-bench: {error}");
            ExitCode::FAILURE
        }
    };
    // As in `loggate`: leave without dropping the runtime, whose lapin I/O
    // threads may still be parked on it.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    std::process::exit(if code == ExitCode::SUCCESS { 0 } else { 1 })
}

impl GatewayBin {
    /// `--gateway-bin` (or `$LOGGATE_BIN`), else the `loggate` built next to
    /// this binary, found the way the tests find it.
    fn resolve(&self) -> Result<std::path::PathBuf, Error> {
        let bin = self
            .gateway_bin
            .clone()
            .unwrap_or_else(loggate_testkit::loggate_bin);
        if bin.is_file() {
            Ok(bin)
        } else {
            Err(Error::Gateway(format!(
                "no loggate binary at {}: build it with `cargo build --release -p loggate` \
                 (`cargo test --workspace` builds a debug one), or pass --gateway-bin",
                bin.display()
            )))
        }
    }
}
