//! Synthesised SSE for deferred answers: a finished `chat.completion` (or `text_completion`)
//! turned into the chunk stream a streaming call would have produced, ending in
//! `data: [DONE]`, so the official SDKs parse it unchanged; likewise a finished Anthropic
//! `Message` and a finished Responses API `response`, as their named-event streams. Pure.

use bytes::Bytes;
use serde_json::{Map, Value, json};

/// Comment line sent while a streaming deferred request waits (ignored by SSE parsers).
pub const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";
pub const DONE: &[u8] = b"data: [DONE]\n\n";

fn event(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// The events of a stream equivalent to `answer`. `include_usage` adds the final
/// usage-only chunk (as when the client sent `stream_options.include_usage`).
/// An error answer becomes one `data: {"error": ...}` event, which SDKs raise.
pub fn chunks(status: u16, answer: &[u8], include_usage: bool) -> Vec<Bytes> {
    let parsed: Option<Value> = serde_json::from_slice(answer).ok();
    let Some(v) = parsed.filter(|_| (200..300).contains(&status)) else {
        let err = serde_json::from_slice::<Value>(answer)
            .ok()
            .filter(|v| v.get("error").is_some())
            .unwrap_or_else(|| json!({"error": {"message": format!("upstream answered {status}"), "type": "upstream_error", "param": null, "code": null}}));
        return vec![event(&err), Bytes::from_static(DONE)];
    };
    let text_completion = v["object"] == "text_completion";
    let object = if text_completion {
        "text_completion"
    } else {
        "chat.completion.chunk"
    };
    let base = |choices: Value| {
        let mut c = json!({
            "id": v["id"],
            "object": object,
            "created": v["created"],
            "model": v["model"],
            "choices": choices,
        });
        for k in ["system_fingerprint", "service_tier"] {
            if let Some(x) = v.get(k) {
                c[k] = x.clone();
            }
        }
        if include_usage {
            c["usage"] = Value::Null;
        }
        c
    };
    let mut out = Vec::new();
    let choices = v["choices"].as_array().cloned().unwrap_or_default();
    for (i, choice) in choices.iter().enumerate() {
        let index = choice.get("index").cloned().unwrap_or(json!(i));
        if text_completion {
            out.push(event(&base(json!([{"index": index, "text": choice["text"], "logprobs": null, "finish_reason": null}]))));
        } else {
            let msg = &choice["message"];
            out.push(event(&base(json!([{"index": index, "delta": {"role": msg.get("role").cloned().unwrap_or(json!("assistant")), "content": ""}, "logprobs": null, "finish_reason": null}]))));
            let mut delta = serde_json::Map::new();
            for k in ["content", "refusal", "tool_calls", "function_call"] {
                match msg.get(k) {
                    Some(Value::Null) | None => {}
                    Some(Value::Array(calls)) if k == "tool_calls" => {
                        let indexed: Vec<Value> = calls
                            .iter()
                            .enumerate()
                            .map(|(n, c)| {
                                let mut c = c.clone();
                                c["index"] = json!(n);
                                c
                            })
                            .collect();
                        delta.insert(k.into(), Value::Array(indexed));
                    }
                    Some(x) => {
                        delta.insert(k.into(), x.clone());
                    }
                }
            }
            if !delta.is_empty() {
                out.push(event(&base(json!([{"index": index, "delta": delta, "logprobs": null, "finish_reason": null}]))));
            }
        }
        let empty = if text_completion {
            json!({"text": ""})
        } else {
            json!({"delta": {}})
        };
        let mut fin = empty;
        fin["index"] = index;
        fin["logprobs"] = Value::Null;
        fin["finish_reason"] = choice
            .get("finish_reason")
            .cloned()
            .unwrap_or(json!("stop"));
        out.push(event(&base(json!([fin]))));
    }
    if include_usage {
        let mut u = base(json!([]));
        u["usage"] = v.get("usage").cloned().unwrap_or(Value::Null);
        out.push(event(&u));
    }
    out.push(Bytes::from_static(DONE));
    out
}

fn named(name: &str, v: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {v}\n\n"))
}

/// The Anthropic Messages event stream equivalent to a finished `Message` (for
/// `/v1/messages` requests answered from a batch). An error becomes an `error` event.
pub fn anthropic_events(status: u16, answer: &[u8]) -> Vec<Bytes> {
    let parsed: Option<Value> = serde_json::from_slice(answer).ok();
    let Some(msg) = parsed.filter(|_| (200..300).contains(&status)) else {
        let err = serde_json::from_slice::<Value>(answer)
            .ok()
            .filter(|v| v.get("error").is_some())
            .unwrap_or_else(|| json!({"type": "error", "error": {"type": "api_error", "message": format!("upstream answered {status}")}}));
        return vec![named("error", &err)];
    };
    let mut out = Vec::new();
    let mut start = msg.clone();
    start["content"] = json!([]);
    start["stop_reason"] = Value::Null;
    start["stop_sequence"] = Value::Null;
    if let Some(u) = start.get_mut("usage") {
        u["output_tokens"] = json!(0);
    }
    out.push(named(
        "message_start",
        &json!({"type": "message_start", "message": start}),
    ));
    for (i, block) in msg["content"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let (empty, delta) = match block["type"].as_str() {
            Some("text") => (
                json!({"type": "text", "text": ""}),
                json!({"type": "text_delta", "text": block["text"]}),
            ),
            Some("tool_use") => (
                json!({"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}),
                json!({"type": "input_json_delta", "partial_json": block["input"].to_string()}),
            ),
            _ => {
                out.push(named(
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": i, "content_block": block}),
                ));
                out.push(named(
                    "content_block_stop",
                    &json!({"type": "content_block_stop", "index": i}),
                ));
                continue;
            }
        };
        out.push(named(
            "content_block_start",
            &json!({"type": "content_block_start", "index": i, "content_block": empty}),
        ));
        out.push(named(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": i, "delta": delta}),
        ));
        out.push(named(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": i}),
        ));
    }
    out.push(named(
        "message_delta",
        &json!({"type": "message_delta", "delta": {"stop_reason": msg["stop_reason"], "stop_sequence": msg["stop_sequence"]},
                "usage": {"output_tokens": msg["usage"]["output_tokens"]}}),
    ));
    out.push(named("message_stop", &json!({"type": "message_stop"})));
    out
}

/// The Responses API event stream equivalent to a finished `response` object (for
/// `/v1/responses` requests with `stream: true` answered from a batch): `response.created`
/// and `response.in_progress` (status `in_progress`, no output), then each output item
/// opened, filled and closed, then `response.completed`, `response.incomplete` or
/// `response.failed` carrying `answer` unchanged. Events are named (`event: <type>`) and
/// numbered by `sequence_number` from 0; like the real API there is no `data: [DONE]`.
/// A non-2xx answer, or one that is not a response object, becomes one `error` event.
pub fn response_events(status: u16, answer: &[u8]) -> Vec<Bytes> {
    let parsed: Option<Value> = serde_json::from_slice(answer).ok();
    let response = parsed
        .as_ref()
        .filter(|_| (200..300).contains(&status))
        .and_then(Value::as_object)
        // An object without either mark is more likely an error envelope than a response.
        .filter(|r| {
            r.get("object").is_some_and(|o| o == "response")
                || r.get("output").is_some_and(Value::is_array)
        });
    let Some(response) = response else {
        return response_error(status, parsed.as_ref());
    };
    let mut s = Sequence::default();

    // The official SDKs' accumulators start from `response.created` and append to its
    // `output`, so the opening snapshot must be empty and carry nothing final.
    let mut start = response.clone();
    start.insert("status".into(), json!("in_progress"));
    start.insert("output".into(), json!([]));
    for k in ["usage", "completed_at", "error", "incomplete_details"] {
        start.insert(k.into(), Value::Null);
    }
    let start = Value::Object(start);
    for kind in ["response.created", "response.in_progress"] {
        s.push(kind, json!({"response": start}));
    }

    let empty = Vec::new();
    let output = response
        .get("output")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    for (index, item) in output.iter().enumerate() {
        // Indexes stay those of `output` even when an item is skipped: the SDKs key their
        // snapshot by `output_index` and tolerate gaps, not shifts.
        if let Some(item) = item
            .as_object()
            .filter(|i| i.get("type").is_some_and(Value::is_string))
        {
            output_item(&mut s, index, item);
        }
    }

    // No stream event exists for `cancelled`: it ends the stream as a failure.
    let terminal = match response.get("status").and_then(Value::as_str) {
        Some("incomplete") => "response.incomplete",
        Some("failed" | "cancelled") => "response.failed",
        _ => "response.completed",
    };
    s.push(terminal, json!({"response": response}));
    s.out
}

/// Frames numbered in order of emission.
#[derive(Default)]
struct Sequence {
    out: Vec<Bytes>,
    seq: u64,
}

impl Sequence {
    /// `fields` is always a `json!({...})` object; `type` and `sequence_number` are added.
    fn push(&mut self, kind: &str, mut fields: Value) {
        if let Some(m) = fields.as_object_mut() {
            m.insert("type".into(), json!(kind));
            m.insert("sequence_number".into(), json!(self.seq));
        }
        self.seq += 1;
        self.out.push(named(kind, &fields));
    }
}

fn str_field<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    m.get(k).and_then(Value::as_str)
}

/// `m` with `overrides` set: the in-progress copy of an item or part.
fn with(m: &Map<String, Value>, overrides: &[(&str, Value)]) -> Value {
    let mut m = m.clone();
    for (k, v) in overrides {
        m.insert((*k).into(), v.clone());
    }
    Value::Object(m)
}

/// One output item: added (in progress, without the content that the deltas then bring),
/// its content events, done (the item exactly as in the answer).
fn output_item(s: &mut Sequence, index: usize, item: &Map<String, Value>) {
    let item_id = str_field(item, "id").unwrap_or("");
    let kind = str_field(item, "type").unwrap_or("");
    let mut added = match kind {
        "message" => with(item, &[("content", json!([]))]),
        "function_call" => with(item, &[("arguments", json!(""))]),
        _ => Value::Object(item.clone()),
    };
    if item.contains_key("status")
        && let Some(m) = added.as_object_mut()
    {
        m.insert("status".into(), json!("in_progress"));
    }
    s.push(
        "response.output_item.added",
        json!({"output_index": index, "item": added}),
    );
    match kind {
        "message" => {
            let parts = item.get("content").and_then(Value::as_array);
            for (content_index, part) in parts.into_iter().flatten().enumerate() {
                if let Some(part) = part.as_object() {
                    content_part(s, item_id, index, content_index, part);
                }
            }
        }
        "function_call" => {
            // `arguments` is a JSON string; a provider that sent an object gets its text.
            let arguments = match item.get("arguments") {
                Some(Value::String(a)) => a.clone(),
                None | Some(Value::Null) => String::new(),
                Some(other) => other.to_string(),
            };
            if !arguments.is_empty() {
                s.push(
                    "response.function_call_arguments.delta",
                    json!({"item_id": item_id, "output_index": index, "delta": arguments}),
                );
            }
            s.push(
                "response.function_call_arguments.done",
                json!({"item_id": item_id, "output_index": index,
                       "name": str_field(item, "name").unwrap_or(""), "arguments": arguments}),
            );
        }
        // Reasoning and tool items arrive whole in `added`; their own delta events are
        // optional for clients, which read the finished item from `done`.
        _ => {}
    }
    s.push(
        "response.output_item.done",
        json!({"output_index": index, "item": item}),
    );
}

/// One content part of a message: added empty, its text (or refusal) as one delta, done.
fn content_part(
    s: &mut Sequence,
    item_id: &str,
    output_index: usize,
    content_index: usize,
    part: &Map<String, Value>,
) {
    let at = |mut fields: Value| {
        if let Some(m) = fields.as_object_mut() {
            m.insert("item_id".into(), json!(item_id));
            m.insert("output_index".into(), json!(output_index));
            m.insert("content_index".into(), json!(content_index));
        }
        fields
    };
    match str_field(part, "type") {
        Some("output_text") => {
            let text = str_field(part, "text").unwrap_or("");
            let logprobs = part
                .get("logprobs")
                .filter(|l| l.is_array())
                .cloned()
                .unwrap_or(json!([]));
            let opened = with(
                part,
                &[
                    ("text", json!("")),
                    ("annotations", json!([])),
                    ("logprobs", json!([])),
                ],
            );
            s.push("response.content_part.added", at(json!({"part": opened})));
            if !text.is_empty() {
                s.push(
                    "response.output_text.delta",
                    at(json!({"delta": text, "logprobs": logprobs})),
                );
            }
            let annotations = part.get("annotations").and_then(Value::as_array);
            for (annotation_index, annotation) in annotations.into_iter().flatten().enumerate() {
                s.push(
                    "response.output_text.annotation.added",
                    at(json!({"annotation_index": annotation_index, "annotation": annotation})),
                );
            }
            s.push(
                "response.output_text.done",
                at(json!({"text": text, "logprobs": logprobs})),
            );
        }
        Some("refusal") => {
            let refusal = str_field(part, "refusal").unwrap_or("");
            let opened = with(part, &[("refusal", json!(""))]);
            s.push("response.content_part.added", at(json!({"part": opened})));
            if !refusal.is_empty() {
                s.push("response.refusal.delta", at(json!({"delta": refusal})));
            }
            s.push("response.refusal.done", at(json!({"refusal": refusal})));
        }
        // Still opened and closed, so the content indexes of later parts stay aligned.
        _ => s.push("response.content_part.added", at(json!({"part": part}))),
    }
    s.push("response.content_part.done", at(json!({"part": part})));
}

/// The Responses streaming `error` event (code, message, param at the top level) for an
/// answer that is not a response: from its `{"error": {...}}` envelope when it has one
/// (`code`, else `type`, so clients have something to branch on), else a generic one.
fn response_error(status: u16, body: Option<&Value>) -> Vec<Bytes> {
    let envelope = body.and_then(|b| b.get("error")).and_then(Value::as_object);
    let field = |k| envelope.and_then(|e| str_field(e, k));
    let message = field("message").map_or_else(
        || {
            if (200..300).contains(&status) {
                format!("upstream answered {status} without a Responses API object")
            } else {
                format!("upstream answered {status}")
            }
        },
        str::to_owned,
    );
    let code = match envelope {
        Some(_) => field("code").or_else(|| field("type")),
        None => Some("upstream_bad_response"),
    };
    let mut s = Sequence::default();
    s.push(
        "error",
        json!({"code": code, "message": message, "param": field("param")}),
    );
    s.out
}

/// Sent instead of [`KEEP_ALIVE`] on Gemini-native streams: the `google-genai` SDK rejects
/// comment lines, and skips blank ones.
pub const GEMINI_KEEP_ALIVE: &[u8] = b"\n";

/// The `streamGenerateContent?alt=sse` stream equivalent to a finished
/// `GenerateContentResponse`: the whole answer as its one chunk (a complete response is a
/// valid last chunk: it carries the finish reason and the final `usageMetadata`). An
/// error becomes one `data:` event holding the Google error envelope, which the SDK raises.
pub fn gemini_events(status: u16, answer: &[u8]) -> Vec<Bytes> {
    let parsed: Option<Value> = serde_json::from_slice(answer).ok();
    let v = match parsed {
        Some(v) if (200..300).contains(&status) => v,
        Some(v) if v.get("error").is_some() => v,
        _ => {
            json!({"error": {"code": status, "message": format!("upstream answered {status}"), "status": "INTERNAL"}})
        }
    };
    vec![Bytes::from(format!("data: {v}\r\n\r\n"))]
}

#[cfg(test)]
mod tests_responses;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gemini_answer_is_one_chunk_and_errors_stay_google_shaped() {
        let answer = br#"{"candidates":[{"content":{"role":"model","parts":[{"text":"hi"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":3}}"#;
        let events = gemini_events(200, answer);
        assert_eq!(events.len(), 1);
        let text = std::str::from_utf8(&events[0]).unwrap();
        let json = text
            .strip_prefix("data: ")
            .unwrap()
            .strip_suffix("\r\n\r\n")
            .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(json).unwrap(),
            serde_json::from_slice::<Value>(answer).unwrap()
        );
        let err = br#"{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED"}}"#;
        let text = String::from_utf8(gemini_events(429, err)[0].to_vec()).unwrap();
        assert!(text.contains("RESOURCE_EXHAUSTED"), "{text}");
        let text = String::from_utf8(gemini_events(502, b"<html>").to_vec()[0].to_vec()).unwrap();
        assert!(text.contains("\"code\":502"), "{text}");
    }

    const ANSWER: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":7,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"billing","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6},"system_fingerprint":"fp"}"#;

    fn payloads(events: &[Bytes]) -> Vec<Value> {
        events
            .iter()
            .map(|e| {
                std::str::from_utf8(e)
                    .unwrap()
                    .strip_prefix("data: ")
                    .unwrap()
                    .trim_end()
                    .to_owned()
            })
            .filter(|d| d != "[DONE]")
            .map(|d| serde_json::from_str(&d).unwrap())
            .collect()
    }

    #[test]
    fn a_completion_becomes_role_content_finish_done() {
        let ev = chunks(200, ANSWER.as_bytes(), false);
        assert_eq!(ev.last().unwrap(), &Bytes::from_static(DONE));
        let p = payloads(&ev);
        assert_eq!(p.len(), 3);
        assert_eq!(p[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(p[1]["choices"][0]["delta"]["content"], "billing");
        assert_eq!(p[2]["choices"][0]["finish_reason"], "stop");
        assert!(p.iter().all(|c| c["object"] == "chat.completion.chunk"
            && c["id"] == "chatcmpl-1"
            && c.get("usage").is_none()));
    }

    #[test]
    fn usage_chunk_when_asked() {
        let p = payloads(&chunks(200, ANSWER.as_bytes(), true));
        assert_eq!(p.len(), 4);
        assert!(p[..3].iter().all(|c| c["usage"].is_null()));
        assert_eq!(p[3]["choices"], json!([]));
        assert_eq!(p[3]["usage"]["total_tokens"], 6);
    }

    #[test]
    fn errors_become_an_error_event() {
        let ev = chunks(400, br#"{"error":{"message":"bad","type":"invalid_request_error","param":null,"code":null}}"#, false);
        let p = payloads(&ev);
        assert_eq!(p[0]["error"]["message"], "bad");
        assert_eq!(ev.len(), 2);
    }

    #[test]
    fn anthropic_messages_become_their_event_stream() {
        let m = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-haiku-4-5","content":[{"type":"text","text":"billing"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":5,"output_tokens":2}}"#;
        let ev = anthropic_events(200, m.as_bytes());
        let names: Vec<String> = ev
            .iter()
            .map(|e| {
                std::str::from_utf8(e)
                    .unwrap()
                    .lines()
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(
            names,
            [
                "event: message_start",
                "event: content_block_start",
                "event: content_block_delta",
                "event: content_block_stop",
                "event: message_delta",
                "event: message_stop"
            ]
        );
        assert!(
            std::str::from_utf8(&ev[2])
                .unwrap()
                .contains("\"text\":\"billing\"")
        );
        let err = anthropic_events(
            429,
            br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#,
        );
        assert!(
            std::str::from_utf8(&err[0])
                .unwrap()
                .starts_with("event: error\n")
        );
    }

    #[test]
    fn tool_calls_carry_indexes() {
        let a = r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}"#;
        let p = payloads(&chunks(200, a.as_bytes(), false));
        assert_eq!(p[1]["choices"][0]["delta"]["tool_calls"][0]["index"], 0);
        assert_eq!(p[2]["choices"][0]["finish_reason"], "tool_calls");
    }
}
