//! The two request kinds deferred to a Batch API since the provider seam landed, end to
//! end against the in-process simulator, on the wire (what the SDKs hide):
//!
//! * `POST /v1/responses` → OpenAI Batch API lines with `"url": "/v1/responses"`: held (the
//!   Response object), `Prefer: respond-async` (202, the job result is the Response object),
//!   `stream: true` (keep-alives, then the Responses event stream, no `[DONE]`);
//! * `claude-*` on `POST /v1/chat/completions` → Anthropic Message Batches, answered as an
//!   OpenAI `chat.completion` (held, async, `chat.completion.chunk` SSE with or without the
//!   usage chunk), priced at the batch rate.
//!
//! Both with `Idempotency-Key`: one job, one batch line upstream, 422 for another body.
//! The simulator's `/sim/batches/stats` counts the lines it received per custom_id (= job
//! id) and `/sim/requests` shows what the gateway sent it.
//!
//! The last test runs `tests/node/deferred.test.mjs` (the official OpenAI Node SDK on both
//! paths) against a gateway with the same fast batch settings.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Gateway, keyed_policy, metric};
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use sluice::simulate::SimConfig;

const KEY: &str = "sk-paths";
const AUTH: (&str, &str) = ("authorization", "Bearer sk-paths");
const OTHER: (&str, &str) = ("authorization", "Bearer sk-paths-other");
const HELD: (&str, &str) = ("x-sla", "24h");
const ASYNC: (&str, &str) = ("prefer", "respond-async");
const SLA_2M: (&str, &str) = ("x-sla", "2m");
/// A model only these tests defer through the Responses API.
const RESPONSES_MODEL: &str = "gpt-4.1";
const CLAUDE: &str = "claude-haiku-4-5";
/// Bounded polling of job results.
const POLLS: u32 = 400;
const POLL: Duration = Duration::from_millis(25);

fn sim() -> SimConfig {
    SimConfig {
        batch_turnaround: Duration::from_millis(100),
        ..SimConfig::default()
    }
}

async fn start() -> Gateway {
    start_with(|_| {}).await
}

async fn start_with(tweak: impl FnOnce(&mut sluice::config::Config)) -> Gateway {
    Gateway::start_sim(
        sim(),
        vec![
            keyed_policy("paths", KEY, ""),
            keyed_policy("paths-other", "sk-paths-other", ""),
        ],
        |c| {
            c.batch.keep_alive = Duration::from_millis(20);
            tweak(c);
        },
    )
    .await
}

fn responses_body(input: &str) -> String {
    json!({"model": RESPONSES_MODEL, "instructions": "Answer in one line.", "input": input})
        .to_string()
}

fn claude_body(user: &str) -> String {
    json!({"model": CLAUDE, "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": user}
    ]})
    .to_string()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn parse(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name)
        .unwrap_or_else(|| panic!("no {name} in {h:?}"))
        .to_str()
        .unwrap()
}

fn job_id(h: &HeaderMap) -> String {
    let id = header(h, "x-sluice-job-id").to_owned();
    assert!(id.starts_with("job_"), "{id}");
    id
}

/// The text of a Responses API `response` object (all `output_text` parts).
fn output_text(response: &Value) -> String {
    response["output"]
        .as_array()
        .unwrap_or_else(|| panic!("no output in {response}"))
        .iter()
        .filter(|item| item["type"] == "message")
        .flat_map(|item| item["content"].as_array().cloned().unwrap_or_default())
        .filter(|part| part["type"] == "output_text")
        .map(|part| part["text"].as_str().unwrap().to_owned())
        .collect()
}

fn chat_content(completion: &Value) -> String {
    completion["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("no content in {completion}"))
        .to_owned()
}

/// `x-sluice-cost-usd` is half of `x-sluice-baseline-usd` (the batch rate, no cache tokens;
/// both headers are rounded to 10 decimals).
fn assert_half_price(h: &HeaderMap) {
    let cost: f64 = header(h, "x-sluice-cost-usd").parse().unwrap();
    let baseline: f64 = header(h, "x-sluice-baseline-usd").parse().unwrap();
    assert!(cost > 0.0, "cost {cost}");
    assert!(
        (baseline - 2.0 * cost).abs() <= 2e-10,
        "cost {cost} is not half of baseline {baseline}"
    );
}

/// In how many created batches the simulator saw `id` as a line.
async fn lines_for(gw: &Gateway, id: &str) -> u64 {
    let stats = gw.sim_get("/sim/batches/stats").await;
    stats["lines_by_custom_id"][id].as_u64().unwrap_or(0)
}

async fn all_lines(gw: &Gateway) -> serde_json::Map<String, Value> {
    let stats = gw.sim_get("/sim/batches/stats").await;
    stats["lines_by_custom_id"].as_object().unwrap().clone()
}

/// Every line of every batch input file the gateway uploaded.
async fn uploaded_lines(gw: &Gateway) -> Vec<Value> {
    gw.sim_requests()
        .await
        .iter()
        .filter(|r| r["method"] == "POST" && r["path"] == "/v1/files")
        .flat_map(|r| {
            r["body"]
                .as_str()
                .unwrap()
                .lines()
                .filter(|l| l.starts_with("{\"custom_id\""))
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The bodies of every `POST /v1/batches` (OpenAI batch creations).
async fn openai_creates(gw: &Gateway) -> Vec<Value> {
    gw.sim_requests()
        .await
        .iter()
        .filter(|r| r["method"] == "POST" && r["path"] == "/v1/batches")
        .map(|r| serde_json::from_str(r["body"].as_str().unwrap()).unwrap())
        .collect()
}

/// Every request of every Message Batch the gateway created.
async fn message_batch_requests(gw: &Gateway) -> Vec<Value> {
    gw.sim_requests()
        .await
        .iter()
        .filter(|r| r["method"] == "POST" && r["path"] == "/v1/messages/batches")
        .flat_map(|r| {
            let v: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
            v["requests"].as_array().unwrap().clone()
        })
        .collect()
}

/// How many requests to `path` carried `marker` in their body.
async fn posts_with(gw: &Gateway, path: &str, marker: &str) -> usize {
    gw.sim_requests()
        .await
        .iter()
        .filter(|r| r["path"] == path && r["body"].as_str().unwrap_or("").contains(marker))
        .count()
}

/// Polls `/sluice/v1/jobs/{id}/result` until it is 200 (bounded): headers and body.
async fn job_result(gw: &Gateway, id: &str) -> (HeaderMap, bytes::Bytes) {
    let path = format!("/sluice/v1/jobs/{id}/result");
    for _ in 0..POLLS {
        let (s, h, b) = gw.get(&path, &[AUTH]).await;
        if s == StatusCode::OK {
            return (h, b);
        }
        assert_eq!(
            s,
            StatusCode::ACCEPTED,
            "{path}: {}",
            String::from_utf8_lossy(&b)
        );
        assert!(h.contains_key("retry-after"), "{h:?}");
        tokio::time::sleep(POLL).await;
    }
    panic!("{path} was never answered");
}

/// SSE text as `(event name, data)` pairs; comments are counted apart.
struct Sse {
    keep_alives: usize,
    events: Vec<(Option<String>, String)>,
}

fn sse(body: &[u8]) -> Sse {
    let text = std::str::from_utf8(body).unwrap();
    let mut out = Sse {
        keep_alives: 0,
        events: Vec::new(),
    };
    for block in text.split("\n\n").filter(|b| !b.is_empty()) {
        if block == ": keep-alive" {
            out.keep_alives += 1;
            continue;
        }
        let mut name = None;
        let mut data = None;
        for line in block.lines() {
            if let Some(n) = line.strip_prefix("event: ") {
                name = Some(n.to_owned());
            } else if let Some(d) = line.strip_prefix("data: ") {
                assert!(data.is_none(), "two data lines in {block:?}");
                data = Some(d.to_owned());
            } else {
                panic!("unexpected SSE line {line:?} in {text}");
            }
        }
        out.events
            .push((name, data.unwrap_or_else(|| panic!("no data in {block:?}"))));
    }
    out
}

// ---------- POST /v1/responses ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_held_is_the_response_object_from_one_batch_line() {
    let gw = start().await;
    let marker = "responses held marker 7f3a";
    let (s, h, b) = gw
        .post("/v1/responses", &[AUTH, HELD], &responses_body(marker))
        .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    assert_eq!(header(&h, "content-type"), "application/json");
    assert_eq!(header(&h, "x-sluice-tier"), "batch");
    let id = job_id(&h);
    let v = parse(&b);
    assert_eq!(v["object"], "response", "{v}");
    assert_eq!(v["status"], "completed", "{v}");
    assert_eq!(v["model"], RESPONSES_MODEL);
    assert_eq!(v["instructions"], "Answer in one line.");
    assert!(output_text(&v).contains(marker), "{v}");
    let usage = &v["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["input_tokens"].as_u64().unwrap() + usage["output_tokens"].as_u64().unwrap()
    );
    assert_half_price(&h);

    // Upstream: one batch line to /v1/responses, in a /v1/responses batch, and no
    // interactive call.
    assert_eq!(lines_for(&gw, &id).await, 1);
    let lines = uploaded_lines(&gw).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["custom_id"], id.as_str());
    assert_eq!(lines[0]["method"], "POST");
    assert_eq!(lines[0]["url"], "/v1/responses");
    assert_eq!(lines[0]["body"]["input"], marker);
    assert_eq!(lines[0]["body"]["model"], RESPONSES_MODEL);
    let creates = openai_creates(&gw).await;
    assert_eq!(creates.len(), 1, "{creates:?}");
    assert_eq!(creates[0]["endpoint"], "/v1/responses");
    assert_eq!(posts_with(&gw, "/v1/responses", marker).await, 0);

    // The job endpoint serves the same bytes.
    let (rh, rb) = job_result(&gw, &id).await;
    assert_eq!(rb, b);
    assert_eq!(header(&rh, "x-sluice-tier"), "batch");

    let m = gw
        .metrics_until("the responses batch counted", |m| {
            metric(
                m,
                "sluice_batches_total",
                &[("provider", "openai"), ("status", "completed")],
            ) >= 1.0
        })
        .await;
    assert_eq!(
        metric(
            &m,
            "sluice_requests_total",
            &[
                ("model", RESPONSES_MODEL),
                ("tier", "batch"),
                ("status", "200")
            ]
        ),
        1.0
    );
    assert!(
        metric(
            &m,
            "sluice_savings_usd_total",
            &[("model", RESPONSES_MODEL), ("lever", "batch")]
        ) > 0.0
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_respond_async_result_is_the_response_object() {
    let gw = start().await;
    let marker = "responses async marker 19c2";
    let (s, h, b) = gw
        .post(
            "/v1/responses",
            &[AUTH, HELD, ASYNC],
            &responses_body(marker),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{}", String::from_utf8_lossy(&b));
    let id = job_id(&h);
    let job = parse(&b);
    assert_eq!(job["object"], "sluice.job");
    assert_eq!(job["id"], id.as_str());
    assert_eq!(job["model"], RESPONSES_MODEL);
    assert_eq!(
        header(&h, "location"),
        format!("/sluice/v1/jobs/{id}").as_str()
    );
    // Another client sees nothing.
    for path in [
        format!("/sluice/v1/jobs/{id}"),
        format!("/sluice/v1/jobs/{id}/result"),
    ] {
        let (s, _, _) = gw.get(&path, &[OTHER]).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
    }
    let (rh, rb) = job_result(&gw, &id).await;
    assert_eq!(header(&rh, "content-type"), "application/json");
    assert_eq!(header(&rh, "x-sluice-tier"), "batch");
    assert_eq!(header(&rh, "x-sluice-job-id"), id.as_str());
    assert_half_price(&rh);
    let v = parse(&rb);
    assert_eq!(v["object"], "response", "{v}");
    assert_eq!(v["status"], "completed");
    assert!(output_text(&v).contains(marker), "{v}");

    let (s, _, jb) = gw.get(&format!("/sluice/v1/jobs/{id}"), &[AUTH]).await;
    assert_eq!(s, StatusCode::OK);
    let job = parse(&jb);
    assert_eq!(
        (&job["status"], &job["answered_by"]),
        (&json!("completed"), &json!("batch"))
    );
    assert_eq!(lines_for(&gw, &id).await, 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_stream_is_keep_alives_then_the_responses_event_stream() {
    let gw = start_with(|c| c.batch.max_wait = Duration::from_millis(300)).await;
    let marker = "responses stream marker 5b0e";
    let body = json!({"model": RESPONSES_MODEL, "input": marker, "stream": true}).to_string();
    let (s, h, b) = gw.post("/v1/responses", &[AUTH, HELD], &body).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    assert_eq!(header(&h, "content-type"), "text/event-stream");
    assert_eq!(header(&h, "x-sluice-tier"), "batch");
    let id = job_id(&h);
    let text = std::str::from_utf8(&b).unwrap();
    assert!(text.starts_with(": keep-alive\n\n"), "{text}");
    assert!(
        !text.contains("[DONE]"),
        "the Responses stream has no [DONE]: {text}"
    );
    let stream = sse(&b);
    assert!(stream.keep_alives >= 1);
    let events: Vec<Value> = stream
        .events
        .iter()
        .map(|(name, data)| {
            let v: Value = serde_json::from_str(data).unwrap();
            assert_eq!(
                name.as_deref(),
                v["type"].as_str(),
                "event name = type: {v}"
            );
            v
        })
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types[0], "response.created", "{types:?}");
    assert_eq!(types[1], "response.in_progress", "{types:?}");
    assert_eq!(*types.last().unwrap(), "response.completed", "{types:?}");
    for (n, e) in events.iter().enumerate() {
        assert_eq!(e["sequence_number"], n, "{e}");
    }
    assert_eq!(events[0]["response"]["status"], "in_progress");
    assert_eq!(events[0]["response"]["output"], json!([]));
    let deltas: String = events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    let completed = &events.last().unwrap()["response"];
    assert_eq!(completed["status"], "completed");
    assert_eq!(deltas, output_text(completed));
    assert!(deltas.contains(marker), "{deltas}");
    let done: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "response.output_text.done")
        .collect();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0]["text"], deltas.as_str());

    // The completed event carries the job's answer unchanged.
    let (_, rb) = job_result(&gw, &id).await;
    assert_eq!(completed, &parse(&rb));
    // The batch line does not stream.
    let lines = uploaded_lines(&gw).await;
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["url"], "/v1/responses");
    assert!(lines[0]["body"].get("stream").is_none(), "{}", lines[0]);
    assert_eq!(lines_for(&gw, &id).await, 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_idempotent_retries_attach_to_one_job() {
    let gw = start().await;
    let marker = "responses idempotent marker 88aa";
    let body = responses_body(marker);
    let h = [AUTH, HELD, ("idempotency-key", "resp-order-1")];
    let (a, b) = tokio::join!(
        gw.post("/v1/responses", &h, &body),
        gw.post("/v1/responses", &h, &body)
    );
    assert_eq!(a.0, StatusCode::OK, "{}", String::from_utf8_lossy(&a.2));
    assert_eq!(b.0, StatusCode::OK, "{}", String::from_utf8_lossy(&b.2));
    let id = job_id(&a.1);
    assert_eq!(job_id(&b.1), id);
    assert_eq!(a.2, b.2, "both callers get the same answer");
    assert!(output_text(&parse(&a.2)).contains(marker));
    // A later retry returns the stored answer; an async retry names the same job.
    let (s, h3, b3) = gw.post("/v1/responses", &h, &body).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(job_id(&h3), id);
    assert_eq!(b3, a.2);
    let (s, h4, _) = gw
        .post(
            "/v1/responses",
            &[AUTH, HELD, ASYNC, ("idempotency-key", "resp-order-1")],
            &body,
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(job_id(&h4), id);

    // The same key for another request is a 422, never the first answer.
    let streamed = json!({"model": RESPONSES_MODEL, "instructions": "Answer in one line.", "input": marker, "stream": true}).to_string();
    for (what, other) in [
        ("body", responses_body("another question")),
        ("stream", streamed),
    ] {
        let (s, h5, b5) = gw.post("/v1/responses", &h, &other).await;
        assert_eq!(
            s,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{what}: {}",
            String::from_utf8_lossy(&b5)
        );
        assert!(!h5.contains_key("x-sluice-job-id"), "{what}");
        let e = parse(&b5);
        assert_eq!(e["error"]["code"], "idempotency_key_mismatch", "{e}");
        assert_eq!(e["error"]["param"], "idempotency-key", "{e}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(what),
            "{what}: {e}"
        );
    }
    // The key on another endpoint (chat completions, same model) is a 422 too.
    let chat = json!({"model": RESPONSES_MODEL, "messages": [{"role": "user", "content": marker}]})
        .to_string();
    let (s, _, b6) = gw.post("/v1/chat/completions", &h, &chat).await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        String::from_utf8_lossy(&b6)
    );
    assert_eq!(parse(&b6)["error"]["code"], "idempotency_key_mismatch");
    // One line upstream, for this job only.
    let lines = all_lines(&gw).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[&id], 1);
    gw.stop().await;
}

// ---------- claude-* on POST /v1/chat/completions ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_chat_held_is_a_chat_completion_from_one_message_batch_line() {
    let gw = start().await;
    let marker = "claude held marker 0d61";
    let before = unix_now();
    let (s, h, b) = gw
        .post("/v1/chat/completions", &[AUTH, HELD], &claude_body(marker))
        .await;
    let after = unix_now();
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    assert_eq!(header(&h, "content-type"), "application/json");
    assert_eq!(header(&h, "x-sluice-tier"), "batch");
    let id = job_id(&h);
    let v = parse(&b);
    assert_eq!(v["object"], "chat.completion", "{v}");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"), "{v}");
    assert_eq!(v["model"], CLAUDE);
    let created = v["created"].as_i64().unwrap();
    assert!((before..=after).contains(&created), "created {created}");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert!(chat_content(&v).contains(marker), "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let usage = &v["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 0);
    assert_half_price(&h);

    // Upstream: one Message Batch request with the translated params, nothing else.
    assert_eq!(lines_for(&gw, &id).await, 1);
    let requests = message_batch_requests(&gw).await;
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0]["custom_id"], id.as_str());
    let params = &requests[0]["params"];
    assert_eq!(params["model"], CLAUDE);
    assert_eq!(params["max_tokens"], 4096, "the translation's default");
    assert_eq!(params["system"], "Be brief.");
    assert_eq!(params["messages"][0]["role"], "user");
    assert_eq!(params["messages"][0]["content"], marker);
    assert!(params.get("stream").is_none(), "{params}");
    let stats = gw.sim_get("/sim/batches/stats").await;
    assert_eq!(stats["message_batches_created"], 1, "{stats}");
    assert_eq!(stats["created"], 1, "{stats}");
    for path in ["/v1/files", "/v1/messages", "/v1/chat/completions"] {
        assert_eq!(posts_with(&gw, path, marker).await, 0, "{path}");
    }

    let (rh, rb) = job_result(&gw, &id).await;
    assert_eq!(rb, b, "the job result is the same chat.completion");
    assert_half_price(&rh);

    let m = gw
        .metrics_until("the message batch counted", |m| {
            metric(m, "sluice_batches_total", &[("provider", "anthropic")]) >= 1.0
        })
        .await;
    let l = [
        ("provider", "anthropic"),
        ("model", CLAUDE),
        ("tier", "batch"),
    ];
    assert_eq!(metric(&m, "sluice_requests_total", &l), 1.0);
    let cost = metric(&m, "sluice_cost_usd_total", &l);
    let baseline = metric(&m, "sluice_baseline_cost_usd_total", &l);
    assert!(
        cost > 0.0 && (baseline - 2.0 * cost).abs() < 1e-12,
        "{cost} {baseline}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_chat_respond_async_result_is_a_chat_completion() {
    let gw = start().await;
    let marker = "claude async marker 61fe";
    let (s, h, b) = gw
        .post(
            "/v1/chat/completions",
            &[AUTH, HELD, ASYNC],
            &claude_body(marker),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{}", String::from_utf8_lossy(&b));
    let id = job_id(&h);
    assert_eq!(parse(&b)["model"], CLAUDE);
    assert_eq!(
        header(&h, "location"),
        format!("/sluice/v1/jobs/{id}").as_str()
    );
    let (s, _, _) = gw
        .get(&format!("/sluice/v1/jobs/{id}/result"), &[OTHER])
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (rh, rb) = job_result(&gw, &id).await;
    assert_eq!(header(&rh, "x-sluice-tier"), "batch");
    assert_half_price(&rh);
    let v = parse(&rb);
    assert_eq!(
        v["object"], "chat.completion",
        "not the Anthropic Message: {v}"
    );
    assert!(v.get("type").is_none(), "{v}");
    assert!(chat_content(&v).contains(marker), "{v}");
    assert_eq!(lines_for(&gw, &id).await, 1);
    gw.stop().await;
}

/// Checks a held claude chat stream; returns its chunks and the job id.
fn claude_chunks(s: StatusCode, h: &HeaderMap, b: &[u8]) -> (Vec<Value>, String) {
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(b));
    assert_eq!(header(h, "content-type"), "text/event-stream");
    assert_eq!(header(h, "x-sluice-tier"), "batch");
    let text = std::str::from_utf8(b).unwrap();
    assert!(text.starts_with(": keep-alive\n\n"), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let stream = sse(b);
    let (last, events) = stream.events.split_last().unwrap();
    assert_eq!(last, &(None, "[DONE]".to_owned()));
    let chunks: Vec<Value> = events
        .iter()
        .map(|(name, data)| {
            assert!(name.is_none(), "chat chunks are unnamed: {name:?}");
            serde_json::from_str(data).unwrap()
        })
        .collect();
    let first = &chunks[0];
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk", "{c}");
        assert_eq!(c["id"], first["id"], "{c}");
        assert_eq!(c["model"], CLAUDE, "{c}");
        assert_eq!(c["created"], first["created"], "{c}");
    }
    assert!(first["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    (chunks, job_id(h))
}

fn chunk_text(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_chat_streams_with_and_without_the_usage_chunk() {
    let gw = start_with(|c| c.batch.max_wait = Duration::from_millis(300)).await;
    let plain_marker = "claude stream marker a1";
    let usage_marker = "claude stream marker b2";
    let plain = json!({"model": CLAUDE, "stream": true,
        "messages": [{"role": "user", "content": plain_marker}]})
    .to_string();
    let with_usage =
        json!({"model": CLAUDE, "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": usage_marker}]})
        .to_string();
    let (p, u) = tokio::join!(
        gw.post("/v1/chat/completions", &[AUTH, HELD], &plain),
        gw.post("/v1/chat/completions", &[AUTH, HELD], &with_usage)
    );

    // Without include_usage: no usage anywhere, as a synchronous stream.
    let (chunks, plain_id) = claude_chunks(p.0, &p.1, &p.2);
    for c in &chunks {
        assert!(c.get("usage").is_none(), "usage not asked for: {c}");
        assert_eq!(c["choices"].as_array().unwrap().len(), 1, "{c}");
    }
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
    let (_, rb) = job_result(&gw, &plain_id).await;
    let answer = parse(&rb);
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(chunk_text(&chunks), chat_content(&answer));
    assert!(chunk_text(&chunks).contains(plain_marker));

    // With include_usage: `"usage": null` on every chunk, then the usage chunk.
    let (chunks, usage_id) = claude_chunks(u.0, &u.1, &u.2);
    let (usage_chunk, body) = chunks.split_last().unwrap();
    for c in body {
        assert_eq!(c["usage"], Value::Null, "{c}");
        assert!(c.get("usage").is_some(), "{c}");
    }
    assert_eq!(usage_chunk["choices"], json!([]), "{usage_chunk}");
    assert_eq!(body.last().unwrap()["choices"][0]["finish_reason"], "stop");
    let (_, rb) = job_result(&gw, &usage_id).await;
    let answer = parse(&rb);
    assert_eq!(usage_chunk["usage"], answer["usage"], "the answer's usage");
    assert!(usage_chunk["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert_eq!(chunk_text(body), chat_content(&answer));
    assert!(chunk_text(body).contains(usage_marker));

    // Upstream: Message Batch lines without stream fields, one per job.
    let requests = message_batch_requests(&gw).await;
    assert_eq!(requests.len(), 2, "{requests:?}");
    for r in &requests {
        assert!(r["params"].get("stream").is_none(), "{r}");
        assert!(r["params"].get("stream_options").is_none(), "{r}");
    }
    let lines = all_lines(&gw).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[&plain_id], 1);
    assert_eq!(lines[&usage_id], 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_chat_idempotent_retries_attach_to_one_job() {
    let gw = start().await;
    let marker = "claude idempotent marker 4c4c";
    let body = claude_body(marker);
    let h = [AUTH, HELD, ("idempotency-key", "claude-order-1")];
    let (a, b) = tokio::join!(
        gw.post("/v1/chat/completions", &h, &body),
        gw.post("/v1/chat/completions", &h, &body)
    );
    assert_eq!(a.0, StatusCode::OK, "{}", String::from_utf8_lossy(&a.2));
    assert_eq!(b.0, StatusCode::OK, "{}", String::from_utf8_lossy(&b.2));
    let id = job_id(&a.1);
    assert_eq!(job_id(&b.1), id);
    assert_eq!(a.2, b.2);
    assert!(chat_content(&parse(&a.2)).contains(marker));
    let (s, h3, b3) = gw.post("/v1/chat/completions", &h, &body).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(job_id(&h3), id);
    assert_eq!(b3, a.2);

    let streamed = json!({"model": CLAUDE, "stream": true, "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": marker}
    ]})
    .to_string();
    let other_model = json!({"model": "claude-sonnet-4-5", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": marker}
    ]})
    .to_string();
    for (what, other) in [
        ("body", claude_body("another question")),
        ("stream", streamed),
        ("model", other_model),
    ] {
        let (s, _, b5) = gw.post("/v1/chat/completions", &h, &other).await;
        assert_eq!(
            s,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{what}: {}",
            String::from_utf8_lossy(&b5)
        );
        let e = parse(&b5);
        assert_eq!(e["error"]["code"], "idempotency_key_mismatch", "{e}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(what),
            "{what}: {e}"
        );
    }
    let lines = all_lines(&gw).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[&id], 1);
    assert_eq!(message_batch_requests(&gw).await.len(), 1);
    gw.stop().await;
}

/// A field the translation cannot carry is refused before anything is stored: the only
/// batch line the simulator ever receives is the valid request sent after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_chat_untranslatable_field_is_a_400_and_never_deferred() {
    let gw = start().await;
    let bad = json!({"model": CLAUDE, "n": 2, "messages": [{"role": "user", "content": "twice"}]})
        .to_string();
    let (s, h, b) = gw
        .post(
            "/v1/chat/completions",
            &[AUTH, HELD, ASYNC, ("idempotency-key", "claude-bad")],
            &bad,
        )
        .await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&b)
    );
    assert!(!h.contains_key("x-sluice-job-id"), "{h:?}");
    let e = parse(&b);
    assert_eq!(e["error"]["param"], "n", "{e}");
    // The key was not consumed by the refused request.
    let (s, h, b) = gw
        .post(
            "/v1/chat/completions",
            &[AUTH, HELD, ("idempotency-key", "claude-bad")],
            &claude_body("valid after all"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let id = job_id(&h);
    let lines = all_lines(&gw).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[&id], 1);
    gw.stop().await;
}

/// A batch line the provider answered with an error reaches the caller in its own API:
/// an OpenAI error envelope for the claude chat caller (translated from Anthropic's
/// `errored` result), the provider's error unchanged for the Responses caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_errors_reach_each_caller_in_its_own_api() {
    // A 1 s window, so the fault is set before the batches are created.
    let gw = start_with(|c| c.batch.max_wait = Duration::from_secs(1)).await;
    let claude = claude_body("claude doomed");
    let responses = responses_body("responses doomed");
    let ck = [AUTH, HELD, ("idempotency-key", "doomed-claude")];
    let rk = [AUTH, HELD, ("idempotency-key", "doomed-responses")];
    let (_, ch, _) = gw
        .post(
            "/v1/chat/completions",
            &[ck[0], ck[1], ck[2], ASYNC],
            &claude,
        )
        .await;
    let (_, rh, _) = gw
        .post("/v1/responses", &[rk[0], rk[1], rk[2], ASYNC], &responses)
        .await;
    let (cid, rid) = (job_id(&ch), job_id(&rh));
    let (s, v) = gw
        .sim_post("/sim/batch-faults", json!({"line_errors": [cid, rid]}))
        .await;
    assert!(s.is_success(), "{v}");
    let (c, r) = tokio::join!(
        gw.post("/v1/chat/completions", &ck, &claude),
        gw.post("/v1/responses", &rk, &responses)
    );
    assert_eq!(
        c.0,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        String::from_utf8_lossy(&c.2)
    );
    assert_eq!(job_id(&c.1), cid);
    let e = parse(&c.2);
    assert_eq!(e["error"]["type"], "server_error", "OpenAI-shaped: {e}");
    assert!(e["error"]["message"].is_string(), "{e}");
    assert!(e.get("type").is_none(), "not Anthropic-shaped: {e}");

    assert_eq!(
        r.0,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        String::from_utf8_lossy(&r.2)
    );
    assert_eq!(job_id(&r.1), rid);
    let e = parse(&r.2);
    assert!(e["error"]["message"].is_string(), "{e}");
    assert_eq!(lines_for(&gw, &cid).await, 1);
    assert_eq!(lines_for(&gw, &rid).await, 1);
    gw.stop().await;
}

/// Responses, chat and Messages requests for the same models, deferred in the same window:
/// each OpenAI batch holds one endpoint's lines, and every caller gets its own API's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_endpoints_in_one_window_each_get_their_own_answer() {
    let gw = start_with(|c| c.batch.max_wait = Duration::from_millis(500)).await;
    let chat =
        json!({"model": RESPONSES_MODEL, "messages": [{"role": "user", "content": "mixed chat"}]})
            .to_string();
    let responses = responses_body("mixed responses");
    let claude = claude_body("mixed claude chat");
    let messages = json!({"model": CLAUDE, "max_tokens": 64,
        "messages": [{"role": "user", "content": "mixed messages"}]})
    .to_string();
    let (a, b, c, d) = tokio::join!(
        gw.post("/v1/chat/completions", &[AUTH, HELD], &chat),
        gw.post("/v1/responses", &[AUTH, HELD], &responses),
        gw.post("/v1/chat/completions", &[AUTH, HELD], &claude),
        gw.post(
            "/v1/messages",
            &[
                ("x-api-key", KEY),
                HELD,
                ("anthropic-version", "2023-06-01")
            ],
            &messages
        )
    );
    for (s, h, body) in [&a, &b, &c, &d] {
        assert_eq!(*s, StatusCode::OK, "{}", String::from_utf8_lossy(body));
        assert_eq!(header(h, "x-sluice-tier"), "batch");
    }
    let a_v = parse(&a.2);
    assert_eq!(a_v["object"], "chat.completion");
    assert!(chat_content(&a_v).contains("mixed chat"));
    let b_v = parse(&b.2);
    assert_eq!(b_v["object"], "response");
    assert!(output_text(&b_v).contains("mixed responses"));
    let c_v = parse(&c.2);
    assert_eq!(c_v["object"], "chat.completion");
    assert!(chat_content(&c_v).contains("mixed claude chat"));
    let d_v = parse(&d.2);
    assert_eq!(d_v["type"], "message", "{d_v}");
    assert!(
        d_v["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("mixed messages")
    );

    // Each OpenAI batch is one endpoint, its lines' urls that endpoint.
    let ids = [job_id(&a.1), job_id(&b.1)];
    let lines = uploaded_lines(&gw).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    for (id, url) in ids.iter().zip(["/v1/chat/completions", "/v1/responses"]) {
        let line = lines
            .iter()
            .find(|l| l["custom_id"] == id.as_str())
            .unwrap();
        assert_eq!(line["url"], url, "{line}");
    }
    let mut endpoints: Vec<String> = openai_creates(&gw)
        .await
        .iter()
        .map(|c| c["endpoint"].as_str().unwrap().to_owned())
        .collect();
    endpoints.sort();
    assert_eq!(endpoints, ["/v1/chat/completions", "/v1/responses"]);
    let all = all_lines(&gw).await;
    assert_eq!(all.len(), 4, "{all:?}");
    assert!(all.values().all(|n| n == 1), "{all:?}");
    gw.stop().await;
}

/// The watchdog answers both kinds synchronously in time, in the caller's API, when the
/// provider's batches are slower than believed (prior 1 s, actual 1.5 s; a 2-minute SLA
/// with a 118.5 s fallback lead), and the late batch lines are booked as waste.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_fallback_answers_both_kinds_in_their_callers_api() {
    let gw = start_with(|c| {
        c.batch.turnaround_prior = Duration::from_secs(1);
        c.batch.fallback_lead = Duration::from_millis(118_500);
    })
    .await;
    let (s, v) = gw
        .sim_post("/sim/batch-faults", json!({"turnaround_ms": 1500}))
        .await;
    assert!(s.is_success(), "{v}");
    let (cb, rb) = (
        claude_body("claude hurry"),
        responses_body("responses hurry"),
    );
    let (c, r) = tokio::join!(
        gw.post("/v1/chat/completions", &[AUTH, SLA_2M], &cb),
        gw.post("/v1/responses", &[AUTH, SLA_2M], &rb)
    );
    for (s, h, b) in [&c, &r] {
        assert_eq!(*s, StatusCode::OK, "{}", String::from_utf8_lossy(b));
        assert_eq!(
            header(h, "x-sluice-tier"),
            "interactive",
            "answered by the fallback"
        );
        job_id(h);
    }
    let cv = parse(&c.2);
    assert_eq!(cv["object"], "chat.completion", "{cv}");
    assert!(chat_content(&cv).contains("claude hurry"));
    let rv = parse(&r.2);
    assert_eq!(rv["object"], "response", "{rv}");
    assert!(output_text(&rv).contains("responses hurry"));
    // Synchronously through the provider's own API: Messages for the claude request.
    assert_eq!(posts_with(&gw, "/v1/messages", "claude hurry").await, 1);
    assert_eq!(posts_with(&gw, "/v1/responses", "responses hurry").await, 1);
    let m = gw
        .metrics_until("both late batch lines ended", |m| {
            metric(m, "sluice_batches_total", &[("provider", "openai")]) >= 1.0
                && metric(m, "sluice_batches_total", &[("provider", "anthropic")]) >= 1.0
        })
        .await;
    assert_eq!(
        metric(
            &m,
            "sluice_fallbacks_total",
            &[("from_tier", "batch"), ("reason", "deadline")]
        ),
        2.0
    );
    assert_eq!(metric(&m, "sluice_sla_violations_total", &[]), 0.0);
    assert!(
        metric(
            &m,
            "sluice_wasted_cost_usd_total",
            &[("reason", "late_batch_result")]
        ) > 0.0
    );
    assert_eq!(
        metric(&m, "sluice_requests_total", &[("tier", "batch")]),
        0.0,
        "the late lines are waste, not answers"
    );
    gw.stop().await;
}

// ---------- Message Batches shared by two kinds of request ----------

/// A proxy in front of the simulator that forwards every request, but answers the first
/// `lose` Message Batch creations by closing the connection after the simulator created the
/// batch (a create whose answer was lost in transit). After the first lost create it makes
/// the simulator's later batches fast (`turnaround_ms: fast_ms`).
async fn lossy_proxy(sim: std::net::SocketAddr, lose: usize, fast_ms: u64) -> std::net::SocketAddr {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let creates = Arc::new(AtomicUsize::new(0));
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (creates, client) = (creates.clone(), client.clone());
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (creates, client) = (creates.clone(), client.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map_err(std::io::Error::other)?
                                .to_bytes();
                            let lost = parts.method == http::Method::POST
                                && parts.uri.path() == "/v1/messages/batches"
                                && creates.fetch_add(1, Ordering::SeqCst) < lose;
                            let uri = format!(
                                "http://{sim}{}",
                                parts.uri.path_and_query().map_or("/", |p| p.as_str())
                            );
                            let mut up = http::Request::builder().method(parts.method).uri(uri);
                            // Host kept: the simulator builds `results_url` from it.
                            for (k, v) in &parts.headers {
                                up = up.header(k, v);
                            }
                            let resp = client
                                .request(up.body(Full::new(body)).unwrap())
                                .await
                                .unwrap();
                            let (rparts, rbody) = resp.into_parts();
                            let rbody = rbody
                                .collect()
                                .await
                                .map_err(std::io::Error::other)?
                                .to_bytes();
                            if lost {
                                if creates.load(Ordering::SeqCst) == 1 {
                                    let faults = http::Request::post(format!(
                                        "http://{sim}/sim/batch-faults"
                                    ))
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(
                                        json!({"turnaround_ms": fast_ms}).to_string(),
                                    )))
                                    .unwrap();
                                    let r = client.request(faults).await.unwrap();
                                    assert!(r.status().is_success());
                                }
                                // No answer: hyper closes the connection.
                                return Err(std::io::Error::other("create answer lost"));
                            }
                            Ok::<_, std::io::Error>(http::Response::from_parts(
                                rparts,
                                Full::new(rbody),
                            ))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A `/v1/messages` request and a claude chat request for the same model are two batch
/// groups but the same kind of upstream batch: two Message Batches of one request each.
/// Both creates reach Anthropic but their answers are lost, so both flushes must find their
/// batch by listing. Message Batches carry no metadata and the match is on request count and
/// creation time only, so the first flush to reconcile takes the newest unrecorded batch of
/// that size, the other flush's; when that batch ends first, its own job, still open, is
/// requeued and sent in a third batch although its first batch still runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn lost_message_batch_creates_are_each_reconciled_with_their_own_batch() {
    let sim_handle = sluice::cli::start_simulator(SimConfig {
        batch_turnaround: Duration::from_millis(100),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let proxy = lossy_proxy(sim_handle.addr, 2, 100).await;
    let gw = Gateway::start_at(
        &format!("http://{proxy}/v1"),
        Some(sim_handle),
        vec![keyed_policy("paths", KEY, "")],
        |c| c.batch.keep_alive = Duration::from_millis(20),
    )
    .await;
    // The first created batch (the first flush's) is slow; the proxy makes later ones fast.
    let (s, v) = gw
        .sim_post("/sim/batch-faults", json!({"turnaround_ms": 2000}))
        .await;
    assert!(s.is_success(), "{v}");
    let messages = json!({"model": CLAUDE, "max_tokens": 64,
        "messages": [{"role": "user", "content": "lost create messages"}]})
    .to_string();
    let chat = claude_body("lost create claude chat");
    let (m, c) = tokio::time::timeout(Duration::from_secs(20), async {
        tokio::join!(
            gw.post(
                "/v1/messages",
                &[
                    ("x-api-key", KEY),
                    HELD,
                    ("anthropic-version", "2023-06-01")
                ],
                &messages
            ),
            gw.post("/v1/chat/completions", &[AUTH, HELD], &chat)
        )
    })
    .await
    .unwrap_or_else(|_| panic!("the held requests were not answered within 20 s"));
    assert_eq!(m.0, StatusCode::OK, "{}", String::from_utf8_lossy(&m.2));
    assert_eq!(c.0, StatusCode::OK, "{}", String::from_utf8_lossy(&c.2));
    assert_eq!(parse(&m.2)["type"], "message");
    assert_eq!(parse(&c.2)["object"], "chat.completion");
    let ids = [job_id(&m.1), job_id(&c.1)];
    let lines = all_lines(&gw).await;
    for id in &ids {
        assert_eq!(
            lines.get(id),
            Some(&json!(1)),
            "{id} submitted once: {lines:?}"
        );
    }
    gw.stop().await;
}

// ---------- the OpenAI Node SDK on both paths ----------

const NODE_TESTS: &str = "tests/node/deferred.test.mjs";

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A child Node that talks only to loopback, whatever proxy the environment sets.
fn node_command(node: &Path, dir: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(node);
    cmd.current_dir(dir);
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "NODE_USE_ENV_PROXY",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "OPENAI_ORG_ID",
        "OPENAI_PROJECT_ID",
        "OPENAI_WEBHOOK_SECRET",
        "OPENAI_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost");
    cmd
}

async fn run(mut cmd: std::process::Command) -> std::io::Result<std::process::Output> {
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("the blocking task running node panicked")
}

/// Whether Node imports the pinned SDK from `tests/node` (installed by `sdk_node.rs` or
/// `tests/node/setup.sh`).
async fn node_ready(node: &Path) -> Result<(), String> {
    let mut cmd = node_command(node, &manifest_dir().join("tests").join("node"));
    cmd.args([
        "--input-type=module",
        "-e",
        "import { VERSION } from 'openai/version'; console.log(VERSION);",
    ]);
    match run(cmd).await {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
        Err(e) => Err(format!("cannot run {}: {e}", node.display())),
    }
}

/// `tests/node/deferred.test.mjs`: the OpenAI Node SDK, Responses and claude chat deferred
/// (held, streamed, async, idempotent), against a gateway with fast batches (the gateway of
/// `sdk_node.rs` keeps the default 10 m flush window and the default store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_node_sdk_deferred_paths() {
    let node = std::env::var_os("SLUICE_NODE")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from("node"), PathBuf::from);
    if node_ready(&node).await.is_err() {
        let mut setup = std::process::Command::new("sh");
        setup.arg("tests/node/setup.sh").current_dir(manifest_dir());
        let _ = run(setup).await;
    }
    if let Err(why) = node_ready(&node).await {
        if std::env::var("SLUICE_SKIP_NODE").is_ok_and(|v| v == "1") {
            println!("SLUICE_SKIP_NODE=1: skipping the Node SDK deferred tests: {why}");
            return;
        }
        panic!(
            "{why}\nThe Node SDK tests need Node.js (20 or later) and npm: run `sh tests/node/setup.sh` \
             (SLUICE_SKIP_NODE=1 skips this test)."
        );
    }
    let gw = Gateway::start_sim(
        SimConfig {
            batch_turnaround: Duration::from_millis(200),
            ..SimConfig::default()
        },
        vec![keyed_policy("node-deferred", "sk-node-deferred", "")],
        |c| c.batch.keep_alive = Duration::from_millis(50),
    )
    .await;
    let sim_url = gw.sim.as_ref().unwrap().base_url();
    let mut cmd = node_command(&node, &manifest_dir());
    cmd.args(["--test", "--test-reporter=spec", NODE_TESTS])
        .env("SLUICE_BASE_URL", gw.url("/v1"))
        .env("SLUICE_KEY", "sk-node-deferred")
        .env("SIM_BASE_URL", &sim_url);
    let out = run(cmd).await.expect("run node --test");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    println!("{stdout}");
    eprintln!("{stderr}");
    gw.stop().await;
    assert!(
        out.status.success(),
        "node --test {NODE_TESTS} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}
