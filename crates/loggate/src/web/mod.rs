//! The live-tail web page (`--http-listen`): the page itself (`/`, its
//! script and style, embedded in the binary), `/api/tail` (a Tail as
//! Server-Sent Events), `/api/stats` (records/s by level, for the chart) and
//! `/api/session` (who the token is). Served by `http`'s bounded loop.
//!
//! Thin, like `api`: every tail is opened by `api::open_tail`, the same code
//! the gRPC Tail runs, so the page gets the same scopes, quotas and limits.
//! Credentials are a bearer token in `Authorization` (the page sends it with
//! fetch, from sessionStorage), checked by the same `Auth` as gRPC; no
//! cookie, so a cross-site page can make a browser send nothing that counts
//! (no CSRF), and it cannot read the answers (no CORS headers).

mod assets;
mod query;
mod sse;
mod stats;
mod tail;

use std::{
    net::SocketAddr,
    sync::{Arc, OnceLock},
};

use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use serde_json::json;
use tonic::{Code, Status};

use crate::api::Gateway;
use crate::auth::{Auth, Caller};

pub use sse::WebEvent;

/// What the web routes need; the gateway arrives once it has connected
/// (the listener is bound before, so a bad address fails the start at once).
#[derive(Clone)]
pub struct Web {
    gateway: Arc<OnceLock<Arc<Gateway>>>,
    auth: Option<Arc<Auth>>,
    /// Without auth on a loopback address, only requests naming the host by
    /// an address or `localhost` are served: a web page elsewhere cannot
    /// then reach the gateway through a DNS name it rebinds to 127.0.0.1.
    local_hosts_only: bool,
}

impl Web {
    /// The web routes' state for a listener on `address`, behind `auth`.
    pub fn new(auth: Option<Arc<Auth>>, address: SocketAddr) -> Web {
        Web {
            gateway: Arc::default(),
            local_hosts_only: auth.is_none() && address.ip().is_loopback(),
            auth,
        }
    }

    /// From now on tails and stats are served (before: 503).
    pub fn serve(&self, gateway: Arc<Gateway>) {
        let _ = self.gateway.set(gateway);
    }

    /// The gateway and the caller of a request, or the answer refusing it.
    fn admit(&self, headers: &HeaderMap) -> Result<(Arc<Gateway>, Caller), Refusal> {
        self.check_host(headers)?;
        // Starting before the token is checked: "not ready" tells nobody
        // anything (gRPC health says as much), and a probe needs no token.
        let gateway = self.gateway.get().cloned().ok_or_else(|| Refusal {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "UNAVAILABLE",
            message: "the gateway is starting: it has not reached RabbitMQ yet".to_owned(),
        })?;
        let caller = self.caller(headers)?;
        Ok((gateway, caller))
    }

    fn check_host(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        if !self.local_hosts_only {
            return Ok(());
        }
        let host = headers
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .unwrap_or("");
        if is_local_host(host) {
            return Ok(());
        }
        Err(Refusal {
            status: StatusCode::FORBIDDEN,
            code: "PERMISSION_DENIED",
            message: format!(
                "Host {host:?}: without --auth-file this page is served only as localhost or \
                 by IP address (a DNS name could be rebound to this machine by another site)"
            ),
        })
    }

    /// Who calls: by the bearer token, as the gRPC interceptor does.
    fn caller(&self, headers: &HeaderMap) -> Result<Caller, Refusal> {
        let Some(auth) = &self.auth else {
            return Ok(Caller::anonymous());
        };
        auth.authenticate(
            headers
                .get(header::AUTHORIZATION)
                .map(HeaderValue::as_bytes),
            Vec::new,
        )
        .map_err(|refusal| Refusal::from(&Status::from(refusal)))
    }
}

/// Whether `host` (a Host header: name or address, and maybe a port) names
/// this machine by address or as `localhost`.
fn is_local_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        // [::1]:8080
        Some(rest) => {
            return rest
                .split(']')
                .next()
                .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
        }
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::Ipv4Addr>().is_ok()
}

/// The page, its assets and its API.
pub fn routes(web: Web) -> Router {
    Router::new()
        .route("/", get(assets::page))
        .route("/app.js", get(assets::script))
        .route("/app.css", get(assets::style))
        .route("/favicon.svg", get(assets::icon))
        .route("/api/tail", get(tail::tail))
        .route("/api/stats", get(stats::stats))
        .route("/api/session", get(session))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such page") })
        .with_state(web)
}

/// Who the token belongs to and what it may read, so the page can say so
/// (and learn that a token is good before it tails).
async fn session(State(web): State<Web>, headers: HeaderMap) -> Response {
    let caller = match web.check_host(&headers).and_then(|()| web.caller(&headers)) {
        Ok(caller) => caller,
        Err(refused) => return refused.into_response(),
    };
    let tail: Vec<String> = caller
        .tail_scope()
        .globs()
        .iter()
        .map(ToString::to_string)
        .collect();
    json_response(
        StatusCode::OK,
        &json!({
            "auth": web.auth.is_some(),
            "principal": caller.name(),
            "tail": tail,
            "tail_everything": caller.tail_scope().is_everything(),
        }),
    )
}

/// A JSON answer, not cached (every answer here is about now).
fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// `{"code": "...", "error": "..."}` with `status`; a 401 also says how to
/// authenticate.
fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let mut response = json_response(status, &json!({ "code": code, "error": message }));
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"loggate\""),
        );
    }
    response
}

/// Why a request is refused: the HTTP status, gRPC's name for the same
/// (which clients of both APIs know), and what to do about it.
#[derive(Debug)]
pub(super) struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Refusal {
    fn bad_request(message: impl Into<String>) -> Refusal {
        Refusal {
            status: StatusCode::BAD_REQUEST,
            code: "INVALID_ARGUMENT",
            message: message.into(),
        }
    }
}

/// A Tail's refusal as HTTP: the status code that means the same.
impl From<&Status> for Refusal {
    fn from(status: &Status) -> Refusal {
        let http = match status.code() {
            Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::FailedPrecondition => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Refusal {
            status: http,
            code: crate::metrics::code_name(status.code()),
            message: status.message().to_owned(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error(self.status, self.code, &self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_hosts_are_addresses_and_localhost() {
        for host in [
            "localhost",
            "LOCALHOST:8080",
            "127.0.0.1",
            "127.0.0.1:8080",
            "10.1.2.3:80",
            "[::1]:8080",
            "[::1]",
        ] {
            assert!(is_local_host(host), "{host}");
        }
        for host in [
            "",
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "[evil]",
        ] {
            assert!(!is_local_host(host), "{host}");
        }
    }
}
