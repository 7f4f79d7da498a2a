//! Multi-model endpoints: SageMaker's "Custom Containers Contract for
//! Multi-Model Endpoints" (AWS DG, `mms-container-apis`).
//!
//! With `SAGEMAKER_MULTI_MODEL=true` (or `mmp serve --multi-model`) there is
//! no `/opt/ml/model`: SageMaker loads models on demand and routes each
//! `InvokeEndpoint` with a `TargetModel` to one of them.
//!
//! - `POST /models` `{"model_name", "url"}`: load the model in directory
//!   `url` with the same load function single-model serving uses, and keep it
//!   under `model_name`, an opaque key (not the `TargetModel` string). 200
//!   loaded; 409 already loaded (or loading); 507 over the memory budget, so
//!   SageMaker unloads other models and retries; 400 a broken artifact
//!   (naming the file and reason) or a bad request; 404 no such directory.
//! - `GET /models?limit=&next_page_token=`: `{"models": [{"modelName",
//!   "modelUrl"}], "nextPageToken"}` in name order, the token present while
//!   more remain (the parameters the toolkit's model server, MMS, takes).
//! - `GET /models/{model_name}`: `{"modelName", "modelUrl"}`, or 404.
//! - `DELETE /models/{model_name}`: unload, or 404.
//! - `POST /models/{model_name}/invoke`: `/invocations`' pipeline on that
//!   model ([`super::invocations::invoke_model`]), or 404.
//!
//! A model is in the registry as `Loading` from the moment its load is
//! accepted until it is ready; only `Ready` models can be found, listed or
//! unloaded, so no request ever sees a half-loaded model, and a second load
//! of the same name meanwhile gets 409. Loading runs on a blocking thread in
//! a task of its own, so it never stalls other requests, and a client that
//! hangs up mid-load cannot leave a `Loading` entry behind. Requests running
//! on a model hold an `Arc` of it: an unload takes the model out of the
//! registry at once (new requests get 404) and its memory goes when the last
//! of them finishes.
//!
//! Memory: each model is charged the size of its artifact files, reserved
//! before the load starts, against a budget: `MMP_MME_MEMORY_BUDGET` bytes
//! when set, else 90% of the memory limit (cgroup v2 `memory.max`, v1
//! `memory.limit_in_bytes`, else the machine's memory) less what the process
//! uses at start. The 10% left over is for requests in flight.
//!
//! Paths: `model_name` never touches the file system. `url` is read as given
//! but must resolve (symbolic links followed) to a directory inside the model
//! root (`MMP_MME_MODEL_ROOT`, `/opt/ml/models`), and the load reads the
//! resolved directory, so no request can make the server read elsewhere.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use bytes::{Buf, BytesMut};
use futures::StreamExt;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use warp::reply::Response;
use warp::Reply;

use super::invocations::{invoke_model, Body, RequestLog};
use super::reply::json_error;
use super::State;
use crate::metrics::{metrics, mme as mme_metrics};
use crate::model::SharedModel;

mod registry;

use registry::already;
pub use registry::{budget, memory_limit, resident_bytes, Budget, Loaded, Registry};

/// Longest `model_name`: InvokeEndpoint's `TargetModel` is at most 1024
/// characters, and the name SageMaker derives from it is no longer.
pub const MAX_NAME_BYTES: usize = 1024;
/// Largest `POST /models` body: two short strings; more is not a load
/// request.
pub const MAX_LOAD_BODY: usize = 64 * 1024;
/// `GET /models` page size when `limit` is not given (MMS's default).
pub const DEFAULT_PAGE: usize = 100;
/// Largest page; a larger `limit` is cut to it (MMS caps at 100; listing is
/// cheap here, so 10,000 models take ten pages, not a hundred).
pub const MAX_PAGE: usize = 1000;

/// The route labels of the multi-model routes (metrics and log lines); never
/// the model name, so label cardinality stays fixed. `:model_name`, not
/// `{model_name}`: some Prometheus parsers trip on braces in label values.
pub const ROUTE_MODELS: &str = "/models";
/// See [`ROUTE_MODELS`].
pub const ROUTE_MODEL: &str = "/models/:model_name";
/// See [`ROUTE_MODELS`].
pub const ROUTE_INVOKE: &str = "/models/:model_name/invoke";

/// A multi-model request that failed: its status, kind and message.
#[derive(Debug)]
pub struct MmeError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl MmeError {
    fn new(status: StatusCode, kind: &'static str, message: String) -> MmeError {
        MmeError {
            status,
            kind,
            message,
        }
    }

    fn bad(message: String) -> MmeError {
        MmeError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn not_loaded(name: &str) -> MmeError {
        MmeError::new(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!("model {name:?} is not loaded"),
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// As a JSON error response.
    pub fn response(&self) -> Response {
        json_error(self.status, self.kind, self.message.clone())
    }
}

impl std::fmt::Display for MmeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Check a `model_name`: it is only a key, but it also appears as one path
/// segment of `/models/{model_name}`, so it must fit in one.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("model_name is empty".into());
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "model_name is {} bytes long; at most {MAX_NAME_BYTES} are allowed",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("model_name {name:?} is not a valid name"));
    }
    if let Some(c) = name
        .chars()
        .find(|&c| c.is_control() || c == '/' || c == '\\')
    {
        return Err(format!("model_name {name:?} contains {c:?}"));
    }
    Ok(())
}

/// Cursor tokens for `GET /models`: the hex of the last name of the page, so
/// a token always survives a query string and the next page starts after
/// that name even if models came and went meanwhile (an offset would skip or
/// repeat models then). Hand-written: two loops, not worth a crate.
fn encode_token(name: &str) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(name.len() * 2);
    for b in name.bytes() {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn decode_token(token: &str) -> Option<String> {
    if token.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// One entry of `GET /models`, in AWS's casing.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Entry<'a> {
    model_name: &'a str,
    model_url: &'a str,
}

/// The body of `GET /models`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Page<'a> {
    models: Vec<Entry<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

/// The body of `POST /models`.
#[derive(Deserialize)]
struct LoadRequest {
    model_name: String,
    url: String,
}

/// Read a small request body whole, refusing one over `limit` bytes.
async fn read_small<S: Body>(body: S, limit: usize) -> Result<BytesMut, MmeError> {
    let mut body = std::pin::pin!(body);
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let mut chunk =
            chunk.map_err(|e| MmeError::bad(format!("reading the request body: {e}")))?;
        if buf.len() + chunk.remaining() > limit {
            return Err(MmeError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("a load request is at most {limit} bytes"),
            ));
        }
        while chunk.has_remaining() {
            let n = chunk.chunk().len();
            buf.extend_from_slice(chunk.chunk());
            chunk.advance(n);
        }
    }
    Ok(buf)
}

/// Decode a `/models/{model_name}` path segment.
fn name_from_path(segment: &str) -> Result<Arc<str>, MmeError> {
    let name = percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| MmeError::bad("model name in the path is not UTF-8".into()))?;
    validate_name(&name).map_err(MmeError::bad)?;
    Ok(Arc::from(name.as_ref()))
}

/// Log and count a management request's outcome.
fn answered(
    method: &'static str,
    route: &'static str,
    name: &str,
    started: Instant,
    res: &Response,
) {
    let status = res.status().as_u16();
    metrics().request(route, status);
    let ms = crate::logging::millis(started.elapsed());
    if method == "GET" {
        tracing::debug!(target: "mmp::request", method, path = route, status, model = name, duration_ms = ms, "request");
    } else {
        tracing::info!(target: "mmp::request", method, path = route, status, model = name, duration_ms = ms, "request");
    }
}

/// `POST /models`: load a model.
pub async fn load<S: Body>(
    reg: Arc<Registry>,
    body: S,
) -> Result<Response, std::convert::Infallible> {
    let started = Instant::now();
    let (name, res) = match load_inner(reg, body, started).await {
        Ok((name, url)) => {
            let body = serde_json::json!({
                "status": format!("model {name:?} loaded"),
                "modelName": &*name,
                "modelUrl": url,
            });
            (name, warp::reply::json(&body).into_response())
        }
        Err((name, e)) => (name, e.response()),
    };
    answered("POST", ROUTE_MODELS, &name, started, &res);
    Ok(res)
}

type LoadFailure = (Arc<str>, MmeError);

async fn load_inner<S: Body>(
    reg: Arc<Registry>,
    body: S,
    started: Instant,
) -> Result<(Arc<str>, String), LoadFailure> {
    let unnamed = |e| (Arc::from(""), e);
    let raw = read_small(body, MAX_LOAD_BODY).await.map_err(unnamed)?;
    let req: LoadRequest = serde_json::from_slice(&raw).map_err(|e| {
        unnamed(MmeError::bad(format!(
            "the load request is not {{\"model_name\": ..., \"url\": ...}}: {e}"
        )))
    })?;
    let name: Arc<str> = Arc::from(req.model_name);
    let fail = |e| (name.clone(), e);
    validate_name(&name).map_err(|e| fail(MmeError::bad(e)))?;
    if req.url.is_empty() || !Path::new(&req.url).is_absolute() || req.url.contains('\0') {
        return Err(fail(MmeError::bad(format!(
            "url {:?} is not an absolute path",
            req.url
        ))));
    }
    // Cheap early answer; `reserve` decides for real.
    if reg.holds(&name) {
        return Err(fail(already(&name)));
    }
    // In a task of its own: a client hanging up mid-load drops this
    // handler, but the load still ends and settles its registry entry.
    let task = {
        let (reg, name) = (reg.clone(), name.clone());
        tokio::spawn(async move { load_task(reg, name, req.url, started).await })
    };
    match task.await {
        Ok(r) => r.map_err(fail),
        Err(e) => Err(fail(MmeError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("loading the model failed: {e}"),
        ))),
    }
}

async fn load_task(
    reg: Arc<Registry>,
    name: Arc<str>,
    url: String,
    started: Instant,
) -> Result<(Arc<str>, String), MmeError> {
    let blocking_failed = |e: tokio::task::JoinError| {
        MmeError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("loading the model failed: {e}"),
        )
    };
    let (dir, bytes) = {
        let (reg, url) = (reg.clone(), url.clone());
        tokio::task::spawn_blocking(move || reg.resolve(&url))
            .await
            .map_err(blocking_failed)??
    };
    reg.reserve(&name, bytes)?;
    tracing::info!(target: "mmp::mme", model = &*name, url = %url, bytes, "loading model");
    let loaded = tokio::task::spawn_blocking(move || crate::model::load(&dir)).await;
    let model = match loaded {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => {
            reg.finish(&name, None);
            return Err(MmeError::bad(e.to_string()));
        }
        Err(e) => {
            reg.finish(&name, None);
            return Err(blocking_failed(e));
        }
    };
    reg.finish(
        &name,
        Some(Loaded {
            url: url.clone(),
            model,
            bytes,
        }),
    );
    let secs = started.elapsed().as_secs_f64();
    mme_metrics().load_seconds.observe(secs);
    tracing::info!(target: "mmp::mme", model = &*name, url = %url, bytes, load_ms = secs * 1e3, "model loaded");
    Ok((name, url))
}

/// `GET /models`: one page of the loaded models.
pub fn list(reg: &Registry, query: &std::collections::HashMap<String, String>) -> Response {
    let started = Instant::now();
    let res = match page_params(query) {
        Ok((after, limit)) => {
            let mut res = Response::new(reg.page(after.as_deref(), limit).into());
            res.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            res
        }
        Err(e) => e.response(),
    };
    answered("GET", ROUTE_MODELS, "", started, &res);
    res
}

/// `next_page_token` and `limit`, checked.
fn page_params(
    query: &std::collections::HashMap<String, String>,
) -> Result<(Option<String>, usize), MmeError> {
    let limit = match query.get("limit").map(|v| v.trim()) {
        None | Some("") => DEFAULT_PAGE,
        Some(v) => match v.parse::<usize>() {
            Ok(0) | Err(_) => {
                return Err(MmeError::bad(format!(
                    "limit={v:?} is not valid: use a number from 1 (pages hold at most {MAX_PAGE})"
                )))
            }
            Ok(n) => n.min(MAX_PAGE),
        },
    };
    let after = match query.get("next_page_token").map(|v| v.trim()) {
        None | Some("") => None,
        Some(t) => Some(decode_token(t).ok_or_else(|| {
            MmeError::bad(format!(
                "next_page_token={t:?} is not a token this server gave out"
            ))
        })?),
    };
    Ok((after, limit))
}

/// `GET /models/{model_name}`.
pub fn describe(reg: &Registry, segment: &str) -> Response {
    let started = Instant::now();
    let (name, res) = match name_from_path(segment) {
        Err(e) => (String::new(), e.response()),
        Ok(name) => match reg.get(&name) {
            Some(m) => {
                let body = Entry {
                    model_name: &name,
                    model_url: &m.url,
                };
                (name.to_string(), warp::reply::json(&body).into_response())
            }
            None => (name.to_string(), MmeError::not_loaded(&name).response()),
        },
    };
    answered("GET", ROUTE_MODEL, &name, started, &res);
    res
}

/// `DELETE /models/{model_name}`.
pub fn unload(reg: &Registry, segment: &str) -> Response {
    let started = Instant::now();
    let (name, res) = match name_from_path(segment) {
        Err(e) => (String::new(), e.response()),
        Ok(name) => match reg.unload(&name) {
            Ok(m) => {
                tracing::info!(target: "mmp::mme", model = &*name, url = %m.url, bytes = m.bytes, "model unloaded");
                let body = serde_json::json!({"status": format!("model {name:?} unloaded")});
                // Dropped here: freed now unless a request still runs on it.
                drop(m);
                (name.to_string(), warp::reply::json(&body).into_response())
            }
            Err(e) => (name.to_string(), e.response()),
        },
    };
    answered("DELETE", ROUTE_MODEL, &name, started, &res);
    res
}

/// `POST /models/{model_name}/invoke`: `/invocations` on that model.
pub async fn invoke<S: Body>(
    state: Arc<State>,
    reg: Arc<Registry>,
    segment: String,
    headers: HeaderMap,
    body: S,
    watch: Option<crate::serve::listener::WriteWatch>,
) -> Result<Response, std::convert::Infallible> {
    let started = Instant::now();
    let found = name_from_path(&segment).and_then(|name| match reg.get(&name) {
        Some(m) => Ok((name, m.model.clone())),
        None => Err(MmeError::not_loaded(&name)),
    });
    match found {
        Ok((name, model)) => {
            let log = RequestLog::new(&headers, "POST", ROUTE_INVOKE).with_model(name);
            invoke_model(state, Some(model), log, headers, body, watch).await
        }
        Err(e) => {
            let mut res = e.response();
            super::invocations::settle_unread(&headers, body, &mut res).await;
            let target = headers
                .get("x-amzn-sagemaker-target-model")
                .and_then(|v| v.to_str().ok());
            metrics().request(ROUTE_INVOKE, res.status().as_u16());
            tracing::warn!(
                target: "mmp::request",
                method = "POST", path = ROUTE_INVOKE, status = res.status().as_u16(),
                model = %segment, target_model = target,
                duration_ms = crate::logging::millis(started.elapsed()),
                error = %e, "request failed"
            );
            Ok(res)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_keys_that_fit_one_path_segment() {
        for ok in [
            "a",
            "model-1.tar.gz",
            "8f14e45fceea167a5a36dedd4bea2543",
            "ünï cødé",
        ] {
            assert_eq!(validate_name(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("..", "not a valid name"),
            (".", "not a valid name"),
            ("a/b", "'/'"),
            ("a\\b", "'\\\\'"),
            ("a\nb", "'\\n'"),
            ("a\0b", "'\\0'"),
        ] {
            let e = validate_name(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert!(validate_name(&"x".repeat(MAX_NAME_BYTES)).is_ok());
        assert!(validate_name(&"x".repeat(MAX_NAME_BYTES + 1))
            .unwrap_err()
            .contains("1025 bytes"));
    }

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        for name in ["a", "model&x=1+2", "ünï", "%2F"] {
            let t = encode_token(name);
            assert!(t.bytes().all(|b| b.is_ascii_hexdigit()), "{t}");
            assert_eq!(decode_token(&t).as_deref(), Some(name));
        }
        for bad in ["abc", "zz", "ff"] {
            assert_eq!(decode_token(bad), None, "{bad}");
        }
    }
}
