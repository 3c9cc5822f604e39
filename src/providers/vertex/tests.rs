//! The Vertex client against the in-process simulator on 127.0.0.1 (port 0): tokens,
//! staging, jobs to every end, recovery by display name, faults. Token time runs on a
//! manual [`Clock`]; jobs run with zero simulated run time, so nothing sleeps.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::oauth::ServiceAccount;
use super::{Batches, input_line};
use crate::clock::Clock;
use crate::config::{UpstreamConfig, VertexConfig};
use crate::providers::lines::LineSplitter;
use crate::providers::{BatchApiError, BatchInput, BatchState, FlushRef, Http, LineOutcome};
use crate::simulate::{SimConfig, Simulator, VertexConfig as SimVertex};
use crate::types::Endpoint;

const TEST_KEY: &str = include_str!("testdata/test_key.pem");
const TEST_PUBLIC_KEY: &str = include_str!("testdata/test_key.pub.pem");
const MODEL: &str = "gemini-2.5-flash";

struct Rig {
    sim: Arc<Simulator>,
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    dir: std::path::PathBuf,
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn upstream() -> UpstreamConfig {
    UpstreamConfig {
        connect_timeout: Duration::from_secs(5),
        response_timeout: Duration::from_secs(30),
        pool_idle_timeout: Duration::from_secs(90),
    }
}

async fn rig(vertex: SimVertex) -> Rig {
    let sim = Arc::new(Simulator::new(SimConfig {
        vertex,
        ..SimConfig::default()
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(Arc::clone(&sim).serve(listener, async move {
        let _ = rx.await;
    }));
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sluice-vertex-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    Rig {
        sim,
        addr,
        stop: Some(stop),
        dir,
    }
}

impl Rig {
    fn key_json(&self) -> Value {
        json!({"type": "service_account", "project_id": "my-project",
               "private_key_id": "k1", "private_key": TEST_KEY,
               "client_email": "sluice@my-project.iam.gserviceaccount.com",
               "token_uri": format!("http://{}/token", self.addr)})
    }

    fn config(&self) -> VertexConfig {
        let file = self.dir.join("key.json");
        std::fs::write(&file, self.key_json().to_string()).unwrap();
        VertexConfig {
            project: "my-project".into(),
            location: "us-central1".into(),
            bucket: "sim-bucket".into(),
            credentials_file: file,
            base_url: format!("http://{}/v1", self.addr),
            storage_url: format!("http://{}", self.addr),
        }
    }

    fn batches(&self, clock: Clock) -> Batches {
        Batches::with_clock(&upstream(), &self.config(), clock).unwrap()
    }

    /// Requests the simulator saw whose path starts with `prefix`.
    fn seen(&self, method: Method, prefix: &str) -> Vec<crate::simulate::LoggedRequest> {
        self.sim
            .requests()
            .into_iter()
            .filter(|r| r.method == method && r.uri.path().starts_with(prefix))
            .collect()
    }

    async fn faults(&self, body: Value) {
        let http = Http::new(&upstream(), "sim", &format!("http://{}", self.addr), vec![]);
        http.bytes(
            Method::POST,
            "/sim/batch-faults",
            Bytes::from(body.to_string()),
        )
        .await
        .unwrap();
    }
}

fn flush(id: &str, jobs: u32) -> FlushRef<'_> {
    FlushRef {
        id,
        endpoint: Endpoint::ChatCompletions,
        model: MODEL,
        job_count: jobs,
        created_at_ms: crate::clock::now_ms(),
    }
}

fn native(text: &str) -> Vec<u8> {
    json!({"contents": [{"role": "user", "parts": [{"text": text}]}],
           "generationConfig": {"maxOutputTokens": 64}})
    .to_string()
    .into_bytes()
}

/// The input of `n` jobs `job_{flush}_{i}`, as the engine streams it: a chunk per line.
fn chunks(flush_id: &str, n: usize) -> crate::providers::FileChunks {
    let (tx, rx) = tokio::sync::mpsc::channel(n.max(1));
    for i in 0..n {
        let line = input_line(
            &format!("job_{flush_id}_{i}"),
            &native(&format!("question {i}")),
        );
        tx.try_send(Ok(Bytes::from(line))).unwrap();
    }
    rx
}

/// Uploads and creates a job of `n` lines for `flush_id`.
async fn submit(b: &Batches, flush_id: &str, n: usize) -> crate::providers::UpstreamBatch {
    let f = flush(flush_id, n as u32);
    let uri = b.upload(f, chunks(flush_id, n)).await.unwrap();
    assert_eq!(uri, format!("gs://sim-bucket/sluice/in/{flush_id}.jsonl"));
    b.create(f, BatchInput::File(uri)).await.unwrap()
}

/// Every line of every result file, parsed.
async fn read_results(b: &Batches, results: &[String]) -> Vec<(String, LineOutcome)> {
    let mut out = Vec::new();
    for location in results {
        let body = b
            .results(location)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap()
            .to_bytes();
        let mut split = LineSplitter::default();
        let mut lines = split.push(&body);
        lines.extend(split.finish());
        out.extend(lines.iter().map(|l| Batches::parse_line(l).unwrap()));
    }
    out
}

fn ended(b: &crate::providers::UpstreamBatch) -> Vec<String> {
    match &b.state {
        BatchState::Ended { results } => results.clone(),
        other => panic!("not ended: {other:?} ({})", b.status),
    }
}

fn manual_at(ms: i64) -> Clock {
    Clock::manual_at(ms)
}

#[tokio::test]
async fn tokens_are_signed_cached_refreshed_ahead_and_shared() {
    let r = rig(SimVertex {
        token_ttl: Duration::from_secs(120),
        ..SimVertex::default()
    })
    .await;
    let clock = Clock::manual();
    let b = Arc::new(r.batches(clock.clone()));
    let first = b.tokens.bearer().await.unwrap();
    assert!(first.is_sensitive());
    assert_eq!(b.tokens.bearer().await.unwrap(), first, "cached");
    assert_eq!(r.seen(Method::POST, "/token").len(), 1);

    // The grant: form-encoded JWT bearer, an RS256 assertion verifiable with the public key.
    let grant = r.seen(Method::POST, "/token").remove(0);
    assert_eq!(
        grant.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    let form = String::from_utf8(grant.body.to_vec()).unwrap();
    let assertion = form
        .strip_prefix("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=")
        .unwrap();
    let token_uri = format!("http://{}/token", r.addr);
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[&token_uri]);
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(TEST_PUBLIC_KEY.as_bytes()).unwrap();
    let data = jsonwebtoken::decode::<Value>(assertion, &key, &validation).unwrap();
    assert_eq!(data.header.kid.as_deref(), Some("k1"));
    let c = data.claims;
    assert_eq!(c["iss"], "sluice@my-project.iam.gserviceaccount.com");
    assert_eq!(c["scope"], "https://www.googleapis.com/auth/cloud-platform");
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        3600
    );

    // expires_in 120 s: refreshed after 60 s (half the lifetime, under the 5 min lead).
    clock.advance(Duration::from_secs(59));
    assert_eq!(b.tokens.bearer().await.unwrap(), first);
    clock.advance(Duration::from_secs(2));
    // Concurrent callers share one refresh.
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let b = Arc::clone(&b);
            tokio::spawn(async move { b.tokens.bearer().await.unwrap() })
        })
        .collect();
    let mut tokens = Vec::new();
    for c in calls {
        tokens.push(c.await.unwrap());
    }
    assert_eq!(r.seen(Method::POST, "/token").len(), 2, "one refresh");
    assert!(tokens.iter().all(|t| *t == tokens[0]) && tokens[0] != first);
    // The refreshed token works on Vertex and GCS.
    assert!(b.find(flush("flush_none", 1)).await.unwrap().is_empty());
    // Never printed.
    let err = format!("{:?}", tokens[0]);
    assert!(!err.contains("ya29"), "{err}");
}

#[tokio::test]
async fn a_job_runs_and_shuffled_predictions_are_matched_by_id() {
    let r = rig(SimVertex {
        run_time: Duration::ZERO,
        ..SimVertex::default()
    })
    .await;
    let b = r.batches(Clock::System);
    let created = submit(&b, "flush_e2e", 6).await;
    assert_eq!(created.state, BatchState::Running);
    assert_eq!(created.status, "JOB_STATE_QUEUED");
    assert!(created.id.starts_with("projects/") && created.id.contains("/batchPredictionJobs/"));

    // What went up: one `{"request": ...}` per line, staged where the job reads it.
    let up = r.seen(Method::POST, "/upload/storage/v1/b/sim-bucket/o");
    assert_eq!(up.len(), 1);
    assert!(
        up[0]
            .uri
            .query()
            .unwrap()
            .contains("name=sluice%2Fin%2Fflush_e2e.jsonl")
    );
    let create: Value = serde_json::from_slice(
        &r.seen(
            Method::POST,
            "/v1/projects/my-project/locations/us-central1/batchPredictionJobs",
        )[0]
        .body,
    )
    .unwrap();
    assert_eq!(create["displayName"], "flush_e2e");
    assert_eq!(create["model"], "publishers/google/models/gemini-2.5-flash");

    let done = b.get(&created.id).await.unwrap();
    assert_eq!(done.status, "JOB_STATE_SUCCEEDED");
    let results = ended(&done);
    assert_eq!(results.len(), 1);
    assert!(
        results[0].starts_with("gs://sim-bucket/sluice/out/flush_e2e/")
            && results[0].ends_with("/predictions.jsonl"),
        "{results:?}"
    );
    let lines = read_results(&b, &results).await;
    let ids: Vec<&str> = lines.iter().map(|(id, _)| id.as_str()).collect();
    let input: Vec<String> = (0..6).map(|i| format!("job_flush_e2e_{i}")).collect();
    assert_ne!(ids, input, "the simulator shuffles the output");
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, input);
    for (id, outcome) in &lines {
        let LineOutcome::Answered { status, body } = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(*status, 200);
        let v: Value = serde_json::from_slice(body).unwrap();
        let text = v["candidates"][0]["content"]["parts"][0]["text"]
            .as_str()
            .unwrap();
        let n = id.rsplit('_').next().unwrap();
        assert!(text.contains(&format!("question {n}")), "{id}: {text}");
    }
}

#[tokio::test]
async fn a_job_whose_create_answer_was_lost_is_found_by_display_name() {
    let r = rig(SimVertex::default()).await;
    let b = r.batches(Clock::System);
    // Created, but the answer "lost": only find knows it.
    let lost = submit(&b, "flush_lost", 2).await;
    submit(&b, "flush_other", 1).await;
    let found = b.find(flush("flush_lost", 2)).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, lost.id);
    // The simulator refuses list filters, so the client scanned after the filtered try.
    let lists: Vec<String> = r
        .seen(
            Method::GET,
            "/v1/projects/my-project/locations/us-central1/batchPredictionJobs",
        )
        .iter()
        .map(|l| l.uri.query().unwrap_or("").to_owned())
        .collect();
    assert!(
        lists[0].contains("filter=display_name%3D%22flush_lost%22"),
        "{lists:?}"
    );
    assert!(!lists[1].contains("filter"), "{lists:?}");
    // A create retried without reconciling makes a second job: both are reported.
    submit(&b, "flush_lost", 2).await;
    assert_eq!(b.find(flush("flush_lost", 2)).await.unwrap().len(), 2);
    assert!(b.find(flush("flush_never", 1)).await.unwrap().is_empty());
}

#[tokio::test]
async fn cancel_ends_the_job_and_cancelling_an_ended_job_returns_it() {
    let r = rig(SimVertex {
        run_time: Duration::from_secs(1000),
        ..SimVertex::default()
    })
    .await;
    let b = r.batches(Clock::System);
    let job = submit(&b, "flush_cancel", 3).await;
    assert_eq!(b.get(&job.id).await.unwrap().state, BatchState::Running);
    let c = b.cancel(&job.id).await.unwrap();
    assert_eq!(c.status, "JOB_STATE_CANCELLED");
    // Nothing completed yet: no results, every job goes back to the queue.
    assert_eq!(ended(&c), Vec::<String>::new());
    let again = b.cancel(&job.id).await.unwrap();
    assert_eq!(again.status, "JOB_STATE_CANCELLED");
    let bad = b.cancel("../../etc").await.unwrap_err();
    assert!(
        bad.to_string().contains("not a batch prediction job name"),
        "{bad}"
    );
}

#[tokio::test]
async fn failed_partial_and_expired_jobs() {
    let r = rig(SimVertex {
        run_time: Duration::ZERO,
        ..SimVertex::default()
    })
    .await;
    let b = r.batches(Clock::System);
    // A job that never ran: refused as a whole, no line named.
    r.faults(json!({"fail_validation": 1})).await;
    let failed = submit(&b, "flush_fail", 2).await;
    let failed = b.get(&failed.id).await.unwrap();
    assert_eq!(failed.status, "JOB_STATE_FAILED");
    assert_eq!(failed.state, BatchState::Refused { lines: vec![] });
    // One row failed: partially succeeded, that row did not run.
    r.faults(json!({"line_errors": ["job_flush_part_1"]})).await;
    let part = submit(&b, "flush_part", 3).await;
    let part = b.get(&part.id).await.unwrap();
    assert_eq!(part.status, "JOB_STATE_PARTIALLY_SUCCEEDED");
    let mut lines = read_results(&b, &ended(&part)).await;
    lines.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(lines.len(), 3);
    assert!(matches!(
        lines[0].1,
        LineOutcome::Answered { status: 200, .. }
    ));
    assert!(
        matches!(&lines[1].1, LineOutcome::NotRun { code, .. } if code == "vertex_row_failed"),
        "{:?}",
        lines[1]
    );

    // Expired in the queue: ended with no output, so every job is requeued.
    let r = rig(SimVertex {
        queue_expiry: Duration::ZERO,
        ..SimVertex::default()
    })
    .await;
    let b = r.batches(Clock::System);
    let job = submit(&b, "flush_exp", 2).await;
    let expired = b.get(&job.id).await.unwrap();
    assert_eq!(expired.status, "JOB_STATE_EXPIRED");
    assert_eq!(expired.state, BatchState::Ended { results: vec![] });
}

#[tokio::test]
async fn a_429_on_create_is_retryable_with_backoff() {
    let r = rig(SimVertex::default()).await;
    let b = r.batches(Clock::System);
    r.faults(json!({"create_429": 1})).await;
    let f = flush("flush_429", 1);
    let uri = b.upload(f, chunks("flush_429", 1)).await.unwrap();
    let e = b
        .create(f, BatchInput::File(uri.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, BatchApiError::Status { status, .. } if *status == StatusCode::TOO_MANY_REQUESTS),
        "{e}"
    );
    assert!(e.is_retryable());
    let base = Duration::from_secs(30);
    let first = crate::providers::create_backoff(&e, base, 1);
    assert_eq!(first, Duration::from_secs(60));
    assert!(crate::providers::create_backoff(&e, base, 2) > first);
    // The retry goes through.
    assert!(b.create(f, BatchInput::File(uri)).await.is_ok());
}

#[tokio::test]
async fn auth_failures_are_clear_and_not_retryable() {
    // A clock two hours slow: Google refuses the assertion (invalid_grant).
    let r = rig(SimVertex::default()).await;
    let slow = manual_at(crate::clock::now_ms() - 2 * 3600 * 1000);
    let b = r.batches(slow);
    let e = b.get("123").await.unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("OAuth token request refused: invalid_grant"),
        "{text}"
    );
    assert!(!e.is_retryable(), "{text}");
    assert!(!text.contains("PRIVATE KEY"));

    // Tokens the API never accepts (they expire at once): one retry with a new token,
    // then a non-retryable 401.
    let r = rig(SimVertex {
        token_ttl: Duration::ZERO,
        ..SimVertex::default()
    })
    .await;
    let b = r.batches(Clock::System);
    let e = b.get("123").await.unwrap_err();
    assert!(
        matches!(&e, BatchApiError::Status { status, .. } if *status == StatusCode::UNAUTHORIZED),
        "{e}"
    );
    assert!(!e.is_retryable());
    assert_eq!(r.seen(Method::POST, "/token").len(), 2);
    assert_eq!(r.seen(Method::GET, "/v1/").len(), 2);
}

#[test]
fn key_files_are_checked_without_quoting_them() {
    let good = json!({"type": "service_account", "client_email": "a@b", "private_key": TEST_KEY});
    let sa = ServiceAccount::from_json(good.to_string().as_bytes()).unwrap();
    assert_eq!(sa.token_uri, "https://oauth2.googleapis.com/token");
    let cases = [
        (
            json!({"type": "authorized_user", "client_email": "a@b", "private_key": TEST_KEY}),
            "authorized_user",
        ),
        (json!({"private_key": TEST_KEY}), "no client_email"),
        (json!({"client_email": "a@b"}), "no private_key"),
        (
            json!({"client_email": "a@b", "private_key": "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"}),
            "not an RSA PEM key",
        ),
        (
            json!({"client_email": "a@b", "private_key": TEST_KEY, "token_uri": "file:///x"}),
            "token_uri",
        ),
        (
            json!({"client_email": ["a"], "private_key": TEST_KEY}),
            "not a service-account key JSON",
        ),
    ];
    for (v, want) in cases {
        let e = ServiceAccount::from_json(v.to_string().as_bytes())
            .err()
            .unwrap();
        assert!(e.contains(want), "{e}");
        assert!(!e.contains("MII"), "{e}");
    }
    let missing = VertexConfig {
        project: "p".into(),
        location: "us-central1".into(),
        bucket: "b".into(),
        credentials_file: "/nonexistent/sluice-key.json".into(),
        base_url: "http://127.0.0.1:1/v1".into(),
        storage_url: "http://127.0.0.1:1".into(),
    };
    let e = Batches::new(&upstream(), &missing).err().unwrap();
    assert!(
        e.contains("/nonexistent/sluice-key.json") && e.contains("cannot read"),
        "{e}"
    );
}

/// The engine drives adapters from tracked tasks: the client and its futures must be `Send`.
#[allow(dead_code)]
fn batches_and_their_futures_are_send(
    b: &Batches,
    f: FlushRef<'_>,
    c: crate::providers::FileChunks,
) {
    fn send<T: Send>(_: T) {}
    fn sync<T: Send + Sync>() {}
    sync::<Batches>();
    send(b.upload(f, c));
    send(b.create(f, BatchInput::File(String::new())));
    send(b.get("1"));
    send(b.find(f));
    send(b.results("gs://b/o"));
    send(b.cancel("1"));
}
