//! Connections are bounded in every phase, capped in number, and HTTP-layer errors are
//! JSON. Raw TCP sockets, so each phase (silence, half a preface, idle keep-alive) is exact.
//! Waiting for the server to close a socket is a read until EOF under a generous bound.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Gateway, canned};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sluice::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// A bound, not a wait: every close below is expected within a second or so.
const BOUND: Duration = Duration::from_secs(20);
const SHORT: Duration = Duration::from_millis(300);
const LONG: Duration = Duration::from_secs(60);
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];
const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;

fn timeouts(first_request: Duration, idle: Duration) -> impl FnOnce(&mut Config) {
    move |c| {
        c.header_read_timeout = first_request;
        c.idle_timeout = idle;
    }
}

/// Reads until the server closes the socket (EOF or reset); returns what it sent.
async fn until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    match timeout(BOUND, s.read_to_end(&mut buf)).await {
        Ok(_) => buf,
        Err(_) => panic!("connection still open after {BOUND:?}"),
    }
}

struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// One response with a Content-Length body from the front of `bytes`, and the rest.
fn parse(bytes: &[u8]) -> Option<(Raw, &[u8])> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(n) = resp.parse(bytes).ok()? else {
        return None;
    };
    let headers: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    if bytes.len() < n + len {
        return None;
    }
    let raw = Raw {
        status: resp.code?,
        headers,
        body: bytes[n..n + len].to_vec(),
    };
    Some((raw, &bytes[n + len..]))
}

/// Reads one Content-Length response (the connection may stay open).
async fn read_response(s: &mut TcpStream) -> Raw {
    let mut buf = Vec::new();
    let read = async {
        loop {
            if let Some((raw, _)) = parse(&buf) {
                return raw;
            }
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "closed mid-response: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    timeout(BOUND, read).await.expect("no response")
}

/// Sends raw bytes on a fresh connection and returns everything until the server closes.
async fn exchange(gw: &Gateway, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    until_closed(&mut s).await
}

fn assert_json_error(raw: &Raw, status: u16, code: &str) {
    assert_eq!(raw.status, status);
    assert_eq!(raw.header("content-type"), Some("application/json"));
    let v = raw.json();
    assert_eq!(v["error"]["code"], code, "{v}");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v["error"]["param"].is_null());
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
}

/// An HTTP/2 connection through hyper's client (it answers PINGs and GOAWAY like a real peer).
async fn h2_client(
    gw: &Gateway,
) -> (
    hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    (sender, tokio::spawn(conn))
}

fn h2_request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> http::Request<Full<Bytes>> {
    let mut b = http::Request::builder()
        .method(method)
        .uri(format!("http://localhost{path}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::from(body.to_owned()))).unwrap()
}

// ---- point 3: every phase is bounded ----

#[tokio::test]
async fn a_silent_socket_is_closed_after_the_first_request_timeout() {
    let gw = Gateway::start(vec![], timeouts(SHORT, LONG)).await;
    let started = Instant::now();
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let got = until_closed(&mut s).await;
    assert!(got.is_empty(), "{got:?}");
    assert!(started.elapsed() >= SHORT - Duration::from_millis(50));
    gw.stop().await;
}

#[tokio::test]
async fn half_an_http2_preface_is_closed() {
    let gw = Gateway::start(vec![], timeouts(SHORT, LONG)).await;
    // Protocol detection waits for 24 bytes; these 16 match the preface so far.
    exchange(&gw, &H2_PREFACE[..16]).await;
    gw.stop().await;
}

#[tokio::test]
async fn an_http2_preface_and_settings_without_a_request_is_closed() {
    let gw = Gateway::start(vec![], timeouts(SHORT, LONG)).await;
    let got = exchange(&gw, &[H2_PREFACE, SETTINGS].concat()).await;
    // It was served as HTTP/2: the server's own SETTINGS frame came first.
    assert!(got.len() >= 9 && got[3] == 4, "{got:?}");
    gw.stop().await;
}

#[tokio::test]
async fn an_idle_http1_keep_alive_connection_is_closed() {
    // hyper's own header timer (header_read_timeout) stays long: the idle timeout closes it.
    let gw = Gateway::start(vec![], timeouts(LONG, SHORT)).await;
    let got = exchange(&gw, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let (raw, rest) = parse(&got).expect("a response");
    assert_eq!(raw.status, 200);
    assert!(raw.header("connection").is_none(), "a keep-alive response");
    assert!(rest.is_empty());
    gw.stop().await;
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed() {
    let gw = Gateway::start(vec![], timeouts(LONG, SHORT)).await;
    let (mut sender, conn) = h2_client(&gw).await;
    let resp = sender
        .send_request(h2_request("GET", "/healthz", &[], ""))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let _ = resp.into_body().collect().await.unwrap();
    // No stream open: the server says GOAWAY and closes; the client connection then ends.
    let ended = timeout(BOUND, conn)
        .await
        .expect("HTTP/2 connection still open");
    assert!(ended.unwrap().is_ok());
    gw.stop().await;
}

#[tokio::test]
async fn a_request_in_flight_is_never_cut_by_the_idle_timeout() {
    let gw = Gateway::start(
        vec![],
        timeouts(Duration::from_millis(200), Duration::from_millis(200)),
    )
    .await;
    let slow = [("x-sim-latency-ms", "1500")];
    // HTTP/1.1: held well past both timeouts.
    let (s, _, b) = gw.post("/v1/chat/completions", &slow, CHAT).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    // HTTP/2, streaming.
    let (mut sender, _conn) = h2_client(&gw).await;
    let body = CHAT.replace("\"messages\"", "\"stream\":true,\"messages\"");
    let req = h2_request(
        "POST",
        "/v1/chat/completions",
        &[slow[0], ("content-type", "application/json")],
        &body,
    );
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(text.ends_with(b"data: [DONE]\n\n"), "{text:?}");
    gw.stop().await;
}

/// HPACK for `POST /v1/chat/completions` on `localhost`, literal fields without Huffman.
fn h2_post_headers() -> Vec<u8> {
    let path = b"/v1/chat/completions";
    let authority = b"localhost";
    let mut block = vec![0x83, 0x86, 0x04, path.len() as u8];
    block.extend_from_slice(path);
    block.extend_from_slice(&[0x01, authority.len() as u8]);
    block.extend_from_slice(authority);
    // HEADERS on stream 1, END_HEADERS but not END_STREAM: the body never comes.
    let mut frame = vec![0, 0, block.len() as u8, 1, 0x04, 0, 0, 0, 1];
    frame.extend_from_slice(&block);
    frame
}

#[tokio::test]
async fn a_dead_http2_peer_is_closed_by_keep_alive_pings() {
    let gw = Gateway::start(vec![], |c| {
        c.header_read_timeout = LONG;
        c.idle_timeout = LONG;
        c.body_read_timeout = LONG;
        c.http2_keep_alive_interval = Duration::from_millis(200);
        c.http2_keep_alive_timeout = Duration::from_millis(200);
    })
    .await;
    // A request in flight (its body never arrives), then silence: PINGs go unanswered.
    let got = exchange(&gw, &[H2_PREFACE, SETTINGS, &h2_post_headers()].concat()).await;
    let mut frames = Vec::new();
    let mut at = 0;
    while at + 9 <= got.len() {
        let len =
            usize::from(got[at]) << 16 | usize::from(got[at + 1]) << 8 | usize::from(got[at + 2]);
        frames.push(got[at + 3]);
        at += 9 + len;
    }
    assert!(frames.contains(&6), "no PING among frame types {frames:?}");
    gw.stop().await;
}

#[tokio::test]
async fn a_flood_of_silent_sockets_cannot_lock_out_new_clients() {
    let gw = Gateway::start(vec![], |c| {
        timeouts(LONG, LONG)(c);
        c.max_connections = 32;
    })
    .await;
    let mut silent = Vec::new();
    for _ in 0..200 {
        silent.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    let (s, _, _) = gw.get("/healthz", &[]).await;
    assert_eq!(s, 200);
    let (s, _, b) = gw.post("/v1/chat/completions", &[], CHAT).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    // The oldest silent sockets made room: they were closed.
    for s in &mut silent[..100] {
        until_closed(s).await;
    }
    gw.stop().await;
}

/// A request whose service call has started (hyper says 100 Continue once the handler reads
/// the body) and that stays in flight until its body is sent.
async fn busy_connection(gw: &Gateway) -> TcpStream {
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
          content-length: 3\r\nexpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    while !got.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        let n = timeout(BOUND, s.read(&mut b)).await.unwrap().unwrap();
        assert!(n == 1, "closed before 100 Continue");
        got.push(b[0]);
    }
    assert!(got.starts_with(b"HTTP/1.1 100"), "{got:?}");
    s
}

#[tokio::test]
async fn at_the_cap_with_every_connection_busy_a_newcomer_is_closed() {
    let gw = Gateway::start(vec![], |c| {
        timeouts(LONG, LONG)(c);
        c.max_connections = 2;
    })
    .await;
    let mut first = busy_connection(&gw).await;
    let _second = busy_connection(&gw).await;
    let got = exchange(&gw, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(got.is_empty(), "refused without an answer: {got:?}");
    // The first request ends (a 400 for its body); its connection is idle and makes room.
    first.write_all(b"{x}").await.unwrap();
    assert_eq!(read_response(&mut first).await.status, 400);
    let (s, _, _) = gw.get("/healthz", &[]).await;
    assert_eq!(s, 200);
    gw.stop().await;
}

// ---- point 4: HTTP-layer errors are JSON ----

async fn one_error(gw: &Gateway, request: &[u8]) -> Raw {
    let got = exchange(gw, request).await;
    let (raw, _) =
        parse(&got).unwrap_or_else(|| panic!("no response: {:?}", String::from_utf8_lossy(&got)));
    raw
}

#[tokio::test]
async fn http_layer_errors_are_openai_json() {
    let gw = Gateway::start(vec![], |_| {}).await;
    let raw = one_error(&gw, b"GARBAGE\r\n\r\n").await;
    assert_json_error(&raw, 400, "malformed_request");

    let uri = format!(
        "GET /v1/models?q={} HTTP/1.1\r\nhost: x\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    let raw = one_error(&gw, uri.as_bytes()).await;
    assert_json_error(&raw, 414, "uri_too_long");

    let mut many = String::from("GET /healthz HTTP/1.1\r\nhost: x\r\n");
    for i in 0..200 {
        many.push_str(&format!("x-h{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let raw = one_error(&gw, many.as_bytes()).await;
    assert_json_error(&raw, 431, "headers_too_large");

    let huge = format!(
        "GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "b".repeat(70 * 1024)
    );
    let raw = one_error(&gw, huge.as_bytes()).await;
    assert_json_error(&raw, 431, "headers_too_large");

    let raw = one_error(
        &gw,
        b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-bad: a\x01b\r\n\r\n",
    )
    .await;
    assert_json_error(&raw, 400, "malformed_request");

    let raw = one_error(
        &gw,
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\ncontent-length: 5\r\n\r\nabc",
    )
    .await;
    assert_json_error(&raw, 400, "malformed_request");
    gw.stop().await;
}

/// Google's envelope, as every other error on a Gemini-native path.
fn assert_google_error(raw: &Raw, status: u16) {
    assert_eq!(raw.status, status);
    assert_eq!(raw.header("content-type"), Some("application/json"));
    let v = raw.json();
    assert_eq!(v["error"]["code"], status, "{v}");
    assert_eq!(v["error"]["status"], "INVALID_ARGUMENT", "{v}");
    assert!(v["error"].get("type").is_none(), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
}

#[tokio::test]
async fn http_layer_errors_on_gemini_paths_are_google_json() {
    let gw = Gateway::start(vec![], |_| {}).await;
    for path in [
        "/v1beta/models/gemini-2.5-flash:generateContent",
        "/v1/models/gemini-2.5-flash:streamGenerateContent",
    ] {
        // 414: the gateway's own URI limit, before routing.
        let uri = format!(
            "POST {path}?alt=sse&q={} HTTP/1.1\r\nhost: x\r\n\r\n",
            "a".repeat(20 * 1024)
        );
        assert_google_error(&one_error(&gw, uri.as_bytes()).await, 414);
        // 431: hyper's, too many headers and too large a head.
        let mut many = format!("POST {path} HTTP/1.1\r\nhost: x\r\n");
        for i in 0..200 {
            many.push_str(&format!("x-h{i}: v\r\n"));
        }
        many.push_str("\r\n");
        assert_google_error(&one_error(&gw, many.as_bytes()).await, 431);
        let huge = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
            "b".repeat(70 * 1024)
        );
        assert_google_error(&one_error(&gw, huge.as_bytes()).await, 431);
        // 400: a header hyper cannot parse.
        let bad = format!("POST {path} HTTP/1.1\r\nhost: x\r\nx-bad: a\x01b\r\n\r\n");
        assert_google_error(&one_error(&gw, bad.as_bytes()).await, 400);
    }
    // OpenAI's routes keep OpenAI's shape, Anthropic's their own.
    let mut many = String::from("POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n");
    for i in 0..200 {
        many.push_str(&format!("x-h{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_json_error(
        &one_error(&gw, many.as_bytes()).await,
        431,
        "headers_too_large",
    );
    let messages = many.replace("/v1/chat/completions", "/v1/messages");
    let raw = one_error(&gw, messages.as_bytes()).await;
    assert_eq!(raw.status, 431);
    assert_eq!(raw.json()["type"], "error");

    // HTTP/2: the gateway's own 414.
    let (mut sender, _conn) = h2_client(&gw).await;
    let path = format!(
        "/v1beta/models/gemini-2.5-flash:generateContent?q={}",
        "a".repeat(20 * 1024)
    );
    let resp = sender
        .send_request(h2_request("POST", &path, &[], ""))
        .await
        .unwrap();
    assert_eq!(resp.status(), 414);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["status"], "INVALID_ARGUMENT", "{v}");
    assert_eq!(v["error"]["code"], 414, "{v}");
    gw.stop().await;
}

#[tokio::test]
async fn an_error_after_pipelined_requests_is_json_and_their_answers_intact() {
    let gw = Gateway::start(vec![], |_| {}).await;
    // A sized answer, then garbage in the same write.
    let got = exchange(
        &gw,
        b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\nGARBAGE\r\n\r\n",
    )
    .await;
    let (ok, rest) = parse(&got).unwrap();
    assert_eq!((ok.status, ok.body.as_slice()), (200, &b"ok\n"[..]));
    let (err, rest) = parse(rest).unwrap();
    assert_json_error(&err, 400, "malformed_request");
    assert!(rest.is_empty());

    // A chunked SSE answer, then a request with a bad header.
    let body = CHAT.replace("\"messages\"", "\"stream\":true,\"messages\"");
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}GET /healthz HTTP/1.1\r\nx-bad: \x01\r\n\r\n",
        body.len()
    );
    let got = exchange(&gw, req.as_bytes()).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
    assert!(text.contains("data: [DONE]"), "{text}");
    let at = text.rfind("HTTP/1.1 400").expect("the error response");
    let (err, rest) = parse(&got[at..]).unwrap();
    assert_json_error(&err, 400, "malformed_request");
    assert!(rest.is_empty());
    gw.stop().await;
}

#[tokio::test]
async fn a_long_uri_over_http2_is_json_too() {
    let gw = Gateway::start(vec![], |_| {}).await;
    let (mut sender, _conn) = h2_client(&gw).await;
    let path = format!("/v1/models?q={}", "a".repeat(20 * 1024));
    let resp = sender
        .send_request(h2_request("GET", &path, &[], ""))
        .await
        .unwrap();
    assert_eq!(resp.status(), 414);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "uri_too_long");
    gw.stop().await;
}

#[tokio::test]
async fn empty_upstream_errors_pass_through_untouched() {
    let upstream = canned(400, "application/json", vec![]).await;
    let gw = Gateway::start_at(&upstream.base_url(), None, vec![], |_| {}).await;
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{CHAT}",
        CHAT.len()
    );
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let raw = read_response(&mut s).await;
    assert_eq!(raw.status, 400);
    assert!(
        raw.body.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&raw.body)
    );
    // And the same connection still serves the next request.
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut s).await.status, 200);
    gw.stop().await;
}

// ---- the real binary under a low file-descriptor limit ----

#[cfg(unix)]
fn limit_fds() -> std::io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: 256,
        rlim_max: 256,
    };
    // SAFETY: setrlimit is async-signal-safe and only reads `lim`.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `/healthz` through a fresh connection, or why not.
async fn healthz(port: u16) -> Result<u16, String> {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http::<Full<Bytes>>();
    let req = http::Request::get(format!("http://127.0.0.1:{port}/healthz"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    match timeout(BOUND, client.request(req)).await {
        Ok(Ok(r)) => Ok(r.status().as_u16()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

#[cfg(unix)]
#[tokio::test]
async fn under_a_low_fd_limit_silent_sockets_cannot_lock_out_healthz() {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    let dir = std::env::temp_dir().join(format!("sluice-fdlimit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    let cfg = dir.join("sluice.toml");
    // Silent sockets must not time out during the test: only the cap can make room.
    std::fs::write(
        &cfg,
        "header_read_timeout = \"60s\"\nidle_timeout = \"60s\"\n",
    )
    .unwrap();
    let log = dir.join("gateway.log");

    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut gateway = None;
    for _ in 0..3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
        cmd.args(["serve", "--simulate", "--config"])
            .arg(&cfg)
            .env_clear()
            .env("RUST_LOG", "warn")
            .env("SLUICE_LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "SLUICE_STORE",
                format!("sqlite://{}", dir.join("db").display()),
            )
            .env("SLUICE_POLICIES", dir.join("policies"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out));
        // SAFETY: the hook only calls setrlimit.
        unsafe { cmd.pre_exec(limit_fds) };
        let mut child = Kill(cmd.spawn().unwrap());
        // Bounded readiness polling (the port may have been taken meanwhile: retry).
        for _ in 0..500 {
            if child.0.try_wait().unwrap().is_some() {
                break;
            }
            if healthz(port).await == Ok(200) {
                gateway = Some((child, port));
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if gateway.is_some() {
            break;
        }
    }
    let (_child, port) = gateway.expect("the gateway never became ready");

    // More silent sockets than the process has file descriptors.
    let mut silent = Vec::new();
    for _ in 0..400 {
        silent.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    assert_eq!(healthz(port).await, Ok(200));
    until_closed(&mut silent[0]).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("max_connections lowered"), "{text}");
    drop(silent);
    let _ = std::fs::remove_dir_all(&dir);
}
