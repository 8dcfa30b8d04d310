//! Service scopes: sets of service names as globs where `*` stands for any
//! run of characters (`checkout`, `checkout-*`, `*`). A principal's `log` and
//! `tail` permissions are scopes, and a Tail filter can be limited to one.

use std::fmt;

/// One glob pattern over service names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    /// A pattern of service-name characters and `*`; anything else is an
    /// error, so a typo cannot silently match nothing (or everything).
    pub fn parse(pattern: &str) -> Result<Glob, String> {
        if pattern.is_empty() {
            return Err("an empty pattern matches no service".to_owned());
        }
        if let Some(bad) = pattern
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '*')))
        {
            return Err(format!(
                "{pattern:?}: {bad:?} cannot appear in a service name (letters, digits, '_', '-', and '*' as a wildcard)"
            ));
        }
        Ok(Glob(pattern.to_owned()))
    }

    /// Whether `service` matches: `*` matches any run of characters,
    /// including none. Linear in the lengths (the classic two-pointer
    /// backtracking match), so a hostile pattern cannot blow up.
    pub fn matches(&self, service: &str) -> bool {
        let (pattern, text) = (self.0.as_bytes(), service.as_bytes());
        let (mut p, mut t) = (0, 0);
        // Where the last `*` was, and the text position it currently covers up to.
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            if p < pattern.len() && pattern[p] == b'*' {
                star = Some((p, t));
                p += 1;
            } else if p < pattern.len() && pattern[p] == text[t] {
                p += 1;
                t += 1;
            } else if let Some((star_p, star_t)) = star {
                p = star_p + 1;
                t = star_t + 1;
                star = Some((star_p, star_t + 1));
            } else {
                return false;
            }
        }
        pattern[p..].iter().all(|&b| b == b'*')
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The services one permission covers: any of its globs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope(Vec<Glob>);

impl Scope {
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<Scope, String> {
        patterns
            .iter()
            .map(|p| Glob::parse(p.as_ref()))
            .collect::<Result<_, _>>()
            .map(Scope)
    }

    /// Every service (no auth: the open gateway).
    pub fn everything() -> Scope {
        Scope(vec![Glob("*".to_owned())])
    }

    pub fn allows(&self, service: &str) -> bool {
        self.0.iter().any(|glob| glob.matches(service))
    }

    /// True when it allows any service at all (`*`), so a filter can skip it.
    pub fn is_everything(&self) -> bool {
        self.0.iter().any(|glob| glob.0.bytes().all(|b| b == b'*'))
    }

    pub fn globs(&self) -> &[Glob] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(p: &str) -> Glob {
        Glob::parse(p).expect("valid pattern")
    }

    #[test]
    fn a_star_matches_any_run_of_characters() {
        assert!(glob("checkout").matches("checkout"));
        assert!(!glob("checkout").matches("checkout-eu"));
        assert!(glob("checkout-*").matches("checkout-eu"));
        assert!(glob("checkout-*").matches("checkout-"));
        assert!(!glob("checkout-*").matches("checkout"));
        assert!(glob("*").matches("anything"));
        assert!(glob("*-prod").matches("billing-prod"));
        assert!(glob("a*b*c").matches("a-x-b-y-c"));
        assert!(!glob("a*b*c").matches("a-x-c-y-b"));
        assert!(glob("**").matches(""));
    }

    #[test]
    fn a_hostile_pattern_is_still_linear() {
        let pattern = glob(&format!("{}b", "*a".repeat(30)));
        let text = "a".repeat(64);
        let started = std::time::Instant::now();
        assert!(!pattern.matches(&text));
        assert!(started.elapsed() < std::time::Duration::from_millis(50));
    }

    #[test]
    fn patterns_outside_the_service_alphabet_are_refused() {
        assert!(Glob::parse("").is_err());
        assert!(Glob::parse("check out").is_err());
        assert!(Glob::parse("billing.*").is_err());
        assert!(Glob::parse("?").is_err());
    }

    #[test]
    fn a_scope_allows_what_any_of_its_globs_matches() {
        let scope = Scope::parse(&["checkout", "payments-*"]).expect("valid");
        assert!(scope.allows("checkout"));
        assert!(scope.allows("payments-eu"));
        assert!(!scope.allows("billing"));
        assert!(!scope.is_everything());
        assert!(Scope::parse::<&str>(&[]).expect("valid").globs().is_empty());
        assert!(Scope::everything().is_everything());
    }
}
