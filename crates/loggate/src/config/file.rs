//! `--config FILE`: `serve`'s settings from a TOML file, below flags and
//! environment variables, and `config check`'s report of where each setting
//! came from.
//!
//! The keys are `serve`'s long flag names (`max-inflight = 10000`), taken
//! from its clap `Command`, so a new flag is a new key with nothing to keep
//! in step. How the file joins the command line:
//!
//! 1. A first, forgiving parse of the command line finds `--config` (or
//!    `LOGGATE_CONFIG`) and which settings a flag or an environment variable
//!    already gives.
//! 2. The file is read (bounded, a regular UTF-8 file) and every entry is
//!    checked: the key must name a flag, and the value must pass that flag's
//!    own value parser, so a bad value is refused with the flag's own words
//!    and the key's name.
//! 3. Each entry that no flag or variable sets (or overrides through a
//!    conflict, such as `LOGGATE_AMQP_URL_FILE` over the file's `amqp-url`)
//!    is appended to the command line as `--key=value`, and the command line
//!    is parsed for real. clap's own precedence (command line over
//!    environment over default) then gives flag > env > file > default, and
//!    its `requires` and `conflicts_with` rules see the file's keys as given
//!    (a file's `tls-cert` without `tls-key` is refused, never half-applied).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Args, CommandFactory as _, FromArgMatches as _};

use super::{Cli, Command, ConfigCommand, ServeConfig};

/// The largest config file read. A real one is a few KiB; this bounds what
/// a wrong path (a log file, /dev/zero's cousins) can make the gateway hold.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// The id (and long name) of `--config` itself, which a file cannot set.
const CONFIG_ID: &str = "config";

/// Why `[section]` is refused: the file is flat, as the flags are.
const TABLE: &str = "a table: write every key at the top level of the file, named like its flag";

/// `--config`: the file `serve` and `config check` read settings from.
#[derive(Debug, Clone, Args)]
pub struct ConfigFileArg {
    /// Read settings from this TOML file, one `key = value` per flag, named
    /// like the long flag (`max-inflight = 10000`, `amqp-url = ["…", "…"]`).
    /// A flag or environment variable overrides the file's value. Check a
    /// file with `loggate config check --config FILE`.
    #[arg(long, env = "LOGGATE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Why the config file cannot be used. Each names the file, and where it
/// can, the key and the line.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The OS could not read it (missing, no permission, a symlink loop…).
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file, as given.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A symlink whose target is missing.
    #[error("{} is a symlink to a file that does not exist", .0.display())]
    DanglingSymlink(PathBuf),
    /// A directory was named.
    #[error("{} is a directory, not a config file", .0.display())]
    Directory(PathBuf),
    /// A FIFO, socket or device was named.
    #[error("{} is not a regular file", .0.display())]
    NotAFile(PathBuf),
    /// Larger than [`MAX_FILE_BYTES`].
    #[error("{} is larger than {MAX_FILE_BYTES} bytes: not a loggate config file", .0.display())]
    TooLarge(PathBuf),
    /// Not UTF-8, as TOML must be.
    #[error("{}: not UTF-8 text (invalid byte at offset {offset})", path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// Where the first invalid byte is.
        offset: usize,
    },
    /// Not TOML.
    #[error("{}: line {line}, column {column}: {message}", path.display())]
    Toml {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column (in characters) of the error.
        column: usize,
        /// The TOML parser's message.
        message: String,
    },
    /// A key that is not a `serve` flag.
    #[error("{}: unknown key `{key}`{hint}", path.display())]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key as written.
        key: String,
        /// `; did you mean …?`, or empty.
        hint: String,
    },
    /// A key whose value the flag would refuse.
    #[error("{}: key `{key}`: {reason}", path.display())]
    BadValue {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// The flag's value parser's message, or why the TOML type is wrong.
        reason: String,
    },
}

/// Why the command line (with its config file) cannot be used.
#[derive(Debug)]
pub enum ParseError {
    /// The file itself: unreadable, not TOML, an unknown key, a bad value.
    File(FileError),
    /// What clap refused, or `--help`/`--version` (clap's own "errors").
    Clap {
        /// clap's error, printed as clap prints it.
        error: clap::Error,
        /// The file's keys that were on the command line clap refused, so
        /// that a `requires` or `conflicts` error about them can say where
        /// they came from.
        from_file: Vec<String>,
        /// The file, when there was one.
        path: Option<PathBuf>,
    },
}

impl ParseError {
    /// Prints the error as the README's exit-status rule says (a usage
    /// error: status 2) and exits; `--help` and `--version` exit 0.
    pub fn exit(self) -> ! {
        match self {
            ParseError::File(error) => {
                eprintln!("loggate: --config {error}");
                std::process::exit(2)
            }
            ParseError::Clap {
                error,
                from_file,
                path,
            } => {
                if !error.use_stderr() || from_file.is_empty() {
                    error.exit()
                }
                let _ = error.print();
                if let Some(path) = path {
                    eprintln!(
                        "note: set by --config {}: {}",
                        path.display(),
                        from_file.join(", ")
                    );
                }
                std::process::exit(error.exit_code())
            }
        }
    }
}

/// Parses the process's command line with its config file, or prints why
/// not and exits (as `clap::Parser::parse` does).
pub fn parse() -> Cli {
    parse_from(std::env::args_os()).unwrap_or_else(|error| error.exit())
}

/// Parses `args` (the program name first) with the config file that
/// `--config` or `LOGGATE_CONFIG` names, if any. For `config check`, fills
/// in the report of the effective settings.
pub fn parse_from<I, T>(args: I) -> Result<Cli, ParseError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let mut serve = ServeConfig::command();
    serve.build();

    // 1. Which subcommand, its --config, and what the command line and the
    // environment already set. Errors are left to the real parse below
    // (which meets the same ones, or finds them mended by the file).
    let pre = Cli::command()
        .ignore_errors(true)
        .try_get_matches_from(&args);
    let explicit: BTreeSet<String>;
    let mut config_path = None;
    match pre.as_ref().ok().and_then(settings_matches) {
        Some(matches) => {
            explicit = keys(&serve)
                .filter(|arg| is_explicit(matches.value_source(arg.get_id().as_str())))
                .map(|arg| arg.get_id().to_string())
                .collect();
            config_path = matches
                .try_get_one::<PathBuf>(CONFIG_ID)
                .ok()
                .flatten()
                .cloned()
                .map(|path| (path, matches.value_source(CONFIG_ID)));
        }
        None => explicit = BTreeSet::new(),
    }

    // 2. The file, every entry checked.
    let entries = match &config_path {
        Some((path, _)) => load(path, &serve).map_err(ParseError::File)?,
        None => Vec::new(),
    };

    // 3. The file's entries that nothing above them sets, as flags.
    let conflicts = conflict_pairs(&serve);
    let mut origins: BTreeMap<String, Origin> = BTreeMap::new();
    let mut from_file = Vec::new();
    for entry in &entries {
        if explicit.contains(&entry.id) {
            continue;
        }
        if let Some(winner) = conflicts
            .get(&entry.id)
            .and_then(|others| others.iter().find(|other| explicit.contains(*other)))
        {
            origins.insert(
                entry.id.clone(),
                Origin::GivenWayTo(long_of(&serve, winner)),
            );
            continue;
        }
        origins.insert(entry.id.clone(), Origin::File);
        from_file.push(entry.key.clone());
        for value in &entry.values {
            match entry.kind {
                Kind::Switch if value == "true" => args.push(format!("--{}", entry.key).into()),
                Kind::Switch => {}
                Kind::Single | Kind::Multiple => {
                    let mut flag = OsString::from(format!("--{}=", entry.key));
                    flag.push(value);
                    args.push(flag);
                }
            }
        }
    }

    let path = config_path.as_ref().map(|(path, _)| path.clone());
    let clap_error = |error: clap::Error| ParseError::Clap {
        error,
        from_file: from_file.clone(),
        path: path.clone(),
    };
    let mut command = Cli::command();
    let matches = command
        .try_get_matches_from_mut(&args)
        .map_err(clap_error)?;
    let mut cli = Cli::from_arg_matches(&matches)
        .map_err(|error| error.format(&mut command))
        .map_err(clap_error)?;

    if let Command::Config(config) = &mut cli.command {
        let ConfigCommand::Check(check) = &mut config.command;
        if let Some(matches) = settings_matches(&matches) {
            let config_origin = config_path
                .as_ref()
                .map(|(path, source)| (path.as_path(), *source));
            check.report = report(&serve, matches, &origins, config_origin);
        }
    }
    Ok(cli)
}

/// The matches of the subcommand that takes `serve`'s flags: `serve` or
/// `config check`.
fn settings_matches(matches: &ArgMatches) -> Option<&ArgMatches> {
    match matches.subcommand()? {
        ("serve", serve) => Some(serve),
        ("config", config) => match config.subcommand()? {
            ("check", check) => Some(check),
            _ => None,
        },
        _ => None,
    }
}

fn is_explicit(source: Option<ValueSource>) -> bool {
    matches!(
        source,
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

/// How a key takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A switch (`--allow-unauthenticated`): true or false.
    Switch,
    /// One value.
    Single,
    /// Repeatable (`--amqp-url`): a list, or one string split at the flag's
    /// delimiter as the flag and its variable are.
    Multiple,
}

fn kind(arg: &Arg) -> Option<Kind> {
    match arg.get_action() {
        ArgAction::SetTrue => Some(Kind::Switch),
        ArgAction::Set => Some(Kind::Single),
        ArgAction::Append => Some(Kind::Multiple),
        _ => None,
    }
}

/// The arguments a file may set: every long flag of `serve` that takes a
/// value or is a switch, but `--config` itself (and `--help`, `--version`).
fn keys(serve: &clap::Command) -> impl Iterator<Item = &Arg> {
    serve
        .get_arguments()
        .filter(|arg| arg.get_long().is_some() && arg.get_id() != CONFIG_ID && kind(arg).is_some())
}

/// Every key a config file may hold, in `--help` order.
pub fn key_names() -> Vec<String> {
    let mut serve = ServeConfig::command();
    serve.build();
    keys(&serve)
        .filter_map(|arg| arg.get_long().map(str::to_owned))
        .collect()
}

fn long_of(serve: &clap::Command, id: &str) -> String {
    serve
        .get_arguments()
        .find(|arg| arg.get_id() == id)
        .and_then(Arg::get_long)
        .unwrap_or(id)
        .to_owned()
}

/// For each argument, those it conflicts with, in both directions (clap
/// records a conflict on one side only).
fn conflict_pairs(serve: &clap::Command) -> BTreeMap<String, BTreeSet<String>> {
    let mut pairs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for arg in serve.get_arguments() {
        for other in serve.get_arg_conflicts_with(arg) {
            let (a, b) = (arg.get_id().to_string(), other.get_id().to_string());
            pairs.entry(a.clone()).or_default().insert(b.clone());
            pairs.entry(b).or_default().insert(a);
        }
    }
    pairs
}

/// One checked entry of the file.
#[derive(Debug)]
struct Entry {
    /// clap's id of the argument.
    id: String,
    /// The key, which is the long flag's name.
    key: String,
    kind: Kind,
    /// The values as the command line would carry them.
    values: Vec<String>,
}

/// Reads and checks the file at `path` against `serve`'s arguments.
fn load(path: &Path, serve: &clap::Command) -> Result<Vec<Entry>, FileError> {
    let text = read(path)?;
    let table: toml::Table = text.parse().map_err(|error: toml::de::Error| {
        let (line, column) = error
            .span()
            .map_or((1, 1), |span| line_and_column(&text, span.start));
        FileError::Toml {
            path: path.to_owned(),
            line,
            column,
            message: error.message().trim().to_owned(),
        }
    })?;
    let mut entries = Vec::with_capacity(table.len());
    for (key, value) in &table {
        let Some(arg) = keys(serve).find(|arg| arg.get_long() == Some(key.as_str())) else {
            if value.is_table() {
                return Err(FileError::BadValue {
                    path: path.to_owned(),
                    key: key.clone(),
                    reason: TABLE.to_owned(),
                });
            }
            return Err(FileError::UnknownKey {
                path: path.to_owned(),
                key: key.clone(),
                hint: hint(key, serve),
            });
        };
        let bad_value = |reason: String| FileError::BadValue {
            path: path.to_owned(),
            key: key.clone(),
            reason,
        };
        let kind = kind(arg).expect("keys() keeps only arguments of a known kind");
        let values = values_of(value, kind, arg).map_err(bad_value)?;
        for value in &values {
            check_value(arg, kind, value).map_err(bad_value)?;
        }
        entries.push(Entry {
            id: arg.get_id().to_string(),
            key: key.clone(),
            kind,
            values,
        });
    }
    Ok(entries)
}

/// The file's text: a regular file (a symlink to one is fine: Kubernetes
/// mounts ConfigMaps that way), at most [`MAX_FILE_BYTES`], UTF-8.
fn read(path: &Path) -> Result<String, FileError> {
    let read_error = |source| FileError::Read {
        path: path.to_owned(),
        source,
    };
    let metadata = std::fs::metadata(path).map_err(|source| {
        let dangling = source.kind() == std::io::ErrorKind::NotFound
            && std::fs::symlink_metadata(path).is_ok_and(|link| link.file_type().is_symlink());
        if dangling {
            FileError::DanglingSymlink(path.to_owned())
        } else {
            read_error(source)
        }
    })?;
    if metadata.is_dir() {
        return Err(FileError::Directory(path.to_owned()));
    }
    if !metadata.is_file() {
        return Err(FileError::NotAFile(path.to_owned()));
    }
    if metadata.len() > MAX_FILE_BYTES {
        return Err(FileError::TooLarge(path.to_owned()));
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    // Should the path turn into a FIFO between the check and the open, the
    // open must not wait for a writer.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.open(path).map_err(read_error)?;
    if !file.metadata().map_err(read_error)?.is_file() {
        return Err(FileError::NotAFile(path.to_owned()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(FileError::TooLarge(path.to_owned()));
    }
    String::from_utf8(bytes).map_err(|error| FileError::NotUtf8 {
        path: path.to_owned(),
        offset: error.utf8_error().valid_up_to(),
    })
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The value as command-line values, or why its TOML type cannot be one.
fn values_of(value: &toml::Value, kind: Kind, arg: &Arg) -> Result<Vec<String>, String> {
    match (value, kind) {
        (toml::Value::Array(items), Kind::Multiple) => {
            if items.is_empty() {
                return Err("an empty list: leave the key out for the default".to_owned());
            }
            items.iter().map(scalar).collect()
        }
        (toml::Value::Array(_), _) => Err("takes one value, not a list".to_owned()),
        (toml::Value::String(text), Kind::Multiple) => Ok(match arg.get_value_delimiter() {
            Some(delimiter) => text.split(delimiter).map(str::to_owned).collect(),
            None => vec![text.clone()],
        }),
        (value, _) => Ok(vec![scalar(value)?]),
    }
}

fn scalar(value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(text) => Ok(text.clone()),
        toml::Value::Integer(n) => Ok(n.to_string()),
        toml::Value::Float(x) => Ok(x.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        toml::Value::Datetime(_) => Err("a TOML date: write it as a string".to_owned()),
        toml::Value::Array(_) => Err("a list inside a list".to_owned()),
        toml::Value::Table(_) => Err(TABLE.to_owned()),
    }
}

/// Runs `value` through the flag's own value parser (alone, on a command of
/// its own, so no other flag, variable or rule takes part) and returns the
/// parser's message, as clap would print it for the flag.
fn check_value(arg: &Arg, kind: Kind, value: &str) -> Result<(), String> {
    let long = arg.get_long().unwrap_or_default().to_owned();
    let parser = match kind {
        Kind::Switch => clap::builder::ValueParser::bool(),
        Kind::Single | Kind::Multiple => arg.get_value_parser().clone(),
    };
    let mut probe = Arg::new(arg.get_id().clone())
        .long(long.clone())
        .action(ArgAction::Set)
        .value_parser(parser);
    if let Some(names) = arg.get_value_names() {
        probe = probe.value_names(names.iter().cloned());
    }
    clap::Command::new("loggate serve")
        .no_binary_name(true)
        .arg(probe)
        .try_get_matches_from([format!("--{long}={value}")])
        .map(drop)
        .map_err(|error| {
            let text = error.to_string();
            let first = text.lines().next().unwrap_or_default();
            first.strip_prefix("error: ").unwrap_or(first).to_owned()
        })
}

/// `; did you mean `max-inflight`?` for a key close to one, else empty.
fn hint(key: &str, serve: &clap::Command) -> String {
    if key == CONFIG_ID {
        return ": a config file cannot name another".to_owned();
    }
    let normal = key
        .trim_start_matches('-')
        .to_ascii_lowercase()
        .replace('_', "-");
    let normal = normal.strip_prefix("loggate-").unwrap_or(&normal);
    let best = keys(serve)
        .filter_map(Arg::get_long)
        .map(|long| (edit_distance(normal, long), long))
        .min();
    match best {
        Some((distance, long)) if distance <= 2.max(long.len() / 4) => {
            format!("; did you mean `{long}`?")
        }
        _ => " (the keys are `loggate serve`'s long flags, without `--`)".to_owned(),
    }
}

/// Levenshtein distance, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// Where a setting's value came from, when clap's `ValueSource` does not say.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    /// The config file.
    File,
    /// The file set it, but a flag or variable it conflicts with won.
    GivenWayTo(String),
}

/// `config check`'s output: every `serve` setting as a TOML line that
/// could go in a config file, with where its value came from. Values of
/// flags whose environment values `--help` hides (the AMQP URLs) have their
/// passwords replaced by `***`.
fn report(
    serve: &clap::Command,
    matches: &ArgMatches,
    origins: &BTreeMap<String, Origin>,
    config: Option<(&Path, Option<ValueSource>)>,
) -> String {
    let mut out = String::from(
        "# The settings `loggate serve` would run with, and where each comes from:\n\
         # flag, env (the variable), file (--config) or default.\n",
    );
    match config {
        Some((path, source)) => {
            let source = match source {
                Some(ValueSource::EnvVariable) => "env LOGGATE_CONFIG",
                _ => "flag",
            };
            out.push_str(&format!("# --config {} ({source})\n", path.display()));
        }
        None => out.push_str("# no --config file\n"),
    }
    for arg in keys(serve) {
        let id = arg.get_id().as_str();
        let key = arg.get_long().unwrap_or(id);
        let source = match (origins.get(id), matches.value_source(id)) {
            (Some(Origin::File), _) => "file".to_owned(),
            (_, Some(ValueSource::CommandLine)) => "flag".to_owned(),
            (_, Some(ValueSource::EnvVariable)) => match arg.get_env() {
                Some(name) => format!("env {}", name.to_string_lossy()),
                None => "env".to_owned(),
            },
            (Some(Origin::GivenWayTo(winner)), _) => {
                format!("default (the file's value gives way to --{winner})")
            }
            _ => "default".to_owned(),
        };
        let raw: Vec<String> = matches
            .get_raw(id)
            .map(|values| {
                values
                    .map(|value| value.to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let raw: Vec<String> = if arg.is_hide_env_values_set() {
            raw.iter()
                .map(|value| crate::broker::redact_url(value))
                .collect()
        } else {
            raw
        };
        let line = match (kind(arg), raw.as_slice()) {
            (_, []) => format!("# {key} is not set"),
            (Some(Kind::Multiple), values) => {
                let items: Vec<String> = values.iter().map(|value| toml_value(value)).collect();
                format!("{key} = [{}]", items.join(", "))
            }
            (_, [value, ..]) => format!("{key} = {}", toml_value(value)),
        };
        out.push_str(&format!("{line:<50} # {source}\n"));
    }
    out
}

/// `text` as TOML: a bare integer or boolean when that is exactly what it
/// says, else a quoted string.
fn toml_value(text: &str) -> String {
    let bare = text == "true"
        || text == "false"
        || text.parse::<i64>().is_ok_and(|n| n.to_string() == text);
    if bare {
        text.to_owned()
    } else {
        toml::Value::String(text.to_owned()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file with `text` in a directory of its own, removed on drop.
    struct TempFile {
        dir: PathBuf,
        path: PathBuf,
    }

    impl TempFile {
        fn new(text: impl AsRef<[u8]>) -> TempFile {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "loggate-config-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).expect("temp dir");
            let path = dir.join("loggate.toml");
            std::fs::write(&path, text).expect("write the file");
            TempFile { dir, path }
        }

        fn path(&self) -> &str {
            self.path.to_str().expect("a UTF-8 temp path")
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn serve(args: &[&str]) -> Result<ServeConfig, ParseError> {
        let cli = parse_from(["loggate", "serve"].iter().chain(args))?;
        match cli.command {
            Command::Serve(config) => Ok(*config),
            other => panic!("parsed as {other:?}"),
        }
    }

    fn file_error(args: &[&str]) -> String {
        match serve(args) {
            Err(ParseError::File(error)) => error.to_string(),
            Err(ParseError::Clap { error, .. }) => panic!("clap refused it: {error}"),
            Ok(config) => panic!("accepted: {config:?}"),
        }
    }

    fn check(args: &[&str]) -> String {
        let cli = parse_from(["loggate", "config", "check"].iter().chain(args))
            .unwrap_or_else(|_| panic!("config check {args:?} parses"));
        match cli.command {
            Command::Config(config) => {
                let ConfigCommand::Check(check) = config.command;
                check.report
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn every_long_flag_of_serve_is_a_key() {
        let keys = key_names();
        let mut serve = ServeConfig::command();
        serve.build();
        for arg in serve.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if ["help", "version", "config"].contains(&long) {
                assert!(!keys.iter().any(|key| key == long), "{long}");
            } else {
                assert!(keys.iter().any(|key| key == long), "--{long} has no key");
            }
        }
        assert!(keys.iter().any(|key| key == "max-inflight"));
    }

    #[test]
    fn the_file_sets_what_no_flag_sets() {
        let file = TempFile::new(
            "listen = \"127.0.0.2:0\"\nmax-inflight = 77\nexchange = \"from-file\"\n\
             allow-unauthenticated = true\namqp-url = [\"amqp://a/%2f\", \"amqp://b/%2f\"]\n",
        );
        let config = serve(&["--config", file.path(), "--exchange", "from-flag"]).expect("parses");
        assert_eq!(config.server.listen.to_string(), "127.0.0.2:0");
        assert_eq!(config.rabbitmq.max_inflight.get(), 77);
        assert_eq!(config.rabbitmq.exchange, "from-flag");
        assert!(config.security.allow_unauthenticated);
        assert_eq!(
            config.rabbitmq.broker.amqp_url,
            ["amqp://a/%2f", "amqp://b/%2f"]
        );
        // Untouched: the default.
        assert_eq!(config.limits.max_batch.get(), 1000);
    }

    #[test]
    fn a_comma_separated_string_is_a_list_as_in_the_flag() {
        let file = TempFile::new("amqp-url = \"amqp://a/%2f,amqp://b/%2f\"\n");
        let config = serve(&["--config", file.path()]).expect("parses");
        assert_eq!(
            config.rabbitmq.broker.amqp_url,
            ["amqp://a/%2f", "amqp://b/%2f"]
        );
    }

    #[test]
    fn a_flag_given_overrides_the_files_conflicting_key() {
        let file = TempFile::new("amqp-url = \"amqp://u:p@a/%2f\"\n");
        let config = serve(&["--config", file.path(), "--amqp-url-file", "/run/urls"])
            .expect("the flag wins over the file's conflicting key");
        assert!(config.rabbitmq.amqp_url_file.is_some());
        let report = check(&["--config", file.path(), "--amqp-url-file", "/run/urls"]);
        assert!(report.contains("gives way to --amqp-url-file"), "{report}");
    }

    #[test]
    fn the_files_keys_obey_requires_and_conflicts() {
        let half_tls = TempFile::new("tls-cert = \"cert.pem\"\n");
        match serve(&["--config", half_tls.path()]) {
            Err(ParseError::Clap {
                error, from_file, ..
            }) => {
                assert!(error.to_string().contains("--tls-key"), "{error}");
                assert_eq!(from_file, ["tls-cert"]);
            }
            other => panic!("tls-cert without tls-key: {other:?}"),
        }
        // Completed by a flag: fine.
        let config = serve(&["--config", half_tls.path(), "--tls-key", "key.pem"])
            .expect("the flag completes the file");
        assert!(config.security.tls_files().is_some());

        let both = TempFile::new("amqp-url = \"amqp://a/%2f\"\namqp-url-file = \"/run/urls\"\n");
        assert!(matches!(
            serve(&["--config", both.path()]),
            Err(ParseError::Clap { .. })
        ));
    }

    #[test]
    fn an_unknown_key_is_named_with_the_closest_flag() {
        let file = TempFile::new("max_inflight = 10\n");
        let error = file_error(&["--config", file.path()]);
        assert!(
            error.contains("unknown key `max_inflight`; did you mean `max-inflight`?"),
            "{error}"
        );
        let file = TempFile::new("max-inflite = 10\n");
        let error = file_error(&["--config", file.path()]);
        assert!(error.contains("did you mean `max-inflight`?"), "{error}");
        let file = TempFile::new("colour = \"blue\"\n");
        let error = file_error(&["--config", file.path()]);
        assert!(error.contains("unknown key `colour`"), "{error}");
        assert!(!error.contains("did you mean"), "{error}");
        let file = TempFile::new("config = \"other.toml\"\n");
        let error = file_error(&["--config", file.path()]);
        assert!(error.contains("cannot name another"), "{error}");
    }

    #[test]
    fn a_bad_value_is_refused_with_the_flags_own_message() {
        let file = TempFile::new("max-inflight = 0\n");
        let error = file_error(&["--config", file.path()]);
        assert!(error.contains("key `max-inflight`"), "{error}");
        assert!(error.contains("0 is not in 1.."), "{error}");

        for (text, says) in [
            ("publish-timeout = \"0s\"\n", "publish-timeout"),
            ("listen = \"nowhere\"\n", "invalid value 'nowhere'"),
            ("listen = [\"127.0.0.1:1\"]\n", "not a list"),
            ("amqp-url = []\n", "empty list"),
            ("allow-unauthenticated = \"yes\"\n", "allow-unauthenticated"),
            ("threads = 1979-05-27\n", "write it as a string"),
            ("[rabbitmq]\nexchange = \"x\"\n", "top level"),
        ] {
            let file = TempFile::new(text);
            let error = file_error(&["--config", file.path()]);
            assert!(error.contains(says), "{text}: {error}");
        }
    }

    #[test]
    fn a_bad_value_is_refused_even_when_a_flag_overrides_it() {
        let file = TempFile::new("max-inflight = 0\n");
        let error = file_error(&["--config", file.path(), "--max-inflight", "5"]);
        assert!(error.contains("max-inflight"), "{error}");
    }

    #[test]
    fn a_broken_file_gets_a_precise_error() {
        let not_toml = TempFile::new("listen = \n");
        let error = file_error(&["--config", not_toml.path()]);
        assert!(error.contains("line 1, column"), "{error}");

        let not_utf8 = TempFile::new(b"exchange = \"a\xffb\"\n");
        let error = file_error(&["--config", not_utf8.path()]);
        assert!(error.contains("not UTF-8"), "{error}");
        assert!(error.contains("offset 13"), "{error}");

        let huge = TempFile::new(vec![b'#'; MAX_FILE_BYTES as usize + 1]);
        let error = file_error(&["--config", huge.path()]);
        assert!(error.contains("larger than"), "{error}");

        let directory = TempFile::new("");
        let dir = directory.dir.to_str().expect("UTF-8");
        let error = file_error(&["--config", dir]);
        assert!(error.contains("is a directory"), "{error}");

        let missing = directory.dir.join("missing.toml");
        let error = file_error(&["--config", missing.to_str().expect("UTF-8")]);
        assert!(error.contains("cannot read"), "{error}");

        let deep = TempFile::new(format!("amqp-url = {}", "[".repeat(100_000)));
        let error = file_error(&["--config", deep.path()]);
        assert!(error.contains("line 1"), "{error}");
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_followed_and_dangling_ones_named() {
        let target = TempFile::new("exchange = \"via-link\"\n");
        let link = target.dir.join("link.toml");
        std::os::unix::fs::symlink(&target.path, &link).expect("symlink");
        let config = serve(&["--config", link.to_str().expect("UTF-8")]).expect("followed");
        assert_eq!(config.rabbitmq.exchange, "via-link");

        let dangling = target.dir.join("dangling.toml");
        std::os::unix::fs::symlink(target.dir.join("gone"), &dangling).expect("symlink");
        let error = file_error(&["--config", dangling.to_str().expect("UTF-8")]);
        assert!(
            error.contains("symlink to a file that does not exist"),
            "{error}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let dir = TempFile::new("");
        let fifo = dir.dir.join("fifo.toml");
        let c_path = std::ffi::CString::new(fifo.to_str().expect("UTF-8")).expect("no NUL");
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let error = file_error(&["--config", fifo.to_str().expect("UTF-8")]);
        assert!(error.contains("not a regular file"), "{error}");
    }

    #[test]
    fn the_report_says_where_each_value_came_from_and_hides_passwords() {
        let file =
            TempFile::new("max-inflight = 77\namqp-url = \"amqp://user:s3cret@rabbit:5672/%2f\"\n");
        let report = check(&["--config", file.path(), "--exchange", "x"]);
        assert!(!report.contains("s3cret"), "{report}");
        let line = |key: &str| {
            report
                .lines()
                .find(|line| {
                    line.starts_with(&format!("{key} = ")) || line.starts_with(&format!("# {key} "))
                })
                .unwrap_or_else(|| panic!("no {key} in {report}"))
                .to_owned()
        };
        assert!(
            line("amqp-url").contains("[\"amqp://***@rabbit:5672/%2f\"]"),
            "{report}"
        );
        assert!(
            line("max-inflight").starts_with("max-inflight = 77 "),
            "{report}"
        );
        assert!(line("max-inflight").ends_with("# file"), "{report}");
        assert!(line("exchange").ends_with("# flag"), "{report}");
        assert!(
            line("max-batch").starts_with("max-batch = 1000 "),
            "{report}"
        );
        assert!(line("max-batch").ends_with("# default"), "{report}");
        assert!(
            line("instance").starts_with("# instance is not set"),
            "{report}"
        );
        for key in key_names() {
            line(&key);
        }
    }

    #[test]
    fn the_report_is_a_valid_config_file() {
        let report = check(&[]);
        let file = TempFile::new(&report);
        serve(&["--config", file.path()]).expect("config check's output parses as a file");
    }
}
