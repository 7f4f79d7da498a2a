//! The routes, composed from one small filter per endpoint (warp's
//! `todos.rs` layout); handlers live beside them or in their own file.

use std::convert::Infallible;
use std::sync::Arc;

use http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Reply};

use std::collections::HashMap;

use super::invocations;
use super::listener::WriteWatch;
use super::mme::{self, Registry};
use super::reply::{handle_rejection, json_error};
use super::State;
use crate::metrics::metrics;

/// All routes, with rejections mapped to JSON errors. `/invocations` is
/// tried first: warp tries the branches of an `or` in turn, so the busiest
/// route no longer pays for five failed matches (the `/models` one a future
/// of its own). Which rejection wins when none matches (405 over 404) does
/// not depend on the order.
pub fn routes(state: Arc<State>) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let mme = state.mme.is_some();
    let routes = invocations(state.clone())
        .or(ping(state.clone()))
        .unify()
        .or(execution_parameters(state.clone()))
        .unify()
        .or(metrics_route())
        .unify()
        .or(super::bidi::route(state.clone()))
        .unify()
        .or(models(state))
        .unify()
        .recover(move |err| handle_rejection(err, mme))
        .unify();
    warp::path::full()
        .and(routes)
        .map(|path: warp::path::FullPath, mut res: Response| {
            if res.status() == StatusCode::METHOD_NOT_ALLOWED {
                if let Some(allow) = allowed(path.as_str()) {
                    res.headers_mut()
                        .insert(http::header::ALLOW, http::HeaderValue::from_static(allow));
                }
            }
            res
        })
}

/// The methods a path answers, for a 405's `Allow` (RFC 9110 §15.5.6: a
/// 405 MUST carry it). HEAD wherever GET is (RFC 9110 §9.1).
fn allowed(path: &str) -> Option<&'static str> {
    let path = path.strip_suffix('/').unwrap_or(path);
    Some(match path {
        "/ping" | "/execution-parameters" | "/metrics" => "GET, HEAD",
        "/invocations" => "POST",
        p if p.strip_prefix('/') == Some(super::bidi::PATH) => "GET",
        "/models" => "GET, HEAD, POST",
        _ => {
            let model = path.strip_prefix("/models/")?;
            match model.split_once('/') {
                None => "GET, HEAD, DELETE",
                Some((_, "invoke")) => "POST",
                Some(_) => return None,
            }
        }
    })
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
            // A multi-model endpoint is ready once it is up (AWS DG,
            // multi-model endpoints): models come later through /models.
            let res = if state.model.get().is_some() || state.mme.is_some() {
                StatusCode::OK.into_response()
            } else {
                json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "loading",
                    "the model is still loading".into(),
                )
            };
            counted("/ping", res)
        })
}

/// `GET /execution-parameters`: what Batch Transform should send us.
pub fn execution_parameters(
    state: Arc<State>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path!("execution-parameters")
        .and(warp::get().or(warp::head()).unify())
        .and(with_state(state))
        .map(|state: Arc<State>| {
            let cfg = &state.cfg;
            let params = crate::batch::ExecutionParameters {
                max_concurrent: Some(
                    u32::try_from(cfg.max_concurrent_transforms).unwrap_or(u32::MAX),
                ),
                strategy: Some(cfg.batch_strategy),
                // At most 100: checked when the configuration was read.
                max_payload_mb: Some(cfg.advertised_max_payload_mb as u32),
            };
            let res = warp::reply::json(&params.to_json()).into_response();
            counted("/execution-parameters", res)
        })
}

/// `GET /metrics`: the Prometheus exposition text.
pub fn metrics_route() -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let get = warp::get().or(warp::head()).unify();
    warp::path!("metrics").and(get).map(|| {
        let m = metrics();
        // Count this scrape before rendering, so it sees itself.
        m.request("/metrics", 200);
        let mut res = m.render().into_response();
        res.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        res
    })
}

/// Count a response of a simple route, and log it at debug level (health
/// checks every few seconds would drown the info log).
fn counted(route: &'static str, res: Response) -> Response {
    let status = res.status().as_u16();
    metrics().request(route, status);
    tracing::debug!(target: "mmp::request", method = "GET", path = route, status, "request");
    res
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
        .and(warp::ext::optional::<WriteWatch>())
        .and_then(invoke)
}

/// `POST /invocations`, whether it came through warp or straight from
/// [`Service`].
async fn invoke<S: invocations::Body>(
    state: Arc<State>,
    headers: http::HeaderMap,
    body: S,
    watch: Option<WriteWatch>,
) -> Result<Response, Infallible> {
    if state.mme.is_some() {
        // SageMaker sends a multi-model endpoint's requests to
        // /models/{model_name}/invoke; there is no default model.
        let mut res = json_error(
            StatusCode::NOT_FOUND,
            "multi_model",
            "this is a multi-model endpoint: invoke a loaded model with POST /models/{model_name}/invoke".into(),
        );
        invocations::settle_unread(&headers, body, &mut res).await;
        metrics().request("/invocations", 404);
        return Ok(res);
    }
    invocations::invoke(state, headers, body, watch).await
}

/// The server's service: `POST /invocations` goes straight to its handler
/// with the request's own headers and body, every other request through
/// [`routes`]. Going round warp's filters (matching, a copy of the headers,
/// a boxed body) saves 1.6k instructions of a 1-row request's 35.5k, net of
/// boxing the handler's future (callgrind, one worker); the handler, and so
/// the answer, is the same either way.
#[derive(Clone)]
pub struct Service<R> {
    state: Arc<State>,
    routes: R,
}

/// The request the server's service takes.
type HttpRequest = http::Request<hyper::body::Incoming>;

/// The service for [`super::listener::serve`].
pub fn service(
    state: Arc<State>,
) -> Service<
    impl tower_service::Service<HttpRequest, Response = Response, Error = Infallible, Future: Send>
        + Clone,
> {
    Service {
        routes: warp::service(routes(state.clone())),
        state,
    }
}

impl<R> tower_service::Service<HttpRequest> for Service<R>
where
    R: tower_service::Service<HttpRequest, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = futures::future::Either<
        futures::future::BoxFuture<'static, Result<Response, Infallible>>,
        R::Future,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        self.routes.poll_ready(cx)
    }

    fn call(&mut self, req: HttpRequest) -> Self::Future {
        use futures::future::{Either, FutureExt};
        // The path warp's `path!("invocations")` matches exactly.
        if req.method() == http::Method::POST && req.uri().path() == "/invocations" {
            let (mut parts, body) = req.into_parts();
            let body = http_body_util::BodyDataStream::new(body);
            let watch = parts.extensions.remove::<WriteWatch>();
            Either::Left(invoke(self.state.clone(), parts.headers, body, watch).boxed())
        } else {
            Either::Right(self.routes.call(req))
        }
    }
}

/// The multi-model routes, which exist only on a multi-model endpoint.
fn with_registry(
    state: Arc<State>,
) -> impl Filter<Extract = (Arc<Registry>,), Error = warp::Rejection> + Clone {
    warp::any().and_then(move || {
        let reg = state.mme.clone();
        async move { reg.ok_or_else(warp::reject::not_found) }
    })
}

/// `GET /models`, `POST /models`, `GET|DELETE /models/{model_name}` and
/// `POST /models/{model_name}/invoke` ([`mme`]).
pub fn models(
    state: Arc<State>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let list = warp::path!("models")
        .and(warp::get().or(warp::head()).unify())
        .and(with_registry(state.clone()))
        .and(warp::query::<HashMap<String, String>>())
        .map(|reg: Arc<Registry>, q: HashMap<String, String>| mme::list(&reg, &q));
    let load = warp::path!("models")
        .and(warp::post())
        .and(with_registry(state.clone()))
        .and(warp::body::stream())
        .and_then(mme::load);
    let describe = warp::path!("models" / String)
        .and(warp::get().or(warp::head()).unify())
        .and(with_registry(state.clone()))
        .map(|name: String, reg: Arc<Registry>| mme::describe(&reg, &name));
    let unload = warp::path!("models" / String)
        .and(warp::delete())
        .and(with_registry(state.clone()))
        .map(|name: String, reg: Arc<Registry>| mme::unload(&reg, &name));
    let invoke = warp::path!("models" / String / "invoke")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(with_registry(state.clone()))
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .and(warp::ext::optional::<WriteWatch>())
        .and_then(|name, state, reg, headers, body, watch| {
            mme::invoke(state, reg, name, headers, body, watch)
        });
    // Off a multi-model endpoint every /models request is a plain 404 (not
    // a 405 from a branch whose path matched).
    let enabled = warp::any()
        .and(with_state(state.clone()))
        .and_then(|state: Arc<State>| async move {
            match state.mme {
                Some(_) => Ok(()),
                None => Err(warp::reject::not_found()),
            }
        })
        .untuple_one();
    enabled
        .and(list.or(load).unify())
        .or(describe)
        .unify()
        .or(unload)
        .unify()
        .or(invoke)
        .unify()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Overrides, ServeConfig};
    use crate::error::Error;
    use crate::model::{model_error, Model};
    use crate::record::Rows;
    use std::collections::HashMap;

    /// A model whose every call fails, as a broken user model would.
    struct Broken;

    impl Model for Broken {
        fn num_features(&self) -> Option<usize> {
            Some(2)
        }
        fn predict(&self, _: Rows<'_>, _: &mut Vec<f64>) -> Result<(), Error> {
            Err(model_error("weights are corrupt"))
        }
    }

    /// A model that returns too few predictions.
    struct Short;

    impl Model for Short {
        fn num_features(&self) -> Option<usize> {
            None
        }
        fn predict(&self, _: Rows<'_>, _: &mut Vec<f64>) -> Result<(), Error> {
            Ok(())
        }
    }

    /// A model failing as `Broken` does, or panicking; `offload`: it says it
    /// is expensive, so it runs on the compute pool.
    struct Failing {
        panics: bool,
        offload: bool,
    }

    impl Model for Failing {
        fn num_features(&self) -> Option<usize> {
            Some(2)
        }
        fn predict(&self, rows: Rows<'_>, out: &mut Vec<f64>) -> Result<(), Error> {
            assert!(!self.panics, "a bug in the user's model");
            Broken.predict(rows, out)
        }
        fn offload(&self) -> bool {
            self.offload
        }
    }

    fn state(model: Option<crate::model::SharedModel>) -> Arc<State> {
        state_with(&[], model)
    }

    fn state_with(vars: &[(&str, &str)], model: Option<crate::model::SharedModel>) -> Arc<State> {
        let env: HashMap<&str, &str> = vars.iter().copied().collect();
        let cfg = ServeConfig::from_env(&env, &Overrides::default()).unwrap();
        let state = State::new(cfg).unwrap();
        if let Some(m) = model {
            let _ = state.model.set(m);
        }
        Arc::new(state)
    }

    async fn invoke(state: Arc<State>) -> warp::http::Response<bytes::Bytes> {
        warp::test::request()
            .method("POST")
            .path("/invocations")
            .header("content-type", "text/csv")
            .body("1,2\n")
            .reply(&routes(state))
            .await
    }

    #[tokio::test]
    async fn a_failing_model_is_a_500_with_its_message() {
        let res = invoke(state(Some(Arc::new(Broken)))).await;
        assert_eq!(res.status(), 500);
        let v: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
        assert_eq!(v["error"], "model_error");
        assert_eq!(v["message"], "model failure: weights are corrupt");
    }

    #[tokio::test]
    async fn on_the_compute_pool_a_failing_model_is_a_500() {
        let inline = invoke(state(Some(Arc::new(Broken)))).await;
        let failing = Failing {
            panics: false,
            offload: true,
        };
        let pooled = invoke(state(Some(Arc::new(failing)))).await;
        assert_eq!(pooled.status(), 500);
        assert_eq!(pooled.body(), inline.body());
    }

    /// A user's model that panics (a bug of theirs) answers a 500, inline on
    /// the runtime as on the compute pool, and the next request is served:
    /// inline, the panic used to unwind through the connection, which was
    /// dropped without an answer.
    #[tokio::test]
    async fn a_panicking_model_is_a_500_and_the_server_goes_on() {
        for offload in [false, true] {
            let one_thread = [("MMP_COMPUTE_THREADS", "1")];
            let panics = Failing {
                panics: true,
                offload,
            };
            let s = state_with(&one_thread, Some(Arc::new(panics)));
            for _ in 0..2 {
                let res = invoke(s.clone()).await;
                assert_eq!(res.status(), 500, "offload {offload}");
                let v: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
                assert_eq!(v["error"], "model_error");
                assert_eq!(
                    v["message"],
                    "model failure: predict panicked (see the log)"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_model_returning_too_few_predictions_is_a_500() {
        let res = invoke(state(Some(Arc::new(Short)))).await;
        assert_eq!(res.status(), 500);
        let v: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
        assert_eq!(
            v["message"],
            "model failure: the model returned 0 predictions for 1 records"
        );
    }

    #[tokio::test]
    async fn before_the_model_loads_ping_and_invocations_are_503() {
        let s = state(None);
        let res = warp::test::request()
            .path("/ping")
            .reply(&routes(s.clone()))
            .await;
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers()["retry-after"], "1");
        let res = invoke(s).await;
        assert_eq!(res.status(), 503);
    }

    #[tokio::test]
    async fn wrong_method_is_405() {
        let s = state(Some(Arc::new(Broken)));
        let res = warp::test::request()
            .method("GET")
            .path("/invocations")
            .reply(&routes(s))
            .await;
        assert_eq!(res.status(), 405);
    }
}
