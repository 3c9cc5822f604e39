//! The listener: accepts TCP (optionally TLS), sets TCP_NODELAY, serves HTTP/1.1 and h2
//! with hyper-util's auto builder, and shuts down gracefully. Takes a bound listener and a
//! shutdown future, so tests run it in-process on port 0.
//!
//! Every connection is bounded in every phase (`conn`): TLS handshake, protocol detection
//! and the first request head within `header_read_timeout`, then closed after `idle_timeout`
//! with no request in flight; dead HTTP/2 peers by keep-alive PINGs; and at most
//! `max_connections` open, the longest-idle evicted first. Errors hyper answers by itself
//! become JSON (`http_errors`).

mod conn;
mod http_errors;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::gateway::{App, error_response, handle};
use conn::{Conn, Registry, Timeouts, Tracked};
use http_errors::{H1Log, HttpErrors, MAX_HEAD_BYTES, MAX_HEADERS};

/// How long a connection asked to close (idle, evicted, shutdown) may take to say goodbye
/// once no request is in flight: an HTTP/2 peer that never acks GOAWAY's PING is cut then.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// In-flight requests get this long to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

pub struct ServerOptions {
    /// TLS handshake plus first request head; later HTTP/1.1 heads too.
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub http2_keep_alive_interval: Duration,
    pub http2_keep_alive_timeout: Duration,
    pub tls: Option<TlsAcceptor>,
}

impl ServerOptions {
    pub fn new(config: &Config, tls: Option<TlsAcceptor>) -> Self {
        ServerOptions {
            header_read_timeout: config.header_read_timeout,
            idle_timeout: config.idle_timeout,
            max_connections: config.max_connections,
            http2_keep_alive_interval: config.http2_keep_alive_interval,
            http2_keep_alive_timeout: config.http2_keep_alive_timeout,
            tls,
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
    builder: Builder<TokioExecutor>,
    tls: Option<TlsAcceptor>,
    timeouts: Timeouts,
    stop: watch::Receiver<bool>,
}

fn http_builder(opts: &ServerOptions) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
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
        .max_header_list_size(u32::try_from(MAX_HEAD_BYTES).unwrap_or(u32::MAX));
    builder
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish.
pub async fn run(
    listener: TcpListener,
    app: Arc<App>,
    opts: ServerOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let registry = Registry::new(conn::connection_cap(opts.max_connections));
    let (stop_tx, stop) = watch::channel(false);
    let shared = Arc::new(Shared {
        app,
        builder: http_builder(&opts),
        tls: opts.tls.clone(),
        timeouts: Timeouts {
            first_request: opts.header_read_timeout,
            idle: opts.idle_timeout,
        },
        stop,
    });
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _peer)) => match registry.admit() {
                    Some(conn) => {
                        tasks.spawn(serve_connection(shared.clone(), stream, conn));
                    }
                    None => tracing::debug!(
                        cap = registry.cap(),
                        "connection refused: every open connection has a request in flight"
                    ),
                },
                Err(e) => accept_failed(&e, &registry).await,
            },
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = done {
                    tracing::warn!(error = %e, "connection task failed");
                }
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tracing::warn!(
            open = registry.len(),
            "shutdown: connections still open after 30 s, closing them"
        );
        tasks.shutdown().await;
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
    let mut stop = shared.stop.clone();
    let handshake = tokio::time::timeout(shared.timeouts.first_request, acceptor.accept(stream));
    let tls = tokio::select! {
        r = handshake => match r {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => return tracing::debug!(error = %e, "TLS handshake failed"),
            Err(_) => return tracing::debug!("TLS handshake timed out"),
        },
        _ = conn.idle_expired(shared.timeouts) => return tracing::debug!("evicted during the TLS handshake"),
        _ = stop.wait_for(|s| *s) => return,
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
        let app = app.clone();
        async move {
            let resp = match http_errors::uri_too_long(&req) {
                Some(e) => error_response(&e),
                None => handle(app, req).await,
            };
            Ok::<_, Infallible>(resp.map(|body| Tracked::new(body, in_flight)))
        }
    });
    let served = shared.builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(served);
    let mut stop = shared.stop.clone();
    let why = tokio::select! {
        r = served.as_mut() => return ended(r),
        _ = conn.idle_expired(shared.timeouts) => "idle or evicted",
        _ = stop.wait_for(|s| *s) => "shutdown",
    };
    // h1 closes once idle, h2 sends GOAWAY and lets open streams finish.
    served.as_mut().graceful_shutdown();
    tokio::select! {
        r = served.as_mut() => ended(r),
        _ = conn.idle_for(CLOSE_GRACE) => tracing::debug!(why, "connection closed"),
    }
}

fn ended<E: std::fmt::Display>(r: Result<(), E>) {
    if let Err(e) = r {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
