//! Store conformance tests: each runs against the SQLite store (a temp file) and against
//! the PostgreSQL store (a schema of its own on the server `SLUICE_TEST_POSTGRES` names,
//! default `postgres://postgres@127.0.0.1:5432/test`, dropped afterwards). Without a
//! reachable server the PostgreSQL runs are skipped with a notice, unless
//! `SLUICE_REQUIRE_POSTGRES=1` (CI) makes them fail. Then come tests of one backend only:
//! SQLite's group commit and upgrades, PostgreSQL replicas racing on one database.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use futures_util::FutureExt;
use sqlx::Connection;
use tokio::task::JoinSet;

use crate::store::ledger::rollup;
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{
    Census, EndedFlush, Enqueued, FlushState, FlushUpdate, JobResult, JobState, LedgerEntry,
    NewFlush, NewJob, ObjectKind, Owned, Store, StoreError,
};
use crate::types::{Endpoint, Provider, Tier, Usage};

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// A database file under the temp dir, removed (with its WAL files) on drop.
struct TempDb {
    path: PathBuf,
}

impl TempDb {
    fn new(name: &str) -> TempDb {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let path = std::env::temp_dir().join(format!(
            "sluice-store-test-{name}-{}-{nanos}-{}.db",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        TempDb { path }
    }

    fn url(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }

    async fn open(&self) -> SqliteStore {
        SqliteStore::open(&self.url()).await.unwrap()
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

const DEFAULT_TEST_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A schema of its own on the test server: parallel tests never see each other's rows.
struct PgSchema {
    /// The server URL as configured.
    server: String,
    name: String,
    /// Held while the test runs; see [`POSTGRES_SLOTS`].
    _slot: tokio::sync::SemaphorePermit<'static>,
}

/// PostgreSQL tests running at once, whatever the test threads: each may hold two pools of
/// up to 10 connections, and the server takes 100 in all.
static POSTGRES_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

impl PgSchema {
    /// The URL of a store in this schema: the server's, with the schema as search path.
    fn url(&self) -> String {
        let sep = if self.server.contains('?') { '&' } else { '?' };
        format!("{}{sep}options[search_path]={}", self.server, self.name)
    }
}

/// Why the test server cannot be used, once some test found out (the others skip at once).
static POSTGRES_DOWN: OnceLock<String> = OnceLock::new();

fn postgres_required() -> bool {
    std::env::var("SLUICE_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

/// The database one test runs on.
enum Backend {
    Sqlite(TempDb),
    Postgres(PgSchema),
}

impl Backend {
    fn sqlite(name: &str) -> Backend {
        Backend::Sqlite(TempDb::new(name))
    }

    /// A fresh schema on the test server; `None` (after a notice) when the server cannot be
    /// reached and PostgreSQL is not required.
    async fn postgres() -> Option<Backend> {
        let server =
            std::env::var("SLUICE_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_TEST_POSTGRES.into());
        let unreachable = |why: &str| {
            assert!(
                !postgres_required(),
                "SLUICE_REQUIRE_POSTGRES=1 but PostgreSQL at {} is unusable: {why}",
                crate::store::redacted(&server)
            );
            // Once per run, and past the harness's capture of `eprintln!`: a skip is seen.
            static NOTICE: std::sync::Once = std::sync::Once::new();
            NOTICE.call_once(|| {
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "note: skipping the PostgreSQL store tests: {} is unusable ({why}); \
                     set SLUICE_TEST_POSTGRES, or SLUICE_REQUIRE_POSTGRES=1 to fail instead",
                    crate::store::redacted(&server)
                );
            });
        };
        if let Some(why) = POSTGRES_DOWN.get() {
            unreachable(why);
            return None;
        }
        let slot = POSTGRES_SLOTS.acquire().await.unwrap();
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "sluice_test_{}_{}_{nanos}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let created = async {
            let mut conn = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                sqlx::PgConnection::connect(&server),
            )
            .await
            .map_err(|_| "no connection within 5s".to_owned())?
            .map_err(|e| e.to_string())?;
            sqlx::query(&format!("CREATE SCHEMA {name}"))
                .execute(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            let _ = conn.close().await;
            Ok::<_, String>(())
        };
        if let Err(why) = created.await {
            let why = POSTGRES_DOWN.get_or_init(|| why);
            unreachable(why);
            return None;
        }
        Some(Backend::Postgres(PgSchema {
            server,
            name,
            _slot: slot,
        }))
    }

    fn url(&self) -> String {
        match self {
            Backend::Sqlite(db) => db.url(),
            Backend::Postgres(schema) => schema.url(),
        }
    }

    /// Opens a store on this database, through `store::open` as the gateway does; each call
    /// is another instance (another pool: another replica, for PostgreSQL).
    async fn open(&self) -> Arc<dyn Store> {
        crate::store::open(&self.url()).await.unwrap()
    }

    /// Runs raw SQL on the database, bypassing the store.
    async fn exec(&self, sql: &str) {
        match self {
            Backend::Sqlite(db) => {
                let pool = sqlx::SqlitePool::connect(&db.url()).await.unwrap();
                sqlx::query(sql).execute(&pool).await.unwrap();
                pool.close().await;
            }
            Backend::Postgres(schema) => {
                let mut conn = sqlx::PgConnection::connect(&schema.url()).await.unwrap();
                sqlx::query(sql).execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
        }
    }

    /// Runs a test on this database, then removes it, even when the test panicked.
    async fn run<F: std::future::Future<Output = ()>>(self, test: impl FnOnce(Arc<Backend>) -> F) {
        let backend = Arc::new(self);
        let outcome = std::panic::AssertUnwindSafe(test(Arc::clone(&backend)))
            .catch_unwind()
            .await;
        if let Backend::Postgres(schema) = &*backend {
            let dropped = async {
                let mut conn = sqlx::PgConnection::connect(&schema.server).await?;
                sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", schema.name))
                    .execute(&mut conn)
                    .await?;
                conn.close().await
            };
            if let Err(e) = dropped.await {
                eprintln!("could not drop test schema {}: {e}", schema.name);
            }
        }
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }
}

/// Instantiates each conformance test (an `async fn(&Backend)`) once per backend:
/// `store::tests::sqlite::NAME` and `store::tests::postgres::NAME`.
macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    super::Backend::sqlite(stringify!($test))
                        .run(|b| async move { super::$test(&b).await })
                        .await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    if let Some(backend) = super::Backend::postgres().await {
                        backend.run(|b| async move { super::$test(&b).await }).await;
                    }
                }
            )*
        }
    };
}

/// Tests of the PostgreSQL store alone: `store::tests::postgres_replicas::NAME`.
macro_rules! postgres_only {
    ($($test:ident),* $(,)?) => {
        mod postgres_replicas {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    if let Some(backend) = super::Backend::postgres().await {
                        backend.run(|b| async move { super::$test(&b).await }).await;
                    }
                }
            )*
        }
    };
}

conformance!(
    enqueue_then_job_round_trips_exact_bytes,
    idempotency_key_is_per_client_and_expires_after_a_day,
    retry_keys_never_deduplicate_and_name_the_newest_job_of_their_client,
    concurrent_enqueues_are_durable,
    concurrent_same_key_enqueues_create_exactly_one,
    a_failing_enqueue_does_not_sink_its_group,
    claim_flush_keeps_order_and_pages_bodies,
    racing_claims_take_each_job_once,
    lease_flushes_takes_own_and_lapsed_but_not_foreign_or_ended,
    hold_flush_renews_only_a_lease_still_held,
    update_flush_changes_only_given_fields,
    requeue_moves_only_batched_jobs_back,
    fallback_and_complete_are_compare_and_set,
    a_fallback_lease_is_retaken_once_it_lapses_not_before,
    close_refuses_later_calls_and_keeps_what_was_written,
    due_before_lists_open_jobs_by_deadline,
    report_groups_by_route_client_tier_and_separates_waste,
    the_ledger_grows_with_minutes_and_labels_not_with_answers,
    old_minutes_fold_into_hours_and_keep_their_totals,
    turnarounds_are_newest_ended_flushes_first,
    a_census_counts_the_queue_and_names_recent_ends,
    purge_deletes_only_old_finished_jobs_and_frees_their_keys,
    purge_deletes_old_flushes_but_keeps_turnarounds_and_those_jobs_name,
    reopen_after_drop_keeps_everything,
    values_that_do_not_parse_are_corrupt,
    completions_are_listed_since_a_time_and_carry_their_ledger_entry,
    done_among_names_only_the_finished_of_the_given_jobs,
    recorded_batch_ids_are_known,
    the_first_owner_of_an_object_keeps_it,
    owned_among_names_only_the_clients_own_objects,
    unpriced_batches_are_the_due_batches_most_overdue_first,
    a_batch_is_priced_into_the_ledger_once,
    pricing_a_batch_commits_its_rows_and_mark_together,
    racing_replicas_price_a_batch_once,
    ownership_records_survive_reopening,
);

postgres_only!(
    replicas_open_one_database_at_once,
    racing_replicas_claim_a_flush_group_once,
    racing_replicas_lease_a_lapsed_flush_once,
    racing_replicas_claim_a_fallback_once,
    an_idempotency_key_is_unique_across_replicas,
    a_completion_on_one_replica_is_pushed_to_the_others,
    racing_replicas_record_and_compact_the_ledger_exactly,
);

fn job(id: &str, client: &str, key: Option<&str>, created_at_ms: i64) -> NewJob {
    NewJob {
        id: id.to_owned(),
        client: client.to_owned(),
        route: "default".to_owned(),
        idempotency_key: key.map(str::to_owned),
        retry_key: None,
        provider: Provider::OpenAi,
        endpoint: Endpoint::ChatCompletions,
        model: "gpt-4o-mini".to_owned(),
        body: Bytes::from(format!("{{\"id\":\"{id}\"}}")),
        stream: false,
        tier: Tier::Batch,
        prefix: None,
        created_at_ms,
        deadline_ms: created_at_ms + DAY_MS,
    }
}

fn flush(id: &str, created_at_ms: i64) -> NewFlush {
    NewFlush {
        id: id.to_owned(),
        provider: Provider::OpenAi,
        endpoint: Endpoint::ChatCompletions,
        model: "gpt-4o-mini".to_owned(),
        created_at_ms,
    }
}

fn result(status: u16, body: &str, at: i64) -> JobResult {
    JobResult {
        status,
        body: Bytes::from(body.to_owned()),
        answered_by: Tier::Batch,
        usage: Some(Usage {
            input_tokens: 10,
            cached_input_tokens: 2,
            cache_write_5m_tokens: 3,
            cache_write_1h_tokens: 4,
            output_tokens: 5,
            served_tier: None,
        }),
        completed_at_ms: at,
    }
}

fn ids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

async fn enqueue_all(store: &dyn Store, jobs: &[&str], created_at_ms: i64) {
    for id in jobs {
        let r = store
            .enqueue(job(id, "c", None, created_at_ms))
            .await
            .unwrap();
        assert!(matches!(r, Enqueued::Created));
    }
}

async fn enqueue_then_job_round_trips_exact_bytes(b: &Backend) {
    let store = b.open().await;
    let mut j = job("job_1", "alice", Some("k1"), 1_000);
    j.body = Bytes::from_static(b"\x00\xff{\"a\":1}\n\r\x01binary\x00");
    j.stream = true;
    j.tier = Tier::Flex;
    j.prefix = Some("abcd".into());
    j.provider = Provider::Anthropic;
    j.endpoint = Endpoint::Embeddings;
    assert!(matches!(
        store.enqueue(j.clone()).await.unwrap(),
        Enqueued::Created
    ));

    let got = store.job("job_1").await.unwrap().unwrap();
    assert_eq!(got.id, "job_1");
    assert_eq!(got.client, "alice");
    assert_eq!(got.route, "default");
    assert_eq!(got.provider, Provider::Anthropic);
    assert_eq!(got.endpoint, Endpoint::Embeddings);
    assert_eq!(got.model, "gpt-4o-mini");
    assert!(got.stream);
    assert_eq!(got.tier, Tier::Flex);
    assert_eq!(got.state, JobState::Queued);
    assert_eq!(got.flush_id, None);
    assert_eq!(got.created_at_ms, 1_000);
    assert_eq!(got.deadline_ms, 1_000 + DAY_MS);
    assert_eq!(got.result, None);
    assert_eq!(store.job_body("job_1").await.unwrap(), Some(j.body.clone()));
    assert_eq!(store.job("nope").await.unwrap(), None);
    assert_eq!(store.job_body("nope").await.unwrap(), None);

    let queued = store.queued().await.unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].body_bytes, j.body.len() as u64);
    assert_eq!(queued[0].prefix.as_deref(), Some("abcd"));
    assert_eq!(queued[0].tier, Tier::Flex);
    store.ping().await.unwrap();
    store.probe_write(5).await.unwrap();
    store.probe_write(6).await.unwrap();
}

#[tokio::test]
async fn memory_store_shares_one_database() {
    let store = SqliteStore::open("sqlite::memory:").await.unwrap();
    enqueue_all(&store, &["job_a", "job_b"], 5).await;
    // Reads go through the read pool: they must see the writer's database.
    assert_eq!(store.queued().await.unwrap().len(), 2);
    assert!(store.job("job_b").await.unwrap().is_some());
    // A second in-memory store is a different database.
    let other = SqliteStore::open("sqlite::memory:").await.unwrap();
    assert!(other.queued().await.unwrap().is_empty());
}

async fn retry_keys_never_deduplicate_and_name_the_newest_job_of_their_client(b: &Backend) {
    let t0 = 10 * DAY_MS;
    let with_retry = |id: &str, client: &str, key: Option<&str>, at: i64| NewJob {
        retry_key: key.map(str::to_owned),
        ..job(id, client, None, at)
    };
    {
        let store = b.open().await;
        // Recording a retry key is not deduplication: every first try is a job of its own.
        for (id, client, key, at) in [
            ("job_1", "alice", Some("r"), t0),
            ("job_2", "alice", Some("r"), t0),
            ("job_3", "bob", Some("r"), t0 + 5),
            ("job_4", "alice", None, t0 + 9),
            ("job_5", "alice", Some("other"), t0 + 9),
        ] {
            assert!(matches!(
                store
                    .enqueue(with_retry(id, client, key, at))
                    .await
                    .unwrap(),
                Enqueued::Created
            ));
        }
        // An idempotency key and a retry key are separate: a keyed job is found by both.
        let keyed = NewJob {
            retry_key: Some("keyed".into()),
            ..job("job_6", "alice", Some("k"), t0)
        };
        assert!(matches!(
            store.enqueue(keyed).await.unwrap(),
            Enqueued::Created
        ));
    }
    // Across a restart: the newest of the client's jobs under the key (insertion order
    // breaks a tie in the same millisecond), never another client's, never out of window.
    let store = b.open().await;
    let found = |client: &'static str, key: &'static str, since: i64| {
        let store = store.clone();
        async move {
            store
                .retried(client, key, since)
                .await
                .unwrap()
                .map(|j| j.id)
        }
    };
    assert_eq!(found("alice", "r", t0).await.as_deref(), Some("job_2"));
    assert_eq!(found("bob", "r", t0).await.as_deref(), Some("job_3"));
    assert_eq!(found("bob", "r", t0 + 5).await.as_deref(), Some("job_3"));
    assert_eq!(found("bob", "r", t0 + 6).await, None);
    assert_eq!(found("carol", "r", 0).await, None);
    assert_eq!(found("alice", "other", 0).await.as_deref(), Some("job_5"));
    assert_eq!(found("alice", "keyed", 0).await.as_deref(), Some("job_6"));
    assert_eq!(found("alice", "missing", 0).await, None);
    // A finished job is still found (its retry gets the stored answer); a purged one is not.
    assert!(
        store
            .complete_job("job_3", result(200, "answer", t0 + 7), None)
            .await
            .unwrap()
    );
    let job = store.retried("bob", "r", t0).await.unwrap().unwrap();
    assert_eq!(
        job.result.map(|r| r.body),
        Some(Bytes::from_static(b"answer"))
    );
    assert_eq!(store.purge(t0 + 8, 1000).await.unwrap(), 1);
    assert_eq!(found("bob", "r", 0).await, None);
}

async fn idempotency_key_is_per_client_and_expires_after_a_day(b: &Backend) {
    let store = b.open().await;
    let t0 = 10 * DAY_MS;
    assert!(matches!(
        store
            .enqueue(job("job_1", "alice", Some("k"), t0))
            .await
            .unwrap(),
        Enqueued::Created
    ));
    // Same client, same key: the first job, nothing inserted.
    match store
        .enqueue(job("job_2", "alice", Some("k"), t0 + 1_000))
        .await
        .unwrap()
    {
        Enqueued::Existing(j) => assert_eq!(j.id, "job_1"),
        Enqueued::Created => panic!("duplicate key created a job"),
    }
    assert!(store.job("job_2").await.unwrap().is_none());
    // Another client may use the same key.
    assert!(matches!(
        store
            .enqueue(job("job_3", "bob", Some("k"), t0 + 1_000))
            .await
            .unwrap(),
        Enqueued::Created
    ));
    // No key: never deduplicated.
    assert!(matches!(
        store
            .enqueue(job("job_4", "alice", None, t0 + 1_000))
            .await
            .unwrap(),
        Enqueued::Created
    ));
    // Just inside 24 h: still the same job; at 24 h: a new one.
    assert!(matches!(
        store
            .enqueue(job("job_5", "alice", Some("k"), t0 + DAY_MS - 1))
            .await
            .unwrap(),
        Enqueued::Existing(_)
    ));
    assert!(matches!(
        store
            .enqueue(job("job_6", "alice", Some("k"), t0 + DAY_MS))
            .await
            .unwrap(),
        Enqueued::Created
    ));
    // The newest job now answers for the key.
    match store
        .enqueue(job("job_7", "alice", Some("k"), t0 + DAY_MS + 5))
        .await
        .unwrap()
    {
        Enqueued::Existing(j) => assert_eq!(j.id, "job_6"),
        Enqueued::Created => panic!("duplicate key created a job"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_enqueues_are_durable_and_group_committed() {
    let db = TempDb::new("group");
    let store = Arc::new(db.open().await);
    let before = store.commit_count();
    let mut set = JoinSet::new();
    for i in 0..200 {
        let store = Arc::clone(&store);
        set.spawn(async move {
            store
                .enqueue(job(&format!("job_{i:03}"), "c", Some(&format!("k{i}")), i))
                .await
        });
    }
    while let Some(r) = set.join_next().await {
        assert!(matches!(r.unwrap().unwrap(), Enqueued::Created));
    }
    let commits = store.commit_count() - before;
    assert!(
        commits < 50,
        "200 concurrent enqueues took {commits} commits: not grouped"
    );
    drop(store);

    let reopened = db.open().await;
    assert_eq!(reopened.queued().await.unwrap().len(), 200);
    assert!(reopened.job("job_199").await.unwrap().is_some());
}

async fn concurrent_same_key_enqueues_create_exactly_one(b: &Backend) {
    let store = b.open().await;
    let mut set = JoinSet::new();
    for i in 0..50 {
        let store = Arc::clone(&store);
        set.spawn(async move {
            store
                .enqueue(job(&format!("job_{i}"), "alice", Some("same"), 1_000 + i))
                .await
        });
    }
    let (mut created, mut existing) = (0, 0);
    while let Some(r) = set.join_next().await {
        match r.unwrap().unwrap() {
            Enqueued::Created => created += 1,
            Enqueued::Existing(_) => existing += 1,
        }
    }
    assert_eq!((created, existing), (1, 49));
    assert_eq!(store.queued().await.unwrap().len(), 1);
}

async fn a_failing_enqueue_does_not_sink_its_group(b: &Backend) {
    let store = b.open().await;
    enqueue_all(&*store, &["job_dup"], 1).await;
    let mut set = JoinSet::new();
    for i in 0..40 {
        let store = Arc::clone(&store);
        let id = if i % 10 == 0 {
            "job_dup".to_owned()
        } else {
            format!("job_{i}")
        };
        set.spawn(async move { (i, store.enqueue(job(&id, "c", None, i)).await) });
    }
    while let Some(r) = set.join_next().await {
        let (i, r) = r.unwrap();
        if i % 10 == 0 {
            assert!(matches!(r, Err(StoreError::Query(_))), "{r:?}");
        } else {
            assert!(matches!(r, Ok(Enqueued::Created)), "{r:?}");
        }
    }
    assert_eq!(store.queued().await.unwrap().len(), 37);
}

async fn claim_flush_keeps_order_and_pages_bodies(b: &Backend) {
    let store = b.open().await;
    enqueue_all(&*store, &["job_a", "job_b", "job_c", "job_d", "job_e"], 1).await;
    // job_x does not exist; job_e is claimed elsewhere first.
    let other = store
        .claim_flush(flush("flush_0", 1), &ids(&["job_e"]), "r0", 100)
        .await
        .unwrap();
    assert_eq!(other, ids(&["job_e"]));
    let order = ids(&["job_d", "job_x", "job_b", "job_e", "job_a", "job_c"]);
    let claimed = store
        .claim_flush(flush("flush_1", 2), &order, "r1", 500)
        .await
        .unwrap();
    assert_eq!(claimed, ids(&["job_d", "job_b", "job_a", "job_c"]));

    let f = store.flush("flush_1").await.unwrap().unwrap();
    assert_eq!(f.state, FlushState::Claimed);
    assert_eq!(f.job_count, 4);
    assert_eq!(f.owner, "r1");
    assert_eq!(f.lease_until_ms, 500);
    assert_eq!(f.created_at_ms, 2);
    assert_eq!(f.provider, Provider::OpenAi);
    assert_eq!(f.endpoint, Endpoint::ChatCompletions);
    assert_eq!(
        (f.file_id, f.batch_id, f.submitted_at_ms),
        (None, None, None)
    );

    let j = store.job("job_b").await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Batched);
    assert_eq!(j.flush_id.as_deref(), Some("flush_1"));
    assert!(store.queued().await.unwrap().is_empty());

    let page1 = store.flush_bodies("flush_1", None, 3).await.unwrap();
    let got: Vec<(u32, &str)> = page1.iter().map(|(p, id, _)| (*p, id.as_str())).collect();
    assert_eq!(got, vec![(0, "job_d"), (1, "job_b"), (2, "job_a")]);
    assert_eq!(page1[1].2, Bytes::from_static(b"{\"id\":\"job_b\"}"));
    let page2 = store.flush_bodies("flush_1", Some(2), 3).await.unwrap();
    let got: Vec<(u32, &str)> = page2.iter().map(|(p, id, _)| (*p, id.as_str())).collect();
    assert_eq!(got, vec![(3, "job_c")]);
    assert!(
        store
            .flush_bodies("flush_1", Some(3), 3)
            .await
            .unwrap()
            .is_empty()
    );

    assert_eq!(
        store.flush_open_jobs("flush_1").await.unwrap(),
        ids(&["job_d", "job_b", "job_a", "job_c"])
    );
    assert!(
        store
            .complete_job("job_b", result(200, "ok", 9), None)
            .await
            .unwrap()
    );
    assert_eq!(
        store.flush_open_jobs("flush_1").await.unwrap(),
        ids(&["job_d", "job_a", "job_c"])
    );

    // Nothing left to claim: empty, and no flush row is left behind.
    let none = store
        .claim_flush(flush("flush_2", 3), &ids(&["job_a"]), "r1", 500)
        .await
        .unwrap();
    assert!(none.is_empty());
    assert!(store.flush("flush_2").await.unwrap().is_none());
}

async fn racing_claims_take_each_job_once(b: &Backend) {
    let store = b.open().await;
    let all: Vec<String> = (0..100).map(|i| format!("job_{i:03}")).collect();
    for id in &all {
        store.enqueue(job(id, "c", None, 1)).await.unwrap();
    }
    let mut set = JoinSet::new();
    for r in 0..4 {
        let store = Arc::clone(&store);
        let mut order = all.clone();
        if r % 2 == 1 {
            order.reverse();
        }
        set.spawn(async move {
            store
                .claim_flush(flush(&format!("flush_{r}"), 2), &order, &format!("r{r}"), 9)
                .await
                .unwrap()
        });
    }
    let mut seen = Vec::new();
    while let Some(claimed) = set.join_next().await {
        seen.extend(claimed.unwrap());
    }
    seen.sort();
    assert_eq!(seen, all);
}

async fn lease_flushes_takes_own_and_lapsed_but_not_foreign_or_ended(b: &Backend) {
    let store = b.open().await;
    enqueue_all(&*store, &["job_1", "job_2", "job_3", "job_4"], 1).await;
    let claim = |f: &'static str, j: &'static str, owner: &'static str, until: i64| {
        let store = &store;
        async move {
            store
                .claim_flush(flush(f, 1), &ids(&[j]), owner, until)
                .await
                .unwrap()
        }
    };
    claim("flush_own", "job_1", "me", 100).await;
    claim("flush_lapsed", "job_2", "them", 40).await;
    claim("flush_foreign", "job_3", "them", 100).await;
    claim("flush_ended", "job_4", "them", 10).await;
    store
        .update_flush(
            "flush_ended",
            FlushUpdate {
                state: Some(FlushState::Ended),
                ..FlushUpdate::default()
            },
        )
        .await
        .unwrap();

    let leased = store.lease_flushes("me", 50, 200).await.unwrap();
    let mut names: Vec<&str> = leased.iter().map(|f| f.id.as_str()).collect();
    names.sort();
    assert_eq!(names, vec!["flush_lapsed", "flush_own"]);
    assert!(
        leased
            .iter()
            .all(|f| f.owner == "me" && f.lease_until_ms == 200)
    );
    let foreign = store.flush("flush_foreign").await.unwrap().unwrap();
    assert_eq!(
        (foreign.owner.as_str(), foreign.lease_until_ms),
        ("them", 100)
    );
    let lapsed = store.flush("flush_lapsed").await.unwrap().unwrap();
    assert_eq!((lapsed.owner.as_str(), lapsed.lease_until_ms), ("me", 200));

    // "them" can no longer take back the lapsed one while "me" holds it.
    let theirs = store.lease_flushes("them", 60, 300).await.unwrap();
    let names: Vec<&str> = theirs.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(names, vec!["flush_foreign"]);
}

async fn hold_flush_renews_only_a_lease_still_held(b: &Backend) {
    let store = b.open().await;
    enqueue_all(&*store, &["job_1"], 1).await;
    store
        .claim_flush(flush("flush_1", 1), &ids(&["job_1"]), "me", 100)
        .await
        .unwrap();
    // Held: renewed (up to and including the lease's last millisecond).
    assert!(store.hold_flush("flush_1", "me", 100, 150).await.unwrap());
    assert_eq!(
        store
            .flush("flush_1")
            .await
            .unwrap()
            .unwrap()
            .lease_until_ms,
        150
    );
    // Not someone else's, and not once it lapsed (even if nobody took it yet).
    assert!(!store.hold_flush("flush_1", "them", 120, 300).await.unwrap());
    assert!(!store.hold_flush("flush_1", "me", 151, 300).await.unwrap());
    // Taken over: the old owner's fence fails, the new owner's holds.
    let taken = store.lease_flushes("them", 151, 400).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert!(!store.hold_flush("flush_1", "me", 160, 500).await.unwrap());
    assert!(store.hold_flush("flush_1", "them", 160, 500).await.unwrap());
    let f = store.flush("flush_1").await.unwrap().unwrap();
    assert_eq!((f.owner.as_str(), f.lease_until_ms), ("them", 500));
    // An ended flush is held by nobody.
    store
        .update_flush(
            "flush_1",
            FlushUpdate {
                state: Some(FlushState::Ended),
                ..FlushUpdate::default()
            },
        )
        .await
        .unwrap();
    assert!(!store.hold_flush("flush_1", "them", 170, 600).await.unwrap());
}

async fn update_flush_changes_only_given_fields(b: &Backend) {
    let store = b.open().await;
    enqueue_all(&*store, &["job_1"], 1).await;
    store
        .claim_flush(flush("flush_1", 7), &ids(&["job_1"]), "me", 100)
        .await
        .unwrap();
    store
        .update_flush(
            "flush_1",
            FlushUpdate {
                state: Some(FlushState::Uploaded),
                file_id: Some("file-1".into()),
                ..FlushUpdate::default()
            },
        )
        .await
        .unwrap();
    store
        .update_flush(
            "flush_1",
            FlushUpdate {
                state: Some(FlushState::Submitted),
                batch_id: Some("batch-1".into()),
                upstream_status: Some("in_progress".into()),
                submitted_at_ms: Some(1_000),
                next_poll_at_ms: Some(2_000),
                create_attempts: Some(3),
                ..FlushUpdate::default()
            },
        )
        .await
        .unwrap();
    let f = store.flush("flush_1").await.unwrap().unwrap();
    assert_eq!(f.state, FlushState::Submitted);
    assert_eq!(f.file_id.as_deref(), Some("file-1"));
    assert_eq!(f.batch_id.as_deref(), Some("batch-1"));
    assert_eq!(f.upstream_status.as_deref(), Some("in_progress"));
    assert_eq!(f.submitted_at_ms, Some(1_000));
    assert_eq!(f.ended_at_ms, None);
    assert_eq!(f.next_poll_at_ms, 2_000);
    assert_eq!(f.create_attempts, 3);
    assert_eq!(
        (f.owner.as_str(), f.lease_until_ms, f.job_count),
        ("me", 100, 1)
    );
    assert!(store.flush("flush_nope").await.unwrap().is_none());
}

async fn requeue_moves_only_batched_jobs_back(b: &Backend) {
    let store = b.open().await;
    enqueue_all(&*store, &["job_1", "job_2", "job_3", "job_4"], 1).await;
    store
        .claim_flush(
            flush("flush_1", 1),
            &ids(&["job_1", "job_2", "job_3"]),
            "me",
            9,
        )
        .await
        .unwrap();
    assert!(store.claim_fallback("job_2", 0, 100).await.unwrap());
    assert!(
        store
            .complete_job("job_3", result(200, "x", 5), None)
            .await
            .unwrap()
    );
    store
        .requeue(&ids(&["job_1", "job_2", "job_3", "job_4", "job_x"]))
        .await
        .unwrap();

    let j1 = store.job("job_1").await.unwrap().unwrap();
    assert_eq!((j1.state, j1.flush_id), (JobState::Queued, None));
    let j2 = store.job("job_2").await.unwrap().unwrap();
    assert_eq!(j2.state, JobState::Fallback);
    let j3 = store.job("job_3").await.unwrap().unwrap();
    assert_eq!(j3.state, JobState::Done);
    let queued: Vec<String> = store
        .queued()
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.id)
        .collect();
    assert_eq!(queued, ids(&["job_1", "job_4"]));
    assert!(store.flush_bodies("flush_1", None, 10).await.unwrap().len() == 2);
}

async fn fallback_and_complete_are_compare_and_set(b: &Backend) {
    let store = b.open().await;
    enqueue_all(&*store, &["job_1", "job_2"], 1).await;

    assert!(store.claim_fallback("job_1", 0, 100).await.unwrap());
    assert!(!store.claim_fallback("job_1", 0, 100).await.unwrap());
    assert!(!store.claim_fallback("job_missing", 0, 100).await.unwrap());

    let mut first = result(200, "fallback answer", 50);
    first.answered_by = Tier::Interactive;
    assert!(
        store
            .complete_job("job_1", first.clone(), None)
            .await
            .unwrap()
    );
    // A late batch line must not overwrite the answer.
    assert!(
        !store
            .complete_job("job_1", result(200, "late", 60), None)
            .await
            .unwrap()
    );
    let j = store.job("job_1").await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Done);
    assert_eq!(j.result, Some(first));
    assert!(!store.claim_fallback("job_1", 0, 100).await.unwrap());

    // Batched jobs can be won by the fallback too; a result without usage round-trips.
    store
        .claim_flush(flush("flush_1", 1), &ids(&["job_2"]), "me", 9)
        .await
        .unwrap();
    assert!(store.claim_fallback("job_2", 0, 100).await.unwrap());
    let mut plain = result(429, "", 70);
    plain.usage = None;
    assert!(
        store
            .complete_job("job_2", plain.clone(), None)
            .await
            .unwrap()
    );
    assert_eq!(
        store.job("job_2").await.unwrap().unwrap().result,
        Some(plain)
    );
    assert!(
        !store
            .complete_job("job_missing", result(200, "", 1), None)
            .await
            .unwrap()
    );
}

async fn a_fallback_lease_is_retaken_once_it_lapses_not_before(b: &Backend) {
    let store = b.open().await;
    enqueue_all(&*store, &["job_1"], 1).await;
    // A replica claims the fallback until 1_000, then dies mid-call.
    assert!(store.claim_fallback("job_1", 100, 1_000).await.unwrap());
    assert!(!store.claim_fallback("job_1", 999, 2_000).await.unwrap());
    assert!(!store.claim_fallback("job_1", 1_000, 2_000).await.unwrap());
    // Lapsed: another replica (or the restarted one) takes it, with its own lease.
    assert!(store.claim_fallback("job_1", 1_001, 2_001).await.unwrap());
    assert_eq!(
        store.job("job_1").await.unwrap().unwrap().state,
        JobState::Fallback
    );
    // The dead replica's renewal finds its lease gone; the new holder's goes through.
    assert!(!store.renew_fallback("job_1", 1_000, 5_000).await.unwrap());
    assert!(store.renew_fallback("job_1", 2_001, 3_000).await.unwrap());
    assert!(!store.claim_fallback("job_1", 2_500, 4_000).await.unwrap());
    // Handed back (shutdown): anyone retakes it at once, whatever the time.
    assert!(store.renew_fallback("job_1", 3_000, 0).await.unwrap());
    assert!(store.claim_fallback("job_1", 1, 3_500).await.unwrap());
    // Answered: nothing to renew or retake.
    assert!(
        store
            .complete_job("job_1", result(200, "x", 3_100), None)
            .await
            .unwrap()
    );
    assert!(!store.renew_fallback("job_1", 3_500, 9_000).await.unwrap());
    assert!(!store.claim_fallback("job_1", 9_999, 10_000).await.unwrap());
}

#[tokio::test]
async fn close_commits_what_was_queued_then_refuses_writes() {
    let db = TempDb::new("close");
    let store = db.open().await;
    // 50 writes queued for the writer (each polled once: handed over, not yet committed),
    // their callers gone, as at shutdown.
    for i in 0..50 {
        let queued = store
            .record(&rollup(&[entry(i, "r", "c", Tier::Batch, 1.0, false)]))
            .now_or_never();
        assert!(queued.is_none(), "not committed yet");
    }
    store.close().await;
    assert!(matches!(
        store
            .record(&rollup(&[entry(99, "r", "c", Tier::Batch, 1.0, false)]))
            .await,
        Err(StoreError::Unavailable(_))
    ));
    drop(store);
    let reopened = db.open().await;
    let rows = reopened.report(0).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.requests).sum::<u64>(), 50);
}

async fn due_before_lists_open_jobs_by_deadline(b: &Backend) {
    let store = b.open().await;
    for (id, deadline) in [
        ("job_a", 300),
        ("job_b", 100),
        ("job_c", 200),
        ("job_d", 900),
    ] {
        let mut j = job(id, "c", None, 1);
        j.deadline_ms = deadline;
        store.enqueue(j).await.unwrap();
    }
    store
        .claim_flush(flush("flush_1", 1), &ids(&["job_c"]), "me", 9)
        .await
        .unwrap();
    assert!(
        store
            .complete_job("job_b", result(200, "", 5), None)
            .await
            .unwrap()
    );
    let due: Vec<String> = store
        .due_before(300)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(due, ids(&["job_c", "job_a"]));
    assert!(store.due_before(99).await.unwrap().is_empty());
}

fn entry(
    at_ms: i64,
    route: &str,
    client: &str,
    tier: Tier,
    cost: f64,
    wasted: bool,
) -> LedgerEntry {
    LedgerEntry {
        at_ms,
        route: route.into(),
        client: client.into(),
        provider: Provider::OpenAi,
        model: "gpt-4o-mini".into(),
        tier,
        status: 200,
        usage: Usage {
            input_tokens: 100,
            output_tokens: 10,
            ..Usage::default()
        },
        cost_usd: cost,
        baseline_usd: cost * 2.0,
        savings_usd: [cost * 0.5, cost * 0.25, cost * 0.125, cost * 0.125],
        wasted,
    }
}

const MIN: i64 = 60_000;

async fn report_groups_by_route_client_tier_and_separates_waste(b: &Backend) {
    let store = b.open().await;
    store
        .record(&rollup(&[
            entry(9 * MIN + 59_999, "r1", "alice", Tier::Batch, 99.0, false), // before `since`
            entry(10 * MIN, "r1", "alice", Tier::Batch, 1.0, false),
            entry(10 * MIN + 5, "r1", "alice", Tier::Batch, 3.0, false),
            entry(12 * MIN, "r1", "alice", Tier::Batch, 0.5, true),
            entry(12 * MIN, "r1", "alice", Tier::Interactive, 2.0, false),
            entry(13 * MIN, "r2", "bob", Tier::Flex, 4.0, false),
        ]))
        .await
        .unwrap();
    store.record(&[]).await.unwrap();
    // `since` inside a minute reports that whole minute.
    let rows = store.report(10 * MIN + 30_000).await.unwrap();
    assert_eq!(rows.len(), 3);
    let batch = &rows[0];
    assert_eq!(
        (batch.route.as_str(), batch.client.as_str(), batch.tier),
        ("r1", "alice", Tier::Batch)
    );
    assert_eq!(batch.requests, 2);
    assert!((batch.cost_usd - 4.0).abs() < 1e-9);
    assert!((batch.baseline_usd - 8.0).abs() < 1e-9);
    assert!((batch.savings_usd - 4.0).abs() < 1e-9);
    assert!((batch.wasted_usd - 0.5).abs() < 1e-9);
    let inter = &rows[1];
    assert_eq!((inter.tier, inter.requests), (Tier::Interactive, 1));
    assert!(inter.wasted_usd.abs() < 1e-9);
    let flex = &rows[2];
    assert_eq!(
        (
            flex.route.as_str(),
            flex.client.as_str(),
            flex.tier,
            flex.requests
        ),
        ("r2", "bob", Tier::Flex, 1)
    );
    assert!(store.report(14 * MIN).await.unwrap().is_empty());
    assert_eq!(store.report(0).await.unwrap()[0].requests, 3);
}

async fn the_ledger_grows_with_minutes_and_labels_not_with_answers(b: &Backend) {
    let store = b.open().await;
    // 20,000 answers in two writes over one minute and two clients: two rows.
    for half in 0..2 {
        let answers: Vec<LedgerEntry> = (0..10_000)
            .map(|i| {
                let client = if i % 2 == 0 { "alice" } else { "bob" };
                entry(
                    MIN + half * 30_000 + i,
                    "r",
                    client,
                    Tier::Interactive,
                    0.001,
                    false,
                )
            })
            .collect();
        store.record(&rollup(&answers)).await.unwrap();
    }
    assert_eq!(store.ledger_rows().await.unwrap(), 2);
    // A deferred answer committed with its job lands in the same row.
    enqueue_all(&*store, &["job_1"], 1).await;
    let mut e = entry(MIN + 1, "r", "alice", Tier::Interactive, 0.5, false);
    e.status = 500;
    assert!(
        store
            .complete_job("job_1", result(500, "x", MIN + 1), Some(e))
            .await
            .unwrap()
    );
    assert_eq!(store.ledger_rows().await.unwrap(), 2);
    let rows = store.report(0).await.unwrap();
    let alice = rows.iter().find(|r| r.client == "alice").unwrap();
    assert_eq!(alice.requests, 10_001);
    assert!(
        (alice.cost_usd - (10.0 + 0.5)).abs() < 1e-6,
        "{}",
        alice.cost_usd
    );
}

async fn old_minutes_fold_into_hours_and_keep_their_totals(b: &Backend) {
    use crate::store::ledger::{HOUR_MS, MINUTE_RETENTION, fold_before};
    let store = b.open().await;
    // Every minute of hours 1 and 2 (and of hour 3, too recent to fold) for two tiers, plus
    // waste; hour 1's first minute is the row its hour folds into.
    let mut answers = Vec::new();
    for m in 60..240 {
        answers.push(entry(m * MIN + 7, "r", "c", Tier::Batch, 1.0, false));
        answers.push(entry(m * MIN + 8, "r", "c", Tier::Interactive, 2.0, false));
    }
    answers.push(entry(61 * MIN, "r", "c", Tier::Batch, 0.25, true));
    store.record(&rollup(&answers)).await.unwrap();
    assert_eq!(store.ledger_rows().await.unwrap(), 360);
    let before = store.report(0).await.unwrap();

    let now = MINUTE_RETENTION.as_millis() as i64 + 3 * HOUR_MS + 59 * MIN;
    assert_eq!(fold_before(now), 3 * HOUR_MS);
    let removed = store.compact_ledger(fold_before(now)).await.unwrap();
    // Hours 1 and 2: 59 minute rows each per tier removed, their hour rows kept.
    assert_eq!(removed, 2 * 2 * 59);
    assert_eq!(store.ledger_rows().await.unwrap(), 2 * 2 + 2 * 60);
    let after = store.report(0).await.unwrap();
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(
            (&b.route, &b.client, b.tier, b.requests),
            (&a.route, &a.client, a.tier, a.requests)
        );
        assert!((b.cost_usd - a.cost_usd).abs() < 1e-9);
        assert!((b.savings_usd - a.savings_usd).abs() < 1e-9);
        assert!((b.wasted_usd - a.wasted_usd).abs() < 1e-9);
    }
    // A folded hour reports whole: from inside hour 2, all of hour 2 and hour 3.
    let from_hour_2 = store.report(2 * HOUR_MS + 30 * MIN).await.unwrap();
    let batch = from_hour_2.iter().find(|r| r.tier == Tier::Batch).unwrap();
    assert_eq!(batch.requests, 120);
    // Folding again changes nothing.
    assert_eq!(store.compact_ledger(fold_before(now)).await.unwrap(), 0);
    assert_eq!(store.ledger_rows().await.unwrap(), 2 * 2 + 2 * 60);
}

#[tokio::test]
async fn a_ledger_of_rows_per_answer_is_summed_into_minutes_on_upgrade() {
    let db = TempDb::new("upgrade");
    // The schema before the rollup (migrations 0001-0003), with per-answer rows.
    let dir = std::env::temp_dir().join(format!("sluice-old-migrations-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite");
    for f in ["0001_init.sql", "0002_probe.sql", "0003_fallback_lease.sql"] {
        std::fs::copy(format!("{src}/{f}"), dir.join(f)).unwrap();
    }
    let pool = sqlx::SqlitePool::connect(&format!("{}?mode=rwc", db.url()))
        .await
        .unwrap();
    sqlx::migrate::Migrator::new(dir.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    for (at, client, status, cost, wasted) in [
        (MIN + 1, "a", 200, 1.0, 0),
        (MIN + 2, "a", 503, 2.0, 0),
        (MIN + 3, "a", 200, 4.0, 1),
        (2 * MIN, "b", 200, 8.0, 0),
    ] {
        sqlx::query(
            "INSERT INTO ledger (at_ms, route, client, provider, model, tier, status, \
             input_tokens, cached_input_tokens, cache_write_5m_tokens, cache_write_1h_tokens, \
             output_tokens, cost_usd, baseline_usd, savings_batch_usd, savings_flex_usd, \
             savings_prompt_cache_usd, savings_response_cache_usd, wasted) \
             VALUES (?, 'r', ?, 'openai', 'gpt-4o-mini', 'batch', ?, 10, 0, 0, 0, 1, ?, ?, ?, 0, 0, 0, ?)",
        )
        .bind(at)
        .bind(client)
        .bind(status)
        .bind(cost)
        .bind(cost * 2.0)
        .bind(cost)
        .bind(wasted)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;
    std::fs::remove_dir_all(&dir).unwrap();

    let store = db.open().await;
    assert_eq!(store.ledger_rows().await.unwrap(), 2);
    let rows = store.report(0).await.unwrap();
    let a = &rows[0];
    assert_eq!((a.client.as_str(), a.requests), ("a", 2));
    assert!((a.cost_usd - 3.0).abs() < 1e-9 && (a.baseline_usd - 6.0).abs() < 1e-9);
    assert!((a.savings_usd - 3.0).abs() < 1e-9 && (a.wasted_usd - 4.0).abs() < 1e-9);
    assert_eq!((rows[1].client.as_str(), rows[1].requests), ("b", 1));
}

async fn turnarounds_are_newest_ended_flushes_first(b: &Backend) {
    let store = b.open().await;
    let names: Vec<String> = (0..5).map(|i| format!("job_{i}")).collect();
    for id in &names {
        store.enqueue(job(id, "c", None, 1)).await.unwrap();
    }
    for (i, id) in names.iter().enumerate() {
        let fid = format!("flush_{i}");
        let mut f = flush(&fid, 1);
        if i == 4 {
            f.model = "other-model".into();
        }
        store
            .claim_flush(f, std::slice::from_ref(id), "me", 9)
            .await
            .unwrap();
        let i = i as i64;
        let update = FlushUpdate {
            state: Some(FlushState::Ended),
            submitted_at_ms: Some(1_000 * i),
            // flush_3 never ended (submitted only).
            ended_at_ms: (i != 3).then_some(1_000 * i + 100 * (i + 1)),
            ..FlushUpdate::default()
        };
        store.update_flush(&fid, update).await.unwrap();
    }
    assert_eq!(
        store
            .turnarounds(Provider::OpenAi, "gpt-4o-mini", 10)
            .await
            .unwrap(),
        vec![300, 200, 100]
    );
    assert_eq!(
        store
            .turnarounds(Provider::OpenAi, "gpt-4o-mini", 2)
            .await
            .unwrap(),
        vec![300, 200]
    );
    assert_eq!(
        store
            .turnarounds(Provider::OpenAi, "other-model", 10)
            .await
            .unwrap(),
        vec![500]
    );
    assert!(
        store
            .turnarounds(Provider::Gemini, "gpt-4o-mini", 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_census_counts_the_queue_and_names_recent_ends(b: &Backend) {
    let store = b.open().await;
    assert_eq!(store.census(0).await.unwrap(), Census::default());
    for i in 0..3 {
        store
            .enqueue(job(&format!("job_o{i}"), "c", None, 1))
            .await
            .unwrap();
    }
    for i in 0..2 {
        let mut j = job(&format!("job_a{i}"), "c", None, 1);
        (j.provider, j.model) = (Provider::Anthropic, "claude-haiku-4-5".into());
        store.enqueue(j).await.unwrap();
    }
    // (flush, its job, submitted, ended): only the queued jobs count, only flushes with a
    // turnaround that ended at or after the census's time are named.
    let flushes = [
        ("flush_recent", "job_o0", Some(4_000), Some(5_000)),
        ("flush_old", "job_o1", Some(500), Some(1_000)),
        ("flush_running", "job_a0", Some(4_500), None),
        ("flush_never_submitted", "job_a1", None, Some(6_000)),
    ];
    for (fid, jid, submitted, ended) in flushes {
        let mut f = flush(fid, 1);
        if jid.starts_with("job_a") {
            (f.provider, f.model) = (Provider::Anthropic, "claude-haiku-4-5".into());
        }
        store
            .claim_flush(f, &[jid.to_owned()], "me", 9)
            .await
            .unwrap();
        let update = FlushUpdate {
            state: ended.map(|_| FlushState::Ended),
            submitted_at_ms: submitted,
            ended_at_ms: ended,
            ..FlushUpdate::default()
        };
        store.update_flush(fid, update).await.unwrap();
    }
    store.requeue(&["job_o1".to_owned()]).await.unwrap();
    let mut census = store.census(2_000).await.unwrap();
    census.queued.sort();
    assert_eq!(
        census.queued,
        vec![(Provider::OpenAi, "gpt-4o-mini".to_owned(), 2)],
        "job_o1 requeued and job_o2 count; the rest are in flushes"
    );
    assert_eq!(
        census.ended,
        vec![EndedFlush {
            id: "flush_recent".into(),
            provider: Provider::OpenAi,
            model: "gpt-4o-mini".into(),
        }]
    );
    assert_eq!(store.census(1_000).await.unwrap().ended.len(), 2);
    // Every model's turnarounds at once are each model's, newest first.
    let all = store.all_turnarounds(10).await.unwrap();
    assert_eq!(
        all,
        vec![(Provider::OpenAi, "gpt-4o-mini".to_owned(), vec![1_000, 500])]
    );
    assert_eq!(
        all[0].2,
        store
            .turnarounds(Provider::OpenAi, "gpt-4o-mini", 10)
            .await
            .unwrap()
    );
    assert_eq!(
        store.all_turnarounds(1).await.unwrap()[0].2,
        vec![1_000],
        "the newest first"
    );
}

async fn purge_deletes_only_old_finished_jobs_and_frees_their_keys(b: &Backend) {
    let store = b.open().await;
    for (id, key) in [
        ("job_old", "k_old"),
        ("job_new", "k_new"),
        ("job_open", "k_open"),
    ] {
        store.enqueue(job(id, "c", Some(key), 1)).await.unwrap();
    }
    assert!(
        store
            .complete_job("job_old", result(200, "", 100), None)
            .await
            .unwrap()
    );
    assert!(
        store
            .complete_job("job_new", result(200, "", 300), None)
            .await
            .unwrap()
    );
    assert_eq!(store.purge(200, 1000).await.unwrap(), 1);
    assert!(store.job("job_old").await.unwrap().is_none());
    assert!(store.job("job_new").await.unwrap().is_some());
    assert!(store.job("job_open").await.unwrap().is_some());
    assert_eq!(store.purge(200, 1000).await.unwrap(), 0);
    // The purged job's key no longer deduplicates.
    assert!(matches!(
        store
            .enqueue(job("job_again", "c", Some("k_old"), 2))
            .await
            .unwrap(),
        Enqueued::Created
    ));
}

async fn purge_deletes_old_flushes_but_keeps_turnarounds_and_those_jobs_name(b: &Backend) {
    let store = b.open().await;
    // (flush, submitted, ended, its job completed at): purged before 1,000, keeping the
    // newest 2 turnarounds.
    let flushes = [
        ("flush_oldest", Some(10), Some(100), Some(50)),
        ("flush_job_kept", Some(10), Some(120), Some(5_000)),
        ("flush_never_submitted", None, Some(150), Some(50)),
        ("flush_second", Some(10), Some(200), Some(50)),
        ("flush_newest", Some(10), Some(300), Some(50)),
        ("flush_open", Some(10), None, None),
        ("flush_ended_late", None, Some(2_000), Some(50)),
    ];
    for (i, (fid, submitted, ended, completed)) in flushes.iter().enumerate() {
        let jid = format!("job_{i}");
        store.enqueue(job(&jid, "c", None, 1)).await.unwrap();
        store
            .claim_flush(flush(fid, 1), std::slice::from_ref(&jid), "me", 9)
            .await
            .unwrap();
        let update = FlushUpdate {
            state: ended.map(|_| FlushState::Ended),
            submitted_at_ms: *submitted,
            ended_at_ms: *ended,
            ..FlushUpdate::default()
        };
        store.update_flush(fid, update).await.unwrap();
        if let Some(at) = completed {
            assert!(
                store
                    .complete_job(&jid, result(200, "", *at), None)
                    .await
                    .unwrap()
            );
        }
    }
    let turnarounds = store
        .turnarounds(Provider::OpenAi, "gpt-4o-mini", 10)
        .await
        .unwrap();
    // Jobs 0, 2, 3, 4, 6; then flush_oldest and flush_never_submitted.
    assert_eq!(store.purge(1_000, 2).await.unwrap(), 5 + 2);
    for (fid, ..) in flushes {
        let kept = store.flush(fid).await.unwrap().is_some();
        let purged = ["flush_oldest", "flush_never_submitted"].contains(&fid);
        assert_eq!(kept, !purged, "{fid}");
    }
    // The two newest turnarounds are still observed.
    assert_eq!(
        store
            .turnarounds(Provider::OpenAi, "gpt-4o-mini", 2)
            .await
            .unwrap(),
        turnarounds[..2]
    );
    assert_eq!(store.purge(1_000, 2).await.unwrap(), 0);
}

async fn reopen_after_drop_keeps_everything(b: &Backend) {
    {
        let store = b.open().await;
        enqueue_all(&*store, &["job_1", "job_2", "job_3"], 1).await;
        store
            .claim_flush(flush("flush_1", 2), &ids(&["job_2", "job_3"]), "me", 50)
            .await
            .unwrap();
        assert!(
            store
                .complete_job("job_3", result(201, "done!", 7), None)
                .await
                .unwrap()
        );
        store
            .record(&rollup(&[entry(3, "r", "c", Tier::Batch, 1.5, false)]))
            .await
            .unwrap();
    }
    let store = b.open().await;
    let queued: Vec<String> = store
        .queued()
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.id)
        .collect();
    assert_eq!(queued, ids(&["job_1"]));
    let f = store.flush("flush_1").await.unwrap().unwrap();
    assert_eq!((f.job_count, f.owner.as_str()), (2, "me"));
    let j3 = store.job("job_3").await.unwrap().unwrap();
    assert_eq!(j3.result, Some(result(201, "done!", 7)));
    assert_eq!(store.report(0).await.unwrap()[0].requests, 1);
    // The idempotency-free enqueue path and the writer still work after reopening.
    enqueue_all(&*store, &["job_4"], 8).await;
    assert_eq!(store.queued().await.unwrap().len(), 2);
}

async fn values_that_do_not_parse_are_corrupt(b: &Backend) {
    let store = b.open().await;
    enqueue_all(&*store, &["job_1"], 1).await;
    b.exec("UPDATE jobs SET provider = 'nope' WHERE id = 'job_1'")
        .await;
    assert!(matches!(
        store.job("job_1").await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(store.queued().await, Err(StoreError::Corrupt(_))));
}

#[tokio::test]
async fn bad_urls_are_rejected() {
    assert!(matches!(
        SqliteStore::open("postgres://x").await,
        Err(StoreError::UnsupportedUrl(_))
    ));
    assert!(crate::store::open("mysql://x").await.is_err());
}

async fn completions_are_listed_since_a_time_and_carry_their_ledger_entry(b: &Backend) {
    let store = b.open().await;
    enqueue_all(&*store, &["job_1", "job_2", "job_3"], 1).await;
    let entry = LedgerEntry {
        at_ms: 100,
        route: "r".into(),
        client: "c".into(),
        provider: Provider::OpenAi,
        model: "gpt-4o-mini".into(),
        tier: Tier::Batch,
        status: 200,
        usage: Usage::default(),
        cost_usd: 1.0,
        baseline_usd: 2.0,
        savings_usd: [1.0, 0.0, 0.0, 0.0],
        wasted: false,
    };
    assert!(
        store
            .complete_job("job_1", result(200, "a", 100), Some(entry.clone()))
            .await
            .unwrap()
    );
    assert!(
        store
            .complete_job("job_2", result(200, "b", 300), Some(entry.clone()))
            .await
            .unwrap()
    );
    // A losing completion writes no ledger entry.
    assert!(
        !store
            .complete_job("job_2", result(200, "late", 400), Some(entry.clone()))
            .await
            .unwrap()
    );
    let since: Vec<String> = store
        .completed_since(200)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(since, vec!["job_2".to_owned()]);
    assert_eq!(store.completed_since(0).await.unwrap().len(), 2);
    let report = store.report(0).await.unwrap();
    assert_eq!(report.iter().map(|r| r.requests).sum::<u64>(), 2);
}

async fn done_among_names_only_the_finished_of_the_given_jobs(b: &Backend) {
    let store = b.open().await;
    let ids: Vec<String> = (0..510).map(|i| format!("job_{i}")).collect();
    let names: Vec<&str> = ids.iter().map(String::as_str).collect();
    enqueue_all(&*store, &names, 1).await;
    for id in ["job_0", "job_300", "job_509"] {
        assert!(
            store
                .complete_job(id, result(200, "a", 100), None)
                .await
                .unwrap()
        );
    }
    // More ids than one statement binds; unknown ids and open jobs are not named.
    let mut asked = ids.clone();
    asked.push("job_unknown".into());
    let mut done = store.done_among(&asked).await.unwrap();
    done.sort();
    assert_eq!(done, ["job_0", "job_300", "job_509"]);
    assert!(store.done_among(&[]).await.unwrap().is_empty());
    // SQLite is one process: its completions wake their callers in-process, nothing pushed.
    if matches!(b, Backend::Sqlite(_)) {
        assert!(store.completion_feed().await.unwrap().is_none());
    }
    assert!(
        store
            .done_among(&["job_1".to_owned()])
            .await
            .unwrap()
            .is_empty()
    );
}

async fn recorded_batch_ids_are_known(b: &Backend) {
    let store = b.open().await;
    enqueue_all(&*store, &["job_1"], 1).await;
    let flush = NewFlush {
        id: "flush_1".into(),
        provider: Provider::Anthropic,
        endpoint: Endpoint::Messages,
        model: "claude-haiku-4-5".into(),
        created_at_ms: 1,
    };
    store
        .claim_flush(flush, &["job_1".to_owned()], "me", 100)
        .await
        .unwrap();
    assert!(!store.batch_recorded("msgbatch_1").await.unwrap());
    let update = FlushUpdate {
        batch_id: Some("msgbatch_1".into()),
        ..FlushUpdate::default()
    };
    store.update_flush("flush_1", update).await.unwrap();
    assert!(store.batch_recorded("msgbatch_1").await.unwrap());
}

async fn concurrent_enqueues_are_durable(b: &Backend) {
    let store = b.open().await;
    let mut set = JoinSet::new();
    for i in 0..200 {
        let store = Arc::clone(&store);
        set.spawn(async move {
            store
                .enqueue(job(&format!("job_{i:03}"), "c", Some(&format!("k{i}")), i))
                .await
        });
    }
    while let Some(r) = set.join_next().await {
        assert!(matches!(r.unwrap().unwrap(), Enqueued::Created));
    }
    store.close().await;
    drop(store);
    let reopened = b.open().await;
    assert_eq!(reopened.queued().await.unwrap().len(), 200);
    assert!(reopened.job("job_199").await.unwrap().is_some());
}

async fn close_refuses_later_calls_and_keeps_what_was_written(b: &Backend) {
    let store = b.open().await;
    enqueue_all(&*store, &["job_1"], 1).await;
    store
        .record(&rollup(&[entry(1, "r", "c", Tier::Batch, 1.0, false)]))
        .await
        .unwrap();
    store.close().await;
    assert!(matches!(
        store
            .record(&rollup(&[entry(99, "r", "c", Tier::Batch, 1.0, false)]))
            .await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.enqueue(job("job_2", "c", None, 2)).await,
        Err(StoreError::Unavailable(_))
    ));
    drop(store);
    let reopened = b.open().await;
    assert_eq!(reopened.report(0).await.unwrap()[0].requests, 1);
    let queued: Vec<String> = reopened
        .queued()
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.id)
        .collect();
    assert_eq!(queued, ids(&["job_1"]));
}

#[tokio::test]
async fn postgres_urls_that_cannot_work_fail_without_their_password() {
    assert!(matches!(
        PostgresStore::open("sqlite://x.db").await,
        Err(StoreError::UnsupportedUrl(_))
    ));
    let e = PostgresStore::open("postgres://u:s3cret@127.0.0.1:notaport/db")
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::InvalidUrl(_)), "{e}");
    assert!(!e.to_string().contains("s3cret"), "{e}");
    // Nothing listens on port 1: refused at once, reported as unavailable.
    let Err(e) = crate::store::open("postgresql://u:s3cret@127.0.0.1:1/db").await else {
        panic!("opened a store on a closed port");
    };
    assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
    assert!(
        !e.to_string().contains("s3cret") && e.to_string().contains("u:***@"),
        "{e}"
    );
}

/// Two replicas starting together on a new database: one migrates, the other finds it done.
async fn replicas_open_one_database_at_once(b: &Backend) {
    let (one, two) = tokio::join!(b.open(), b.open());
    enqueue_all(&*one, &["job_1"], 1).await;
    assert_eq!(two.queued().await.unwrap().len(), 1);
    two.ping().await.unwrap();
    two.probe_write(1).await.unwrap();
    one.probe_write(2).await.unwrap();
}

/// Each round, two replicas claim the same one-job group under their own flush ids: one
/// gets the job, the other nothing (and leaves no flush behind).
async fn racing_replicas_claim_a_flush_group_once(b: &Backend) {
    let (one, two) = (b.open().await, b.open().await);
    for round in 0..20 {
        let id = format!("job_{round}");
        enqueue_all(&*one, &[id.as_str()], round).await;
        let group = vec![id.clone()];
        let (a, b2) = tokio::join!(
            one.claim_flush(flush(&format!("flush_a{round}"), 1), &group, "a", 100),
            two.claim_flush(flush(&format!("flush_b{round}"), 1), &group, "b", 100),
        );
        let (a, b2) = (a.unwrap(), b2.unwrap());
        assert_eq!(a.len() + b2.len(), 1, "round {round}: {a:?} {b2:?}");
        let (winner, loser) = if a.is_empty() { ("b", "a") } else { ("a", "b") };
        let won = one
            .flush(&format!("flush_{winner}{round}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((won.owner.as_str(), won.job_count), (winner, 1));
        assert!(
            two.flush(&format!("flush_{loser}{round}"))
                .await
                .unwrap()
                .is_none()
        );
        let j = two.job(&id).await.unwrap().unwrap();
        assert_eq!(j.flush_id, Some(format!("flush_{winner}{round}")));
    }
    // A larger group claimed by both at once: every job exactly once, in a gapless order.
    let all: Vec<String> = (0..50).map(|i| format!("job_big_{i:02}")).collect();
    for id in &all {
        one.enqueue(job(id, "c", None, 1)).await.unwrap();
    }
    let mut reversed = all.clone();
    reversed.reverse();
    let (a, b2) = tokio::join!(
        one.claim_flush(flush("flush_big_a", 1), &all, "a", 100),
        two.claim_flush(flush("flush_big_b", 1), &reversed, "b", 100),
    );
    let (a, b2) = (a.unwrap(), b2.unwrap());
    let mut seen: Vec<String> = a.iter().chain(&b2).cloned().collect();
    seen.sort();
    assert_eq!(seen, all);
    for (fid, claimed) in [("flush_big_a", &a), ("flush_big_b", &b2)] {
        if claimed.is_empty() {
            continue;
        }
        let bodies = one.flush_bodies(fid, None, 100).await.unwrap();
        let got: Vec<(u32, String)> = bodies.into_iter().map(|(p, id, _)| (p, id)).collect();
        let want: Vec<(u32, String)> = (0u32..).zip(claimed.iter().cloned()).collect();
        assert_eq!(got, want, "{fid}");
    }
}

/// A flush whose owner died is leased by exactly one of two replicas reaching for it at
/// once; the loser does not get it later either, while the winner's lease holds.
async fn racing_replicas_lease_a_lapsed_flush_once(b: &Backend) {
    let (one, two) = (b.open().await, b.open().await);
    for round in 0..20 {
        let id = format!("job_{round}");
        enqueue_all(&*one, &[id.as_str()], 1).await;
        let fid = format!("flush_{round}");
        one.claim_flush(flush(&fid, round), &[id], "dead", 10)
            .await
            .unwrap();
        let now = 100 + round * 10;
        let (a, b2) = tokio::join!(
            one.lease_flushes("a", now, now + 1_000),
            two.lease_flushes("b", now, now + 1_000),
        );
        let (a, b2) = (a.unwrap(), b2.unwrap());
        let has = |v: &[crate::store::Flush]| v.iter().any(|f| f.id == fid);
        assert!(has(&a) ^ has(&b2), "round {round}: {a:?} {b2:?}");
        let winner = if has(&a) { "a" } else { "b" };
        let f = two.flush(&fid).await.unwrap().unwrap();
        assert_eq!((f.owner.as_str(), f.lease_until_ms), (winner, now + 1_000));
        let loser = if winner == "a" { &two } else { &one };
        let again = loser
            .lease_flushes(if winner == "a" { "b" } else { "a" }, now + 1, now + 2_000)
            .await
            .unwrap();
        assert!(!has(&again), "round {round}: the loser took it later");
    }
}

/// What one replica completes reaches another's feed once it commits, and only then; a
/// losing completion pushes nothing. (`NOTIFY` is per database, not per schema: ids of
/// tests running alongside may arrive too, so only this test's ids are looked at.)
async fn a_completion_on_one_replica_is_pushed_to_the_others(b: &Backend) {
    let (one, two) = (b.open().await, b.open().await);
    let tag = crate::batch::new_id("feed");
    let ids: Vec<String> = (0..3).map(|i| format!("job_{tag}_{i}")).collect();
    let names: Vec<&str> = ids.iter().map(String::as_str).collect();
    enqueue_all(&*one, &names, 1).await;
    let mut feed = two
        .completion_feed()
        .await
        .unwrap()
        .expect("PostgreSQL pushes completions");
    assert!(
        one.complete_job(&ids[0], result(200, "a", 5), None)
            .await
            .unwrap()
    );
    assert!(
        !one.complete_job(&ids[0], result(200, "late", 6), None)
            .await
            .unwrap()
    );
    assert!(
        two.complete_job(&ids[2], result(200, "c", 7), None)
            .await
            .unwrap()
    );
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let id = tokio::time::timeout(std::time::Duration::from_secs(30), feed.next())
            .await
            .expect("a notification within 30 s")
            .unwrap();
        if id.contains(&tag) {
            seen.push(id);
        }
    }
    assert_eq!(seen, [ids[0].clone(), ids[2].clone()]);
}

/// Two replicas' watchdogs reach for the same due job: one sends the fallback.
async fn racing_replicas_claim_a_fallback_once(b: &Backend) {
    let (one, two) = (b.open().await, b.open().await);
    for round in 0..20 {
        let id = format!("job_{round}");
        enqueue_all(&*one, &[id.as_str()], 1).await;
        let (a, b2) = tokio::join!(
            one.claim_fallback(&id, 100, 1_000),
            two.claim_fallback(&id, 100, 1_000)
        );
        assert!(a.unwrap() ^ b2.unwrap(), "round {round}");
        // Both answer (the loser late): one completion wins, the other is refused.
        let (a, b2) = tokio::join!(
            one.complete_job(&id, result(200, "a", 5), None),
            two.complete_job(&id, result(200, "b", 6), None)
        );
        assert!(a.unwrap() ^ b2.unwrap(), "round {round}");
    }
}

/// The same key sent to two replicas at once (a client retrying against another replica):
/// one job, which every retry gets back.
async fn an_idempotency_key_is_unique_across_replicas(b: &Backend) {
    let replicas = [b.open().await, b.open().await];
    let mut set = JoinSet::new();
    for i in 0..40 {
        let store = Arc::clone(&replicas[i % 2]);
        set.spawn(async move {
            store
                .enqueue(job(&format!("job_{i}"), "alice", Some("same"), 1_000))
                .await
        });
    }
    let mut created = 0;
    let mut existing = std::collections::BTreeSet::new();
    while let Some(r) = set.join_next().await {
        match r.unwrap().unwrap() {
            Enqueued::Created => created += 1,
            Enqueued::Existing(j) => {
                existing.insert(j.id);
            }
        }
    }
    assert_eq!(created, 1);
    assert_eq!(existing.len(), 1, "{existing:?}");
    let queued = replicas[1].queued().await.unwrap();
    assert_eq!(queued.len(), 1);
    assert!(existing.contains(&queued[0].id));
    // Another client's same key is its own.
    assert!(matches!(
        replicas[0]
            .enqueue(job("job_bob", "bob", Some("same"), 1_000))
            .await
            .unwrap(),
        Enqueued::Created
    ));
}

/// Replicas adding to the same ledger rows at once (in different orders) lose no sum, and
/// two replicas compacting at once fold each minute once.
async fn racing_replicas_record_and_compact_the_ledger_exactly(b: &Backend) {
    use crate::store::ledger::HOUR_MS;
    let replicas = [b.open().await, b.open().await];
    let mut set = JoinSet::new();
    for i in 0..8 {
        let store = Arc::clone(&replicas[i % 2]);
        set.spawn(async move {
            // Ten minutes of two clients, each writer in its own order; duplicate keys in
            // one call are summed too.
            let mut answers: Vec<LedgerEntry> = (0..40)
                .map(|n| {
                    let client = if (n / 10) % 2 == 0 { "alice" } else { "bob" };
                    entry(
                        HOUR_MS + (n % 10) * MIN,
                        "r",
                        client,
                        Tier::Batch,
                        1.0,
                        false,
                    )
                })
                .collect();
            if i % 2 == 1 {
                answers.reverse();
            }
            let mut rows = rollup(&answers);
            rows.extend(rollup(&answers[..2]));
            store.record(&rows).await
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap().unwrap();
    }
    assert_eq!(replicas[0].ledger_rows().await.unwrap(), 20);
    let total = |rows: Vec<crate::store::ReportRow>| rows.iter().map(|r| r.requests).sum::<u64>();
    assert_eq!(total(replicas[0].report(0).await.unwrap()), 8 * 42);
    let (a, b2) = tokio::join!(
        replicas[0].compact_ledger(2 * HOUR_MS),
        replicas[1].compact_ledger(2 * HOUR_MS)
    );
    // Nine of each client's ten minutes folded into the hour's first.
    assert_eq!(a.unwrap() + b2.unwrap(), 18);
    assert_eq!(replicas[1].ledger_rows().await.unwrap(), 2);
    assert_eq!(total(replicas[1].report(0).await.unwrap()), 8 * 42);
}

fn owned(
    provider: Provider,
    kind: ObjectKind,
    id: &str,
    client: &str,
    created_at_ms: i64,
) -> Owned {
    Owned {
        provider,
        kind,
        id: id.to_owned(),
        client: client.to_owned(),
        route: format!("route_of_{client}"),
        created_at_ms,
    }
}

fn batch(id: &str, client: &str, created_at_ms: i64) -> Owned {
    owned(
        Provider::OpenAi,
        ObjectKind::Batch,
        id,
        client,
        created_at_ms,
    )
}

async fn the_first_owner_of_an_object_keeps_it(b: &Backend) {
    let store = b.open().await;
    let (file, batch) = (ObjectKind::File, ObjectKind::Batch);
    let first = owned(Provider::OpenAi, file, "obj_1", "alice", 1);
    assert_eq!(store.own(first.clone()).await.unwrap(), "alice");
    // Another client (or the same one again) changes nothing and is told the owner.
    let again = owned(Provider::OpenAi, file, "obj_1", "bob", 2);
    assert_eq!(store.own(again).await.unwrap(), "alice");
    assert_eq!(store.own(first.clone()).await.unwrap(), "alice");
    assert_eq!(
        store
            .owned(Provider::OpenAi, file, "obj_1")
            .await
            .unwrap()
            .as_ref(),
        Some(&first)
    );
    // The same id under another kind or provider is another object.
    for (provider, kind) in [(Provider::OpenAi, batch), (Provider::Anthropic, file)] {
        assert!(
            store
                .owned(provider, kind, "obj_1")
                .await
                .unwrap()
                .is_none()
        );
        let o = owned(provider, kind, "obj_1", "bob", 3);
        assert_eq!(store.own(o.clone()).await.unwrap(), "bob");
        assert_eq!(store.owned(provider, kind, "obj_1").await.unwrap(), Some(o));
    }
    assert!(
        store
            .owned(Provider::Gemini, file, "obj_1")
            .await
            .unwrap()
            .is_none()
    );
    // Replicas recording one object at once all name the same single owner.
    let replicas = [b.open().await, b.open().await];
    let mut set = JoinSet::new();
    for i in 0..8 {
        let store = Arc::clone(&replicas[i % 2]);
        set.spawn(async move {
            store
                .own(owned(Provider::OpenAi, batch, "raced", &format!("c{i}"), 5))
                .await
                .unwrap()
        });
    }
    let mut answers = Vec::new();
    while let Some(a) = set.join_next().await {
        answers.push(a.unwrap());
    }
    let winner = store
        .owned(Provider::OpenAi, batch, "raced")
        .await
        .unwrap()
        .unwrap()
        .client;
    assert!(
        answers.iter().all(|a| *a == winner),
        "{answers:?} vs {winner}"
    );
}

async fn owned_among_names_only_the_clients_own_objects(b: &Backend) {
    let store = b.open().await;
    use futures_util::{StreamExt, TryStreamExt};
    // More ids than one SQLite statement binds, split between two clients; records made
    // 50 at a time share group commits (and stay within a PostgreSQL pool's waits).
    let ids: Vec<String> = (0..1100).map(|i| format!("file_{i}")).collect();
    let records = ids.iter().enumerate().map(|(i, id)| {
        let client = if i % 3 == 0 { "alice" } else { "bob" };
        store.own(owned(Provider::OpenAi, ObjectKind::File, id, client, 1))
    });
    let _: Vec<String> = futures_util::stream::iter(records)
        .buffer_unordered(50)
        .try_collect()
        .await
        .unwrap();
    // Bob's batch and Alice's Anthropic file of the same name are other objects.
    store
        .own(owned(
            Provider::OpenAi,
            ObjectKind::Batch,
            "file_1",
            "bob",
            1,
        ))
        .await
        .unwrap();
    store
        .own(owned(
            Provider::Anthropic,
            ObjectKind::File,
            "file_1",
            "alice",
            1,
        ))
        .await
        .unwrap();
    let mut asked = ids.clone();
    asked.push("file_unknown".into());
    let among = |client: &'static str, kind: ObjectKind, provider: Provider| {
        let (store, asked) = (Arc::clone(&store), asked.clone());
        async move {
            let mut found = store
                .owned_among(provider, kind, client, &asked)
                .await
                .unwrap();
            found.sort();
            found
        }
    };
    let mut alice: Vec<String> = ids.iter().step_by(3).cloned().collect();
    alice.sort();
    assert_eq!(
        among("alice", ObjectKind::File, Provider::OpenAi).await,
        alice
    );
    assert_eq!(
        among("bob", ObjectKind::File, Provider::OpenAi).await.len(),
        1100 - alice.len()
    );
    assert_eq!(
        among("bob", ObjectKind::Batch, Provider::OpenAi).await,
        ["file_1"]
    );
    assert_eq!(
        among("alice", ObjectKind::File, Provider::Anthropic).await,
        ["file_1"]
    );
    assert!(
        among("carol", ObjectKind::File, Provider::OpenAi)
            .await
            .is_empty()
    );
    assert!(
        store
            .owned_among(Provider::OpenAi, ObjectKind::File, "alice", &[])
            .await
            .unwrap()
            .is_empty()
    );
}

async fn unpriced_batches_are_the_due_batches_most_overdue_first(b: &Backend) {
    let store = b.open().await;
    let anthropic = owned(Provider::Anthropic, ObjectKind::Batch, "a_1", "bob", 3);
    for o in [
        batch("b_1", "alice", 10),
        batch("b_2", "alice", 5),
        batch("b_3", "alice", 1),
        batch("b_4", "bob", 2),
        batch("b_5", "bob", 0),
        batch("b_priced", "bob", 0),
        anthropic.clone(),
        // Files are never priced, whatever their age.
        owned(Provider::OpenAi, ObjectKind::File, "f_1", "alice", 0),
    ] {
        store.own(o).await.unwrap();
    }
    let op = Provider::OpenAi;
    store.check_batch_at(op, "b_3", 100).await.unwrap();
    store.check_batch_at(op, "b_4", 50).await.unwrap();
    store.check_batch_at(op, "b_5", 1000).await.unwrap();
    // Neither a file nor an unknown batch is changed (or an error).
    store.check_batch_at(op, "f_1", 10_000).await.unwrap();
    store.check_batch_at(op, "nope", 10_000).await.unwrap();
    assert!(store.price_batch(op, "b_priced", 1, &[]).await.unwrap());
    let due = |now: i64, limit: u32| {
        let store = Arc::clone(&store);
        async move {
            store
                .unpriced_batches(now, limit)
                .await
                .unwrap()
                .into_iter()
                .map(|o| o.id)
                .collect::<Vec<_>>()
        }
    };
    // Never put off first (by age), then by when they are due; not yet due ones left out.
    assert_eq!(due(500, 10).await, ["a_1", "b_2", "b_1", "b_4", "b_3"]);
    assert_eq!(due(500, 2).await, ["a_1", "b_2"]);
    assert_eq!(due(49, 10).await, ["a_1", "b_2", "b_1"]);
    assert_eq!(due(50, 10).await, ["a_1", "b_2", "b_1", "b_4"]);
    assert_eq!(
        due(10_000, 10).await,
        ["a_1", "b_2", "b_1", "b_4", "b_3", "b_5"]
    );
    // Putting one off moves it behind those due sooner.
    store.check_batch_at(op, "b_1", 60).await.unwrap();
    assert_eq!(due(500, 10).await, ["a_1", "b_2", "b_4", "b_1", "b_3"]);
    store.check_batch_at(op, "b_1", 600).await.unwrap();
    assert_eq!(due(500, 10).await, ["a_1", "b_2", "b_4", "b_3"]);
    // The records come back whole.
    assert_eq!(store.unpriced_batches(500, 1).await.unwrap(), [anthropic]);
}

/// A batch's usage: two minutes of Alice's route at the batch tier, 7 USD in three answers.
fn batch_usage() -> Vec<crate::store::ledger::LedgerRow> {
    rollup(&[
        entry(MIN, "route_of_alice", "alice", Tier::Batch, 1.0, false),
        entry(MIN + 1, "route_of_alice", "alice", Tier::Batch, 2.0, false),
        entry(2 * MIN, "route_of_alice", "alice", Tier::Batch, 4.0, false),
    ])
}

/// The ledger's totals: (requests, cost).
async fn ledger_totals(store: &dyn Store) -> (u64, f64) {
    let rows = store.report(0).await.unwrap();
    (
        rows.iter().map(|r| r.requests).sum(),
        rows.iter().map(|r| r.cost_usd).sum(),
    )
}

async fn a_batch_is_priced_into_the_ledger_once(b: &Backend) {
    let store = b.open().await;
    let op = Provider::OpenAi;
    store.own(batch("batch_1", "alice", 1)).await.unwrap();
    store
        .own(owned(op, ObjectKind::File, "file_1", "alice", 1))
        .await
        .unwrap();
    let rows = batch_usage();
    // Unknown batches, files and other providers' ids are not priced, and add nothing.
    assert!(
        !store
            .price_batch(op, "batch_unknown", 5, &rows)
            .await
            .unwrap()
    );
    assert!(!store.price_batch(op, "file_1", 5, &rows).await.unwrap());
    assert!(
        !store
            .price_batch(Provider::Anthropic, "batch_1", 5, &rows)
            .await
            .unwrap()
    );
    assert_eq!(store.ledger_rows().await.unwrap(), 0);
    assert!(store.price_batch(op, "batch_1", 5, &rows).await.unwrap());
    assert!(!store.price_batch(op, "batch_1", 6, &rows).await.unwrap());
    let (requests, cost) = ledger_totals(&*store).await;
    assert_eq!(requests, 3);
    assert!((cost - 7.0).abs() < 1e-9, "{cost}");
    assert_eq!(store.ledger_rows().await.unwrap(), 2);
    let report = store.report(0).await.unwrap();
    assert_eq!(
        (
            report[0].route.as_str(),
            report[0].client.as_str(),
            report[0].tier
        ),
        ("route_of_alice", "alice", Tier::Batch)
    );
    assert!(
        store
            .unpriced_batches(i64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A batch without usage is priced too (and then no longer checked).
    store.own(batch("batch_empty", "alice", 1)).await.unwrap();
    assert!(store.price_batch(op, "batch_empty", 7, &[]).await.unwrap());
    assert!(!store.price_batch(op, "batch_empty", 8, &[]).await.unwrap());
    assert!(
        store
            .unpriced_batches(i64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(ledger_totals(&*store).await.0, 3);
}

async fn pricing_a_batch_commits_its_rows_and_mark_together(b: &Backend) {
    let store = b.open().await;
    let op = Provider::OpenAi;
    store.own(batch("batch_1", "alice", 1)).await.unwrap();
    // A ledger write that fails, after the batch was marked priced in the same call.
    let (fail, unfail) = match b {
        Backend::Sqlite(_) => (
            "CREATE TRIGGER no_boom BEFORE INSERT ON ledger_rollup WHEN NEW.route = 'boom' \
             BEGIN SELECT RAISE(ABORT, 'boom'); END",
            "DROP TRIGGER no_boom",
        ),
        Backend::Postgres(_) => (
            "ALTER TABLE ledger_rollup ADD CONSTRAINT no_boom CHECK (route <> 'boom')",
            "ALTER TABLE ledger_rollup DROP CONSTRAINT no_boom",
        ),
    };
    b.exec(fail).await;
    let mut rows = batch_usage();
    rows.extend(rollup(&[entry(
        3 * MIN,
        "boom",
        "alice",
        Tier::Batch,
        8.0,
        false,
    )]));
    assert!(store.price_batch(op, "batch_1", 5, &rows).await.is_err());
    // Neither the mark nor any row was kept: the batch is still to price.
    assert_eq!(store.ledger_rows().await.unwrap(), 0);
    let due = store.unpriced_batches(10, 10).await.unwrap();
    assert_eq!(due, [batch("batch_1", "alice", 1)]);
    b.exec(unfail).await;
    assert!(store.price_batch(op, "batch_1", 6, &rows).await.unwrap());
    let (requests, cost) = ledger_totals(&*store).await;
    assert_eq!(requests, 4);
    assert!((cost - 15.0).abs() < 1e-9, "{cost}");
}

async fn racing_replicas_price_a_batch_once(b: &Backend) {
    let replicas = [b.open().await, b.open().await];
    replicas[0].own(batch("batch_1", "alice", 1)).await.unwrap();
    let mut set = JoinSet::new();
    for i in 0..8 {
        let store = Arc::clone(&replicas[i % 2]);
        set.spawn(async move {
            store
                .price_batch(Provider::OpenAi, "batch_1", 5, &batch_usage())
                .await
                .unwrap()
        });
    }
    let mut priced = 0;
    while let Some(won) = set.join_next().await {
        priced += usize::from(won.unwrap());
    }
    assert_eq!(priced, 1);
    for store in &replicas {
        let (requests, cost) = ledger_totals(&**store).await;
        assert_eq!(requests, 3);
        assert!((cost - 7.0).abs() < 1e-9, "{cost}");
    }
}

async fn ownership_records_survive_reopening(b: &Backend) {
    let op = Provider::OpenAi;
    let file = owned(op, ObjectKind::File, "file_1", "alice", 1);
    {
        let store = b.open().await;
        store.own(file.clone()).await.unwrap();
        for id in ["batch_1", "batch_2", "batch_3"] {
            store.own(batch(id, "bob", 2)).await.unwrap();
        }
        store.check_batch_at(op, "batch_2", 100).await.unwrap();
        assert!(
            store
                .price_batch(op, "batch_3", 3, &batch_usage())
                .await
                .unwrap()
        );
    }
    let store = b.open().await;
    assert_eq!(
        store.owned(op, ObjectKind::File, "file_1").await.unwrap(),
        Some(file)
    );
    assert_eq!(
        store
            .own(owned(op, ObjectKind::File, "file_1", "bob", 9))
            .await
            .unwrap(),
        "alice"
    );
    let ids = |v: Vec<Owned>| v.into_iter().map(|o| o.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.unpriced_batches(99, 10).await.unwrap()),
        ["batch_1"]
    );
    assert_eq!(
        ids(store.unpriced_batches(100, 10).await.unwrap()),
        ["batch_1", "batch_2"]
    );
    assert!(
        !store
            .price_batch(op, "batch_3", 4, &batch_usage())
            .await
            .unwrap()
    );
    assert_eq!(ledger_totals(&*store).await.0, 3);
}
