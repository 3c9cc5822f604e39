//! The interactive gateway end to end: the real server in-process on loopback against the
//! simulated provider (or a canned upstream where exact bytes matter).

mod common;

use common::{Gateway, canned, keyed_policy, metric};
use http::StatusCode;

const USAGE_JSON: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1767225600,"model":"gpt-4.1-mini-2025-04-14","choices":[{"index":0,"message":{"role":"assistant","content":"billing","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":2006,"completion_tokens":3,"total_tokens":2009,"prompt_tokens_details":{"cached_tokens":1920,"audio_tokens":0}}}"#;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[tokio::test]
async fn metrics_match_hand_computed_costs() {
    let up = canned(200, "application/json", vec![USAGE_JSON]).await;
    let gw = Gateway::start_at(&up.base_url(), None, vec![], |_| {}).await;
    let body =
        r#"{"model":"gpt-4.1-mini","messages":[{"role":"user","content":"My invoice is wrong."}]}"#;
    let (status, headers, answer) = gw.post("/v1/chat/completions", &[], body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        answer,
        USAGE_JSON.as_bytes(),
        "the answer is relayed unchanged"
    );
    assert_eq!(headers["x-sluice-tier"], "interactive");
    assert_eq!(headers["x-request-id"], "req_canned");

    // gpt-4.1-mini: input $0.40/M, cached $0.10/M, output $1.60/M.
    // 2006 prompt tokens of which 1920 cached -> 86 uncached.
    let cost = 86.0 * 0.40e-6 + 1920.0 * 0.10e-6 + 3.0 * 1.60e-6; // 0.0002312
    let baseline = 2006.0 * 0.40e-6 + 3.0 * 1.60e-6; // 0.0008072
    assert_eq!(headers["x-sluice-cost-usd"], "0.0002312");
    assert_eq!(headers["x-sluice-baseline-usd"], "0.0008072");

    let m = gw.metrics().await;
    let l = [
        ("route", "default"),
        ("client", "default"),
        ("provider", "openai"),
        ("model", "gpt-4.1-mini"),
    ];
    assert_eq!(
        metric(
            &m,
            "sluice_requests_total",
            &[
                l[0],
                l[1],
                l[2],
                l[3],
                ("tier", "interactive"),
                ("status", "200")
            ]
        ),
        1.0
    );
    assert!(close(metric(&m, "sluice_cost_usd_total", &l), cost), "{m}");
    assert!(close(
        metric(&m, "sluice_baseline_cost_usd_total", &l),
        baseline
    ));
    assert!(close(
        metric(
            &m,
            "sluice_savings_usd_total",
            &[l[3], ("lever", "prompt_cache")]
        ),
        baseline - cost
    ));
    assert_eq!(
        metric(&m, "sluice_tokens_total", &[l[3], ("kind", "input")]),
        86.0
    );
    assert_eq!(
        metric(&m, "sluice_tokens_total", &[l[3], ("kind", "cached_input")]),
        1920.0
    );
    assert_eq!(
        metric(&m, "sluice_tokens_total", &[l[3], ("kind", "output")]),
        3.0
    );
    assert_eq!(
        metric(&m, "sluice_overhead_seconds_count", &[("route", "default")]),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "sluice_upstream_duration_seconds_count",
            &[("provider", "openai"), ("tier", "interactive")]
        ),
        1.0
    );
    gw.stop().await;
}

const C1: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n";
const C2: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hello \\\"usage\\\": {\"},\"finish_reason\":null}],\"usage\":null}\n\n";
const C3: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n";
const CU: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":1200,\"completion_tokens\":4,\"total_tokens\":1204,\"prompt_tokens_details\":{\"cached_tokens\":1024}}}\n\n";
const DONE: &str = "data: [DONE]\n\n";

#[tokio::test]
async fn stream_is_relayed_byte_for_byte_without_the_usage_chunk() {
    let up = canned(200, "text/event-stream", vec![C1, C2, C3, CU, DONE]).await;
    let gw = Gateway::start_at(&up.base_url(), None, vec![], |_| {}).await;

    let body =
        r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let (status, headers, got) = gw.post("/v1/chat/completions", &[], body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-sluice-tier"], "interactive");
    assert_eq!(
        std::str::from_utf8(&got).unwrap(),
        [C1, C2, C3, DONE].concat()
    );
    let sent = up.bodies.lock().unwrap()[0].clone();
    assert_eq!(
        std::str::from_utf8(&sent).unwrap(),
        r#"{"stream_options":{"include_usage":true},"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
        "Sluice asks for usage and changes nothing else"
    );

    // A client that asked for usage gets the usage chunk, and its request is not changed.
    let body = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;
    let (_, _, got) = gw.post("/v1/chat/completions", &[], body).await;
    assert_eq!(
        std::str::from_utf8(&got).unwrap(),
        [C1, C2, C3, CU, DONE].concat()
    );
    assert_eq!(up.bodies.lock().unwrap()[1], body.as_bytes());

    // Both streams were priced from the usage chunk: gpt-4o-mini, 176 input, 1024 cached, 4 output.
    let m = gw.metrics().await;
    let cost = 2.0 * (176.0 * 0.15e-6 + 1024.0 * 0.075e-6 + 4.0 * 0.60e-6);
    assert!(
        close(
            metric(&m, "sluice_cost_usd_total", &[("model", "gpt-4o-mini")]),
            cost
        ),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "sluice_requests_total",
            &[("model", "gpt-4o-mini"), ("status", "200")]
        ),
        2.0
    );
    gw.stop().await;
}

#[tokio::test]
async fn streams_from_the_simulator_match_the_plain_answer() {
    let gw = Gateway::start(vec![], |_| {}).await;
    let plain =
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Tell me about rivers"}]}"#;
    let (_, _, json) = gw.post("/v1/chat/completions", &[], plain).await;
    let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let expected = json["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();

    let streamed = r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Tell me about rivers"}]}"#;
    let (status, headers, sse) = gw.post("/v1/chat/completions", &[], streamed).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = std::str::from_utf8(&sse).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let mut content = String::new();
    for line in text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|l| *l != "[DONE]")
    {
        let chunk: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            chunk["usage"].is_null(),
            "no usage chunk reaches a client that did not ask: {line}"
        );
        if let Some(c) = chunk["choices"][0]["delta"]["content"].as_str() {
            content.push_str(c);
        }
    }
    assert_eq!(content, expected);
    let m = gw.metrics().await;
    assert_eq!(
        metric(&m, "sluice_requests_total", &[("model", "gpt-4o-mini")]),
        2.0
    );
    assert!(metric(&m, "sluice_cost_usd_total", &[("model", "gpt-4o-mini")]) > 0.0);
    gw.stop().await;
}

fn long_system() -> String {
    "You classify support tickets. Be precise and terse. ".repeat(120)
}

#[tokio::test]
async fn cache_key_is_added_and_nothing_else_changes() {
    let routes = "[[route]]\nname = \"nohints\"\nmodels = [\"gpt-4.1\"]\ncache_hints = false\n";
    let gw = Gateway::start(
        vec![
            keyed_policy("acme", "sk-acme", routes),
            keyed_policy("beta", "sk-beta", ""),
        ],
        |_| {},
    )
    .await;
    let sys = long_system();
    let body = |user: &str, model: &str| {
        format!(
            "{{ \"model\": \"{model}\",\n  \"messages\": [{{\"role\": \"system\", \"content\": \"{sys}\"}}, {{\"role\":\"user\",\"content\":\"{user} caf\\u00e9\"}}] }}"
        )
    };
    let acme = [("authorization", "Bearer sk-acme")];
    let beta = [("authorization", "Bearer sk-beta")];
    let sent = [
        (body("first", "gpt-4o"), &acme),
        (body("second", "gpt-4o"), &acme),
        (body("first", "gpt-4o"), &beta),
        (body("first", "gpt-4.1"), &acme),
    ];
    for (b, h) in &sent {
        let (status, _, _) = gw.post("/v1/chat/completions", *h, b).await;
        assert_eq!(status, StatusCode::OK);
    }
    let log = gw.sim_requests().await;
    let received: Vec<String> = log
        .iter()
        .map(|r| r["body"].as_str().unwrap().to_owned())
        .collect();
    let key_of = |s: &str| -> String {
        let rest = s
            .strip_prefix("{\"prompt_cache_key\":\"")
            .expect("key spliced in first");
        let (key, after) = rest.split_once("\",").unwrap();
        assert!(key.starts_with("sluice-"));
        key.to_owned() + "|" + after
    };
    let parts: Vec<String> = received[..3].iter().map(|s| key_of(s)).collect();
    for (i, p) in parts.iter().enumerate() {
        let (_, after) = p.split_once('|').unwrap();
        assert_eq!(
            after,
            &sent[i].0[1..],
            "client bytes after the opening brace are untouched"
        );
    }
    let keys: Vec<&str> = parts.iter().map(|p| p.split_once('|').unwrap().0).collect();
    assert_eq!(
        keys[0], keys[1],
        "same client, route and prefix share a key"
    );
    assert_ne!(keys[0], keys[2], "another client gets another key");
    assert_eq!(
        received[3], sent[3].0,
        "cache hints off for this route: byte-for-byte"
    );

    // A client-set key is never replaced; a request without a shared prefix gets none.
    let own = format!(
        "{{\"model\":\"gpt-4o\",\"prompt_cache_key\":\"mine\",\"messages\":[{{\"role\":\"system\",\"content\":\"{sys}\"}}]}}"
    );
    let no_prefix = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
    gw.post("/v1/chat/completions", &acme, &own).await;
    gw.post("/v1/chat/completions", &acme, no_prefix).await;
    let log = gw.sim_requests().await;
    assert_eq!(log[4]["body"].as_str().unwrap(), own);
    assert_eq!(log[5]["body"].as_str().unwrap(), no_prefix);
    // The provider key replaces the gateway key.
    assert_eq!(
        log[0]["headers"]["authorization"],
        "Bearer sk-sluice-simulated"
    );
    gw.stop().await;
}

#[tokio::test]
async fn the_simulated_cache_shows_in_cost() {
    let gw = Gateway::start(vec![], |_| {}).await;
    let sys = long_system();
    for user in ["one", "two"] {
        let b = format!(
            "{{\"model\":\"gpt-4o\",\"messages\":[{{\"role\":\"system\",\"content\":\"{sys}\"}},{{\"role\":\"user\",\"content\":\"{user}\"}}]}}"
        );
        let (_, h, body) = gw.post("/v1/chat/completions", &[], &b).await;
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let cached = v["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap();
        let cost: f64 = h["x-sluice-cost-usd"].to_str().unwrap().parse().unwrap();
        let baseline: f64 = h["x-sluice-baseline-usd"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        if user == "one" {
            assert_eq!(cached, 0);
            assert!(close(cost, baseline));
        } else {
            assert!(cached >= 1024, "{v}");
            assert!(cost < baseline);
        }
    }
    gw.stop().await;
}

async fn error_of(
    gw: &Gateway,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, serde_json::Value) {
    let mut b = http::Request::builder().method(method).uri(gw.url(path));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let (status, h, body) = gw
        .send(
            b.body(http_body_util::Full::new(bytes::Bytes::from(
                body.to_owned(),
            )))
            .unwrap(),
        )
        .await;
    assert_eq!(h["content-type"], "application/json");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    for k in ["message", "type", "param", "code"] {
        assert!(
            v["error"].get(k).is_some(),
            "OpenAI error envelope lacks {k}: {v}"
        );
    }
    (status, v)
}

#[tokio::test]
async fn gateway_errors_are_openai_shaped_with_the_right_status() {
    let routes = "[[route]]\nname = \"known\"\n";
    let gw = Gateway::start(vec![keyed_policy("acme", "sk-acme", routes)], |c| {
        c.max_body_bytes = 4096
    })
    .await;
    let auth = ("authorization", "Bearer sk-acme");
    let ok_body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    let big = format!(
        "{{\"model\":\"gpt-4o-mini\",\"messages\":[{{\"role\":\"user\",\"content\":\"{}\"}}]}}",
        "x".repeat(5000)
    );
    // (method, path, headers, body, expected status, error.param, error.code)
    type Case<'a> = (
        &'a str,
        &'a str,
        Vec<(&'a str, &'a str)>,
        String,
        u16,
        Option<&'a str>,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/v1/chat/completions",
            vec![auth, ("x-sla", "whenever")],
            ok_body.into(),
            400,
            Some("x-sla"),
            "invalid_sla",
        ),
        (
            "POST",
            "/v1/chat/completions",
            vec![auth],
            "{not json".into(),
            400,
            None,
            "invalid_request",
        ),
        (
            "POST",
            "/v1/chat/completions",
            vec![auth],
            r#"{"messages":[]}"#.into(),
            400,
            Some("model"),
            "missing_required_parameter",
        ),
        (
            "POST",
            "/v1/chat/completions",
            vec![auth, ("x-sluice-route", "nope")],
            ok_body.into(),
            400,
            Some("x-sluice-route"),
            "unknown_route",
        ),
        (
            "POST",
            "/v1/chat/completions",
            vec![],
            ok_body.into(),
            401,
            None,
            "missing_api_key",
        ),
        (
            "POST",
            "/v1/chat/completions",
            vec![("authorization", "Bearer sk-wrong")],
            ok_body.into(),
            401,
            None,
            "invalid_api_key",
        ),
        (
            "GET",
            "/v1/models",
            vec![("x-api-key", "sk-wrong")],
            String::new(),
            401,
            None,
            "invalid_api_key",
        ),
        (
            "POST",
            "/v1/nothing-here",
            vec![auth],
            ok_body.into(),
            404,
            None,
            "unknown_url",
        ),
        (
            "GET",
            "/v1/chat/completions",
            vec![auth],
            String::new(),
            405,
            None,
            "method_not_allowed",
        ),
        (
            "POST",
            "/metrics",
            vec![auth],
            String::new(),
            405,
            None,
            "method_not_allowed",
        ),
        (
            "POST",
            "/v1/chat/completions",
            vec![auth],
            big,
            413,
            None,
            "request_too_large",
        ),
    ];
    for (method, path, headers, body, status, param, code) in cases {
        let (s, v) = error_of(&gw, method, path, &headers, &body).await;
        assert_eq!(s.as_u16(), status, "{method} {path} {headers:?}: {v}");
        assert_eq!(v["error"]["param"].as_str(), param, "{v}");
        assert_eq!(v["error"]["code"], code, "{v}");
    }
    // The x-sla message names the header and the value.
    let (_, v) = error_of(
        &gw,
        "POST",
        "/v1/chat/completions",
        &[auth, ("x-sla", "soon")],
        ok_body,
    )
    .await;
    assert!(
        v["error"]["message"].as_str().unwrap().contains("x-sla"),
        "{v}"
    );
    // A good key with a good x-sla and a known route hint works.
    let (s, h, _) = gw
        .post(
            "/v1/chat/completions",
            &[auth, ("x-sla", "semi"), ("x-sluice-route", "known")],
            ok_body,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["x-sluice-tier"], "interactive");
    gw.stop().await;
}

#[tokio::test]
async fn upstream_errors_pass_through_unchanged() {
    const RATE: &str = r#"{"error": {"message": "Rate limit reached for gpt-4o-mini", "type": "tokens", "param": null, "code": "rate_limit_exceeded"}}"#;
    let up = canned(429, "application/json", vec![RATE]).await;
    let gw = Gateway::start_at(&up.base_url(), None, vec![], |_| {}).await;
    let ok_body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    let (s, h, b) = gw.post("/v1/chat/completions", &[], ok_body).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(b, RATE.as_bytes());
    assert_eq!(h["x-request-id"], "req_canned");
    // Streaming requests that fail upstream get the error as-is, too.
    let (s, _, b) = gw
        .post(
            "/v1/chat/completions",
            &[],
            r#"{"model":"gpt-4o-mini","stream":true,"messages":[]}"#,
        )
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(b, RATE.as_bytes());
    let m = gw.metrics().await;
    assert_eq!(
        metric(&m, "sluice_requests_total", &[("status", "429")]),
        2.0
    );
    gw.stop().await;

    let gw = Gateway::start(vec![], |_| {}).await;
    let (s, _, b) = gw
        .post("/v1/chat/completions", &[("x-sim-fault", "500")], ok_body)
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["error"]["type"], "server_error");
    gw.stop().await;
}

#[tokio::test]
async fn unreachable_and_slow_providers_are_502_and_504() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}/v1", closed.local_addr().unwrap());
    drop(closed);
    let gw = Gateway::start_at(&dead, None, vec![], |_| {}).await;
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    let (s, v) = error_of(&gw, "POST", "/v1/chat/completions", &[], body).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{v}");
    assert_eq!(v["error"]["code"], "upstream_unavailable");
    let m = gw.metrics().await;
    assert_eq!(
        metric(&m, "sluice_requests_total", &[("status", "502")]),
        1.0
    );
    gw.stop().await;

    let gw = Gateway::start(vec![], |c| {
        c.upstream.response_timeout = std::time::Duration::from_millis(200)
    })
    .await;
    let (s, v) = error_of(
        &gw,
        "POST",
        "/v1/chat/completions",
        &[("x-sim-latency-ms", "30000")],
        body,
    )
    .await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT, "{v}");
    assert_eq!(v["error"]["code"], "upstream_timeout");
    gw.stop().await;
}

#[tokio::test]
async fn response_cache_answers_identical_requests() {
    let routes = "[[route]]\nname = \"faq\"\nmodels = [\"gpt-5\"]\nresponse_cache_ttl = \"10m\"\n";
    let gw = Gateway::start(
        vec![
            keyed_policy("acme", "sk-acme", routes),
            keyed_policy("beta", "sk-beta", routes),
        ],
        |_| {},
    )
    .await;
    let acme = [("authorization", "Bearer sk-acme")];
    let a = r#"{"model":"gpt-5","messages":[{"role":"user","content":"opening hours?"}]}"#;
    let same = "{ \"messages\": [ {\"content\": \"opening hours?\", \"role\": \"user\"} ],\n \"model\": \"gpt-5\" }";
    let (_, h1, b1) = gw.post("/v1/chat/completions", &acme, a).await;
    let (_, h2, b2) = gw.post("/v1/chat/completions", &acme, same).await;
    assert_eq!(h1["x-sluice-tier"], "interactive");
    assert_eq!(h2["x-sluice-tier"], "response_cache");
    assert_eq!(h2["x-sluice-cost-usd"], "0");
    assert_eq!(h2["x-sluice-baseline-usd"], h1["x-sluice-baseline-usd"]);
    assert_eq!(b1, b2);
    // Another client never sees acme's cached answer.
    let (_, h3, _) = gw
        .post(
            "/v1/chat/completions",
            &[("authorization", "Bearer sk-beta")],
            a,
        )
        .await;
    assert_eq!(h3["x-sluice-tier"], "interactive");
    // Streaming requests bypass the cache.
    let s = r#"{"model":"gpt-5","stream":true,"messages":[{"role":"user","content":"opening hours?"}]}"#;
    let (_, h4, _) = gw.post("/v1/chat/completions", &acme, s).await;
    assert_eq!(h4["x-sluice-tier"], "interactive");
    assert_eq!(gw.sim_requests().await.len(), 3);

    let m = gw.metrics().await;
    let baseline: f64 = h1["x-sluice-baseline-usd"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let saved = metric(
        &m,
        "sluice_savings_usd_total",
        &[("client", "acme"), ("lever", "response_cache")],
    );
    assert!((saved - baseline).abs() < 1e-9, "{saved} vs {baseline}");
    assert_eq!(
        metric(&m, "sluice_requests_total", &[("tier", "response_cache")]),
        1.0
    );
    assert_eq!(
        metric(&m, "sluice_cost_usd_total", &[("tier", "response_cache")]),
        0.0
    );
    gw.stop().await;
}

#[tokio::test]
async fn unpriced_models_are_answered_and_counted_as_other() {
    let gw = Gateway::start(vec![], |_| {}).await;
    let body = r#"{"model":"my-private-finetune-7","messages":[{"role":"user","content":"hi"}]}"#;
    let (s, h, _) = gw.post("/v1/chat/completions", &[], body).await;
    assert_eq!(s, StatusCode::OK);
    assert!(h.get("x-sluice-cost-usd").is_none());
    let m = gw.metrics().await;
    assert_eq!(
        metric(&m, "sluice_requests_total", &[("model", "other")]),
        1.0
    );
    assert!(
        !m.contains("my-private-finetune"),
        "raw model names never become labels"
    );
    gw.stop().await;
}

#[tokio::test]
async fn other_endpoints_pass_through() {
    let gw = Gateway::start(vec![keyed_policy("acme", "sk-acme", "")], |_| {}).await;
    let auth = [("authorization", "Bearer sk-acme")];
    let (s, h, b) = gw
        .post(
            "/v1/embeddings",
            &auth,
            r#"{"model":"text-embedding-3-small","input":["a","b"],"encoding_format":"float"}"#,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&b).unwrap()["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(h.contains_key("x-sluice-cost-usd"));
    let (s, _, _) = gw
        .post(
            "/v1/completions",
            &auth,
            r#"{"model":"gpt-4o-mini","prompt":"Say hi"}"#,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, b) = gw
        .post(
            "/v1/responses",
            &auth,
            r#"{"model":"gpt-4o-mini","input":"Say hi"}"#,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let (s, _, b) = gw.get("/v1/models", &auth).await;
    assert_eq!(s, StatusCode::OK);
    let models: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert!(
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "gpt-4o-mini")
    );
    let (s, _, b) = gw.get("/v1/models/gpt-4o-mini", &auth).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&b).unwrap()["id"],
        "gpt-4o-mini"
    );
    let (s, _, _) = gw.get("/v1/models/not-a-model", &auth).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    for p in ["/healthz", "/readyz"] {
        assert_eq!(gw.get(p, &[]).await.0, StatusCode::OK);
    }
    let m = gw.metrics().await;
    assert!(
        metric(
            &m,
            "sluice_cost_usd_total",
            &[("model", "text-embedding-3-small")]
        ) > 0.0
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_dropped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = Gateway::start(vec![], |c| {
        c.header_read_timeout = std::time::Duration::from_millis(200)
    })
    .await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    // The server closes the connection (possibly after a 408) instead of waiting forever.
    let read =
        tokio::time::timeout(std::time::Duration::from_secs(20), s.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "connection still held open by a silent client"
    );
    gw.stop().await;
}
