//! Shutdown end to end: the real server and engine in-process (`cli::run_app`). A clean
//! shutdown writes every answer to the ledger; it releases held callers with their durable
//! job (answered after a restart, through the same Idempotency-Key), cuts what still hangs
//! at the drain deadline, and returns within its timeout with every task ended.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sluice::cli::{CliError, Loaded};
use sluice::config::Config;
use sluice::gateway::App;
use sluice::metrics::Metrics;
use sluice::policy::PolicySet;
use sluice::pricing::PriceTable;
use sluice::server::ServerOptions;
use sluice::simulate::SimConfig;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A gateway served by `run_app`, with its app kept to look inside after shutdown.
struct Running {
    addr: std::net::SocketAddr,
    app: Arc<App>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), CliError>>,
}

impl Running {
    async fn start(upstream: &str, db: &std::path::Path, shutdown_timeout: Duration) -> Running {
        let mut config = Config::load(None, &|_| None).unwrap();
        config.use_simulator(upstream);
        config.store = format!("sqlite://{}", db.display());
        config.batch.poll_interval = Duration::from_millis(50);
        config.batch.max_wait = Duration::from_millis(200);
        let loaded = Loaded {
            config,
            policies: PolicySet::from_sources(&[]).unwrap(),
            prices: PriceTable::builtin(),
        };
        let metrics = Arc::new(Metrics::new(prometheus::Registry::new()).unwrap());
        let mut opts = ServerOptions::new(&loaded.config, None);
        opts.shutdown_timeout = shutdown_timeout;
        let app = sluice::cli::build(loaded, metrics).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(sluice::cli::run_app(listener, app.clone(), opts, async {
            let _ = rx.await;
        }));
        Running {
            addr,
            app,
            stop: Some(tx),
            task,
        }
    }

    /// Sends the shutdown signal.
    fn signal(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Signals and waits until `run_app` has returned.
    async fn stop(mut self) {
        self.signal();
        self.task.await.unwrap().unwrap();
    }
}

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn chat(user: &str, stream: bool) -> String {
    serde_json::json!({
        "model": "gpt-4o-mini",
        "stream": stream,
        "messages": [{"role": "user", "content": user}]
    })
    .to_string()
}

fn post(addr: std::net::SocketAddr, headers: &[(&str, &str)], body: &str) -> Request<Full<Bytes>> {
    let mut b = Request::post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::from(body.to_owned()))).unwrap()
}

/// Sends and reads the whole answer; `Err` if the connection failed or was cut.
async fn send(
    client: &HttpClient,
    req: Request<Full<Bytes>>,
) -> Result<(StatusCode, http::HeaderMap, Bytes), String> {
    let resp = client.request(req).await.map_err(|e| e.to_string())?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?;
    Ok((parts.status, parts.headers, body.to_bytes()))
}

async fn ledger_rows(db: &std::path::Path) -> u64 {
    let store = sluice::store::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let rows = store.report(0).await.unwrap();
    store.close().await;
    rows.iter().map(|r| r.requests).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_shutdown_writes_every_answer_to_the_ledger() {
    let sim = sluice::cli::start_simulator(SimConfig::default())
        .await
        .unwrap();
    let db = common::temp_db();
    let gw = Running::start(&sim.base_url(), &db, sluice::lifecycle::SHUTDOWN_TIMEOUT).await;
    const N: usize = 40;
    let client = client();
    let calls = (0..N).map(|i| send(&client, post(gw.addr, &[], &chat(&format!("q{i}"), false))));
    for r in futures_util::future::join_all(calls).await {
        assert_eq!(r.unwrap().0, StatusCode::OK);
    }
    // Straight after the last answer: the ledger writer has had no chance to catch up,
    // and shutdown must not lose what it still holds.
    gw.stop().await;
    assert_eq!(ledger_rows(&db).await, N as u64);
    sim.stop().await;
    common::remove_db(&db);
}

/// An upstream that accepts connections and never answers; reports each accept.
async fn hanging_upstream() -> (String, tokio::sync::mpsc::Receiver<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            open.push(sock);
            if tx.send(()).await.is_err() {
                return;
            }
        }
    });
    (url, rx)
}

/// The job id a shutdown's 503 names.
fn job_id_in(message: &str) -> String {
    let at = message.find("job_").expect("names the job");
    message[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_held_callers_cuts_what_hangs_and_ends_every_task_in_time() {
    let (upstream, mut accepted) = hanging_upstream().await;
    let db = common::temp_db();
    let timeout = Duration::from_secs(3);
    let mut gw = Running::start(&upstream, &db, timeout).await;
    let client = client();

    // In flight at the signal: an interactive call its provider never answers...
    let interactive = {
        let (client, req) = (client.clone(), post(gw.addr, &[], &chat("hang", false)));
        tokio::spawn(async move { send(&client, req).await })
    };
    accepted.recv().await.unwrap();
    // ...a held deferred request (its batch is hours away) and a held stream.
    let key = "nightly-2026-11-27-0001";
    let held_body = chat("summarise", false);
    let held = {
        let (client, req) = (
            client.clone(),
            post(
                gw.addr,
                &[("x-sla", "24h"), ("idempotency-key", key)],
                &held_body,
            ),
        );
        tokio::spawn(async move { send(&client, req).await })
    };
    let stream = client
        .request(post(gw.addr, &[("x-sla", "24h")], &chat("stream", true)))
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let stream_job = stream.headers()["x-sluice-job-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let store = gw.app.engine().unwrap().store().clone();
    for _ in 0..1_000 {
        if store.queued().await.unwrap().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        store.queued().await.unwrap().len(),
        2,
        "both held jobs are durable"
    );

    let signalled = tokio::time::Instant::now();
    gw.signal();
    // Held callers are released at once with their job, which stays durable.
    let (status, _, body) = held.await.unwrap().unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let e: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let message = e["error"]["message"].as_str().unwrap();
    assert!(message.contains("Idempotency-Key"), "{message}");
    let held_job = job_id_in(message);
    let events = stream.into_body().collect().await.unwrap().to_bytes();
    let events = String::from_utf8_lossy(&events);
    assert!(
        events.contains(&format!("shutting down; job {stream_job}")),
        "{events}"
    );
    assert!(events.ends_with("data: [DONE]\n\n"), "{events}");
    // The call that still hangs is cut at the drain deadline, and run_app returns in time.
    assert!(
        interactive.await.unwrap().is_err(),
        "cut at the drain deadline"
    );
    let task = std::mem::replace(&mut gw.task, tokio::spawn(async { Ok(()) }));
    task.await.unwrap().unwrap();
    let took = signalled.elapsed();
    assert!(
        took >= timeout.mul_f64(5.0 / 6.0),
        "drained first: {took:?}"
    );
    assert!(
        took <= timeout + Duration::from_secs(1),
        "bounded: {took:?}"
    );
    let engine = gw.app.engine().unwrap();
    assert!(
        engine.tasks().is_empty(),
        "{} engine tasks left",
        engine.tasks().len()
    );
    drop(engine);
    drop(store);
    drop(gw);

    // Restarted (a provider that answers now): the caller retries with its key and gets
    // the answer of the same job, sent upstream once.
    let sim = sluice::cli::start_simulator(SimConfig {
        batch_turnaround: Duration::from_millis(100),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let gw = Running::start(&sim.base_url(), &db, timeout).await;
    let retried = send(
        &client,
        post(
            gw.addr,
            &[("x-sla", "24h"), ("idempotency-key", key)],
            &held_body,
        ),
    )
    .await
    .unwrap();
    assert_eq!(retried.0, StatusCode::OK, "{:?}", retried.2);
    assert_eq!(retried.1["x-sluice-job-id"], held_job.as_str());
    gw.stop().await;
    sim.stop().await;
    common::remove_db(&db);
}
