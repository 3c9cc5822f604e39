//! Relaying an upstream SSE stream to the client as it arrives, chunk by chunk, while
//! reading its usage and (when Sluice asked for it on the client's behalf) removing the
//! final usage-only chunk. Complete events go out in the same poll they arrive in; only an
//! incomplete trailing event waits for its next bytes. When the stream ends, fails or the
//! client goes away, the accounting callback runs exactly once.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

use crate::types::Usage;
use crate::usage::{EventUsage, from_event_data};

/// The body of every response Sluice sends.
pub type RespBody = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, BoxError>;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How a relayed stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamEnd {
    pub usage: Option<Usage>,
    /// The upstream body ended normally (not an error or a client disconnect).
    pub completed: bool,
}

type Finish = Box<dyn FnOnce(StreamEnd) + Send + Sync + 'static>;

pub struct MeteredSse<B> {
    inner: B,
    pending: BytesMut,
    strip_usage_chunk: bool,
    /// A Gemini `streamGenerateContent?alt=sse` stream: every chunk carries running
    /// `usageMetadata` totals, so the last one counts.
    gemini: bool,
    usage: Option<Usage>,
    finish: Option<Finish>,
}

impl<B> MeteredSse<B> {
    pub fn new(
        inner: B,
        strip_usage_chunk: bool,
        finish: impl FnOnce(StreamEnd) + Send + Sync + 'static,
    ) -> Self {
        MeteredSse {
            inner,
            pending: BytesMut::new(),
            strip_usage_chunk,
            gemini: false,
            usage: None,
            finish: Some(Box::new(finish)),
        }
    }

    /// A Gemini-native stream, relayed unchanged (there is no usage-only chunk to strip).
    pub fn gemini(inner: B, finish: impl FnOnce(StreamEnd) + Send + Sync + 'static) -> Self {
        let mut sse = MeteredSse::new(inner, false, finish);
        sse.gemini = true;
        sse
    }

    fn end(&mut self, completed: bool) {
        if let Some(f) = self.finish.take() {
            f(StreamEnd {
                usage: self.usage,
                completed,
            });
        }
    }

    /// Takes newly arrived bytes; returns what can be forwarded now.
    fn process(&mut self, data: Bytes) -> Bytes {
        let buf = if self.pending.is_empty() {
            data
        } else {
            self.pending.extend_from_slice(&data);
            self.pending.split().freeze()
        };
        let mut removed: Vec<std::ops::Range<usize>> = Vec::new();
        let mut start = 0;
        while let Some(end) = next_boundary(&buf, start) {
            self.inspect_event(&buf[start..end], start..end, &mut removed);
            start = end;
        }
        if start < buf.len() {
            self.pending.extend_from_slice(&buf[start..]);
        }
        if removed.is_empty() {
            return buf.slice(..start);
        }
        let mut out = BytesMut::with_capacity(start);
        let mut at = 0;
        for r in removed {
            out.extend_from_slice(&buf[at..r.start]);
            at = r.end;
        }
        out.extend_from_slice(&buf[at..start]);
        out.freeze()
    }

    fn inspect_event(
        &mut self,
        event: &[u8],
        span: std::ops::Range<usize>,
        removed: &mut Vec<std::ops::Range<usize>>,
    ) {
        if self.gemini {
            return self.inspect_gemini_event(event);
        }
        if crate::usage::usage_finder().find(event).is_none() {
            return;
        }
        for line in event.split(|&b| b == b'\n') {
            let Some(payload) = line.strip_prefix(b"data:") else {
                continue;
            };
            let payload = payload.strip_prefix(b" ").unwrap_or(payload);
            match from_event_data(payload.strip_suffix(b"\r").unwrap_or(payload)) {
                EventUsage::None => {}
                EventUsage::Within(u) => self.usage = Some(merge(self.usage, u)),
                EventUsage::UsageOnlyChunk(u) => {
                    self.usage = Some(merge(self.usage, u));
                    if self.strip_usage_chunk {
                        removed.push(span.clone());
                    }
                }
            }
        }
    }
}

impl<B> MeteredSse<B> {
    /// The latest `usageMetadata` is the answer's so far; a tier reported earlier is kept
    /// when a later chunk omits it.
    fn inspect_gemini_event(&mut self, event: &[u8]) {
        if gemini_usage_finder().find(event).is_none() {
            return;
        }
        for payload in data_lines(event) {
            if let Some(u) = crate::usage::from_gemini_json(payload) {
                let earlier = self.usage.and_then(|p| p.served_tier);
                self.usage = Some(Usage {
                    served_tier: u.served_tier.or(earlier),
                    ..u
                });
            }
        }
    }
}

/// The `data:` payloads of one event.
fn data_lines(event: &[u8]) -> impl Iterator<Item = &[u8]> {
    event.split(|&b| b == b'\n').filter_map(|line| {
        let payload = line.strip_prefix(b"data:")?;
        let payload = payload.strip_prefix(b" ").unwrap_or(payload);
        Some(payload.strip_suffix(b"\r").unwrap_or(payload))
    })
}

/// `usageMetadata` (and its snake_case spelling) both start so.
fn gemini_usage_finder() -> &'static memchr::memmem::Finder<'static> {
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"usage"));
    &FINDER
}

/// Combines usage reported in several events: Anthropic sends the input counts (and
/// `usage.service_tier`) in `message_start` and the output count in `message_delta`; each
/// count is the largest seen, the served tier the latest reported.
fn merge(prev: Option<Usage>, new: Usage) -> Usage {
    let Some(p) = prev else { return new };
    Usage {
        input_tokens: p.input_tokens.max(new.input_tokens),
        cached_input_tokens: p.cached_input_tokens.max(new.cached_input_tokens),
        cache_write_5m_tokens: p.cache_write_5m_tokens.max(new.cache_write_5m_tokens),
        cache_write_1h_tokens: p.cache_write_1h_tokens.max(new.cache_write_1h_tokens),
        output_tokens: p.output_tokens.max(new.output_tokens),
        served_tier: new.served_tier.or(p.served_tier),
    }
}

/// Index just past the next event terminator (`\n\n` or `\r\n\r\n`) at or after `from`.
pub(crate) fn next_boundary(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(p) = memchr::memchr(b'\n', &buf[i..]) {
        let p = i + p;
        match (buf.get(p + 1), buf.get(p + 2)) {
            (Some(b'\n'), _) => return Some(p + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(p + 3),
            _ => i = p + 1,
        }
    }
    None
}

impl<B> Body for MeteredSse<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let out = self.process(data);
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    Err(other) => return Poll::Ready(Some(Ok(other))),
                },
                Some(Err(e)) => {
                    self.end(false);
                    return Poll::Ready(Some(Err(e.into())));
                }
                None => {
                    // A stream cut mid-event still reaches the client as the provider sent it.
                    let rest = self.pending.split().freeze();
                    self.end(true);
                    return Poll::Ready((!rest.is_empty()).then(|| Ok(Frame::data(rest))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finish.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl<B> Drop for MeteredSse<B> {
    fn drop(&mut self) {
        // The client went away before the end: account for what was used so far.
        self.end(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};
    use std::sync::{Arc, Mutex};

    const CHUNK: &str = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n";
    const USAGE: &str = "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":1,\"total_tokens\":10}}\n\n";
    const DONE: &str = "data: [DONE]\n\n";

    async fn relay(
        parts: Vec<&'static str>,
        strip: bool,
    ) -> (String, Vec<usize>, Option<StreamEnd>) {
        let frames = parts.into_iter().map(|p| {
            Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(p.as_bytes())))
        });
        let inner = StreamBody::new(futures_util::stream::iter(frames));
        let seen = Arc::new(Mutex::new(None));
        let s2 = seen.clone();
        let mut body = MeteredSse::new(inner, strip, move |end| *s2.lock().unwrap() = Some(end));
        let mut out = String::new();
        let mut sizes = Vec::new();
        while let Some(f) = body.frame().await {
            let d = f.unwrap().into_data().unwrap();
            sizes.push(d.len());
            out.push_str(std::str::from_utf8(&d).unwrap());
        }
        drop(body);
        let end = *seen.lock().unwrap();
        (out, sizes, end)
    }

    #[tokio::test]
    async fn strips_only_the_usage_chunk_and_reads_usage() {
        let (out, _, end) = relay(vec![CHUNK, CHUNK, USAGE, DONE], true).await;
        assert_eq!(out, format!("{CHUNK}{CHUNK}{DONE}"));
        let end = end.unwrap();
        assert!(end.completed);
        assert_eq!(end.usage.unwrap().input_tokens, 9);
    }

    #[tokio::test]
    async fn passes_usage_through_when_the_client_asked() {
        let (out, _, end) = relay(vec![CHUNK, USAGE, DONE], false).await;
        assert_eq!(out, format!("{CHUNK}{USAGE}{DONE}"));
        assert_eq!(end.unwrap().usage.unwrap().output_tokens, 1);
    }

    #[tokio::test]
    async fn events_split_across_frames_are_reassembled() {
        let joined: &'static str = Box::leak(format!("{CHUNK}{USAGE}{DONE}").into_boxed_str());
        let (a, b) = joined.split_at(CHUNK.len() + 20);
        let (out, sizes, end) = relay(vec![a, b], true).await;
        assert_eq!(out, format!("{CHUNK}{DONE}"));
        assert_eq!(
            sizes[0],
            CHUNK.len(),
            "the complete first event is forwarded at once"
        );
        assert!(end.unwrap().usage.is_some());
    }

    #[tokio::test]
    async fn crlf_terminators_and_truncated_streams() {
        let crlf: &'static str = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\r\n\r\n";
        let (out, _, end) = relay(vec![CHUNK, crlf, "data: partial"], true).await;
        assert_eq!(out, format!("{CHUNK}data: partial"));
        assert_eq!(end.unwrap().usage.unwrap().input_tokens, 1);
    }

    #[tokio::test]
    async fn anthropic_usage_is_merged_across_events() {
        let start: &'static str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":14,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":4102,\"output_tokens\":1}}}\n\n";
        let delta: &'static str = "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":4}}\n\n";
        let (out, _, end) = relay(vec![start, delta], false).await;
        assert_eq!(out, format!("{start}{delta}"));
        let u = end.unwrap().usage.unwrap();
        assert_eq!(
            (u.input_tokens, u.cached_input_tokens, u.output_tokens),
            (14, 4102, 4)
        );
    }

    #[tokio::test]
    async fn the_served_tier_survives_the_merge() {
        let start: &'static str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":14,\"output_tokens\":1,\"service_tier\":\"priority\"}}}\n\n";
        let delta: &'static str = "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":4}}\n\n";
        let (_, _, end) = relay(vec![start, delta], false).await;
        let u = end.unwrap().usage.unwrap();
        assert_eq!(
            (u.output_tokens, u.served_tier),
            (4, Some(crate::types::ServedTier::Priority))
        );
        let fast: &'static str = "data: {\"id\":\"c\",\"service_tier\":\"fast\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":1,\"total_tokens\":10}}\n\n";
        let (out, _, end) = relay(vec![CHUNK, fast], true).await;
        assert_eq!(
            out, CHUNK,
            "the usage chunk Sluice asked for is still removed"
        );
        assert_eq!(
            end.unwrap().usage.unwrap().served_tier,
            Some(crate::types::ServedTier::Priority)
        );
    }

    async fn relay_gemini(parts: Vec<&'static str>) -> (String, Option<StreamEnd>) {
        let frames = parts.into_iter().map(|p| {
            Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(p.as_bytes())))
        });
        let inner = StreamBody::new(futures_util::stream::iter(frames));
        let seen = Arc::new(Mutex::new(None));
        let s2 = seen.clone();
        let body = MeteredSse::gemini(inner, move |end| *s2.lock().unwrap() = Some(end));
        let out = body.collect().await.unwrap().to_bytes();
        let end = *seen.lock().unwrap();
        (String::from_utf8(out.to_vec()).unwrap(), end)
    }

    const G1: &str = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"bill\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 2110,\"cachedContentTokenCount\": 2048,\"totalTokenCount\": 2110,\"serviceTier\": \"flex\"},\"modelVersion\": \"gemini-2.5-flash\"}\r\n\r\n";
    const G2: &str = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"ing\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 2110,\"cachedContentTokenCount\": 2048,\"candidatesTokenCount\": 2,\"thoughtsTokenCount\": 3,\"totalTokenCount\": 2115},\"modelVersion\": \"gemini-2.5-flash\"}\r\n\r\n";

    #[tokio::test]
    async fn gemini_streams_are_metered_from_the_last_usage_metadata() {
        let (out, end) = relay_gemini(vec![G1, G2]).await;
        assert_eq!(out, format!("{G1}{G2}"), "relayed byte for byte");
        let end = end.unwrap();
        assert!(end.completed);
        assert_eq!(
            end.usage.unwrap(),
            Usage {
                input_tokens: 62,
                cached_input_tokens: 2048,
                output_tokens: 5,
                served_tier: Some(crate::types::ServedTier::Flex),
                ..Usage::default()
            }
        );
        // Cut mid-way: the first chunk's running totals are what was used.
        let (half, _) = G2.split_at(40);
        let half: &'static str = Box::leak(half.to_owned().into_boxed_str());
        let (out, end) = relay_gemini(vec![G1, half]).await;
        assert_eq!(out, format!("{G1}{half}"));
        assert_eq!(end.unwrap().usage.unwrap().output_tokens, 0);
        // An OpenAI-shaped `usage` means nothing in a Gemini stream.
        let (_, end) = relay_gemini(vec![USAGE]).await;
        assert_eq!(end.unwrap().usage, None);
    }

    #[tokio::test]
    async fn dropping_early_still_accounts_once() {
        let seen = Arc::new(Mutex::new(0));
        let s2 = seen.clone();
        let inner = http_body_util::Full::new(Bytes::from_static(CHUNK.as_bytes()));
        let body = MeteredSse::new(inner, true, move |end| {
            assert!(!end.completed);
            *s2.lock().unwrap() += 1;
        });
        drop(body);
        assert_eq!(*seen.lock().unwrap(), 1);
    }
}
