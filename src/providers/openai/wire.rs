//! The OpenAI Batch API wire format, pure: JSONL input lines, the create request, the
//! Batch object, and output/error lines mapped back to jobs (provider-apis.md 1.8).

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::providers::{BatchState, LineOutcome, UpstreamBatch};
use crate::types::Endpoint;

/// Metadata key naming the flush a batch carries: how a restart finds a batch it created
/// but never recorded.
pub const FLUSH_METADATA_KEY: &str = "sluice_flush";

/// One input line: `{"custom_id","method":"POST","url","body"}` and a newline. Raw
/// newlines in a JSON body can only be insignificant whitespace, so they become spaces.
pub fn input_line(custom_id: &str, endpoint: Endpoint, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(body.len() + custom_id.len() + 80);
    out.extend_from_slice(b"{\"custom_id\":");
    out.extend_from_slice(serde_json::Value::from(custom_id).to_string().as_bytes());
    out.extend_from_slice(b",\"method\":\"POST\",\"url\":\"");
    out.extend_from_slice(endpoint.path().as_bytes());
    out.extend_from_slice(b"\",\"body\":");
    out.extend(
        body.iter()
            .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
    );
    out.extend_from_slice(b"}\n");
    out.freeze()
}

/// The `POST /v1/batches` body.
pub fn create_request(input_file_id: &str, endpoint: Endpoint, flush_id: &str) -> Bytes {
    Bytes::from(
        serde_json::json!({
            "input_file_id": input_file_id,
            "endpoint": endpoint.path(),
            "completion_window": "24h",
            "metadata": { FLUSH_METADATA_KEY: flush_id },
        })
        .to_string(),
    )
}

/// The parts of a Batch object Sluice acts on.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Batch {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub output_file_id: Option<String>,
    #[serde(default)]
    pub error_file_id: Option<String>,
    #[serde(default)]
    pub errors: Option<BatchErrors>,
    #[serde(default)]
    pub metadata: Option<std::collections::HashMap<String, String>>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct BatchErrors {
    #[serde(default)]
    pub data: Vec<BatchError>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct BatchError {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub line: Option<u64>,
}

impl Batch {
    pub fn flush_id(&self) -> Option<&str> {
        self.metadata
            .as_ref()?
            .get(FLUSH_METADATA_KEY)
            .map(String::as_str)
    }

    pub fn is_terminal(&self) -> bool {
        matches!(
            self.status.as_str(),
            "completed" | "failed" | "expired" | "cancelled"
        )
    }

    /// The provider-neutral view: `failed` is a refusal of the whole input (with the
    /// lines it names); `completed`, `expired` and `cancelled` have result files.
    pub fn upstream(self) -> UpstreamBatch {
        let state = match self.status.as_str() {
            "failed" => BatchState::Refused {
                lines: self
                    .errors
                    .map(|e| {
                        e.data
                            .into_iter()
                            .filter_map(|d| Some((d.line?, d.message.unwrap_or_default())))
                            .collect()
                    })
                    .unwrap_or_default(),
            },
            "completed" | "expired" | "cancelled" => BatchState::Ended {
                results: [self.output_file_id, self.error_file_id]
                    .into_iter()
                    .flatten()
                    .collect(),
            },
            _ => BatchState::Running,
        };
        UpstreamBatch {
            id: self.id,
            status: self.status,
            state,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct BatchList {
    pub data: Vec<Batch>,
    #[serde(default)]
    pub has_more: bool,
    #[serde(default)]
    pub last_id: Option<String>,
}

#[derive(Deserialize)]
struct RawLine<'a> {
    custom_id: String,
    #[serde(borrow, default)]
    response: Option<RawResponse<'a>>,
    #[serde(default)]
    error: Option<RawLineError>,
}

#[derive(Deserialize)]
struct RawResponse<'a> {
    status_code: u16,
    #[serde(borrow)]
    body: &'a RawValue,
}

#[derive(Deserialize)]
struct RawLineError {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// Parses one line of an output or error file into (custom_id, outcome).
pub fn parse_line(line: &[u8]) -> Result<(String, LineOutcome), String> {
    let raw: RawLine =
        serde_json::from_slice(line).map_err(|e| format!("unreadable batch result line: {e}"))?;
    match (raw.response, raw.error) {
        (Some(r), _) => Ok((
            raw.custom_id,
            LineOutcome::Answered {
                status: r.status_code,
                body: Bytes::copy_from_slice(r.body.get().as_bytes()),
            },
        )),
        (None, Some(e)) => Ok((
            raw.custom_id,
            LineOutcome::NotRun {
                code: e.code.unwrap_or_else(|| "unknown".into()),
                message: e.message.unwrap_or_default(),
            },
        )),
        (None, None) => Err(format!(
            "batch result line for {} has neither response nor error",
            raw.custom_id
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_lines_are_single_line_json() {
        let line = input_line(
            "job_1",
            Endpoint::ChatCompletions,
            b"{\n  \"model\": \"m\"\n}",
        );
        assert!(line.ends_with(b"\n"));
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["custom_id"], "job_1");
        assert_eq!(v["method"], "POST");
        assert_eq!(v["url"], "/v1/chat/completions");
        assert_eq!(v["body"]["model"], "m");
        let c: serde_json::Value =
            serde_json::from_slice(&create_request("file-1", Endpoint::Embeddings, "flush_9"))
                .unwrap();
        assert_eq!(c["metadata"]["sluice_flush"], "flush_9");
        assert_eq!(c["completion_window"], "24h");
    }

    #[test]
    fn parses_every_line_shape() {
        let ok = br#"{"id":"batch_req_1","custom_id":"job_1","response":{"status_code":200,"request_id":"r","body":{"id":"chatcmpl-1","usage":{"prompt_tokens":3}}},"error":null}"#;
        let (id, o) = parse_line(ok).unwrap();
        assert_eq!(id, "job_1");
        assert_eq!(
            o,
            LineOutcome::Answered {
                status: 200,
                body: Bytes::from_static(br#"{"id":"chatcmpl-1","usage":{"prompt_tokens":3}}"#)
            }
        );
        let http_err = br#"{"id":"b","custom_id":"job_2","response":{"status_code":400,"request_id":"r","body":{"error":{"message":"bad","type":"invalid_request_error","param":null,"code":null}}},"error":null}"#;
        assert!(matches!(
            parse_line(http_err).unwrap().1,
            LineOutcome::Answered { status: 400, .. }
        ));
        let expired = br#"{"id":"b","custom_id":"job_3","response":null,"error":{"code":"batch_expired","message":"This request could not be executed before the completion window expired."}}"#;
        assert!(
            matches!(parse_line(expired).unwrap().1, LineOutcome::NotRun { ref code, .. } if code == "batch_expired")
        );
        assert!(parse_line(b"{\"custom_id\":\"x\"}").is_err());
        assert!(parse_line(b"nope").is_err());
    }

    #[test]
    fn batch_object_and_metadata() {
        let b: Batch = serde_json::from_str(r#"{"id":"batch_1","object":"batch","status":"failed","output_file_id":null,"errors":{"object":"list","data":[{"code":"invalid_json_line","message":"Line 17","param":null,"line":17}]},"metadata":{"sluice_flush":"flush_1"}}"#).unwrap();
        assert_eq!(b.flush_id(), Some("flush_1"));
        assert!(b.is_terminal());
        assert_eq!(b.errors.unwrap().data[0].line, Some(17));
    }
}
