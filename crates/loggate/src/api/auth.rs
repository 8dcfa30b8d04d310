//! Authentication at the edge: an interceptor in front of the LogGateway
//! service turns a call's credentials (a bearer token, else the client
//! certificate) into a [`Caller`] stamped on the request, or refuses the call
//! UNAUTHENTICATED. Health and reflection are not behind it.

use std::sync::Arc;

use tonic::{service::Interceptor, Request, Status};

use crate::auth::{names_in_certificate, Auth, Caller};

/// The interceptor. Without an auth file every call is the anonymous caller,
/// who may do anything.
#[derive(Clone)]
pub struct Authenticate {
    auth: Option<Arc<Auth>>,
    /// Shared by every call when auth is off, so no call allocates one.
    anonymous: Caller,
}

impl Authenticate {
    pub fn new(auth: Option<Arc<Auth>>) -> Authenticate {
        Authenticate {
            auth,
            anonymous: Caller::anonymous(),
        }
    }
}

impl Interceptor for Authenticate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let caller = match &self.auth {
            None => self.anonymous.clone(),
            Some(auth) => auth.authenticate(
                request
                    .metadata()
                    .get("authorization")
                    .map(|value| value.as_bytes()),
                || certificate_names(&request),
            )?,
        };
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

/// The names on the client's certificate (mTLS), if it sent one.
fn certificate_names(request: &Request<()>) -> Vec<String> {
    request
        .peer_certs()
        .and_then(|chain| chain.first().map(|leaf| names_in_certificate(leaf)))
        .unwrap_or_default()
}

/// The caller `Authenticate` stamped on `request`. Its absence would mean
/// the service was served without the interceptor: refuse rather than open.
pub(super) fn caller<T>(request: &Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no credentials were checked"))
}
