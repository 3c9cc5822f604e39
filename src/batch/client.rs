//! I/O for the OpenAI Files and Batch APIs: streaming multipart upload of a JSONL input
//! file, batch create / get / list, and streaming download of result files. The wire
//! format itself lives in `batch::openai`; this module only moves bytes.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

use crate::batch::openai::{Batch, BatchList};
use crate::config::{ProviderConfig, UpstreamConfig};
use crate::relay::BoxError;
use crate::types::Provider;
use crate::upstream::{build_client, error_chain};

type ReqBody = UnsyncBoxBody<Bytes, BoxError>;

#[derive(Debug, thiserror::Error)]
pub enum BatchApiError {
    #[error("{provider} answered {status}: {body}")]
    Status {
        provider: &'static str,
        status: StatusCode,
        body: String,
        retry_after: Option<Duration>,
    },
    #[error("{provider} unreachable: {reason}")]
    Transport {
        provider: &'static str,
        reason: String,
    },
    #[error("{provider} answer unreadable: {reason}")]
    Decode {
        provider: &'static str,
        reason: String,
    },
    #[error("provider {0} has no API key configured")]
    NotConfigured(&'static str),
}

impl BatchApiError {
    /// A refusal that waiting fixes (429, 5xx, transport): retry with backoff, never drop.
    pub fn is_retryable(&self) -> bool {
        match self {
            BatchApiError::Status { status, .. } => {
                *status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
            }
            BatchApiError::Transport { .. } => true,
            _ => false,
        }
    }
}

struct Target {
    base: String,
    /// The credential in the header this provider expects, plus any fixed headers.
    headers: Vec<(http::HeaderName, HeaderValue)>,
}

/// A chunk of an input file on its way up, produced page by page from the store.
pub type FileChunks = tokio::sync::mpsc::Receiver<Result<Bytes, BoxError>>;

pub struct BatchClient {
    client: Client<HttpsConnector<HttpConnector>, ReqBody>,
    targets: HashMap<Provider, Target>,
    timeout: Duration,
}

const BOUNDARY: &str = "sluice-batch-boundary-7c1f0e9a";

impl BatchClient {
    pub fn new(cfg: &UpstreamConfig, providers: &[ProviderConfig]) -> BatchClient {
        let targets = providers
            .iter()
            .filter_map(|p| {
                let key = p.api_key.as_ref()?;
                let headers = match p.provider {
                    Provider::Anthropic => {
                        let mut k = HeaderValue::from_str(key.expose()).ok()?;
                        k.set_sensitive(true);
                        vec![
                            (http::HeaderName::from_static("x-api-key"), k),
                            (
                                http::HeaderName::from_static("anthropic-version"),
                                HeaderValue::from_static(crate::forward::ANTHROPIC_VERSION),
                            ),
                        ]
                    }
                    _ => {
                        let mut auth =
                            HeaderValue::from_str(&format!("Bearer {}", key.expose())).ok()?;
                        auth.set_sensitive(true);
                        vec![(header::AUTHORIZATION, auth)]
                    }
                };
                Some((
                    p.provider,
                    Target {
                        base: p.base_url.clone(),
                        headers,
                    },
                ))
            })
            .collect();
        BatchClient {
            client: build_client(cfg),
            targets,
            // Control calls are small; uploads and downloads stream under their own pace.
            timeout: Duration::from_secs(120).min(cfg.response_timeout),
        }
    }

    /// OpenAI Batch API and Anthropic Message Batches, when the provider has a key.
    pub fn supports(&self, p: Provider) -> bool {
        matches!(p, Provider::OpenAi | Provider::Anthropic) && self.targets.contains_key(&p)
    }

    async fn call(
        &self,
        provider: Provider,
        method: Method,
        path: &str,
        body: ReqBody,
        content_type: &str,
    ) -> Result<http::Response<Incoming>, BatchApiError> {
        let name = provider.as_str();
        let t = self
            .targets
            .get(&provider)
            .ok_or(BatchApiError::NotConfigured(name))?;
        let mut req = Request::new(body);
        *req.method_mut() = method;
        // A results URL the provider handed out is absolute; it must point at the same
        // origin, or the provider key would be sent elsewhere.
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            if origin(path) != origin(&t.base) {
                return Err(BatchApiError::Transport {
                    provider: name,
                    reason: format!("refusing a results URL outside {}: {path}", origin(&t.base)),
                });
            }
            path.to_owned()
        } else {
            format!("{}{path}", t.base)
        };
        *req.uri_mut() = url.parse().map_err(|_| BatchApiError::Transport {
            provider: name,
            reason: format!("invalid URL {url}"),
        })?;
        for (k, v) in &t.headers {
            req.headers_mut().insert(k.clone(), v.clone());
        }
        if let Ok(ct) = HeaderValue::from_str(content_type) {
            req.headers_mut().insert(header::CONTENT_TYPE, ct);
        }
        let resp = match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => {
                return Err(BatchApiError::Transport {
                    provider: name,
                    reason: format!("no answer within {:?}", self.timeout),
                });
            }
            Ok(Err(e)) => {
                return Err(BatchApiError::Transport {
                    provider: name,
                    reason: error_chain(&e),
                });
            }
            Ok(Ok(r)) => r,
        };
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        Err(BatchApiError::Status {
            provider: name,
            status,
            body: String::from_utf8_lossy(&body[..body.len().min(2048)]).into_owned(),
            retry_after,
        })
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        provider: Provider,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<T, BatchApiError> {
        let resp = self
            .call(
                provider,
                method,
                path,
                Full::new(body).map_err(|e| match e {}).boxed_unsync(),
                "application/json",
            )
            .await?;
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| BatchApiError::Transport {
                provider: provider.as_str(),
                reason: e.to_string(),
            })?;
        serde_json::from_slice(&bytes.to_bytes()).map_err(|e| BatchApiError::Decode {
            provider: provider.as_str(),
            reason: e.to_string(),
        })
    }

    /// Uploads a JSONL file (`purpose=batch`) whose bytes arrive on `chunks`; returns its id.
    pub async fn upload(
        &self,
        provider: Provider,
        filename: &str,
        chunks: FileChunks,
    ) -> Result<String, BatchApiError> {
        let head = format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: application/jsonl\r\n\r\n"
        );
        let tail = format!("\r\n--{BOUNDARY}--\r\n");
        let file = futures_stream(chunks);
        let stream = futures_util::stream::iter([Ok::<_, BoxError>(Bytes::from(head))])
            .chain(file)
            .chain(futures_util::stream::iter([Ok(Bytes::from(tail))]))
            .map(|r| r.map(Frame::data));
        let body = StreamBody::new(stream).boxed_unsync();
        #[derive(serde::Deserialize)]
        struct FileObject {
            id: String,
        }
        let resp = self
            .call(
                provider,
                Method::POST,
                "/files",
                body,
                &format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .await?;
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| BatchApiError::Transport {
                provider: provider.as_str(),
                reason: e.to_string(),
            })?;
        let f: FileObject =
            serde_json::from_slice(&bytes.to_bytes()).map_err(|e| BatchApiError::Decode {
                provider: provider.as_str(),
                reason: e.to_string(),
            })?;
        Ok(f.id)
    }

    /// `POST /messages/batches` with a body streamed from `chunks`; the raw MessageBatch.
    pub async fn create_message_batch(
        &self,
        provider: Provider,
        chunks: FileChunks,
    ) -> Result<Bytes, BatchApiError> {
        let body =
            StreamBody::new(futures_stream(chunks).map(|r| r.map(Frame::data))).boxed_unsync();
        let resp = self
            .call(
                provider,
                Method::POST,
                "/messages/batches",
                body,
                "application/json",
            )
            .await?;
        collect(provider, resp).await
    }

    /// A GET returning the raw body (Anthropic batch objects and lists).
    pub async fn get_raw(&self, provider: Provider, path: &str) -> Result<Bytes, BatchApiError> {
        let resp = self
            .call(
                provider,
                Method::GET,
                path,
                Full::new(Bytes::new())
                    .map_err(|e| match e {})
                    .boxed_unsync(),
                "application/json",
            )
            .await?;
        collect(provider, resp).await
    }

    pub async fn create(&self, provider: Provider, body: Bytes) -> Result<Batch, BatchApiError> {
        self.json(provider, Method::POST, "/batches", body).await
    }

    pub async fn get(&self, provider: Provider, batch_id: &str) -> Result<Batch, BatchApiError> {
        self.json(
            provider,
            Method::GET,
            &format!("/batches/{batch_id}"),
            Bytes::new(),
        )
        .await
    }

    pub async fn list(
        &self,
        provider: Provider,
        after: Option<&str>,
    ) -> Result<BatchList, BatchApiError> {
        let path = match after {
            Some(a) => format!("/batches?limit=100&after={a}"),
            None => "/batches?limit=100".to_owned(),
        };
        self.json(provider, Method::GET, &path, Bytes::new()).await
    }

    /// The body of a result file, to be read as a stream.
    pub async fn download(
        &self,
        provider: Provider,
        file_id: &str,
    ) -> Result<Incoming, BatchApiError> {
        // OpenAI: a file id; Anthropic: the batch's `results_url`.
        let path = if provider == Provider::Anthropic {
            file_id.to_owned()
        } else {
            format!("/files/{file_id}/content")
        };
        let resp = self
            .call(
                provider,
                Method::GET,
                &path,
                Full::new(Bytes::new())
                    .map_err(|e| match e {})
                    .boxed_unsync(),
                "application/json",
            )
            .await?;
        Ok(resp.into_body())
    }
}

use futures_util::StreamExt;

async fn collect(
    provider: Provider,
    resp: http::Response<Incoming>,
) -> Result<Bytes, BatchApiError> {
    resp.into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| BatchApiError::Transport {
            provider: provider.as_str(),
            reason: e.to_string(),
        })
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..]
        .find('/')
        .map_or(url.len(), |i| after_scheme + i);
    &url[..end]
}

fn futures_stream(mut rx: FileChunks) -> impl futures_util::Stream<Item = Result<Bytes, BoxError>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
