//! `GET /api/stats?seconds=N`: records per second by level, as the gateway's
//! live consumer (the hub) read them from the history stream, over the last
//! N seconds (default 300): what the page's rate chart draws.

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode, Uri},
    response::{IntoResponse as _, Response},
};
use serde_json::json;

use super::{error, json_response, Refusal, Web};
use crate::record::Level;
use crate::tail::{unix_second_now, WINDOW_SECONDS};

/// Seconds reported when the request does not say.
const DEFAULT_SECONDS: usize = 300;

pub(super) async fn stats(State(web): State<Web>, uri: Uri, headers: HeaderMap) -> Response {
    let (gateway, caller) = match web.admit(&headers) {
        Ok(admitted) => admitted,
        Err(refused) => return refused.into_response(),
    };
    // The counts are of every service: a caller that may read only some
    // must not learn how much the others log (as with heartbeats' head time).
    if !caller.tail_scope().is_everything() {
        return error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            &format!(
                "principal {:?} may read only some services, and the rates count every service",
                caller.name()
            ),
        );
    }
    let seconds = match seconds(uri.query().unwrap_or("")) {
        Ok(seconds) => seconds,
        Err(message) => return Refusal::bad_request(message).into_response(),
    };
    let end = unix_second_now();
    let counts = gateway.hub().rates().recent(end, seconds);
    json_response(
        StatusCode::OK,
        &json!({
            "levels": Level::ALL.map(Level::as_str),
            // The first second after the last one counted (Unix seconds).
            "end": end,
            "counts": counts,
        }),
    )
}

/// The `seconds` parameter: 1 to what the ring holds.
fn seconds(query: &str) -> Result<usize, String> {
    let most = WINDOW_SECONDS - 1;
    let mut seconds = DEFAULT_SECONDS;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key != "seconds" {
            return Err(format!("{key:?}: unknown parameter; known: seconds"));
        }
        seconds = value
            .parse()
            .ok()
            .filter(|n| (1..=most).contains(n))
            .ok_or_else(|| format!("seconds: {value:?} is not a count from 1 to {most}"))?;
    }
    Ok(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_default_and_bounds() {
        assert_eq!(seconds(""), Ok(DEFAULT_SECONDS));
        assert_eq!(seconds("seconds=60"), Ok(60));
        assert_eq!(
            seconds("seconds=0"),
            Err("seconds: \"0\" is not a count from 1 to 599".to_owned())
        );
        assert!(seconds("seconds=600").is_err());
        assert!(seconds("minutes=5").is_err());
    }
}
