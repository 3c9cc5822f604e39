//! The control-plane HTTP client the batch adapters share: JSON calls, streamed uploads
//! and downloads against one provider's base URL with its credential. Knows no provider.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

use crate::config::UpstreamConfig;
use crate::relay::BoxError;
use crate::upstream::{build_client, error_chain};

pub use crate::upstream::ReqBody;

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

    /// How long the provider asked to be left alone, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            BatchApiError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// A chunk of a batch input on its way up, produced page by page from the store.
pub type FileChunks = tokio::sync::mpsc::Receiver<Result<Bytes, BoxError>>;

/// A streamed answer body (a result file), whatever produced it.
pub type ResultBody = UnsyncBoxBody<Bytes, BoxError>;

/// One provider's control-plane endpoint: its base URL and credential headers.
#[derive(Clone)]
pub struct Http {
    provider: &'static str,
    client: Client<HttpsConnector<HttpConnector>, ReqBody>,
    base: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
}

impl Http {
    pub fn new(
        cfg: &UpstreamConfig,
        provider: &'static str,
        base: &str,
        headers: Vec<(HeaderName, HeaderValue)>,
    ) -> Http {
        Http {
            provider,
            client: build_client(cfg),
            base: base.to_owned(),
            headers,
            // Control calls are small; uploads and downloads stream under their own pace.
            timeout: Duration::from_secs(120).min(cfg.response_timeout),
        }
    }

    pub fn provider(&self) -> &'static str {
        self.provider
    }

    /// A copy that also sends `name: value` (replacing an earlier value of `name`): for a
    /// credential that changes while the client lives, such as an OAuth access token.
    pub fn with_header(&self, name: HeaderName, value: HeaderValue) -> Http {
        let mut http = self.clone();
        http.headers.retain(|(k, _)| *k != name);
        http.headers.push((name, value));
        http
    }

    fn transport(&self, reason: impl Into<String>) -> BatchApiError {
        BatchApiError::Transport {
            provider: self.provider,
            reason: reason.into(),
        }
    }

    fn decode(&self, reason: impl Into<String>) -> BatchApiError {
        BatchApiError::Decode {
            provider: self.provider,
            reason: reason.into(),
        }
    }

    /// The base URL calls are relative to.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends one call; a non-2xx answer becomes [`BatchApiError::Status`].
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: ReqBody,
        content_type: &str,
    ) -> Result<http::Response<Incoming>, BatchApiError> {
        self.call_with(method, path, body, content_type, &[]).await
    }

    /// A small call with extra request headers (Google's resumable upload protocol); the
    /// answer's headers and whole body are returned.
    pub async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        content_type: &str,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<(http::HeaderMap, Bytes), BatchApiError> {
        let resp = self
            .call_with(method, path, full(body), content_type, extra)
            .await?;
        let headers = resp.headers().clone();
        Ok((headers, self.collect(resp).await?))
    }

    async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: ReqBody,
        content_type: &str,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<http::Response<Incoming>, BatchApiError> {
        let mut req = Request::new(body);
        *req.method_mut() = method;
        // A results URL the provider handed out is absolute; it must point at the same
        // origin, or the provider key would be sent elsewhere.
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            if origin(path) != origin(&self.base) {
                return Err(self.transport(format!(
                    "refusing a results URL outside {}: {path}",
                    origin(&self.base)
                )));
            }
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        };
        *req.uri_mut() = url
            .parse()
            .map_err(|_| self.transport(format!("invalid URL {url}")))?;
        for (k, v) in &self.headers {
            req.headers_mut().insert(k.clone(), v.clone());
        }
        for (k, v) in extra {
            req.headers_mut().insert(k.clone(), v.clone());
        }
        if let Ok(ct) = HeaderValue::from_str(content_type) {
            req.headers_mut().insert(header::CONTENT_TYPE, ct);
        }
        let resp = match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => return Err(self.transport(format!("no answer within {:?}", self.timeout))),
            Ok(Err(e)) => return Err(self.transport(error_chain(&e))),
            Ok(Ok(r)) => r,
        };
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
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
            provider: self.provider,
            status,
            body: String::from_utf8_lossy(&body[..body.len().min(2048)]).into_owned(),
            retry_after,
        })
    }

    /// A call with a small body whose whole answer is returned.
    pub async fn bytes(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<Bytes, BatchApiError> {
        let resp = self
            .call(method, path, full(body), "application/json")
            .await?;
        self.collect(resp).await
    }

    /// The same, decoded as JSON.
    pub async fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<T, BatchApiError> {
        let bytes = self.bytes(method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| self.decode(e.to_string()))
    }

    /// A call whose body streams from `chunks` between `head` and `tail`.
    pub async fn stream(
        &self,
        method: Method,
        path: &str,
        head: Bytes,
        chunks: FileChunks,
        tail: Bytes,
        content_type: &str,
    ) -> Result<Bytes, BatchApiError> {
        use futures_util::StreamExt;
        let mut rx = chunks;
        let file = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let stream = futures_util::stream::iter([Ok::<_, BoxError>(head)])
            .chain(file)
            .chain(futures_util::stream::iter([Ok(tail)]))
            .filter(|r| std::future::ready(!matches!(r, Ok(b) if b.is_empty())))
            .map(|r| r.map(Frame::data));
        let body = StreamBody::new(stream).boxed_unsync();
        let resp = self.call(method, path, body, content_type).await?;
        self.collect(resp).await
    }

    /// A GET whose answer is read as a stream (result files can be large).
    pub async fn download(&self, path: &str) -> Result<ResultBody, BatchApiError> {
        let resp = self
            .call(Method::GET, path, full(Bytes::new()), "application/json")
            .await?;
        Ok(resp
            .into_body()
            .map_err(|e| Box::new(e) as BoxError)
            .boxed_unsync())
    }

    async fn collect(&self, resp: http::Response<Incoming>) -> Result<Bytes, BatchApiError> {
        resp.into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .map_err(|e| self.transport(e.to_string()))
    }

    pub fn decode_error(&self, reason: impl Into<String>) -> BatchApiError {
        self.decode(reason)
    }
}

pub(super) fn full(body: Bytes) -> ReqBody {
    Full::new(body).map_err(|e| match e {}).boxed_unsync()
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..]
        .find('/')
        .map_or(url.len(), |i| after_scheme + i);
    &url[..end]
}

#[cfg(test)]
mod tests {
    #[test]
    fn origins() {
        assert_eq!(super::origin("http://a:1/x/y"), "http://a:1");
        assert_eq!(super::origin("https://a"), "https://a");
    }
}
