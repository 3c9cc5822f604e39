//! The Batch Mode adapter against the in-process simulator's native Gemini API: inline and
//! file input, both state spellings, per-line errors, expiry, cancel, 429 on create, and
//! finding a batch by its flush after a crash. The simulator's batches change state on
//! reads (turnaround 0: done at the first read), so no test waits on a clock.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method};
use serde_json::{Value, json};

use super::Batches;
use crate::cli::{SimHandle, start_simulator};
use crate::config::UpstreamConfig;
use crate::providers::{
    BatchApiError, BatchInput, BatchState, FileChunks, FlushRef, Http, LineOutcome, UpstreamBatch,
};
use crate::simulate::{GeminiConfig, SimConfig};
use crate::types::Endpoint;

const MODEL: &str = "gemini-2.5-flash";

struct Rig {
    sim: SimHandle,
    http: Http,
}

async fn rig(gemini: GeminiConfig) -> Rig {
    let sim = start_simulator(SimConfig {
        gemini,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let timeouts = UpstreamConfig {
        connect_timeout: Duration::from_secs(5),
        response_timeout: Duration::from_secs(30),
        pool_idle_timeout: Duration::from_secs(1),
    };
    let mut key = HeaderValue::from_static("sim-key");
    key.set_sensitive(true);
    let http = Http::new(
        &timeouts,
        "gemini",
        &sim.base_url(),
        vec![(super::KEY_HEADER, key)],
    );
    Rig { sim, http }
}

fn instant() -> GeminiConfig {
    GeminiConfig {
        batch_turnaround: Duration::ZERO,
        ..GeminiConfig::default()
    }
}

fn flush(id: &str, jobs: u32) -> FlushRef<'_> {
    FlushRef {
        id,
        endpoint: Endpoint::ChatCompletions,
        model: MODEL,
        job_count: jobs,
        created_at_ms: 0,
    }
}

/// The engine's stream of encoded lines for these (job id, user text) pairs.
fn lines(jobs: &[(&str, &str)]) -> FileChunks {
    let (tx, rx) = tokio::sync::mpsc::channel(jobs.len() + 1);
    let encoder = crate::providers::Encoder::GeminiLines(crate::types::Endpoint::ChatCompletions);
    for (i, (id, text)) in jobs.iter().enumerate() {
        let body = json!({"model": MODEL, "messages": [{"role": "user", "content": text}]});
        let mut out = bytes::BytesMut::new();
        encoder.encode(i == 0, id, body.to_string().as_bytes(), &mut out);
        tx.try_send(Ok(out.freeze())).unwrap();
    }
    rx
}

impl Rig {
    fn batches(&self) -> Batches {
        Batches::new(self.http.clone())
    }

    async fn sim_post(&self, path: &str, body: Value) -> Bytes {
        let url = format!("http://{}{path}", self.sim.addr);
        self.http
            .bytes(Method::POST, &url, Bytes::from(body.to_string()))
            .await
            .unwrap()
    }

    async fn sim_get(&self, path: &str) -> Value {
        let url = format!("http://{}{path}", self.sim.addr);
        let raw = self
            .http
            .bytes(Method::GET, &url, Bytes::new())
            .await
            .unwrap();
        serde_json::from_slice(&raw).unwrap()
    }

    async fn paths(&self) -> Vec<String> {
        let log = self.sim_get("/sim/requests").await;
        log.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                format!(
                    "{} {}",
                    r["method"].as_str().unwrap_or(""),
                    r["path"].as_str().unwrap_or("")
                )
            })
            .collect()
    }
}

/// Every result of an ended batch, by job id.
async fn results(a: &Batches, b: &UpstreamBatch) -> Vec<(String, LineOutcome)> {
    use http_body_util::BodyExt;
    let BatchState::Ended { results } = &b.state else {
        panic!("not ended: {b:?}");
    };
    let mut out = Vec::new();
    for location in results {
        let body = a
            .results(location)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap()
            .to_bytes();
        for line in body.split(|c| *c == b'\n').filter(|l| !l.is_empty()) {
            out.push(super::batch_wire::parse_line(line).unwrap());
        }
    }
    out.sort_by(|x, y| x.0.cmp(&y.0));
    out
}

fn answer_text(o: &LineOutcome) -> String {
    let LineOutcome::Answered { status: 200, body } = o else {
        panic!("{o:?}");
    };
    let chat = super::batch_for_caller(Endpoint::ChatCompletions, 200, body, MODEL, 1).unwrap();
    let v: Value = serde_json::from_slice(&chat).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], MODEL);
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_small_flush_goes_inline_and_answers_come_back_by_key() {
    let r = rig(instant()).await;
    let a = r.batches();
    let f = flush("flush_inline", 2);
    let created = a
        .create(
            f,
            BatchInput::Inline(lines(&[("job_a", "first"), ("job_b", "second")])),
        )
        .await
        .unwrap();
    assert!(created.id.starts_with("batches/"), "{created:?}");
    assert!(!created.is_terminal());
    let b = a.get(&created.id).await.unwrap();
    assert_eq!(b.status, "completed");
    let got = results(&a, &b).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0, "job_a");
    assert!(answer_text(&got[0].1).contains("first"));
    assert!(answer_text(&got[1].1).contains("second"));
    let paths = r.paths().await;
    assert!(paths.iter().all(|p| !p.contains("/upload/")), "{paths:?}");
    assert!(
        paths.contains(&format!("POST /v1/models/{MODEL}:batchGenerateContent")),
        "{paths:?}"
    );
    r.sim.stop().await;
}

#[tokio::test]
async fn a_large_flush_is_uploaded_in_chunks_and_read_back_from_the_result_file() {
    let r = rig(instant()).await;
    // Anything over 10 bytes is "large"; 64-byte chunks make the upload take several.
    let a = r.batches().with_limits(10, 64);
    let f = flush("flush_file", 3);
    let created = a
        .create(
            f,
            BatchInput::Inline(lines(&[
                ("job_1", "one"),
                ("job_2", "two"),
                ("job_3", "three"),
            ])),
        )
        .await
        .unwrap();
    let b = a.get(&created.id).await.unwrap();
    let BatchState::Ended { results: locations } = &b.state else {
        panic!("{b:?}");
    };
    assert!(locations[0].starts_with("files/batch-"), "{locations:?}");
    let got = results(&a, &b).await;
    let ids: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["job_1", "job_2", "job_3"]);
    assert!(answer_text(&got[2].1).contains("three"));
    let paths = r.paths().await;
    let uploads = paths
        .iter()
        .filter(|p| p.contains("/upload/v1/files"))
        .count();
    assert!(uploads >= 3, "start and several chunks: {paths:?}");
    r.sim.stop().await;
}

#[tokio::test]
async fn sdk_state_names_and_line_errors() {
    let r = rig(GeminiConfig {
        job_state_names: true,
        ..instant()
    })
    .await;
    r.sim_post("/sim/batch-faults", json!({"line_errors": ["job_bad"]}))
        .await;
    let a = r.batches();
    let created = a
        .create(
            flush("flush_states", 2),
            BatchInput::Inline(lines(&[("job_ok", "fine"), ("job_bad", "broken")])),
        )
        .await
        .unwrap();
    assert_eq!(created.status, "validating", "JOB_STATE_PENDING");
    let b = a.get(&created.id).await.unwrap();
    assert_eq!(b.status, "completed", "JOB_STATE_SUCCEEDED");
    let got = results(&a, &b).await;
    assert!(
        matches!(got[0], (ref id, LineOutcome::Answered { status: 500, .. }) if id == "job_bad")
    );
    assert!(answer_text(&got[1].1).contains("fine"));
    r.sim.stop().await;
}

#[tokio::test]
async fn an_expired_batch_has_no_results() {
    let r = rig(GeminiConfig {
        batch_turnaround: Duration::from_secs(3600),
        batch_expiry: Duration::ZERO,
        ..GeminiConfig::default()
    })
    .await;
    let a = r.batches();
    let created = a
        .create(
            flush("flush_exp", 1),
            BatchInput::Inline(lines(&[("job_x", "late")])),
        )
        .await
        .unwrap();
    let b = a.get(&created.id).await.unwrap();
    assert_eq!(b.status, "expired");
    assert_eq!(b.state, BatchState::Ended { results: vec![] });
    r.sim.stop().await;
}

#[tokio::test]
async fn cancel_ends_the_batch_without_results() {
    let r = rig(GeminiConfig {
        batch_turnaround: Duration::from_secs(3600),
        ..GeminiConfig::default()
    })
    .await;
    let a = r.batches();
    let created = a
        .create(
            flush("flush_cancel", 1),
            BatchInput::Inline(lines(&[("job_c", "stop")])),
        )
        .await
        .unwrap();
    let b = a.cancel(&created.id).await.unwrap();
    assert_eq!(b.status, "cancelled");
    assert_eq!(b.state, BatchState::Ended { results: vec![] });
    r.sim.stop().await;
}

#[tokio::test]
async fn a_refused_create_is_retryable_and_creates_nothing() {
    let r = rig(instant()).await;
    r.sim_post("/sim/batch-faults", json!({"create_429": 1}))
        .await;
    let a = r.batches();
    let e = a
        .create(
            flush("flush_429", 1),
            BatchInput::Inline(lines(&[("job_q", "wait")])),
        )
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(matches!(e, BatchApiError::Status { status, .. } if status == 429));
    assert!(a.find(flush("flush_429", 1)).await.unwrap().is_empty());
    // The next try goes through.
    a.create(
        flush("flush_429", 1),
        BatchInput::Inline(lines(&[("job_q", "wait")])),
    )
    .await
    .unwrap();
    r.sim.stop().await;
}

#[tokio::test]
async fn a_batch_is_found_by_its_flush_id() {
    let r = rig(instant()).await;
    let a = r.batches();
    let mine = a
        .create(
            flush("flush_mine", 1),
            BatchInput::Inline(lines(&[("job_m", "me")])),
        )
        .await
        .unwrap();
    // Other flushes' batches, created after it.
    for i in 0..12 {
        let id = format!("flush_other_{i}");
        let job = format!("job_o{i}");
        a.create(flush(&id, 1), BatchInput::Inline(lines(&[(&job, "other")])))
            .await
            .unwrap();
    }
    let found = a.find(flush("flush_mine", 1)).await.unwrap();
    assert_eq!(
        found.iter().map(|b| b.id.as_str()).collect::<Vec<_>>(),
        [mine.id.as_str()]
    );
    assert!(a.find(flush("flush_never", 1)).await.unwrap().is_empty());
    r.sim.stop().await;
}
