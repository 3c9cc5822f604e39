//! Response and error translation, and the shared helpers.

use serde_json::{Value, json};

use super::{TranslateError, compact_json, error_to_openai, finish_reason, response_to_openai};

pub(super) const CREATED: i64 = 1_767_225_600;

pub(super) fn openai_response(anthropic: &Value) -> Value {
    let bytes = response_to_openai(anthropic.to_string().as_bytes(), CREATED).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn openai_error(anthropic: &Value) -> Value {
    serde_json::from_slice(&error_to_openai(anthropic.to_string().as_bytes())).unwrap()
}

#[test]
fn reference_response_example() {
    // provider-apis.md 2.2.
    let anthropic = json!({
      "id": "msg_01HqT8r2V7wX9yZ3aB4cD5eF",
      "type": "message",
      "role": "assistant",
      "model": "claude-sonnet-4-5-20250929",
      "content": [{"type": "text", "text": "billing"}],
      "stop_reason": "end_turn",
      "stop_sequence": null,
      "usage": {
        "input_tokens": 14,
        "cache_creation_input_tokens": 4102,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 4102},
        "output_tokens": 4,
        "service_tier": "standard"
      }
    });
    assert_eq!(
        openai_response(&anthropic),
        json!({
            "id": "chatcmpl-msg_01HqT8r2V7wX9yZ3aB4cD5eF",
            "object": "chat.completion",
            "created": CREATED,
            "model": "claude-sonnet-4-5-20250929",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": "billing", "refusal": null, "annotations": []},
                "logprobs": null,
                "finish_reason": "stop",
            }],
            "usage": {
                "prompt_tokens": 4116,
                "completion_tokens": 4,
                "total_tokens": 4120,
                "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 4102},
            },
            "system_fingerprint": null,
        })
    );
}

#[test]
fn response_keeps_field_order() {
    let anthropic = json!({"id": "msg_1", "model": "m", "content": [], "stop_reason": "end_turn",
                           "usage": {"input_tokens": 1, "output_tokens": 1}});
    let bytes = response_to_openai(anthropic.to_string().as_bytes(), 7).unwrap();
    let text = std::str::from_utf8(&bytes).unwrap();
    assert!(text.starts_with(r#"{"id":"chatcmpl-msg_1","object":"chat.completion","created":7,"model":"m","choices":"#), "{text}");
    // No content at all: an empty string, never null without tool calls.
    assert_eq!(
        openai_response(&anthropic)["choices"][0]["message"]["content"],
        ""
    );
}

#[test]
fn response_text_and_tool_use() {
    // Raw bytes so key order and spacing of `input` are exactly what Anthropic sent.
    let raw = br#"{"id":"msg_2","type":"message","role":"assistant","model":"claude-haiku-4-5",
      "content":[{"type":"thinking","thinking":"hmm","signature":"s"},
                 {"type":"text","text":"Let me "},{"type":"text","text":"check."},
                 {"type":"tool_use","id":"toolu_1","name":"weather","input":{"city": "Paris", "days": [1, 2], "note": "a \"b\" c"}},
                 {"type":"tool_use","id":"toolu_2","name":"clock","input":{}}],
      "stop_reason":"tool_use","stop_sequence":null,
      "usage":{"input_tokens":10,"cache_creation_input_tokens":null,"cache_read_input_tokens":90,"output_tokens":20}}"#;
    let out: Value = serde_json::from_slice(&response_to_openai(raw, CREATED).unwrap()).unwrap();
    let message = &out["choices"][0]["message"];
    assert_eq!(message["content"], "Let me check.");
    assert_eq!(
        message["tool_calls"],
        json!([
            {"id": "toolu_1", "type": "function",
             "function": {"name": "weather", "arguments": r#"{"city":"Paris","days":[1,2],"note":"a \"b\" c"}"#}},
            {"id": "toolu_2", "type": "function", "function": {"name": "clock", "arguments": "{}"}},
        ])
    );
    assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        out["usage"],
        json!({"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
               "prompt_tokens_details": {"cached_tokens": 90, "cache_write_tokens": 0}})
    );
}

#[test]
fn tool_use_only_has_null_content() {
    let anthropic = json!({"id": "m", "model": "m", "stop_reason": "tool_use",
        "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}],
        "usage": {"input_tokens": 1, "output_tokens": 1}});
    assert_eq!(
        openai_response(&anthropic)["choices"][0]["message"]["content"],
        Value::Null
    );
}

#[test]
fn stop_reasons() {
    for (anthropic, openai) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ] {
        assert_eq!(finish_reason(Some(anthropic)), openai);
        let msg = json!({"id": "m", "model": "m", "content": [{"type": "text", "text": "x"}],
                         "stop_reason": anthropic, "usage": {"input_tokens": 1, "output_tokens": 1}});
        assert_eq!(openai_response(&msg)["choices"][0]["finish_reason"], openai);
    }
    assert_eq!(finish_reason(None), "stop");
}

#[test]
fn unreadable_responses() {
    for body in [&b"nope"[..], br#"{"type":"error","error":{"type":"api_error","message":"x"}}"#, br#"{"id":"m","model":"m","content":[{"text":"x"}],"usage":{"input_tokens":1,"output_tokens":1}}"#] {
        assert!(matches!(response_to_openai(body, 0), Err(TranslateError::Invalid(_))));
    }
}

#[test]
fn reference_error_example() {
    // provider-apis.md 2.1.
    let anthropic = json!({"type": "error", "error": {"type": "rate_limit_error",
        "message": "Number of request tokens has exceeded your per-minute rate limit."}, "request_id": "req_011CZ9nTq8XrSCJ5dyNkzZ5a"});
    assert_eq!(
        openai_error(&anthropic),
        json!({"error": {"message": "Number of request tokens has exceeded your per-minute rate limit.",
                         "type": "tokens", "param": null, "code": "rate_limit_exceeded"}})
    );
}

#[test]
fn error_types() {
    let cases = [
        (
            "invalid_request_error",
            "invalid_request_error",
            Value::Null,
        ),
        (
            "authentication_error",
            "invalid_request_error",
            json!("invalid_api_key"),
        ),
        (
            "permission_error",
            "invalid_request_error",
            json!("permission_denied"),
        ),
        (
            "not_found_error",
            "invalid_request_error",
            json!("not_found"),
        ),
        ("conflict_error", "invalid_request_error", json!("conflict")),
        (
            "request_too_large",
            "invalid_request_error",
            json!("request_too_large"),
        ),
        (
            "billing_error",
            "insufficient_quota",
            json!("insufficient_quota"),
        ),
        ("rate_limit_error", "requests", json!("rate_limit_exceeded")),
        ("api_error", "server_error", Value::Null),
        ("overloaded_error", "server_error", json!("overloaded")),
        ("timeout_error", "server_error", json!("timeout")),
        ("brand_new_error", "brand_new_error", Value::Null),
    ];
    for (anthropic, kind, code) in cases {
        let out =
            openai_error(&json!({"type": "error", "error": {"type": anthropic, "message": "m"}}));
        assert_eq!(
            out,
            json!({"error": {"message": "m", "type": kind, "param": null, "code": code}}),
            "{anthropic}"
        );
    }
}

#[test]
fn unreadable_error_becomes_server_error() {
    let out: Value = serde_json::from_slice(&error_to_openai(b"<html>502</html>")).unwrap();
    assert_eq!(out["error"]["type"], "server_error");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("<html>502</html>")
    );
    assert_eq!(out["error"]["param"], Value::Null);
}

#[test]
fn compacting_keeps_strings_and_order() {
    assert_eq!(
        compact_json("{ \"b\" : 1,\n\t\"a\": \"x y\\\" z\" }"),
        r#"{"b":1,"a":"x y\" z"}"#
    );
    assert_eq!(compact_json(r#"["\\", " "]"#), r#"["\\"," "]"#);
}

#[test]
fn error_param() {
    let e = TranslateError::unsupported("seed", "no");
    assert_eq!(e.param(), Some("seed"));
    assert_eq!(e.to_string(), "no");
    assert_eq!(TranslateError::Invalid("bad".into()).param(), None);
}
