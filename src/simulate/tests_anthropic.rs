//! In-process tests of the Anthropic Messages API: JSON and SSE answers, tool use,
//! errors and faults, prompt caching.

use std::time::Duration;

use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::SimConfig;
use super::tests::{Answer, Server};

pub(super) const ANTHROPIC: [(&str, &str); 3] = [
    ("x-api-key", "sk-ant-test"),
    ("anthropic-version", "2023-06-01"),
    ("content-type", "application/json"),
];

pub(super) async fn anth(srv: &Server, method: Method, path: &str, body: &Value) -> Answer {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    srv.send(method, path, &ANTHROPIC, body).await
}

async fn messages(srv: &Server, body: &Value) -> Answer {
    anth(srv, Method::POST, "/v1/messages", body).await
}

fn body(extra: Value) -> Value {
    let mut b = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": "What is the capital of France?"}]
    });
    if let (Some(b), Some(e)) = (b.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    b
}

/// `(event name, data)` of a named-event SSE body.
fn events(a: &Answer) -> Vec<(String, Value)> {
    assert_eq!(a.headers["content-type"], "text/event-stream");
    a.text()
        .split_terminator("\n\n")
        .map(|frame| {
            let mut lines = frame.lines();
            let name = lines.next().unwrap().strip_prefix("event: ").unwrap();
            let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
            assert_eq!(lines.next(), None);
            let data: Value = serde_json::from_str(data).unwrap();
            assert_eq!(data["type"], name);
            (name.to_owned(), data)
        })
        .collect()
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

fn assert_error(a: &Answer, status: u16, kind: &str) -> Value {
    assert_eq!(a.status.as_u16(), status, "{}", a.text());
    let v = a.json();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], kind);
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert!(v["request_id"].as_str().unwrap().starts_with("req_sim"));
    v
}

#[tokio::test]
async fn messages_json_has_reference_shape() {
    let srv = Server::start(SimConfig::default()).await;
    let a = messages(&srv, &body(json!({}))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.headers["content-type"], "application/json");
    assert!(
        a.headers["request-id"]
            .to_str()
            .unwrap()
            .starts_with("req_sim")
    );
    assert!(a.headers.contains_key("anthropic-ratelimit-requests-limit"));
    let v = a.json();
    assert!(v["id"].as_str().unwrap().starts_with("msg_sim"));
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "claude-sonnet-4-5");
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": "Simulated answer to: What is the capital of France?"}])
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["stop_sequence"], Value::Null);
    // system ceil(14/4) = 4; message 4 + ceil(30/4) = 12.
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 16, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
               "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
               "output_tokens": 9, "service_tier": "standard"})
    );
    let short = messages(&srv, &body(json!({"max_tokens": 4}))).await.json();
    assert_eq!(short["content"][0]["text"], "Simulated answer to: What");
    assert_eq!(short["stop_reason"], "max_tokens");
    assert_eq!(short["usage"]["output_tokens"], 4);
    let none = messages(&srv, &body(json!({"max_tokens": 0}))).await.json();
    assert_eq!(none["content"], json!([]));
    assert_eq!(none["stop_reason"], "max_tokens");
    // The request log records Anthropic requests too.
    let log = srv.send(Method::GET, "/sim/requests", &[], "").await.json();
    assert_eq!(log[0]["path"], "/v1/messages");
    assert_eq!(log[0]["headers"]["anthropic-version"], "2023-06-01");
}

#[tokio::test]
async fn messages_stream_events_in_order_and_match_json() {
    let srv = Server::start(SimConfig {
        stream_chunk_delay: Duration::from_millis(2),
        ..SimConfig::default()
    })
    .await;
    let json_answer = messages(&srv, &body(json!({}))).await.json();
    let a = messages(&srv, &body(json!({"stream": true}))).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers["cache-control"], "no-cache");
    let ev = events(&a);
    let n = ev.len();
    assert_eq!(
        names(&ev[..3]),
        ["message_start", "content_block_start", "ping"]
    );
    assert_eq!(
        names(&ev[n - 3..]),
        ["content_block_stop", "message_delta", "message_stop"]
    );
    assert!(
        ev[3..n - 3]
            .iter()
            .all(|(name, _)| name == "content_block_delta")
    );
    let start = &ev[0].1["message"];
    assert_eq!(start["content"], json!([]));
    assert_eq!(start["stop_reason"], Value::Null);
    assert_eq!(start["usage"]["input_tokens"], 16);
    assert_eq!(start["usage"]["output_tokens"], 1);
    assert_eq!(
        ev[1].1["content_block"],
        json!({"type": "text", "text": ""})
    );
    let text: String = ev[3..n - 3]
        .iter()
        .map(|(_, d)| {
            assert_eq!(d["index"], 0);
            assert_eq!(d["delta"]["type"], "text_delta");
            d["delta"]["text"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(text, json_answer["content"][0]["text"].as_str().unwrap());
    assert_eq!(n - 6, 9, "one delta per word");
    let delta = &ev[n - 2].1;
    assert_eq!(
        delta["delta"],
        json!({"stop_reason": "end_turn", "stop_sequence": null})
    );
    assert_eq!(
        delta["usage"]["output_tokens"],
        json_answer["usage"]["output_tokens"]
    );

    // Each event is its own body frame.
    let req = http::Request::post(format!("http://{}/v1/messages", srv.addr));
    let req = ANTHROPIC
        .iter()
        .fold(req, |r, (k, v)| r.header(*k, *v))
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body(json!({"stream": true})).to_string(),
        )))
        .unwrap();
    let mut resp = srv.client.request(req).await.unwrap().into_body();
    let mut frames = 0;
    while let Some(frame) = resp.frame().await {
        let data = frame.unwrap().into_data().unwrap();
        assert!(data.starts_with(b"event: ") && data.ends_with(b"\n\n"));
        frames += 1;
    }
    assert_eq!(frames, n);
}

fn weather_tools() -> Value {
    json!([
        {"name": "get_weather", "description": "Weather of a city",
         "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
        {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}
    ])
}

fn weather_body(extra: Value) -> Value {
    let mut b = body(json!({
        "tools": weather_tools(),
        "messages": [{"role": "user", "content": "What's the weather in Paris?"}]
    }));
    if let (Some(b), Some(e)) = (b.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    b
}

#[tokio::test]
async fn tool_use_json_and_stream() {
    let srv = Server::start(SimConfig::default()).await;
    let v = messages(&srv, &weather_body(json!({}))).await.json();
    assert_eq!(v["stop_reason"], "tool_use");
    let block = &v["content"][0];
    assert_eq!(v["content"].as_array().unwrap().len(), 1);
    assert_eq!(block["type"], "tool_use");
    assert!(block["id"].as_str().unwrap().starts_with("toolu_sim"));
    assert_eq!(block["name"], "get_weather");
    assert_eq!(block["input"], json!({"city": "simulated"}));
    assert!(v["usage"]["output_tokens"].as_u64().unwrap() > 0);

    // No tool mentioned: a text answer, unless tool_choice forces a tool.
    let plain = json!({"messages": [{"role": "user", "content": "Hello there"}]});
    let v = messages(&srv, &weather_body(plain.clone())).await.json();
    assert_eq!(v["stop_reason"], "end_turn");
    let mut any = plain.clone();
    any["tool_choice"] = json!({"type": "any"});
    let v = messages(&srv, &weather_body(any)).await.json();
    assert_eq!(v["content"][0]["name"], "get_weather");
    let mut named = plain.clone();
    named["tool_choice"] = json!({"type": "tool", "name": "get_time"});
    let v = messages(&srv, &weather_body(named)).await.json();
    assert_eq!(v["content"][0]["name"], "get_time");
    assert_eq!(v["content"][0]["input"], json!({}));
    let none = weather_body(json!({"tool_choice": {"type": "none"}}));
    assert_eq!(
        messages(&srv, &none).await.json()["stop_reason"],
        "end_turn"
    );
    let unknown = weather_body(json!({"tool_choice": {"type": "tool", "name": "nope"}}));
    assert_error(
        &messages(&srv, &unknown).await,
        400,
        "invalid_request_error",
    );

    let a = messages(&srv, &weather_body(json!({"stream": true}))).await;
    let ev = events(&a);
    let n = ev.len();
    assert_eq!(
        names(&ev[..3]),
        ["message_start", "content_block_start", "ping"]
    );
    let opening = &ev[1].1["content_block"];
    assert_eq!(opening["type"], "tool_use");
    assert_eq!(opening["name"], "get_weather");
    assert_eq!(opening["input"], json!({}));
    assert!(opening["id"].as_str().unwrap().starts_with("toolu_sim"));
    let partial: String = ev[3..n - 3]
        .iter()
        .map(|(_, d)| {
            assert_eq!(d["delta"]["type"], "input_json_delta");
            d["delta"]["partial_json"].as_str().unwrap().to_owned()
        })
        .collect();
    assert!(n - 6 > 1, "input streamed in several pieces");
    assert_eq!(
        serde_json::from_str::<Value>(&partial).unwrap(),
        json!({"city": "simulated"})
    );
    assert_eq!(ev[n - 2].1["delta"]["stop_reason"], "tool_use");
    assert_eq!(ev[n - 1].0, "message_stop");
}

#[tokio::test]
async fn errors_use_the_anthropic_envelope() {
    let srv = Server::start(SimConfig::default()).await;
    let no_key = [("anthropic-version", "2023-06-01")];
    let a = srv
        .send(
            Method::POST,
            "/v1/messages",
            &no_key,
            body(json!({})).to_string(),
        )
        .await;
    assert_error(&a, 401, "authentication_error");
    let bearer = [
        ("authorization", "Bearer sk-ant-test"),
        ("anthropic-version", "2023-06-01"),
    ];
    let a = srv
        .send(
            Method::POST,
            "/v1/messages",
            &bearer,
            body(json!({})).to_string(),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let no_version = [("x-api-key", "sk-ant-test")];
    let a = srv
        .send(
            Method::POST,
            "/v1/messages",
            &no_version,
            body(json!({})).to_string(),
        )
        .await;
    let v = assert_error(&a, 400, "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("anthropic-version")
    );

    let mut no_max = body(json!({}));
    no_max.as_object_mut().unwrap().remove("max_tokens");
    let v = assert_error(&messages(&srv, &no_max).await, 400, "invalid_request_error");
    assert_eq!(v["error"]["message"], "max_tokens: Field required");
    let mut no_model = body(json!({}));
    no_model.as_object_mut().unwrap().remove("model");
    assert_error(
        &messages(&srv, &no_model).await,
        400,
        "invalid_request_error",
    );
    let empty = body(json!({"messages": []}));
    assert_error(&messages(&srv, &empty).await, 400, "invalid_request_error");
    let bad_role = body(json!({"messages": [{"role": "system", "content": "x"}]}));
    assert_error(
        &messages(&srv, &bad_role).await,
        400,
        "invalid_request_error",
    );
    let a = srv
        .send(Method::POST, "/v1/messages", &ANTHROPIC, "{not json")
        .await;
    assert_error(&a, 400, "invalid_request_error");
    let a = anth(&srv, Method::GET, "/v1/messages", &Value::Null).await;
    assert_error(&a, 405, "invalid_request_error");
    let a = anth(&srv, Method::POST, "/v1/messages/nope", &json!({})).await;
    assert_error(&a, 404, "not_found_error");
}

#[tokio::test]
async fn sim_fault_header_maps_to_anthropic_errors() {
    let srv = Server::start(SimConfig::default()).await;
    let send = |fault: &'static str| {
        let mut headers = ANTHROPIC.to_vec();
        headers.push(("x-sim-fault", fault));
        let srv = &srv;
        async move {
            srv.send(
                Method::POST,
                "/v1/messages",
                &headers,
                body(json!({})).to_string(),
            )
            .await
        }
    };
    let a = send("429").await;
    assert_error(&a, 429, "rate_limit_error");
    assert_eq!(a.headers["retry-after"], "1");
    assert_eq!(a.headers["x-should-retry"], "true");
    assert_error(&send("500").await, 500, "api_error");
    let a = send("overloaded").await;
    assert_error(&a, 529, "overloaded_error");
    assert_eq!(send("slow").await.status, StatusCode::OK);

    let random = Server::start(SimConfig {
        error_429_rate: 1.0,
        ..SimConfig::default()
    })
    .await;
    assert_error(
        &messages(&random, &body(json!({}))).await,
        429,
        "rate_limit_error",
    );
}

fn policy(words: usize) -> String {
    "abcd ".repeat(words)
}

/// A request with a 5,000-byte (1,250-token) system block.
fn cached_body(cache_control: Option<Value>, question: &str) -> Value {
    let mut system = json!({"type": "text", "text": policy(1000)});
    if let Some(cc) = cache_control {
        system["cache_control"] = cc;
    }
    body(json!({
        "system": [{"type": "text", "text": "You classify tickets."}, system],
        "messages": [{"role": "user", "content": question}]
    }))
}

fn usage(a: &Answer) -> Value {
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    a.json()["usage"].clone()
}

#[tokio::test]
async fn no_breakpoint_means_no_caching() {
    let srv = Server::start(SimConfig::default()).await;
    for _ in 0..2 {
        let u = usage(&messages(&srv, &cached_body(None, "My invoice is wrong.")).await);
        // 6 + 1250 system tokens, 4 + 5 message tokens.
        assert_eq!(u["input_tokens"], 1265);
        assert_eq!(u["cache_creation_input_tokens"], 0);
        assert_eq!(u["cache_read_input_tokens"], 0);
    }
}

#[tokio::test]
async fn one_hour_breakpoint_writes_then_reads() {
    let srv = Server::start(SimConfig::default()).await;
    let cc = json!({"type": "ephemeral", "ttl": "1h"});
    let first =
        usage(&messages(&srv, &cached_body(Some(cc.clone()), "My invoice is wrong.")).await);
    assert_eq!(first["cache_creation_input_tokens"], 1256);
    assert_eq!(
        first["cache_creation"],
        json!({"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 1256})
    );
    assert_eq!(first["cache_read_input_tokens"], 0);
    assert_eq!(first["input_tokens"], 9);

    let second = messages(
        &srv,
        &cached_body(Some(cc.clone()), "Reset my password please."),
    )
    .await;
    let second = usage(&second);
    assert_eq!(second["cache_read_input_tokens"], 1256);
    assert_eq!(second["cache_creation_input_tokens"], 0);
    assert_eq!(second["input_tokens"], 4 + 7);

    // Streams report the split in message_start.
    let mut streamed = cached_body(Some(cc.clone()), "Third.");
    streamed["stream"] = json!(true);
    let ev = events(&messages(&srv, &streamed).await);
    assert_eq!(ev[0].1["message"]["usage"]["cache_read_input_tokens"], 1256);

    // Another model, or a forgotten cache, writes again.
    let mut other = cached_body(Some(cc.clone()), "x");
    other["model"] = json!("claude-haiku-4-5");
    assert_eq!(
        usage(&messages(&srv, &other).await)["cache_read_input_tokens"],
        0
    );
    srv.send(Method::DELETE, "/sim/cache", &[], "").await;
    let again = usage(&messages(&srv, &cached_body(Some(cc), "x")).await);
    assert_eq!(again["cache_creation_input_tokens"], 1256);
}

#[tokio::test]
async fn top_level_cache_control_caches_the_last_block() {
    let srv = Server::start(SimConfig::default()).await;
    let turn1 = body(json!({
        "cache_control": {"type": "ephemeral"},
        "messages": [{"role": "user", "content": policy(1000)}]
    }));
    let first = usage(&messages(&srv, &turn1).await);
    // system 4, message 4 + 1250.
    assert_eq!(first["cache_creation_input_tokens"], 1258);
    assert_eq!(first["cache_creation"]["ephemeral_5m_input_tokens"], 1258);
    assert_eq!(first["input_tokens"], 0);
    let repeat = usage(&messages(&srv, &turn1).await);
    assert_eq!(repeat["cache_read_input_tokens"], 1258);
    assert_eq!(repeat["input_tokens"], 0);
    let turn2 = body(json!({
        "cache_control": {"type": "ephemeral"},
        "messages": [
            {"role": "user", "content": policy(1000)},
            {"role": "assistant", "content": "Noted."},
            {"role": "user", "content": "And now?"}
        ]
    }));
    let second = usage(&messages(&srv, &turn2).await);
    assert_eq!(second["cache_read_input_tokens"], 1258);
    assert_eq!(second["cache_creation_input_tokens"], 6 + 6);
    assert_eq!(second["input_tokens"], 0);
}

#[tokio::test]
async fn breakpoint_limits_and_minimum() {
    let srv = Server::start(SimConfig::default()).await;
    let cc = json!({"type": "ephemeral"});
    let block = |t: &str| json!({"type": "text", "text": t, "cache_control": cc});
    let five = body(json!({
        "system": [block("a"), block("b"), block("c"), block("d")],
        "messages": [{"role": "user", "content": [block("e")]}]
    }));
    let v = assert_error(&messages(&srv, &five).await, 400, "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("maximum of 4")
    );
    // Four explicit breakpoints plus the automatic one are five too.
    let mut auto = five.clone();
    auto["messages"] = json!([{"role": "user", "content": "plain"}]);
    auto["cache_control"] = cc.clone();
    assert_error(&messages(&srv, &auto).await, 400, "invalid_request_error");
    auto.as_object_mut().unwrap().remove("cache_control");
    // Below the minimum nothing is cached, and no error is returned.
    for _ in 0..2 {
        let u = usage(&messages(&srv, &auto).await);
        assert_eq!(u["cache_creation_input_tokens"], 0);
        assert_eq!(u["cache_read_input_tokens"], 0);
    }
    let small = Server::start(SimConfig {
        anthropic_cache_min_tokens: 4,
        ..SimConfig::default()
    })
    .await;
    let first = usage(&messages(&small, &auto).await);
    // Breakpoints after 1, 2, 3 and 4 tokens: only the last reaches the minimum.
    assert_eq!(first["cache_creation_input_tokens"], 4);
    assert_eq!(
        usage(&messages(&small, &auto).await)["cache_read_input_tokens"],
        4
    );
}
