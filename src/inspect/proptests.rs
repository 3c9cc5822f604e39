//! Properties of inspection and the rewrite, over arbitrary request bodies: inspection
//! never panics, and the body sent upstream parses with a duplicate-rejecting parser and
//! differs from the client's only by the documented changes.

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::*;
use crate::strict_json;

/// An arbitrary JSON value of bounded size (also used by other modules' property tests).
pub(crate) fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[ -~é\u{1F600}\\\\\"]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A member that is absent, an explicit `null`, or one of the given values.
fn member(values: Vec<Value>) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(Value::Null)),
        prop::sample::select(values).prop_map(Some),
    ]
}

/// The members Sluice reads or sets, in any combination a client may send.
const SPECIAL: &[&str] = &[
    "model",
    "stream",
    "stream_options",
    "prompt_cache_key",
    "service_tier",
    "messages",
    "tools",
    "instructions",
];

fn request_body() -> impl Strategy<Value = (Vec<(String, Value)>, String)> {
    let messages = prop::collection::vec(
        (
            prop::sample::select(vec!["system", "developer", "user", "assistant"]),
            any_json(),
        )
            .prop_map(|(role, content)| json!({"role": role, "content": content})),
        0..4,
    );
    (
        "[a-z0-9.-]{1,16}",
        member(vec![json!(true), json!(false)]),
        member(vec![
            json!({}),
            json!({"include_usage": true}),
            json!({"include_usage": false}),
            json!({"include_usage": null}),
            json!({"include_obfuscation": false}),
            json!({"include_usage": false, "include_obfuscation": true}),
        ]),
        member(vec![json!("client-key"), json!("")]),
        member(vec![
            json!("auto"),
            json!("default"),
            json!("flex"),
            json!("priority"),
        ]),
        prop::option::of(messages),
        prop::option::of(any_json()),
        prop::collection::btree_map(
            "[a-z_]{1,10}".prop_filter("not a member Sluice reads", |k| {
                !SPECIAL.contains(&k.as_str())
            }),
            any_json(),
            0..5,
        ),
        any::<u64>(),
        prop::sample::select(vec!["", " ", "\n  ", "\t"]),
    )
        .prop_map(
            |(model, stream, opts, key, tier, messages, tools, extra, order, ws)| {
                let mut members: Vec<(String, Value)> = vec![("model".into(), json!(model))];
                for (name, v) in [
                    ("stream", stream),
                    ("stream_options", opts),
                    ("prompt_cache_key", key),
                    ("service_tier", tier),
                    ("messages", messages.map(Value::Array)),
                    ("tools", tools),
                ] {
                    if let Some(v) = v {
                        members.push((name.into(), v));
                    }
                }
                members.extend(extra);
                // A deterministic shuffle: members come in any order.
                let n = members.len();
                for i in (1..n).rev() {
                    members.swap(i, (order.rotate_left(i as u32) % (i as u64 + 1)) as usize);
                }
                let text = members
                    .iter()
                    .map(|(k, v)| format!("{ws}{}:{ws}{v}", Value::from(k.as_str())))
                    .collect::<Vec<_>>()
                    .join(",");
                (members, format!("{ws}{{{text}{ws}}}{ws}"))
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn inspect_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = inspect(Endpoint::ChatCompletions, &bytes);
    }

    #[test]
    fn inspect_never_panics_on_arbitrary_json(v in any_json()) {
        for e in [Endpoint::ChatCompletions, Endpoint::Responses, Endpoint::Messages] {
            let _ = inspect(e, v.to_string().as_bytes());
        }
    }

    #[test]
    fn rewrite_changes_only_what_it_documents(
        (members, text) in request_body(),
        want_key in any::<bool>(),
        want_flex in any::<bool>(),
        want_usage in any::<bool>(),
    ) {
        let body = Bytes::from(text);
        let facts = inspect(Endpoint::ChatCompletions, &body);
        let facts = match facts {
            Ok(f) => f,
            // The generator never sends a null or empty model... except an invalid
            // stream_options, which inspection refuses with a 400 before any rewrite.
            Err(e) => {
                prop_assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
                return Ok(());
            }
        };
        let client: Map<String, Value> = members.into_iter().collect();
        let present = |k: &str| client.get(k).is_some_and(|v| !v.is_null());
        prop_assert_eq!(facts.has_cache_key, present("prompt_cache_key"));
        prop_assert_eq!(facts.has_service_tier, present("service_tier"));
        // What the gateway adds, under the gateway's own conditions.
        let add = Additions {
            prompt_cache_key: (want_key && !facts.has_cache_key).then(|| "sluice-k".to_owned()),
            include_usage: want_usage && !facts.client_wants_usage,
            flex: want_flex && !facts.has_service_tier,
        };
        let out = rewrite(&body, &facts, &add);
        let sent = strict_json::parse(&out);
        prop_assert!(sent.is_ok(), "duplicate or broken: {}", String::from_utf8_lossy(&out));
        let Value::Object(sent) = sent.unwrap() else {
            return Err(TestCaseError::fail("not an object"));
        };
        let mut expected = client.clone();
        if let Some(k) = &add.prompt_cache_key {
            expected.insert("prompt_cache_key".into(), json!(k));
        }
        if add.flex {
            expected.insert("service_tier".into(), json!("flex"));
        }
        if add.include_usage {
            let mut opts = match client.get("stream_options") {
                Some(Value::Object(o)) => o.clone(),
                _ => Map::new(),
            };
            opts.insert("include_usage".into(), json!(true));
            expected.insert("stream_options".into(), Value::Object(opts));
        }
        prop_assert_eq!(Value::Object(sent), Value::Object(expected.clone()));
        if add.is_empty() {
            prop_assert_eq!(&out, &body);
        }

        // The same body as a batch input line, OpenAI's and Anthropic's: one key each,
        // the body without the streaming members (a batch answers whole).
        let batch_body = crate::inspect::without_members(&out, &["stream", "stream_options"]);
        prop_assert!(batch_body.is_ok());
        let batch_body = batch_body.unwrap();
        expected.remove("stream");
        expected.remove("stream_options");
        let line = crate::providers::openai::wire::input_line("job_1", Endpoint::ChatCompletions, &batch_body);
        prop_assert!(line.ends_with(b"\n") && !line[..line.len() - 1].contains(&b'\n'));
        let parsed = strict_json::parse(&line);
        prop_assert!(parsed.is_ok(), "{}", String::from_utf8_lossy(&line));
        let parsed = parsed.unwrap();
        prop_assert_eq!(&parsed["custom_id"], "job_1");
        prop_assert_eq!(&parsed["body"], &Value::Object(expected.clone()));
        let entry = crate::providers::anthropic::batch_wire::request_entry("job_1", &batch_body);
        let parsed = strict_json::parse(&entry);
        prop_assert!(parsed.is_ok(), "{}", String::from_utf8_lossy(&entry));
        prop_assert_eq!(&parsed.unwrap()["params"], &Value::Object(expected));
    }
}

#[test]
fn explicit_nulls_are_replaced_not_repeated() {
    // What the OpenAI Python SDK sends for `stream_options=None, service_tier=None,
    // prompt_cache_key=None`.
    let body = Bytes::from_static(
        b"{\"model\":\"gpt-5-mini\",\"stream\":true,\"stream_options\":null,\"service_tier\":null,\"prompt_cache_key\":null,\"messages\":[]}",
    );
    let f = inspect(Endpoint::ChatCompletions, &body).unwrap();
    assert!(!f.has_cache_key && !f.has_service_tier && !f.client_wants_usage);
    let out = rewrite(
        &body,
        &f,
        &Additions {
            prompt_cache_key: Some("sluice-k".into()),
            include_usage: true,
            flex: true,
        },
    );
    assert_eq!(
        std::str::from_utf8(&out).unwrap(),
        "{\"model\":\"gpt-5-mini\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"service_tier\":\"flex\",\"prompt_cache_key\":\"sluice-k\",\"messages\":[]}"
    );
    assert!(strict_json::parse(&out).is_ok());
}
