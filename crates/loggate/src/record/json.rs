//! JSON strings written by hand for the body: byte for byte what serde_json
//! writes (the contract was serde_json's output before this), at a fraction of
//! its cost on the common case, text with nothing to escape, which is copied
//! eight bytes at a time after a word-wide check.

/// What serde_json writes for each byte that needs escaping: a short escape's
/// letter, `u` for `\u00XX`, or 0 for a byte copied as it is (every byte of
/// 0x20 and above but `"` and `\`, including UTF-8's multi-byte sequences).
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `s` as a quoted JSON string.
pub(super) fn string(buf: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    buf.reserve(bytes.len() + 2);
    buf.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Whole words with nothing to escape are skipped in one step.
        if let Some(word) = bytes.get(i..i + 8) {
            let word = u64::from_le_bytes(word.try_into().expect("eight bytes"));
            if !needs_escape(word) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        let escape = ESCAPE[usize::from(b)];
        if escape != 0 {
            buf.extend_from_slice(&bytes[start..i]);
            if escape == b'u' {
                buf.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xf)],
                ]);
            } else {
                buf.extend_from_slice(&[b'\\', escape]);
            }
            start = i + 1;
        }
        i += 1;
    }
    buf.extend_from_slice(&bytes[start..]);
    buf.push(b'"');
}

/// Whether any byte of `word` is below 0x20, `"` or `\` (may say yes for a
/// word with none; never no for a word with one): the classic SWAR tests for
/// a zero byte, on the word, on it xor `"` and xor `\`.
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGHS;
    below(word, 0x20)
        | below(word ^ (ONES * u64::from(b'"')), 1)
        | below(word ^ (ONES * u64::from(b'\\')), 1)
        != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours(s: &str) -> String {
        let mut buf = Vec::new();
        string(&mut buf, s);
        String::from_utf8(buf).expect("UTF-8 in, UTF-8 out")
    }

    #[test]
    fn writes_what_serde_json_writes() {
        let mut cases: Vec<String> = vec![
            String::new(),
            "plain ascii text longer than one word".into(),
            "é ✓ 😀 mixed with \"quotes\" and \\ back\\slashes".into(),
            "\u{7f}\u{80}\u{ff}\u{2028}".into(),
        ];
        // Every ASCII byte, alone and at every position of a word.
        for b in 0u8..0x80 {
            let c = char::from(b);
            cases.push(c.to_string());
            for at in 0..9 {
                let mut s = "x".repeat(at);
                s.push(c);
                s.push_str("yyyyyyyyy");
                cases.push(s);
            }
        }
        for case in &cases {
            assert_eq!(
                ours(case),
                serde_json::to_string(case).expect("a string serialises"),
                "{case:?}"
            );
        }
    }

    #[test]
    fn the_word_test_misses_no_byte_that_needs_escaping() {
        for b in 0u8..=255 {
            for at in 0..8 {
                let mut word = [b'a'; 8];
                word[at] = b;
                let flagged = needs_escape(u64::from_le_bytes(word));
                if ESCAPE[usize::from(b)] != 0 {
                    assert!(flagged, "byte {b:#04x} at {at}");
                }
            }
        }
    }
}
