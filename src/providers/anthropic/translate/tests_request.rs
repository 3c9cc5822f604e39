//! Request translation: every mapping and every rejection.

use serde_json::{Value, json};

use super::{AnthropicRequest, DEFAULT_MAX_TOKENS, TranslateError, request_to_anthropic};

fn translate(req: Value) -> AnthropicRequest {
    request_to_anthropic(req.to_string().as_bytes()).unwrap()
}

fn body(req: Value) -> Value {
    translate(req).body
}

fn err(req: Value) -> TranslateError {
    request_to_anthropic(req.to_string().as_bytes()).unwrap_err()
}

/// The `param` of the Unsupported error the request produces.
fn rejected(req: Value) -> String {
    match err(req) {
        TranslateError::Unsupported { param, message } => {
            assert!(!message.is_empty());
            param
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

fn invalid(req: Value) -> String {
    match err(req) {
        TranslateError::Invalid(message) => message,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

/// A minimal request with `extra` merged in at the top level.
fn with(extra: Value) -> Value {
    let mut req =
        json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]});
    for (k, v) in extra.as_object().unwrap() {
        req[k] = v.clone();
    }
    req
}

fn msgs(messages: Value) -> Value {
    with(json!({ "messages": messages }))
}

#[test]
fn minimal_request() {
    let out = translate(with(json!({})));
    assert_eq!(out.model, "claude-sonnet-4-5");
    assert!(!out.stream);
    assert!(!out.include_usage);
    assert_eq!(
        out.body,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": DEFAULT_MAX_TOKENS,
            "messages": [{"role": "user", "content": "hi"}],
        })
    );
}

#[test]
fn reference_request_example() {
    // provider-apis.md 1.3, minus `service_tier: flex` (rejected, see below).
    let mut req = json!({
      "model": "claude-sonnet-4-5",
      "messages": [
        {"role": "system", "content": "You are a support classifier. <long, stable instructions ...>"},
        {"role": "user", "content": "My invoice is wrong."}
      ],
      "stream": true,
      "stream_options": {"include_usage": true},
      "service_tier": "flex",
      "prompt_cache_key": "tenant-42:classifier-v3",
      "prompt_cache_retention": "24h",
      "safety_identifier": "u_9b2c1e7f"
    });
    assert_eq!(rejected(req.clone()), "service_tier");
    req["service_tier"] = json!("auto");
    let out = translate(req);
    assert!(out.stream);
    assert!(out.include_usage);
    assert_eq!(
        out.body,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": DEFAULT_MAX_TOKENS,
            "system": "You are a support classifier. <long, stable instructions ...>",
            "messages": [{"role": "user", "content": "My invoice is wrong."}],
            "stream": true,
            "metadata": {"user_id": "u_9b2c1e7f"},
        })
    );
}

#[test]
fn system_and_developer_are_hoisted_in_order() {
    let b = body(msgs(json!([
        {"role": "system", "content": "one"},
        {"role": "user", "content": "q"},
        {"role": "developer", "content": [{"type": "text", "text": "two"}, {"type": "text", "text": "three"}]},
        {"role": "assistant", "content": "a"},
        {"role": "system", "content": ""},
    ])));
    assert_eq!(
        b["system"],
        json!([
            {"type": "text", "text": "one"},
            {"type": "text", "text": "two"},
            {"type": "text", "text": "three"},
        ])
    );
    assert_eq!(
        b["messages"],
        json!([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])
    );
    // One text → a string; none → no `system`.
    let b = body(msgs(
        json!([{"role": "developer", "content": "d"}, {"role": "user", "content": "q"}]),
    ));
    assert_eq!(b["system"], "d");
    assert!(body(with(json!({}))).get("system").is_none());
}

#[test]
fn system_rejects_non_text_parts() {
    let req = msgs(json!([
        {"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
        {"role": "user", "content": "q"},
    ]));
    assert_eq!(rejected(req), "messages[0].content[0]");
}

#[test]
fn user_parts_text_and_images() {
    let b = body(msgs(json!([{"role": "user", "content": [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        {"type": "text", "text": ""},
    ]}])));
    assert_eq!(
        b["messages"][0]["content"],
        json!([
            {"type": "text", "text": "look"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        ])
    );
}

#[test]
fn image_rejections() {
    let part = |url: &str| {
        msgs(
            json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]),
        )
    };
    assert_eq!(
        rejected(part("data:image/bmp;base64,AAAA")),
        "messages[0].content[0].image_url.url"
    );
    assert_eq!(
        rejected(part("data:image/png,rawbytes")),
        "messages[0].content[0].image_url.url"
    );
    assert!(invalid(part("ftp://x/y.png")).contains("messages[0].content[0].image_url.url"));
    assert!(invalid(part("data:image/png;base64")).contains("data URL"));
}

#[test]
fn user_rejects_audio_file_and_unknown_parts() {
    let part = |p: Value| {
        msgs(
            json!([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": [{"type": "text", "text": "x"}, p]}]),
        )
    };
    assert_eq!(
        rejected(part(
            json!({"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}})
        )),
        "messages[2].content[1]"
    );
    assert_eq!(
        rejected(part(json!({"type": "file", "file": {"file_id": "file-1"}}))),
        "messages[2].content[1]"
    );
    assert_eq!(
        rejected(part(json!({"type": "video"}))),
        "messages[2].content[1]"
    );
}

#[test]
fn empty_user_message_is_invalid() {
    assert!(
        invalid(msgs(json!([{"role": "user", "content": ""}]))).contains("messages[0].content")
    );
    assert!(
        invalid(msgs(json!([{"role": "user", "content": []}]))).contains("messages[0].content")
    );
}

#[test]
fn consecutive_same_role_turns_merge() {
    let b = body(msgs(json!([
        {"role": "user", "content": "a"},
        {"role": "user", "content": [{"type": "text", "text": "b"}]},
        {"role": "assistant", "content": "c"},
        {"role": "assistant", "content": null},
        {"role": "assistant", "content": "d"},
    ])));
    assert_eq!(
        b["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "c"}, {"type": "text", "text": "d"}]},
        ])
    );
}

#[test]
fn tool_calls_and_results() {
    let b = body(with(json!({
        "messages": [
            {"role": "user", "content": "weather in Paris and Rome?"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Rome\"}"}},
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "rain"}]},
            {"role": "user", "content": "thanks"},
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "description": "Get weather",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": true}}],
    })));
    assert_eq!(
        b["messages"],
        json!([
            {"role": "user", "content": "weather in Paris and Rome?"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "weather", "input": {"city": "Rome"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "rain"}]},
                {"type": "text", "text": "thanks"},
            ]},
        ])
    );
    assert_eq!(
        b["tools"],
        json!([{"name": "weather", "description": "Get weather",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}])
    );
}

#[test]
fn tool_results_go_first_in_a_user_turn() {
    let b = body(msgs(json!([
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": ""}}]},
        {"role": "user", "content": "also"},
        {"role": "tool", "tool_call_id": "c", "content": ""},
    ])));
    assert_eq!(
        b["messages"],
        json!([
            {"role": "assistant", "content": [{"type": "tool_use", "id": "c", "name": "f", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "c"},
                {"type": "text", "text": "also"},
            ]},
        ])
    );
}

#[test]
fn assistant_text_refusal_and_prefill() {
    let b = body(msgs(json!([
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "refusal", "refusal": "no"}], "refusal": "really no", "name": "bot"},
    ])));
    assert_eq!(
        b["messages"][1],
        json!({"role": "assistant", "content": [
            {"type": "text", "text": "a"}, {"type": "text", "text": "no"}, {"type": "text", "text": "really no"},
        ]})
    );
}

#[test]
fn assistant_rejections() {
    let bad_args = msgs(
        json!([{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]),
    );
    assert!(invalid(bad_args).contains("messages[1].tool_calls[0].function.arguments"));
    let array_args = msgs(
        json!([{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]),
    );
    assert!(invalid(array_args).contains("JSON object"));
    let custom = msgs(
        json!([{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [
        {"id": "c", "type": "custom", "custom": {"name": "f", "input": "x"}}]}]),
    );
    assert_eq!(rejected(custom), "messages[1].tool_calls[0].type");
    let function_call = msgs(json!([{"role": "user", "content": "q"},
        {"role": "assistant", "content": null, "function_call": {"name": "f", "arguments": "{}"}}]));
    assert_eq!(rejected(function_call), "messages[1].function_call");
    let audio = msgs(
        json!([{"role": "user", "content": "q"}, {"role": "assistant", "audio": {"id": "a1"}}]),
    );
    assert_eq!(rejected(audio), "messages[1].audio");
}

#[test]
fn role_errors() {
    let function = msgs(
        json!([{"role": "user", "content": "q"}, {"role": "function", "name": "f", "content": "x"}]),
    );
    assert_eq!(rejected(function), "messages[1].role");
    assert!(invalid(msgs(json!([{"role": "robot", "content": "x"}]))).contains("robot"));
    assert!(invalid(msgs(json!([{"content": "x"}]))).contains("messages[0].role"));
    assert!(invalid(msgs(json!([{"role": "tool", "content": "x"}]))).contains("tool_call_id"));
    assert!(
        invalid(msgs(json!([{"role": "system", "content": "only system"}])))
            .contains("at least one")
    );
    assert!(invalid(msgs(json!([]))).contains("at least one"));
    assert!(invalid(msgs(json!("hi"))).contains("messages"));
    assert!(invalid(msgs(json!(["hi"]))).contains("messages[0]"));
}

#[test]
fn tools_defaults_and_rejections() {
    let b = body(with(
        json!({"tools": [{"type": "function", "function": {"name": "ping"}}]}),
    ));
    assert_eq!(
        b["tools"],
        json!([{"name": "ping", "input_schema": {"type": "object", "properties": {}}}])
    );
    let custom = with(json!({"tools": [
        {"type": "function", "function": {"name": "ping"}},
        {"type": "custom", "custom": {"name": "grammar"}},
    ]}));
    assert_eq!(rejected(custom), "tools[1].type");
    assert!(
        invalid(with(
            json!({"tools": [{"type": "function", "function": {}}]})
        ))
        .contains("tools[0].function.name")
    );
    // An empty tool list is no tools.
    assert!(body(with(json!({"tools": []}))).get("tools").is_none());
}

#[test]
fn tool_choice_mapping() {
    let tools = json!([{"type": "function", "function": {"name": "f"}}]);
    let choice = |c: Value, extra: Value| {
        let mut req = with(json!({"tools": tools, "tool_choice": c}));
        for (k, v) in extra.as_object().unwrap() {
            req[k] = v.clone();
        }
        body(req).get("tool_choice").cloned()
    };
    assert_eq!(
        choice(json!("auto"), json!({})),
        Some(json!({"type": "auto"}))
    );
    assert_eq!(
        choice(json!("required"), json!({})),
        Some(json!({"type": "any"}))
    );
    assert_eq!(
        choice(json!("none"), json!({})),
        Some(json!({"type": "none"}))
    );
    assert_eq!(
        choice(
            json!({"type": "function", "function": {"name": "f"}}),
            json!({})
        ),
        Some(json!({"type": "tool", "name": "f"}))
    );
    let serial = json!({"parallel_tool_calls": false});
    assert_eq!(
        choice(json!("required"), serial.clone()),
        Some(json!({"type": "any", "disable_parallel_tool_use": true}))
    );
    assert_eq!(
        choice(
            json!({"type": "function", "function": {"name": "f"}}),
            serial.clone()
        ),
        Some(json!({"type": "tool", "name": "f", "disable_parallel_tool_use": true}))
    );
    assert_eq!(
        choice(json!("none"), serial.clone()),
        Some(json!({"type": "none"}))
    );
    assert_eq!(
        choice(Value::Null, serial),
        Some(json!({"type": "auto", "disable_parallel_tool_use": true}))
    );
    assert_eq!(
        choice(Value::Null, json!({"parallel_tool_calls": true})),
        None
    );

    let allowed = with(
        json!({"tools": tools, "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}}}),
    );
    assert_eq!(rejected(allowed), "tool_choice");
    let custom =
        with(json!({"tools": tools, "tool_choice": {"type": "custom", "custom": {"name": "f"}}}));
    assert_eq!(rejected(custom), "tool_choice");
    assert!(
        invalid(with(json!({"tools": tools, "tool_choice": "sometimes"}))).contains("tool_choice")
    );
}

#[test]
fn tool_choice_without_tools() {
    assert!(
        body(with(json!({"tool_choice": "none"})))
            .get("tool_choice")
            .is_none()
    );
    assert!(
        body(with(
            json!({"tool_choice": "auto", "parallel_tool_calls": false})
        ))
        .get("tool_choice")
        .is_none()
    );
    assert!(invalid(with(json!({"tool_choice": "required"}))).contains("requires 'tools'"));
}

#[test]
fn sampling_and_limits() {
    let b = body(with(
        json!({"temperature": 0.2, "top_p": 0.9, "max_tokens": 100}),
    ));
    assert_eq!(b["temperature"], 0.2);
    assert_eq!(b["top_p"], 0.9);
    assert_eq!(b["max_tokens"], 100);
    let b = body(with(
        json!({"max_tokens": 100, "max_completion_tokens": 50, "temperature": 1}),
    ));
    assert_eq!(b["max_tokens"], 50);
    assert_eq!(b["temperature"], 1);
    assert_eq!(
        body(with(json!({"max_completion_tokens": 0})))["max_tokens"],
        0
    );
    assert_eq!(rejected(with(json!({"temperature": 1.5}))), "temperature");
    assert!(invalid(with(json!({"temperature": -0.1}))).contains("temperature"));
    assert!(invalid(with(json!({"max_tokens": -1}))).contains("max_tokens"));
    assert!(
        invalid(with(json!({"max_completion_tokens": "10"}))).contains("max_completion_tokens")
    );
    assert!(invalid(with(json!({"top_p": "high"}))).contains("top_p"));
}

#[test]
fn stop_sequences() {
    assert_eq!(
        body(with(json!({"stop": "END"})))["stop_sequences"],
        json!(["END"])
    );
    assert_eq!(
        body(with(json!({"stop": ["a", "b"]})))["stop_sequences"],
        json!(["a", "b"])
    );
    assert!(
        body(with(json!({"stop": []})))
            .get("stop_sequences")
            .is_none()
    );
    assert_eq!(rejected(with(json!({"stop": ["a", " \n"]}))), "stop");
    assert!(invalid(with(json!({"stop": 5}))).contains("stop"));
}

#[test]
fn stream_flags_and_user() {
    let out = translate(with(
        json!({"stream": true, "stream_options": {"include_usage": true, "include_obfuscation": false}}),
    ));
    assert!(out.stream && out.include_usage);
    assert_eq!(out.body["stream"], true);
    let out = translate(with(json!({"stream": false, "stream_options": null})));
    assert!(!out.stream && !out.include_usage);
    assert!(out.body.get("stream").is_none());
    assert_eq!(
        rejected(with(json!({"stream_options": {"chunk_size": 3}}))),
        "stream_options.chunk_size"
    );

    assert_eq!(
        body(with(json!({"user": "u1"})))["metadata"],
        json!({"user_id": "u1"})
    );
    assert_eq!(
        body(with(json!({"user": "u1", "safety_identifier": "s1"})))["metadata"],
        json!({"user_id": "s1"})
    );
}

#[test]
fn ignored_hints() {
    let b = body(with(json!({
        "prompt_cache_key": "k", "prompt_cache_retention": "24h", "prompt_cache_options": {"ttl": "30m"},
        "metadata": {"team": "x"}, "store": false, "service_tier": "default",
    })));
    assert_eq!(b, body(with(json!({}))));
}

#[test]
fn defaults_accepted_as_absent() {
    let b = body(with(json!({
        "n": 1, "logprobs": false, "top_logprobs": 0, "logit_bias": {}, "response_format": {"type": "text"},
        "modalities": ["text"], "presence_penalty": 0, "frequency_penalty": 0.0, "reasoning_effort": "none",
        "verbosity": "medium", "seed": null, "audio": null, "prediction": null,
    })));
    assert_eq!(b, body(with(json!({}))));
}

#[test]
fn behaviour_changing_fields_are_rejected_by_name() {
    let cases = [
        ("n", json!(2)),
        ("logprobs", json!(true)),
        ("top_logprobs", json!(3)),
        ("logit_bias", json!({"50256": -100})),
        ("response_format", json!({"type": "json_object"})),
        (
            "response_format",
            json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}),
        ),
        ("audio", json!({"voice": "alloy", "format": "wav"})),
        ("modalities", json!(["text", "audio"])),
        ("prediction", json!({"type": "content", "content": "x"})),
        ("seed", json!(42)),
        ("presence_penalty", json!(0.5)),
        ("frequency_penalty", json!(-1)),
        ("store", json!(true)),
        ("service_tier", json!("priority")),
        ("reasoning_effort", json!("high")),
        ("verbosity", json!("low")),
        ("web_search_options", json!({})),
        ("moderation", json!({})),
        ("functions", json!([{"name": "f"}])),
        ("function_call", json!("auto")),
        ("best_of", json!(2)),
        ("thinking", json!({"type": "enabled"})),
    ];
    for (field, value) in cases {
        let mut req = with(json!({}));
        req[field] = value;
        assert_eq!(rejected(req), field, "{field}");
    }
}

#[test]
fn malformed_bodies() {
    assert!(matches!(
        request_to_anthropic(b"not json"),
        Err(TranslateError::Invalid(_))
    ));
    assert!(matches!(
        request_to_anthropic(b"[1]"),
        Err(TranslateError::Invalid(_))
    ));
    assert!(invalid(json!({"messages": [{"role": "user", "content": "x"}]})).contains("model"));
    assert!(invalid(json!({"model": "claude"})).contains("messages"));
    assert!(invalid(with(json!({"model": 7}))).contains("model"));
    assert!(invalid(with(json!({"stream": "yes"}))).contains("stream"));
}
