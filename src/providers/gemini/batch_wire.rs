//! The Gemini Batch Mode wire format, pure (provider-apis.md 3.3, 3.4): input lines and
//! inline entries, the create body, the Operation envelope mapped onto [`UpstreamBatch`],
//! and result lines mapped back to jobs by key.
//!
//! Every flush is encoded as JSONL file lines `{"key": <job id>, "request": ...}` (the
//! engine streams them); a flush small enough to go inline has each line rewritten into an
//! `InlinedRequest` `{"request": ..., "metadata": {"key": <job id>}}`. Inline responses are
//! turned into the same lines as a result file, so one parser serves both.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::providers::{BatchState, LineOutcome, UpstreamBatch};

/// One input file line for job `key`: its `GenerateContentRequest`
/// ([`super::batch_request`]), then a newline.
pub fn file_line(key: &str, request: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(request.len() + key.len() + 24);
    out.extend_from_slice(b"{\"key\":");
    out.extend_from_slice(Value::from(key).to_string().as_bytes());
    out.extend_from_slice(b",\"request\":");
    out.extend_from_slice(request);
    out.extend_from_slice(b"}\n");
    out.freeze()
}

#[derive(Deserialize)]
struct Line<'a> {
    key: String,
    #[serde(borrow)]
    request: &'a RawValue,
}

/// A file line as an `InlinedRequest`.
pub fn inline_entry(line: &[u8]) -> Result<Bytes, String> {
    let l: Line = serde_json::from_slice(line).map_err(|e| format!("bad input line: {e}"))?;
    let mut out = BytesMut::with_capacity(line.len() + 24);
    out.extend_from_slice(b"{\"request\":");
    out.extend_from_slice(l.request.get().as_bytes());
    out.extend_from_slice(b",\"metadata\":{\"key\":");
    out.extend_from_slice(Value::from(l.key).to_string().as_bytes());
    out.extend_from_slice(b"}}");
    Ok(out.freeze())
}

/// The create body of an inline batch, around its comma-separated entries.
pub fn inline_head(display_name: &str) -> Bytes {
    let name = Value::from(display_name).to_string();
    Bytes::from(format!(
        "{{\"batch\":{{\"displayName\":{name},\"inputConfig\":{{\"requests\":{{\"requests\":["
    ))
}

pub const INLINE_TAIL: &[u8] = b"]}}}}";

/// The create body of a batch whose input is an uploaded file.
pub fn file_create(display_name: &str, file_name: &str) -> Bytes {
    Bytes::from(
        json!({"batch": {"displayName": display_name, "inputConfig": {"fileName": file_name}}})
            .to_string(),
    )
}

/// The resumable-upload start body.
pub fn upload_start(display_name: &str) -> Bytes {
    Bytes::from(json!({"file": {"displayName": display_name}}).to_string())
}

/// `{"file": {"name": "files/..."}}`, the upload's final answer.
pub fn uploaded_name(body: &[u8]) -> Result<String, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("unreadable file: {e}"))?;
    v.pointer("/file/name")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| "the upload answer names no file".to_owned())
}

/// The parts of an Operation Sluice acts on, in either ProtoJSON spelling.
struct Operation<'a> {
    name: String,
    meta: Option<&'a Value>,
    done: bool,
    error: Option<&'a Value>,
    response: Option<&'a Value>,
}

fn field<'a>(v: &'a Value, camel: &str, snake: &str) -> Option<&'a Value> {
    v.get(camel)
        .or_else(|| v.get(snake))
        .filter(|x| !x.is_null())
}

fn operation(v: &Value) -> Result<Operation<'_>, String> {
    let meta = v.get("metadata").filter(|m| m.is_object());
    let name = v
        .get("name")
        .or_else(|| meta.and_then(|m| m.get("name")))
        .and_then(Value::as_str)
        .ok_or_else(|| "a batch operation without a name".to_owned())?;
    Ok(Operation {
        name: name.to_owned(),
        meta,
        // ProtoJSON omits `false`: a missing `done` is not done.
        done: v.get("done").and_then(Value::as_bool).unwrap_or(false),
        error: v.get("error").filter(|e| !e.is_null()),
        response: v.get("response").filter(|r| !r.is_null()),
    })
}

/// Where a succeeded batch's answers are: its result file, or for inline output the
/// batch itself (read again by [`crate::providers::gemini::Batches::results`]).
fn output_location(op: &Operation<'_>) -> Vec<String> {
    let output = op
        .meta
        .and_then(|m| m.get("output"))
        .filter(|o| o.is_object())
        .or(op.response);
    let Some(output) = output else {
        return Vec::new();
    };
    if let Some(f) = field(output, "responsesFile", "responses_file").and_then(Value::as_str) {
        return vec![f.to_owned()];
    }
    if field(output, "inlinedResponses", "inlined_responses").is_some() {
        return vec![op.name.clone()];
    }
    Vec::new()
}

/// An Operation (create, get, list item) as the engine sees it. States are read in both
/// spellings (`BATCH_STATE_*` on the wire, `JOB_STATE_*` in the SDKs and docs).
pub fn parse_batch(body: &[u8]) -> Result<(UpstreamBatch, Option<String>), String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("unreadable batch operation: {e}"))?;
    parse_operation(&v)
}

fn parse_operation(v: &Value) -> Result<(UpstreamBatch, Option<String>), String> {
    let op = operation(v)?;
    let state = op
        .meta
        .and_then(|m| m.get("state"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let state = state
        .strip_prefix("BATCH_STATE_")
        .or_else(|| state.strip_prefix("JOB_STATE_"))
        .unwrap_or(state);
    let display = op
        .meta
        .and_then(|m| field(m, "displayName", "display_name"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    // Without a known state, a finished Operation says which way it went.
    let state = match state {
        "PENDING" | "RUNNING" | "SUCCEEDED" | "FAILED" | "CANCELLED" | "EXPIRED" => state,
        _ if !op.done => "RUNNING",
        _ if op.response.is_some() => "SUCCEEDED",
        _ if op.error.and_then(|e| e.get("code")).and_then(Value::as_i64) == Some(1) => "CANCELLED",
        _ => "FAILED",
    };
    // The status words of the metrics are OpenAI's, a closed set across providers.
    let (status, state) = match state {
        "SUCCEEDED" => (
            "completed",
            BatchState::Ended {
                results: output_location(&op),
            },
        ),
        // The batch as a whole failed (the reason is only in `error`): its jobs go back to
        // the queue after a backoff, and the deadline fallback answers them in time.
        "FAILED" => ("failed", BatchState::Refused { lines: Vec::new() }),
        // No results at all: every job is put back and sent again.
        "CANCELLED" => (
            "cancelled",
            BatchState::Ended {
                results: Vec::new(),
            },
        ),
        "EXPIRED" => (
            "expired",
            BatchState::Ended {
                results: Vec::new(),
            },
        ),
        "PENDING" => ("validating", BatchState::Running),
        _ => ("in_progress", BatchState::Running),
    };
    Ok((
        UpstreamBatch {
            id: op.name,
            status: status.to_owned(),
            state,
        },
        display,
    ))
}

/// A page of `GET batches`: each batch with its `displayName`, and the next page token.
pub type BatchPage = (Vec<(UpstreamBatch, Option<String>)>, Option<String>);

pub fn parse_list(body: &[u8]) -> Result<BatchPage, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("unreadable batch list: {e}"))?;
    let ops = v
        .get("operations")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let page = ops
        .iter()
        .map(parse_operation)
        .collect::<Result<Vec<_>, _>>()?;
    let next = field(&v, "nextPageToken", "next_page_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    Ok((page, next))
}

/// The inline responses of a succeeded batch as result-file lines
/// (`{"key", "response" | "error"}`), each keyed by its echoed `metadata.key`; entries
/// without a key cannot be matched to a job and are left out (their jobs are resent).
pub fn inline_result_lines(body: &[u8]) -> Result<Bytes, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("unreadable batch operation: {e}"))?;
    let op = operation(&v)?;
    let output = op
        .meta
        .and_then(|m| m.get("output"))
        .filter(|o| o.is_object())
        .or(op.response);
    let items = output
        .and_then(|o| field(o, "inlinedResponses", "inlined_responses"))
        .and_then(|r| field(r, "inlinedResponses", "inlined_responses"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut out = BytesMut::new();
    for item in items {
        let Some(key) = item.pointer("/metadata/key").and_then(Value::as_str) else {
            continue;
        };
        let mut line = json!({ "key": key });
        if let Some(r) = item.get("response").filter(|r| !r.is_null()) {
            line["response"] = r.clone();
        } else if let Some(e) = item.get("error").filter(|e| !e.is_null()) {
            line["error"] = e.clone();
        } else {
            continue;
        }
        out.extend_from_slice(line.to_string().as_bytes());
        out.extend_from_slice(b"\n");
    }
    Ok(out.freeze())
}

#[derive(Deserialize)]
struct ResultLine<'a> {
    key: String,
    #[serde(borrow, default)]
    response: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<RpcStatus>,
}

#[derive(Deserialize)]
struct RpcStatus {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
}

/// One result line, matched by its `key` (never by position): a response → 200 with the
/// native `GenerateContentResponse` (translated for the caller later, when the job's model
/// is known); an error → the status its gRPC code implies, with a Google error envelope,
/// or not run (cancelled, deadline, quota, unavailable: sent again). A bare response without
/// a key cannot be matched and is an error.
pub fn parse_line(line: &[u8]) -> Result<(String, LineOutcome), String> {
    let l: ResultLine =
        serde_json::from_slice(line).map_err(|e| format!("unreadable batch result line: {e}"))?;
    let outcome = match (l.response, l.error) {
        (Some(r), _) => LineOutcome::Answered {
            status: 200,
            body: Bytes::copy_from_slice(r.get().as_bytes()),
        },
        (None, Some(e)) => match grpc(e.code) {
            Grpc::NotRun(name) => LineOutcome::NotRun {
                code: name.to_ascii_lowercase(),
                message: e.message,
            },
            Grpc::Http(status, name) => LineOutcome::Answered {
                status,
                body: Bytes::from(
                    json!({"error": {"code": status, "message": e.message, "status": name}})
                        .to_string(),
                ),
            },
        },
        (None, None) => return Err(format!("result line {} has no response", l.key)),
    };
    Ok((l.key, outcome))
}

enum Grpc {
    NotRun(&'static str),
    Http(u16, &'static str),
}

/// A `google.rpc.Status` code: gRPC codes mapped to HTTP as Google's APIs do; a code that
/// already looks like an HTTP status is taken as one.
fn grpc(code: i64) -> Grpc {
    match code {
        1 => Grpc::NotRun("CANCELLED"),
        4 => Grpc::NotRun("DEADLINE_EXCEEDED"),
        8 => Grpc::NotRun("RESOURCE_EXHAUSTED"),
        14 => Grpc::NotRun("UNAVAILABLE"),
        3 => Grpc::Http(400, "INVALID_ARGUMENT"),
        5 => Grpc::Http(404, "NOT_FOUND"),
        6 => Grpc::Http(409, "ALREADY_EXISTS"),
        7 => Grpc::Http(403, "PERMISSION_DENIED"),
        9 => Grpc::Http(400, "FAILED_PRECONDITION"),
        10 => Grpc::Http(409, "ABORTED"),
        11 => Grpc::Http(400, "OUT_OF_RANGE"),
        12 => Grpc::Http(501, "UNIMPLEMENTED"),
        16 => Grpc::Http(401, "UNAUTHENTICATED"),
        400 => Grpc::Http(400, "INVALID_ARGUMENT"),
        401 => Grpc::Http(401, "UNAUTHENTICATED"),
        403 => Grpc::Http(403, "PERMISSION_DENIED"),
        404 => Grpc::Http(404, "NOT_FOUND"),
        429 => Grpc::NotRun("RESOURCE_EXHAUSTED"),
        503 => Grpc::NotRun("UNAVAILABLE"),
        504 => Grpc::NotRun("DEADLINE_EXCEEDED"),
        _ => Grpc::Http(500, "INTERNAL"),
    }
}

/// The `RetryInfo.retryDelay` of a Google error body (`"41s"`, `"1.5s"`): Google sends no
/// `Retry-After` header on a refused batch create.
pub fn retry_delay(body: &str) -> Option<Duration> {
    let v: Value = serde_json::from_str(body).ok()?;
    let details = v.pointer("/error/details")?.as_array()?;
    details.iter().find_map(|d| {
        let s = d.get("retryDelay")?.as_str()?.strip_suffix('s')?;
        let secs: f64 = s.parse().ok()?;
        (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
    })
}
