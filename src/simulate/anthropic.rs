//! Anthropic API (reference 2): routing, authentication, the error envelope (2.1), the
//! per-request faults and response headers of every route below `/v1/messages`
//! (`/v1/messages`, `/v1/messages/count_tokens`, the Message Batches API).
//!
//! Every route needs `x-api-key` (or `Authorization: Bearer`; else 401
//! `authentication_error`) and `anthropic-version` (else 400). `x-sim-fault: 429 | 500 |
//! overloaded` answers 429 `rate_limit_error` (with `retry-after`), 500 `api_error` or 529
//! `overloaded_error`; `slow` paces stream events 200 ms apart; `x-sim-latency-ms` and the
//! random rates of [`super::SimConfig`] apply as on the OpenAI side (the rates only to
//! `POST /v1/messages`).

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HOST, HeaderValue};
use http::request::Parts;
use http::{HeaderMap, Method, Response, StatusCode};
use serde_json::json;

use super::anthropic_batch::{self, BatchRoute};
use super::anthropic_count;
use super::anthropic_messages;
use super::body::{Reply, SimBody};
use super::error::ApiError;
use super::{SLOW_DELAY, Simulator, authorized};

/// An error answered in the Anthropic envelope
/// `{"type":"error","error":{"type","message"},"request_id"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnthError {
    /// HTTP status.
    pub status: StatusCode,
    /// `error.type`.
    pub kind: &'static str,
    /// `error.message`.
    pub message: Cow<'static, str>,
}

impl AnthError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
        }
    }

    /// 400 `invalid_request_error`.
    pub fn invalid(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 401 `authentication_error`.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "x-api-key header is required",
        )
    }

    /// 404 `not_found_error`.
    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found_error", message)
    }

    /// 409 `conflict_error` (an operation the batch's state does not allow).
    pub fn conflict(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict_error", message)
    }

    /// 429 `rate_limit_error` (answered with `retry-after: 1`).
    pub fn rate_limited() -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit.",
        )
    }

    /// 500 `api_error`.
    pub fn api_error() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "Internal server error",
        )
    }

    /// 529 `overloaded_error`.
    pub fn overloaded() -> Self {
        Self::new(overloaded_status(), "overloaded_error", "Overloaded")
    }

    /// The same error in the Anthropic vocabulary (type chosen by status, reference 2.1).
    pub fn from_api(err: &ApiError) -> Self {
        let kind = match err.status.as_u16() {
            401 => "authentication_error",
            402 => "billing_error",
            403 => "permission_error",
            404 => "not_found_error",
            409 => "conflict_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            504 => "timeout_error",
            529 => "overloaded_error",
            s if s >= 500 => "api_error",
            _ => "invalid_request_error",
        };
        Self::new(err.status, kind, err.message.clone())
    }

    /// The envelope as a JSON value.
    pub fn envelope(&self, request_id: &str) -> serde_json::Value {
        json!({
            "type": "error",
            "error": {"type": self.kind, "message": self.message},
            "request_id": request_id,
        })
    }

    fn retry_after(&self) -> bool {
        self.status == StatusCode::TOO_MANY_REQUESTS
    }
}

fn overloaded_status() -> StatusCode {
    StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
}

/// Whether `path` belongs to the Anthropic API.
pub fn owns(path: &str) -> bool {
    path == "/v1/messages" || path.starts_with("/v1/messages/")
}

enum Route<'a> {
    Messages,
    CountTokens,
    Batches(BatchRoute<'a>),
}

fn route<'a>(method: &Method, path: &'a str) -> Result<Route<'a>, AnthError> {
    if path == "/v1/messages" {
        return if *method == Method::POST {
            Ok(Route::Messages)
        } else {
            Err(method_not_allowed(method, path))
        };
    }
    if path == "/v1/messages/count_tokens" {
        return if *method == Method::POST {
            Ok(Route::CountTokens)
        } else {
            Err(method_not_allowed(method, path))
        };
    }
    match anthropic_batch::route(method, path) {
        Some(Ok(r)) => Ok(Route::Batches(r)),
        Some(Err(true)) => Err(method_not_allowed(method, path)),
        _ => Err(AnthError::not_found(format!("Not found: {method} {path}"))),
    }
}

fn method_not_allowed(method: &Method, path: &str) -> AnthError {
    AnthError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        format!("Method {method} is not allowed for {path}"),
    )
}

fn authenticated(headers: &HeaderMap) -> bool {
    let key = headers
        .get("x-api-key")
        .is_some_and(|v| v.as_bytes().iter().any(|b| !b.is_ascii_whitespace()));
    key || authorized(headers)
}

/// A per-request fault of the `x-sim-fault` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    RateLimit,
    Server,
    Overloaded,
    Slow,
}

impl Fault {
    fn parse(headers: &HeaderMap) -> Option<Self> {
        match headers.get("x-sim-fault")?.as_bytes() {
            b"429" => Some(Self::RateLimit),
            b"500" => Some(Self::Server),
            b"overloaded" | b"529" => Some(Self::Overloaded),
            b"slow" => Some(Self::Slow),
            _ => None,
        }
    }

    fn error(self) -> Option<AnthError> {
        match self {
            Self::RateLimit => Some(AnthError::rate_limited()),
            Self::Server => Some(AnthError::api_error()),
            Self::Overloaded => Some(AnthError::overloaded()),
            Self::Slow => None,
        }
    }
}

/// The host clients reached us by (for `results_url`).
fn host(parts: &Parts) -> String {
    parts
        .headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parts.uri.authority().map(|a| a.as_str().to_owned()))
        .unwrap_or_else(|| "localhost".to_owned())
}

impl Simulator {
    /// Answers one request below `/v1/messages`.
    pub(super) async fn anthropic(
        &self,
        parts: &Parts,
        body: &Bytes,
        seq: u64,
    ) -> Response<SimBody> {
        match self.anthropic_dispatch(parts, body, seq).await {
            Ok((reply, delay)) => reply_response(seq, reply, delay),
            Err(err) => error_response(seq, &err),
        }
    }

    async fn anthropic_dispatch(
        &self,
        parts: &Parts,
        body: &Bytes,
        seq: u64,
    ) -> Result<(Reply, Duration), AnthError> {
        let headers = &parts.headers;
        let fault = Fault::parse(headers);
        let latency = self.latency(headers);
        let routed = route(&parts.method, parts.uri.path()).and_then(|r| {
            if !authenticated(headers) {
                Err(AnthError::unauthorized())
            } else if headers.get("anthropic-version").is_none() {
                Err(AnthError::invalid("anthropic-version: header is required"))
            } else {
                Ok(r)
            }
        });
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let route = routed?;
        if let Some(err) = fault.and_then(Fault::error) {
            return Err(err);
        }
        let reply = match route {
            Route::Messages => {
                self.random_fault().map_err(|e| match e.status.as_u16() {
                    429 => AnthError::rate_limited(),
                    _ => AnthError::api_error(),
                })?;
                anthropic_messages::handle(self, body, seq)?
            }
            Route::CountTokens => anthropic_count::handle(body)?,
            Route::Batches(r) => {
                anthropic_batch::handle(self, r, parts.uri.query(), body, seq, &host(parts))?
            }
        };
        let slow = fault == Some(Fault::Slow);
        if slow && matches!(reply, Reply::Json(_)) {
            tokio::time::sleep(SLOW_DELAY).await;
        }
        let delay = if slow {
            SLOW_DELAY
        } else {
            self.config.stream_chunk_delay
        };
        Ok((reply, delay))
    }
}

static RATE_HEADERS: [(&str, &str); 4] = [
    ("anthropic-ratelimit-requests-limit", "4000"),
    ("anthropic-ratelimit-requests-remaining", "3999"),
    ("anthropic-ratelimit-tokens-limit", "2000000"),
    ("anthropic-ratelimit-tokens-remaining", "1999000"),
];

fn common_headers(h: &mut HeaderMap, seq: u64) {
    if let Ok(v) = HeaderValue::try_from(format!("req_sim{seq}")) {
        h.insert("request-id", v);
    }
    for (name, value) in RATE_HEADERS {
        h.insert(name, HeaderValue::from_static(value));
    }
}

fn reply_response(seq: u64, reply: Reply, delay: Duration) -> Response<SimBody> {
    let (body, content_type) = match reply {
        Reply::Json(bytes) => (SimBody::full(bytes), "application/json"),
        Reply::Sse(frames) => (SimBody::frames(frames, delay), "text/event-stream"),
        Reply::Raw(bytes) => (SimBody::full(bytes), "application/x-jsonl"),
        Reply::Typed(bytes, media) => (SimBody::full(bytes), media),
    };
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if content_type == "text/event-stream" {
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    common_headers(h, seq);
    resp
}

/// An error response in the Anthropic envelope.
pub fn error_response(seq: u64, err: &AnthError) -> Response<SimBody> {
    let request_id = format!("req_sim{seq}");
    let body = serde_json::to_vec(&err.envelope(&request_id)).unwrap_or_default();
    let mut resp = Response::new(SimBody::full(Bytes::from(body)));
    *resp.status_mut() = err.status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if err.retry_after() {
        h.insert("retry-after", HeaderValue::from_static("1"));
        h.insert("retry-after-ms", HeaderValue::from_static("1000"));
    }
    let retry = err.status == StatusCode::TOO_MANY_REQUESTS || err.status.is_server_error();
    h.insert(
        "x-should-retry",
        HeaderValue::from_static(if retry { "true" } else { "false" }),
    );
    if err.status == StatusCode::METHOD_NOT_ALLOWED {
        h.insert(
            http::header::ALLOW,
            HeaderValue::from_static("GET, POST, DELETE"),
        );
    }
    common_headers(h, seq);
    resp
}
