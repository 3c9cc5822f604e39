//! The listener: accepts TCP (optionally TLS), sets TCP_NODELAY, serves HTTP/1.1 and h2
//! with hyper-util's auto builder, and shuts down gracefully. Takes a bound listener and a
//! shutdown future, so tests run it in-process on port 0.
//!
//! Every connection is bounded in every phase (`conn`): TLS handshake, protocol detection
//! and the first request head within `header_read_timeout`, then closed after `idle_timeout`
//! with no request in flight; dead HTTP/2 peers by keep-alive PINGs; and at most
//! `max_connections` open, the longest-idle evicted first. Errors hyper answers by itself
//! become JSON (`http_errors`).
//!
//! Every task the server runs is tracked (`lifecycle::Tasks`): one per connection, and
//! hyper's own per-stream HTTP/2 tasks (through [`TrackedExec`]). At shutdown the listener
//! closes, connections close once idle (HTTP/2: GOAWAY, open streams finish), and whatever
//! is still open at the drain deadline is cut; `run` returns when every task has ended.

mod conn;
mod http_errors;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_util::future::Either;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::gateway::{App, RespBody, handle};
use crate::lifecycle::{self, Deadlines, Tasks};
use conn::{Conn, InFlight, Registry, Timeouts, Tracked};
use http_errors::{H1Log, HttpErrors, MAX_HEAD_BYTES, MAX_HEADERS};

/// How long a connection asked to close (idle, evicted, shutdown) may take to say goodbye
/// once no request is in flight: an HTTP/2 peer that never acks GOAWAY's PING is cut then.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

pub struct ServerOptions {
    /// TLS handshake plus first request head; later HTTP/1.1 heads too.
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub http2_keep_alive_interval: Duration,
    pub http2_keep_alive_timeout: Duration,
    pub http2_max_concurrent_streams: u32,
    pub tls: Option<TlsAcceptor>,
    /// From the shutdown signal to exit, at most ([`lifecycle::SHUTDOWN_TIMEOUT`]); requests
    /// in flight get its first 5/6 ([`lifecycle::Deadlines`]).
    pub shutdown_timeout: Duration,
}

impl ServerOptions {
    pub fn new(config: &Config, tls: Option<TlsAcceptor>) -> Self {
        ServerOptions {
            header_read_timeout: config.header_read_timeout,
            idle_timeout: config.idle_timeout,
            max_connections: config.max_connections,
            http2_keep_alive_interval: config.http2_keep_alive_interval,
            http2_keep_alive_timeout: config.http2_keep_alive_timeout,
            http2_max_concurrent_streams: config.http2_max_concurrent_streams,
            tls,
            shutdown_timeout: lifecycle::SHUTDOWN_TIMEOUT,
        }
    }
}

/// Builds a TLS acceptor from PEM certificate chain and key files.
pub fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<TlsAcceptor, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| format!("TLS certificate/key: {e}"))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// Everything a connection task needs, shared.
struct Shared {
    app: Arc<App>,
    builder: Builder<TrackedExec>,
    tls: Option<TlsAcceptor>,
    timeouts: Timeouts,
    /// Cancelled at shutdown: close once idle.
    stop: CancellationToken,
}

/// hyper's executor (HTTP/2 stream tasks): spawned on the server's tracked tasks, and
/// dropped when the connections are cut, so none outlives the server.
#[derive(Clone)]
struct TrackedExec {
    tasks: Tasks,
    cut: CancellationToken,
}

impl<F> hyper::rt::Executor<F> for TrackedExec
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        self.tasks
            .spawn(lifecycle::until_cut(self.cut.clone(), fut));
    }
}

fn http_builder(opts: &ServerOptions, exec: TrackedExec) -> Builder<TrackedExec> {
    let mut builder = Builder::new(exec);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        .keep_alive(true)
        .max_headers(MAX_HEADERS)
        .max_buf_size(MAX_HEAD_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(opts.http2_keep_alive_interval)
        .keep_alive_timeout(opts.http2_keep_alive_timeout)
        .max_concurrent_streams(opts.http2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(MAX_HEAD_BYTES).unwrap_or(u32::MAX));
    builder
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish until the drain
/// deadline ([`lifecycle::Deadlines`] of `opts.shutdown_timeout`), cuts what is still open,
/// and returns once every connection and stream task has ended.
pub async fn run(
    listener: TcpListener,
    app: Arc<App>,
    opts: ServerOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let registry = Registry::new(conn::connection_cap(opts.max_connections));
    // Connection tasks and hyper's stream tasks; its token asks connections to close.
    let tasks = Tasks::new("connection");
    let cut = CancellationToken::new();
    let exec = TrackedExec {
        tasks: tasks.clone(),
        cut: cut.clone(),
    };
    let shared = Arc::new(Shared {
        app,
        builder: http_builder(&opts, exec),
        tls: opts.tls.clone(),
        timeouts: Timeouts {
            first_request: opts.header_read_timeout,
            idle: opts.idle_timeout,
        },
        stop: tasks.token().clone(),
    });
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _peer)) => match registry.admit() {
                    Some(conn) => {
                        let serve = serve_connection(shared.clone(), stream, conn);
                        tasks.spawn(lifecycle::until_cut(cut.clone(), serve));
                    }
                    None => tracing::debug!(
                        cap = registry.cap(),
                        "connection refused: every open connection has a request in flight"
                    ),
                },
                Err(e) => accept_failed(&e, &registry).await,
            },
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    let deadlines = Deadlines::after(tokio::time::Instant::now(), opts.shutdown_timeout);
    tasks.stop();
    if let Err(e) = tasks.wait(deadlines.drain).await {
        tracing::warn!(
            open = registry.len(),
            tasks = e.open,
            "shutdown: connections still open at the drain deadline, closing them"
        );
        cut.cancel();
        if let Err(e) = tasks.wait(deadlines.exit).await {
            tracing::warn!(error = %e, "shutdown: server tasks did not end");
        }
    }
    Ok(())
}

/// Accept failed: out of file descriptors, most often. Closing the longest-idle connection
/// frees one for the next accept; backing off either way means accept never spins.
async fn accept_failed(e: &std::io::Error, registry: &Registry) {
    let fd_exhausted = matches!(
        e.raw_os_error(),
        Some(code) if code == libc::EMFILE || code == libc::ENFILE
    );
    if fd_exhausted && registry.evict_idlest() {
        tracing::debug!(error = %e, "accept failed; closed the longest-idle connection");
        tokio::time::sleep(Duration::from_millis(5)).await;
    } else {
        tracing::warn!(error = %e, "accept failed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn serve_connection(shared: Arc<Shared>, stream: TcpStream, conn: Conn) {
    // Without TCP_NODELAY the first small SSE event can wait ~40 ms on Nagle + delayed ACK.
    let _ = stream.set_nodelay(true);
    let Some(acceptor) = shared.tls.clone() else {
        return serve_http(&shared, stream, &conn).await;
    };
    let handshake = tokio::time::timeout(shared.timeouts.first_request, acceptor.accept(stream));
    let tls = tokio::select! {
        r = handshake => match r {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => return tracing::debug!(error = %e, "TLS handshake failed"),
            Err(_) => return tracing::debug!("TLS handshake timed out"),
        },
        _ = conn.idle_expired(shared.timeouts) => return tracing::debug!("evicted during the TLS handshake"),
        _ = shared.stop.cancelled() => return,
    };
    serve_http(&shared, tls, &conn).await
}

async fn serve_http<S>(shared: &Shared, io: S, conn: &Conn)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let log = H1Log::default();
    let io = TokioIo::new(HttpErrors::new(io, log.clone()));
    let calls = conn.calls();
    let app = shared.app.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        // Synchronous part: runs when hyper has the head, before any response byte.
        let in_flight = calls.start();
        log.record(&req);
        answer(app.clone(), req, in_flight)
    });
    let served = shared.builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(served);
    // The watchdog and the stop token are polled only when they fire, not on every wake of
    // the connection (see `lifecycle::Race`).
    let guard = async {
        tokio::select! {
            _ = conn.idle_expired(shared.timeouts) => "idle or evicted",
            _ = shared.stop.cancelled() => "shutdown",
        }
    };
    let why = match lifecycle::Race::new(served.as_mut(), guard).await {
        lifecycle::Won::Main(r) => return ended(r),
        lifecycle::Won::Guard(why) => why,
    };
    // h1 closes once idle, h2 sends GOAWAY and lets open streams finish.
    served.as_mut().graceful_shutdown();
    tokio::select! {
        r = served.as_mut() => ended(r),
        _ = conn.idle_for(CLOSE_GRACE) => tracing::debug!(why, "connection closed"),
    }
}

/// A request's answer; a fn with a declared output, which a closure's inferred one is too
/// narrow for (the spawned connection's `Send` check fails on it).
fn answer(
    app: Arc<App>,
    req: Request<Incoming>,
    in_flight: InFlight,
) -> impl Future<Output = Result<Response<Tracked<RespBody>>, Infallible>> + Send + 'static {
    let answer = match http_errors::uri_too_long(&req) {
        Some(e) => {
            let api = crate::gateway::api_for_path(req.method().as_str(), req.uri().path());
            Either::Left(std::future::ready(crate::gateway::api_error_response(
                &e, api,
            )))
        }
        None => Either::Right(handle(app, req)),
    };
    Answered {
        answer,
        in_flight: Some(in_flight),
    }
}

pin_project_lite::pin_project! {
    /// A request's answer, its body counted as in flight until it ends. A struct rather
    /// than an `async move` block, which would keep the request beside the `handle` future
    /// it moved into, in every held request's task.
    struct Answered<F> {
        #[pin]
        answer: F,
        in_flight: Option<InFlight>,
    }
}

impl<F: Future<Output = Response<RespBody>>> Future for Answered<F> {
    type Output = Result<Response<Tracked<RespBody>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let resp = ready!(this.answer.poll(cx));
        // Never polled again once ready (the `Future` contract).
        let Some(in_flight) = this.in_flight.take() else {
            return Poll::Pending;
        };
        Poll::Ready(Ok(resp.map(|body| Tracked::new(body, in_flight))))
    }
}

fn ended<E: std::fmt::Display>(r: Result<(), E>) {
    if let Err(e) = r {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
