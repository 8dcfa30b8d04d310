//! The `loggate` binary: parse the command line, set up logging, run one subcommand.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use anyhow::Context as _;
use loggate::config::{Command, ConfigCommand, LogFormat, TokenCommand};
use tracing_subscriber::EnvFilter;

/// A record allocates a few dozen small blocks on its way to the broker
/// (properties, frames, promises) and a call frees a large body buffer:
/// glibc's malloc spent a third of the gateway's instructions on that
/// (consolidating its free lists after each large free); mimalloc a small
/// fraction. Set in the binary only: the library leaves the choice to its user.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc commits its arenas up front on Linux (an overcommitting OS): the
/// gateway's RSS doubled (idle 28 MB, 60 MB under load, against 12 and 28
/// with glibc). Committed on demand, it stays within glibc's figures and
/// keeps the speed. Freed memory goes back to the OS after 10 ms (mimalloc 3
/// waits a second, mimalloc 2 waited 10 ms): returned at once, every
/// 1,000-record request faulted its buffers in afresh (about a tenth of the
/// gateway's CPU on packed messages); with requests decoded into vectors
/// sized once, the peak under packed load stayed under 48 MB. Set from a
/// constructor, before Rust's runtime allocates anything (so before the
/// first arena).
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array"]
static SMALL_FOOTPRINT: extern "C" fn() = {
    extern "C" {
        fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    }
    // Positions in mimalloc 3's `mi_option_e` (libmimalloc-sys 0.1.49).
    const ARENA_EAGER_COMMIT: std::ffi::c_int = 4;
    const PURGE_DELAY: std::ffi::c_int = 15;
    extern "C" fn small_footprint() {
        // SAFETY: plain setters of mimalloc's option table, valid at any
        // time (before its own initialisation too), with valid options.
        unsafe {
            mi_option_set(ARENA_EAGER_COMMIT, 0);
            mi_option_set(PURGE_DELAY, 10);
        }
    }
    small_footprint
};

fn main() -> ExitCode {
    // The command line, with the settings of its --config file below it.
    let cli = loggate::config::file::parse();
    // The gateway logs at info; the client commands only warn, so their
    // stdout stays the output and stderr stays quiet.
    let default_filter = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    let log_format = match &cli.command {
        Command::Serve(config) => config.observability.log_format,
        _ => LogFormat::Text,
    };
    let logging = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr);
    match log_format {
        LogFormat::Text => logging.with_ansi(std::io::stderr().is_terminal()).init(),
        // The event's fields beside `message` at the top level, where log
        // shippers look for them; never colour codes.
        LogFormat::Json => logging.json().flatten_event(true).with_ansi(false).init(),
    }

    let threads = match &cli.command {
        Command::Serve(config) => config.server.threads,
        _ => 0,
    };
    let runtime = match build_runtime(threads) {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("loggate: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let status = match runtime.block_on(dispatch(cli.command)) {
        Ok(code) if code == ExitCode::SUCCESS => 0,
        Ok(_) => 1,
        Err(error) => {
            eprintln!("loggate: {error:#}");
            exit_status(&error)
        }
    };
    // Leave without dropping the runtime. lapin's I/O threads (of connections
    // closed, or of attempts that failed) may still be parked on tasks of it;
    // cancelling those makes them panic noisily after our last word. Every
    // connection is closed and every output written by now.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    std::process::exit(status)
}

/// 2 when the command line cannot work as written, as for the usage errors
/// clap reports before anything runs; 1 for a failure while running.
fn exit_status(error: &anyhow::Error) -> i32 {
    match error.downcast_ref::<loggate::cli::Error>() {
        Some(error) if error.is_usage() => 2,
        _ => 1,
    }
}

/// `threads` = 1: a current-thread runtime (fewest thread hand-offs per call,
/// the lowest latency); 0: one worker per core; N: N workers.
fn build_runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    match threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        0 => tokio::runtime::Runtime::new(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(config) => {
            let shutdown = shutdown_signal();
            let listener = tokio::net::TcpListener::bind(config.server.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.server.listen))?;
            if let Some(path) = &config.server.address_file {
                let address = listener.local_addr().context("reading the bound address")?;
                write_address_file(path, address)
                    .with_context(|| format!("--address-file {}", path.display()))?;
            }
            loggate::server::run(listener, *config, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Log(args) => Ok(loggate::cli::log::run(args).await?),
        Command::Tail(args) => Ok(loggate::cli::tail::run(args).await?),
        Command::Token(args) => match &args.command {
            TokenCommand::New(new) => Ok(loggate::cli::token::new(new)?),
        },
        Command::Config(args) => match args.command {
            ConfigCommand::Check(check) => {
                // What serve would refuse before connecting, short of
                // reading the files the settings name: the broker URLs.
                let rabbitmq = &check.serve.rabbitmq;
                if rabbitmq.amqp_url_file.is_none() {
                    loggate::broker::Brokers::parse(&rabbitmq.broker.amqp_url)
                        .map_err(|e| loggate::cli::Error::Usage(format!("--amqp-url: {e}")))?;
                }
                print!("{}", check.report);
                Ok(ExitCode::SUCCESS)
            }
        },
    }
}

/// Writes `address` and a newline to `path` through a temporary file and a
/// rename, so a reader polling for the file never sees half a line.
fn write_address_file(
    path: &std::path::Path,
    address: std::net::SocketAddr,
) -> std::io::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    std::fs::write(&partial, format!("{address}\n"))?;
    std::fs::rename(&partial, path)
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled: a supervisor (or a test) may
/// send SIGTERM as soon as the address file appears, before the gateway has
/// connected to RabbitMQ, and that must still be an orderly shutdown.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, Signal, SignalKind};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        // SIGHUP means "reload" once the gateway runs; from here on it must
        // not kill the process either (its default). tokio keeps a handler
        // installed for the rest of the process once one is registered, so
        // this stream can go; the reload task listens with its own.
        drop(signal(SignalKind::hangup()));
        async fn received(signal: std::io::Result<Signal>) {
            match signal {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                // Not listening for this one: only the other can stop us.
                Err(_) => std::future::pending().await,
            }
        }
        async move {
            tokio::select! {
                () = received(interrupt) => {}
                () = received(terminate) => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
