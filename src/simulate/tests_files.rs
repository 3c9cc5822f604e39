//! In-process tests of the Files API and flex behaviour, plus helpers for the batch tests.

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::SimConfig;
use super::tests::{Answer, Server};

const AUTH: (&str, &str) = ("authorization", "Bearer sk-test");
pub(super) const BOUNDARY: &str = "----sluiceTestBoundary7MA4YWxk";

/// A `multipart/form-data` body with a `purpose` part and a `file` part.
pub(super) fn form(purpose: &str, filename: &str, content: &[u8]) -> Vec<u8> {
    form_with(&[("purpose", purpose)], "file", filename, content)
}

/// A `multipart/form-data` body (boundary [`BOUNDARY`]) with text `fields` and one file part.
pub(super) fn form_with(
    fields: &[(&str, &str)],
    file_field: &str,
    filename: &str,
    content: &[u8],
) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{file_field}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

pub(super) async fn upload(srv: &Server, purpose: &str, filename: &str, content: &[u8]) -> Answer {
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    srv.send(
        Method::POST,
        "/v1/files",
        &[AUTH, ("content-type", &ct)],
        form(purpose, filename, content),
    )
    .await
}

/// Uploads `lines` as a batch input file and returns its id.
pub(super) async fn upload_lines(srv: &Server, lines: &[Value]) -> String {
    let mut content = String::new();
    for l in lines {
        content.push_str(&l.to_string());
        content.push('\n');
    }
    upload_raw(srv, &content).await
}

pub(super) async fn upload_raw(srv: &Server, content: &str) -> String {
    let a = upload(srv, "batch", "input.jsonl", content.as_bytes()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    a.json()["id"].as_str().unwrap().to_owned()
}

pub(super) async fn get(srv: &Server, path: &str) -> Answer {
    srv.send(Method::GET, path, &[AUTH], "").await
}

/// A chat batch line.
pub(super) fn chat_line(custom_id: &str, user: &str) -> Value {
    json!({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
           "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": user}]}})
}

/// Creates a chat batch over `file_id`.
pub(super) async fn create(srv: &Server, file_id: &str) -> Answer {
    srv.post(
        "/v1/batches",
        &json!({"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
    )
    .await
}

/// Creates a batch and returns its id (asserting the creation answer).
pub(super) async fn create_ok(srv: &Server, file_id: &str) -> String {
    let a = create(srv, file_id).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let v = a.json();
    assert_eq!(v["status"], "validating");
    v["id"].as_str().unwrap().to_owned()
}

/// GETs the batch until it is terminal (bounded).
pub(super) async fn poll_terminal(srv: &Server, id: &str) -> Value {
    for _ in 0..2_000 {
        let v = get(srv, &format!("/v1/batches/{id}")).await.json();
        if matches!(
            v["status"].as_str(),
            Some("completed" | "failed" | "expired" | "cancelled")
        ) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("batch {id} never became terminal");
}

/// The JSON lines of a file.
pub(super) async fn lines_of(srv: &Server, file_id: &Value) -> Vec<Value> {
    let id = file_id.as_str().expect("file id");
    let a = get(srv, &format!("/v1/files/{id}/content")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers["content-type"], "application/octet-stream");
    a.text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn files_multipart_upload_and_content_round_trip() {
    let srv = Server::start(SimConfig::default()).await;
    let content = b"{\"custom_id\":\"a\"}\n{\"custom_id\":\"b\"}\n";
    let a = upload(&srv, "batch", "gw_batch_0001.jsonl", content).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let file = a.json();
    let id = file["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("file-sim"));
    assert_eq!(file["object"], "file");
    assert_eq!(file["bytes"], content.len());
    assert_eq!(file["filename"], "gw_batch_0001.jsonl");
    assert_eq!(file["purpose"], "batch");
    assert_eq!(file["status"], "processed");
    assert_eq!(file["status_details"], Value::Null);
    let created = file["created_at"].as_u64().unwrap();
    assert_eq!(file["expires_at"], created + 30 * 86_400);

    assert_eq!(get(&srv, &format!("/v1/files/{id}")).await.json(), file);
    let raw = get(&srv, &format!("/v1/files/{id}/content")).await;
    assert_eq!(raw.headers["content-type"], "application/octet-stream");
    assert_eq!(&raw.body[..], content);

    let other = upload(&srv, "user_data", "notes.txt", b"hello")
        .await
        .json();
    assert_eq!(other["expires_at"], Value::Null);
    let all = get(&srv, "/v1/files").await.json();
    assert_eq!(all["object"], "list");
    assert_eq!(all["data"][0]["id"], other["id"], "newest first");
    assert_eq!(all["data"][1]["id"], id.as_str());
    let batch_only = get(&srv, "/v1/files?purpose=batch&order=asc").await.json();
    assert_eq!(batch_only["data"].as_array().unwrap().len(), 1);
    let page = get(&srv, "/v1/files?limit=1").await.json();
    assert_eq!(page["has_more"], true);
    assert_eq!(page["last_id"], other["id"]);

    let del = srv
        .send(Method::DELETE, &format!("/v1/files/{id}"), &[AUTH], "")
        .await;
    assert_eq!(
        del.json(),
        json!({"id": id.as_str(), "object": "file", "deleted": true})
    );
    for path in [format!("/v1/files/{id}"), format!("/v1/files/{id}/content")] {
        let gone = get(&srv, &path).await;
        assert_eq!(gone.status, StatusCode::NOT_FOUND);
        assert_eq!(gone.json()["error"]["type"], "invalid_request_error");
        assert_eq!(
            gone.json()["error"]["message"],
            format!("No such File object: {id}")
        );
    }
    // The multipart upload is in the request log, byte for byte.
    let log = srv.send(Method::GET, "/sim/requests", &[], "").await.json();
    let first = &log[0];
    assert_eq!(first["path"], "/v1/files");
    assert!(
        first["body"]
            .as_str()
            .unwrap()
            .contains("gw_batch_0001.jsonl")
    );
    srv.stop().await;
}

#[tokio::test]
async fn files_reject_bad_purpose_and_bad_forms() {
    let srv = Server::start(SimConfig::default()).await;
    let bad = upload(&srv, "nope", "a.jsonl", b"{}").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.json()["error"]["param"], "purpose");
    assert_eq!(bad.json()["error"]["code"], "invalid_value");

    let not_jsonl = upload(&srv, "batch", "a.txt", b"{}").await;
    assert_eq!(not_jsonl.status, StatusCode::BAD_REQUEST);

    let json_body = srv.post("/v1/files", &json!({"purpose": "batch"})).await;
    assert_eq!(json_body.status, StatusCode::BAD_REQUEST);

    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    let no_file = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--{BOUNDARY}--\r\n"
    );
    let a = srv
        .send(
            Method::POST,
            "/v1/files",
            &[AUTH, ("content-type", &ct)],
            no_file,
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.json()["error"]["param"], "file");

    let unauth = srv.send(Method::GET, "/v1/files", &[], "").await;
    assert_eq!(unauth.status, StatusCode::UNAUTHORIZED);
    let wrong = srv.send(Method::PUT, "/v1/files", &[AUTH], "").await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
    srv.stop().await;
}

#[tokio::test]
async fn flex_echo_and_flex_429_rate() {
    let chat = json!({"model": "o3", "service_tier": "flex",
                      "messages": [{"role": "user", "content": "hi"}]});
    let resp = json!({"model": "o3", "service_tier": "flex", "input": "hi"});
    let srv = Server::start(SimConfig::default()).await;
    let a = srv.post("/v1/chat/completions", &chat).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["service_tier"], "flex");
    let r = srv.post("/v1/responses", &resp).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["service_tier"], "flex");
    srv.stop().await;

    let srv = Server::start(SimConfig {
        flex_429_rate: 1.0,
        ..SimConfig::default()
    })
    .await;
    for (path, body) in [("/v1/chat/completions", &chat), ("/v1/responses", &resp)] {
        let a = srv.post(path, body).await;
        assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(a.json()["error"]["code"], "resource_unavailable");
        assert_eq!(a.json()["error"]["message"], "Resource Unavailable");
    }
    let mut default_tier = chat.clone();
    default_tier["service_tier"] = json!("default");
    let ok = srv.post("/v1/chat/completions", &default_tier).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.json()["service_tier"], "default");
    srv.stop().await;
}
