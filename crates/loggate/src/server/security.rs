//! The gateway's security, checked before anything connects and reloaded on
//! SIGHUP: the auth file, the TLS listener's files, and the rule that only a
//! loopback listener may serve without authentication.

use std::{net::SocketAddr, sync::Arc};

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Error;
use crate::auth::Auth;
use crate::config::ServeConfig;
use crate::tls::ServerTls;

/// Who may call, and over what: both reloaded on SIGHUP.
#[derive(Clone)]
pub(super) struct Security {
    pub(super) auth: Option<Arc<Auth>>,
    pub(super) tls: Option<Arc<ServerTls>>,
}

/// Step 0: reads the auth file and the TLS files, so a mistake in either
/// stops the start before anything connects. Without an auth file the
/// gateway serves anyone, which only a loopback listener (or an explicit
/// `--allow-unauthenticated`) may do.
pub(super) fn secure(config: &ServeConfig, address: Option<SocketAddr>) -> Result<Security, Error> {
    let flags = &config.security;
    let auth = match &flags.auth_file {
        Some(path) => Some(Arc::new(Auth::load(path)?)),
        None => {
            // An address we cannot read is not known to be loopback. The
            // web page serves tails too, so its address obeys the same rule.
            let web = config.server.http_listen;
            let exposed = if !address.is_some_and(|a| a.ip().is_loopback()) {
                Some(address)
            } else {
                web.filter(|a| !a.ip().is_loopback()).map(Some)
            };
            if let Some(exposed) = exposed {
                if !flags.allow_unauthenticated {
                    return Err(Error::Unprotected(exposed.map_or_else(
                        || "an address it could not read".to_owned(),
                        |a| a.to_string(),
                    )));
                }
                warn!(
                    ?address,
                    ?web,
                    "serving without authentication (--allow-unauthenticated)"
                );
            }
            None
        }
    };
    let tls = flags
        .tls_files()
        .map(ServerTls::load)
        .transpose()?
        .map(Arc::new);
    Ok(Security { auth, tls })
}

/// Reloads the auth file and the TLS files on every SIGHUP until `stop`. A
/// file that fails to load is reported and the one in force stays.
pub(super) async fn reload_on_hangup(security: Security, stop: CancellationToken) {
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(error) => {
            warn!(%error, "cannot listen for SIGHUP: reloading is off");
            return;
        }
    };
    loop {
        tokio::select! {
            received = hangups.recv() => if received.is_none() { return },
            () = stop.cancelled() => return,
        }
        if let Some(auth) = &security.auth {
            match auth.reload() {
                Ok(principals) => {
                    info!(principals, file = %auth.path().display(), "auth file reloaded")
                }
                Err(error) => {
                    warn!(%error, "auth file not reloaded; the previous one stays in force")
                }
            }
        }
        if let Some(tls) = &security.tls {
            match tls.reload() {
                Ok(()) => info!("TLS certificate reloaded; new connections use it"),
                Err(error) => {
                    warn!(%error, "TLS files not reloaded; the previous ones stay in force")
                }
            }
        }
    }
}
