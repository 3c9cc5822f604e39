//! Ingress: what the request head says, checked before the body is read. Every header
//! Sluice acts on is read once here; a repeated header with different values, or two
//! credentials, is ambiguous and a 400 naming the header, never a guess.

use super::*;

use crate::client_hints::{self, Hints};
use crate::prefer::{self, Preferences};

/// A request body up to this size is read and dropped (never buffered) before an error
/// found in the head is answered: clients still sending (curl 7.88 and httpx 0.28 over
/// h2c) lose a response that arrives before they finish. 1 MiB is also the HTTP/2 stream
/// window Sluice grants, what a client may send without waiting. Larger bodies are not
/// waited for.
pub const DRAIN_LIMIT: usize = 1024 * 1024;
/// How long draining may take.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest `Idempotency-Key` accepted.
pub const IDEMPOTENCY_KEY_MAX: usize = 255;

/// What the head of an API request says, once checked.
pub(super) struct Admitted<'a> {
    pub sla: Option<Sla>,
    pub prefer: Preferences,
    pub idempotency_key: Option<String>,
    pub route_hint: Option<&'a str>,
    /// The SDK's retry count and timeout (`x-stainless-*`), for held deferred calls.
    pub hints: Hints,
}

/// One API request once ingress is done: who calls, what it asks, how long it may wait.
pub(super) struct Call<'a> {
    pub endpoint: Endpoint,
    pub headers: &'a HeaderMap,
    pub admitted: Admitted<'a>,
    pub client: &'a ClientPolicy,
    pub route: &'a RoutePolicy,
    pub provider: Provider,
    pub facts: RequestFacts,
    pub sla: Sla,
    pub body: Bytes,
    pub arrived: Instant,
    /// When the whole body was in: gateway overhead is measured from here.
    pub received: Instant,
}

/// Identify, read the control headers and the body, inspect it, pick the route and the
/// provider. `known` collects the labels of a request refused on the way.
pub(super) async fn accept<'a>(
    app: &'a App,
    endpoint: Endpoint,
    gemini: Option<&gemini_path::Target>,
    parts: &'a http::request::Parts,
    unread: &mut Option<hyper::body::Incoming>,
    known: &mut Known,
) -> Result<Call<'a>, GatewayError> {
    let arrived = Instant::now();
    let query_key = gemini.and_then(|t| t.query_key.as_deref());
    let client = app
        .policies
        .identify(one_key(gateway_key(&parts.headers)?, query_key)?)?;
    known.client = Some(client.name.clone());
    let admitted = admit(&parts.headers)?;
    let Some(body) = unread.take() else {
        return Err(GatewayError::invalid(
            "the request body was already read",
            None,
        ));
    };
    let body = read_body(app, body, &parts.headers).await?;
    let received = Instant::now();
    // A Gemini-native request names its model and streaming in the URL.
    let facts = match gemini {
        Some(t) => inspect::gemini::inspect(&t.model, t.stream, &body)?,
        None => inspect::inspect(endpoint, &body)?,
    };
    known.model = Some(facts.model.clone());
    let route = client.route(endpoint.path(), &facts.model, admitted.route_hint)?;
    known.route = Some(route.name.clone());
    let sla = client.effective_sla(route, admitted.sla);
    let mapped = app.policies.models.provider_for(&facts.model);
    let provider = crate::providers::native_provider(endpoint, mapped).unwrap_or(mapped);
    known.provider = Some(provider);
    Ok(Call {
        endpoint,
        headers: &parts.headers,
        admitted,
        client,
        route,
        provider,
        facts,
        sla,
        body,
        arrived,
        received,
    })
}

async fn read_body(
    app: &App,
    body: hyper::body::Incoming,
    headers: &HeaderMap,
) -> Result<Bytes, GatewayError> {
    let limit = app.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(GatewayError::BodyTooLarge { limit });
    }
    match tokio::time::timeout(app.body_read_timeout, Limited::new(body, limit).collect()).await {
        Err(_) => Err(GatewayError::BodyTimeout),
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(GatewayError::BodyTooLarge { limit })
        }
        Ok(Err(e)) => Err(GatewayError::invalid(
            format!("could not read the request body: {e}"),
            None,
        )),
    }
}

/// Reads the caller's control headers.
pub(super) fn admit(headers: &HeaderMap) -> Result<Admitted<'_>, GatewayError> {
    let sla =
        match single(headers, "x-sla")? {
            None => None,
            Some(v) => Some(v.to_str().ok().and_then(Sla::parse).ok_or_else(|| {
                GatewayError::InvalidSla {
                    value: String::from_utf8_lossy(v.as_bytes()).into_owned(),
                }
            })?),
        };
    let prefer = prefer::parse(headers.get_all("prefer").iter().map(HeaderValue::as_bytes))
        .map_err(|e| invalid_header("prefer", e.to_string(), "invalid_prefer"))?;
    let route_hint = match single(headers, "x-sluice-route")? {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| {
            invalid_header(
                "x-sluice-route",
                "route names are ASCII".into(),
                "invalid_route",
            )
        })?),
    };
    Ok(Admitted {
        sla,
        prefer,
        idempotency_key: idempotency_key(headers)?,
        route_hint,
        hints: hints(headers)?,
    })
}

/// The SDK hints; each header once (or repeated identically), values a hint may ignore.
fn hints(headers: &HeaderMap) -> Result<Hints, GatewayError> {
    let [read_timeout, timeout] = client_hints::TIMEOUTS;
    Ok(Hints::parse(
        single_bytes(headers, client_hints::RETRY_COUNT)?,
        &[
            single_bytes(headers, read_timeout)?,
            single_bytes(headers, timeout)?,
        ],
    ))
}

fn single_bytes<'h>(
    headers: &'h HeaderMap,
    name: &'static str,
) -> Result<Option<&'h [u8]>, GatewayError> {
    Ok(single(headers, name)?.map(HeaderValue::as_bytes))
}

fn invalid_header(header: &'static str, message: String, code: &'static str) -> GatewayError {
    GatewayError::InvalidHeader {
        header,
        message,
        code,
    }
}

/// The one value of a header that may be sent more than once only if always the same.
fn single<'h>(
    headers: &'h HeaderMap,
    name: &'static str,
) -> Result<Option<&'h HeaderValue>, GatewayError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if let Some(first) = first {
        if values.any(|v| v != first) {
            return Err(invalid_header(
                name,
                "sent more than once with different values".into(),
                "conflicting_header",
            ));
        }
    }
    Ok(first)
}

/// The gateway key: `Authorization: Bearer` (OpenAI SDK), `x-api-key` (Anthropic SDK) or
/// `x-goog-api-key` (`google-genai` SDK). Two different keys, in one header or across
/// them, are refused rather than picked from.
pub(super) fn gateway_key(headers: &HeaderMap) -> Result<Option<&str>, GatewayError> {
    let bearer = headers.get_all(header::AUTHORIZATION).iter().map(|v| {
        let v = v.to_str().ok()?.trim();
        v.strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .map(str::trim)
    });
    let api_key = ["x-api-key", "x-goog-api-key"]
        .into_iter()
        .flat_map(|name| {
            headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().ok().map(str::trim))
        });
    let mut key: Option<Option<&str>> = None;
    for k in bearer.chain(api_key) {
        match key {
            Some(seen) if seen != k => return Err(conflicting_credentials()),
            _ => key = Some(k),
        }
    }
    Ok(key.flatten())
}

/// The header key and a Gemini-native `?key=`: one key, or the same in both.
fn one_key<'k>(
    header: Option<&'k str>,
    query: Option<&'k str>,
) -> Result<Option<&'k str>, GatewayError> {
    match (header, query) {
        (Some(h), Some(q)) if h != q => Err(conflicting_credentials()),
        (h, q) => Ok(h.or(q)),
    }
}

fn conflicting_credentials() -> GatewayError {
    invalid_header(
        "authorization",
        "more than one credential (Authorization, x-api-key, x-goog-api-key headers or the key query parameter): send one gateway key".into(),
        "conflicting_credentials",
    )
}

/// `Idempotency-Key` (draft-ietf-httpapi-idempotency-key-header): a Structured Field string
/// (`"..."`), or the bare token most SDKs send; 1-255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, GatewayError> {
    let Some(v) = single(headers, "idempotency-key")? else {
        return Ok(None);
    };
    let raw = v.as_bytes();
    let key: Option<Vec<u8>> = match raw {
        [b'"', inner @ .., b'"'] => {
            // sf-string: `\"` and `\\` are the only escapes.
            let mut out = Vec::with_capacity(inner.len());
            let mut it = inner.iter();
            let mut ok = true;
            while let Some(&b) = it.next() {
                match b {
                    b'\\' => match it.next() {
                        Some(&e @ (b'"' | b'\\')) => out.push(e),
                        _ => ok = false,
                    },
                    b'"' => ok = false,
                    b => out.push(b),
                }
            }
            ok.then_some(out)
        }
        _ => Some(raw.to_vec()),
    };
    match key {
        Some(k)
            if (1..=IDEMPOTENCY_KEY_MAX).contains(&k.len())
                && k.iter().all(|b| (0x21..=0x7e).contains(b)) =>
        {
            Ok(Some(String::from_utf8(k).unwrap_or_default()))
        }
        _ => Err(invalid_header(
            "idempotency-key",
            format!(
                "the key must be 1-{IDEMPOTENCY_KEY_MAX} visible ASCII characters, bare or as a quoted string"
            ),
            "invalid_idempotency_key",
        )),
    }
}

/// Reads and drops a small unread request body, so a client still sending it sees the
/// error that follows (see [`DRAIN_LIMIT`]). Returns the body when it is larger or slower:
/// the caller keeps it open until the response is sent, so HTTP/2 ends the stream with
/// `RST_STREAM(NO_ERROR)` after the response (RFC 9113 §8.1) rather than `CANCEL` before it.
pub(super) async fn drain(mut body: Incoming) -> Option<Incoming> {
    use http_body::Body as _;
    if body.size_hint().lower() > DRAIN_LIMIT as u64 {
        return Some(body);
    }
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    let mut read = 0usize;
    while !body.is_end_stream() {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                read += frame.data_ref().map_or(0, Bytes::len);
                if read > DRAIN_LIMIT {
                    return Some(body);
                }
            }
            Ok(Some(Err(_)) | None) => return None,
            Err(_) => return Some(body),
        }
    }
    None
}

/// A response body that keeps the request's unread body open until it has been sent.
pub(super) struct HoldingRequest {
    pub response: RespBody,
    /// Only held: dropped with the response, after its last frame.
    pub _request: Option<Incoming>,
}

impl http_body::Body for HoldingRequest {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        std::pin::Pin::new(&mut self.response).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.response.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.response.size_hint()
    }
}
