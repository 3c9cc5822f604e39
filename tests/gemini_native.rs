//! Gemini-native clients (`google-genai` SDK with a base URL): `POST /v1beta/models/{model}:
//! generateContent` and `:streamGenerateContent?alt=sse`, passed through to the Gemini API
//! with the provider's `x-goog-api-key`, Google-shaped errors, and usage priced from
//! `usageMetadata` at the tier Google reports.

mod common;

use std::time::Duration;

use common::{Gateway, canned, keyed_policy, metric};
use http::StatusCode;
use serde_json::{Value, json};

const GENERATE: &str = "/v1beta/models/gemini-2.5-flash:generateContent";
const STREAM: &str = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse";

const ANSWER: &str = r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"billing"}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":2110,"cachedContentTokenCount":2048,"candidatesTokenCount":7,"thoughtsTokenCount":3,"totalTokenCount":2120,"serviceTier":"standard"},"modelVersion":"gemini-2.5-flash","responseId":"r1"}"#;

const BODY: &str = r#"{"contents":[{"role":"user","parts":[{"text":"My invoice is wrong."}]}]}"#;

// gemini-2.5-flash (src/pricing/builtin.rs): standard $0.30/M in, $0.03/M cached, $2.50/M
// out; flex $0.15/M in, cached at the standard cached rate, $1.25/M out.
const IN: f64 = 0.30e-6;
const CACHED: f64 = 0.03e-6;
const OUT: f64 = 2.50e-6;
const FLEX_IN: f64 = 0.15e-6;
const FLEX_OUT: f64 = 1.25e-6;

fn header_usd(h: &http::HeaderMap, name: &str) -> f64 {
    h[name].to_str().unwrap().parse().unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

/// A Google error envelope with this code and status.
fn google_error(b: &[u8], code: u16, status: &str) -> Value {
    let v: Value = serde_json::from_slice(b)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(b)));
    assert_eq!(v["error"]["code"], code, "{v}");
    assert_eq!(v["error"]["status"], status, "{v}");
    assert!(v["error"]["message"].is_string(), "{v}");
    v
}

/// Usage of a Gemini answer (or chunk), hand-priced at standard rates: (cost, baseline).
fn standard_price(usage: &Value) -> (f64, f64) {
    let n = |k: &str| usage[k].as_u64().unwrap_or(0) as f64;
    let (prompt, cached) = (n("promptTokenCount"), n("cachedContentTokenCount"));
    let out = n("candidatesTokenCount") + n("thoughtsTokenCount");
    let cost = (prompt - cached) * IN + cached * CACHED + out * OUT;
    (cost, prompt * IN + out * OUT)
}

#[tokio::test]
async fn generate_content_passes_through_with_the_provider_key_and_is_priced() {
    let up = canned(200, "application/json", vec![ANSWER]).await;
    let gw = Gateway::start_at(
        &up.base_url(),
        None,
        vec![keyed_policy("team", "sk-team", "")],
        |_| {},
    )
    .await;
    let (s, h, b) = gw
        .post(
            GENERATE,
            &[
                ("x-goog-api-key", "sk-team"),
                ("x-goog-api-client", "google-genai-sdk/1.0"),
                ("x-goog-user-project", "the-callers-project"),
                ("user-agent", "google-genai-sdk/1.0"),
            ],
            BODY,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    assert_eq!(b, ANSWER.as_bytes(), "relayed unchanged");
    assert_eq!(h["x-sluice-tier"], "interactive");
    // 62 uncached + 2048 cached in, 7 + 3 (thoughts) out.
    let cost = 62.0 * IN + 2048.0 * CACHED + 10.0 * OUT;
    let baseline = 2110.0 * IN + 10.0 * OUT;
    assert!(close(header_usd(&h, "x-sluice-cost-usd"), cost), "{h:?}");
    assert!(
        close(header_usd(&h, "x-sluice-baseline-usd"), baseline),
        "{h:?}"
    );

    let (path, headers) = up.heads.lock().unwrap()[0].clone();
    assert_eq!(path, "/v1/models/gemini-2.5-flash:generateContent");
    assert_eq!(
        headers["x-goog-api-key"], "sk-sluice-simulated",
        "the provider key replaces the gateway key"
    );
    assert!(headers.get("authorization").is_none());
    assert_eq!(headers["user-agent"], "google-genai-sdk/1.0");
    // The SDK's identity passes, like user-agent; the caller's key never does.
    assert_eq!(headers["x-goog-api-client"], "google-genai-sdk/1.0");
    assert!(
        headers.get("x-goog-user-project").is_none(),
        "the gateway's project pays, not one the caller names"
    );
    assert_eq!(
        up.bodies.lock().unwrap()[0],
        BODY.as_bytes(),
        "body as sent"
    );

    let m = gw.metrics().await;
    let l = [("model", "gemini-2.5-flash"), ("provider", "gemini")];
    assert!(close(metric(&m, "sluice_cost_usd_total", &l), cost), "{m}");
    assert!(close(
        metric(&m, "sluice_baseline_cost_usd_total", &l),
        baseline
    ));
    assert_eq!(
        metric(
            &m,
            "sluice_tokens_total",
            &[("model", "gemini-2.5-flash"), ("kind", "cached_input")]
        ),
        2048.0
    );
    assert_eq!(
        metric(
            &m,
            "sluice_requests_total",
            &[
                ("provider", "gemini"),
                ("tier", "interactive"),
                ("status", "200")
            ]
        ),
        1.0
    );
    gw.stop().await;
}

#[tokio::test]
async fn keys_by_header_or_query_and_never_forwarded() {
    let up = canned(200, "application/json", vec![ANSWER]).await;
    let gw = Gateway::start_at(
        &up.base_url(),
        None,
        vec![keyed_policy("team", "sk-team", "")],
        |_| {},
    )
    .await;
    for (path, headers) in [
        (GENERATE.to_owned(), vec![("x-goog-api-key", "sk-team")]),
        (format!("{GENERATE}?key=sk-team"), vec![]),
        (
            format!("{GENERATE}?key=sk-team"),
            vec![("x-goog-api-key", "sk-team")],
        ),
        (
            GENERATE.to_owned(),
            vec![("authorization", "Bearer sk-team")],
        ),
        (
            "/v1/models/gemini-2.5-flash:generateContent?key=sk-team".to_owned(),
            vec![],
        ),
        (format!("{STREAM}&key=sk-team"), vec![]),
    ] {
        let (s, _, b) = gw.post(&path, &headers, BODY).await;
        assert_eq!(s, StatusCode::OK, "{path} {headers:?}: {b:?}");
    }
    for (_, headers) in up.heads.lock().unwrap().iter() {
        assert_eq!(headers["x-goog-api-key"], "sk-sluice-simulated");
        assert!(
            headers.values().all(|v| v.as_bytes() != b"sk-team"),
            "{headers:?}"
        );
    }
    for uri in up.uris.lock().unwrap().iter() {
        assert!(
            !uri.contains("key="),
            "the query key reached the provider: {uri}"
        );
        assert!(!uri.contains("sk-team"), "{uri}");
    }
    let uris = up.uris.lock().unwrap().clone();
    assert_eq!(
        uris.last().unwrap(),
        "/v1/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );

    // Wrong, missing or conflicting keys: Google-shaped, nothing sent upstream.
    let sent = up.heads.lock().unwrap().len();
    for (path, headers, code, status) in [
        (
            GENERATE.to_owned(),
            vec![("x-goog-api-key", "sk-wrong")],
            401,
            "UNAUTHENTICATED",
        ),
        (
            format!("{GENERATE}?key=sk-wrong"),
            vec![],
            401,
            "UNAUTHENTICATED",
        ),
        (GENERATE.to_owned(), vec![], 401, "UNAUTHENTICATED"),
        (
            format!("{GENERATE}?key=sk-other"),
            vec![("x-goog-api-key", "sk-team")],
            400,
            "INVALID_ARGUMENT",
        ),
        (
            GENERATE.to_owned(),
            vec![
                ("x-goog-api-key", "sk-team"),
                ("x-goog-api-key", "sk-other"),
            ],
            400,
            "INVALID_ARGUMENT",
        ),
        (
            GENERATE.to_owned(),
            vec![
                ("x-goog-api-key", "sk-team"),
                ("authorization", "Bearer sk-other"),
            ],
            400,
            "INVALID_ARGUMENT",
        ),
    ] {
        let (s, _, b) = gw.post(&path, &headers, BODY).await;
        assert_eq!(s.as_u16(), code, "{path} {headers:?}");
        let v = google_error(&b, code, status);
        assert!(!v.to_string().contains("sk-wrong"), "{v}");
    }
    assert_eq!(up.heads.lock().unwrap().len(), sent);
    gw.stop().await;
}

const C1: &str = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"bill\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 2110,\"cachedContentTokenCount\": 2048,\"totalTokenCount\": 2110},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"z\"}\r\n\r\n";
const C2: &str = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"ing\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 2110,\"cachedContentTokenCount\": 2048,\"candidatesTokenCount\": 2,\"totalTokenCount\": 2112},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"z\"}\r\n\r\n";

#[tokio::test]
async fn streams_are_relayed_byte_for_byte_and_metered_from_the_last_chunk() {
    let up = canned(200, "text/event-stream", vec![C1, C2]).await;
    let gw = Gateway::start_at(&up.base_url(), None, vec![], |_| {}).await;
    let (s, h, sse) = gw.post(STREAM, &[], BODY).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["x-sluice-tier"], "interactive");
    assert_eq!(std::str::from_utf8(&sse).unwrap(), format!("{C1}{C2}"));
    assert_eq!(
        up.uris.lock().unwrap()[0],
        "/v1/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    let cost = 62.0 * IN + 2048.0 * CACHED + 2.0 * OUT;
    let m = gw.metrics().await;
    let l = [("model", "gemini-2.5-flash")];
    assert!(close(metric(&m, "sluice_cost_usd_total", &l), cost), "{m}");
    gw.stop().await;

    // Cut mid-way: the client gets what arrived; what was used so far is accounted.
    let (half, _) = C2.split_at(60);
    let half: &'static str = Box::leak(half.to_owned().into_boxed_str());
    let up = canned(200, "text/event-stream", vec![C1, half]).await;
    let gw = Gateway::start_at(&up.base_url(), None, vec![], |_| {}).await;
    let (s, _, sse) = gw.post(STREAM, &[], BODY).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(std::str::from_utf8(&sse).unwrap(), format!("{C1}{half}"));
    let cost = 62.0 * IN + 2048.0 * CACHED;
    let m = gw
        .metrics_until("the cut stream accounted", |m| {
            metric(m, "sluice_requests_total", &[("provider", "gemini")]) == 1.0
        })
        .await;
    assert!(close(metric(&m, "sluice_cost_usd_total", &l), cost), "{m}");
    gw.stop().await;
}

fn long_system(text: &str) -> String {
    json!({
        "systemInstruction": {"parts": [{"text": text.repeat(700)}]},
        "contents": [{"role": "user", "parts": [{"text": "Where is my refund?"}]}],
        "generationConfig": {"maxOutputTokens": 16}
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_the_simulator_json_stream_and_cached_tokens_are_priced() {
    let gw = Gateway::start(vec![], |_| {}).await;
    let body = long_system("Refund policy, section by section. ");
    let mut usages = Vec::new();
    for _ in 0..2 {
        let (s, h, b) = gw.post(GENERATE, &[], &body).await;
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert!(
            v["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap()
                .starts_with("Simulated answer"),
            "{v}"
        );
        let (cost, baseline) = standard_price(&v["usageMetadata"]);
        assert!(
            close(header_usd(&h, "x-sluice-cost-usd"), cost),
            "{h:?} {v}"
        );
        assert!(close(header_usd(&h, "x-sluice-baseline-usd"), baseline));
        usages.push(v["usageMetadata"].clone());
    }
    assert!(
        usages[0].get("cachedContentTokenCount").is_none(),
        "{usages:?}"
    );
    assert!(
        usages[1]["cachedContentTokenCount"].as_u64().unwrap() >= 2048,
        "the repeated prefix is served from the implicit cache: {usages:?}"
    );
    let log = gw.sim_requests().await;
    assert_eq!(
        log[0]["path"],
        "/v1/models/gemini-2.5-flash:generateContent"
    );
    assert_eq!(log[0]["headers"]["x-goog-api-key"], "sk-sluice-simulated");
    assert_eq!(log[0]["body"], body.as_str());

    // A stream, metered from its last chunk.
    let before = metric(
        &gw.metrics().await,
        "sluice_cost_usd_total",
        &[("model", "gemini-2.5-flash")],
    );
    let (s, h, sse) = gw.post(STREAM, &[], &body).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        h["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = String::from_utf8(sse.to_vec()).unwrap();
    let chunks: Vec<Value> = text
        .split("\r\n\r\n")
        .filter(|e| !e.is_empty())
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
        .collect();
    assert!(chunks.len() > 1, "{text}");
    let last = chunks.last().unwrap();
    assert!(last["candidates"][0]["finishReason"].is_string(), "{last}");
    let (cost, _) = standard_price(&last["usageMetadata"]);
    let m = gw
        .metrics_until("the stream accounted", |m| {
            metric(m, "sluice_requests_total", &[("provider", "gemini")]) == 3.0
        })
        .await;
    let after = metric(
        &m,
        "sluice_cost_usd_total",
        &[("model", "gemini-2.5-flash")],
    );
    assert!(close(after - before, cost), "{} vs {cost}", after - before);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reported_tier_is_billed_and_a_caller_flex_is_shown() {
    let gw = Gateway::start(vec![], |_| {}).await;
    let body = json!({"contents": [{"parts": [{"text": "Summarize the ticket."}]}], "service_tier": "flex"})
        .to_string();
    let (s, h, b) = gw.post(GENERATE, &[], &body).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    assert_eq!(h["x-gemini-service-tier"], "flex");
    assert_eq!(h["x-sluice-tier"], "flex");
    let v: Value = serde_json::from_slice(&b).unwrap();
    let u = &v["usageMetadata"];
    let n = |k: &str| u[k].as_u64().unwrap_or(0) as f64;
    let cost = n("promptTokenCount") * FLEX_IN
        + (n("candidatesTokenCount") + n("thoughtsTokenCount")) * FLEX_OUT;
    assert!(
        close(header_usd(&h, "x-sluice-cost-usd"), cost),
        "{h:?} {v}"
    );
    // Sluice chose nothing: the baseline is what it cost.
    assert!(close(header_usd(&h, "x-sluice-baseline-usd"), cost));
    gw.stop().await;
}

#[tokio::test]
async fn a_served_tier_in_the_header_alone_is_billed() {
    // Flex reported only in the header; the body says nothing of its tier.
    const PLAIN: &str = r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"ok"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":100,"candidatesTokenCount":10}}"#;
    let up = common::canned_with(
        200,
        "application/json",
        vec![PLAIN],
        &[("x-gemini-service-tier", "flex")],
    )
    .await;
    let gw = Gateway::start_at(&up.base_url(), None, vec![], |_| {}).await;
    let (s, h, _) = gw.post(GENERATE, &[], BODY).await;
    assert_eq!(s, StatusCode::OK);
    let cost = 100.0 * FLEX_IN + 10.0 * FLEX_OUT;
    assert!(close(header_usd(&h, "x-sluice-cost-usd"), cost), "{h:?}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_google_shaped() {
    let gw = Gateway::start(vec![], |c| c.max_body_bytes = 4096).await;
    let dup =
        r#"{"contents":[{"parts":[{"text":"a"}]}],"serviceTier":"flex","service_tier":"standard"}"#;
    let repeated = r#"{"contents":[],"contents":[{"parts":[{"text":"a"}]}]}"#;
    let big = json!({"contents": [{"parts": [{"text": "x".repeat(5000)}]}]}).to_string();
    for (path, body, headers, code, status) in [
        (GENERATE, "{not json", vec![], 400, "INVALID_ARGUMENT"),
        (GENERATE, "[1,2]", vec![], 400, "INVALID_ARGUMENT"),
        (GENERATE, dup, vec![], 400, "INVALID_ARGUMENT"),
        (GENERATE, repeated, vec![], 400, "INVALID_ARGUMENT"),
        (GENERATE, big.as_str(), vec![], 413, "INVALID_ARGUMENT"),
        (
            GENERATE,
            BODY,
            vec![("x-sla", "whenever")],
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "/v1beta/models/gemini-2.5-flash:countTokens",
            BODY,
            vec![],
            404,
            "NOT_FOUND",
        ),
        (
            "/v1beta/models/gemini-2.5-flash",
            BODY,
            vec![],
            404,
            "NOT_FOUND",
        ),
        (
            "/v1beta/gemini-2.5-flash:generateContent",
            BODY,
            vec![],
            404,
            "NOT_FOUND",
        ),
        (
            "/v1beta/models/:generateContent",
            BODY,
            vec![],
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "/v1beta/models/models%2Fgemini-2.5-flash:generateContent",
            BODY,
            vec![],
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
            BODY,
            vec![],
            400,
            "INVALID_ARGUMENT",
        ),
    ] {
        let (s, _, b) = gw.post(path, &headers, body).await;
        assert_eq!(
            s.as_u16(),
            code,
            "{path} {body:.40}: {}",
            String::from_utf8_lossy(&b)
        );
        google_error(&b, code, status);
    }
    // GET on a POST route.
    let (s, _, b) = gw.get(GENERATE, &[]).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    google_error(&b, 405, "UNIMPLEMENTED");
    assert!(
        gw.sim_requests().await.is_empty(),
        "nothing reached the provider"
    );

    // Explicit nulls mean absent (ProtoJSON): passed through, answered.
    let nulls = r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}],"serviceTier":null,"generationConfig":null,"tools":null}"#;
    let (s, h, b) = gw.post(GENERATE, &[], nulls).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    assert_eq!(h["x-sluice-tier"], "interactive");
    let log = gw.sim_requests().await;
    assert_eq!(log[0]["body"], nulls, "sent as the caller wrote it");
    // OpenAI's `GET /v1/models/{id}` is untouched by the Gemini routes.
    let (s, _, b) = gw.get("/v1/models/gpt-4o", &[]).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_google_errors_pass_through_unchanged() {
    let gw = Gateway::start(vec![], |_| {}).await;
    let sim = gw.sim.as_ref().unwrap().addr;
    for (fault, code) in [("429", 429u16), ("503", 503)] {
        let (s, _, b) = gw.post(GENERATE, &[("x-sim-fault", fault)], BODY).await;
        assert_eq!(s.as_u16(), code);
        // Byte for byte what the provider says to the same request.
        let direct = http::Request::post(format!(
            "http://{sim}/v1/models/gemini-2.5-flash:generateContent"
        ))
        .header("x-goog-api-key", "k")
        .header("x-sim-fault", fault)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(BODY)))
        .unwrap();
        let (ds, _, db) = gw.send(direct).await;
        assert_eq!(ds.as_u16(), code);
        assert_eq!(b, db, "{}", String::from_utf8_lossy(&b));
        google_error(
            &b,
            code,
            if code == 429 {
                "RESOURCE_EXHAUSTED"
            } else {
                "UNAVAILABLE"
            },
        );
        // Streams too: the error comes before any event.
        let (s, _, b) = gw.post(STREAM, &[("x-sim-fault", fault)], BODY).await;
        assert_eq!(s.as_u16(), code);
        google_error(
            &b,
            code,
            if code == 429 {
                "RESOURCE_EXHAUSTED"
            } else {
                "UNAVAILABLE"
            },
        );
    }
    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            "sluice_requests_total",
            &[("provider", "gemini"), ("status", "429")]
        ),
        2.0
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tolerant_slas_are_deferred_to_batch_mode_json_and_stream() {
    let route =
        "[[route]]\nname = \"native\"\npaths = [\"/v1beta/models/{model}:generateContent\"]\n";
    let sim = sluice::simulate::SimConfig {
        gemini: sluice::simulate::GeminiConfig {
            batch_turnaround: Duration::from_millis(100),
            ..Default::default()
        },
        ..Default::default()
    };
    let gw = Gateway::start_sim(sim, vec![keyed_policy("team", "sk-team", route)], |c| {
        c.batch.max_wait = Duration::from_millis(200);
    })
    .await;
    let key = ("x-goog-api-key", "sk-team");
    let (s, h, b) = gw.post(GENERATE, &[key, ("x-sla", "24h")], BODY).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    assert_eq!(h["x-sluice-tier"], "batch");
    assert!(h.get("x-sluice-job-id").is_some());
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert!(
        v["candidates"][0]["content"]["parts"][0]["text"].is_string(),
        "{v}"
    );
    // A held stream: keep-alive blank lines, then the answer as one event.
    let (s, h, b) = gw.post(STREAM, &[key, ("x-sla", "24h")], BODY).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["x-sluice-tier"], "batch");
    let text = String::from_utf8_lossy(&b);
    let event = text
        .trim_start()
        .strip_prefix("data: ")
        .expect("one data event");
    let v: serde_json::Value = serde_json::from_str(event.trim()).unwrap();
    assert!(
        v["usageMetadata"]["promptTokenCount"].as_u64().unwrap() > 0,
        "{v}"
    );
    // The `/v1/` spelling is the same route; without an SLA it is interactive.
    let (s, h, _) = gw
        .post("/v1/models/gemini-2.5-flash:generateContent", &[key], BODY)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["x-sluice-tier"], "interactive");
    let m = gw
        .metrics_until("three answers", |m| {
            metric(m, "sluice_requests_total", &[("route", "native")]) == 3.0
        })
        .await;
    assert_eq!(
        metric(&m, "sluice_requests_total", &[("tier", "batch")]),
        2.0
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_response_cache_keys_on_the_model_in_the_url() {
    let route = "[[route]]\nname = \"faq\"\nresponse_cache_ttl = \"10m\"\n";
    let gw = Gateway::start(vec![keyed_policy("team", "sk-team", route)], |_| {}).await;
    let key = ("x-goog-api-key", "sk-team");
    let (_, h1, b1) = gw.post(GENERATE, &[key], BODY).await;
    let (_, h2, b2) = gw.post(GENERATE, &[key], BODY).await;
    assert_eq!(h1["x-sluice-tier"], "interactive");
    assert_eq!(h2["x-sluice-tier"], "response_cache");
    assert_eq!(b1, b2);
    // The same body for another model is another request.
    let pro = "/v1beta/models/gemini-2.5-pro:generateContent";
    let (s, h3, _) = gw.post(pro, &[key], BODY).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h3["x-sluice-tier"], "interactive");
    // Streams are never answered from the cache.
    let (_, h4, _) = gw.post(STREAM, &[key], BODY).await;
    assert_eq!(h4["x-sluice-tier"], "interactive");
    let log = gw.sim_requests().await;
    assert_eq!(log.len(), 3, "{log:?}");
    assert_eq!(log[1]["path"], "/v1/models/gemini-2.5-pro:generateContent");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sla_of_minutes_goes_to_gemini_flex_and_falls_back_at_capacity() {
    let gw = Gateway::start(vec![], |_| {}).await;
    let usd = |h: &http::HeaderMap, n: &str| -> f64 { h[n].to_str().unwrap().parse().unwrap() };
    // Flex: Sluice asks for it, Google reports it, billed at half the standard price.
    let (s, h, b) = gw.post(GENERATE, &[("x-sla", "15m")], BODY).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    assert_eq!(h["x-sluice-tier"], "flex");
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["usageMetadata"]["serviceTier"], "flex", "{v}");
    let (cost, baseline) = (
        usd(&h, "x-sluice-cost-usd"),
        usd(&h, "x-sluice-baseline-usd"),
    );
    assert!(
        baseline > 0.0 && (cost * 2.0 - baseline).abs() < 1e-9,
        "{cost} {baseline}"
    );
    let sent: Value =
        serde_json::from_str(gw.sim_requests().await[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent["service_tier"], "flex");

    // At capacity Google's flex answers 503 and never falls back itself: Sluice sends the
    // same request at the standard tier, in time, and bills it as standard.
    let (s, h, b) = gw
        .post(
            GENERATE,
            &[("x-sla", "15m"), ("x-sim-fault", "flex-503")],
            BODY,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    assert_eq!(h["x-sluice-tier"], "interactive");
    assert_eq!(
        usd(&h, "x-sluice-cost-usd"),
        usd(&h, "x-sluice-baseline-usd")
    );
    let log = gw.sim_requests().await;
    let last: Vec<Value> = log[log.len() - 2..]
        .iter()
        .map(|r| serde_json::from_str(r["body"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(last[0]["service_tier"], "flex");
    assert!(last[1].get("service_tier").is_none(), "{}", last[1]);
    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            "sluice_fallbacks_total",
            &[("tier", "flex"), ("reason", "flex_unavailable")]
        ),
        1.0
    );
    // OpenAI clients of Gemini models stay off flex: the compatible layer may not report it.
    let chat =
        json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]});
    let (s, h, _) = gw
        .post(
            "/v1/chat/completions",
            &[("x-sla", "15m")],
            &chat.to_string(),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["x-sluice-tier"], "interactive");
    gw.stop().await;
}

/// Priority, and a downgraded Priority request, hand-priced: gemini-2.5-flash priority is
/// $0.54/M in, $0.054/M cached, $4.50/M out; a Priority request Google served at Standard
/// is billed at Standard (the tier reported, never the one asked for).
#[tokio::test]
async fn priority_and_a_downgraded_priority_are_billed_at_the_reported_tier() {
    const PRIORITY: &str = r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"ok"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":1000,"cachedContentTokenCount":400,"candidatesTokenCount":20,"thoughtsTokenCount":30,"serviceTier":"priority"}}"#;
    const DOWNGRADED: &str = r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"ok"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":1000,"cachedContentTokenCount":400,"candidatesTokenCount":20,"thoughtsTokenCount":30,"serviceTier":"standard"}}"#;
    let asks = r#"{"contents":[{"parts":[{"text":"now"}]}],"serviceTier":"priority"}"#;
    let priority = (600.0 * 0.54 + 400.0 * 0.054 + 50.0 * 4.50) * 1e-6;
    for (answer, cost, baseline) in [
        // 600 × 0.54 + 400 × 0.054 + 50 × 4.50 (thoughts are output), per million; the
        // caller chose its tier, so nothing is claimed as saved.
        (PRIORITY, priority, priority),
        // Served at Standard: a standard answer, its cache hits saved against 1000 × 0.30.
        (
            DOWNGRADED,
            (600.0 * 0.30 + 400.0 * 0.03 + 50.0 * 2.50) * 1e-6,
            (1000.0 * 0.30 + 50.0 * 2.50) * 1e-6,
        ),
    ] {
        let up = canned(200, "application/json", vec![answer]).await;
        let gw = Gateway::start_at(&up.base_url(), None, vec![], |_| {}).await;
        let (s, h, _) = gw.post(GENERATE, &[], asks).await;
        assert_eq!(s, StatusCode::OK);
        assert!(
            close(header_usd(&h, "x-sluice-cost-usd"), cost),
            "{h:?} vs {cost}"
        );
        assert!(
            close(header_usd(&h, "x-sluice-baseline-usd"), baseline),
            "{h:?}"
        );
        let m = gw.metrics().await;
        let total = metric(
            &m,
            "sluice_cost_usd_total",
            &[("model", "gemini-2.5-flash")],
        );
        assert!(close(total, cost), "{total} vs {cost}");
        gw.stop().await;
    }
}
