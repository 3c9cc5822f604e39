//! The Anthropic Message Batches wire format, pure (provider-apis.md 2.4): the create body
//! built line by line, the MessageBatch object mapped onto the common [`UpstreamBatch`] view, and
//! result lines mapped back to jobs.

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::providers::{BatchState, LineOutcome, UpstreamBatch};

/// One request of the create body: `{"custom_id": ..., "params": <Messages params>}`.
/// Job ids (`job_` + hex) already match Anthropic's `^[a-zA-Z0-9_-]{1,64}$`.
pub fn request_entry(custom_id: &str, params: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(params.len() + custom_id.len() + 32);
    out.extend_from_slice(b"{\"custom_id\":");
    out.extend_from_slice(serde_json::Value::from(custom_id).to_string().as_bytes());
    out.extend_from_slice(b",\"params\":");
    out.extend_from_slice(params);
    out.extend_from_slice(b"}");
    out.freeze()
}

pub const BODY_HEAD: &[u8] = b"{\"requests\":[";
pub const BODY_TAIL: &[u8] = b"]}";

#[derive(Deserialize)]
struct MessageBatch {
    id: String,
    processing_status: String,
    #[serde(default)]
    results_url: Option<String>,
    #[serde(default)]
    request_counts: Option<Counts>,
    #[serde(default)]
    created_at: Option<String>,
}

#[derive(Deserialize, Default)]
struct Counts {
    #[serde(default)]
    processing: u64,
    #[serde(default)]
    succeeded: u64,
    #[serde(default)]
    errored: u64,
    #[serde(default)]
    canceled: u64,
    #[serde(default)]
    expired: u64,
}

/// A MessageBatch as the engine sees it: `ended` has its answers at `results_url`.
pub fn parse_batch(body: &[u8]) -> Result<(UpstreamBatch, BatchFacts), String> {
    let b: MessageBatch =
        serde_json::from_slice(body).map_err(|e| format!("unreadable message batch: {e}"))?;
    let c = b.request_counts.unwrap_or_default();
    let facts = BatchFacts {
        requests: c.processing + c.succeeded + c.errored + c.canceled + c.expired,
        created_at: b.created_at.clone(),
    };
    // The status words of the metrics are OpenAI's, a closed set across providers.
    let (status, state) = match b.processing_status.as_str() {
        "ended" => (
            "completed",
            BatchState::Ended {
                results: b.results_url.into_iter().collect(),
            },
        ),
        "canceling" => ("cancelling", BatchState::Running),
        _ => ("in_progress", BatchState::Running),
    };
    Ok((
        UpstreamBatch {
            id: b.id,
            status: status.to_owned(),
            state,
        },
        facts,
    ))
}

/// What reconciliation after a crash can match a batch on (Anthropic batches carry no
/// metadata): its request count and creation time.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchFacts {
    pub requests: u64,
    pub created_at: Option<String>,
}

#[derive(Deserialize)]
struct List {
    data: Vec<Box<RawValue>>,
    #[serde(default)]
    has_more: bool,
    #[serde(default)]
    last_id: Option<String>,
}

/// One page of a batch listing and the cursor of the next page, if any.
pub type BatchPage = (Vec<(UpstreamBatch, BatchFacts)>, Option<String>);

/// A page of `GET /v1/messages/batches`: the batches and the cursor for the next page.
pub fn parse_list(body: &[u8]) -> Result<BatchPage, String> {
    let l: List =
        serde_json::from_slice(body).map_err(|e| format!("unreadable batch list: {e}"))?;
    let batches = l
        .data
        .iter()
        .map(|b| parse_batch(b.get().as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((batches, l.has_more.then_some(l.last_id).flatten()))
}

#[derive(Deserialize)]
struct ResultLine<'a> {
    custom_id: String,
    #[serde(borrow)]
    result: ResultBody<'a>,
}

#[derive(Deserialize)]
struct ResultBody<'a> {
    #[serde(rename = "type")]
    kind: String,
    #[serde(borrow, default)]
    message: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

/// One results line: `succeeded` → the Message as a synchronous call returns it;
/// `errored` → the error envelope with the status it implies; `canceled` / `expired` → not run.
pub fn parse_line(line: &[u8]) -> Result<(String, LineOutcome), String> {
    let l: ResultLine =
        serde_json::from_slice(line).map_err(|e| format!("unreadable batch result line: {e}"))?;
    let outcome = match (l.result.kind.as_str(), l.result.message, l.result.error) {
        ("succeeded", Some(m), _) => LineOutcome::Answered {
            status: 200,
            body: Bytes::copy_from_slice(m.get().as_bytes()),
        },
        ("errored", _, Some(e)) => {
            #[derive(Deserialize)]
            struct Env {
                error: Inner,
            }
            #[derive(Deserialize)]
            struct Inner {
                #[serde(rename = "type")]
                kind: String,
            }
            let status =
                serde_json::from_str::<Env>(e.get()).map_or(500, |env| status_of(&env.error.kind));
            LineOutcome::Answered {
                status,
                body: Bytes::copy_from_slice(e.get().as_bytes()),
            }
        }
        (kind, _, _) => LineOutcome::NotRun {
            code: kind.to_owned(),
            message: format!("the request was {kind} before it ran"),
        },
    };
    Ok((l.custom_id, outcome))
}

/// The HTTP status an Anthropic `error.type` stands for (provider-apis.md 2.1).
pub fn status_of(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "conflict_error" => 409,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_and_batches() {
        let e = request_entry(
            "job_1",
            br#"{"model":"claude-haiku-4-5","max_tokens":8,"messages":[]}"#,
        );
        let v: serde_json::Value = serde_json::from_slice(&e).unwrap();
        assert_eq!(v["custom_id"], "job_1");
        assert_eq!(v["params"]["max_tokens"], 8);
        let (b, f) = parse_batch(br#"{"id":"msgbatch_1","type":"message_batch","processing_status":"ended","request_counts":{"processing":0,"succeeded":1,"errored":1,"canceled":0,"expired":0},"created_at":"2026-01-01T00:00:00Z","results_url":"http://x/v1/messages/batches/msgbatch_1/results"}"#).unwrap();
        assert!(b.is_terminal());
        assert_eq!(
            b.state,
            BatchState::Ended {
                results: vec!["http://x/v1/messages/batches/msgbatch_1/results".into()]
            }
        );
        assert_eq!(f.requests, 2);
        let (b, _) = parse_batch(
            br#"{"id":"m","processing_status":"in_progress","request_counts":{"processing":3}}"#,
        )
        .unwrap();
        assert!(!b.is_terminal());
    }

    #[test]
    fn result_lines() {
        let ok = br#"{"custom_id":"job_1","result":{"type":"succeeded","message":{"id":"msg_1","type":"message","content":[]}}}"#;
        assert_eq!(
            parse_line(ok).unwrap(),
            (
                "job_1".into(),
                LineOutcome::Answered {
                    status: 200,
                    body: Bytes::from_static(br#"{"id":"msg_1","type":"message","content":[]}"#)
                }
            )
        );
        let err = br#"{"custom_id":"job_2","result":{"type":"errored","error":{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: Field required"},"request_id":"r"}}}"#;
        assert!(matches!(
            parse_line(err).unwrap().1,
            LineOutcome::Answered { status: 400, .. }
        ));
        for kind in ["canceled", "expired"] {
            let line = format!(r#"{{"custom_id":"job_3","result":{{"type":"{kind}"}}}}"#);
            assert!(matches!(
                parse_line(line.as_bytes()).unwrap().1,
                LineOutcome::NotRun { .. }
            ));
        }
    }
}
