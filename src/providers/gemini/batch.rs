//! Gemini Batch Mode of one API key (provider-apis.md 3.3, 3.4): the native API at
//! `{base}/models/...` and `{base}/batches/...` with `x-goog-api-key`, the File API's
//! resumable upload at `{origin}/upload{base path}/files`.
//!
//! The engine streams every flush to [`Batches::create`] as JSONL lines (the seam's
//! [`crate::providers::InputKind::Inline`]), because a flush's size is known only once its
//! bodies are read from the store. `create` buffers them up to the inline limit: a flush
//! that fits is sent inline (`InlinedRequest`s), a larger one is uploaded as a file first
//! (the buffered part, then the rest as it streams) and the batch names the file. A crash
//! between that upload and the create only leaves an unused input file (deleted by Google
//! after 48 h); the flush is found again by its `displayName` like any other.

use bytes::{Bytes, BytesMut};
use http::Method;
use http::header::{HeaderName, HeaderValue};

use super::batch_wire;
use crate::providers::lines::LineSplitter;
use crate::providers::{
    BatchApiError, BatchInput, FileChunks, FlushRef, Http, ResultBody, UpstreamBatch,
};

/// Inline create bodies must stay under 20 MB; the buffered lines grow by a few bytes
/// each when rewritten into entries, so a flush goes inline up to 16 MiB of lines.
pub const INLINE_MAX_BYTES: usize = 16 * 1024 * 1024;

/// Upload chunk size: every chunk but the last must be a multiple of the 8 MiB
/// granularity the upload start announces (the SDK sends exactly 8 MiB).
pub const UPLOAD_CHUNK_BYTES: usize = 8 * 1024 * 1024;

/// Most pages of `GET batches` read when looking for a flush's batch after a crash.
const FIND_PAGES: usize = 20;

pub struct Batches {
    http: Http,
    inline_max: usize,
    chunk: usize,
}

fn header(name: &'static str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    HeaderValue::from_str(value)
        .map(|v| (HeaderName::from_static(name), v))
        .map_err(|_| format!("{name}: not a header value"))
}

impl Batches {
    pub fn new(http: Http) -> Batches {
        Batches {
            http,
            inline_max: INLINE_MAX_BYTES,
            chunk: UPLOAD_CHUNK_BYTES,
        }
    }

    /// Other inline and chunk limits (tests use small ones to reach file mode and
    /// multi-chunk uploads with small batches).
    pub fn with_limits(mut self, inline_max: usize, chunk: usize) -> Batches {
        self.inline_max = inline_max;
        self.chunk = chunk.max(1);
        self
    }

    fn decode(&self, reason: impl Into<String>) -> BatchApiError {
        self.http.decode_error(reason)
    }

    fn transport(&self, reason: String) -> BatchApiError {
        BatchApiError::Transport {
            provider: self.http.provider(),
            reason,
        }
    }

    fn parse(&self, raw: &[u8]) -> Result<UpstreamBatch, BatchApiError> {
        batch_wire::parse_batch(raw)
            .map(|(b, _)| b)
            .map_err(|r| self.decode(r))
    }

    /// Uploads an input file (the seam's file input; `create` uses the same upload for
    /// flushes too large to go inline). Returns its `files/...` name.
    pub async fn upload(
        &self,
        f: FlushRef<'_>,
        chunks: FileChunks,
    ) -> Result<String, BatchApiError> {
        self.upload_from(f, Bytes::new(), Some(chunks)).await
    }

    /// Creates the batch named after the flush (`displayName`), inline or from a file.
    pub async fn create(
        &self,
        f: FlushRef<'_>,
        input: BatchInput,
    ) -> Result<UpstreamBatch, BatchApiError> {
        let file = match input {
            BatchInput::File(name) => name,
            BatchInput::Inline(mut chunks) => {
                let mut buf = BytesMut::new();
                let mut open = true;
                while buf.len() <= self.inline_max {
                    match chunks.recv().await {
                        Some(Ok(b)) => buf.extend_from_slice(&b),
                        Some(Err(e)) => return Err(self.transport(e.to_string())),
                        None => {
                            open = false;
                            break;
                        }
                    }
                }
                if !open {
                    let body = self.inline_body(f, &buf)?;
                    return self.create_call(f, body).await;
                }
                self.upload_from(f, buf.freeze(), Some(chunks)).await?
            }
        };
        let body = batch_wire::file_create(f.id, &file);
        self.create_call(f, body).await
    }

    /// The JSONL lines of a small flush as an inline create body.
    fn inline_body(&self, f: FlushRef<'_>, lines: &[u8]) -> Result<Bytes, BatchApiError> {
        let mut split = LineSplitter::default();
        let mut all = split.push(lines);
        all.extend(split.finish());
        let mut body = BytesMut::from(&batch_wire::inline_head(f.id)[..]);
        for (i, line) in all.iter().enumerate() {
            if i > 0 {
                body.extend_from_slice(b",");
            }
            let entry = batch_wire::inline_entry(line).map_err(|r| self.decode(r))?;
            body.extend_from_slice(&entry);
        }
        body.extend_from_slice(batch_wire::INLINE_TAIL);
        Ok(body.freeze())
    }

    async fn create_call(
        &self,
        f: FlushRef<'_>,
        body: Bytes,
    ) -> Result<UpstreamBatch, BatchApiError> {
        let model = f.model.strip_prefix("models/").unwrap_or(f.model);
        let raw = self
            .http
            .bytes(
                Method::POST,
                &format!("/models/{model}:batchGenerateContent"),
                body,
            )
            .await
            .map_err(with_retry_delay)?;
        self.parse(&raw)
    }

    /// A resumable upload (start, then `upload` chunks at the running offset, the last one
    /// `upload, finalize`) of `first` followed by what `rest` streams. The total size is
    /// not announced (`X-Goog-Upload-Header-Content-Length` is optional; UNCONFIRMED that
    /// Google accepts a start without it, as the protocol allows).
    async fn upload_from(
        &self,
        f: FlushRef<'_>,
        first: Bytes,
        mut rest: Option<FileChunks>,
    ) -> Result<String, BatchApiError> {
        let hdr = |name, value: &str| header(name, value).map_err(|r| self.decode(r));
        let start = [
            hdr("x-goog-upload-protocol", "resumable")?,
            hdr("x-goog-upload-command", "start")?,
            hdr("x-goog-upload-header-content-type", "application/jsonl")?,
        ];
        let (headers, _) = self
            .http
            .exchange(
                Method::POST,
                &upload_url(self.http.base()),
                batch_wire::upload_start(f.id),
                "application/json",
                &start,
            )
            .await
            .map_err(with_retry_delay)?;
        let session = headers
            .get("x-goog-upload-url")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| self.decode("the upload start gave no x-goog-upload-url"))?
            .to_owned();
        // The session URL needs no key (the SDK sends none); `Http` adds it anyway, which
        // is harmless: it only sends it to the base URL's own origin.
        let mut buf = BytesMut::from(&first[..]);
        let mut offset = 0u64;
        loop {
            while buf.len() <= self.chunk {
                let Some(rx) = rest.as_mut() else { break };
                match rx.recv().await {
                    Some(Ok(b)) => buf.extend_from_slice(&b),
                    Some(Err(e)) => return Err(self.transport(e.to_string())),
                    None => rest = None,
                }
            }
            let last = rest.is_none() && buf.len() <= self.chunk;
            let part = buf.split_to(if last { buf.len() } else { self.chunk });
            let n = part.len() as u64;
            let command = if last { "upload, finalize" } else { "upload" };
            let (_, answer) = self
                .http
                .exchange(
                    Method::POST,
                    &session,
                    part.freeze(),
                    "application/octet-stream",
                    &[
                        hdr("x-goog-upload-command", command)?,
                        hdr("x-goog-upload-offset", &offset.to_string())?,
                    ],
                )
                .await
                .map_err(with_retry_delay)?;
            offset += n;
            if last {
                return batch_wire::uploaded_name(&answer).map_err(|r| self.decode(r));
            }
        }
    }

    /// `batch_id` is the batch's resource name, `batches/...`.
    pub async fn get(&self, batch_id: &str) -> Result<UpstreamBatch, BatchApiError> {
        let raw = self
            .http
            .bytes(Method::GET, &resource(batch_id), Bytes::new())
            .await?;
        self.parse(&raw)
    }

    /// The batches whose `displayName` is this flush's id, newest first as listed.
    pub async fn find(&self, f: FlushRef<'_>) -> Result<Vec<UpstreamBatch>, BatchApiError> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..FIND_PAGES {
            let path = match &token {
                Some(t) => format!("/batches?pageSize=100&pageToken={t}"),
                None => "/batches?pageSize=100".to_owned(),
            };
            let raw = self.http.bytes(Method::GET, &path, Bytes::new()).await?;
            let (page, next) = batch_wire::parse_list(&raw).map_err(|r| self.decode(r))?;
            found.extend(
                page.into_iter()
                    .filter(|(_, name)| name.as_deref() == Some(f.id))
                    .map(|(b, _)| b),
            );
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        Ok(found)
    }

    /// A result location: a result file (`files/...`, downloaded), or an inline batch
    /// (`batches/...`), whose responses are read from the batch again and handed on as
    /// result-file lines.
    pub async fn results(&self, location: &str) -> Result<ResultBody, BatchApiError> {
        if location.starts_with("batches/") {
            let raw = self
                .http
                .bytes(Method::GET, &resource(location), Bytes::new())
                .await?;
            let lines = batch_wire::inline_result_lines(&raw).map_err(|r| self.decode(r))?;
            return Ok(crate::providers::control::full(lines));
        }
        self.http
            .download(&format!("{}:download?alt=media", resource(location)))
            .await
    }

    /// Cancel answers `{}`; the batch is read back for its state.
    pub async fn cancel(&self, batch_id: &str) -> Result<UpstreamBatch, BatchApiError> {
        self.http
            .bytes(
                Method::POST,
                &format!("{}:cancel", resource(batch_id)),
                Bytes::new(),
            )
            .await?;
        self.get(batch_id).await
    }
}

/// `/batches/x` for `batches/x` (or a bare id), `/files/y` for `files/y`.
fn resource(name: &str) -> String {
    if name.starts_with("batches/") || name.starts_with("files/") {
        format!("/{name}")
    } else {
        format!("/batches/{name}")
    }
}

/// The upload endpoint for a base URL: `https://host/v1beta` →
/// `https://host/upload/v1beta/files`.
pub fn upload_url(base: &str) -> String {
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let (origin, path) = match base[after_scheme..].find('/') {
        Some(i) => base.split_at(after_scheme + i),
        None => (base, ""),
    };
    format!("{origin}/upload{}/files", path.trim_end_matches('/'))
}

/// A 429 carries its wait in `RetryInfo.retryDelay`, not in a `Retry-After` header.
fn with_retry_delay(e: BatchApiError) -> BatchApiError {
    match e {
        BatchApiError::Status {
            provider,
            status,
            body,
            retry_after: None,
        } => BatchApiError::Status {
            provider,
            status,
            retry_after: batch_wire::retry_delay(&body),
            body,
        },
        e => e,
    }
}
