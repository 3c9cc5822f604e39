//! Batch API (reference 1.8): create, retrieve, cancel, list.
//!
//! Time model: a batch's status is a pure function of the time since creation `e`, its
//! turnaround `T`, its plan (fixed at creation: run, fail validation, or expire) and an
//! optional cancellation, evaluated on every read — no background task. With
//! `v = T/10` and `f = T - T/10`: `validating` on `[0, v)`, then `failed` at `v`, or
//! `in_progress` on `[v, f)`, `finalizing` on `[f, T)` and `completed` at `T` (an expiring
//! batch stays `in_progress` until `expired` at `T`). A cancel at `c` keeps the states
//! entered before `c`, is `cancelling` on `[c, c + cancel_delay)` and `cancelled` after.
//! Every timestamp is the moment its state was entered. The time is read from
//! `tokio::time::Instant`, so tests with paused time control it.
//!
//! The first read that finds a batch terminal runs its lines and stores the result files
//! (exactly once). Lines "finished" before an expiry or cancellation are the first
//! `floor(fraction × n)` in input order, where the fraction is the in-progress share of
//! the elapsed time (times `expire_completed_fraction` for expiring batches).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use super::batch_run::{
    self, BatchError, Counts, ENDPOINTS, Executed, Limits, Line, NotRun, Usage,
};
use super::body::Reply;
use super::error::ApiError;
use super::files::{self, FileObject};
use super::{Simulator, unix_now};

/// Seconds from creation to `expires_at`.
const WINDOW_SECS: u64 = 86_400;

/// How a batch ends (fixed at creation).
#[derive(Debug, Clone, PartialEq)]
enum Plan {
    Run,
    Fail(Vec<BatchError>),
    Expire(f64),
}

#[derive(Debug, Clone, Copy)]
struct Cancel {
    at: Duration,
    delay: Duration,
}

#[derive(Debug)]
struct Outcome {
    output_file_id: Option<String>,
    error_file_id: Option<String>,
    counts: Counts,
    usage: Usage,
}

#[derive(Debug)]
struct Batch {
    id: String,
    endpoint: String,
    input_file_id: String,
    metadata: Option<Value>,
    output_ttl: u64,
    model: Option<String>,
    start: Instant,
    created_ms: u64,
    turnaround: Duration,
    plan: Plan,
    lines: Vec<Line>,
    line_errors: std::collections::HashSet<String>,
    cancel: Option<Cancel>,
    outcome: Option<Outcome>,
}

/// The evaluated state at one moment; times are offsets from creation.
#[derive(Debug, Default, Clone, PartialEq)]
struct State {
    status: &'static str,
    terminal: bool,
    in_progress_at: Option<Duration>,
    finalizing_at: Option<Duration>,
    completed_at: Option<Duration>,
    failed_at: Option<Duration>,
    expired_at: Option<Duration>,
    cancelling_at: Option<Duration>,
    cancelled_at: Option<Duration>,
}

impl Batch {
    fn phases(&self) -> (Duration, Duration, Duration) {
        let t = self.turnaround;
        (t / 10, t - t / 10, t)
    }

    /// The plan's timeline at `x`, ignoring cancellation.
    fn timeline(&self, x: Duration) -> State {
        let (v, f, t) = self.phases();
        let mut s = State {
            status: "validating",
            ..State::default()
        };
        if x < v {
            return s;
        }
        if matches!(self.plan, Plan::Fail(_)) {
            s.status = "failed";
            s.terminal = true;
            s.failed_at = Some(v);
            return s;
        }
        s.status = "in_progress";
        s.in_progress_at = Some(v);
        match self.plan {
            Plan::Expire(_) if x >= t => {
                s.status = "expired";
                s.terminal = true;
                s.expired_at = Some(t);
            }
            Plan::Run if x >= f => {
                s.status = "finalizing";
                s.finalizing_at = Some(f);
                if x >= t {
                    s.status = "completed";
                    s.terminal = true;
                    s.completed_at = Some(t);
                }
            }
            _ => {}
        }
        s
    }

    /// The state at `e` since creation.
    fn state(&self, e: Duration) -> State {
        let Some(c) = self.cancel else {
            return self.timeline(e);
        };
        let mut s = self.timeline(e.min(c.at));
        s.cancelling_at = Some(c.at);
        s.status = "cancelling";
        if e >= c.at + c.delay {
            s.status = "cancelled";
            s.terminal = true;
            s.cancelled_at = Some(c.at + c.delay);
        }
        s
    }

    /// Share of lines finished at `x` (before any cancellation).
    fn progress(&self, x: Duration) -> f64 {
        let (v, f, t) = self.phases();
        let (end, scale) = match self.plan {
            Plan::Fail(_) => return 0.0,
            Plan::Run => (f, 1.0),
            Plan::Expire(fraction) => (t, fraction),
        };
        if x < v {
            0.0
        } else if x >= end {
            scale
        } else {
            scale * (x - v).as_secs_f64() / (end - v).as_secs_f64()
        }
    }

    fn unix(&self, offset: Duration) -> u64 {
        let ms = u64::try_from(offset.as_millis()).unwrap_or(u64::MAX);
        self.created_ms.saturating_add(ms) / 1000
    }

    /// Runs the lines and stores the result files, once, when the batch is terminal.
    fn finalize(&mut self, sim: &Simulator, state: &State) {
        if !state.terminal || self.outcome.is_some() {
            return;
        }
        let n = self.lines.len();
        let (done, not_run) = match (&self.plan, self.cancel) {
            (Plan::Fail(_), _) => (0, None),
            (_, Some(c)) => (share(self.progress(c.at), n), Some(NotRun::Cancelled)),
            (Plan::Expire(f), None) => (share(*f, n), Some(NotRun::Expired)),
            (Plan::Run, None) => (n, Some(NotRun::Cancelled)),
        };
        let executed = match not_run {
            Some(not_run) => batch_run::execute(
                sim,
                &self.endpoint,
                &self.lines,
                done,
                &self.line_errors,
                not_run,
            ),
            None => Executed::default(),
        };
        let store = |content: Vec<u8>, kind: &str| -> Option<String> {
            if content.is_empty() {
                return None;
            }
            let seq = sim.next_seq();
            let created_at = unix_now();
            let meta = FileObject {
                id: format!("file-sim{}{seq}", sim.tag),
                object: "file",
                bytes: content.len() as u64,
                created_at,
                expires_at: Some(created_at + self.output_ttl),
                filename: format!("{}_{kind}.jsonl", self.id),
                purpose: "batch_output".to_owned(),
                status: "processed",
                status_details: None,
            };
            Some(sim.files.insert(seq, meta, Bytes::from(content)).id)
        };
        self.outcome = Some(Outcome {
            output_file_id: store(executed.output, "output"),
            error_file_id: store(executed.errors, "error"),
            counts: executed.counts,
            usage: executed.usage,
        });
    }

    fn object(&self, state: &State) -> BatchObject<'_> {
        let at = |d: Option<Duration>| d.map(|d| self.unix(d));
        let counts = match (&self.outcome, state.status) {
            (Some(o), _) => o.counts,
            (None, "validating" | "failed") => Counts::default(),
            (None, _) => Counts {
                total: self.lines.len() as u64,
                ..Counts::default()
            },
        };
        let errors = match (&self.plan, state.status) {
            (Plan::Fail(data), "failed") => Some(ErrorList {
                object: "list",
                data,
            }),
            _ => None,
        };
        let created_at = self.unix(Duration::ZERO);
        BatchObject {
            id: &self.id,
            object: "batch",
            endpoint: &self.endpoint,
            model: self.model.as_deref(),
            errors,
            input_file_id: &self.input_file_id,
            completion_window: "24h",
            status: state.status,
            output_file_id: self
                .outcome
                .as_ref()
                .and_then(|o| o.output_file_id.as_deref()),
            error_file_id: self
                .outcome
                .as_ref()
                .and_then(|o| o.error_file_id.as_deref()),
            created_at,
            in_progress_at: at(state.in_progress_at),
            expires_at: created_at + WINDOW_SECS,
            finalizing_at: at(state.finalizing_at),
            completed_at: at(state.completed_at),
            failed_at: at(state.failed_at),
            expired_at: at(state.expired_at),
            cancelling_at: at(state.cancelling_at),
            cancelled_at: at(state.cancelled_at),
            request_counts: counts,
            usage: self.outcome.as_ref().map(|o| o.usage).unwrap_or_default(),
            metadata: self.metadata.as_ref(),
        }
    }
}

fn share(fraction: f64, n: usize) -> usize {
    ((fraction.clamp(0.0, 1.0) * n as f64).floor() as usize).min(n)
}

#[derive(Serialize)]
struct ErrorList<'a> {
    object: &'static str,
    data: &'a [BatchError],
}

#[derive(Serialize)]
struct BatchObject<'a> {
    id: &'a str,
    object: &'static str,
    endpoint: &'a str,
    model: Option<&'a str>,
    errors: Option<ErrorList<'a>>,
    input_file_id: &'a str,
    completion_window: &'static str,
    status: &'static str,
    output_file_id: Option<&'a str>,
    error_file_id: Option<&'a str>,
    created_at: u64,
    in_progress_at: Option<u64>,
    expires_at: u64,
    finalizing_at: Option<u64>,
    completed_at: Option<u64>,
    failed_at: Option<u64>,
    expired_at: Option<u64>,
    cancelling_at: Option<u64>,
    cancelled_at: Option<u64>,
    request_counts: Counts,
    usage: Usage,
    metadata: Option<&'a Value>,
}

/// All batches, in creation order.
#[derive(Debug, Default)]
pub struct BatchStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    batches: Vec<Batch>,
    index: HashMap<String, usize>,
}

/// A Batch API route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchRoute<'a> {
    /// `GET /v1/batches`
    List,
    /// `POST /v1/batches`
    Create,
    /// `GET /v1/batches/{id}`
    Get(&'a str),
    /// `POST /v1/batches/{id}/cancel`
    Cancel(&'a str),
}

/// Routes a path below `/v1/batches`, or `None` if it is not one.
pub fn route<'a>(method: &Method, path: &'a str) -> Option<Result<BatchRoute<'a>, ApiError>> {
    let rest = path.strip_prefix("/v1/batches")?;
    let (routed, allowed) = match rest.strip_prefix('/') {
        None if rest.is_empty() => match *method {
            Method::GET => (BatchRoute::List, true),
            _ => (BatchRoute::Create, *method == Method::POST),
        },
        None => return None,
        Some(id) => match id.split_once('/') {
            None if !id.is_empty() => (BatchRoute::Get(id), *method == Method::GET),
            Some((id, "cancel")) if !id.is_empty() => {
                (BatchRoute::Cancel(id), *method == Method::POST)
            }
            _ => return Some(Err(ApiError::not_found(method, path))),
        },
    };
    Some(if allowed {
        Ok(routed)
    } else {
        Err(ApiError::method_not_allowed(method, path))
    })
}

/// Answers one Batch API request.
pub fn handle(
    sim: &Simulator,
    route: BatchRoute<'_>,
    query: Option<&str>,
    body: &[u8],
    seq: u64,
) -> Result<Reply, ApiError> {
    match route {
        BatchRoute::Create => create(sim, body, seq),
        BatchRoute::Get(id) => sim.batches.with(id, |b| b.view(sim, None)),
        BatchRoute::Cancel(id) => sim
            .batches
            .with(id, |b| b.view(sim, Some(sim.config.cancel_delay))),
        BatchRoute::List => list(sim, query),
    }
}

impl Batch {
    /// Evaluates (and finalizes) the batch, applying a cancel request first if given.
    fn view(&mut self, sim: &Simulator, cancel: Option<Duration>) -> Result<Reply, ApiError> {
        let now = sim.control.elapsed(self.start);
        let mut state = self.state(now);
        if let Some(delay) = cancel {
            if state.terminal && self.cancel.is_none() {
                self.finalize(sim, &state);
                return Err(ApiError::conflict(format!(
                    "Cannot cancel a batch with status '{}'.",
                    state.status
                )));
            }
            if self.cancel.is_none() {
                self.cancel = Some(Cancel { at: now, delay });
                // The cancel call itself always answers `cancelling`.
                state = State {
                    status: "cancelling",
                    terminal: false,
                    cancelled_at: None,
                    ..self.state(now)
                };
            }
        }
        self.finalize(sim, &state);
        Reply::json(&self.object(&state))
    }
}

impl BatchStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with<T>(
        &self,
        id: &str,
        f: impl FnOnce(&mut Batch) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut inner = self.lock();
        let Inner { batches, index } = &mut *inner;
        match index.get(id).and_then(|&i| batches.get_mut(i)) {
            Some(b) => f(b),
            None => Err(ApiError::no_such(
                format!("No batch found with id '{id}'."),
                "batch_id",
            )),
        }
    }
}

fn list(sim: &Simulator, query: Option<&str>) -> Result<Reply, ApiError> {
    let params = files::query_params(query);
    let limit = files::limit_param(&params, 1..=100, 20)?;
    let after = params
        .iter()
        .find(|(k, _)| k == "after")
        .map(|(_, v)| v.as_str());
    let mut inner = sim.batches.lock();
    let mut objects = Vec::with_capacity(inner.batches.len());
    for b in inner.batches.iter_mut().rev() {
        let state = b.state(sim.control.elapsed(b.start));
        b.finalize(sim, &state);
        objects.push(
            serde_json::to_value(b.object(&state))
                .map_err(|e| ApiError::internal(e.to_string()))?,
        );
    }
    files::page(&objects, |v| v["id"].as_str().unwrap_or(""), after, limit)
}

#[derive(Deserialize)]
struct CreateRequest {
    input_file_id: Option<String>,
    endpoint: Option<String>,
    completion_window: Option<String>,
    metadata: Option<Value>,
    output_expires_after: Option<Value>,
}

fn create(sim: &Simulator, body: &[u8], seq: u64) -> Result<Reply, ApiError> {
    let req: CreateRequest = serde_json::from_slice(body).map_err(|e| ApiError::from_json(&e))?;
    let input_file_id = req
        .input_file_id
        .ok_or_else(|| ApiError::missing("input_file_id"))?;
    let endpoint = req.endpoint.ok_or_else(|| ApiError::missing("endpoint"))?;
    if !ENDPOINTS.contains(&endpoint.as_str()) {
        return Err(ApiError::invalid(
            format!(
                "Invalid value for 'endpoint': '{endpoint}'. The simulator runs batches for '/v1/responses', '/v1/chat/completions', '/v1/embeddings' and '/v1/completions'."
            ),
            Some("endpoint"),
            Some("invalid_value"),
        ));
    }
    match req.completion_window.as_deref() {
        None => return Err(ApiError::missing("completion_window")),
        Some("24h") => {}
        Some(other) => {
            return Err(ApiError::invalid(
                format!(
                    "Invalid value for 'completion_window': '{other}'. Supported values are: '24h'."
                ),
                Some("completion_window"),
                Some("invalid_value"),
            ));
        }
    }
    let metadata = batch_run::check_metadata(req.metadata)?;
    let output_ttl = batch_run::check_output_expiry(req.output_expires_after.as_ref())?;

    let limits = Limits {
        max_requests: sim.config.batch_max_requests,
        max_bytes: sim.config.batch_max_file_bytes,
    };
    let parsed = match sim.files.get(&input_file_id) {
        None => batch_run::Parsed {
            errors: vec![BatchError::file(
                "file_not_found",
                format!("Input file '{input_file_id}' not found."),
                Some("input_file_id"),
            )],
            ..batch_run::Parsed::default()
        },
        Some((meta, _)) if meta.purpose != "batch" => batch_run::Parsed {
            errors: vec![BatchError::file(
                "invalid_file_purpose",
                format!(
                    "Input file '{input_file_id}' has purpose '{}'; batches need purpose 'batch'.",
                    meta.purpose
                ),
                Some("input_file_id"),
            )],
            ..batch_run::Parsed::default()
        },
        Some((_, content)) => batch_run::parse_input(&content, &endpoint, limits),
    };
    let valid = parsed.errors.is_empty();
    let model_name = parsed
        .model
        .clone()
        .unwrap_or_else(|| "the model".to_owned());
    let assigned = sim
        .control
        .admit(parsed.custom_ids.iter().map(String::as_str), valid)
        .ok_or_else(|| ApiError::enqueued_limit(&model_name))?;
    let plan = if !valid {
        Plan::Fail(parsed.errors)
    } else if assigned.fail_validation {
        Plan::Fail(vec![BatchError {
            code: "token_limit_exceeded",
            message: format!(
                "Enqueued token limit reached for {model_name} in organization org-sluice-sim. Limit: 2,000,000 enqueued tokens. Please try again once some in_progress batches have been completed."
            ),
            param: None,
            line: Some(1),
        }])
    } else if let Some(f) = assigned.expire {
        Plan::Expire(f)
    } else {
        Plan::Run
    };
    let created_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let batch = Batch {
        id: format!("batch_sim{}{seq}", sim.tag),
        endpoint,
        input_file_id,
        metadata,
        output_ttl,
        model: parsed.model,
        start: Instant::now(),
        created_ms,
        turnaround: assigned.turnaround.unwrap_or(sim.config.batch_turnaround),
        plan,
        lines: parsed.lines,
        line_errors: assigned.line_errors,
        cancel: None,
        outcome: None,
    };
    // The creation answer is always `validating`, whatever the turnaround.
    let validating = State {
        status: "validating",
        ..State::default()
    };
    let reply = Reply::json(&batch.object(&validating))?;
    let mut inner = sim.batches.lock();
    let i = inner.batches.len();
    inner.index.insert(batch.id.clone(), i);
    inner.batches.push(batch);
    Ok(reply)
}

#[cfg(test)]
#[path = "tests_timeline.rs"]
mod tests;
