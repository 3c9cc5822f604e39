//! In-process tests of the Gemini File API: resumable upload, metadata, expiry, listing,
//! deletion and the download rules.

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::tests::{Answer, Server};
use super::tests_gemini::{JSON, KEY, call, gget, google_error};
use super::{SimConfig, Simulator};

const START: [(&str, &str); 2] = [
    ("x-goog-upload-protocol", "resumable"),
    ("x-goog-upload-command", "start"),
];

/// The path and query of a session URL.
pub(super) fn session_path(start: &Answer) -> String {
    let url = start.headers["x-goog-upload-url"].to_str().unwrap();
    url[url.find("/upload/").unwrap()..].to_owned()
}

fn start_headers(len: &str) -> Vec<(&str, &str)> {
    let mut h = vec![KEY, JSON];
    h.extend(START);
    h.push(("x-goog-upload-header-content-length", len));
    h.push(("x-goog-upload-header-content-type", "application/jsonl"));
    h
}

/// Uploads `content` in one `upload, finalize` chunk and returns the `File`.
pub(super) async fn upload(srv: &Server, display: &str, content: &[u8]) -> Value {
    let len = content.len().to_string();
    let body = json!({"file": {"display_name": display}}).to_string();
    let start = srv
        .send(
            Method::POST,
            "/upload/v1beta/files",
            &start_headers(&len),
            body,
        )
        .await;
    assert_eq!(start.status, StatusCode::OK, "{}", start.text());
    let fin = srv
        .send(
            Method::POST,
            &session_path(&start),
            &[
                ("x-goog-upload-command", "upload, finalize"),
                ("x-goog-upload-offset", "0"),
            ],
            Bytes::copy_from_slice(content),
        )
        .await;
    assert_eq!(fin.status, StatusCode::OK, "{}", fin.text());
    assert_eq!(fin.headers["x-goog-upload-status"], "final");
    fin.json()["file"].clone()
}

/// The same through [`Simulator::handle`].
pub(super) async fn upload_in(sim: &Simulator, content: &[u8]) -> Value {
    let len = content.len().to_string();
    let start = call(
        sim,
        Method::POST,
        "/upload/v1/files",
        &start_headers(&len),
        Bytes::new(),
    )
    .await;
    assert_eq!(start.status, StatusCode::OK, "{}", start.text());
    let fin = call(
        sim,
        Method::POST,
        &session_path(&start),
        &[
            ("x-goog-upload-command", "upload, finalize"),
            ("x-goog-upload-offset", "0"),
        ],
        Bytes::copy_from_slice(content),
    )
    .await;
    assert_eq!(fin.status, StatusCode::OK, "{}", fin.text());
    fin.json()["file"].clone()
}

fn id_of(file: &Value) -> &str {
    file["name"]
        .as_str()
        .unwrap()
        .strip_prefix("files/")
        .unwrap()
}

#[tokio::test]
async fn resumable_upload_in_chunks_then_get_list_and_delete() {
    let srv = Server::start(SimConfig::default()).await;
    let content = b"{\"key\": \"a\"}\n{\"key\": \"b\"}\n";
    let len = content.len().to_string();
    let start = srv
        .send(
            Method::POST,
            "/upload/v1beta/files",
            &start_headers(&len),
            json!({"file": {"displayName": "gwb_0001"}}).to_string(),
        )
        .await;
    assert_eq!(start.status, StatusCode::OK, "{}", start.text());
    assert!(start.body.is_empty());
    assert_eq!(start.headers["x-goog-upload-status"], "active");
    let url = start.headers["x-goog-upload-url"].to_str().unwrap();
    assert!(url.starts_with(&format!(
        "http://{}/upload/v1beta/files?upload_id=",
        srv.addr
    )));
    let session = session_path(&start);

    // The bytes go to the session URL without a key, in two chunks.
    let (head, tail) = content.split_at(10);
    let first = srv
        .send(
            Method::POST,
            &session,
            &[
                ("x-goog-upload-command", "upload"),
                ("x-goog-upload-offset", "0"),
            ],
            Bytes::copy_from_slice(head),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert_eq!(first.headers["x-goog-upload-status"], "active");
    assert_eq!(first.headers["x-goog-upload-size-received"], "10");
    // A wrong offset is refused and changes nothing.
    let wrong = srv
        .send(
            Method::POST,
            &session,
            &[
                ("x-goog-upload-command", "upload, finalize"),
                ("x-goog-upload-offset", "0"),
            ],
            Bytes::copy_from_slice(tail),
        )
        .await;
    google_error(&wrong, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    let query = srv
        .send(
            Method::POST,
            &session,
            &[("x-goog-upload-command", "query")],
            Bytes::new(),
        )
        .await;
    assert_eq!(query.headers["x-goog-upload-size-received"], "10");
    let fin = srv
        .send(
            Method::POST,
            &session,
            &[
                ("x-goog-upload-command", "upload, finalize"),
                ("x-goog-upload-offset", "10"),
            ],
            Bytes::copy_from_slice(tail),
        )
        .await;
    assert_eq!(fin.status, StatusCode::OK, "{}", fin.text());
    assert_eq!(fin.headers["x-goog-upload-status"], "final");
    let file = fin.json()["file"].clone();
    let name = file["name"].as_str().unwrap();
    assert!(name.starts_with("files/"));
    assert_eq!(file["displayName"], "gwb_0001");
    assert_eq!(file["mimeType"], "application/jsonl");
    assert_eq!(file["sizeBytes"], content.len().to_string());
    assert_eq!(file["state"], "ACTIVE");
    assert_eq!(file["source"], "UPLOADED");
    assert!(file.get("downloadUri").is_none());
    let sha = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(content));
    assert_eq!(file["sha256Hash"], sha);
    let created = file["createTime"].as_str().unwrap();
    let expires = file["expirationTime"].as_str().unwrap();
    assert!(created.ends_with('Z') && expires > created);
    assert_eq!(file["uri"], format!("http://{}/v1beta/{name}", srv.addr));
    // The session is gone.
    let again = srv
        .send(
            Method::POST,
            &session,
            &[("x-goog-upload-command", "query")],
            Bytes::new(),
        )
        .await;
    google_error(&again, StatusCode::NOT_FOUND, "NOT_FOUND");

    let got = gget(&srv, &format!("/v1beta/{name}")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.json(), file);
    let listed = gget(&srv, "/v1beta/files").await.json();
    assert_eq!(listed["files"][0], file);
    assert!(listed.get("nextPageToken").is_none());

    // Uploaded files cannot be downloaded, on either download path.
    for path in [
        format!("/download/v1beta/{name}:download?alt=media"),
        format!("/v1beta/{name}:download?alt=media"),
    ] {
        let a = gget(&srv, &path).await;
        google_error(&a, StatusCode::BAD_REQUEST, "FAILED_PRECONDITION");
    }

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
    assert_eq!(gget(&srv, "/v1beta/files").await.json(), json!({}));
    srv.stop().await;
}

#[tokio::test]
async fn upload_protocol_errors() {
    let srv = Server::start(SimConfig::default()).await;
    // Not resumable, or not a start.
    let a = srv
        .send(
            Method::POST,
            "/upload/v1beta/files",
            &[KEY, JSON],
            Bytes::new(),
        )
        .await;
    google_error(&a, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    let a = srv
        .send(
            Method::POST,
            "/upload/v1beta/files",
            &[
                KEY,
                ("x-goog-upload-protocol", "resumable"),
                ("x-goog-upload-command", "upload"),
            ],
            Bytes::new(),
        )
        .await;
    google_error(&a, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    // The start needs a key; the session does not exist.
    let mut keyless = vec![JSON];
    keyless.extend(START);
    let a = srv
        .send(Method::POST, "/upload/v1beta/files", &keyless, Bytes::new())
        .await;
    let e = google_error(&a, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    assert_eq!(e["details"][0]["reason"], "API_KEY_INVALID");
    let a = srv
        .send(
            Method::POST,
            "/upload/v1beta/files?upload_id=nope&upload_protocol=resumable",
            &[
                ("x-goog-upload-command", "upload, finalize"),
                ("x-goog-upload-offset", "0"),
            ],
            Bytes::from_static(b"x"),
        )
        .await;
    google_error(&a, StatusCode::NOT_FOUND, "NOT_FOUND");
    // Unknown names in the start body.
    let a = srv
        .send(
            Method::POST,
            "/upload/v1beta/files",
            &start_headers("1"),
            json!({"file": {"filename": "x"}}).to_string(),
        )
        .await;
    google_error(&a, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");

    // A named file: bad ids, then a duplicate.
    for bad in [
        "files/Upper",
        "files/-dash",
        &format!("files/{}", "a".repeat(41)),
    ] {
        let a = srv
            .send(
                Method::POST,
                "/upload/v1beta/files",
                &start_headers("1"),
                json!({"file": {"name": bad}}).to_string(),
            )
            .await;
        google_error(&a, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    }
    let named = |n: &str| json!({"file": {"name": n}}).to_string();
    let start = srv
        .send(
            Method::POST,
            "/upload/v1beta/files",
            &start_headers("1"),
            named("files/my-input"),
        )
        .await;
    assert_eq!(start.status, StatusCode::OK);
    let dup = srv
        .send(
            Method::POST,
            "/upload/v1beta/files",
            &start_headers("1"),
            named("my-input"),
        )
        .await;
    google_error(&dup, StatusCode::CONFLICT, "ALREADY_EXISTS");
    // Finalizing with another size than announced.
    let short = srv
        .send(
            Method::POST,
            &session_path(&start),
            &[
                ("x-goog-upload-command", "upload, finalize"),
                ("x-goog-upload-offset", "0"),
            ],
            Bytes::from_static(b"too long"),
        )
        .await;
    google_error(&short, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    let cancel = srv
        .send(
            Method::POST,
            &session_path(&start),
            &[("x-goog-upload-command", "cancel")],
            Bytes::new(),
        )
        .await;
    assert_eq!(cancel.headers["x-goog-upload-status"], "cancelled");
    // The name is free again.
    let file = {
        let start = srv
            .send(
                Method::POST,
                "/upload/v1beta/files",
                &start_headers("1"),
                named("my-input"),
            )
            .await;
        srv.send(
            Method::POST,
            &session_path(&start),
            &[
                ("x-goog-upload-command", "upload, finalize"),
                ("x-goog-upload-offset", "0"),
            ],
            Bytes::from_static(b"x"),
        )
        .await
        .json()
    };
    assert_eq!(file["file"]["name"], "files/my-input");
    assert_eq!(file["file"]["mimeType"], "application/jsonl");
    // Files that never existed.
    for path in [
        "/v1beta/files/nope",
        "/v1beta/files/nope:download?alt=media",
    ] {
        google_error(&gget(&srv, path).await, StatusCode::NOT_FOUND, "NOT_FOUND");
    }
    srv.stop().await;
}

#[tokio::test]
async fn files_list_in_pages() {
    let srv = Server::start(SimConfig::default()).await;
    let mut names = Vec::new();
    for i in 0..3 {
        names.push(upload(&srv, &format!("f{i}"), b"x").await["name"].clone());
    }
    let first = gget(&srv, "/v1beta/files?pageSize=2").await.json();
    let page: Vec<Value> = first["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].clone())
        .collect();
    assert_eq!(page, vec![names[2].clone(), names[1].clone()]);
    let token = first["nextPageToken"].as_str().unwrap();
    let second = gget(&srv, &format!("/v1beta/files?pageSize=2&pageToken={token}"))
        .await
        .json();
    assert_eq!(second["files"].as_array().unwrap().len(), 1);
    assert_eq!(second["files"][0]["name"], names[0]);
    assert!(second.get("nextPageToken").is_none());
    let bad = gget(&srv, "/v1beta/files?pageToken=garbage").await;
    google_error(&bad, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    let negative = gget(&srv, "/v1beta/files?pageSize=-1").await;
    google_error(&negative, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    // `/v1/files` with a Google key is the File API; without, the OpenAI Files API.
    let native = gget(&srv, "/v1/files").await.json();
    assert_eq!(native["files"].as_array().unwrap().len(), 3);
    let openai = srv
        .send(
            Method::GET,
            "/v1/files",
            &[("authorization", "Bearer sk-test")],
            Bytes::new(),
        )
        .await
        .json();
    assert_eq!(openai["object"], "list");
    srv.stop().await;
}

#[tokio::test(start_paused = true)]
async fn uploaded_files_expire_after_48_hours() {
    let sim = Simulator::new(SimConfig::default());
    let file = upload_in(&sim, b"{}").await;
    let path = format!("/v1beta/files/{}", id_of(&file));
    let created = file["createTime"].as_str().unwrap();
    assert!(file["expirationTime"].as_str().unwrap() > created);
    tokio::time::advance(Duration::from_secs(48 * 3600 - 1)).await;
    assert_eq!(
        call(&sim, Method::GET, &path, &[KEY], Bytes::new())
            .await
            .status,
        StatusCode::OK
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    let gone = call(&sim, Method::GET, &path, &[KEY], Bytes::new()).await;
    google_error(&gone, StatusCode::NOT_FOUND, "NOT_FOUND");
    let list = call(&sim, Method::GET, "/v1beta/files", &[KEY], Bytes::new()).await;
    assert_eq!(list.json(), json!({}));
}
