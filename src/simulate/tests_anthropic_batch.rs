//! In-process tests of the Anthropic Message Batches API and its fault controls.

use std::collections::HashMap;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::SimConfig;
use super::tests::{Answer, Server};
use super::tests_anthropic::anth;

const BATCHES: &str = "/v1/messages/batches";

fn instant() -> SimConfig {
    SimConfig {
        batch_turnaround: Duration::ZERO,
        ..SimConfig::default()
    }
}

fn params(question: &str) -> Value {
    json!({"model": "claude-haiku-4-5", "max_tokens": 64,
           "messages": [{"role": "user", "content": question}]})
}

fn request(id: &str, question: &str) -> Value {
    json!({"custom_id": id, "params": params(question)})
}

async fn create(srv: &Server, requests: Vec<Value>) -> Answer {
    anth(srv, Method::POST, BATCHES, &json!({ "requests": requests })).await
}

async fn create_ok(srv: &Server, requests: Vec<Value>) -> Value {
    let a = create(srv, requests).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    a.json()
}

async fn get(srv: &Server, path: &str) -> Answer {
    anth(srv, Method::GET, path, &Value::Null).await
}

async fn batch(srv: &Server, id: &str) -> Value {
    let a = get(srv, &format!("{BATCHES}/{id}")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    a.json()
}

async fn results(srv: &Server, id: &str) -> (String, HashMap<String, Value>) {
    let a = get(srv, &format!("{BATCHES}/{id}/results")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let text = a.text().to_owned();
    let map = text
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["custom_id"].as_str().unwrap().to_owned(),
                v["result"].clone(),
            )
        })
        .collect();
    (text, map)
}

async fn faults(srv: &Server, body: Value) {
    let a = srv.post("/sim/batch-faults", &body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
}

fn id_of(v: &Value) -> &str {
    v["id"].as_str().unwrap()
}

#[tokio::test]
async fn batch_ends_with_results_mapped_by_custom_id() {
    let srv = Server::start(instant()).await;
    let system = json!([{"type": "text", "text": "abcd ".repeat(1000),
                         "cache_control": {"type": "ephemeral", "ttl": "1h"}}]);
    let mut cached = Vec::new();
    for (id, q) in [
        ("q-1", "first question"),
        ("q_2", "second"),
        ("Q3", "third"),
    ] {
        let mut r = request(id, q);
        r["params"]["system"] = system.clone();
        cached.push(r);
    }
    let mut no_max = request("no-max", "x");
    no_max["params"]
        .as_object_mut()
        .unwrap()
        .remove("max_tokens");
    let mut streaming = request("streaming", "x");
    streaming["params"]["stream"] = json!(true);
    cached.extend([no_max, streaming]);
    let created = create_ok(&srv, cached).await;
    let id = id_of(&created).to_owned();
    assert!(id.starts_with("msgbatch_sim"));
    assert_eq!(created["type"], "message_batch");
    assert_eq!(created["processing_status"], "in_progress");
    assert_eq!(
        created["request_counts"],
        json!({"processing": 5, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0})
    );
    let created_at = created["created_at"].as_str().unwrap();
    assert!(created_at.ends_with('Z') && created_at.contains('T'));
    assert!(created["expires_at"].as_str().unwrap() > created_at);
    for key in [
        "ended_at",
        "cancel_initiated_at",
        "archived_at",
        "results_url",
    ] {
        assert_eq!(created[key], Value::Null, "{key}");
    }

    let done = batch(&srv, &id).await;
    assert_eq!(done["processing_status"], "ended");
    assert_eq!(
        done["request_counts"],
        json!({"processing": 0, "succeeded": 3, "errored": 2, "canceled": 0, "expired": 0})
    );
    assert!(done["ended_at"].as_str().unwrap() >= created_at);
    assert_eq!(
        done["results_url"],
        format!("http://{}/v1/messages/batches/{id}/results", srv.addr)
    );

    let (text, by_id) = results(&srv, &id).await;
    assert_eq!(by_id.len(), 5);
    let first = &by_id["q-1"];
    assert_eq!(first["type"], "succeeded");
    assert_eq!(
        first["message"]["content"][0]["text"],
        "Simulated answer to: first question"
    );
    assert_eq!(first["message"]["usage"]["service_tier"], "batch");
    // The shared 1h prefix is written by the first request and read by the others.
    let usages: Vec<&Value> = ["q-1", "q_2", "Q3"]
        .iter()
        .map(|k| &by_id[*k]["message"]["usage"])
        .collect();
    assert_eq!(
        usages[0]["cache_creation"]["ephemeral_1h_input_tokens"],
        1250
    );
    assert_eq!(usages[1]["cache_read_input_tokens"], 1250);
    assert_eq!(usages[2]["cache_read_input_tokens"], 1250);
    for bad in ["no-max", "streaming"] {
        let r = &by_id[bad];
        assert_eq!(r["type"], "errored");
        assert_eq!(r["error"]["type"], "error");
        assert_eq!(r["error"]["error"]["type"], "invalid_request_error");
        assert!(r["error"]["request_id"].is_string());
    }
    assert_eq!(
        by_id["no-max"]["error"]["error"]["message"],
        "max_tokens: Field required"
    );
    // Deterministic order, not input order.
    assert_eq!(results(&srv, &id).await.0, text);
    let order: Vec<&str> = text
        .lines()
        .map(|l| l.split('"').nth(3).unwrap_or(""))
        .collect();
    assert_ne!(order, ["q-1", "q_2", "Q3", "no-max", "streaming"]);
}

#[tokio::test]
async fn invalid_batches_are_rejected_whole() {
    let srv = Server::start(SimConfig {
        anthropic_batch_max_requests: 2,
        ..instant()
    })
    .await;
    let a = create(&srv, vec![request("ok", "x"), request("gw:01|x", "y")]).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let v = a.json();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(
        v["error"]["message"],
        "requests.1.custom_id: String should match pattern '^[a-zA-Z0-9_-]{1,64}$'"
    );
    let long = "x".repeat(65);
    assert_eq!(
        create(&srv, vec![request(&long, "x")]).await.status,
        StatusCode::BAD_REQUEST
    );
    let dup = create(&srv, vec![request("a", "x"), request("a", "y")]).await;
    assert_eq!(dup.status, StatusCode::BAD_REQUEST);
    let three = (0..3).map(|i| request(&format!("r{i}"), "x")).collect();
    assert_eq!(create(&srv, three).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(create(&srv, vec![]).await.status, StatusCode::BAD_REQUEST);
    let no_params = create(&srv, vec![json!({"custom_id": "a"})]).await;
    assert_eq!(no_params.status, StatusCode::BAD_REQUEST);
    let list = get(&srv, BATCHES).await.json();
    assert_eq!(list["data"], json!([]));
    let missing = get(&srv, &format!("{BATCHES}/msgbatch_nope")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json()["error"]["type"], "not_found_error");
}

#[tokio::test]
async fn cancel_then_delete() {
    let srv = Server::start(SimConfig {
        batch_turnaround: Duration::from_secs(60),
        ..SimConfig::default()
    })
    .await;
    let reqs = (0..4).map(|i| request(&format!("c{i}"), "x")).collect();
    let b = create_ok(&srv, reqs).await;
    let id = id_of(&b).to_owned();
    assert_eq!(batch(&srv, &id).await["processing_status"], "in_progress");
    let pending = get(&srv, &format!("{BATCHES}/{id}/results")).await;
    assert_eq!(pending.status, StatusCode::CONFLICT);
    let del = anth(
        &srv,
        Method::DELETE,
        &format!("{BATCHES}/{id}"),
        &Value::Null,
    )
    .await;
    assert_eq!(del.status, StatusCode::CONFLICT);

    let cancel = anth(
        &srv,
        Method::POST,
        &format!("{BATCHES}/{id}/cancel"),
        &Value::Null,
    )
    .await;
    assert_eq!(cancel.status, StatusCode::OK, "{}", cancel.text());
    let cancel = cancel.json();
    assert_eq!(cancel["processing_status"], "canceling");
    assert!(cancel["cancel_initiated_at"].is_string());
    let ended = batch(&srv, &id).await;
    assert_eq!(ended["processing_status"], "ended");
    assert_eq!(
        ended["request_counts"],
        json!({"processing": 0, "succeeded": 0, "errored": 0, "canceled": 4, "expired": 0})
    );
    let (_, by_id) = results(&srv, &id).await;
    assert!(by_id.values().all(|r| *r == json!({"type": "canceled"})));
    let again = anth(
        &srv,
        Method::POST,
        &format!("{BATCHES}/{id}/cancel"),
        &Value::Null,
    )
    .await;
    assert_eq!(again.status, StatusCode::CONFLICT);

    let del = anth(
        &srv,
        Method::DELETE,
        &format!("{BATCHES}/{id}"),
        &Value::Null,
    )
    .await;
    assert_eq!(del.status, StatusCode::OK);
    assert_eq!(
        del.json(),
        json!({"id": id, "type": "message_batch_deleted"})
    );
    assert_eq!(
        get(&srv, &format!("{BATCHES}/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn expire_and_line_error_faults() {
    let srv = Server::start(instant()).await;
    faults(
        &srv,
        json!({"expire": 1, "expire_completed_fraction": 0.5, "fail_validation": 1}),
    )
    .await;
    let reqs = (0..4).map(|i| request(&format!("e{i}"), "x")).collect();
    let b = create_ok(&srv, reqs).await;
    let done = batch(&srv, id_of(&b)).await;
    // fail_validation is an OpenAI-only state: the Message Batch still ends normally.
    assert_eq!(
        done["request_counts"],
        json!({"processing": 0, "succeeded": 2, "errored": 0, "canceled": 0, "expired": 2})
    );
    let (_, by_id) = results(&srv, id_of(&b)).await;
    assert_eq!(by_id["e0"]["type"], "succeeded");
    assert_eq!(by_id["e1"]["type"], "succeeded");
    assert_eq!(by_id["e3"], json!({"type": "expired"}));

    faults(&srv, json!({"line_errors": ["bad"]})).await;
    let b = create_ok(&srv, vec![request("good", "x"), request("bad", "y")]).await;
    let (_, by_id) = results(&srv, id_of(&b)).await;
    assert_eq!(by_id["good"]["type"], "succeeded");
    assert_eq!(by_id["bad"]["type"], "errored");
    assert_eq!(by_id["bad"]["error"]["error"]["type"], "api_error");

    faults(&srv, json!({"create_429": 1})).await;
    let a = create(&srv, vec![request("r", "x")]).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.json()["error"]["type"], "rate_limit_error");
    assert_eq!(a.headers["retry-after"], "1");
    create_ok(&srv, vec![request("r", "x")]).await;

    let stats = srv
        .send(Method::GET, "/sim/batches/stats", &[], "")
        .await
        .json();
    assert_eq!(stats["message_batches_created"], 3);
    assert_eq!(stats["lines_by_custom_id"]["e0"], 1);
    assert_eq!(stats["lines_by_custom_id"]["r"], 1);
    let faults_now = srv
        .send(Method::GET, "/sim/batch-faults", &[], "")
        .await
        .json();
    assert_eq!(faults_now["fail_validation"], 1);
}

#[tokio::test]
async fn list_paginates_newest_first() {
    let srv = Server::start(instant()).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let b = create_ok(&srv, vec![request(&format!("l{i}"), "x")]).await;
        ids.push(id_of(&b).to_owned());
    }
    let all = get(&srv, BATCHES).await.json();
    let listed: Vec<&str> = all["data"].as_array().unwrap().iter().map(id_of).collect();
    assert_eq!(listed, [&ids[2], &ids[1], &ids[0]]);
    assert_eq!(all["has_more"], false);
    assert_eq!(all["data"][0]["processing_status"], "ended");

    let page1 = get(&srv, &format!("{BATCHES}?limit=2")).await.json();
    assert_eq!(page1["data"].as_array().unwrap().len(), 2);
    assert_eq!(page1["has_more"], true);
    assert_eq!(page1["first_id"], ids[2].as_str());
    assert_eq!(page1["last_id"], ids[1].as_str());
    let last = page1["last_id"].as_str().unwrap();
    let page2 = get(&srv, &format!("{BATCHES}?limit=2&after_id={last}"))
        .await
        .json();
    assert_eq!(page2["data"].as_array().unwrap().len(), 1);
    assert_eq!(page2["first_id"], ids[0].as_str());
    assert_eq!(page2["has_more"], false);
    let back = get(&srv, &format!("{BATCHES}?limit=1&before_id={}", ids[0]))
        .await
        .json();
    assert_eq!(back["first_id"], ids[1].as_str());
    assert_eq!(back["has_more"], true);
    let bad = get(&srv, &format!("{BATCHES}?limit=0")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.json()["error"]["type"], "invalid_request_error");
}
