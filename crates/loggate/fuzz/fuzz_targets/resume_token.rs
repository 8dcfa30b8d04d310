//! Resume tokens arrive from clients (`TailRequest.resume_token`): any text.
//! Decoding must never panic, and the position a token decodes to must
//! survive being issued again (`encode`, then `decode`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use loggate::record::ResumeToken;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(token) = ResumeToken::decode(text) {
        assert!(token.offset >= 0);
        assert!(!token.queue.is_empty());
        let again = ResumeToken::decode(&token.encode()).expect("an issued token decodes");
        assert_eq!(again, token);
    }
});
