//! The flush state machine against a counting fake Batch API, with time held still: every
//! batch ending, refused creates, reconciliation after a crash, the watchdog's fallback.
//! Time stands still (a manual [`Clock`]) and moves only when a test moves it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

use super::{Engine, EngineConfig, ms};
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

/// Sends fallbacks to `upstream` (every provider), or answers them at once with a gateway
/// error (provider not configured) when `None`.
fn forwarder(upstream: Option<&str>) -> Arc<Forwarder> {
    let timeouts = UpstreamConfig {
        connect_timeout: Duration::from_secs(1),
        response_timeout: Duration::from_secs(if upstream.is_some() { 300 } else { 1 }),
        pool_idle_timeout: Duration::from_secs(1),
    };
    let providers = match upstream {
        Some(url) => {
            let mut config = crate::config::Config::load(None, &|_| None).unwrap();
            config.use_simulator(url);
            config.providers
        }
        None => Vec::new(),
    };
    Arc::new(Forwarder::new(crate::upstream::Upstream::new(&timeouts), &providers).unwrap())
}

/// An engine over `store` (a fresh process: nothing in flight, nothing cached).
fn engine(
    store: &Arc<dyn Store>,
    fake: &Arc<Fake>,
    clock: &Clock,
    fw: Arc<Forwarder>,
) -> Arc<Engine> {
    engine_as("test", store, fake, clock, fw)
}

/// [`engine`] for the replica named `owner`.
fn engine_as(
    owner: &str,
    store: &Arc<dyn Store>,
    fake: &Arc<Fake>,
    clock: &Clock,
    fw: Arc<Forwarder>,
) -> Arc<Engine> {
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
        owner: owner.into(),
        max_wait: Duration::from_secs(30),
        max_requests: None,
        poll_interval: POLL,
        turnaround_prior: Duration::from_secs(3600),
        fallback_lead: Duration::from_secs(600),
        result_retention: Duration::from_secs(86_400),
        lease: Duration::from_secs(300),
        clock: clock.clone(),
    };
    Arc::new(Engine::new(
        store.clone(),
        vec![
            (Provider::OpenAi, Adapter::Fake(fake.clone())),
            (Provider::Anthropic, Adapter::Fake(fake.clone())),
        ],
        fw,
        accountant,
        policies,
        cfg,
    ))
}

async fn rig(kind: InputKind, polls: u32, ending: Ending) -> Rig {
    rig_at(kind, polls, ending, None).await
}

async fn rig_at(kind: InputKind, polls: u32, ending: Ending, upstream: Option<&str>) -> Rig {
    rig_with_at(Fake::new(kind, polls, ending), upstream).await
}

async fn rig_with(fake: Fake) -> Rig {
    rig_with_at(fake, None).await
}

async fn rig_with_at(fake: Fake, upstream: Option<&str>) -> Rig {
    let db = TempDb::new();
    let store = crate::store::open(&format!("sqlite://{}?mode=rwc", db.0.display()))
        .await
        .unwrap();
    let fake = Arc::new(fake);
    let clock = Clock::manual();
    let engine = engine(&store, &fake, &clock, forwarder(upstream));
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
                    retry_key: None,
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
        self.engine.tasks.settle().await;
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
    r.run(10, Duration::from_secs(40)).await;
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
        r.run(10, Duration::from_secs(40)).await;
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
    r.run(10, Duration::from_secs(40)).await;
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
async fn batches_without_metadata_whose_create_answers_were_lost_are_each_found_once() {
    // Two groups (two endpoints) of one request each: two batches of the same size, which
    // nothing tells apart when found by size, as Message Batches are.
    let r = rig_with(Fake::without_metadata(
        InputKind::Inline,
        1,
        Ending::Completed,
    ))
    .await;
    r.fake.lose_create_answers(2);
    // The first batch is slow, so a job its flush wrongly gave up on would go out again
    // before that batch answers it.
    r.fake.slow_first(20);
    let mut ids = r
        .submit_as(Provider::OpenAi, Endpoint::ChatCompletions, 1, DAY)
        .await;
    ids.extend(
        r.submit_as(Provider::OpenAi, Endpoint::Completions, 1, DAY)
            .await,
    );
    r.run(40, POLL).await;
    for id in &ids {
        assert_eq!(r.job(id).await.result.unwrap().status, 200);
    }
    let mut sent = r.fake.lines_sent();
    sent.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(sent, want, "each job in exactly one batch");
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

impl Rig {
    /// The process restarted: a fresh engine over the same store, clock and Batch API.
    fn restart(&self, upstream: Option<&str>) -> Arc<Engine> {
        engine(&self.store, &self.fake, &self.clock, forwarder(upstream))
    }
}

/// Ticks `engine` (waiting for what each tick spawned) until the job is answered, moving
/// time on by a poll interval between ticks; panics after `max` ticks.
async fn tick_until_answered(r: &Rig, engine: &Arc<Engine>, id: &str, max: usize) -> Job {
    for _ in 0..max {
        engine.tick().await.unwrap();
        engine.tasks.settle().await;
        let job = r.job(id).await;
        if job.result.is_some() {
            return job;
        }
        r.clock.advance(POLL);
    }
    panic!("{id} not answered after {max} ticks");
}

#[tokio::test]
async fn a_fallback_interrupted_by_a_crash_is_retaken_before_its_deadline() {
    // The batch never ends; the deadline is 30 minutes and the fallback lead 10.
    let r = rig(InputKind::File, u32::MAX, Ending::Completed).await;
    let id = r.submit(1, Duration::from_secs(1800)).await.remove(0);
    // At the fallback lead a replica claims the job, as its watchdog does, and dies
    // before the answer is stored (kill -9 mid-call).
    r.clock.advance(Duration::from_secs(1200));
    let claimed_at = r.clock.now_ms();
    let lease = super::ms(r.engine.fallback_lease());
    assert!(
        r.store
            .claim_fallback(&id, claimed_at, claimed_at + lease)
            .await
            .unwrap()
    );
    assert!(
        lease < 600_000,
        "the lease is shorter than the fallback lead"
    );

    let restarted = r.restart(None);
    let job = tick_until_answered(&r, &restarted, &id, 20).await;
    let result = job.result.unwrap();
    assert_eq!(result.answered_by, Tier::Interactive);
    assert!(
        result.completed_at_ms <= job.deadline_ms,
        "retaken in time: {} > {}",
        result.completed_at_ms,
        job.deadline_ms
    );
    // Not while the dead replica's lease still held: no second call that could race a live one.
    assert!(result.completed_at_ms > claimed_at + lease);
    assert!(result.completed_at_ms <= claimed_at + lease + super::ms(POLL));
    assert_eq!(
        fallbacks_counted(&restarted),
        0.0,
        "a retake is not a new fallback"
    );
}

/// `sluice_fallbacks_total` summed over its labels, as `engine` counted it.
fn fallbacks_counted(engine: &Engine) -> f64 {
    use prometheus::core::Collector;
    engine
        .accountant()
        .metrics()
        .fallbacks
        .collect()
        .iter()
        .flat_map(|f| f.get_metric())
        .map(|m| m.get_counter().get_value())
        .sum()
}

#[tokio::test]
async fn a_fallback_in_flight_at_shutdown_is_handed_back_and_retaken_at_once() {
    // An upstream that accepts and never answers: the fallback call stays in flight.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::channel(4);
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            open.push(sock);
            let _ = accepted_tx.send(()).await;
        }
    });
    let r = rig_at(InputKind::File, u32::MAX, Ending::Completed, Some(&url)).await;
    let id = r.submit(1, Duration::from_secs(1800)).await.remove(0);
    r.clock.advance(Duration::from_secs(1200));
    r.engine.tick().await.unwrap();
    accepted.recv().await.unwrap();
    assert_eq!(r.engine.tasks().len(), 1, "the fallback is in flight");
    assert_eq!(r.job(&id).await.state, crate::store::JobState::Fallback);
    assert_eq!(fallbacks_counted(&r.engine), 1.0);

    // Shutdown's drain deadline: stopped, the fallback hands its claim back and ends.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    r.engine.tasks().shutdown(deadline).await.unwrap();
    assert!(r.engine.tasks().is_empty());
    assert!(r.job(&id).await.result.is_none());

    // Restarted, the first tick retakes it: no lease to wait out.
    let restarted = r.restart(None);
    let job = tick_until_answered(&r, &restarted, &id, 1).await;
    assert_eq!(job.result.unwrap().completed_at_ms, r.clock.now_ms());
    assert_eq!(
        fallbacks_counted(&restarted),
        0.0,
        "handed back and retaken: one fallback"
    );
    hold.abort();
}

#[tokio::test]
async fn held_callers_are_released_at_shutdown_and_answers_still_delivered() {
    let r = rig(InputKind::File, u32::MAX, Ending::Completed).await;
    let ids = r.submit(2, DAY).await;
    // One job already answered: its caller gets the answer, not the release.
    r.engine
        .complete(
            &ids[1],
            super::results::Reply::Provider {
                status: 200,
                body: Bytes::from_static(br#"{"ok":true}"#),
            },
            Tier::Batch,
            None,
            r.clock.now_ms(),
        )
        .await
        .unwrap();
    let engine = r.engine.clone();
    let waiting = {
        let id = ids[0].clone();
        tokio::spawn(async move { engine.wait_done(&id).await })
    };
    r.engine.release_waiters();
    match waiting.await.unwrap() {
        Err(super::WaitError::ShuttingDown { job }) => assert_eq!(job, ids[0]),
        other => panic!("{other:?}"),
    }
    let e = crate::error::GatewayError::from(super::WaitError::ShuttingDown {
        job: ids[0].clone(),
    });
    assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(e.to_string().contains(&ids[0]), "{e}");
    let done = r.engine.wait_done(&ids[1]).await.unwrap();
    assert_eq!(done.result.unwrap().status, 200);
    // Later callers are released at once; the job stays as it was, durable.
    assert!(r.engine.wait_done(&ids[0]).await.is_err());
    assert_eq!(r.job(&ids[0]).await.state, crate::store::JobState::Queued);
}

/// A held caller has no timer of its own: an answer another replica stored reaches it
/// through this replica's sweep of recent completions, and one whose completion time that
/// sweep cannot see (that replica's clock an hour behind) through the re-check of every held
/// job. The sweep's two steps are driven by hand, so nothing depends on timing.
#[tokio::test]
async fn held_callers_are_woken_by_the_replicas_sweep() {
    let r = rig(InputKind::File, u32::MAX, Ending::Completed).await;
    let ids = r.submit(2, DAY).await;
    let hold = |id: String| {
        let engine = r.engine.clone();
        tokio::spawn(async move { engine.wait_done(&id).await })
    };
    let (first, second) = (hold(ids[0].clone()), hold(ids[1].clone()));
    let held = |id: &str| super::lock(&r.engine.waiters).contains_key(id);
    while !(held(&ids[0]) && held(&ids[1])) {
        tokio::task::yield_now().await;
    }
    let answer = |at_ms| crate::store::JobResult {
        status: 200,
        body: Bytes::from_static(br#"{"ok":true}"#),
        answered_by: Tier::Batch,
        usage: None,
        completed_at_ms: at_ms,
    };
    let now = r.clock.now_ms();
    let mut since = now;
    // Written straight to the store, as another replica would: no local wake-up.
    assert!(
        r.store
            .complete_job(&ids[0], answer(now), None)
            .await
            .unwrap()
    );
    r.engine.wake_completed(&mut since).await.unwrap();
    assert_eq!(first.await.unwrap().unwrap().result.unwrap().status, 200);
    assert!(
        r.store
            .complete_job(&ids[1], answer(now - 3_600_000), None)
            .await
            .unwrap()
    );
    r.engine.wake_completed(&mut since).await.unwrap();
    assert!(
        held(&ids[1]),
        "a completion time before the sweep's window is not seen"
    );
    r.engine.recheck_held().await.unwrap();
    assert_eq!(second.await.unwrap().unwrap().result.unwrap().status, 200);
}

/// A replica whose lease lapsed (it stalled: a pause, a partition) and that comes back with
/// its stale view of a flush another replica took over meanwhile must not touch it: no
/// upload, no second batch, no delivery. The fence is `Store::hold_flush` before each step.
#[tokio::test]
async fn a_replica_whose_lease_lapsed_neither_creates_nor_delivers_a_flush_taken_over() {
    let r = rig(InputKind::File, 1, Ending::Completed).await;
    let ids = r.submit(3, DAY).await;
    // The group is due; this replica ("test") claims it, and stalls holding its view.
    r.clock.advance(Duration::from_secs(40));
    let now = r.clock.now_ms();
    r.engine.flush_due(now).await.unwrap();
    let lease = ms(r.engine.cfg.lease);
    let stale = r
        .store
        .lease_flushes("test", now, now + lease)
        .await
        .unwrap();
    assert_eq!(stale.len(), 1, "{stale:?}");
    // Its lease lapses; replica "b" takes the flush over, submits it and polls it.
    r.clock.advance(r.engine.cfg.lease + Duration::from_secs(1));
    let b = engine_as("b", &r.store, &r.fake, &r.clock, forwarder(None));
    b.tick().await.unwrap();
    let f = r.store.flush(&stale[0].id).await.unwrap().unwrap();
    assert_eq!(
        (f.owner.as_str(), f.state),
        ("b", crate::store::FlushState::Submitted)
    );
    // The stalled replica resumes with its stale view (state `Claimed`): nothing happens.
    let now = r.clock.now_ms();
    r.engine.advance(&stale[0], now).await.unwrap();
    let calls = r.fake.calls();
    assert_eq!((calls.upload, calls.create), (1, 1), "{calls:?}");
    // Nor with a fresh view once the batch ended upstream: only "b" delivers it.
    let mut submitted = r.store.flush(&stale[0].id).await.unwrap().unwrap();
    submitted.next_poll_at_ms = 0;
    r.engine.advance(&submitted, now).await.unwrap();
    r.engine.advance(&submitted, now).await.unwrap();
    assert_eq!(r.fake.calls().results, 0, "{:?}", r.fake.calls());
    for id in &ids {
        assert!(
            r.job(id).await.result.is_none(),
            "{id} answered by the stale replica"
        );
    }
    // "b" finishes it: every job answered once, from one batch.
    for _ in 0..5 {
        r.clock.advance(POLL);
        b.tick().await.unwrap();
    }
    for id in &ids {
        assert_eq!(r.job(id).await.result.unwrap().status, 200);
    }
    let calls = r.fake.calls();
    assert_eq!(
        (calls.upload, calls.create, calls.results),
        (1, 1, 1),
        "{calls:?}"
    );
    assert_eq!(r.fake.lines_sent().len(), 3);
}

/// `sluice_batch_queue_depth` as exposed: (provider, model, value) of every series.
fn queue_depth(engine: &Engine) -> Vec<(String, String, f64)> {
    use prometheus::core::Collector;
    let mut series = Vec::new();
    for family in engine.accountant.metrics().batch_queue_depth.collect() {
        for m in family.get_metric() {
            let label = |name: &str| {
                m.get_label()
                    .iter()
                    .find(|l| l.name() == name)
                    .map(|l| l.value().to_owned())
                    .unwrap_or_default()
            };
            series.push((label("provider"), label("model"), m.get_gauge().get_value()));
        }
    }
    series.sort_by(|a, b| a.partial_cmp(b).unwrap());
    series
}

/// Two replicas on one store report the same queue depth and turnaround (and triage with
/// the same), though only one of them queued the jobs and ran their batch: both read them
/// from the store at their census, which is driven by hand here.
#[tokio::test]
async fn every_replica_reports_the_queue_depth_and_turnaround_the_store_has() {
    let r = rig(InputKind::File, 1, Ending::Completed).await;
    let b = engine_as("b", &r.store, &r.fake, &r.clock, forwarder(None));
    let (mut at_a, mut at_b) = (
        super::census::CensusState::default(),
        super::census::CensusState::default(),
    );
    let ids = r.submit(3, DAY).await;
    r.engine.take_census(&mut at_a).await.unwrap();
    b.take_census(&mut at_b).await.unwrap();
    let three = vec![("openai".to_owned(), "gpt-4o-mini".to_owned(), 3.0)];
    assert_eq!(queue_depth(&r.engine), three);
    assert_eq!(queue_depth(&b), three, "b queued nothing itself");
    // Replica "test" runs the batch; "b" only reads the store.
    r.run(10, Duration::from_secs(40)).await;
    for id in &ids {
        assert!(r.job(id).await.result.is_some(), "{id} answered");
    }
    let observed = r
        .engine
        .observed_turnaround(Provider::OpenAi, "gpt-4o-mini")
        .expect("the replica that ran the batch knows its turnaround at once");
    assert_eq!(observed.samples, 1);
    let prior = b.config().turnaround_prior;
    assert_eq!(b.turnaround_p95(Provider::OpenAi, "gpt-4o-mini"), prior);
    b.take_census(&mut at_b).await.unwrap();
    r.engine.take_census(&mut at_a).await.unwrap();
    assert_eq!(
        b.observed_turnaround(Provider::OpenAi, "gpt-4o-mini"),
        Some(observed)
    );
    assert_eq!(
        b.turnaround_p95(Provider::OpenAi, "gpt-4o-mini"),
        observed.triage_p95
    );
    assert_ne!(observed.triage_p95, prior);
    assert_eq!(
        queue_depth(&r.engine),
        vec![],
        "an emptied queue's series is removed"
    );
    assert_eq!(queue_depth(&b), vec![]);
}

#[test]
fn observed_percentiles_take_triage_from_the_newest_200() {
    // 1,000 turnarounds, newest first: the newest 200 are slow (10 s), the rest fast (1 s).
    let samples: Vec<i64> = (0..1000)
        .map(|i| if i < 200 { 10_000 } else { 1_000 })
        .collect();
    let o = super::Observed::of(&samples).unwrap();
    assert_eq!(o.samples, 1000);
    assert_eq!(o.p50, Duration::from_secs(1));
    assert_eq!(o.p90, Duration::from_secs(10));
    assert_eq!(o.triage_p95, Duration::from_secs(10));
    assert_eq!(super::Observed::of(&[]), None);
    // A negative turnaround (clocks of two replicas) counts as zero, not as a panic.
    assert_eq!(super::Observed::of(&[-5]).unwrap().p99, Duration::ZERO);
}

/// A batch another replica ended with an end time from a clock far behind this one's is
/// older than the census's window of recent ends: the re-read of every turnaround, every
/// `REREAD_ALL`, still learns it.
#[tokio::test]
async fn a_turnaround_ended_by_a_lagging_clock_is_learnt_at_the_next_full_reread() {
    let r = rig(InputKind::File, 1, Ending::Completed).await;
    let mut state = super::census::CensusState::default();
    r.engine.take_census(&mut state).await.unwrap();
    let ids = r.submit(1, DAY).await;
    let now = r.clock.now_ms();
    let flush = crate::store::NewFlush {
        id: "flush_lagging".into(),
        provider: Provider::OpenAi,
        endpoint: Endpoint::ChatCompletions,
        model: "gpt-4o-mini".into(),
        created_at_ms: now,
    };
    r.store
        .claim_flush(flush, &ids, "elsewhere", now + 60_000)
        .await
        .unwrap();
    let an_hour_ago = now - 3_600_000;
    let update = crate::store::FlushUpdate {
        state: Some(crate::store::FlushState::Ended),
        submitted_at_ms: Some(an_hour_ago - 42_000),
        ended_at_ms: Some(an_hour_ago),
        ..Default::default()
    };
    r.store.update_flush("flush_lagging", update).await.unwrap();
    r.engine.take_census(&mut state).await.unwrap();
    assert_eq!(
        r.engine
            .observed_turnaround(Provider::OpenAi, "gpt-4o-mini"),
        None,
        "outside the window of recent ends"
    );
    r.clock.advance(super::census::REREAD_ALL);
    r.engine.take_census(&mut state).await.unwrap();
    let o = r
        .engine
        .observed_turnaround(Provider::OpenAi, "gpt-4o-mini")
        .expect("learnt at the full re-read");
    assert_eq!((o.samples, o.triage_p95), (1, Duration::from_secs(42)));
}

/// The window between a replica's last look at its lease and its create reaching the
/// provider: if the replica (or the network, or its store) stalls there for half a lease,
/// the create is dropped before it arrives; the replica that takes the flush over finds
/// nothing upstream and creates it once. File input and inline input alike.
#[tokio::test]
async fn a_create_stalled_half_a_lease_is_dropped_and_the_flush_created_once() {
    for kind in [InputKind::File, InputKind::Inline] {
        let r = rig(kind, 1, Ending::Completed).await;
        let ids = r.submit(3, DAY).await;
        r.clock.advance(Duration::from_secs(40));
        r.fake.stall_creates();
        let a = tokio::spawn({
            let engine = r.engine.clone();
            async move { engine.tick().await }
        });
        r.fake.creates_stalled(1).await;
        r.clock.advance(r.engine.cfg.lease / 2);
        // Released before the stalled replica runs again: it must not go on with the call.
        r.fake.release_creates();
        a.await.unwrap().unwrap();
        assert_eq!(
            r.fake.calls().create,
            0,
            "{kind:?}: the stalled create arrived"
        );
        let flush_id = r.job(&ids[0]).await.flush_id.unwrap();
        let f = r.store.flush(&flush_id).await.unwrap().unwrap();
        // Recorded as possibly created: whoever goes on reconciles first.
        assert_eq!(f.state, crate::store::FlushState::Creating, "{kind:?}");

        // This replica stays stalled; its lease lapses and "b" takes over.
        r.clock.advance(r.engine.cfg.lease + Duration::from_secs(1));
        let b = engine_as("b", &r.store, &r.fake, &r.clock, forwarder(None));
        for _ in 0..5 {
            b.tick().await.unwrap();
            r.engine.tick().await.unwrap();
            r.clock.advance(POLL);
        }
        for id in &ids {
            assert_eq!(r.job(id).await.result.unwrap().status, 200, "{kind:?}");
        }
        let calls = r.fake.calls();
        assert_eq!((calls.create, calls.find), (1, 1), "{kind:?}: {calls:?}");
        assert_eq!(r.fake.lines_sent().len(), 3, "{kind:?}");
        let f = r.store.flush(&flush_id).await.unwrap().unwrap();
        assert_eq!(f.owner, "b", "{kind:?}");
    }
}

/// A create that takes longer than a lease on a live replica (a large inline input) keeps
/// its lease: renewed every quarter lease, so no other replica takes the flush over.
#[tokio::test]
async fn a_long_create_renews_its_lease_and_is_not_taken_over() {
    let r = rig(InputKind::Inline, 1, Ending::Completed).await;
    let ids = r.submit(3, DAY).await;
    r.clock.advance(Duration::from_secs(40));
    r.fake.stall_creates();
    let a = tokio::spawn({
        let engine = r.engine.clone();
        async move { engine.tick().await }
    });
    r.fake.creates_stalled(1).await;
    let flush_id = r.job(&ids[0]).await.flush_id.unwrap();
    let b = engine_as("b", &r.store, &r.fake, &r.clock, forwarder(None));
    for _ in 0..6 {
        r.clock.advance(r.engine.cfg.lease / 4);
        let renewed = r.clock.now_ms() + ms(r.engine.cfg.lease);
        let mut lease_until = 0;
        for _ in 0..1_000 {
            lease_until = r
                .store
                .flush(&flush_id)
                .await
                .unwrap()
                .unwrap()
                .lease_until_ms;
            if lease_until >= renewed {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(lease_until, renewed, "the lease was not renewed");
        b.tick().await.unwrap();
    }
    r.fake.release_creates();
    a.await.unwrap().unwrap();
    let f = r.store.flush(&flush_id).await.unwrap().unwrap();
    assert_eq!(
        (f.owner.as_str(), f.state),
        ("test", crate::store::FlushState::Submitted)
    );
    let calls = r.fake.calls();
    assert_eq!((calls.create, calls.find), (1, 0), "{calls:?}");
}
