//! The explicit Files and Batch APIs through Sluice (OpenAI `/v1/files` + `/v1/batches`,
//! Anthropic `/v1/messages/batches`): passed through to the simulator with the provider
//! key, every object visible only to the client that created it, and every finished batch
//! priced into the metrics and the ledger exactly once (tier `batch`), across restarts.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Gateway, keyed_policy, metric, sdk};
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};
use sluice::simulate::SimConfig;

const TEAM: (&str, &str) = ("authorization", "Bearer sk-team");
const OTHER: (&str, &str) = ("authorization", "Bearer sk-other");
const TEAM_ANTHROPIC: [(&str, &str); 2] = [
    ("x-api-key", "sk-team"),
    ("anthropic-version", "2023-06-01"),
];
const OTHER_ANTHROPIC: [(&str, &str); 2] = [
    ("x-api-key", "sk-other"),
    ("anthropic-version", "2023-06-01"),
];
const BOUNDARY: &str = "----sluiceExplicit";

fn policies() -> Vec<(String, String)> {
    let routes = "[[route]]\nname = \"nightly\"\npaths = [\"/v1/chat/completions\"]\n\n\
                  [[route]]\nname = \"claude\"\npaths = [\"/v1/messages\"]\n";
    vec![
        keyed_policy("team", "sk-team", routes),
        keyed_policy("other", "sk-other", ""),
    ]
}

fn sim() -> SimConfig {
    SimConfig {
        batch_turnaround: Duration::from_millis(100),
        ..SimConfig::default()
    }
}

fn parse(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(b)))
}

fn chat_line(id: &str, text: &str) -> String {
    json!({
        "custom_id": id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]},
    })
    .to_string()
}

/// `POST /v1/files` with a JSONL batch input, as the OpenAI SDK sends it.
async fn upload(gw: &Gateway, auth: (&str, &str), lines: &[String]) -> (StatusCode, Value) {
    let body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n{}\n\r\n--{BOUNDARY}--\r\n",
        lines.join("\n")
    );
    let req = Request::post(gw.url("/v1/files"))
        .header(auth.0, auth.1)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let (s, _, b) = gw.send(req).await;
    (s, parse(&b))
}

async fn send(
    gw: &Gateway,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, Bytes) {
    let mut b = Request::builder().method(method).uri(gw.url(path));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    if !body.is_empty() {
        b = b.header("content-type", "application/json");
    }
    let (s, _, b) = gw
        .send(b.body(Full::new(Bytes::from(body.to_owned()))).unwrap())
        .await;
    (s, b)
}

/// Retrieves a batch until it has ended (bounded).
async fn until_ended(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> Value {
    for _ in 0..400 {
        let (s, b) = send(gw, "GET", path, headers, "").await;
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
        let v = parse(&b);
        let done = matches!(
            v["status"].as_str(),
            Some("completed" | "failed" | "expired" | "cancelled")
        ) || v["processing_status"] == "ended";
        if done {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{path} never ended");
}

fn batch_cost(m: &str, provider: &str) -> f64 {
    metric(
        m,
        "sluice_cost_usd_total",
        &[
            ("tier", "batch"),
            ("client", "team"),
            ("provider", provider),
        ],
    )
}

/// The store's `sluice report` rows of the batch tier: (route, requests, cost).
async fn batch_report(gw: &Gateway) -> Vec<(String, u64, f64)> {
    let store = sluice::store::open(&format!("sqlite://{}", gw.db.display()))
        .await
        .unwrap();
    let rows = store.report(0).await.unwrap();
    store.close().await;
    rows.into_iter()
        .filter(|r| r.tier == sluice::types::Tier::Batch)
        .map(|r| (r.route, r.requests, r.cost_usd))
        .collect()
}

/// One interactive answer: the gateway is up and its engine has ticked since it started.
async fn chat_once(gw: &Gateway) {
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    let (s, _) = send(
        gw,
        "POST",
        "/v1/chat/completions",
        &[TEAM],
        &body.to_string(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
}

/// Asserts a 404 in OpenAI's shape naming the object.
fn no_such(s: StatusCode, b: &[u8], id: &str) {
    assert_eq!(s, StatusCode::NOT_FOUND, "{}", String::from_utf8_lossy(b));
    let v = parse(b);
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(id), "{v}");
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_files_and_batches_are_owned_and_priced_once_across_a_restart() {
    let gw = Gateway::start_sim(sim(), policies(), |_| {}).await;
    let lines: Vec<String> = (0..3)
        .map(|i| chat_line(&format!("r{i}"), &format!("summarise ticket {i}")))
        .collect();
    let (s, file) = upload(&gw, TEAM, &lines).await;
    assert_eq!(s, StatusCode::OK, "{file}");
    let file_id = file["id"].as_str().unwrap().to_owned();
    assert_eq!(file["purpose"], "batch");

    // Another client sees none of it, and cannot batch the file.
    let (s, b) = send(&gw, "GET", &format!("/v1/files/{file_id}"), &[OTHER], "").await;
    no_such(s, &b, &file_id);
    let (s, b) = send(
        &gw,
        "GET",
        &format!("/v1/files/{file_id}/content"),
        &[OTHER],
        "",
    )
    .await;
    no_such(s, &b, &file_id);
    let (s, b) = send(&gw, "DELETE", &format!("/v1/files/{file_id}"), &[OTHER], "").await;
    no_such(s, &b, &file_id);
    let create = json!({"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}).to_string();
    let (s, b) = send(&gw, "POST", "/v1/batches", &[OTHER], &create).await;
    no_such(s, &b, &file_id);
    let (s, b) = send(&gw, "GET", "/v1/files", &[OTHER], "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        parse(&b)["data"],
        json!([]),
        "another client's list is empty"
    );

    // Held at the provider, so that it ends while no gateway runs.
    gw.sim_post("/sim/batch-faults", json!({"hold": true}))
        .await;
    let (s, b) = send(&gw, "POST", "/v1/batches", &[TEAM], &create).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let batch = parse(&b);
    let batch_id = batch["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/batches/{batch_id}");
    for (method, p) in [("GET", path.clone()), ("POST", format!("{path}/cancel"))] {
        let (s, b) = send(&gw, method, &p, &[OTHER], "").await;
        no_such(s, &b, &batch_id);
    }
    let (s, b) = send(&gw, "GET", "/v1/batches?limit=5", &[TEAM], "").await;
    assert_eq!(s, StatusCode::OK);
    let listed = parse(&b);
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["first_id"], batch_id.as_str());
    assert_eq!(listed["has_more"], false);
    let (_, b) = send(&gw, "GET", "/v1/batches", &[OTHER], "").await;
    assert_eq!(parse(&b)["data"], json!([]));

    // Restarted: the batch ends while the first gateway is gone, and is picked up after.
    let gw = gw.restart(policies(), |_| {}).await;
    gw.sim_post("/sim/batch-faults", json!({"hold": false}))
        .await;
    let done = until_ended(&gw, &path, &[TEAM]).await;
    assert_eq!(done["status"], "completed", "{done}");
    let output = done["output_file_id"].as_str().unwrap().to_owned();
    let (s, b) = send(
        &gw,
        "GET",
        &format!("/v1/files/{output}/content"),
        &[TEAM],
        "",
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let answers: Vec<Value> = String::from_utf8_lossy(&b)
        .lines()
        .map(|l| parse(l.as_bytes()))
        .collect();
    assert_eq!(answers.len(), 3);
    assert!(answers.iter().all(|a| a["response"]["status_code"] == 200));
    let (s, b) = send(
        &gw,
        "GET",
        &format!("/v1/files/{output}/content"),
        &[OTHER],
        "",
    )
    .await;
    no_such(s, &b, &output);

    let m = gw
        .metrics_until("the batch priced", |m| batch_cost(m, "openai") > 0.0)
        .await;
    let cost = batch_cost(&m, "openai");
    let labels = [("tier", "batch"), ("client", "team"), ("route", "nightly")];
    assert_eq!(metric(&m, "sluice_requests_total", &labels), 3.0, "{m}");
    let savings = metric(
        &m,
        "sluice_savings_usd_total",
        &[("lever", "batch"), ("client", "team")],
    );
    assert!(
        (savings - cost).abs() < 1e-9,
        "half price: savings {savings} = cost {cost}"
    );
    let report = batch_report(&gw).await;
    assert_eq!(report.len(), 1, "{report:?}");
    assert_eq!((report[0].0.as_str(), report[0].1), ("nightly", 3));
    assert!((report[0].2 - cost).abs() < 1e-12, "{report:?} vs {cost}");

    // Picked up again after another restart: neither the ledger nor the metrics count it twice.
    let gw = gw.restart(policies(), |_| {}).await;
    until_ended(&gw, &path, &[TEAM]).await;
    let (_, b) = send(&gw, "GET", "/v1/batches", &[TEAM], "").await;
    assert_eq!(parse(&b)["data"][0]["id"], batch_id.as_str());
    assert_eq!(batch_report(&gw).await, report);
    // The engine had its passes (the sweep of unpriced batches), and priced nothing again.
    chat_once(&gw).await;
    let m = gw.metrics().await;
    assert_eq!(batch_cost(&m, "openai"), 0.0, "{m}");

    // Deleting: only the owner can; afterwards it is gone for the owner too.
    let (s, b) = send(&gw, "DELETE", &format!("/v1/files/{file_id}"), &[TEAM], "").await;
    assert_eq!(
        (s, parse(&b)["deleted"].clone()),
        (StatusCode::OK, json!(true))
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_message_batches_are_owned_priced_once_and_their_results_come_through_sluice() {
    let gw = Gateway::start_sim(sim(), policies(), |_| {}).await;
    let requests: Vec<Value> = (0..2)
        .map(|i| {
            json!({"custom_id": format!("q{i}"), "params": {
                "model": "claude-haiku-4-5", "max_tokens": 32,
                "messages": [{"role": "user", "content": format!("classify {i}")}]}})
        })
        .collect();
    let body = json!({ "requests": requests }).to_string();
    let (s, b) = send(&gw, "POST", "/v1/messages/batches", &TEAM_ANTHROPIC, &body).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let id = parse(&b)["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/messages/batches/{id}");

    // Another client: 404 in Anthropic's shape on every operation, and an empty list.
    for (method, p) in [
        ("GET", path.clone()),
        ("GET", format!("{path}/results")),
        ("POST", format!("{path}/cancel")),
        ("DELETE", path.clone()),
    ] {
        let (s, b) = send(&gw, method, &p, &OTHER_ANTHROPIC, "").await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {p}");
        let v = parse(&b);
        assert_eq!(
            (v["type"].as_str(), v["error"]["type"].as_str()),
            (Some("error"), Some("not_found_error")),
            "{v}"
        );
    }
    let (_, b) = send(&gw, "GET", "/v1/messages/batches", &OTHER_ANTHROPIC, "").await;
    assert_eq!(parse(&b)["data"], json!([]));

    let ended = until_ended(&gw, &path, &TEAM_ANTHROPIC).await;
    // The results are fetched through Sluice, wherever its clients reach it.
    let results = ended["results_url"].as_str().unwrap();
    assert_eq!(results, format!("{path}/results"));
    let (s, b) = send(&gw, "GET", results, &TEAM_ANTHROPIC, "").await;
    assert_eq!(s, StatusCode::OK);
    let lines: Vec<Value> = String::from_utf8_lossy(&b)
        .lines()
        .map(|l| parse(l.as_bytes()))
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines.iter().all(|l| l["result"]["type"] == "succeeded"),
        "{lines:?}"
    );
    let (_, b) = send(
        &gw,
        "GET",
        "/v1/messages/batches?limit=10",
        &TEAM_ANTHROPIC,
        "",
    )
    .await;
    let listed = parse(&b);
    assert_eq!(listed["data"][0]["results_url"], results, "{listed}");

    let m = gw
        .metrics_until("the batch priced", |m| batch_cost(m, "anthropic") > 0.0)
        .await;
    let labels = [
        ("tier", "batch"),
        ("client", "team"),
        ("route", "claude"),
        ("provider", "anthropic"),
    ];
    assert_eq!(metric(&m, "sluice_requests_total", &labels), 2.0, "{m}");
    let cost = batch_cost(&m, "anthropic");

    // Deleted by its owner (priced already: not again), then gone.
    let (s, b) = send(&gw, "DELETE", &path, &TEAM_ANTHROPIC, "").await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    assert_eq!(parse(&b)["type"], "message_batch_deleted");
    let m = gw.metrics().await;
    assert_eq!(batch_cost(&m, "anthropic"), cost);
    let report = batch_report(&gw).await;
    assert_eq!(report.len(), 1, "{report:?}");
    assert_eq!((report[0].0.as_str(), report[0].1), ("claude", 2));
    gw.stop().await;
}

#[tokio::test]
async fn odd_requests_get_clear_errors_not_the_provider() {
    let gw = Gateway::start_sim(sim(), policies(), |_| {}).await;
    for (method, path, status) in [
        ("PUT", "/v1/files", 405),
        ("GET", "/v1/batches/b1/cancel", 405),
        ("GET", "/v1/files/file-1/other", 404),
        ("GET", "/v1/files/a%2Fb", 404),
        ("POST", "/v1/uploads", 404),
    ] {
        let (s, b) = send(&gw, method, path, &[TEAM], "").await;
        assert_eq!(
            s.as_u16(),
            status,
            "{method} {path}: {}",
            String::from_utf8_lossy(&b)
        );
        assert!(parse(&b)["error"]["message"].is_string());
    }
    // No key: 401 before anything reaches the provider.
    let (s, _) = send(&gw, "GET", "/v1/files", &[], "").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // A batch naming a file that does not exist, or an id that is no id.
    for file in ["file-nope", "../etc", "x y"] {
        let create = json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "24h"}).to_string();
        let (s, _) = send(&gw, "POST", "/v1/batches", &[TEAM], &create).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{file}");
    }
    // A malformed create is the provider's to refuse, in its words.
    let (s, b) = send(
        &gw,
        "POST",
        "/v1/batches",
        &[TEAM],
        r#"{"input_file_id": null}"#,
    )
    .await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&b)
    );
    let sent: Vec<String> = gw
        .sim_requests()
        .await
        .iter()
        .map(|r| r["path"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        sent,
        ["/v1/batches"],
        "only the malformed create reached the provider"
    );
    gw.stop().await;
}

// ---------- the official SDKs, in phases around restarts ----------

/// Runs one phase of an SDK script against `gw`; its last line of output is JSON.
async fn phase(program: &std::path::Path, args: &[&str], gw: &Gateway) -> Value {
    let mut cmd = sdk::loopback(program);
    cmd.args(args)
        .env("SLUICE_BASE_URL", gw.url("/v1"))
        .env("SLUICE_ROOT_URL", gw.url(""))
        .env("SLUICE_KEY", "sk-team")
        .env("SLUICE_OTHER_KEY", "sk-other");
    let out = sdk::run(cmd).await.expect("run the SDK script");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{args:?} failed:\n{stdout}\n{stderr}");
    parse(stdout.lines().last().unwrap_or_default().as_bytes())
}

/// Batches are created through one gateway and end (held at the provider) while none
/// runs; the next gateway prices them when the SDK picks them up, a third does not again.
/// Returns the metrics of the gateway that priced them and the report rows.
async fn across_restarts(
    program: &std::path::Path,
    script: &str,
    pickup: impl Fn(&Value) -> Vec<String>,
    priced: impl Fn(&str) -> bool,
) -> (String, Vec<(String, u64, f64)>) {
    let gw = Gateway::start_sim(sim(), policies(), |_| {}).await;
    gw.sim_post("/sim/batch-faults", json!({"hold": true}))
        .await;
    let created = phase(program, &[script, "create"], &gw).await;
    assert_eq!(batch_report(&gw).await, []);

    let gw = gw.restart(policies(), |_| {}).await;
    gw.sim_post("/sim/batch-faults", json!({"hold": false}))
        .await;
    let mut args = vec![script.to_owned(), "pickup".to_owned()];
    args.extend(pickup(&created));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    phase(program, &args, &gw).await;
    let m = gw.metrics_until("the batches priced", &priced).await;
    let report = batch_report(&gw).await;

    let gw = gw.restart(policies(), |_| {}).await;
    phase(program, &args, &gw).await;
    // A sweep of unpriced batches ran (the engine's passes follow its ticks) and found none.
    chat_once(&gw).await;
    assert_eq!(batch_report(&gw).await, report, "priced once");
    let again = gw.metrics().await;
    for provider in ["openai", "anthropic"] {
        assert_eq!(batch_cost(&again, provider), 0.0, "{again}");
    }
    gw.stop().await;
    (m, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_openai_and_anthropic_sdks_batch_through_sluice_priced_once_across_restarts() {
    let python = sdk::python();
    if !sdk::ready(
        &python,
        &["-c", "import openai, anthropic"],
        "SLUICE_SKIP_PYTHON",
    )
    .await
    {
        return;
    }
    let ids = |v: &Value| {
        vec![
            v["openai"].as_str().unwrap().to_owned(),
            v["anthropic"].as_str().unwrap().to_owned(),
        ]
    };
    let both = |m: &str| batch_cost(m, "openai") > 0.0 && batch_cost(m, "anthropic") > 0.0;
    let (m, report) =
        across_restarts(&python, "tests/python/explicit_batches_sdk.py", ids, both).await;
    let requests = |route| {
        metric(
            &m,
            "sluice_requests_total",
            &[("tier", "batch"), ("client", "team"), ("route", route)],
        )
    };
    assert_eq!((requests("nightly"), requests("claude")), (3.0, 2.0), "{m}");
    let mut routes: Vec<(&str, u64)> = report.iter().map(|r| (r.0.as_str(), r.1)).collect();
    routes.sort();
    assert_eq!(routes, [("claude", 2), ("nightly", 3)]);
    let cost: f64 = report.iter().map(|r| r.2).sum();
    let metered = batch_cost(&m, "openai") + batch_cost(&m, "anthropic");
    assert!(
        (cost - metered).abs() < 1e-12,
        "report {cost} vs metrics {metered}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_openai_sdk_batches_through_sluice_priced_once_across_restarts() {
    let node = sdk::node();
    if !sdk::ready(&node, &["-e", &sdk::node_sdk_check()], "SLUICE_SKIP_NODE").await {
        return;
    }
    let id = |v: &Value| vec![v["openai"].as_str().unwrap().to_owned()];
    let priced = |m: &str| batch_cost(m, "openai") > 0.0;
    let (m, report) = across_restarts(&node, "tests/node/explicit_batches.mjs", id, priced).await;
    let labels = [("tier", "batch"), ("client", "team"), ("route", "nightly")];
    assert_eq!(metric(&m, "sluice_requests_total", &labels), 3.0, "{m}");
    assert_eq!(report.len(), 1);
    assert_eq!((report[0].0.as_str(), report[0].1), ("nightly", 3));
    assert!((report[0].2 - batch_cost(&m, "openai")).abs() < 1e-12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_output_is_deleted_at_once_is_still_priced() {
    // Passes over unpriced batches are an hour apart: only the deletion can price it in time.
    let gw = Gateway::start_sim(sim(), policies(), |c| {
        c.batch.poll_interval = Duration::from_secs(3600);
    })
    .await;
    let lines: Vec<String> = (0..2)
        .map(|i| chat_line(&format!("d{i}"), "brief"))
        .collect();
    let (_, file) = upload(&gw, TEAM, &lines).await;
    let create = json!({"input_file_id": file["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}).to_string();
    let (s, b) = send(&gw, "POST", "/v1/batches", &[TEAM], &create).await;
    assert_eq!(s, StatusCode::OK);
    let id = parse(&b)["id"].as_str().unwrap().to_owned();
    let done = until_ended(&gw, &format!("/v1/batches/{id}"), &[TEAM]).await;
    let output = done["output_file_id"].as_str().unwrap();
    let (s, _) = send(&gw, "DELETE", &format!("/v1/files/{output}"), &[TEAM], "").await;
    assert_eq!(s, StatusCode::OK);
    // Priced before the output went: in the ledger when the deletion is answered.
    let report = batch_report(&gw).await;
    assert_eq!(report.len(), 1, "{report:?}");
    assert_eq!((report[0].0.as_str(), report[0].1), ("nightly", 2));
    gw.stop().await;
}
