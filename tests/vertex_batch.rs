//! Vertex AI batch prediction end to end: the real server in-process with
//! `[providers.gemini.vertex]` pointing at the simulator (its OAuth token endpoint, Cloud
//! Storage and batchPredictionJobs), OpenAI chat completions and native generateContent
//! requests for `gemini-*` with a tolerant `x-sla`, held or async, answered at half price.

mod common;

use std::time::Duration;

use common::{Gateway, keyed_policy, metric};
use http::StatusCode;
use sluice::cli::start_simulator;
use sluice::config::VertexConfig;
use sluice::simulate::SimConfig;
use sluice::types::Provider;

const AUTH: (&str, &str) = ("authorization", "Bearer sk-team");
/// A throwaway RSA key for tests only (the simulator does not check signatures).
const TEST_KEY: &str = include_str!("../src/providers/vertex/testdata/test_key.pem");
const PROJECT: &str = "my-project";

fn sim() -> SimConfig {
    let mut s = SimConfig::default();
    s.vertex.run_time = Duration::from_millis(200);
    s
}

/// A service-account key whose `token_uri` is the simulator's, in a file of its own.
fn key_file(sim_root: &str) -> std::path::PathBuf {
    let path = common::temp_db().with_extension("sa.json");
    let key = serde_json::json!({
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "k1",
        "private_key": TEST_KEY,
        "client_email": "sluice@my-project.iam.gserviceaccount.com",
        "token_uri": format!("{sim_root}/token"),
    });
    std::fs::write(&path, key.to_string()).unwrap();
    path
}

async fn start() -> Gateway {
    let sim = start_simulator(sim()).await.unwrap();
    let url = sim.base_url();
    let root = format!("http://{}", sim.addr);
    let key = key_file(&root);
    Gateway::start_at(
        &url,
        Some(sim),
        vec![keyed_policy("team", "sk-team", "")],
        |c| {
            c.batch.max_wait = Duration::from_millis(300);
            c.providers[Provider::Gemini as usize].vertex = Some(VertexConfig {
                project: PROJECT.into(),
                location: "us-central1".into(),
                bucket: "sim-bucket".into(),
                credentials_file: key,
                base_url: format!("{root}/v1"),
                storage_url: root.clone(),
            });
        },
    )
    .await
}

fn chat(user: &str) -> String {
    serde_json::json!({
        "model": "gemini-2.5-flash",
        "messages": [{"role": "system", "content": "You sort tickets."},
                     {"role": "user", "content": user}],
        "max_tokens": 64
    })
    .to_string()
}

fn usd(h: &http::HeaderMap, name: &str) -> f64 {
    h[name].to_str().unwrap().parse().unwrap()
}

fn half_price(h: &http::HeaderMap) {
    let (cost, baseline) = (usd(h, "x-sluice-cost-usd"), usd(h, "x-sluice-baseline-usd"));
    assert!(baseline > 0.0);
    assert!((cost * 2.0 - baseline).abs() < 1e-9, "{cost} vs {baseline}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_chat_completions_go_through_vertex_batch_prediction() {
    let gw = start().await;
    let calls = (0..3).map(|i| {
        let gw = &gw;
        async move {
            let body = chat(&format!("ticket number {i}"));
            let sent = gw
                .post("/v1/chat/completions", &[AUTH, ("x-sla", "24h")], &body)
                .await;
            (i, sent)
        }
    });
    for (i, (status, headers, body)) in futures_util::future::join_all(calls).await {
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        assert_eq!(headers["x-sluice-tier"], "batch");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["object"], "chat.completion");
        let text = v["choices"][0]["message"]["content"].as_str().unwrap();
        assert!(text.contains(&format!("ticket number {i}")), "{text}");
        half_price(&headers);
    }
    let requests = gw.sim_requests().await;
    let jobs_path = format!("/v1/projects/{PROJECT}/locations/us-central1/batchPredictionJobs");
    let creates: Vec<_> = requests
        .iter()
        .filter(|r| r["method"] == "POST" && r["path"] == jobs_path.as_str())
        .collect();
    assert!(!creates.is_empty() && creates.len() <= 3, "{requests:?}");
    for c in &creates {
        let auth = c["headers"]["authorization"].as_str().unwrap_or_default();
        assert!(auth.starts_with("Bearer "), "{c}");
    }
    assert!(
        requests.iter().any(|r| r["path"] == "/token"),
        "an OAuth token was fetched"
    );
    assert!(
        requests
            .iter()
            .all(|r| r["path"] != "/v1/openai/chat/completions"
                && !r["path"].as_str().unwrap().contains("batchGenerateContent")),
        "neither interactive nor Batch Mode"
    );
    let m = gw
        .metrics_until("a completed vertex batch", |m| {
            metric(m, "sluice_batches_total", &[("provider", "gemini")]) >= 1.0
        })
        .await;
    assert!(metric(&m, "sluice_savings_usd_total", &[("lever", "batch")]) > 0.0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_native_request_is_answered_natively_through_vertex() {
    let gw = start().await;
    let body = serde_json::json!({
        "contents": [{"role": "user", "parts": [{"text": "index this later"}]}]
    })
    .to_string();
    let (status, headers, _) = gw
        .post(
            "/v1beta/models/gemini-2.5-flash:generateContent",
            &[AUTH, ("x-sla", "24h"), ("prefer", "respond-async")],
            &body,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let location = headers["location"].to_str().unwrap().to_owned();
    let mut answer = None;
    for _ in 0..400 {
        let (s, h, b) = gw.get(&format!("{location}/result"), &[AUTH]).await;
        if s == StatusCode::OK {
            half_price(&h);
            assert_eq!(h["x-sluice-tier"], "batch");
            answer = Some(b);
            break;
        }
        assert_eq!(s, StatusCode::ACCEPTED);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let answer = answer.expect("the async job finished");
    let v: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    let text = v["candidates"][0]["content"]["parts"][0]["text"]
        .as_str()
        .unwrap();
    assert!(text.contains("index this later"), "{v}");
    assert!(v["usageMetadata"]["promptTokenCount"].as_u64().unwrap() > 0);
    // Staged in Cloud Storage as a native request, the job id in its labels.
    let uploads: Vec<_> = gw
        .sim_requests()
        .await
        .into_iter()
        .filter(|r| r["path"].as_str().unwrap().starts_with("/upload/storage/"))
        .collect();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    let line: serde_json::Value =
        serde_json::from_str(uploads[0]["body"].as_str().unwrap().trim()).unwrap();
    assert_eq!(
        line["request"]["contents"][0]["parts"][0]["text"],
        "index this later"
    );
    assert!(line["request"]["labels"].is_object(), "{line}");

    // A caller's own service tier is honoured at once, never batched.
    let tiered = serde_json::json!({
        "contents": [{"role": "user", "parts": [{"text": "now, on flex"}]}],
        "serviceTier": "flex"
    })
    .to_string();
    let (status, headers, _) = gw
        .post(
            "/v1beta/models/gemini-2.5-flash:generateContent",
            &[AUTH, ("x-sla", "24h")],
            &tiered,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(headers["x-sluice-tier"], "batch");
    gw.stop().await;
}
