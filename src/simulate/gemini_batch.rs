//! Gemini API Batch Mode (reference 3.4), in memory: `POST models/{model}:batchGenerateContent`
//! (inline requests or an uploaded JSONL file), `GET batches/{id}`,
//! `GET batches?pageSize=&pageToken=`, `POST batches/{id}:cancel`, `DELETE batches/{id}`.
//!
//! Every answer but cancel and delete (`{}`) is an Operation `{name, metadata, done?,
//! response | error}` with the `GenerateContentBatch` under `metadata` (`@type`, `name`,
//! `model`, `displayName`, `inputConfig` for file input, `createTime`, `updateTime`,
//! `endTime` once terminal, `batchStats` with int64 strings and zeros omitted, `state`,
//! `priority` as a string when not 0). States are `BATCH_STATE_*`, as on the wire, or the
//! SDK's `JOB_STATE_*` with [`super::gemini::GeminiConfig::job_state_names`] (clients must
//! accept both).
//! `done: true` appears only once terminal. `BATCH_STATE_SUCCEEDED` carries the output in
//! both `metadata.output` and `response`: inline batches
//! `inlinedResponses.inlinedResponses[]` = `{response | error, metadata}` in input order,
//! with each request's `metadata` echoed; file batches `responsesFile: files/batch-<id>`, a
//! generated JSONL file of `{"key", "response" | "error"}` lines in input order.
//! Per-request errors are `google.rpc.Status` with gRPC codes.
//!
//! Time model (as `batch.rs`: a pure function of the time since creation, read from
//! `tokio::time::Instant` on every request, no background task), with `T` the turnaround
//! ([`super::gemini::GeminiConfig::batch_turnaround`] or the `turnaround_ms` fault) and
//! `E` the expiry ([`super::gemini::GeminiConfig::batch_expiry`], "48 h"):
//! `PENDING` on `[0, T/10)`, `RUNNING` on `[T/10, T)`, `SUCCEEDED` at `T` if `T < E`;
//! a batch not done by `E` is `EXPIRED` at `E` with no output. A batch planned to fail is
//! `FAILED` at `T/10`; so is one whose input file expires before `T/10` (the input is read
//! when it starts running). A cancel at `c` makes the batch `CANCELLED` at
//! `c + cancel_delay` ([`super::SimConfig::cancel_delay`]) unless it ends first; until
//! then it keeps its state. The create answer is always `PENDING`. The first read that
//! finds a batch `SUCCEEDED` runs its requests (once) through `generateContent` (same
//! implicit cache).
//!
//! Forcing states (`POST /sim/batch-faults`, shared with the other batch APIs, see
//! `faults.rs`): `create_429` → the next creates answer 429 `RESOURCE_EXHAUSTED`;
//! `fail_validation` → the next batches end `FAILED` (`error.code` 13); `expire` → the next
//! batches never finish and end `EXPIRED` at `E`; `line_errors` → the requests with these
//! keys (`metadata.key` inline, `key` in files) fail with code 13; `turnaround_ms` → `T`.
//! `PENDING` / `RUNNING` are reached by time; `CANCELLED` by `:cancel`. Created batches
//! count in `/sim/batches/stats` (`created`, `lines_by_custom_id` by key).
//!
//! Create checks: `displayName` is required; `inputConfig` needs exactly one of `fileName`
//! and `requests.requests`; an inline create body over
//! [`super::gemini::GeminiConfig::batch_inline_max_bytes`] (20 MB) answers 400; an inline
//! request that does not parse (unknown name, wrong type) fails the create with 400, one
//! that parses but is invalid becomes a per-request error (code 3), as does every bad line
//! of an input file; a missing input file answers 404. Creating a batch while
//! [`super::gemini::GeminiConfig::batch_max_concurrent`] batches are unfinished, or past
//! [`super::gemini::GeminiConfig::batch_enqueued_tokens`] prompt tokens of unfinished
//! batches of the same model, answers 429 `RESOURCE_EXHAUSTED`. Creation never
//! deduplicates: the same body twice makes two batches.
//!
//! UNCONFIRMED, decided strictly: a cancelled batch exposes no partial results and has
//! `error {code: 1}`; an expired one `done: true` and `error {code: 4}`; a failed one
//! `error {code: 13 | 3}`; cancelling a terminal batch answers 400 `FAILED_PRECONDITION`;
//! `delete` removes the batch from get and list at once but an unfinished one keeps
//! counting against the concurrency and token budgets until it would have ended (cancel
//! first, then delete); `service_tier` inside a batch request is a per-request error;
//! inline `inputConfig` is not echoed; list is newest first, `pageSize` defaults to 10 and
//! is capped at 100, `filter` answers 400; a finished batch reports only `requestCount`
//! unless it succeeded.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Response};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::Simulator;
use super::anthropic_batch::rfc3339;
use super::body::SimBody;
use super::error::splitmix;
use super::files::query_params;
use super::gemini::{GemError, json_response};
use super::gemini_content::{
    self, Fields, generate, get, int, object, parse_body, parse_request, string,
};
use super::gemini_files::{page, page_params, unix_ms};

const BATCH_TYPE: &str =
    "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatch";
const OUTPUT_TYPE: &str =
    "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatchOutput";

const BATCH: Fields = &[
    ("displayName", "display_name"),
    ("inputConfig", "input_config"),
    ("model", "model"),
    ("priority", "priority"),
    ("webhookConfig", "webhook_config"),
];

const INPUT_CONFIG: Fields = &[("fileName", "file_name"), ("requests", "requests")];

const INLINED_REQUEST: Fields = &[("metadata", "metadata"), ("request", "request")];

/// A Batch Mode route below `batches`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchRoute<'a> {
    /// `GET batches`
    List,
    /// `GET batches/{id}`
    Get(&'a str),
    /// `DELETE batches/{id}`
    Delete(&'a str),
    /// `POST batches/{id}:cancel`
    Cancel(&'a str),
}

/// Routes `rest` (the path after the version): `None` if it is not a batches path,
/// `Some(None)` for a batches path with the wrong method or shape.
pub fn route<'a>(method: &Method, rest: &'a str) -> Option<Option<BatchRoute<'a>>> {
    if rest == "batches" {
        return Some((*method == Method::GET).then_some(BatchRoute::List));
    }
    let id = rest.strip_prefix("batches/")?;
    if id.is_empty() || id.contains('/') {
        return Some(None);
    }
    Some(match (method, id.split_once(':')) {
        (&Method::POST, Some((id, "cancel"))) if !id.is_empty() => Some(BatchRoute::Cancel(id)),
        (_, Some(_)) => None,
        (&Method::GET, None) => Some(BatchRoute::Get(id)),
        (&Method::DELETE, None) => Some(BatchRoute::Delete(id)),
        _ => None,
    })
}

/// A batch's state on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    Expired,
}

impl Phase {
    /// The `BATCH_STATE_*` name the wire carries.
    fn wire(self) -> &'static str {
        match self {
            Phase::Pending => "BATCH_STATE_PENDING",
            Phase::Running => "BATCH_STATE_RUNNING",
            Phase::Succeeded => "BATCH_STATE_SUCCEEDED",
            Phase::Failed => "BATCH_STATE_FAILED",
            Phase::Cancelled => "BATCH_STATE_CANCELLED",
            Phase::Expired => "BATCH_STATE_EXPIRED",
        }
    }

    /// The `JOB_STATE_*` name of the SDKs and docs.
    fn job(self) -> &'static str {
        match self {
            Phase::Pending => "JOB_STATE_PENDING",
            Phase::Running => "JOB_STATE_RUNNING",
            Phase::Succeeded => "JOB_STATE_SUCCEEDED",
            Phase::Failed => "JOB_STATE_FAILED",
            Phase::Cancelled => "JOB_STATE_CANCELLED",
            Phase::Expired => "JOB_STATE_EXPIRED",
        }
    }

    fn terminal(self) -> bool {
        !matches!(self, Phase::Pending | Phase::Running)
    }
}

/// The state at one moment: the phase and when it was entered (offset from creation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct State {
    pub phase: Phase,
    pub since: Duration,
}

/// How a batch ends (fixed at creation).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Plan {
    Run,
    /// `FAILED` with this `google.rpc.Status`.
    Fail(Value),
    /// Never finishes: `EXPIRED` at the expiry.
    Expire,
}

/// One request of a batch.
#[derive(Debug, Clone)]
pub(super) struct Item {
    pub key: Option<String>,
    pub metadata: Option<Value>,
    /// The `GenerateContentRequest`, or the status of a request that could not be read.
    pub request: Result<Value, Value>,
}

#[derive(Debug)]
struct Outcome {
    output: Value,
    succeeded: u64,
    failed: u64,
}

#[derive(Debug)]
pub(super) struct Batch {
    pub seq: u64,
    pub name: String,
    pub model: String,
    pub display_name: String,
    pub priority: i64,
    pub input_file: Option<String>,
    pub items: Vec<Item>,
    pub tokens: u64,
    pub start: Instant,
    pub created_ms: u64,
    pub turnaround: Duration,
    pub expiry: Duration,
    /// When the input file expires (offset from creation).
    pub input_expires: Option<Duration>,
    pub plan: Plan,
    pub line_errors: HashSet<String>,
    /// When a requested cancellation takes effect.
    pub cancel_at: Option<Duration>,
    pub deleted: bool,
    /// Report `JOB_STATE_*` instead of `BATCH_STATE_*`.
    pub job_state_names: bool,
    outcome: Option<Outcome>,
}

fn input_expired_status() -> Value {
    json!({"code": 9, "message": "The batch's input file expired before the batch started running."})
}

impl Batch {
    fn running_at(&self) -> Duration {
        self.turnaround / 10
    }

    /// How and when the batch ends without a cancellation.
    fn end(&self) -> (Phase, Duration) {
        let r = self.running_at();
        match self.plan {
            Plan::Fail(_) => (Phase::Failed, r),
            _ if self.input_expires.is_some_and(|e| e <= r) => (Phase::Failed, r),
            Plan::Run if self.turnaround < self.expiry => (Phase::Succeeded, self.turnaround),
            Plan::Run | Plan::Expire => (Phase::Expired, self.expiry),
        }
    }

    /// The state at `e` since creation.
    pub(super) fn state(&self, e: Duration) -> State {
        let (mut phase, mut end) = self.end();
        if let Some(c) = self.cancel_at.filter(|c| *c < end) {
            phase = Phase::Cancelled;
            end = c;
        }
        if e >= end {
            State { phase, since: end }
        } else if e < self.running_at() {
            State {
                phase: Phase::Pending,
                since: Duration::ZERO,
            }
        } else {
            State {
                phase: Phase::Running,
                since: self.running_at(),
            }
        }
    }

    /// The state now, with the requests run if the batch has just succeeded.
    fn current(&mut self, sim: &Simulator) -> State {
        let state = self.state(self.start.elapsed());
        self.finalize(sim, state);
        state
    }

    /// Runs the requests and stores the output, once, when the batch has succeeded.
    fn finalize(&mut self, sim: &Simulator, state: State) {
        if state.phase != Phase::Succeeded || self.outcome.is_some() {
            return;
        }
        let (mut succeeded, mut failed) = (0, 0);
        let results: Vec<Result<Value, Value>> = self
            .items
            .iter()
            .map(|item| {
                let faulted = item
                    .key
                    .as_ref()
                    .is_some_and(|k| self.line_errors.contains(k));
                let result = if faulted {
                    Err(GemError::internal().rpc_status())
                } else {
                    match &item.request {
                        Err(status) => Err(status.clone()),
                        Ok(req) => run(sim, &self.model, req),
                    }
                };
                if result.is_ok() {
                    succeeded += 1;
                } else {
                    failed += 1;
                }
                result
            })
            .collect();
        let output = match &self.input_file {
            Some(_) => {
                let mut jsonl = Vec::new();
                for (item, result) in self.items.iter().zip(results) {
                    let mut line = Map::new();
                    if let Some(k) = &item.key {
                        line.insert("key".to_owned(), json!(k));
                    }
                    match result {
                        Ok(r) => line.insert("response".to_owned(), r),
                        Err(e) => line.insert("error".to_owned(), e),
                    };
                    jsonl.extend_from_slice(&serde_json::to_vec(&line).unwrap_or_default());
                    jsonl.push(b'\n');
                }
                let id = self.name.strip_prefix("batches/").unwrap_or(&self.name);
                let name = format!("files/batch-{id}");
                sim.gemini.files.insert_generated(
                    sim.next_seq(),
                    name.clone(),
                    "application/jsonl",
                    Bytes::from(jsonl),
                );
                json!({ "responsesFile": name })
            }
            None => {
                let list: Vec<Value> = self
                    .items
                    .iter()
                    .zip(results)
                    .map(|(item, result)| {
                        let mut entry = match result {
                            Ok(r) => json!({ "response": r }),
                            Err(e) => json!({ "error": e }),
                        };
                        if let Some(m) = &item.metadata {
                            entry["metadata"] = m.clone();
                        }
                        entry
                    })
                    .collect();
                json!({"inlinedResponses": {"inlinedResponses": list}})
            }
        };
        self.outcome = Some(Outcome {
            output,
            succeeded,
            failed,
        });
    }

    fn state_name(&self, phase: Phase) -> &'static str {
        if self.job_state_names {
            phase.job()
        } else {
            phase.wire()
        }
    }

    /// The Operation for `state`.
    pub(super) fn operation(&self, state: State) -> Value {
        let at = |d: Duration| {
            let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            rfc3339(self.created_ms.saturating_add(ms))
        };
        let n = self.items.len() as u64;
        let mut stats = Map::new();
        let mut count = |k: &str, v: u64| {
            if v > 0 {
                stats.insert(k.to_owned(), json!(v.to_string()));
            }
        };
        count("requestCount", n);
        match (state.phase, &self.outcome) {
            (Phase::Succeeded, Some(o)) => {
                count("successfulRequestCount", o.succeeded);
                count("failedRequestCount", o.failed);
            }
            (Phase::Pending | Phase::Running, _) => count("pendingRequestCount", n),
            _ => {}
        }
        let mut meta = json!({
            "@type": BATCH_TYPE,
            "name": self.name,
            "model": format!("models/{}", self.model),
            "displayName": self.display_name,
            "createTime": at(Duration::ZERO),
            "updateTime": at(state.since),
            "batchStats": stats,
            "state": self.state_name(state.phase),
        });
        if let Some(f) = &self.input_file {
            meta["inputConfig"] = json!({ "fileName": f });
        }
        if self.priority != 0 {
            meta["priority"] = json!(self.priority.to_string());
        }
        if state.phase.terminal() {
            meta["endTime"] = json!(at(state.since));
        }
        let mut op = json!({"name": self.name});
        match state.phase {
            Phase::Pending | Phase::Running => {}
            Phase::Succeeded => {
                let output = self
                    .outcome
                    .as_ref()
                    .map_or_else(|| json!({}), |o| o.output.clone());
                let mut response = json!({ "@type": OUTPUT_TYPE });
                if let (Some(r), Value::Object(o)) = (response.as_object_mut(), &output) {
                    r.extend(o.clone());
                }
                meta["output"] = output;
                op["done"] = json!(true);
                op["response"] = response;
            }
            Phase::Failed => {
                op["done"] = json!(true);
                op["error"] = match &self.plan {
                    Plan::Fail(status) => status.clone(),
                    _ => input_expired_status(),
                };
            }
            Phase::Cancelled => {
                op["done"] = json!(true);
                op["error"] = json!({"code": 1, "message": "The batch was cancelled."});
            }
            Phase::Expired => {
                op["done"] = json!(true);
                op["error"] = json!({"code": 4, "message": "The batch expired: it was pending or running for more than 48 hours, and has no results."});
            }
        }
        op["metadata"] = meta;
        op
    }
}

/// One batch request through `generateContent`.
fn run(sim: &Simulator, model: &str, request: &Value) -> Result<Value, Value> {
    let parsed = parse_request(request, "").map_err(|e| e.rpc_status())?;
    if parsed.tier.is_some() {
        return Err(
            GemError::invalid("service_tier is not supported in Batch Mode requests.").rpc_status(),
        );
    }
    generate(sim, model, &parsed, sim.next_seq())
        .map(|g| g.response(None))
        .map_err(|e| e.rpc_status())
}

/// All batches, by name.
#[derive(Debug, Default)]
pub struct BatchStore {
    inner: Mutex<HashMap<String, Batch>>,
}

impl BatchStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Batch>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with<T>(
        &self,
        name: &str,
        f: impl FnOnce(&mut Batch) -> Result<T, GemError>,
    ) -> Result<T, GemError> {
        let mut inner = self.lock();
        match inner.get_mut(name).filter(|b| !b.deleted) {
            Some(b) => f(b),
            None => Err(GemError::not_found(format!("Batch {name} not found."))),
        }
    }
}

/// Answers one request below `batches`.
pub fn handle(
    sim: &Simulator,
    route: BatchRoute<'_>,
    query: Option<&str>,
) -> Result<Response<SimBody>, GemError> {
    let store = &sim.gemini.batches;
    match route {
        BatchRoute::Get(id) => store.with(&format!("batches/{id}"), |b| {
            let state = b.current(sim);
            Ok(json_response(&b.operation(state)))
        }),
        BatchRoute::Cancel(id) => store.with(&format!("batches/{id}"), |b| {
            let now = b.start.elapsed();
            let state = b.current(sim);
            if state.phase.terminal() {
                return Err(GemError::failed_precondition(format!(
                    "Batch {} is already in state {} and cannot be cancelled.",
                    b.name,
                    b.state_name(state.phase)
                )));
            }
            if b.cancel_at.is_none() {
                b.cancel_at = Some(now + sim.config.cancel_delay);
            }
            Ok(json_response(&json!({})))
        }),
        BatchRoute::Delete(id) => store.with(&format!("batches/{id}"), |b| {
            b.deleted = true;
            Ok(json_response(&json!({})))
        }),
        BatchRoute::List => {
            let params = query_params(query);
            if params.iter().any(|(k, _)| k == "filter") {
                return Err(GemError::invalid(
                    "The simulator does not support 'filter' when listing batches.",
                ));
            }
            let (size, after) = page_params(query)?;
            let mut inner = store.lock();
            let items: Vec<(u64, Value)> = inner
                .values_mut()
                .filter(|b| !b.deleted)
                .map(|b| {
                    let state = b.current(sim);
                    (b.seq, b.operation(state))
                })
                .collect();
            drop(inner);
            let (page, next) = page(items, size, after);
            let mut out = json!({});
            if !page.is_empty() {
                out["operations"] = Value::Array(page);
            }
            if let Some(t) = next {
                out["nextPageToken"] = json!(t);
            }
            Ok(json_response(&out))
        }
    }
}

/// `batches/<36 lower-case alphanumerics>`, unique per simulator (the middle part is a
/// bijection of `seq`).
fn batch_name(salt: u64, seq: u64) -> String {
    let a = splitmix(salt ^ seq.rotate_left(17));
    let b = splitmix(seq);
    let c = splitmix(salt.wrapping_add(seq)) & 0xFFFF;
    format!("batches/{a:016x}{b:016x}{c:04x}")
}

fn status(err: &GemError) -> Value {
    err.rpc_status()
}

/// The requests of an inline batch.
fn inline_items(requests: &Value) -> Result<Vec<Item>, GemError> {
    let at = "batch.input_config.requests";
    let wrapper = object(requests, at, &[("requests", "requests")])?;
    let list = match get(wrapper, ("requests", "requests")) {
        None => &[][..],
        Some(v) => v
            .as_array()
            .map(Vec::as_slice)
            .ok_or_else(|| GemError::invalid_value(&format!("{at}.requests"), "repeated", v))?,
    };
    let mut items = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        let at = format!("{at}.requests[{i}]");
        let map = object(entry, &at, INLINED_REQUEST)?;
        let metadata = get(map, ("metadata", "metadata")).cloned();
        if let Some(m) = metadata.as_ref().filter(|m| !m.is_object()) {
            return Err(GemError::invalid_value(
                &format!("{at}.metadata"),
                "type.googleapis.com/google.protobuf.Struct",
                m,
            ));
        }
        let key = metadata
            .as_ref()
            .and_then(|m| m.get("key"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let request = match get(map, ("request", "request")) {
            None => Err(status(&GemError::invalid(format!(
                "* BatchGenerateContentRequest.{at}.request: request is required\n"
            )))),
            Some(r) => match parse_request(r, &format!("{at}.request")) {
                Ok(_) => Ok(r.clone()),
                Err(e) if e.parse => return Err(e),
                Err(e) => Err(status(&e)),
            },
        };
        items.push(Item {
            key,
            metadata,
            request,
        });
    }
    Ok(items)
}

/// The requests of an input file: one `{"key", "request"}` object per non-blank line.
fn file_items(content: &[u8]) -> Vec<Item> {
    let mut items = Vec::new();
    for (i, raw) in content.split(|b| *b == b'\n').enumerate() {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let bad = |key: Option<String>, message: String| Item {
            key,
            metadata: None,
            request: Err(status(&GemError::invalid(message))),
        };
        let value = match crate::strict_json::parse(line) {
            Ok(v) => v,
            Err(e) => {
                items.push(bad(None, format!("Line {}: invalid JSON: {e}", i + 1)));
                continue;
            }
        };
        let Some(map) = value.as_object() else {
            items.push(bad(
                None,
                format!("Line {}: expected a JSON object.", i + 1),
            ));
            continue;
        };
        let key = map.get("key").and_then(Value::as_str).map(str::to_owned);
        if let Some(unknown) = map.keys().find(|k| *k != "key" && *k != "request") {
            items.push(bad(
                key,
                format!(
                    "Line {}: Unknown name \"{unknown}\": Cannot find field.",
                    i + 1
                ),
            ));
            continue;
        }
        let request = match map.get("request").filter(|r| !r.is_null()) {
            None => Err(status(&GemError::invalid(format!(
                "Line {}: request is required.",
                i + 1
            )))),
            Some(r) => match parse_request(r, "request") {
                Ok(_) => Ok(r.clone()),
                Err(e) => Err(status(&e)),
            },
        };
        items.push(Item {
            key,
            metadata: None,
            request,
        });
    }
    items
}

/// `POST models/{model}:batchGenerateContent`.
pub fn create(
    sim: &Simulator,
    model: &str,
    body: &[u8],
    seq: u64,
) -> Result<Response<SimBody>, GemError> {
    let config = &sim.config.gemini;
    let model = model.strip_prefix("models/").unwrap_or(model);
    let value = parse_body(body)?;
    let top = object(&value, "", &[("batch", "batch")])?;
    let batch = get(top, ("batch", "batch")).ok_or_else(|| {
        GemError::invalid("* BatchGenerateContentRequest.batch: batch is required\n")
    })?;
    let b = object(batch, "batch", BATCH)?;
    let display_name = match get(b, ("displayName", "display_name")) {
        Some(v) => string(v, "batch.display_name")?,
        None => "",
    };
    if display_name.is_empty() {
        return Err(GemError::invalid(
            "* BatchGenerateContentRequest.batch.display_name: display_name is required\n",
        ));
    }
    if let Some(m) = get(b, ("model", "model")) {
        string(m, "batch.model")?;
    }
    let priority = match get(b, ("priority", "priority")) {
        Some(v) => int(v, "batch.priority", "TYPE_INT64")?,
        None => 0,
    };
    let input = get(b, ("inputConfig", "input_config")).ok_or_else(|| {
        GemError::invalid(
            "* BatchGenerateContentRequest.batch.input_config: input_config is required\n",
        )
    })?;
    let input = object(input, "batch.input_config", INPUT_CONFIG)?;
    let (input_file, items, input_expires) = match (
        get(input, ("fileName", "file_name")),
        get(input, ("requests", "requests")),
    ) {
        (Some(_), Some(_)) => {
            return Err(GemError::unparsable(
                "Invalid JSON payload received. Oneof field 'source' is already set. Cannot set 'requests'",
                Some("batch.input_config"),
            ));
        }
        (None, None) => {
            return Err(GemError::invalid(
                "* BatchGenerateContentRequest.batch.input_config.source: one of file_name or requests must be set\n",
            ));
        }
        (None, Some(requests)) => {
            let limit = config.batch_inline_max_bytes;
            if body.len() > limit {
                return Err(GemError::invalid(format!(
                    "Request payload size exceeds the limit: {limit} bytes."
                )));
            }
            (None, inline_items(requests)?, None)
        }
        (Some(f), None) => {
            let raw = string(f, "batch.input_config.file_name")?;
            let name = if raw.starts_with("files/") {
                raw.to_owned()
            } else {
                format!("files/{raw}")
            };
            let (content, left) = sim.gemini.files.content(&name).ok_or_else(|| {
                GemError::not_found(format!("File {name} not found (or it expired)."))
            })?;
            (Some(name), file_items(&content), Some(left))
        }
    };
    if items.is_empty() {
        return Err(GemError::invalid(
            "* BatchGenerateContentRequest.batch.input_config: the batch has no requests\n",
        ));
    }
    let tokens: u64 = items
        .iter()
        .filter_map(|i| i.request.as_ref().ok())
        .filter_map(|r| parse_request(r, "").ok())
        .map(|r| gemini_content::prompt_tokens(&r))
        .sum();

    let mut store = sim.gemini.batches.lock();
    // Finished batches that were deleted no longer count anywhere.
    store.retain(|_, b| !(b.deleted && b.state(b.start.elapsed()).phase.terminal()));
    let (mut active, mut enqueued) = (0usize, 0u64);
    for other in store.values() {
        if !other.state(other.start.elapsed()).phase.terminal() {
            active += 1;
            if other.model == model {
                enqueued += other.tokens;
            }
        }
    }
    if active >= config.batch_max_concurrent {
        return Err(GemError::batch_quota(
            format!(
                "Too many concurrent batch jobs: {active} are pending or running; the limit is {}.",
                config.batch_max_concurrent
            ),
            "BatchConcurrentRequestsPerProject",
        ));
    }
    let budget = config.batch_enqueued_tokens;
    if enqueued + tokens > budget {
        return Err(GemError::batch_quota(
            format!(
                "Batch enqueued tokens limit exceeded for models/{model}: {enqueued} enqueued + {tokens} requested > {budget}."
            ),
            "BatchEnqueuedTokensPerModelPerTier",
        ));
    }
    let assigned = sim
        .control
        .admit(items.iter().filter_map(|i| i.key.as_deref()), true)
        .ok_or_else(|| {
            GemError::batch_quota(
                "Resource has been exhausted (e.g. check quota).".to_owned(),
                "BatchCreateRequestsPerProject",
            )
        })?;
    let plan = if assigned.fail_validation {
        Plan::Fail(json!({"code": 13, "message": "The batch job failed (simulated fault)."}))
    } else if assigned.expire.is_some() {
        Plan::Expire
    } else {
        Plan::Run
    };
    let batch = Batch {
        seq,
        name: batch_name(sim.gemini.salt, seq),
        model: model.to_owned(),
        display_name: display_name.to_owned(),
        priority,
        input_file,
        items,
        tokens,
        start: Instant::now(),
        created_ms: unix_ms(),
        turnaround: assigned.turnaround.unwrap_or(config.batch_turnaround),
        expiry: config.batch_expiry,
        input_expires,
        plan,
        line_errors: assigned.line_errors,
        cancel_at: None,
        deleted: false,
        job_state_names: config.job_state_names,
        outcome: None,
    };
    let pending = State {
        phase: Phase::Pending,
        since: Duration::ZERO,
    };
    let answer = json_response(&batch.operation(pending));
    store.insert(batch.name.clone(), batch);
    Ok(answer)
}

#[cfg(test)]
#[path = "tests_gemini_timeline.rs"]
mod tests;
