//! Sluice adds a request field only where the destination is known to accept it: OpenAI's
//! own API gets `prompt_cache_key`, `stream_options` and `service_tier`; Google's
//! OpenAI-compatible layer only `stream_options`; any other OpenAI-compatible server
//! nothing the client did not send.

mod common;

use common::Gateway;
use http::StatusCode;
use sluice::config::Accepts;
use sluice::types::Provider;

fn body(model: &str, stream: bool) -> String {
    serde_json::json!({
        "model": model,
        "stream": stream,
        "messages": [
            {"role": "system", "content": "You classify support tickets. ".repeat(40)},
            {"role": "user", "content": "My invoice is wrong."}
        ],
        "tools": [{"type": "function", "function": {"name": "route_ticket", "parameters": {
            "type": "object", "properties": {"team": {"type": "string"}}, "required": ["team"]}}}]
    })
    .to_string()
}

async fn upstream_body(gw: &Gateway) -> (String, serde_json::Value) {
    let log = gw.sim_requests().await;
    let last = log.last().unwrap();
    let text = last["body"].as_str().unwrap().to_owned();
    (
        last["path"].as_str().unwrap_or_default().to_owned(),
        serde_json::from_str(&text).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_gets_the_cache_key_and_a_custom_server_gets_nothing_added() {
    let gw = Gateway::start(vec![], |_| {}).await;
    for stream in [false, true] {
        let (s, _, b) = gw
            .post("/v1/chat/completions", &[], &body("gpt-4o-mini", stream))
            .await;
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
        let (_, sent) = upstream_body(&gw).await;
        assert!(
            sent["prompt_cache_key"]
                .as_str()
                .unwrap()
                .starts_with("sluice-")
        );
        assert_eq!(sent.get("stream_options").is_some(), stream);
    }
    gw.stop().await;

    // The same simulator, configured as an unknown OpenAI-compatible server.
    let gw = Gateway::start(vec![], |c| {
        c.providers[Provider::OpenAi as usize].accepts = Accepts::NONE;
    })
    .await;
    for stream in [false, true] {
        let client = body("gpt-4o-mini", stream);
        let (s, _, b) = gw.post("/v1/chat/completions", &[], &client).await;
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
        let (_, sent) = upstream_body(&gw).await;
        let client: serde_json::Value = serde_json::from_str(&client).unwrap();
        assert_eq!(sent, client, "nothing added for a server of unknown fields");
        if stream {
            assert!(String::from_utf8_lossy(&b).ends_with("data: [DONE]\n\n"));
        }
    }
    // Nor is flex chosen for it: a semi SLA on a flex model is answered interactively.
    let (s, h, _) = gw
        .post(
            "/v1/chat/completions",
            &[("x-sla", "semi")],
            &body("gpt-5-mini", false),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["x-sluice-tier"], "interactive");
    let (_, sent) = upstream_body(&gw).await;
    assert!(sent.get("service_tier").is_none());
    gw.stop().await;
}

/// Google's OpenAI-compatible layer refuses `prompt_cache_key` (the simulator's Google
/// route answers it with Google's array-wrapped 400): a Gemini request with a system
/// prompt and tools must reach it without one, JSON and stream alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gemini_request_with_a_system_prompt_and_tools_succeeds() {
    let gw = Gateway::start(vec![], |_| {}).await;
    for stream in [false, true] {
        let (s, _, b) = gw
            .post(
                "/v1/chat/completions",
                &[],
                &body("gemini-2.5-flash", stream),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
        let (uri, sent) = upstream_body(&gw).await;
        assert!(uri.ends_with("/openai/chat/completions"), "{uri}");
        assert!(sent.get("prompt_cache_key").is_none(), "{sent}");
        // Google's layer takes stream_options, so the stream is metered.
        assert_eq!(sent.get("stream_options").is_some(), stream, "{sent}");
        if stream {
            assert!(String::from_utf8_lossy(&b).ends_with("data: [DONE]\n\n"));
        } else {
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
            assert_eq!(v["object"], "chat.completion");
        }
    }
    // What the Google layer would have said to a prompt_cache_key: its own 400 shape.
    let sim = gw.sim.as_ref().unwrap();
    let req = http::Request::post(format!("http://{}/v1/openai/chat/completions", sim.addr))
        .header("authorization", "Bearer sk-sluice-simulated")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            serde_json::json!({"model": "gemini-2.5-flash", "prompt_cache_key": "k",
                "messages": [{"role": "user", "content": "hi"}]})
            .to_string(),
        )))
        .unwrap();
    let (s, _, b) = gw.send(req).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v[0]["error"]["status"], "INVALID_ARGUMENT", "{v}");
    assert!(
        v[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("prompt_cache_key")
    );
    gw.stop().await;
}
