//! Who may call: principals from `--auth-file`, authenticated by a bearer
//! token or an mTLS client certificate, each scoped to the services it may
//! write as (`log`) and read (`tail`).
//!
//! Pure policy: no tonic, no sockets. `api` asks it who a call's credentials
//! belong to and stamps the answer, a [`Caller`], on the call.

mod cert;
mod file;
mod token;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

pub use cert::names_in_certificate;
pub use file::{check_name as check_principal_name, Principal, Principals};
pub use token::{new_token, TokenHash};

use crate::record::Scope;
use crate::sync::Swappable;

/// Why an auth file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--auth-file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--auth-file {path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// Why a call's credentials were not accepted (UNAUTHENTICATED).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unauthenticated {
    #[error("no credentials: send `authorization: Bearer <token>` or a client certificate")]
    Missing,
    #[error("the authorization header must be `Bearer <token>`")]
    Malformed,
    #[error("unknown token")]
    UnknownToken,
    #[error("the client certificate names no known principal")]
    UnknownCertificate,
    #[error("the client certificate's names match more than one principal")]
    AmbiguousCertificate,
    #[error("principal {0:?} was removed or changed by an --auth-file reload; call again")]
    Revoked(String),
}

/// What an authenticated caller may not do (PERMISSION_DENIED).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("{field}: principal {principal:?} may not write as service {service:?}")]
    Log {
        /// Where the record sits in the request, e.g. `records[3].service`.
        field: String,
        principal: String,
        service: String,
    },
    #[error("{field}: principal {principal:?} may not read service {service:?}")]
    Tail {
        field: String,
        principal: String,
        service: String,
    },
    #[error("principal {principal:?} may not read any service (its tail scope is empty)")]
    NoTail { principal: String },
}

/// The principals currently in force, replaced whole on reload.
#[derive(Debug)]
pub struct Auth {
    path: PathBuf,
    principals: Swappable<Principals>,
    /// Counts reloads, so long-lived calls (tails, LogStreams) can check
    /// that their principal is still in force without polling.
    reloads: tokio::sync::watch::Sender<u64>,
}

impl Auth {
    /// Reads `path`; an unreadable or invalid file is an error (at start the
    /// gateway must not run with a policy other than the one asked for).
    pub fn load(path: &Path) -> Result<Auth, Error> {
        let principals = read(path)?;
        Ok(Auth {
            path: path.to_owned(),
            principals: Swappable::new(principals),
            reloads: tokio::sync::watch::Sender::new(0),
        })
    }

    /// Reads the file again. On error the principals in force stay, and the
    /// error says why; on success returns how many principals there are now.
    pub fn reload(&self) -> Result<usize, Error> {
        let principals = read(&self.path)?;
        let count = principals.0.len();
        self.principals.replace(principals);
        self.reloads.send_modify(|reloads| *reloads += 1);
        Ok(count)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Who is calling: by the bearer token in `authorization` when there is
    /// one, else by the client certificate's names (CN and SANs).
    pub fn authenticate(
        self: &Arc<Self>,
        authorization: Option<&[u8]>,
        certificate_names: impl FnOnce() -> Vec<String>,
    ) -> Result<Caller, Unauthenticated> {
        let principals = self.principals.current();
        let principal = match authorization {
            Some(header) => {
                let token = bearer_token(header).ok_or(Unauthenticated::Malformed)?;
                principals
                    .by_token(&TokenHash::of(token))
                    .ok_or(Unauthenticated::UnknownToken)?
            }
            None => {
                let names = certificate_names();
                if names.is_empty() {
                    return Err(Unauthenticated::Missing);
                }
                principals.by_cert_names(&names)?
            }
        };
        Ok(Caller::of(principal, Arc::clone(self)))
    }

    /// Whether `principal`, exactly as it was when a call began (credentials
    /// and scopes), is still in force.
    fn still_admits(&self, principal: &Principal) -> bool {
        self.principals.current().0.iter().any(|p| p == principal)
    }
}

fn read(path: &Path) -> Result<Principals, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.display().to_string(),
        source,
    })?;
    Principals::parse(&text).map_err(|reason| Error::Invalid {
        path: path.display().to_string(),
        reason,
    })
}

/// `Bearer <token>` (the scheme is case-insensitive, RFC 7235).
fn bearer_token(header: &[u8]) -> Option<&str> {
    let header = std::str::from_utf8(header).ok()?.trim();
    let (scheme, token) = header.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The authenticated caller of one call: its name (stamped on the records it
/// writes) and what it may do. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Caller(Arc<CallerScopes>);

#[derive(Debug)]
struct CallerScopes {
    name: String,
    log: Scope,
    tail: Scope,
    /// The principal as it was when the call began, and the auth file it
    /// came from; `None` when auth is off.
    granted_by: Option<(Principal, Arc<Auth>)>,
}

impl Caller {
    /// The caller of a gateway without `--auth-file`: nameless, may do anything.
    pub fn anonymous() -> Caller {
        Caller(Arc::new(CallerScopes {
            name: String::new(),
            log: Scope::everything(),
            tail: Scope::everything(),
            granted_by: None,
        }))
    }

    fn of(principal: &Principal, auth: Arc<Auth>) -> Caller {
        Caller(Arc::new(CallerScopes {
            name: principal.name.clone(),
            log: principal.log.clone(),
            tail: principal.tail.clone(),
            granted_by: Some((principal.clone(), auth)),
        }))
    }

    /// The principal's name; empty when auth is off.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    pub fn may_log(&self, service: &str) -> bool {
        self.0.log.allows(service)
    }

    /// The services whose records it may read.
    pub fn tail_scope(&self) -> &Scope {
        &self.0.tail
    }

    /// UNAUTHENTICATED when a reload removed or changed this caller's
    /// principal since its call began: a long-lived call (a tail, a
    /// LogStream) must not outlive the permission it was opened with.
    pub fn still_admitted(&self) -> Result<(), Unauthenticated> {
        match &self.0.granted_by {
            Some((principal, auth)) if !auth.still_admits(principal) => {
                Err(Unauthenticated::Revoked(principal.name.clone()))
            }
            _ => Ok(()),
        }
    }

    /// Changes on every reload of the auth file; `None` when auth is off.
    /// A long-lived call holds one and checks [`Caller::still_admitted`]
    /// whenever it changes.
    pub fn reloads(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.0
            .granted_by
            .as_ref()
            .map(|(_, auth)| auth.reloads.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth_with(text: &str) -> (Arc<Auth>, PathBuf) {
        let path = std::env::temp_dir().join(format!(
            "loggate-auth-test-{}-{:?}.toml",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&path, text).expect("write");
        (Arc::new(Auth::load(&path).expect("valid")), path)
    }

    const FILE: &str = r#"
        [[principal]]
        name = "checkout-prod"
        token_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        log = ["checkout"]
        tail = ["checkout", "payments"]
    "#;

    #[test]
    fn a_bearer_token_names_its_principal() {
        let (auth, path) = auth_with(FILE);
        let caller = auth
            .authenticate(Some(b"Bearer test"), Vec::new)
            .expect("known token");
        assert_eq!(caller.name(), "checkout-prod");
        assert!(caller.may_log("checkout"));
        assert!(!caller.may_log("payments"));
        assert!(caller.tail_scope().allows("payments"));
        assert_eq!(
            auth.authenticate(Some(b"bearer  test "), Vec::new)
                .map(|c| c.name().to_owned()),
            Ok("checkout-prod".to_owned())
        );
        assert_eq!(
            auth.authenticate(Some(b"Bearer nope"), Vec::new).err(),
            Some(Unauthenticated::UnknownToken)
        );
        assert_eq!(
            auth.authenticate(Some(b"Basic dGVzdA=="), Vec::new).err(),
            Some(Unauthenticated::Malformed)
        );
        assert_eq!(
            auth.authenticate(None, Vec::new).err(),
            Some(Unauthenticated::Missing)
        );
        assert_eq!(
            auth.authenticate(None, || vec!["stranger".into()]).err(),
            Some(Unauthenticated::UnknownCertificate)
        );
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_bad_reload_keeps_the_principals_in_force() {
        let (auth, path) = auth_with(FILE);
        std::fs::write(&path, "[[principal]]\nname = \"x\"").expect("write");
        let error = auth.reload().expect_err("invalid file");
        assert!(
            error.to_string().contains("could never authenticate"),
            "{error}"
        );
        assert!(auth.authenticate(Some(b"Bearer test"), Vec::new).is_ok());
        std::fs::write(&path, "").expect("write");
        assert_eq!(auth.reload().expect("valid, empty"), 0);
        assert!(auth.authenticate(Some(b"Bearer test"), Vec::new).is_err());
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_reload_that_removes_or_changes_a_principal_revokes_its_open_calls() {
        let (auth, path) = auth_with(FILE);
        let caller = auth
            .authenticate(Some(b"Bearer test"), Vec::new)
            .expect("known token");
        let reloads = caller.reloads().expect("auth is on");
        std::fs::write(&path, FILE).expect("write");
        auth.reload().expect("valid");
        assert!(reloads.has_changed().expect("open"));
        assert_eq!(caller.still_admitted(), Ok(()), "the same principal stays");
        std::fs::write(
            &path,
            FILE.replace("[\"checkout\", \"payments\"]", "[\"checkout\"]"),
        )
        .expect("write");
        auth.reload().expect("valid");
        assert_eq!(
            caller.still_admitted(),
            Err(Unauthenticated::Revoked("checkout-prod".into())),
            "a narrowed scope revokes what was opened under the wider one"
        );
        assert_eq!(Caller::anonymous().still_admitted(), Ok(()));
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn the_anonymous_caller_may_do_anything() {
        let caller = Caller::anonymous();
        assert_eq!(caller.name(), "");
        assert!(caller.may_log("anything"));
        assert!(caller.tail_scope().is_everything());
    }
}
