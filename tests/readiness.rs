//! `/readyz` tells the truth (the store takes writes, the engine loop runs) and `/metrics`
//! exposes every contract family from the first scrape.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::Gateway;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sluice::cli::Loaded;
use sluice::config::Config;
use sluice::metrics::Metrics;
use sluice::policy::PolicySet;
use sluice::pricing::PriceTable;
use sqlx::Connection;

/// CONTRACT.md's Metrics table, with the type each family is exposed as.
const FAMILIES: [(&str, &str); 13] = [
    ("sluice_requests_total", "counter"),
    ("sluice_cost_usd_total", "counter"),
    ("sluice_baseline_cost_usd_total", "counter"),
    ("sluice_savings_usd_total", "untyped"),
    ("sluice_tokens_total", "counter"),
    ("sluice_wasted_cost_usd_total", "counter"),
    ("sluice_fallbacks_total", "counter"),
    ("sluice_sla_violations_total", "counter"),
    ("sluice_batch_queue_depth", "gauge"),
    ("sluice_batches_total", "counter"),
    ("sluice_batch_turnaround_seconds", "histogram"),
    ("sluice_upstream_duration_seconds", "histogram"),
    ("sluice_overhead_seconds", "histogram"),
];

/// The `error` object of an OpenAI-shaped 503 body.
fn not_ready(status: StatusCode, body: &[u8]) -> serde_json::Value {
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(v["error"]["code"], "not_ready", "{v}");
    assert_eq!(v["error"]["type"], "server_error", "{v}");
    v["error"].clone()
}

#[tokio::test]
async fn a_fresh_gateway_exposes_every_contract_family() {
    let gw = Gateway::start(vec![], |_| {}).await;
    let text = gw.metrics().await;
    for (name, kind) in FAMILIES {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("# HELP {name} "))),
            "no HELP for {name}:\n{text}"
        );
        assert!(
            text.lines().any(|l| l == format!("# TYPE {name} {kind}")),
            "no TYPE {kind} for {name}:\n{text}"
        );
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_while_the_store_takes_no_write_and_recovers() {
    let gw = Gateway::start(vec![], |_| {}).await;
    let (s, _, b) = gw.get("/readyz", &[]).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));

    // Another process holds the database's write lock: reads still work, writes cannot.
    let url = format!("sqlite://{}", gw.db.display());
    let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let probed: i64 = sqlx::query_scalar("SELECT at_ms FROM probe WHERE id = 1")
        .fetch_one(&mut other)
        .await
        .unwrap();
    assert!(probed > 0, "the readiness write never reached the store");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let (s, _, b) = gw.get("/readyz", &[]).await;
    let e = not_ready(s, &b);
    let message = e["message"].as_str().unwrap();
    assert!(message.contains("store did not take a write"), "{message}");

    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    let mut last = (s, b);
    for _ in 0..100 {
        let (s, _, b) = gw.get("/readyz", &[]).await;
        last = (s, b);
        if s == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        last.0,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&last.1)
    );
    other.close().await.unwrap();
    gw.stop().await;
}

async fn readyz(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    addr: std::net::SocketAddr,
) -> (StatusCode, Bytes) {
    let req = http::Request::get(format!("http://{addr}/readyz"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

#[tokio::test]
async fn readyz_fails_while_the_engine_loop_is_not_running() {
    // The app served without its engine loop (what a dead loop task leaves behind).
    let mut config = Config::load(None, &|_| None).unwrap();
    config.use_simulator("http://127.0.0.1:9/v1");
    let db = common::temp_db();
    config.store = format!("sqlite://{}", db.display());
    let loaded = Loaded {
        config,
        policies: PolicySet::from_sources(&[]).unwrap(),
        prices: PriceTable::builtin(),
    };
    let metrics = Arc::new(Metrics::new(prometheus::Registry::new()).unwrap());
    let opts = sluice::server::ServerOptions::new(&loaded.config, None);
    let app = sluice::cli::build(loaded, metrics).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(sluice::server::run(listener, app.clone(), opts, async {
        let _ = server_stopped.await;
    }));
    let client = Client::builder(TokioExecutor::new()).build_http();

    let (s, b) = readyz(&client, addr).await;
    let e = not_ready(s, &b);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("the batch engine is not running"),
        "{e}"
    );

    // Running: ready at once, not after a first tick.
    let engine = app.engine().unwrap();
    let (stop_engine, engine_stopped) = tokio::sync::oneshot::channel::<()>();
    let engine_task = tokio::spawn(engine.run(async {
        let _ = engine_stopped.await;
    }));
    let (s, b) = readyz(&client, addr).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));

    // The loop ends (here by its shutdown signal): not ready again.
    stop_engine.send(()).unwrap();
    engine_task.await.unwrap();
    let (s, b) = readyz(&client, addr).await;
    not_ready(s, &b);

    stop_server.send(()).unwrap();
    server.await.unwrap().unwrap();
    common::remove_db(&db);
}
