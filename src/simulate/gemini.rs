//! Google's native Gemini API (reference 3.1–3.4, checklist 3.7 items 1–5): routing,
//! authentication, the Google error envelope, service tiers and `generateContent` /
//! `streamGenerateContent`. Reading requests and generating answers (shared with Batch
//! Mode) is `gemini_content.rs`, the File API `gemini_files.rs`, Batch Mode
//! `gemini_batch.rs`.
//!
//! Routes, each below `/v1beta/` and, because Sluice points every provider at the
//! simulator's `/v1`, also below `/v1/`:
//!
//! * `POST models/{model}:generateContent`, `POST models/{model}:streamGenerateContent`
//!   (`?alt=sse`: `data: <json>\r\n\r\n` events, no `[DONE]`; without it one JSON array);
//! * `POST models/{model}:batchGenerateContent`, `GET batches`, `GET|DELETE batches/{id}`,
//!   `POST batches/{id}:cancel`;
//! * `POST /upload/{v1beta,v1}/files` (resumable), `GET files`, `GET|DELETE files/{id}`,
//!   `GET files/{id}:download?alt=media` and `GET /download/{v1beta,v1}/files/{id}:download`.
//!
//! Below `/v1/`, `files…` and `batches…` are also OpenAI paths: a request goes to Gemini
//! when its last path segment has a `:method` or it carries a Google key
//! (`x-goog-api-key` or `?key=`), else to the OpenAI simulator. `models/{m}:{method}` is
//! always Gemini.
//!
//! Auth: `x-goog-api-key`, else `?key=`; a missing or blank key (the only key google.rs
//! refuses) answers 400 `INVALID_ARGUMENT` with an `ErrorInfo` of reason `API_KEY_INVALID`.
//! Upload session URLs need no key (the URL names the session, reference 3.3). Every error
//! is the Google envelope `{"error":{"code","message","status","details"?}}`, never
//! array-wrapped (that is the OpenAI-compatible layer, google.rs).
//!
//! Models: any `gemini-*` or `gemma-*` id (with or without `models/`) except embedding
//! models; others answer 404 `NOT_FOUND`. Request bodies are ProtoJSON: both camelCase and
//! snake_case names are accepted (both spellings of one field → 400), `null` means
//! absent, unknown names → 400 `Unknown name "x" at '…': Cannot find field.`, repeated keys
//! → 400. Answers are camelCase with zero-valued fields omitted.
//!
//! Answers: the text of chat.rs (`Simulated answer to: <last user text>`), cut to
//! `generationConfig.maxOutputTokens` (finishReason `MAX_TOKENS`, else `STOP`), repeated for
//! `candidateCount` (1–8). Tools are accepted and counted as prompt but never called.
//! `thinkingConfig.thinkingBudget: N > 0` reports `thoughtsTokenCount: N` (the whole budget
//! is "used"). Token counts: `ceil(bytes / 4)` of every text part (other parts: of their
//! canonical JSON), plus the tools. Implicit caching (reference 3.1, 5.10) with cache.rs:
//! prefixes are the tools, then `systemInstruction`, then each content; a repeated prefix of
//! at least [`GeminiConfig::cache_min_tokens`] (2.x models) or
//! [`GeminiConfig::cache_min_tokens_v3`] (later models) is reported in
//! `cachedContentTokenCount` (also included in `promptTokenCount`) and
//! `cacheTokensDetails`.
//!
//! Tiers (reference 3.2): `service_tier` / `serviceTier` = `standard | flex | priority`
//! (`unspecified` = standard). The served tier is echoed in the `x-gemini-service-tier`
//! header of every `generateContent` answer and in `usageMetadata.serviceTier`
//! (lower case). Flex waits [`GeminiConfig::flex_delay`] holding one of
//! [`GeminiConfig::flex_capacity`] slots; with none free, a draw under
//! [`GeminiConfig::flex_503_rate`] or `x-sim-fault: flex-503` it answers 503 `UNAVAILABLE`
//! with [`GeminiConfig::flex_503_message`], and it is never served at another tier. A
//! Flex delay longer than the request's `X-Server-Timeout` (seconds; default 600) answers
//! 504 `DEADLINE_EXCEEDED` once that timeout has passed. Rate
//! limits are 429 `RESOURCE_EXHAUSTED` for every tier. Priority is served as `priority`
//! unless downgraded (`x-sim-fault: downgrade` or [`GeminiConfig::priority_downgrade_rate`]),
//! then as `standard`.
//!
//! Per-request faults (`x-sim-fault`, every native route): `429` (`RESOURCE_EXHAUSTED` with
//! `QuotaFailure` and `RetryInfo` details, no `retry-after` header), `500` (`INTERNAL`),
//! `503` (`UNAVAILABLE`, overloaded), `504` (`DEADLINE_EXCEEDED`), `flex-503` (flex
//! `generateContent` requests only), `downgrade`, `slow` (stream events 200 ms apart, JSON
//! answers 200 ms late); `x-sim-latency-ms` and [`super::SimConfig::latency`] as elsewhere;
//! [`super::SimConfig::error_429_rate`] / `error_500_rate` on `generateContent` and
//! `streamGenerateContent` only.
//!
//! UNCONFIRMED points, decided on the strict side (a gateway relying on them fails a test):
//! served Priority reports `priority`; `SERVICE_TIER_FLEX`-style values are refused (400);
//! `cachedContent` names are refused (403 `PERMISSION_DENIED`, no explicit caches exist
//! here); Batch Mode is in `gemini_batch.rs`, files in `gemini_files.rs`.

use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue};
use http::request::Parts;
use http::{HeaderMap, Method, Response, StatusCode};
use serde_json::{Value, json};

use super::body::SimBody;
use super::error::{ApiError, Rng, splitmix};
use super::files::query_params;
use super::gemini_batch::{self, BatchRoute, BatchStore};
use super::gemini_content::{
    Tier, generate, known_model, model_not_found, parse_body, parse_request,
};
use super::gemini_files::{self, FileRoute, FileStore};
use super::{SLOW_DELAY, Simulator};

/// Behaviour of the native Gemini API (a part of [`super::SimConfig`]).
#[derive(Debug, Clone)]
pub struct GeminiConfig {
    /// Implicit-cache minimum of Gemini 1.x / 2.x models in tokens (default 2048,
    /// reference 5.10; an older doc said 1024).
    pub cache_min_tokens: u64,
    /// Implicit-cache minimum of Gemini 3 and later models (default 4096).
    pub cache_min_tokens_v3: u64,
    /// How long a Flex request waits before it is answered (default 0; the real target
    /// is 1–15 minutes).
    pub flex_delay: Duration,
    /// Most Flex requests in flight (waiting out `flex_delay`); one more answers 503
    /// `UNAVAILABLE` (default `None`: unlimited).
    pub flex_capacity: Option<usize>,
    /// Fraction of Flex requests answered 503 `UNAVAILABLE` (default 0; deterministic from
    /// [`super::SimConfig::seed`]).
    pub flex_503_rate: f64,
    /// `error.message` of a Flex 503 (the real text is UNCONFIRMED).
    pub flex_503_message: String,
    /// Fraction of Priority requests served (and reported) as `standard` (default 0).
    pub priority_downgrade_rate: f64,
    /// Lifetime of uploaded files (default 48 h).
    pub file_ttl: Duration,
    /// Largest file (default 2 GiB).
    pub file_max_bytes: u64,
    /// Creation to `BATCH_STATE_SUCCEEDED` (default 2 s; 0 = done at the first read);
    /// `BATCH_STATE_PENDING` for the first tenth, then `BATCH_STATE_RUNNING`.
    pub batch_turnaround: Duration,
    /// A batch still pending or running this long after creation is
    /// `BATCH_STATE_EXPIRED`, without output (default 48 h).
    pub batch_expiry: Duration,
    /// Most unfinished batches; creating one more answers 429 (default 100).
    pub batch_max_concurrent: usize,
    /// Most prompt tokens of unfinished batches per model, the new one included; more
    /// answers 429 (default 3,000,000: Gemini 2.5 Flash, Tier 1).
    pub batch_enqueued_tokens: u64,
    /// Largest create body of an inline batch in bytes (default 20 MiB).
    pub batch_inline_max_bytes: usize,
    /// Report batch states with the SDK's `JOB_STATE_*` names instead of the wire's
    /// `BATCH_STATE_*` (default false), to test that a client accepts both.
    pub job_state_names: bool,
}

impl Default for GeminiConfig {
    fn default() -> Self {
        Self {
            cache_min_tokens: 2048,
            cache_min_tokens_v3: 4096,
            flex_delay: Duration::ZERO,
            flex_capacity: None,
            flex_503_rate: 0.0,
            flex_503_message:
                "The service is currently at capacity for Flex requests. Please retry later."
                    .to_owned(),
            priority_downgrade_rate: 0.0,
            file_ttl: Duration::from_secs(48 * 3600),
            file_max_bytes: 2 * 1024 * 1024 * 1024,
            batch_turnaround: Duration::from_secs(2),
            batch_expiry: Duration::from_secs(48 * 3600),
            batch_max_concurrent: 100,
            batch_enqueued_tokens: 3_000_000,
            batch_inline_max_bytes: 20 * 1024 * 1024,
            job_state_names: false,
        }
    }
}

/// Simulator state of the native Gemini API.
#[derive(Debug)]
pub struct GeminiState {
    pub(super) files: FileStore,
    pub(super) batches: BatchStore,
    flex_rng: Rng,
    priority_rng: Rng,
    flex_in_flight: AtomicUsize,
    /// Per-instance salt of batch ids.
    pub(super) salt: u64,
}

impl GeminiState {
    /// Fresh state; the RNGs derive from `seed`, ids from `tag`.
    pub fn new(seed: u64, tag: &str) -> Self {
        let salt = tag
            .bytes()
            .fold(0xC0FF_EE00_u64, |h, b| splitmix(h ^ u64::from(b)));
        Self {
            files: FileStore::default(),
            batches: BatchStore::default(),
            flex_rng: Rng::new(splitmix(seed ^ 0x6E31)),
            priority_rng: Rng::new(splitmix(seed ^ 0x9A17)),
            flex_in_flight: AtomicUsize::new(0),
            salt,
        }
    }
}

/// An error in the Google envelope `{"error":{"code","message","status","details"?}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct GemError {
    /// HTTP status (also `error.code`).
    pub status: StatusCode,
    /// `error.status`: the canonical code name.
    pub code_name: &'static str,
    /// `error.message`.
    pub message: Cow<'static, str>,
    /// `error.details`.
    pub details: Option<Value>,
    /// Whether the body could not be parsed as the message type (unknown name, wrong
    /// type): such an inline batch request fails the whole create call.
    pub parse: bool,
}

impl GemError {
    fn new(
        status: StatusCode,
        code_name: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code_name,
            message: message.into(),
            details: None,
            parse: false,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 400 `INVALID_ARGUMENT`.
    pub fn invalid(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
    }

    /// 400 `INVALID_ARGUMENT` for a body that does not parse as the message type.
    pub fn unparsable(message: impl Into<Cow<'static, str>>, field: Option<&str>) -> Self {
        let message = message.into();
        let mut violation = json!({"description": message});
        if let Some(f) = field.filter(|f| !f.is_empty()) {
            violation["field"] = json!(f);
        }
        let mut e = Self::invalid(message).with_details(json!([{
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [violation],
        }]));
        e.parse = true;
        e
    }

    /// 400 for a field name the message type does not have.
    pub fn unknown_name(name: &str, at: &str) -> Self {
        let message = if at.is_empty() {
            format!("Invalid JSON payload received. Unknown name \"{name}\": Cannot find field.")
        } else {
            format!(
                "Invalid JSON payload received. Unknown name \"{name}\" at '{at}': Cannot find field."
            )
        };
        Self::unparsable(message, Some(at))
    }

    /// 400 for a value of the wrong type.
    pub fn invalid_value(at: &str, kind: &str, value: &Value) -> Self {
        Self::unparsable(
            format!("Invalid value at '{at}' ({kind}), {value}"),
            Some(at),
        )
    }

    /// 400 `INVALID_ARGUMENT` / `API_KEY_INVALID` for a missing or blank key.
    pub fn bad_key() -> Self {
        Self::invalid("API key not valid. Please pass a valid API key.").with_details(json!([
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo",
             "reason": "API_KEY_INVALID",
             "domain": "googleapis.com",
             "metadata": {"service": "generativelanguage.googleapis.com"}},
            {"@type": "type.googleapis.com/google.rpc.LocalizedMessage",
             "locale": "en-US",
             "message": "API key not valid. Please pass a valid API key."},
        ]))
    }

    /// 400 `FAILED_PRECONDITION`.
    pub fn failed_precondition(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "FAILED_PRECONDITION", message)
    }

    /// 403 `PERMISSION_DENIED`.
    pub fn permission_denied(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "PERMISSION_DENIED", message)
    }

    /// 404 `NOT_FOUND`.
    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    /// 409 `ALREADY_EXISTS`.
    pub fn already_exists(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::CONFLICT, "ALREADY_EXISTS", message)
    }

    /// 429 `RESOURCE_EXHAUSTED` with the `QuotaFailure` and `RetryInfo` details of
    /// reference 3.1.
    pub fn rate_limited(model: Option<&str>) -> Self {
        let mut violation = json!({
            "quotaMetric": "generativelanguage.googleapis.com/generate_content_paid_tier_input_token_count",
            "quotaId": "GenerateContentPaidTierInputTokensPerModelPerMinute",
        });
        if let Some(m) = model {
            violation["quotaDimensions"] = json!({"model": m, "location": "global"});
        }
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RESOURCE_EXHAUSTED",
            "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
        )
        .with_details(json!([
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"},
        ]))
    }

    /// 429 `RESOURCE_EXHAUSTED` on batch creation (wording and quota ids illustrative).
    pub fn batch_quota(message: String, quota_id: &str) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED", message).with_details(
            json!([{"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [{"quotaId": quota_id}]}]),
        )
    }

    /// 500 `INTERNAL`.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
        )
    }

    /// 503 `UNAVAILABLE` (overloaded).
    pub fn overloaded() -> Self {
        Self::unavailable("The model is overloaded. Please try again later.")
    }

    /// 503 `UNAVAILABLE` with `message`.
    pub fn unavailable(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", message)
    }

    /// 504 `DEADLINE_EXCEEDED`.
    pub fn deadline() -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "DEADLINE_EXCEEDED",
            "Deadline expired before operation could complete.",
        )
    }

    /// The same error from the OpenAI side (request reading, duplicate keys, random
    /// faults); `model` names the quota of a 429.
    pub fn from_api(err: &ApiError, model: Option<&str>) -> Self {
        match err.status.as_u16() {
            413 => Self::invalid(format!(
                "Request payload size exceeds the limit: {} bytes.",
                super::MAX_BODY_BYTES
            )),
            429 => Self::rate_limited(model),
            s if s >= 500 => Self::internal(),
            _ => Self::unparsable(
                format!("Invalid JSON payload received. {}", err.message),
                None,
            ),
        }
    }

    /// The gRPC numeric code of `code_name` (for `google.rpc.Status` objects).
    pub fn grpc_code(&self) -> u16 {
        grpc_code(self.code_name)
    }

    /// This error as a `google.rpc.Status` (`{code, message}`, gRPC numbering), as batch
    /// items carry it.
    pub fn rpc_status(&self) -> Value {
        json!({"code": self.grpc_code(), "message": self.message})
    }

    /// The JSON body.
    pub fn body(&self) -> Vec<u8> {
        let mut error = json!({
            "code": self.status.as_u16(),
            "message": self.message,
            "status": self.code_name,
        });
        if let Some(d) = &self.details {
            error["details"] = d.clone();
        }
        serde_json::to_vec(&json!({ "error": error })).unwrap_or_default()
    }
}

impl From<ApiError> for GemError {
    fn from(err: ApiError) -> Self {
        Self::from_api(&err, None)
    }
}

/// The gRPC numeric code of a canonical code name.
pub fn grpc_code(name: &str) -> u16 {
    match name {
        "CANCELLED" => 1,
        "UNKNOWN" => 2,
        "INVALID_ARGUMENT" => 3,
        "DEADLINE_EXCEEDED" => 4,
        "NOT_FOUND" => 5,
        "ALREADY_EXISTS" => 6,
        "PERMISSION_DENIED" => 7,
        "RESOURCE_EXHAUSTED" => 8,
        "FAILED_PRECONDITION" => 9,
        "ABORTED" => 10,
        "UNAVAILABLE" => 14,
        "UNAUTHENTICATED" => 16,
        _ => 13,
    }
}

// ---------------------------------------------------------------------------------------
// Routing, auth and faults.

/// Gemini methods on `models/{model}`.
const MODEL_METHODS: [&str; 3] = [
    "generateContent",
    "streamGenerateContent",
    "batchGenerateContent",
];

/// Whether `path` is a resumable-upload path (it gets the large body limit).
pub fn is_upload(path: &str) -> bool {
    path == "/upload/v1beta/files" || path == "/upload/v1/files"
}

/// Whether `parts` carries a Google API key, valid or not.
fn has_google_key(parts: &Parts) -> bool {
    parts.headers.contains_key("x-goog-api-key")
        || query_params(parts.uri.query())
            .iter()
            .any(|(k, _)| k == "key")
}

/// Whether the request is for the native Gemini API (see the module comment).
pub fn owns(parts: &Parts) -> bool {
    let path = parts.uri.path();
    if [
        "/upload/v1beta/",
        "/upload/v1/",
        "/download/v1beta/",
        "/download/v1/",
    ]
    .iter()
    .any(|p| path.starts_with(p))
    {
        return true;
    }
    if let Some(rest) = path.strip_prefix("/v1beta/") {
        return !rest.starts_with("openai/");
    }
    let Some(rest) = path.strip_prefix("/v1/") else {
        return false;
    };
    if rest.starts_with("models/") {
        return rest
            .rsplit_once(':')
            .is_some_and(|(_, m)| MODEL_METHODS.contains(&m));
    }
    let ours = ["files", "batches"].iter().any(|p| {
        rest == *p
            || rest
                .strip_prefix(p)
                .is_some_and(|r| r.starts_with('/') || r.starts_with('?'))
    });
    ours && (rest.rsplit('/').next().is_some_and(|s| s.contains(':')) || has_google_key(parts))
}

/// How a key is presented: `x-goog-api-key`, else `?key=`.
fn key_ok(parts: &Parts) -> bool {
    let blank = |v: &[u8]| v.iter().all(u8::is_ascii_whitespace);
    if let Some(v) = parts.headers.get("x-goog-api-key") {
        return !blank(v.as_bytes());
    }
    query_params(parts.uri.query())
        .iter()
        .find(|(k, _)| k == "key")
        .is_some_and(|(_, v)| !blank(v.as_bytes()))
}

enum Route<'a> {
    Generate {
        model: &'a str,
        stream: bool,
        version: &'a str,
    },
    BatchCreate {
        model: &'a str,
        version: &'a str,
    },
    Files(FileRoute),
    Batches(BatchRoute<'a>),
}

impl Route<'_> {
    fn needs_key(&self) -> bool {
        !matches!(self, Route::Files(FileRoute::Chunk(_)))
    }
}

fn not_found(method: &Method, path: &str) -> GemError {
    GemError::not_found(format!(
        "The requested URL {path} was not found on this server ({method})."
    ))
}

fn route<'a>(method: &Method, path: &'a str, query: Option<&str>) -> Result<Route<'a>, GemError> {
    let miss = || not_found(method, path);
    for (prefix, version) in [("/upload/v1beta/", "v1beta"), ("/upload/v1/", "v1")] {
        if let Some(rest) = path.strip_prefix(prefix) {
            if rest != "files" || *method != Method::POST {
                return Err(miss());
            }
            let upload_id = query_params(query)
                .into_iter()
                .find(|(k, _)| k == "upload_id")
                .map(|(_, v)| v);
            return Ok(Route::Files(match upload_id {
                Some(id) => FileRoute::Chunk(id),
                None => FileRoute::Start(version),
            }));
        }
    }
    for prefix in ["/download/v1beta/files/", "/download/v1/files/"] {
        if let Some(rest) = path.strip_prefix(prefix) {
            return match rest.strip_suffix(":download") {
                Some(id) if !id.is_empty() && *method == Method::GET => {
                    Ok(Route::Files(FileRoute::Download(id.to_owned())))
                }
                _ => Err(miss()),
            };
        }
    }
    let (rest, version) = match path.strip_prefix("/v1beta/") {
        Some(r) => (r, "v1beta"),
        None => (path.strip_prefix("/v1/").ok_or_else(miss)?, "v1"),
    };
    if let Some(target) = rest.strip_prefix("models/") {
        let (model, verb) = target.rsplit_once(':').ok_or_else(miss)?;
        if model.is_empty() || model.contains('/') || *method != Method::POST {
            return Err(miss());
        }
        return match verb {
            "generateContent" => Ok(Route::Generate {
                model,
                stream: false,
                version,
            }),
            "streamGenerateContent" => Ok(Route::Generate {
                model,
                stream: true,
                version,
            }),
            "batchGenerateContent" => Ok(Route::BatchCreate { model, version }),
            _ => Err(miss()),
        };
    }
    if let Some(r) = gemini_files::route(method, rest) {
        return r.map(Route::Files).ok_or_else(miss);
    }
    if let Some(r) = gemini_batch::route(method, rest) {
        return r.map(Route::Batches).ok_or_else(miss);
    }
    Err(miss())
}

/// A per-request fault of the `x-sim-fault` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    RateLimit,
    Server,
    Overloaded,
    Deadline,
    FlexUnavailable,
    Downgrade,
    Slow,
}

impl Fault {
    fn parse(headers: &HeaderMap) -> Option<Self> {
        match headers.get("x-sim-fault")?.as_bytes() {
            b"429" => Some(Self::RateLimit),
            b"500" => Some(Self::Server),
            b"503" => Some(Self::Overloaded),
            b"504" => Some(Self::Deadline),
            b"flex-503" => Some(Self::FlexUnavailable),
            b"downgrade" => Some(Self::Downgrade),
            b"slow" => Some(Self::Slow),
            _ => None,
        }
    }

    fn error(self) -> Option<GemError> {
        match self {
            Self::RateLimit => Some(GemError::rate_limited(None)),
            Self::Server => Some(GemError::internal()),
            Self::Overloaded => Some(GemError::overloaded()),
            Self::Deadline => Some(GemError::deadline()),
            Self::FlexUnavailable | Self::Downgrade | Self::Slow => None,
        }
    }
}

/// How long the server works on a request without `X-Server-Timeout` (reference 3.1).
const DEFAULT_SERVER_TIMEOUT: Duration = Duration::from_secs(600);

/// `X-Server-Timeout` (seconds), else the default of 600 s.
fn server_timeout(headers: &HeaderMap) -> Duration {
    headers
        .get("x-server-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(DEFAULT_SERVER_TIMEOUT, Duration::from_secs_f64)
}

/// One taken Flex capacity slot, given back on drop.
struct FlexSlot<'a>(&'a AtomicUsize);

impl Drop for FlexSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The host clients reached us by (for session and file URLs).
pub fn host(parts: &Parts) -> String {
    parts
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parts.uri.authority().map(|a| a.as_str().to_owned()))
        .unwrap_or_else(|| "localhost".to_owned())
}

/// A JSON answer.
pub fn json_response(value: &Value) -> Response<SimBody> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = Response::new(SimBody::full(Bytes::from(body)));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    resp
}

/// An error answer in the Google envelope.
pub fn error_response(err: &GemError) -> Response<SimBody> {
    let mut resp = Response::new(SimBody::full(Bytes::from(err.body())));
    *resp.status_mut() = err.status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    resp
}

/// `data: <json>\r\n\r\n`, as recorded Gemini streams frame their events.
fn sse_event(value: &Value) -> Bytes {
    let mut out = b"data: ".to_vec();
    out.extend_from_slice(&serde_json::to_vec(value).unwrap_or_default());
    out.extend_from_slice(b"\r\n\r\n");
    Bytes::from(out)
}

impl Simulator {
    /// Answers one request of the native Gemini API.
    pub(super) async fn gemini(
        &self,
        parts: &Parts,
        body: &Bytes,
        seq: u64,
        start: Instant,
    ) -> Response<SimBody> {
        let mut resp = match self.gemini_dispatch(parts, body, seq).await {
            Ok(resp) => resp,
            Err(err) => error_response(&err),
        };
        let ms = start.elapsed().as_millis();
        if let Ok(v) = HeaderValue::try_from(format!("gfet4t7; dur={ms}")) {
            resp.headers_mut()
                .insert(HeaderName::from_static("server-timing"), v);
        }
        resp
    }

    async fn gemini_dispatch(
        &self,
        parts: &Parts,
        body: &Bytes,
        seq: u64,
    ) -> Result<Response<SimBody>, GemError> {
        let headers = &parts.headers;
        let fault = Fault::parse(headers);
        let latency = self.latency(headers);
        let path = parts.uri.path();
        let routed = route(&parts.method, path, parts.uri.query()).and_then(|r| {
            if r.needs_key() && !key_ok(parts) {
                Err(GemError::bad_key())
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
        let resp = match route {
            Route::Generate {
                model,
                stream,
                version,
            } => {
                let method = if stream {
                    "streamGenerateContent"
                } else {
                    "generateContent"
                };
                if !known_model(model) {
                    return Err(model_not_found(model, version, method));
                }
                let sse = query_params(parts.uri.query())
                    .iter()
                    .any(|(k, v)| k == "alt" && v == "sse");
                let patience = server_timeout(headers);
                return self
                    .gemini_generate(model, stream.then_some(sse), body, (fault, patience), seq)
                    .await;
            }
            Route::BatchCreate { model, version } => {
                if !known_model(model) {
                    return Err(model_not_found(model, version, "batchGenerateContent"));
                }
                gemini_batch::create(self, model, body, seq)?
            }
            Route::Files(r) => gemini_files::handle(self, r, parts, body, seq)?,
            Route::Batches(r) => gemini_batch::handle(self, r, parts.uri.query())?,
        };
        if fault == Some(Fault::Slow) {
            tokio::time::sleep(SLOW_DELAY).await;
        }
        Ok(resp)
    }

    /// Vertex AI's online `generateContent` / `streamGenerateContent` for a publisher
    /// model (the caller's OAuth token already checked): the same answers as the Gemini
    /// API's, faults and tiers included. A Vertex model id is never `models/...`.
    pub(super) async fn vertex_generate(
        &self,
        parts: &Parts,
        model: &str,
        stream: bool,
        body: &[u8],
        seq: u64,
    ) -> Result<Response<SimBody>, GemError> {
        let method = if stream {
            "streamGenerateContent"
        } else {
            "generateContent"
        };
        if !known_model(model) || model.starts_with("models/") {
            return Err(GemError::not_found(format!(
                "Publisher Model `publishers/google/models/{model}` was not found or your project does not have access to it ({method})."
            )));
        }
        let fault = Fault::parse(&parts.headers);
        if let Some(err) = fault.and_then(Fault::error) {
            return Err(err);
        }
        let sse = query_params(parts.uri.query())
            .iter()
            .any(|(k, v)| k == "alt" && v == "sse");
        let patience = server_timeout(&parts.headers);
        self.gemini_generate(model, stream.then_some(sse), body, (fault, patience), seq)
            .await
    }

    /// `generateContent` (`stream: None`) or `streamGenerateContent` (`Some(sse)`).
    async fn gemini_generate(
        &self,
        model: &str,
        stream: Option<bool>,
        body: &[u8],
        (fault, patience): (Option<Fault>, Duration),
        seq: u64,
    ) -> Result<Response<SimBody>, GemError> {
        let value = parse_body(body)?;
        let req = parse_request(&value, "")?;
        self.random_fault()
            .map_err(|e| GemError::from_api(&e, Some(model)))?;
        let config = &self.config.gemini;
        let served = match req.tier.unwrap_or(Tier::Standard) {
            Tier::Flex => {
                let slot = self.flex_admit(fault)?;
                if config.flex_delay > patience {
                    tokio::time::sleep(patience).await;
                    return Err(GemError::deadline());
                }
                if !config.flex_delay.is_zero() {
                    tokio::time::sleep(config.flex_delay).await;
                }
                drop(slot);
                Tier::Flex
            }
            Tier::Priority => {
                let rate = config.priority_downgrade_rate;
                let drawn = rate > 0.0 && self.gemini.priority_rng.next_f64() < rate;
                if fault == Some(Fault::Downgrade) || drawn {
                    Tier::Standard
                } else {
                    Tier::Priority
                }
            }
            Tier::Standard => Tier::Standard,
        };
        let generated = generate(self, model, &req, seq)?;
        let slow = fault == Some(Fault::Slow);
        let mut resp = match stream {
            None => {
                if slow {
                    tokio::time::sleep(SLOW_DELAY).await;
                }
                json_response(&generated.response(Some(served)))
            }
            Some(false) => {
                if slow {
                    tokio::time::sleep(SLOW_DELAY).await;
                }
                json_response(&Value::Array(generated.chunks(Some(served))))
            }
            Some(true) => {
                let frames: Vec<Bytes> = generated
                    .chunks(Some(served))
                    .iter()
                    .map(sse_event)
                    .collect();
                let delay = if slow {
                    SLOW_DELAY
                } else {
                    self.config.stream_chunk_delay
                };
                let mut resp = Response::new(SimBody::frames(frames, delay));
                let h = resp.headers_mut();
                h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
                h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                resp
            }
        };
        resp.headers_mut().insert(
            HeaderName::from_static("x-gemini-service-tier"),
            HeaderValue::from_static(served.name()),
        );
        Ok(resp)
    }

    /// Takes a Flex slot, or answers 503 at capacity (fault, no free slot, or a draw).
    fn flex_admit(&self, fault: Option<Fault>) -> Result<FlexSlot<'_>, GemError> {
        let config = &self.config.gemini;
        let unavailable = || GemError::unavailable(config.flex_503_message.clone());
        if fault == Some(Fault::FlexUnavailable) {
            return Err(unavailable());
        }
        let in_flight = &self.gemini.flex_in_flight;
        let before = in_flight.fetch_add(1, Ordering::AcqRel);
        let slot = FlexSlot(in_flight);
        if config.flex_capacity.is_some_and(|cap| before >= cap) {
            return Err(unavailable());
        }
        let rate = config.flex_503_rate;
        if rate > 0.0 && self.gemini.flex_rng.next_f64() < rate {
            return Err(unavailable());
        }
        Ok(slot)
    }
}
