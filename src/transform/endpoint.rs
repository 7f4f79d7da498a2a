//! A container over HTTP, as Batch Transform talks to it
//! (sagemaker-contract.md §3, "Lifecycle & endpoints"): wait for `GET /ping`
//! to answer 200, ask `GET /execution-parameters` once, then `POST
//! /invocations` with `Content-Type` = the job's ContentType and `Accept` =
//! its Accept, each request bounded by `InvocationsTimeoutInSeconds`.

use std::io::Read;
use std::time::{Duration, Instant};

use crate::media::{ContentType, Format};

use super::engine::{Backend, Response};
use super::error::{Result, TransformError};
use super::http::{Body, Client, Url};
use super::plan::ExecutionParameters;
use super::split::Batch;

/// SageMaker's timeout for one `/ping` (§1, "GET /ping").
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `/execution-parameters` may take.
const PARAMETERS_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest pause between two `/ping`s while waiting.
const PING_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How much of an error answer's body goes into the message.
const ERROR_BODY_CHARS: usize = 300;

/// Wait until `GET /ping` answers 200, at most `within`.
pub fn wait_ready(url: &Url, within: Duration) -> Result<()> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        let deadline = Instant::now() + PING_TIMEOUT;
        let reason = match Client::new(url.clone()).request(
            "GET",
            "/ping",
            &[],
            Body::Empty,
            deadline,
            &mut |_, _| Ok(()),
        ) {
            Ok(h) if h.status == 200 => return Ok(()),
            Ok(h) => format!("GET /ping answered {}", h.status),
            Err(TransformError::Timeout { .. }) => "GET /ping took more than 2 s".to_string(),
            Err(e) => format!("GET /ping: {e}"),
        };
        let waited = start.elapsed();
        if waited >= within {
            return Err(TransformError::Unavailable {
                url: format!("http://{}{}", url.authority, url.base),
                reason: format!(
                    "{reason} (waited {:.1} s, --ping-timeout)",
                    waited.as_secs_f64()
                ),
            });
        }
        std::thread::sleep(pause.min(within - waited));
        pause = (pause * 2).min(PING_BACKOFF_MAX);
    }
}

/// Ask `GET /execution-parameters` once; the answer counts only if it is
/// 200 (as SageMaker and its local mode: anything else means defaults).
pub fn execution_parameters(url: &Url, notes: &mut Vec<String>) -> Option<ExecutionParameters> {
    let mut body = Vec::new();
    let deadline = Instant::now() + PARAMETERS_TIMEOUT;
    let result = Client::new(url.clone()).request(
        "GET",
        "/execution-parameters",
        &[],
        Body::Empty,
        deadline,
        &mut |_, b| {
            body.extend_from_slice(b);
            Ok(())
        },
    );
    match result {
        Ok(h) if h.status == 200 => Some(ExecutionParameters::from_json(&body, notes)),
        Ok(h) => {
            notes.push(format!(
                "GET /execution-parameters answered {}: SageMaker's defaults apply",
                h.status
            ));
            None
        }
        Err(e) => {
            notes.push(format!(
                "GET /execution-parameters failed ({e}): SageMaker's defaults apply"
            ));
            None
        }
    }
}

/// `POST /invocations` to a container.
#[derive(Debug)]
pub struct Endpoint {
    url: Url,
    content_type: Option<String>,
    accept: Option<String>,
    accept_format: Option<Format>,
    timeout: Duration,
    retries: u32,
}

impl Endpoint {
    /// An endpoint at `url` with the job's types, timeout and retries.
    pub fn new(
        url: Url,
        content_type: Option<String>,
        accept: Option<String>,
        accept_format: Option<Format>,
        timeout: Duration,
        retries: u32,
    ) -> Endpoint {
        Endpoint {
            url,
            content_type,
            accept,
            accept_format,
            timeout,
            retries,
        }
    }

    fn headers(&self) -> Vec<(&str, &str)> {
        let mut h = Vec::new();
        if let Some(ct) = &self.content_type {
            h.push(("Content-Type", ct.as_str()));
        }
        if let Some(a) = &self.accept {
            h.push(("Accept", a.as_str()));
        }
        h
    }

    /// The format of a response: its `Content-Type`, else what was asked.
    fn format(&self, content_type: Option<&str>) -> Option<Format> {
        content_type
            .and_then(|ct| ContentType::parse(ct).ok())
            .map(|ct| ct.format)
            .or(self.accept_format)
    }

    /// Send one request; the body pieces go to `sink` only on a 2xx.
    fn post(
        &self,
        client: &mut Client,
        body: Body<'_>,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<Option<Format>> {
        let deadline = Instant::now() + self.timeout;
        let mut error_body = Vec::new();
        let head = client
            .request(
                "POST",
                "/invocations",
                &self.headers(),
                body,
                deadline,
                &mut |head, piece| {
                    if (200..300).contains(&head.status) {
                        sink(piece)
                    } else {
                        if error_body.len() < 4 * ERROR_BODY_CHARS {
                            error_body.extend_from_slice(piece);
                        }
                        Ok(())
                    }
                },
            )
            .map_err(|e| match e {
                TransformError::Timeout { .. } => TransformError::Timeout {
                    secs: self.timeout.as_secs_f64(),
                },
                e => e,
            })?;
        if !(200..300).contains(&head.status) {
            let text = String::from_utf8_lossy(&error_body);
            return Err(TransformError::Status {
                status: head.status,
                body: text.trim().chars().take(ERROR_BODY_CHARS).collect(),
            });
        }
        Ok(self.format(head.content_type.as_deref()))
    }
}

impl Backend for Endpoint {
    type Worker = Client;

    fn worker(&self) -> Client {
        Client::new(self.url.clone())
    }

    fn invoke(&self, client: &mut Client, batch: &Batch, mut body: Vec<u8>) -> Result<Response> {
        // Room for a typical answer (a score per record) without regrowing.
        body.reserve(batch.body.len() / 4);
        let format = self.post(client, Body::Bytes(&batch.body), &mut |b| {
            body.extend_from_slice(b);
            Ok(())
        })?;
        Ok(Response { body, format })
    }

    fn invoke_streamed(
        &self,
        client: &mut Client,
        body: &mut (dyn Read + Send),
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<Option<Format>> {
        self.post(client, Body::Stream(body), sink)
    }

    fn max_retries(&self) -> u32 {
        self.retries
    }

    fn batches_are_requests(&self) -> bool {
        true
    }
}
