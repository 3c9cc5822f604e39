//! Anthropic: the Messages API (`x-api-key`, `anthropic-version`), OpenAI chat completions
//! served by translation to and from it, automatic prompt-cache breakpoints, and Message
//! Batches (provider-apis.md 2). Wire formats and translation are pure.

use bytes::Bytes;
use http::Method;
use http::header::HeaderName;

use super::{BatchApiError, BatchInput, Capabilities, FlushRef, Http, ResultBody, UpstreamBatch};
use crate::types::Endpoint;

pub mod batch_wire;
pub mod cache;
pub mod relay;
pub mod translate;

pub const CAPABILITIES: Capabilities = Capabilities {
    // Chat completions are translated to Messages, in a batch as interactively.
    batch_endpoints: &[Endpoint::Messages, Endpoint::ChatCompletions],
    flex: false,
    // 100,000 requests or 256 MB per batch.
    max_batch_requests: 100_000,
    max_batch_bytes: 256 * 1000 * 1000 - 100_000 * 1024,
};

pub const KEY_HEADER: HeaderName = HeaderName::from_static("x-api-key");

/// The Messages API version sent when the client names none.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

pub const DEFAULT_HEADERS: &[(&str, &str)] = &[("anthropic-version", ANTHROPIC_VERSION)];

pub fn upstream_endpoint(caller: Endpoint) -> Endpoint {
    match caller {
        Endpoint::ChatCompletions => Endpoint::Messages,
        other => other,
    }
}

pub fn path(upstream: Endpoint) -> Option<&'static str> {
    (upstream == Endpoint::Messages).then_some("/messages")
}

/// First path segments below `/v1/` the Anthropic API serves, passed through whole by
/// the gateway: `messages/count_tokens` (and the rest below `messages/`), the legacy Text
/// Completions `complete`, `models`, `skills` (beta).
pub const PASS_THROUGH: &[&str] = &["complete", "messages", "models", "skills"];

/// A Messages answer as the OpenAI chat completion the caller asked for.
pub fn for_caller(status: u16, body: &[u8], created: i64) -> Result<Bytes, String> {
    if (200..300).contains(&status) {
        translate::response_to_openai(body, created).map_err(|e| e.to_string())
    } else {
        Ok(translate::error_to_openai(body))
    }
}

/// Message Batches of one Anthropic account: no input file, the requests go in the create
/// call itself, and batches carry no metadata to find them by.
pub struct Batches {
    http: Http,
}

impl Batches {
    pub fn new(http: Http) -> Batches {
        Batches { http }
    }

    pub fn unsupported(&self, what: &str) -> BatchApiError {
        self.http
            .decode_error(format!("Message Batches have no {what}"))
    }

    fn parse(&self, raw: &[u8]) -> Result<UpstreamBatch, BatchApiError> {
        batch_wire::parse_batch(raw)
            .map(|(b, _)| b)
            .map_err(|reason| self.http.decode_error(reason))
    }

    pub async fn create(
        &self,
        _f: FlushRef<'_>,
        input: BatchInput,
    ) -> Result<UpstreamBatch, BatchApiError> {
        let BatchInput::Inline(chunks) = input else {
            return Err(self.unsupported("input files"));
        };
        // The chunks carry the whole body, `{"requests":[` to `]}` (`Encoder`).
        let raw = self
            .http
            .stream(
                Method::POST,
                "/messages/batches",
                Bytes::new(),
                chunks,
                Bytes::new(),
                "application/json",
            )
            .await?;
        self.parse(&raw)
    }

    pub async fn get(&self, batch_id: &str) -> Result<UpstreamBatch, BatchApiError> {
        let raw = self
            .http
            .bytes(
                Method::GET,
                &format!("/messages/batches/{batch_id}"),
                Bytes::new(),
            )
            .await?;
        self.parse(&raw)
    }

    /// Message Batches carry no metadata, so the match is on the request count and a
    /// creation time no earlier than the flush (less a minute of clock skew); the engine
    /// skips batches another flush recorded. Another client of the same key creating a
    /// batch of the same size in that window could still be mistaken for it.
    pub async fn find(&self, f: FlushRef<'_>) -> Result<Vec<UpstreamBatch>, BatchApiError> {
        let mut path = "/messages/batches?limit=100".to_owned();
        let mut found = Vec::new();
        for _ in 0..10 {
            let raw = self.http.bytes(Method::GET, &path, Bytes::new()).await?;
            let (page, next) =
                batch_wire::parse_list(&raw).map_err(|r| self.http.decode_error(r))?;
            for (b, facts) in page {
                let created = facts
                    .created_at
                    .as_deref()
                    .and_then(rfc3339_ms)
                    .unwrap_or(i64::MAX);
                if facts.requests == u64::from(f.job_count) && created + 60_000 >= f.created_at_ms {
                    found.push(b);
                }
            }
            match next {
                Some(after) => path = format!("/messages/batches?limit=100&after_id={after}"),
                None => break,
            }
        }
        Ok(found)
    }

    /// A result location is the batch's `results_url`.
    pub async fn results(&self, url: &str) -> Result<ResultBody, BatchApiError> {
        self.http.download(url).await
    }

    pub async fn cancel(&self, batch_id: &str) -> Result<UpstreamBatch, BatchApiError> {
        let raw = self
            .http
            .bytes(
                Method::POST,
                &format!("/messages/batches/{batch_id}/cancel"),
                Bytes::new(),
            )
            .await?;
        self.parse(&raw)
    }
}

/// Unix milliseconds of an RFC 3339 UTC timestamp (`2026-01-01T00:41:12.513310Z`).
fn rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    if b.len() < 20 || b[4] != b'-' || b[10] != b'T' {
        return None;
    }
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400) + hh * 3600 + mm * 60 + ss) * 1000)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339() {
        assert_eq!(super::rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            super::rfc3339_ms("2026-01-01T00:00:00.000000Z"),
            Some(1_767_225_600_000)
        );
        assert_eq!(super::rfc3339_ms("nope"), None);
    }
}
