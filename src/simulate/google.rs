//! Gemini's OpenAI-compatible layer (reference 3.5): `POST {v1,v1beta}/openai/chat/completions`
//! and `.../openai/embeddings`. Answers are those of the OpenAI simulator; what differs is
//! the field list (`fields::GOOGLE_*`) and the error shape, a JSON array wrapping the
//! Google envelope `[{"error":{"code","message","status","details"?}}]`.
//!
//! Sluice points every provider at the simulator's `/v1`, so `{GEMINI_BASE_URL}/openai/...`
//! arrives as `/v1/openai/...`; the real `/v1beta/openai/...` paths are served as well.
//! Auth, `x-sim-fault` (`429 | 500 | slow | flex-429`), `x-sim-latency-ms` and the random
//! fault rates work as on the OpenAI routes.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::request::Parts;
use http::{Method, Response, StatusCode};
use serde_json::json;

use super::body::{Reply, SimBody};
use super::error::{ApiError, Fault};
use super::{
    Meta, SLOW_DELAY, Simulator, chat, common_headers, embeddings, fields, reject_duplicate_keys,
    unix_now,
};

/// An error answered in Google's array-wrapped envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoogleError {
    /// HTTP status (also `error.code`).
    pub status: StatusCode,
    /// `error.message`.
    pub message: Cow<'static, str>,
    /// Whether a `google.rpc.BadRequest` field violation repeats the message in `details`.
    pub field_violation: bool,
    /// Whether `retry-after` / `retry-after-ms` headers are added.
    pub retry_after: bool,
}

impl GoogleError {
    /// 400 for a body field the layer does not know.
    pub fn unknown_field(name: &str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: format!(
                "Invalid JSON payload received. Unknown name \"{name}\": Cannot find field."
            )
            .into(),
            field_violation: true,
            retry_after: false,
        }
    }

    /// `error.status`: the canonical gRPC code name for the HTTP status.
    fn status_name(&self) -> &'static str {
        match self.status.as_u16() {
            400 | 405 | 413 => "INVALID_ARGUMENT",
            401 => "UNAUTHENTICATED",
            403 => "PERMISSION_DENIED",
            404 => "NOT_FOUND",
            409 => "ABORTED",
            429 => "RESOURCE_EXHAUSTED",
            503 => "UNAVAILABLE",
            504 => "DEADLINE_EXCEEDED",
            s if s >= 500 => "INTERNAL",
            _ => "FAILED_PRECONDITION",
        }
    }

    /// The JSON body: a one-element array, as the layer answers.
    pub fn body(&self) -> Vec<u8> {
        let mut error = json!({
            "code": self.status.as_u16(),
            "message": self.message,
            "status": self.status_name(),
        });
        if self.field_violation {
            error["details"] = json!([{
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"description": self.message}],
            }]);
        }
        serde_json::to_vec(&json!([{ "error": error }])).unwrap_or_default()
    }
}

impl From<ApiError> for GoogleError {
    fn from(err: ApiError) -> Self {
        Self {
            status: err.status,
            message: err.message,
            field_violation: false,
            retry_after: err.retry_after,
        }
    }
}

/// Whether `path` belongs to the Google compatibility layer.
pub fn owns(path: &str) -> bool {
    path.starts_with("/v1/openai/") || path.starts_with("/v1beta/openai/")
}

#[derive(Clone, Copy)]
enum Route {
    Chat,
    Embeddings,
}

fn route(method: &Method, path: &str) -> Result<Route, ApiError> {
    let rest = path
        .strip_prefix("/v1/openai/")
        .or_else(|| path.strip_prefix("/v1beta/openai/"));
    let route = match rest {
        Some("chat/completions") => Route::Chat,
        Some("embeddings") => Route::Embeddings,
        _ => return Err(ApiError::not_found(method, path)),
    };
    if *method == Method::POST {
        Ok(route)
    } else {
        Err(ApiError::method_not_allowed(method, path))
    }
}

impl Simulator {
    /// Answers one request below `/v1/openai/` or `/v1beta/openai/`.
    pub(super) async fn google(
        &self,
        parts: &Parts,
        body: &Bytes,
        seq: u64,
        start: Instant,
    ) -> Response<SimBody> {
        match self.google_dispatch(parts, body, seq).await {
            Ok(reply) => self.reply_response(seq, start, reply),
            Err(err) => error_response(seq, start, &err),
        }
    }

    async fn google_dispatch(
        &self,
        parts: &Parts,
        body: &Bytes,
        seq: u64,
    ) -> Result<(Reply, Duration), GoogleError> {
        let (route, fault) = self.admit(parts, body, route).await?;
        reject_duplicate_keys(body)?;
        let allowed = match route {
            Route::Chat => fields::GOOGLE_CHAT,
            Route::Embeddings => fields::GOOGLE_EMBEDDINGS,
        };
        if let Some(name) = fields::unknown(body, allowed) {
            return Err(GoogleError::unknown_field(&name));
        }
        self.random_fault()?;
        let meta = Meta {
            seq,
            created: unix_now(),
            downgrade: fault == Some(Fault::Downgrade),
        };
        let reply = match route {
            Route::Chat => {
                self.flex_fault(body)?;
                chat::handle(self, &meta, body)?
            }
            Route::Embeddings => embeddings::handle(self, &meta, body)?,
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

/// An error response in Google's array-wrapped envelope.
pub fn error_response(seq: u64, start: Instant, err: &GoogleError) -> Response<SimBody> {
    let mut resp = Response::new(SimBody::full(Bytes::from(err.body())));
    *resp.status_mut() = err.status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if err.retry_after {
        h.insert("retry-after", HeaderValue::from_static("1"));
        h.insert("retry-after-ms", HeaderValue::from_static("1000"));
    }
    if err.status == StatusCode::METHOD_NOT_ALLOWED {
        h.insert(http::header::ALLOW, HeaderValue::from_static("POST"));
    }
    common_headers(h, seq, start);
    resp
}
