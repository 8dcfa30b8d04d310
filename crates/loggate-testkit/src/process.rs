//! `loggate serve` as a child process, and the address handshake: the child
//! is given `--address-file`, and the bound address is read from that file
//! (never scraped from log text).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use tokio::process::{Child, Command};

use crate::WAIT;

/// How often the address file is looked for while a gateway starts.
const POLL: Duration = Duration::from_millis(20);

/// Why a gateway process did not start serving.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// There is no binary at that path: usually `loggate` was not built.
    #[error(
        "no loggate binary at {0}: build it with `cargo build -p loggate` \
         (`cargo test --workspace` does), or name one with LOGGATE_BIN"
    )]
    Missing(String),
    /// The binary is there but could not be started.
    #[error("cannot start {bin}: {source}")]
    Start {
        /// The program, as the command names it.
        bin: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// It exited before writing its address.
    #[error("the gateway exited before it listened ({0})")]
    Exited(std::process::ExitStatus),
    /// It wrote no address in time.
    #[error("the gateway did not listen within {0:?}")]
    Timeout(Duration),
    /// The address file held something else.
    #[error("the address file held {0:?}, not an address")]
    BadAddress(String),
}

/// The `loggate` binary: `$LOGGATE_BIN` (relative to the workspace root), else the one cargo built next to
/// the running executable (test binaries live in `target/<profile>/deps/`).
pub fn loggate_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("LOGGATE_BIN") {
        // Relative to the workspace root, where the command was typed:
        // cargo runs each test binary in its own crate's directory.
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        return workspace.join(bin);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(format!("loggate{}", std::env::consts::EXE_SUFFIX))
}

/// Spawns `command` (a `loggate serve …` with `--listen …:0`) with an
/// `--address-file` of its own and waits up to `within` for the address it
/// bound. The child is killed when its handle drops.
pub async fn spawn_serving(
    mut command: Command,
    within: Duration,
) -> Result<(Child, SocketAddr), SpawnError> {
    let file = address_file_path();
    command.arg("--address-file").arg(&file).kill_on_drop(true);
    let bin = command
        .as_std()
        .get_program()
        .to_string_lossy()
        .into_owned();
    let mut child = command.spawn().map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            SpawnError::Missing(bin.clone())
        } else {
            SpawnError::Start {
                bin: bin.clone(),
                source,
            }
        }
    })?;
    let deadline = Instant::now() + within;
    let address = loop {
        if let Ok(text) = std::fs::read_to_string(&file) {
            let _ = std::fs::remove_file(&file);
            break text
                .trim()
                .parse::<SocketAddr>()
                .map_err(|_| SpawnError::BadAddress(text))?;
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(SpawnError::Exited(status));
        }
        if Instant::now() >= deadline {
            return Err(SpawnError::Timeout(within));
        }
        tokio::time::sleep(POLL).await;
    };
    Ok((child, address))
}

/// Starts `loggate serve` (the binary of `loggate_bin`) as a process on a
/// free loopback port with the given flags; returns it and its gRPC URL.
/// Panics when it does not serve within `WAIT`.
pub async fn serve_process(args: &[&str]) -> (Child, String) {
    let (child, address) = start_serving(args, std::process::Stdio::null()).await;
    (child, format!("http://{address}"))
}

/// `loggate serve --listen 127.0.0.1:0 ARGS` with `RUST_LOG` unset (so the
/// gateway logs at its default level) and stderr to `stderr`, serving.
async fn start_serving(args: &[&str], stderr: std::process::Stdio) -> (Child, SocketAddr) {
    let mut command = Command::new(loggate_bin());
    command
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stderr(stderr);
    spawn_serving(command, WAIT)
        .await
        .unwrap_or_else(|error| panic!("loggate serve did not start: {error}"))
}

/// A process's resident memory from /proc, in bytes: `VmRSS` now, or
/// `VmHWM`, the peak so far.
pub fn memory_bytes(pid: u32, field: MemoryField) -> u64 {
    let key = match field {
        MemoryField::Resident => "VmRSS:",
        MemoryField::Peak => "VmHWM:",
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{key} in /proc/{pid}/status"));
    kib * 1024
}

/// Which memory figure [`memory_bytes`] reads.
#[derive(Debug, Clone, Copy)]
pub enum MemoryField {
    /// The resident set now (`VmRSS`).
    Resident,
    /// The highest resident set so far (`VmHWM`).
    Peak,
}

/// A path no other gateway of this or another run writes.
fn address_file_path() -> PathBuf {
    std::env::temp_dir().join(format!("{}.address", crate::unique("serve")))
}

/// What a gateway process wrote to stderr: every line counted, the first
/// `STDERR_KEPT` kept (a flood must not fill the test's memory).
#[derive(Clone, Default)]
pub struct Stderr {
    lines: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    bytes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    head: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// Lines of a gateway's stderr that [`Stderr`] keeps for a failure message.
const STDERR_KEPT: usize = 200;

impl Stderr {
    /// Lines written so far.
    pub fn lines(&self) -> usize {
        self.lines.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> usize {
        self.bytes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The first lines written, joined.
    pub fn head(&self) -> String {
        self.head
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .join("\n")
    }

    /// Waits until no line has arrived for `quiet` (or `WAIT` passed), so
    /// that a count taken afterwards includes what the pipe still held.
    pub async fn settle(&self, quiet: Duration) {
        let deadline = Instant::now() + WAIT;
        let mut seen = self.bytes();
        loop {
            tokio::time::sleep(quiet).await;
            let now = self.bytes();
            if now == seen || Instant::now() >= deadline {
                return;
            }
            seen = now;
        }
    }
}

/// [`serve_process`] with the gateway's stderr read by a task of its own:
/// counted, the start kept (see [`Stderr`]). `RUST_LOG` is unset, so the
/// gateway logs at its default level.
pub async fn serve_process_logged(args: &[&str]) -> (Child, String, Stderr) {
    use tokio::io::AsyncBufReadExt as _;

    let (mut child, address) = start_serving(args, std::process::Stdio::piped()).await;
    let stderr = Stderr::default();
    let pipe = child.stderr.take().expect("stderr is piped");
    let counted = stderr.clone();
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(pipe).split(b'\n');
        while let Ok(Some(line)) = lines.next_segment().await {
            counted
                .lines
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            counted
                .bytes
                .fetch_add(line.len() + 1, std::sync::atomic::Ordering::Relaxed);
            let mut head = counted
                .head
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if head.len() < STDERR_KEPT {
                head.push(String::from_utf8_lossy(&line).into_owned());
            }
        }
    });
    (child, format!("http://{address}"), stderr)
}
