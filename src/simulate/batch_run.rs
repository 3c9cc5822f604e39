//! Batch input validation and line execution (reference 1.8, 1.9 items 3 and 4).
//!
//! Validation errors (the batch ends `failed`, codes are illustrative — the real
//! vocabulary is UNCONFIRMED): `file_not_found`, `invalid_file_purpose`, `file_too_large`,
//! `too_many_requests`, `empty_file`, `invalid_json_line`, `invalid_request`,
//! `duplicate_custom_id`, `invalid_method`, `invalid_url`, `mixed_models`,
//! `token_limit_exceeded` (the `fail_validation` fault).
//!
//! Each line runs through the same handler as the synchronous endpoint, in input order,
//! so same-prefix lines hit the prompt cache. Output lines are ordered by a hash of their
//! custom_id, never by input order.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::body::Reply;
use super::error::ApiError;
use super::files::{BATCH_FILE_TTL, EXPIRY_RANGE};
use super::{Meta, Simulator, chat, completions, embeddings, responses, unix_now};

/// Endpoints whose batches the simulator runs.
pub const ENDPOINTS: [&str; 4] = [
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
];

/// Most validation errors reported for one batch.
const MAX_ERRORS: usize = 1_000;

/// One `errors.data[]` entry.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BatchError {
    /// Machine-readable code.
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
    /// Offending parameter, if any.
    pub param: Option<&'static str>,
    /// 1-based input line, if any.
    pub line: Option<u64>,
}

impl BatchError {
    /// An error not tied to a line.
    pub fn file(code: &'static str, message: String, param: Option<&'static str>) -> Self {
        Self {
            code,
            message,
            param,
            line: None,
        }
    }
}

/// One valid input line.
#[derive(Debug, Clone)]
pub struct Line {
    /// The line's `custom_id`.
    pub custom_id: String,
    /// The request body.
    pub body: Value,
}

/// The result of validating an input file.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Lines that passed the per-line checks.
    pub lines: Vec<Line>,
    /// Every custom_id that could be read, in order (for the statistics).
    pub custom_ids: Vec<String>,
    /// Validation errors; non-empty means the batch fails.
    pub errors: Vec<BatchError>,
    /// The single model of the file (first one seen).
    pub model: Option<String>,
}

/// Limits of one input file.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most requests.
    pub max_requests: usize,
    /// Largest file in bytes.
    pub max_bytes: u64,
}

/// Validates a batch input file for `endpoint`.
pub fn parse_input(content: &[u8], endpoint: &str, limits: Limits) -> Parsed {
    let mut p = Parsed::default();
    if content.len() as u64 > limits.max_bytes {
        p.errors.push(BatchError::file(
            "file_too_large",
            format!(
                "The input file is {} bytes; the maximum is {} bytes.",
                content.len(),
                limits.max_bytes
            ),
            Some("input_file_id"),
        ));
        return p;
    }
    let lines: Vec<(u64, &[u8])> = content
        .split(|b| *b == b'\n')
        .enumerate()
        .map(|(i, l)| (i as u64 + 1, l.strip_suffix(b"\r").unwrap_or(l)))
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
        .collect();
    if lines.is_empty() {
        p.errors.push(BatchError::file(
            "empty_file",
            "The input file contains no requests.".to_owned(),
            Some("input_file_id"),
        ));
        return p;
    }
    if lines.len() > limits.max_requests {
        p.errors.push(BatchError::file(
            "too_many_requests",
            format!(
                "The input file contains {} requests; the maximum is {}.",
                lines.len(),
                limits.max_requests
            ),
            Some("input_file_id"),
        ));
        return p;
    }
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut model_line = 0;
    for (n, raw) in lines {
        let mut fail = |code, message: String, param| {
            if p.errors.len() < MAX_ERRORS {
                p.errors.push(BatchError {
                    code,
                    message,
                    param,
                    line: Some(n),
                });
            }
        };
        // A strict parser, as the provider's: a repeated key makes the line invalid.
        let Ok(value) = crate::strict_json::parse(raw) else {
            fail(
                "invalid_json_line",
                format!("Line {n} is not valid JSON."),
                None,
            );
            continue;
        };
        let Some(obj) = value.as_object() else {
            fail(
                "invalid_request",
                format!("Line {n} is not a JSON object."),
                None,
            );
            continue;
        };
        let custom_id = match obj.get("custom_id").and_then(Value::as_str) {
            Some(id) if !id.is_empty() => id,
            _ => {
                fail(
                    "invalid_request",
                    format!("Line {n}: 'custom_id' must be a non-empty string."),
                    Some("custom_id"),
                );
                continue;
            }
        };
        p.custom_ids.push(custom_id.to_owned());
        if let Some(first) = seen.get(custom_id) {
            fail(
                "duplicate_custom_id",
                format!(
                    "Line {n}: the custom_id '{custom_id}' is already used on line {first}; custom_id values must be unique within a batch."
                ),
                Some("custom_id"),
            );
            continue;
        }
        seen.insert(custom_id.to_owned(), n);
        let method = obj.get("method").and_then(Value::as_str).unwrap_or("");
        if method != "POST" {
            fail(
                "invalid_method",
                format!("Line {n}: 'method' must be 'POST', got '{method}'."),
                Some("method"),
            );
            continue;
        }
        let url = obj.get("url").and_then(Value::as_str).unwrap_or("");
        if url != endpoint {
            fail(
                "invalid_url",
                format!("Line {n}: 'url' '{url}' does not match the batch endpoint '{endpoint}'."),
                Some("url"),
            );
            continue;
        }
        let Some(body) = obj.get("body").filter(|b| b.is_object()) else {
            fail(
                "invalid_request",
                format!("Line {n}: 'body' must be a JSON object."),
                Some("body"),
            );
            continue;
        };
        if let Some(model) = body.get("model").and_then(Value::as_str) {
            match &p.model {
                None => {
                    p.model = Some(model.to_owned());
                    model_line = n;
                }
                Some(first) if first != model => {
                    let message = format!(
                        "Line {n} uses model '{model}' but line {model_line} uses '{first}'; a batch input file can only include requests to a single model."
                    );
                    fail("mixed_models", message, Some("body.model"));
                    continue;
                }
                Some(_) => {}
            }
        }
        p.lines.push(Line {
            custom_id: custom_id.to_owned(),
            body: body.clone(),
        });
    }
    p
}

/// Why lines that did not run are in the error file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotRun {
    /// `batch_expired`.
    Expired,
    /// `batch_cancelled`.
    Cancelled,
}

impl NotRun {
    fn error(self) -> LineError {
        match self {
            Self::Expired => LineError {
                code: "batch_expired",
                message: "This request could not be executed before the completion window expired.",
            },
            Self::Cancelled => LineError {
                code: "batch_cancelled",
                message: "This request was not executed because the batch was cancelled.",
            },
        }
    }
}

/// `request_counts`.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    /// Lines in the batch.
    pub total: u64,
    /// Lines in the output file.
    pub completed: u64,
    /// Lines in the error file.
    pub failed: u64,
}

/// Batch `usage` totals (successful lines only).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Usage {
    input_tokens: u64,
    input_tokens_details: Cached,
    output_tokens: u64,
    output_tokens_details: Reasoning,
    total_tokens: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
struct Cached {
    cached_tokens: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
struct Reasoning {
    reasoning_tokens: u64,
}

impl Usage {
    /// Adds the `usage` of one response body (chat, completions, embeddings or responses).
    fn add(&mut self, body: &Value) {
        let u = &body["usage"];
        let num = |a: &str, b: &str| u[a].as_u64().or_else(|| u[b].as_u64()).unwrap_or(0);
        let input = num("prompt_tokens", "input_tokens");
        let output = num("completion_tokens", "output_tokens");
        let details = |a: &str, b: &str, key: &str| {
            u[a][key]
                .as_u64()
                .or_else(|| u[b][key].as_u64())
                .unwrap_or(0)
        };
        self.input_tokens += input;
        self.output_tokens += output;
        self.total_tokens += u["total_tokens"].as_u64().unwrap_or(input + output);
        self.input_tokens_details.cached_tokens += details(
            "prompt_tokens_details",
            "input_tokens_details",
            "cached_tokens",
        );
        self.output_tokens_details.reasoning_tokens += details(
            "completion_tokens_details",
            "output_tokens_details",
            "reasoning_tokens",
        );
    }
}

#[derive(Serialize)]
struct OutputLine<'a> {
    id: String,
    custom_id: &'a str,
    response: Option<LineResponse>,
    error: Option<LineError>,
}

#[derive(Serialize)]
struct LineResponse {
    status_code: u16,
    request_id: String,
    body: Value,
}

#[derive(Serialize, Clone, Copy)]
struct LineError {
    code: &'static str,
    message: &'static str,
}

/// The rendered result files and totals of a batch.
#[derive(Debug, Default)]
pub struct Executed {
    /// Output file content (2xx lines), empty when none.
    pub output: Vec<u8>,
    /// Error file content (other lines), empty when none.
    pub errors: Vec<u8>,
    /// `request_counts`.
    pub counts: Counts,
    /// `usage`.
    pub usage: Usage,
}

/// Runs the first `done` lines (those in `forced` answer HTTP 500) and writes the
/// remaining ones as `not_run` errors.
pub fn execute(
    sim: &Simulator,
    endpoint: &str,
    lines: &[Line],
    done: usize,
    forced: &HashSet<String>,
    not_run: NotRun,
) -> Executed {
    let mut ok: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut failed: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut usage = Usage::default();
    for (i, line) in lines.iter().enumerate() {
        let seq = sim.next_seq();
        let (response, error) = if i < done {
            let (status, body) = if forced.contains(&line.custom_id) {
                error_body(&ApiError::server_error())
            } else {
                run_line(sim, endpoint, &line.body, seq)
            };
            if status.is_success() {
                usage.add(&body);
            }
            let response = LineResponse {
                status_code: status.as_u16(),
                request_id: format!("req_sim{seq}"),
                body,
            };
            (Some(response), None)
        } else {
            (None, Some(not_run.error()))
        };
        let success = response
            .as_ref()
            .is_some_and(|r| (200..300).contains(&r.status_code));
        let rendered = OutputLine {
            id: format!("batch_req_sim{}{seq}", sim.tag),
            custom_id: &line.custom_id,
            response,
            error,
        };
        let Ok(mut bytes) = serde_json::to_vec(&rendered) else {
            continue;
        };
        bytes.push(b'\n');
        let key = order_key(&line.custom_id);
        if success {
            ok.push((key, bytes));
        } else {
            failed.push((key, bytes));
        }
    }
    let counts = Counts {
        total: lines.len() as u64,
        completed: ok.len() as u64,
        failed: failed.len() as u64,
    };
    Executed {
        output: concat(ok),
        errors: concat(failed),
        counts,
        usage,
    }
}

fn run_line(sim: &Simulator, endpoint: &str, body: &Value, seq: u64) -> (StatusCode, Value) {
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        return error_body(&ApiError::invalid(
            "Streaming is not supported in batch requests.",
            Some("stream"),
            Some("invalid_value"),
        ));
    }
    let meta = Meta {
        seq,
        created: unix_now(),
        downgrade: false,
    };
    let bytes = match serde_json::to_vec(body) {
        Ok(b) => Bytes::from(b),
        Err(e) => return error_body(&ApiError::internal(e.to_string())),
    };
    let result = match endpoint {
        "/v1/chat/completions" => chat::handle(sim, &meta, &bytes),
        "/v1/completions" => completions::handle(sim, &meta, &bytes),
        "/v1/embeddings" => embeddings::handle(sim, &meta, &bytes),
        "/v1/responses" => responses::handle(sim, &meta, &bytes),
        other => Err(ApiError::invalid(
            format!("Unsupported batch endpoint '{other}'."),
            Some("url"),
            None,
        )),
    };
    match result {
        Ok(Reply::Json(json)) => match serde_json::from_slice(&json) {
            Ok(v) => (StatusCode::OK, v),
            Err(e) => error_body(&ApiError::internal(e.to_string())),
        },
        Ok(_) => error_body(&ApiError::internal("unexpected non-JSON reply".to_owned())),
        Err(e) => error_body(&e),
    }
}

fn error_body(err: &ApiError) -> (StatusCode, Value) {
    let body = serde_json::from_slice(&err.body()).unwrap_or(Value::Null);
    (err.status, body)
}

/// Deterministic position of a result line: the first 8 bytes of SHA-256(custom_id).
pub fn order_key(custom_id: &str) -> u64 {
    let digest = Sha256::digest(custom_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

fn concat(mut lines: Vec<(u64, Vec<u8>)>) -> Vec<u8> {
    lines.sort_by_key(|(k, _)| *k);
    lines.into_iter().flat_map(|(_, l)| l).collect()
}

/// Validates batch `metadata` (at most 16 string pairs, keys <= 64, values <= 512 chars).
pub fn check_metadata(metadata: Option<Value>) -> Result<Option<Value>, ApiError> {
    let bad = |msg: &str| {
        Err(ApiError::invalid(
            format!("Invalid 'metadata': {msg}"),
            Some("metadata"),
            Some("invalid_value"),
        ))
    };
    match metadata {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => {
            if map.len() > 16 {
                return bad("at most 16 key-value pairs are allowed.");
            }
            for (k, v) in &map {
                match v.as_str() {
                    Some(s) if k.chars().count() <= 64 && s.chars().count() <= 512 => {}
                    Some(_) => return bad("keys are limited to 64 and values to 512 characters."),
                    None => return bad("values must be strings."),
                }
            }
            Ok(Some(Value::Object(map)))
        }
        Some(_) => bad("expected an object of string values."),
    }
}

/// Validates `output_expires_after`; returns the lifetime of the result files.
pub fn check_output_expiry(value: Option<&Value>) -> Result<u64, ApiError> {
    let Some(v) = value.filter(|v| !v.is_null()) else {
        return Ok(BATCH_FILE_TTL);
    };
    let anchor_ok = v["anchor"].as_str() == Some("created_at");
    match v["seconds"].as_u64() {
        Some(s) if anchor_ok && EXPIRY_RANGE.contains(&s) => Ok(s),
        _ => Err(ApiError::invalid(
            "Invalid 'output_expires_after': expected {\"anchor\": \"created_at\", \"seconds\": 3600..2592000}.",
            Some("output_expires_after"),
            Some("invalid_value"),
        )),
    }
}
