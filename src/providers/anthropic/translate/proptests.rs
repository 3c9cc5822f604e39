//! The OpenAI ⇄ Anthropic translation over arbitrary input: it never panics, a request it
//! accepts becomes a Messages body with the model and a positive `max_tokens`, and any
//! answer or event, however odd, becomes a result or a typed error.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..5).prop_map(Value::from),
        any::<f32>().prop_map(|f| json!(f)),
        prop::sample::select(vec![
            "",
            " ",
            "user",
            "assistant",
            "system",
            "developer",
            "tool",
            "text",
            "image_url",
            "function",
            "auto",
            "required",
            "none",
            "data:image/png;base64,AAAA",
            "https://x/y.png",
            "{}",
            "{\"a\":1}",
            "[",
            "tool_use",
            "end_turn",
        ])
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "role",
                    "content",
                    "type",
                    "text",
                    "name",
                    "tool_calls",
                    "id",
                    "function",
                    "arguments",
                    "tool_call_id",
                    "image_url",
                    "url",
                    "refusal",
                    "parameters",
                    "description",
                    "strict",
                    "x",
                ])
                .prop_map(String::from),
                inner,
                0..5,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A chat-completions body: known fields with arbitrary values, including nulls.
fn chat_body() -> impl Strategy<Value = Value> {
    let field = prop::sample::select(vec![
        "messages",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "stream",
        "stream_options",
        "user",
        "safety_identifier",
        "metadata",
        "store",
        "service_tier",
        "n",
        "response_format",
        "reasoning_effort",
        "logprobs",
        "seed",
        "prompt_cache_key",
        "unknown_field",
    ]);
    (
        prop::collection::btree_map(field.prop_map(String::from), any_json(), 0..8),
        prop::collection::vec(any_json(), 0..4),
    )
        .prop_map(|(fields, messages)| {
            let mut m: serde_json::Map<String, Value> = fields.into_iter().collect();
            m.insert("model".into(), json!("claude-sonnet-4-6"));
            m.entry("messages").or_insert(Value::Array(messages));
            Value::Object(m)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn requests_translate_or_fail_cleanly(body in chat_body()) {
        if let Ok(r) = request_to_anthropic(body.to_string().as_bytes()) {
            prop_assert_eq!(&r.body["model"], "claude-sonnet-4-6");
            prop_assert!(r.body["max_tokens"].as_u64().is_some_and(|n| n >= 1), "{}", r.body);
            prop_assert!(r.body["messages"].is_array());
            let text = r.body.to_string();
            prop_assert!(crate::strict_json::parse(text.as_bytes()).is_ok());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = request_to_anthropic(&bytes);
        let _ = response_to_openai(&bytes, 0);
        let _ = error_to_openai(&bytes);
        let mut s = StreamTranslator::new(0, true);
        let _ = s.event("message_start", &bytes);
        let _ = s.finish();
    }

    #[test]
    fn answers_and_events_never_panic(v in any_json(), events in prop::collection::vec((prop::sample::select(vec![
        "message_start", "content_block_start", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop", "ping", "error", "other",
    ]), any_json()), 0..8)) {
        let _ = response_to_openai(v.to_string().as_bytes(), 0);
        let _ = error_to_openai(v.to_string().as_bytes());
        let shaped = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
            "content": v, "stop_reason": "end_turn", "usage": {"input_tokens": 1, "output_tokens": 2}});
        let _ = response_to_openai(shaped.to_string().as_bytes(), 0);
        for include_usage in [false, true] {
            let mut s = StreamTranslator::new(0, include_usage);
            for (name, data) in &events {
                let _ = s.event(name, data.to_string().as_bytes());
            }
            let _ = s.finish();
            let _ = s.usage();
        }
    }
}
