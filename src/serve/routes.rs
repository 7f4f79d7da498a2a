//! The routes, composed from one small filter per endpoint (warp's
//! `todos.rs` layout); handlers live beside them or in their own file.

use std::convert::Infallible;
use std::sync::Arc;

use http::StatusCode;
use serde::Serialize;
use warp::reply::Response;
use warp::{Filter, Reply};

use super::invocations;
use super::reply::{handle_rejection, json_error};
use super::State;

/// All routes, with rejections mapped to JSON errors.
pub fn routes(state: Arc<State>) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    ping(state.clone())
        .or(execution_parameters(state.clone()))
        .unify()
        .or(invocations(state))
        .unify()
        .recover(handle_rejection)
        .unify()
}

fn with_state(
    state: Arc<State>,
) -> impl Filter<Extract = (Arc<State>,), Error = Infallible> + Clone {
    warp::any().map(move || state.clone())
}

/// `GET /ping`: 200 with an empty body once the model is loaded, 503 before.
/// Never touches the model or the disk, so scoring work cannot slow it.
pub fn ping(
    state: Arc<State>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path!("ping")
        .and(warp::get().or(warp::head()).unify())
        .and(with_state(state))
        .map(|state: Arc<State>| {
            if state.model.get().is_some() {
                StatusCode::OK.into_response()
            } else {
                json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "loading",
                    "the model is still loading".into(),
                )
            }
        })
}

/// The body of `GET /execution-parameters`, in AWS's casing.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ExecutionParameters {
    max_concurrent_transforms: usize,
    batch_strategy: &'static str,
    #[serde(rename = "MaxPayloadInMB")]
    max_payload_in_mb: u64,
}

/// `GET /execution-parameters`: what Batch Transform should send us.
pub fn execution_parameters(
    state: Arc<State>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path!("execution-parameters")
        .and(warp::get())
        .and(with_state(state))
        .map(|state: Arc<State>| {
            let cfg = &state.cfg;
            warp::reply::json(&ExecutionParameters {
                max_concurrent_transforms: cfg.max_concurrent_transforms,
                batch_strategy: cfg.batch_strategy.as_aws(),
                max_payload_in_mb: cfg.advertised_max_payload_mb,
            })
            .into_response()
        })
}

/// `POST /invocations`: stream records in, predictions out.
pub fn invocations(
    state: Arc<State>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path!("invocations")
        .and(warp::post())
        .and(with_state(state))
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .and_then(invocations::invoke)
}
