//! In-process tests of the endpoints a gateway passes through: moderations, images,
//! audio, `messages/count_tokens`, stored responses and their input items, models.

use http::{Method, StatusCode};
use serde_json::json;

use super::SimConfig;
use super::tests::Server;
use super::tests_files::{BOUNDARY, form_with};

const AUTH: (&str, &str) = ("authorization", "Bearer sk-test");
const ANTHROPIC: [(&str, &str); 3] = [
    ("x-api-key", "sk-test"),
    ("anthropic-version", "2023-06-01"),
    ("content-type", "application/json"),
];

fn multipart() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

#[tokio::test]
async fn moderations_flag_by_rule_with_every_category() {
    let srv = Server::start(SimConfig::default()).await;
    let a = srv
        .post(
            "/v1/moderations",
            &json!({"input": ["I will kill the process", "hello"], "model": "omni-moderation-latest"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let v = a.json();
    assert!(v["id"].as_str().unwrap().starts_with("modr-"));
    assert_eq!(v["model"], "omni-moderation-latest");
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["flagged"], true);
    assert_eq!(results[0]["categories"]["violence"], true);
    assert_eq!(results[1]["flagged"], false);
    for key in [
        "categories",
        "category_scores",
        "category_applied_input_types",
    ] {
        assert_eq!(results[1][key].as_object().unwrap().len(), 13, "{key}");
    }
    // `input` is required, unknown fields are refused, a bare string is one input.
    let a = srv.post("/v1/moderations", &json!({"model": "m"})).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.json()["error"]["param"], "input");
    let a = srv
        .post("/v1/moderations", &json!({"input": "x", "stream": true}))
        .await;
    assert_eq!(a.json()["error"]["code"], "unknown_parameter");
    let a = srv.post("/v1/moderations", &json!({"input": "x"})).await;
    assert_eq!(a.json()["results"].as_array().unwrap().len(), 1);
    let a = srv.send(Method::GET, "/v1/moderations", &[AUTH], "").await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    srv.stop().await;
}

#[tokio::test]
async fn images_are_fixed_pngs_with_usage_for_gpt_image() {
    let srv = Server::start(SimConfig::default()).await;
    let a = srv
        .post(
            "/v1/images/generations",
            &json!({"model": "gpt-image-1", "prompt": "a lighthouse", "n": 2}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let v = a.json();
    assert!(v["created"].as_u64().unwrap() > 0);
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][0]["b64_json"], super::images::PNG_B64);
    assert_eq!(v["usage"]["output_tokens"], 544);
    // DALL·E answers a URL, without usage.
    let v = srv
        .post("/v1/images/generations", &json!({"prompt": "x"}))
        .await
        .json();
    assert!(v["data"][0]["url"].as_str().unwrap().ends_with(".png"));
    assert!(v.get("usage").is_none());
    let a = srv
        .post("/v1/images/generations", &json!({"prompt": "x", "n": 11}))
        .await;
    assert_eq!(a.json()["error"]["code"], "integer_out_of_range");
    let a = srv.post("/v1/images/generations", &json!({})).await;
    assert_eq!(a.json()["error"]["param"], "prompt");
    // An edit takes the image as a multipart part, and needs a prompt.
    let body = form_with(
        &[("model", "gpt-image-1"), ("prompt", "add a boat")],
        "image",
        "in.png",
        b"\x89PNG....",
    );
    let ct = multipart();
    let a = srv
        .send(
            Method::POST,
            "/v1/images/edits",
            &[AUTH, ("content-type", &ct)],
            body,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert!(a.json()["usage"]["input_tokens_details"]["image_tokens"].as_u64() > Some(0));
    let body = form_with(&[("model", "gpt-image-1")], "image", "in.png", b"png");
    let a = srv
        .send(
            Method::POST,
            "/v1/images/edits",
            &[AUTH, ("content-type", &ct)],
            body,
        )
        .await;
    assert_eq!(a.json()["error"]["param"], "prompt");
    srv.stop().await;
}

#[tokio::test]
async fn transcriptions_name_the_whole_upload_in_each_format() {
    let srv = Server::start(SimConfig::default()).await;
    let ct = multipart();
    let audio = vec![7u8; 40_000];
    let send = |fields: Vec<(&'static str, &'static str)>, path: &'static str| {
        let body = form_with(&fields, "file", "call.wav", &audio);
        let ct = ct.clone();
        let srv = &srv;
        async move {
            srv.send(Method::POST, path, &[AUTH, ("content-type", &ct)], body)
                .await
        }
    };
    let a = send(
        vec![("model", "gpt-4o-transcribe")],
        "/v1/audio/transcriptions",
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let v = a.json();
    assert_eq!(
        v["text"],
        "Simulated transcription of call.wav (40000 bytes)."
    );
    assert_eq!(v["usage"]["type"], "tokens");
    assert_eq!(v["usage"]["input_token_details"]["audio_tokens"], 30);
    let v = send(vec![("model", "whisper-1")], "/v1/audio/transcriptions")
        .await
        .json();
    assert_eq!(v["usage"], json!({"type": "duration", "seconds": 3}));
    let a = send(
        vec![("model", "whisper-1"), ("response_format", "text")],
        "/v1/audio/transcriptions",
    )
    .await;
    assert!(
        a.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(
        a.text(),
        "Simulated transcription of call.wav (40000 bytes)."
    );
    let a = send(
        vec![("model", "whisper-1"), ("response_format", "verbose_json")],
        "/v1/audio/transcriptions",
    )
    .await;
    assert_eq!(a.json()["task"], "transcribe");
    let a = send(vec![("model", "whisper-1")], "/v1/audio/translations").await;
    assert_eq!(
        a.json(),
        json!({"text": "Simulated translation of call.wav (40000 bytes)."})
    );
    let a = send(vec![], "/v1/audio/transcriptions").await;
    assert_eq!(a.json()["error"]["param"], "model");
    let a = send(
        vec![("model", "whisper-1"), ("response_format", "mp3")],
        "/v1/audio/transcriptions",
    )
    .await;
    assert_eq!(a.json()["error"]["param"], "response_format");
    // A JSON body is not a form.
    let a = srv
        .post("/v1/audio/transcriptions", &json!({"model": "whisper-1"}))
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    srv.stop().await;
}

#[tokio::test]
async fn speech_is_binary_audio_of_the_requested_type() {
    let srv = Server::start(SimConfig::default()).await;
    let a = srv
        .post(
            "/v1/audio/speech",
            &json!({"model": "gpt-4o-mini-tts", "input": "hello", "voice": "alloy"}),
        )
        .await;
    assert_eq!(
        a.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    assert_eq!(a.headers["content-type"], "audio/mpeg");
    assert!(a.body.starts_with(b"ID3"));
    assert_eq!(a.body.len(), 3 + 5 * 64);
    let a = srv
        .post(
            "/v1/audio/speech",
            &json!({"model": "tts-1", "input": "hi", "voice": "alloy", "response_format": "wav"}),
        )
        .await;
    assert_eq!(a.headers["content-type"], "audio/wav");
    let a = srv
        .post(
            "/v1/audio/speech",
            &json!({"model": "tts-1", "input": "hi"}),
        )
        .await;
    assert_eq!(a.json()["error"]["param"], "voice");
    srv.stop().await;
}

#[tokio::test]
async fn count_tokens_matches_the_messages_input_count() {
    let srv = Server::start(SimConfig::default()).await;
    let messages = json!([{"role": "user", "content": "How many tokens is this?"}]);
    let count = srv
        .post_with(
            "/v1/messages/count_tokens",
            &ANTHROPIC,
            &json!({"model": "claude-haiku-4-5", "messages": messages}),
        )
        .await;
    assert_eq!(count.status, StatusCode::OK, "{}", count.text());
    let message = srv
        .post_with(
            "/v1/messages",
            &ANTHROPIC,
            &json!({"model": "claude-haiku-4-5", "max_tokens": 8, "messages": messages}),
        )
        .await;
    assert_eq!(
        count.json(),
        json!({"input_tokens": message.json()["usage"]["input_tokens"]})
    );
    // Anthropic's envelope for its errors: an extra field, a missing model, no version.
    let a = srv
        .post_with(
            "/v1/messages/count_tokens",
            &ANTHROPIC,
            &json!({"model": "m", "messages": messages, "max_tokens": 1}),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.json()["type"], "error");
    let a = srv
        .post_with(
            "/v1/messages/count_tokens",
            &ANTHROPIC,
            &json!({"messages": messages}),
        )
        .await;
    assert_eq!(a.json()["error"]["type"], "invalid_request_error");
    let a = srv
        .send(
            Method::POST,
            "/v1/messages/count_tokens",
            &[("x-api-key", "k")],
            "{}",
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    srv.stop().await;
}

#[tokio::test]
async fn stored_responses_are_retrieved_listed_and_deleted() {
    let srv = Server::start(SimConfig::default()).await;
    let created = srv
        .post(
            "/v1/responses",
            &json!({"model": "gpt-4o-mini", "input": [
                {"role": "user", "content": "first"},
                {"role": "user", "content": [{"type": "input_text", "text": "second"}]}
            ]}),
        )
        .await
        .json();
    let id = created["id"].as_str().unwrap();
    let got = srv
        .send(Method::GET, &format!("/v1/responses/{id}"), &[AUTH], "")
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.json(), created, "the response as created");

    let items = srv
        .send(
            Method::GET,
            &format!("/v1/responses/{id}/input_items"),
            &[AUTH],
            "",
        )
        .await
        .json();
    assert_eq!(items["object"], "list");
    let data = items["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    // Newest first by default; string content as input_text.
    assert_eq!(data[0]["content"][0]["text"], "second");
    assert_eq!(data[1]["content"][0]["type"], "input_text");
    assert_eq!(items["first_id"], data[0]["id"]);
    let page = srv
        .send(
            Method::GET,
            &format!("/v1/responses/{id}/input_items?order=asc&limit=1"),
            &[AUTH],
            "",
        )
        .await
        .json();
    assert_eq!(page["data"][0]["content"][0]["text"], "first");
    assert_eq!(page["has_more"], true);

    let a = srv
        .send(
            Method::POST,
            &format!("/v1/responses/{id}/cancel"),
            &[AUTH],
            "",
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = srv
        .send(Method::DELETE, &format!("/v1/responses/{id}"), &[AUTH], "")
        .await;
    assert_eq!(a.json()["deleted"], true);
    let a = srv
        .send(Method::GET, &format!("/v1/responses/{id}"), &[AUTH], "")
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.json()["error"]["param"], "response_id");

    // `store: false` keeps nothing; a retrieval needs a key.
    let v = srv
        .post(
            "/v1/responses",
            &json!({"model": "gpt-4o-mini", "input": "x", "store": false}),
        )
        .await
        .json();
    let path = format!("/v1/responses/{}", v["id"].as_str().unwrap());
    assert_eq!(
        srv.send(Method::GET, &path, &[AUTH], "").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        srv.send(Method::GET, &path, &[], "").await.status,
        StatusCode::UNAUTHORIZED
    );
    srv.stop().await;
}

#[tokio::test]
async fn models_are_retrieved_by_id() {
    let srv = Server::start(SimConfig::default()).await;
    let a = srv
        .send(Method::GET, "/v1/models/gpt-4o", &[AUTH], "")
        .await;
    assert_eq!(a.json()["id"], "gpt-4o");
    let a = srv.send(Method::GET, "/v1/models/nope", &[AUTH], "").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.json()["error"]["code"], "model_not_found");
    srv.stop().await;
}
