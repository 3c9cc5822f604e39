//! `response_events`: finished Responses API objects as the event stream the SDKs parse.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use proptest::prelude::*;

use super::*;
use crate::inspect::proptests::any_json;

const MESSAGE: &str = r#"{"id":"resp_1","object":"response","created_at":7,"status":"completed","completed_at":8,"error":null,"incomplete_details":null,"instructions":null,"model":"gpt-4.1-mini","output":[{"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":"billing","annotations":[],"logprobs":[]}]}],"parallel_tool_calls":true,"tool_choice":"auto","tools":[],"temperature":1.0,"top_p":1.0,"metadata":{},"usage":{"input_tokens":5,"input_tokens_details":{"cached_tokens":0,"cache_write_tokens":0},"output_tokens":1,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":6}}"#;

const FUNCTION_CALL: &str = r#"{"id":"resp_2","object":"response","created_at":7,"status":"completed","error":null,"incomplete_details":null,"model":"gpt-4.1-mini","output":[{"type":"reasoning","id":"rs_1","summary":[]},{"type":"function_call","id":"fc_1","call_id":"call_1","name":"route","arguments":"{\"queue\":\"billing\"}","status":"completed"}],"parallel_tool_calls":true,"tool_choice":"auto","tools":[{"type":"function","name":"route","parameters":{"type":"object","properties":{"queue":{"type":"string"}}}}],"usage":{"input_tokens":9,"input_tokens_details":{"cached_tokens":0,"cache_write_tokens":0},"output_tokens":4,"output_tokens_details":{"reasoning_tokens":2},"total_tokens":13}}"#;

/// (event name, payload) of each frame, checking the frame's shape on the way.
fn events(frames: &[Bytes]) -> Vec<(String, Value)> {
    frames
        .iter()
        .map(|f| {
            let text = std::str::from_utf8(f).unwrap();
            let rest = text.strip_prefix("event: ").unwrap();
            let (name, rest) = rest.split_once("\ndata: ").unwrap();
            let data = rest.strip_suffix("\n\n").unwrap();
            assert!(!data.contains('\n'), "one data line: {text}");
            (name.to_owned(), serde_json::from_str(data).unwrap())
        })
        .collect()
}

fn names(ev: &[(String, Value)]) -> Vec<&str> {
    ev.iter().map(|(n, _)| n.as_str()).collect()
}

/// Every payload's `type` is its event name and `sequence_number`s count up from 0.
fn assert_well_formed(ev: &[(String, Value)]) {
    for (i, (name, v)) in ev.iter().enumerate() {
        assert_eq!(v["type"], json!(name));
        assert_eq!(v["sequence_number"], json!(i), "{name}");
    }
}

#[test]
fn a_message_streams_as_created_item_part_text_completed() {
    let ev = events(&response_events(200, MESSAGE.as_bytes()));
    assert_well_formed(&ev);
    assert_eq!(
        names(&ev),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let answer: Value = serde_json::from_str(MESSAGE).unwrap();
    for (_, start) in &ev[..2] {
        let r = &start["response"];
        assert_eq!(r["id"], "resp_1");
        assert_eq!(r["status"], "in_progress");
        assert_eq!(r["output"], json!([]));
        assert!(r["usage"].is_null() && r["completed_at"].is_null());
        assert_eq!(r["model"], "gpt-4.1-mini");
    }
    let added = &ev[2].1;
    assert_eq!(added["output_index"], 0);
    assert_eq!(
        added["item"],
        json!({"type":"message","id":"msg_1","status":"in_progress","role":"assistant","content":[]})
    );
    let at = |v: &Value| {
        (
            v["item_id"].clone(),
            v["output_index"].clone(),
            v["content_index"].clone(),
        )
    };
    for (_, v) in &ev[3..7] {
        assert_eq!(at(v), (json!("msg_1"), json!(0), json!(0)));
    }
    assert_eq!(
        ev[3].1["part"],
        json!({"type":"output_text","text":"","annotations":[],"logprobs":[]})
    );
    assert_eq!(ev[4].1["delta"], "billing");
    assert_eq!(ev[4].1["logprobs"], json!([]));
    assert_eq!(ev[5].1["text"], "billing");
    assert_eq!(ev[6].1["part"], answer["output"][0]["content"][0]);
    assert_eq!(ev[7].1["item"], answer["output"][0]);
    assert_eq!(ev[8].1["response"], answer);
}

#[test]
fn a_function_call_streams_its_arguments() {
    let ev = events(&response_events(200, FUNCTION_CALL.as_bytes()));
    assert_well_formed(&ev);
    assert_eq!(
        names(&ev),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    // The reasoning item arrives whole.
    assert_eq!(ev[2].1["item"]["id"], "rs_1");
    assert_eq!(ev[2].1["output_index"], 0);
    let added = &ev[4].1;
    assert_eq!(added["output_index"], 1);
    assert_eq!(added["item"]["arguments"], "");
    assert_eq!(added["item"]["status"], "in_progress");
    assert_eq!(added["item"]["call_id"], "call_1");
    let args = r#"{"queue":"billing"}"#;
    assert_eq!(ev[5].1["item_id"], "fc_1");
    assert_eq!(ev[5].1["output_index"], 1);
    assert_eq!(ev[5].1["delta"], args);
    assert_eq!(ev[6].1["name"], "route");
    assert_eq!(ev[6].1["arguments"], args);
    assert_eq!(ev[7].1["item"]["status"], "completed");
    assert_eq!(ev[8].1["response"]["output"][1]["arguments"], args);
}

#[test]
fn refusals_and_annotations_get_their_events() {
    let a = json!({"id":"resp_3","object":"response","status":"completed","output":[{"type":"message","id":"msg_3","status":"completed","role":"assistant","content":[
        {"type":"refusal","refusal":"no"},
        {"type":"output_text","text":"see","annotations":[{"type":"url_citation","url":"https://example.com","start_index":0,"end_index":3,"title":"t"}],"logprobs":[]}]}]});
    let ev = events(&response_events(200, a.to_string().as_bytes()));
    assert_well_formed(&ev);
    assert_eq!(
        names(&ev)[3..12],
        [
            "response.content_part.added",
            "response.refusal.delta",
            "response.refusal.done",
            "response.content_part.done",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.annotation.added",
            "response.output_text.done",
            "response.content_part.done",
        ]
    );
    assert_eq!(ev[3].1["part"], json!({"type":"refusal","refusal":""}));
    assert_eq!(ev[5].1["refusal"], "no");
    assert_eq!(ev[8].1["content_index"], 1);
    assert_eq!(ev[9].1["annotation_index"], 0);
    assert_eq!(ev[9].1["annotation"]["url"], "https://example.com");
}

#[test]
fn the_terminal_event_follows_the_status() {
    for (status, terminal) in [
        ("completed", "response.completed"),
        ("incomplete", "response.incomplete"),
        ("failed", "response.failed"),
        ("cancelled", "response.failed"),
    ] {
        let a = json!({"id":"r","object":"response","status":status,"output":[]});
        let ev = events(&response_events(200, a.to_string().as_bytes()));
        assert_eq!(
            names(&ev),
            ["response.created", "response.in_progress", terminal]
        );
        assert_eq!(ev[2].1["response"], a);
    }
}

#[test]
fn an_error_answer_is_one_error_event() {
    let body = br#"{"error":{"message":"Rate limit reached","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#;
    let ev = events(&response_events(429, body));
    assert_eq!(
        ev,
        [(
            "error".to_owned(),
            json!({"type":"error","code":"rate_limit_exceeded","message":"Rate limit reached","param":null,"sequence_number":0})
        )]
    );
    // Without a code, the type stands in; param is kept.
    let body = br#"{"error":{"message":"bad","type":"invalid_request_error","param":"input","code":null}}"#;
    let ev = events(&response_events(400, body));
    assert_eq!(ev[0].1["code"], "invalid_request_error");
    assert_eq!(ev[0].1["param"], "input");
    // An envelope is an error even when the status says otherwise.
    let ev = events(&response_events(200, body));
    assert_eq!(names(&ev), ["error"]);
    assert_eq!(ev[0].1["message"], "bad");
    // A response object under an error status is still the error.
    let ev = events(&response_events(500, MESSAGE.as_bytes()));
    assert_eq!(names(&ev), ["error"]);
    assert_eq!(ev[0].1["message"], "upstream answered 500");
    assert_eq!(ev[0].1["code"], "upstream_bad_response");
}

#[test]
fn garbage_and_nulls_do_not_panic() {
    for (status, body) in [
        (200, &b""[..]),
        (200, b"not json"),
        (200, b"[1,2]"),
        (200, b"{}"),
        (200, b"null"),
        (200, br#"{"error":null}"#),
        (200, br#"{"error":{"message":7,"code":[],"param":{}}}"#),
        (502, b"<html>bad gateway</html>"),
        (0, b"{\"object\":\"response\""),
    ] {
        let ev = events(&response_events(status, body));
        assert_well_formed(&ev);
        assert_eq!(names(&ev), ["error"], "{}", String::from_utf8_lossy(body));
        let e = &ev[0].1;
        assert!(e["message"].is_string());
        assert!(e["code"].is_string() || e["code"].is_null());
        assert!(e["param"].is_null());
    }
    let nulls = json!({"object":"response","id":null,"status":null,"output":[
        null, 3, {"type":null}, {"type":"message","id":null,"content":null},
        {"type":"message","content":[null,{"type":"output_text","text":null,"annotations":null,"logprobs":null},{"type":"refusal","refusal":null},{"type":"mystery"}]},
        {"type":"function_call","arguments":null,"name":null},
        {"type":"function_call","arguments":{"a":1}}]});
    let ev = events(&response_events(200, nulls.to_string().as_bytes()));
    assert_well_formed(&ev);
    assert_eq!(ev.last().unwrap().0, "response.completed");
    // Skipped items keep the indexes of the others.
    let added: Vec<&Value> = ev
        .iter()
        .filter(|(n, _)| n == "response.output_item.added")
        .map(|(_, v)| &v["output_index"])
        .collect();
    assert_eq!(added, [&json!(3), &json!(4), &json!(5), &json!(6)]);
    let args: Vec<&Value> = ev
        .iter()
        .filter(|(n, _)| n == "response.function_call_arguments.done")
        .map(|(_, v)| &v["arguments"])
        .collect();
    assert_eq!(args, [&json!(""), &json!(r#"{"a":1}"#)]);
    // The unknown part is opened and closed too, so indexes stay aligned.
    let parts = ev
        .iter()
        .filter(|(n, v)| n == "response.content_part.added" && v["output_index"] == 4)
        .count();
    assert_eq!(parts, 3);
}

/// Responses of arbitrary shape: the fields read are present, absent, null or anything.
fn any_response() -> impl Strategy<Value = Value> {
    let part = prop_oneof![
        any_json(),
        (
            prop::sample::select(vec!["output_text", "refusal", "other"]),
            any_json(),
            any_json()
        )
            .prop_map(|(t, text, annotations)| json!({"type": t, "text": text, "refusal": text, "annotations": annotations})),
    ];
    let item = prop_oneof![
        any_json(),
        (
            prop::sample::select(vec!["message", "function_call", "reasoning"]),
            prop::collection::vec(part, 0..3),
            any_json(),
            any_json()
        )
            .prop_map(|(t, content, id, arguments)| json!({"type": t, "id": id, "content": content, "arguments": arguments, "status": "completed"})),
    ];
    (
        prop::collection::vec(item, 0..4),
        any_json(),
        prop::sample::select(vec!["completed", "incomplete", "failed", "other"]),
    )
        .prop_map(|(output, id, status)| json!({"object": "response", "id": id, "status": status, "output": output}))
}

proptest! {
    #[test]
    fn arbitrary_json_never_panics(v in any_json(), status in prop::sample::select(vec![200u16, 400, 500])) {
        let ev = events(&response_events(status, v.to_string().as_bytes()));
        assert_well_formed(&ev);
        prop_assert!(!ev.is_empty());
    }

    #[test]
    fn arbitrary_responses_stream_consistently(v in any_response()) {
        let ev = events(&response_events(200, v.to_string().as_bytes()));
        assert_well_formed(&ev);
        prop_assert_eq!(&ev[0].0, "response.created");
        prop_assert_eq!(&ev.last().unwrap().1["response"], &v);
        // Every opened item and part is closed, in order.
        let mut open = Vec::new();
        for (name, e) in &ev {
            if let Some(what) = name.strip_suffix(".added").filter(|w| w.ends_with("output_item") || w.ends_with("content_part")) {
                open.push((what.to_owned(), e["output_index"].clone()));
            } else if let Some(what) = name.strip_suffix(".done").filter(|w| w.ends_with("output_item") || w.ends_with("content_part")) {
                prop_assert_eq!(open.pop(), Some((what.to_owned(), e["output_index"].clone())));
            }
        }
        prop_assert!(open.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..64)) {
        prop_assert_eq!(response_events(200, &body).len(), 1);
    }
}

/// The interpreter with the pinned SDK: `$SLUICE_PYTHON`, else the crate's `.venv`
/// (made by `tests/python/setup.sh`, which .ci/run runs before the tests).
fn sdk_python() -> Option<PathBuf> {
    let python = std::env::var_os("SLUICE_PYTHON")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    let ok = Command::new(&python)
        .args(["-c", "import openai, pydantic, httpx2"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(python)
}

/// The official OpenAI Python SDK reads the synthesised streams: every frame validates
/// against its event models, `responses.create(stream=True)` yields them, and the
/// `responses.stream()` accumulator (which checks that events agree) ends on the answer.
#[test]
fn the_openai_python_sdk_parses_the_streams() {
    let Some(python) = sdk_python() else {
        // CI always has the venv, so there a missing SDK is a failure, not a skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "no Python with the OpenAI SDK: run tests/python/setup.sh"
        );
        eprintln!("skipped: no Python with the OpenAI SDK (run tests/python/setup.sh)");
        return;
    };
    let incomplete = MESSAGE.replace(
        r#""status":"completed","completed_at":8"#,
        r#""status":"incomplete","completed_at":null"#,
    );
    let annotated = MESSAGE.replace(
        r#""content":[{"type":"output_text","text":"billing","annotations":[]"#,
        r#""content":[{"type":"refusal","refusal":"no"},{"type":"output_text","text":"see","annotations":[{"type":"url_citation","url":"https://example.com","start_index":0,"end_index":3,"title":"t"}]"#,
    );
    let error = br#"{"error":{"message":"Rate limit reached","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#;
    let sse =
        |status, body: &[u8]| String::from_utf8(response_events(status, body).concat()).unwrap();
    let cases = json!({"cases": [
        {"name": "message", "sse": sse(200, MESSAGE.as_bytes())},
        {"name": "function_call", "sse": sse(200, FUNCTION_CALL.as_bytes())},
        {"name": "incomplete", "sse": sse(200, incomplete.as_bytes())},
        {"name": "error", "sse": sse(429, error)},
        {"name": "annotated", "sse": sse(200, annotated.as_bytes())},
    ]});
    let mut child = Command::new(&python)
        .arg("tests/python/check_synth_responses.py")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(cases.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();

    for case in [
        "message",
        "function_call",
        "incomplete",
        "error",
        "annotated",
    ] {
        let c = &r[case];
        assert_eq!(c["invalid"], json!([]), "{case}: {c}");
        let raw: Vec<&Value> = c["raw"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["type"])
            .collect();
        let frames: Vec<&Value> = c["frames"].as_array().unwrap().iter().collect();
        assert_eq!(raw, frames, "{case}");
    }

    let m = &r["message"];
    assert_eq!(m["helper_error"], Value::Null, "{m}");
    assert_eq!(m["output_text"], "billing");
    assert_eq!(m["final"]["id"], "resp_1");
    assert_eq!(m["final"]["usage"]["total_tokens"], 6);
    let helper = m["helper"].as_array().unwrap();
    assert_eq!(helper.len(), 9);
    assert_eq!(
        helper[4],
        json!({"type": "response.output_text.delta", "snapshot": "billing"})
    );

    let f = &r["function_call"];
    assert_eq!(f["helper_error"], Value::Null, "{f}");
    assert_eq!(
        f["final"]["output"][1]["arguments"],
        r#"{"queue":"billing"}"#
    );
    assert_eq!(f["final"]["output"][1]["call_id"], "call_1");
    assert_eq!(f["helper"][5]["snapshot"], r#"{"queue":"billing"}"#);

    let a = &r["annotated"];
    assert_eq!(a["helper_error"], Value::Null, "{a}");
    assert_eq!(a["output_text"], "see");
    assert_eq!(
        a["final"]["output"][0]["content"][1]["annotations"][0]["type"],
        "url_citation"
    );

    // The SDK's `get_final_response()` insists on `response.completed`, as with the API.
    let i = &r["incomplete"];
    assert_eq!(
        i["helper"].as_array().unwrap().last().unwrap()["type"],
        "response.incomplete"
    );
    assert!(
        i["helper_error"]
            .as_str()
            .unwrap()
            .contains("response.completed")
    );

    let e = &r["error"];
    assert_eq!(
        e["raw"],
        json!([{"type":"error","sequence_number":0,"code":"rate_limit_exceeded","message":"Rate limit reached","param":null}])
    );
}
