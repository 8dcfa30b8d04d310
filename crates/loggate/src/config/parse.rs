//! The value parsers behind the flags: each checks its range or form once, at
//! parse time, so the settings built from the flags cannot be out of range.

use std::{num::NonZeroUsize, time::Duration};

use clap::builder::TypedValueParser;

use crate::record::Level;

/// A count of at least one, as `NonZeroUsize`: `range` checks the bounds
/// (and words clap's error message); this only changes the type.
pub(super) fn count<T>(
    range: impl TypedValueParser<Value = T>,
) -> impl TypedValueParser<Value = NonZeroUsize>
where
    T: TryInto<usize> + Clone + Send + Sync + 'static,
{
    range.try_map(|n: T| {
        n.try_into()
            .ok()
            .and_then(NonZeroUsize::new)
            .ok_or("must be at least 1 and fit in memory")
    })
}

/// A byte size (see [`byte_size`]) that fits in memory, for in-memory bounds.
pub(super) fn memory_size(size: &str) -> Result<usize, String> {
    usize::try_from(byte_size(size)?).map_err(|_| "too large for this machine".to_owned())
}

/// A level word, in any case.
pub(super) fn level(word: &str) -> Result<Level, String> {
    Level::from_word(&word.to_ascii_lowercase())
        .ok_or_else(|| "expected trace, debug, info, warn, error or fatal".to_owned())
}

/// A duration greater than zero (a period or a timeout that can elapse).
pub(super) fn positive_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration.is_zero() {
        return Err("must be more than 0".to_owned());
    }
    Ok(duration)
}

/// An RFC 3339 time.
pub(super) fn rfc3339(text: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("expected an RFC 3339 time such as 2026-11-26T02:00:00Z: {e}"))
}

/// `KEY=VALUE`, the key not empty; the value may hold `=`.
pub(super) fn key_value(pair: &str) -> Result<(String, String), String> {
    match pair.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err("expected KEY=VALUE with a non-empty key".to_owned()),
    }
}

/// Exchange and queue names are AMQP short strings.
pub(super) fn amqp_name(name: &str) -> Result<String, String> {
    if name.is_empty() || name.len() > 255 {
        return Err("must be 1..255 bytes".to_owned());
    }
    if name.starts_with("amq.") {
        return Err("names starting with \"amq.\" are reserved by RabbitMQ".to_owned());
    }
    Ok(name.to_owned())
}

/// RabbitMQ's x-max-age: a positive number followed by Y, M, D, h, m or s.
pub(super) fn max_age(age: &str) -> Result<String, String> {
    let split = age.len().saturating_sub(1);
    let (number, unit) = age.split_at(split);
    let valid = matches!(unit, "Y" | "M" | "D" | "h" | "m" | "s")
        && !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
        && number.parse::<u64>().is_ok_and(|n| n > 0);
    if valid {
        Ok(age.to_owned())
    } else {
        Err("expected a number and a unit Y, M, D, h, m or s, such as 7D or 12h".to_owned())
    }
}

/// `1GB`, `500MB`, `64KiB`, `2GiB` or a plain number of bytes.
pub(super) fn byte_size(size: &str) -> Result<u64, String> {
    let size = size.trim();
    let digits = size.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = size.split_at(digits);
    let number: u64 = number.parse().map_err(|_| {
        "expected a number of bytes, optionally with a unit (KB, MB, GB, KiB, MiB, GiB)".to_owned()
    })?;
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        other => {
            return Err(format!(
                "unknown unit {other:?}; use KB, MB, GB, KiB, MiB or GiB"
            ))
        }
    };
    number
        .checked_mul(multiplier)
        .filter(|&bytes| bytes > 0)
        .ok_or_else(|| "must be more than 0 and fit in 64 bits".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ages_are_checked() {
        assert_eq!(byte_size("500MB"), Ok(500_000_000));
        assert_eq!(byte_size("2GiB"), Ok(2 << 30));
        assert_eq!(byte_size("12345"), Ok(12345));
        assert!(byte_size("lots").is_err());
        assert!(byte_size("0").is_err());
        assert!(byte_size("1PB").is_err());
        assert_eq!(max_age("7D"), Ok("7D".to_owned()));
        for bad in ["", "D", "7", "7d", "0h", "-1h", "1.5h"] {
            assert!(max_age(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn attributes_need_a_key() {
        assert_eq!(key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(key_value("a="), Ok(("a".into(), String::new())));
        assert!(key_value("=b").is_err());
        assert!(key_value("ab").is_err());
    }
}
