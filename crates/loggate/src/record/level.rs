//! Severity levels and their lower-case words.

use serde::{Deserialize, Serialize};

use crate::proto::v1 as pb;

/// A record's severity, lowest first, so `>=` means "at least as severe".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl Level {
    /// Every level, lowest first.
    pub const ALL: [Level; 6] = [
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Warn,
        Level::Error,
        Level::Fatal,
    ];

    /// The word used in routing keys, headers and the JSON body.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Fatal => "fatal",
        }
    }

    /// Parses the lower-case word (as the CLI and the JSON body spell it).
    pub fn from_word(word: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|level| level.as_str() == word)
    }

    /// Reads the wire enum. `None` for UNSPECIFIED *and* for numbers outside the
    /// enum; callers tell them apart with [`pb::Level::try_from`] when it matters.
    pub fn from_wire(level: pb::Level) -> Option<Level> {
        match level {
            pb::Level::Unspecified => None,
            pb::Level::Trace => Some(Level::Trace),
            pb::Level::Debug => Some(Level::Debug),
            pb::Level::Info => Some(Level::Info),
            pb::Level::Warn => Some(Level::Warn),
            pb::Level::Error => Some(Level::Error),
            pb::Level::Fatal => Some(Level::Fatal),
        }
    }

    /// The wire enum for this level.
    pub fn to_wire(self) -> pb::Level {
        match self {
            Level::Trace => pb::Level::Trace,
            Level::Debug => pb::Level::Debug,
            Level::Info => pb::Level::Info,
            Level::Warn => pb::Level::Warn,
            Level::Error => pb::Level::Error,
            Level::Fatal => pb::Level::Fatal,
        }
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_through_the_wire_enum() {
        for level in Level::ALL {
            assert_eq!(Level::from_word(level.as_str()), Some(level));
            assert_eq!(Level::from_wire(level.to_wire()), Some(level));
        }
        assert_eq!(Level::from_word("WARN"), None);
        assert_eq!(Level::from_wire(pb::Level::Unspecified), None);
    }

    #[test]
    fn levels_order_by_severity() {
        assert!(Level::Trace < Level::Debug && Level::Error < Level::Fatal);
    }
}
