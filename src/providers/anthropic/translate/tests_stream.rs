//! Stream translation: each event, and a full stream that adds up to the non-stream answer.

use bytes::Bytes;
use serde_json::{Value, json};

use super::tests::{CREATED, openai_response};
use super::{StreamTranslator, TranslateError};

/// Feeds `(event, data)` pairs, then `finish()`; returns every SSE event produced.
fn run(include_usage: bool, events: &[(&str, Value)]) -> Vec<Bytes> {
    let mut t = StreamTranslator::new(CREATED, include_usage);
    let mut out = Vec::new();
    for (name, data) in events {
        out.extend(t.event(name, data.to_string().as_bytes()).unwrap());
    }
    out.extend(t.finish());
    out
}

/// The JSON of each `data:` event; `[DONE]` must be last and only there.
fn chunks(events: &[Bytes]) -> Vec<Value> {
    let (last, rest) = events.split_last().unwrap();
    assert_eq!(&last[..], b"data: [DONE]\n\n");
    rest.iter()
        .map(|e| {
            let text = std::str::from_utf8(e).unwrap();
            let json = text
                .strip_prefix("data: ")
                .unwrap()
                .strip_suffix("\n\n")
                .unwrap();
            serde_json::from_str(json).unwrap()
        })
        .collect()
}

fn start(id: &str, model: &str, usage: Value) -> (&'static str, Value) {
    let message = json!({"id": id, "type": "message", "role": "assistant", "model": model, "content": [],
                         "stop_reason": null, "stop_sequence": null, "usage": usage});
    (
        "message_start",
        json!({"type": "message_start", "message": message}),
    )
}

fn block_start(index: u64, block: Value) -> (&'static str, Value) {
    (
        "content_block_start",
        json!({"type": "content_block_start", "index": index, "content_block": block}),
    )
}

fn delta(index: u64, delta: Value) -> (&'static str, Value) {
    (
        "content_block_delta",
        json!({"type": "content_block_delta", "index": index, "delta": delta}),
    )
}

fn text(index: u64, text: &str) -> (&'static str, Value) {
    delta(index, json!({"type": "text_delta", "text": text}))
}

fn json_part(index: u64, partial: &str) -> (&'static str, Value) {
    delta(
        index,
        json!({"type": "input_json_delta", "partial_json": partial}),
    )
}

fn block_stop(index: u64) -> (&'static str, Value) {
    (
        "content_block_stop",
        json!({"type": "content_block_stop", "index": index}),
    )
}

fn message_delta(stop_reason: &str, usage: Value) -> (&'static str, Value) {
    (
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null}, "usage": usage}),
    )
}

fn ping() -> (&'static str, Value) {
    ("ping", json!({"type": "ping"}))
}

fn message_stop() -> (&'static str, Value) {
    ("message_stop", json!({"type": "message_stop"}))
}

#[test]
fn reference_stream_example() {
    // provider-apis.md 2.2, translated into the shape of the OpenAI example in 1.4.
    let events = [
        start(
            "msg_01Hq",
            "claude-sonnet-4-5-20250929",
            json!({"input_tokens": 14, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 4102, "output_tokens": 1}),
        ),
        block_start(0, json!({"type": "text", "text": ""})),
        ping(),
        text(0, "billing"),
        block_stop(0),
        message_delta("end_turn", json!({"output_tokens": 4})),
        message_stop(),
    ];
    let out = run(true, &events);
    let chunk = |choices: Value, usage: Value| {
        json!({"id": "chatcmpl-msg_01Hq", "object": "chat.completion.chunk", "created": CREATED,
               "model": "claude-sonnet-4-5-20250929", "system_fingerprint": null, "choices": choices, "usage": usage})
    };
    let choice = |delta: Value, finish: Value| json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);
    assert_eq!(
        chunks(&out),
        vec![
            chunk(
                choice(json!({"role": "assistant", "content": ""}), Value::Null),
                Value::Null
            ),
            chunk(
                choice(json!({"content": "billing"}), Value::Null),
                Value::Null
            ),
            chunk(choice(json!({}), json!("stop")), Value::Null),
            chunk(
                json!([]),
                json!({"prompt_tokens": 4116, "completion_tokens": 4, "total_tokens": 4120,
                                    "prompt_tokens_details": {"cached_tokens": 4102, "cache_write_tokens": 0}})
            ),
        ]
    );
    // Exact bytes of one chunk: field order as OpenAI sends it.
    assert_eq!(
        std::str::from_utf8(&out[1]).unwrap(),
        format!(
            "data: {{\"id\":\"chatcmpl-msg_01Hq\",\"object\":\"chat.completion.chunk\",\"created\":{CREATED},\"model\":\"claude-sonnet-4-5-20250929\",\"system_fingerprint\":null,\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"billing\"}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n"
        )
    );
}

/// Folds chunks into a `chat.completion`, the way an OpenAI SDK accumulates a stream.
fn accumulate(chunks: &[Value]) -> Value {
    let first = &chunks[0];
    let mut content: Option<String> = None;
    let mut tool_calls: Vec<Value> = Vec::new();
    let mut finish = Value::Null;
    let mut usage = Value::Null;
    for c in chunks {
        assert_eq!(c["id"], first["id"]);
        assert_eq!(c["created"], first["created"]);
        assert_eq!(c["model"], first["model"]);
        assert_eq!(c["object"], "chat.completion.chunk");
        if !c["usage"].is_null() {
            usage = c["usage"].clone();
        }
        let Some(choice) = c["choices"].get(0) else {
            continue;
        };
        let d = &choice["delta"];
        if let Some(text) = d["content"].as_str() {
            content.get_or_insert_with(String::new).push_str(text);
        }
        for call in d["tool_calls"].as_array().into_iter().flatten() {
            let i = call["index"].as_u64().unwrap() as usize;
            if i == tool_calls.len() {
                tool_calls.push(json!({"id": call["id"], "type": call["type"],
                                       "function": {"name": call["function"]["name"], "arguments": ""}}));
            }
            let args = format!(
                "{}{}",
                tool_calls[i]["function"]["arguments"].as_str().unwrap(),
                call["function"]["arguments"].as_str().unwrap()
            );
            tool_calls[i]["function"]["arguments"] = json!(args);
        }
        if !choice["finish_reason"].is_null() {
            finish = choice["finish_reason"].clone();
        }
    }
    // The role chunk's "" is not text; OpenAI's message has null content with tool calls only.
    let content = match content {
        Some(s) if s.is_empty() && !tool_calls.is_empty() => Value::Null,
        other => json!(other.unwrap_or_default()),
    };
    let mut message =
        json!({"role": "assistant", "content": content, "refusal": null, "annotations": []});
    if !tool_calls.is_empty() {
        message["tool_calls"] = json!(tool_calls);
    }
    json!({"id": first["id"], "object": "chat.completion", "created": first["created"], "model": first["model"],
           "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
           "usage": usage, "system_fingerprint": null})
}

#[test]
fn full_stream_matches_the_non_stream_translation() {
    let usage_start = json!({"input_tokens": 50, "cache_creation_input_tokens": 1000, "cache_read_input_tokens": 2000, "output_tokens": 1});
    let events = [
        start("msg_full", "claude-opus-4-1", usage_start),
        block_start(0, json!({"type": "text", "text": ""})),
        text(0, "Checking "),
        ping(),
        text(0, "two cities."),
        block_stop(0),
        block_start(
            1,
            json!({"type": "tool_use", "id": "toolu_a", "name": "weather", "input": {}}),
        ),
        json_part(1, ""),
        json_part(1, "{\"city\":"),
        json_part(1, "\"Paris\",\"days\":[1,"),
        json_part(1, "2]}"),
        block_stop(1),
        block_start(
            2,
            json!({"type": "tool_use", "id": "toolu_b", "name": "clock", "input": {}}),
        ),
        block_stop(2),
        block_start(
            3,
            json!({"type": "tool_use", "id": "toolu_c", "name": "weather", "input": {}}),
        ),
        json_part(3, "{\"city\":\"Rome\"}"),
        block_stop(3),
        message_delta("tool_use", json!({"output_tokens": 77})),
        message_stop(),
    ];
    let message = json!({
        "id": "msg_full", "type": "message", "role": "assistant", "model": "claude-opus-4-1",
        "content": [
            {"type": "text", "text": "Checking two cities."},
            {"type": "tool_use", "id": "toolu_a", "name": "weather", "input": {"city": "Paris", "days": [1, 2]}},
            {"type": "tool_use", "id": "toolu_b", "name": "clock", "input": {}},
            {"type": "tool_use", "id": "toolu_c", "name": "weather", "input": {"city": "Rome"}},
        ],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 50, "cache_creation_input_tokens": 1000, "cache_read_input_tokens": 2000, "output_tokens": 77},
    });
    let expected = openai_response(&message);
    let streamed = accumulate(&chunks(&run(true, &events)));
    assert_eq!(streamed, expected);
    assert_eq!(
        expected["choices"][0]["message"]["tool_calls"][1]["function"]["arguments"],
        "{}"
    );

    // Tool calls only: content null in both.
    let events = [
        start("msg_t", "m", json!({"input_tokens": 5, "output_tokens": 1})),
        block_start(
            0,
            json!({"type": "tool_use", "id": "t1", "name": "f", "input": {}}),
        ),
        json_part(0, "{\"a\":1}"),
        block_stop(0),
        message_delta("tool_use", json!({"output_tokens": 9})),
        message_stop(),
    ];
    let message = json!({"id": "msg_t", "model": "m", "stop_reason": "tool_use",
        "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}],
        "usage": {"input_tokens": 5, "output_tokens": 9}});
    assert_eq!(
        accumulate(&chunks(&run(true, &events))),
        openai_response(&message)
    );
}

#[test]
fn tool_call_chunks() {
    let events = [
        start("m1", "m", json!({"input_tokens": 1, "output_tokens": 1})),
        block_start(0, json!({"type": "thinking", "thinking": ""})),
        delta(0, json!({"type": "thinking_delta", "thinking": "hmm"})),
        delta(0, json!({"type": "signature_delta", "signature": "sig"})),
        block_stop(0),
        block_start(
            1,
            json!({"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}),
        ),
        json_part(1, "{\"x\":"),
        block_stop(1),
    ];
    let c = chunks(&run(false, &events));
    assert_eq!(c.len(), 3);
    assert!(c.iter().all(|c| c.get("usage").is_none()));
    assert_eq!(
        c[1]["choices"][0]["delta"],
        json!({"tool_calls": [{"index": 0, "id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": ""}}]})
    );
    assert_eq!(
        c[2]["choices"][0]["delta"],
        json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"x\":"}}]})
    );
}

#[test]
fn text_in_block_start_is_sent() {
    let events = [
        start("m1", "m", json!({"input_tokens": 1, "output_tokens": 1})),
        block_start(0, json!({"type": "text", "text": "Hi"})),
        text(0, ""),
    ];
    let c = chunks(&run(false, &events));
    assert_eq!(c.len(), 2);
    assert_eq!(c[1]["choices"][0]["delta"], json!({"content": "Hi"}));
}

#[test]
fn the_served_tier_is_kept_for_pricing_and_not_translated() {
    use crate::types::ServedTier;
    let mut t = StreamTranslator::new(CREATED, true);
    let (name, data) = start(
        "m1",
        "m",
        json!({"input_tokens": 10, "output_tokens": 1, "service_tier": "priority"}),
    );
    let out = t.event(name, data.to_string().as_bytes()).unwrap();
    assert_eq!(t.served_tier(), Some(ServedTier::Priority));
    assert!(
        !std::str::from_utf8(&out[0])
            .unwrap()
            .contains("service_tier")
    );
    // A message_delta without a tier keeps it; one with a tier replaces it; odd values are
    // not a tier and break nothing.
    let (name, data) = message_delta("end_turn", json!({"output_tokens": 4}));
    t.event(name, data.to_string().as_bytes()).unwrap();
    assert_eq!(t.served_tier(), Some(ServedTier::Priority));
    let (name, data) = message_delta("end_turn", json!({"output_tokens": 5, "service_tier": 7}));
    t.event(name, data.to_string().as_bytes()).unwrap();
    assert_eq!(t.served_tier(), Some(ServedTier::Priority));
    let (name, data) = message_delta(
        "end_turn",
        json!({"output_tokens": 6, "service_tier": "standard"}),
    );
    t.event(name, data.to_string().as_bytes()).unwrap();
    assert_eq!(t.served_tier(), Some(ServedTier::Standard));
    let usage = t.usage().unwrap();
    assert!(usage.get("service_tier").is_none(), "{usage}");
    assert_eq!(usage["completion_tokens"], 6);
}

#[test]
fn usage_accumulates_and_is_reported() {
    let mut t = StreamTranslator::new(CREATED, false);
    assert_eq!(t.usage(), None);
    let (name, data) = start(
        "m1",
        "m",
        json!({"input_tokens": 10, "cache_creation_input_tokens": null, "cache_read_input_tokens": 30, "output_tokens": 1}),
    );
    t.event(name, data.to_string().as_bytes()).unwrap();
    assert_eq!(
        t.usage(),
        Some(
            json!({"prompt_tokens": 40, "completion_tokens": 1, "total_tokens": 41,
                    "prompt_tokens_details": {"cached_tokens": 30, "cache_write_tokens": 0}})
        )
    );
    let (name, data) = message_delta(
        "max_tokens",
        json!({"output_tokens": 8, "input_tokens": 12, "cache_creation_input_tokens": 5}),
    );
    let out = t.event(name, data.to_string().as_bytes()).unwrap();
    let chunk: Value = serde_json::from_str(
        std::str::from_utf8(&out[0])
            .unwrap()
            .trim()
            .strip_prefix("data: ")
            .unwrap(),
    )
    .unwrap();
    assert_eq!(chunk["choices"][0]["finish_reason"], "length");
    assert_eq!(
        t.usage(),
        Some(
            json!({"prompt_tokens": 47, "completion_tokens": 8, "total_tokens": 55,
                    "prompt_tokens_details": {"cached_tokens": 30, "cache_write_tokens": 5}})
        )
    );
    // Without include_usage the end is only [DONE].
    assert_eq!(t.finish(), vec![Bytes::from_static(b"data: [DONE]\n\n")]);
}

#[test]
fn message_stop_ends_once() {
    let mut t = StreamTranslator::new(CREATED, true);
    let (name, data) = start("m1", "m", json!({"input_tokens": 1, "output_tokens": 1}));
    t.event(name, data.to_string().as_bytes()).unwrap();
    let (name, data) = message_stop();
    let end = t.event(name, data.to_string().as_bytes()).unwrap();
    assert_eq!(end.len(), 2);
    assert_eq!(&end[1][..], b"data: [DONE]\n\n");
    assert!(t.finish().is_empty());
    assert!(t.event("ping", br#"{"type":"ping"}"#).unwrap().is_empty());
}

#[test]
fn interrupted_stream_still_ends() {
    // No message_delta / message_stop: finish() gives the usage so far and [DONE].
    let events = [
        start("m1", "m", json!({"input_tokens": 3, "output_tokens": 1})),
        text(0, "par"),
    ];
    let c = chunks(&run(true, &events));
    assert_eq!(c.len(), 3);
    assert_eq!(c[2]["choices"], json!([]));
    assert_eq!(c[2]["usage"]["prompt_tokens"], 3);
    // Nothing at all: just [DONE].
    assert_eq!(
        run(true, &[]),
        vec![Bytes::from_static(b"data: [DONE]\n\n")]
    );
}

#[test]
fn error_event() {
    let events = [
        start("m1", "m", json!({"input_tokens": 1, "output_tokens": 1})),
        (
            "error",
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ),
    ];
    let out = run(true, &events);
    assert_eq!(
        std::str::from_utf8(&out[1]).unwrap(),
        "data: {\"error\":{\"message\":\"Overloaded\",\"type\":\"server_error\",\"param\":null,\"code\":\"overloaded\"}}\n\n"
    );
    // No usage chunk after an error; the stream still terminates.
    assert_eq!(out.len(), 3);
    assert_eq!(&out[2][..], b"data: [DONE]\n\n");
}

#[test]
fn event_name_falls_back_to_data_type() {
    let (_, data) = start("m1", "m", json!({"input_tokens": 1, "output_tokens": 1}));
    let mut t = StreamTranslator::new(CREATED, false);
    assert_eq!(t.event("", data.to_string().as_bytes()).unwrap().len(), 1);
    assert!(
        t.event("", br#"{"type":"something_new"}"#)
            .unwrap()
            .is_empty()
    );
    assert!(t.event("something_new", b"{}").unwrap().is_empty());
}

#[test]
fn malformed_events_are_invalid() {
    let mut t = StreamTranslator::new(CREATED, false);
    for (name, data) in [
        ("message_start", &b"{}"[..]),
        ("content_block_delta", b"not json"),
        ("", b"{}"),
    ] {
        assert!(
            matches!(t.event(name, data), Err(TranslateError::Invalid(_))),
            "{name}"
        );
    }
}
