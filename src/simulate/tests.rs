//! In-process tests of the simulator over real sockets: harness and chat completions.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{SimConfig, serve};

pub(super) type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A simulator running on an ephemeral loopback port.
pub(super) struct Server {
    pub addr: SocketAddr,
    pub client: HttpClient,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

pub(super) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }

    /// The `data:` payloads of an SSE body, in order.
    pub fn sse_data(&self) -> Vec<String> {
        let text = self.text();
        assert!(
            text.ends_with("\n\n"),
            "SSE body must end with a blank line"
        );
        text.split_terminator("\n\n")
            .map(|event| {
                let data = event
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .unwrap();
                data.to_owned()
            })
            .collect()
    }
}

impl Server {
    pub async fn start(config: SimConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, config, async move {
            let _ = rx.await;
        }));
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self {
            addr,
            client,
            stop,
            task,
        }
    }

    pub async fn stop(self) {
        drop(self.client);
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Answer {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{}", self.addr, path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body.into())).unwrap();
        let resp = self.client.request(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body,
        }
    }

    /// Authorized JSON POST.
    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.post_with(path, &[], body).await
    }

    pub async fn post_with(&self, path: &str, headers: &[(&str, &str)], body: &Value) -> Answer {
        let mut all = vec![
            ("authorization", "Bearer sk-test"),
            ("content-type", "application/json"),
        ];
        all.extend_from_slice(headers);
        self.send(Method::POST, path, &all, body.to_string()).await
    }
}

fn chat_body(extra: Value) -> Value {
    let mut body = json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is the capital of France, and why is it Paris?"}
        ]
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

fn chunks(answer: &Answer) -> Vec<Value> {
    let data = answer.sse_data();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

fn streamed_content(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .filter_map(|choice| choice["delta"]["content"].as_str())
        .collect()
}

#[tokio::test]
async fn chat_non_stream_has_reference_shape() {
    let srv = Server::start(SimConfig::default()).await;
    let a = srv
        .post("/v1/chat/completions", &chat_body(json!({})))
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers["content-type"], "application/json");
    assert!(
        a.headers["x-request-id"]
            .to_str()
            .unwrap()
            .starts_with("req_sim")
    );
    for h in [
        "x-ratelimit-limit-requests",
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-requests",
        "x-ratelimit-reset-tokens",
        "openai-processing-ms",
    ] {
        assert!(a.headers.contains_key(h), "missing header {h}");
    }
    let v = a.json();
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-sim"));
    assert_eq!(v["object"], "chat.completion");
    assert!(v["created"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(v["model"], "gpt-4o-mini");
    assert_eq!(v["service_tier"], "default");
    assert_eq!(v["system_fingerprint"], "fp_sim");
    let choice = &v["choices"][0];
    assert_eq!(
        choice["message"],
        json!({"role": "assistant", "content": "Simulated answer to: What is the capital of France, and why is it Paris?", "refusal": null, "annotations": []})
    );
    assert_eq!(choice["logprobs"], Value::Null);
    assert_eq!(choice["finish_reason"], "stop");
    // 2 messages: (4 + ceil(14/4)) + (4 + ceil(51/4)) = 8 + 17.
    assert_eq!(
        v["usage"],
        json!({
            "prompt_tokens": 25, "completion_tokens": 14, "total_tokens": 39,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
        })
    );
    srv.stop().await;
}

#[tokio::test]
async fn chat_stream_without_usage_matches_non_stream() {
    let srv = Server::start(SimConfig::default()).await;
    let plain = srv
        .post("/v1/chat/completions", &chat_body(json!({})))
        .await
        .json();
    let a = srv
        .post("/v1/chat/completions", &chat_body(json!({"stream": true})))
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers["content-type"], "text/event-stream");
    let chunks = chunks(&a);
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert_eq!(
        streamed_content(&chunks),
        plain["choices"][0]["message"]["content"].as_str().unwrap()
    );
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["delta"], json!({}));
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    let (id, created) = (&chunks[0]["id"], &chunks[0]["created"]);
    for c in &chunks {
        assert!(
            c.get("usage").is_none(),
            "no usage key without include_usage"
        );
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!((&c["id"], &c["created"]), (id, created));
        assert_eq!(c["model"], "gpt-4o-mini");
        assert_eq!(c["system_fingerprint"], "fp_sim");
        assert_eq!(c["service_tier"], "default");
    }
    // one chunk per word
    assert_eq!(
        chunks.len() as u64,
        plain["usage"]["completion_tokens"].as_u64().unwrap() + 2
    );
    srv.stop().await;
}

#[tokio::test]
async fn chat_stream_with_include_usage_ends_with_usage_chunk() {
    let srv = Server::start(SimConfig::default()).await;
    let plain = srv
        .post("/v1/chat/completions", &chat_body(json!({})))
        .await
        .json();
    let body = chat_body(json!({"stream": true, "stream_options": {"include_usage": true}}));
    let a = srv.post("/v1/chat/completions", &body).await;
    let chunks = chunks(&a);
    let (usage_chunk, rest) = chunks.split_last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"], plain["usage"]);
    for c in rest {
        assert_eq!(c.get("usage"), Some(&Value::Null));
    }
    assert_eq!(
        streamed_content(rest),
        plain["choices"][0]["message"]["content"].as_str().unwrap()
    );
    assert_eq!(rest.last().unwrap()["choices"][0]["finish_reason"], "stop");
    srv.stop().await;
}

#[tokio::test]
async fn chat_streams_identical_except_id_and_created() {
    let srv = Server::start(SimConfig::default()).await;
    let body = chat_body(json!({"stream": true, "stream_options": {"include_usage": true}}));
    let normalise = |a: &Answer| {
        let v = chunks(a);
        let (id, created) = (v[0]["id"].to_string(), v[0]["created"].to_string());
        a.text()
            .replace(&id, "\"ID\"")
            .replace(&format!("\"created\":{created}"), "\"created\":0")
    };
    let one = srv.post("/v1/chat/completions", &body).await;
    let two = srv.post("/v1/chat/completions", &body).await;
    assert_ne!(one.body, two.body, "ids differ");
    assert_eq!(normalise(&one), normalise(&two));
    srv.stop().await;
}

#[tokio::test]
async fn chat_cached_tokens_on_shared_long_system_prompt() {
    let srv = Server::start(SimConfig::default()).await;
    let system = "policy ".repeat(600); // 4200 bytes = 1050 tokens
    let req = |user: &str| {
        json!({"model": "gpt-4.1", "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": user}
        ]})
    };
    let first = srv
        .post("/v1/chat/completions", &req("first question"))
        .await
        .json();
    assert_eq!(first["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    let second = srv
        .post("/v1/chat/completions", &req("another question"))
        .await
        .json();
    assert_eq!(
        second["usage"]["prompt_tokens_details"]["cached_tokens"],
        1024
    );
    assert!(second["usage"]["prompt_tokens"].as_u64().unwrap() >= 1024);
    // Caches are per model.
    let mut other = req("another question");
    other["model"] = json!("gpt-4o");
    let other = srv.post("/v1/chat/completions", &other).await.json();
    assert_eq!(other["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    // Short prompts are never cached.
    srv.post("/v1/chat/completions", &chat_body(json!({})))
        .await;
    let short = srv
        .post("/v1/chat/completions", &chat_body(json!({})))
        .await
        .json();
    assert_eq!(short["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    srv.stop().await;
}

#[tokio::test]
async fn chat_honours_n_max_tokens_and_service_tier() {
    let srv = Server::start(SimConfig::default()).await;
    let body = chat_body(json!({"n": 3, "max_completion_tokens": 2, "service_tier": "flex"}));
    let v = srv.post("/v1/chat/completions", &body).await.json();
    assert_eq!(v["choices"].as_array().unwrap().len(), 3);
    for (i, c) in v["choices"].as_array().unwrap().iter().enumerate() {
        assert_eq!(c["index"], i);
        assert_eq!(c["message"]["content"], "Simulated answer");
        assert_eq!(c["finish_reason"], "length");
    }
    assert_eq!(v["usage"]["completion_tokens"], 6);
    assert_eq!(v["service_tier"], "flex");
    let v = srv
        .post(
            "/v1/chat/completions",
            &chat_body(json!({"max_tokens": 1, "service_tier": "auto"})),
        )
        .await
        .json();
    assert_eq!(v["choices"][0]["message"]["content"], "Simulated");
    assert_eq!(v["service_tier"], "default");
    let bad = srv
        .post("/v1/chat/completions", &chat_body(json!({"max_tokens": 0})))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.json()["error"]["param"], "max_tokens");
    srv.stop().await;
}

#[tokio::test]
async fn chat_content_parts_and_tools_count() {
    let srv = Server::start(SimConfig::default()).await;
    let parts = json!({"model": "gpt-4o", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "hello"}, {"type": "text", "text": " there"}]}
    ]});
    let v = srv.post("/v1/chat/completions", &parts).await.json();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Simulated answer to: hello there"
    );
    assert_eq!(v["usage"]["prompt_tokens"], 4 + 3);
    let mut with_tools = parts.clone();
    with_tools["tools"] = json!([{"type": "function", "function": {"name": "f"}}]);
    let t = srv.post("/v1/chat/completions", &with_tools).await.json();
    let tools_len = r#"[{"function":{"name":"f"},"type":"function"}]"#.len() as u64;
    assert_eq!(t["usage"]["prompt_tokens"], 7 + tools_len.div_ceil(4));
    srv.stop().await;
}
