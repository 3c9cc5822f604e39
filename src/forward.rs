//! Forwarding to the provider: the upstream URL and headers for a request, sent through
//! the shared pooled client. Knows providers and endpoints, nothing of policies or tiers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use crate::config::ProviderConfig;
use crate::error::GatewayError;
pub use crate::policy::Billing;
use crate::providers::vertex::oauth::TokenSource;
use crate::types::{Endpoint, Provider};
use crate::upstream::{Upstream, UpstreamError};

/// Largest non-streaming answer Sluice reads into memory (embeddings of big batches are large).
pub const MAX_ANSWER_BYTES: usize = 256 * 1024 * 1024;

/// Client headers that reach the provider (an allow-list: anything else, such as cookies,
/// forwarding headers, the gateway's credentials and controls, stays at the gateway):
/// content negotiation, the SDK's identity and the API version and beta opt-ins it needs.
/// `accept-encoding` is not among them: Sluice reads usage from answers, so they are plain.
/// From a `google-genai` client: `x-goog-api-client` (its identity, metadata like
/// `user-agent`) and `x-server-timeout` (how long it waits; Google stops work after it).
/// Never `x-goog-api-key` (the caller's gateway key; the provider key is Sluice's own) nor
/// `x-goog-user-project` (it would bill the caller's project instead of the gateway's).
const PASS_REQUEST: [&str; 7] = [
    "accept",
    "user-agent",
    "openai-beta",
    "anthropic-version",
    "anthropic-beta",
    "x-goog-api-client",
    "x-server-timeout",
];
/// Prefixes passed as well: the SDKs' `x-stainless-*` runtime and retry metadata, and the
/// built-in simulator's `x-sim-*` fault controls (meaningless to a real provider).
const PASS_REQUEST_PREFIX: [&str; 2] = ["x-stainless-", "x-sim-"];

/// The caller's own choice of who pays at OpenAI: passed only when its policy allows.
pub const BILLING_HEADERS: [&str; 2] = ["openai-organization", "openai-project"];

/// Whether a client header may reach the provider.
pub fn passes(name: &HeaderName, billing: &Billing) -> bool {
    let n = name.as_str();
    PASS_REQUEST.contains(&n)
        || PASS_REQUEST_PREFIX.iter().any(|p| n.starts_with(p))
        || (billing.pass_caller && BILLING_HEADERS.contains(&n))
}

/// Upstream response headers not relayed: hop-by-hop and length (Sluice may change the body).
const DROP_RESPONSE: [&str; 6] = [
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "trailer",
    "upgrade",
];

struct Target {
    /// Parsed once, unless the path names the model (Gemini's native API): then built per
    /// request from `url`.
    uri: Option<Uri>,
    url: String,
    /// The provider credential, in the header this API expects.
    auth: Option<(HeaderName, HeaderValue)>,
    /// Sent unless the caller chose its own value (`anthropic-version`).
    defaults: &'static [(&'static str, &'static str)],
    /// A service account's access tokens instead of a key (Vertex AI).
    tokens: Option<Arc<TokenSource>>,
}

pub struct Forwarder {
    upstream: Upstream,
    /// Pre-built per provider and endpoint, so a request only clones.
    targets: HashMap<(Provider, Endpoint), Target>,
    /// Per provider whose whole API is passed through (OpenAI, Anthropic): its base URL
    /// and credential, for paths below it that are not one of the endpoints above.
    bases: HashMap<Provider, Base>,
}

/// A provider's API root for pass-through requests.
struct Base {
    url: String,
    auth: Option<(HeaderName, HeaderValue)>,
    defaults: &'static [(&'static str, &'static str)],
}

/// One pass-through request: the method, the path and query below the provider's base
/// URL (`/moderations?x=1`), checked by the gateway.
pub struct Pass<'a> {
    pub provider: Provider,
    pub method: Method,
    pub path_and_query: &'a str,
}

impl Forwarder {
    pub fn new(upstream: Upstream, providers: &[ProviderConfig]) -> Result<Forwarder, String> {
        Self::with_vertex(upstream, providers, None)
    }

    /// The same, with the service account's tokens for the provider configured with one
    /// (Vertex AI).
    pub fn with_vertex(
        upstream: Upstream,
        providers: &[ProviderConfig],
        vertex_tokens: Option<Arc<TokenSource>>,
    ) -> Result<Forwarder, String> {
        let mut targets = HashMap::new();
        let mut bases = HashMap::new();
        for p in providers {
            if crate::providers::passes_through(p.provider) {
                let auth = match &p.api_key {
                    Some(k) => Some(crate::providers::credentials(p.provider, k.expose())?),
                    None => None,
                };
                bases.insert(
                    p.provider,
                    Base {
                        url: p.base_url.clone(),
                        auth,
                        defaults: crate::providers::default_headers(p.provider),
                    },
                );
            }
            for e in Endpoint::ALL {
                let Some(path) = crate::providers::path(p.provider, e) else {
                    continue;
                };
                let auth = match &p.api_key {
                    Some(k) => Some(crate::providers::credentials_for(
                        p.provider,
                        e,
                        k.expose(),
                    )?),
                    None => None,
                };
                let url = format!("{}{path}", p.base_url);
                // A model-naming path is checked with a model in it; built again per request.
                let probe = crate::providers::request_path(&url, "m", false);
                let uri: Uri = probe
                    .parse()
                    .map_err(|_| format!("invalid {} base URL {:?}", p.provider, p.base_url))?;
                let uri = (probe == url).then_some(uri);
                targets.insert(
                    (p.provider, e),
                    Target {
                        uri,
                        url,
                        auth,
                        defaults: crate::providers::default_headers(p.provider),
                        tokens: p.vertex.as_ref().and(vertex_tokens.clone()),
                    },
                );
            }
        }
        Ok(Forwarder {
            upstream,
            targets,
            bases,
        })
    }

    /// The credential of one request: the target's key, or a Vertex AI access token.
    async fn auth(
        &self,
        provider: Provider,
        target: &Target,
        model: &str,
    ) -> Result<(HeaderName, HeaderValue), GatewayError> {
        let not_configured = || GatewayError::ProviderNotConfigured {
            model: model.to_owned(),
            provider: provider.as_str(),
        };
        if let Some(auth) = &target.auth {
            return Ok(auth.clone());
        }
        let Some(tokens) = &target.tokens else {
            return Err(not_configured());
        };
        let bearer = tokens
            .bearer()
            .await
            .map_err(|e| GatewayError::UpstreamUnavailable {
                provider: provider.as_str(),
                reason: format!("no Vertex AI access token: {e}"),
            })?;
        Ok((header::AUTHORIZATION, bearer))
    }

    pub fn response_timeout(&self) -> Duration {
        self.upstream.response_timeout()
    }

    /// Sends `body` to the provider's upstream endpoint (see `providers::upstream_endpoint`)
    /// with the client's end-to-end headers; a request whose stream flag is its URL
    /// (Gemini's native API) as not streamed.
    pub async fn send(
        &self,
        provider: Provider,
        endpoint: Endpoint,
        model: &str,
        client_headers: &HeaderMap,
        billing: &Billing,
        body: Bytes,
    ) -> Result<http::Response<Incoming>, GatewayError> {
        let to = To {
            provider,
            endpoint,
            model,
            stream: false,
        };
        self.send_to(to, client_headers, billing, body).await
    }

    /// [`Forwarder::send`], streamed where the URL says so.
    pub async fn send_to(
        &self,
        to: To<'_>,
        client_headers: &HeaderMap,
        billing: &Billing,
        body: Bytes,
    ) -> Result<http::Response<Incoming>, GatewayError> {
        let To {
            provider,
            endpoint,
            model,
            stream,
        } = to;
        let target = self.targets.get(&(provider, endpoint)).ok_or_else(|| {
            GatewayError::ProviderNotConfigured {
                model: model.to_owned(),
                provider: provider.as_str(),
            }
        })?;
        let (auth_name, auth) = self.auth(provider, target, model).await?;
        let uri = match &target.uri {
            Some(uri) => uri.clone(),
            None => crate::providers::request_path(&target.url, model, stream)
                .parse()
                .map_err(|_| GatewayError::InvalidRequest {
                    message: format!("model {model:?} cannot be named in a URL"),
                    param: Some("model"),
                    code: "invalid_model",
                })?,
        };
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = uri;
        *req.headers_mut() = upstream_headers(
            client_headers,
            billing,
            (auth_name, auth.clone()),
            Some(HeaderValue::from_static("application/json")),
            target.defaults,
        );
        let sent = self.upstream.send(req).await;
        // A refused token (revoked, clock skew) is not used again: the next call gets a
        // new one. This call's 401 reaches the caller (its body may not be resent here).
        if let (Some(tokens), Ok(r)) = (&target.tokens, &sent) {
            if r.status() == http::StatusCode::UNAUTHORIZED {
                tokens.invalidate(&auth).await;
            }
        }
        sent.map_err(|e| upstream_error(provider, e))
    }

    /// Whether `provider`'s API can be passed through: it has a base and a key.
    pub fn passes_through(&self, provider: Provider) -> bool {
        self.bases.get(&provider).is_some_and(|b| b.auth.is_some())
    }

    /// Sends a pass-through request: `body` streamed up as it arrives, with the client's
    /// allowed headers and its own `content-type` (a multipart boundary), the provider
    /// key instead of the caller's. The answer head is returned; its body is the caller's
    /// to stream down.
    pub async fn pass(
        &self,
        to: Pass<'_>,
        client_headers: &HeaderMap,
        billing: &Billing,
        body: crate::upstream::ReqBody,
    ) -> Result<http::Response<Incoming>, GatewayError> {
        let provider = to.provider;
        let not_configured = || GatewayError::ApiNotConfigured {
            provider: provider.as_str(),
        };
        let base = self.bases.get(&provider).ok_or_else(not_configured)?;
        let auth = base.auth.clone().ok_or_else(not_configured)?;
        let url = format!("{}{}", base.url, to.path_and_query);
        let uri: Uri = url
            .parse()
            .map_err(|_| GatewayError::invalid("the request path is not a valid URL", None))?;
        let content_type = client_headers.get(header::CONTENT_TYPE).cloned();
        let mut req = Request::new(body);
        *req.method_mut() = to.method;
        *req.uri_mut() = uri;
        *req.headers_mut() =
            upstream_headers(client_headers, billing, auth, content_type, base.defaults);
        self.upstream
            .send_streamed(req)
            .await
            .map_err(|e| upstream_error(provider, e))
    }
}

/// The headers of a request to the provider: the client's that pass the allow-list, the
/// policy's billing headers, the provider credential, the body's type and the provider's
/// defaults the client did not set.
fn upstream_headers(
    client_headers: &HeaderMap,
    billing: &Billing,
    (auth_name, auth): (HeaderName, HeaderValue),
    content_type: Option<HeaderValue>,
    defaults: &'static [(&'static str, &'static str)],
) -> HeaderMap {
    // Sized once: growing a header map one insert at a time reallocates it.
    let room = client_headers.len() + billing.headers.len() + defaults.len() + 2;
    let mut headers = HeaderMap::with_capacity(room);
    for (name, value) in client_headers {
        if passes(name, billing) {
            headers.append(name.clone(), value.clone());
        }
    }
    // The policy's organization and project win over the caller's.
    for (name, value) in &billing.headers {
        headers.insert(name.clone(), value.clone());
    }
    headers.insert(auth_name, auth);
    if let Some(ct) = content_type {
        headers.insert(header::CONTENT_TYPE, ct);
    }
    for (name, value) in defaults {
        if !headers.contains_key(*name) {
            headers.insert(*name, HeaderValue::from_static(value));
        }
    }
    headers
}

fn upstream_error(provider: Provider, e: UpstreamError) -> GatewayError {
    match e {
        UpstreamError::Timeout(d) => GatewayError::UpstreamTimeout {
            provider: provider.as_str(),
            secs: d.as_secs(),
        },
        UpstreamError::Connect(reason) | UpstreamError::Request(reason) => {
            GatewayError::UpstreamUnavailable {
                provider: provider.as_str(),
                reason,
            }
        }
    }
}

/// Where one request goes.
#[derive(Debug, Clone, Copy)]
pub struct To<'a> {
    pub provider: Provider,
    /// The upstream endpoint.
    pub endpoint: Endpoint,
    pub model: &'a str,
    /// Streamed: only read where the URL carries it (Gemini's `:streamGenerateContent`).
    pub stream: bool,
}

/// Reads a whole upstream answer, bounded in size and time.
pub async fn read_answer(
    provider: Provider,
    body: Incoming,
    timeout: Duration,
) -> Result<Bytes, GatewayError> {
    let collect = Limited::new(body, MAX_ANSWER_BYTES).collect();
    match tokio::time::timeout(timeout, collect).await {
        Err(_) => Err(GatewayError::UpstreamTimeout {
            provider: provider.as_str(),
            secs: timeout.as_secs(),
        }),
        Ok(Err(e)) => Err(GatewayError::UpstreamBadResponse {
            provider: provider.as_str(),
            reason: e.to_string(),
        }),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

/// The upstream response headers worth relaying: taken, not copied (a copy of each value
/// was a dozen allocations per answer), the hop-by-hop ones removed.
pub fn relay_headers(mut from: HeaderMap) -> HeaderMap {
    for name in DROP_RESPONSE {
        from.remove(name);
    }
    // Room for the x-sluice-* headers added next.
    from.reserve(4);
    from
}

pub fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

pub const X_SLUICE_TIER: HeaderName = HeaderName::from_static("x-sluice-tier");
pub const X_SLUICE_COST: HeaderName = HeaderName::from_static("x-sluice-cost-usd");
pub const X_SLUICE_BASELINE: HeaderName = HeaderName::from_static("x-sluice-baseline-usd");
pub const X_SLUICE_ROUTE: HeaderName = HeaderName::from_static("x-sluice-route");

/// A dollar amount as a header value: up to 10 decimals, trailing zeros trimmed.
pub fn usd(v: f64) -> HeaderValue {
    use std::io::Write;
    // Formatted on the stack: the header value's own copy is the only allocation.
    // f64::MAX has 309 integer digits.
    const ROOM: usize = 330;
    let mut buf = [0u8; ROOM];
    let mut w = &mut buf[..];
    if write!(w, "{v:.10}").is_err() {
        return HeaderValue::from_static("0");
    }
    let len = ROOM - w.len();
    let s = std::str::from_utf8(&buf[..len]).unwrap_or("0");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_sdk_metadata_passes_but_never_a_key_or_a_billing_project() {
        let pass = |n: &'static str| passes(&HeaderName::from_static(n), Billing::NONE);
        assert!(pass("x-goog-api-client"));
        assert!(pass("x-server-timeout"));
        assert!(pass("user-agent"));
        for n in [
            "x-goog-api-key",
            "x-goog-user-project",
            "authorization",
            "x-api-key",
            "cookie",
        ] {
            assert!(!pass(n), "{n}");
        }
    }

    #[test]
    fn dollar_amounts_are_trimmed_decimals() {
        for (v, want) in [
            (0.0, "0"),
            (0.000123, "0.000123"),
            (1.5, "1.5"),
            (12.0, "12"),
            (0.00000000004, "0"),
            (-0.25, "-0.25"),
        ] {
            assert_eq!(usd(v), want, "{v}");
        }
        assert_eq!(usd(f64::MAX).to_str().unwrap().len(), 309);
    }
}
