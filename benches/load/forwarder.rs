//! The bare forwarder: the least a proxy can do. It copies method, path, query and
//! headers to the upstream through one shared pooled client and streams the answer
//! back unchanged. It runs in its own process (the bench re-executes itself).

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::header::{CONNECTION, HOST};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

type Upstream = Client<HttpConnector, Incoming>;
type Reply = Response<Either<Incoming, Full<Bytes>>>;

/// Serves on `listen` forever, forwarding to `upstream` (`http://host:port`).
#[allow(dead_code)] // the allocation bench serves on its own runtime
pub fn run(
    listen: SocketAddr,
    upstream: String,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        serve(listener, upstream).await
    })
}

/// Forwards what `listener` accepts to `upstream`, forever.
pub async fn serve(
    listener: tokio::net::TcpListener,
    upstream: String,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let upstream: &'static str = upstream.trim_end_matches('/').to_owned().leak();
    {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: Upstream = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(usize::MAX)
            .build(connector);
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    eprintln!("bare forwarder: accept: {e}");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let client = client.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| forward(client.clone(), upstream, req));
                let _ = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }
}

async fn forward(
    client: Upstream,
    upstream: &'static str,
    req: Request<Incoming>,
) -> Result<Reply, Infallible> {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = match format!("{upstream}{path}").parse::<Uri>() {
        Ok(uri) => uri,
        Err(e) => return Ok(bad_gateway(format!("bad uri: {e}"))),
    };
    // The client sets Host for the upstream; Connection is hop-by-hop.
    parts.headers.remove(HOST);
    parts.headers.remove(CONNECTION);
    match client.request(Request::from_parts(parts, body)).await {
        Ok(resp) => Ok(resp.map(Either::Left)),
        Err(e) => Ok(bad_gateway(format!("upstream: {e:?}"))),
    }
}

fn bad_gateway(message: String) -> Reply {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from(message))));
    *resp.status_mut() = StatusCode::BAD_GATEWAY;
    resp
}
