//! Batch result lines, OpenAI's and Anthropic's: parsing never panics on any input, and
//! a well-formed line gives back exactly the custom id, status and body it carries.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::LineOutcome;
use super::anthropic::batch_wire as anthropic;
use super::openai::wire as openai;
use crate::inspect::proptests::any_json;

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn result_lines_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200), v in any_json()) {
        let _ = openai::parse_line(&bytes);
        let _ = anthropic::parse_line(&bytes);
        let text = v.to_string();
        let _ = openai::parse_line(text.as_bytes());
        let _ = anthropic::parse_line(text.as_bytes());
        // Shapes close to the real ones, with arbitrary members.
        for line in [
            json!({"custom_id": "job_1", "response": v, "error": null}),
            json!({"custom_id": "job_1", "response": {"status_code": 200, "body": v}}),
            json!({"custom_id": "job_1", "error": v}),
            json!({"custom_id": "job_1", "result": v}),
            json!({"custom_id": "job_1", "result": {"type": "errored", "error": v}}),
            json!({"custom_id": "job_1", "result": {"type": "succeeded", "message": v}}),
        ] {
            let _ = openai::parse_line(line.to_string().as_bytes());
            let _ = anthropic::parse_line(line.to_string().as_bytes());
        }
    }

    #[test]
    fn an_openai_output_line_round_trips(id in "[a-zA-Z0-9_-]{1,64}", status in 100u16..600, body in any_json()) {
        let line = json!({"id": "batch_req_1", "custom_id": id, "response": {"status_code": status, "request_id": "r", "body": body}, "error": null});
        let (got_id, outcome) = openai::parse_line(line.to_string().as_bytes()).unwrap();
        prop_assert_eq!(got_id, id);
        match outcome {
            LineOutcome::Answered { status: s, body: b } => {
                prop_assert_eq!(s, status);
                prop_assert_eq!(serde_json::from_slice::<Value>(&b).unwrap(), body);
            }
            other => prop_assert!(false, "{other:?}"),
        }
    }

    #[test]
    fn an_anthropic_succeeded_line_round_trips(id in "[a-zA-Z0-9_-]{1,64}", message in any_json().prop_filter("a message", |m| !m.is_null())) {
        let line = json!({"custom_id": id, "result": {"type": "succeeded", "message": message}});
        let (got_id, outcome) = anthropic::parse_line(line.to_string().as_bytes()).unwrap();
        prop_assert_eq!(got_id, id);
        match outcome {
            LineOutcome::Answered { status, body } => {
                prop_assert_eq!(status, 200);
                prop_assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), message);
            }
            other => prop_assert!(false, "{other:?}"),
        }
    }
}
