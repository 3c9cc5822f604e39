//! In-process tests of the Batch API and its fault controls.

use std::collections::HashMap;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::SimConfig;
use super::tests::Server;
use super::tests_files::{
    chat_line, create, create_ok, get, lines_of, poll_terminal, upload_lines, upload_raw,
};

fn instant() -> SimConfig {
    SimConfig {
        batch_turnaround: Duration::ZERO,
        ..SimConfig::default()
    }
}

fn by_custom_id(lines: Vec<Value>) -> HashMap<String, Value> {
    lines
        .into_iter()
        .map(|l| (l["custom_id"].as_str().unwrap().to_owned(), l))
        .collect()
}

async fn faults(srv: &Server, body: Value) -> Value {
    let a = srv.post("/sim/batch-faults", &body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    a.json()
}

#[tokio::test]
async fn batch_of_three_chat_lines_completes_mapped_by_custom_id() {
    let srv = Server::start(instant()).await;
    let texts = [
        ("q-1", "first question"),
        ("q-2", "second"),
        ("q-3", "third one"),
    ];
    let lines: Vec<Value> = texts.iter().map(|(id, t)| chat_line(id, t)).collect();
    let file = upload_lines(&srv, &lines).await;
    let created = srv
        .post(
            "/v1/batches",
            &json!({"input_file_id": file, "endpoint": "/v1/chat/completions",
                    "completion_window": "24h", "metadata": {"tenant": "42"},
                    "output_expires_after": {"anchor": "created_at", "seconds": 604800}}),
        )
        .await
        .json();
    assert!(created["id"].as_str().unwrap().starts_with("batch_sim"));
    assert_eq!(created["object"], "batch");
    assert_eq!(created["status"], "validating");
    assert_eq!(created["input_file_id"], file.as_str());
    assert_eq!(created["completion_window"], "24h");
    assert_eq!(created["model"], "gpt-4o-mini");
    assert_eq!(created["metadata"], json!({"tenant": "42"}));
    assert_eq!(
        created["request_counts"],
        json!({"total": 0, "completed": 0, "failed": 0})
    );
    let created_at = created["created_at"].as_u64().unwrap();
    assert_eq!(created["expires_at"], created_at + 86_400);
    for key in ["in_progress_at", "completed_at", "output_file_id", "errors"] {
        assert_eq!(created[key], Value::Null, "{key}");
    }

    let id = created["id"].as_str().unwrap();
    let done = poll_terminal(&srv, id).await;
    assert_eq!(done["status"], "completed");
    for key in ["in_progress_at", "finalizing_at", "completed_at"] {
        assert!(done[key].as_u64().unwrap() >= created_at, "{key}");
    }
    for key in ["failed_at", "expired_at", "cancelled_at", "error_file_id"] {
        assert_eq!(done[key], Value::Null, "{key}");
    }
    assert_eq!(
        done["request_counts"],
        json!({"total": 3, "completed": 3, "failed": 0})
    );
    // Reading again is stable: the files were produced once.
    assert_eq!(get(&srv, &format!("/v1/batches/{id}")).await.json(), done);

    let out_meta = get(
        &srv,
        &format!("/v1/files/{}", done["output_file_id"].as_str().unwrap()),
    )
    .await
    .json();
    assert_eq!(out_meta["purpose"], "batch_output");
    assert_eq!(
        out_meta["expires_at"],
        out_meta["created_at"].as_u64().unwrap() + 604_800
    );
    let out = lines_of(&srv, &done["output_file_id"]).await;
    assert_eq!(out.len(), 3);
    let (mut input, mut output) = (0, 0);
    let out = by_custom_id(out);
    for (custom_id, text) in texts {
        let line = &out[custom_id];
        assert!(line["id"].as_str().unwrap().starts_with("batch_req_"));
        assert_eq!(line["error"], Value::Null);
        assert_eq!(line["response"]["status_code"], 200);
        assert!(
            line["response"]["request_id"]
                .as_str()
                .unwrap()
                .starts_with("req_")
        );
        let body = &line["response"]["body"];
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(
            body["choices"][0]["message"]["content"],
            format!("Simulated answer to: {text}")
        );
        input += body["usage"]["prompt_tokens"].as_u64().unwrap();
        output += body["usage"]["completion_tokens"].as_u64().unwrap();
    }
    assert_eq!(done["usage"]["input_tokens"], input);
    assert_eq!(done["usage"]["output_tokens"], output);
    assert_eq!(done["usage"]["total_tokens"], input + output);
    srv.stop().await;
}

#[tokio::test]
async fn batch_same_prefix_lines_hit_prompt_cache() {
    let srv = Server::start(instant()).await;
    let system = "You are a meticulous support classifier. ".repeat(120);
    let line = |id: &str, user: &str| {
        json!({"custom_id": id, "method": "POST", "url": "/v1/chat/completions",
               "body": {"model": "gpt-4o-mini", "messages": [
                   {"role": "system", "content": system},
                   {"role": "user", "content": user}]}})
    };
    let file = upload_lines(&srv, &[line("c1", "a"), line("c2", "b"), line("c3", "c")]).await;
    let done = poll_terminal(&srv, &create_ok(&srv, &file).await).await;
    let out = by_custom_id(lines_of(&srv, &done["output_file_id"]).await);
    let cached = |id: &str| {
        out[id]["response"]["body"]["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(cached("c1"), 0);
    assert!(cached("c2") >= 1024);
    assert_eq!(cached("c3"), cached("c2"));
    assert_eq!(
        done["usage"]["input_tokens_details"]["cached_tokens"],
        cached("c2") + cached("c3")
    );
    srv.stop().await;
}

#[tokio::test]
async fn batch_validation_failures_name_lines() {
    let srv = Server::start(instant()).await;
    let mut other_model = chat_line("d", "x");
    other_model["body"]["model"] = json!("gpt-4.1");
    let mut get_line = chat_line("e", "x");
    get_line["method"] = json!("GET");
    let mut wrong_url = chat_line("f", "x");
    wrong_url["url"] = json!("/v1/embeddings");
    let content = [
        chat_line("a", "x").to_string(),
        chat_line("a", "y").to_string(),
        "{not json".to_owned(),
        other_model.to_string(),
        get_line.to_string(),
        wrong_url.to_string(),
    ]
    .join("\n");
    let file = upload_raw(&srv, &content).await;
    let failed = poll_terminal(&srv, &create_ok(&srv, &file).await).await;
    assert_eq!(failed["status"], "failed");
    assert!(failed["failed_at"].is_u64());
    assert_eq!(failed["in_progress_at"], Value::Null);
    assert_eq!(failed["output_file_id"], Value::Null);
    assert_eq!(failed["error_file_id"], Value::Null);
    assert_eq!(failed["errors"]["object"], "list");
    let errors: Vec<(u64, String)> = failed["errors"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert!(e["message"].is_string());
            (
                e["line"].as_u64().unwrap(),
                e["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expect = [
        (2, "duplicate_custom_id"),
        (3, "invalid_json_line"),
        (4, "mixed_models"),
        (5, "invalid_method"),
        (6, "invalid_url"),
    ];
    let expect: Vec<(u64, String)> = expect.iter().map(|(l, c)| (*l, (*c).to_owned())).collect();
    assert_eq!(errors, expect);

    let missing = poll_terminal(&srv, &create_ok(&srv, "file-nope").await).await;
    assert_eq!(missing["status"], "failed");
    assert_eq!(missing["errors"]["data"][0]["code"], "file_not_found");
    assert_eq!(missing["errors"]["data"][0]["line"], Value::Null);

    // Request-level problems are 400s, not batches.
    let bad = srv
        .post(
            "/v1/batches",
            &json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "1h"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.json()["error"]["param"], "completion_window");
    srv.stop().await;
}

#[tokio::test]
async fn batch_body_errors_go_to_error_file() {
    let srv = Server::start(instant()).await;
    let mut broken = chat_line("bad", "x");
    broken["body"].as_object_mut().unwrap().remove("messages");
    let file = upload_lines(&srv, &[chat_line("good", "x"), broken]).await;
    let done = poll_terminal(&srv, &create_ok(&srv, &file).await).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(
        done["request_counts"],
        json!({"total": 2, "completed": 1, "failed": 1})
    );
    let errs = lines_of(&srv, &done["error_file_id"]).await;
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0]["custom_id"], "bad");
    assert_eq!(errs[0]["error"], Value::Null);
    assert_eq!(errs[0]["response"]["status_code"], 400);
    assert_eq!(errs[0]["response"]["body"]["error"]["param"], "messages");
    assert_eq!(lines_of(&srv, &done["output_file_id"]).await.len(), 1);
    srv.stop().await;
}

#[tokio::test]
async fn batch_create_429_fault() {
    let srv = Server::start(instant()).await;
    let file = upload_lines(&srv, &[chat_line("a", "x")]).await;
    let set = faults(&srv, json!({"create_429": 2})).await;
    assert_eq!(set["create_429"], 2);
    for _ in 0..2 {
        let a = create(&srv, &file).await;
        assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(a.headers["retry-after"], "1");
        let e = &a.json()["error"];
        assert_eq!(e["type"], "tokens");
        assert_eq!(e["code"], "rate_limit_exceeded");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .starts_with("Enqueued token limit reached for gpt-4o-mini")
        );
    }
    create_ok(&srv, &file).await;
    let now = get(&srv, "/sim/batch-faults").await.json();
    assert_eq!(now["create_429"], 0);
    srv.stop().await;
}

#[tokio::test]
async fn batch_fail_validation_fault() {
    let srv = Server::start(instant()).await;
    let file = upload_lines(&srv, &[chat_line("a", "x"), chat_line("b", "y")]).await;
    faults(&srv, json!({"fail_validation": 1})).await;
    let failed = poll_terminal(&srv, &create_ok(&srv, &file).await).await;
    assert_eq!(failed["status"], "failed");
    let e = &failed["errors"]["data"][0];
    assert_eq!(e["line"], 1);
    assert_eq!(e["code"], "token_limit_exceeded");
    assert!(e["message"].as_str().unwrap().contains("gpt-4o-mini"));
    let next = poll_terminal(&srv, &create_ok(&srv, &file).await).await;
    assert_eq!(next["status"], "completed");
    srv.stop().await;
}

#[tokio::test]
async fn batch_expire_fault_partial_output() {
    let srv = Server::start(instant()).await;
    let lines: Vec<Value> = (1..=4).map(|i| chat_line(&format!("e{i}"), "x")).collect();
    let file = upload_lines(&srv, &lines).await;
    faults(&srv, json!({"expire": 1, "expire_completed_fraction": 0.5})).await;
    let expired = poll_terminal(&srv, &create_ok(&srv, &file).await).await;
    assert_eq!(expired["status"], "expired");
    assert!(expired["expired_at"].is_u64());
    assert_eq!(expired["completed_at"], Value::Null);
    assert_eq!(
        expired["request_counts"],
        json!({"total": 4, "completed": 2, "failed": 2})
    );
    let out = by_custom_id(lines_of(&srv, &expired["output_file_id"]).await);
    assert!(out.contains_key("e1") && out.contains_key("e2"));
    let errs = lines_of(&srv, &expired["error_file_id"]).await;
    assert_eq!(errs.len(), 2);
    for e in &errs {
        assert_eq!(e["response"], Value::Null);
        assert_eq!(e["error"]["code"], "batch_expired");
        assert!(e["error"]["message"].is_string());
    }
    srv.stop().await;
}

#[tokio::test]
async fn batch_line_errors_fault() {
    let srv = Server::start(instant()).await;
    let file = upload_lines(&srv, &[chat_line("a", "x"), chat_line("b", "y")]).await;
    faults(&srv, json!({"line_errors": ["b"]})).await;
    let done = poll_terminal(&srv, &create_ok(&srv, &file).await).await;
    assert_eq!(done["status"], "completed");
    let errs = lines_of(&srv, &done["error_file_id"]).await;
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0]["custom_id"], "b");
    assert_eq!(errs[0]["error"], Value::Null);
    assert_eq!(errs[0]["response"]["status_code"], 500);
    assert_eq!(errs[0]["response"]["body"]["error"]["type"], "server_error");
    // Consumed: a resubmission of "b" succeeds.
    let again = poll_terminal(&srv, &create_ok(&srv, &file).await).await;
    assert_eq!(again["error_file_id"], Value::Null);
    srv.stop().await;
}

#[tokio::test]
async fn batch_cancel() {
    let srv = Server::start(SimConfig {
        batch_turnaround: Duration::from_secs(3_600),
        ..SimConfig::default()
    })
    .await;
    let file = upload_lines(&srv, &[chat_line("a", "x"), chat_line("b", "y")]).await;
    let id = create_ok(&srv, &file).await;
    let cancel_path = format!("/v1/batches/{id}/cancel");
    let c = srv
        .send(
            Method::POST,
            &cancel_path,
            &[("authorization", "Bearer k")],
            "",
        )
        .await;
    assert_eq!(c.status, StatusCode::OK);
    assert_eq!(c.json()["status"], "cancelling");
    assert!(c.json()["cancelling_at"].is_u64());
    let done = poll_terminal(&srv, &id).await;
    assert_eq!(done["status"], "cancelled");
    assert!(done["cancelled_at"].is_u64());
    assert_eq!(done["output_file_id"], Value::Null);
    assert_eq!(
        done["request_counts"],
        json!({"total": 2, "completed": 0, "failed": 2})
    );
    for e in lines_of(&srv, &done["error_file_id"]).await {
        assert_eq!(e["response"], Value::Null);
        assert_eq!(e["error"]["code"], "batch_cancelled");
    }
    // Cancelling again is harmless; cancelling a completed batch is a conflict.
    let again = srv
        .send(
            Method::POST,
            &cancel_path,
            &[("authorization", "Bearer k")],
            "",
        )
        .await;
    assert_eq!(again.json()["status"], "cancelled");
    faults(&srv, json!({"turnaround_ms": 0})).await;
    let quick = create_ok(&srv, &file).await;
    assert_eq!(poll_terminal(&srv, &quick).await["status"], "completed");
    let late = srv
        .send(
            Method::POST,
            &format!("/v1/batches/{quick}/cancel"),
            &[("authorization", "Bearer k")],
            "",
        )
        .await;
    assert_eq!(late.status, StatusCode::CONFLICT);
    srv.stop().await;

    // With a cancel delay the batch stays `cancelling`.
    let srv = Server::start(SimConfig {
        batch_turnaround: Duration::from_secs(3_600),
        cancel_delay: Duration::from_secs(3_600),
        ..SimConfig::default()
    })
    .await;
    let file = upload_lines(&srv, &[chat_line("a", "x")]).await;
    let id = create_ok(&srv, &file).await;
    let path = format!("/v1/batches/{id}/cancel");
    srv.send(Method::POST, &path, &[("authorization", "Bearer k")], "")
        .await;
    let v = get(&srv, &format!("/v1/batches/{id}")).await.json();
    assert_eq!(v["status"], "cancelling");
    assert_eq!(v["cancelled_at"], Value::Null);
    srv.stop().await;
}

#[tokio::test]
async fn batch_list_pagination() {
    let srv = Server::start(instant()).await;
    let file = upload_lines(&srv, &[chat_line("a", "x")]).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(create_ok(&srv, &file).await);
    }
    ids.reverse(); // newest first
    let p1 = get(&srv, "/v1/batches?limit=2").await.json();
    assert_eq!(p1["object"], "list");
    let got = |p: &Value| -> Vec<String> {
        p["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(got(&p1), ids[..2]);
    assert_eq!(p1["first_id"], ids[0].as_str());
    assert_eq!(p1["last_id"], ids[1].as_str());
    assert_eq!(p1["has_more"], true);
    let p2 = get(&srv, &format!("/v1/batches?limit=2&after={}", ids[1]))
        .await
        .json();
    assert_eq!(got(&p2), ids[2..4]);
    let p3 = get(&srv, &format!("/v1/batches?limit=2&after={}", ids[3]))
        .await
        .json();
    assert_eq!(got(&p3), ids[4..]);
    assert_eq!(p3["has_more"], false);
    let all = get(&srv, "/v1/batches").await.json();
    assert_eq!(got(&all), ids);
    assert_eq!(all["data"][0]["status"], "completed");
    for bad in ["0", "101", "x"] {
        let a = get(&srv, &format!("/v1/batches?limit={bad}")).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
    }
    let unknown = get(&srv, "/v1/batches/batch_nope").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    srv.stop().await;
}

#[tokio::test]
async fn batch_stats_count_created_batches() {
    let srv = Server::start(instant()).await;
    let f1 = upload_lines(&srv, &[chat_line("a", "x"), chat_line("b", "y")]).await;
    let f2 = upload_lines(&srv, &[chat_line("b", "z"), chat_line("c", "w")]).await;
    create_ok(&srv, &f1).await;
    faults(&srv, json!({"create_429": 1})).await;
    assert_eq!(
        create(&srv, &f2).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    create_ok(&srv, &f2).await;
    let stats = srv
        .send(Method::GET, "/sim/batches/stats", &[], "")
        .await
        .json();
    assert_eq!(
        stats,
        json!({"created": 2, "lines_by_custom_id": {"a": 1, "b": 2, "c": 1}})
    );
    let reset = faults(&srv, json!({"reset": true})).await;
    assert_eq!(reset["create_429"], 0);
    assert_eq!(reset["line_errors"], json!([]));
    srv.stop().await;
}

#[tokio::test]
async fn hold_stops_batch_time_until_released() {
    let srv = Server::start(SimConfig {
        batch_turnaround: Duration::from_millis(20),
        ..SimConfig::default()
    })
    .await;
    assert_eq!(faults(&srv, json!({"hold": true})).await["hold"], true);
    let file = upload_lines(&srv, &[chat_line("a", "x")]).await;
    let id = create_ok(&srv, &file).await;
    // Held: a batch stays where it started, however often and however late it is read.
    let held = std::time::Instant::now();
    while held.elapsed() < Duration::from_millis(100) {
        let b = get(&srv, &format!("/v1/batches/{id}")).await.json();
        assert_eq!(b["status"], "validating", "{b}");
    }
    assert_eq!(faults(&srv, json!({"hold": false})).await["hold"], false);
    assert_eq!(poll_terminal(&srv, &id).await["status"], "completed");
    srv.stop().await;
}
