//! OpenAI error envelope and the fault-injection controls.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};

use http::StatusCode;
use serde::Serialize;

/// An error answered in the exact OpenAI envelope
/// `{"error":{"message","type","param","code"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// `error.message`.
    pub message: Cow<'static, str>,
    /// `error.type`.
    pub kind: &'static str,
    /// `error.param`.
    pub param: Option<Cow<'static, str>>,
    /// `error.code`.
    pub code: Option<&'static str>,
    /// Whether `retry-after` / `retry-after-ms` headers are added.
    pub retry_after: bool,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

const PARSE_MESSAGE: &str = "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)";

impl ApiError {
    fn new(status: StatusCode, message: impl Into<Cow<'static, str>>, kind: &'static str) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after: false,
        }
    }

    fn with_param(mut self, param: impl Into<Cow<'static, str>>) -> Self {
        self.param = Some(param.into());
        self
    }

    fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// 400 `invalid_request_error` with the given param and code.
    pub fn invalid(
        message: impl Into<Cow<'static, str>>,
        param: Option<&'static str>,
        code: Option<&'static str>,
    ) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, message, "invalid_request_error");
        e.param = param.map(Cow::Borrowed);
        e.code = code;
        e
    }

    /// 400 `invalid_request_error` about a parameter whose path is built at run time
    /// (`tools[2].function.name`).
    pub fn invalid_at(
        message: impl Into<Cow<'static, str>>,
        param: impl Into<Cow<'static, str>>,
        code: Option<&'static str>,
    ) -> Self {
        let mut e =
            Self::new(StatusCode::BAD_REQUEST, message, "invalid_request_error").with_param(param);
        e.code = code;
        e
    }

    /// 400 for a missing required body parameter.
    pub fn missing(param: impl Into<Cow<'static, str>>) -> Self {
        let param = param.into();
        Self::new(
            StatusCode::BAD_REQUEST,
            format!("Missing required parameter: '{param}'."),
            "invalid_request_error",
        )
        .with_param(param)
        .with_code("missing_required_parameter")
    }

    /// 400 for a body that is not valid JSON or does not match the expected shape.
    pub fn from_json(err: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        match err.classify() {
            Category::Syntax | Category::Eof | Category::Io => Self::new(
                StatusCode::BAD_REQUEST,
                PARSE_MESSAGE,
                "invalid_request_error",
            ),
            Category::Data => Self::new(
                StatusCode::BAD_REQUEST,
                format!("Invalid request body: {err}"),
                "invalid_request_error",
            )
            .with_code("invalid_type"),
        }
    }

    /// 401 for a missing or malformed `Authorization: Bearer` header.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            "invalid_request_error",
        )
        .with_code("invalid_api_key")
    }

    /// 404 for an unknown URL.
    pub fn not_found(method: &http::Method, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("Invalid URL ({method} {path})"),
            "invalid_request_error",
        )
    }

    /// 405 for a known URL called with the wrong method.
    pub fn method_not_allowed(method: &http::Method, path: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("Invalid method for URL ({method} {path})"),
            "invalid_request_error",
        )
    }

    /// 404 `model_not_found`.
    pub fn model_not_found(model: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("The model `{model}` does not exist or you do not have access to it."),
            "invalid_request_error",
        )
        .with_param("model")
        .with_code("model_not_found")
    }

    /// 413 for an over-large body.
    pub fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request body too large.",
            "invalid_request_error",
        )
    }

    /// 429 `rate_limit_exceeded` (type `tokens`), with `retry-after: 1`.
    pub fn rate_limited() -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Rate limit reached in organization org-sluice-sim on tokens per min (TPM): Limit 2000000, Used 2000000, Requested 1. Please try again in 1s.",
            "tokens",
        )
        .with_code("rate_limit_exceeded");
        e.retry_after = true;
        e
    }

    /// 429 "Resource Unavailable" as answered for `service_tier: "flex"` under capacity
    /// shortage. The real `type`/`code` are UNCONFIRMED (reference 1.5); we choose type
    /// `server_error` and code `resource_unavailable` so that a gateway can tell it apart
    /// from a rate-limit 429 by `code`. No `retry-after` header is sent.
    pub fn flex_unavailable() -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Resource Unavailable",
            "server_error",
        )
        .with_code("resource_unavailable")
    }

    /// 404 for an unknown object id (file, batch); `param` names the id parameter.
    pub fn no_such(message: String, param: &'static str) -> Self {
        Self::new(StatusCode::NOT_FOUND, message, "invalid_request_error").with_param(param)
    }

    /// 409 for an operation the object's state does not allow (e.g. cancelling a
    /// completed batch).
    pub fn conflict(message: String) -> Self {
        Self::new(StatusCode::CONFLICT, message, "invalid_request_error")
    }

    /// 429 on batch creation when the enqueued-token budget of `model` is exhausted
    /// (reference 1.8 limits; wording SECONDARY), with `retry-after: 1`.
    pub fn enqueued_limit(model: &str) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Enqueued token limit reached for {model} in organization org-sluice-sim. Limit: 2,000,000 enqueued tokens. Please try again once some in_progress batches have been completed."
            ),
            "tokens",
        )
        .with_code("rate_limit_exceeded");
        e.retry_after = true;
        e
    }

    /// 500 `server_error`.
    pub fn server_error() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
        )
    }

    /// 500 for a bug inside the simulator itself.
    pub fn internal(message: String) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message, "server_error")
    }

    /// The JSON envelope.
    pub fn body(&self) -> Vec<u8> {
        let env = Envelope {
            error: Inner {
                message: &self.message,
                kind: self.kind,
                param: self.param.as_deref(),
                code: self.code,
            },
        };
        // Serializing plain strings cannot fail; fall back to a fixed envelope anyway.
        serde_json::to_vec(&env).unwrap_or_else(|_| {
            br#"{"error":{"message":"error","type":"server_error","param":null,"code":null}}"#
                .to_vec()
        })
    }
}

/// A fault forced per request with the `x-sim-fault` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `429`: rate limit.
    RateLimit,
    /// `500`: server error.
    ServerError,
    /// `slow`: stream chunks 200 ms apart; non-streaming answers get 200 ms extra latency.
    Slow,
    /// `flex-429`: 429 "Resource Unavailable".
    FlexUnavailable,
    /// `downgrade`: a `fast` / `priority` / `ultrafast` request is answered (and reported)
    /// at `default`, as under OpenAI's ramp-rate limit.
    Downgrade,
}

impl Fault {
    /// Parses an `x-sim-fault` value; unknown values are ignored.
    pub fn parse(value: &[u8]) -> Option<Self> {
        match value {
            b"429" => Some(Self::RateLimit),
            b"500" => Some(Self::ServerError),
            b"slow" => Some(Self::Slow),
            b"flex-429" => Some(Self::FlexUnavailable),
            b"downgrade" => Some(Self::Downgrade),
            _ => None,
        }
    }

    /// The error this fault answers with, if it is an error fault.
    pub fn error(self) -> Option<ApiError> {
        match self {
            Self::RateLimit => Some(ApiError::rate_limited()),
            Self::ServerError => Some(ApiError::server_error()),
            Self::FlexUnavailable => Some(ApiError::flex_unavailable()),
            Self::Slow | Self::Downgrade => None,
        }
    }
}

/// Lock-free deterministic RNG (SplitMix64 over an atomic counter): the sequence of
/// values drawn is fixed by the seed, whatever the interleaving of callers.
#[derive(Debug)]
pub struct Rng {
    state: AtomicU64,
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }

    /// Next value uniformly distributed in `[0, 1)`.
    pub fn next_f64(&self) -> f64 {
        let s = self
            .state
            .fetch_add(GOLDEN, Ordering::Relaxed)
            .wrapping_add(GOLDEN);
        (splitmix(s) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// The SplitMix64 output function.
pub fn splitmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
