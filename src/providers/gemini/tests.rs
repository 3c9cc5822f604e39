//! The pure parts: OpenAI ⇄ Gemini translation and the Batch Mode wire format.

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::batch::upload_url;
use super::batch_wire::*;
use super::translate::*;
use crate::providers::{BatchState, LineOutcome};
use crate::types::Endpoint;

fn to_gemini(v: Value) -> Value {
    serde_json::from_slice(&request_from_openai(v.to_string().as_bytes()).unwrap()).unwrap()
}

fn refusal(v: Value) -> String {
    request_from_openai(v.to_string().as_bytes()).unwrap_err()
}

#[test]
fn messages_become_contents_and_a_system_instruction() {
    let g = to_gemini(json!({
        "model": "gemini-2.5-flash", "stream": false,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "No emoji."}]},
            {"role": "user", "content": "Hi"},
            {"role": "user", "content": [{"type": "text", "text": "there"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}}]},
            {"role": "assistant", "content": "Hello."}
        ],
        "temperature": 0.2, "top_p": 0.9, "max_tokens": 10, "max_completion_tokens": 20,
        "stop": ["END"], "n": 2, "seed": 7, "user": "u1"
    }));
    assert_eq!(
        g["systemInstruction"],
        json!({"parts": [{"text": "Be brief."}, {"text": "No emoji."}]})
    );
    assert_eq!(
        g["contents"],
        json!([
            {"role": "user", "parts": [{"text": "Hi"}, {"text": "there"},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0K"}}]},
            {"role": "model", "parts": [{"text": "Hello."}]}
        ])
    );
    assert_eq!(
        g["generationConfig"],
        json!({"temperature": 0.2, "topP": 0.9, "maxOutputTokens": 20,
               "stopSequences": ["END"], "candidateCount": 2, "seed": 7})
    );
    assert!(g.get("model").is_none() && g.get("stream").is_none());
}

#[test]
fn tools_calls_and_results_translate() {
    let g = to_gemini(json!({
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"c\":21}"},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "description": "d",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": {"type": "function", "function": {"name": "weather"}}
    }));
    assert_eq!(
        g["contents"][1],
        json!({"role": "model", "parts": [{"functionCall": {"name": "weather", "args": {"city": "Paris"}}}]})
    );
    assert_eq!(
        g["contents"][2]["parts"],
        json!([
            {"functionResponse": {"name": "weather", "response": {"c": 21}}},
            {"functionResponse": {"name": "weather", "response": {"result": "sunny"}}}
        ])
    );
    assert_eq!(
        g["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"]["type"],
        "object"
    );
    assert_eq!(
        g["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}})
    );
    let auto = to_gemini(json!({"messages": [{"role": "user", "content": "x"}],
        "tool_choice": "none"}));
    assert!(
        auto.get("toolConfig").is_none(),
        "no tools: nothing to configure"
    );
}

#[test]
fn response_formats_map_to_mime_type_and_schema() {
    let g = to_gemini(json!({"messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_object"}}));
    assert_eq!(
        g["generationConfig"]["responseMimeType"],
        "application/json"
    );
    let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
    let g = to_gemini(json!({"messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}}));
    assert_eq!(g["generationConfig"]["responseJsonSchema"], schema);
}

#[test]
fn what_cannot_be_translated_is_refused_by_name() {
    let user = json!([{"role": "user", "content": "x"}]);
    for (field, value) in [
        ("logprobs", json!(true)),
        ("logit_bias", json!({"1": 2})),
        ("audio", json!({"voice": "x"})),
        ("n", json!(9)),
        ("stop", json!(["a", "b", "c", "d", "e", "f"])),
        ("reasoning_effort", json!("high")),
    ] {
        let mut req = json!({"messages": user});
        req[field] = value;
        assert!(refusal(req).starts_with(field), "{field}");
    }
    let e = refusal(json!({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]}));
    assert!(e.contains("messages[0].content[0]"), "{e}");
    assert!(
        refusal(json!({"messages": [{"role": "system", "content": "only"}]})).contains("messages")
    );
    let e =
        refusal(json!({"messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]}));
    assert!(e.contains("tool_call_id"), "{e}");
    // Nulls and OpenAI defaults are absent.
    to_gemini(
        json!({"messages": user, "n": 1, "logprobs": false, "temperature": null,
        "parallel_tool_calls": true, "service_tier": "auto"}),
    );
}

#[test]
fn answers_become_chat_completions() {
    let body = json!({
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": "thinking", "thought": true},
                {"text": "Hel"}, {"text": "lo"}]}, "finishReason": "MAX_TOKENS", "index": 0},
            {"content": {"parts": [{"functionCall": {"name": "f", "args": {"a": 1}}}]},
             "finish_reason": "STOP", "index": 1}
        ],
        "usage_metadata": {"promptTokenCount": 100, "cachedContentTokenCount": 60,
            "candidatesTokenCount": 5, "thoughtsTokenCount": 7, "totalTokenCount": 112},
        "responseId": "abc"
    });
    let out: Value = serde_json::from_slice(
        &response_to_openai(
            body.to_string().as_bytes(),
            "gemini-2.5-flash",
            1_700_000_000,
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(out["id"], "chatcmpl-abc");
    assert_eq!(out["object"], "chat.completion");
    assert_eq!(out["model"], "gemini-2.5-flash");
    assert_eq!(out["created"], 1_700_000_000);
    assert_eq!(out["choices"][0]["message"]["content"], "Hello");
    assert_eq!(out["choices"][0]["finish_reason"], "length");
    let call = &out["choices"][1]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "f");
    assert_eq!(call["function"]["arguments"], "{\"a\":1}");
    assert_eq!(out["choices"][1]["finish_reason"], "tool_calls");
    assert_eq!(out["choices"][1]["message"]["content"], Value::Null);
    assert_eq!(
        out["usage"],
        json!({"prompt_tokens": 100, "completion_tokens": 12, "total_tokens": 112,
               "prompt_tokens_details": {"cached_tokens": 60},
               "completion_tokens_details": {"reasoning_tokens": 7}})
    );
    // The gateway's own usage reader agrees with the translated usage.
    let u = crate::usage::from_json(&serde_json::to_vec(&out).unwrap()).unwrap();
    assert_eq!(
        (u.input_tokens, u.cached_input_tokens, u.output_tokens),
        (40, 60, 12)
    );

    let blocked =
        response_to_openai(br#"{"promptFeedback":{"blockReason":"SAFETY"}}"#, "m", 0).unwrap();
    let v: Value = serde_json::from_slice(&blocked).unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
    let safety = response_to_openai(
        br#"{"candidates":[{"content":{"parts":[]},"finishReason":"SAFETY"}]}"#,
        "m",
        0,
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&safety).unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
    assert!(response_to_openai(b"[1]", "m", 0).is_err());
}

#[test]
fn google_errors_become_openai_errors() {
    let e: Value = serde_json::from_slice(&error_to_openai(
        br#"{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED"}}"#,
    ))
    .unwrap();
    assert_eq!(
        e,
        json!({"error": {"message": "quota", "type": "requests", "param": null, "code": "rate_limit_exceeded"}})
    );
    let e: Value = serde_json::from_slice(&error_to_openai(
        br#"[{"error":{"code":400,"message":"bad","status":"INVALID_ARGUMENT"}}]"#,
    ))
    .unwrap();
    assert_eq!(e["error"]["type"], "invalid_request_error");
    let e: Value = serde_json::from_slice(&error_to_openai(b"oops")).unwrap();
    assert_eq!(e["error"]["message"], "oops");
    assert_eq!(e["error"]["type"], "server_error");
}

#[test]
fn input_lines_and_inline_entries_carry_the_job_id() {
    let line = file_line(
        "job_1",
        &super::batch_request(
            Endpoint::ChatCompletions,
            br#"{"model":"gemini-2.5-flash","messages":[{"role":"user","content":"hi"}]}"#,
        ),
    );
    assert!(line.ends_with(b"\n"));
    let v: Value = serde_json::from_slice(&line).unwrap();
    assert_eq!(v["key"], "job_1");
    assert_eq!(v["request"]["contents"][0]["parts"][0]["text"], "hi");
    let entry: Value =
        serde_json::from_slice(&inline_entry(&line[..line.len() - 1]).unwrap()).unwrap();
    assert_eq!(entry["metadata"], json!({"key": "job_1"}));
    assert_eq!(entry["request"], v["request"]);
    let mut body = inline_head("flush_1").to_vec();
    body.extend_from_slice(&inline_entry(&line).unwrap());
    body.extend_from_slice(INLINE_TAIL);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["batch"]["displayName"], "flush_1");
    assert_eq!(
        v["batch"]["inputConfig"]["requests"]["requests"][0]["metadata"]["key"],
        "job_1"
    );
    let bad = super::batch_request(Endpoint::ChatCompletions, b"{}");
    let bad: Value = serde_json::from_slice(&file_line("job_2", &bad)).unwrap();
    assert_eq!(bad["request"], json!({"contents": []}));
}

#[test]
fn native_requests_are_batched_as_they_are_without_a_service_tier() {
    let native = br#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}"#;
    assert_eq!(
        super::batch_request(Endpoint::GenerateContent, native),
        native.to_vec()
    );
    assert!(super::batchable(Endpoint::GenerateContent, native));
    for tier in [r#""service_tier":"flex""#, r#""serviceTier":"priority""#] {
        let body = format!(r#"{{"contents":[{{"parts":[{{"text":"x"}}]}}],{tier}}}"#);
        let sent: Value = serde_json::from_slice(&super::batch_request(
            Endpoint::GenerateContent,
            body.as_bytes(),
        ))
        .unwrap();
        assert_eq!(sent, json!({"contents": [{"parts": [{"text": "x"}]}]}));
    }
    // A tier only inside a text part is left alone.
    let text = br#"{"contents":[{"parts":[{"text":"the service_tier field"}]}]}"#;
    assert_eq!(
        super::batch_request(Endpoint::GenerateContent, text),
        text.to_vec()
    );
}

fn op(state: &str, extra: Value) -> Vec<u8> {
    let mut v = json!({"name": "batches/b1", "metadata": {"name": "batches/b1",
        "displayName": "flush_1", "state": state}});
    if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    v.to_string().into_bytes()
}

#[test]
fn both_state_spellings_are_read() {
    for prefix in ["BATCH_STATE_", "JOB_STATE_"] {
        let (b, name) = parse_batch(&op(&format!("{prefix}PENDING"), json!({}))).unwrap();
        assert_eq!(
            (b.id.as_str(), b.state.clone()),
            ("batches/b1", BatchState::Running)
        );
        assert_eq!(name.as_deref(), Some("flush_1"));
        let (b, _) = parse_batch(&op(&format!("{prefix}RUNNING"), json!({}))).unwrap();
        assert!(!b.is_terminal());
        let file = json!({"done": true, "response": {"responsesFile": "files/batch-b1"}});
        let (b, _) = parse_batch(&op(&format!("{prefix}SUCCEEDED"), file)).unwrap();
        assert_eq!(
            b.state,
            BatchState::Ended {
                results: vec!["files/batch-b1".into()]
            }
        );
        assert_eq!(b.status, "completed");
        let inline =
            json!({"done": true, "response": {"inlinedResponses": {"inlinedResponses": []}}});
        let (b, _) = parse_batch(&op(&format!("{prefix}SUCCEEDED"), inline)).unwrap();
        assert_eq!(
            b.state,
            BatchState::Ended {
                results: vec!["batches/b1".into()]
            }
        );
        for (s, status) in [("EXPIRED", "expired"), ("CANCELLED", "cancelled")] {
            let (b, _) = parse_batch(&op(
                &format!("{prefix}{s}"),
                json!({"done": true, "error": {"code": 1}}),
            ))
            .unwrap();
            assert_eq!(
                (b.status.as_str(), b.state),
                (status, BatchState::Ended { results: vec![] })
            );
        }
        let (b, _) = parse_batch(&op(&format!("{prefix}FAILED"), json!({"done": true}))).unwrap();
        assert_eq!(b.state, BatchState::Refused { lines: vec![] });
    }
    // No state: `done` missing is false, a finished Operation tells by its result.
    let (b, _) = parse_batch(br#"{"name":"batches/x"}"#).unwrap();
    assert!(!b.is_terminal());
    let (b, _) = parse_batch(br#"{"name":"batches/x","done":true,"error":{"code":1}}"#).unwrap();
    assert_eq!(b.status, "cancelled");
    assert!(parse_batch(b"{}").is_err());
    let (page, next) = parse_list(
        format!(
            r#"{{"operations":[{}],"nextPageToken":"t2"}}"#,
            String::from_utf8(op("BATCH_STATE_RUNNING", json!({}))).unwrap()
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(next.as_deref(), Some("t2"));
    assert_eq!(parse_list(b"{}").unwrap(), (vec![], None));
}

#[test]
fn results_are_matched_by_key_not_position() {
    // Shuffled, one without a key, one error: every line names its job.
    let body = op(
        "BATCH_STATE_SUCCEEDED",
        json!({"done": true, "response": {"inlinedResponses": {"inlinedResponses": [
            {"response": {"candidates": [{"content": {"parts": [{"text": "for 2"}]}}]}, "metadata": {"key": "job_2"}},
            {"response": {"candidates": []}},
            {"error": {"code": 3, "message": "bad"}, "metadata": {"key": "job_3"}},
            {"response": {"candidates": [{"content": {"parts": [{"text": "for 1"}]}}]}, "metadata": {"key": "job_1"}}
        ]}}}),
    );
    let lines = inline_result_lines(&body).unwrap();
    let parsed: Vec<(String, LineOutcome)> = lines
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| parse_line(l).unwrap())
        .collect();
    let ids: Vec<&str> = parsed.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["job_2", "job_3", "job_1"]);
    match &parsed[2].1 {
        LineOutcome::Answered { status: 200, body } => {
            assert!(String::from_utf8_lossy(body).contains("for 1"))
        }
        other => panic!("{other:?}"),
    }
    match &parsed[1].1 {
        LineOutcome::Answered { status: 400, body } => {
            let v: Value = serde_json::from_slice(body).unwrap();
            assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn result_file_lines() {
    let (id, o) = parse_line(br#"{"key":"job_1","response":{"candidates":[]}}"#).unwrap();
    assert_eq!(id, "job_1");
    assert_eq!(
        o,
        LineOutcome::Answered {
            status: 200,
            body: Bytes::from_static(br#"{"candidates":[]}"#)
        }
    );
    let (_, o) =
        parse_line(br#"{"key":"job_2","error":{"code":13,"message":"internal"}}"#).unwrap();
    assert!(matches!(o, LineOutcome::Answered { status: 500, .. }));
    for code in [1, 4, 8, 14] {
        let line = format!(r#"{{"key":"job_3","error":{{"code":{code},"message":"m"}}}}"#);
        assert!(
            matches!(
                parse_line(line.as_bytes()).unwrap().1,
                LineOutcome::NotRun { .. }
            ),
            "{code}"
        );
    }
    // A bare response cannot be matched to a job.
    assert!(parse_line(br#"{"candidates":[]}"#).is_err());
    assert!(parse_line(br#"{"key":"job_4"}"#).is_err());
}

#[test]
fn retry_delays_and_upload_urls() {
    let body = r#"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"41s"}]}}"#;
    assert_eq!(retry_delay(body), Some(std::time::Duration::from_secs(41)));
    assert_eq!(retry_delay(r#"{"error":{"code":429}}"#), None);
    assert_eq!(
        upload_url("https://generativelanguage.googleapis.com/v1beta"),
        "https://generativelanguage.googleapis.com/upload/v1beta/files"
    );
    assert_eq!(
        upload_url("http://127.0.0.1:9/v1/"),
        "http://127.0.0.1:9/upload/v1/files"
    );
}

fn any_json() -> impl Strategy<Value = Value> {
    crate::inspect::proptests::any_json()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn translation_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200), v in any_json()) {
        let _ = request_from_openai(&bytes);
        let _ = response_to_openai(&bytes, "m", 0);
        let _ = error_to_openai(&bytes);
        let _ = parse_line(&bytes);
        let _ = parse_batch(&bytes);
        let _ = inline_result_lines(&bytes);
        for shaped in [
            json!({"messages": [{"role": "user", "content": v.clone()}]}),
            json!({"messages": [{"role": "assistant", "content": null, "tool_calls": v.clone()}]}),
            json!({"messages": v.clone(), "tools": v.clone(), "tool_choice": v.clone()}),
            json!({"messages": [{"role": "user", "content": "x"}], "response_format": v.clone(), "stop": v.clone()}),
        ] {
            let _ = request_from_openai(shaped.to_string().as_bytes());
        }
        for shaped in [
            json!({"candidates": v.clone()}),
            json!({"candidates": [{"content": {"parts": v.clone()}, "finishReason": v.clone()}], "usageMetadata": v.clone()}),
            json!({"candidates": [{"content": {"parts": [{"functionCall": v.clone()}]}}]}),
        ] {
            let _ = response_to_openai(shaped.to_string().as_bytes(), "m", 0);
        }
        let _ = parse_batch(json!({"name": "batches/x", "metadata": v.clone(), "done": true, "response": v.clone()}).to_string().as_bytes());
        let _ = parse_line(json!({"key": "k", "error": v.clone()}).to_string().as_bytes());
    }
}
