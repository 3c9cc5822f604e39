//! Vertex AI batch prediction jobs for Gemini (reference 3.6), in memory, below
//! `/{v1,v1beta1}/projects/{p}/locations/{l}/batchPredictionJobs`: `POST` (create), `GET`
//! (list: `pageSize` default 10, max 100, `pageToken`; newest first; `filter` answers 400,
//! `readMask` is ignored), `GET …/{id}`, `POST …/{id}:cancel` (`{}`), `DELETE …/{id}` (a
//! done long-running `Operation`; only for finished jobs).
//!
//! Create body (ProtoJSON, camelCase or snake_case; other fields answer 400):
//! `displayName` (required), `model` (`publishers/google/models/{m}` or
//! `projects/{p}/locations/{l}/publishers/google/models/{m}`, a Gemini model, else 404),
//! `inputConfig {instancesFormat: "jsonl", gcsSource {uris: ["gs://…"]}}`,
//! `outputConfig {predictionsFormat: "jsonl", gcsDestination {outputUriPrefix: "gs://…"}}`,
//! `labels` (map of strings). BigQuery source or destination answers 400 (not simulated).
//! Input lines are `{"request": GenerateContentRequest}`, read and generated with
//! `gemini_content.rs` (plus the Vertex-only `request.labels`, a map of strings); the input
//! objects are read at creation. Create never deduplicates: the same body twice makes two
//! jobs (reconcile by `displayName` with list).
//!
//! The job: `name` `projects/{project number}/locations/{l}/batchPredictionJobs/{19
//! digits}` (a project id in the path maps to a fixed 12-digit number; get/cancel/delete
//! accept the id or the number), `displayName`, `model`, `inputConfig`, `outputConfig`,
//! `state`, `createTime`, `updateTime`, `startTime` (once out of the queue), `endTime`
//! (terminal), `outputInfo.gcsOutputDirectory` (once out of the queue:
//! `{outputUriPrefix}/prediction-model-{createTime}`), `completionStats` (terminal;
//! `successfulCount` / `failedCount` / `incompleteCount` as int64 strings, zeros omitted),
//! `error` (`google.rpc.Status`, FAILED and CANCELLED only), `labels`.
//!
//! Time model (as `batch.rs`: a pure function of the time since creation on
//! `tokio::time::Instant`, no background task), with `Q` = [`super::VertexConfig::queue_delay`],
//! `R` = [`super::VertexConfig::run_time`] (or the `turnaround_ms` fault), `P = R/10`,
//! `X` = [`super::VertexConfig::queue_expiry`] ("72 h"), `C` =
//! [`super::VertexConfig::run_cutoff`] ("24 h"): `QUEUED` on `[0, Q)`, `PENDING` on
//! `[Q, Q+P)`, `RUNNING` from `Q+P`; row `k` of the output order completes at
//! `Q + P + (R-P)(k+1)/n`. If `Q >= X` the job is `EXPIRED` at `X` with no output. If
//! `R <= C` it ends at `Q+R`: `SUCCEEDED` when no row failed, `PARTIALLY_SUCCEEDED` when
//! some did, `FAILED` (`error.code` 3) when all did. If `R > C` it is cut off at `Q+C`:
//! `CANCELLED` with `error.code` 4 and the rows completed by then exported. `:cancel` at
//! `c` → `CANCELLING` on `[c, c + cancel_delay)` ([`super::SimConfig::cancel_delay`]),
//! then `CANCELLED` (`error.code` 1) with the rows completed by then exported — unless
//! the job ends first, which it then does normally. A job that cannot start (an input or
//! output bucket that does not exist, a missing input object, more than
//! [`super::VertexConfig::max_requests`] rows or [`super::VertexConfig::max_input_bytes`]
//! bytes, no rows) is `FAILED` at `Q` (code 5 or 3) with no output.
//!
//! Output: when a job is terminal (first read of it, of the job list or of any GCS
//! path), its completed rows are written to `{gcsOutputDirectory}/predictions.jsonl`
//! (`application/jsonl`), one `{"status", "processed_time", "request", "response"}` line
//! each, `status` empty on success; a failed row has its error message in `status` and
//! no `response`. Lines are in a deterministic shuffle of the input order (never the
//! input order when there are two rows or more): match them by the echoed `request`
//! (e.g. `request.labels`). Nothing is written when no row completed.
//!
//! Forcing outcomes (`POST /sim/batch-faults`, shared with the other batch APIs,
//! `faults.rs`): `create_429` → the next creates answer 429 `RESOURCE_EXHAUSTED`;
//! `fail_validation` → the next jobs end `FAILED` at `Q` (code 13, no output); `expire`
//! → the next jobs stay `QUEUED` and end `EXPIRED` at `X`; `line_errors` → rows whose
//! `request.labels` has one of these values fail (status `Internal error occurred.`);
//! `turnaround_ms` → `R` (above `C` it forces a cutoff). So every terminal state is
//! reachable: SUCCEEDED (default), PARTIALLY_SUCCEEDED / FAILED (line errors or invalid
//! rows), FAILED (fault, missing input), CANCELLED (`:cancel`, cutoff), EXPIRED (fault,
//! `queue_delay >= queue_expiry`). Created jobs count in `/sim/batches/stats`.
//!
//! UNCONFIRMED, decided strictly: the queue shows as `QUEUED` then `PENDING`; a queue
//! expiry ends `EXPIRED` without output; the 24 h cutoff ends `CANCELLED` (code 4), not
//! `PARTIALLY_SUCCEEDED`; a failed row's status text and its missing `response`;
//! top-level input keys other than `request` (e.g. `key`) make that row fail; an unread
//! job's output only appears when the job (or GCS) is next read; `service_tier` /
//! `cachedContent` (explicit caching) in a row make it fail; cancel or delete of a job in
//! the wrong state answers 400 `FAILED_PRECONDITION`; missing inputs fail the job
//! asynchronously rather than the create call; the output directory name
//! `prediction-model-{createTime}` is illustrative.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{Method, Response};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::Simulator;
use super::anthropic_batch::rfc3339;
use super::body::SimBody;
use super::error::splitmix;
use super::files::query_params;
use super::gcs::parse_uri;
use super::gemini::{GemError, json_response};
use super::gemini_content::{
    Fields, generate, get, known_model, object, parse_body, parse_request, string,
};
use super::gemini_files::{page, page_params, unix_ms};

const JOB: Fields = &[
    ("displayName", "display_name"),
    ("inputConfig", "input_config"),
    ("labels", "labels"),
    ("model", "model"),
    ("outputConfig", "output_config"),
];

const INPUT_CONFIG: Fields = &[
    ("bigquerySource", "bigquery_source"),
    ("gcsSource", "gcs_source"),
    ("instancesFormat", "instances_format"),
];

const OUTPUT_CONFIG: Fields = &[
    ("bigqueryDestination", "bigquery_destination"),
    ("gcsDestination", "gcs_destination"),
    ("predictionsFormat", "predictions_format"),
];

/// A job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Queued,
    Pending,
    Running,
    Cancelling,
    Succeeded,
    PartiallySucceeded,
    /// Could not start, or a forced failure.
    Failed,
    /// Every row failed.
    RowsFailed,
    Cancelled,
    /// The run cutoff.
    CutOff,
    Expired,
}

impl Phase {
    fn wire(self) -> &'static str {
        match self {
            Phase::Queued => "JOB_STATE_QUEUED",
            Phase::Pending => "JOB_STATE_PENDING",
            Phase::Running => "JOB_STATE_RUNNING",
            Phase::Cancelling => "JOB_STATE_CANCELLING",
            Phase::Succeeded => "JOB_STATE_SUCCEEDED",
            Phase::PartiallySucceeded => "JOB_STATE_PARTIALLY_SUCCEEDED",
            Phase::Failed | Phase::RowsFailed => "JOB_STATE_FAILED",
            Phase::Cancelled | Phase::CutOff => "JOB_STATE_CANCELLED",
            Phase::Expired => "JOB_STATE_EXPIRED",
        }
    }

    fn terminal(self) -> bool {
        !matches!(
            self,
            Phase::Queued | Phase::Pending | Phase::Running | Phase::Cancelling
        )
    }
}

/// The state at one moment: phase, when it was entered, rows completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct State {
    pub phase: Phase,
    pub since: Duration,
    pub rows: usize,
}

/// How a job ends (fixed at creation).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Plan {
    Run,
    /// `FAILED` when it would start, with this status.
    Fail(Value),
    /// Stays queued until the queue expiry.
    Expire,
}

/// One input row.
#[derive(Debug, Clone)]
pub(super) struct Row {
    /// The echoed `request` (or the whole line when it has none).
    pub request: Value,
    /// Why it fails, if it does (known at creation).
    pub error: Option<String>,
}

#[derive(Debug)]
pub(super) struct Job {
    pub seq: u64,
    pub id: String,
    pub project_id: String,
    pub project_number: String,
    pub location: String,
    pub display_name: String,
    pub model: String,
    pub model_id: String,
    pub uris: Vec<String>,
    pub output_prefix: String,
    pub labels: Option<Value>,
    pub rows: Vec<Row>,
    /// Output position → input index.
    pub order: Vec<usize>,
    pub start: Instant,
    pub created_ms: u64,
    pub queue: Duration,
    pub run: Duration,
    pub queue_expiry: Duration,
    pub cutoff: Duration,
    pub plan: Plan,
    /// When a cancel was requested and when it takes effect.
    pub cancel: Option<(Duration, Duration)>,
    pub deleted: bool,
    pub written: bool,
}

impl Job {
    fn failed_rows(&self) -> usize {
        self.rows.iter().filter(|r| r.error.is_some()).count()
    }

    fn pending_for(&self) -> Duration {
        self.run / 10
    }

    /// Rows completed at `t` since creation (before any end).
    pub(super) fn rows_at(&self, t: Duration) -> usize {
        let n = self.rows.len();
        let begin = self.queue + self.pending_for();
        if t < begin {
            return 0;
        }
        let span = self.run.saturating_sub(self.pending_for()).as_nanos();
        if span == 0 {
            return n;
        }
        let done = (t - begin).as_nanos() * n as u128 / span;
        usize::try_from(done).unwrap_or(n).min(n)
    }

    /// When output row `k` completes.
    fn row_time(&self, k: usize) -> Duration {
        let n = self.rows.len().max(1) as u128;
        let span = self.run.saturating_sub(self.pending_for()).as_nanos();
        let off = span * (k as u128 + 1) / n;
        self.queue
            + self.pending_for()
            + Duration::from_nanos(u64::try_from(off).unwrap_or(u64::MAX))
    }

    /// The end without a cancel: phase, time, rows.
    fn end(&self) -> State {
        let n = self.rows.len();
        if matches!(self.plan, Plan::Expire) || self.queue >= self.queue_expiry {
            return State {
                phase: Phase::Expired,
                since: self.queue_expiry,
                rows: 0,
            };
        }
        if let Plan::Fail(_) = self.plan {
            return State {
                phase: Phase::Failed,
                since: self.queue,
                rows: 0,
            };
        }
        if self.run > self.cutoff {
            let at = self.queue + self.cutoff;
            return State {
                phase: Phase::CutOff,
                since: at,
                rows: self.rows_at(at),
            };
        }
        let failed = self.failed_rows();
        let phase = if failed == 0 {
            Phase::Succeeded
        } else if failed == n {
            Phase::RowsFailed
        } else {
            Phase::PartiallySucceeded
        };
        State {
            phase,
            since: self.queue + self.run,
            rows: n,
        }
    }

    /// The state at `e` since creation.
    pub(super) fn state(&self, e: Duration) -> State {
        let mut end = self.end();
        let mut cancelling_from = None;
        if let Some((asked, effective)) = self.cancel.filter(|(asked, _)| *asked < end.since) {
            cancelling_from = Some(asked);
            if effective < end.since {
                end = State {
                    phase: Phase::Cancelled,
                    since: effective,
                    rows: self.rows_at(effective),
                };
            }
        }
        if e >= end.since {
            return end;
        }
        let rows = self.rows_at(e);
        if let Some(asked) = cancelling_from.filter(|a| *a <= e) {
            return State {
                phase: Phase::Cancelling,
                since: asked,
                rows,
            };
        }
        let (phase, since) = if e < self.queue {
            (Phase::Queued, Duration::ZERO)
        } else if e < self.queue + self.pending_for() {
            (Phase::Pending, self.queue)
        } else {
            (Phase::Running, self.queue + self.pending_for())
        };
        State { phase, since, rows }
    }

    fn at(&self, d: Duration) -> String {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        rfc3339(self.created_ms.saturating_add(ms))
    }

    fn name(&self) -> String {
        format!(
            "projects/{}/locations/{}/batchPredictionJobs/{}",
            self.project_number, self.location, self.id
        )
    }

    /// `gs://…/prediction-model-{createTime}`.
    fn output_dir(&self) -> String {
        let prefix = self.output_prefix.trim_end_matches('/');
        format!("{prefix}/prediction-model-{}", rfc3339(self.created_ms))
    }

    /// The `BatchPredictionJob` for `state`.
    pub(super) fn resource(&self, state: State) -> Value {
        let mut job = json!({
            "name": self.name(),
            "displayName": self.display_name,
            "model": self.model,
            "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": self.uris}},
            "outputConfig": {"predictionsFormat": "jsonl",
                             "gcsDestination": {"outputUriPrefix": self.output_prefix}},
            "state": state.phase.wire(),
            "createTime": self.at(Duration::ZERO),
            "updateTime": self.at(state.since),
        });
        let queued = matches!(state.phase, Phase::Queued | Phase::Expired)
            || (state.phase == Phase::Cancelled && state.since < self.queue);
        let started = !queued;
        if started {
            job["startTime"] = json!(self.at(self.queue));
            job["outputInfo"] = json!({"gcsOutputDirectory": self.output_dir()});
        }
        if state.phase.terminal() {
            job["endTime"] = json!(self.at(state.since));
            let done = state.rows;
            let failed = self.order[..done.min(self.order.len())]
                .iter()
                .filter(|&&i| self.rows[i].error.is_some())
                .count();
            let mut stats = Map::new();
            let mut put = |k: &str, v: usize| {
                if v > 0 {
                    stats.insert(k.to_owned(), json!(v.to_string()));
                }
            };
            put("successfulCount", done - failed);
            put("failedCount", failed);
            put("incompleteCount", self.rows.len() - done);
            job["completionStats"] = Value::Object(stats);
        }
        let error = match (state.phase, &self.plan) {
            (Phase::Failed, Plan::Fail(status)) => Some(status.clone()),
            (Phase::RowsFailed, _) => Some(
                json!({"code": 3, "message": "All requests of the batch prediction job failed."}),
            ),
            (Phase::Cancelled, _) => Some(json!({"code": 1, "message": "CANCELED"})),
            (Phase::CutOff, _) => Some(
                json!({"code": 4, "message": "The batch prediction job did not finish within 24 hours of starting; incomplete requests were cancelled and completed rows exported."}),
            ),
            _ => None,
        };
        if let Some(e) = error {
            job["error"] = e;
        }
        if let Some(l) = &self.labels {
            job["labels"] = l.clone();
        }
        job
    }

    /// The state now, with the output written once the job is terminal.
    fn current(&mut self, sim: &Simulator) -> State {
        let state = self.state(self.start.elapsed());
        if state.phase.terminal() && !self.written {
            self.written = true;
            self.write(sim, state);
        }
        state
    }

    fn write(&self, sim: &Simulator, state: State) {
        let rows = match state.phase {
            Phase::Failed | Phase::Expired => 0,
            _ => state.rows,
        };
        if rows == 0 {
            return;
        }
        let Some((bucket, prefix)) =
            parse_uri(&self.output_dir()).map(|(b, p)| (b.to_owned(), p.to_owned()))
        else {
            return;
        };
        let mut out = Vec::new();
        for (k, &i) in self.order.iter().take(rows).enumerate() {
            let row = &self.rows[i];
            let processed_ms = u64::try_from(self.row_time(k).as_millis()).unwrap_or(0);
            let time = rfc3339(self.created_ms.saturating_add(processed_ms));
            let mut line = Map::new();
            let result = match &row.error {
                Some(e) => Err(e.clone()),
                None => respond(sim, &self.model_id, &row.request),
            };
            match result {
                Ok(response) => {
                    line.insert("status".to_owned(), json!(""));
                    line.insert("processed_time".to_owned(), json!(time));
                    line.insert("request".to_owned(), row.request.clone());
                    line.insert("response".to_owned(), response);
                }
                Err(e) => {
                    line.insert("status".to_owned(), json!(e));
                    line.insert("processed_time".to_owned(), json!(time));
                    line.insert("request".to_owned(), row.request.clone());
                }
            }
            out.extend_from_slice(&serde_json::to_vec(&line).unwrap_or_default());
            out.push(b'\n');
        }
        let name = format!("{prefix}/predictions.jsonl");
        let generation = 1_700_000_000_000_000 + sim.next_seq();
        sim.vertex.gcs.put(
            &bucket,
            &name,
            Bytes::from(out),
            "application/jsonl",
            generation,
        );
    }
}

/// The `request` without its Vertex-only `labels`.
fn without_labels(request: &Value) -> Value {
    let mut r = request.clone();
    if let Some(m) = r.as_object_mut() {
        m.remove("labels");
    }
    r
}

fn respond(sim: &Simulator, model: &str, request: &Value) -> Result<Value, String> {
    let stripped = without_labels(request);
    let parsed = parse_request(&stripped, "request").map_err(|e| e.message.to_string())?;
    generate(sim, model, &parsed, sim.next_seq())
        .map(|g| g.response(None))
        .map_err(|e| e.message.to_string())
}

/// Why a row fails, checked at creation.
fn row_error(request: &Value) -> Option<String> {
    if let Some(labels) = request.get("labels") {
        let ok = labels
            .as_object()
            .is_some_and(|m| m.values().all(Value::is_string));
        if !ok {
            return Some(
                "Invalid value at 'request.labels': labels must be a map of strings.".to_owned(),
            );
        }
    }
    let stripped = without_labels(request);
    match parse_request(&stripped, "request") {
        Err(e) => Some(e.message.to_string()),
        Ok(p) if p.tier.is_some() => {
            Some("service_tier is not supported in batch prediction requests.".to_owned())
        }
        Ok(_)
            if stripped
                .get("cachedContent")
                .or_else(|| stripped.get("cached_content"))
                .is_some() =>
        {
            Some(
                "Explicit context caching (cachedContent) is not supported in batch prediction."
                    .to_owned(),
            )
        }
        Ok(_) => None,
    }
}

/// The rows of the concatenated input.
fn read_rows(content: &[u8]) -> Vec<Row> {
    let mut rows = Vec::new();
    for (i, raw) in content.split(|b| *b == b'\n').enumerate() {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let n = i + 1;
        let bad = |request: Value, e: String| Row {
            request,
            error: Some(e),
        };
        let value = match crate::strict_json::parse(line) {
            Ok(v) => v,
            Err(e) => {
                rows.push(bad(
                    json!(String::from_utf8_lossy(line)),
                    format!("Line {n}: invalid JSON: {e}"),
                ));
                continue;
            }
        };
        let Some(map) = value.as_object() else {
            rows.push(bad(value, format!("Line {n}: expected a JSON object.")));
            continue;
        };
        if let Some(k) = map.keys().find(|k| *k != "request") {
            let e = format!("Line {n}: Unknown name \"{k}\": Cannot find field.");
            rows.push(bad(map.get("request").cloned().unwrap_or(value.clone()), e));
            continue;
        }
        match map.get("request").filter(|r| !r.is_null()) {
            None => rows.push(bad(
                value.clone(),
                format!("Line {n}: request is required."),
            )),
            Some(r) => rows.push(Row {
                request: r.clone(),
                error: row_error(r),
            }),
        }
    }
    rows
}

/// A deterministic permutation of `0..n`, never the identity for `n >= 2`.
fn shuffle(n: usize, salt: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| splitmix(salt ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)));
    if n >= 2 && order.iter().enumerate().all(|(k, &i)| k == i) {
        order.rotate_left(1);
    }
    order
}

/// The label values of a row (its keys for `line_errors`).
fn label_values(row: &Row) -> Vec<&str> {
    row.request
        .get("labels")
        .and_then(Value::as_object)
        .map(|m| m.values().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// All jobs, by numeric id.
#[derive(Debug, Default)]
pub struct JobStore {
    inner: Mutex<HashMap<String, Job>>,
}

impl JobStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Job>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Writes the output of every job that has become terminal.
pub fn settle(sim: &Simulator) {
    for job in sim.vertex.jobs.lock().values_mut() {
        job.current(sim);
    }
}

fn project_number(project: &str) -> String {
    if !project.is_empty() && project.bytes().all(|b| b.is_ascii_digit()) {
        return project.to_owned();
    }
    let h = project
        .bytes()
        .fold(0x5EED_u64, |h, b| splitmix(h ^ u64::from(b)));
    (100_000_000_000 + h % 900_000_000_000).to_string()
}

enum Route<'a> {
    Create,
    List,
    Get(&'a str),
    Delete(&'a str),
    Cancel(&'a str),
}

fn not_found(method: &Method, path: &str) -> GemError {
    GemError::not_found(format!(
        "The requested URL {path} was not found on this server ({method})."
    ))
}

/// Answers one request below `/{v1,v1beta1}/projects/`.
pub fn handle(
    sim: &Simulator,
    parts: &Parts,
    body: &Bytes,
    seq: u64,
) -> Result<Response<SimBody>, GemError> {
    let path = parts.uri.path();
    let method = &parts.method;
    let miss = || not_found(method, path);
    let rest = path
        .strip_prefix("/v1/projects/")
        .or_else(|| path.strip_prefix("/v1beta1/projects/"))
        .ok_or_else(miss)?;
    let segs: Vec<&str> = rest.split('/').collect();
    let (project, location, tail) = match segs.as_slice() {
        [p, "locations", l, tail @ ..] if !p.is_empty() && !l.is_empty() => (*p, *l, tail),
        _ => return Err(miss()),
    };
    let route = match (tail, method) {
        (["batchPredictionJobs"], &Method::POST) => Route::Create,
        (["batchPredictionJobs"], &Method::GET) => Route::List,
        (["batchPredictionJobs", id], m) => match (id.split_once(':'), m) {
            (Some((id, "cancel")), &Method::POST) if !id.is_empty() => Route::Cancel(id),
            (None, &Method::GET) if !id.is_empty() => Route::Get(id),
            (None, &Method::DELETE) if !id.is_empty() => Route::Delete(id),
            _ => return Err(miss()),
        },
        _ => return Err(miss()),
    };
    let number = project_number(project);
    let store = &sim.vertex.jobs;
    let with = |id: &str, f: &mut dyn FnMut(&mut Job) -> Result<Value, GemError>| {
        let mut inner = store.lock();
        match inner.get_mut(id).filter(|j| {
            !j.deleted
                && j.location == location
                && (j.project_number == number || j.project_id == project)
        }) {
            Some(j) => f(j).map(|v| json_response(&v)),
            None => Err(GemError::not_found(format!(
                "The BatchPredictionJob does not exist: projects/{project}/locations/{location}/batchPredictionJobs/{id}"
            ))),
        }
    };
    match route {
        Route::Create => create(sim, project, &number, location, body, seq),
        Route::Get(id) => with(id, &mut |j| {
            let s = j.current(sim);
            Ok(j.resource(s))
        }),
        Route::Cancel(id) => with(id, &mut |j| {
            let now = j.start.elapsed();
            let s = j.current(sim);
            if s.phase.terminal() {
                return Err(GemError::failed_precondition(format!(
                    "The BatchPredictionJob {} is in state {} and cannot be cancelled.",
                    j.name(),
                    s.phase.wire()
                )));
            }
            if j.cancel.is_none() {
                j.cancel = Some((now, now + sim.config.cancel_delay));
            }
            Ok(json!({}))
        }),
        Route::Delete(id) => with(id, &mut |j| {
            let s = j.current(sim);
            if !s.phase.terminal() {
                return Err(GemError::failed_precondition(format!(
                    "The BatchPredictionJob {} is in state {}; only finished jobs can be deleted. Cancel it first.",
                    j.name(),
                    s.phase.wire()
                )));
            }
            j.deleted = true;
            let now = rfc3339(unix_ms());
            Ok(json!({
                "name": format!("projects/{}/locations/{}/operations/{}", j.project_number, j.location, splitmix(seq) % 9_000_000_000_000_000_000 + 1_000_000_000_000_000_000),
                "metadata": {"@type": "type.googleapis.com/google.cloud.aiplatform.v1.DeleteOperationMetadata",
                             "genericMetadata": {"createTime": now, "updateTime": now}},
                "done": true,
                "response": {"@type": "type.googleapis.com/google.protobuf.Empty"},
            }))
        }),
        Route::List => {
            let params = query_params(parts.uri.query());
            if params.iter().any(|(k, v)| k == "filter" && !v.is_empty()) {
                return Err(GemError::invalid(
                    "The simulator does not support 'filter' when listing batch prediction jobs.",
                ));
            }
            let (size, after) = page_params(parts.uri.query())?;
            let mut inner = store.lock();
            let items: Vec<(u64, Value)> = inner
                .values_mut()
                .filter(|j| {
                    !j.deleted
                        && j.location == location
                        && (j.project_number == number || j.project_id == project)
                })
                .map(|j| {
                    let s = j.current(sim);
                    (j.seq, j.resource(s))
                })
                .collect();
            drop(inner);
            let (page, next) = page(items, size, after);
            let mut out = json!({});
            if !page.is_empty() {
                out["batchPredictionJobs"] = Value::Array(page);
            }
            if let Some(t) = next {
                out["nextPageToken"] = json!(t);
            }
            Ok(json_response(&out))
        }
    }
}

/// The model id of `publishers/google/models/{m}` (optionally under
/// `projects/{p}/locations/{l}/`).
fn model_id(model: &str) -> Option<&str> {
    let rest = match model.strip_prefix("projects/") {
        Some(r) => {
            let mut it = r.splitn(4, '/');
            let (_, loc, _, tail) = (it.next()?, it.next()?, it.next()?, it.next()?);
            (loc == "locations").then_some(())?;
            tail
        }
        None => model,
    };
    rest.strip_prefix("publishers/google/models/")
        .filter(|m| !m.is_empty() && !m.contains('/'))
}

/// What a create request asks for, validated as Vertex validates it before accepting a job.
struct Spec<'a> {
    display_name: &'a str,
    model: &'a str,
    model_id: &'a str,
    labels: Option<Value>,
    uris: Vec<String>,
    output_prefix: &'a str,
    output_bucket: &'a str,
}

fn spec<'a>(value: &'a Value, project: &str, location: &str) -> Result<Spec<'a>, GemError> {
    let job = object(value, "", JOB)?;
    let display_name = get(job, ("displayName", "display_name"))
        .map(|v| string(v, "display_name"))
        .transpose()?
        .unwrap_or("");
    if display_name.is_empty() {
        return Err(GemError::invalid(
            "BatchPredictionJob.display_name is required.",
        ));
    }
    let model = get(job, ("model", "model"))
        .map(|v| string(v, "model"))
        .transpose()?
        .unwrap_or("");
    let Some(model_id) = model_id(model) else {
        return Err(GemError::invalid(format!(
            "Invalid BatchPredictionJob.model: {model:?}; expected publishers/google/models/{{model}}."
        )));
    };
    if !known_model(model_id) {
        return Err(GemError::not_found(format!(
            "Publisher Model `projects/{project}/locations/{location}/publishers/google/models/{model_id}` not found."
        )));
    }
    let labels = get(job, ("labels", "labels")).cloned();
    if let Some(l) = &labels {
        if !l
            .as_object()
            .is_some_and(|m| m.values().all(Value::is_string))
        {
            return Err(GemError::invalid_value("labels", "map<string, string>", l));
        }
    }
    let uris = input_uris(job)?;
    let (output_prefix, output_bucket) = output_prefix(job)?;
    Ok(Spec {
        display_name,
        model,
        model_id,
        labels,
        uris,
        output_prefix,
        output_bucket,
    })
}

/// `inputConfig`: JSONL from one or more GCS objects.
fn input_uris(job: &Map<String, Value>) -> Result<Vec<String>, GemError> {
    let input = get(job, ("inputConfig", "input_config"))
        .ok_or_else(|| GemError::invalid("BatchPredictionJob.input_config is required."))?;
    let input = object(input, "input_config", INPUT_CONFIG)?;
    if get(input, ("bigquerySource", "bigquery_source")).is_some() {
        return Err(GemError::invalid(
            "The simulator supports only gcsSource input (no BigQuery).",
        ));
    }
    let format = get(input, ("instancesFormat", "instances_format"))
        .map(|v| string(v, "input_config.instances_format"))
        .transpose()?;
    if format != Some("jsonl") {
        return Err(GemError::invalid(format!(
            "Unsupported input_config.instances_format {:?}; Gemini batch prediction from GCS takes \"jsonl\".",
            format.unwrap_or("")
        )));
    }
    let uris: Vec<String> = match get(input, ("gcsSource", "gcs_source")) {
        None => Vec::new(),
        Some(src) => {
            let src = object(src, "input_config.gcs_source", &[("uris", "uris")])?;
            match get(src, ("uris", "uris")) {
                None => Vec::new(),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|u| string(u, "input_config.gcs_source.uris").map(str::to_owned))
                    .collect::<Result<_, _>>()?,
                Some(v) => vec![string(v, "input_config.gcs_source.uris")?.to_owned()],
            }
        }
    };
    if uris.is_empty()
        || uris
            .iter()
            .any(|u| parse_uri(u).is_none_or(|(_, p)| p.is_empty()))
    {
        return Err(GemError::invalid(
            "input_config.gcs_source.uris must name one or more gs://bucket/object URIs.",
        ));
    }
    Ok(uris)
}

/// `outputConfig`: JSONL under a GCS prefix; returns the prefix and its bucket.
fn output_prefix(job: &Map<String, Value>) -> Result<(&str, &str), GemError> {
    let output = get(job, ("outputConfig", "output_config"))
        .ok_or_else(|| GemError::invalid("BatchPredictionJob.output_config is required."))?;
    let output = object(output, "output_config", OUTPUT_CONFIG)?;
    if get(output, ("bigqueryDestination", "bigquery_destination")).is_some() {
        return Err(GemError::invalid(
            "The simulator supports only gcsDestination output (no BigQuery).",
        ));
    }
    let format = get(output, ("predictionsFormat", "predictions_format"))
        .map(|v| string(v, "output_config.predictions_format"))
        .transpose()?;
    if format != Some("jsonl") {
        return Err(GemError::invalid(format!(
            "Unsupported output_config.predictions_format {:?}; expected \"jsonl\".",
            format.unwrap_or("")
        )));
    }
    let dest = get(output, ("gcsDestination", "gcs_destination"))
        .ok_or_else(|| GemError::invalid("output_config.gcs_destination is required."))?;
    let dest = object(
        dest,
        "output_config.gcs_destination",
        &[("outputUriPrefix", "output_uri_prefix")],
    )?;
    let prefix = get(dest, ("outputUriPrefix", "output_uri_prefix"))
        .map(|v| string(v, "output_config.gcs_destination.output_uri_prefix"))
        .transpose()?
        .unwrap_or("");
    let Some((bucket, _)) = parse_uri(prefix) else {
        return Err(GemError::invalid(
            "output_config.gcs_destination.output_uri_prefix must be a gs:// URI.",
        ));
    };
    Ok((prefix, bucket))
}

/// Reads the input at creation, as Vertex does; problems fail the job when it would start.
fn read_input(sim: &Simulator, spec: &Spec<'_>) -> (Plan, Vec<Row>) {
    let config = &sim.config.vertex;
    let known = |b: &str| config.buckets.iter().any(|k| k == b);
    let fail = |code: u8, message: String| Plan::Fail(json!({"code": code, "message": message}));
    let mut content = Vec::new();
    for uri in &spec.uris {
        let Some((bucket, object)) = parse_uri(uri) else {
            continue;
        };
        if !known(bucket) {
            let m = format!("Failed to read input: bucket {bucket} does not exist ({uri}).");
            return (fail(5, m), Vec::new());
        }
        let Some(data) = sim.vertex.gcs.get(bucket, object) else {
            return (
                fail(5, format!("Failed to read input: no such object {uri}.")),
                Vec::new(),
            );
        };
        content.extend_from_slice(&data);
        if !content.ends_with(b"\n") {
            content.push(b'\n');
        }
    }
    if !known(spec.output_bucket) {
        let m = format!("Output bucket {} does not exist.", spec.output_bucket);
        return (fail(5, m), Vec::new());
    }
    let rows = read_rows(&content);
    let plan = if content.len() as u64 > config.max_input_bytes {
        fail(
            3,
            format!("The input exceeds {} bytes.", config.max_input_bytes),
        )
    } else if rows.len() > config.max_requests {
        let m = format!(
            "The job has {} requests; the limit is {}.",
            rows.len(),
            config.max_requests
        );
        fail(3, m)
    } else if rows.is_empty() {
        fail(3, "The input has no requests.".to_owned())
    } else {
        Plan::Run
    };
    (plan, rows)
}

/// Admits the job under the simulated quota and applies the faults `/sim` assigned to it
/// (by its rows' label values); returns the turnaround fault, if any.
fn admit(sim: &Simulator, plan: &mut Plan, rows: &mut [Row]) -> Result<Option<Duration>, GemError> {
    let keys: Vec<String> = rows
        .iter()
        .flat_map(label_values)
        .map(str::to_owned)
        .collect();
    let assigned = sim
        .control
        .admit(keys.iter().map(String::as_str), *plan == Plan::Run)
        .ok_or_else(|| {
            GemError::batch_quota(
                "Resource has been exhausted (e.g. check quota).".to_owned(),
                "BatchPredictionJobsPerProject",
            )
        })?;
    if *plan == Plan::Run {
        if assigned.fail_validation {
            *plan = Plan::Fail(
                json!({"code": 13, "message": "Internal error occurred (simulated fault)."}),
            );
        } else if assigned.expire.is_some() {
            *plan = Plan::Expire;
        }
    }
    for row in rows.iter_mut() {
        if row.error.is_none()
            && label_values(row)
                .iter()
                .any(|v| assigned.line_errors.contains(*v))
        {
            row.error = Some("Internal error occurred.".to_owned());
        }
    }
    Ok(assigned.turnaround)
}

fn create(
    sim: &Simulator,
    project: &str,
    number: &str,
    location: &str,
    body: &[u8],
    seq: u64,
) -> Result<Response<SimBody>, GemError> {
    let config = &sim.config.vertex;
    let value = parse_body(body)?;
    let spec = spec(&value, project, location)?;
    let (mut plan, mut rows) = read_input(sim, &spec);
    let turnaround = admit(sim, &mut plan, &mut rows)?;
    let salt = sim.vertex.salt;
    let numeric = splitmix(salt ^ seq.rotate_left(23)) % 9_000_000_000_000_000_000
        + 1_000_000_000_000_000_000;
    let job = Job {
        seq,
        id: numeric.to_string(),
        project_id: project.to_owned(),
        project_number: number.to_owned(),
        location: location.to_owned(),
        display_name: spec.display_name.to_owned(),
        model: spec.model.to_owned(),
        model_id: spec.model_id.to_owned(),
        output_prefix: spec.output_prefix.to_owned(),
        uris: spec.uris,
        labels: spec.labels,
        order: shuffle(rows.len(), splitmix(salt ^ seq)),
        rows,
        start: Instant::now(),
        created_ms: unix_ms(),
        // A job forced to expire never leaves the queue.
        queue: if plan == Plan::Expire {
            config.queue_expiry
        } else {
            config.queue_delay
        },
        run: turnaround.unwrap_or(config.run_time),
        queue_expiry: config.queue_expiry,
        cutoff: config.run_cutoff,
        plan,
        cancel: None,
        deleted: false,
        written: false,
    };
    let queued = State {
        phase: Phase::Queued,
        since: Duration::ZERO,
        rows: 0,
    };
    let answer = job.resource(queued);
    sim.vertex.jobs.lock().insert(job.id.clone(), job);
    Ok(json_response(&answer))
}
