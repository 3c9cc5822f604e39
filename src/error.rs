//! Gateway errors, typed per layer, and the one table that maps them to HTTP.
//!
//! Every error the gateway itself produces leaves through [`GatewayError::status`] and
//! [`GatewayError::to_openai_json`], so the status chosen for a failure lives in one place.
//! Upstream errors never become a `GatewayError`: they are passed through unchanged.

use http::StatusCode;

/// Where a failure came from; decides the status class and whether a retry may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The client sent something we cannot serve (4xx, do not retry unchanged).
    Downstream,
    /// The provider could not be reached or answered too late (502/504, retry may help).
    Upstream,
    /// Sluice itself (503 while not ready).
    Internal,
}

/// Errors of the request path. Each variant carries what its message needs, nothing more.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(
        "invalid x-sla header {value:?}: expected interactive, semi, batch or a duration such as 90s, 10m, 24h"
    )]
    InvalidSla { value: String },
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<&'static str>,
        code: &'static str,
    },
    /// A request header that is malformed, repeated with different values, or ambiguous.
    #[error("invalid {header} header: {message}")]
    InvalidHeader {
        header: &'static str,
        message: String,
        code: &'static str,
    },
    #[error(
        "this Idempotency-Key was already used with a different request ({what} differs); send a new key for a new request"
    )]
    IdempotencyKeyMismatch { what: &'static str },
    #[error(
        "missing gateway API key: send it as `Authorization: Bearer <key>` (or `x-api-key`, `x-goog-api-key`)"
    )]
    MissingKey,
    #[error("incorrect gateway API key provided")]
    UnknownKey,
    #[error("unknown route {route:?} in x-sluice-route: client {client:?} has no such route")]
    UnknownRoute { route: String, client: String },
    #[error("{message}")]
    Untranslatable {
        message: String,
        param: Option<String>,
    },
    #[error("no job {id} for this client")]
    JobNotFound { id: String },
    /// A file or batch of the explicit Files and Batch APIs this client did not create
    /// (another client's, Sluice's own, or none): the provider's "no such object" wording.
    #[error("No such {what} object: {id}")]
    NoSuchObject { what: &'static str, id: String },
    #[error("The model '{model}' does not exist")]
    ModelNotFound { model: String },
    #[error("no such endpoint: {method} {path}")]
    NotFound { method: String, path: String },
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    /// A `/v1/` path Sluice does not pass through to a provider, and why.
    #[error("{method} {path}: {reason}")]
    NotPassedThrough {
        method: String,
        path: String,
        reason: &'static str,
        code: &'static str,
    },
    /// A pass-through request for a provider whose API key is not configured.
    #[error("the {provider} API is not configured (set its API key)")]
    ApiNotConfigured { provider: &'static str },
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("timed out reading the request body")]
    BodyTimeout,
    #[error(
        "model {model:?} is served by provider {provider}, which is not configured (set its API key)"
    )]
    ProviderNotConfigured {
        model: String,
        provider: &'static str,
    },
    #[error("could not reach the {provider} API: {reason}")]
    UpstreamUnavailable {
        provider: &'static str,
        reason: String,
    },
    #[error("the {provider} API did not answer within {secs} s")]
    UpstreamTimeout { provider: &'static str, secs: u64 },
    #[error("the {provider} API answer could not be read: {reason}")]
    UpstreamBadResponse {
        provider: &'static str,
        reason: String,
    },
    #[error("the gateway is not ready: {reason}")]
    NotReady { reason: String },
    /// The provider refused a whole upstream batch for good; its jobs get this answer.
    #[error("the {provider} Batch API refused the batch: {reason}")]
    BatchRejected {
        provider: &'static str,
        reason: String,
    },
    /// The provider refused one line of a batch without running it.
    #[error("the {provider} Batch API refused this request: {message}")]
    BatchLineInvalid {
        provider: &'static str,
        message: String,
    },
    /// Rejected by the HTTP parser before any handler ran (see `server::http_errors`).
    #[error(
        "malformed HTTP request: the request line or a header could not be parsed (invalid bytes, or conflicting Content-Length)"
    )]
    MalformedHttp,
    #[error("request URI exceeds the limit of {limit} bytes")]
    UriTooLong { limit: usize },
    #[error(
        "request headers too large: at most {max_headers} headers and {max_bytes} bytes for the request line and headers"
    )]
    HeadersTooLarge {
        max_headers: usize,
        max_bytes: usize,
    },
}

impl GatewayError {
    pub fn invalid(message: impl Into<String>, param: Option<&'static str>) -> Self {
        GatewayError::InvalidRequest {
            message: message.into(),
            param,
            code: "invalid_request",
        }
    }

    pub fn source(&self) -> Source {
        use GatewayError::*;
        match self {
            UpstreamUnavailable { .. }
            | UpstreamTimeout { .. }
            | UpstreamBadResponse { .. }
            | BatchRejected { .. } => Source::Upstream,
            NotReady { .. } => Source::Internal,
            _ => Source::Downstream,
        }
    }

    /// The single status table.
    pub fn status(&self) -> StatusCode {
        use GatewayError::*;
        match self {
            InvalidSla { .. }
            | InvalidRequest { .. }
            | InvalidHeader { .. }
            | UnknownRoute { .. }
            | Untranslatable { .. }
            | BatchLineInvalid { .. }
            | MalformedHttp => StatusCode::BAD_REQUEST,
            ProviderNotConfigured { .. } | ApiNotConfigured { .. } => StatusCode::BAD_REQUEST,
            IdempotencyKeyMismatch { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            MissingKey | UnknownKey => StatusCode::UNAUTHORIZED,
            NotFound { .. }
            | ModelNotFound { .. }
            | JobNotFound { .. }
            | NoSuchObject { .. }
            | NotPassedThrough { .. } => StatusCode::NOT_FOUND,
            MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            UpstreamUnavailable { .. } | UpstreamBadResponse { .. } | BatchRejected { .. } => {
                StatusCode::BAD_GATEWAY
            }
            UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            NotReady { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// OpenAI's `error.type`, `error.param` and `error.code` for this failure.
    pub fn openai_fields(&self) -> (&'static str, Option<&'static str>, &'static str) {
        use GatewayError::*;
        match self {
            InvalidSla { .. } => ("invalid_request_error", Some("x-sla"), "invalid_sla"),
            InvalidRequest { param, code, .. } => ("invalid_request_error", *param, code),
            InvalidHeader { header, code, .. } => ("invalid_request_error", Some(header), code),
            IdempotencyKeyMismatch { .. } => (
                "invalid_request_error",
                Some("idempotency-key"),
                "idempotency_key_mismatch",
            ),
            MissingKey => ("invalid_request_error", None, "missing_api_key"),
            UnknownKey => ("invalid_request_error", None, "invalid_api_key"),
            UnknownRoute { .. } => (
                "invalid_request_error",
                Some("x-sluice-route"),
                "unknown_route",
            ),
            NotFound { .. } => ("invalid_request_error", None, "unknown_url"),
            NotPassedThrough { code, .. } => ("invalid_request_error", None, code),
            ApiNotConfigured { .. } => ("invalid_request_error", None, "provider_not_configured"),
            ModelNotFound { .. } => ("invalid_request_error", Some("model"), "model_not_found"),
            JobNotFound { .. } => ("invalid_request_error", None, "job_not_found"),
            NoSuchObject { .. } => ("invalid_request_error", Some("id"), "not_found"),
            Untranslatable { .. } => ("invalid_request_error", None, "unsupported_parameter"),
            MethodNotAllowed { .. } => ("invalid_request_error", None, "method_not_allowed"),
            BodyTooLarge { .. } => ("invalid_request_error", None, "request_too_large"),
            BodyTimeout => ("invalid_request_error", None, "request_timeout"),
            ProviderNotConfigured { .. } => (
                "invalid_request_error",
                Some("model"),
                "provider_not_configured",
            ),
            UpstreamUnavailable { .. } => ("upstream_error", None, "upstream_unavailable"),
            UpstreamTimeout { .. } => ("upstream_error", None, "upstream_timeout"),
            UpstreamBadResponse { .. } => ("upstream_error", None, "upstream_bad_response"),
            NotReady { .. } => ("server_error", None, "not_ready"),
            BatchRejected { .. } => ("upstream_error", None, "batch_rejected"),
            BatchLineInvalid { .. } => ("invalid_request_error", None, "invalid_batch_line"),
            MalformedHttp => ("invalid_request_error", None, "malformed_request"),
            UriTooLong { .. } => ("invalid_request_error", None, "uri_too_long"),
            HeadersTooLarge { .. } => ("invalid_request_error", None, "headers_too_large"),
        }
    }

    /// A low-cardinality label for logs and metrics.
    pub fn status_label(&self) -> &'static str {
        self.openai_fields().2
    }

    /// Anthropic's `error.type` for this failure (provider-apis.md 2.1).
    pub fn anthropic_type(&self) -> &'static str {
        match self.status().as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            504 => "timeout_error",
            500..=599 => "api_error",
            _ => "invalid_request_error",
        }
    }

    /// The Anthropic error envelope, for `/v1/messages`.
    pub fn to_anthropic_json(&self) -> Vec<u8> {
        serde_json::json!({
            "type": "error",
            "error": {"type": self.anthropic_type(), "message": self.to_string()},
        })
        .to_string()
        .into_bytes()
    }

    /// Google's canonical `error.status` name for this failure (provider-apis.md 3.1; the
    /// google.rpc.Code HTTP mapping), chosen from the one status table.
    pub fn google_status(&self) -> &'static str {
        match self.status().as_u16() {
            401 => "UNAUTHENTICATED",
            403 => "PERMISSION_DENIED",
            404 => "NOT_FOUND",
            // No canonical code is 405; the method is not implemented on this resource.
            405 => "UNIMPLEMENTED",
            408 | 504 => "DEADLINE_EXCEEDED",
            // The same Idempotency-Key with another request: the key's precondition fails.
            422 => "FAILED_PRECONDITION",
            429 => "RESOURCE_EXHAUSTED",
            // An unreachable or garbled provider is, to the caller, an unavailable service.
            502 | 503 => "UNAVAILABLE",
            500..=599 => "INTERNAL",
            _ => "INVALID_ARGUMENT",
        }
    }

    /// The Google error envelope, for the Gemini-native routes: what the `google-genai` SDK
    /// reads (`error.code` is the HTTP status).
    pub fn to_gemini_json(&self) -> Vec<u8> {
        serde_json::json!({
            "error": {
                "code": self.status().as_u16(),
                "message": self.to_string(),
                "status": self.google_status(),
            }
        })
        .to_string()
        .into_bytes()
    }

    /// The error envelope of the API the caller spoke.
    pub fn to_json(&self, api: crate::types::Api) -> Vec<u8> {
        match api {
            crate::types::Api::OpenAi => self.to_openai_json(),
            crate::types::Api::Anthropic => self.to_anthropic_json(),
            crate::types::Api::Gemini => self.to_gemini_json(),
        }
    }

    pub fn to_openai_json(&self) -> Vec<u8> {
        let (kind, param, code) = self.openai_fields();
        let param = match self {
            GatewayError::Untranslatable { param, .. } => param.as_deref(),
            _ => param,
        };
        let body = serde_json::json!({
            "error": {
                "message": self.to_string(),
                "type": kind,
                "param": param,
                "code": code,
            }
        });
        body.to_string().into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sla_error_is_openai_shaped_and_names_the_header() {
        let e = GatewayError::InvalidSla {
            value: "soon".into(),
        };
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let v: serde_json::Value = serde_json::from_slice(&e.to_openai_json()).unwrap();
        assert_eq!(v["error"]["param"], "x-sla");
        assert_eq!(v["error"]["code"], "invalid_sla");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(v["error"]["message"].as_str().unwrap().contains("x-sla"));
    }

    #[test]
    fn anthropic_envelope() {
        let v: serde_json::Value =
            serde_json::from_slice(&GatewayError::UnknownKey.to_anthropic_json()).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "authentication_error");
        let e = GatewayError::UpstreamTimeout {
            provider: "anthropic",
            secs: 1,
        };
        assert_eq!(e.anthropic_type(), "timeout_error");
    }

    #[test]
    fn gemini_envelope_names_the_canonical_status() {
        for (e, code, status) in [
            (GatewayError::UnknownKey, 401, "UNAUTHENTICATED"),
            (GatewayError::invalid("x", None), 400, "INVALID_ARGUMENT"),
            (
                GatewayError::BodyTooLarge { limit: 1 },
                413,
                "INVALID_ARGUMENT",
            ),
            (
                GatewayError::NotFound {
                    method: "POST".into(),
                    path: "/v1beta/models/m:countTokens".into(),
                },
                404,
                "NOT_FOUND",
            ),
            (
                GatewayError::UpstreamTimeout {
                    provider: "gemini",
                    secs: 1,
                },
                504,
                "DEADLINE_EXCEEDED",
            ),
            (
                GatewayError::UpstreamUnavailable {
                    provider: "gemini",
                    reason: "refused".into(),
                },
                502,
                "UNAVAILABLE",
            ),
        ] {
            let v: serde_json::Value = serde_json::from_slice(&e.to_gemini_json()).unwrap();
            assert_eq!(v["error"]["code"], code, "{v}");
            assert_eq!(v["error"]["status"], status, "{v}");
            assert_eq!(v["error"]["message"], e.to_string());
            assert_eq!(v["error"].as_object().unwrap().len(), 3);
        }
    }

    #[test]
    fn upstream_failures_are_never_4xx() {
        let e = GatewayError::UpstreamTimeout {
            provider: "openai",
            secs: 5,
        };
        assert_eq!(e.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(e.source(), Source::Upstream);
        let e = GatewayError::UpstreamUnavailable {
            provider: "openai",
            reason: "refused".into(),
        };
        assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
    }
}
