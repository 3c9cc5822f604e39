//! Delivery of deferred answers to their callers: held connections (JSON, JSON committed
//! early with whitespace keep-alives, or SSE with keep-alives), `Prefer: respond-async`
//! (202 + `Location`), and the job endpoints, which serve a job only to the client that
//! created it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;

use crate::account::Accountant;
use crate::batch::engine::{Engine, WaitError};
use crate::error::GatewayError;
use crate::forward::{X_SLUICE_BASELINE, X_SLUICE_COST, X_SLUICE_TIER};
use crate::relay::BoxError;
use crate::relay::RespBody;
use crate::store::{Job, JobState, StoreError};
use crate::synth;

pub const X_SLUICE_JOB_ID: http::HeaderName = http::HeaderName::from_static("x-sluice-job-id");

impl From<StoreError> for GatewayError {
    fn from(e: StoreError) -> Self {
        GatewayError::NotReady {
            reason: e.to_string(),
        }
    }
}

fn job_json(job: &Job) -> serde_json::Value {
    let status = match job.state {
        JobState::Queued => "queued",
        JobState::Batched => "in_progress",
        JobState::Fallback => "in_progress",
        JobState::Done => "completed",
    };
    serde_json::json!({
        "id": job.id,
        "object": "sluice.job",
        "status": status,
        "tier": job.tier.as_str(),
        "answered_by": job.result.as_ref().map(|r| r.answered_by.as_str()),
        "model": job.model,
        "route": job.route,
        "created_at": job.created_at_ms / 1000,
        "deadline_at": job.deadline_ms / 1000,
        "completed_at": job.result.as_ref().map(|r| r.completed_at_ms / 1000),
        "result_url": format!("/sluice/v1/jobs/{}/result", job.id),
    })
}

fn json_response(status: StatusCode, body: Bytes) -> Response<RespBody> {
    let mut r = Response::new(
        Full::new(body)
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn set_job_headers(h: &mut http::HeaderMap, job: &Job, accountant: &Accountant) {
    if let Ok(v) = HeaderValue::from_str(&job.id) {
        h.insert(X_SLUICE_JOB_ID, v);
    }
    let tier = job.result.as_ref().map_or(job.tier, |r| r.answered_by);
    h.insert(X_SLUICE_TIER, HeaderValue::from_static(tier.as_str()));
    if let Some(r) = &job.result {
        if let Some(p) = r
            .usage
            .and_then(|u| accountant.quote(&job.model, r.answered_by, &u))
        {
            h.insert(X_SLUICE_COST, crate::forward::usd(p.cost_usd));
            h.insert(X_SLUICE_BASELINE, crate::forward::usd(p.baseline_usd));
        }
    }
}

/// `202 Accepted` with `Location` and the job.
pub fn accepted(job: &Job) -> Response<RespBody> {
    let mut r = json_response(StatusCode::ACCEPTED, Bytes::from(job_json(job).to_string()));
    if let Ok(v) = HeaderValue::from_str(&format!("/sluice/v1/jobs/{}", job.id)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&job.id) {
        r.headers_mut().insert(X_SLUICE_JOB_ID, v);
    }
    r.headers_mut()
        .insert(X_SLUICE_TIER, HeaderValue::from_static(job.tier.as_str()));
    r
}

/// The finished answer exactly as a synchronous call would have returned it.
pub fn finished(job: &Job, accountant: &Accountant) -> Response<RespBody> {
    let Some(result) = &job.result else {
        return accepted(job);
    };
    let status = StatusCode::from_u16(result.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut r = json_response(status, result.body.clone());
    set_job_headers(r.headers_mut(), job, accountant);
    r
}

/// Holds the connection until the job is answered.
pub async fn hold(
    engine: &Engine,
    accountant: &Accountant,
    id: &str,
) -> Result<Response<RespBody>, GatewayError> {
    let job = engine.wait_done(id).await?;
    Ok(finished(&job, accountant))
}

/// How a held JSON answer waits.
#[derive(Clone, Copy, Debug)]
pub enum HoldFor {
    /// Until the job is answered.
    Answer,
    /// `Prefer: wait=N`: at most N, then the job (202) to poll.
    AtMost(Duration),
    /// A caller that gives up after a silent while: see [`hold_committing`].
    Committing { after: Duration, beat: Duration },
}

/// A held JSON request, as little as its wait needs: the request path returns it instead
/// of awaiting it, so the request's own state (head, body, plan: a ~4.5 KiB future and the
/// buffers) is freed before a hold that may last hours. What a hold costs then is this,
/// its task and its connection.
pub struct Held {
    engine: Arc<Engine>,
    accountant: Arc<Accountant>,
    job: Job,
    how: HoldFor,
}

impl Held {
    pub fn new(engine: Arc<Engine>, accountant: Arc<Accountant>, job: Job, how: HoldFor) -> Held {
        Held {
            engine,
            accountant,
            job,
            how,
        }
    }

    pub async fn answer(self) -> Result<Response<RespBody>, GatewayError> {
        let Held {
            engine,
            accountant,
            job,
            how,
        } = self;
        match how {
            HoldFor::Answer => hold(&engine, &accountant, &job.id).await,
            HoldFor::AtMost(wait) => {
                match tokio::time::timeout(wait, hold(&engine, &accountant, &job.id)).await {
                    Ok(answer) => answer,
                    Err(_) => match engine.store().job(&job.id).await {
                        Ok(now) => Ok(accepted(&now.unwrap_or(job))),
                        Err(e) => Err(e.into()),
                    },
                }
            }
            HoldFor::Committing { after, beat } => {
                hold_committing(&engine, &accountant, &job, after, beat).await
            }
        }
    }
}

/// JSON-insignificant whitespace (RFC 8259 §2): what a committed JSON hold sends while
/// it waits.
pub const JSON_KEEP_ALIVE: &[u8] = b" ";

/// A job's answer, awaited by a task that outlives the request handler.
type Waiting = Pin<Box<dyn Future<Output = Result<Job, WaitError>> + Send>>;

fn waiting(engine: &Arc<Engine>, id: &str) -> Waiting {
    let (engine, id) = (engine.clone(), id.to_owned());
    Box::pin(async move { engine.wait_done(&id).await })
}

/// Holds a request whose caller gives up after `timeout` without a byte (the SDKs'
/// read timeout): the answer as [`hold`] gives it if it comes within `commit_after`;
/// otherwise `200` and the job's headers at once, a space every `beat`, then the body.
/// The cost headers are not known yet then (`GET /sluice/v1/jobs/{id}` has them).
///
/// An error answered after the commit cannot change the status: the body is cut instead
/// (no complete JSON), a transport error the SDKs never take for an answer; the job keeps
/// the error, so the SDK's retry, which attaches to the job, gets its real status and body.
pub async fn hold_committing(
    engine: &Arc<Engine>,
    accountant: &Accountant,
    job: &Job,
    commit_after: Duration,
    beat: Duration,
) -> Result<Response<RespBody>, GatewayError> {
    let mut wait = waiting(engine, &job.id);
    if let Ok(done) = tokio::time::timeout(commit_after, &mut wait).await {
        return Ok(finished(&done?, accountant));
    }
    let body = held_body(engine, wait, JSON_KEEP_ALIVE, beat, |done| match done {
        Ok(job) => match job.result {
            Some(r) if (200..300).contains(&r.status) => vec![Ok(r.body)],
            Some(r) => vec![Err(late_error(&job.id, r.status))],
            None => Vec::new(),
        },
        Err(e) => vec![Err(e.into())],
    });
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    set_job_headers(r.headers_mut(), job, accountant);
    Ok(r)
}

/// Why a committed hold's body was cut.
fn late_error(job: &str, status: u16) -> BoxError {
    format!("job {job} was answered {status} after 200 was sent: the body is cut").into()
}

/// Holds a streaming request: `: keep-alive` comments (blank lines on Gemini-native
/// streams) every `keep_alive` while waiting, then the answer as the stream its API would
/// have sent (chat-completion chunks ending in `data: [DONE]`, Messages or Responses
/// events, one Gemini chunk).
pub fn hold_stream(
    engine: Arc<Engine>,
    accountant: Arc<Accountant>,
    job: Job,
    include_usage: bool,
    keep_alive: Duration,
) -> Response<RespBody> {
    let gemini = job.endpoint.api() == crate::types::Api::Gemini;
    let keep_alive_bytes = if gemini {
        synth::GEMINI_KEEP_ALIVE
    } else {
        synth::KEEP_ALIVE
    };
    let wait = waiting(&engine, &job.id);
    let body = held_body(&engine, wait, keep_alive_bytes, keep_alive, move |done| {
        let events = match done {
            Ok(job) => match &job.result {
                Some(r) if job.endpoint == crate::types::Endpoint::Messages => {
                    synth::anthropic_events(r.status, &r.body)
                }
                Some(r) if job.endpoint == crate::types::Endpoint::Responses => {
                    synth::response_events(r.status, &r.body)
                }
                Some(r) if gemini => synth::gemini_events(r.status, &r.body),
                Some(r) => synth::chunks(r.status, &r.body, include_usage),
                None => Vec::new(),
            },
            Err(e) if gemini => synth::gemini_events(503, &GatewayError::from(e).to_gemini_json()),
            Err(e) => synth::chunks(503, &GatewayError::from(e).to_openai_json(), false),
        };
        events.into_iter().map(Ok).collect()
    });
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    set_job_headers(r.headers_mut(), &job, &accountant);
    r
}

/// A body that sends `keep_alive` every `beat` until the job is answered, then what
/// `finish` makes of the answer (an `Err` part cuts the body there). The wait runs on the
/// engine's tasks; it ends when the client goes away (the job is answered anyway).
fn held_body(
    engine: &Engine,
    mut wait: Waiting,
    keep_alive: &'static [u8],
    beat: Duration,
    finish: impl FnOnce(Result<Job, WaitError>) -> Vec<Result<Bytes, BoxError>> + Send + 'static,
) -> RespBody {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(8);
    engine.tasks().spawn(async move {
        let mut tick = tokio::time::interval(beat);
        tick.tick().await;
        let done = loop {
            tokio::select! {
                r = &mut wait => break r,
                _ = tick.tick() => {
                    if tx.send(Ok(Frame::data(Bytes::from_static(keep_alive)))).await.is_err() {
                        return;
                    }
                }
            }
        };
        for part in finish(done) {
            if tx.send(part.map(Frame::data)).await.is_err() {
                return;
            }
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    StreamBody::new(stream).boxed_unsync()
}

/// `GET /sluice/v1/jobs/{id}` and `.../result`, for the job's own client only.
pub async fn job_endpoint(
    engine: &Engine,
    accountant: &Accountant,
    client: &str,
    id: &str,
    result: bool,
) -> Result<Response<RespBody>, GatewayError> {
    let job = engine.store().job(id).await?;
    // Another client's job is indistinguishable from a missing one.
    let job = job
        .filter(|j| j.client == client)
        .ok_or_else(|| GatewayError::JobNotFound { id: id.to_owned() })?;
    if !result {
        let mut r = json_response(StatusCode::OK, Bytes::from(job_json(&job).to_string()));
        set_job_headers(r.headers_mut(), &job, accountant);
        return Ok(r);
    }
    if job.result.is_none() {
        let mut r = accepted(&job);
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return Ok(r);
    }
    Ok(finished(&job, accountant))
}
