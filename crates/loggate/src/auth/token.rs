//! Bearer tokens: how they are made, and the SHA-256 form the auth file
//! keeps instead of the token itself.

use sha2::{Digest as _, Sha256};

use crate::record::hex;

/// Random bytes in a token: 256 bits, far past guessing.
const TOKEN_BYTES: usize = 32;
/// Marks a string as a loggate token (in logs, in secret scanners).
const TOKEN_PREFIX: &str = "lgt_";

/// The SHA-256 of a bearer token.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenHash({})", self.to_hex())
    }
}

impl TokenHash {
    /// The hash of a presented token.
    pub fn of(token: &str) -> TokenHash {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }

    /// 64 hex digits, either case.
    pub fn from_hex(hex: &str) -> Result<TokenHash, String> {
        let hex = hex.trim();
        if hex.len() != 64 {
            return Err(format!(
                "expected 64 hex digits (a SHA-256), got {} characters",
                hex.len()
            ));
        }
        let mut bytes = [0u8; 32];
        for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
            let text = std::str::from_utf8(pair).map_err(|_| "not hex".to_owned())?;
            bytes[i] = u8::from_str_radix(text, 16).map_err(|_| format!("{text:?} is not hex"))?;
        }
        Ok(TokenHash(bytes))
    }

    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Compares without an early exit, so the time taken does not tell how
    /// many leading bytes matched.
    pub fn constant_time_eq(&self, other: &TokenHash) -> bool {
        let difference = self
            .0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(difference) == 0
    }
}

/// A fresh token: `lgt_` and 64 hex digits from the OS's random source.
pub fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes)?;
    Ok(format!("{TOKEN_PREFIX}{}", hex(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_sha256_in_hex() {
        assert_eq!(
            TokenHash::of("test").to_hex(),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
        let upper = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08";
        assert_eq!(TokenHash::from_hex(upper), Ok(TokenHash::of("test")));
        assert!(TokenHash::from_hex("9f86").is_err());
        assert!(TokenHash::from_hex(&"zz".repeat(32)).is_err());
        assert!(TokenHash::from_hex(&"é".repeat(32)).is_err());
    }

    #[test]
    fn tokens_are_fresh_and_long() {
        let (a, b) = (new_token().expect("random"), new_token().expect("random"));
        assert_ne!(a, b);
        assert!(a.starts_with("lgt_"));
        assert_eq!(a.len(), 4 + 64);
        assert!(TokenHash::of(&a).constant_time_eq(&TokenHash::of(&a)));
        assert!(!TokenHash::of(&a).constant_time_eq(&TokenHash::of(&b)));
    }
}
