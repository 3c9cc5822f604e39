//! The flush state machine against a counting fake Batch API, with time held still: every
//! batch ending, refused creates, reconciliation after a crash, the watchdog's fallback.
//! Time stands still (a manual [`Clock`]) and moves only when a test moves it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

use super::{Engine, EngineConfig};
use crate::account::Accountant;
use crate::clock::Clock;
use crate::config::UpstreamConfig;
use crate::forward::Forwarder;
use crate::metrics::Metrics;
use crate::policy::PolicySet;
use crate::pricing::PriceTable;
use crate::providers::fake::{Ending, Fake};
use crate::providers::{Adapter, InputKind};
use crate::store::{Job, NewJob, Store};
use crate::types::{Endpoint, Provider, Tier};

const POLL: Duration = Duration::from_secs(60);

struct TempDb(PathBuf);

impl TempDb {
    fn new() -> TempDb {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        TempDb(std::env::temp_dir().join(format!(
            "sluice-engine-test-{}-{}.db",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        )))
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.0.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

struct Rig {
    engine: Arc<Engine>,
    clock: Clock,
    fake: Arc<Fake>,
    store: Arc<dyn Store>,
    _db: TempDb,
}

async fn rig(kind: InputKind, polls: u32, ending: Ending) -> Rig {
    let db = TempDb::new();
    let store = crate::store::open(&format!("sqlite://{}?mode=rwc", db.0.display()))
        .await
        .unwrap();
    let fake = Arc::new(Fake::new(kind, polls, ending));
    let clock = Clock::manual();
    let upstream = UpstreamConfig {
        connect_timeout: Duration::from_secs(1),
        response_timeout: Duration::from_secs(1),
        pool_idle_timeout: Duration::from_secs(1),
    };
    // No provider keys: a fallback is answered by the gateway (provider not configured),
    // which is enough to see that it ran, and when.
    let forwarder =
        Arc::new(Forwarder::new(crate::upstream::Upstream::new(&upstream), &[]).unwrap());
    let policies = Arc::new(PolicySet::open());
    let metrics = Arc::new(Metrics::new(prometheus::Registry::new()).unwrap());
    let accountant = Arc::new(
        Accountant::new(
            Arc::new(PriceTable::builtin()),
            policies.models.clone(),
            metrics,
        )
        .with_ledger(store.clone()),
    );
    let cfg = EngineConfig {
        owner: "test".into(),
        max_wait: Duration::from_secs(30),
        max_requests: None,
        poll_interval: POLL,
        turnaround_prior: Duration::from_secs(3600),
        fallback_lead: Duration::from_secs(600),
        result_retention: Duration::from_secs(86_400),
        lease: Duration::from_secs(300),
        clock: clock.clone(),
    };
    let engine = Arc::new(Engine::new(
        store.clone(),
        vec![
            (Provider::OpenAi, Adapter::Fake(fake.clone())),
            (Provider::Anthropic, Adapter::Fake(fake.clone())),
        ],
        forwarder,
        accountant,
        policies,
        cfg,
    ));
    Rig {
        engine,
        clock,
        fake,
        store,
        _db: db,
    }
}

impl Rig {
    async fn submit(&self, n: usize, deadline: Duration) -> Vec<String> {
        self.submit_as(Provider::OpenAi, Endpoint::ChatCompletions, n, deadline)
            .await
    }

    async fn submit_as(
        &self,
        provider: Provider,
        endpoint: Endpoint,
        n: usize,
        deadline: Duration,
    ) -> Vec<String> {
        let now = self.clock.now_ms();
        let mut ids = Vec::new();
        for i in 0..n {
            let id = format!("job_{i:04}_{}", crate::batch::new_id("t"));
            self.engine
                .submit(NewJob {
                    id: id.clone(),
                    client: "default".into(),
                    route: "default".into(),
                    idempotency_key: None,
                    provider,
                    endpoint,
                    model: "gpt-4o-mini".into(),
                    body: Bytes::from(format!(
                        r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"q{i}"}}]}}"#
                    )),
                    stream: false,
                    tier: Tier::Batch,
                    prefix: None,
                    created_at_ms: now,
                    deadline_ms: now + deadline.as_millis() as i64,
                })
                .await
                .unwrap();
            ids.push(id);
        }
        ids
    }

    /// Ticks, then moves time on by `step`, `times` times.
    async fn run(&self, times: usize, step: Duration) {
        for _ in 0..times {
            self.engine.tick().await.unwrap();
            self.clock.advance(step);
        }
        self.engine.tick().await.unwrap();
        self.engine.tasks.close();
        self.engine.tasks.wait().await;
        self.engine.tasks.reopen();
    }

    async fn job(&self, id: &str) -> Job {
        self.store.job(id).await.unwrap().unwrap()
    }
}

const DAY: Duration = Duration::from_secs(86_400);

#[tokio::test]
async fn completed_batch_answers_every_job_with_one_upload_and_one_create() {
    let r = rig(InputKind::File, 2, Ending::Completed).await;
    let ids = r.submit(3, DAY).await;
    // max_wait (30 s) flushes the group; two polls later the batch has ended.
    r.run(10, Duration::from_secs(40)).await;
    for id in &ids {
        let job = r.job(id).await;
        let result = job.result.expect("answered");
        assert_eq!((result.status, result.answered_by), (200, Tier::Batch));
        assert!(result.usage.is_some(), "priced from the batch line's usage");
    }
    let calls = r.fake.calls();
    assert_eq!(
        (calls.upload, calls.create, calls.find, calls.results),
        (1, 1, 0, 1),
        "{calls:?}"
    );
    assert_eq!(r.fake.lines_sent().len(), 3);
}

#[tokio::test]
async fn inline_providers_send_the_requests_in_the_create_call() {
    let r = rig(InputKind::Inline, 0, Ending::Completed).await;
    let ids = r.submit(2, DAY).await;
    r.run(4, Duration::from_secs(40)).await;
    for id in &ids {
        assert_eq!(r.job(id).await.result.unwrap().status, 200);
    }
    let calls = r.fake.calls();
    assert_eq!((calls.upload, calls.create), (0, 1), "{calls:?}");
}

#[tokio::test]
async fn expired_and_cancelled_batches_requeue_every_job_into_a_new_batch() {
    for ending in [Ending::Expired, Ending::Cancelled] {
        let r = rig(InputKind::File, 0, ending.clone()).await;
        let ids = r.submit(2, DAY).await;
        // First batch ends without answers; the jobs go back in the queue...
        r.run(3, Duration::from_secs(40)).await;
        assert!(r.job(&ids[0]).await.result.is_none(), "{ending:?}");
        // ...and the next batch answers them.
        r.fake.set_ending(Ending::Completed);
        r.run(4, Duration::from_secs(40)).await;
        for id in &ids {
            assert_eq!(r.job(id).await.result.unwrap().status, 200, "{ending:?}");
        }
        assert_eq!(r.fake.calls().create, 2, "{ending:?}");
        assert_eq!(r.fake.lines_sent().len(), 4, "each job once per batch");
    }
}

#[tokio::test]
async fn a_failed_batch_answers_the_lines_it_names_and_resubmits_the_rest() {
    let r = rig(InputKind::File, 0, Ending::Failed(vec![1])).await;
    let ids = r.submit(2, DAY).await;
    r.run(3, Duration::from_secs(40)).await;
    let first = r.job(&ids[0]).await.result.expect("line 1 answered");
    assert_eq!(first.status, 400);
    let v: serde_json::Value = serde_json::from_slice(&first.body).unwrap();
    assert_eq!(
        v["error"]["code"], "invalid_batch_line",
        "OpenAI-shaped: {v}"
    );
    assert!(r.job(&ids[1]).await.result.is_none(), "line 2 requeued");
    r.fake.set_ending(Ending::Completed);
    r.run(4, Duration::from_secs(40)).await;
    assert_eq!(r.job(&ids[1]).await.result.unwrap().status, 200);
}

#[tokio::test]
async fn a_batch_refused_as_a_whole_backs_its_group_off_then_retries() {
    let r = rig(InputKind::File, 0, Ending::Failed(vec![])).await;
    let ids = r.submit(1, DAY).await;
    r.run(3, Duration::from_secs(40)).await;
    assert!(r.job(&ids[0]).await.result.is_none());
    assert_eq!(r.fake.calls().create, 1);
    r.fake.set_ending(Ending::Completed);
    // The group waits out its back-off (10 polls) before the next batch.
    r.run(3, Duration::from_secs(40)).await;
    assert_eq!(r.fake.calls().create, 1, "still backing off");
    r.run(20, POLL).await;
    assert_eq!(r.job(&ids[0]).await.result.unwrap().status, 200);
    assert_eq!(r.fake.calls().create, 2);
}

#[tokio::test]
async fn a_refused_create_backs_off_and_reuses_the_uploaded_file() {
    let r = rig(InputKind::File, 0, Ending::Completed).await;
    r.fake
        .refuse_creates(&[StatusCode::TOO_MANY_REQUESTS, StatusCode::BAD_GATEWAY]);
    let ids = r.submit(2, DAY).await;
    r.run(30, POLL).await;
    assert_eq!(r.job(&ids[0]).await.result.unwrap().status, 200);
    let calls = r.fake.calls();
    assert_eq!((calls.upload, calls.create), (1, 3), "{calls:?}");
    assert_eq!(r.fake.lines_sent().len(), 2, "one batch created");
}

#[tokio::test]
async fn a_create_refused_for_good_answers_every_job_with_the_reason() {
    let r = rig(InputKind::Inline, 0, Ending::Completed).await;
    r.fake.refuse_creates(&[StatusCode::BAD_REQUEST]);
    let ids = r.submit(2, DAY).await;
    r.run(3, Duration::from_secs(40)).await;
    for id in &ids {
        let result = r.job(id).await.result.unwrap();
        assert_eq!(result.status, 502);
        let v: serde_json::Value = serde_json::from_slice(&result.body).unwrap();
        assert_eq!(v["error"]["code"], "batch_rejected");
    }
}

#[tokio::test]
async fn a_refusal_reaches_each_caller_in_the_shape_of_the_api_it_spoke() {
    let r = rig(InputKind::Inline, 0, Ending::Completed).await;
    r.fake.refuse_creates(&[StatusCode::BAD_REQUEST]);
    let ids = r
        .submit_as(Provider::Anthropic, Endpoint::Messages, 1, DAY)
        .await;
    r.run(3, Duration::from_secs(40)).await;
    let result = r.job(&ids[0]).await.result.unwrap();
    assert_eq!(result.status, 502);
    let v: serde_json::Value = serde_json::from_slice(&result.body).unwrap();
    assert_eq!(v["type"], "error", "Anthropic-shaped: {v}");
    assert_eq!(v["error"]["type"], "api_error");
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_is_reconciled_not_created_twice() {
    let r = rig(InputKind::File, 0, Ending::Completed).await;
    // The provider created the batch, but the answer never arrived (timeout, reset): the
    // same as a crash between the create and its record.
    r.fake.lose_create_answers(1);
    let ids = r.submit(2, DAY).await;
    r.run(30, POLL).await;
    for id in &ids {
        assert_eq!(r.job(id).await.result.unwrap().status, 200);
    }
    let calls = r.fake.calls();
    assert_eq!(
        (calls.upload, calls.create, calls.find),
        (1, 1, 1),
        "{calls:?}"
    );
    assert_eq!(r.fake.lines_sent().len(), 2);
}

#[tokio::test]
async fn the_watchdog_answers_in_time_what_the_batch_would_answer_late() {
    // The batch never ends; the deadline is 30 minutes and the fallback lead 10.
    let r = rig(InputKind::File, u32::MAX, Ending::Completed).await;
    let ids = r.submit(1, Duration::from_secs(1800)).await;
    r.run(10, POLL).await;
    assert!(r.job(&ids[0]).await.result.is_none(), "not before its lead");
    r.run(15, POLL).await;
    let job = r.job(&ids[0]).await;
    let result = job.result.expect("answered by the fallback");
    assert_eq!(result.answered_by, Tier::Interactive);
    assert!(
        result.completed_at_ms <= job.deadline_ms,
        "in time: {} > {}",
        result.completed_at_ms,
        job.deadline_ms
    );
}
