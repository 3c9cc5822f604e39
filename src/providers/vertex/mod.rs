//! Vertex AI batch prediction for Gemini models (provider-apis.md 3.6): the input staged
//! as JSONL in Cloud Storage, one `batchPredictionJob` per flush (named by its
//! `displayName`), predictions read back from the job's output directory, all authorized
//! by a service-account OAuth token.
//!
//! * [`oauth`]: tokens from the key (JWT-bearer grant), cached, refreshed single-flight;
//! * [`gcs`]: upload, list and download objects;
//! * [`jobs`]: create, get, find by display name, cancel;
//! * [`wire`]: pure: input lines, create body, job states, prediction lines.
//!
//! Callers' OpenAI chat completions are translated to native `GenerateContentRequest`s
//! (`gemini::batch_request`) before [`input_line`] frames them; answered lines hold native
//! `GenerateContentResponse`s, translated back for such callers (`providers::batch_for_caller`)
//! and priced with the Gemini usage reader. Wired as `providers::Adapter::Vertex` when
//! the `vertex` provider is configured (`[providers.vertex]` or `VERTEX_PROJECT`).
//!
//! Interactive requests (and the fallbacks of deferred ones) go to Vertex's own online
//! endpoint, `{base}/projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent`
//! (`:streamGenerateContent?alt=sse`), with the same OAuth token ([`tokens`]): the
//! provider's base URL is the publisher path, so the path below it is Gemini's.

use std::future::Future;
use std::sync::Arc;

use http::StatusCode;
use http::header::{AUTHORIZATION, HeaderValue};

use super::{
    BatchApiError, BatchInput, FileChunks, FlushRef, Http, LineOutcome, ResultBody, UpstreamBatch,
};
use crate::clock::Clock;
use crate::config::{UpstreamConfig, VertexConfig};
use crate::types::Endpoint;

pub mod gcs;
pub mod jobs;
pub mod oauth;
pub mod wire;

#[cfg(test)]
mod tests;

/// The name batch errors carry.
const PROVIDER: &str = "vertex";

/// Where Sluice keeps its objects in the bucket.
const INPUT_DIR: &str = "sluice/in";
const OUTPUT_DIR: &str = "sluice/out";

/// What Vertex AI serves for Sluice: Gemini's endpoints, but interactively only the
/// native API (chat completions are translated to it, both ways).
pub const CAPABILITIES: super::Capabilities = super::gemini::CAPABILITIES;

/// The endpoint a caller's request is sent to: OpenAI chat completions become
/// `generateContent` (the OpenAI-compatible layer of Vertex is not used: its model names
/// and details are unconfirmed in the reference).
pub fn upstream_endpoint(caller: Endpoint) -> Endpoint {
    match caller {
        Endpoint::ChatCompletions => Endpoint::GenerateContent,
        other => other,
    }
}

/// The path below the publisher base URL (`.../publishers/google`): the native API only.
pub fn path(upstream: Endpoint) -> Option<&'static str> {
    match upstream {
        Endpoint::GenerateContent => Some(super::GENERATE_CONTENT),
        _ => None,
    }
}

/// The token source of the configured service account: read once, shared by the batch
/// adapter and the interactive path. The error names the key file but never quotes it.
pub fn tokens(
    upstream: &UpstreamConfig,
    v: &VertexConfig,
) -> Result<Arc<oauth::TokenSource>, String> {
    tokens_with_clock(upstream, v, Clock::System)
}

fn tokens_with_clock(
    upstream: &UpstreamConfig,
    v: &VertexConfig,
    clock: Clock,
) -> Result<Arc<oauth::TokenSource>, String> {
    let path = v.credentials_file.display();
    let key = std::fs::read(&v.credentials_file)
        .map_err(|e| format!("Vertex AI credentials {path}: cannot read: {e}"))?;
    let account = oauth::ServiceAccount::from_json(&key)
        .map_err(|e| format!("Vertex AI credentials {path}: {e}"))?;
    let token_http = Http::new(upstream, PROVIDER, &account.token_uri, Vec::new());
    Ok(Arc::new(oauth::TokenSource::new(
        account, token_http, clock,
    )))
}

/// One input line (see [`wire::input_line`]): the native request with the job id in its
/// labels.
pub fn input_line(id: &str, native_request: &[u8]) -> Vec<u8> {
    wire::input_line(id, native_request)
}

/// Vertex AI batch prediction jobs of one project and location, staged in one bucket.
pub struct Batches {
    /// The Vertex API base (`.../v1`); the token is added per call.
    api: Http,
    /// The Cloud Storage root.
    storage: Http,
    tokens: Arc<oauth::TokenSource>,
    jobs: jobs::Jobs,
    bucket: String,
}

impl Batches {
    /// Reads the service-account key named by the config. The error names the file but
    /// never quotes it.
    pub fn new(upstream: &UpstreamConfig, v: &VertexConfig) -> Result<Batches, String> {
        Self::with_clock(upstream, v, Clock::System)
    }

    /// The same with the clock that dates assertions and token expiry (tests hold it still).
    pub fn with_clock(
        upstream: &UpstreamConfig,
        v: &VertexConfig,
        clock: Clock,
    ) -> Result<Batches, String> {
        let tokens = tokens_with_clock(upstream, v, clock)?;
        Ok(Self::with_tokens(upstream, v, tokens))
    }

    /// The jobs of `v`, authorized by `tokens` (shared with the interactive path).
    pub fn with_tokens(
        upstream: &UpstreamConfig,
        v: &VertexConfig,
        tokens: Arc<oauth::TokenSource>,
    ) -> Batches {
        Batches {
            api: Http::new(upstream, PROVIDER, &v.base_url, Vec::new()),
            storage: Http::new(upstream, PROVIDER, &v.storage_url, Vec::new()),
            tokens,
            jobs: jobs::Jobs::new(&v.project, &v.location),
            bucket: v.bucket.clone(),
        }
    }

    /// Runs `call` with a bearer token; a 401 (token revoked, clock skew) drops the token
    /// and tries once more with a new one.
    async fn authed<T, F, Fut>(&self, http: &Http, call: F) -> Result<T, BatchApiError>
    where
        F: Fn(Http) -> Fut,
        Fut: Future<Output = Result<T, BatchApiError>>,
    {
        let token = self.tokens.bearer().await?;
        match call(http.with_header(AUTHORIZATION, token.clone())).await {
            Err(BatchApiError::Status { status, .. }) if status == StatusCode::UNAUTHORIZED => {
                self.tokens.invalidate(&token).await;
                let token: HeaderValue = self.tokens.bearer().await?;
                call(http.with_header(AUTHORIZATION, token)).await
            }
            other => other,
        }
    }

    fn output_prefix(&self, flush_id: &str) -> String {
        gcs::uri(&self.bucket, &format!("{OUTPUT_DIR}/{flush_id}/"))
    }

    /// Stages the JSONL input as `sluice/in/{flush}.jsonl`; returns its `gs://` URI.
    /// Streamed, so not retried on a 401 here: the engine uploads again.
    pub async fn upload(
        &self,
        f: FlushRef<'_>,
        chunks: FileChunks,
    ) -> Result<String, BatchApiError> {
        let object = format!("{INPUT_DIR}/{}.jsonl", f.id);
        let token = self.tokens.bearer().await?;
        let http = self.storage.with_header(AUTHORIZATION, token.clone());
        match gcs::upload(&http, &self.bucket, &object, chunks).await {
            Err(e @ BatchApiError::Status { status, .. }) if status == StatusCode::UNAUTHORIZED => {
                self.tokens.invalidate(&token).await;
                Err(e)
            }
            Err(e) => Err(e),
            Ok(()) => Ok(gcs::uri(&self.bucket, &object)),
        }
    }

    /// Creates the flush's job for its model (`gemini-2.5-flash`). Not idempotent: after a
    /// crash the engine calls [`Batches::find`].
    pub async fn create(
        &self,
        f: FlushRef<'_>,
        input: BatchInput,
    ) -> Result<UpstreamBatch, BatchApiError> {
        let model = f.model;
        let BatchInput::File(uri) = input else {
            return Err(self
                .api
                .decode_error("Vertex AI batch jobs take a staged input file"));
        };
        let body = wire::create_request(f.id, model, &uri, &self.output_prefix(f.id));
        let job = self
            .authed(&self.api, |h| {
                let body = body.clone();
                async move { self.jobs.create(&h, body).await }
            })
            .await?;
        self.view(job).await
    }

    pub async fn get(&self, batch_id: &str) -> Result<UpstreamBatch, BatchApiError> {
        let job = self
            .authed(
                &self.api,
                |h| async move { self.jobs.get(&h, batch_id).await },
            )
            .await?;
        self.view(job).await
    }

    /// Jobs whose `displayName` is this flush's id (a create whose answer was lost).
    pub async fn find(&self, f: FlushRef<'_>) -> Result<Vec<UpstreamBatch>, BatchApiError> {
        let found = self
            .authed(&self.api, |h| async move { self.jobs.find(&h, f.id).await })
            .await?;
        let mut out = Vec::with_capacity(found.len());
        for job in found {
            out.push(self.view(job).await?);
        }
        Ok(out)
    }

    /// A result location is a `gs://` URI from [`BatchState::Ended`](super::BatchState).
    pub async fn results(&self, location: &str) -> Result<ResultBody, BatchApiError> {
        let Some((bucket, object)) = gcs::parse_uri(location) else {
            return Err(self
                .storage
                .decode_error(format!("not a gs:// result location: {location}")));
        };
        self.authed(&self.storage, |h| async move {
            gcs::download(&h, bucket, object).await
        })
        .await
    }

    /// Best-effort: rows already done are kept and read as the results. Cancelling a job
    /// that has just ended answers 400 (FAILED_PRECONDITION); that job is returned as it is.
    pub async fn cancel(&self, batch_id: &str) -> Result<UpstreamBatch, BatchApiError> {
        let cancelled = self
            .authed(&self.api, |h| async move {
                self.jobs.cancel(&h, batch_id).await
            })
            .await;
        match cancelled {
            Ok(()) => self.get(batch_id).await,
            Err(e @ BatchApiError::Status { status, .. }) if status == StatusCode::BAD_REQUEST => {
                let b = self.get(batch_id).await?;
                if b.is_terminal() { Ok(b) } else { Err(e) }
            }
            Err(e) => Err(e),
        }
    }

    /// One prediction line: the job id and what it says.
    pub fn parse_line(line: &[u8]) -> Result<(String, LineOutcome), String> {
        wire::parse_line(line)
    }

    /// The engine's view of a job: once it is over, the `.jsonl` files in its output
    /// directory are its results (Gemini writes `predictions.jsonl`; any name is read).
    async fn view(&self, job: wire::Job) -> Result<UpstreamBatch, BatchApiError> {
        let dir = match (job.phase(), job.output_dir()) {
            (wire::Phase::Running, _) | (_, None) => return Ok(job.upstream(Vec::new())),
            (_, Some(dir)) => dir.to_owned(),
        };
        let Some((bucket, prefix)) = gcs::parse_uri(&dir) else {
            return Err(self
                .api
                .decode_error(format!("the job's output directory is not gs://: {dir}")));
        };
        let prefix = format!("{}/", prefix.trim_end_matches('/'));
        let names = self
            .authed(&self.storage, |h| {
                let prefix = prefix.clone();
                async move { gcs::list(&h, bucket, &prefix).await }
            })
            .await?;
        let results = names
            .into_iter()
            .filter(|n| n.ends_with(".jsonl"))
            .map(|n| gcs::uri(bucket, &n))
            .collect();
        Ok(job.upstream(results))
    }
}
