//! The one pooled upstream client: hyper over rustls, HTTP/1.1 and HTTP/2 (ALPN),
//! keep-alive, TCP_NODELAY, connect timeout. Built once at start-up and shared; nothing
//! on the request path allocates a client.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::UpstreamConfig;
use crate::relay::BoxError;

/// A request body sent upstream: whole (`Full`) or streamed as it arrives (pass-through).
pub type ReqBody = UnsyncBoxBody<Bytes, BoxError>;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connect failed: {0}")]
    Connect(String),
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("request failed: {0}")]
    Request(String),
}

#[derive(Clone)]
pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, ReqBody>,
    response_timeout: Duration,
}

impl Upstream {
    pub fn new(cfg: &UpstreamConfig) -> Upstream {
        Upstream {
            client: build_client(cfg),
            response_timeout: cfg.response_timeout,
        }
    }

    pub fn response_timeout(&self) -> Duration {
        self.response_timeout
    }

    /// Sends a request and waits for the response head, within the response timeout.
    pub async fn send(
        &self,
        req: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<Incoming>, UpstreamError> {
        self.send_streamed(req.map(|b| {
            b.map_err(|never| -> BoxError { match never {} })
                .boxed_unsync()
        }))
        .await
    }

    /// [`Upstream::send`] with a body that may still be arriving: one pool for both.
    pub async fn send_streamed(
        &self,
        req: http::Request<ReqBody>,
    ) -> Result<http::Response<Incoming>, UpstreamError> {
        match tokio::time::timeout(self.response_timeout, self.client.request(req)).await {
            Err(_) => Err(UpstreamError::Timeout(self.response_timeout)),
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) if e.is_connect() => Err(UpstreamError::Connect(error_chain(&e))),
            Ok(Err(e)) => Err(UpstreamError::Request(error_chain(&e))),
        }
    }
}

/// A pooled rustls client for request bodies of type `B` (the interactive path sends
/// `Full`, batch uploads stream).
pub fn build_client<B>(cfg: &UpstreamConfig) -> Client<HttpsConnector<HttpConnector>, B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(cfg.connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    let builder = match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "no system CA certificates found: https upstreams will fail");
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
                rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            )
        }
    };
    let https = builder
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(cfg.pool_idle_timeout)
        .pool_max_idle_per_host(1024)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(https)
}

/// The error and its causes on one line (hyper's top-level message alone says little).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
