//! Who may call the gateway, and over what: `--auth-file` (the `auth`
//! module) and the gRPC listener's TLS (the `tls` module).

use std::path::PathBuf;

use clap::Args;

use crate::tls::TlsFiles;

/// Authentication and TLS for the gRPC port.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Security")]
pub struct SecurityArgs {
    /// Principals, their bearer-token hashes or certificate names, and the
    /// services each may write as and read (TOML; see README, "Security").
    /// Reloaded on SIGHUP; a bad file keeps the one in force. Without it every
    /// caller may do anything, which is allowed only on a loopback --listen.
    #[arg(long, env = "LOGGATE_AUTH_FILE")]
    pub auth_file: Option<PathBuf>,

    /// Serve without --auth-file on a non-loopback --listen (anyone who can
    /// reach the port may write as any service and read everything).
    #[arg(long, env = "LOGGATE_ALLOW_UNAUTHENTICATED")]
    pub allow_unauthenticated: bool,

    /// Serve gRPC over TLS with this certificate chain (PEM); needs --tls-key.
    /// Reloaded on SIGHUP, for new connections.
    #[arg(long, env = "LOGGATE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "LOGGATE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Require a client certificate signed by this CA (PEM) on every
    /// connection (mTLS); its CN or a SAN can name a principal in --auth-file.
    #[arg(long, env = "LOGGATE_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

impl SecurityArgs {
    /// The TLS files, when TLS is on.
    pub fn tls_files(&self) -> Option<TlsFiles> {
        Some(TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.tls_client_ca.clone(),
        })
    }
}
