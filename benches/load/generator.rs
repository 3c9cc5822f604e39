//! The load generator: one pooled HTTP/1 client, three kinds of load, and the
//! percentiles of what came back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Distinct error messages kept per run; the rest are counted under "other".
const MAX_ERROR_KINDS: usize = 8;

/// A pooled HTTP/1 client with TCP_NODELAY.
pub fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(usize::MAX)
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector)
}

/// One request template: where to POST which bytes, and which status counts as success.
#[derive(Clone)]
pub struct Shot {
    pub url: Uri,
    pub body: Bytes,
    /// Sent in addition to `Content-Type` and `Authorization`.
    pub headers: HeaderMap,
    /// Give every request its own `Idempotency-Key`.
    pub unique_key: bool,
    /// `Authorization` values taken in turn (many clients); empty: `Bearer sk-bench`.
    pub bearers: Arc<[HeaderValue]>,
    pub expect: StatusCode,
}

impl Shot {
    /// A plain POST that expects 200.
    pub fn new(url: Uri, body: Bytes) -> Self {
        Shot {
            url,
            body,
            headers: HeaderMap::new(),
            unique_key: false,
            bearers: Arc::new([]),
            expect: StatusCode::OK,
        }
    }
}

/// Sequence of the `Idempotency-Key`s this process sends.
static KEY_SEQ: AtomicU64 = AtomicU64::new(0);
/// Which of a shot's `bearers` the next request takes.
static BEARER_SEQ: AtomicUsize = AtomicUsize::new(0);

/// What one run measured. `latencies` and `ttfb` are sorted by [`Sample::finish`].
#[derive(Default)]
pub struct Sample {
    /// Total time of every successful request.
    pub latencies: Vec<Duration>,
    /// Time to the first body chunk containing `data:` (streaming runs only).
    pub ttfb: Vec<Duration>,
    /// Error message -> count.
    pub errors: BTreeMap<String, u64>,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl Sample {
    fn record(&mut self, outcome: Result<Timing, String>) {
        match outcome {
            Ok(t) => {
                self.latencies.push(t.total);
                if let Some(ttfb) = t.ttfb {
                    self.ttfb.push(ttfb);
                }
            }
            Err(e) => self.add_error(e, 1),
        }
    }

    fn add_error(&mut self, e: String, n: u64) {
        let key = if self.errors.len() < MAX_ERROR_KINDS || self.errors.contains_key(&e) {
            e
        } else {
            "other".to_owned()
        };
        *self.errors.entry(key).or_default() += n;
    }

    fn merge(&mut self, other: Sample) {
        self.latencies.extend(other.latencies);
        self.ttfb.extend(other.ttfb);
        for (e, n) in other.errors {
            self.add_error(e, n);
        }
    }

    fn finish(mut self, elapsed: Duration) -> Self {
        self.latencies.sort_unstable();
        self.ttfb.sort_unstable();
        self.elapsed = elapsed;
        self
    }

    pub fn ok(&self) -> usize {
        self.latencies.len()
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Successful requests per second.
    pub fn rps(&self) -> f64 {
        self.ok() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The `p`-quantile (0..=1, nearest rank) of a sorted slice; zero when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

struct Timing {
    total: Duration,
    ttfb: Option<Duration>,
}

/// Sends one request and reads the whole answer; times are measured from `start`.
async fn send(client: &HttpClient, shot: &Shot, start: Instant) -> Result<Timing, String> {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(shot.url.clone())
        .header(CONTENT_TYPE, "application/json")
        .header(AUTHORIZATION, "Bearer sk-bench")
        .body(Full::new(shot.body.clone()))
        .map_err(|e| format!("request: {e}"))?;
    let headers = req.headers_mut();
    if !shot.bearers.is_empty() {
        let i = BEARER_SEQ.fetch_add(1, Ordering::Relaxed) % shot.bearers.len();
        headers.insert(AUTHORIZATION, shot.bearers[i].clone());
    }
    for (name, value) in &shot.headers {
        headers.insert(name, value.clone());
    }
    if shot.unique_key {
        let n = KEY_SEQ.fetch_add(1, Ordering::Relaxed);
        let key = format!("bench-{}-{n}", std::process::id());
        let value = HeaderValue::from_str(&key).map_err(|e| format!("key: {e}"))?;
        headers.insert("idempotency-key", value);
    }
    let resp = client
        .request(req)
        .await
        .map_err(|e| format!("transport: {e:?}"))?;
    let status = resp.status();
    let mut body = resp.into_body();
    if status != shot.expect {
        let bytes = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(160)]).into_owned();
        return Err(format!("{status}: {text}"));
    }
    let mut ttfb = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("body: {e}"))?;
        if ttfb.is_none() {
            if let Some(data) = frame.data_ref() {
                if data.windows(5).any(|w| w == b"data:") {
                    ttfb = Some(start.elapsed());
                }
            }
        }
    }
    Ok(Timing {
        total: start.elapsed(),
        ttfb,
    })
}

/// Closed loop: `workers` tasks each send back to back until `duration` is over.
pub async fn closed_loop(
    client: &HttpClient,
    shot: &Shot,
    workers: usize,
    duration: Duration,
) -> Sample {
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (client, shot) = (client.clone(), shot.clone());
            tokio::spawn(async move {
                let mut sample = Sample::default();
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    sample.record(send(&client, &shot, t0).await);
                }
                sample
            })
        })
        .collect();
    let mut all = Sample::default();
    for task in tasks {
        all.merge(task.await.expect("worker panicked"));
    }
    all.finish(start.elapsed())
}

/// Open loop: one request every `1/rate` s regardless of answers, each timed from its
/// scheduled send time (no coordinated omission).
pub async fn open_loop(client: &HttpClient, shot: &Shot, rate: f64, duration: Duration) -> Sample {
    let mut samples = open_loops(client, std::slice::from_ref(shot), rate, duration).await;
    samples.pop().unwrap_or_default()
}

/// [`open_loop`] on several targets at once, one `Sample` per shot: each gets `rate`
/// requests per second, the shots' send times spread evenly over each interval and their
/// order rotated every interval. Noise that comes and goes on a shared machine (another
/// tenant, a timer storm) then falls on every target alike, which running them one after
/// another cannot promise; at a low rate their requests hardly ever overlap.
pub async fn open_loops(
    client: &HttpClient,
    shots: &[Shot],
    rate: f64,
    duration: Duration,
) -> Vec<Sample> {
    let count = (rate * duration.as_secs_f64()).round() as u32;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let n = shots.len().max(1) as u32;
    let slot = interval / n;
    let first = tokio::time::Instant::now() + Duration::from_millis(5);
    let mut tasks: Vec<Vec<_>> = shots
        .iter()
        .map(|_| Vec::with_capacity(count as usize))
        .collect();
    for i in 0..count {
        for j in 0..n {
            let k = ((i + j) % n) as usize;
            let at = first + interval * i + slot * j;
            tokio::time::sleep_until(at).await;
            let (client, shot) = (client.clone(), shots[k].clone());
            tasks[k].push(tokio::spawn(async move {
                send(&client, &shot, at.into_std()).await
            }));
        }
    }
    let mut samples = Vec::with_capacity(tasks.len());
    for target in tasks {
        let mut all = Sample::default();
        for task in target {
            all.record(task.await.expect("request task panicked"));
        }
        samples.push(all);
    }
    let elapsed = first.elapsed();
    samples.into_iter().map(|s| s.finish(elapsed)).collect()
}

/// `total` requests (meant to be streaming) shared by `workers` tasks.
pub async fn fixed_count(client: &HttpClient, shot: &Shot, workers: usize, total: usize) -> Sample {
    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (client, shot, next) = (client.clone(), shot.clone(), next.clone());
            tokio::spawn(async move {
                let mut sample = Sample::default();
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    sample.record(send(&client, &shot, Instant::now()).await);
                }
                sample
            })
        })
        .collect();
    let mut all = Sample::default();
    for task in tasks {
        all.merge(task.await.expect("worker panicked"));
    }
    all.finish(start.elapsed())
}

/// GETs `url` with a bearer header; true on 200.
pub async fn get_ok(client: &HttpClient, url: &Uri) -> bool {
    let Ok(req) = Request::get(url.clone())
        .header(AUTHORIZATION, "Bearer sk-bench")
        .body(Full::new(Bytes::new()))
    else {
        return false;
    };
    match tokio::time::timeout(Duration::from_secs(2), client.request(req)).await {
        Ok(Ok(resp)) => {
            let ok = resp.status() == StatusCode::OK;
            let _ = resp.into_body().collect().await;
            ok
        }
        _ => false,
    }
}
