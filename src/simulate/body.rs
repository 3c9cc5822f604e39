//! Response body of the simulator: either one buffered chunk or a sequence of
//! pre-rendered SSE frames released one at a time, optionally paced by a delay.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use serde::Serialize;
use tokio::time::{Instant, Sleep};

use super::error::ApiError;

/// Body type of every simulator response.
///
/// Streaming bodies yield each SSE event as its own frame, as soon as it is due,
/// sleeping `delay` between frames (never before the first one, never when zero).
#[derive(Debug)]
pub struct SimBody {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Full(Option<Bytes>),
    Frames {
        frames: std::vec::IntoIter<Bytes>,
        delay: Duration,
        sleep: Option<Pin<Box<Sleep>>>,
        waiting: bool,
    },
}

impl SimBody {
    /// A body made of one buffered chunk (`content-length` is exact).
    pub fn full(bytes: Bytes) -> Self {
        Self {
            kind: Kind::Full(Some(bytes)),
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        Self::full(Bytes::new())
    }

    /// A streamed body that yields `frames` one by one, `delay` apart.
    pub fn frames(frames: Vec<Bytes>, delay: Duration) -> Self {
        Self {
            kind: Kind::Frames {
                frames: frames.into_iter(),
                delay,
                sleep: None,
                waiting: false,
            },
        }
    }
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        match &mut this.kind {
            Kind::Full(slot) => Poll::Ready(
                slot.take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            Kind::Frames {
                frames,
                delay,
                sleep,
                waiting,
            } => {
                if *waiting {
                    if let Some(s) = sleep.as_mut() {
                        if s.as_mut().poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                    }
                    *waiting = false;
                }
                let Some(next) = frames.next() else {
                    return Poll::Ready(None);
                };
                if !delay.is_zero() && frames.len() > 0 {
                    let deadline = Instant::now() + *delay;
                    match sleep.as_mut() {
                        Some(s) => s.as_mut().reset(deadline),
                        None => *sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
                    }
                    *waiting = true;
                }
                Poll::Ready(Some(Ok(Frame::data(next))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(slot) => slot.as_ref().is_none_or(Bytes::is_empty),
            Kind::Frames { frames, .. } => frames.len() == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(slot) => SizeHint::with_exact(slot.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Frames { .. } => SizeHint::default(),
        }
    }
}

/// Compact JSON of `value`.
pub fn json_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, ApiError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| ApiError::internal(format!("failed to serialize response: {e}")))
}

/// One chat-style SSE event: `data: <json>\n\n`.
pub fn sse_data<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, ApiError> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"data: ");
    serde_json::to_writer(&mut out, value)
        .map_err(|e| ApiError::internal(format!("failed to serialize chunk: {e}")))?;
    out.extend_from_slice(b"\n\n");
    Ok(Bytes::from(out))
}

/// One named SSE event: `event: <name>\ndata: <json>\n\n`.
pub fn sse_event<T: Serialize + ?Sized>(name: &str, value: &T) -> Result<Bytes, ApiError> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    serde_json::to_writer(&mut out, value)
        .map_err(|e| ApiError::internal(format!("failed to serialize event: {e}")))?;
    out.extend_from_slice(b"\n\n");
    Ok(Bytes::from(out))
}

/// The terminating event of chat and legacy-completion streams.
pub const SSE_DONE: &[u8] = b"data: [DONE]\n\n";

/// What an endpoint produced, before headers are attached.
#[derive(Debug)]
pub enum Reply {
    /// `application/json` body.
    Json(Bytes),
    /// `text/event-stream` body made of these events.
    Sse(Vec<Bytes>),
    /// `application/octet-stream` body (file content).
    Raw(Bytes),
    /// A body of its own media type (speech audio, a plain-text transcription).
    Typed(Bytes, &'static str),
}

impl Reply {
    /// A compact JSON reply of `value`.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, ApiError> {
        json_bytes(value).map(Self::Json)
    }
}
