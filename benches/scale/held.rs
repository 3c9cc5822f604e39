//! Held callers, and what holding them costs the gateway.
//!
//! [`hold`] opens held deferred requests (`x-sla: 24h`, no `Prefer`: answered when the
//! batch is), over HTTP/1.1 (one connection each, from source addresses 127.0.0.1-8 in
//! turn, so no single address runs out of ports) or HTTP/2 (many streams per connection).
//! [`run`] measures the gateway's resident memory per held request: a fresh gateway (SQLite
//! store, batch wait 1 h, so nothing is answered), RSS after a warm-up, then with N held,
//! delta / N. Jobs are spread over four models so no group fills an upstream batch
//! (50,000 lines) and flushes.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::BoxError;
use crate::generator::{self, Shot};
use crate::procs::{Env, Gateway, Simulator, Store};

/// Goal: gateway memory per held request beyond its body, KiB (issue 12, point 5).
pub const GOAL_HELD_KIB: f64 = 16.0;
/// The models held jobs are spread over: one batch group each.
const MODELS: [&str; 4] = ["gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1"];
/// HTTP/2 streams per connection: hyper's default `SETTINGS_MAX_CONCURRENT_STREAMS`.
pub const H2_STREAMS: usize = 200;
/// HTTP/1.1 connections opened before waiting for them to be sent.
const H1_BATCH: usize = 500;
/// Source addresses for HTTP/1.1 connections, 127.0.0.1 up.
const SOURCES: u8 = 8;

/// How held requests reach the gateway.
#[derive(Clone, Copy, Debug)]
pub enum Wire {
    /// One HTTP/1.1 connection per request.
    H1,
    /// HTTP/2, this many streams per connection.
    H2(usize),
}

impl Wire {
    fn label(self) -> String {
        match self {
            Wire::H1 => "HTTP/1.1".to_owned(),
            Wire::H2(s) => format!("HTTP/2 x{s}"),
        }
    }

    fn connections(self, n: usize) -> usize {
        match self {
            Wire::H1 => n,
            Wire::H2(s) => n.div_ceil(s),
        }
    }
}

/// A held caller's answer: when its response head arrived, with what.
pub struct Answer {
    pub at: SystemTime,
    pub status: StatusCode,
    pub job: Option<String>,
}

/// Held requests in flight; dropping this closes them all.
pub struct Holders {
    tasks: Vec<JoinHandle<()>>,
    /// Every answer, as it arrives.
    pub answers: mpsc::UnboundedReceiver<Answer>,
    /// Requests that ended without an answer, by what ended them.
    pub failures: Failures,
    /// Total request body bytes sent.
    pub body_bytes: u64,
    pub sent: usize,
}

impl Drop for Holders {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

type Failures = Arc<Mutex<BTreeMap<String, u64>>>;

fn fail(failures: &Failures, why: String) {
    let mut m = failures.lock().unwrap_or_else(|p| p.into_inner());
    *m.entry(why).or_default() += 1;
}

pub fn failures_text(failures: &Failures) -> String {
    let m = failures.lock().unwrap_or_else(|p| p.into_inner());
    m.iter()
        .map(|(why, n)| format!("{why} x{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A distinct chat body for held request `i` of run `tag`; same length for every `i` below
/// 10^7 with the same model.
pub fn held_body(tag: &str, i: usize) -> Bytes {
    let body = serde_json::json!({
        "model": MODELS[i % MODELS.len()],
        "messages": [{
            "role": "user",
            "content": format!("Held request {tag}-{i:07}: summarise yesterday's deploy notes in one line."),
        }],
        "max_tokens": 32,
    });
    Bytes::from(serde_json::to_vec(&body).expect("static JSON"))
}

fn held_request(addr: SocketAddr, body: Bytes) -> Result<Request<Full<Bytes>>, String> {
    Request::post(format!("http://{addr}/v1/chat/completions"))
        .header(HOST, addr.to_string())
        .header(CONTENT_TYPE, "application/json")
        .header(AUTHORIZATION, "Bearer sk-bench")
        .header("x-sla", "24h")
        .body(Full::new(body))
        .map_err(|e| e.to_string())
}

fn answer(resp: &hyper::Response<hyper::body::Incoming>) -> Answer {
    Answer {
        at: SystemTime::now(),
        status: resp.status(),
        job: resp
            .headers()
            .get("x-sluice-job-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }
}

/// Sends `bodies` to `addr` as held requests over `wire`; returns once every request has
/// been handed to its connection (not necessarily read by the gateway yet).
pub async fn hold(addr: SocketAddr, wire: Wire, bodies: Vec<Bytes>) -> Holders {
    let (tx, answers) = mpsc::unbounded_channel();
    let failures = Failures::default();
    let mut holders = Holders {
        tasks: Vec::with_capacity(bodies.len()),
        answers,
        failures: failures.clone(),
        body_bytes: bodies.iter().map(|b| b.len() as u64).sum(),
        sent: 0,
    };
    let mut sent = Vec::new();
    match wire {
        Wire::H1 => {
            let mut bodies = bodies.into_iter().enumerate().peekable();
            while bodies.peek().is_some() {
                for (i, body) in bodies.by_ref().take(H1_BATCH) {
                    let (done, rx) = oneshot::channel();
                    let source = Ipv4Addr::new(127, 0, 0, 1 + (i % SOURCES as usize) as u8);
                    holders.tasks.push(tokio::spawn(hold_h1(
                        source,
                        addr,
                        body,
                        done,
                        tx.clone(),
                        failures.clone(),
                    )));
                    sent.push(rx);
                }
                // Bounded: the next batch connects once this one has sent.
                holders.sent += count_sent(&mut sent, &failures).await;
            }
        }
        Wire::H2(streams) => {
            let mut bodies = bodies.into_iter();
            loop {
                let chunk: Vec<Bytes> = bodies.by_ref().take(streams).collect();
                if chunk.is_empty() {
                    break;
                }
                let (done, rx) = oneshot::channel();
                holders.tasks.push(tokio::spawn(hold_h2(
                    addr,
                    chunk,
                    done,
                    tx.clone(),
                    failures.clone(),
                )));
                sent.push(rx);
            }
            holders.sent += count_sent(&mut sent, &failures).await;
        }
    }
    holders
}

/// Waits for every `sent` report; how many requests they say were sent.
async fn count_sent(sent: &mut Vec<oneshot::Receiver<usize>>, failures: &Failures) -> usize {
    let mut n = 0;
    for rx in sent.drain(..) {
        match rx.await {
            Ok(k) => n += k,
            Err(_) => fail(failures, "holder task ended".to_owned()),
        }
    }
    n
}

async fn connect(source: Ipv4Addr, addr: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One HTTP/1.1 connection, one held request; reports 1 on `sent` once it is written.
async fn hold_h1(
    source: Ipv4Addr,
    addr: SocketAddr,
    body: Bytes,
    sent: oneshot::Sender<usize>,
    answers: mpsc::UnboundedSender<Answer>,
    failures: Failures,
) {
    let stream = match connect(source, addr).await {
        Ok(s) => s,
        Err(e) => return fail_unsent(sent, &failures, format!("connect: {e}")),
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(h) => h,
        Err(e) => return fail_unsent(sent, &failures, format!("handshake: {e}")),
    };
    let req = match held_request(addr, body) {
        Ok(r) => r,
        Err(e) => return fail_unsent(sent, &failures, e),
    };
    let response = sender.send_request(req);
    let _ = sent.send(1);
    tokio::select! {
        r = conn => fail(&failures, match r {
            Ok(()) => "connection closed".to_owned(),
            Err(e) => format!("connection: {e}"),
        }),
        r = response => match r {
            Ok(resp) => drop(answers.send(answer(&resp))),
            Err(e) => fail(&failures, format!("send: {e}")),
        },
    }
}

fn fail_unsent(sent: oneshot::Sender<usize>, failures: &Failures, why: String) {
    fail(failures, why);
    let _ = sent.send(0);
}

/// One HTTP/2 connection carrying one held request per body; reports how many streams it
/// opened on `sent`.
async fn hold_h2(
    addr: SocketAddr,
    bodies: Vec<Bytes>,
    sent: oneshot::Sender<usize>,
    answers: mpsc::UnboundedSender<Answer>,
    failures: Failures,
) {
    let stream = match connect(Ipv4Addr::LOCALHOST, addr).await {
        Ok(s) => s,
        Err(e) => return fail_unsent(sent, &failures, format!("connect: {e}")),
    };
    let handshake =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await;
    let (sender, conn) = match handshake {
        Ok(h) => h,
        Err(e) => return fail_unsent(sent, &failures, format!("h2 handshake: {e}")),
    };
    let streams = bodies.len();
    let requests: Vec<JoinHandle<()>> = bodies
        .into_iter()
        .map(|body| {
            let (mut sender, answers, failures) =
                (sender.clone(), answers.clone(), failures.clone());
            tokio::spawn(async move {
                let req = match held_request(addr, body) {
                    Ok(r) => r,
                    Err(e) => return fail(&failures, e),
                };
                if let Err(e) = sender.ready().await {
                    return fail(&failures, format!("h2 ready: {e}"));
                }
                match sender.send_request(req).await {
                    Ok(resp) => drop(answers.send(answer(&resp))),
                    Err(e) => fail(&failures, format!("h2 send: {e}")),
                }
            })
        })
        .collect();
    let _ = sent.send(streams);
    // The streams end with this task (aborted) or with their answers.
    let _abort_streams = AbortOnDrop(requests);
    if let Err(e) = conn.await {
        fail(&failures, format!("h2 connection: {e}"));
    }
}

struct AbortOnDrop(Vec<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Sends `n` async deferred requests (202): the first ones open store connections and fill
/// lazy statics, which are not the held requests' cost. Returns how many were accepted.
pub async fn warm_up(gateway: &Gateway, n: usize) -> usize {
    let client = generator::client();
    let mut shot = Shot::new(gateway.chat_url(), held_body("warm", 0));
    shot.headers
        .insert("x-sla", HeaderValue::from_static("24h"));
    shot.headers
        .insert("prefer", HeaderValue::from_static("respond-async"));
    shot.unique_key = true;
    shot.expect = StatusCode::ACCEPTED;
    generator::fixed_count(&client, &shot, 4, n).await.ok()
}

/// Holds `n` requests over `wire` on `gateway`, `CHUNK` at a time, each chunk once the
/// gateway has queued the previous one (bounded), so a burst does not queue on the store's
/// connection pool. The holders (one per chunk) and the queue depth reached.
pub async fn hold_on(
    gateway: &Gateway,
    tag: &str,
    wire: Wire,
    n: usize,
    base: u64,
) -> Result<(Vec<Holders>, u64, Duration), BoxError> {
    const CHUNK: usize = 200;
    let client = generator::client();
    let start = Instant::now();
    let mut all = Vec::new();
    let (mut want, mut depth) = (base, base);
    for first in (0..n).step_by(CHUNK) {
        let bodies = (first..(first + CHUNK).min(n))
            .map(|i| held_body(tag, i))
            .collect();
        let holders = hold(gateway.addr, wire, bodies).await;
        want += holders.sent as u64;
        all.push(holders);
        let limit = Duration::from_secs(60);
        depth = gateway.wait_depth(&client, want, limit).await;
        if depth < want {
            let early = all
                .iter_mut()
                .map(answered_early)
                .collect::<Vec<_>>()
                .join(" ");
            println!(
                "  note: queue depth {depth} after {} s, expected {want}; answered early: {early}; \
                 failures: {}",
                limit.as_secs(),
                all.iter()
                    .map(|h| failures_text(&h.failures))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            break;
        }
    }
    Ok((all, depth, start.elapsed()))
}

/// Statuses of the answers already in (a held request answered early was refused).
fn answered_early(h: &mut Holders) -> String {
    let mut by_status = BTreeMap::<u16, u64>::new();
    while let Ok(a) = h.answers.try_recv() {
        *by_status.entry(a.status.as_u16()).or_default() += 1;
    }
    by_status
        .iter()
        .map(|(s, n)| format!("{s} x{n}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// One memory measurement: `n` held over `wire`, on a fresh gateway.
struct Row {
    wire: Wire,
    held: u64,
    before_kib: u64,
    after_kib: u64,
    avg_body: f64,
    opened: Duration,
    failures: String,
}

impl Row {
    fn per_held_kib(&self) -> f64 {
        self.after_kib.saturating_sub(self.before_kib) as f64 / self.held.max(1) as f64
    }
}

async fn measure(env: &Env, sim: &Simulator, wire: Wire, n: usize) -> Result<Row, BoxError> {
    let vars = [("SLUICE_BATCH_MAX_WAIT", "1h")];
    let gateway = Gateway::start(env, sim.addr, Store::Sqlite, &vars).await?;
    let warmed = warm_up(&gateway, 16).await as u64;
    let client = generator::client();
    let base = gateway
        .wait_depth(&client, warmed, Duration::from_secs(10))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_kib = gateway.rss_kib()?;
    let (holders, depth, opened) = hold_on(&gateway, "mem", wire, n, base).await?;
    // Let the engine tick over the held jobs once, so their steady state is counted.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after_kib = gateway.rss_kib()?;
    let held = depth.saturating_sub(base);
    Ok(Row {
        wire,
        held,
        before_kib,
        after_kib,
        avg_body: holders.iter().map(|h| h.body_bytes).sum::<u64>() as f64
            / holders.iter().map(|h| h.sent).sum::<usize>().max(1) as f64,
        opened,
        failures: holders
            .iter()
            .map(|h| failures_text(&h.failures))
            .filter(|f| !f.is_empty())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// The memory scenario: HTTP/1.1 and HTTP/2 at 10,000 held, and HTTP/2 at 100,000.
pub async fn run(env: &Env) -> Result<(), BoxError> {
    let scale = if env.quick { 10 } else { 1 };
    // HTTP/1.1 needs a descriptor per connection on both sides.
    let h1 = (10_000 / scale).min(crate::procs::nofile().saturating_sub(2_048) as usize);
    let cases = [
        (Wire::H1, h1),
        (Wire::H2(H2_STREAMS), 10_000 / scale),
        (Wire::H2(H2_STREAMS), 100_000 / scale),
    ];
    let sim = Simulator::start(env, &[]).await?;
    let mut rows = Vec::new();
    for (wire, n) in cases {
        rows.push(measure(env, &sim, wire, n).await?);
    }
    println!(
        "\nheld: gateway memory per held deferred request (x-sla: 24h, no Prefer), fresh gateway \
         per row (SQLite store, batch max wait 1h), RSS delta / N"
    );
    println!(
        "{:<12} {:>8} {:>6} {:>10} {:>10} {:>9} {:>7} {:>10} {:>8}   {:<8} result",
        "wire",
        "held",
        "conns",
        "RSS0 MiB",
        "RSS MiB",
        "KiB/held",
        "body B",
        "minus body",
        "open s",
        "goal"
    );
    for r in &rows {
        let beyond = r.per_held_kib() - r.avg_body / 1024.0;
        let pass = r.held > 0 && beyond <= GOAL_HELD_KIB;
        println!(
            "{:<12} {:>8} {:>6} {:>10.1} {:>10.1} {:>9.2} {:>7.0} {:>10.2} {:>8.1}   {:<8} {}",
            r.wire.label(),
            r.held,
            r.wire.connections(r.held as usize),
            r.before_kib as f64 / 1024.0,
            r.after_kib as f64 / 1024.0,
            r.per_held_kib(),
            r.avg_body,
            beyond,
            r.opened.as_secs_f64(),
            format!("<= {GOAL_HELD_KIB:.0}"),
            if pass { "PASS" } else { "MISS" }
        );
        if !r.failures.is_empty() {
            println!("  {}: ended early: {}", r.wire.label(), r.failures);
        }
    }
    if let [a, b, ..] = &rows[..] {
        println!(
            "ratio HTTP/2 / HTTP/1.1 per held request: {:.3}",
            b.per_held_kib() / a.per_held_kib().max(1e-9)
        );
    }
    Ok(())
}
