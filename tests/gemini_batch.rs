//! Gemini Batch Mode end to end: the real server in-process, an OpenAI chat completion for
//! a `gemini-*` model with a tolerant `x-sla`, held, batched through the simulator's native
//! Batch Mode and answered as an OpenAI chat completion at the batch price.

mod common;

use std::time::Duration;

use common::{Gateway, keyed_policy, metric};
use http::StatusCode;
use sluice::simulate::{GeminiConfig, SimConfig};

const AUTH: (&str, &str) = ("authorization", "Bearer sk-team");

fn sim() -> SimConfig {
    SimConfig {
        gemini: GeminiConfig {
            batch_turnaround: Duration::from_millis(100),
            ..GeminiConfig::default()
        },
        ..SimConfig::default()
    }
}

fn chat(user: &str) -> String {
    serde_json::json!({
        "model": "gemini-2.5-flash",
        "messages": [
            {"role": "system", "content": "You sort tickets."},
            {"role": "user", "content": user}
        ],
        "max_tokens": 64
    })
    .to_string()
}

fn usd(h: &http::HeaderMap, name: &str) -> f64 {
    h[name].to_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_gemini_chat_completion_is_answered_through_batch_mode_at_half_price() {
    let gw = Gateway::start_sim(sim(), vec![keyed_policy("team", "sk-team", "")], |c| {
        c.batch.max_wait = Duration::from_millis(300);
    })
    .await;
    let calls = (0..3).map(|i| {
        let gw = &gw;
        async move {
            let body = chat(&format!("ticket number {i}"));
            (
                i,
                gw.post("/v1/chat/completions", &[AUTH, ("x-sla", "24h")], &body)
                    .await,
            )
        }
    });
    for (i, (status, headers, body)) in futures_util::future::join_all(calls).await {
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        assert_eq!(headers["x-sluice-tier"], "batch");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["model"], "gemini-2.5-flash");
        let text = v["choices"][0]["message"]["content"].as_str().unwrap();
        assert!(text.contains(&format!("ticket number {i}")), "{text}");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
        // No cache hit (short prompt): the whole answer is at the 50% batch rate.
        let (cost, baseline) = (
            usd(&headers, "x-sluice-cost-usd"),
            usd(&headers, "x-sluice-baseline-usd"),
        );
        assert!(baseline > 0.0);
        assert!((cost * 2.0 - baseline).abs() < 1e-9, "{cost} vs {baseline}");
    }
    // Through the native Batch Mode with the native key, not the OpenAI-compatible layer.
    let requests = gw.sim_requests().await;
    let creates: Vec<_> = requests
        .iter()
        .filter(|r| r["path"] == "/v1/models/gemini-2.5-flash:batchGenerateContent")
        .collect();
    assert!(!creates.is_empty() && creates.len() <= 3, "{creates:?}");
    for c in &creates {
        assert!(c["headers"]["x-goog-api-key"].is_string(), "{c}");
        let body: serde_json::Value = serde_json::from_str(c["body"].as_str().unwrap()).unwrap();
        let name = body["batch"]["displayName"].as_str().unwrap();
        assert!(name.starts_with("flush_"), "{name}");
    }
    assert!(
        requests
            .iter()
            .all(|r| r["path"] != "/v1/openai/chat/completions"),
        "nothing was sent interactively"
    );
    let m = gw
        .metrics_until("a completed gemini batch", |m| {
            metric(
                m,
                "sluice_batches_total",
                &[("provider", "gemini"), ("status", "completed")],
            ) >= 1.0
        })
        .await;
    assert!(metric(&m, "sluice_savings_usd_total", &[("lever", "batch")]) > 0.0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_batch_mode_cannot_take_is_served_interactively() {
    let gw = Gateway::start_sim(sim(), vec![keyed_policy("team", "sk-team", "")], |_| {}).await;
    let body = serde_json::json!({
        "model": "gemini-2.5-flash",
        "messages": [{"role": "user", "content": "hello"}],
        "reasoning_effort": "low"
    })
    .to_string();
    let (status, headers, body) = gw
        .post("/v1/chat/completions", &[AUTH, ("x-sla", "24h")], &body)
        .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_ne!(headers["x-sluice-tier"], "batch");
    let requests = gw.sim_requests().await;
    assert!(
        requests
            .iter()
            .all(|r| !r["path"].as_str().unwrap().contains("batchGenerateContent"))
    );
    gw.stop().await;
}

/// Job ids (`x-sluice-job-id`) and the number of created batches each was in.
async fn lines_by_job(gw: &Gateway) -> serde_json::Value {
    gw.sim_get("/sim/batches/stats").await["lines_by_custom_id"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_refused_with_429_is_retried_not_dropped() {
    let gw = Gateway::start_sim(sim(), vec![keyed_policy("team", "sk-team", "")], |_| {}).await;
    let (s, _) = gw
        .sim_post("/sim/batch-faults", serde_json::json!({"create_429": 1}))
        .await;
    assert!(s.is_success());
    let (status, headers, body) = gw
        .post(
            "/v1/chat/completions",
            &[AUTH, ("x-sla", "24h")],
            &chat("queue me"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["x-sluice-tier"], "batch");
    let job = headers["x-sluice-job-id"].to_str().unwrap().to_owned();
    assert_eq!(
        lines_by_job(&gw).await[&job],
        1,
        "in exactly one created batch"
    );
    let creates = gw
        .sim_requests()
        .await
        .iter()
        .filter(|r| r["path"] == "/v1/models/gemini-2.5-flash:batchGenerateContent")
        .count();
    assert_eq!(creates, 2, "refused once, then created");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jobs_of_an_expired_batch_are_sent_again() {
    let mut config = sim();
    config.gemini.batch_expiry = Duration::from_millis(400);
    let gw = Gateway::start_sim(config, vec![keyed_policy("team", "sk-team", "")], |_| {}).await;
    let (s, _) = gw
        .sim_post("/sim/batch-faults", serde_json::json!({"expire": 1}))
        .await;
    assert!(s.is_success());
    let (status, headers, body) = gw
        .post(
            "/v1/chat/completions",
            &[AUTH, ("x-sla", "24h")],
            &chat("expire me"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["x-sluice-tier"], "batch");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("expire me")
    );
    let job = headers["x-sluice-job-id"].to_str().unwrap().to_owned();
    assert_eq!(
        lines_by_job(&gw).await[&job],
        2,
        "expired once, then answered"
    );
    // The caller is answered before the flush is counted: wait for both counts.
    let gemini = |m: &str, status: &str| {
        metric(
            m,
            "sluice_batches_total",
            &[("provider", "gemini"), ("status", status)],
        )
    };
    gw.metrics_until("an expired, then a completed gemini batch", |m| {
        gemini(m, "expired") >= 1.0 && gemini(m, "completed") >= 1.0
    })
    .await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_native_generate_content_request_is_answered_natively_through_batch_mode() {
    let gw = Gateway::start_sim(sim(), vec![keyed_policy("team", "sk-team", "")], |c| {
        c.batch.max_wait = Duration::from_millis(200);
    })
    .await;
    let body = serde_json::json!({
        "contents": [{"role": "user", "parts": [{"text": "classify me later"}]}],
        "generationConfig": {"maxOutputTokens": 32}
    })
    .to_string();
    let (status, headers, answer) = gw
        .post(
            "/v1beta/models/gemini-2.5-flash:generateContent",
            &[("x-goog-api-key", "sk-team"), ("x-sla", "24h")],
            &body,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(headers["x-sluice-tier"], "batch");
    let v: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    let text = v["candidates"][0]["content"]["parts"][0]["text"]
        .as_str()
        .unwrap();
    assert!(text.contains("classify me later"), "{v}");
    let (cost, baseline) = (
        usd(&headers, "x-sluice-cost-usd"),
        usd(&headers, "x-sluice-baseline-usd"),
    );
    assert!(baseline > 0.0 && (cost * 2.0 - baseline).abs() < 1e-9);
    let requests = gw.sim_requests().await;
    let create = requests
        .iter()
        .find(|r| r["path"] == "/v1/models/gemini-2.5-flash:batchGenerateContent")
        .expect("a Batch Mode create");
    let sent: serde_json::Value = serde_json::from_str(create["body"].as_str().unwrap()).unwrap();
    let entry = &sent["batch"]["inputConfig"]["requests"]["requests"][0];
    assert_eq!(
        entry["request"]["contents"][0]["parts"][0]["text"],
        "classify me later"
    );
    assert_eq!(
        entry["metadata"]["key"],
        headers["x-sluice-job-id"].to_str().unwrap()
    );
    assert!(
        requests
            .iter()
            .all(|r| !r["path"].as_str().unwrap().ends_with(":generateContent")),
        "nothing was sent interactively"
    );
    gw.stop().await;
}
