//! OpenAI: bearer-key requests to `api.openai.com/v1`, and the Files + Batch APIs
//! (provider-apis.md 1.7, 1.8). The wire format is pure and lives in [`wire`].

use bytes::Bytes;
use http::Method;

use super::{
    BatchApiError, BatchInput, Capabilities, FileChunks, FlushRef, Http, ResultBody, UpstreamBatch,
};
use crate::types::Endpoint;

pub mod wire;

pub const CAPABILITIES: Capabilities = Capabilities {
    batch_endpoints: &[
        Endpoint::ChatCompletions,
        Endpoint::Completions,
        Endpoint::Embeddings,
        Endpoint::Responses,
    ],
    flex: true,
    // 50,000 requests and 200 MB per input file; each JSONL line adds its envelope to the
    // body, so 1 KiB per line is kept in reserve.
    max_batch_requests: 50_000,
    max_batch_bytes: 200 * 1000 * 1000 - 50_000 * 1024,
};

pub fn path(upstream: Endpoint) -> Option<&'static str> {
    (!matches!(upstream, Endpoint::Messages | Endpoint::GenerateContent)).then(|| upstream.suffix())
}

/// First path segments below `/v1/` the OpenAI API serves (the `paths` of
/// /work/shared/reference/openai-openapi.yaml), passed through whole by the gateway
/// (`files`, `uploads`, `batches` and the admin `organization`, `projects` are refused
/// before this is asked).
pub const PASS_THROUGH: &[&str] = &[
    "assistants",
    "audio",
    "chat",
    "chatkit",
    "completions",
    "containers",
    "content_provenance_checks",
    "conversations",
    "embeddings",
    "evals",
    "fine_tuning",
    "images",
    "models",
    "moderations",
    "realtime",
    "responses",
    "skills",
    "threads",
    "vector_stores",
    "videos",
];

const BOUNDARY: &str = "sluice-batch-boundary-7c1f0e9a";

/// The Files and Batch APIs of one OpenAI account.
pub struct Batches {
    http: Http,
}

impl Batches {
    pub fn new(http: Http) -> Batches {
        Batches { http }
    }

    /// Uploads the JSONL input (`purpose=batch`) as a streamed multipart body.
    pub async fn upload(
        &self,
        f: FlushRef<'_>,
        chunks: FileChunks,
    ) -> Result<String, BatchApiError> {
        let head = format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n",
            f.id
        );
        let tail = format!("\r\n--{BOUNDARY}--\r\n");
        let answer = self
            .http
            .stream(
                Method::POST,
                "/files",
                Bytes::from(head),
                chunks,
                Bytes::from(tail),
                &format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .await?;
        #[derive(serde::Deserialize)]
        struct FileObject {
            id: String,
        }
        let file: FileObject =
            serde_json::from_slice(&answer).map_err(|e| self.http.decode_error(e.to_string()))?;
        Ok(file.id)
    }

    pub async fn create(
        &self,
        f: FlushRef<'_>,
        input: BatchInput,
    ) -> Result<UpstreamBatch, BatchApiError> {
        let BatchInput::File(file_id) = input else {
            return Err(self.http.decode_error("OpenAI batches take an input file"));
        };
        let body = wire::create_request(&file_id, f.endpoint, f.id);
        let b: wire::Batch = self.http.json(Method::POST, "/batches", body).await?;
        Ok(b.upstream())
    }

    pub async fn get(&self, batch_id: &str) -> Result<UpstreamBatch, BatchApiError> {
        let b: wire::Batch = self
            .http
            .json(Method::GET, &format!("/batches/{batch_id}"), Bytes::new())
            .await?;
        Ok(b.upstream())
    }

    /// The batch whose metadata names this flush: newest first, so one created just before
    /// a crash is on the first pages.
    pub async fn find(&self, f: FlushRef<'_>) -> Result<Vec<UpstreamBatch>, BatchApiError> {
        let mut after: Option<String> = None;
        for _ in 0..20 {
            let path = match &after {
                Some(a) => format!("/batches?limit=100&after={a}"),
                None => "/batches?limit=100".to_owned(),
            };
            let page: wire::BatchList = self.http.json(Method::GET, &path, Bytes::new()).await?;
            let next = page
                .last_id
                .clone()
                .or_else(|| page.data.last().map(|b| b.id.clone()));
            if let Some(b) = page.data.into_iter().find(|b| b.flush_id() == Some(f.id)) {
                return Ok(vec![b.upstream()]);
            }
            if !page.has_more {
                break;
            }
            after = next;
        }
        Ok(Vec::new())
    }

    /// A result location is a file id.
    pub async fn results(&self, file_id: &str) -> Result<ResultBody, BatchApiError> {
        self.http
            .download(&format!("/files/{file_id}/content"))
            .await
    }

    pub async fn cancel(&self, batch_id: &str) -> Result<UpstreamBatch, BatchApiError> {
        let b: wire::Batch = self
            .http
            .json(
                Method::POST,
                &format!("/batches/{batch_id}/cancel"),
                Bytes::new(),
            )
            .await?;
        Ok(b.upstream())
    }
}
