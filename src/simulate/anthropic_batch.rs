//! Anthropic Message Batches (reference 2.4): create, retrieve, list, cancel, delete and
//! results, all in memory.
//!
//! Time model (as for OpenAI batches, evaluated on every read, `tokio::time::Instant`):
//! `in_progress` on `[0, T)` and `ended` at `T` (the turnaround). A cancel at `c` answers
//! `canceling` and ends the batch at `min(c + cancel_delay, T)`; if that is before `T`, the
//! first `floor(c / T × n)` requests (input order) ran and the rest are `canceled`. An
//! expiring batch (fault `expire`) ends at `T` with the first
//! `floor(expire_completed_fraction × n)` requests run and the rest `expired`.
//! `request_counts` are all `processing` until the batch has ended.
//!
//! The first read that finds a batch ended runs its requests, in input order, through the
//! Messages handler (same prompt cache, `usage.service_tier: "batch"`) and stores the
//! JSONL results, ordered by a hash of the custom_id. Requests with `stream: true` and the
//! custom_ids of the `line_errors` fault are `errored`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::anthropic::AnthError;
use super::anthropic_messages;
use super::batch_run::{Line, order_key};
use super::body::Reply;
use super::fields;
use super::files;
use super::{Meta, Simulator, unix_now};

/// Milliseconds from creation to `expires_at`.
const WINDOW_MS: u64 = 86_400_000;

/// A Message Batches route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchRoute<'a> {
    /// `GET /v1/messages/batches`
    List,
    /// `POST /v1/messages/batches`
    Create,
    /// `GET /v1/messages/batches/{id}`
    Get(&'a str),
    /// `POST /v1/messages/batches/{id}/cancel`
    Cancel(&'a str),
    /// `DELETE /v1/messages/batches/{id}`
    Delete(&'a str),
    /// `GET /v1/messages/batches/{id}/results`
    Results(&'a str),
}

/// Routes a path below `/v1/messages/batches`: `None` if it is not one, `Err(true)` for
/// a known path with the wrong method, `Err(false)` for an unknown path.
pub fn route<'a>(method: &Method, path: &'a str) -> Option<Result<BatchRoute<'a>, bool>> {
    let rest = path.strip_prefix("/v1/messages/batches")?;
    let routed = match rest.strip_prefix('/') {
        None if rest.is_empty() => match *method {
            Method::GET => Ok(BatchRoute::List),
            Method::POST => Ok(BatchRoute::Create),
            _ => Err(true),
        },
        None => return None,
        Some(id) => match id.split_once('/') {
            None if !id.is_empty() => match *method {
                Method::GET => Ok(BatchRoute::Get(id)),
                Method::DELETE => Ok(BatchRoute::Delete(id)),
                _ => Err(true),
            },
            Some((id, "cancel")) if !id.is_empty() => match *method {
                Method::POST => Ok(BatchRoute::Cancel(id)),
                _ => Err(true),
            },
            Some((id, "results")) if !id.is_empty() => match *method {
                Method::GET => Ok(BatchRoute::Results(id)),
                _ => Err(true),
            },
            _ => Err(false),
        },
    };
    Some(routed)
}

#[derive(Debug, Clone, Copy)]
struct Cancel {
    at: Duration,
    delay: Duration,
}

/// `request_counts`.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
struct Counts {
    processing: u64,
    succeeded: u64,
    errored: u64,
    canceled: u64,
    expired: u64,
}

#[derive(Debug)]
struct Outcome {
    results: Bytes,
    counts: Counts,
}

#[derive(Debug)]
struct MessageBatch {
    id: String,
    start: Instant,
    created_ms: u64,
    turnaround: Duration,
    expire: Option<f64>,
    requests: Vec<Line>,
    line_errors: HashSet<String>,
    cancel: Option<Cancel>,
    outcome: Option<Outcome>,
}

/// The evaluated state at one moment (offsets from creation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    status: &'static str,
    ended_at: Option<Duration>,
}

impl MessageBatch {
    fn state(&self, e: Duration) -> State {
        let t = self.turnaround;
        let end = self.cancel.map_or(t, |c| (c.at + c.delay).min(t));
        if e >= end {
            State {
                status: "ended",
                ended_at: Some(end),
            }
        } else if self.cancel.is_some() {
            State {
                status: "canceling",
                ended_at: None,
            }
        } else {
            State {
                status: "in_progress",
                ended_at: None,
            }
        }
    }

    /// How many requests (in input order) ran, and what the others are.
    fn plan(&self) -> (usize, &'static str) {
        let n = self.requests.len();
        let t = self.turnaround;
        let share = |f: f64| ((f.clamp(0.0, 1.0) * n as f64).floor() as usize).min(n);
        match (self.cancel, self.expire) {
            (Some(c), expire) if c.at + c.delay < t => {
                let progress = c.at.as_secs_f64() / t.as_secs_f64();
                (share(progress * expire.unwrap_or(1.0)), "canceled")
            }
            (_, Some(f)) => (share(f), "expired"),
            _ => (n, "canceled"),
        }
    }

    /// Runs the requests and stores the results, once, when the batch has ended.
    fn finalize(&mut self, sim: &Simulator, state: &State) {
        if state.ended_at.is_none() || self.outcome.is_some() {
            return;
        }
        let (done, not_run) = self.plan();
        let mut counts = Counts::default();
        let mut lines: Vec<(u64, Vec<u8>)> = Vec::with_capacity(self.requests.len());
        for (i, line) in self.requests.iter().enumerate() {
            let seq = sim.next_seq();
            let request_id = format!("req_sim{seq}");
            let result = if i >= done {
                json!({"type": not_run})
            } else if self.line_errors.contains(&line.custom_id) {
                json!({"type": "errored", "error": AnthError::api_error().envelope(&request_id)})
            } else {
                run(sim, &line.body, seq, &request_id)
            };
            match result["type"].as_str() {
                Some("succeeded") => counts.succeeded += 1,
                Some("errored") => counts.errored += 1,
                Some("expired") => counts.expired += 1,
                _ => counts.canceled += 1,
            }
            let rendered = json!({"custom_id": line.custom_id, "result": result});
            let Ok(mut bytes) = serde_json::to_vec(&rendered) else {
                continue;
            };
            bytes.push(b'\n');
            lines.push((order_key(&line.custom_id), bytes));
        }
        lines.sort_by_key(|(k, _)| *k);
        let results: Vec<u8> = lines.into_iter().flat_map(|(_, l)| l).collect();
        self.outcome = Some(Outcome {
            results: Bytes::from(results),
            counts,
        });
    }

    fn object(&self, state: &State, host: &str) -> Value {
        let at = |d: Duration| {
            let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            rfc3339(self.created_ms.saturating_add(ms))
        };
        let counts = match (&self.outcome, state.ended_at) {
            (Some(o), Some(_)) => o.counts,
            _ => Counts {
                processing: self.requests.len() as u64,
                ..Counts::default()
            },
        };
        let results_url = state
            .ended_at
            .map(|_| format!("http://{host}/v1/messages/batches/{}/results", self.id));
        json!({
            "id": self.id,
            "type": "message_batch",
            "processing_status": state.status,
            "request_counts": counts,
            "created_at": rfc3339(self.created_ms),
            "expires_at": rfc3339(self.created_ms.saturating_add(WINDOW_MS)),
            "ended_at": state.ended_at.map(at),
            "cancel_initiated_at": self.cancel.map(|c| at(c.at)),
            "archived_at": null,
            "results_url": results_url,
        })
    }

    /// The current state, with the batch finalized if it has ended.
    fn current(&mut self, sim: &Simulator) -> State {
        let state = self.state(sim.control.elapsed(self.start));
        self.finalize(sim, &state);
        state
    }
}

/// One request of a batch through the Messages handler.
fn run(sim: &Simulator, params: &Value, seq: u64, request_id: &str) -> Value {
    if params.get("stream").and_then(Value::as_bool) == Some(true) {
        let err = AnthError::invalid("stream: Streaming is not supported in Message Batches.");
        return json!({"type": "errored", "error": err.envelope(request_id)});
    }
    let meta = Meta {
        seq,
        created: unix_now(),
        downgrade: false,
    };
    match anthropic_messages::create(sim, params, &meta, "batch") {
        Ok((message, _)) => json!({"type": "succeeded", "message": message}),
        Err(err) => json!({"type": "errored", "error": err.envelope(request_id)}),
    }
}

/// RFC 3339 UTC with microseconds, e.g. `2026-01-01T00:00:00.000000Z`.
pub fn rfc3339(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let micros = (unix_ms % 1000) * 1000;
    let (y, m, d) = civil_from_days(i64::try_from(secs / 86_400).unwrap_or(0));
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// All Message Batches, keyed by creation order.
#[derive(Debug, Default)]
pub struct MessageBatchStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    batches: BTreeMap<u64, MessageBatch>,
    index: HashMap<String, u64>,
}

impl MessageBatchStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with<T>(
        &self,
        id: &str,
        f: impl FnOnce(&mut MessageBatch) -> Result<T, AnthError>,
    ) -> Result<T, AnthError> {
        let mut inner = self.lock();
        let Inner { batches, index } = &mut *inner;
        match index.get(id).and_then(|k| batches.get_mut(k)) {
            Some(b) => f(b),
            None => Err(AnthError::not_found(format!(
                "Message batch not found: {id}"
            ))),
        }
    }
}

/// Answers one Message Batches request; `host` builds `results_url`.
pub fn handle(
    sim: &Simulator,
    route: BatchRoute<'_>,
    query: Option<&str>,
    body: &[u8],
    seq: u64,
    host: &str,
) -> Result<Reply, AnthError> {
    let reply = |v: &Value| Reply::json(v).map_err(|e| AnthError::from_api(&e));
    match route {
        BatchRoute::Create => create(sim, body, seq, host),
        BatchRoute::Get(id) => sim
            .message_batches
            .with(id, |b| {
                let state = b.current(sim);
                reply(&b.object(&state, host))
            }),
        BatchRoute::Cancel(id) => sim.message_batches.with(id, |b| {
            let now = sim.control.elapsed(b.start);
            let state = b.current(sim);
            if state.ended_at.is_some() {
                return Err(AnthError::conflict(format!(
                    "Message batch {id} has already ended and cannot be canceled."
                )));
            }
            if b.cancel.is_none() {
                b.cancel = Some(Cancel {
                    at: now,
                    delay: sim.config.cancel_delay,
                });
            }
            // The cancel call itself always answers `canceling`.
            let canceling = State {
                status: "canceling",
                ended_at: None,
            };
            reply(&b.object(&canceling, host))
        }),
        BatchRoute::Results(id) => sim.message_batches.with(id, |b| {
            b.current(sim);
            match &b.outcome {
                Some(o) => Ok(Reply::Raw(o.results.clone())),
                None => Err(AnthError::conflict(format!(
                    "Message batch {id} is still processing; results are available once it has ended."
                ))),
            }
        }),
        BatchRoute::Delete(id) => delete(sim, id),
        BatchRoute::List => list(sim, query, host),
    }
}

fn delete(sim: &Simulator, id: &str) -> Result<Reply, AnthError> {
    let ended = sim
        .message_batches
        .with(id, |b| Ok(b.current(sim).ended_at.is_some()))?;
    if !ended {
        return Err(AnthError::conflict(format!(
            "Message batch {id} is still processing; cancel it and wait for it to end before deleting it."
        )));
    }
    let mut inner = sim.message_batches.lock();
    if let Some(k) = inner.index.remove(id) {
        inner.batches.remove(&k);
    }
    Reply::json(&json!({"id": id, "type": "message_batch_deleted"}))
        .map_err(|e| AnthError::from_api(&e))
}

fn list(sim: &Simulator, query: Option<&str>, host: &str) -> Result<Reply, AnthError> {
    let params = files::query_params(query);
    let limit = files::limit_param(&params, 1..=1000, 20).map_err(|e| AnthError::from_api(&e))?;
    let get = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let objects: Vec<Value> = {
        let mut inner = sim.message_batches.lock();
        inner
            .batches
            .values_mut()
            .rev()
            .map(|b| {
                let state = b.current(sim);
                b.object(&state, host)
            })
            .collect()
    };
    let position = |id: &str| objects.iter().position(|o| o["id"] == id);
    let (data, has_more) = match (get("after_id"), get("before_id")) {
        (Some(_), Some(_)) => {
            return Err(AnthError::invalid(
                "Only one of after_id and before_id may be given.",
            ));
        }
        (Some(after), None) => {
            let start = position(after).map_or(objects.len(), |p| p + 1);
            let rest = &objects[start..];
            (&rest[..limit.min(rest.len())], rest.len() > limit)
        }
        (None, Some(before)) => {
            let rest = &objects[..position(before).unwrap_or(0)];
            (
                &rest[rest.len().saturating_sub(limit)..],
                rest.len() > limit,
            )
        }
        (None, None) => (&objects[..limit.min(objects.len())], objects.len() > limit),
    };
    let id_of = |v: Option<&Value>| v.map(|o| o["id"].clone()).unwrap_or(Value::Null);
    Reply::json(&json!({
        "data": data,
        "has_more": has_more,
        "first_id": id_of(data.first()),
        "last_id": id_of(data.last()),
    }))
    .map_err(|e| AnthError::from_api(&e))
}

fn valid_custom_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn create(sim: &Simulator, body: &[u8], seq: u64, host: &str) -> Result<Reply, AnthError> {
    let value: Value = crate::strict_json::parse(body)
        .map_err(|e| AnthError::invalid(format!("There was an error parsing the body: {e}")))?;
    fields::check_anthropic(&value, fields::ANTHROPIC_BATCH_CREATE, "")?;
    let requests = match value.get("requests") {
        None => return Err(AnthError::invalid("requests: Field required")),
        Some(Value::Array(r)) => r,
        Some(_) => return Err(AnthError::invalid("requests: Input should be a valid list")),
    };
    let max = sim.config.anthropic_batch_max_requests;
    if requests.is_empty() || requests.len() > max {
        return Err(AnthError::invalid(format!(
            "requests: List should have between 1 and {max} items after validation, not {}",
            requests.len()
        )));
    }
    let mut seen = HashSet::with_capacity(requests.len());
    let mut lines = Vec::with_capacity(requests.len());
    for (i, r) in requests.iter().enumerate() {
        fields::check_anthropic(
            r,
            fields::ANTHROPIC_BATCH_REQUEST,
            &format!("requests.{i}."),
        )?;
        let Some(id) = r.get("custom_id").and_then(Value::as_str) else {
            return Err(AnthError::invalid(format!(
                "requests.{i}.custom_id: Field required"
            )));
        };
        if !valid_custom_id(id) {
            return Err(AnthError::invalid(format!(
                "requests.{i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
            )));
        }
        if !seen.insert(id) {
            return Err(AnthError::invalid(format!(
                "requests.{i}.custom_id: Duplicate custom_id '{id}'; custom_id values must be unique within a batch."
            )));
        }
        let Some(params) = r.get("params").filter(|p| p.is_object()) else {
            return Err(AnthError::invalid(format!(
                "requests.{i}.params: Input should be a valid dictionary"
            )));
        };
        let at = format!("requests.{i}.params.");
        fields::check_anthropic(params, fields::ANTHROPIC_MESSAGES, &at)?;
        lines.push(Line {
            custom_id: id.to_owned(),
            body: params.clone(),
        });
    }
    let assigned = sim
        .control
        .admit_messages(lines.iter().map(|l| l.custom_id.as_str()))
        .ok_or_else(|| AnthError {
            status: StatusCode::TOO_MANY_REQUESTS,
            kind: "rate_limit_error",
            message:
                "Number of batch requests waiting to be processed has exceeded your rate limit."
                    .into(),
        })?;
    let created_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let batch = MessageBatch {
        id: format!("msgbatch_sim{}{seq}", sim.tag),
        start: Instant::now(),
        created_ms,
        turnaround: assigned.turnaround.unwrap_or(sim.config.batch_turnaround),
        expire: assigned.expire,
        requests: lines,
        line_errors: assigned.line_errors,
        cancel: None,
        outcome: None,
    };
    // The creation answer is always `in_progress`, whatever the turnaround.
    let in_progress = State {
        status: "in_progress",
        ended_at: None,
    };
    let object = batch.object(&in_progress, host);
    let mut inner = sim.message_batches.lock();
    inner.index.insert(batch.id.clone(), seq);
    inner.batches.insert(seq, batch);
    Reply::json(&object).map_err(|e| AnthError::from_api(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(1_767_225_600_000), "2026-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(951_827_696_789), "2000-02-29T12:34:56.789000Z");
    }

    #[test]
    fn custom_id_pattern() {
        assert!(valid_custom_id("gw-01J9ZK3V6Q_0001"));
        assert!(!valid_custom_id(""));
        assert!(!valid_custom_id("a:b"));
        assert!(!valid_custom_id(&"x".repeat(65)));
    }
}
