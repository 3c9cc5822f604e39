//! The Vertex AI batch prediction wire format, pure (provider-apis.md 3.6): GCS JSONL input
//! lines, the `batchPredictionJobs` create body, the job resource and its states, and
//! prediction lines mapped back to jobs.
//!
//! Correlation: output lines come back in any order and no per-line id is documented for
//! GCS input; an extra top-level key (`"key"`) may fail the row (UNCONFIRMED; the simulator
//! fails it). The output echoes the whole `request`, so the job id rides inside it as
//! `request.labels` (a Vertex-only `GenerateContentRequest` field) and is read back from
//! the echo. That Vertex echoes `labels` is SECONDARY (reference [S63]); a line whose echo
//! lacks them is unreadable, so its job stays open and is requeued, never misattributed.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::providers::{BatchState, LineOutcome, UpstreamBatch};

/// The label holding a job id that is already a valid GCP label value.
pub const JOB_LABEL: &str = "sluice_job";
/// Prefix of the labels holding a hex-encoded job id in pieces (`sluice_job_x0`, ...),
/// for ids a label value cannot hold (upper case, other characters, over 63 characters).
const HEX_LABEL: &str = "sluice_job_x";
/// Longest GCP label value.
const LABEL_MAX: usize = 63;

/// The model resource of a Gemini model id.
pub fn model_resource(model: &str) -> String {
    format!("publishers/google/models/{model}")
}

/// Whether `s` can be a GCP label value as it is: lower-case ASCII letters, digits, `_`
/// and `-`, at most 63 characters (international letters are allowed too, but not needed).
fn label_safe(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= LABEL_MAX
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The labels that carry `id`: as it is when it is a valid label value (Sluice's
/// `job_<hex>` ids are), else hex in 62-character pieces.
fn id_labels(id: &str) -> Vec<(String, String)> {
    if label_safe(id) {
        return vec![(JOB_LABEL.to_owned(), id.to_owned())];
    }
    let hex = hex::encode(id.as_bytes());
    hex.as_bytes()
        .chunks(LABEL_MAX - 1)
        .enumerate()
        .map(|(i, c)| {
            (
                format!("{HEX_LABEL}{i}"),
                String::from_utf8_lossy(c).into_owned(),
            )
        })
        .collect()
}

/// The job id the labels of an echoed request carry.
fn id_from_labels(labels: &BTreeMap<String, String>) -> Option<String> {
    if let Some(id) = labels.get(JOB_LABEL) {
        return Some(id.clone());
    }
    let mut hex = String::new();
    for i in 0.. {
        match labels.get(&format!("{HEX_LABEL}{i}")) {
            Some(piece) => hex.push_str(piece),
            None => break,
        }
    }
    String::from_utf8(hex::decode(hex).ok()?)
        .ok()
        .filter(|s| !s.is_empty())
}

/// One input line, `{"request": <native request with the id in labels>}` and a newline.
///
/// `native_request` is a Gemini `GenerateContentRequest` (JSON object). OpenAI chat
/// completion bodies are translated before this (`gemini::translate::request_from_openai`,
/// wired in by the encoder). Labels the request already has are kept. Raw newlines in a
/// JSON body can only be insignificant whitespace, so they become spaces. A body that is
/// not a JSON object (the gateway parses bodies at ingress, so this should not happen)
/// yields a request with only the labels: Vertex fails that row and the job is requeued.
pub fn input_line(id: &str, native_request: &[u8]) -> Vec<u8> {
    let mut fields: BTreeMap<String, Box<RawValue>> =
        serde_json::from_slice(native_request).unwrap_or_default();
    let mut labels: BTreeMap<String, String> = fields
        .get("labels")
        .and_then(|l| serde_json::from_str(l.get()).ok())
        .unwrap_or_default();
    labels.retain(|k, _| k != JOB_LABEL && !k.starts_with(HEX_LABEL));
    labels.extend(id_labels(id));
    if let Ok(raw) = serde_json::value::to_raw_value(&labels) {
        fields.insert("labels".to_owned(), raw);
    }
    let request = serde_json::to_vec(&fields).unwrap_or_else(|_| b"{}".to_vec());
    let mut out = Vec::with_capacity(request.len() + 14);
    out.extend_from_slice(b"{\"request\":");
    out.extend(
        request
            .iter()
            .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
    );
    out.extend_from_slice(b"}\n");
    out
}

/// The `POST .../batchPredictionJobs` body. `displayName` is the flush id: how a restart
/// finds a job whose create answer was lost.
pub fn create_request(flush_id: &str, model: &str, input_uri: &str, output_prefix: &str) -> Bytes {
    Bytes::from(
        serde_json::json!({
            "displayName": flush_id,
            "model": model_resource(model),
            "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": [input_uri]}},
            "outputConfig": {"predictionsFormat": "jsonl",
                             "gcsDestination": {"outputUriPrefix": output_prefix}},
        })
        .to_string(),
    )
}

/// The parts of a `BatchPredictionJob` Sluice acts on.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    /// `projects/{number}/locations/{l}/batchPredictionJobs/{id}`.
    pub name: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub error: Option<RpcStatus>,
    #[serde(default)]
    pub output_info: Option<OutputInfo>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct RpcStatus {
    #[serde(default)]
    pub code: i64,
    #[serde(default)]
    pub message: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OutputInfo {
    #[serde(default)]
    pub gcs_output_directory: Option<String>,
}

/// What a job's state means to the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Queued, pending, running, cancelling, paused, updating (or a state not known yet).
    Running,
    /// Succeeded, partially succeeded, cancelled (by us or the 24 h cutoff), expired: its
    /// output, if any, has the answers; rows missing from it did not run.
    Ended,
    /// Failed: with output (every row failed) it is read like an ended job; without, the
    /// job never ran (a limit, a bad input) and is refused as a whole.
    Failed,
}

impl Job {
    pub fn phase(&self) -> Phase {
        match self.state.as_str() {
            "JOB_STATE_SUCCEEDED"
            | "JOB_STATE_PARTIALLY_SUCCEEDED"
            | "JOB_STATE_CANCELLED"
            | "JOB_STATE_EXPIRED" => Phase::Ended,
            "JOB_STATE_FAILED" => Phase::Failed,
            // UNSPECIFIED, QUEUED, PENDING, RUNNING, CANCELLING, PAUSED, UPDATING: wait.
            _ => Phase::Running,
        }
    }

    /// `gs://...` directory the predictions are written to, once the job started.
    pub fn output_dir(&self) -> Option<&str> {
        self.output_info
            .as_ref()?
            .gcs_output_directory
            .as_deref()
            .filter(|d| !d.is_empty())
    }

    /// The provider-neutral view, given the result objects found under the output
    /// directory (`gs://` URIs; empty while running).
    pub fn upstream(self, results: Vec<String>) -> UpstreamBatch {
        let state = match self.phase() {
            Phase::Running => BatchState::Running,
            Phase::Ended => BatchState::Ended { results },
            Phase::Failed if !results.is_empty() => BatchState::Ended { results },
            // No line is named: the engine backs off and requeues every job.
            Phase::Failed => BatchState::Refused { lines: Vec::new() },
        };
        UpstreamBatch {
            id: self.name,
            status: self.state,
            state,
        }
    }
}

/// A page of `batchPredictionJobs.list`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobList {
    #[serde(default)]
    pub batch_prediction_jobs: Vec<Job>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// The list filter naming one display name (AIP-160 syntax; UNCONFIRMED that
/// `batchPredictionJobs.list` accepts it exactly so: the client also checks the name).
pub fn display_name_filter(display_name: &str) -> String {
    let escaped = display_name.replace('\\', "\\\\").replace('"', "\\\"");
    format!("display_name=\"{escaped}\"")
}

#[derive(Deserialize)]
struct RawLine<'a> {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    request: Option<EchoedRequest>,
    #[serde(borrow, default)]
    response: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct EchoedRequest {
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// Parses one prediction line into (job id, outcome).
///
/// * `status` empty with a `response`: answered, 200, the native `GenerateContentResponse`
///   (translated for OpenAI callers by `gemini::translate::response_to_openai`).
/// * `status` set: the row failed. What `status` holds is UNCONFIRMED (the simulator puts
///   free text there). A `google.rpc.Status` JSON whose code says the request itself is
///   wrong (INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, FAILED_PRECONDITION,
///   OUT_OF_RANGE, UNIMPLEMENTED) is the answer (4xx, Google error envelope); anything
///   else is `NotRun`, so the job is requeued and, near its deadline, sent interactively,
///   where the real status comes back. A guessed error is never handed to a caller.
pub fn parse_line(line: &[u8]) -> Result<(String, LineOutcome), String> {
    let raw: RawLine = serde_json::from_slice(line)
        .map_err(|e| format!("unreadable Vertex prediction line: {e}"))?;
    let id = raw
        .request
        .as_ref()
        .and_then(|r| id_from_labels(&r.labels))
        .ok_or("Vertex prediction line without the sluice_job label in its echoed request")?;
    let status = raw.status.unwrap_or_default();
    if status.is_empty() {
        return Ok(match raw.response {
            Some(body) => (
                id,
                LineOutcome::Answered {
                    status: 200,
                    body: Bytes::copy_from_slice(body.get().as_bytes()),
                },
            ),
            None => (
                id,
                LineOutcome::NotRun {
                    code: "vertex_no_response".into(),
                    message: "the prediction line has neither a status nor a response".into(),
                },
            ),
        });
    }
    if let Some((http, name, message)) = definite_error(&status) {
        let body = serde_json::json!({"error": {"code": http, "message": message, "status": name}});
        return Ok((
            id,
            LineOutcome::Answered {
                status: http,
                body: Bytes::from(body.to_string()),
            },
        ));
    }
    Ok((
        id,
        LineOutcome::NotRun {
            code: "vertex_row_failed".into(),
            message: status,
        },
    ))
}

/// A row status that is a `google.rpc.Status` blaming the request: (HTTP status, code
/// name, message).
fn definite_error(status: &str) -> Option<(u16, &'static str, String)> {
    let s: RpcStatus = serde_json::from_str(status).ok()?;
    let (http, name) = match s.code {
        3 => (400, "INVALID_ARGUMENT"),
        5 => (404, "NOT_FOUND"),
        7 => (403, "PERMISSION_DENIED"),
        9 => (400, "FAILED_PRECONDITION"),
        11 => (400, "OUT_OF_RANGE"),
        12 => (501, "UNIMPLEMENTED"),
        _ => return None,
    };
    Some((http, name, s.message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn echo(line: &[u8], response: Value, status: &str) -> Vec<u8> {
        let v: Value = serde_json::from_slice(line).unwrap();
        serde_json::to_vec(
            &json!({"status": status, "processed_time": "2026-01-01T00:00:00Z",
            "request": v["request"], "response": response}),
        )
        .unwrap()
    }

    #[test]
    fn input_lines_carry_the_id_in_labels_and_keep_the_request() {
        let body = b"{\n \"contents\": [{\"role\": \"user\", \"parts\": [{\"text\": \"a\\nb\"}]}],\n \"labels\": {\"team\": \"x\"}, \"generationConfig\": {\"temperature\": 0.2}}";
        let line = input_line("job_0a1b", body);
        assert!(line.ends_with(b"}\n"));
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 1, "only `request` at the top");
        assert_eq!(
            v["request"]["labels"],
            json!({"team": "x", "sluice_job": "job_0a1b"})
        );
        assert_eq!(v["request"]["contents"][0]["parts"][0]["text"], "a\nb");
        assert_eq!(v["request"]["generationConfig"]["temperature"], 0.2);
        let (id, _) = parse_line(&echo(&line, json!({"candidates": []}), "")).unwrap();
        assert_eq!(id, "job_0a1b");
    }

    #[test]
    fn ids_no_label_can_hold_round_trip_through_hex_pieces() {
        for id in ["Job-UPPER", "job.with.dots", &"j".repeat(100), "é"] {
            let line = input_line(id, br#"{"contents": []}"#);
            let v: Value = serde_json::from_slice(&line).unwrap();
            let labels = v["request"]["labels"].as_object().unwrap();
            assert!(labels.get(JOB_LABEL).is_none());
            for (k, val) in labels {
                assert!(
                    label_safe(k) && label_safe(val.as_str().unwrap()),
                    "{k}={val}"
                );
            }
            assert_eq!(parse_line(&echo(&line, json!({}), "")).unwrap().0, id);
        }
        // Not a JSON object: only the labels, still matched.
        let line = input_line("job_1", b"[1]");
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["request"], json!({"labels": {"sluice_job": "job_1"}}));
    }

    #[test]
    fn prediction_lines_map_to_outcomes() {
        let ok = br#"{"status":"","processed_time":"t","request":{"contents":[],"labels":{"sluice_job":"job_1"}},"response":{"candidates":[{"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":9}}}"#;
        assert_eq!(
            parse_line(ok).unwrap(),
            (
                "job_1".to_owned(),
                LineOutcome::Answered {
                    status: 200,
                    body: Bytes::from_static(
                        br#"{"candidates":[{"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":9}}"#
                    )
                }
            )
        );
        let text =
            br#"{"status":"Internal error occurred.","request":{"labels":{"sluice_job":"job_2"}}}"#;
        assert!(matches!(
            parse_line(text).unwrap().1,
            LineOutcome::NotRun { ref code, ref message } if code == "vertex_row_failed" && message == "Internal error occurred."
        ));
        let invalid = br#"{"status":"{\"code\":3,\"message\":\"contents is required\"}","request":{"labels":{"sluice_job":"job_3"}}}"#;
        let (_, o) = parse_line(invalid).unwrap();
        let LineOutcome::Answered { status, body } = o else {
            panic!("{o:?}")
        };
        assert_eq!(status, 400);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");
        assert!(matches!(
            parse_line(br#"{"status":"","request":{"labels":{"sluice_job":"j"}}}"#)
                .unwrap()
                .1,
            LineOutcome::NotRun { .. }
        ));
        assert!(parse_line(br#"{"status":"","request":{"contents":[]},"response":{}}"#).is_err());
        assert!(parse_line(b"nope").is_err());
    }

    #[test]
    fn job_states_map_to_the_engine_view() {
        let job = |state: &str, dir: Option<&str>| -> Job {
            let mut v = json!({"name": "projects/1/locations/l/batchPredictionJobs/9",
                               "displayName": "flush_1", "state": state});
            if let Some(d) = dir {
                v["outputInfo"] = json!({"gcsOutputDirectory": d});
            }
            serde_json::from_value(v).unwrap()
        };
        for s in [
            "JOB_STATE_QUEUED",
            "JOB_STATE_PENDING",
            "JOB_STATE_RUNNING",
            "JOB_STATE_CANCELLING",
            "JOB_STATE_PAUSED",
            "JOB_STATE_UPDATING",
            "JOB_STATE_SOMETHING_NEW",
        ] {
            assert_eq!(
                job(s, None).upstream(vec![]).state,
                BatchState::Running,
                "{s}"
            );
        }
        let r = vec!["gs://b/o/predictions.jsonl".to_owned()];
        for s in [
            "JOB_STATE_SUCCEEDED",
            "JOB_STATE_PARTIALLY_SUCCEEDED",
            "JOB_STATE_CANCELLED",
            "JOB_STATE_FAILED",
        ] {
            let b = job(s, Some("gs://b/o")).upstream(r.clone());
            assert_eq!(b.state, BatchState::Ended { results: r.clone() }, "{s}");
            assert_eq!(b.status, s);
            assert_eq!(b.id, "projects/1/locations/l/batchPredictionJobs/9");
        }
        let expired = job("JOB_STATE_EXPIRED", None);
        assert_eq!(expired.output_dir(), None);
        assert_eq!(
            expired.upstream(vec![]).state,
            BatchState::Ended { results: vec![] }
        );
        assert_eq!(
            job("JOB_STATE_FAILED", None).upstream(vec![]).state,
            BatchState::Refused { lines: vec![] }
        );
    }

    #[test]
    fn create_body_and_filter() {
        let v: Value = serde_json::from_slice(&create_request(
            "flush_1",
            "gemini-2.5-flash",
            "gs://b/in/flush_1.jsonl",
            "gs://b/out/flush_1/",
        ))
        .unwrap();
        assert_eq!(v["displayName"], "flush_1");
        assert_eq!(v["model"], "publishers/google/models/gemini-2.5-flash");
        assert_eq!(
            v["inputConfig"]["gcsSource"]["uris"][0],
            "gs://b/in/flush_1.jsonl"
        );
        assert_eq!(
            v["outputConfig"]["gcsDestination"]["outputUriPrefix"],
            "gs://b/out/flush_1/"
        );
        assert_eq!(display_name_filter("a\"b"), r#"display_name="a\"b""#);
    }
}
