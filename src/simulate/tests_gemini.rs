//! In-process tests of the native Gemini API: auth, errors, `generateContent`,
//! `streamGenerateContent`, implicit caching, service tiers and faults.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use super::tests::{Answer, Server};
use super::{GeminiConfig, SimConfig, Simulator};

pub(super) const KEY: (&str, &str) = ("x-goog-api-key", "AIza-sim-test");
pub(super) const JSON: (&str, &str) = ("content-type", "application/json");
const FLASH: &str = "/v1beta/models/gemini-2.5-flash:generateContent";

pub(super) fn gemini(config: GeminiConfig) -> SimConfig {
    SimConfig {
        gemini: config,
        ..SimConfig::default()
    }
}

/// Keyed JSON POST.
pub(super) async fn gpost(srv: &Server, path: &str, body: &Value) -> Answer {
    srv.send(Method::POST, path, &[KEY, JSON], body.to_string())
        .await
}

/// Keyed GET.
pub(super) async fn gget(srv: &Server, path: &str) -> Answer {
    srv.send(Method::GET, path, &[KEY], Bytes::new()).await
}

/// One request straight through [`Simulator::handle`] (no socket), for paused-time tests.
pub(super) async fn call(
    sim: &Simulator,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Answer {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = sim.handle(req.body(Full::new(body.into())).unwrap()).await;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body,
    }
}

pub(super) fn ask(text: &str) -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": text}]}]})
}

/// Asserts a Google error envelope (an object, not an array) and returns `error`.
pub(super) fn google_error(a: &Answer, status: StatusCode, name: &str) -> Value {
    assert_eq!(a.status, status, "{}", a.text());
    let v = a.json();
    assert!(v.is_object(), "not array-wrapped: {v}");
    let e = v["error"].clone();
    assert_eq!(e["code"], status.as_u16(), "{e}");
    assert_eq!(e["status"], name, "{e}");
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
    e
}

#[tokio::test]
async fn generate_content_answers_camel_case_with_usage_and_tier() {
    let srv = Server::start(SimConfig::default()).await;
    let a = gpost(&srv, FLASH, &ask("hello world")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.headers["content-type"], "application/json; charset=UTF-8");
    assert_eq!(a.headers["x-gemini-service-tier"], "standard");
    let v = a.json();
    let c = &v["candidates"][0];
    assert_eq!(c["content"]["role"], "model");
    assert_eq!(
        c["content"]["parts"][0]["text"],
        "Simulated answer to: hello world"
    );
    assert_eq!(c["finishReason"], "STOP");
    assert_eq!(c["index"], 0);
    let u = &v["usageMetadata"];
    // "hello world" is 11 bytes: 3 tokens; the answer has 5 words.
    assert_eq!(u["promptTokenCount"], 3);
    assert_eq!(u["candidatesTokenCount"], 5);
    assert_eq!(u["totalTokenCount"], 8);
    assert_eq!(u["serviceTier"], "standard");
    assert_eq!(u["promptTokensDetails"][0]["modality"], "TEXT");
    for absent in [
        "cachedContentTokenCount",
        "thoughtsTokenCount",
        "cacheTokensDetails",
    ] {
        assert!(u.get(absent).is_none(), "{absent} is zero and omitted");
    }
    assert_eq!(v["modelVersion"], "gemini-2.5-flash");
    assert!(v["responseId"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(v.get("promptFeedback").is_none());

    // The `/v1/` prefix (Sluice's base URL) and `?key=` work alike.
    let b = srv
        .send(
            Method::POST,
            "/v1/models/gemini-2.5-flash:generateContent?key=AIza-q",
            &[JSON],
            ask("hello world").to_string(),
        )
        .await;
    assert_eq!(b.status, StatusCode::OK, "{}", b.text());
    assert_eq!(b.json()["candidates"], v["candidates"]);
    srv.stop().await;
}

#[tokio::test]
async fn snake_case_input_explicit_nulls_and_candidate_count() {
    let srv = Server::start(SimConfig::default()).await;
    let body = json!({
        "system_instruction": {"parts": [{"text": "Be brief."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "first question"}]},
            {"role": "model", "parts": [{"text": "an answer"}]},
            {"parts": [{"text": "second question"}]},
        ],
        "generation_config": {"max_output_tokens": 2, "candidate_count": 2,
                              "thinking_config": {"thinking_budget": 7}},
        "tools": null, "toolConfig": null, "serviceTier": null, "cachedContent": null,
        "safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
    });
    let v = gpost(&srv, FLASH, &body).await.json();
    assert_eq!(v["candidates"].as_array().unwrap().len(), 2);
    for (i, c) in v["candidates"].as_array().unwrap().iter().enumerate() {
        assert_eq!(c["index"], i);
        assert_eq!(c["content"]["parts"][0]["text"], "Simulated answer");
        assert_eq!(c["finishReason"], "MAX_TOKENS");
    }
    let u = &v["usageMetadata"];
    assert_eq!(u["candidatesTokenCount"], 4);
    assert_eq!(u["thoughtsTokenCount"], 7);
    let prompt = u["promptTokenCount"].as_u64().unwrap();
    assert_eq!(u["totalTokenCount"], prompt + 4 + 7);

    // `null` contents is absent contents.
    let a = gpost(&srv, FLASH, &json!({"contents": null})).await;
    let e = google_error(&a, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("contents is not specified")
    );
    // Both spellings of one field.
    let mut both = ask("x");
    both["generationConfig"] = json!({"temperature": 1});
    both["generation_config"] = json!({"temperature": 1});
    let a = gpost(&srv, FLASH, &both).await;
    google_error(&a, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    srv.stop().await;
}

#[tokio::test]
async fn missing_or_blank_keys_are_api_key_invalid() {
    let srv = Server::start(SimConfig::default()).await;
    let body = ask("x").to_string();
    let cases: [(&str, Vec<(&str, &str)>); 4] = [
        (FLASH, vec![JSON]),
        (FLASH, vec![JSON, ("x-goog-api-key", "  ")]),
        (
            "/v1beta/models/gemini-2.5-flash:generateContent?key=",
            vec![JSON],
        ),
        // A bearer token is not a Gemini API key; the answer is Google's, not OpenAI's.
        (
            "/v1/models/gemini-2.5-flash:generateContent",
            vec![JSON, ("authorization", "Bearer sk-test")],
        ),
    ];
    for (path, headers) in cases {
        let a = srv.send(Method::POST, path, &headers, body.clone()).await;
        let e = google_error(&a, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
        assert_eq!(e["details"][0]["reason"], "API_KEY_INVALID", "{path}");
        assert_eq!(
            e["details"][0]["@type"],
            "type.googleapis.com/google.rpc.ErrorInfo"
        );
    }
    for path in ["/v1beta/files", "/v1beta/batches", "/v1beta/files/abc"] {
        let a = srv.send(Method::GET, path, &[], Bytes::new()).await;
        let e = google_error(&a, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
        assert_eq!(e["details"][0]["reason"], "API_KEY_INVALID", "{path}");
    }
    srv.stop().await;
}

#[tokio::test]
async fn unknown_models_methods_and_paths_are_not_found() {
    let srv = Server::start(SimConfig::default()).await;
    for path in [
        "/v1beta/models/gpt-4o:generateContent",
        "/v1beta/models/gemini-embedding-001:generateContent",
        "/v1beta/models/gemini-2.5-flash:countTokens",
        "/v1beta/models/gemini-2.5-flash",
        "/v1beta/tunedModels/x:generateContent",
        "/upload/v1beta/elsewhere",
    ] {
        let a = gpost(&srv, path, &ask("x")).await;
        google_error(&a, StatusCode::NOT_FOUND, "NOT_FOUND");
    }
    let a = gpost(
        &srv,
        "/v1beta/models/gpt-4o:streamGenerateContent?alt=sse",
        &ask("x"),
    )
    .await;
    let e = google_error(&a, StatusCode::NOT_FOUND, "NOT_FOUND");
    assert!(e["message"].as_str().unwrap().contains("models/gpt-4o"));
    // The OpenAI-compatible layer and OpenAI routes are untouched.
    let a = srv
        .send(
            Method::GET,
            "/v1/models/gpt-4o",
            &[("authorization", "Bearer sk-test")],
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    srv.stop().await;
}

#[tokio::test]
async fn malformed_json_unknown_names_and_bad_values_are_invalid_argument() {
    let srv = Server::start(SimConfig::default()).await;
    let raw = srv
        .send(Method::POST, FLASH, &[KEY, JSON], "{\"contents\": [")
        .await;
    let e = google_error(&raw, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid JSON payload received.")
    );
    let dup = srv
        .send(
            Method::POST,
            FLASH,
            &[KEY, JSON],
            r#"{"contents": [{"parts": [{"text": "a", "text": "b"}]}]}"#,
        )
        .await;
    google_error(&dup, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    let array = srv.send(Method::POST, FLASH, &[KEY, JSON], "[]").await;
    google_error(&array, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");

    let mut top = ask("x");
    top["max_tokens"] = json!(5);
    let e = google_error(
        &gpost(&srv, FLASH, &top).await,
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
    );
    assert_eq!(
        e["message"],
        "Invalid JSON payload received. Unknown name \"max_tokens\": Cannot find field."
    );
    assert_eq!(
        e["details"][0]["@type"],
        "type.googleapis.com/google.rpc.BadRequest"
    );
    let mut nested = ask("x");
    nested["generationConfig"] = json!({"maxTokens": 5});
    let e = google_error(
        &gpost(&srv, FLASH, &nested).await,
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
    );
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("at 'generation_config'")
    );

    let bad: [Value; 7] = [
        json!({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}),
        json!({"contents": [{"role": "user", "parts": []}]}),
        json!({"contents": [{"parts": [{}]}]}),
        json!({"contents": [{"parts": [{"text": "x", "inlineData": {"mimeType": "a/b", "data": ""}}]}]}),
        json!({"contents": "hello"}),
        json!({"contents": [{"parts": [{"text": "x"}]}], "service_tier": "SERVICE_TIER_FLEX"}),
        json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"maxOutputTokens": "many"}}),
    ];
    for body in bad {
        let a = gpost(&srv, FLASH, &body).await;
        google_error(&a, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    }
    // An explicit cache the simulator never created.
    let mut cached = ask("x");
    cached["cachedContent"] = json!("cachedContents/abc");
    let a = gpost(&srv, FLASH, &cached).await;
    google_error(&a, StatusCode::FORBIDDEN, "PERMISSION_DENIED");
    srv.stop().await;
}

#[tokio::test]
async fn implicit_cache_reports_a_repeated_long_prefix() {
    let srv = Server::start(SimConfig::default()).await;
    // 10,000 bytes: 2,500 tokens, above the 2,048 minimum of 2.5 models.
    let long = "abcd ".repeat(2_000);
    let body = |q: &str| {
        json!({"systemInstruction": {"parts": [{"text": long}]},
               "contents": [{"role": "user", "parts": [{"text": q}]}]})
    };
    let first = gpost(&srv, FLASH, &body("first")).await.json();
    let u = &first["usageMetadata"];
    assert!(u.get("cachedContentTokenCount").is_none(), "{u}");
    let second = gpost(&srv, FLASH, &body("second")).await.json();
    let u = &second["usageMetadata"];
    // 2,500 rounded down to a multiple of 128.
    assert_eq!(u["cachedContentTokenCount"], 2_432);
    assert_eq!(u["cacheTokensDetails"][0]["tokenCount"], 2_432);
    let prompt = u["promptTokenCount"].as_u64().unwrap();
    assert_eq!(prompt, 2_500 + 2);
    assert_eq!(
        u["totalTokenCount"],
        prompt + u["candidatesTokenCount"].as_u64().unwrap()
    );
    // Gemini 3 models need 4,096 tokens; caches are per model.
    let g3 = "/v1beta/models/gemini-3-flash-preview:generateContent";
    gpost(&srv, g3, &body("first")).await;
    let v = gpost(&srv, g3, &body("again")).await.json();
    assert!(v["usageMetadata"].get("cachedContentTokenCount").is_none());
    srv.stop().await;
}

fn sse_events(a: &Answer) -> Vec<Value> {
    let text = a.text();
    assert!(text.ends_with("\r\n\r\n"), "{text:?}");
    assert!(!text.contains("[DONE]"));
    text.split_terminator("\r\n\r\n")
        .map(|e| {
            assert!(!e.contains("event:"));
            serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap()
        })
        .collect()
}

#[tokio::test]
async fn stream_has_running_usage_and_a_final_finish_reason() {
    let srv = Server::start(SimConfig::default()).await;
    let path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse";
    let a = gpost(&srv, path, &ask("stream this please")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.headers["content-type"], "text/event-stream");
    assert_eq!(a.headers["x-gemini-service-tier"], "standard");
    let events = sse_events(&a);
    assert_eq!(events.len(), 6);
    let mut text = String::new();
    for (i, e) in events.iter().enumerate() {
        let c = &e["candidates"][0];
        text.push_str(c["content"]["parts"][0]["text"].as_str().unwrap());
        assert_eq!(c["content"]["role"], "model");
        let last = i + 1 == events.len();
        assert_eq!(c.get("finishReason").is_some(), last, "chunk {i}");
        let u = &e["usageMetadata"];
        assert_eq!(u["promptTokenCount"], 5);
        assert_eq!(u["candidatesTokenCount"], i + 1);
        assert_eq!(u["totalTokenCount"], 5 + i + 1);
        assert_eq!(e["modelVersion"], "gemini-2.5-flash");
        assert_eq!(e["responseId"], events[0]["responseId"]);
    }
    assert_eq!(events[5]["candidates"][0]["finishReason"], "STOP");
    assert_eq!(text, "Simulated answer to: stream this please");

    // Without `alt=sse`: one JSON array of the same chunks.
    let plain = "/v1/models/gemini-2.5-flash:streamGenerateContent";
    let v = gpost(&srv, plain, &ask("stream this please")).await.json();
    assert_eq!(v.as_array().unwrap().len(), 6);
    assert_eq!(v[5]["usageMetadata"]["candidatesTokenCount"], 6);
    // An error before streaming is plain JSON.
    let a = gpost(&srv, path, &json!({"contents": []})).await;
    google_error(&a, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    srv.stop().await;
}

fn tiered(tier: &str, snake: bool) -> Value {
    let mut b = ask("x");
    b[if snake { "service_tier" } else { "serviceTier" }] = json!(tier);
    b
}

#[tokio::test]
async fn service_tiers_are_echoed_and_flex_is_never_upgraded() {
    let srv = Server::start(SimConfig::default()).await;
    for (tier, snake) in [
        ("flex", true),
        ("flex", false),
        ("priority", true),
        ("standard", false),
    ] {
        let a = gpost(&srv, FLASH, &tiered(tier, snake)).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        assert_eq!(a.headers["x-gemini-service-tier"], tier);
        assert_eq!(a.json()["usageMetadata"]["serviceTier"], tier);
    }
    let a = gpost(&srv, FLASH, &tiered("unspecified", true)).await;
    assert_eq!(a.headers["x-gemini-service-tier"], "standard");

    // `flex-503` refuses flex only; the standard retry goes through.
    let flex503 = [KEY, JSON, ("x-sim-fault", "flex-503")];
    let a = srv
        .send(
            Method::POST,
            FLASH,
            &flex503,
            tiered("flex", true).to_string(),
        )
        .await;
    let e = google_error(&a, StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE");
    assert_eq!(e["message"], GeminiConfig::default().flex_503_message);
    let a = srv
        .send(Method::POST, FLASH, &flex503, ask("x").to_string())
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers["x-gemini-service-tier"], "standard");

    // Priority is downgraded, never refused.
    let a = srv
        .send(
            Method::POST,
            FLASH,
            &[KEY, JSON, ("x-sim-fault", "downgrade")],
            tiered("priority", false).to_string(),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers["x-gemini-service-tier"], "standard");
    assert_eq!(a.json()["usageMetadata"]["serviceTier"], "standard");

    // Rate limits are 429 for every tier, with RetryInfo and no retry-after header.
    let a = srv
        .send(
            Method::POST,
            FLASH,
            &[KEY, JSON, ("x-sim-fault", "429")],
            tiered("flex", true).to_string(),
        )
        .await;
    let e = google_error(&a, StatusCode::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED");
    assert_eq!(e["details"][1]["retryDelay"], "1s");
    assert!(a.headers.get("retry-after").is_none());
    for (fault, status, name) in [
        ("500", StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        ("503", StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
        ("504", StatusCode::GATEWAY_TIMEOUT, "DEADLINE_EXCEEDED"),
    ] {
        let a = srv
            .send(
                Method::POST,
                FLASH,
                &[KEY, JSON, ("x-sim-fault", fault)],
                ask("x").to_string(),
            )
            .await;
        google_error(&a, status, name);
    }
    srv.stop().await;
}

#[tokio::test]
async fn configured_flex_capacity_rates_and_priority_downgrades() {
    let config = gemini(GeminiConfig {
        flex_capacity: Some(0),
        priority_downgrade_rate: 1.0,
        ..GeminiConfig::default()
    });
    let srv = Server::start(config).await;
    let a = gpost(&srv, FLASH, &tiered("flex", true)).await;
    google_error(&a, StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE");
    let a = gpost(&srv, FLASH, &tiered("priority", true)).await;
    assert_eq!(a.headers["x-gemini-service-tier"], "standard");
    srv.stop().await;

    let srv = Server::start(gemini(GeminiConfig {
        flex_503_rate: 1.0,
        flex_503_message: "full".to_owned(),
        ..GeminiConfig::default()
    }))
    .await;
    let e = google_error(
        &gpost(&srv, FLASH, &tiered("flex", false)).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "UNAVAILABLE",
    );
    assert_eq!(e["message"], "full");
    assert_eq!(gpost(&srv, FLASH, &ask("x")).await.status, StatusCode::OK);
    srv.stop().await;

    // The random rates of SimConfig apply to generateContent.
    let srv = Server::start(SimConfig {
        error_429_rate: 1.0,
        ..SimConfig::default()
    })
    .await;
    let a = gpost(&srv, FLASH, &ask("x")).await;
    let e = google_error(&a, StatusCode::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED");
    assert_eq!(
        e["details"][0]["violations"][0]["quotaDimensions"]["model"],
        "gemini-2.5-flash"
    );
    srv.stop().await;
}

#[tokio::test(start_paused = true)]
async fn flex_delay_holds_a_capacity_slot() {
    let sim = Arc::new(Simulator::new(gemini(GeminiConfig {
        flex_delay: Duration::from_secs(600),
        flex_capacity: Some(1),
        ..GeminiConfig::default()
    })));
    let flex = tiered("flex", true).to_string();
    let started = tokio::time::Instant::now();
    let first = {
        let sim = Arc::clone(&sim);
        let flex = flex.clone();
        tokio::spawn(async move { call(&sim, Method::POST, FLASH, &[KEY, JSON], flex).await })
    };
    tokio::task::yield_now().await;
    assert!(!first.is_finished());
    let second = call(&sim, Method::POST, FLASH, &[KEY, JSON], flex.clone()).await;
    google_error(&second, StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE");
    let standard = call(
        &sim,
        Method::POST,
        FLASH,
        &[KEY, JSON],
        ask("x").to_string(),
    )
    .await;
    assert_eq!(standard.status, StatusCode::OK);
    let first = first.await.unwrap();
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.headers["x-gemini-service-tier"], "flex");
    assert!(started.elapsed() >= Duration::from_secs(600));
    // The slot is free again.
    let third = call(&sim, Method::POST, FLASH, &[KEY, JSON], flex).await;
    assert_eq!(third.status, StatusCode::OK);
}

#[tokio::test]
async fn native_requests_are_recorded_in_the_request_log() {
    let srv = Server::start(SimConfig::default()).await;
    gpost(&srv, FLASH, &ask("one")).await;
    gpost(
        &srv,
        "/v1/models/gemini-2.5-flash:generateContent",
        &ask("two"),
    )
    .await;
    srv.send(Method::POST, FLASH, &[JSON], ask("no key").to_string())
        .await;
    gget(&srv, "/v1beta/batches").await;
    let log = srv
        .send(Method::GET, "/sim/requests", &[], Bytes::new())
        .await
        .json();
    let paths: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    let generate = paths
        .iter()
        .filter(|p| p.ends_with(":generateContent"))
        .count();
    assert_eq!(generate, 3);
    assert!(paths.contains(&"/v1beta/batches"));
    assert_eq!(log[0]["headers"]["x-goog-api-key"], KEY.1);
    srv.stop().await;
}

#[tokio::test(start_paused = true)]
async fn flex_longer_than_the_server_timeout_is_deadline_exceeded() {
    let sim = Simulator::new(gemini(GeminiConfig {
        flex_delay: Duration::from_secs(900),
        ..GeminiConfig::default()
    }));
    let flex = tiered("flex", false).to_string();
    let started = tokio::time::Instant::now();
    let a = call(&sim, Method::POST, FLASH, &[KEY, JSON], flex.clone()).await;
    google_error(&a, StatusCode::GATEWAY_TIMEOUT, "DEADLINE_EXCEEDED");
    assert_eq!(started.elapsed(), Duration::from_secs(600));
    let patient = [KEY, JSON, ("x-server-timeout", "1000")];
    let b = call(&sim, Method::POST, FLASH, &patient, flex).await;
    assert_eq!(b.status, StatusCode::OK, "{}", b.text());
    assert_eq!(started.elapsed(), Duration::from_secs(1_500));
}

#[tokio::test(start_paused = true)]
async fn latency_header_and_slow_fault_pace_native_answers() {
    let sim = Simulator::new(SimConfig::default());
    let started = tokio::time::Instant::now();
    let late = [KEY, JSON, ("x-sim-latency-ms", "5000")];
    let a = call(&sim, Method::POST, FLASH, &late, ask("x").to_string()).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    // Latency comes before the key check, as on the other routes.
    let a = call(
        &sim,
        Method::POST,
        FLASH,
        &[JSON, ("x-sim-latency-ms", "1000")],
        "{}",
    )
    .await;
    google_error(&a, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    assert_eq!(started.elapsed(), Duration::from_secs(6));
    let slow = [KEY, JSON, ("x-sim-fault", "slow")];
    let path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse";
    let a = call(&sim, Method::POST, path, &slow, ask("one two").to_string()).await;
    // Five events, 200 ms apart.
    assert_eq!(sse_events(&a).len(), 5);
    assert_eq!(started.elapsed(), Duration::from_millis(6_800));
}
