//! The multi-replica deployment, with real processes: one simulated provider, three
//! `sluice serve` replicas (distinct `SLUICE_REPLICA_ID`s) on one PostgreSQL database (a
//! schema of its own per test). Callers spread over the replicas all get their answers,
//! nothing is sent upstream twice (the simulator counts every batch line by `custom_id`),
//! a replica killed while it holds a flush's lease is taken over once the lease lapses,
//! and an answer stored by one replica wakes a caller held on another. Every replica reports
//! the store's queue depth and turnaround, one `sluice report` sums every replica's ledger,
//! and the compose example's nginx (deploy/replicas/nginx.conf; skipped without nginx on
//! PATH) passes held answers and streams.
//!
//! The PostgreSQL server is `SLUICE_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/test`); when it cannot be reached the tests skip,
//! unless `SLUICE_REQUIRE_POSTGRES=1`, which makes them fail.
#![cfg(unix)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use sha2::{Digest, Sha256};
use sqlx::Connection;

#[path = "common/binary.rs"]
mod binary;
#[path = "common/metrics.rs"]
mod metrics;
use binary::{Http, Proc, Reply, free_port, http, send};
use metrics::metric;

const KEY: &str = "sk-replica-test";
const MODEL: &str = "gpt-4o-mini";
const DEFAULT_TEST_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Polling: at most this many attempts, `POLL` apart.
const POLL_ATTEMPTS: u32 = 1000;
const POLL: Duration = Duration::from_millis(20);
/// Flush leases in these tests: a killed replica's flush is taken over this long after
/// its last renewal.
const LEASE: &str = "1s";

fn postgres_required() -> bool {
    std::env::var("SLUICE_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

/// Tests running at once: each runs three replicas of up to 10 pooled connections plus a
/// `LISTEN` connection, and the server takes 100 in all.
static SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// A fresh schema on the test server, dropped with it.
struct Schema {
    server: String,
    name: String,
}

impl Schema {
    /// `None` (after a notice) when the server is unusable and PostgreSQL is not required.
    async fn create(test: &str) -> Option<Schema> {
        let server =
            std::env::var("SLUICE_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_TEST_POSTGRES.into());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("sluice_replicas_{}_{test}_{nanos}", std::process::id());
        let created = async {
            let mut conn =
                tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(&server))
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
        match created.await {
            Ok(()) => Some(Schema { server, name }),
            Err(why) => {
                assert!(
                    !postgres_required(),
                    "SLUICE_REQUIRE_POSTGRES=1 but PostgreSQL at {server} is unusable: {why}"
                );
                eprintln!(
                    "note: skipping {test}: PostgreSQL at {server} is unusable ({why}); \
                     set SLUICE_TEST_POSTGRES, or SLUICE_REQUIRE_POSTGRES=1 to fail instead"
                );
                None
            }
        }
    }

    /// The store URL of this schema (the server's, with the schema as search path).
    fn url(&self) -> String {
        let sep = if self.server.contains('?') { '&' } else { '?' };
        format!("{}{sep}options[search_path]={}", self.server, self.name)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Drop runs inside the test's runtime: the clean-up gets a runtime of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&server).await {
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .execute(&mut conn)
                        .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

/// One replica process and the port it serves.
struct Replica {
    id: String,
    port: u16,
    proc: Proc,
}

/// One simulator and up to three replicas on one PostgreSQL schema.
struct Cluster {
    dir: PathBuf,
    // Field order is drop order: replicas before the simulator, the schema last.
    replicas: BTreeMap<String, Replica>,
    sim: Option<Proc>,
    sim_port: u16,
    http: Http,
    db: sqlx::PgPool,
    schema: Schema,
    _slot: tokio::sync::SemaphorePermit<'static>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.replicas.clear();
        drop(self.sim.take());
        if std::thread::panicking() {
            eprintln!("---- logs of {} ----\n{}", self.dir.display(), self.logs());
        }
        if std::env::var_os("CRASH_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Cluster {
    /// A simulator and a fresh schema; `None` when PostgreSQL is unusable (and not required).
    async fn start(test: &str) -> Option<Cluster> {
        let slot = SLOTS.acquire().await.unwrap();
        let schema = Schema::create(test).await?;
        let dir =
            std::env::temp_dir().join(format!("sluice-replicas-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("policies")).expect("create the policies dir");
        std::fs::write(
            dir.join("policies").join("replicas.toml"),
            format!(
                "[client]\nname = \"replicas\"\nkeys = [\"{}\"]\n",
                hex::encode(Sha256::digest(KEY.as_bytes()))
            ),
        )
        .expect("write the policy");
        let db = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect_lazy(&schema.url())
            .expect("the schema's URL");
        let mut c = Cluster {
            dir,
            replicas: BTreeMap::new(),
            sim: None,
            sim_port: 0,
            http: http(),
            db,
            schema,
            _slot: slot,
        };
        c.start_simulator().await;
        Some(c)
    }

    fn log_file(&self, name: &str) -> File {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(name))
            .expect("open a log file")
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        let mut names = vec!["simulator.log".to_owned()];
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            let mut more: Vec<String> = entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with("replica-"))
                .collect();
            more.sort();
            names.extend(more);
        }
        for name in names {
            let text = std::fs::read_to_string(self.dir.join(&name)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            out.push_str(&format!("== {name} (last {} lines)\n", tail.len()));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    fn spawn(&self, args: &[&str], env: &[(&str, String)], log: &str) -> Proc {
        let out = self.log_file(log);
        let err = out.try_clone().expect("clone the log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
        cmd.args(args)
            .env_clear()
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc {
            child: cmd.spawn().expect("spawn sluice"),
        }
    }

    /// Polls `url` until it answers 200; `None` if the process exited first (a lost port
    /// race) or never became ready.
    async fn ready(&self, proc: &mut Proc, url: &str) -> Option<()> {
        for _ in 0..POLL_ATTEMPTS {
            if let Ok(Some(status)) = proc.child.try_wait() {
                eprintln!("process exited before it was ready: {status}");
                return None;
            }
            if let Ok(r) = send(
                &self.http,
                Method::GET,
                url,
                &[("authorization", "Bearer x")],
                None,
            )
            .await
            {
                if r.status == StatusCode::OK {
                    return Some(());
                }
            }
            tokio::time::sleep(POLL).await;
        }
        None
    }

    async fn start_simulator(&mut self) {
        for _ in 0..3 {
            let port = free_port();
            let listen = format!("127.0.0.1:{port}");
            let mut sim = self.spawn(
                &[
                    "simulate",
                    "--listen",
                    &listen,
                    "--batch-turnaround",
                    "300ms",
                ],
                &[],
                "simulator.log",
            );
            let url = format!("http://{listen}/v1/models");
            if self.ready(&mut sim, &url).await.is_some() {
                self.sim = Some(sim);
                self.sim_port = port;
                return;
            }
        }
        panic!("the simulator never became ready\n{}", self.logs());
    }

    /// Starts replica `id` (`SLUICE_REPLICA_ID`) on the shared store, fast batch settings
    /// unless `extra` overrides them (later entries win).
    async fn start_replica(&mut self, id: &str, extra: &[(&str, &str)]) {
        assert!(!self.replicas.contains_key(id), "{id} is already running");
        for _ in 0..3 {
            let port = free_port();
            let sim = format!("http://127.0.0.1:{}/v1", self.sim_port);
            let mut env: Vec<(&str, String)> = vec![
                ("SLUICE_LISTEN", format!("127.0.0.1:{port}")),
                ("SLUICE_STORE", self.schema.url()),
                (
                    "SLUICE_POLICIES",
                    self.dir.join("policies").display().to_string(),
                ),
                ("OPENAI_BASE_URL", sim.clone()),
                ("OPENAI_API_KEY", "sk-test".to_owned()),
                ("ANTHROPIC_BASE_URL", sim),
                ("ANTHROPIC_API_KEY", "sk-ant-test".to_owned()),
                ("SLUICE_BATCH_MAX_WAIT", "1s".to_owned()),
                ("SLUICE_BATCH_POLL_INTERVAL", "50ms".to_owned()),
                ("SLUICE_BATCH_LEASE", LEASE.to_owned()),
                ("SLUICE_REPLICA_ID", id.to_owned()),
            ];
            for (k, v) in extra {
                env.retain(|(e, _)| e != k);
                env.push((k, (*v).to_owned()));
            }
            let mut proc = self.spawn(&["serve"], &env, &format!("replica-{id}.log"));
            let url = format!("http://127.0.0.1:{port}/readyz");
            if self.ready(&mut proc, &url).await.is_some() {
                self.replicas.insert(
                    id.to_owned(),
                    Replica {
                        id: id.to_owned(),
                        port,
                        proc,
                    },
                );
                return;
            }
        }
        panic!("replica {id} never became ready\n{}", self.logs());
    }

    /// Three replicas `a`, `b`, `c` with the same settings.
    async fn start_three(&mut self, extra: &[(&str, &str)]) {
        for id in ["a", "b", "c"] {
            self.start_replica(id, extra).await;
        }
    }

    fn url(&self, replica: &str, path: &str) -> String {
        let r = self
            .replicas
            .get(replica)
            .unwrap_or_else(|| panic!("no replica {replica}"));
        format!("http://127.0.0.1:{}{path}", r.port)
    }

    fn sim_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.sim_port)
    }

    /// SIGKILLs a replica and reaps it.
    fn kill(&mut self, id: &str) {
        let mut r = self
            .replicas
            .remove(id)
            .unwrap_or_else(|| panic!("no replica {id}"));
        let _ = r.proc.child.kill();
        let status = r.proc.child.wait().expect("reap the replica");
        assert!(!status.success(), "{}: {status}", r.id);
    }

    /// SIGTERMs a replica (a clean shutdown: the ledger is committed) and waits for it.
    async fn terminate(&mut self, id: &str) {
        let pid = self
            .replicas
            .get(id)
            .expect("a running replica")
            .proc
            .child
            .id();
        // SAFETY: kill(2) on our own child's pid, which is not reaped until wait_exit.
        let sent = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        assert_eq!(sent, 0, "SIGTERM to {id}");
        let status = self.wait_exit(id).await;
        assert!(
            status.success(),
            "{id} after SIGTERM: {status}\n{}",
            self.logs()
        );
    }

    /// `GET path` on `replica` with the client's key: 200, its body.
    async fn get(&self, replica: &str, path: &str) -> Reply {
        let auth = format!("Bearer {KEY}");
        let r = send(
            &self.http,
            Method::GET,
            &self.url(replica, path),
            &[("authorization", &auth)],
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("GET {path} on {replica}: {e}"));
        assert_eq!(r.status, StatusCode::OK, "GET {path} on {replica}");
        r
    }

    /// `replica`'s `/metrics`, polled (bounded) until `pred` holds.
    async fn metrics_until(
        &self,
        replica: &str,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let mut text = String::new();
        for _ in 0..POLL_ATTEMPTS {
            text = String::from_utf8_lossy(&self.get(replica, "/metrics").await.body).into_owned();
            if pred(&text) {
                return text;
            }
            tokio::time::sleep(POLL).await;
        }
        panic!("{replica} never showed {what}:\n{text}\n{}", self.logs());
    }

    /// Waits (bounded polling) until replica `id` has exited on its own; removes it.
    async fn wait_exit(&mut self, id: &str) -> std::process::ExitStatus {
        for _ in 0..POLL_ATTEMPTS {
            let r = self.replicas.get_mut(id).expect("a running replica");
            if let Some(status) = r.proc.child.try_wait().expect("try_wait") {
                self.replicas.remove(id);
                return status;
            }
            tokio::time::sleep(POLL).await;
        }
        panic!("replica {id} did not exit\n{}", self.logs());
    }

    async fn sim_json(&self, path: &str) -> serde_json::Value {
        let r = send(&self.http, Method::GET, &self.sim_url(path), &[], None)
            .await
            .unwrap_or_else(|e| panic!("GET {path} on the simulator: {e}"));
        assert_eq!(r.status, StatusCode::OK, "GET {path} on the simulator");
        r.json()
    }

    async fn sim_post(&self, path: &str, body: serde_json::Value) {
        let r = send(
            &self.http,
            Method::POST,
            &self.sim_url(path),
            &[],
            Some(body.to_string()),
        )
        .await
        .unwrap_or_else(|e| panic!("POST {path} on the simulator: {e}"));
        assert!(r.status.is_success(), "POST {path}: {}", r.status);
    }

    /// Upstream batches created, and how many created batches held each `custom_id`.
    async fn batch_stats(&self) -> (u64, BTreeMap<String, u64>) {
        let stats = self.sim_json("/sim/batches/stats").await;
        let lines = stats["lines_by_custom_id"]
            .as_object()
            .unwrap_or_else(|| panic!("no lines_by_custom_id in {stats}"))
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().expect("a count")))
            .collect();
        (stats["created"].as_u64().expect("created"), lines)
    }

    /// Every job was in exactly one created batch, nothing else was, and there were
    /// `batches` upstream batches in all.
    async fn assert_each_batched_once(&self, ids: &BTreeSet<String>, batches: u64) {
        let (created, lines) = self.batch_stats().await;
        for id in ids {
            assert_eq!(
                lines.get(id),
                Some(&1),
                "job {id} must be in exactly one created batch: {lines:?}"
            );
        }
        assert_eq!(
            lines.keys().collect::<BTreeSet<_>>(),
            ids.iter().collect::<BTreeSet<_>>(),
            "the created batches must hold exactly the answered jobs"
        );
        assert_eq!(created, batches, "upstream batches created");
    }

    /// Polls the store until `pred` holds for some flush (`state`, `owner`); returns them.
    async fn flush_until(&self, what: &str, pred: impl Fn(&str, &str) -> bool) -> (String, String) {
        for _ in 0..POLL_ATTEMPTS {
            let rows: Vec<(String, String)> = sqlx::query_as("SELECT state, owner FROM flushes")
                .fetch_all(&self.db)
                .await
                .expect("read the flushes");
            if let Some(r) = rows.into_iter().find(|(s, o)| pred(s, o)) {
                return r;
            }
            tokio::time::sleep(POLL).await;
        }
        panic!("no flush ever was {what}\n{}", self.logs());
    }

    /// `GET /sluice/v1/jobs/{id}/result` on `replica` until it is 200 (bounded).
    async fn result(&self, replica: &str, id: &str) -> Reply {
        let url = self.url(replica, &format!("/sluice/v1/jobs/{id}/result"));
        let auth = format!("Bearer {KEY}");
        let mut last = String::new();
        for _ in 0..POLL_ATTEMPTS {
            match send(
                &self.http,
                Method::GET,
                &url,
                &[("authorization", &auth)],
                None,
            )
            .await
            {
                Ok(r) if r.status == StatusCode::OK => return r,
                Ok(r) => last = format!("{} {}", r.status, String::from_utf8_lossy(&r.body)),
                Err(e) => last = e,
            }
            tokio::time::sleep(POLL).await;
        }
        panic!(
            "GET {url} never answered 200 (last: {last})\n{}",
            self.logs()
        );
    }
}

/// One deferred chat request: its Idempotency-Key and a message found only in its answer.
#[derive(Clone)]
struct Probe {
    key: String,
    message: String,
}

impl Probe {
    fn new(tag: &str, i: usize) -> Probe {
        Probe {
            key: format!("{tag}-key-{i:03}"),
            message: format!("probe-{tag}-{i:03}-end"),
        }
    }

    fn body(&self) -> String {
        serde_json::json!({
            "model": MODEL,
            "messages": [{"role": "user", "content": self.message}],
        })
        .to_string()
    }

    /// The deferred request (`x-sla: 24h`), held or `Prefer: respond-async`.
    async fn post(&self, http: &Http, url: &str, prefer_async: bool) -> Result<Reply, String> {
        let auth = format!("Bearer {KEY}");
        let mut headers = vec![
            ("authorization", auth.as_str()),
            ("x-sla", "24h"),
            ("idempotency-key", self.key.as_str()),
        ];
        if prefer_async {
            headers.push(("prefer", "respond-async"));
        }
        send(http, Method::POST, url, &headers, Some(self.body())).await
    }

    /// A held answer: 200, a chat.completion answering this probe, from the batch tier.
    /// Returns its job id.
    fn check_answer(&self, r: &Reply) -> String {
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{}: {}",
            self.key,
            String::from_utf8_lossy(&r.body)
        );
        let v = r.json();
        assert_eq!(v["object"], "chat.completion", "{}: {v}", self.key);
        let content = v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no content in {v}", self.key));
        assert!(
            content.contains(&self.message),
            "{}: the answer {content:?} does not answer {:?}",
            self.key,
            self.message
        );
        assert_eq!(r.header("x-sluice-tier"), Some("batch"), "{}", self.key);
        r.header("x-sluice-job-id")
            .unwrap_or_else(|| panic!("{}: no x-sluice-job-id", self.key))
            .to_owned()
    }

    /// A `202 Accepted` job; returns its id.
    fn check_accepted(&self, r: &Reply) -> String {
        assert_eq!(
            r.status,
            StatusCode::ACCEPTED,
            "{}: {}",
            self.key,
            String::from_utf8_lossy(&r.body)
        );
        r.header("x-sluice-job-id")
            .unwrap_or_else(|| panic!("{}: no x-sluice-job-id", self.key))
            .to_owned()
    }
}

/// Sends each probe to its replica, all at once; one result per probe, in order.
async fn send_all(
    c: &Cluster,
    probes: &[(Probe, &str)],
    prefer_async: bool,
) -> Vec<Result<Reply, String>> {
    let tasks: Vec<_> = probes
        .iter()
        .map(|(p, replica)| {
            let (p, http) = (p.clone(), c.http.clone());
            let url = c.url(replica, "/v1/chat/completions");
            tokio::spawn(async move { p.post(&http, &url, prefer_async).await })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.expect("request task"));
    }
    out
}

/// `n` probes per replica, round robin over `replicas`.
fn spread(tag: &str, replicas: &[&'static str], n: usize) -> Vec<(Probe, &'static str)> {
    (0..n * replicas.len())
        .map(|i| (Probe::new(tag, i), replicas[i % replicas.len()]))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn held_callers_on_three_replicas_share_one_upstream_batch() {
    let Some(mut c) = Cluster::start("spread").await else {
        return;
    };
    // One flush window for everything sent at once, whichever replica flushes it.
    c.start_three(&[("SLUICE_BATCH_MAX_WAIT", "2s")]).await;
    let probes = spread("spread", &["a", "b", "c"], 4);
    let replies = send_all(&c, &probes, false).await;
    let mut ids = BTreeSet::new();
    for ((p, replica), r) in probes.iter().zip(&replies) {
        let r = r
            .as_ref()
            .unwrap_or_else(|e| panic!("{} on {replica}: {e}\n{}", p.key, c.logs()));
        let id = p.check_answer(r);
        assert!(ids.insert(id.clone()), "job {id} answered twice");
    }
    assert_eq!(ids.len(), probes.len());
    c.assert_each_batched_once(&ids, 1).await;
}

/// Sends `probes` with `Prefer: respond-async`; every one is accepted. Returns the job ids.
async fn accept_all(c: &Cluster, probes: &[(Probe, &str)]) -> Vec<String> {
    let replies = send_all(c, probes, true).await;
    probes
        .iter()
        .zip(&replies)
        .map(|((p, replica), r)| {
            let r = r
                .as_ref()
                .unwrap_or_else(|e| panic!("{} on {replica}: {e}\n{}", p.key, c.logs()));
            p.check_accepted(r)
        })
        .collect()
}

/// Every job answered (its result read on `on`, a surviving replica), each batched once,
/// in `batches` upstream batches.
async fn assert_all_answered(
    c: &Cluster,
    probes: &[(Probe, &str)],
    ids: &[String],
    on: &str,
    batches: u64,
) {
    let mut seen = BTreeSet::new();
    for ((p, _), id) in probes.iter().zip(ids) {
        let r = c.result(on, id).await;
        let v = r.json();
        let content = v["choices"][0]["message"]["content"].as_str().unwrap_or("");
        assert!(content.contains(&p.message), "{}: {v}", p.key);
        assert!(seen.insert(id.clone()), "job {id} twice");
    }
    c.assert_each_batched_once(&seen, batches).await;
}

/// Replica `a` alone flushes (the others wait an hour before flushing a group, but take
/// lapsed leases over) and dies at `failpoint` while it holds the flush's lease; `b` or
/// `c` takes the flush over once the lease lapsed and finishes it without a second batch.
async fn takeover_after_failpoint(failpoint: &str) {
    let Some(mut c) = Cluster::start(failpoint).await else {
        return;
    };
    c.start_replica(
        "a",
        &[
            ("SLUICE_FAILPOINT", failpoint),
            ("SLUICE_BATCH_MAX_WAIT", "1s"),
        ],
    )
    .await;
    for id in ["b", "c"] {
        c.start_replica(id, &[("SLUICE_BATCH_MAX_WAIT", "1h")])
            .await;
    }
    let probes = spread(failpoint, &["a", "b", "c"], 3);
    let ids = accept_all(&c, &probes).await;
    let status = c.wait_exit("a").await;
    assert!(!status.success(), "a at {failpoint}: {status}");
    // The lease lapses, a survivor takes the flush over and ends it.
    let (_, owner) = c.flush_until("ended", |s, _| s == "ended").await;
    assert!(owner == "b" || owner == "c", "ended by {owner}");
    assert_all_answered(&c, &probes, &ids, "b", 1).await;
    assert_all_answered(&c, &probes, &ids, "c", 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replica_killed_after_upload_is_taken_over() {
    takeover_after_failpoint("after_upload").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replica_killed_after_create_is_reconciled_not_recreated() {
    // The batch exists upstream but its id was never recorded: the survivor must find it.
    takeover_after_failpoint("after_create").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replica_killed_mid_poll_is_taken_over() {
    let Some(mut c) = Cluster::start("midpoll").await else {
        return;
    };
    // Long enough for the kill to land while the batch runs.
    c.sim_post(
        "/sim/batch-faults",
        serde_json::json!({"turnaround_ms": 3000}),
    )
    .await;
    c.start_three(&[]).await;
    let probes = spread("midpoll", &["a", "b", "c"], 3);
    let ids = accept_all(&c, &probes).await;
    let (_, owner) = c.flush_until("submitted", |s, _| s == "submitted").await;
    c.kill(&owner);
    let (state, _) = c.flush_until("read", |_, _| true).await;
    assert_eq!(state, "submitted", "killed before the batch ended");
    let (_, ended_by) = c.flush_until("ended", |s, _| s == "ended").await;
    assert_ne!(ended_by, owner, "the killed replica cannot end the flush");
    let survivor = c.replicas.keys().next().expect("a survivor").clone();
    assert_all_answered(&c, &probes, &ids, &survivor, 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotent_retry_on_another_replica_gets_the_same_job() {
    let Some(mut c) = Cluster::start("idem").await else {
        return;
    };
    c.start_three(&[]).await;
    // Accepted on a, retried (held) on b and on c at once: one job, one answer.
    let p = Probe::new("idem", 0);
    let first = p
        .post(&c.http, &c.url("a", "/v1/chat/completions"), true)
        .await
        .unwrap_or_else(|e| panic!("a: {e}"));
    let id = p.check_accepted(&first);
    let retries = send_all(&c, &[(p.clone(), "b"), (p.clone(), "c")], false).await;
    let mut bodies = BTreeSet::new();
    for (r, replica) in retries.iter().zip(["b", "c"]) {
        let r = r.as_ref().unwrap_or_else(|e| panic!("{replica}: {e}"));
        assert_eq!(
            p.check_answer(r),
            id,
            "the retry on {replica} made a new job"
        );
        bodies.insert(r.body.clone());
    }
    // Held at once on two replicas with a fresh key: the second attaches to the first.
    let q = Probe::new("idem", 1);
    let held = send_all(&c, &[(q.clone(), "b"), (q.clone(), "c")], false).await;
    let ids: BTreeSet<String> = held
        .iter()
        .map(|r| q.check_answer(r.as_ref().expect("an answer")))
        .collect();
    assert_eq!(ids.len(), 1, "one job for one key: {ids:?}");
    // And after the answer, a retry on the first replica returns it as stored.
    let again = p
        .post(&c.http, &c.url("a", "/v1/chat/completions"), false)
        .await
        .expect("a");
    assert_eq!(p.check_answer(&again), id);
    bodies.insert(again.body.clone());
    assert_eq!(bodies.len(), 1, "every replica answers the same bytes");
    let mut all: BTreeSet<String> = ids;
    all.insert(id);
    let (_, lines) = c.batch_stats().await;
    for j in &all {
        assert_eq!(lines.get(j), Some(&1), "{j}: {lines:?}");
    }
    assert_eq!(lines.len(), 2, "{lines:?}");
}

/// Polls the store until replica-visible job rows exist for `n` jobs; returns their ids.
async fn job_ids(c: &Cluster, n: usize) -> Vec<String> {
    for _ in 0..POLL_ATTEMPTS {
        let ids: Vec<(String,)> = sqlx::query_as("SELECT id FROM jobs ORDER BY id")
            .fetch_all(&c.db)
            .await
            .expect("read the jobs");
        if ids.len() >= n {
            return ids.into_iter().map(|(id,)| id).collect();
        }
        tokio::time::sleep(POLL).await;
    }
    panic!("fewer than {n} jobs were ever stored\n{}", c.logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_result_stored_elsewhere_wakes_a_caller_held_on_b_at_once() {
    let Some(mut c) = Cluster::start("wake").await else {
        return;
    };
    // b never flushes, polls or sweeps on its own timer within this test: an hour between
    // polls and flushes (its sweep of recent completions still runs each second, but the
    // answer below is stored with a completion time an hour old, which that sweep never
    // looks at), and its re-check of every held job comes only 30 s after it started. So
    // the only thing that can wake the caller within the 15 s below is the store's push
    // (PostgreSQL NOTIFY, sent in the answer's transaction).
    c.start_replica(
        "b",
        &[
            ("SLUICE_BATCH_MAX_WAIT", "1h"),
            ("SLUICE_BATCH_POLL_INTERVAL", "1h"),
        ],
    )
    .await;
    let p = Probe::new("wake", 0);
    let url = c.url("b", "/v1/chat/completions");
    let http = c.http.clone();
    let held = {
        let p = p.clone();
        tokio::spawn(async move { p.post(&http, &url, false).await })
    };
    let id = job_ids(&c, 1).await.remove(0);
    // Another writer of the same database completes it: the store code every replica runs.
    let store = sluice::store::open(&c.schema.url())
        .await
        .expect("open the store");
    let body = serde_json::json!({
        "id": "chatcmpl-wake", "object": "chat.completion", "created": 0, "model": MODEL,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": p.message}}],
    });
    let an_hour_ago = sluice::batch::now_ms() - 3_600_000;
    let won = store
        .complete_job(
            &id,
            sluice::store::JobResult {
                status: 200,
                body: Bytes::from(body.to_string()),
                answered_by: sluice::types::Tier::Batch,
                usage: None,
                completed_at_ms: an_hour_ago,
            },
            None,
        )
        .await
        .expect("complete the job");
    assert!(won, "nobody else answers this job");
    let r = tokio::time::timeout(Duration::from_secs(15), held)
        .await
        .unwrap_or_else(|_| panic!("the held caller on b was not woken\n{}", c.logs()))
        .expect("the request task")
        .unwrap_or_else(|e| panic!("b: {e}"));
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.header("x-sluice-job-id"), Some(id.as_str()));
    assert!(String::from_utf8_lossy(&r.body).contains(&p.message));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_finished_by_replica_a_answers_callers_held_on_b() {
    let Some(mut c) = Cluster::start("cross").await else {
        return;
    };
    // b neither flushes nor polls: a does all the batch work for b's callers.
    c.start_replica(
        "b",
        &[
            ("SLUICE_BATCH_MAX_WAIT", "1h"),
            ("SLUICE_BATCH_POLL_INTERVAL", "1h"),
        ],
    )
    .await;
    c.start_replica("a", &[]).await;
    let probes = spread("cross", &["b"], 4);
    let replies = send_all(&c, &probes, false).await;
    let mut ids = BTreeSet::new();
    for ((p, _), r) in probes.iter().zip(&replies) {
        let r = r
            .as_ref()
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", p.key, c.logs()));
        ids.insert(p.check_answer(r));
    }
    let (_, owner) = c.flush_until("ended", |s, _| s == "ended").await;
    assert_eq!(owner, "a", "the batch was a's");
    c.assert_each_batched_once(&ids, 1).await;
}

/// `MODEL`'s queue depth on OpenAI in a `/metrics` text.
fn queue_depth(metrics: &str) -> f64 {
    metric(
        metrics,
        "sluice_batch_queue_depth",
        &[("provider", "openai"), ("model", MODEL)],
    )
}

/// Jobs queued through replica a alone show in every replica's queue depth; a batch run by a
/// alone shows in every replica's turnaround endpoint, and what triage uses: each replica
/// reads both from the store, not from what it saw itself.
#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_report_the_same_queue_depth_and_turnaround() {
    let Some(mut c) = Cluster::start("census").await else {
        return;
    };
    // Nobody flushes for an hour: the jobs stay queued.
    c.start_three(&[("SLUICE_BATCH_MAX_WAIT", "1h")]).await;
    let probes = spread("census", &["a"], 5);
    let ids = accept_all(&c, &probes).await;
    for r in ["a", "b", "c"] {
        c.metrics_until(r, "a queue depth of 5", |m| queue_depth(m) == 5.0)
            .await;
    }
    // a comes back with a short flush wait: it alone batches the queue.
    c.kill("a");
    c.start_replica("a", &[("SLUICE_BATCH_MAX_WAIT", "1s")])
        .await;
    let (_, owner) = c.flush_until("ended", |s, _| s == "ended").await;
    assert_eq!(owner, "a");
    assert_all_answered(&c, &probes, &ids, "b", 1).await;
    let mut rows = Vec::new();
    for r in ["a", "b", "c"] {
        c.metrics_until(r, "an empty queue", |m| queue_depth(m) == 0.0)
            .await;
        let mut row = serde_json::Value::Null;
        for _ in 0..POLL_ATTEMPTS {
            let v = c.get(r, "/sluice/v1/turnaround").await.json();
            if let Some(found) = v["data"].as_array().and_then(|d| {
                d.iter()
                    .find(|x| x["provider"] == "openai" && x["model"] == MODEL)
            }) {
                row = found.clone();
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        assert_eq!(row["samples"], 1, "{r}: {row}\n{}", c.logs());
        // Learnt (the prior is 6 h; the simulator ends a batch in well under a minute).
        assert!(
            row["triage_p95_seconds"].as_f64().unwrap() < 60.0,
            "{r}: {row}"
        );
        rows.push(row);
    }
    assert_eq!(rows[0], rows[1], "a and b");
    assert_eq!(rows[0], rows[2], "a and c");
}

/// Traffic answered on two replicas (interactive and batch) is in one `sluice report` run
/// against the shared store: its totals are the sums of both replicas' counters.
#[tokio::test(flavor = "multi_thread")]
async fn one_report_holds_the_traffic_of_every_replica() {
    let Some(mut c) = Cluster::start("report").await else {
        return;
    };
    c.start_replica("a", &[]).await;
    c.start_replica("b", &[]).await;
    let auth = format!("Bearer {KEY}");
    for (i, replica) in ["a", "a", "a", "b", "b"].into_iter().enumerate() {
        let body = serde_json::json!({
            "model": MODEL,
            "messages": [{"role": "user", "content": format!("interactive {i}")}],
        });
        let r = send(
            &c.http,
            Method::POST,
            &c.url(replica, "/v1/chat/completions"),
            &[("authorization", &auth)],
            Some(body.to_string()),
        )
        .await
        .unwrap_or_else(|e| panic!("{replica}: {e}"));
        assert_eq!(r.status, StatusCode::OK, "{replica}");
        assert_eq!(r.header("x-sluice-tier"), Some("interactive"));
    }
    let probes = spread("report", &["a", "b"], 2);
    for ((p, replica), r) in probes.iter().zip(send_all(&c, &probes, false).await) {
        p.check_answer(&r.unwrap_or_else(|e| panic!("{replica}: {e}")));
    }
    let (mut requests, mut cost, mut baseline) = (0.0, 0.0, 0.0);
    for r in ["a", "b"] {
        let m = String::from_utf8_lossy(&c.get(r, "/metrics").await.body).into_owned();
        let mine = metric(&m, "sluice_requests_total", &[]);
        assert!(mine > 0.0, "{r} answered some: {m}");
        requests += mine;
        cost += metric(&m, "sluice_cost_usd_total", &[]);
        baseline += metric(&m, "sluice_baseline_cost_usd_total", &[]);
    }
    assert_eq!(requests, 9.0, "5 interactive + 4 batch answers");
    // A clean shutdown commits the ledger rows still lingering in memory.
    c.terminate("a").await;
    c.terminate("b").await;
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("report")
        .env_clear()
        .env("SLUICE_STORE", c.schema.url())
        .output()
        .expect("run sluice report");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let total: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("TOTAL"))
        .unwrap_or_else(|| panic!("no TOTAL line:\n{text}"))
        .split_whitespace()
        .collect();
    // TOTAL requests cost_usd baseline_usd savings_usd saved% wasted_usd
    let num = |i: usize| -> f64 { total[i].trim_end_matches('%').parse().unwrap() };
    assert_eq!(num(1), requests, "{text}");
    // The report prints six decimals.
    assert!((num(2) - cost).abs() < 1e-6, "cost {cost} vs\n{text}");
    assert!(
        (num(3) - baseline).abs() < 1e-6,
        "baseline {baseline} vs\n{text}"
    );
    for tier in ["interactive", "batch"] {
        assert!(
            text.lines()
                .any(|l| l.contains(" replicas ") && l.contains(tier)),
            "{tier} row of client replicas:\n{text}"
        );
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// nginx running deploy/replicas/nginx.conf with the replicas' names pointed at this
/// cluster's ports; stopped (SIGTERM: the master ends its workers) and reaped on drop.
struct Balancer {
    proc: Proc,
    port: u16,
}

impl Drop for Balancer {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own, not yet reaped, child.
        unsafe { libc::kill(self.proc.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.proc.child.wait();
    }
}

impl Cluster {
    async fn start_balancer(&self, nginx: &std::path::Path) -> Balancer {
        let conf =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/replicas/nginx.conf");
        let mut text = std::fs::read_to_string(conf).expect("read deploy/replicas/nginx.conf");
        for (id, r) in &self.replicas {
            text = text.replace(
                &format!("server sluice-{id}:8080"),
                &format!("server 127.0.0.1:{}", r.port),
            );
        }
        assert!(
            !text.contains("sluice-"),
            "a replica is not in the cluster: {text}"
        );
        let dir = self.dir.join("nginx");
        std::fs::create_dir_all(&dir).expect("the nginx dir");
        for _ in 0..3 {
            let port = free_port();
            let file = dir.join("nginx.conf");
            std::fs::write(
                &file,
                text.replace("listen 8080;", &format!("listen 127.0.0.1:{port};")),
            )
            .expect("write nginx.conf");
            let out = self.log_file("nginx.log");
            let err = out.try_clone().expect("clone the log file");
            let child = Command::new(nginx)
                .args(["-p", &format!("{}/", dir.display())])
                .args(["-e", &dir.join("error.log").display().to_string()])
                .args(["-c", &file.display().to_string()])
                .args([
                    "-g",
                    &format!("daemon off; pid {};", dir.join("nginx.pid").display()),
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::from(out))
                .stderr(Stdio::from(err))
                .spawn()
                .expect("spawn nginx");
            let mut lb = Balancer {
                proc: Proc { child },
                port,
            };
            let url = format!("http://127.0.0.1:{port}/healthz");
            if self.ready(&mut lb.proc, &url).await.is_some() {
                return lb;
            }
        }
        panic!("nginx never became ready\n{}", self.logs());
    }
}

/// The load balancer of the compose example in front of three replicas: a held answer
/// comes through it after seconds of silence, a held stream's keep-alive comments reach
/// the caller while its batch still runs, then its answer; the balancer serves no
/// `/metrics` (Prometheus scrapes each replica).
#[tokio::test(flavor = "multi_thread")]
async fn the_compose_load_balancer_passes_held_answers_and_streams_as_they_come() {
    let Some(nginx) = on_path("nginx") else {
        assert!(
            std::env::var("SLUICE_REQUIRE_DEPLOY_TOOLS").as_deref() != Ok("1"),
            "SLUICE_REQUIRE_DEPLOY_TOOLS=1 but nginx is not on PATH"
        );
        eprintln!(
            "note: skipping the load-balancer test: nginx is not on PATH \
             (`apt-get install -y nginx-light`)"
        );
        return;
    };
    let Some(mut c) = Cluster::start("balancer").await else {
        return;
    };
    let config = c.dir.join("sluice.toml");
    std::fs::write(&config, "[batch]\nkeep_alive = \"100ms\"\n").expect("write the config");
    c.sim_post(
        "/sim/batch-faults",
        serde_json::json!({"turnaround_ms": 3000}),
    )
    .await;
    c.start_three(&[("SLUICE_CONFIG", &config.display().to_string())])
        .await;
    let lb = c.start_balancer(&nginx).await;
    let chat = format!("http://127.0.0.1:{}/v1/chat/completions", lb.port);
    let held = Probe::new("lb", 0);
    let r = held
        .post(&c.http, &chat, false)
        .await
        .unwrap_or_else(|e| panic!("through nginx: {e}\n{}", c.logs()));
    held.check_answer(&r);

    let streamed = Probe::new("lb", 1);
    let auth = format!("Bearer {KEY}");
    let req = http::Request::post(&chat)
        .header("authorization", &auth)
        .header("x-sla", "24h")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(Bytes::from(
            serde_json::json!({
                "model": MODEL,
                "stream": true,
                "messages": [{"role": "user", "content": streamed.message}],
            })
            .to_string(),
        )))
        .unwrap();
    let resp = tokio::time::timeout(binary::REQUEST_TIMEOUT, c.http.request(req))
        .await
        .expect("a response head in time")
        .expect("a response");
    assert_eq!(resp.status(), StatusCode::OK);
    let job = resp.headers()["x-sluice-job-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut body = resp.into_body();
    use http_body_util::BodyExt as _;
    let first = tokio::time::timeout(binary::REQUEST_TIMEOUT, body.frame())
        .await
        .expect("a first frame in time")
        .expect("a frame")
        .expect("no error")
        .into_data()
        .expect("data");
    let (answered,): (Option<i64>,) =
        sqlx::query_as("SELECT completed_at_ms FROM jobs WHERE id = $1")
            .bind(&job)
            .fetch_one(&c.db)
            .await
            .expect("read the job");
    assert!(
        first.starts_with(b": keep-alive") && answered.is_none(),
        "the first bytes ({:?}) came only with the answer: the balancer held them back",
        String::from_utf8_lossy(&first)
    );
    let rest = tokio::time::timeout(binary::REQUEST_TIMEOUT, body.collect())
        .await
        .expect("the stream's end in time")
        .expect("the stream")
        .to_bytes();
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains(&streamed.message), "{rest}");
    assert!(rest.ends_with("data: [DONE]\n\n"), "{rest}");

    let r = send(
        &c.http,
        Method::GET,
        &format!("http://127.0.0.1:{}/metrics", lb.port),
        &[],
        None,
    )
    .await
    .expect("GET /metrics through nginx");
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
