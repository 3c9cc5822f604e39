//! Crash safety of the deferred tiers, with real processes: the simulated provider runs as
//! its own process and survives while `sluice serve` aborts at each failpoint (or is
//! SIGKILLed at an arbitrary moment), then restarts on the same store. Every request must
//! be answered after the restart, its retry must attach to the original job, and no job
//! may be submitted upstream twice.
#![cfg(unix)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use http::{Method, StatusCode};
use sha2::{Digest, Sha256};
use sluice::store::ReportRow;
use sluice::types::Tier;

#[path = "common/binary.rs"]
mod binary;
use binary::{Http, Proc, Reply, free_port, http, send};

const KEY: &str = "sk-crash-test";
const MODEL: &str = "gpt-4o-mini";
const CLAUDE: &str = "claude-haiku-4-5";
/// Chat completions batched through Gemini's native Batch Mode (translated both ways).
const GEMINI: &str = "gemini-2.5-flash";
/// The Responses API probes' model (OpenAI, batched with `"url": "/v1/responses"` lines).
const RESPONSES_MODEL: &str = "gpt-4.1";
const N: usize = 5;
/// Polling: at most this many attempts, `POLL` apart.
const POLL_ATTEMPTS: u32 = 500;
const POLL: Duration = Duration::from_millis(20);
const SIGABRT: i32 = 6;
const SIGKILL: i32 = 9;

fn temp_dir(name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sluice-crash-{}-{}-{name}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the temp dir");
    dir
}

/// One simulator process and one (re)startable gateway process over one store.
struct Harness {
    dir: PathBuf,
    sim: Option<Proc>,
    sim_port: u16,
    gateway: Option<Proc>,
    gw_port: u16,
    http: Http,
    /// Vertex AI configured (CONTRACT.md's `VERTEX_*` variables) and the Gemini model sent to it.
    vertex: bool,
}

impl Drop for Harness {
    fn drop(&mut self) {
        drop(self.gateway.take());
        drop(self.sim.take());
        if std::thread::panicking() {
            eprintln!("---- logs of {} ----\n{}", self.dir.display(), self.logs());
        }
        // CRASH_KEEP=1 keeps the store and logs for a post-mortem.
        if std::env::var_os("CRASH_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Harness {
    async fn start(name: &str) -> Harness {
        let dir = temp_dir(name);
        let policies = dir.join("policies");
        std::fs::create_dir_all(&policies).expect("create the policies dir");
        std::fs::write(
            policies.join("crash.toml"),
            format!(
                "[client]\nname = \"crash\"\nkeys = [\"{}\"]\n",
                hex::encode(Sha256::digest(KEY.as_bytes()))
            ),
        )
        .expect("write the policy");
        let mut h = Harness {
            dir,
            sim: None,
            sim_port: 0,
            gateway: None,
            gw_port: 0,
            http: http(),
            vertex: false,
        };
        h.start_simulator().await;
        h
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
        for name in ["simulator.log", "gateway.log"] {
            let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(60).collect();
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
    async fn ready(&self, proc: &mut Proc, url: &str, auth: &str) -> Option<()> {
        for _ in 0..POLL_ATTEMPTS {
            if let Ok(Some(status)) = proc.child.try_wait() {
                eprintln!("process exited before it was ready: {status}");
                return None;
            }
            if let Ok(r) = send(
                &self.http,
                Method::GET,
                url,
                &[("authorization", auth)],
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
            if self.ready(&mut sim, &url, "Bearer x").await.is_some() {
                self.sim = Some(sim);
                self.sim_port = port;
                return;
            }
        }
        panic!("the simulator never became ready\n{}", self.logs());
    }

    /// Starts `sluice serve` on the harness's store, optionally with a failpoint.
    async fn start_gateway(&mut self, failpoint: Option<&str>) {
        assert!(self.gateway.is_none(), "a gateway is already running");
        for _ in 0..3 {
            let port = free_port();
            let mut env = vec![
                ("SLUICE_LISTEN", format!("127.0.0.1:{port}")),
                ("SLUICE_STORE", self.store_url()),
                (
                    "SLUICE_POLICIES",
                    self.dir.join("policies").display().to_string(),
                ),
                (
                    "OPENAI_BASE_URL",
                    format!("http://127.0.0.1:{}/v1", self.sim_port),
                ),
                ("OPENAI_API_KEY", "sk-test".to_owned()),
                (
                    "ANTHROPIC_BASE_URL",
                    format!("http://127.0.0.1:{}/v1", self.sim_port),
                ),
                ("ANTHROPIC_API_KEY", "sk-ant-test".to_owned()),
                (
                    "GEMINI_BASE_URL",
                    format!("http://127.0.0.1:{}/v1", self.sim_port),
                ),
                ("GEMINI_API_KEY", "gemini-test".to_owned()),
                ("SLUICE_BATCH_MAX_WAIT", "200ms".to_owned()),
                ("SLUICE_BATCH_POLL_INTERVAL", "50ms".to_owned()),
                // The same replica comes back: it owns the flushes it leased before dying.
                ("SLUICE_REPLICA_ID", "crash-replica".to_owned()),
            ];
            if let Some(fp) = failpoint {
                env.push(("SLUICE_FAILPOINT", fp.to_owned()));
            }
            if self.vertex {
                env.extend(self.vertex_env());
            }
            let mut gw = self.spawn(&["serve"], &env, "gateway.log");
            let url = format!("http://127.0.0.1:{port}/healthz");
            if self.ready(&mut gw, &url, "Bearer x").await.is_some() {
                self.gateway = Some(gw);
                self.gw_port = port;
                return;
            }
        }
        panic!("the gateway never became ready\n{}", self.logs());
    }

    /// Vertex AI on the simulator: its token endpoint (named by the key file), jobs and
    /// Cloud Storage. The key is a throwaway test key; the simulator checks no signature.
    fn vertex_env(&self) -> Vec<(&'static str, String)> {
        let root = format!("http://127.0.0.1:{}", self.sim_port);
        let key = serde_json::json!({
            "type": "service_account",
            "private_key_id": "k1",
            "private_key": include_str!("../src/providers/vertex/testdata/test_key.pem"),
            "client_email": "sluice@crash-project.iam.gserviceaccount.com",
            "token_uri": format!("{root}/token"),
        });
        let path = self.dir.join("sa.json");
        std::fs::write(&path, key.to_string()).expect("write the service-account key");
        // The Gemini API is configured too: a policy sends the model to Vertex AI.
        std::fs::write(
            self.dir.join("policies").join("vertex.toml"),
            format!("[models]\n{GEMINI:?} = \"vertex\"\n"),
        )
        .expect("write the model map");
        vec![
            ("VERTEX_PROJECT", "crash-project".to_owned()),
            ("VERTEX_BUCKET", "sim-bucket".to_owned()),
            ("GOOGLE_APPLICATION_CREDENTIALS", path.display().to_string()),
            ("VERTEX_BASE_URL", format!("{root}/v1")),
            ("GCS_BASE_URL", root),
        ]
    }

    /// Waits (bounded polling) until the gateway process has exited on its own.
    async fn wait_gateway_exit(&mut self) -> ExitStatus {
        let mut gw = self.gateway.take().expect("no gateway running");
        for _ in 0..POLL_ATTEMPTS {
            match gw.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) => tokio::time::sleep(POLL).await,
                Err(e) => panic!("waiting for the gateway: {e}"),
            }
        }
        self.gateway = Some(gw);
        panic!("the gateway did not exit\n{}", self.logs());
    }

    /// SIGKILLs the gateway and reaps it.
    fn kill_gateway(&mut self) -> ExitStatus {
        let mut gw = self.gateway.take().expect("no gateway running");
        gw.child.kill().expect("SIGKILL the gateway");
        gw.child.wait().expect("reap the gateway")
    }

    fn gw_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.gw_port)
    }

    fn sim_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.sim_port)
    }

    fn store_url(&self) -> String {
        format!("sqlite://{}", self.dir.join("store.db").display())
    }

    /// The durable ledger (`sluice report` rows) once it holds `n` batch answers (polled:
    /// a job's ledger entry is written just after its answer).
    async fn ledger(&self, n: u64) -> Vec<ReportRow> {
        let store = sluice::store::open(&self.store_url())
            .await
            .expect("open the store");
        let mut rows = Vec::new();
        for _ in 0..POLL_ATTEMPTS {
            rows = store.report(0).await.expect("report");
            if batch_requests(&rows) >= n {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        rows
    }

    async fn sim_json(&self, path: &str) -> serde_json::Value {
        let r = send(&self.http, Method::GET, &self.sim_url(path), &[], None)
            .await
            .unwrap_or_else(|e| panic!("GET {path} on the simulator: {e}"));
        assert_eq!(r.status, StatusCode::OK, "GET {path} on the simulator");
        r.json()
    }

    /// The paths of every POST the simulator received, in order.
    async fn sim_posts(&self) -> Vec<String> {
        let log = self.sim_json("/sim/requests").await;
        log.as_array()
            .unwrap_or_else(|| panic!("/sim/requests is not a list: {log}"))
            .iter()
            .filter(|e| e["method"] == "POST")
            .filter_map(|e| e["path"].as_str().map(str::to_owned))
            .collect()
    }

    /// `lines_by_custom_id` of `/sim/batches/stats`.
    async fn batch_lines(&self) -> BTreeMap<String, u64> {
        let stats = self.sim_json("/sim/batches/stats").await;
        stats["lines_by_custom_id"]
            .as_object()
            .unwrap_or_else(|| panic!("no lines_by_custom_id in {stats}"))
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().expect("a count")))
            .collect()
    }
}

/// The client API a probe speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Api {
    /// OpenAI `POST /v1/chat/completions` (batched through `/v1/batches`).
    Chat,
    /// Anthropic `POST /v1/messages` (batched through `/v1/messages/batches`).
    Messages,
    /// OpenAI `POST /v1/responses` (batched through `/v1/batches`, endpoint `/v1/responses`).
    Responses,
    /// OpenAI `POST /v1/chat/completions` for a `claude-*` model (translated, batched
    /// through `/v1/messages/batches`, answered as a chat.completion).
    ClaudeChat,
    /// OpenAI `POST /v1/chat/completions` for a `gemini-*` model (translated, batched
    /// through Gemini Batch Mode, answered as a chat.completion).
    GeminiChat,
    /// The same through Vertex AI batch prediction (input staged in Cloud Storage).
    VertexChat,
}

/// The simulator's Vertex AI routes the crash harness's batches go to.
const VERTEX_JOBS: &str = "/v1/projects/crash-project/locations/us-central1/batchPredictionJobs";
const VERTEX_UPLOAD: &str = "/upload/storage/v1/b/sim-bucket/o";

impl Api {
    fn path(self) -> &'static str {
        match self {
            Api::Chat | Api::ClaudeChat | Api::GeminiChat | Api::VertexChat => {
                "/v1/chat/completions"
            }
            Api::Messages => "/v1/messages",
            Api::Responses => "/v1/responses",
        }
    }

    /// The simulator's batch-creation route for this API.
    fn create_path(self) -> &'static str {
        match self {
            Api::Chat | Api::Responses => "/v1/batches",
            Api::Messages | Api::ClaudeChat => "/v1/messages/batches",
            Api::GeminiChat => "/v1/models/gemini-2.5-flash:batchGenerateContent",
            Api::VertexChat => VERTEX_JOBS,
        }
    }

    /// The simulator routes this API's batches are POSTed to.
    fn batch_posts(self) -> &'static [&'static str] {
        match self {
            Api::Chat | Api::Responses => &["/v1/files", "/v1/batches"],
            Api::Messages | Api::ClaudeChat => &["/v1/messages/batches"],
            Api::GeminiChat => &["/v1/models/gemini-2.5-flash:batchGenerateContent"],
            Api::VertexChat => &[VERTEX_UPLOAD, VERTEX_JOBS],
        }
    }

    /// A name unique per API, for temp dirs and probe keys.
    fn tag(self, failpoint: &str) -> String {
        match self {
            Api::Chat => failpoint.to_owned(),
            Api::Messages => format!("messages-{failpoint}"),
            Api::Responses => format!("responses-{failpoint}"),
            Api::ClaudeChat => format!("claude-chat-{failpoint}"),
            Api::GeminiChat => format!("gemini-chat-{failpoint}"),
            Api::VertexChat => format!("vertex-chat-{failpoint}"),
        }
    }
}

/// Every batch-side POST route of the simulator.
const BATCH_POSTS: [&str; 3] = ["/v1/files", "/v1/batches", "/v1/messages/batches"];

/// One deferred request: its Idempotency-Key and a user message found only in its answer.
#[derive(Clone)]
struct Probe {
    api: Api,
    key: String,
    message: String,
}

impl Probe {
    fn new(api: Api, tag: &str, i: usize) -> Probe {
        Probe {
            api,
            key: format!("{tag}-key-{i:03}"),
            message: format!("probe-{tag}-{i:03}-end"),
        }
    }

    fn body(&self) -> String {
        match self.api {
            Api::Chat => serde_json::json!({
                "model": MODEL,
                "messages": [{"role": "user", "content": self.message}],
            }),
            Api::Messages => serde_json::json!({
                "model": CLAUDE,
                "max_tokens": 64,
                "messages": [{"role": "user", "content": self.message}],
            }),
            Api::Responses => serde_json::json!({
                "model": RESPONSES_MODEL,
                "input": self.message,
            }),
            Api::ClaudeChat => serde_json::json!({
                "model": CLAUDE,
                "messages": [{"role": "user", "content": self.message}],
            }),
            Api::GeminiChat | Api::VertexChat => serde_json::json!({
                "model": GEMINI,
                "messages": [{"role": "user", "content": self.message}],
            }),
        }
        .to_string()
    }

    /// The deferred request, `Prefer: respond-async` or held. The OpenAI APIs send the
    /// gateway key as a Bearer token, Messages as `x-api-key` (as Anthropic SDKs do).
    async fn post(&self, http: &Http, url: &str, prefer_async: bool) -> Result<Reply, String> {
        let auth = format!("Bearer {KEY}");
        let mut headers = match self.api {
            Api::Chat | Api::Responses | Api::ClaudeChat | Api::GeminiChat | Api::VertexChat => {
                vec![("authorization", auth.as_str())]
            }
            Api::Messages => vec![("x-api-key", KEY), ("anthropic-version", "2023-06-01")],
        };
        headers.extend([("x-sla", "24h"), ("idempotency-key", self.key.as_str())]);
        if prefer_async {
            headers.push(("prefer", "respond-async"));
        }
        send(http, Method::POST, url, &headers, Some(self.body())).await
    }

    /// Checks a held answer: 200, a chat.completion (an Anthropic Message, a Responses
    /// `response`) answering this probe's message, from the batch tier. Returns its job id.
    fn check_answer(&self, r: &Reply) -> String {
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{}: {}",
            self.key,
            String::from_utf8_lossy(&r.body)
        );
        let v = r.json();
        let content = match self.api {
            Api::Chat | Api::ClaudeChat | Api::GeminiChat | Api::VertexChat => {
                assert_eq!(v["object"], "chat.completion", "{}: {v}", self.key);
                let model = match self.api {
                    Api::Chat => MODEL,
                    Api::GeminiChat | Api::VertexChat => GEMINI,
                    _ => CLAUDE,
                };
                assert_eq!(v["model"], model, "{}: {v}", self.key);
                v["choices"][0]["message"]["content"].as_str()
            }
            Api::Responses => {
                assert_eq!(v["object"], "response", "{}: {v}", self.key);
                assert_eq!(v["model"], RESPONSES_MODEL, "{}: {v}", self.key);
                assert_eq!(v["status"], "completed", "{}: {v}", self.key);
                v["output"][0]["content"][0]["text"].as_str()
            }
            Api::Messages => {
                assert_eq!(v["type"], "message", "{}: {v}", self.key);
                assert_eq!(v["content"][0]["type"], "text", "{}: {v}", self.key);
                v["content"][0]["text"].as_str()
            }
        }
        .unwrap_or_else(|| panic!("{}: no content in {v}", self.key));
        assert!(
            content.contains(&self.message),
            "{}: the answer {content:?} does not answer {:?}",
            self.key,
            self.message
        );
        assert_eq!(
            r.header("x-sluice-tier"),
            Some("batch"),
            "{}: not answered by the batch tier",
            self.key
        );
        r.header("x-sluice-job-id")
            .unwrap_or_else(|| panic!("{}: no x-sluice-job-id", self.key))
            .to_owned()
    }
}

/// Sends every probe at once, each to its API's route; one result per probe, in order.
async fn send_all(h: &Harness, probes: &[Probe], prefer_async: bool) -> Vec<Result<Reply, String>> {
    let tasks: Vec<_> = probes
        .iter()
        .map(|p| {
            let (p, http, url) = (p.clone(), h.http.clone(), h.gw_url(p.api.path()));
            tokio::spawn(async move { p.post(&http, &url, prefer_async).await })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.expect("request task"));
    }
    out
}

/// Every job id answered is in exactly one created batch, and nothing else is.
async fn assert_each_batched_once(h: &Harness, ids: &BTreeSet<String>) {
    let lines = h.batch_lines().await;
    for id in ids {
        assert_eq!(
            lines.get(id),
            Some(&1),
            "job {id} must be in exactly one created batch: {lines:?}"
        );
    }
    let upstream: BTreeSet<&String> = lines.keys().collect();
    assert_eq!(
        upstream,
        ids.iter().collect::<BTreeSet<_>>(),
        "the created batches must hold exactly the answered jobs"
    );
}

fn batch_requests(rows: &[ReportRow]) -> u64 {
    rows.iter()
        .filter(|r| r.tier == Tier::Batch)
        .map(|r| r.requests)
        .sum()
}

fn wasted_usd(rows: &[ReportRow]) -> f64 {
    rows.iter().map(|r| r.wasted_usd).sum()
}

/// The ledger counts every answer once, from the batch tier, and nothing as wasted: a
/// crash must neither lose nor double-count spend.
async fn assert_ledger(h: &Harness, n: usize, what: &str) {
    let rows = h.ledger(n as u64).await;
    assert_eq!(
        batch_requests(&rows),
        n as u64,
        "{what}: batch answers in the ledger: {rows:?}"
    );
    let other: u64 = rows
        .iter()
        .filter(|r| r.tier != Tier::Batch)
        .map(|r| r.requests)
        .sum();
    assert_eq!(other, 0, "{what}: answers outside the batch tier: {rows:?}");
    assert_eq!(
        wasted_usd(&rows),
        0.0,
        "{what}: spend recorded as wasted: {rows:?}"
    );
}

/// Steps 1-6 for one failpoint and API; returns the harness (restarted gateway still
/// running).
async fn crash_at(api: Api, failpoint: &str) -> Harness {
    crash_at_apis(&[api], failpoint).await
}

/// The same with `N` probes of each API at once, each API in its own batch group.
async fn crash_at_apis(apis: &[Api], failpoint: &str) -> Harness {
    let tag = match apis {
        [api] => api.tag(failpoint),
        _ => format!("mixed-{failpoint}"),
    };
    let mut h = Harness::start(&tag).await;
    h.vertex = apis.contains(&Api::VertexChat);
    h.start_gateway(Some(failpoint)).await;
    let probes: Vec<Probe> = apis
        .iter()
        .flat_map(|&api| (0..N).map(move |i| Probe::new(api, &api.tag(failpoint), i)))
        .collect();

    // Deferred with respond-async; the gateway aborts at the failpoint.
    let first = send_all(&h, &probes, true).await;
    let mut accepted: Vec<Option<String>> = Vec::with_capacity(probes.len());
    for (p, r) in probes.iter().zip(&first) {
        if failpoint == "after_enqueue" {
            // Dies after the job is durable but before answering: nobody got a 202.
            assert!(
                r.is_err(),
                "{}: answered {:?} although the gateway aborts before answering",
                p.key,
                r.as_ref().map(|r| r.status)
            );
            accepted.push(None);
            continue;
        }
        let r = r
            .as_ref()
            .unwrap_or_else(|e| panic!("{}: no 202 before the crash: {e}", p.key));
        assert_eq!(
            r.status,
            StatusCode::ACCEPTED,
            "{}: {}",
            p.key,
            String::from_utf8_lossy(&r.body)
        );
        let id = r
            .header("x-sluice-job-id")
            .unwrap_or_else(|| panic!("{}: no x-sluice-job-id", p.key))
            .to_owned();
        assert_eq!(
            r.header("location"),
            Some(format!("/sluice/v1/jobs/{id}").as_str()),
            "{}",
            p.key
        );
        accepted.push(Some(id));
    }

    let status = h.wait_gateway_exit().await;
    assert!(!status.success(), "{tag}: exited with {status}");
    assert_eq!(
        status.signal(),
        Some(SIGABRT),
        "{tag}: expected an abort, got {status}"
    );

    // Same store, same simulator, no failpoint.
    h.start_gateway(None).await;
    let retried = send_all(&h, &probes, false).await;
    let mut ids = BTreeSet::new();
    for ((p, r), before) in probes.iter().zip(&retried).zip(&accepted) {
        let r = r
            .as_ref()
            .unwrap_or_else(|e| panic!("{tag}: retry of {} failed: {e}", p.key));
        let id = p.check_answer(r);
        if let Some(before) = before {
            assert_eq!(&id, before, "{tag}: the retry of {} made a new job", p.key);
        }
        assert!(ids.insert(id.clone()), "{tag}: job {id} answered twice");

        // The job endpoint serves the same answer.
        let auth = format!("Bearer {KEY}");
        let url = h.gw_url(&format!("/sluice/v1/jobs/{id}/result"));
        let got = send(
            &h.http,
            Method::GET,
            &url,
            &[("authorization", &auth)],
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(got.status, StatusCode::OK, "{tag}: GET {url}");
        assert_eq!(got.body, r.body, "{tag}: GET {url}");
    }
    assert_eq!(ids.len(), probes.len(), "{tag}: one job per request");
    assert_each_batched_once(&h, &ids).await;
    // The batches went through these APIs' batch routes only (Message Batches take no file).
    let stray: Vec<String> = h
        .sim_posts()
        .await
        .into_iter()
        .filter(|p| {
            BATCH_POSTS.contains(&p.as_str())
                && !apis.iter().any(|a| a.batch_posts().contains(&p.as_str()))
        })
        .collect();
    assert!(
        stray.is_empty(),
        "{tag}: batch calls off the {apis:?} routes: {stray:?}"
    );
    h
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_after_enqueue() {
    let h = crash_at(Api::Chat, "after_enqueue").await;
    assert_ledger(&h, N, "after_enqueue").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_after_claim() {
    let h = crash_at(Api::Chat, "after_claim").await;
    assert_ledger(&h, N, "after_claim").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_after_upload() {
    let h = crash_at(Api::Chat, "after_upload").await;
    assert_ledger(&h, N, "after_upload").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_before_create() {
    let h = crash_at(Api::Chat, "before_create").await;
    assert_ledger(&h, N, "before_create").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_after_create() {
    let h = crash_at(Api::Chat, "after_create").await;
    assert_ledger(&h, N, "after_create").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_mid_delivery() {
    let h = crash_at(Api::Chat, "mid_delivery").await;
    assert_ledger(&h, N, "mid_delivery").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_crash_after_claim() {
    let h = crash_at(Api::Messages, "after_claim").await;
    assert_ledger(&h, N, "messages after_claim").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_crash_before_create() {
    let h = crash_at(Api::Messages, "before_create").await;
    assert_ledger(&h, N, "messages before_create").await;
}

/// The Message Batch exists upstream but its id was never recorded: the restart must find
/// it by listing (no metadata to match on) instead of creating a second one.
#[tokio::test(flavor = "multi_thread")]
async fn messages_crash_after_create() {
    let h = crash_at(Api::Messages, "after_create").await;
    assert_ledger(&h, N, "messages after_create").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_crash_mid_delivery() {
    let h = crash_at(Api::Messages, "mid_delivery").await;
    assert_ledger(&h, N, "messages mid_delivery").await;
}

/// The Responses API through OpenAI's Batch API (`"url": "/v1/responses"` lines, one input
/// file): every stage of the flush, including the upload only file-based batches have.
#[tokio::test(flavor = "multi_thread")]
async fn responses_crash_after_enqueue() {
    let h = crash_at(Api::Responses, "after_enqueue").await;
    assert_ledger(&h, N, "responses after_enqueue").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_crash_after_claim() {
    let h = crash_at(Api::Responses, "after_claim").await;
    assert_ledger(&h, N, "responses after_claim").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_crash_after_upload() {
    let h = crash_at(Api::Responses, "after_upload").await;
    assert_ledger(&h, N, "responses after_upload").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_crash_before_create() {
    let h = crash_at(Api::Responses, "before_create").await;
    assert_ledger(&h, N, "responses before_create").await;
}

/// The batch exists upstream, its id unrecorded: found again by its `sluice_flush` metadata.
#[tokio::test(flavor = "multi_thread")]
async fn responses_crash_after_create() {
    let h = crash_at(Api::Responses, "after_create").await;
    assert_ledger(&h, N, "responses after_create").await;
}

/// The output file is read again: lines already answered are not booked twice.
#[tokio::test(flavor = "multi_thread")]
async fn responses_crash_mid_delivery() {
    let h = crash_at(Api::Responses, "mid_delivery").await;
    assert_ledger(&h, N, "responses mid_delivery").await;
}

/// claude-* chat completions through Message Batches (no input file, so no `after_upload`):
/// answered after the restart as chat completions, translated on every delivery.
#[tokio::test(flavor = "multi_thread")]
async fn claude_chat_crash_after_enqueue() {
    let h = crash_at(Api::ClaudeChat, "after_enqueue").await;
    assert_ledger(&h, N, "claude chat after_enqueue").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn claude_chat_crash_after_claim() {
    let h = crash_at(Api::ClaudeChat, "after_claim").await;
    assert_ledger(&h, N, "claude chat after_claim").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn claude_chat_crash_before_create() {
    let h = crash_at(Api::ClaudeChat, "before_create").await;
    assert_ledger(&h, N, "claude chat before_create").await;
}

/// Found again by listing (request count and creation time; no metadata).
#[tokio::test(flavor = "multi_thread")]
async fn claude_chat_crash_after_create() {
    let h = crash_at(Api::ClaudeChat, "after_create").await;
    assert_ledger(&h, N, "claude chat after_create").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn claude_chat_crash_mid_delivery() {
    let h = crash_at(Api::ClaudeChat, "mid_delivery").await;
    assert_ledger(&h, N, "claude chat mid_delivery").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gemini_chat_crash_before_create() {
    let h = crash_at(Api::GeminiChat, "before_create").await;
    assert_ledger(&h, N, "gemini chat before_create").await;
}

/// Created but not recorded: found again by listing batches and matching the flush id
/// sent as `displayName`, never created twice.
#[tokio::test(flavor = "multi_thread")]
async fn gemini_chat_crash_after_create() {
    let h = crash_at(Api::GeminiChat, "after_create").await;
    assert_ledger(&h, N, "gemini chat after_create").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gemini_chat_crash_mid_delivery() {
    let h = crash_at(Api::GeminiChat, "mid_delivery").await;
    assert_ledger(&h, N, "gemini chat mid_delivery").await;
}

/// Vertex AI at every flush stage: the input staged in Cloud Storage, the job created (not
/// idempotent: after a crash found again by listing jobs by the flush id sent as
/// `displayName`), results read back from the output prefix and matched by the job id in
/// each request's labels. Nothing lost, nothing created twice.
#[tokio::test(flavor = "multi_thread")]
async fn vertex_chat_crash_after_upload() {
    let h = crash_at(Api::VertexChat, "after_upload").await;
    assert_ledger(&h, N, "vertex chat after_upload").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn vertex_chat_crash_before_create() {
    let h = crash_at(Api::VertexChat, "before_create").await;
    assert_ledger(&h, N, "vertex chat before_create").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn vertex_chat_crash_after_create() {
    let h = crash_at(Api::VertexChat, "after_create").await;
    assert_ledger(&h, N, "vertex chat after_create").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn vertex_chat_crash_mid_delivery() {
    let h = crash_at(Api::VertexChat, "mid_delivery").await;
    assert_ledger(&h, N, "vertex chat mid_delivery").await;
}

/// All five APIs at once, `N` requests each, killed when the first batch was created but not
/// recorded: two OpenAI batches (chat, responses) told apart by metadata, two Message
/// Batches (messages, claude chat) of the same size, which only the recorded ids tell apart,
/// and a Gemini batch named after its flush. Each flush must adopt its own batch or create
/// one, never another flush's.
#[tokio::test(flavor = "multi_thread")]
async fn mixed_apis_crash_after_create() {
    let apis = [
        Api::Chat,
        Api::Responses,
        Api::Messages,
        Api::ClaudeChat,
        Api::GeminiChat,
    ];
    let h = crash_at_apis(&apis, "after_create").await;
    assert_ledger(&h, N * apis.len(), "mixed after_create").await;
}

/// After a crash during delivery, the restart downloads the output file again and
/// re-delivers every line; lines already answered (by this same batch, charged once) must
/// not be booked as wasted spend.
#[tokio::test(flavor = "multi_thread")]
async fn crash_mid_delivery_redelivery_is_not_wasted() {
    let h = crash_at(Api::Chat, "mid_delivery").await;
    // The restart answers the other N - 1 lines (the waste entry is written before them).
    let rows = h.ledger(N as u64 - 1).await;
    assert_eq!(
        wasted_usd(&rows),
        0.0,
        "re-delivered lines booked as waste: {rows:?}"
    );
}

/// The answer delivered just before the crash is durable (the job is done); its ledger
/// entry must be too, or `sluice report` under-counts.
#[tokio::test(flavor = "multi_thread")]
async fn crash_mid_delivery_ledger_keeps_the_delivered_answer() {
    let h = crash_at(Api::Chat, "mid_delivery").await;
    let rows = h.ledger(N as u64).await;
    assert_eq!(
        batch_requests(&rows),
        N as u64,
        "batch answers in the ledger: {rows:?}"
    );
}

/// A real `kill -9` once the first batch creation reached the provider.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_after_first_batch_create() {
    const M: usize = 20;
    let mut h = Harness::start("sigkill").await;
    h.start_gateway(None).await;
    let probes: Vec<Probe> = (0..M)
        .map(|i| Probe::new(Api::Chat, "sigkill", i))
        .collect();

    // Held requests in the background.
    let url = h.gw_url(Api::Chat.path());
    let held: Vec<_> = probes
        .iter()
        .map(|p| {
            let (p, http, url) = (p.clone(), h.http.clone(), url.clone());
            tokio::spawn(async move { p.post(&http, &url, false).await })
        })
        .collect();

    let mut seen = false;
    for _ in 0..POLL_ATTEMPTS {
        let log = h.sim_json("/sim/requests").await;
        seen = log.as_array().is_some_and(|entries| {
            entries
                .iter()
                .any(|e| e["method"] == "POST" && e["path"] == Api::Chat.create_path())
        });
        if seen {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    assert!(seen, "no batch was created\n{}", h.logs());
    let status = h.kill_gateway();
    assert_eq!(status.signal(), Some(SIGKILL), "{status}");

    // Held callers lose their connection (or, rarely, were answered just before).
    let mut before: Vec<Option<String>> = Vec::with_capacity(M);
    for (p, t) in probes.iter().zip(held) {
        match t.await.expect("request task") {
            Ok(r) => before.push(Some(p.check_answer(&r))),
            Err(_) => before.push(None),
        }
    }

    h.start_gateway(None).await;
    let retried = send_all(&h, &probes, false).await;
    let mut ids = BTreeSet::new();
    for ((p, r), before) in probes.iter().zip(&retried).zip(&before) {
        let r = r
            .as_ref()
            .unwrap_or_else(|e| panic!("retry of {} failed: {e}", p.key));
        let id = p.check_answer(r);
        if let Some(before) = before {
            assert_eq!(&id, before, "the retry of {} made a new job", p.key);
        }
        assert!(ids.insert(id.clone()), "job {id} answered twice");
    }
    assert_eq!(ids.len(), M, "one job per request");
    assert_each_batched_once(&h, &ids).await;
    // Every answer is in the ledger exactly once, whenever the kill came.
    assert_ledger(&h, M, "sigkill").await;
}
