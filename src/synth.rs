//! Synthesised SSE for deferred answers: a finished `chat.completion` (or `text_completion`)
//! turned into the chunk stream a streaming call would have produced, ending in
//! `data: [DONE]`, so the official SDKs parse it unchanged. Pure.

use bytes::Bytes;
use serde_json::{Value, json};

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

#[cfg(test)]
mod tests {
    use super::*;

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
