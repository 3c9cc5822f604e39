//! Heap allocations per request on the interactive path, counted exactly: each proxy runs on
//! its own thread (a current-thread runtime, so all its tasks run there) and a counting
//! allocator counts only that thread's allocations; the load generator and the simulator
//! run on other threads and are not counted. Sluice (open mode, JSON and stream; a 50-client
//! policy set, JSON) against the bare hyper forwarder of the load bench on the same traffic.
//! Run with `cargo bench --bench allocs` (`-- --quick` for fewer requests). Counts, not
//! times: the figures are stable from run to run on any machine.

#[path = "load/forwarder.rs"]
mod forwarder;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sluice::cli::{Loaded, serve_on, start_simulator};
use sluice::config::Config;
use sluice::policy::{PolicySet, hash_key};
use sluice::pricing::PriceTable;
use sluice::simulate::SimConfig;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Counters per counted thread (slot 0 = not counted).
const SLOTS: usize = 8;
static ALLOCS: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
static BYTES: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    static SLOT: Cell<usize> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: every call is passed to the system allocator unchanged; counting touches only
// atomics and a const-initialised thread-local, neither of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn count(size: usize) {
    let slot = SLOT.try_with(Cell::get).unwrap_or(0);
    if slot != 0 {
        ALLOCS[slot].fetch_add(1, Relaxed);
        BYTES[slot].fetch_add(size as u64, Relaxed);
    }
}

fn read(slot: usize) -> (u64, u64) {
    (ALLOCS[slot].load(Relaxed), BYTES[slot].load(Relaxed))
}

/// Runs `server` (given its listener) on a new counted thread; returns its address and slot.
fn counted<F, Fut>(server: F) -> Result<(SocketAddr, usize), BoxError>
where
    F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let slot = NEXT_SLOT.fetch_add(1, Relaxed);
    assert!(slot < SLOTS, "too many counted servers");
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    std::thread::Builder::new()
        .name(format!("counted-{slot}"))
        .spawn(move || {
            SLOT.set(slot);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
                server(listener).await
            });
        })?;
    Ok((addr, slot))
}

fn chat_body(stream: bool) -> Bytes {
    let system = "You are a careful support classifier for an online shop. ".repeat(24);
    let body = serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": "My invoice shows a charge I do not recognise."},
        ],
        "max_tokens": 64,
        "temperature": 0.2,
        "stream": stream,
    });
    Bytes::from(serde_json::to_vec(&body).expect("static JSON"))
}

/// 50 clients, each with two routes: what a team's policy folder looks like.
fn fifty_clients() -> Result<PolicySet, BoxError> {
    let files: Vec<(String, String)> = (0..50)
        .map(|i| {
            (
                format!("team{i}.toml"),
                format!(
                    "[client]\nname = \"team{i}\"\nkeys = [\"{}\"]\n\n\
                     [[route]]\nname = \"chat\"\nmodels = [\"gpt-4o*\"]\n\n\
                     [[route]]\nname = \"embed\"\npaths = [\"/v1/embeddings\"]\n",
                    hex::encode(hash_key(&format!("sk-team-{i}")))
                ),
            )
        })
        .collect();
    Ok(PolicySet::from_sources(&files)?)
}

fn sluice(sim: &str, policies: PolicySet, db: &std::path::Path) -> Result<Loaded, BoxError> {
    let mut config = Config::load(None, &|_| None)?;
    config.use_simulator(sim);
    config.store = format!("sqlite://{}?mode=rwc", db.display());
    Ok(Loaded {
        config,
        policies,
        prices: PriceTable::builtin(),
    })
}

/// Sends `n` requests from 8 concurrent workers, `bearers` taken in turn; all must be 200.
async fn load(addr: SocketAddr, body: &Bytes, bearers: &[HeaderValue], n: usize) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let next = Arc::new(AtomicUsize::new(0));
    let bearers: Arc<Vec<HeaderValue>> = Arc::new(bearers.to_vec());
    let url: hyper::Uri = format!("http://{addr}/v1/chat/completions")
        .parse()
        .expect("uri");
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (client, next, bearers, url, body) = (
                client.clone(),
                next.clone(),
                bearers.clone(),
                url.clone(),
                body.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Relaxed);
                    if i >= n {
                        return;
                    }
                    let req = Request::post(url.clone())
                        .header(CONTENT_TYPE, "application/json")
                        .header(AUTHORIZATION, bearers[i % bearers.len()].clone())
                        .body(Full::new(body.clone()))
                        .expect("request");
                    let resp = client.request(req).await.expect("transport");
                    let status = resp.status();
                    let got = resp.into_body().collect().await.expect("body").to_bytes();
                    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&got));
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("worker");
    }
}

struct Row {
    name: &'static str,
    allocs: f64,
    bytes: f64,
}

async fn measure(
    name: &'static str,
    (addr, slot): (SocketAddr, usize),
    body: &Bytes,
    bearers: &[HeaderValue],
    n: usize,
) -> Row {
    load(addr, body, bearers, n / 4).await; // warm: pools, caches, label sets
    let (a0, b0) = read(slot);
    load(addr, body, bearers, n).await;
    let (a1, b1) = read(slot);
    Row {
        name,
        allocs: (a1 - a0) as f64 / n as f64,
        bytes: (b1 - b0) as f64 / n as f64,
    }
}

fn main() -> Result<(), BoxError> {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 2_000 } else { 20_000 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = std::env::temp_dir().join(format!("sluice-allocs-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = rt.block_on(async {
        let sim = start_simulator(SimConfig::default()).await?;
        let sim_addr = sim.addr;
        let bare = counted(move |l| async move {
            let _ = forwarder::serve(l, format!("http://{sim_addr}")).await;
        })?;
        let mut gateways = Vec::new();
        for (tag, policies) in [
            ("open", PolicySet::from_sources(&[])?),
            ("fifty", fifty_clients()?),
        ] {
            let loaded = sluice(&sim.base_url(), policies, &dir.join(format!("{tag}.db")))?;
            gateways.push(counted(move |l| async move {
                let _ = serve_on(l, loaded, std::future::pending()).await;
            })?);
        }
        for (addr, _) in std::iter::once(&bare).chain(&gateways) {
            wait_ready(*addr).await?;
        }
        let open_key = [HeaderValue::from_static("Bearer sk-bench")];
        let team_keys: Vec<HeaderValue> = (0..50)
            .map(|i| HeaderValue::try_from(format!("Bearer sk-team-{i}")).expect("header"))
            .collect();
        let (json, stream) = (chat_body(false), chat_body(true));
        let rows = vec![
            measure("bare, JSON", bare, &json, &open_key, n).await,
            measure("sluice open, JSON", gateways[0], &json, &open_key, n).await,
            measure("bare, stream", bare, &stream, &open_key, n).await,
            measure("sluice open, stream", gateways[0], &stream, &open_key, n).await,
            measure("sluice 50 clients, JSON", gateways[1], &json, &team_keys, n).await,
        ];
        Ok::<_, BoxError>(rows)
    });
    let _ = std::fs::remove_dir_all(&dir);
    let rows = result?;
    println!(
        "\nheap allocations per request on the proxy's thread ({n} requests, 8 concurrent, keep-alive; body {} bytes)",
        chat_body(false).len()
    );
    println!("{:<26} {:>12} {:>14}", "target", "allocs/req", "bytes/req");
    for r in &rows {
        println!("{:<26} {:>12.1} {:>14.0}", r.name, r.allocs, r.bytes);
    }
    Ok(())
}

async fn wait_ready(addr: SocketAddr) -> Result<(), BoxError> {
    for _ in 0..600 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Err(format!("{addr} not listening after 30 s").into())
}
