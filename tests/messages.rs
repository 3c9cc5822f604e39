//! The Anthropic-native `/v1/messages` route: passed through to Anthropic with the
//! provider's key, Anthropic-shaped errors, and usage priced with cache writes and reads.

mod common;

use common::{Gateway, canned, keyed_policy, metric};
use http::StatusCode;

const MESSAGE: &str = r#"{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"billing"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":14,"cache_creation_input_tokens":4102,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":4102},"output_tokens":4,"service_tier":"standard"}}"#;

const BODY: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":256,"messages":[{"role":"user","content":"My invoice is wrong."}]}"#;

#[tokio::test]
async fn messages_pass_through_with_the_provider_key_and_are_priced() {
    let up = canned(200, "application/json", vec![MESSAGE]).await;
    let gw = Gateway::start_at(
        &up.base_url(),
        None,
        vec![keyed_policy("team", "sk-team", "")],
        |_| {},
    )
    .await;
    let (s, h, b) = gw
        .post(
            "/v1/messages",
            &[
                ("x-api-key", "sk-team"),
                ("anthropic-version", "2023-06-01"),
                ("anthropic-beta", "b1"),
            ],
            BODY,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b, MESSAGE.as_bytes(), "relayed unchanged");
    assert_eq!(h["x-sluice-tier"], "interactive");
    let (path, headers) = up.heads.lock().unwrap()[0].clone();
    assert_eq!(path, "/v1/messages");
    assert_eq!(
        headers["x-api-key"], "sk-sluice-simulated",
        "the provider key replaces the gateway key"
    );
    assert!(headers.get("authorization").is_none());
    assert_eq!(headers["anthropic-version"], "2023-06-01");
    assert_eq!(headers["anthropic-beta"], "b1");
    assert_eq!(up.bodies.lock().unwrap()[0], BODY.as_bytes());

    // claude-sonnet-4-5: input $3/M, 1h cache write $6/M, output $15/M.
    let cost = 14.0 * 3e-6 + 4102.0 * 6e-6 + 4.0 * 15e-6;
    let baseline = (14.0 + 4102.0) * 3e-6 + 4.0 * 15e-6;
    let m = gw.metrics().await;
    let l = [("model", "claude-sonnet-4-5"), ("provider", "anthropic")];
    assert!(
        (metric(&m, "sluice_cost_usd_total", &l) - cost).abs() < 1e-12,
        "{m}"
    );
    assert!((metric(&m, "sluice_baseline_cost_usd_total", &l) - baseline).abs() < 1e-12);
    // A cache write is a negative saving until reads pay it back.
    let saved = metric(
        &m,
        "sluice_savings_usd_total",
        &[("model", "claude-sonnet-4-5"), ("lever", "prompt_cache")],
    );
    assert!(
        (saved - (baseline - cost)).abs() < 1e-12 && saved < 0.0,
        "{saved}"
    );
    assert_eq!(
        metric(
            &m,
            "sluice_tokens_total",
            &[("model", "claude-sonnet-4-5"), ("kind", "cache_write")]
        ),
        4102.0
    );

    // A default anthropic-version is added when the client sends none.
    gw.post("/v1/messages", &[("authorization", "Bearer sk-team")], BODY)
        .await;
    let (_, headers) = up.heads.lock().unwrap()[1].clone();
    assert_eq!(headers["anthropic-version"], "2023-06-01");
    gw.stop().await;
}

const START: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-haiku-4-5\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":14,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":4102,\"output_tokens\":1}}}\n\n";
const BLOCK: &str = "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n";
const DELTA: &str = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"billing\"}}\n\n";
const STOP_BLOCK: &str =
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n";
const MSG_DELTA: &str = "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":4}}\n\n";
const MSG_STOP: &str = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

#[tokio::test]
async fn message_streams_are_relayed_as_they_are_and_priced() {
    let frames = vec![START, BLOCK, DELTA, STOP_BLOCK, MSG_DELTA, MSG_STOP];
    let up = canned(200, "text/event-stream", frames.clone()).await;
    let gw = Gateway::start_at(&up.base_url(), None, vec![], |_| {}).await;
    let body = r#"{"model":"claude-haiku-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let (s, _, sse) = gw
        .post("/v1/messages", &[("anthropic-version", "2023-06-01")], body)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        std::str::from_utf8(&sse).unwrap(),
        frames.concat(),
        "every event byte for byte"
    );
    // claude-haiku-4-5: input $1/M, cache read $0.10/M, output $5/M.
    let cost = 14.0 * 1e-6 + 4102.0 * 0.1e-6 + 4.0 * 5e-6;
    let m = gw.metrics().await;
    assert!(
        (metric(
            &m,
            "sluice_cost_usd_total",
            &[("model", "claude-haiku-4-5")]
        ) - cost)
            .abs()
            < 1e-12,
        "{m}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn errors_on_the_messages_route_are_anthropic_shaped() {
    let up = canned(200, "application/json", vec![MESSAGE]).await;
    let gw = Gateway::start_at(
        &up.base_url(),
        None,
        vec![keyed_policy("team", "sk-team", "")],
        |_| {},
    )
    .await;
    for (headers, status, kind) in [
        (vec![], 401, "authentication_error"),
        (vec![("x-api-key", "sk-wrong")], 401, "authentication_error"),
        (
            vec![("x-api-key", "sk-team"), ("x-sla", "whenever")],
            400,
            "invalid_request_error",
        ),
    ] {
        let (s, _, b) = gw.post("/v1/messages", &headers, BODY).await;
        assert_eq!(s.as_u16(), status);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["error"]["type"], kind, "{v}");
        assert!(v["error"]["message"].is_string());
    }
    // Upstream Anthropic errors pass through unchanged.
    const OVERLOADED: &str = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}"#;
    let up = canned(529, "application/json", vec![OVERLOADED]).await;
    let gw2 = Gateway::start_at(&up.base_url(), None, vec![], |_| {}).await;
    let (s, _, b) = gw2.post("/v1/messages", &[], BODY).await;
    assert_eq!(s.as_u16(), 529);
    assert_eq!(b, OVERLOADED.as_bytes());
    gw2.stop().await;
    gw.stop().await;
}

fn messages_body(user: &str) -> String {
    serde_json::json!({
        "model": "claude-haiku-4-5",
        "max_tokens": 64,
        "system": [{"type": "text", "text": "Support policy. ".repeat(400), "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        "messages": [{"role": "user", "content": user}]
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_messages_go_through_message_batches() {
    let sim = sluice::simulate::SimConfig {
        batch_turnaround: std::time::Duration::from_millis(100),
        ..sluice::simulate::SimConfig::default()
    };
    let gw = Gateway::start_sim(sim, vec![keyed_policy("team", "sk-team", "")], |_| {}).await;
    let calls = (0..4).map(|i| {
        let gw = &gw;
        let body = messages_body(&format!("ticket {i}"));
        async move {
            let h = [
                ("x-api-key", "sk-team"),
                ("anthropic-version", "2023-06-01"),
                ("x-sla", "24h"),
            ];
            (i, gw.post("/v1/messages", &h, &body).await)
        }
    });
    let mut ids = Vec::new();
    for (i, (s, h, b)) in futures_util::future::join_all(calls).await {
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
        assert_eq!(h["x-sluice-tier"], "batch");
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(
            v["type"], "message",
            "the Message a synchronous call returns: {v}"
        );
        assert!(
            v["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains(&format!("ticket {i}"))
        );
        ids.push(h["x-sluice-job-id"].to_str().unwrap().to_owned());
    }
    // What reached the provider: one Message Batch whose requests carry the params as sent.
    let log = gw.sim_requests().await;
    let create = log
        .iter()
        .find(|r| {
            r["method"] == "POST"
                && (r["path"] == "/v1/messages/batches" || r["uri"] == "/v1/messages/batches")
        })
        .expect("a message batch was created");
    let payload: serde_json::Value =
        serde_json::from_str(create["body"].as_str().unwrap()).unwrap();
    let requests = payload["requests"].as_array().unwrap();
    assert!(!requests.is_empty());
    for r in requests {
        assert!(ids.contains(&r["custom_id"].as_str().unwrap().to_owned()));
        assert!(r["params"].get("stream").is_none());
        // The client's own breakpoints are kept as they are.
        assert_eq!(r["params"]["system"][0]["cache_control"]["ttl"], "1h");
    }
    let stats = gw.sim_get("/sim/batches/stats").await;
    for id in &ids {
        assert_eq!(stats["lines_by_custom_id"][id], 1);
    }
    // Priced at the batch discount; the shared breakpointed prefix hits the cache in the batch.
    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            "sluice_requests_total",
            &[("provider", "anthropic"), ("tier", "batch")]
        ),
        4.0
    );
    assert!(
        metric(
            &m,
            "sluice_savings_usd_total",
            &[("model", "claude-haiku-4-5"), ("lever", "batch")]
        ) > 0.0
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_breakpoints_make_the_prefix_cacheable() {
    let gw = Gateway::start(vec![], |_| {}).await;
    let system = "Refund policy, section by section. ".repeat(200);
    let native = |user: &str| {
        serde_json::json!({"model": "claude-sonnet-4-5", "max_tokens": 32, "system": system, "messages": [{"role": "user", "content": user}]}).to_string()
    };
    let mut usage = Vec::new();
    for user in ["first", "second"] {
        let (s, _, b) = gw
            .post(
                "/v1/messages",
                &[("anthropic-version", "2023-06-01")],
                &native(user),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        usage.push(v["usage"].clone());
    }
    assert!(
        usage[0]["cache_creation_input_tokens"].as_u64().unwrap() > 0,
        "{usage:?}"
    );
    assert!(
        usage[1]["cache_read_input_tokens"].as_u64().unwrap() > 0,
        "{usage:?}"
    );
    let log = gw.sim_requests().await;
    let sent: serde_json::Value = serde_json::from_str(log[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent["system"][0]["text"], system, "content unchanged");
    assert_eq!(
        sent["system"][0]["cache_control"],
        serde_json::json!({"type": "ephemeral"})
    );

    // The OpenAI SDK path gets the same breakpoint after translation.
    let oai = serde_json::json!({"model": "claude-sonnet-4-5", "messages": [{"role": "system", "content": system}, {"role": "user", "content": "third"}]}).to_string();
    let (s, _, b) = gw.post("/v1/chat/completions", &[], &oai).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert!(
        v["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap()
            > 0,
        "{v}"
    );
    let log = gw.sim_requests().await;
    let sent: serde_json::Value = serde_json::from_str(log[2]["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        sent["system"][0]["cache_control"]["type"], "ephemeral",
        "{sent}"
    );
    assert!(sent.get("messages").unwrap()[0]["role"] == "user");

    // The cache write shows as a negative saving, later reads as the gain.
    let m = gw.metrics().await;
    assert!(
        metric(
            &m,
            "sluice_tokens_total",
            &[("model", "claude-sonnet-4-5"), ("kind", "cache_write")]
        ) > 0.0
    );
    assert!(
        metric(
            &m,
            "sluice_tokens_total",
            &[("model", "claude-sonnet-4-5"), ("kind", "cached_input")]
        ) > 0.0
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_get_one_hour_breakpoints() {
    let sim = sluice::simulate::SimConfig {
        batch_turnaround: std::time::Duration::from_millis(100),
        ..sluice::simulate::SimConfig::default()
    };
    let gw = Gateway::start_sim(sim, vec![], |_| {}).await;
    let body = serde_json::json!({"model": "claude-sonnet-4-5", "max_tokens": 32,
        "system": "Claims handbook. ".repeat(400), "messages": [{"role": "user", "content": "later"}]})
    .to_string();
    let (s, h, b) = gw.post("/v1/messages", &[("x-sla", "24h")], &body).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    assert_eq!(h["x-sluice-tier"], "batch");
    let log = gw.sim_requests().await;
    let create = log
        .iter()
        .find(|r| {
            r["method"] == "POST"
                && r["body"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("{\"requests\"")
        })
        .expect("batch create");
    let payload: serde_json::Value =
        serde_json::from_str(create["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        payload["requests"][0]["params"]["system"][0]["cache_control"],
        serde_json::json!({"type": "ephemeral", "ttl": "1h"})
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_reaches_anthropic_for_an_openai_request() {
    let gw = Gateway::start(vec![], |_| {}).await;
    let body = serde_json::json!({
        "model": "claude-sonnet-4-5",
        "max_completion_tokens": 100,
        "temperature": 0.5,
        "stop": ["END"],
        "user": "u-42",
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": "required",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is on this picture, and the weather?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/p.jpg"}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
        ]
    })
    .to_string();
    let (s, _, b) = gw.post("/v1/chat/completions", &[], &body).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let answer: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(answer["object"], "chat.completion");
    let log = gw.sim_requests().await;
    let req = &log[0];
    assert_eq!(req["headers"]["x-api-key"], "sk-sluice-simulated");
    let sent: serde_json::Value = serde_json::from_str(req["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent["system"], "Be brief.");
    assert_eq!(sent["max_tokens"], 100);
    assert_eq!(sent["temperature"], 0.5);
    assert_eq!(sent["stop_sequences"], serde_json::json!(["END"]));
    assert_eq!(sent["metadata"]["user_id"], "u-42");
    assert_eq!(sent["tools"][0]["name"], "get_weather");
    assert_eq!(
        sent["tools"][0]["input_schema"]["properties"]["city"]["type"],
        "string"
    );
    assert_eq!(sent["tool_choice"]["type"], "any");
    let user = &sent["messages"][0];
    assert_eq!(user["role"], "user");
    assert_eq!(
        user["content"][1]["source"],
        serde_json::json!({"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="})
    );
    assert_eq!(
        user["content"][2]["source"],
        serde_json::json!({"type": "url", "url": "https://example.com/p.jpg"})
    );
    let assistant = &sent["messages"][1];
    assert_eq!(
        assistant["content"][0],
        serde_json::json!({"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}})
    );
    let result = &sent["messages"][2];
    assert_eq!(result["role"], "user");
    assert_eq!(result["content"][0]["type"], "tool_result");
    assert_eq!(result["content"][0]["tool_use_id"], "call_1");
    // Untranslatable fields are a 400 naming the field, sent nowhere.
    let bad = serde_json::json!({"model": "claude-sonnet-4-5", "logprobs": true, "messages": [{"role": "user", "content": "x"}]}).to_string();
    let (s, _, b) = gw.post("/v1/chat/completions", &[], &bad).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["error"]["param"], "logprobs", "{v}");
    assert_eq!(gw.sim_requests().await.len(), 1);
    gw.stop().await;
}
