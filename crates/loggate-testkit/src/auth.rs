//! Credentials for tests of a gateway with `--auth-file`: the file itself
//! (removed when the test ends), a principal's TOML block, and a request that
//! carries a bearer token.

use std::path::PathBuf;

use loggate::auth::TokenHash;
use tonic::Request;

use crate::unique;

/// An auth file in a fresh temporary path, removed on drop.
pub struct AuthFile(PathBuf);

impl AuthFile {
    /// Writes `text` (TOML `[[principal]]` blocks, see [`principal`]).
    pub fn new(text: &str) -> AuthFile {
        let path = std::env::temp_dir().join(format!("{}.toml", unique("auth")));
        std::fs::write(&path, text).expect("write the auth file");
        AuthFile(path)
    }

    /// Replaces the contents through a rename, as an operator's tooling
    /// would: a reload never reads half a file.
    pub fn rewrite(&self, text: &str) {
        let partial = self.0.with_extension("partial");
        std::fs::write(&partial, text).expect("write");
        std::fs::rename(&partial, &self.0).expect("rename");
    }

    /// The path, for `--auth-file`.
    pub fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 path")
    }
}

impl Drop for AuthFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One `[[principal]]` block: `name`, authenticated by `token`, with the
/// `log` and `tail` scopes given as TOML arrays (`r#"["svc"]"#`).
pub fn principal(name: &str, token: &str, log: &str, tail: &str) -> String {
    format!(
        "[[principal]]\nname = \"{name}\"\ntoken_sha256 = \"{}\"\nlog = {log}\ntail = {tail}\n\n",
        TokenHash::of(token).to_hex()
    )
}

/// `message` with `authorization: Bearer <token>`.
pub fn bearer<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii header"),
    );
    request
}
