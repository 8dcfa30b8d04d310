//! RFC 3339 UTC timestamps for the JSON body, written by hand: the body is
//! encoded once per record on the hot path, and this is about five times
//! cheaper than a general formatter. Same output as `time`'s `Rfc3339`:
//! `2023-11-14T22:13:20.123456789Z`, trailing zeros of the fraction dropped,
//! no fraction at all on a whole second.

use serde::Serializer;
use time::OffsetDateTime;

/// Longest form: `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
const MAX_LEN: usize = 30;

/// Formats `t` (taken as UTC) into `buf`, returning the used part.
pub fn format(t: OffsetDateTime, buf: &mut [u8; MAX_LEN]) -> &str {
    let len = format_bytes(t, buf);
    std::str::from_utf8(&buf[..len]).expect("only ASCII digits and separators")
}

/// The body's form of the last time written in one place, kept because the
/// records of one call mostly share it: formatting was a twentieth of a packed
/// record's cost.
#[derive(Debug, Default)]
pub(super) struct TimeText {
    time: Option<OffsetDateTime>,
    text: [u8; MAX_LEN],
    len: usize,
}

impl TimeText {
    /// Appends `t` (taken as UTC) to `out`: the body's form, without the
    /// UTF-8 check that [`format`] makes for a `&str`.
    pub(super) fn write(&mut self, t: OffsetDateTime, out: &mut Vec<u8>) {
        if self.time != Some(t) {
            self.len = format_bytes(t, &mut self.text);
            self.time = Some(t);
        }
        out.extend_from_slice(&self.text[..self.len]);
    }
}

/// Writes `t` into `buf`, returning the length used.
fn format_bytes(t: OffsetDateTime, buf: &mut [u8; MAX_LEN]) -> usize {
    let t = t.to_offset(time::UtcOffset::UTC);
    // One calendar conversion for the three date fields (`year()`,
    // `month()` and `day()` each convert on their own).
    let (year, month, day) = t.to_calendar_date();
    let (hour, minute, second, nanos) = t.to_hms_nano();
    // Validation keeps years within 1970..=9999, so four digits always fit.
    let year = u32::try_from(year).unwrap_or(0).min(9999);
    put(&mut buf[0..4], year, 4);
    buf[4] = b'-';
    put(&mut buf[5..7], u32::from(u8::from(month)), 2);
    buf[7] = b'-';
    put(&mut buf[8..10], u32::from(day), 2);
    buf[10] = b'T';
    put(&mut buf[11..13], u32::from(hour), 2);
    buf[13] = b':';
    put(&mut buf[14..16], u32::from(minute), 2);
    buf[16] = b':';
    put(&mut buf[17..19], u32::from(second), 2);
    let mut len = 19;
    if nanos != 0 {
        buf[19] = b'.';
        put(&mut buf[20..29], nanos, 9);
        len = 29;
        while buf[len - 1] == b'0' {
            len -= 1;
        }
    }
    buf[len] = b'Z';
    len + 1
}

/// Writes `value` as exactly `width` decimal digits, zero-padded.
fn put(out: &mut [u8], mut value: u32, width: usize) {
    for slot in out[..width].iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// `serialize_with` for `OffsetDateTime` fields of the body.
pub fn serialize<S: Serializer>(t: &OffsetDateTime, serializer: S) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; MAX_LEN];
    serializer.serialize_str(format(*t, &mut buf))
}

#[cfg(test)]
mod tests {
    use time::format_description::well_known::Rfc3339;

    use super::*;

    #[test]
    fn matches_the_general_formatter() {
        for nanos in [
            0i128,
            1,
            123_456_789,
            120_000_000,
            1_700_000_000_000_000_000,
            1_700_000_000_123_456_789,
            1_700_000_000_100_000_000,
            253_402_300_799_999_999_999, // 9999-12-31T23:59:59.999999999Z
        ] {
            let t = OffsetDateTime::from_unix_timestamp_nanos(nanos).expect("valid");
            let mut buf = [0u8; MAX_LEN];
            assert_eq!(
                format(t, &mut buf),
                t.format(&Rfc3339).expect("formats"),
                "{nanos}"
            );
        }
    }

    #[test]
    fn every_day_and_time_of_day_matches_the_general_formatter() {
        // Every day from 1970 to 2100 (leap years, centuries, 2000), at a
        // time of day that moves through the hours, minutes and seconds,
        // then the last day the validation allows.
        let mut seconds = 0i64;
        let mut nanos = 0i64;
        while seconds < 4_102_444_800 {
            let t = OffsetDateTime::from_unix_timestamp_nanos(
                i128::from(seconds) * 1_000_000_000 + i128::from(nanos),
            )
            .expect("valid");
            let mut buf = [0u8; MAX_LEN];
            assert_eq!(format(t, &mut buf), t.format(&Rfc3339).expect("formats"));
            seconds += 86_400 + 3_661;
            nanos = (nanos + 123_457_000) % 1_000_000_000;
        }
        let last = OffsetDateTime::from_unix_timestamp(253_402_300_799).expect("valid");
        let mut buf = [0u8; MAX_LEN];
        assert_eq!(format(last, &mut buf), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn converts_other_offsets_to_utc() {
        let t = OffsetDateTime::from_unix_timestamp(0)
            .expect("valid")
            .to_offset(time::UtcOffset::from_hms(2, 0, 0).expect("valid"));
        let mut buf = [0u8; MAX_LEN];
        assert_eq!(format(t, &mut buf), "1970-01-01T00:00:00Z");
    }
}
