//! Error responses, in one place: every error the server answers is a
//! status and a small JSON body `{"error": kind, "message": text}` (warp's
//! `rejections.rs` example does the same).

use std::convert::Infallible;

use http::StatusCode;
use serde::Serialize;
use warp::reply::Response;
use warp::{Rejection, Reply};

use crate::error::Error;

/// SageMaker's pass-through header, echoed on every `/invocations` answer.
pub const CUSTOM_ATTRIBUTES: http::HeaderName =
    http::HeaderName::from_static("x-amzn-sagemaker-custom-attributes");

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: String,
}

/// A JSON error response.
pub fn json_error(status: StatusCode, kind: &str, message: String) -> Response {
    let body = Body {
        error: kind,
        message,
    };
    let mut res = warp::reply::with_status(warp::reply::json(&body), status).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        res.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("1"),
        );
    }
    res
}

/// The response for an error raised before any response byte went out.
pub fn error_response(e: &Error) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut res = json_error(status, e.code(), e.to_string());
    let spill = matches!(e.kind(), crate::ErrorKind::Spill { .. });
    let cut = [
        StatusCode::PAYLOAD_TOO_LARGE,
        StatusCode::BAD_REQUEST,
        // A body that stopped coming (RFC 9110 §15.5.9: 408 SHOULD close).
        StatusCode::REQUEST_TIMEOUT,
    ];
    if cut.contains(&status) || spill {
        // The rest of the body may still be on its way: do not make the client
        // send it, and do not reuse a connection in an unknown state.
        res.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    res
}

/// What the server answers, named in the 404 and 405 hints.
const ROUTES: &str = "GET /ping, POST /invocations, GET /execution-parameters, GET /metrics, \
                      GET /invocations-bidirectional-stream (WebSocket)";
/// What a multi-model endpoint answers (its `/invocations` is a 404).
const MME_ROUTES: &str =
    "GET /ping, GET /models, POST /models, GET or DELETE /models/{model_name}, \
                          POST /models/{model_name}/invoke, GET /metrics";

/// Map warp's rejections (unknown path, wrong method, a header a filter
/// needs) to JSON errors; `mme`: on a multi-model endpoint, whose routes
/// the hints name. A rejection we do not know is a bug of ours: 500.
pub async fn handle_rejection(err: Rejection, mme: bool) -> Result<Response, Infallible> {
    use warp::reject::{InvalidHeader, InvalidQuery, MissingHeader};
    let routes = if mme { MME_ROUTES } else { ROUTES };
    let mut extra = None;
    let (status, kind, message) = if err.is_not_found() {
        (
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such route: the server answers {routes}"),
        )
    } else if err.find::<warp::reject::MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("method not allowed: use {routes}"),
        )
    } else if let Some(h) = err.find::<InvalidHeader>() {
        if h.name().eq_ignore_ascii_case("sec-websocket-version") {
            // RFC 6455 §4.2.2 (and §4.4): a version the server does not
            // speak gets 426 with the versions it does.
            extra = Some(("sec-websocket-version", "13"));
            (
                StatusCode::UPGRADE_REQUIRED,
                "bad_request",
                "unsupported WebSocket version: this server speaks Sec-WebSocket-Version 13".into(),
            )
        } else {
            (
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("invalid request header {:?} for this route", h.name()),
            )
        }
    } else if let Some(h) = err.find::<MissingHeader>() {
        // RFC 6455 §4.2.1: a handshake missing a header it needs is a 400.
        (
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("missing request header {:?} for this route", h.name()),
        )
    } else if err.find::<warp::ws::MissingConnectionUpgrade>().is_some() {
        (
            StatusCode::BAD_REQUEST,
            "bad_request",
            "this route is a WebSocket: the Connection header must include \"upgrade\"".into(),
        )
    } else if err.find::<InvalidQuery>().is_some() {
        (
            StatusCode::BAD_REQUEST,
            "bad_request",
            "invalid query string".into(),
        )
    } else {
        tracing::error!(rejection = ?err, "unhandled rejection");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error".to_string(),
        )
    };
    crate::metrics::metrics().request("other", status.as_u16());
    let mut res = json_error(status, kind, message);
    if let Some((name, value)) = extra {
        res.headers_mut()
            .insert(name, http::HeaderValue::from_static(value));
    }
    Ok(res)
}
