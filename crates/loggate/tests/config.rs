//! `--config FILE` and `loggate config check`, through the real binary:
//! precedence (flag > env > file > default), refusals, redaction, and the
//! README's example file.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use loggate_testkit::{fresh_names, loggate_bin, spawn_serving, unique, WAIT};
use tokio::process::Command;

/// `loggate ARGS` with no `LOGGATE_*` variable of the test's environment
/// leaking in (each test sets the ones it means), killed if it outlives us.
fn loggate(args: &[&str]) -> Command {
    let mut command = Command::new(loggate_bin());
    command
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("LOGGATE_") {
            command.env_remove(name);
        }
    }
    command
}

async fn run(mut command: Command) -> Output {
    tokio::time::timeout(WAIT, command.output())
        .await
        .expect("the command finishes in time")
        .expect("the binary runs")
}

/// A config file with `text`, removed when the test ends.
struct ConfigFile(PathBuf);

impl ConfigFile {
    fn new(text: &str) -> ConfigFile {
        let path = std::env::temp_dir().join(format!("{}.toml", unique("config")));
        std::fs::write(&path, text).expect("write the config file");
        ConfigFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temp path")
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `config check`'s line for `key`: `key = value   # source`, or
/// `# key is not set   # source`.
fn line_of<'a>(report: &'a str, key: &str) -> &'a str {
    report
        .lines()
        .find(|line| {
            line.starts_with(&format!("{key} = "))
                || line.starts_with(&format!("# {key} is not set"))
        })
        .unwrap_or_else(|| panic!("no line for {key} in:\n{report}"))
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A command line that cannot work (README: exit status 2), said on stderr.
fn assert_usage_error(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "a usage error: {stderr}");
    assert!(output.stdout.is_empty(), "nothing on stdout");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[tokio::test]
async fn config_check_shows_flag_over_env_over_file_over_default() {
    let file = ConfigFile::new("exchange = \"from-file\"\nmax-inflight = 111\ntail-buffer = 33\n");
    let mut command = loggate(&[
        "config",
        "check",
        "--config",
        file.path(),
        "--exchange",
        "from-flag",
    ]);
    command
        .env("LOGGATE_EXCHANGE", "from-env")
        .env("LOGGATE_MAX_INFLIGHT", "222");
    let output = run(command).await;
    assert!(output.status.success(), "{output:?}");
    let report = stdout(&output);

    // In file, env and flag: the flag.
    assert!(
        line_of(&report, "exchange").starts_with("exchange = \"from-flag\" "),
        "{report}"
    );
    assert!(line_of(&report, "exchange").ends_with("# flag"), "{report}");
    // In file and env: the env.
    assert!(
        line_of(&report, "max-inflight").starts_with("max-inflight = 222 "),
        "{report}"
    );
    assert!(
        line_of(&report, "max-inflight").ends_with("# env LOGGATE_MAX_INFLIGHT"),
        "{report}"
    );
    // In the file only: the file.
    assert!(
        line_of(&report, "tail-buffer").starts_with("tail-buffer = 33 "),
        "{report}"
    );
    assert!(
        line_of(&report, "tail-buffer").ends_with("# file"),
        "{report}"
    );
    // Nowhere: the default.
    assert!(
        line_of(&report, "max-batch").starts_with("max-batch = 1000 "),
        "{report}"
    );
    assert!(
        line_of(&report, "max-batch").ends_with("# default"),
        "{report}"
    );
}

/// Starts `loggate serve` with `--config file` (and `flag_listen`, and
/// `LOGGATE_LISTEN = env_listen`, when given) and returns the address it
/// bound, from the address file.
async fn bound_address(
    file: &ConfigFile,
    env_listen: Option<&str>,
    flag_listen: Option<&str>,
) -> String {
    let mut command = loggate(&["serve", "--config", file.path()]);
    if let Some(listen) = flag_listen {
        command.args(["--listen", listen]);
    }
    if let Some(listen) = env_listen {
        command.env("LOGGATE_LISTEN", listen);
    }
    command.stderr(Stdio::null());
    let (_child, address) = spawn_serving(command, WAIT)
        .await
        .unwrap_or_else(|error| panic!("loggate serve did not start: {error}"));
    address.ip().to_string()
}

#[tokio::test]
async fn serve_listens_where_file_env_and_flag_say_in_that_order() {
    // Loopback addresses other than 127.0.0.1, so each source is told apart
    // by where the gateway bound; unique names, so the gateway declares
    // nothing another test uses.
    let (exchange, history, _names) = fresh_names();
    let file = ConfigFile::new(&format!(
        "listen = \"127.0.0.2:0\"\nexchange = \"{exchange}\"\nhistory-queue = \"{history}\"\n\
         broker-wait = \"5s\"\n"
    ));
    assert_eq!(bound_address(&file, None, None).await, "127.0.0.2");
    assert_eq!(
        bound_address(&file, Some("127.0.0.3:0"), None).await,
        "127.0.0.3"
    );
    assert_eq!(
        bound_address(&file, Some("127.0.0.3:0"), Some("127.0.0.4:0")).await,
        "127.0.0.4"
    );
}

#[tokio::test]
async fn loggate_config_names_the_file_like_the_flag() {
    let file = ConfigFile::new("max-inflight = 123\n");
    let mut command = loggate(&["config", "check"]);
    command.env("LOGGATE_CONFIG", file.path());
    let output = run(command).await;
    assert!(output.status.success(), "{output:?}");
    let report = stdout(&output);
    assert!(
        line_of(&report, "max-inflight").starts_with("max-inflight = 123 "),
        "{report}"
    );
    assert!(report.contains("(env LOGGATE_CONFIG)"), "{report}");
}

#[tokio::test]
async fn an_unknown_key_is_refused_naming_it_and_the_closest_flag() {
    let file = ConfigFile::new("listen = \"127.0.0.1:0\"\nmax_inflight = 10\n");
    for subcommand in [&["serve"][..], &["config", "check"]] {
        let mut args = subcommand.to_vec();
        args.extend(["--config", file.path()]);
        let stderr = assert_usage_error(&run(loggate(&args)).await);
        assert!(stderr.starts_with("loggate: --config "), "{stderr}");
        assert!(
            stderr.contains("unknown key `max_inflight`; did you mean `max-inflight`?"),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn a_bad_value_is_refused_naming_the_key() {
    let file = ConfigFile::new("publish-timeout = \"0s\"\n");
    let stderr = assert_usage_error(&run(loggate(&["serve", "--config", file.path()])).await);
    assert!(stderr.contains("key `publish-timeout`"), "{stderr}");
    assert!(
        stderr.contains("invalid value '0s' for '--publish-timeout"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_file_that_is_not_a_config_file_is_a_usage_error() {
    let directory = std::env::temp_dir();
    let stderr = assert_usage_error(
        &run(loggate(&[
            "serve",
            "--config",
            directory.to_str().expect("UTF-8"),
        ]))
        .await,
    );
    assert!(stderr.contains("is a directory"), "{stderr}");

    let path = std::env::temp_dir().join(format!("{}.toml", unique("binary")));
    std::fs::write(&path, b"\xff\xfe\x00garbage").expect("write");
    let output = run(loggate(&[
        "serve",
        "--config",
        path.to_str().expect("UTF-8"),
    ]))
    .await;
    let _ = std::fs::remove_file(&path);
    let stderr = assert_usage_error(&output);
    assert!(stderr.contains("not UTF-8"), "{stderr}");
}

#[tokio::test]
async fn config_check_hides_the_amqp_password_from_file_and_env() {
    let file = ConfigFile::new("amqp-url = \"amqp://user:file-s3cret@rabbit-a:5672/%2f\"\n");
    let output = run(loggate(&["config", "check", "--config", file.path()])).await;
    assert!(output.status.success(), "{output:?}");
    let report = stdout(&output);
    assert!(!report.contains("file-s3cret"), "{report}");
    assert!(
        line_of(&report, "amqp-url").contains("\"amqp://***@rabbit-a:5672/%2f\""),
        "{report}"
    );

    let mut command = loggate(&["config", "check", "--config", file.path()]);
    command.env(
        "LOGGATE_AMQP_URL",
        "amqp://user:env-s3cret@rabbit-b/%2f,amqp://u:env-s3cret@rabbit-c/%2f",
    );
    let output = run(command).await;
    assert!(output.status.success(), "{output:?}");
    let report = stdout(&output);
    assert!(!report.contains("env-s3cret"), "{report}");
    assert!(
        line_of(&report, "amqp-url")
            .starts_with("amqp-url = [\"amqp://***@rabbit-b/%2f\", \"amqp://***@rabbit-c/%2f\"]"),
        "{report}"
    );
}

/// The README's example config file: the first ```toml block after
/// "### Configuration file".
fn readme_example() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .expect("README.md");
    let section = readme
        .split_once("### Configuration file")
        .expect("README has a Configuration file section")
        .1;
    let block = section
        .split_once("```toml\n")
        .expect("the section has a ```toml block")
        .1;
    block
        .split_once("```")
        .expect("the block ends")
        .0
        .to_owned()
}

#[tokio::test]
async fn the_readme_example_file_is_valid_and_names_every_serve_flag() {
    let example = readme_example();
    let file = ConfigFile::new(&example);
    let output = run(loggate(&["config", "check", "--config", file.path()])).await;
    assert!(output.status.success(), "the README's example: {output:?}");
    // config check prints a line for every key the binary knows (derived
    // from serve's flags): each must be in the example, set or commented out.
    let report = stdout(&output);
    let keys: Vec<&str> = report
        .lines()
        .filter_map(|line| match line.strip_prefix("# ") {
            Some(unset) => unset.split_once(" is not set").map(|(key, _)| key),
            None => line.split_once(" = ").map(|(key, _)| key),
        })
        .collect();
    assert!(keys.len() > 40, "{report}");
    for key in keys {
        let named = example.lines().any(|line| {
            let line = line.strip_prefix("# ").unwrap_or(line);
            line.starts_with(&format!("{key} = "))
        });
        assert!(named, "the README's example file lacks `{key}`");
        // Set in the example: it came from the file.
        if example
            .lines()
            .any(|line| line.starts_with(&format!("{key} = ")))
        {
            assert!(line_of(&report, key).ends_with("# file"), "{key}: {report}");
        }
    }
}

#[tokio::test]
async fn config_check_without_a_file_reports_defaults() {
    let output = run(loggate(&["config", "check"])).await;
    assert!(output.status.success(), "{output:?}");
    let report = stdout(&output);
    assert!(report.contains("# no --config file"), "{report}");
    assert!(
        line_of(&report, "listen").starts_with("listen = \"127.0.0.1:50051\" "),
        "{report}"
    );
    assert!(
        line_of(&report, "listen").ends_with("# default"),
        "{report}"
    );
    // Quiet: the report is stdout, and nothing else is said.
    assert!(output.stderr.is_empty(), "{output:?}");
}

#[tokio::test]
async fn config_check_refuses_a_broker_url_serve_would_refuse() {
    let output = run(loggate(&[
        "config",
        "check",
        "--amqp-url",
        "amqp://guest:secret@[::1",
    ]))
    .await;
    let stderr = assert_usage_error(&output);
    assert!(stderr.contains("--amqp-url"), "{stderr}");
    assert!(!stderr.contains("secret"), "no password: {stderr}");
}
