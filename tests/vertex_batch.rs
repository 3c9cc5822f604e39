//! The `vertex` provider end to end: the real server in-process with Vertex AI pointing at
//! the simulator (its OAuth token endpoint, Cloud Storage, batchPredictionJobs and online
//! `generateContent`), a policy sending `gemini-2.5-flash` to `vertex` while the Gemini
//! API (with its key) keeps the other `gemini-*` models. OpenAI chat completions and
//! native generateContent requests with a tolerant `x-sla`, held or async, are answered at
//! half price through batch prediction; interactive ones through Vertex's own endpoint.

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
/// The model the policy sends to Vertex AI; [`GEMINI_API_MODEL`] stays on the Gemini API.
const MODEL: &str = "gemini-2.5-flash";
const GEMINI_API_MODEL: &str = "gemini-2.5-pro";
const MODEL_MAP: &str = "[models]\n\"gemini-2.5-flash\" = \"vertex\"\n";

fn sim() -> SimConfig {
    let mut s = SimConfig::default();
    s.vertex.run_time = Duration::from_millis(200);
    s.gemini.batch_turnaround = Duration::from_millis(200);
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
    start_with(vec![keyed_policy("team", "sk-team", MODEL_MAP)], true).await
}

/// The gateway with Vertex AI on the simulator; `gemini_key: false` leaves the Gemini API
/// unconfigured.
async fn start_with(policies: Vec<(String, String)>, gemini_key: bool) -> Gateway {
    start_full(sim(), policies, gemini_key, |_| {}).await
}

async fn start_full(
    sim: SimConfig,
    policies: Vec<(String, String)>,
    gemini_key: bool,
    tweak: impl FnOnce(&mut sluice::config::Config),
) -> Gateway {
    let sim = start_simulator(sim).await.unwrap();
    let url = sim.base_url();
    let root = format!("http://{}", sim.addr);
    let key = key_file(&root);
    Gateway::start_at(&url, Some(sim), policies, |c| {
        c.batch.max_wait = Duration::from_millis(300);
        let v = VertexConfig {
            project: PROJECT.into(),
            location: "us-central1".into(),
            bucket: "sim-bucket".into(),
            credentials_file: key,
            base_url: format!("{root}/v1"),
            storage_url: root.clone(),
        };
        let p = &mut c.providers[Provider::Vertex as usize];
        p.base_url = v.publisher_base();
        p.vertex = Some(v);
        if !gemini_key {
            c.providers[Provider::Gemini as usize].api_key = None;
        }
        tweak(c);
    })
    .await
}

fn online_path(method: &str) -> String {
    format!(
        "/v1/projects/{PROJECT}/locations/us-central1/publishers/google/models/{MODEL}:{method}"
    )
}

fn chat(user: &str) -> String {
    chat_for(MODEL, user)
}

fn chat_for(model: &str, user: &str) -> String {
    serde_json::json!({
        "model": model,
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
            metric(m, "sluice_batches_total", &[("provider", "vertex")]) >= 1.0
        })
        .await;
    assert!(
        metric(
            &m,
            "sluice_savings_usd_total",
            &[("lever", "batch"), ("provider", "vertex")]
        ) > 0.0
    );
    assert!(
        metric(
            &m,
            "sluice_requests_total",
            &[("provider", "vertex"), ("tier", "batch"), ("model", MODEL)]
        ) >= 3.0
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_requests_use_the_vertex_online_endpoint_with_the_oauth_token() {
    let gw = start().await;
    // Native, whole and streamed: Vertex's own generateContent, as the Gemini API answers.
    let native = serde_json::json!({
        "contents": [{"role": "user", "parts": [{"text": "right now please"}]}]
    })
    .to_string();
    let (status, headers, body) = gw
        .post(
            &format!("/v1beta/models/{MODEL}:generateContent"),
            &[AUTH],
            &native,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["x-sluice-tier"], "interactive");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let text = v["candidates"][0]["content"]["parts"][0]["text"]
        .as_str()
        .unwrap();
    assert!(text.contains("right now please"), "{v}");
    let (cost, baseline) = (
        usd(&headers, "x-sluice-cost-usd"),
        usd(&headers, "x-sluice-baseline-usd"),
    );
    assert!(
        cost > 0.0 && (cost - baseline).abs() < 1e-12,
        "{cost} vs {baseline}"
    );
    let (status, headers, body) = gw
        .post(
            &format!("/v1beta/models/{MODEL}:streamGenerateContent?alt=sse"),
            &[AUTH],
            &native,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let sse = String::from_utf8_lossy(&body);
    assert!(sse.matches("data: ").count() > 1, "{sse}");
    assert!(sse.contains("usageMetadata"), "{sse}");

    // OpenAI chat completions, translated to generateContent and back; a stream is
    // answered whole and sent as its chunks.
    let (status, headers, body) = gw
        .post("/v1/chat/completions", &[AUTH], &chat("hello vertex"))
        .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["x-sluice-tier"], "interactive");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], MODEL);
    let content = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(content.contains("hello vertex"), "{v}");
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    let mut streamed: serde_json::Value = serde_json::from_str(&chat("hello vertex")).unwrap();
    streamed["stream"] = true.into();
    streamed["stream_options"] = serde_json::json!({"include_usage": true});
    let (status, headers, body) = gw
        .post("/v1/chat/completions", &[AUTH], &streamed.to_string())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let sse = String::from_utf8_lossy(&body);
    assert!(sse.trim_end().ends_with("data: [DONE]"), "{sse}");
    let mut text = String::new();
    for line in sse.lines().filter_map(|l| l.strip_prefix("data: ")) {
        if let Ok(chunk) = serde_json::from_str::<serde_json::Value>(line) {
            if let Some(t) = chunk["choices"][0]["delta"]["content"].as_str() {
                text.push_str(t);
            }
        }
    }
    assert_eq!(text, content);

    let requests = gw.sim_requests().await;
    let online: Vec<_> = requests
        .iter()
        .filter(|r| {
            r["path"]
                .as_str()
                .unwrap()
                .contains("/publishers/google/models/")
        })
        .collect();
    assert_eq!(online.len(), 4, "{requests:?}");
    assert_eq!(online[0]["path"], online_path("generateContent").as_str());
    assert_eq!(
        online[1]["path"],
        online_path("streamGenerateContent").as_str()
    );
    for r in &online {
        let auth = r["headers"]["authorization"].as_str().unwrap_or_default();
        assert!(auth.starts_with("Bearer ") && !auth.contains("sk-"), "{r}");
        assert!(r["headers"].get("x-goog-api-key").is_none(), "{r}");
    }
    // Nothing went to the Gemini API.
    assert!(
        requests.iter().all(|r| {
            let p = r["path"].as_str().unwrap();
            !p.contains("/openai/") && !p.starts_with("/v1/models/") && !p.starts_with("/v1beta/")
        }),
        "{requests:?}"
    );
    let m = gw
        .metrics_until("vertex interactive requests", |m| {
            metric(
                m,
                "sluice_requests_total",
                &[("provider", "vertex"), ("tier", "interactive")],
            ) >= 4.0
        })
        .await;
    assert_eq!(
        metric(&m, "sluice_requests_total", &[("provider", "gemini")]),
        0.0
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gemini_api_keeps_the_models_no_policy_sends_to_vertex() {
    let gw = start().await;
    let (status, headers, body) = gw
        .post(
            "/v1/chat/completions",
            &[AUTH, ("x-sla", "24h")],
            &chat_for(GEMINI_API_MODEL, "batch mode for me"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["x-sluice-tier"], "batch");
    half_price(&headers);
    let requests = gw.sim_requests().await;
    assert!(
        requests
            .iter()
            .any(|r| r["path"].as_str().unwrap().contains("batchGenerateContent")),
        "Gemini Batch Mode: {requests:?}"
    );
    assert!(
        requests
            .iter()
            .all(|r| !r["path"].as_str().unwrap().contains("batchPredictionJobs")),
        "not Vertex: {requests:?}"
    );
    let m = gw
        .metrics_until("a completed gemini batch", |m| {
            metric(m, "sluice_batches_total", &[("provider", "gemini")]) >= 1.0
        })
        .await;
    assert_eq!(
        metric(&m, "sluice_batches_total", &[("provider", "vertex")]),
        0.0
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_vertex_and_no_gemini_key_gemini_models_go_to_vertex_by_default() {
    let gw = start_with(vec![keyed_policy("team", "sk-team", "")], false).await;
    let (status, headers, body) = gw
        .post(
            "/v1/chat/completions",
            &[AUTH, ("x-sla", "24h")],
            &chat_for(GEMINI_API_MODEL, "no key, no problem"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["x-sluice-tier"], "batch");
    half_price(&headers);
    let requests = gw.sim_requests().await;
    assert!(
        requests.iter().any(|r| r["path"]
            .as_str()
            .unwrap()
            .ends_with("/batchPredictionJobs")),
        "{requests:?}"
    );
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
            &format!("/v1beta/models/{MODEL}:generateContent"),
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
            &format!("/v1beta/models/{MODEL}:generateContent"),
            &[AUTH, ("x-sla", "24h")],
            &tiered,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(headers["x-sluice-tier"], "batch");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_stuck_in_the_vertex_queue_falls_back_to_the_online_endpoint_in_time() {
    // A 2-minute SLA is batchable when batches are believed fast (prior 1 s: 1 s + the
    // 118.5 s fallback lead + one 50 ms poll fit in 2 m); the job stays queued, so the
    // watchdog, 1.5 s after arrival, sends the stored (native) request to Vertex's
    // generateContent and translates its answer back.
    let mut s = sim();
    s.vertex.queue_delay = Duration::from_secs(3600);
    let gw = start_full(
        s,
        vec![keyed_policy("team", "sk-team", MODEL_MAP)],
        true,
        |c| {
            c.batch.turnaround_prior = Duration::from_secs(1);
            c.batch.fallback_lead = Duration::from_millis(118_500);
        },
    )
    .await;
    let (status, headers, body) = gw
        .post(
            "/v1/chat/completions",
            &[AUTH, ("x-sla", "2m")],
            &chat("stuck in the queue"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        headers["x-sluice-tier"], "interactive",
        "the fallback answered"
    );
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], MODEL);
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.contains("stuck in the queue"), "{v}");
    let requests = gw.sim_requests().await;
    assert!(
        requests
            .iter()
            .any(|r| r["path"] == online_path("generateContent").as_str()),
        "{requests:?}"
    );
    let m = gw
        .metrics_until("the fallback", |m| {
            metric(
                m,
                "sluice_fallbacks_total",
                &[("from_tier", "batch"), ("reason", "deadline")],
            ) >= 1.0
        })
        .await;
    assert_eq!(metric(&m, "sluice_sla_violations_total", &[]), 0.0);
    assert_eq!(
        metric(
            &m,
            "sluice_requests_total",
            &[("provider", "vertex"), ("tier", "interactive")]
        ),
        1.0
    );
    gw.stop().await;
}

/// `sluice serve --simulate`, the real binary: Vertex AI is wired to the built-in
/// simulator too (a simulated service account, project and bucket), so a policy that
/// sends a model to `vertex` is served by simulated batch prediction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_simulate_serves_vertex_for_a_model_a_policy_sends_there() {
    use http_body_util::BodyExt;
    use std::process::{Command, Stdio};

    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let dir = common::temp_db().with_extension("serve-simulate");
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(
        dir.join("policies").join("vertex.toml"),
        "[models]\n\"gemini-2.5-pro\" = \"vertex\"\n",
    )
    .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let call = |port: u16, path: &str, headers: &[(&str, &str)], body: Option<&str>| {
        let mut b = http::Request::builder()
            .method(if body.is_some() { "POST" } else { "GET" })
            .uri(format!("http://127.0.0.1:{port}{path}"))
            .header("content-type", "application/json");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.unwrap_or_default().to_owned(),
            )))
            .unwrap();
        let client = client.clone();
        async move {
            let resp = client.request(req).await.map_err(|e| e.to_string())?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok::<_, String>((parts.status, parts.headers, body))
        }
    };
    let mut gateway = None;
    for _ in 0..3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["serve", "--simulate"])
            .env_clear()
            .env("RUST_LOG", "warn")
            .env("TMPDIR", &dir)
            .env("SLUICE_LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "SLUICE_STORE",
                format!("sqlite://{}", dir.join("db").display()),
            )
            .env("SLUICE_POLICIES", dir.join("policies"))
            .env("SLUICE_BATCH_MAX_WAIT", "200ms")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut child = Kill(child);
        // Bounded readiness polling (the port may have been taken meanwhile: retry).
        for _ in 0..500 {
            if child.0.try_wait().unwrap().is_some() {
                break;
            }
            if let Ok((s, _, _)) = call(port, "/healthz", &[], None).await {
                if s == StatusCode::OK {
                    gateway = Some((child, port));
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if gateway.is_some() {
            break;
        }
    }
    let (_child, port) = gateway.expect("the gateway never became ready");
    let body = serde_json::json!({
        "contents": [{"role": "user", "parts": [{"text": "simulated vertex"}]}]
    })
    .to_string();
    let path = "/v1beta/models/gemini-2.5-pro:generateContent";
    let (s, h, b) = call(port, path, &[("x-sla", "24h")], Some(&body))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    half_price(&h);
    assert!(String::from_utf8_lossy(&b).contains("simulated vertex"));
    let (s, h, _) = call(port, path, &[], Some(&body)).await.unwrap();
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["x-sluice-tier"], "interactive");
    let (_, _, m) = call(port, "/metrics", &[], None).await.unwrap();
    let m = String::from_utf8_lossy(&m);
    assert!(
        metric(&m, "sluice_batches_total", &[("provider", "vertex")]) >= 1.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "sluice_requests_total",
            &[("provider", "vertex"), ("tier", "interactive")]
        ),
        1.0
    );
    drop(_child);
    // The simulated service-account key went below TMPDIR, this test's directory.
    let _ = std::fs::remove_dir_all(&dir);
}
