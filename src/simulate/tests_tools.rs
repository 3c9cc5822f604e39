//! In-process tests of chat tool calls and structured outputs: every argument and every
//! structured answer is checked against its schema with the `jsonschema` crate.

use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};

use super::SimConfig;
use super::tests::{Answer, Server};
use super::tests_files::{create_ok, lines_of, poll_terminal, upload_lines};
use super::text::tokens;

fn assert_valid(schema: &Value, instance: &Value) {
    let validator = jsonschema::validator_for(schema)
        .unwrap_or_else(|e| panic!("invalid schema {schema}: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{instance}\ndoes not match {schema}:\n{errors:#?}"
    );
}

fn weather_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "City name"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 7}
        },
        "required": ["city", "unit"],
        "additionalProperties": false
    })
}

/// What Pydantic and the OpenAI SDK emit for nested models, plus the other keywords the
/// generator honours.
fn order_schema() -> Value {
    json!({
        "$defs": {
            "Status": {"enum": ["open", "shipped"], "title": "Status", "type": "string"},
            "Item": {
                "type": "object",
                "properties": {
                    "sku": {"type": "string", "minLength": 12},
                    "qty": {"type": "integer", "minimum": 1, "maximum": 9}
                },
                "required": ["sku", "qty"],
                "additionalProperties": false
            },
            "Base": {"type": "object", "properties": {"sku": {"type": "string"}}, "required": ["sku"]},
            "Node": {
                "type": "object",
                "properties": {
                    "label": {"type": "string"},
                    "child": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]}
                },
                "required": ["label", "child"],
                "additionalProperties": false
            }
        },
        "definitions": {
            "Legacy": {"type": "object", "properties": {"flag": {"type": "boolean"}}, "required": ["flag"]}
        },
        "type": "object",
        "properties": {
            "id": {"type": "integer", "exclusiveMinimum": 100},
            "status": {"$ref": "#/$defs/Status"},
            "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}, "minItems": 2, "uniqueItems": true},
            "matrix": {"type": "array", "items": {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}}},
            "note": {"type": ["string", "null"]},
            "shipped_at": {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]},
            "tree": {"$ref": "#/$defs/Node"},
            "legacy": {"$ref": "#/definitions/Legacy"},
            "kind": {"const": "order"},
            "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "minItems": 3, "uniqueItems": true},
            "merged": {"allOf": [{"$ref": "#/$defs/Base"}, {"properties": {"extra": {"type": "boolean"}}, "required": ["extra"]}]},
            "choice": {"oneOf": [{"type": "integer", "multipleOf": 5, "minimum": 7}, {"type": "string"}]},
            "x-unknown": {"type": "string", "x-vendor-keyword": true}
        },
        "required": ["id", "status", "items", "matrix", "note", "shipped_at", "tree", "legacy",
                     "kind", "tags", "merged", "choice", "x-unknown"],
        "additionalProperties": false
    })
}

fn tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                          "parameters": weather_schema(), "strict": true}},
        {"type": "function", "function": {"name": "lookup_order", "parameters": order_schema()}}
    ])
}

fn body(user: &str, extra: Value) -> Value {
    let mut b = json!({"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": user}
    ]});
    if let (Some(b), Some(e)) = (b.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    b
}

async fn chat(srv: &Server, body: &Value) -> Answer {
    srv.post("/v1/chat/completions", body).await
}

async fn chat_ok(srv: &Server, body: &Value) -> Value {
    let a = chat(srv, body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    a.json()
}

/// The one tool call of choice `i`, checked for the reference shape; `(name, arguments)`.
fn tool_call(v: &Value, i: usize) -> (String, Value) {
    let choice = &v["choices"][i];
    assert_eq!(choice["finish_reason"], "tool_calls", "{v}");
    let message = &choice["message"];
    let keys: Vec<&str> = message
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for key in ["role", "content", "tool_calls", "refusal", "annotations"] {
        assert!(keys.contains(&key), "message lacks {key}: {message}");
    }
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["content"], Value::Null);
    let calls = message["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert!(call["id"].as_str().unwrap().starts_with("call_sim"));
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"].as_object().unwrap().len(), 2);
    let raw = call["function"]["arguments"].as_str().unwrap();
    let args: Value = serde_json::from_str(raw).unwrap();
    (call["function"]["name"].as_str().unwrap().to_owned(), args)
}

fn text_answer(v: &Value) -> &str {
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
    assert!(v["choices"][0]["message"].get("tool_calls").is_none());
    v["choices"][0]["message"]["content"].as_str().unwrap()
}

#[tokio::test]
async fn tool_choice_required_named_auto_and_none() {
    let srv = Server::start(SimConfig::default()).await;
    let hello = "Hello there";

    let v = chat_ok(
        &srv,
        &body(hello, json!({"tools": tools(), "tool_choice": "required"})),
    )
    .await;
    let (name, args) = tool_call(&v, 0);
    assert_eq!(name, "get_weather");
    assert_valid(&weather_schema(), &args);
    assert_eq!(args["unit"], "celsius");
    let raw = v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .unwrap();
    assert_eq!(
        v["usage"]["completion_tokens"],
        tokens("get_weather") + tokens(raw)
    );

    let named = json!({"type": "function", "function": {"name": "lookup_order"}});
    let v = chat_ok(
        &srv,
        &body(hello, json!({"tools": tools(), "tool_choice": named})),
    )
    .await;
    let (name, args) = tool_call(&v, 0);
    assert_eq!(name, "lookup_order");
    assert_valid(&order_schema(), &args);

    // auto (explicit or by default): a tool the last user text mentions, else text.
    for choice in [json!("auto"), Value::Null] {
        let mut extra = json!({"tools": tools()});
        if !choice.is_null() {
            extra["tool_choice"] = choice;
        }
        let asks = body("Can you look up my order 42?", extra.clone());
        assert_eq!(tool_call(&chat_ok(&srv, &asks).await, 0).0, "lookup_order");
        let asks = body("What's the weather in Paris?", extra.clone());
        assert_eq!(tool_call(&chat_ok(&srv, &asks).await, 0).0, "get_weather");
        let plain = chat_ok(&srv, &body(hello, extra)).await;
        assert_eq!(text_answer(&plain), "Simulated answer to: Hello there");
    }
    let none = json!({"tools": tools(), "tool_choice": "none"});
    let v = chat_ok(&srv, &body("What's the weather in Paris?", none)).await;
    assert!(text_answer(&v).starts_with("Simulated answer to:"));

    // n = 2: both choices call, with distinct ids; usage counts both.
    let two = json!({"tools": tools(), "tool_choice": "required", "n": 2});
    let v = chat_ok(&srv, &body(hello, two)).await;
    assert_eq!(tool_call(&v, 0), tool_call(&v, 1));
    let id = |i: usize| v["choices"][i]["message"]["tool_calls"][0]["id"].clone();
    assert_ne!(id(0), id(1));
    assert_eq!(
        v["usage"]["completion_tokens"],
        2 * (tokens("get_weather") + tokens(raw))
    );
    srv.stop().await;
}

#[tokio::test]
async fn streamed_tool_call_reassembles_into_the_same_call() {
    let srv = Server::start(SimConfig::default()).await;
    let named = json!({"type": "function", "function": {"name": "lookup_order"}});
    let plain = body("hi", json!({"tools": tools(), "tool_choice": named}));
    let whole = chat_ok(&srv, &plain).await;
    let mut streamed = plain.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let a = chat(&srv, &streamed).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        a.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let data = a.sse_data();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let n = chunks.len();
    assert!(n > 4, "arguments come in several pieces");
    for c in &chunks[..n - 1] {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], chunks[0]["id"]);
        assert_eq!(c["usage"], Value::Null);
    }

    let opening = &chunks[0]["choices"][0];
    assert_eq!(opening["finish_reason"], Value::Null);
    let id = opening["delta"]["tool_calls"][0]["id"].as_str().unwrap();
    assert!(id.starts_with("call_sim"), "{id}");
    assert_eq!(
        opening["delta"],
        json!({"role": "assistant", "content": null, "refusal": null, "tool_calls": [{
            "index": 0,
            "id": opening["delta"]["tool_calls"][0]["id"],
            "type": "function",
            "function": {"name": "lookup_order", "arguments": ""}
        }]})
    );
    let mut arguments = String::new();
    for c in &chunks[1..n - 2] {
        let delta = &c["choices"][0]["delta"];
        assert_eq!(delta.as_object().unwrap().len(), 1, "{delta}");
        let call = &delta["tool_calls"][0];
        assert_eq!(
            call.as_object().unwrap().len(),
            2,
            "only index and function: {call}"
        );
        assert_eq!(call["index"], 0);
        assert_eq!(call["function"].as_object().unwrap().len(), 1);
        arguments.push_str(call["function"]["arguments"].as_str().unwrap());
    }
    let last = &chunks[n - 2]["choices"][0];
    assert_eq!(last["delta"], json!({}));
    assert_eq!(last["finish_reason"], "tool_calls");
    assert_eq!(chunks[n - 1]["choices"], json!([]));
    assert_eq!(chunks[n - 1]["usage"], whole["usage"]);

    assert_eq!(
        arguments,
        whole["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    );
    assert_valid(&order_schema(), &serde_json::from_str(&arguments).unwrap());
    srv.stop().await;
}

#[tokio::test]
async fn json_schema_response_format_is_schema_valid_json() {
    let srv = Server::start(SimConfig::default()).await;
    let format = json!({"type": "json_schema",
        "json_schema": {"name": "Order", "schema": order_schema(), "strict": true}});
    let plain = body("Extract the order.", json!({"response_format": format}));
    let v = chat_ok(&srv, &plain).await;
    let content = text_answer(&v);
    let parsed: Value = serde_json::from_str(content).unwrap();
    assert_valid(&order_schema(), &parsed);
    assert_eq!(parsed["status"], "open");
    assert_eq!(parsed["kind"], "order");
    assert_eq!(
        parsed["tree"]["child"],
        Value::Null,
        "the cycle stops at once"
    );
    assert_eq!(parsed["items"].as_array().unwrap().len(), 2);
    assert_eq!(parsed["tags"], json!(["a", "b", "c"]));
    assert_eq!(v["usage"]["completion_tokens"], tokens(content));

    // Deterministic, and the stream carries the same content.
    assert_eq!(chat_ok(&srv, &plain).await["choices"], v["choices"]);
    let mut streamed = plain.clone();
    streamed["stream"] = json!(true);
    let a = chat(&srv, &streamed).await;
    let data = a.sse_data();
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, content);
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );

    // A tool call wins over the response format.
    let both = body(
        "the weather?",
        json!({"tools": tools(), "response_format": {"type": "json_schema", "json_schema": {"name": "Order", "schema": order_schema()}}}),
    );
    assert_eq!(tool_call(&chat_ok(&srv, &both).await, 0).0, "get_weather");

    // A limit too small for the JSON cuts it, as a real model would.
    let mut short = plain.clone();
    short["max_completion_tokens"] = json!(5);
    let v = chat_ok(&srv, &short).await;
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["choices"][0]["message"]["content"], content[..20]);
    assert_eq!(v["usage"]["completion_tokens"], 5);
    srv.stop().await;
}

#[tokio::test]
async fn json_object_response_format_answers_an_object() {
    let srv = Server::start(SimConfig::default()).await;
    let v = chat_ok(
        &srv,
        &body(
            "Reply in JSON please",
            json!({"response_format": {"type": "json_object"}}),
        ),
    )
    .await;
    let parsed: Value = serde_json::from_str(text_answer(&v)).unwrap();
    assert_eq!(
        parsed,
        json!({"answer": "Simulated answer to: Reply in JSON please"})
    );
    let text = chat_ok(
        &srv,
        &body("x", json!({"response_format": {"type": "text"}})),
    )
    .await;
    assert_eq!(text_answer(&text), "Simulated answer to: x");
    srv.stop().await;
}

#[tokio::test]
async fn odd_tools_answer_without_panicking() {
    let srv = Server::start(SimConfig::default()).await;
    let odd = json!([
        {"type": "function", "function": {"name": "no_params"}},
        {"type": "function", "function": {"name": "null_params", "parameters": null}},
        {"type": "function", "function": {"name": "empty_params", "parameters": {}}},
        {"type": "function", "function": {"name": "cycle", "parameters":
            {"type": "object", "properties": {"next": {"$ref": "#"}}, "required": ["next"]}}},
        {"type": "function", "function": {"name": "unknown", "parameters":
            {"type": "object", "x-vendor": [1], "properties": {"a": {"type": "string", "pattern": "^[0-9]+$"},
             "b": {"type": "bogus"}}, "required": ["a", "b", "c"]}}},
        {"type": "custom", "custom": {"name": "grammar"}}
    ]);
    for (name, expected) in [
        ("no_params", Some(json!({}))),
        ("null_params", Some(json!({}))),
        ("empty_params", Some(json!({}))),
        ("unknown", Some(json!({"a": "simulated", "b": {}, "c": {}}))),
        ("cycle", None),
    ] {
        let choice = json!({"type": "function", "function": {"name": name}});
        let v = chat_ok(
            &srv,
            &body("x", json!({"tools": odd, "tool_choice": choice})),
        )
        .await;
        let (called, args) = tool_call(&v, 0);
        assert_eq!(called, name);
        match expected {
            Some(e) => assert_eq!(args, e),
            None => assert!(args["next"].is_object()),
        }
    }
    // Only custom tools allowed: the simulator answers text.
    let custom = json!({"type": "custom", "custom": {"name": "grammar"}});
    let v = chat_ok(
        &srv,
        &body("x", json!({"tools": odd, "tool_choice": custom})),
    )
    .await;
    assert_eq!(text_answer(&v), "Simulated answer to: x");
    // A limit too small for the arguments ends the call with `length`.
    let short = json!({"tools": tools(), "tool_choice": "required", "max_tokens": 4});
    let v = chat_ok(&srv, &body("x", short)).await;
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 4);
    srv.stop().await;
}

#[tokio::test]
async fn bad_tools_and_formats_are_openai_400s() {
    let srv = Server::start(SimConfig::default()).await;
    let cases = [
        (json!({"tools": []}), "tools", json!("empty_array")),
        (
            json!({"tools": [{"type": "function", "function": {"name": "bad name"}}]}),
            "tools[0].function.name",
            json!("invalid_value"),
        ),
        (
            json!({"tool_choice": "required"}),
            "tool_choice",
            Value::Null,
        ),
        (
            json!({"tools": tools(), "tool_choice": {"type": "function", "function": {"name": "nope"}}}),
            "tool_choice.function.name",
            json!("invalid_value"),
        ),
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}}),
            "response_format.json_schema.name",
            json!("missing_required_parameter"),
        ),
        (
            json!({"response_format": {"type": "yaml"}}),
            "response_format.type",
            json!("invalid_value"),
        ),
    ];
    for (extra, param, code) in cases {
        let a = chat(&srv, &body("x", extra)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text());
        let err = &a.json()["error"];
        assert_eq!(err["type"], "invalid_request_error");
        assert_eq!(err["param"], param);
        assert_eq!(err["code"], code);
        assert!(!err["message"].as_str().unwrap().is_empty(), "{err}");
    }
    srv.stop().await;
}

#[tokio::test]
async fn batch_lines_answer_like_the_synchronous_endpoint() {
    let srv = Server::start(SimConfig {
        batch_turnaround: Duration::ZERO,
        ..SimConfig::default()
    })
    .await;
    let call = body("x", json!({"tools": tools(), "tool_choice": "required"}));
    let format = body(
        "x",
        json!({"response_format": {"type": "json_schema", "json_schema": {"name": "Order", "schema": order_schema()}}}),
    );
    let line = |id: &str, body: &Value| json!({"custom_id": id, "method": "POST", "url": "/v1/chat/completions", "body": body});
    let file = upload_lines(&srv, &[line("call", &call), line("format", &format)]).await;
    let id = create_ok(&srv, &file).await;
    let done = poll_terminal(&srv, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let out = lines_of(&srv, &done["output_file_id"]).await;
    assert_eq!(out.len(), 2);
    for line in out {
        let answer = &line["response"]["body"];
        let sync = chat_ok(
            &srv,
            if line["custom_id"] == "call" {
                &call
            } else {
                &format
            },
        )
        .await;
        if line["custom_id"] == "call" {
            assert_eq!(tool_call(answer, 0), tool_call(&sync, 0));
        } else {
            assert_eq!(
                answer["choices"][0]["message"]["content"],
                sync["choices"][0]["message"]["content"]
            );
        }
    }
    srv.stop().await;
}
