//! In-process tests: unknown top-level fields are refused in each provider's 400 shape,
//! documented ones pass; Google's OpenAI-compatible layer.

use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::SimConfig;
use super::fields;
use super::tests::{Answer, Server};
use super::tests_anthropic::anth;

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

/// `(path, minimal valid body, accepted fields)` of every OpenAI JSON endpoint.
fn openai_endpoints() -> Vec<(&'static str, Value, &'static [&'static str])> {
    vec![
        (
            "/v1/chat/completions",
            json!({"model": "gpt-4o", "messages": user("hi")}),
            fields::CHAT,
        ),
        (
            "/v1/completions",
            json!({"model": "gpt-4o", "prompt": "hi"}),
            fields::COMPLETIONS,
        ),
        (
            "/v1/embeddings",
            json!({"model": "text-embedding-3-small", "input": "hi"}),
            fields::EMBEDDINGS,
        ),
        (
            "/v1/responses",
            json!({"model": "gpt-4o", "input": "hi"}),
            fields::RESPONSES,
        ),
        (
            "/v1/batches",
            json!({"input_file_id": "file-missing", "endpoint": "/v1/chat/completions",
                   "completion_window": "24h"}),
            fields::BATCH_CREATE,
        ),
    ]
}

fn with(mut body: Value, key: &str, value: Value) -> Value {
    body[key] = value;
    body
}

fn assert_unknown_parameter(a: &Answer, name: &str) {
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "body: {}", a.text());
    assert_eq!(
        a.json(),
        json!({"error": {
            "message": format!("Unrecognized request argument supplied: {name}"),
            "type": "invalid_request_error",
            "param": name,
            "code": "unknown_parameter",
        }})
    );
}

#[tokio::test]
async fn openai_endpoints_refuse_unknown_fields() {
    let srv = Server::start(SimConfig::default()).await;
    for (path, base, _) in openai_endpoints() {
        let a = srv
            .post(path, &with(base.clone(), "gateway_secret", json!(1)))
            .await;
        assert_unknown_parameter(&a, "gateway_secret");
        // An unknown field is refused even when null; a Google-only field is unknown here.
        let a = srv.post(path, &with(base, "extra_body", Value::Null)).await;
        assert_unknown_parameter(&a, "extra_body");
    }
    srv.stop().await;
}

#[tokio::test]
async fn openai_endpoints_accept_every_listed_field_as_null() {
    let srv = Server::start(SimConfig::default()).await;
    for (path, base, list) in openai_endpoints() {
        let mut body = base.clone();
        for name in list {
            if body.get(name).is_none() {
                body[*name] = Value::Null;
            }
        }
        let a = srv.post(path, &body).await;
        // A batch with a made-up input file is accepted and fails later, in validation.
        assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.text());
    }
    srv.stop().await;
}

#[tokio::test]
async fn openai_sdk_style_bodies_pass() {
    let srv = Server::start(SimConfig::default()).await;
    let chat = json!({
        "model": "gpt-4o", "messages": user("hi"), "stream": true,
        "stream_options": {"include_usage": true}, "service_tier": "auto",
        "prompt_cache_key": "tenant-42", "prompt_cache_retention": "24h",
        "safety_identifier": "u_1", "metadata": {"k": "v"}, "store": false, "user": "u",
        "temperature": 0.2, "top_p": 1, "max_completion_tokens": 16, "n": 1, "seed": 7,
        "stop": ["\n\n"], "parallel_tool_calls": true, "reasoning_effort": "low",
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": "auto",
    });
    let a = srv.post("/v1/chat/completions", &chat).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let responses = json!({
        "model": "gpt-4o", "input": "hi", "instructions": "be brief", "stream": false,
        "prompt_cache_key": "tenant-42", "safety_identifier": "u_1", "service_tier": "flex",
        "metadata": {"k": "v"}, "max_output_tokens": 16, "store": false,
        "reasoning": {"effort": "low"}, "text": {"format": {"type": "text"}},
    });
    let a = srv.post("/v1/responses", &responses).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    srv.stop().await;
}

#[tokio::test]
async fn odd_bodies_still_get_the_handlers_errors() {
    let srv = Server::start(SimConfig::default()).await;
    for body in ["[1,2]", "null", "\"x\"", "{\"model\":", "{\"zzz\": }"] {
        let auth = [("authorization", "Bearer sk-test")];
        let a = srv
            .send(Method::POST, "/v1/chat/completions", &auth, body)
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}");
        assert_ne!(a.json()["error"]["code"], "unknown_parameter", "{body}");
    }
    srv.stop().await;
}

fn anthropic_body() -> Value {
    json!({"model": "claude-haiku-4-5", "max_tokens": 32, "messages": user("hi")})
}

fn assert_extra_input(a: &Answer, location: &str) {
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "body: {}", a.text());
    let v = a.json();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(
        v["error"]["message"],
        format!("{location}: Extra inputs are not permitted")
    );
}

#[tokio::test]
async fn anthropic_messages_refuse_unknown_fields_and_accept_real_ones() {
    let srv = Server::start(SimConfig::default()).await;
    let a = anth(
        &srv,
        Method::POST,
        "/v1/messages",
        &with(anthropic_body(), "prompt_cache_key", json!("k")),
    )
    .await;
    assert_extra_input(&a, "prompt_cache_key");
    let a = anth(
        &srv,
        Method::POST,
        "/v1/messages",
        &with(anthropic_body(), "n", Value::Null),
    )
    .await;
    assert_extra_input(&a, "n");
    let full = json!({
        "model": "claude-haiku-4-5", "max_tokens": 32, "messages": user("hi"),
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "metadata": {"user_id": "u_1"}, "stop_sequences": ["END"], "temperature": 0.5,
        "top_p": 0.9, "top_k": 5, "service_tier": "auto", "stream": false,
        "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "auto"},
    });
    let a = anth(&srv, Method::POST, "/v1/messages", &full.clone()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let a = anth(
        &srv,
        Method::POST,
        "/v1/messages",
        &with(full, "stream", json!(true)),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    srv.stop().await;
}

#[tokio::test]
async fn anthropic_batch_create_checks_every_level() {
    let srv = Server::start(SimConfig::default()).await;
    let path = "/v1/messages/batches";
    let ok = json!({"custom_id": "a", "params": anthropic_body()});
    let cases = [
        (
            json!({"requests": [ok.clone()], "endpoint": "x"}),
            "endpoint",
        ),
        (
            json!({"requests": [ok.clone(), with(ok.clone(), "method", json!("POST"))]}),
            "requests.1.method",
        ),
        (
            json!({"requests": [{"custom_id": "a",
                                 "params": with(anthropic_body(), "user", json!("u"))}]}),
            "requests.0.params.user",
        ),
    ];
    for (body, location) in cases {
        let a = anth(&srv, Method::POST, path, &body).await;
        assert_extra_input(&a, location);
    }
    let a = anth(&srv, Method::POST, path, &json!({"requests": [ok]})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    srv.stop().await;
}

const GOOGLE_CHAT: &str = "/v1/openai/chat/completions";

fn google_chat(extra: Value) -> Value {
    let mut body = json!({
        "model": "gemini-2.5-flash",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is the weather in Paris?"},
        ],
        "tools": [{"type": "function", "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"]},
        }}],
    });
    if let Value::Object(extra) = extra {
        body.as_object_mut().unwrap().extend(extra);
    }
    body
}

/// The array-wrapped Google envelope; returns `error`.
fn google_error(a: &Answer, status: u16, name: &str) -> Value {
    assert_eq!(a.status.as_u16(), status, "body: {}", a.text());
    let v = a.json();
    let list = v.as_array().expect("an array");
    assert_eq!(list.len(), 1);
    let err = list[0]["error"].clone();
    assert_eq!(err["code"], status);
    assert_eq!(err["status"], name);
    assert!(err["message"].is_string());
    err
}

#[tokio::test]
async fn google_layer_answers_chat_json_and_stream() {
    let srv = Server::start(SimConfig::default()).await;
    for path in [GOOGLE_CHAT, "/v1beta/openai/chat/completions"] {
        let a = srv.post(path, &google_chat(json!({}))).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        let v = a.json();
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["model"], "gemini-2.5-flash");
        assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    }
    let body = google_chat(json!({"stream": true, "stream_options": {"include_usage": true}}));
    let a = srv.post(GOOGLE_CHAT, &body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let data = a.sse_data();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let last: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert!(last["usage"]["total_tokens"].as_u64().unwrap() > 0);
    let embed = json!({"model": "gemini-embedding-001", "input": ["a", "b"]});
    let a = srv.post("/v1/openai/embeddings", &embed).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.json()["data"].as_array().unwrap().len(), 2);
    srv.stop().await;
}

#[tokio::test]
async fn google_layer_refuses_prompt_cache_key_in_array_shape() {
    let srv = Server::start(SimConfig::default()).await;
    let message =
        "Invalid JSON payload received. Unknown name \"prompt_cache_key\": Cannot find field.";
    let body = google_chat(json!({"stream": true, "prompt_cache_key": "tenant-42"}));
    let a = srv.post(GOOGLE_CHAT, &body).await;
    assert_eq!(
        a.json(),
        json!([{"error": {
            "code": 400,
            "message": message,
            "status": "INVALID_ARGUMENT",
            "details": [{
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"description": message}],
            }],
        }}])
    );
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let embed = json!({"model": "gemini-embedding-001", "input": "a", "user": "u"});
    let a = srv.post("/v1beta/openai/embeddings", &embed).await;
    let err = google_error(&a, 400, "INVALID_ARGUMENT");
    assert!(err["message"].as_str().unwrap().contains("\"user\""));
    srv.stop().await;
}

#[tokio::test]
async fn google_layer_accepts_its_listed_fields() {
    let srv = Server::start(SimConfig::default()).await;
    let mut body = google_chat(json!({}));
    for name in fields::GOOGLE_CHAT {
        if body.get(name).is_none() {
            body[*name] = Value::Null;
        }
    }
    let a = srv.post(GOOGLE_CHAT, &body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let body = google_chat(json!({
        "stream": false, "reasoning_effort": "low", "service_tier": "flex",
        "extra_body": {"google": {"thinking_config": {"thinking_budget": 0}}},
        "max_completion_tokens": 32, "temperature": 0.1,
    }));
    let a = srv.post(GOOGLE_CHAT, &body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    srv.stop().await;
}

#[tokio::test]
async fn google_layer_other_errors_are_array_shaped() {
    let srv = Server::start(SimConfig::default()).await;
    let body = google_chat(json!({})).to_string();
    let json_ct = ("content-type", "application/json");
    let a = srv
        .send(Method::POST, GOOGLE_CHAT, &[json_ct], body.clone())
        .await;
    google_error(&a, 401, "UNAUTHENTICATED");
    let a = srv
        .post_with(
            GOOGLE_CHAT,
            &[("x-sim-fault", "429")],
            &google_chat(json!({})),
        )
        .await;
    google_error(&a, 429, "RESOURCE_EXHAUSTED");
    assert_eq!(a.headers["retry-after"], "1");
    let a = srv
        .post_with(
            GOOGLE_CHAT,
            &[("x-sim-fault", "500")],
            &google_chat(json!({})),
        )
        .await;
    google_error(&a, 500, "INTERNAL");
    let a = srv.post("/v1/openai/responses", &json!({})).await;
    google_error(&a, 404, "NOT_FOUND");
    let auth = [("authorization", "Bearer k")];
    let a = srv.send(Method::GET, GOOGLE_CHAT, &auth, "").await;
    google_error(&a, 405, "INVALID_ARGUMENT");
    let a = srv.send(Method::POST, GOOGLE_CHAT, &auth, "[1]").await;
    google_error(&a, 400, "INVALID_ARGUMENT");
    srv.stop().await;
}
