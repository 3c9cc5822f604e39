//! A caller's own `service_tier`: passed through untouched, never batched nor sent to flex,
//! and priced at the tier the provider reports back, with baseline = cost (sending it
//! directly would have cost the same). Expected dollars are computed by hand from the
//! rates in `shared/reference/prices.md`.

mod common;

use common::{Gateway, canned, metric};
use http::{HeaderMap, StatusCode};
use serde_json::Value;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

/// A price header as a number (headers carry 10 decimals).
fn usd(h: &HeaderMap, name: &str) -> f64 {
    h[name].to_str().unwrap().parse().unwrap()
}

fn assert_usd(h: &HeaderMap, name: &str, want: f64) {
    let got = usd(h, name);
    assert!((got - want).abs() < 1e-10, "{name}: {got} vs {want}");
}

/// Cost, baseline and the sum of every lever's saving for `model` in the metrics.
fn totals(m: &str, model: &str) -> (f64, f64, f64) {
    let l = [("model", model)];
    (
        metric(m, "sluice_cost_usd_total", &l),
        metric(m, "sluice_baseline_cost_usd_total", &l),
        metric(m, "sluice_savings_usd_total", &l),
    )
}

/// `(uncached input, cached input, output)` of an OpenAI chat or Responses usage.
fn tokens(v: &Value) -> (f64, f64, f64) {
    let u = &v["usage"];
    let (prompt, cached, output) = if u["prompt_tokens"].is_u64() {
        (
            &u["prompt_tokens"],
            &u["prompt_tokens_details"]["cached_tokens"],
            &u["completion_tokens"],
        )
    } else {
        (
            &u["input_tokens"],
            &u["input_tokens_details"]["cached_tokens"],
            &u["output_tokens"],
        )
    };
    let (prompt, cached) = (prompt.as_u64().unwrap(), cached.as_u64().unwrap_or(0));
    (
        (prompt - cached) as f64,
        cached as f64,
        output.as_u64().unwrap() as f64,
    )
}

const PRIORITY_JSON: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1767225600,"model":"gpt-5-2025-08-07","choices":[{"index":0,"message":{"role":"assistant","content":"billing","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":2006,"completion_tokens":3,"total_tokens":2009,"prompt_tokens_details":{"cached_tokens":1920,"audio_tokens":0}},"service_tier":"priority","system_fingerprint":"fp_1"}"#;

#[tokio::test]
async fn reported_priority_is_priced_at_priority_rates_with_no_savings() {
    let up = canned(200, "application/json", vec![PRIORITY_JSON]).await;
    let gw = Gateway::start_at(&up.base_url(), None, vec![], |_| {}).await;
    // x-sla: 24h would batch this request; the caller's tier keeps it synchronous.
    let body = r#"{"model":"gpt-5","service_tier":"priority","messages":[{"role":"user","content":"My invoice is wrong."}]}"#;
    let (status, h, answer) = gw
        .post("/v1/chat/completions", &[("x-sla", "24h")], body)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer, PRIORITY_JSON.as_bytes());
    assert_eq!(h["x-sluice-tier"], "interactive");
    assert!(h.get("x-sluice-job-id").is_none());
    assert_eq!(
        up.bodies.lock().unwrap()[0],
        body.as_bytes(),
        "the caller's tier reaches the provider untouched"
    );
    // gpt-5 Fast / Priority: input $2.50/M, cached $0.25/M, output $20/M.
    // 86 uncached: 215e-6; 1920 cached: 480e-6; 3 output: 60e-6.
    let cost = 86.0 * 2.5e-6 + 1920.0 * 0.25e-6 + 3.0 * 20e-6;
    assert!(close(cost, 755e-6));
    assert_usd(&h, "x-sluice-cost-usd", 755e-6);
    assert_usd(&h, "x-sluice-baseline-usd", 755e-6);
    let m = gw.metrics().await;
    let (c, b, s) = totals(&m, "gpt-5");
    assert!(close(c, cost) && close(b, cost) && s == 0.0, "{m}");
    assert_eq!(
        metric(
            &m,
            "sluice_requests_total",
            &[("model", "gpt-5"), ("tier", "interactive")]
        ),
        1.0
    );
    gw.stop().await;
}

const F1: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4.1-mini\",\"service_tier\":\"fast\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"hi\"},\"finish_reason\":null}],\"usage\":null}\n\n";
const F2: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4.1-mini\",\"service_tier\":\"fast\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n";
const FU: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4.1-mini\",\"service_tier\":\"fast\",\"choices\":[],\"usage\":{\"prompt_tokens\":1200,\"completion_tokens\":4,\"total_tokens\":1204,\"prompt_tokens_details\":{\"cached_tokens\":1024}}}\n\n";
const DONE: &str = "data: [DONE]\n\n";

#[tokio::test]
async fn a_stream_reported_fast_is_priced_at_priority_rates() {
    let up = canned(200, "text/event-stream", vec![F1, F2, FU, DONE]).await;
    let gw = Gateway::start_at(&up.base_url(), None, vec![], |_| {}).await;
    let body = r#"{"model":"gpt-4.1-mini","stream":true,"service_tier":"fast","messages":[{"role":"user","content":"hi"}]}"#;
    let (status, _, got) = gw.post("/v1/chat/completions", &[], body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(std::str::from_utf8(&got).unwrap(), [F1, F2, DONE].concat());
    let sent: Value = serde_json::from_slice(&up.bodies.lock().unwrap()[0]).unwrap();
    assert_eq!(sent["service_tier"], "fast");
    // gpt-4.1-mini Fast / Priority: input $0.70/M, cached $0.175/M, output $2.80/M.
    // 176 uncached: 123.2e-6; 1024 cached: 179.2e-6; 4 output: 11.2e-6.
    let cost = 176.0 * 0.70e-6 + 1024.0 * 0.175e-6 + 4.0 * 2.80e-6;
    assert!(close(cost, 313.6e-6));
    let m = gw
        .metrics_until("the stream's cost", |m| {
            metric(m, "sluice_cost_usd_total", &[("model", "gpt-4.1-mini")]) > 0.0
        })
        .await;
    let (c, b, s) = totals(&m, "gpt-4.1-mini");
    assert!(close(c, cost) && close(b, cost) && s == 0.0, "{m}");
    gw.stop().await;
}

const PRIORITY_MESSAGE: &str = r#"{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"billing"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":14,"cache_creation_input_tokens":4102,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":4102},"output_tokens":4,"service_tier":"priority"}}"#;

#[tokio::test]
async fn anthropic_priority_is_priced_at_standard_rates_with_no_savings() {
    let up = canned(200, "application/json", vec![PRIORITY_MESSAGE]).await;
    let gw = Gateway::start_at(&up.base_url(), None, vec![], |_| {}).await;
    // The native route and the translated one read the same usage.service_tier.
    let native = r#"{"model":"claude-sonnet-4-5","max_tokens":256,"messages":[{"role":"user","content":"My invoice is wrong."}]}"#;
    let (s, _, b) = gw.post("/v1/messages", &[], native).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b, PRIORITY_MESSAGE.as_bytes());
    let chat = r#"{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"My invoice is wrong."}]}"#;
    let (s, h, _) = gw.post("/v1/chat/completions", &[], chat).await;
    assert_eq!(s, StatusCode::OK);
    // prices.md lists no Anthropic priority rates: standard, input $3/M, 1h write $6/M,
    // output $15/M. 14×3e-6 + 4102×6e-6 + 4×15e-6 = 42e-6 + 24612e-6 + 60e-6.
    let cost = 14.0 * 3e-6 + 4102.0 * 6e-6 + 4.0 * 15e-6;
    assert!(close(cost, 0.024714));
    assert_usd(&h, "x-sluice-cost-usd", 0.024714);
    assert_usd(&h, "x-sluice-baseline-usd", 0.024714);
    let m = gw.metrics().await;
    let (c, b, s) = totals(&m, "claude-sonnet-4-5");
    // Two answers; no (negative) cache-write saving is claimed for a tier Sluice did not pick.
    assert!(
        close(c, 2.0 * cost) && close(b, 2.0 * cost) && s == 0.0,
        "{m}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn caller_tiers_against_the_simulator() {
    let gw = Gateway::start(vec![], |_| {}).await;

    // A caller's flex: x-sla semi would pick flex anyway; it is the caller's, so no saving.
    let body = r#"{"model":"gpt-5-mini","service_tier":"flex","messages":[{"role":"user","content":"Summarise the tickets"}]}"#;
    let (s, h, answer) = gw
        .post("/v1/chat/completions", &[("x-sla", "semi")], body)
        .await;
    assert_eq!(s, StatusCode::OK);
    let v: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(v["service_tier"], "flex");
    // Named `flex` (CONTRACT "Triage"), though accounted as the caller's own choice.
    assert_eq!(h["x-sluice-tier"], "flex");
    // gpt-5-mini flex: input $0.125/M, cached $0.0125/M, output $1/M.
    let (i, c, o) = tokens(&v);
    let flex = i * 0.125e-6 + c * 0.0125e-6 + o * 1e-6;
    assert_usd(&h, "x-sluice-cost-usd", flex);
    assert_usd(&h, "x-sluice-baseline-usd", flex);

    // `fast` on the Responses API, answered `priority`: gpt-5 $2.50 / $0.25 / $20.
    let body = r#"{"model":"gpt-5","service_tier":"fast","input":"Summarise the tickets"}"#;
    let (s, h, answer) = gw.post("/v1/responses", &[("x-sla", "24h")], body).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["x-sluice-tier"], "interactive");
    let v: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(v["service_tier"], "priority");
    let (i, c, o) = tokens(&v);
    let priority = i * 2.5e-6 + c * 0.25e-6 + o * 20e-6;
    assert_usd(&h, "x-sluice-cost-usd", priority);
    assert_usd(&h, "x-sluice-baseline-usd", priority);

    // `ultrafast` on gpt-5.6-sol: no ultrafast rate in the table, so standard $5 / $0.50 / $30.
    let body =
        r#"{"model":"gpt-5.6-sol","service_tier":"ultrafast","input":"Summarise the tickets"}"#;
    let (s, h, answer) = gw.post("/v1/responses", &[], body).await;
    assert_eq!(s, StatusCode::OK);
    let v: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(v["service_tier"], "ultrafast");
    let (i, c, o) = tokens(&v);
    let standard = i * 5e-6 + c * 0.5e-6 + o * 30e-6;
    assert_usd(&h, "x-sluice-cost-usd", standard);
    assert_usd(&h, "x-sluice-baseline-usd", standard);

    // A ramp-rate downgrade: `fast` asked, `default` reported, standard rates
    // (gpt-4.1 $2 / $0.50 / $8); an uncached prompt, so baseline = cost here too.
    let body = r#"{"model":"gpt-4.1","service_tier":"fast","messages":[{"role":"user","content":"Summarise the tickets"}]}"#;
    let (s, h, answer) = gw
        .post(
            "/v1/chat/completions",
            &[("x-sim-fault", "downgrade")],
            body,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let v: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(v["service_tier"], "default");
    let (i, c, o) = tokens(&v);
    assert_eq!(c, 0.0);
    assert_usd(&h, "x-sluice-cost-usd", i * 2e-6 + o * 8e-6);
    assert_usd(&h, "x-sluice-baseline-usd", i * 2e-6 + o * 8e-6);

    // A value unknown to Sluice is passed through untouched and breaks nothing; with x-sla
    // semi on a flex model it is still the caller's tier: not replaced by flex. (The
    // simulator reports `default` for it, so it is an ordinary standard answer.)
    let body = r#"{"model":"gpt-5","service_tier":"turbo-2027","messages":[{"role":"user","content":"hi"}]}"#;
    let (s, h, answer) = gw
        .post("/v1/chat/completions", &[("x-sla", "semi")], body)
        .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(h["x-sluice-tier"], "interactive");
    let v: Value = serde_json::from_slice(&answer).unwrap();
    let (i, _, o) = tokens(&v);
    assert_usd(&h, "x-sluice-cost-usd", i * 1.25e-6 + o * 10e-6);

    let sent: Vec<String> = gw
        .sim_requests()
        .await
        .iter()
        .filter_map(|r| {
            let body: Value = serde_json::from_str(r["body"].as_str()?).ok()?;
            Some(body["service_tier"].as_str()?.to_owned())
        })
        .collect();
    assert_eq!(
        sent,
        ["flex", "fast", "ultrafast", "fast", "turbo-2027"],
        "every tier reached the provider as the caller sent it"
    );
    gw.stop().await;
}
