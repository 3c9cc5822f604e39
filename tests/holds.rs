//! Held deferred calls that survive the SDKs' defaults (issue 13 point 3): an SDK's retry
//! (`x-stainless-retry-count` ≥ 1, no `Idempotency-Key`) attaches to the job its first try
//! created, and a hold that could outlive the advertised timeout (`x-stainless-read-timeout`,
//! `x-stainless-timeout`) commits `200` early and sends whitespace until the answer.
//!
//! The raw-HTTP tests use `Prefer: respond-async` to learn a first try's job at once, and
//! batches whose turnaround is far longer than the advertised timeout, so the order of
//! events (commit, keep-alives, answer) is fixed by the simulator, not by sleeps. The last
//! tests run the official SDKs (Python OpenAI and Anthropic, Node OpenAI) with a 3 s timeout
//! and their default retries against batches that take 12 s.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Gateway, keyed_policy, sdk};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use sluice::simulate::SimConfig;

const KEY: &str = "sk-team";
const AUTH: (&str, &str) = ("authorization", "Bearer sk-team");
const OTHER: (&str, &str) = ("authorization", "Bearer sk-other");
const HELD: (&str, &str) = ("x-sla", "24h");
const ASYNC: (&str, &str) = ("prefer", "respond-async");
const CHAT: &str = "/v1/chat/completions";
/// The SDKs' default timeout: nothing in these tests waits long enough to commit early.
const LONG: (&str, &str) = ("x-stainless-read-timeout", "600");

fn first() -> (&'static str, &'static str) {
    ("x-stainless-retry-count", "0")
}

fn retry(n: &'static str) -> (&'static str, &'static str) {
    ("x-stainless-retry-count", n)
}

fn read_timeout(secs: &'static str) -> (&'static str, &'static str) {
    ("x-stainless-read-timeout", secs)
}

async fn start_with(
    turnaround: Duration,
    tweak: impl FnOnce(&mut sluice::config::Config),
) -> Gateway {
    Gateway::start_sim(
        SimConfig {
            batch_turnaround: turnaround,
            ..SimConfig::default()
        },
        vec![
            keyed_policy("team", KEY, ""),
            keyed_policy("other", "sk-other", ""),
        ],
        tweak,
    )
    .await
}

async fn start(turnaround: Duration) -> Gateway {
    start_with(turnaround, |_| {}).await
}

fn chat(user: &str) -> String {
    serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": user}]
    })
    .to_string()
}

fn job_id(h: &HeaderMap) -> String {
    let id = h["x-sluice-job-id"].to_str().unwrap().to_owned();
    assert!(id.starts_with("job_"), "{id}");
    id
}

/// A first try answered at once with its job (202): the job a retry may attach to.
async fn first_try(gw: &Gateway, auth: (&str, &str), body: &str) -> String {
    let (s, h, b) = gw.post(CHAT, &[auth, HELD, first(), ASYNC], body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{}", String::from_utf8_lossy(&b));
    job_id(&h)
}

/// The simulator's batch lines per custom_id (= job id).
async fn lines(gw: &Gateway) -> serde_json::Map<String, Value> {
    let stats = gw.sim_get("/sim/batches/stats").await;
    stats["lines_by_custom_id"].as_object().unwrap().clone()
}

fn content(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)));
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("no content in {v}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_the_same_body_attaches_to_its_first_try_and_is_one_batch_line() {
    let gw = start(Duration::from_millis(100)).await;
    let body = chat("retry me once");
    let job = first_try(&gw, AUTH, &body).await;
    // The SDK's first retry (its first try timed out) is held on the same job.
    let (s, h, answer) = gw.post(CHAT, &[AUTH, HELD, retry("1"), LONG], &body).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(job_id(&h), job);
    assert!(content(&answer).contains("retry me once"));
    assert!(h.contains_key("x-sluice-cost-usd"), "{h:?}");
    // A second retry after the answer gets the stored answer, byte for byte.
    let (s, h2, again) = gw.post(CHAT, &[AUTH, HELD, retry("2"), LONG], &body).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(job_id(&h2), job);
    assert_eq!(again, answer);
    let lines = lines(&gw).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[&job], 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_another_body_is_a_new_job() {
    let gw = start(Duration::from_millis(100)).await;
    let job = first_try(&gw, AUTH, &chat("the first body")).await;
    for other in [
        chat("another body"),
        // The same JSON, other bytes: the key is the body as sent.
        chat("the first body").replace(':', ": "),
    ] {
        let (s, h, _) = gw
            .post(CHAT, &[AUTH, HELD, retry("1"), ASYNC], &other)
            .await;
        assert_eq!(s, StatusCode::ACCEPTED);
        assert_ne!(job_id(&h), job);
    }
    // The same body on another route (path) is another call too.
    let (s, h, b) = gw
        .post(
            "/v1/responses",
            &[AUTH, HELD, retry("1"), ASYNC],
            &serde_json::json!({"model": "gpt-4o-mini", "input": "the first body"}).to_string(),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{}", String::from_utf8_lossy(&b));
    assert_ne!(job_id(&h), job);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_tries_with_identical_bodies_are_two_jobs_and_a_retry_takes_the_newest() {
    let gw = start(Duration::from_millis(100)).await;
    let body = chat("asked twice on purpose");
    let a = first_try(&gw, AUTH, &body).await;
    let b = first_try(&gw, AUTH, &body).await;
    assert_ne!(a, b, "two real calls are two jobs");
    // A client that counts no tries records no key: its call is a job of its own, and no
    // retry finds it.
    let (s, h, _) = gw.post(CHAT, &[AUTH, HELD, ASYNC], &body).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let plain = job_id(&h);
    assert!(plain != a && plain != b);
    // A retry attaches to the newest first try with its key (either would be the same call).
    let (s, h, _) = gw.post(CHAT, &[AUTH, HELD, retry("1"), ASYNC], &body).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(job_id(&h), b);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_from_another_client_never_attaches() {
    let gw = start(Duration::from_millis(100)).await;
    let body = chat("mine, not yours");
    let job = first_try(&gw, AUTH, &body).await;
    let (s, h, _) = gw
        .post(CHAT, &[OTHER, HELD, retry("1"), ASYNC], &body)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let theirs = job_id(&h);
    assert_ne!(theirs, job);
    // Nor can the other client read the first job through its own retry's answer.
    let (s, _, _) = gw.get(&format!("/sluice/v1/jobs/{job}"), &[OTHER]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // The owner's retry still attaches.
    let (_, h, _) = gw.post(CHAT, &[AUTH, HELD, retry("1"), ASYNC], &body).await;
    assert_eq!(job_id(&h), job);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_keeps_its_own_semantics() {
    let gw = start(Duration::from_millis(100)).await;
    let body = chat("keyed");
    let implicit = first_try(&gw, AUTH, &body).await;
    let keyed = [AUTH, HELD, retry("1"), ASYNC, ("idempotency-key", "k-1")];
    // With a key, the key alone decides: a new job, not the implicit first try's.
    let (s, h, _) = gw.post(CHAT, &keyed, &body).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let by_key = job_id(&h);
    assert_ne!(by_key, implicit);
    let (_, h, _) = gw.post(CHAT, &keyed, &body).await;
    assert_eq!(job_id(&h), by_key);
    // And a key reused with another body is still a 422, retry count or not.
    let (s, _, b) = gw.post(CHAT, &keyed, &chat("other")).await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        String::from_utf8_lossy(&b)
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_retryable_error_runs_again() {
    // A long window, so the line fault is set before the batch is created.
    let gw = start_with(Duration::from_millis(100), |c| {
        c.batch.max_wait = Duration::from_secs(2);
    })
    .await;
    let body = chat("fails once upstream");
    let job = first_try(&gw, AUTH, &body).await;
    let (s, v) = gw
        .sim_post(
            "/sim/batch-faults",
            serde_json::json!({"line_errors": [job]}),
        )
        .await;
    assert!(s.is_success(), "{v}");
    let (s, h, _) = gw.post(CHAT, &[AUTH, HELD, retry("1"), LONG], &body).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(job_id(&h), job);
    // The SDK retries a 500: that retry is a real one, a new job and a new line.
    let (s, h, answer) = gw.post(CHAT, &[AUTH, HELD, retry("2"), LONG], &body).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&answer));
    let again = job_id(&h);
    assert_ne!(again, job);
    let lines = lines(&gw).await;
    assert_eq!(
        (lines[&job].as_u64(), lines[&again].as_u64()),
        (Some(1), Some(1))
    );
    gw.stop().await;
}

/// A request whose response is read frame by frame.
async fn open(
    gw: &Gateway,
    headers: &[(&str, &str)],
    path: &str,
    body: &str,
) -> http::Response<hyper::body::Incoming> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut b = Request::post(gw.url(path)).header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    client
        .request(b.body(Full::new(Bytes::from(body.to_owned()))).unwrap())
        .await
        .unwrap()
}

/// The body's frames until it ends (`Ok`) or is cut (`Err` with what came before).
async fn frames(resp: http::Response<hyper::body::Incoming>) -> Result<Vec<Bytes>, Vec<Bytes>> {
    let mut body = resp.into_body();
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(30), body.frame()).await {
            Err(_) => panic!("no frame for 30 s after {out:?}"),
            Ok(None) => return Ok(out),
            Ok(Some(Ok(f))) => out.extend(f.into_data().ok()),
            Ok(Some(Err(_))) => return Err(out),
        }
    }
}

fn is_blank(b: &[u8]) -> bool {
    !b.is_empty() && b.iter().all(|c| *c == b' ')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_past_half_the_timeout_commits_200_then_spaces_then_the_json() {
    // Batches take 1.5 s; the caller waits at most 0.4 s for a byte: commit at 0.2 s,
    // a space every 0.1 s (the configured keep-alive is 15 s).
    let gw = start(Duration::from_millis(1500)).await;
    let resp = open(
        &gw,
        &[AUTH, HELD, first(), read_timeout("0.4")],
        CHAT,
        &chat("commit early"),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let h = resp.headers().clone();
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["x-sluice-tier"], "batch");
    assert!(
        !h.contains_key("x-sluice-cost-usd"),
        "not known at commit: {h:?}"
    );
    let job = job_id(&h);
    let frames = frames(resp).await.expect("a complete body");
    let spaces = frames.iter().take_while(|f| is_blank(f)).count();
    assert!(spaces >= 2, "keep-alive spaces first: {frames:?}");
    let body: Vec<u8> = frames.concat();
    // A JSON parser skips the spaces: the same answer the job keeps.
    assert!(content(&body).contains("commit early"));
    let (s, jh, stored) = gw
        .get(&format!("/sluice/v1/jobs/{job}/result"), &[AUTH])
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body.trim_ascii_start(), &stored[..]);
    assert!(
        jh.contains_key("x-sluice-cost-usd"),
        "the job has the cost: {jh:?}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdk_that_says_no_timeout_is_committed_after_a_second() {
    // openai-node sends no timeout for its client-wide one, which ends at the headers.
    let gw = start(Duration::from_secs(5)).await;
    let started = Instant::now();
    let resp = open(&gw, &[AUTH, HELD, first()], CHAT, &chat("node style")).await;
    let committed = started.elapsed();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        !resp.headers().contains_key("x-sluice-cost-usd"),
        "committed early"
    );
    assert!(
        committed < Duration::from_secs(5),
        "before the batch: {committed:?}"
    );
    let body = frames(resp).await.expect("a complete body").concat();
    assert!(content(&body).contains("node style"));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_within_half_the_timeout_keeps_its_status_and_cost_headers() {
    let gw = start(Duration::from_millis(100)).await;
    let (s, h, b) = gw
        .post(
            CHAT,
            &[AUTH, HELD, first(), read_timeout("600")],
            &chat("in time"),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(h.contains_key("x-sluice-cost-usd"), "{h:?}");
    assert_eq!(
        b.first(),
        Some(&b'{'),
        "no spaces: {}",
        String::from_utf8_lossy(&b)
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_error_cuts_the_committed_body_and_the_retry_gets_the_real_status() {
    let gw = start(Duration::from_millis(100)).await;
    // The next batch fails validation (line 1) at a tenth of its 10 s turnaround: long after the
    // commit at 0.1 s.
    let (s, v) = gw
        .sim_post(
            "/sim/batch-faults",
            serde_json::json!({"fail_validation": 1, "turnaround_ms": 10000}),
        )
        .await;
    assert!(s.is_success(), "{v}");
    let body = chat("refused late");
    let resp = open(
        &gw,
        &[AUTH, HELD, first(), read_timeout("0.2")],
        CHAT,
        &body,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let job = job_id(resp.headers());
    let cut = frames(resp)
        .await
        .expect_err("the body is cut, never a 200 error");
    assert!(
        cut.iter().all(|f| is_blank(f)),
        "only spaces before the cut: {cut:?}"
    );
    // The SDK retries a broken body; the retry attaches and gets the status and body.
    let (s, h, b) = gw
        .post(CHAT, &[AUTH, HELD, retry("1"), read_timeout("0.2")], &body)
        .await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&b)
    );
    assert_eq!(job_id(&h), job);
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["error"]["code"], "invalid_batch_line", "{v}");
    let lines = lines(&gw).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_stream_beats_inside_the_advertised_timeout() {
    // Keep-alive 15 s by default; the caller's 0.4 s timeout makes it 0.1 s.
    let gw = start(Duration::from_millis(1500)).await;
    let body = serde_json::json!({"model": "gpt-4o-mini", "stream": true,
        "messages": [{"role": "user", "content": "stream after a while"}]})
    .to_string();
    let (s, h, sse) = gw
        .post(CHAT, &[AUTH, HELD, first(), read_timeout("0.4")], &body)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["content-type"], "text/event-stream");
    let text = std::str::from_utf8(&sse).unwrap();
    assert!(
        text.starts_with(": keep-alive\n\n: keep-alive\n\n"),
        "{text}"
    );
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_wait_bounds_the_hold_instead_of_committing() {
    let gw = start(Duration::from_secs(30)).await;
    let started = Instant::now();
    let (s, h, b) = gw
        .post(
            CHAT,
            &[
                AUTH,
                HELD,
                first(),
                read_timeout("0.2"),
                ("prefer", "wait=1"),
            ],
            &chat("bounded"),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{}", String::from_utf8_lossy(&b));
    assert!(h.contains_key("location"));
    assert!(started.elapsed() >= Duration::from_secs(1));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hint_headers_repeated_differently_are_refused_and_junk_is_ignored() {
    let gw = start(Duration::from_millis(100)).await;
    for (name, a, b) in [
        ("x-stainless-retry-count", "0", "1"),
        ("x-stainless-read-timeout", "2", "600"),
        ("x-stainless-timeout", "2", "600"),
    ] {
        let (s, _, body) = gw
            .post(CHAT, &[AUTH, HELD, (name, a), (name, b)], &chat("twice"))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{name}");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "conflicting_header", "{v}");
        assert_eq!(v["error"]["param"], name, "{v}");
    }
    // An unreadable hint is no hint: held as before, and never a retry.
    let body = chat("junk hints");
    let job = first_try(&gw, AUTH, &body).await;
    let (s, h, _) = gw
        .post(
            CHAT,
            &[
                AUTH,
                HELD,
                ("x-stainless-retry-count", "one"),
                read_timeout("NOT_GIVEN"),
            ],
            &body,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_ne!(job_id(&h), job);
    gw.stop().await;
}

// ---------- the official SDKs, default retries ----------

/// The SDK gateway: batches take 12 s (four times the SDKs' 3 s timeout), the default
/// keep-alive (15 s, longer than the timeout) and the default retries on the SDK side.
async fn sdk_gateway() -> Gateway {
    start(Duration::from_secs(12)).await
}

/// Runs an SDK script against a fresh gateway; `None` (skipped) when `skip_var` is `1`
/// and the SDK cannot be loaded.
async fn run_sdk(program: PathBuf, args: &[&str], check: &[&str], skip_var: &str) {
    if !sdk::ready(&program, check, skip_var).await {
        return;
    }
    let gw = sdk_gateway().await;
    let mut cmd = sdk::loopback(&program);
    cmd.args(args)
        .env("SLUICE_BASE_URL", gw.url("/v1"))
        .env("SLUICE_ROOT_URL", gw.url(""))
        .env("SLUICE_KEY", KEY)
        .env("SIM_BASE_URL", gw.sim.as_ref().unwrap().base_url());
    let out = sdk::run(cmd).await.expect("run the SDK tests");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    println!("{stdout}");
    eprintln!("{stderr}");
    gw.stop().await;
    assert!(out.status.success(), "{args:?} failed:\n{stdout}\n{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_openai_and_anthropic_sdks_survive_their_timeout_with_one_batch_line() {
    run_sdk(
        sdk::python(),
        &[
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/python/holds_sdk.py",
        ],
        &["-c", "import openai, anthropic, pytest"],
        "SLUICE_SKIP_PYTHON",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_openai_sdk_survives_its_timeout_with_one_batch_line() {
    let check = sdk::node_sdk_check();
    run_sdk(
        sdk::node(),
        &["--test", "--test-reporter=spec", "tests/node/holds.mjs"],
        &["-e", &check],
        "SLUICE_SKIP_NODE",
    )
    .await;
}
