//! JSON strings written by hand for the body: byte for byte what serde_json
//! writes (the contract was serde_json's output before this), at a fraction of
//! its cost on the common case, text with nothing to escape, which is
//! skipped sixteen bytes at a time after a check the compiler vectorises.

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
        // Whole blocks with nothing to escape are skipped in one step (the
        // last one padded with a byte that needs none).
        let block = match bytes.get(i..i + BLOCK) {
            Some(block) => block.try_into().expect("a whole block"),
            None => {
                let mut padded = [b' '; BLOCK];
                padded[..bytes.len() - i].copy_from_slice(&bytes[i..]);
                padded
            }
        };
        if !needs_escape(&block) {
            i += BLOCK;
            continue;
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

/// Bytes checked at once: one SSE2 register.
const BLOCK: usize = 16;

/// Whether any byte of `block` is below 0x20, `"` or `\`. Written without an
/// early exit, so that it compiles to a few vector instructions.
fn needs_escape(block: &[u8; BLOCK]) -> bool {
    block.iter().fold(false, |any, &b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    })
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
            for at in 0..=BLOCK {
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
    fn the_block_test_flags_exactly_the_bytes_that_need_escaping() {
        for b in 0u8..=255 {
            for at in 0..BLOCK {
                let mut block = [b'a'; BLOCK];
                block[at] = b;
                assert_eq!(
                    needs_escape(&block),
                    ESCAPE[usize::from(b)] != 0,
                    "byte {b:#04x} at {at}"
                );
            }
        }
    }
}
