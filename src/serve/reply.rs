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
    if status == StatusCode::PAYLOAD_TOO_LARGE || status == StatusCode::BAD_REQUEST || spill {
        // The rest of the body may still be on its way: do not make the client
        // send it, and do not reuse a connection in an unknown state.
        res.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    res
}

/// Map warp's rejections (unknown path, wrong method) to JSON errors.
pub async fn handle_rejection(err: Rejection) -> Result<Response, Infallible> {
    let (status, kind, message) = if err.is_not_found() {
        (
            StatusCode::NOT_FOUND,
            "not_found",
            "no such route: the server answers GET /ping, POST /invocations, GET /execution-parameters".to_string(),
        )
    } else if err.find::<warp::reject::MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed: use GET /ping, POST /invocations, GET /execution-parameters"
                .to_string(),
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
    Ok(json_error(status, kind, message))
}
