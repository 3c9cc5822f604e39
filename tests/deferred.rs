//! The deferred tiers end to end: the real server in-process, the simulated provider's
//! Files and Batch APIs, held and async delivery, idempotency, streaming, batch faults,
//! the deadline fallback and flex.

mod common;

use std::time::Duration;

use common::{Gateway, keyed_policy, metric};
use http::StatusCode;
use sluice::simulate::SimConfig;

const KEY: &str = "sk-team";
const AUTH: (&str, &str) = ("authorization", "Bearer sk-team");

fn sim() -> SimConfig {
    SimConfig {
        batch_turnaround: Duration::from_millis(100),
        ..SimConfig::default()
    }
}

async fn start() -> Gateway {
    Gateway::start_sim(
        sim(),
        vec![
            keyed_policy("team", KEY, ""),
            keyed_policy("other", "sk-other", ""),
        ],
        |_| {},
    )
    .await
}

fn chat(model: &str, user: &str) -> String {
    serde_json::json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "You summarise tickets. ".repeat(60)},
            {"role": "user", "content": user}
        ]
    })
    .to_string()
}

fn content(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_requests_are_batched_together_and_each_gets_its_own_answer() {
    // A 1 s window: all twelve callers arrive within it even on a loaded machine.
    let gw = Gateway::start_sim(sim(), vec![keyed_policy("team", KEY, "")], |c| {
        c.batch.max_wait = Duration::from_secs(1);
    })
    .await;
    let calls = (0..12).map(|i| {
        let gw = &gw;
        async move {
            let body = chat("gpt-4.1-mini", &format!("ticket number {i}"));
            let r = gw
                .post("/v1/chat/completions", &[AUTH, ("x-sla", "24h")], &body)
                .await;
            (i, r)
        }
    });
    let results = futures_util::future::join_all(calls).await;
    let mut jobs = std::collections::HashSet::new();
    for (i, (status, headers, body)) in results {
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        assert_eq!(headers["x-sluice-tier"], "batch");
        assert!(
            content(&body).contains(&format!("ticket number {i}")),
            "caller {i} got {}",
            content(&body)
        );
        jobs.insert(headers["x-sluice-job-id"].to_str().unwrap().to_owned());
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["object"], "chat.completion");
    }
    assert_eq!(jobs.len(), 12);
    let stats = gw.sim_get("/sim/batches/stats").await;
    let created = stats["created"].as_u64().unwrap();
    assert!(
        (1..=2).contains(&created),
        "12 concurrent callers went out in {created} batches"
    );
    for j in &jobs {
        assert_eq!(stats["lines_by_custom_id"][j], 1, "{j} submitted once");
    }

    let m = gw
        .metrics_until("a completed batch", |m| {
            metric(m, "sluice_batches_total", &[("status", "completed")]) >= 1.0
        })
        .await;
    assert_eq!(
        metric(
            &m,
            "sluice_requests_total",
            &[("tier", "batch"), ("status", "200")]
        ),
        12.0
    );
    assert!(metric(&m, "sluice_savings_usd_total", &[("lever", "batch")]) > 0.0);
    assert!(
        metric(
            &m,
            "sluice_batch_turnaround_seconds_count",
            &[("provider", "openai")]
        ) >= 1.0
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_metrics_match_hand_computed_costs() {
    let gw = start().await;
    let (status, headers, body) = gw
        .post(
            "/v1/chat/completions",
            &[AUTH, ("x-sla", "batch")],
            &chat("gpt-4.1-mini", "price me"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let prompt = v["usage"]["prompt_tokens"].as_f64().unwrap();
    let cached = v["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_f64()
        .unwrap();
    let output = v["usage"]["completion_tokens"].as_f64().unwrap();
    // gpt-4.1-mini batch: input $0.20/M, output $0.80/M; cached input has no batch price in the
    // table, so it is the cached rate ($0.10/M) at the 50% batch discount = $0.05/M.
    let cost = (prompt - cached) * 0.20e-6 + cached * 0.05e-6 + output * 0.80e-6;
    let baseline = prompt * 0.40e-6 + output * 1.60e-6;
    let m = gw.metrics().await;
    let l = [
        ("client", "team"),
        ("model", "gpt-4.1-mini"),
        ("tier", "batch"),
    ];
    assert!(
        (metric(&m, "sluice_cost_usd_total", &l) - cost).abs() < 1e-12,
        "{m}"
    );
    assert!((metric(&m, "sluice_baseline_cost_usd_total", &l) - baseline).abs() < 1e-12);
    let batch_lever = baseline - (prompt * 0.20e-6 + output * 0.80e-6);
    assert!(
        (metric(
            &m,
            "sluice_savings_usd_total",
            &[("model", "gpt-4.1-mini"), ("lever", "batch")]
        ) - batch_lever)
            .abs()
            < 1e-12
    );
    assert_eq!(
        headers["x-sluice-cost-usd"]
            .to_str()
            .unwrap()
            .parse::<f64>()
            .unwrap(),
        (cost * 1e10).round() / 1e10
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn respond_async_returns_202_and_the_job_is_private() {
    let gw = start().await;
    let (status, headers, body) = gw
        .post(
            "/v1/chat/completions",
            &[AUTH, ("x-sla", "24h"), ("prefer", "respond-async")],
            &chat("gpt-4o-mini", "async please"),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let location = headers["location"].to_str().unwrap().to_owned();
    let job: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/sluice/v1/jobs/{id}"));
    assert_eq!(headers["x-sluice-job-id"], id.as_str());

    // Only its own client can see it.
    let (s, _, _) = gw
        .get(&location, &[("authorization", "Bearer sk-other")])
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = gw
        .get(
            &format!("{location}/result"),
            &[("authorization", "Bearer sk-other")],
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let mut answer = None;
    for _ in 0..400 {
        let (s, h, b) = gw.get(&format!("{location}/result"), &[AUTH]).await;
        if s == StatusCode::OK {
            assert_eq!(h["x-sluice-tier"], "batch");
            answer = Some(b);
            break;
        }
        assert_eq!(s, StatusCode::ACCEPTED);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let answer = answer.expect("the async job finished");
    assert!(content(&answer).contains("async please"));
    let (s, _, b) = gw.get(&location, &[AUTH]).await;
    assert_eq!(s, StatusCode::OK);
    let job: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(job["status"], "completed");
    assert_eq!(job["answered_by"], "batch");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_retries_attach_to_one_job() {
    let gw = start().await;
    let body = chat("gpt-4o-mini", "only once");
    let h = [AUTH, ("x-sla", "24h"), ("idempotency-key", "order-42")];
    let (a, b) = tokio::join!(
        gw.post("/v1/chat/completions", &h, &body),
        gw.post("/v1/chat/completions", &h, &body)
    );
    assert_eq!(a.0, StatusCode::OK);
    assert_eq!(b.0, StatusCode::OK);
    assert_eq!(a.1["x-sluice-job-id"], b.1["x-sluice-job-id"]);
    assert_eq!(a.2, b.2, "both callers get the same answer");
    // A later retry returns the stored answer without a new upstream request.
    let (s, h3, body3) = gw.post("/v1/chat/completions", &h, &body).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h3["x-sluice-job-id"], a.1["x-sluice-job-id"]);
    assert_eq!(body3, a.2);
    let stats = gw.sim_get("/sim/batches/stats").await;
    assert_eq!(stats["lines_by_custom_id"].as_object().unwrap().len(), 1);
    // The same key from another client is another job.
    let (_, h4, _) = gw
        .post(
            "/v1/chat/completions",
            &[
                ("authorization", "Bearer sk-other"),
                ("x-sla", "24h"),
                ("idempotency-key", "order-42"),
            ],
            &body,
        )
        .await;
    assert_ne!(h4["x-sluice-job-id"], a.1["x-sluice-job-id"]);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_deferred_requests_get_keep_alives_then_chunks() {
    let gw = Gateway::start_sim(sim(), vec![keyed_policy("team", KEY, "")], |c| {
        c.batch.keep_alive = Duration::from_millis(20);
        c.batch.max_wait = Duration::from_millis(300);
    })
    .await;
    let body = serde_json::json!({"model": "gpt-4o-mini", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "stream me later"}]})
    .to_string();
    let (status, headers, sse) = gw
        .post("/v1/chat/completions", &[AUTH, ("x-sla", "24h")], &body)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["x-sluice-tier"], "batch");
    let text = std::str::from_utf8(&sse).unwrap();
    assert!(text.starts_with(": keep-alive\n\n"), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let chunks: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|l| *l != "[DONE]")
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let joined: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(joined.contains("stream me later"), "{joined}");
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert!(
        chunks.last().unwrap()["usage"]["total_tokens"]
            .as_u64()
            .unwrap()
            > 0,
        "usage chunk last, as asked"
    );
    // The provider got a batch line without stream fields.
    let log = gw.sim_requests().await;
    let upload = log
        .iter()
        .find(|r| r["path"] == "/v1/files" || r["uri"] == "/v1/files")
        .expect("an upload");
    let upload_body = upload["body"].as_str().unwrap();
    assert!(
        upload_body.contains("stream me later") && !upload_body.contains("\"stream\""),
        "{upload_body}"
    );
    gw.stop().await;
}

async fn faulted(faults: serde_json::Value) -> Gateway {
    let gw = start().await;
    let (s, v) = gw.sim_post("/sim/batch-faults", faults).await;
    assert!(s.is_success(), "{v}");
    gw
}

async fn run_three(gw: &Gateway) -> Vec<(StatusCode, http::HeaderMap, bytes::Bytes)> {
    let calls = (0..3).map(|i| {
        let body = chat("gpt-4o-mini", &format!("fault case {i}"));
        async move {
            gw.post("/v1/chat/completions", &[AUTH, ("x-sla", "24h")], &body)
                .await
        }
    });
    futures_util::future::join_all(calls).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_429_backs_off_and_retries_never_drops() {
    let gw = faulted(serde_json::json!({"create_429": 2})).await;
    for (s, h, b) in run_three(&gw).await {
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
        assert_eq!(h["x-sluice-tier"], "batch");
    }
    let stats = gw.sim_get("/sim/batches/stats").await;
    assert!(
        stats["lines_by_custom_id"]
            .as_object()
            .unwrap()
            .values()
            .all(|v| v == 1)
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_answers_the_bad_line_and_resubmits_the_rest() {
    let gw = faulted(serde_json::json!({"fail_validation": 1})).await;
    let results = run_three(&gw).await;
    let errors = results
        .iter()
        .filter(|r| r.0 == StatusCode::BAD_REQUEST)
        .count();
    let ok = results.iter().filter(|r| r.0 == StatusCode::OK).count();
    assert_eq!(
        (errors, ok),
        (1, 2),
        "line 1 is answered with the provider's error, the rest resubmitted"
    );
    let bad = results
        .iter()
        .find(|r| r.0 == StatusCode::BAD_REQUEST)
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&bad.2).unwrap();
    assert!(v["error"]["message"].is_string());
    let m = gw
        .metrics_until("the failed batch", |m| {
            metric(m, "sluice_batches_total", &[("status", "failed")]) >= 1.0
        })
        .await;
    assert_eq!(
        metric(&m, "sluice_batches_total", &[("status", "failed")]),
        1.0
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_batch_delivers_partial_output_and_resubmits_the_rest() {
    let gw = faulted(serde_json::json!({"expire": 1, "expire_completed_fraction": 0.34})).await;
    for (s, h, b) in run_three(&gw).await {
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
        assert_eq!(h["x-sluice-tier"], "batch");
    }
    // Callers are answered before the flush is closed and counted: wait for the count.
    let m = gw
        .metrics_until("the resubmitted batch", |m| {
            metric(m, "sluice_batches_total", &[("status", "completed")]) >= 1.0
        })
        .await;
    assert_eq!(
        metric(&m, "sluice_batches_total", &[("status", "expired")]),
        1.0
    );
    let stats = gw.sim_get("/sim/batches/stats").await;
    let counts: Vec<u64> = stats["lines_by_custom_id"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(
        counts.iter().filter(|&&c| c == 1).count() + counts.iter().filter(|&&c| c == 2).count(),
        3
    );
    assert!(
        counts.contains(&2),
        "expired lines were submitted again: {counts:?}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_line_errors_reach_their_caller_unchanged() {
    let gw = start().await;
    // Learn the job id first with respond-async, then make that line fail upstream.
    let (_, h, _) = gw
        .post(
            "/v1/chat/completions",
            &[
                AUTH,
                ("x-sla", "24h"),
                ("prefer", "respond-async"),
                ("idempotency-key", "k1"),
            ],
            &chat("gpt-4o-mini", "doomed"),
        )
        .await;
    let id = h["x-sluice-job-id"].to_str().unwrap().to_owned();
    gw.sim_post(
        "/sim/batch-faults",
        serde_json::json!({"line_errors": [id]}),
    )
    .await;
    let (s, _, b) = gw
        .post(
            "/v1/chat/completions",
            &[AUTH, ("x-sla", "24h"), ("idempotency-key", "k1")],
            &chat("gpt-4o-mini", "doomed"),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        String::from_utf8_lossy(&b)
    );
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["error"]["type"], "server_error");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_batch_is_resubmitted() {
    let gw = faulted(serde_json::json!({"turnaround_ms": 60_000})).await;
    let body = chat("gpt-4o-mini", "cancel me");
    let (_, h, _) = gw
        .post(
            "/v1/chat/completions",
            &[
                AUTH,
                ("x-sla", "24h"),
                ("prefer", "respond-async"),
                ("idempotency-key", "c"),
            ],
            &body,
        )
        .await;
    let id = h["x-sluice-job-id"].to_str().unwrap().to_owned();
    // Someone cancels the batch on the provider's dashboard.
    let mut batch_id = None;
    for _ in 0..400 {
        let list = gw.sim_get("/v1/batches").await;
        if let Some(b) = list["data"].as_array().and_then(|d| d.first()) {
            batch_id = Some(b["id"].as_str().unwrap().to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let batch_id = batch_id.expect("a batch was created");
    gw.sim_post(
        "/sim/batch-faults",
        serde_json::json!({"turnaround_ms": 100}),
    )
    .await;
    let (s, _) = gw
        .sim_post(
            &format!("/v1/batches/{batch_id}/cancel"),
            serde_json::json!({}),
        )
        .await;
    assert!(s.is_success());
    let (s, h2, b) = gw
        .post(
            "/v1/chat/completions",
            &[AUTH, ("x-sla", "24h"), ("idempotency-key", "c")],
            &body,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    assert_eq!(h2["x-sluice-job-id"], id.as_str());
    let m = gw
        .metrics_until("the cancelled batch", |m| {
            metric(m, "sluice_batches_total", &[("status", "cancelled")]) >= 1.0
        })
        .await;
    assert_eq!(
        metric(&m, "sluice_batches_total", &[("status", "cancelled")]),
        1.0
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_answers_in_time_and_the_late_batch_line_is_waste() {
    // A 2-minute SLA is batchable when batches are believed fast (prior 1 s: 1 s + the
    // 118.5 s fallback lead + one 50 ms poll fit in 2 m); the provider is slower than
    // believed (4 s: well past the watchdog on a loaded machine), so the watchdog, 1.5 s
    // after arrival, answers first.
    let gw = Gateway::start_sim(sim(), vec![keyed_policy("team", KEY, "")], |c| {
        c.batch.turnaround_prior = Duration::from_secs(1);
        c.batch.fallback_lead = Duration::from_millis(118_500);
    })
    .await;
    gw.sim_post(
        "/sim/batch-faults",
        serde_json::json!({"turnaround_ms": 4000}),
    )
    .await;
    let (s, h, b) = gw
        .post(
            "/v1/chat/completions",
            &[AUTH, ("x-sla", "2m")],
            &chat("gpt-4o-mini", "hurry"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    assert_eq!(
        h["x-sluice-tier"], "interactive",
        "answered by the synchronous fallback"
    );
    assert!(content(&b).contains("hurry"));
    let m = gw
        .metrics_until("wasted spend for the late batch line", |m| {
            metric(
                m,
                "sluice_wasted_cost_usd_total",
                &[("reason", "late_batch_result")],
            ) > 0.0
        })
        .await;
    assert_eq!(
        metric(
            &m,
            "sluice_fallbacks_total",
            &[("from_tier", "batch"), ("reason", "deadline")]
        ),
        1.0
    );
    assert_eq!(metric(&m, "sluice_sla_violations_total", &[]), 0.0);
    assert_eq!(
        metric(
            &m,
            "sluice_requests_total",
            &[("tier", "interactive"), ("client", "team")]
        ),
        1.0
    );
    assert_eq!(
        metric(&m, "sluice_requests_total", &[("tier", "batch")]),
        0.0,
        "the late line is waste, not an answer"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semi_goes_to_flex_and_falls_back_when_flex_is_unavailable() {
    let gw = start().await;
    let body = chat("gpt-5-mini", "flex me");
    let (s, h, b) = gw
        .post("/v1/chat/completions", &[AUTH, ("x-sla", "semi")], &body)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["x-sluice-tier"], "flex");
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["service_tier"], "flex");
    let log = gw.sim_requests().await;
    let sent = log.last().unwrap()["body"].as_str().unwrap().to_owned();
    assert!(
        sent.starts_with("{\"prompt_cache_key\":\"sluice-"),
        "{sent}"
    );
    assert!(
        sent.contains("\",\"service_tier\":\"flex\",\"messages\""),
        "{sent}"
    );

    let (s, h, _) = gw
        .post(
            "/v1/chat/completions",
            &[AUTH, ("x-sla", "semi"), ("x-sim-fault", "flex-429")],
            &body,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["x-sluice-tier"], "interactive");
    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            "sluice_fallbacks_total",
            &[("from_tier", "flex"), ("reason", "flex_unavailable")]
        ),
        1.0
    );
    assert_eq!(
        metric(&m, "sluice_requests_total", &[("tier", "flex")]),
        1.0
    );
    assert!(metric(&m, "sluice_savings_usd_total", &[("lever", "flex")]) > 0.0);
    // A model without flex prices is interactive whatever the SLA below the batch prior.
    let (_, h, _) = gw
        .post(
            "/v1/chat/completions",
            &[AUTH, ("x-sla", "semi")],
            &chat("gpt-4o-mini", "no flex"),
        )
        .await;
    assert_eq!(h["x-sluice-tier"], "interactive");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turnaround_endpoint_reports_observed_percentiles() {
    let gw = start().await;
    let (s, _, _) = gw
        .post(
            "/v1/chat/completions",
            &[AUTH, ("x-sla", "24h")],
            &chat("gpt-4o-mini", "observe"),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    gw.metrics_until("the flush closed", |m| {
        metric(m, "sluice_batch_turnaround_seconds_count", &[]) >= 1.0
    })
    .await;
    let (s, _, b) = gw.get("/sluice/v1/turnaround", &[AUTH]).await;
    assert_eq!(s, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["prior_p95_seconds"], 21600);
    let row = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == "gpt-4o-mini")
        .expect("observed");
    assert_eq!(row["samples"], 1);
    assert!(row["p95_seconds"].as_f64().unwrap() >= 0.0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_reads_the_durable_ledger() {
    let gw = start().await;
    let calls = (0..2).map(|i| {
        let body = chat("gpt-4o-mini", &format!("ledger {i}"));
        let gw = &gw;
        async move {
            gw.post("/v1/chat/completions", &[AUTH, ("x-sla", "24h")], &body)
                .await
        }
    });
    for (s, _, _) in futures_util::future::join_all(calls).await {
        assert_eq!(s, StatusCode::OK);
    }
    let (s, _, _) = gw
        .post("/v1/chat/completions", &[AUTH], &chat("gpt-4o-mini", "now"))
        .await;
    assert_eq!(s, StatusCode::OK);
    let mut last = String::new();
    for _ in 0..200 {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("report")
            .env_remove("SLUICE_CONFIG")
            .env("SLUICE_STORE", format!("sqlite://{}", gw.db.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        last = String::from_utf8(out.stdout).unwrap();
        let row = |tier: &str| {
            last.lines()
                .find(|l| l.split_whitespace().nth(2) == Some(tier))
                .map(str::to_owned)
        };
        if let (Some(b), Some(i)) = (row("batch"), row("interactive")) {
            let n = |l: &str| l.split_whitespace().nth(3).unwrap().parse::<u64>().unwrap();
            if n(&b) == 2 && n(&i) == 1 {
                assert!(b.starts_with("default") && b.contains("team"), "{b}");
                assert!(last.contains("TOTAL"));
                gw.stop().await;
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the ledger never showed 2 batch + 1 interactive answers:\n{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_store() {
    let a = Gateway::start_sim(sim(), vec![keyed_policy("team", KEY, "")], |c| {
        c.batch.replica_id = "replica-a".into()
    })
    .await;
    let sim_url = a.sim.as_ref().unwrap().base_url();
    let db = a.db.clone();
    let b = Gateway::start_at(
        &sim_url,
        None,
        vec![keyed_policy("team", KEY, "")],
        move |c| {
            c.store = format!("sqlite://{}", db.display());
            c.batch.replica_id = "replica-b".into();
        },
    )
    .await;
    let calls = (0..8).map(|i| {
        let gw = if i % 2 == 0 { &a } else { &b };
        let body = chat("gpt-4o-mini", &format!("replica request {i}"));
        async move {
            (
                i,
                gw.post("/v1/chat/completions", &[AUTH, ("x-sla", "24h")], &body)
                    .await,
            )
        }
    });
    let mut ids = std::collections::HashSet::new();
    for (i, (s, h, body)) in futures_util::future::join_all(calls).await {
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        assert!(content(&body).contains(&format!("replica request {i}")));
        assert!(ids.insert(h["x-sluice-job-id"].to_str().unwrap().to_owned()));
    }
    let stats = a.sim_get("/sim/batches/stats").await;
    for id in &ids {
        assert_eq!(
            stats["lines_by_custom_id"][id], 1,
            "{id} submitted once across replicas"
        );
    }
    // A job is readable through either replica.
    let any = ids.iter().next().unwrap();
    let (s, _, _) = b
        .get(&format!("/sluice/v1/jobs/{any}/result"), &[AUTH])
        .await;
    assert_eq!(s, StatusCode::OK);
    b.stop().await;
    a.stop().await;
}

/// Issue 8's acceptance: with no faults, SLAs of 61 s, 2 m, 5 m, 10 m and 1 h never cost
/// more than a direct call, whether batches are observed fast (~100 ms, after a warm-up
/// batch; the 6 h prior alone would batch none of them) or believed slow (a 30 m prior):
/// nothing is sent upstream twice, nothing falls back, nothing is wasted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_sla_sends_a_request_upstream_twice() {
    for (label, prior, batched) in [
        // Fast: ~100 ms + the 5 m lead + one poll fit in 10 m and 1 h, not in 5 m.
        ("fast", None, &["10m", "1h"][..]),
        // Slow: 30 m + 5 m fit only in 1 h.
        ("slow", Some(Duration::from_secs(1800)), &["1h"][..]),
    ] {
        let gw = Gateway::start_sim(sim(), vec![keyed_policy("team", KEY, "")], |c| {
            if let Some(p) = prior {
                c.batch.turnaround_prior = p;
            }
        })
        .await;
        if prior.is_none() {
            let warm_up = ["gpt-4o-mini", "gpt-5-mini"].map(|model| {
                let body = chat(model, "warm-up");
                let gw = &gw;
                async move {
                    let (s, h, _) = gw
                        .post("/v1/chat/completions", &[AUTH, ("x-sla", "24h")], &body)
                        .await;
                    assert_eq!(s, StatusCode::OK);
                    assert_eq!(h["x-sluice-tier"], "batch");
                }
            });
            futures_util::future::join_all(warm_up).await;
            // Triage learns a turnaround when its batch ends, just after the answers.
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                let (_, _, b) = gw.get("/sluice/v1/turnaround", &[AUTH]).await;
                let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
                let learnt = v["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|d| d["triage_p95_seconds"].as_f64().unwrap() < 60.0)
                    .count();
                if learnt == 2 {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "{v}");
                tokio::task::yield_now().await;
            }
        }
        let slas = ["61s", "2m", "5m", "10m", "1h"];
        let gw_ref = &gw;
        let calls = slas.iter().flat_map(|&sla| {
            ["gpt-4o-mini", "gpt-5-mini"].map(move |model| {
                let gw = gw_ref;
                async move {
                    let marker = format!("probe {label} {sla} {model}");
                    let (s, h, b) = gw
                        .post(
                            "/v1/chat/completions",
                            &[AUTH, ("x-sla", sla)],
                            &chat(model, &marker),
                        )
                        .await;
                    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
                    assert!(content(&b).contains(&marker));
                    let tier = h["x-sluice-tier"].to_str().unwrap().to_owned();
                    (sla, model, marker, tier)
                }
            })
        });
        let answers = futures_util::future::join_all(calls).await;
        let log = gw.sim_requests().await;
        for (sla, model, marker, tier) in &answers {
            let expected = match (batched.contains(sla), *model) {
                (true, _) => "batch",
                (false, "gpt-5-mini") => "flex",
                (false, _) => "interactive",
            };
            assert_eq!(tier, expected, "{label} {sla} {model}");
            let sent = log
                .iter()
                .map(|r| {
                    r["body"]
                        .as_str()
                        .unwrap_or_default()
                        .matches(marker.as_str())
                        .count()
                })
                .sum::<usize>();
            assert_eq!(sent, 1, "{marker} went upstream {sent} times");
        }
        let m = gw.metrics().await;
        assert_eq!(
            metric(&m, "sluice_wasted_cost_usd_total", &[]),
            0.0,
            "{label}"
        );
        assert_eq!(metric(&m, "sluice_fallbacks_total", &[]), 0.0, "{label}");
        assert_eq!(
            metric(&m, "sluice_sla_violations_total", &[]),
            0.0,
            "{label}"
        );
        gw.stop().await;
    }
}
