use std::io::IoSlice;

use tokio::io::AsyncWriteExt;

use super::*;

const DATE: &str = "date: Thu, 01 Jan 2026 00:00:00 GMT\r\n";

fn hyper_error(status: &str) -> String {
    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n{DATE}\r\n")
}

fn log_of(kinds: &[Kind]) -> Log {
    Log {
        first: 0,
        kinds: kinds.iter().copied().collect(),
    }
}

fn json_body(resp: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(resp);
    let (_, body) = text.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(body).unwrap()
}

#[test]
fn hyper_error_heads_become_json_with_the_same_status() {
    for (status, code) in [
        ("400 Bad Request", "malformed_request"),
        ("414 URI Too Long", "uri_too_long"),
        ("431 Request Header Fields Too Large", "headers_too_large"),
    ] {
        let out = replacement(hyper_error(status).as_bytes(), Api::OpenAi).unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{text}"
        );
        assert!(
            text.contains("content-type: application/json\r\n"),
            "{text}"
        );
        assert!(text.contains(DATE), "{text}");
        let v = json_body(&out);
        assert_eq!(v["error"]["code"], code);
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(v["error"]["param"].is_null());
        let (_, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(text.contains(&format!("content-length: {}\r\n", body.len())));
    }
    // HTTP/1.0 peers and `connection: close` as hyper writes them.
    let head =
        format!("HTTP/1.0 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n{DATE}\r\n");
    let out = replacement(head.as_bytes(), Api::OpenAi).unwrap();
    assert!(out.starts_with(b"HTTP/1.0 400 Bad Request\r\n"));
}

#[test]
fn hyper_errors_on_google_and_anthropic_paths_take_their_shape() {
    for (status, code, google) in [
        ("414 URI Too Long", 414, "INVALID_ARGUMENT"),
        (
            "431 Request Header Fields Too Large",
            431,
            "INVALID_ARGUMENT",
        ),
        ("400 Bad Request", 400, "INVALID_ARGUMENT"),
    ] {
        let out = replacement(hyper_error(status).as_bytes(), Api::Gemini).unwrap();
        let v = json_body(&out);
        assert_eq!(v["error"]["code"], code, "{v}");
        assert_eq!(v["error"]["status"], google, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        assert!(v["error"].get("type").is_none(), "{v}");
        let out = replacement(hyper_error(status).as_bytes(), Api::Anthropic).unwrap();
        let v = json_body(&out);
        assert_eq!(v["type"], "error", "{v}");
    }
}

#[test]
fn the_api_of_a_request_is_read_from_its_request_line() {
    for (data, want) in [
        (
            &b"POST /v1beta/models/gemini-2.5-flash:generateContent HTTP/1.1\r\n"[..],
            Some(Api::Gemini),
        ),
        (
            b"POST /v1/models/gemini-2.5-flash:streamGenerateContent?alt=sse HTTP/1.1\r\n",
            Some(Api::Gemini),
        ),
        // Cut short by the end of the read: the beginning decides.
        (b"GET /v1beta/models/aaaaaaaaaaaaaaaa", Some(Api::Gemini)),
        (b"POST /v1/messages HTTP/1.1\r\n", Some(Api::Anthropic)),
        (b"POST /v1/chat/completions HTTP/1.1\r\n", Some(Api::OpenAi)),
        (b"GET /v1/models/gpt-4o HTTP/1.1\r\n", Some(Api::OpenAi)),
        // Not a request line: a body chunk, a lower-case word, HTTP/2's preface.
        (b"{\"contents\": []}", None),
        (b"post /v1beta/x HTTP/1.1", None),
        (b"PRI * HTTP/2.0\r\n", None),
        (b"", None),
    ] {
        assert_eq!(
            request_line(data).map(|(api, _)| api),
            want,
            "{}",
            String::from_utf8_lossy(data)
        );
    }
}

#[test]
fn a_request_line_read_in_pieces_is_judged_once_its_path_is_complete() {
    let mut w = HttpErrors::new((), H1Log::default());
    // The HTTP/2 preface check reads 24 bytes first.
    let line = b"POST /v1/models/gemini-2.5-flash:generateContent HTTP/1.1\r\nhost: x\r\n";
    w.note_read(&line[..24]);
    assert_eq!(w.api, Api::OpenAi);
    w.note_read(&line[24..40]);
    w.note_read(&line[40..]);
    assert_eq!(w.api, Api::Gemini);
    assert!(w.line.is_none());
    // Body bytes and header lines change nothing; the next request line does.
    w.note_read(b"x-h: POST /v1/chat/completions HTTP/1.1\r\n");
    assert_eq!(w.api, Api::Gemini);
    w.note_read(b"POST /v1/chat/completions HTTP/1.1\r\n");
    assert_eq!(w.api, Api::OpenAi);
}

#[test]
fn anything_else_is_not_a_hyper_error() {
    for head in [
        hyper_error("404 Not Found"),
        hyper_error("500 Internal Server Error"),
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 0\r\n\r\n"
            .to_owned(),
        format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 3\r\n{DATE}\r\n"),
        "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n".to_owned(),
        "\0\0\x12\x04\0\0\0\0\0".to_owned(),
    ] {
        assert!(
            replacement(head.as_bytes(), Api::OpenAi).is_none(),
            "{head:?}"
        );
    }
}

/// Our responses (a sized body, a chunked one with a trailer, a HEAD, a 204 after a 100
/// Continue), then hyper's own error.
fn pipeline() -> (Vec<u8>, usize, Log) {
    let ours = concat!(
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
        "5\r\nHTTP/\r\n1a;ext=1\r\nHTTP/1.1 400 Bad Request\r\n\r\n0\r\nx-t: 1\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n",
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    );
    let mut bytes = ours.as_bytes().to_vec();
    bytes.extend_from_slice(hyper_error("400 Bad Request").as_bytes());
    let log = log_of(&[Kind::Other, Kind::Other, Kind::Head, Kind::Other]);
    (bytes, ours.len(), log)
}

#[test]
fn framing_stops_exactly_where_hypers_head_starts() {
    let (bytes, ours, log) = pipeline();
    let mut f = Framing::new();
    assert_eq!(f.scan(&bytes, &log), ours);
    assert_eq!(f.next, 4);
    // The same, a byte at a time (partial writes).
    let mut f = Framing::new();
    let mut at = 0;
    while at < bytes.len() {
        let n = f.scan(&bytes[at..at + 1], &log);
        if n == 0 {
            break;
        }
        at += n;
    }
    assert_eq!(at, ours);
}

#[test]
fn a_head_nobody_asked_for_is_held_at_once() {
    let mut f = Framing::new();
    assert_eq!(
        f.scan(hyper_error("400 Bad Request").as_bytes(), &log_of(&[])),
        0
    );
}

#[test]
fn http2_and_close_delimited_bodies_are_left_alone() {
    let mut f = Framing::new();
    let settings = b"\0\0\x06\x04\0\0\0\0\0\0\x03\0\0\0\x64";
    assert_eq!(f.scan(settings, &log_of(&[])), settings.len());
    assert!(f.is_opaque());
    let mut f = Framing::new();
    let close_delimited = b"HTTP/1.0 200 OK\r\n\r\nHTTP/1.1 400 Bad Request\r\n\r\n";
    assert_eq!(
        f.scan(close_delimited, &log_of(&[Kind::Other])),
        close_delimited.len()
    );
    assert!(f.is_opaque());
}

/// A writer that takes at most `max` bytes per call and records them.
struct Trickle {
    out: Vec<u8>,
    max: usize,
    vectored: bool,
}

impl AsyncWrite for Trickle {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = buf.len().min(self.max);
        self.out.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut n = 0;
        for b in bufs {
            let k = b.len().min(self.max - n);
            self.out.extend_from_slice(&b[..k]);
            n += k;
            if n == self.max {
                break;
            }
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.vectored
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn wrapper(max: usize, vectored: bool, kinds: &[Kind]) -> HttpErrors<Trickle> {
    let log = H1Log::default();
    log.lock().kinds.extend(kinds.iter().copied());
    HttpErrors::new(
        Trickle {
            out: Vec::new(),
            max,
            vectored,
        },
        log,
    )
}

#[tokio::test]
async fn the_wrapper_replaces_only_hypers_head_through_partial_writes() {
    let (bytes, ours, _) = pipeline();
    let kinds = [Kind::Other, Kind::Other, Kind::Head, Kind::Other];
    for max in [1, 3, 7, 64, 1 << 20] {
        let mut w = wrapper(max, false, &kinds);
        w.write_all(&bytes).await.unwrap();
        w.shutdown().await.unwrap();
        let out = &w.io.out;
        assert_eq!(&out[..ours], &bytes[..ours], "max {max}");
        assert_eq!(
            json_body(&out[ours..])["error"]["code"],
            "malformed_request"
        );
        assert!(w.log.lock().kinds.is_empty());
    }
}

#[tokio::test]
async fn vectored_writes_stop_before_hypers_head() {
    let (bytes, ours, _) = pipeline();
    let kinds = [Kind::Other, Kind::Other, Kind::Head, Kind::Other];
    for max in [5, 1 << 20] {
        let mut w = wrapper(max, true, &kinds);
        // Slices split at arbitrary points, as hyper's queued buffers are.
        let cuts = [0, 10, 50, ours - 2, ours + 4, bytes.len()];
        let mut at = 0;
        while at < bytes.len() {
            let slices: Vec<IoSlice<'_>> = cuts
                .windows(2)
                .filter(|w| w[1] > at)
                .map(|w| IoSlice::new(&bytes[w[0].max(at)..w[1]]))
                .collect();
            let n = w.write_vectored(&slices).await.unwrap();
            assert!(n > 0);
            at += n;
        }
        w.flush().await.unwrap();
        let out = &w.io.out;
        assert_eq!(&out[..ours], &bytes[..ours], "max {max}");
        assert_eq!(
            json_body(&out[ours..])["error"]["code"],
            "malformed_request"
        );
    }
}

#[tokio::test]
async fn our_own_empty_error_responses_are_untouched() {
    // An upstream 400 with an empty body, passed through: the service logged its request.
    let ours = hyper_error("400 Bad Request");
    let mut w = wrapper(1 << 20, false, &[Kind::Other]);
    w.write_all(ours.as_bytes()).await.unwrap();
    w.shutdown().await.unwrap();
    assert_eq!(w.io.out, ours.as_bytes());
}

#[tokio::test]
async fn an_unknown_head_from_hyper_goes_out_unchanged() {
    let head = "HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n";
    let mut w = wrapper(4, false, &[]);
    w.write_all(head.as_bytes()).await.unwrap();
    w.flush().await.unwrap();
    assert_eq!(w.io.out, head.as_bytes());
    // Half a head at close is let out too.
    let mut w = wrapper(1 << 20, false, &[]);
    w.write_all(b"HTTP/1.1 400 Bad").await.unwrap();
    w.shutdown().await.unwrap();
    assert_eq!(w.io.out, b"HTTP/1.1 400 Bad");
}

#[test]
fn long_uris_are_refused() {
    let ok = Request::get(format!("/v1/models?{}", "a".repeat(MAX_URI_BYTES - 20)))
        .body(())
        .unwrap();
    assert!(uri_too_long(&ok).is_none());
    let long = Request::get(format!("/v1/models?{}", "a".repeat(MAX_URI_BYTES)))
        .body(())
        .unwrap();
    let e = uri_too_long(&long).unwrap();
    assert_eq!(e.status(), http::StatusCode::URI_TOO_LONG);
}
