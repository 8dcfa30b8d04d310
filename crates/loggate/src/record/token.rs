//! Resume tokens: where a follower was, opaque to clients.
//!
//! A token names the history queue, the stream offset of the message that
//! carried the record, and the record's index within that message (packed
//! messages hold several). It is the same on every gateway reading that queue,
//! so a follower can resume on any of them, across restarts.

use super::validate::Invalid;

const VERSION: &str = "v1";

/// A position just *at* one record: resuming continues after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeToken {
    pub queue: String,
    pub offset: i64,
    /// The record's index within its message (0 when unpacked).
    pub index: u32,
}

impl ResumeToken {
    /// The opaque text form: URL-safe, so it survives a shell and a query string.
    pub fn encode(&self) -> String {
        let plain = format!("{VERSION}:{}:{}:{}", self.offset, self.index, self.queue);
        hex(plain.as_bytes())
    }

    pub fn decode(token: &str) -> Result<ResumeToken, Invalid> {
        let invalid = || Invalid::new("resume_token", "is not a token this gateway issued");
        let plain = unhex(token).ok_or_else(invalid)?;
        let plain = String::from_utf8(plain).map_err(|_| invalid())?;
        let mut parts = plain.splitn(4, ':');
        let (Some(VERSION), Some(offset), Some(index), Some(queue)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        let offset = offset
            .parse::<i64>()
            .ok()
            .filter(|o| *o >= 0)
            .ok_or_else(invalid)?;
        let index = index.parse::<u32>().map_err(|_| invalid())?;
        if queue.is_empty() {
            return Err(invalid());
        }
        Ok(ResumeToken {
            queue: queue.to_owned(),
            offset,
            index,
        })
    }
}

/// Lower-case hex, two digits a byte (also the auth module's token form).
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 1024 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let token = ResumeToken {
            queue: "loggate.history:with:colons".into(),
            offset: 123_456,
            index: 7,
        };
        let text = token.encode();
        assert!(text.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(ResumeToken::decode(&text), Ok(token));
    }

    #[test]
    fn refuses_what_it_did_not_issue() {
        for bad in [
            "",
            "zz",
            "abc",
            &hex(b"v2:1:0:q"),
            &hex(b"v1:-1:0:q"),
            &hex(b"v1:1:0:"),
            &hex(b"v1:x:0:q"),
        ] {
            let err = ResumeToken::decode(bad).expect_err(bad);
            assert_eq!(err.field, "resume_token");
        }
    }
}
