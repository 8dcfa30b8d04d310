//! The `--auth-file`: principals, their credentials and scopes, as TOML.
//!
//! ```toml
//! [[principal]]
//! name = "checkout-prod"
//! token_sha256 = "9f86d0…"          # SHA-256 of the bearer token, hex
//! log = ["checkout", "checkout-*"]  # services it may write as
//! tail = ["checkout", "payments"]   # services it may read
//!
//! [[principal]]
//! name = "platform-oncall"
//! cert_subject_cn = "oncall.platform" # an mTLS client certificate's CN or a SAN
//! tail = ["*"]
//! ```
//!
//! Parsing is strict (unknown keys, duplicate names or credentials, bad
//! hashes and bad globs are errors naming the principal), because a typo in
//! an access file must not quietly grant or deny.

use std::collections::HashSet;

use serde::Deserialize;

use super::token::TokenHash;
use super::Unauthenticated;
use crate::record::Scope;

/// Longest principal name: it travels in every record's body and headers.
const MAX_NAME_CHARS: usize = 128;

/// One caller the gateway knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    /// SHA-256 of its bearer token, when it has one.
    pub token: Option<TokenHash>,
    /// The CN or a SAN its client certificate must carry, when it uses mTLS.
    pub cert_name: Option<String>,
    /// Services it may write records as.
    pub log: Scope,
    /// Services whose records it may read.
    pub tail: Scope,
}

/// Every principal of one auth file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Principals(pub Vec<Principal>);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileForm {
    #[serde(default)]
    principal: Vec<PrincipalForm>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalForm {
    name: String,
    token_sha256: Option<String>,
    cert_subject_cn: Option<String>,
    #[serde(default)]
    log: Vec<String>,
    #[serde(default)]
    tail: Vec<String>,
}

impl Principals {
    /// Parses and checks an auth file's text.
    pub fn parse(text: &str) -> Result<Principals, String> {
        let form: FileForm = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        let mut names = HashSet::new();
        let mut tokens = HashSet::new();
        let mut cert_names = HashSet::new();
        let mut principals = Vec::with_capacity(form.principal.len());
        for (i, entry) in form.principal.into_iter().enumerate() {
            let at = |what: String| format!("principal[{i}] ({:?}): {what}", entry.name);
            check_name(&entry.name).map_err(|e| at(e.to_owned()))?;
            if !names.insert(entry.name.clone()) {
                return Err(at("the name is used twice".to_owned()));
            }
            let token = entry
                .token_sha256
                .as_deref()
                .map(TokenHash::from_hex)
                .transpose()
                .map_err(|e| at(format!("token_sha256: {e}")))?;
            if let Some(token) = &token {
                if !tokens.insert(token.clone()) {
                    return Err(at("token_sha256 is used by another principal".to_owned()));
                }
            }
            let cert_name = entry.cert_subject_cn.clone();
            if let Some(cn) = &cert_name {
                if cn.is_empty() || cn.chars().any(char::is_control) {
                    return Err(at("cert_subject_cn must be a non-empty name".to_owned()));
                }
                if !cert_names.insert(cn.clone()) {
                    return Err(at("cert_subject_cn is used by another principal".to_owned()));
                }
            }
            if token.is_none() && cert_name.is_none() {
                return Err(at(
                    "needs token_sha256 or cert_subject_cn: it could never authenticate".to_owned(),
                ));
            }
            let log = Scope::parse(&entry.log).map_err(|e| at(format!("log: {e}")))?;
            let tail = Scope::parse(&entry.tail).map_err(|e| at(format!("tail: {e}")))?;
            principals.push(Principal {
                name: entry.name,
                token,
                cert_name,
                log,
                tail,
            });
        }
        Ok(Principals(principals))
    }

    /// The principal whose token hashes to `presented`. Every principal is
    /// compared, each in constant time, so timing tells nothing about which
    /// hash (or how much of one) matched.
    pub fn by_token(&self, presented: &TokenHash) -> Option<&Principal> {
        let mut found = None;
        for principal in &self.0 {
            if let Some(token) = &principal.token {
                if token.constant_time_eq(presented) && found.is_none() {
                    found = Some(principal);
                }
            }
        }
        found
    }

    /// The principal whose certificate name is one of `names` (the
    /// certificate's subject CN and SANs). A certificate whose names match
    /// two principals names neither: which one it meant is not ours to guess.
    pub fn by_cert_names(&self, names: &[String]) -> Result<&Principal, Unauthenticated> {
        let mut matching = self.0.iter().filter(|principal| {
            principal
                .cert_name
                .as_ref()
                .is_some_and(|wanted| names.iter().any(|name| name == wanted))
        });
        match (matching.next(), matching.next()) {
            (Some(principal), None) => Ok(principal),
            (Some(_), Some(_)) => Err(Unauthenticated::AmbiguousCertificate),
            (None, _) => Err(Unauthenticated::UnknownCertificate),
        }
    }
}

/// A principal's name is printed and sent as an AMQP header: a short,
/// plain word.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err("name must be 1..128 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'))
    {
        return Err("name may only contain letters, digits, '_', '-', '.' and '@'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn the_documented_shape_parses() {
        let text = format!(
            r#"
            [[principal]]
            name = "checkout-prod"
            token_sha256 = "{TEST_SHA}"
            log = ["checkout", "checkout-*"]
            tail = ["checkout", "payments"]

            [[principal]]
            name = "platform-oncall"
            cert_subject_cn = "oncall.platform"
            log = []
            tail = ["*"]
            "#
        );
        let principals = Principals::parse(&text).expect("valid file");
        assert_eq!(principals.0.len(), 2);
        let checkout = principals
            .by_token(&TokenHash::of("test"))
            .expect("the token of sha256(test)");
        assert_eq!(checkout.name, "checkout-prod");
        assert!(checkout.log.allows("checkout-eu"));
        assert!(!checkout.log.allows("payments"));
        assert!(principals.by_token(&TokenHash::of("tes")).is_none());
        let oncall = principals
            .by_cert_names(&["x".into(), "oncall.platform".into()])
            .expect("by SAN or CN");
        assert_eq!(
            Principals::parse(&format!(
                "{text}\n[[principal]]\nname = \"other\"\ncert_subject_cn = \"x\"\n"
            ))
            .expect("valid")
            .by_cert_names(&["x".into(), "oncall.platform".into()])
            .err(),
            Some(Unauthenticated::AmbiguousCertificate),
            "a certificate naming two principals names neither"
        );
        assert_eq!(oncall.name, "platform-oncall");
        assert!(oncall.tail.is_everything());
        assert!(!oncall.log.allows("anything"));
    }

    #[test]
    fn mistakes_are_errors_that_name_the_principal() {
        let cases = [
            ("[[principal]]\nname = \"a\"\ntoken_sha256 = \"abc\"", "token_sha256"),
            ("[[principal]]\nname = \"a\"", "could never authenticate"),
            ("[[principal]]\nname = \"a\"\ncert_subject_cn = \"x\"\ntial = []", "unknown field"),
            ("[[principal]]\nname = \"a b\"\ncert_subject_cn = \"x\"", "name may only"),
            ("[[principal]]\nname = \"a\"\ncert_subject_cn = \"x\"\nlog = [\"a.b\"]", "log:"),
            (
                "[[principal]]\nname = \"a\"\ncert_subject_cn = \"x\"\n[[principal]]\nname = \"a\"\ncert_subject_cn = \"y\"",
                "used twice",
            ),
            (
                "[[principal]]\nname = \"a\"\ncert_subject_cn = \"x\"\n[[principal]]\nname = \"b\"\ncert_subject_cn = \"x\"",
                "another principal",
            ),
            ("principal = 3", "invalid type"),
        ];
        for (text, expected) in cases {
            let error = Principals::parse(text).expect_err(text);
            assert!(error.contains(expected), "{text:?} gave {error:?}");
        }
    }

    #[test]
    fn an_empty_file_has_no_principals() {
        assert_eq!(Principals::parse("").expect("valid"), Principals::default());
    }
}
