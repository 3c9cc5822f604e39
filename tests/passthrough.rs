//! Pass-through of the other `/v1` paths an SDK calls (moderations, images, audio,
//! `responses/{id}`, `models/{id}`, `messages/count_tokens`): to the provider that serves
//! them with its key, bodies streamed both ways, answers relayed unchanged and counted
//! under closed labels; files, batches and unknown paths refused in the caller's shape.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{Gateway, canned_with, keyed_policy, metric};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

const KEY: &str = "sk-team";
const AUTH: (&str, &str) = ("authorization", "Bearer sk-team");
const ANTHROPIC: [(&str, &str); 2] = [
    ("x-api-key", "sk-team"),
    ("anthropic-version", "2023-06-01"),
];
const BOUNDARY: &str = "----sluicePassThrough";

fn team() -> Vec<(String, String)> {
    vec![keyed_policy("team", KEY, "")]
}

fn parse(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(b)))
}

fn requests(m: &str, labels: &[(&str, &str)]) -> f64 {
    metric(m, "sluice_requests_total", labels)
}

/// A multipart head and tail around one file part, as the OpenAI SDK sends an upload.
fn form(fields: &[(&str, &str)], filename: &str) -> (String, String) {
    let mut head = String::new();
    for (name, value) in fields {
        head.push_str(&format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    head.push_str(&format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: audio/wav\r\n\r\n"
    ));
    (head, format!("\r\n--{BOUNDARY}--\r\n"))
}

#[tokio::test]
async fn sdk_paths_reach_the_simulator_and_are_counted_under_closed_labels() {
    let gw = Gateway::start(team(), |_| {}).await;
    let (s, h, b) = gw
        .post("/v1/moderations", &[AUTH], r#"{"input":"I will kill it"}"#)
        .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    assert_eq!(parse(&b)["results"][0]["flagged"], true);
    assert_eq!(h["x-sluice-tier"], "interactive");

    let (s, _, b) = gw
        .post(
            "/v1/images/generations",
            &[AUTH],
            r#"{"model":"gpt-image-1","prompt":"a lighthouse"}"#,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(parse(&b)["data"][0]["b64_json"].is_string());

    let (s, h, b) = gw
        .post(
            "/v1/audio/speech",
            &[AUTH],
            r#"{"model":"tts-1","input":"hello","voice":"alloy"}"#,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["content-type"], "audio/mpeg");
    assert!(
        b.starts_with(b"ID3") && b.len() == 3 + 5 * 64,
        "binary, whole"
    );

    let (s, _, b) = gw
        .post(
            "/v1/messages/count_tokens",
            &ANTHROPIC,
            r#"{"model":"claude-haiku-4-5","messages":[{"role":"user","content":"count me"}]}"#,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    assert!(parse(&b)["input_tokens"].as_u64() > Some(0));

    // A response made through Sluice is retrieved through it: relayed, never priced again.
    let (s, _, b) = gw
        .post(
            "/v1/responses",
            &[AUTH],
            r#"{"model":"gpt-4o-mini","input":"Where is my parcel?"}"#,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let created = parse(&b);
    let id = created["id"].as_str().unwrap();
    let cost = |m: &str| metric(m, "sluice_cost_usd_total", &[("model", "gpt-4o-mini")]);
    let before = cost(&gw.metrics().await);
    assert!(before > 0.0);
    let (s, _, b) = gw.get(&format!("/v1/responses/{id}"), &[AUTH]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(parse(&b), created);
    let (s, _, b) = gw
        .get(&format!("/v1/responses/{id}/input_items?limit=1"), &[AUTH])
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(parse(&b)["data"].as_array().unwrap().len(), 1);

    // A model Sluice does not list is the provider's to answer.
    let (s, _, b) = gw.get("/v1/models/gpt-4o-mini", &[AUTH]).await;
    assert_eq!(
        (s, parse(&b)["owned_by"].as_str()),
        (StatusCode::OK, Some("openai"))
    );
    let (s, _, b) = gw.get("/v1/models/ft:gpt-4o:acme::x1", &[AUTH]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(parse(&b)["error"]["code"], "model_not_found");

    let m = gw
        .metrics_until("the last pass-through counted", |m| {
            requests(
                m,
                &[
                    ("client", "team"),
                    ("status", "404"),
                    ("provider", "openai"),
                ],
            ) >= 1.0
        })
        .await;
    assert_eq!(cost(&m), before, "a retrieval is not a new charge");
    let passed = [
        ("client", "team"),
        ("route", "default"),
        ("tier", "interactive"),
    ];
    // moderations, images, speech, count_tokens, responses (create, get, input_items), models.
    assert_eq!(requests(&m, &passed), 8.0, "{m}");
    // Labelled with the model the request named when it is priced, else `other`.
    let anthropic = [("provider", "anthropic"), ("status", "200")];
    assert_eq!(
        requests(
            &m,
            &[anthropic[0], anthropic[1], ("model", "claude-haiku-4-5")]
        ),
        1.0
    );
    assert_eq!(
        requests(
            &m,
            &[
                ("provider", "openai"),
                ("model", "other"),
                ("status", "200")
            ]
        ),
        4.0,
        "{m}"
    );
    for raw in [
        "moderations",
        "input_items",
        "resp_",
        "ft:gpt",
        "omni-moderation",
    ] {
        assert!(!m.contains(raw), "{raw} is not a label value: {m}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn uploads_unknown_and_escaping_paths_are_refused_in_the_callers_shape() {
    let gw = Gateway::start(team(), |_| {}).await;
    for (method, path) in [
        ("POST", "/v1/uploads"),
        ("POST", "/v1/uploads/upload_1/parts"),
    ] {
        let req = Request::builder()
            .method(method)
            .uri(gw.url(path))
            .header(AUTH.0, AUTH.1)
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        let (s, _, b) = gw.send(req).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
        let e = &parse(&b)["error"];
        assert_eq!(e["code"], "unsupported_endpoint", "{path}");
        assert!(e["message"].as_str().unwrap().contains("POST /v1/files"));
    }
    // An Anthropic SDK's request is refused in Anthropic's shape.
    let (s, _, b) = gw.get("/v1/organizations/api_keys", &ANTHROPIC).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let v = parse(&b);
    assert_eq!(
        (v["type"].as_str(), v["error"]["type"].as_str()),
        (Some("error"), Some("not_found_error")),
        "{v}"
    );

    let (s, _, b) = gw.post("/v1/nonsense", &[AUTH], "{}").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let e = &parse(&b)["error"];
    assert_eq!(e["code"], "unknown_url");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("neither the OpenAI nor the Anthropic API")
    );
    let (_, _, b) = gw.get("/v1/organization/users", &[AUTH]).await;
    assert_eq!(parse(&b)["error"]["code"], "unsupported_endpoint");

    for path in [
        "/v1/responses/../files",
        "/v1/models/..%2Ffiles",
        "/v1/responses/%2e%2e/batches",
        "/v1/responses//x",
    ] {
        let (s, _, b) = gw.get(path, &[AUTH]).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(parse(&b)["error"]["code"], "invalid_path", "{path}");
    }
    assert!(
        gw.sim_requests().await.is_empty(),
        "nothing reached the provider"
    );
    let m = gw.metrics().await;
    assert!(
        requests(
            &m,
            &[("client", "team"), ("route", "none"), ("status", "404")]
        ) == 9.0,
        "{m}"
    );
    assert!(!m.contains("nonsense") && !m.contains("upload_1"));
    gw.stop().await;
}

#[tokio::test]
async fn keys_are_required_and_the_callers_never_reach_the_provider() {
    let up = canned_with(
        200,
        "application/json",
        vec![r#"{"object":"list","data":[]}"#],
        &[],
    )
    .await;
    let gw = Gateway::start_at(&up.base_url(), None, team(), |_| {}).await;
    let (s, _, b) = gw.get("/v1/responses/resp_1/input_items", &[]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(parse(&b)["error"]["code"], "missing_api_key");
    let (s, _, b) = gw
        .post(
            "/v1/messages/count_tokens",
            &[("anthropic-version", "2023-06-01")],
            "{}",
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(parse(&b)["error"]["type"], "authentication_error");
    let (s, _, _) = gw
        .get(
            "/v1/responses/resp_1",
            &[("authorization", "Bearer sk-wrong")],
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(up.heads.lock().unwrap().is_empty());

    let (s, _, b) = gw
        .get(
            "/v1/responses/resp_1/input_items?limit=2&order=asc&after=msg%201",
            &[
                AUTH,
                ("cookie", "session=1"),
                ("x-stainless-retry-count", "0"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(parse(&b)["object"], "list");
    let (s, _, _) = gw
        .post(
            "/v1/messages/count_tokens",
            &ANTHROPIC,
            r#"{"model":"claude-haiku-4-5"}"#,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let uris = up.uris.lock().unwrap().clone();
    assert_eq!(
        uris,
        [
            "/v1/responses/resp_1/input_items?limit=2&order=asc&after=msg%201",
            "/v1/messages/count_tokens"
        ],
        "the query string passes unchanged"
    );
    let heads = up.heads.lock().unwrap().clone();
    let (openai, anthropic) = (&heads[0].1, &heads[1].1);
    assert_eq!(openai["authorization"], "Bearer sk-sluice-simulated");
    assert_eq!(openai["x-stainless-retry-count"], "0");
    assert!(openai.get("cookie").is_none());
    assert_eq!(anthropic["x-api-key"], "sk-sluice-simulated");
    assert!(anthropic.get("authorization").is_none());
    assert_eq!(anthropic["anthropic-version"], "2023-06-01");
    for h in [openai, anthropic] {
        assert!(
            h.values()
                .all(|v| v.as_bytes() != b"Bearer sk-team" && v.as_bytes() != b"sk-team")
        );
    }
    assert_eq!(
        up.bodies.lock().unwrap()[1],
        r#"{"model":"claude-haiku-4-5"}"#.as_bytes()
    );
    gw.stop().await;
}

#[tokio::test]
async fn upstream_errors_pass_through_and_gateway_errors_take_the_callers_shape() {
    const LIMITED: &str = r#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
    let up = canned_with(
        429,
        "application/json",
        vec![LIMITED],
        &[("retry-after", "7")],
    )
    .await;
    let gw = Gateway::start_at(&up.base_url(), None, team(), |_| {}).await;
    let (s, h, b) = gw
        .post("/v1/moderations", &[AUTH], r#"{"input":"x"}"#)
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(b, LIMITED.as_bytes(), "the provider's body, unchanged");
    assert_eq!(h["retry-after"], "7");
    let m = gw
        .metrics_until("the 429 counted", |m| {
            requests(m, &[("status", "429")]) >= 1.0
        })
        .await;
    assert_eq!(
        requests(
            &m,
            &[
                ("status", "429"),
                ("provider", "openai"),
                ("model", "other")
            ]
        ),
        1.0
    );
    gw.stop().await;

    // Nobody listening: a 502 in each caller's shape.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}/v1", closed.local_addr().unwrap());
    drop(closed);
    let gw = Gateway::start_at(&dead, None, team(), |_| {}).await;
    let (s, _, b) = gw.post("/v1/moderations", &[AUTH], "{}").await;
    assert_eq!(s, StatusCode::BAD_GATEWAY);
    assert_eq!(parse(&b)["error"]["code"], "upstream_unavailable");
    let (s, _, b) = gw.post("/v1/messages/count_tokens", &ANTHROPIC, "{}").await;
    assert_eq!(s, StatusCode::BAD_GATEWAY);
    assert_eq!(parse(&b)["error"]["type"], "api_error");
    gw.stop().await;
}

/// A provider that reports every request body's bytes as they arrive, then answers how
/// many came.
async fn counting_upstream() -> (String, tokio::sync::watch::Receiver<usize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::watch::channel(0usize);
    let tx = Arc::new(tx);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let mut body = req.into_body();
                        let mut n = 0;
                        while let Some(Ok(frame)) = body.frame().await {
                            n += frame.data_ref().map_or(0, Bytes::len);
                            tx.send_replace(n);
                        }
                        let answer = json!({"received": n}).to_string();
                        let mut resp = Response::new(Full::new(Bytes::from(answer)));
                        resp.headers_mut()
                            .insert("content-type", "application/json".parse().unwrap());
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (format!("http://{addr}/v1"), rx)
}

type Piece = Result<Frame<Bytes>, Infallible>;

/// Starts a streamed POST whose body is fed through the returned sender.
fn streamed_post(
    url: String,
    headers: &[(&str, &str)],
) -> (
    tokio::sync::mpsc::Sender<Piece>,
    tokio::task::JoinHandle<(StatusCode, Bytes)>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Piece>(4);
    let body = StreamBody::new(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let mut req = Request::post(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(body).unwrap();
    let task = tokio::spawn(async move {
        let client = Client::builder(TokioExecutor::new()).build_http();
        let resp = client.request(req).await.unwrap();
        let status = resp.status();
        (status, resp.into_body().collect().await.unwrap().to_bytes())
    });
    (tx, task)
}

#[tokio::test]
async fn a_10_mb_multipart_upload_streams_up_in_pieces() {
    const MB: usize = 1024 * 1024;
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    let headers = [AUTH, ("content-type", ct.as_str())];
    let (head, tail) = form(&[("model", "whisper-1")], "call.wav");

    // The first megabyte reaches the provider before the caller has sent the second.
    let (url, mut seen) = counting_upstream().await;
    let gw = Gateway::start_at(&url, None, team(), |_| {}).await;
    let (tx, answer) = streamed_post(gw.url("/v1/audio/transcriptions"), &headers);
    tx.send(Ok(Frame::data(Bytes::from(head.clone()))))
        .await
        .unwrap();
    tx.send(Ok(Frame::data(Bytes::from(vec![1u8; MB]))))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), seen.wait_for(|n| *n >= MB))
        .await
        .expect("the provider saw the first piece while the upload went on")
        .unwrap();
    for _ in 1..10 {
        tx.send(Ok(Frame::data(Bytes::from(vec![1u8; MB]))))
            .await
            .unwrap();
    }
    tx.send(Ok(Frame::data(Bytes::from(tail.clone()))))
        .await
        .unwrap();
    drop(tx);
    let (s, b) = answer.await.unwrap();
    assert_eq!(s, StatusCode::OK);
    assert_eq!(parse(&b)["received"], head.len() + 10 * MB + tail.len());
    gw.stop().await;

    // And the simulator transcribes the whole file.
    let gw = Gateway::start(team(), |_| {}).await;
    let (tx, answer) = streamed_post(gw.url("/v1/audio/transcriptions"), &headers);
    tx.send(Ok(Frame::data(Bytes::from(head)))).await.unwrap();
    for _ in 0..10 {
        tx.send(Ok(Frame::data(Bytes::from(vec![2u8; MB]))))
            .await
            .unwrap();
    }
    tx.send(Ok(Frame::data(Bytes::from(tail)))).await.unwrap();
    drop(tx);
    let (s, b) = answer.await.unwrap();
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    assert_eq!(
        parse(&b)["text"],
        format!("Simulated transcription of call.wav ({} bytes).", 10 * MB)
    );
    gw.stop().await;
}

#[tokio::test]
async fn uploads_past_the_body_limit_are_413_declared_or_streamed() {
    let gw = Gateway::start(team(), |c| c.max_body_bytes = 64 * 1024).await;
    let big = "x".repeat(100 * 1024);
    let (s, _, b) = gw.post("/v1/moderations", &[AUTH], &big).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(parse(&b)["error"]["code"], "request_too_large");
    // Without a length: cut when the limit is passed.
    let (tx, answer) = streamed_post(
        gw.url("/v1/audio/transcriptions"),
        &[AUTH, ("content-type", "multipart/form-data; boundary=x")],
    );
    let sender = tokio::spawn(async move {
        for _ in 0..4 {
            if tx
                .send(Ok(Frame::data(Bytes::from(vec![0u8; 32 * 1024]))))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let (s, b) = answer.await.unwrap();
    assert_eq!(
        s,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        String::from_utf8_lossy(&b)
    );
    assert_eq!(
        parse(&b)["error"]["message"],
        "request body exceeds the limit of 65536 bytes"
    );
    sender.await.unwrap();
    gw.stop().await;
}
