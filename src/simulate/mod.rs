//! A built-in simulated OpenAI provider, used by tests, the demo and load benchmarks.
//!
//! Endpoints (all answers deterministic except ids and timestamps):
//! `POST /v1/chat/completions` (JSON and SSE; tool calls and structured outputs by the
//! rules of `tools.rs`, instances of JSON Schemas by `schema.rs`), `POST /v1/completions`, `POST /v1/embeddings`,
//! `POST /v1/responses` (with `GET|DELETE /v1/responses/{id}`, `GET
//! /v1/responses/{id}/input_items` and `POST /v1/responses/{id}/cancel` for stored ones),
//! `POST /v1/moderations`, `POST /v1/images/{generations,edits,variations}`, `POST
//! /v1/audio/{transcriptions,translations,speech}`, `GET /v1/models`, `GET /v1/models/{id}`, the Files API
//! (`POST|GET /v1/files`, `GET|DELETE /v1/files/{id}`, `GET /v1/files/{id}/content`), the
//! Batch API (`POST|GET /v1/batches`, `GET /v1/batches/{id}`, `POST /v1/batches/{id}/cancel`),
//! plus the test-only `GET|DELETE /sim/requests` (request log), `DELETE /sim/cache` (forget
//! cached prefixes), `GET|POST /sim/batch-faults` and `GET /sim/batches/stats`.
//!
//! The Anthropic API lives beside it (reference 2, see `anthropic.rs`): `POST /v1/messages`
//! (JSON and named-event SSE, explicit prompt caching), `POST /v1/messages/count_tokens` and the Message Batches API below
//! `/v1/messages/batches`, answered in the Anthropic error envelope. Gemini's
//! OpenAI-compatible layer (reference 3.5, `google.rs`) answers `POST
//! {/v1,/v1beta}/openai/{chat/completions,embeddings}` like the OpenAI routes, with
//! Google's field list and array-wrapped error envelope. Google's native Gemini API
//! (reference 3.1–3.4: `generateContent`, `streamGenerateContent`, the File API and Batch
//! Mode, below `/v1beta/` and `/v1/`) is in `gemini.rs`, `gemini_files.rs` and
//! `gemini_batch.rs`, configured by [`SimConfig::gemini`]. Vertex AI batch prediction
//! (reference 3.6: the OAuth token endpoint `POST /token`, Cloud Storage below
//! `/storage/v1/` and `/upload/storage/v1/`, jobs below `/v1/projects/`) is in
//! `vertex.rs`, `oauth.rs`, `gcs.rs` and `vertex_jobs.rs`, configured by
//! [`SimConfig::vertex`].
//!
//! Every JSON endpoint refuses top-level fields its provider does not know (`fields.rs`),
//! in that provider's 400 shape, so a field Sluice adds by mistake fails a test.
//!
//! Fault controls: [`SimConfig::error_429_rate`] / [`SimConfig::error_500_rate`] (random,
//! deterministic from [`SimConfig::seed`], inference endpoints only),
//! [`SimConfig::flex_429_rate`] (`service_tier: "flex"` chat/responses requests), per
//! request the header `x-sim-fault: 429 | 500 | slow | flex-429 | downgrade` (Anthropic
//! routes also `overloaded`; native Gemini routes also `503 | 504 | flex-503`) and `x-sim-latency-ms: N`,
//! and the batch faults of `POST /sim/batch-faults` (see `faults.rs`).

mod anthropic;
mod anthropic_batch;
mod anthropic_cache;
mod anthropic_count;
mod anthropic_messages;
mod audio;
mod batch;
mod batch_run;
mod body;
mod cache;
mod chat;
mod completions;
mod embeddings;
mod error;
mod faults;
mod fields;
mod files;
mod gcs;
mod gemini;
mod gemini_batch;
mod gemini_content;
mod gemini_files;
mod google;
mod images;
mod log;
mod models;
mod moderations;
mod multipart;
mod oauth;
mod responses;
mod schema;
mod stored_responses;
mod text;
mod tools;
mod vertex;
mod vertex_jobs;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_anthropic;
#[cfg(test)]
mod tests_anthropic_batch;
#[cfg(test)]
mod tests_batch;
#[cfg(test)]
mod tests_fields;
#[cfg(test)]
mod tests_files;
#[cfg(test)]
mod tests_gemini;
#[cfg(test)]
mod tests_gemini_batch;
#[cfg(test)]
mod tests_gemini_files;
#[cfg(test)]
mod tests_more;
#[cfg(test)]
mod tests_passthrough;
#[cfg(test)]
mod tests_tools;
#[cfg(test)]
mod tests_vertex;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue};
use http::request::Parts;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub use body::SimBody;
pub use error::{ApiError, Fault};
pub use gemini::GeminiConfig;
pub use log::{LOG_CAPACITY, LoggedRequest};
pub use vertex::VertexConfig;

use anthropic_batch::MessageBatchStore;
use anthropic_cache::AnthropicCache;
use batch::BatchStore;
use body::Reply;
use cache::PromptCache;
use error::{Rng, splitmix};
use faults::BatchControl;
use files::FileStore;
use gemini::GeminiState;
use log::RequestLog;
use stored_responses::ResponseStore;
use vertex::VertexState;

/// Largest accepted request body.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Largest accepted `POST /v1/files` body: a 512 MB file plus form overhead.
const MAX_UPLOAD_BYTES: usize = files::MAX_FILE_BYTES + 1024 * 1024;

/// Extra delay of the `slow` fault.
const SLOW_DELAY: Duration = Duration::from_millis(200);

/// How long `serve` waits for open connections after shutdown before aborting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Whether a request body asks for `service_tier: "flex"`.
fn is_flex(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Tier<'a> {
        #[serde(borrow)]
        service_tier: Option<std::borrow::Cow<'a, str>>,
    }
    serde_json::from_slice::<Tier<'_>>(body)
        .is_ok_and(|t| t.service_tier.as_deref() == Some("flex"))
}

/// Behaviour of the simulated provider.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Added before every answer (default 0).
    pub latency: Duration,
    /// Between SSE chunks (default 0).
    pub stream_chunk_delay: Duration,
    /// Fraction of inference requests answered 429 `rate_limit_exceeded` (default 0).
    pub error_429_rate: f64,
    /// Fraction of inference requests answered 500 `server_error` (default 0).
    pub error_500_rate: f64,
    /// Seed of the deterministic RNG behind the rates above (default 1).
    pub seed: u64,
    /// Prompt-cache threshold in tokens (default 1024).
    pub cache_min_tokens: u64,
    /// Creation to `completed` of a batch (default 2 s; 0 = done at the first read).
    pub batch_turnaround: Duration,
    /// How long a cancelled batch stays `cancelling` (default 0).
    pub cancel_delay: Duration,
    /// Fraction of `service_tier: "flex"` chat/responses requests answered 429
    /// "Resource Unavailable" (default 0; deterministic from [`SimConfig::seed`]).
    pub flex_429_rate: f64,
    /// Most requests in one batch input file (default 50,000).
    pub batch_max_requests: usize,
    /// Largest batch input file in bytes (default 200 MB).
    pub batch_max_file_bytes: u64,
    /// Minimum Anthropic cacheable prefix in tokens (default 1024; reference 2.3).
    pub anthropic_cache_min_tokens: u64,
    /// Most requests in one Anthropic Message Batch (default 100,000).
    pub anthropic_batch_max_requests: usize,
    /// The native Gemini API: caching thresholds, Flex and Priority, files, Batch Mode.
    pub gemini: GeminiConfig,
    /// Vertex AI batch prediction, its OAuth token endpoint and Cloud Storage.
    pub vertex: VertexConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            stream_chunk_delay: Duration::ZERO,
            error_429_rate: 0.0,
            error_500_rate: 0.0,
            seed: 1,
            cache_min_tokens: 1024,
            batch_turnaround: Duration::from_secs(2),
            cancel_delay: Duration::ZERO,
            flex_429_rate: 0.0,
            batch_max_requests: 50_000,
            batch_max_file_bytes: 200 * 1024 * 1024,
            anthropic_cache_min_tokens: 1024,
            anthropic_batch_max_requests: 100_000,
            gemini: GeminiConfig::default(),
            vertex: VertexConfig::default(),
        }
    }
}

/// Per-request values shared with the endpoint handlers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meta {
    /// Request counter (used in ids).
    seq: u64,
    /// Unix seconds.
    created: u64,
    /// `x-sim-fault: downgrade`: a `fast` / `priority` / `ultrafast` request is served at
    /// `default`, as OpenAI does under a traffic ramp (reference 1.5).
    downgrade: bool,
}

/// Shared state of the simulator: configuration, RNGs, prompt-cache memory, request log,
/// files, batches and batch fault controls.
#[derive(Debug)]
pub struct Simulator {
    config: SimConfig,
    rng: Rng,
    flex_rng: Rng,
    counter: AtomicU64,
    cache: PromptCache,
    anthropic_cache: AnthropicCache,
    log: RequestLog,
    models: Bytes,
    files: FileStore,
    batches: BatchStore,
    message_batches: MessageBatchStore,
    /// Responses created with `store`, for retrieval and their input items.
    stored_responses: ResponseStore,
    control: BatchControl,
    gemini: GeminiState,
    vertex: VertexState,
    /// Per-instance part of file and batch ids, so that ids of a restarted simulator do
    /// not collide with ids a client remembers from an earlier one.
    tag: String,
}

/// Serves until `shutdown` resolves. Accepts HTTP/1.1 and h2c, sets `TCP_NODELAY`.
pub async fn serve(
    listener: TcpListener,
    config: SimConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    Arc::new(Simulator::new(config))
        .serve(listener, shutdown)
        .await
}

enum Route<'a> {
    Chat,
    Completions,
    Embeddings,
    Responses,
    Models,
    Model(&'a str),
    Files(files::FileRoute<'a>),
    Batches(batch::BatchRoute<'a>),
    StoredResponse(stored_responses::ResponseRoute<'a>),
    Moderations,
    ImageGenerations,
    /// Edits (`true`) or variations.
    ImageForm(bool),
    /// Translations (`true`) or transcriptions.
    Transcribe(bool),
    Speech,
}

impl Route<'_> {
    fn is_inference(&self) -> bool {
        matches!(
            self,
            Route::Chat | Route::Completions | Route::Embeddings | Route::Responses
        )
    }

    /// The top-level body fields this route accepts, for routes that take a JSON body.
    fn fields(&self) -> Option<&'static [&'static str]> {
        match self {
            Route::Chat => Some(fields::CHAT),
            Route::Completions => Some(fields::COMPLETIONS),
            Route::Embeddings => Some(fields::EMBEDDINGS),
            Route::Responses => Some(fields::RESPONSES),
            Route::Batches(batch::BatchRoute::Create) => Some(fields::BATCH_CREATE),
            Route::Moderations => Some(fields::MODERATIONS),
            Route::ImageGenerations => Some(fields::IMAGE_GENERATIONS),
            Route::Speech => Some(fields::SPEECH),
            _ => None,
        }
    }
}

fn route<'a>(method: &Method, path: &'a str) -> Result<Route<'a>, ApiError> {
    if let Some(r) = files::route(method, path) {
        return r.map(Route::Files);
    }
    if let Some(r) = batch::route(method, path) {
        return r.map(Route::Batches);
    }
    if let Some(r) = stored_responses::route(method, path) {
        return r.map(Route::StoredResponse);
    }
    let (route, allowed) = match path {
        "/v1/moderations" => (Route::Moderations, Method::POST),
        "/v1/images/generations" => (Route::ImageGenerations, Method::POST),
        "/v1/images/edits" => (Route::ImageForm(true), Method::POST),
        "/v1/images/variations" => (Route::ImageForm(false), Method::POST),
        "/v1/audio/transcriptions" => (Route::Transcribe(false), Method::POST),
        "/v1/audio/translations" => (Route::Transcribe(true), Method::POST),
        "/v1/audio/speech" => (Route::Speech, Method::POST),
        "/v1/chat/completions" => (Route::Chat, Method::POST),
        "/v1/completions" => (Route::Completions, Method::POST),
        "/v1/embeddings" => (Route::Embeddings, Method::POST),
        "/v1/responses" => (Route::Responses, Method::POST),
        "/v1/models" => (Route::Models, Method::GET),
        _ => match path.strip_prefix("/v1/models/") {
            Some(id) if !id.is_empty() => (Route::Model(id), Method::GET),
            _ => return Err(ApiError::not_found(method, path)),
        },
    };
    if *method == allowed {
        Ok(route)
    } else {
        Err(ApiError::method_not_allowed(method, path))
    }
}

/// Strict providers refuse a body that repeats a key; so does the simulator, so every
/// test through it checks that Sluice never sends one.
fn reject_duplicate_keys(body: &[u8]) -> Result<(), ApiError> {
    match crate::strict_json::parse(body) {
        Err(e) if e.to_string().starts_with("duplicate key") => Err(ApiError::invalid(
            format!("We could not parse the JSON body of your request: {e}"),
            None,
            Some("duplicate_key"),
        )),
        _ => Ok(()),
    }
}

fn authorized(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return false;
    };
    let value = value.as_bytes();
    value.len() > 7
        && value[..7].eq_ignore_ascii_case(b"bearer ")
        && value[7..].iter().any(|b| !b.is_ascii_whitespace())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

static FIXED_HEADERS: [(&str, &str); 7] = [
    ("openai-version", "2020-10-01"),
    ("x-ratelimit-limit-requests", "10000"),
    ("x-ratelimit-limit-tokens", "2000000"),
    ("x-ratelimit-remaining-requests", "9999"),
    ("x-ratelimit-remaining-tokens", "1999000"),
    ("x-ratelimit-reset-requests", "6ms"),
    ("x-ratelimit-reset-tokens", "30ms"),
];

impl Simulator {
    /// A simulator with empty cache and log.
    pub fn new(config: SimConfig) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let tag = format!("{:06x}", splitmix(nanos) & 0xFF_FFFF);
        Self {
            rng: Rng::new(config.seed),
            flex_rng: Rng::new(splitmix(config.seed ^ 0xF1E5)),
            files: FileStore::default(),
            batches: BatchStore::default(),
            message_batches: MessageBatchStore::default(),
            stored_responses: ResponseStore::default(),
            control: BatchControl::default(),
            gemini: GeminiState::new(config.seed, &tag),
            vertex: VertexState::new(&tag),
            tag,
            config,
            counter: AtomicU64::new(0),
            cache: PromptCache::default(),
            anthropic_cache: AnthropicCache::default(),
            log: RequestLog::default(),
            models: models::list().unwrap_or_default(),
        }
    }

    /// The next request counter value (also used for file, batch and line ids).
    fn next_seq(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// The logged requests, oldest first (at most [`LOG_CAPACITY`]).
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.log.snapshot()
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        self.log.clear();
    }

    /// Forgets every remembered prompt prefix.
    pub fn clear_cache(&self) {
        self.cache.clear();
        self.anthropic_cache.clear();
    }

    /// Serves connections from `listener` until `shutdown` resolves, then lets open
    /// connections finish (at most 5 s) and aborts the rest.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let builder = auto::Builder::new(TokioExecutor::new());
        let graceful = GracefulShutdown::new();
        let mut conns = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((stream, _peer)) => {
                        if let Err(e) = stream.set_nodelay(true) {
                            tracing::debug!(error = %e, "simulator: set_nodelay failed");
                        }
                        let sim = Arc::clone(&self);
                        let svc = hyper::service::service_fn(move |req| {
                            let sim = Arc::clone(&sim);
                            async move { Ok::<_, Infallible>(sim.handle(req).await) }
                        });
                        let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                        let conn = graceful.watch(conn);
                        conns.spawn(async move {
                            if let Err(e) = conn.await {
                                tracing::debug!(error = %e, "simulator: connection ended with error");
                            }
                        });
                    }
                    Err(e) => {
                        // Usually transient (aborted handshake, fd exhaustion): back off briefly.
                        tracing::warn!(error = %e, "simulator: accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
            }
        }
        drop(listener);
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep(SHUTDOWN_GRACE) => {}
        }
        conns.shutdown().await;
        Ok(())
    }

    /// Answers one request.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<SimBody>
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let start = Instant::now();
        let seq = self.next_seq();
        let (parts, body) = req.into_parts();
        let limit = if matches!(
            parts.uri.path(),
            "/v1/files" | "/v1/audio/transcriptions" | "/v1/audio/translations"
        ) || gemini::is_upload(parts.uri.path())
            || vertex::is_upload(parts.uri.path())
        {
            MAX_UPLOAD_BYTES
        } else {
            MAX_BODY_BYTES
        };
        let body = match Limited::new(body, limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                let err = if e.downcast_ref::<LengthLimitError>().is_some() {
                    ApiError::too_large()
                } else {
                    ApiError::invalid(format!("Failed to read request body: {e}"), None, None)
                };
                if vertex::owns(parts.uri.path()) {
                    let err = gemini::GemError::from_api(&err, None);
                    return vertex::error_for(parts.uri.path(), &err);
                }
                if anthropic::owns(parts.uri.path()) {
                    let err = anthropic::AnthError::from_api(&err);
                    return anthropic::error_response(seq, &err);
                }
                if google::owns(parts.uri.path()) {
                    return google::error_response(seq, start, &err.into());
                }
                if gemini::owns(&parts) {
                    return gemini::error_response(&gemini::GemError::from_api(&err, None));
                }
                return self.error_response(seq, start, &err);
            }
        };
        let path = parts.uri.path();
        if let Some(admin) = path.strip_prefix("/sim/") {
            return self.admin(&parts.method, admin, &body, seq, start);
        }
        self.log.record(LoggedRequest {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
            body: body.clone(),
        });
        if vertex::owns(path) {
            return self.vertex(&parts, &body, seq, start).await;
        }
        if anthropic::owns(path) {
            return self.anthropic(&parts, &body, seq).await;
        }
        if google::owns(path) {
            return self.google(&parts, &body, seq, start).await;
        }
        if gemini::owns(&parts) {
            return self.gemini(&parts, &body, seq, start).await;
        }
        match self.dispatch(&parts, &body, seq).await {
            Ok(reply) => self.reply_response(seq, start, reply),
            Err(err) => self.error_response(seq, start, &err),
        }
    }

    /// The start every OpenAI-shaped route shares: the route (for an authorized caller),
    /// the configured or requested latency, and the request's own fault, if any.
    async fn admit<'p, R>(
        &self,
        parts: &'p Parts,
        body: &[u8],
        route: impl FnOnce(&Method, &'p str) -> Result<R, ApiError>,
    ) -> Result<(R, Option<Fault>), ApiError> {
        let headers = &parts.headers;
        let fault = headers
            .get("x-sim-fault")
            .and_then(|v| Fault::parse(v.as_bytes()));
        let latency = self.latency(headers);
        let routed = route(&parts.method, parts.uri.path()).and_then(|r| {
            if authorized(headers) {
                Ok(r)
            } else {
                Err(ApiError::unauthorized())
            }
        });
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let route = routed?;
        // `flex-429` only refuses flex requests, as the provider's capacity shortage would:
        // the default-tier retry that follows goes through.
        let fault = fault.filter(|f| *f != Fault::FlexUnavailable || is_flex(body));
        if let Some(err) = fault.and_then(Fault::error) {
            return Err(err);
        }
        Ok((route, fault))
    }

    async fn dispatch(
        &self,
        parts: &Parts,
        body: &Bytes,
        seq: u64,
    ) -> Result<(Reply, Duration), ApiError> {
        let (route, fault) = self.admit(parts, body, route).await?;
        if route.is_inference() {
            reject_duplicate_keys(body)?;
        }
        if let Some(allowed) = route.fields() {
            fields::check_openai(body, allowed)?;
        }
        if route.is_inference() {
            self.random_fault()?;
        }
        if matches!(route, Route::Chat | Route::Responses) {
            self.flex_fault(body)?;
        }
        let meta = Meta {
            seq,
            created: unix_now(),
            downgrade: fault == Some(Fault::Downgrade),
        };
        let b = body.as_ref();
        let reply = match route {
            Route::Chat => chat::handle(self, &meta, b)?,
            Route::Completions => completions::handle(self, &meta, b)?,
            Route::Embeddings => embeddings::handle(self, &meta, b)?,
            Route::Responses => responses::handle(self, &meta, b)?,
            Route::Models => Reply::Json(self.models.clone()),
            Route::Model(id) => Reply::Json(models::get(id)?),
            Route::Files(r) => files::handle(self, r, parts, body, seq)?,
            Route::Batches(r) => batch::handle(self, r, parts.uri.query(), b, seq)?,
            Route::StoredResponse(r) => {
                stored_responses::handle(&self.stored_responses, r, parts.uri.query())?
            }
            Route::Moderations => moderations::handle(&meta, b)?,
            Route::ImageGenerations => images::generations(&meta, b)?,
            Route::ImageForm(edit) => images::from_form(&meta, parts, b, edit)?,
            Route::Transcribe(translate) => audio::transcribe(parts, b, translate)?,
            Route::Speech => audio::speech(b)?,
        };
        let slow = fault == Some(Fault::Slow);
        let chunk_delay = if slow {
            SLOW_DELAY
        } else {
            self.config.stream_chunk_delay
        };
        if slow && matches!(reply, Reply::Json(_)) {
            tokio::time::sleep(SLOW_DELAY).await;
        }
        Ok((reply, chunk_delay))
    }

    /// `x-sim-latency-ms`, else the configured latency.
    fn latency(&self, headers: &HeaderMap) -> Duration {
        headers
            .get("x-sim-latency-ms")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(self.config.latency, Duration::from_millis)
    }

    fn random_fault(&self) -> Result<(), ApiError> {
        let (r429, r500) = (self.config.error_429_rate, self.config.error_500_rate);
        if r429 <= 0.0 && r500 <= 0.0 {
            return Ok(());
        }
        let x = self.rng.next_f64();
        if x < r429 {
            Err(ApiError::rate_limited())
        } else if x < r429 + r500 {
            Err(ApiError::server_error())
        } else {
            Ok(())
        }
    }

    /// A `service_tier: "flex"` request draws from the flex RNG when a rate is set.
    fn flex_fault(&self, body: &[u8]) -> Result<(), ApiError> {
        let rate = self.config.flex_429_rate;
        if rate <= 0.0 {
            return Ok(());
        }
        if is_flex(body) && self.flex_rng.next_f64() < rate {
            return Err(ApiError::flex_unavailable());
        }
        Ok(())
    }

    fn admin(
        &self,
        method: &Method,
        path: &str,
        body: &[u8],
        seq: u64,
        start: Instant,
    ) -> Response<SimBody> {
        let result = match (path, method) {
            ("batch-faults", &Method::GET) => self.control.faults_json(),
            ("batch-faults", &Method::POST) => self.control.update(body),
            ("batches/stats", &Method::GET) => self.control.stats_json(),
            ("requests", &Method::GET) => self.log.to_json(),
            ("requests", &Method::DELETE) => {
                self.log.clear();
                Ok(Bytes::from_static(b"{\"cleared\":true}"))
            }
            ("cache", &Method::DELETE) => {
                self.clear_cache();
                Ok(Bytes::from_static(b"{\"cleared\":true}"))
            }
            ("requests" | "cache" | "batch-faults" | "batches/stats", m) => {
                Err(ApiError::method_not_allowed(m, &format!("/sim/{path}")))
            }
            (_, m) => Err(ApiError::not_found(m, &format!("/sim/{path}"))),
        };
        match result {
            Ok(json) => self.reply_response(seq, start, (Reply::Json(json), Duration::ZERO)),
            Err(err) => self.error_response(seq, start, &err),
        }
    }

    fn reply_response(
        &self,
        seq: u64,
        start: Instant,
        (reply, delay): (Reply, Duration),
    ) -> Response<SimBody> {
        let (body, content_type) = match reply {
            Reply::Json(bytes) => (SimBody::full(bytes), "application/json"),
            Reply::Sse(frames) => (SimBody::frames(frames, delay), "text/event-stream"),
            Reply::Raw(bytes) => (SimBody::full(bytes), "application/octet-stream"),
            Reply::Typed(bytes, media) => (SimBody::full(bytes), media),
        };
        let mut resp = Response::new(body);
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        if content_type == "text/event-stream" {
            h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        }
        common_headers(h, seq, start);
        resp
    }

    fn error_response(&self, seq: u64, start: Instant, err: &ApiError) -> Response<SimBody> {
        let mut resp = Response::new(SimBody::full(Bytes::from(err.body())));
        *resp.status_mut() = err.status;
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if err.retry_after {
            h.insert("retry-after", HeaderValue::from_static("1"));
            h.insert("retry-after-ms", HeaderValue::from_static("1000"));
        }
        if err.status == StatusCode::METHOD_NOT_ALLOWED {
            h.insert(
                http::header::ALLOW,
                HeaderValue::from_static("GET, POST, DELETE"),
            );
        }
        common_headers(h, seq, start);
        resp
    }
}

fn common_headers(h: &mut HeaderMap, seq: u64, start: Instant) {
    if let Ok(v) = HeaderValue::try_from(format!("req_sim{seq}")) {
        h.insert("x-request-id", v);
    }
    let ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    h.insert("openai-processing-ms", HeaderValue::from(ms));
    for (name, value) in FIXED_HEADERS {
        h.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
}
