//! In-process tests of Gemini Batch Mode: inline and file batches, the Operation envelope,
//! states over (paused) time, cancel, delete, list, budgets and forced faults.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::tests::{Answer, Server};
use super::tests_gemini::{JSON, KEY, ask, call, gemini, gget, google_error, gpost};
use super::tests_gemini_files::{upload, upload_in};
use super::{GeminiConfig, SimConfig, Simulator};

const CREATE: &str = "/v1beta/models/gemini-2.5-flash:batchGenerateContent";

fn instant() -> SimConfig {
    gemini(GeminiConfig {
        batch_turnaround: Duration::ZERO,
        ..GeminiConfig::default()
    })
}

fn slow() -> SimConfig {
    gemini(GeminiConfig {
        batch_turnaround: Duration::from_secs(3_600),
        ..GeminiConfig::default()
    })
}

fn inline(key: &str, text: &str) -> Value {
    json!({"request": ask(text), "metadata": {"key": key}})
}

fn inline_body(name: &str, requests: Vec<Value>) -> Value {
    json!({"batch": {"displayName": name,
                     "inputConfig": {"requests": {"requests": requests}}}})
}

async fn create_ok(srv: &Server, body: &Value) -> Value {
    let a = gpost(srv, CREATE, body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    a.json()
}

fn name_of(op: &Value) -> String {
    op["name"].as_str().unwrap().to_owned()
}

async fn op(srv: &Server, name: &str) -> Value {
    let a = gget(srv, &format!("/v1beta/{name}")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    a.json()
}

async fn cancel(srv: &Server, name: &str) -> Answer {
    srv.send(
        Method::POST,
        &format!("/v1beta/{name}:cancel"),
        &[KEY],
        Bytes::new(),
    )
    .await
}

/// `GET` of a batch (or any path) through [`Simulator::handle`].
async fn read(sim: &Simulator, path: &str) -> Value {
    call(sim, Method::GET, path, &[KEY], Bytes::new())
        .await
        .json()
}

fn output_of(op: &Value) -> Value {
    let out = op["metadata"]["output"].clone();
    let mut response = op["response"].clone();
    assert_eq!(
        response["@type"],
        "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatchOutput"
    );
    response.as_object_mut().unwrap().remove("@type");
    assert_eq!(
        response, out,
        "output duplicated in metadata.output and response"
    );
    out
}

#[tokio::test]
async fn inline_batch_succeeds_with_results_in_input_order() {
    let srv = Server::start(instant()).await;
    let mut tagged = inline("k-2", "second question");
    tagged["metadata"]["tenant"] = json!("42");
    let requests = vec![
        inline("k-1", "first question"),
        tagged,
        // Parses, but is invalid: a per-request error, not a failed create.
        json!({"request": {"contents": []}, "metadata": {"key": "k-3"}}),
        // service_tier has no place in Batch Mode.
        json!({"request": {"contents": [{"parts": [{"text": "x"}]}], "service_tier": "flex"},
               "metadata": {"key": "k-4"}}),
        json!({"request": ask("no metadata")}),
    ];
    let created = create_ok(&srv, &inline_body("gwb_0001", requests)).await;
    let name = name_of(&created);
    let id = name.strip_prefix("batches/").unwrap();
    assert_eq!(id.len(), 36);
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    );
    let meta = &created["metadata"];
    assert_eq!(
        meta["@type"],
        "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatch"
    );
    assert_eq!(meta["name"], name.as_str());
    assert_eq!(meta["model"], "models/gemini-2.5-flash");
    assert_eq!(meta["displayName"], "gwb_0001");
    assert_eq!(meta["state"], "BATCH_STATE_PENDING");
    assert_eq!(
        meta["batchStats"],
        json!({"requestCount": "5", "pendingRequestCount": "5"})
    );
    assert_eq!(meta["createTime"], meta["updateTime"]);
    for absent in ["endTime", "output", "inputConfig", "priority"] {
        assert!(meta.get(absent).is_none(), "{absent}");
    }
    for absent in ["done", "response", "error"] {
        assert!(created.get(absent).is_none(), "{absent}");
    }

    let done = op(&srv, &name).await;
    assert_eq!(done["done"], true);
    assert!(done.get("error").is_none());
    let meta = &done["metadata"];
    assert_eq!(meta["state"], "BATCH_STATE_SUCCEEDED");
    assert_eq!(
        meta["batchStats"],
        json!({"requestCount": "5", "successfulRequestCount": "3", "failedRequestCount": "2"})
    );
    assert!(meta["endTime"].as_str().unwrap() >= meta["createTime"].as_str().unwrap());
    let out = output_of(&done);
    let items = out["inlinedResponses"]["inlinedResponses"]
        .as_array()
        .unwrap();
    assert_eq!(items.len(), 5);
    // Input order, metadata echoed as sent.
    assert_eq!(items[0]["metadata"], json!({"key": "k-1"}));
    assert_eq!(items[1]["metadata"], json!({"key": "k-2", "tenant": "42"}));
    assert!(items[4].get("metadata").is_none());
    let by_key: HashMap<&str, &Value> = items
        .iter()
        .filter_map(|i| Some((i["metadata"]["key"].as_str()?, i)))
        .collect();
    let first = &by_key["k-1"]["response"];
    assert_eq!(
        first["candidates"][0]["content"]["parts"][0]["text"],
        "Simulated answer to: first question"
    );
    assert_eq!(first["modelVersion"], "gemini-2.5-flash");
    assert!(first["usageMetadata"].get("serviceTier").is_none());
    assert_eq!(by_key["k-3"]["error"]["code"], 3);
    assert!(by_key["k-3"].get("response").is_none());
    assert_eq!(by_key["k-4"]["error"]["code"], 3);
    // Reading again is stable: the requests ran once.
    assert_eq!(op(&srv, &name).await, done);
    srv.stop().await;
}

#[tokio::test]
async fn file_batch_writes_keyed_jsonl_lines_that_download_on_both_paths() {
    let srv = Server::start(instant()).await;
    let lines = [
        json!({"key": "row-1", "request": ask("invoice is wrong")}).to_string(),
        "{not json".to_owned(),
        json!({"key": "row-3", "request": {"contents": [{"role": "bot", "parts": [{"text": "x"}]}]}})
            .to_string(),
        json!({"key": "row-4", "request": ask("reset password")}).to_string(),
    ];
    let file = upload(&srv, "input", lines.join("\n").as_bytes()).await;
    let input = file["name"].as_str().unwrap();
    let body = json!({"batch": {"display_name": "gwb_0002", "priority": 5,
                                "input_config": {"file_name": input}}});
    let created = create_ok(&srv, &body).await;
    assert_eq!(
        created["metadata"]["inputConfig"],
        json!({"fileName": input})
    );
    assert_eq!(created["metadata"]["priority"], "5");
    assert_eq!(created["metadata"]["batchStats"]["requestCount"], "4");
    let name = name_of(&created);
    let done = op(&srv, &name).await;
    assert_eq!(done["metadata"]["state"], "BATCH_STATE_SUCCEEDED");
    let out = output_of(&done);
    let id = name.strip_prefix("batches/").unwrap();
    let results = format!("files/batch-{id}");
    assert_eq!(out, json!({"responsesFile": results}));
    assert_eq!(
        done["metadata"]["batchStats"],
        json!({"requestCount": "4", "successfulRequestCount": "2", "failedRequestCount": "2"})
    );

    let meta = gget(&srv, &format!("/v1beta/{results}")).await.json();
    assert_eq!(meta["source"], "GENERATED");
    assert_eq!(meta["mimeType"], "application/jsonl");
    let download = meta["downloadUri"].as_str().unwrap();
    assert!(download.ends_with(&format!("/download/v1beta/{results}:download?alt=media")));
    let mut bodies = Vec::new();
    for path in [
        format!("/download/v1beta/{results}:download?alt=media"),
        format!("/v1beta/{results}:download?alt=media"),
        format!("/download/v1/{results}:download?alt=media"),
    ] {
        let a = gget(&srv, &path).await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.text());
        bodies.push(a.text().to_owned());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    let no_alt = gget(&srv, &format!("/v1beta/{results}:download")).await;
    google_error(&no_alt, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    let lines: Vec<Value> = bodies[0]
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    // Input order; matched by key.
    assert_eq!(lines[0]["key"], "row-1");
    assert!(lines[1].get("key").is_none());
    assert_eq!(lines[1]["error"]["code"], 3);
    let by_key: HashMap<&str, &Value> = lines
        .iter()
        .filter_map(|l| Some((l["key"].as_str()?, l)))
        .collect();
    assert_eq!(
        by_key["row-4"]["response"]["candidates"][0]["content"]["parts"][0]["text"],
        "Simulated answer to: reset password"
    );
    assert_eq!(by_key["row-3"]["error"]["code"], 3);
    assert!(by_key["row-1"].get("error").is_none());
    srv.stop().await;
}

#[tokio::test(start_paused = true)]
async fn states_follow_the_turnaround_in_paused_time() {
    let sim = Simulator::new(gemini(GeminiConfig {
        batch_turnaround: Duration::from_secs(100),
        ..GeminiConfig::default()
    }));
    let body = inline_body("t", vec![inline("a", "x")]).to_string();
    let created = call(&sim, Method::POST, CREATE, &[KEY, JSON], body)
        .await
        .json();
    let path = format!("/v1beta/{}", name_of(&created));
    assert_eq!(
        read(&sim, &path).await["metadata"]["state"],
        "BATCH_STATE_PENDING"
    );
    tokio::time::advance(Duration::from_secs(10)).await;
    let running = read(&sim, &path).await;
    assert_eq!(running["metadata"]["state"], "BATCH_STATE_RUNNING");
    assert!(running.get("done").is_none());
    assert_eq!(
        running["metadata"]["batchStats"]["pendingRequestCount"],
        "1"
    );
    let m = &running["metadata"];
    assert!(m["updateTime"].as_str().unwrap() > m["createTime"].as_str().unwrap());
    tokio::time::advance(Duration::from_secs(89)).await;
    assert_eq!(
        read(&sim, &path).await["metadata"]["state"],
        "BATCH_STATE_RUNNING"
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    let done = read(&sim, &path).await;
    assert_eq!(done["metadata"]["state"], "BATCH_STATE_SUCCEEDED");
    assert_eq!(done["done"], true);
}

#[tokio::test(start_paused = true)]
async fn expiry_after_48_hours_has_no_output() {
    let sim = Simulator::new(gemini(GeminiConfig {
        batch_turnaround: Duration::from_secs(72 * 3600),
        ..GeminiConfig::default()
    }));
    let body = inline_body("late", vec![inline("a", "x")]).to_string();
    let created = call(&sim, Method::POST, CREATE, &[KEY, JSON], body)
        .await
        .json();
    let path = format!("/v1beta/{}", name_of(&created));
    tokio::time::advance(Duration::from_secs(48 * 3600 - 1)).await;
    let before = call(&sim, Method::GET, &path, &[KEY], Bytes::new())
        .await
        .json();
    assert_eq!(before["metadata"]["state"], "BATCH_STATE_RUNNING");
    tokio::time::advance(Duration::from_secs(1)).await;
    let expired = call(&sim, Method::GET, &path, &[KEY], Bytes::new())
        .await
        .json();
    assert_eq!(expired["metadata"]["state"], "BATCH_STATE_EXPIRED");
    assert_eq!(expired["done"], true);
    assert_eq!(expired["error"]["code"], 4);
    assert!(expired.get("response").is_none());
    assert!(expired["metadata"].get("output").is_none());
    assert_eq!(
        expired["metadata"]["batchStats"],
        json!({"requestCount": "1"})
    );
}

#[tokio::test(start_paused = true)]
async fn expire_fault_and_input_file_expiry() {
    let sim = Simulator::new(SimConfig {
        gemini: GeminiConfig {
            batch_turnaround: Duration::from_secs(600),
            file_ttl: Duration::from_secs(30),
            ..GeminiConfig::default()
        },
        ..SimConfig::default()
    });
    let faults = call(
        &sim,
        Method::POST,
        "/sim/batch-faults",
        &[JSON],
        r#"{"expire": 1}"#,
    )
    .await;
    assert_eq!(faults.status, StatusCode::OK);
    let body = inline_body("never", vec![inline("a", "x")]).to_string();
    let expiring = call(&sim, Method::POST, CREATE, &[KEY, JSON], body.clone())
        .await
        .json();
    let normal = call(&sim, Method::POST, CREATE, &[KEY, JSON], body)
        .await
        .json();
    // The input file lives 30 s; the batch starts running at 60 s.
    let file = upload_in(
        &sim,
        json!({"key": "f", "request": ask("x")})
            .to_string()
            .as_bytes(),
    )
    .await;
    let body = json!({"batch": {"displayName": "f", "inputConfig": {"fileName": file["name"]}}});
    let starved = call(&sim, Method::POST, CREATE, &[KEY, JSON], body.to_string())
        .await
        .json();
    let path = |op: &Value| format!("/v1beta/{}", name_of(op));
    tokio::time::advance(Duration::from_secs(600)).await;
    assert_eq!(
        read(&sim, &path(&normal)).await["metadata"]["state"],
        "BATCH_STATE_SUCCEEDED"
    );
    let failed = read(&sim, &path(&starved)).await;
    assert_eq!(failed["metadata"]["state"], "BATCH_STATE_FAILED");
    assert_eq!(failed["error"]["code"], 9);
    assert_eq!(
        read(&sim, &path(&expiring)).await["metadata"]["state"],
        "BATCH_STATE_RUNNING"
    );
    tokio::time::advance(Duration::from_secs(48 * 3600)).await;
    let expired = read(&sim, &path(&expiring)).await;
    assert_eq!(expired["metadata"]["state"], "BATCH_STATE_EXPIRED");
    assert!(expired.get("response").is_none());
}

#[tokio::test]
async fn configured_expiry_below_turnaround_expires_at_once() {
    let srv = Server::start(gemini(GeminiConfig {
        batch_turnaround: Duration::from_secs(1),
        batch_expiry: Duration::ZERO,
        ..GeminiConfig::default()
    }))
    .await;
    let created = create_ok(&srv, &inline_body("e", vec![inline("a", "x")])).await;
    assert_eq!(created["metadata"]["state"], "BATCH_STATE_PENDING");
    let v = op(&srv, &name_of(&created)).await;
    assert_eq!(v["metadata"]["state"], "BATCH_STATE_EXPIRED");
    assert!(v["metadata"].get("output").is_none());
    srv.stop().await;
}

#[tokio::test]
async fn cancel_answers_empty_then_cancelled_and_finished_batches_refuse() {
    let srv = Server::start(slow()).await;
    let created = create_ok(&srv, &inline_body("c", vec![inline("a", "x")])).await;
    let name = name_of(&created);
    let a = cancel(&srv, &name).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.json(), json!({}));
    let v = op(&srv, &name).await;
    assert_eq!(v["metadata"]["state"], "BATCH_STATE_CANCELLED");
    assert_eq!(v["done"], true);
    assert_eq!(v["error"]["code"], 1);
    assert!(v.get("response").is_none());
    assert!(v["metadata"].get("output").is_none());
    assert!(v["metadata"].get("endTime").is_some());
    let again = cancel(&srv, &name).await;
    google_error(&again, StatusCode::BAD_REQUEST, "FAILED_PRECONDITION");
    google_error(
        &cancel(&srv, "batches/nope").await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    srv.stop().await;

    let srv = Server::start(instant()).await;
    let created = create_ok(&srv, &inline_body("d", vec![inline("a", "x")])).await;
    let name = name_of(&created);
    let a = cancel(&srv, &name).await;
    let e = google_error(&a, StatusCode::BAD_REQUEST, "FAILED_PRECONDITION");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("BATCH_STATE_SUCCEEDED")
    );
    assert_eq!(
        op(&srv, &name).await["metadata"]["state"],
        "BATCH_STATE_SUCCEEDED"
    );
    srv.stop().await;
}

#[tokio::test(start_paused = true)]
async fn cancel_delay_keeps_the_state_until_it_takes_effect() {
    let sim = Simulator::new(SimConfig {
        cancel_delay: Duration::from_secs(5),
        gemini: GeminiConfig {
            batch_turnaround: Duration::from_secs(100),
            ..GeminiConfig::default()
        },
        ..SimConfig::default()
    });
    let body = inline_body("c", vec![inline("a", "x")]).to_string();
    let created = call(&sim, Method::POST, CREATE, &[KEY, JSON], body)
        .await
        .json();
    let name = name_of(&created);
    let path = format!("/v1beta/{name}");
    tokio::time::advance(Duration::from_secs(20)).await;
    let a = call(
        &sim,
        Method::POST,
        &format!("{path}:cancel"),
        &[KEY],
        Bytes::new(),
    )
    .await;
    assert_eq!(a.json(), json!({}));
    assert_eq!(
        read(&sim, &path).await["metadata"]["state"],
        "BATCH_STATE_RUNNING"
    );
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(
        read(&sim, &path).await["metadata"]["state"],
        "BATCH_STATE_CANCELLED"
    );
}

#[tokio::test]
async fn create_never_deduplicates_and_list_pages() {
    let srv = Server::start(slow()).await;
    let body = inline_body("same-name", vec![inline("a", "x")]);
    let first = name_of(&create_ok(&srv, &body).await);
    let second = name_of(&create_ok(&srv, &body).await);
    assert_ne!(first, second);
    let page = gget(&srv, "/v1beta/batches?pageSize=1").await.json();
    let ops = page["operations"].as_array().unwrap();
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0]["name"], second.as_str());
    assert_eq!(ops[0]["metadata"]["displayName"], "same-name");
    let token = page["nextPageToken"].as_str().unwrap();
    let next = gget(
        &srv,
        &format!("/v1beta/batches?pageSize=1&pageToken={token}"),
    )
    .await
    .json();
    assert_eq!(next["operations"][0]["name"], first.as_str());
    assert!(next.get("nextPageToken").is_none());
    let all = gget(&srv, "/v1/batches").await.json();
    assert_eq!(all["operations"].as_array().unwrap().len(), 2);
    google_error(
        &gget(&srv, "/v1beta/batches?pageToken=zzz").await,
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
    );
    google_error(
        &gget(&srv, "/v1beta/batches?filter=state%3DRUNNING").await,
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
    );
    // Without a Google key, `/v1/batches` is the OpenAI Batch API.
    let openai = srv
        .send(
            Method::GET,
            "/v1/batches",
            &[("authorization", "Bearer sk-test")],
            Bytes::new(),
        )
        .await
        .json();
    assert_eq!(openai["object"], "list");
    srv.stop().await;
}

#[tokio::test]
async fn delete_hides_a_batch_but_it_keeps_its_budget_until_it_ends() {
    let srv = Server::start(gemini(GeminiConfig {
        batch_turnaround: Duration::from_secs(3_600),
        batch_max_concurrent: 1,
        ..GeminiConfig::default()
    }))
    .await;
    let body = inline_body("one", vec![inline("a", "x")]);
    let name = name_of(&create_ok(&srv, &body).await);
    let full = gpost(&srv, CREATE, &body).await;
    let e = google_error(&full, StatusCode::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED");
    assert!(full.headers.get("retry-after").is_none());
    assert_eq!(
        e["details"][0]["@type"],
        "type.googleapis.com/google.rpc.QuotaFailure"
    );
    let del = srv
        .send(
            Method::DELETE,
            &format!("/v1beta/{name}"),
            &[KEY],
            Bytes::new(),
        )
        .await;
    assert_eq!(del.status, StatusCode::OK);
    assert_eq!(del.json(), json!({}));
    google_error(
        &gget(&srv, &format!("/v1beta/{name}")).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    assert_eq!(gget(&srv, "/v1beta/batches").await.json(), json!({}));
    // Deleting does not cancel: the slot stays taken.
    google_error(
        &gpost(&srv, CREATE, &body).await,
        StatusCode::TOO_MANY_REQUESTS,
        "RESOURCE_EXHAUSTED",
    );
    srv.stop().await;

    // A cancelled batch frees its slot.
    let srv = Server::start(gemini(GeminiConfig {
        batch_turnaround: Duration::from_secs(3_600),
        batch_max_concurrent: 1,
        ..GeminiConfig::default()
    }))
    .await;
    let name = name_of(&create_ok(&srv, &body).await);
    cancel(&srv, &name).await;
    create_ok(&srv, &body).await;
    srv.stop().await;
}

#[tokio::test]
async fn enqueued_tokens_are_budgeted_per_model() {
    let srv = Server::start(gemini(GeminiConfig {
        batch_turnaround: Duration::from_secs(3_600),
        batch_enqueued_tokens: 100,
        ..GeminiConfig::default()
    }))
    .await;
    // 240 bytes: 60 tokens.
    let body = inline_body("t", vec![inline("a", &"x".repeat(240))]);
    create_ok(&srv, &body).await;
    let over = gpost(&srv, CREATE, &body).await;
    let e = google_error(&over, StatusCode::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED");
    assert!(e["message"].as_str().unwrap().contains("60"));
    let pro = "/v1/models/gemini-2.5-pro:batchGenerateContent";
    let a = gpost(&srv, pro, &body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.json()["metadata"]["model"], "models/gemini-2.5-pro");
    srv.stop().await;
}

#[tokio::test]
async fn batch_faults_force_429_failed_and_per_key_errors() {
    let srv = Server::start(instant()).await;
    let faults = srv
        .post(
            "/sim/batch-faults",
            &json!({"create_429": 1, "fail_validation": 1, "line_errors": ["k-2"]}),
        )
        .await;
    assert_eq!(faults.status, StatusCode::OK);
    let body = inline_body("f", vec![inline("k-1", "a"), inline("k-2", "b")]);
    google_error(
        &gpost(&srv, CREATE, &body).await,
        StatusCode::TOO_MANY_REQUESTS,
        "RESOURCE_EXHAUSTED",
    );
    let failed = op(&srv, &name_of(&create_ok(&srv, &body).await)).await;
    assert_eq!(failed["metadata"]["state"], "BATCH_STATE_FAILED");
    assert_eq!(failed["done"], true);
    assert_eq!(failed["error"]["code"], 13);
    assert!(failed.get("response").is_none());
    let ok = op(&srv, &name_of(&create_ok(&srv, &body).await)).await;
    let items = &output_of(&ok)["inlinedResponses"]["inlinedResponses"];
    assert!(items[0].get("response").is_some());
    assert_eq!(items[1]["error"]["code"], 13);
    assert_eq!(items[1]["metadata"]["key"], "k-2");
    let stats = srv
        .send(Method::GET, "/sim/batches/stats", &[], Bytes::new())
        .await
        .json();
    assert_eq!(stats["created"], 2);
    assert_eq!(stats["lines_by_custom_id"]["k-1"], 2);
    srv.stop().await;
}

#[tokio::test]
async fn create_validation_and_the_inline_size_limit() {
    let srv = Server::start(gemini(GeminiConfig {
        batch_inline_max_bytes: 400,
        ..GeminiConfig::default()
    }))
    .await;
    let bad: [Value; 9] = [
        json!({}),
        json!({"batch": {"inputConfig": {"requests": {"requests": [inline("a", "x")]}}}}),
        json!({"batch": {"displayName": "x"}}),
        json!({"batch": {"displayName": "x", "inputConfig": {}}}),
        json!({"batch": {"displayName": "x", "inputConfig": {"fileName": "files/a",
                         "requests": {"requests": [inline("a", "x")]}}}}),
        inline_body("x", vec![]),
        // An inline request with an unknown name fails the whole create.
        inline_body(
            "x",
            vec![json!({"request": {"contents": [], "max_tokens": 1}})],
        ),
        json!({"batch": {"displayName": "x", "completion_window": "24h"}}),
        inline_body("x", vec![json!({"request": ask("x"), "metadata": "k"})]),
    ];
    for body in bad {
        let a = gpost(&srv, CREATE, &body).await;
        google_error(&a, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    }
    let big = inline_body("big", vec![inline("a", &"x".repeat(400))]);
    let a = gpost(&srv, CREATE, &big).await;
    let e = google_error(&a, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("payload size exceeds the limit: 400")
    );
    let missing = json!({"batch": {"displayName": "x", "inputConfig": {"fileName": "files/nope"}}});
    google_error(
        &gpost(&srv, CREATE, &missing).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    let unknown = "/v1beta/models/claude-haiku:batchGenerateContent";
    google_error(
        &gpost(&srv, unknown, &inline_body("x", vec![inline("a", "x")])).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    let malformed = srv
        .send(Method::POST, CREATE, &[KEY, JSON], "{\"batch\":")
        .await;
    google_error(&malformed, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    srv.stop().await;
}
