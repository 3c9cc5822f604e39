//! Relaying an Anthropic Messages SSE stream to an OpenAI-SDK client as chat-completion
//! chunks, event by event as they arrive, reading the usage for accounting.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

use crate::providers::anthropic::translate::StreamTranslator;
use crate::relay::{BoxError, StreamEnd, next_boundary};

type Finish = Box<dyn FnOnce(StreamEnd) + Send + Sync + 'static>;

pub struct TranslatedSse<B> {
    inner: B,
    pending: BytesMut,
    translator: StreamTranslator,
    finish: Option<Finish>,
    done: bool,
}

impl<B> TranslatedSse<B> {
    pub fn new(
        inner: B,
        translator: StreamTranslator,
        finish: impl FnOnce(StreamEnd) + Send + Sync + 'static,
    ) -> Self {
        TranslatedSse {
            inner,
            pending: BytesMut::new(),
            translator,
            finish: Some(Box::new(finish)),
            done: false,
        }
    }

    fn end(&mut self, completed: bool) {
        if let Some(f) = self.finish.take() {
            let served_tier = self.translator.served_tier();
            let usage = self
                .translator
                .usage()
                .and_then(|u| {
                    crate::usage::from_json(
                        serde_json::json!({ "usage": u }).to_string().as_bytes(),
                    )
                })
                .map(|u| crate::types::Usage { served_tier, ..u });
            f(StreamEnd { usage, completed });
        }
    }

    /// Translates every complete event in `pending`; returns the OpenAI bytes to send.
    fn drain(&mut self) -> Bytes {
        let mut out = BytesMut::new();
        while let Some(end) = next_boundary(&self.pending, 0) {
            let raw = self.pending.split_to(end);
            let mut name = "";
            let mut data: Vec<u8> = Vec::new();
            for line in raw[..].split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if let Some(v) = line.strip_prefix(b"event:") {
                    name = std::str::from_utf8(v).map(str::trim).unwrap_or("");
                } else if let Some(v) = line.strip_prefix(b"data:") {
                    if !data.is_empty() {
                        data.push(b'\n');
                    }
                    data.extend_from_slice(v.strip_prefix(b" ").unwrap_or(v));
                }
            }
            if data.is_empty() {
                continue;
            }
            match self.translator.event(name, &data) {
                Ok(chunks) => chunks.iter().for_each(|c| out.extend_from_slice(c)),
                Err(e) => {
                    tracing::warn!(error = %e, "untranslatable Anthropic stream event skipped")
                }
            }
        }
        out.freeze()
    }
}

impl<B> Body for TranslatedSse<B>
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
            if self.done {
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.pending.extend_from_slice(&data);
                        let out = self.drain();
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                }
                Some(Err(e)) => {
                    self.end(false);
                    return Poll::Ready(Some(Err(e.into())));
                }
                None => {
                    // The OpenAI stream always ends with its usage chunk (if asked) and [DONE].
                    self.pending.extend_from_slice(b"\n\n");
                    let mut out = BytesMut::from(&self.drain()[..]);
                    for c in self.translator.finish() {
                        out.extend_from_slice(&c);
                    }
                    self.end(true);
                    self.done = true;
                    return Poll::Ready((!out.is_empty()).then(|| Ok(Frame::data(out.freeze()))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl<B> Drop for TranslatedSse<B> {
    fn drop(&mut self) {
        self.end(false);
    }
}
