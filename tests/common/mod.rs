//! Test harness: the real gateway in-process on 127.0.0.1:0, against the built-in
//! simulated provider or a canned upstream, plus small HTTP and metric helpers.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sluice::cli::{Loaded, SimHandle, serve_on, start_simulator};
use sluice::config::Config;
use sluice::policy::{PolicySet, hash_key};
use sluice::pricing::PriceTable;
use sluice::simulate::SimConfig;

mod metrics;
pub mod sdk;
// Not every test crate reads metrics.
#[allow(unused_imports)]
pub use metrics::metric;

pub struct Gateway {
    pub addr: SocketAddr,
    pub db: std::path::PathBuf,
    pub sim: Option<SimHandle>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// A fresh SQLite path for one gateway instance.
pub fn temp_db() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    std::env::temp_dir().join(format!(
        "sluice-test-{}-{}.db",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

pub fn remove_db(db: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
}

pub fn key_hash(key: &str) -> String {
    hex::encode(hash_key(key))
}

/// A policy file with one keyed client and the given extra TOML (routes).
pub fn keyed_policy(client: &str, key: &str, extra: &str) -> (String, String) {
    (
        format!("{client}.toml"),
        format!(
            "[client]\nname = \"{client}\"\nkeys = [\"{}\"]\n{extra}\n",
            key_hash(key)
        ),
    )
}

impl Gateway {
    /// Gateway + simulator, open mode unless `policies` name keys.
    pub async fn start(
        policies: Vec<(String, String)>,
        tweak: impl FnOnce(&mut Config),
    ) -> Gateway {
        Gateway::start_sim(SimConfig::default(), policies, tweak).await
    }

    /// Gateway + a simulator with the given settings.
    pub async fn start_sim(
        sim: SimConfig,
        policies: Vec<(String, String)>,
        tweak: impl FnOnce(&mut Config),
    ) -> Gateway {
        let sim = start_simulator(sim).await.unwrap();
        let url = sim.base_url();
        Gateway::start_at(&url, Some(sim), policies, tweak).await
    }

    /// Gateway whose every provider is `base_url` (a canned upstream, a closed port...).
    pub async fn start_at(
        base_url: &str,
        sim: Option<SimHandle>,
        policies: Vec<(String, String)>,
        tweak: impl FnOnce(&mut Config),
    ) -> Gateway {
        Gateway::start_on(temp_db(), base_url, sim, policies, tweak).await
    }

    /// Stops this gateway (gracefully) and starts another on the same store and simulator,
    /// as a restart would.
    pub async fn restart(
        mut self,
        policies: Vec<(String, String)>,
        tweak: impl FnOnce(&mut Config),
    ) -> Gateway {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
        let sim = self.sim.take().expect("gateway started with a simulator");
        let url = sim.base_url();
        let db = std::mem::take(&mut self.db);
        Gateway::start_on(db, &url, Some(sim), policies, tweak).await
    }

    /// A gateway on the SQLite store at `db`.
    pub async fn start_on(
        db: std::path::PathBuf,
        base_url: &str,
        sim: Option<SimHandle>,
        policies: Vec<(String, String)>,
        tweak: impl FnOnce(&mut Config),
    ) -> Gateway {
        let mut config = Config::load(None, &|_| None).unwrap();
        config.use_simulator(base_url);
        config.store = format!("sqlite://{}", db.display());
        // Fast loops so deferred work finishes within a test.
        config.batch.poll_interval = std::time::Duration::from_millis(50);
        config.batch.max_wait = std::time::Duration::from_millis(200);
        tweak(&mut config);
        let policies = PolicySet::from_sources(&policies).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let loaded = Loaded {
            config,
            policies,
            prices: PriceTable::builtin(),
        };
        let task = tokio::spawn(async move {
            serve_on(listener, loaded, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Gateway {
            addr,
            db,
            sim,
            stop: Some(tx),
            task: Some(task),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn send(&self, req: Request<Full<Bytes>>) -> (StatusCode, HeaderMap, Bytes) {
        let resp = self.client.request(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        (
            parts.status,
            parts.headers,
            body.collect().await.unwrap().to_bytes(),
        )
    }

    /// POST with JSON `body` and optional extra headers.
    pub async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, HeaderMap, Bytes) {
        let mut b = Request::post(self.url(path)).header("content-type", "application/json");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.send(b.body(Full::new(Bytes::from(body.to_owned()))).unwrap())
            .await
    }

    pub async fn get(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, Bytes) {
        let mut b = Request::get(self.url(path));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.send(b.body(Full::new(Bytes::new())).unwrap()).await
    }

    /// A plain-HTTP GET that reports failure instead of panicking (TLS listener tests).
    pub async fn client_get_plain(&self, path: &str) -> Result<StatusCode, String> {
        let req = Request::get(self.url(path))
            .body(Full::new(Bytes::new()))
            .unwrap();
        match tokio::time::timeout(std::time::Duration::from_secs(20), self.client.request(req))
            .await
        {
            Ok(Ok(r)) => Ok(r.status()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".into()),
        }
    }

    pub async fn metrics(&self) -> String {
        let (s, _, b) = self.get("/metrics", &[]).await;
        assert_eq!(s, StatusCode::OK);
        String::from_utf8(b.to_vec()).unwrap()
    }

    /// What the simulated provider received, oldest first.
    pub async fn sim_requests(&self) -> Vec<serde_json::Value> {
        let sim = self.sim.as_ref().expect("gateway started with a simulator");
        let url = format!("http://{}/sim/requests", sim.addr);
        let (s, _, b) = self
            .send(Request::get(url).body(Full::new(Bytes::new())).unwrap())
            .await;
        assert_eq!(s, StatusCode::OK);
        serde_json::from_slice(&b).unwrap()
    }

    /// GET on the simulator (`/sim/...` test endpoints, `/v1/batches`).
    pub async fn sim_get(&self, path: &str) -> serde_json::Value {
        let sim = self.sim.as_ref().expect("gateway started with a simulator");
        let url = format!("http://{}{path}", sim.addr);
        let req = Request::get(url)
            .header("authorization", "Bearer x")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (s, _, b) = self.send(req).await;
        assert!(s.is_success(), "{path}: {s}");
        serde_json::from_slice(&b).unwrap()
    }

    /// POST JSON to the simulator.
    pub async fn sim_post(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> (StatusCode, serde_json::Value) {
        let sim = self.sim.as_ref().expect("gateway started with a simulator");
        let url = format!("http://{}{path}", sim.addr);
        let req = Request::post(url)
            .header("authorization", "Bearer x")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let (s, _, b) = self.send(req).await;
        (
            s,
            serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null),
        )
    }

    /// Polls `/metrics` until `pred` holds (bounded); returns the last text.
    pub async fn metrics_until(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        for _ in 0..400 {
            let m = self.metrics().await;
            if pred(&m) {
                return m;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("metrics never showed {what}");
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
        if let Some(sim) = self.sim.take() {
            sim.stop().await;
        }
        remove_db(&self.db);
    }
}

/// A fake provider answering every request with fixed bytes, recording request bodies.
pub struct Canned {
    pub addr: SocketAddr,
    pub bodies: Arc<Mutex<Vec<Bytes>>>,
    /// Path and headers of every request, in order.
    pub heads: Arc<Mutex<Vec<(String, HeaderMap)>>>,
    /// Path and query of every request, in order.
    pub uris: Arc<Mutex<Vec<String>>>,
}

impl Canned {
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}

pub async fn canned(status: u16, content_type: &'static str, frames: Vec<&'static str>) -> Canned {
    canned_with(status, content_type, frames, &[]).await
}

/// [`canned`], answering with extra response headers.
pub async fn canned_with(
    status: u16,
    content_type: &'static str,
    frames: Vec<&'static str>,
    extra: &[(&'static str, &'static str)],
) -> Canned {
    let extra: Vec<(&'static str, &'static str)> = extra.to_vec();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let heads = Arc::new(Mutex::new(Vec::new()));
    let uris = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    let seen_heads = heads.clone();
    let seen_uris = uris.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            let seen_heads = seen_heads.clone();
            let seen_uris = seen_uris.clone();
            let frames = frames.clone();
            let extra = extra.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let seen = seen.clone();
                    let seen_heads = seen_heads.clone();
                    let seen_uris = seen_uris.clone();
                    let frames = frames.clone();
                    let extra = extra.clone();
                    async move {
                        seen_heads
                            .lock()
                            .unwrap()
                            .push((req.uri().path().to_owned(), req.headers().clone()));
                        seen_uris.lock().unwrap().push(
                            req.uri()
                                .path_and_query()
                                .map_or(String::new(), |p| p.as_str().to_owned()),
                        );
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|c| c.to_bytes())
                            .unwrap_or_default();
                        seen.lock().unwrap().push(body);
                        let frames: Vec<Result<Frame<Bytes>, Infallible>> = frames
                            .iter()
                            .map(|f: &&'static str| {
                                Ok(Frame::data(Bytes::from_static(f.as_bytes())))
                            })
                            .collect();
                        let stream = futures_util::stream::iter(frames);
                        let mut resp = Response::new(StreamBody::new(stream));
                        *resp.status_mut() = StatusCode::from_u16(status).unwrap();
                        resp.headers_mut()
                            .insert("content-type", content_type.parse().unwrap());
                        resp.headers_mut()
                            .insert("x-request-id", "req_canned".parse().unwrap());
                        for (k, v) in &extra {
                            resp.headers_mut().insert(*k, v.parse().unwrap());
                        }
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Canned {
        addr,
        bodies,
        heads,
        uris,
    }
}
