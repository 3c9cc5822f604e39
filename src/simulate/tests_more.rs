//! In-process tests: errors, faults, embeddings, legacy completions, responses, models,
//! request log, pacing and h2c.

use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use super::SimConfig;
use super::tests::{Answer, Server};

const AUTH: (&str, &str) = ("authorization", "Bearer sk-test");

fn chat() -> Value {
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
}

fn assert_error(a: &Answer, status: StatusCode, kind: &str, code: Value, param: Value) {
    assert_eq!(a.status, status, "body: {}", a.text());
    let v = a.json();
    let err = v["error"].as_object().unwrap();
    assert_eq!(err.len(), 4, "exactly message, type, param, code");
    assert!(err["message"].is_string());
    assert_eq!(err["type"], kind);
    assert_eq!(err["code"], code);
    assert_eq!(err["param"], param);
}

#[tokio::test]
async fn invalid_requests_get_openai_errors() {
    let srv = Server::start(SimConfig::default()).await;
    let bad_json = srv
        .send(Method::POST, "/v1/chat/completions", &[AUTH], "{not json")
        .await;
    assert_error(
        &bad_json,
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        Value::Null,
        Value::Null,
    );
    let no_model = srv
        .post(
            "/v1/chat/completions",
            &json!({"messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_error(
        &no_model,
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        json!("missing_required_parameter"),
        json!("model"),
    );
    let no_msgs = srv
        .post("/v1/chat/completions", &json!({"model": "gpt-4o"}))
        .await;
    assert_error(
        &no_msgs,
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        json!("missing_required_parameter"),
        json!("messages"),
    );
    let empty = srv
        .post(
            "/v1/chat/completions",
            &json!({"model": "gpt-4o", "messages": []}),
        )
        .await;
    assert_error(
        &empty,
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        json!("empty_array"),
        json!("messages"),
    );
    let unknown = srv.post("/v1/nope", &chat()).await;
    assert_error(
        &unknown,
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        Value::Null,
        Value::Null,
    );
    let wrong = srv
        .send(Method::GET, "/v1/chat/completions", &[AUTH], "")
        .await;
    assert_error(
        &wrong,
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        Value::Null,
        Value::Null,
    );
    let body = chat().to_string();
    let unauth = srv
        .send(Method::POST, "/v1/chat/completions", &[], body.clone())
        .await;
    assert_error(
        &unauth,
        StatusCode::UNAUTHORIZED,
        "invalid_request_error",
        json!("invalid_api_key"),
        Value::Null,
    );
    let empty_bearer = srv
        .send(
            Method::POST,
            "/v1/chat/completions",
            &[("authorization", "Bearer  ")],
            body,
        )
        .await;
    assert_eq!(empty_bearer.status, StatusCode::UNAUTHORIZED);
    assert!(unauth.headers.contains_key("x-request-id"));
    srv.stop().await;
}

#[tokio::test]
async fn fault_header_forces_429_500_and_flex() {
    let srv = Server::start(SimConfig::default()).await;
    let r429 = srv
        .post_with("/v1/chat/completions", &[("x-sim-fault", "429")], &chat())
        .await;
    assert_error(
        &r429,
        StatusCode::TOO_MANY_REQUESTS,
        "tokens",
        json!("rate_limit_exceeded"),
        Value::Null,
    );
    assert_eq!(r429.headers["retry-after"], "1");
    assert_eq!(r429.headers["retry-after-ms"], "1000");
    let r500 = srv
        .post_with("/v1/chat/completions", &[("x-sim-fault", "500")], &chat())
        .await;
    assert_error(
        &r500,
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        Value::Null,
        Value::Null,
    );
    let flex = srv
        .post_with(
            "/v1/responses",
            &[("x-sim-fault", "flex-429")],
            &json!({"model": "o3", "input": "x", "service_tier": "flex"}),
        )
        .await;
    assert_error(
        &flex,
        StatusCode::TOO_MANY_REQUESTS,
        "server_error",
        json!("resource_unavailable"),
        Value::Null,
    );
    assert_eq!(flex.json()["error"]["message"], "Resource Unavailable");
    let ok = srv.post("/v1/chat/completions", &chat()).await;
    assert_eq!(ok.status, StatusCode::OK);
    srv.stop().await;
}

#[tokio::test]
async fn fault_rates_are_deterministic_per_seed() {
    let statuses = |seed| async move {
        let cfg = SimConfig {
            error_429_rate: 0.3,
            error_500_rate: 0.3,
            seed,
            ..SimConfig::default()
        };
        let srv = Server::start(cfg).await;
        let mut out = Vec::new();
        for _ in 0..40 {
            out.push(
                srv.post("/v1/embeddings", &json!({"model": "m", "input": "x"}))
                    .await
                    .status
                    .as_u16(),
            );
        }
        srv.stop().await;
        out
    };
    let a = statuses(7).await;
    assert_eq!(a, statuses(7).await);
    assert_ne!(a, statuses(8).await);
    for code in [200, 429, 500] {
        assert!(a.contains(&code), "{code} missing from {a:?}");
    }
    let all = Server::start(SimConfig {
        error_500_rate: 1.0,
        ..SimConfig::default()
    })
    .await;
    assert_eq!(
        all.post("/v1/chat/completions", &chat()).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    // Models are never randomly faulted.
    assert_eq!(
        all.send(Method::GET, "/v1/models", &[AUTH], "")
            .await
            .status,
        StatusCode::OK
    );
    all.stop().await;
}

#[tokio::test]
async fn embeddings_float_and_base64_agree() {
    let srv = Server::start(SimConfig::default()).await;
    let body = json!({"model": "text-embedding-3-small", "input": ["alpha", "beta"]});
    let float = srv.post("/v1/embeddings", &body).await.json();
    assert_eq!(float["object"], "list");
    assert_eq!(float["model"], "text-embedding-3-small");
    assert_eq!(
        float["usage"],
        json!({"prompt_tokens": 3, "total_tokens": 3})
    );
    let data = float["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    let v0: Vec<f32> = data[0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(v0.len(), 1536);
    let norm: f32 = v0.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-3);
    assert_eq!(data[1]["index"], 1);
    assert_eq!(data[0]["object"], "embedding");
    assert_ne!(data[0]["embedding"], data[1]["embedding"]);

    let mut b64 = body.clone();
    b64["encoding_format"] = json!("base64");
    let b64 = srv.post("/v1/embeddings", &b64).await.json();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = raw
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(decoded, v0);

    let dims = srv
        .post(
            "/v1/embeddings",
            &json!({"model": "m", "input": [[1, 2, 3]], "dimensions": 8}),
        )
        .await
        .json();
    assert_eq!(dims["data"][0]["embedding"].as_array().unwrap().len(), 8);
    assert_eq!(dims["usage"]["prompt_tokens"], 3);
    srv.stop().await;
}

#[tokio::test]
async fn legacy_completions_json_and_stream() {
    let srv = Server::start(SimConfig::default()).await;
    let body = json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say hello", "max_tokens": 50});
    let v = srv.post("/v1/completions", &body).await.json();
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-sim"));
    assert_eq!(v["object"], "text_completion");
    let text = v["choices"][0]["text"].as_str().unwrap().to_owned();
    assert_eq!(text, "Simulated completion of: Say hello");
    assert_eq!(v["choices"][0]["logprobs"], Value::Null);
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8})
    );
    let mut s = body.clone();
    s["stream"] = json!(true);
    s["stream_options"] = json!({"include_usage": true});
    let a = srv.post("/v1/completions", &s).await;
    let data = a.sse_data();
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let joined: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(joined, text);
    assert_eq!(chunks.last().unwrap()["usage"], v["usage"]);
    assert!(
        chunks[..chunks.len() - 1]
            .iter()
            .all(|c| c["usage"].is_null() && c["object"] == "text_completion")
    );
    srv.stop().await;
}

#[tokio::test]
async fn responses_json_and_stream() {
    let srv = Server::start(SimConfig::default()).await;
    let body = json!({"model": "gpt-5", "input": [{"role": "user", "content": [{"type": "input_text", "text": "ping"}]}]});
    let v = srv.post("/v1/responses", &body).await.json();
    assert!(v["id"].as_str().unwrap().starts_with("resp_sim"));
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    for key in [
        "error",
        "incomplete_details",
        "instructions",
        "tools",
        "parallel_tool_calls",
        "metadata",
        "tool_choice",
        "temperature",
        "top_p",
        "created_at",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    let text = v["output"][0]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(text, "Simulated answer to: ping");
    assert_eq!(v["output"][0]["type"], "message");
    assert_eq!(v["usage"]["input_tokens"], 5);
    assert_eq!(v["usage"]["output_tokens"], 4);
    assert_eq!(v["usage"]["input_tokens_details"]["cached_tokens"], 0);

    let mut s = body.clone();
    s["stream"] = json!(true);
    let a = srv.post("/v1/responses", &s).await;
    let events: Vec<(String, Value)> = a
        .text()
        .split_terminator("\n\n")
        .map(|e| {
            let (name, data) = e.split_once('\n').unwrap();
            let name = name.strip_prefix("event: ").unwrap().to_owned();
            (
                name,
                serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap(),
            )
        })
        .collect();
    for (i, (name, data)) in events.iter().enumerate() {
        assert_eq!(&data["type"], name);
        assert_eq!(data["sequence_number"], i);
    }
    assert_eq!(events[0].0, "response.created");
    let deltas: String = events
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .map(|(_, d)| d["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, text);
    let (last, done) = events.last().unwrap();
    assert_eq!(last, "response.completed");
    assert_eq!(done["response"]["usage"], v["usage"]);
    srv.stop().await;
}

#[tokio::test]
async fn models_list_and_lookup() {
    let srv = Server::start(SimConfig::default()).await;
    let list = srv
        .send(Method::GET, "/v1/models", &[AUTH], "")
        .await
        .json();
    assert_eq!(list["object"], "list");
    assert_eq!(list["data"].as_array().unwrap().len(), 10);
    let one = srv
        .send(Method::GET, "/v1/models/gpt-4o", &[AUTH], "")
        .await
        .json();
    assert_eq!(one["id"], "gpt-4o");
    assert_eq!(one["owned_by"], "sluice-sim");
    let missing = srv.send(Method::GET, "/v1/models/nope", &[AUTH], "").await;
    assert_error(
        &missing,
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        json!("model_not_found"),
        json!("model"),
    );
    srv.stop().await;
}

#[tokio::test]
async fn request_log_records_exact_bytes_and_clears() {
    let srv = Server::start(SimConfig::default()).await;
    let raw =
        "{ \"model\" : \"gpt-4o\",\n \"messages\":[{\"role\":\"user\",\"content\":\"h\u{e9}\"}] }";
    let a = srv
        .send(
            Method::POST,
            "/v1/chat/completions",
            &[AUTH, ("X-Custom", "Yes")],
            raw,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let log = srv.send(Method::GET, "/sim/requests", &[], "").await.json();
    let entries = log.as_array().unwrap();
    assert_eq!(entries.len(), 1, "admin calls are not logged");
    assert_eq!(entries[0]["method"], "POST");
    assert_eq!(entries[0]["path"], "/v1/chat/completions");
    assert_eq!(entries[0]["body"], raw);
    assert_eq!(entries[0]["headers"]["x-custom"], "Yes");
    assert_eq!(entries[0]["headers"]["authorization"], "Bearer sk-test");
    let cleared = srv.send(Method::DELETE, "/sim/requests", &[], "").await;
    assert_eq!(cleared.status, StatusCode::OK);
    let log = srv.send(Method::GET, "/sim/requests", &[], "").await.json();
    assert_eq!(log, json!([]));
    srv.stop().await;
}

#[tokio::test]
async fn stream_chunks_are_separate_paced_frames() {
    let cfg = SimConfig {
        stream_chunk_delay: Duration::from_millis(5),
        ..SimConfig::default()
    };
    let srv = Server::start(cfg).await;
    let body = json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "one two three"}]});
    let req = Request::post(format!("http://{}/v1/chat/completions", srv.addr))
        .header(AUTH.0, AUTH.1)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let started = Instant::now();
    let mut resp = srv.client.request(req).await.unwrap().into_body();
    let mut frames = Vec::new();
    while let Some(frame) = resp.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            frames.push(data);
        }
    }
    // role + 6 words + finish + [DONE], each its own frame (a TCP read may split one, never merge).
    assert!(frames.len() >= 9, "got {} frames", frames.len());
    let all = frames.concat();
    let text = std::str::from_utf8(&all).unwrap();
    assert_eq!(text.split_terminator("\n\n").count(), 9);
    assert!(started.elapsed() >= Duration::from_millis(40));
    srv.stop().await;
}

#[tokio::test]
async fn latency_header_and_h2c() {
    let srv = Server::start(SimConfig::default()).await;
    let started = Instant::now();
    let a = srv
        .post_with(
            "/v1/chat/completions",
            &[("x-sim-latency-ms", "60")],
            &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(60));

    let h2 = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let req = Request::get(format!("http://{}/v1/models", srv.addr))
        .header(AUTH.0, AUTH.1)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = h2.request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::OK);
    drop(h2);
    srv.stop().await;
}

#[tokio::test]
async fn slow_fault_paces_stream_chunks() {
    let srv = Server::start(SimConfig::default()).await;
    let body =
        json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "x"}]});
    let started = Instant::now();
    let a = srv
        .post_with("/v1/chat/completions", &[("x-sim-fault", "slow")], &body)
        .await;
    // role + 4 words + finish + [DONE] = 7 frames, 6 gaps of 200 ms.
    assert_eq!(a.sse_data().len(), 7);
    assert!(started.elapsed() >= Duration::from_millis(1200));
    srv.stop().await;
}

#[tokio::test]
async fn the_served_tier_is_reported_as_the_reference_says() {
    let srv = Server::start(SimConfig::default()).await;
    // provider-apis.md 1.5: the response echoes the tier actually used.
    let cases: &[(&str, Value, &str)] = &[
        ("gpt-5", Value::Null, "default"),
        ("gpt-5", json!("auto"), "default"),
        ("gpt-5", json!("default"), "default"),
        ("gpt-5", json!("flex"), "flex"),
        ("gpt-5", json!("scale"), "scale"),
        ("gpt-5", json!("priority"), "priority"),
        ("gpt-5", json!("fast"), "priority"),
        ("gpt-5.6-sol", json!("fast"), "priority"),
        ("gpt-6-astra", json!("fast"), "fast"),
        ("gpt-6-astra", json!("priority"), "fast"),
        ("gpt-5.6-sol", json!("ultrafast"), "ultrafast"),
        ("gpt-5", json!("turbo-2027"), "default"),
    ];
    for (model, tier, want) in cases {
        let mut chat = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
        let mut responses = json!({"model": model, "input": "hi"});
        if !tier.is_null() {
            chat["service_tier"] = tier.clone();
            responses["service_tier"] = tier.clone();
        }
        let a = srv.post("/v1/chat/completions", &chat).await;
        assert_eq!(a.status, StatusCode::OK, "{tier}: {}", a.text());
        assert_eq!(a.json()["service_tier"], *want, "chat {model} {tier}");
        let r = srv.post("/v1/responses", &responses).await;
        assert_eq!(r.status, StatusCode::OK, "{tier}: {}", r.text());
        assert_eq!(r.json()["service_tier"], *want, "responses {model} {tier}");
    }
    // Streams report it in every chunk, the usage chunk included.
    let stream = json!({"model": "gpt-5", "service_tier": "fast", "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "hi"}]});
    let s = srv.post("/v1/chat/completions", &stream).await;
    let chunks: Vec<Value> = s
        .sse_data()
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(chunks.iter().all(|c| c["service_tier"] == "priority"));
    assert!(chunks.last().unwrap()["usage"].is_object());
    // The ramp-rate downgrade: fast / priority / ultrafast served and reported at default.
    for tier in ["fast", "priority", "ultrafast"] {
        let body = json!({"model": "gpt-5", "service_tier": tier,
            "messages": [{"role": "user", "content": "hi"}]});
        let a = srv
            .post_with(
                "/v1/chat/completions",
                &[("x-sim-fault", "downgrade")],
                &body,
            )
            .await;
        assert_eq!(a.json()["service_tier"], "default", "{tier}");
    }
    let flex = json!({"model": "gpt-5", "service_tier": "flex", "input": "hi"});
    let a = srv
        .post_with("/v1/responses", &[("x-sim-fault", "downgrade")], &flex)
        .await;
    assert_eq!(a.json()["service_tier"], "flex", "flex is never downgraded");
    srv.stop().await;
}
