//! Vertex AI batch prediction for Gemini (reference 3.6, checklist 3.7 item 7): routing,
//! configuration and auth of the three Google Cloud surfaces a Vertex client needs. The
//! token endpoint is `oauth.rs`, Cloud Storage `gcs.rs`, the jobs `vertex_jobs.rs`.
//!
//! Routes, all at the simulator root:
//!
//! * `POST /token`: OAuth 2.0 JWT-bearer grant (`token_uri` of the service-account key);
//! * `/upload/storage/v1/...` and `/storage/v1/...`: Cloud Storage
//!   (`https://storage.googleapis.com` ↔ the simulator root);
//! * `/v1/projects/{p}/locations/{l}/batchPredictionJobs...` (and the SDK's
//!   `/v1beta1/projects/...`): the Vertex API (`https://{l}-aiplatform.googleapis.com/v1`
//!   ↔ the simulator's `/v1`, the base Sluice gives every provider);
//! * `POST /v1/projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent`
//!   and `:streamGenerateContent` (`?alt=sse`): Vertex's online prediction, answered as
//!   the Gemini API's `generateContent` is (same text, usage, faults).
//!
//! `/v1/projects/` belongs to Vertex only (no OpenAI, Anthropic or Gemini route starts
//! with it); `/token`, `/storage/` and `/upload/storage/` are new prefixes, distinct from
//! Gemini's `/upload/v1beta/` and `/upload/v1/`. Every Vertex and GCS request needs
//! `Authorization: Bearer <a token from /token that has not expired>`, else 401
//! `UNAUTHENTICATED` (Google envelope; GCS: its own envelope). Requests are recorded in
//! `/sim/requests` like all others. `x-sim-latency-ms` and [`super::SimConfig::latency`]
//! delay Vertex and GCS answers; `x-sim-fault: 429 | 500 | 503` answers
//! `RESOURCE_EXHAUSTED` / `INTERNAL` / `UNAVAILABLE` (after the auth check).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::request::Parts;
use http::{Response, StatusCode};

use super::Simulator;
use super::body::SimBody;
use super::error::splitmix;
use super::gcs::{self, GcsError, GcsStore};
use super::gemini::{GemError, error_response};
use super::oauth::{self, TokenStore};
use super::vertex_jobs::{self, JobStore};

/// Behaviour of the Vertex AI surfaces (a part of [`super::SimConfig`]).
#[derive(Debug, Clone)]
pub struct VertexConfig {
    /// Lifetime of an issued access token, reported as `expires_in` (default 3599 s).
    pub token_ttl: Duration,
    /// The Cloud Storage buckets that exist (default `["sim-bucket"]`).
    pub buckets: Vec<String>,
    /// How long a new job stays `JOB_STATE_QUEUED` (default 0).
    pub queue_delay: Duration,
    /// Run time of a job once out of the queue: `JOB_STATE_PENDING` for its first tenth,
    /// then `JOB_STATE_RUNNING`, rows completing evenly (default 2 s; the
    /// `turnaround_ms` batch fault overrides it).
    pub run_time: Duration,
    /// A job still queued this long after creation is `JOB_STATE_EXPIRED`, with no
    /// output (default 72 h).
    pub queue_expiry: Duration,
    /// A job still running this long after it left the queue is cut off:
    /// `JOB_STATE_CANCELLED`, the rows completed so far exported (default 24 h).
    pub run_cutoff: Duration,
    /// Most requests per job; more fail the job (default 200,000).
    pub max_requests: usize,
    /// Largest total input in bytes; more fails the job (default 1 GiB).
    pub max_input_bytes: u64,
}

impl Default for VertexConfig {
    fn default() -> Self {
        Self {
            token_ttl: Duration::from_secs(3599),
            buckets: vec!["sim-bucket".to_owned()],
            queue_delay: Duration::ZERO,
            run_time: Duration::from_secs(2),
            queue_expiry: Duration::from_secs(72 * 3600),
            run_cutoff: Duration::from_secs(24 * 3600),
            max_requests: 200_000,
            max_input_bytes: 1024 * 1024 * 1024,
        }
    }
}

/// Simulator state of the Vertex surfaces.
#[derive(Debug)]
pub struct VertexState {
    pub(super) tokens: TokenStore,
    pub(super) gcs: GcsStore,
    pub(super) jobs: JobStore,
    /// Per-instance salt of tokens and job ids.
    pub(super) salt: u64,
}

impl VertexState {
    /// Fresh state; ids and tokens derive from `tag`.
    pub fn new(tag: &str) -> Self {
        let salt = tag
            .bytes()
            .fold(0x7E27_E400_u64, |h, b| splitmix(h ^ u64::from(b)));
        Self {
            tokens: TokenStore::default(),
            gcs: GcsStore::default(),
            jobs: JobStore::default(),
            salt,
        }
    }
}

/// Whether `path` belongs to the Vertex surfaces.
pub fn owns(path: &str) -> bool {
    path == "/token"
        || path.starts_with("/upload/storage/")
        || path.starts_with("/storage/")
        || path.starts_with("/v1/projects/")
        || path.starts_with("/v1beta1/projects/")
}

/// The model and streaming of an online prediction path,
/// `/{v1,v1beta1}/projects/{p}/locations/{l}/publishers/google/models/{m}:{method}`.
fn online_model(path: &str) -> Option<(&str, bool)> {
    let rest = path
        .strip_prefix("/v1/projects/")
        .or_else(|| path.strip_prefix("/v1beta1/projects/"))?;
    let mut it = rest.splitn(4, '/');
    let (_project, locations, _location, tail) = (it.next()?, it.next()?, it.next()?, it.next()?);
    if locations != "locations" {
        return None;
    }
    let target = tail.strip_prefix("publishers/google/models/")?;
    let (model, method) = target.rsplit_once(':')?;
    if model.is_empty() || model.contains('/') {
        return None;
    }
    match method {
        "generateContent" => Some((model, false)),
        "streamGenerateContent" => Some((model, true)),
        _ => None,
    }
}

/// Whether `path` is a GCS upload (it gets the large body limit).
pub fn is_upload(path: &str) -> bool {
    path.starts_with("/upload/storage/")
}

fn is_gcs(path: &str) -> bool {
    path.starts_with("/upload/storage/") || path.starts_with("/storage/")
}

/// 401 `UNAUTHENTICATED` in the Google envelope.
fn unauthenticated() -> GemError {
    GemError {
        status: StatusCode::UNAUTHORIZED,
        code_name: "UNAUTHENTICATED",
        message: "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.".into(),
        details: None,
        parse: false,
    }
}

fn fault_error(parts: &Parts) -> Option<GemError> {
    match parts.headers.get("x-sim-fault")?.as_bytes() {
        b"429" => Some(GemError::batch_quota(
            "Resource has been exhausted (e.g. check quota).".to_owned(),
            "AiplatformRequestsPerMinutePerProject",
        )),
        b"500" => Some(GemError::internal()),
        b"503" => Some(GemError::unavailable(
            "The service is currently unavailable.",
        )),
        _ => None,
    }
}

/// An error on a path of `owns`, in that surface's envelope (body reading failures).
pub fn error_for(path: &str, err: &GemError) -> Response<SimBody> {
    if path == "/token" {
        return oauth::error_response(&oauth::OAuthError {
            error: "invalid_request",
            description: err.message.to_string(),
        });
    }
    if is_gcs(path) {
        return gcs::error_response(&GcsError {
            status: err.status,
            message: err.message.to_string(),
            reason: "invalid",
        });
    }
    error_response(err)
}

impl Simulator {
    /// Answers one request on a path of [`owns`].
    pub(super) async fn vertex(
        &self,
        parts: &Parts,
        body: &Bytes,
        seq: u64,
        _start: Instant,
    ) -> Response<SimBody> {
        let path = parts.uri.path();
        let latency = self.latency(&parts.headers);
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let config = &self.config.vertex;
        if path == "/token" {
            return oauth::token(
                &self.vertex.tokens,
                self.vertex.salt,
                config.token_ttl,
                parts,
                body,
                seq,
            );
        }
        let authorized = self.vertex.tokens.authorized(&parts.headers);
        if is_gcs(path) {
            if !authorized {
                return gcs::error_response(&GcsError::unauthenticated());
            }
            if let Some(e) = fault_error(parts) {
                return gcs::error_response(&GcsError {
                    status: e.status,
                    message: e.message.to_string(),
                    reason: if e.status == StatusCode::TOO_MANY_REQUESTS {
                        "rateLimitExceeded"
                    } else {
                        "backendError"
                    },
                });
            }
            // Finished jobs export their rows before anyone looks at the bucket.
            vertex_jobs::settle(self);
            return gcs::handle(self, parts, body).unwrap_or_else(|e| gcs::error_response(&e));
        }
        if !authorized {
            return error_response(&unauthenticated());
        }
        if let Some((model, stream)) = online_model(path) {
            if parts.method != http::Method::POST {
                return error_response(&GemError::not_found(format!(
                    "The requested URL {path} was not found on this server ({}).",
                    parts.method
                )));
            }
            return self
                .vertex_generate(parts, model, stream, body, seq)
                .await
                .unwrap_or_else(|e| error_response(&e));
        }
        if let Some(e) = fault_error(parts) {
            return error_response(&e);
        }
        vertex_jobs::handle(self, parts, body, seq).unwrap_or_else(|e| error_response(&e))
    }
}
