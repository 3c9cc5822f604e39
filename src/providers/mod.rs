//! The provider seam: everything that differs between OpenAI, Anthropic and Gemini lives
//! behind the functions and the [`Adapter`] enum of this module, each written once per
//! operation with one arm per provider:
//!
//! * interactive requests: where they go ([`upstream_endpoint`], [`path`]) and how they
//!   authenticate ([`credentials`], [`default_headers`]);
//! * what a provider can do ([`capabilities`]): batchable endpoints, flex, batch limits;
//! * the batch operations ([`Adapter`]): encode the input, upload it (or send it inline),
//!   create, get, find a batch by flush after a crash, read its results, cancel;
//! * what a caller of a translated API gets back ([`for_caller`]; batch results, which may
//!   come in another API than interactive answers, [`batch_for_caller`]).
//!
//! Adding a provider means one module here and one arm per operation. Nothing in this module
//! knows policies, tiers or the store: the engine drives it, the gateway asks it.

use std::time::Duration;

use ::http::header::{HeaderName, HeaderValue};
use bytes::{Bytes, BytesMut};

use crate::config::{ProviderConfig, UpstreamConfig};
use crate::types::{Endpoint, Provider};

pub mod anthropic;
mod control;
#[cfg(test)]
pub(crate) mod fake;
pub mod gemini;
pub mod lines;
pub mod openai;
#[cfg(test)]
mod proptests;
pub mod vertex;

pub use self::control::{BatchApiError, FileChunks, Http, ResultBody};

/// What a provider can do, as the gateway and the batch engine need to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// The caller endpoints its Batch API can serve (translated ones included).
    pub batch_endpoints: &'static [Endpoint],
    /// A flex tier on the interactive API (`service_tier: "flex"`, batch prices, 429 when
    /// short of capacity).
    pub flex: bool,
    /// Most requests and bytes in one upstream batch.
    pub max_batch_requests: usize,
    pub max_batch_bytes: u64,
}

impl Capabilities {
    pub fn batches(&self, endpoint: Endpoint) -> bool {
        self.batch_endpoints.contains(&endpoint)
    }
}

pub fn capabilities(p: Provider) -> &'static Capabilities {
    match p {
        Provider::OpenAi => &openai::CAPABILITIES,
        Provider::Anthropic => &anthropic::CAPABILITIES,
        Provider::Gemini => &gemini::CAPABILITIES,
        Provider::Vertex => &vertex::CAPABILITIES,
    }
}

/// Whether Sluice may choose `p`'s flex tier for a request to `upstream`: OpenAI's
/// (`capabilities().flex`, where the base URL accepts `service_tier`), and Gemini's on its
/// native API only, which reports the tier it served (`usageMetadata.serviceTier`,
/// `x-gemini-service-tier`); its OpenAI-compatible layer may not (UNCONFIRMED there), and a
/// flex answer billed at the standard price would hide the saving — or, worse, a standard
/// answer billed at flex would under-report.
pub fn flex(p: Provider, upstream: Endpoint, accepts_service_tier: bool) -> bool {
    match p {
        Provider::Gemini => upstream == Endpoint::GenerateContent,
        // Vertex Flex PayGo is a header whose value and prices are unconfirmed
        // (provider-apis.md 3.6): Sluice never chooses it.
        Provider::Vertex => false,
        Provider::OpenAi | Provider::Anthropic => capabilities(p).flex && accepts_service_tier,
    }
}

/// What authorizes requests to `p`: an API key, or (Vertex AI) a service account.
pub fn credential_kind(p: Provider) -> &'static str {
    match p {
        Provider::Vertex => "service account",
        Provider::OpenAi | Provider::Anthropic | Provider::Gemini => "key",
    }
}

/// The providers that serve the models of a price-table row of `priced`: Gemini models
/// are priced once and served by the Gemini API or by Vertex AI.
pub fn serving(priced: Provider) -> &'static [Provider] {
    match priced {
        Provider::Gemini => &[Provider::Gemini, Provider::Vertex],
        Provider::OpenAi => &[Provider::OpenAi],
        Provider::Anthropic => &[Provider::Anthropic],
        Provider::Vertex => &[Provider::Vertex],
    }
}

/// Who serves a model priced for `priced` that the model map sends to `mapped`: `mapped`
/// when it serves such models ([`serving`]), else `priced`.
pub fn served_by(priced: Provider, mapped: Provider) -> Provider {
    if serving(priced).contains(&mapped) {
        mapped
    } else {
        priced
    }
}

/// Where the built-in `gemini-*` entry of the model map points, given the configured
/// providers: Vertex AI when it is configured and the Gemini API (no key) is not.
pub fn gemini_default(configured: &[Provider]) -> Provider {
    if configured.contains(&Provider::Vertex) && !configured.contains(&Provider::Gemini) {
        Provider::Vertex
    } else {
        Provider::Gemini
    }
}

/// Whether a flex answer with `status` means "no capacity now": send it at the default tier.
/// OpenAI answers 429; Gemini 503 at capacity and 429 for its rate limits, and its flex has
/// no server-side fallback (provider-apis.md 3.2), so Sluice owns it.
pub fn flex_refused(p: Provider, status: http::StatusCode) -> bool {
    match p {
        Provider::Gemini | Provider::Vertex => matches!(status.as_u16(), 429 | 503),
        Provider::OpenAi | Provider::Anthropic => status == http::StatusCode::TOO_MANY_REQUESTS,
    }
}

/// The provider an endpoint belongs to whatever the model (Anthropic's native Messages
/// API, Gemini's native `generateContent`); `None` for the OpenAI-compatible endpoints,
/// which route by model. `mapped` is the provider the model map names for the model: a
/// Gemini-native request for a model a policy sends to `vertex` goes to Vertex AI, which
/// speaks the same API.
pub fn native_provider(endpoint: Endpoint, mapped: Provider) -> Option<Provider> {
    match (endpoint, mapped) {
        (Endpoint::Messages, _) => Some(Provider::Anthropic),
        (Endpoint::GenerateContent, Provider::Vertex) => Some(Provider::Vertex),
        (Endpoint::GenerateContent, _) => Some(Provider::Gemini),
        _ => None,
    }
}

/// Where the model goes in a path that names it ([`GENERATE_CONTENT`]).
pub const MODEL: &str = "{model}";

/// Gemini's native `generateContent` below its base URL: the model is in the path.
pub const GENERATE_CONTENT: &str = "/models/{model}:generateContent";

/// The path and query of one request below the base URL: `path` (from [`path`]) with its
/// model filled in, and a streamed `generateContent` as `:streamGenerateContent?alt=sse`
/// (the only stream format Sluice meters: without `alt=sse` Gemini streams a JSON array).
/// The model is one the gateway checked to be URL-safe.
pub fn request_path<'a>(path: &'a str, model: &str, stream: bool) -> std::borrow::Cow<'a, str> {
    if !path.contains(MODEL) {
        return std::borrow::Cow::Borrowed(path);
    }
    let path = path.replace(MODEL, model);
    match (stream, path.strip_suffix(":generateContent")) {
        (true, Some(head)) => format!("{head}:streamGenerateContent?alt=sse").into(),
        _ => path.into(),
    }
}

/// The endpoint a request for `caller` is sent to at `p`: Anthropic serves OpenAI chat
/// completions through its own Messages API, Vertex AI through `generateContent`
/// (translated both ways).
pub fn upstream_endpoint(p: Provider, caller: Endpoint) -> Endpoint {
    match p {
        Provider::Anthropic => anthropic::upstream_endpoint(caller),
        Provider::Vertex => vertex::upstream_endpoint(caller),
        Provider::OpenAi | Provider::Gemini => caller,
    }
}

/// Whether the gateway passes `p`'s whole API through (paths beyond its endpoints).
pub fn passes_through(p: Provider) -> bool {
    match p {
        Provider::OpenAi | Provider::Anthropic => true,
        Provider::Gemini | Provider::Vertex => false,
    }
}

/// The provider serving a pass-through path below `/v1/`, by its first segment (the
/// documented lists `PASS_THROUGH` of each API): a segment both serve (`models`, `skills`)
/// is Anthropic's for a caller speaking Anthropic's API. `None` when neither serves it.
pub fn pass_through(first: &str, anthropic_caller: bool) -> Option<Provider> {
    let openai = openai::PASS_THROUGH.contains(&first);
    let anthropic = anthropic::PASS_THROUGH.contains(&first);
    match (openai, anthropic) {
        (true, true) if anthropic_caller => Some(Provider::Anthropic),
        (true, _) => Some(Provider::OpenAi),
        (false, true) => Some(Provider::Anthropic),
        (false, false) => None,
    }
}

/// The provider of an explicit Batch API (`gateway::owned`): Anthropic's Message Batches
/// when `message_batches`, else OpenAI's Files and Batches.
pub fn explicit_batch_api(message_batches: bool) -> Provider {
    if message_batches {
        Provider::Anthropic
    } else {
        Provider::OpenAi
    }
}

/// The path below the provider's base URL for an upstream endpoint, or `None` where the
/// provider has no such API.
pub fn path(p: Provider, upstream: Endpoint) -> Option<&'static str> {
    match p {
        Provider::OpenAi => openai::path(upstream),
        Provider::Anthropic => anthropic::path(upstream),
        Provider::Gemini => gemini::path(upstream),
        Provider::Vertex => vertex::path(upstream),
    }
}

/// The credential header for a provider key on one upstream endpoint: [`credentials`],
/// except Gemini's native API, which wants `x-goog-api-key`.
pub fn credentials_for(
    p: Provider,
    upstream: Endpoint,
    key: &str,
) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = credentials(p, key)?;
    match (p, upstream) {
        (Provider::Gemini, Endpoint::GenerateContent) => {
            let mut v = HeaderValue::from_str(key).map_err(|_| {
                format!("the {p} API key contains characters not allowed in a header")
            })?;
            v.set_sensitive(true);
            Ok((gemini::KEY_HEADER, v))
        }
        _ => Ok((name, value)),
    }
}

/// The credential header for a provider key, marked sensitive so it is never logged
/// (Vertex AI's key is an OAuth access token, a bearer too).
pub fn credentials(p: Provider, key: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = match p {
        Provider::Anthropic => (anthropic::KEY_HEADER, key.to_owned()),
        Provider::OpenAi | Provider::Gemini | Provider::Vertex => {
            (::http::header::AUTHORIZATION, format!("Bearer {key}"))
        }
    };
    let mut v = HeaderValue::from_str(&value)
        .map_err(|_| format!("the {p} API key contains characters not allowed in a header"))?;
    v.set_sensitive(true);
    Ok((name, v))
}

/// Headers a request to `p` carries unless the caller sent its own value.
pub fn default_headers(p: Provider) -> &'static [(&'static str, &'static str)] {
    match p {
        Provider::Anthropic => anthropic::DEFAULT_HEADERS,
        Provider::OpenAi | Provider::Gemini | Provider::Vertex => &[],
    }
}

/// Turns a provider's answer to a translated request into the answer the caller's API
/// gives (Anthropic Messages → OpenAI chat completion); other answers pass unchanged.
/// `created` is the unix time the caller's request arrived; `model` the caller's (the
/// answer of a translated Gemini request does not name it).
pub fn for_caller(
    p: Provider,
    caller: Endpoint,
    status: u16,
    body: Bytes,
    (model, created): (&str, i64),
) -> Result<Bytes, String> {
    if upstream_endpoint(p, caller) == caller {
        return Ok(body);
    }
    match p {
        Provider::Anthropic => anthropic::for_caller(status, &body, created),
        Provider::Vertex => gemini::batch_for_caller(caller, status, &body, model, created),
        Provider::OpenAi | Provider::Gemini => Ok(body),
    }
}

/// Whether a request may be held for `p`'s Batch API beyond what its capabilities say:
/// Gemini batches only chat completions that translate to its native API (the rest goes
/// to the OpenAI-compatible endpoint interactively).
pub fn batchable(p: Provider, caller: Endpoint, body: &[u8]) -> bool {
    match p {
        Provider::Gemini => gemini::batchable(caller, body),
        // Vertex bodies are native already (translated when planned).
        Provider::OpenAi | Provider::Anthropic | Provider::Vertex => true,
    }
}

/// A batch result line's answer as the caller's API gives it. Gemini's Batch Mode answers
/// in its native API although interactive requests use the OpenAI-compatible one, so its
/// results are translated here (for `model`, the job's); other providers' batch answers
/// are those of their interactive API ([`for_caller`]).
pub fn batch_for_caller(
    p: Provider,
    caller: Endpoint,
    status: u16,
    body: Bytes,
    model: &str,
    created: i64,
) -> Result<Bytes, String> {
    match p {
        Provider::Gemini | Provider::Vertex => {
            gemini::batch_for_caller(caller, status, &body, model, created)
        }
        Provider::OpenAi | Provider::Anthropic => {
            for_caller(p, caller, status, body, (model, created))
        }
    }
}

/// The usage a batch result line's answer reports, in the provider's batch answer shape.
pub fn batch_usage(p: Provider, body: &[u8]) -> Option<crate::types::Usage> {
    match p {
        Provider::Gemini | Provider::Vertex => crate::usage::from_gemini_json(body),
        Provider::OpenAi | Provider::Anthropic => crate::usage::from_json(body),
    }
}

/// What one line of a result file says about its job.
#[derive(Debug, Clone, PartialEq)]
pub enum LineOutcome {
    /// The request ran: the HTTP status and body a synchronous call would have returned.
    Answered { status: u16, body: Bytes },
    /// The request never ran (expired, cancelled, ...): send it again.
    NotRun { code: String, message: String },
}

/// An upstream batch as the engine sees it, whatever the provider.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamBatch {
    pub id: String,
    /// The provider's own status word: recorded, and the `status` label of `sluice_batches_total`.
    pub status: String,
    pub state: BatchState,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BatchState {
    /// Validating, queued, running, finalizing, cancelling.
    Running,
    /// Finished: the answers (and per-line errors) are at these locations, read with
    /// [`Adapter::results`]. Lines missing from them did not run.
    Ended { results: Vec<String> },
    /// Refused as a whole after it was created (OpenAI `failed`): the input lines it named
    /// invalid (1-based) with the reason; none named means a limit (retry later).
    Refused { lines: Vec<(u64, String)> },
}

impl UpstreamBatch {
    pub fn is_terminal(&self) -> bool {
        !matches!(self.state, BatchState::Running)
    }
}

/// What a flush looks like to a provider: enough to encode, create and find its batch.
#[derive(Debug, Clone, Copy)]
pub struct FlushRef<'a> {
    pub id: &'a str,
    /// The caller endpoint of its jobs.
    pub endpoint: Endpoint,
    /// The model of its jobs (Gemini names it in the create URL).
    pub model: &'a str,
    pub job_count: u32,
    pub created_at_ms: i64,
}

/// How a provider takes a batch's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// Uploaded as a file first; the create call names the file (OpenAI).
    File,
    /// In the body of the create call itself (Anthropic), or streamed to the create call
    /// which decides (Gemini: inline while small, else an uploaded file).
    Inline,
}

/// The input of a create call.
pub enum BatchInput {
    File(String),
    Inline(FileChunks),
}

/// Formats a batch's requests, line by line, for one provider and endpoint. A value, so
/// the producer task that streams bodies from the store can own it.
#[derive(Debug, Clone, Copy)]
pub enum Encoder {
    OpenAiJsonl(Endpoint),
    AnthropicRequests,
    /// Gemini input file lines: OpenAI chat bodies translated, native ones as they are.
    GeminiLines(Endpoint),
    /// Vertex AI input lines: native requests (chat completions were translated when
    /// planned) with the job id in their labels.
    VertexLines,
}

impl Encoder {
    pub fn head(&self) -> &'static [u8] {
        match self {
            Encoder::OpenAiJsonl(_) | Encoder::GeminiLines(_) | Encoder::VertexLines => b"",
            Encoder::AnthropicRequests => anthropic::batch_wire::BODY_HEAD,
        }
    }

    pub fn tail(&self) -> &'static [u8] {
        match self {
            Encoder::OpenAiJsonl(_) | Encoder::GeminiLines(_) | Encoder::VertexLines => b"",
            Encoder::AnthropicRequests => anthropic::batch_wire::BODY_TAIL,
        }
    }

    /// Appends one request; `first` is whether it is the batch's first.
    pub fn encode(&self, first: bool, id: &str, body: &[u8], out: &mut BytesMut) {
        match self {
            Encoder::OpenAiJsonl(endpoint) => {
                out.extend_from_slice(&openai::wire::input_line(id, *endpoint, body))
            }
            Encoder::AnthropicRequests => {
                if !first {
                    out.extend_from_slice(b",");
                }
                out.extend_from_slice(&anthropic::batch_wire::request_entry(id, body));
            }
            Encoder::GeminiLines(endpoint) => {
                let request = gemini::batch_request(*endpoint, body);
                out.extend_from_slice(&gemini::batch_wire::file_line(id, &request))
            }
            Encoder::VertexLines => {
                let request = gemini::batch_request(Endpoint::GenerateContent, body);
                out.extend_from_slice(&vertex::input_line(id, &request))
            }
        }
    }
}

/// One provider's Batch API. Static dispatch: every operation is one `match` here.
pub enum Adapter {
    OpenAi(openai::Batches),
    Anthropic(anthropic::Batches),
    Gemini(gemini::Batches),
    /// Gemini models through Vertex AI batch prediction (a service account, no API key).
    Vertex(Box<vertex::Batches>),
    #[cfg(test)]
    Fake(std::sync::Arc<fake::Fake>),
}

impl Adapter {
    /// The adapter for a configured provider with a key, if its Batch API is supported.
    /// Vertex AI (configured by its project, bucket and service account, no key) shares
    /// `tokens` with the interactive path.
    pub fn new(
        cfg: &UpstreamConfig,
        p: &ProviderConfig,
        tokens: Option<&std::sync::Arc<vertex::oauth::TokenSource>>,
    ) -> Result<Option<Adapter>, String> {
        if p.provider == Provider::Vertex {
            return Ok(match (&p.vertex, tokens) {
                (Some(v), Some(t)) => Some(Adapter::Vertex(Box::new(
                    vertex::Batches::with_tokens(cfg, v, t.clone()),
                ))),
                _ => None,
            });
        }
        let Some(key) = &p.api_key else {
            return Ok(None);
        };
        let headers = match p.provider {
            // Batch Mode is the native API, keyed by `x-goog-api-key`; the interactive
            // path keeps the OpenAI-compatible endpoint's bearer key.
            Provider::Gemini => {
                let mut v = HeaderValue::from_str(key.expose()).map_err(|_| {
                    "the gemini API key contains characters not allowed in a header".to_owned()
                })?;
                v.set_sensitive(true);
                vec![(gemini::KEY_HEADER, v)]
            }
            Provider::OpenAi | Provider::Anthropic | Provider::Vertex => {
                let mut headers = vec![credentials(p.provider, key.expose())?];
                for (name, value) in default_headers(p.provider) {
                    headers.push((
                        HeaderName::from_static(name),
                        HeaderValue::from_static(value),
                    ));
                }
                headers
            }
        };
        let http = Http::new(cfg, p.provider.as_str(), &p.base_url, headers);
        Ok(Some(match p.provider {
            Provider::OpenAi => Adapter::OpenAi(openai::Batches::new(http)),
            Provider::Anthropic => Adapter::Anthropic(anthropic::Batches::new(http)),
            Provider::Gemini => Adapter::Gemini(gemini::Batches::new(http)),
            Provider::Vertex => return Ok(None),
        }))
    }

    /// Whether a created batch names its flush (OpenAI metadata), so that a batch whose
    /// create answer was lost is found exactly (Gemini: its `displayName`); Message
    /// Batches carry no metadata.
    pub fn batches_carry_flush_id(&self) -> bool {
        match self {
            Adapter::OpenAi(_) | Adapter::Gemini(_) | Adapter::Vertex(_) => true,
            Adapter::Anthropic(_) => false,
            #[cfg(test)]
            Adapter::Fake(f) => !f.finds_by_size(),
        }
    }

    pub fn input_kind(&self) -> InputKind {
        match self {
            Adapter::OpenAi(_) | Adapter::Vertex(_) => InputKind::File,
            Adapter::Anthropic(_) | Adapter::Gemini(_) => InputKind::Inline,
            #[cfg(test)]
            Adapter::Fake(f) => f.input_kind(),
        }
    }

    pub fn encoder(&self, endpoint: Endpoint) -> Encoder {
        match self {
            Adapter::OpenAi(_) => Encoder::OpenAiJsonl(endpoint),
            Adapter::Anthropic(_) => Encoder::AnthropicRequests,
            Adapter::Gemini(_) => Encoder::GeminiLines(endpoint),
            Adapter::Vertex(_) => Encoder::VertexLines,
            #[cfg(test)]
            Adapter::Fake(_) => Encoder::OpenAiJsonl(endpoint),
        }
    }

    /// Uploads a batch input file ([`InputKind::File`]); returns its id.
    pub async fn upload(
        &self,
        f: FlushRef<'_>,
        chunks: FileChunks,
    ) -> Result<String, BatchApiError> {
        match self {
            Adapter::OpenAi(a) => a.upload(f, chunks).await,
            Adapter::Anthropic(a) => Err(a.unsupported("file upload")),
            Adapter::Gemini(a) => a.upload(f, chunks).await,
            Adapter::Vertex(a) => a.upload(f, chunks).await,
            #[cfg(test)]
            Adapter::Fake(a) => a.upload(f, chunks).await,
        }
    }

    /// Creates the batch. Not idempotent: the engine records the intent first and
    /// reconciles with [`Adapter::find`] after a crash.
    pub async fn create(
        &self,
        f: FlushRef<'_>,
        input: BatchInput,
    ) -> Result<UpstreamBatch, BatchApiError> {
        match self {
            Adapter::OpenAi(a) => a.create(f, input).await,
            Adapter::Anthropic(a) => a.create(f, input).await,
            Adapter::Gemini(a) => a.create(f, input).await,
            Adapter::Vertex(a) => a.create(f, input).await,
            #[cfg(test)]
            Adapter::Fake(a) => a.create(f, input).await,
        }
    }

    pub async fn get(&self, batch_id: &str) -> Result<UpstreamBatch, BatchApiError> {
        match self {
            Adapter::OpenAi(a) => a.get(batch_id).await,
            Adapter::Anthropic(a) => a.get(batch_id).await,
            Adapter::Gemini(a) => a.get(batch_id).await,
            Adapter::Vertex(a) => a.get(batch_id).await,
            #[cfg(test)]
            Adapter::Fake(a) => a.get(batch_id).await,
        }
    }

    /// Batches that may have been created for this flush before a crash recorded the id,
    /// best match first. The engine skips those another flush already recorded.
    pub async fn find(&self, f: FlushRef<'_>) -> Result<Vec<UpstreamBatch>, BatchApiError> {
        match self {
            Adapter::OpenAi(a) => a.find(f).await,
            Adapter::Anthropic(a) => a.find(f).await,
            Adapter::Gemini(a) => a.find(f).await,
            Adapter::Vertex(a) => a.find(f).await,
            #[cfg(test)]
            Adapter::Fake(a) => a.find(f).await,
        }
    }

    /// A result location of an ended batch, read as a stream.
    pub async fn results(&self, location: &str) -> Result<ResultBody, BatchApiError> {
        match self {
            Adapter::OpenAi(a) => a.results(location).await,
            Adapter::Anthropic(a) => a.results(location).await,
            Adapter::Gemini(a) => a.results(location).await,
            Adapter::Vertex(a) => a.results(location).await,
            #[cfg(test)]
            Adapter::Fake(a) => a.results(location).await,
        }
    }

    /// One line of a result file: the job id and what it says.
    pub fn parse_line(&self, line: &[u8]) -> Result<(String, LineOutcome), String> {
        match self {
            Adapter::OpenAi(_) => openai::wire::parse_line(line),
            Adapter::Anthropic(_) => anthropic::batch_wire::parse_line(line),
            Adapter::Gemini(_) => gemini::batch_wire::parse_line(line),
            Adapter::Vertex(_) => vertex::Batches::parse_line(line),
            #[cfg(test)]
            Adapter::Fake(_) => openai::wire::parse_line(line),
        }
    }

    pub async fn cancel(&self, batch_id: &str) -> Result<UpstreamBatch, BatchApiError> {
        match self {
            Adapter::OpenAi(a) => a.cancel(batch_id).await,
            Adapter::Anthropic(a) => a.cancel(batch_id).await,
            Adapter::Gemini(a) => a.cancel(batch_id).await,
            Adapter::Vertex(a) => a.cancel(batch_id).await,
            #[cfg(test)]
            Adapter::Fake(a) => a.cancel(batch_id).await,
        }
    }
}

/// How long to leave a refused create alone: what the provider asked, else exponential
/// from `base`, at most 15 minutes.
pub fn create_backoff(e: &BatchApiError, base: Duration, attempts: u32) -> Duration {
    e.retry_after()
        .unwrap_or_else(|| base * 2u32.saturating_pow(attempts.min(6)))
        .min(Duration::from_secs(900))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemini_native_requests_name_their_model_and_use_the_google_key_header() {
        let native = path(Provider::Gemini, Endpoint::GenerateContent).unwrap();
        assert_eq!(
            request_path(native, "gemini-2.5-flash", false),
            "/models/gemini-2.5-flash:generateContent"
        );
        assert_eq!(
            request_path(native, "gemini-2.5-flash", true),
            "/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
        // Fixed paths are left alone, streamed or not (the body says so).
        assert_eq!(
            request_path("/chat/completions", "m", true),
            "/chat/completions"
        );
        assert_eq!(path(Provider::OpenAi, Endpoint::GenerateContent), None);
        assert_eq!(path(Provider::Anthropic, Endpoint::GenerateContent), None);
        let (name, value) =
            credentials_for(Provider::Gemini, Endpoint::GenerateContent, "k").unwrap();
        assert_eq!(
            (name.as_str(), value.as_bytes()),
            ("x-goog-api-key", &b"k"[..])
        );
        assert!(value.is_sensitive());
        // The OpenAI-compatible layer keeps the bearer key.
        let (name, value) =
            credentials_for(Provider::Gemini, Endpoint::ChatCompletions, "k").unwrap();
        assert_eq!(
            (name.as_str(), value.as_bytes()),
            ("authorization", &b"Bearer k"[..])
        );
        assert_eq!(
            native_provider(Endpoint::GenerateContent, Provider::Gemini),
            Some(Provider::Gemini)
        );
        // A model a policy sends to Vertex AI keeps the native API, at Vertex.
        assert_eq!(
            native_provider(Endpoint::GenerateContent, Provider::Vertex),
            Some(Provider::Vertex)
        );
        assert_eq!(
            native_provider(Endpoint::ChatCompletions, Provider::Vertex),
            None
        );
        let native = path(Provider::Vertex, Endpoint::GenerateContent).unwrap();
        assert_eq!(
            request_path(native, "gemini-2.5-flash", true),
            "/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
        assert_eq!(
            upstream_endpoint(Provider::Vertex, Endpoint::ChatCompletions),
            Endpoint::GenerateContent
        );
        assert_eq!(path(Provider::Vertex, Endpoint::Embeddings), None);
    }
}
