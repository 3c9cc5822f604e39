//! The deferred tiers under load, each against a fresh gateway with its own SQLite store:
//!
//! * D: durable enqueue (`x-sla: 24h` + `Prefer: respond-async`, 202 once the job is
//!   fsynced) against interactive requests to the same gateway, same concurrency;
//! * E: the gateway's memory per held deferred request (no `Prefer`: the connection
//!   stays open until the batch answer, which `SLUICE_BATCH_MAX_WAIT=1h` postpones).

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use crate::generator::{self, HttpClient, Shot};
use crate::{BoxError, Plan, Procs, Verdicts, p50, p99, print_errors};

/// Goal of D: deferred (durable enqueue) RPS as a multiple of interactive RPS.
const GOAL_ENQUEUE: f64 = 0.5;
/// Goal of E: gateway memory per held request beyond its body, KiB.
const GOAL_HELD_KIB: f64 = 16.0;
/// E wants 10,000 connections; below this soft open-file limit it may use fewer.
const WANT_NOFILE: u64 = 22_000;
/// File descriptors left for everything but the held connections.
const NOFILE_MARGIN: u64 = 1_024;
/// Async deferred requests sent before E's first RSS reading (not held).
const HELD_WARMUP: usize = 16;

/// Where the deferred scenarios start their gateways.
pub struct Env<'a> {
    pub sluice: &'a Path,
    pub sim: SocketAddr,
}

/// A fresh SQLite store file in the temp dir, deleted (with `-wal`, `-shm`) when dropped.
pub struct TempStore {
    path: PathBuf,
}

impl TempStore {
    pub fn new(tag: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!("sluice-load-{tag}-{}-{nanos}.db", std::process::id());
        let store = TempStore {
            path: std::env::temp_dir().join(name),
        };
        store.remove();
        store
    }

    pub fn url(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }

    fn remove(&self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Drop for TempStore {
    fn drop(&mut self) {
        self.remove();
    }
}

/// `sluice serve` on `listen`, forwarding to the simulator, with its own store.
pub fn serve_command(
    sluice: &Path,
    listen: SocketAddr,
    sim: SocketAddr,
    store: &TempStore,
) -> Command {
    let mut cmd = Command::new(sluice);
    cmd.arg("serve")
        .env_remove("SLUICE_CONFIG")
        .env("SLUICE_LISTEN", listen.to_string())
        .env("OPENAI_BASE_URL", format!("http://{sim}/v1"))
        .env("OPENAI_API_KEY", "sk-bench")
        .env("SLUICE_POLICIES", "/nonexistent-dir")
        .env("SLUICE_STORE", store.url())
        .env("RUST_LOG", "warn");
    cmd
}

/// A gateway process and its store; the process is killed before the store is deleted.
struct Gateway {
    procs: Procs,
    _store: TempStore,
    addr: SocketAddr,
}

impl Gateway {
    async fn start(env: &Env<'_>, extra: &[(&str, &str)]) -> Result<Gateway, BoxError> {
        let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let store = TempStore::new("deferred");
        let mut cmd = serve_command(env.sluice, addr, env.sim, &store);
        cmd.env("SLUICE_BATCH_MAX_WAIT", "1h")
            .envs(extra.iter().copied());
        let mut procs = Procs::default();
        procs.spawn("sluice serve (deferred)", &mut cmd)?;
        let client = generator::client();
        let url = format!("http://{addr}/readyz");
        crate::wait_ready(&client, &mut procs, "sluice serve (deferred)", url).await?;
        Ok(Gateway {
            procs,
            _store: store,
            addr,
        })
    }

    fn pid(&self) -> u32 {
        self.procs.0[0].1.id()
    }

    fn chat_url(&self) -> Uri {
        let url = format!("http://{}/v1/chat/completions", self.addr);
        url.parse().expect("valid URI")
    }

    /// The sum of `sluice_batch_queue_depth` over its labels, if `/metrics` answers.
    async fn queue_depth(&self, client: &HttpClient) -> Option<u64> {
        let req = Request::get(format!("http://{}/metrics", self.addr))
            .body(Full::new(Bytes::new()))
            .ok()?;
        let resp = tokio::time::timeout(Duration::from_secs(5), client.request(req))
            .await
            .ok()?
            .ok()?;
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        let text = String::from_utf8_lossy(&body);
        let sum: f64 = text
            .lines()
            .filter(|l| l.starts_with("sluice_batch_queue_depth"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        Some(sum.round() as u64)
    }

    /// Polls the queue depth until it reaches `want` or `limit` passes; the last depth seen.
    async fn wait_depth(&self, client: &HttpClient, want: u64, limit: Duration) -> u64 {
        let deadline = Instant::now() + limit;
        let mut seen = 0;
        loop {
            seen = self.queue_depth(client).await.unwrap_or(seen);
            if seen >= want || Instant::now() > deadline {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// D: durable enqueue throughput against interactive throughput, on one fresh gateway.
pub async fn enqueue(
    plan: &Plan,
    env: &Env<'_>,
    body: &Bytes,
    verdicts: &mut Verdicts,
) -> Result<bool, BoxError> {
    let gateway = Gateway::start(env, &[]).await?;
    let client = generator::client();
    let interactive = Shot::new(gateway.chat_url(), body.clone());
    let mut deferred = interactive.clone();
    deferred
        .headers
        .insert("x-sla", HeaderValue::from_static("24h"));
    deferred
        .headers
        .insert("prefer", HeaderValue::from_static("respond-async"));
    deferred.unique_key = true;
    deferred.expect = StatusCode::ACCEPTED;

    let mut rows = Vec::new();
    let mut sent = 0;
    for (name, shot) in [("interactive", &interactive), ("deferred", &deferred)] {
        let warm = generator::closed_loop(&client, shot, plan.workers, plan.enqueue_warmup).await;
        let run = generator::closed_loop(&client, shot, plan.workers, plan.enqueue).await;
        if shot.unique_key {
            sent = warm.ok() + run.ok();
        }
        rows.push((name, run));
    }
    println!(
        "\nD. durable enqueue vs interactive, one fresh gateway (SQLite store, group commit + fsync, \
         batch max wait 1h), {} concurrent workers, {:.1} s each",
        plan.workers,
        plan.enqueue.as_secs_f64()
    );
    println!(
        "{:<12} {:>9} {:>9} {:>9} {:>7}   expects",
        "kind", "RPS", "p50 ms", "p99 ms", "errors"
    );
    for ((name, s), expects) in rows.iter().zip([
        "200 (provider latency 20 ms)",
        "202 (x-sla: 24h, Prefer: respond-async, unique Idempotency-Key)",
    ]) {
        println!(
            "{:<12} {:>9.1} {:>9.2} {:>9.2} {:>7}   {expects}",
            name,
            s.rps(),
            p50(&s.latencies),
            p99(&s.latencies),
            s.error_count()
        );
    }
    let [inter, def] = [&rows[0].1, &rows[1].1];
    println!(
        "{:<12} {:>20}   {:<22} result",
        "ratio", "deferred/interactive", "goal"
    );
    let r = def.rps() / inter.rps();
    let pass = r >= GOAL_ENQUEUE;
    verdicts.add(Some(pass));
    println!(
        "{:<12} {:>20.3}   {:<22} {}",
        "throughput",
        r,
        format!(">= {GOAL_ENQUEUE:.2}x interactive"),
        if pass { "PASS" } else { "MISS" }
    );
    let depth = gateway
        .wait_depth(&client, sent as u64, Duration::from_secs(5))
        .await;
    println!("  store: {depth} deferred jobs queued, {sent} accepted with 202 (warm-up included)");
    Ok(print_errors(&rows))
}

/// What held connections ended with before they were closed, by outcome.
type Endings = Arc<Mutex<BTreeMap<String, u64>>>;

fn note(endings: &Endings, outcome: String) {
    let mut m = endings.lock().unwrap_or_else(|p| p.into_inner());
    *m.entry(outcome).or_default() += 1;
}

/// A distinct chat body; every index up to 999,999 gives the same length.
fn held_body(i: usize) -> Bytes {
    let body = serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [{
            "role": "user",
            "content": format!("Held request {i:06}: summarise yesterday's deploy notes in one line."),
        }],
        "max_tokens": 32,
    });
    Bytes::from(serde_json::to_vec(&body).expect("static JSON"))
}

/// Opens one connection, sends one held request, reports `connected`, then keeps the
/// connection open until it ends or the task is aborted.
async fn hold_one(
    addr: SocketAddr,
    body: Bytes,
    connected: oneshot::Sender<Result<(), String>>,
    endings: Endings,
) {
    let stream = match tokio::net::TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => return drop(connected.send(Err(format!("connect: {e}")))),
    };
    let _ = stream.set_nodelay(true);
    let handshake = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await;
    let (mut sender, conn) = match handshake {
        Ok(h) => h,
        Err(e) => return drop(connected.send(Err(format!("handshake: {e}")))),
    };
    let req = Request::post("/v1/chat/completions")
        .header(HOST, addr.to_string())
        .header(CONTENT_TYPE, "application/json")
        .header(AUTHORIZATION, "Bearer sk-bench")
        .header("x-sla", "24h")
        .body(Full::new(body));
    let req = match req {
        Ok(r) => r,
        Err(e) => return drop(connected.send(Err(format!("request: {e}")))),
    };
    let response = sender.send_request(req);
    let _ = connected.send(Ok(()));
    let outcome = tokio::select! {
        r = conn => match r {
            Ok(()) => "connection closed".to_owned(),
            Err(e) => format!("connection: {e}"),
        },
        r = response => match r {
            Ok(resp) => format!("answered {}", resp.status()),
            Err(e) => format!("send: {e}"),
        },
    };
    note(&endings, outcome);
}

/// `Max open files` (soft, hard) of this process, from `/proc/self/limits`.
fn open_file_limit() -> Option<(Option<u64>, String)> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut fields = line["Max open files".len()..].split_whitespace();
    let soft = fields.next()?;
    let hard = fields.next()?.to_owned();
    Some((soft.parse().ok(), hard))
}

/// `VmRSS` of a process, KiB.
fn rss_kib(pid: u32) -> Result<u64, BoxError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no VmRSS in /proc/{pid}/status").into())
}

/// E: the gateway's resident memory per held deferred request. Meant for a
/// current-thread runtime: the bench side is one thread driving plain connections.
pub async fn held_memory(
    plan: &Plan,
    env: &Env<'_>,
    verdicts: &mut Verdicts,
) -> Result<bool, BoxError> {
    let mut want = plan.held;
    match open_file_limit() {
        Some((Some(soft), hard)) if soft < WANT_NOFILE => {
            let n = want.min(soft.saturating_sub(NOFILE_MARGIN) as usize);
            println!(
                "\nnote: open-file soft limit {soft} (hard {hard}) is below {WANT_NOFILE} and is not \
                 raised (no libc); E holds {n} of {want} requests and scales per request"
            );
            want = n;
        }
        Some(_) => {}
        None => println!("\nnote: cannot read /proc/self/limits; E assumes enough descriptors"),
    }
    let poll = [("SLUICE_BATCH_POLL_INTERVAL", "200ms")];
    let gateway = Gateway::start(env, &poll).await?;
    let client = generator::client();
    let pid = gateway.pid();

    // Warm-up: the first deferred requests open store connections and fill lazy statics.
    let mut warm = Shot::new(gateway.chat_url(), held_body(999_999));
    warm.headers
        .insert("x-sla", HeaderValue::from_static("24h"));
    warm.headers
        .insert("prefer", HeaderValue::from_static("respond-async"));
    warm.unique_key = true;
    warm.expect = StatusCode::ACCEPTED;
    let warmed = generator::fixed_count(&client, &warm, 4, HELD_WARMUP).await;
    let base = gateway
        .wait_depth(&client, warmed.ok() as u64, Duration::from_secs(10))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid)?;

    let endings: Endings = Arc::default();
    let mut tasks = Vec::with_capacity(want);
    let mut connected = 0u64;
    let mut body_bytes = 0u64;
    let mut depth = base;
    let start = Instant::now();
    let mut next = 0;
    while next < want {
        let end = (next + plan.held_batch).min(want);
        let mut waits = Vec::with_capacity(end - next);
        for i in next..end {
            let body = held_body(i);
            body_bytes += body.len() as u64;
            let (tx, rx) = oneshot::channel();
            tasks.push(tokio::spawn(hold_one(
                gateway.addr,
                body,
                tx,
                endings.clone(),
            )));
            waits.push(rx);
        }
        for rx in waits {
            match rx.await {
                Ok(Ok(())) => connected += 1,
                Ok(Err(e)) => note(&endings, e),
                Err(_) => note(&endings, "task ended".to_owned()),
            }
        }
        next = end;
        // Bounded: the next batch starts once the gateway holds this one.
        depth = gateway
            .wait_depth(&client, base + connected, Duration::from_secs(60))
            .await;
        if depth < base + connected {
            println!(
                "\nnote: queue depth {depth} after 60 s, expected {}",
                base + connected
            );
            break;
        }
    }
    let opened = start.elapsed();
    // One more engine tick (200 ms) so the steady state of the held requests is counted.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(pid)?;
    let held = depth.saturating_sub(base);
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        let _ = t.await;
    }
    drop(gateway);

    let avg_body = body_bytes as f64 / next.max(1) as f64;
    println!(
        "\nE. held deferred requests: {held} open HTTP/1.1 connections, one request each (x-sla: \
         24h, no Prefer; body {avg_body:.0} bytes), fresh gateway, poll interval 200ms"
    );
    println!(
        "gateway RSS before {:>9.1} MiB   (after {} warm-up 202s)",
        before as f64 / 1024.0,
        warmed.ok()
    );
    println!(
        "gateway RSS held   {:>9.1} MiB   (queue depth {depth}, reached {:.1} s after the first connect)",
        after as f64 / 1024.0,
        opened.as_secs_f64()
    );
    let ok = held > 0;
    if ok {
        let per = after.saturating_sub(before) as f64 / held as f64;
        let beyond = per - avg_body / 1024.0;
        let pass = beyond < GOAL_HELD_KIB;
        verdicts.add(Some(pass));
        println!(
            "{:<18} {:>9}   {:<22} result",
            "per held request", "KiB", "goal"
        );
        println!("{:<18} {:>9.2}   {:<22}", "RSS delta / N", per, "-");
        println!(
            "{:<18} {:>9.2}   {:<22} {}",
            "minus body",
            beyond,
            format!("< {GOAL_HELD_KIB:.0} KiB"),
            if pass { "PASS" } else { "MISS" }
        );
    } else {
        println!("  no request was held");
    }
    let endings = endings.lock().unwrap_or_else(|p| p.into_inner());
    for (outcome, n) in endings.iter() {
        println!("  held request ended early x{n}: {outcome}");
    }
    Ok(ok)
}
