//! TLS for the gRPC listener (rustls): the certificate, its key and an
//! optional client CA for mTLS, reloadable on SIGHUP without dropping a
//! connection (each new handshake takes the configuration in force; open
//! connections keep theirs).

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use futures::{Stream, StreamExt as _};
use rustls_pki_types::{pem::PemObject as _, CertificateDer, PrivateKeyDer};
use tokio::{net::TcpStream, sync::Semaphore};
use tokio_rustls::{
    rustls::{self, server::WebPkiClientVerifier, RootCertStore, ServerConfig},
    server::TlsStream,
    TlsAcceptor,
};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::sync::Swappable;

/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; past it, new connections wait to be
/// accepted (a flood of idle sockets cannot exhaust memory).
const MAX_HANDSHAKES: usize = 1024;
/// How long the accept loop pauses after a failed accept.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// Finished handshakes waiting for the server to take them.
const READY_QUEUE: usize = 64;

/// Where the listener's certificate, key and client CA are.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, every client must present a certificate this CA signed.
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{flag} {path}: {reason}")]
    File {
        flag: &'static str,
        path: String,
        reason: String,
    },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("--tls-client-ca: {0}")]
    ClientVerifier(String),
}

/// The server's TLS configuration in force, replaced whole on reload.
pub struct ServerTls {
    files: TlsFiles,
    config: Swappable<ServerConfig>,
    /// The same, offering HTTP/1.1 instead of HTTP/2: the web listener's.
    http1: Swappable<ServerConfig>,
}

impl ServerTls {
    pub fn load(files: TlsFiles) -> Result<ServerTls, Error> {
        let (config, http1) = build_both(&files)?;
        Ok(ServerTls {
            files,
            config: Swappable::new(config),
            http1: Swappable::new(http1),
        })
    }

    /// Reads the files again; on error the configuration in force stays.
    pub fn reload(&self) -> Result<(), Error> {
        let (config, http1) = build_both(&self.files)?;
        self.config.replace(config);
        self.http1.replace(http1);
        Ok(())
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.current())
    }

    /// An acceptor for the web listener (HTTP/1.1 by ALPN), with the
    /// certificate, key and client CA in force.
    pub fn http1_acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.http1.current())
    }

    /// Turns accepted TCP connections into TLS ones. Handshakes run
    /// concurrently, each bounded by a timeout, so one slow or silent client
    /// delays nobody else; failed ones are logged at debug and dropped. Ends
    /// when `stop` is cancelled or the server stops taking connections.
    pub fn incoming<S>(
        self: Arc<Self>,
        tcp: S,
        stop: CancellationToken,
    ) -> impl Stream<Item = Result<TlsStream<TcpStream>, std::io::Error>>
    where
        S: Stream<Item = Result<TcpStream, std::io::Error>> + Send + 'static,
    {
        let (ready, receiver) = tokio::sync::mpsc::channel(READY_QUEUE);
        let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            let mut tcp = std::pin::pin!(tcp);
            loop {
                let permit = tokio::select! {
                    permit = Arc::clone(&handshakes).acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    () = stop.cancelled() => break,
                };
                let stream = tokio::select! {
                    next = tcp.next() => match next {
                        Some(Ok(stream)) => stream,
                        Some(Err(error)) => {
                            // Out of file descriptors, typically: pause rather
                            // than spin on an error that repeats at once.
                            debug!(%error, "accepting a connection failed");
                            tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                            continue;
                        }
                        None => break,
                    },
                    () = stop.cancelled() => break,
                    () = ready.closed() => break,
                };
                let acceptor = self.acceptor();
                let ready = ready.clone();
                tokio::spawn(async move {
                    let peer = stream.peer_addr().ok();
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = ready.send(Ok(tls)).await;
                        }
                        Ok(Err(error)) => debug!(?peer, %error, "TLS handshake failed"),
                        Err(_) => debug!(?peer, "TLS handshake timed out"),
                    }
                    drop(permit);
                });
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(receiver)
    }
}

/// The gRPC configuration, and the same for HTTP/1.1 (one read of the files).
fn build_both(files: &TlsFiles) -> Result<(ServerConfig, ServerConfig), Error> {
    let config = build(files)?;
    let mut http1 = config.clone();
    http1.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((config, http1))
}

fn build(files: &TlsFiles) -> Result<ServerConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates(&files.cert, "--tls-cert")?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| Error::File {
        flag: "--tls-key",
        path: files.key.display().to_string(),
        reason: format!("no usable PEM private key ({e})"),
    })?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for certificate in certificates(ca, "--tls-client-ca")? {
                roots.add(certificate)?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| Error::ClientVerifier(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key)?;
    // gRPC is HTTP/2 only.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Every certificate in a PEM file; none is an error.
fn certificates(path: &Path, flag: &'static str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let file_error = |reason: String| Error::File {
        flag,
        path: path.display().to_string(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(format!("not valid PEM ({e})")))?;
    if chain.is_empty() {
        return Err(file_error("holds no PEM certificate".to_owned()));
    }
    Ok(chain)
}
