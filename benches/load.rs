//! Load benchmark: the gateway against a bare forwarder and the provider itself.
//!
//! `cargo bench --bench load [-- --quick]` builds `sluice`, starts a simulated
//! provider (`sluice simulate`, fixed 20 ms latency), the gateway (`sluice serve`)
//! and a bare hyper forwarder (this binary re-executed with `--bare-forwarder`), then
//! drives each of them with the same load:
//!
//! * A: non-streaming chat completions from a fixed number of concurrent workers;
//! * B: a fixed request rate (open loop, timed from the scheduled send time);
//! * C: streaming chat completions, time to the first `data:` chunk;
//! * D: durable enqueue of deferred requests (`x-sla: 24h`, 202) against interactive
//!   requests to the same gateway;
//! * E: the gateway's memory per held deferred request.
//!
//! The provider's 20 ms latency makes A-C a realism check: at 64 connections every target
//! is capped near 3,200 requests/s and idle. `--cpu` measures the gateway's own cost
//! instead (zero-latency provider, pinned cores, CPU µs per request; `load/cpu.rs`). `--cpu --profile SECS`
//! loads each target alone for SECS, printing its pid first, for `perf record -p`.
//!
//! It prints one table per scenario and the sluice/bare and sluice/direct ratios
//! with PASS/MISS against the goals. A MISS still exits 0: this is a measurement.
//! Every gateway gets its own fresh SQLite store in the temp dir, deleted afterwards.

#[path = "load/cpu.rs"]
mod cpu;
#[path = "load/deferred.rs"]
mod deferred;
#[path = "load/forwarder.rs"]
mod forwarder;
#[path = "load/generator.rs"]
mod generator;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use generator::{HttpClient, Sample, Shot, percentile};
use hyper::Uri;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

const SYSTEM_PROMPT: &str = "You are a concise support assistant for Acme Cloud. Answer in plain \
     English, in at most three sentences, point to the relevant documentation page when you know \
     it, and never invent account details, prices or deadlines.";
const USER_MESSAGE: &str = "My nightly backup job started failing with 'permission denied' right \
     after I rotated the storage access key. What should I check first?";

/// Goals, as multiples of the bare forwarder.
const GOAL_THROUGHPUT: f64 = 0.8;
const GOAL_LATENCY: f64 = 1.3;
const GOAL_TTFB: f64 = 1.2;

/// How much load, and for how long.
struct Plan {
    workers: usize,
    closed: Duration,
    closed_warmup: Duration,
    rate: f64,
    open: Duration,
    open_warmup: Duration,
    stream_workers: usize,
    streams: usize,
    stream_warmup: usize,
    enqueue: Duration,
    enqueue_warmup: Duration,
    held: usize,
    held_batch: usize,
}

impl Plan {
    fn new(quick: bool) -> Self {
        let pick =
            |full: f64, quick_s: f64| Duration::from_secs_f64(if quick { quick_s } else { full });
        Plan {
            workers: 64,
            closed: pick(8.0, 2.0),
            closed_warmup: pick(1.0, 0.3),
            rate: 200.0,
            open: pick(5.0, 1.0),
            open_warmup: pick(0.5, 0.25),
            stream_workers: 8,
            streams: if quick { 48 } else { 200 },
            stream_warmup: if quick { 8 } else { 16 },
            enqueue: pick(5.0, 1.5),
            enqueue_warmup: pick(0.5, 0.25),
            held: 10_000,
            held_batch: 500,
        }
    }
}

/// Child processes, killed when dropped (also on panic).
#[derive(Default)]
struct Procs(Vec<(&'static str, Child)>);

impl Procs {
    /// Starts a child and returns its pid.
    fn spawn(&mut self, name: &'static str, cmd: &mut Command) -> Result<u32, BoxError> {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let pid = child.id();
        self.0.push((name, child));
        Ok(pid)
    }

    /// A message naming the first child that has already exited.
    fn exited(&mut self) -> Option<String> {
        self.0
            .iter_mut()
            .find_map(|(name, child)| match child.try_wait() {
                Ok(Some(status)) => Some(format!("{name} exited early ({status})")),
                _ => None,
            })
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn main() -> ExitCode {
    match run_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--bare-forwarder") {
        let (Some(listen), Some(upstream)) = (args.get(1), args.get(2)) else {
            return Err("usage: --bare-forwarder LISTEN UPSTREAM".into());
        };
        return forwarder::run(listen.parse()?, upstream.clone());
    }
    let quick = args.iter().any(|a| a == "--quick");
    let plan = Plan::new(quick);
    let sluice = build_sluice()?;
    if args.iter().any(|a| a == "--cpu") {
        let profile = match args.iter().position(|a| a == "--profile") {
            Some(i) => Some(
                args.get(i + 1)
                    .and_then(|s| s.parse().ok())
                    .ok_or("usage: --cpu --profile SECS")?,
            ),
            None => None,
        };
        return cpu::run(&sluice, quick, profile);
    }

    let [sim, bare, gateway] = free_addrs()?;
    // Declared before `procs`, so deleted after the gateway is killed.
    let store = deferred::TempStore::new("serve");
    let mut procs = Procs::default();
    procs.spawn(
        "simulator",
        Command::new(&sluice)
            .args(["simulate", "--listen", &sim.to_string()])
            .args(["--latency", "20ms", "--stream-chunk-delay", "5ms"])
            .env("RUST_LOG", "warn"),
    )?;
    procs.spawn(
        "sluice serve",
        &mut deferred::serve_command(&sluice, gateway, sim, &store),
    )?;
    procs.spawn(
        "bare forwarder",
        Command::new(std::env::current_exe()?).args([
            "--bare-forwarder",
            &bare.to_string(),
            &format!("http://{sim}"),
        ]),
    )?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let env = deferred::Env {
        sluice: &sluice,
        sim,
    };
    let mut verdicts = Verdicts::default();
    let mut all_answered = rt.block_on(async {
        let client = generator::client();
        wait_all_ready(&client, &mut procs, sim, gateway, bare).await?;
        let targets = [("direct", sim), ("bare", bare), ("sluice", gateway)];
        let answered = run(&plan, quick, &targets, &mut verdicts).await?;
        let plain = chat_body(false);
        Ok::<_, BoxError>(deferred::enqueue(&plan, &env, &plain, &mut verdicts).await? && answered)
    })?;
    drop(rt);
    // E runs on one thread: the bench side only holds connections open.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    all_answered &= rt.block_on(deferred::held_memory(&plan, &env, &mut verdicts))?;
    drop(rt);
    drop(procs);
    println!(
        "\nsummary: {} PASS, {} MISS (A-C relative to the bare forwarder, D to interactive \
         requests, E absolute)",
        verdicts.pass, verdicts.miss
    );
    if !all_answered {
        return Err("every request to some target failed (see the errors above)".into());
    }
    Ok(())
}

/// Builds the `sluice` binary in release mode and returns its path.
fn build_sluice() -> Result<PathBuf, BoxError> {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--bin", "sluice"])
        .current_dir(&manifest)
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build --release --bin sluice failed ({status})").into());
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| manifest.join("target"), |d| manifest.join(d));
    let bin = target
        .join("release")
        .join(format!("sluice{}", std::env::consts::EXE_SUFFIX));
    if !bin.is_file() {
        return Err(format!("{} not found after the build", bin.display()).into());
    }
    Ok(bin)
}

/// Three distinct free loopback ports (all held while picking, then released).
/// `N` distinct free loopback ports (all bound at once, then released).
fn free_addrs<const N: usize>() -> Result<[SocketAddr; N], BoxError> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut addrs = [SocketAddr::from(([127, 0, 0, 1], 0)); N];
    for (a, l) in addrs.iter_mut().zip(&listeners) {
        *a = l.local_addr()?;
    }
    Ok(addrs)
}

/// Waits for the simulator, the gateway and the bare forwarder to answer.
async fn wait_all_ready(
    client: &HttpClient,
    procs: &mut Procs,
    sim: SocketAddr,
    gateway: SocketAddr,
    bare: SocketAddr,
) -> Result<(), BoxError> {
    let sim_url = format!("http://{sim}/v1/models");
    wait_ready(client, procs, "simulator", sim_url).await?;
    let gateway_url = format!("http://{gateway}/healthz");
    wait_ready(client, procs, "sluice serve", gateway_url).await?;
    let bare_url = format!("http://{bare}/v1/models");
    wait_ready(client, procs, "bare forwarder", bare_url).await
}

pub(crate) async fn wait_ready(
    client: &HttpClient,
    procs: &mut Procs,
    name: &str,
    url: String,
) -> Result<(), BoxError> {
    let url: Uri = url.parse()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(msg) = procs.exited() {
            return Err(msg.into());
        }
        if generator::get_ok(client, &url).await {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{name} not ready at {url} after 60 s").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn chat_body(stream: bool) -> Bytes {
    let body = serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": USER_MESSAGE},
        ],
        "max_tokens": 64,
        "temperature": 0.2,
        "stream": stream,
    });
    Bytes::from(serde_json::to_vec(&body).expect("static JSON"))
}

fn shot(addr: SocketAddr, body: &Bytes) -> Shot {
    let url = format!("http://{addr}/v1/chat/completions");
    Shot::new(url.parse().expect("valid URI"), body.clone())
}

/// Runs scenarios A-C and prints them; false if some target answered nothing.
async fn run(
    plan: &Plan,
    quick: bool,
    targets: &[(&'static str, SocketAddr); 3],
    verdicts: &mut Verdicts,
) -> Result<bool, BoxError> {
    let plain = chat_body(false);
    let streaming = chat_body(true);
    let mut all_answered = true;
    println!(
        "\nsluice load bench{}: provider = sluice simulate --latency 20ms --stream-chunk-delay 5ms; \
         body {} bytes; loopback, HTTP/1.1, pooled keep-alive",
        if quick { " (--quick)" } else { "" },
        plain.len()
    );

    let mut a = Vec::new();
    for &(name, addr) in targets {
        let client = generator::client();
        let shot = shot(addr, &plain);
        generator::closed_loop(&client, &shot, plan.workers, plan.closed_warmup).await;
        a.push((
            name,
            generator::closed_loop(&client, &shot, plan.workers, plan.closed).await,
        ));
    }
    println!(
        "\nA. non-streaming chat, {} concurrent workers, {:.1} s per target",
        plan.workers,
        plan.closed.as_secs_f64()
    );
    print_latency_table(&a);
    let [d, b, s] = [&a[0].1, &a[1].1, &a[2].1];
    print_ratio_header();
    verdicts.add(ratio(
        "throughput",
        s.rps(),
        b.rps(),
        d.rps(),
        Goal::AtLeast(GOAL_THROUGHPUT),
    ));
    latency_verdicts(verdicts, s, b, d);
    all_answered &= print_errors(&a);

    let mut bb = Vec::new();
    for &(name, addr) in targets {
        let client = generator::client();
        let shot = shot(addr, &plain);
        generator::open_loop(&client, &shot, plan.rate, plan.open_warmup).await;
        bb.push((
            name,
            generator::open_loop(&client, &shot, plan.rate, plan.open).await,
        ));
    }
    println!(
        "\nB. fixed rate (open loop), {:.0} req/s for {:.1} s per target, timed from the scheduled send",
        plan.rate,
        plan.open.as_secs_f64()
    );
    print_latency_table(&bb);
    let [d, b, s] = [&bb[0].1, &bb[1].1, &bb[2].1];
    print_ratio_header();
    latency_verdicts(verdicts, s, b, d);
    all_answered &= print_errors(&bb);

    let mut c = Vec::new();
    for &(name, addr) in targets {
        let client = generator::client();
        let shot = shot(addr, &streaming);
        generator::fixed_count(&client, &shot, plan.stream_workers, plan.stream_warmup).await;
        c.push((
            name,
            generator::fixed_count(&client, &shot, plan.stream_workers, plan.streams).await,
        ));
    }
    println!(
        "\nC. streaming chat, {} requests per target, {} concurrent; TTFB = first chunk with `data:`",
        plan.streams, plan.stream_workers
    );
    println!(
        "{:<8} {:>12} {:>12} {:>14} {:>7}",
        "target", "TTFB p50 ms", "TTFB p99 ms", "total p50 ms", "errors"
    );
    for (name, s) in &c {
        println!(
            "{:<8} {:>12.2} {:>12.2} {:>14.2} {:>7}",
            name,
            p50(&s.ttfb),
            p99(&s.ttfb),
            p50(&s.latencies),
            s.error_count()
        );
    }
    let [d, b, s] = [&c[0].1, &c[1].1, &c[2].1];
    print_ratio_header();
    verdicts.add(ratio(
        "TTFB p50",
        p50(&s.ttfb),
        p50(&b.ttfb),
        p50(&d.ttfb),
        Goal::AtMost(GOAL_TTFB),
    ));
    verdicts.add(ratio(
        "TTFB p99",
        p99(&s.ttfb),
        p99(&b.ttfb),
        p99(&d.ttfb),
        Goal::AtMost(GOAL_TTFB),
    ));
    ratio(
        "total p50",
        p50(&s.latencies),
        p50(&b.latencies),
        p50(&d.latencies),
        Goal::None,
    );
    all_answered &= print_errors(&c);
    Ok(all_answered)
}

fn p50(sorted: &[Duration]) -> f64 {
    ms(percentile(sorted, 0.50))
}

fn p99(sorted: &[Duration]) -> f64 {
    ms(percentile(sorted, 0.99))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn print_latency_table(rows: &[(&str, Sample)]) {
    println!(
        "{:<8} {:>9} {:>9} {:>9} {:>7}",
        "target", "RPS", "p50 ms", "p99 ms", "errors"
    );
    for (name, s) in rows {
        println!(
            "{:<8} {:>9.1} {:>9.2} {:>9.2} {:>7}",
            name,
            s.rps(),
            p50(&s.latencies),
            p99(&s.latencies),
            s.error_count()
        );
    }
}

/// Prints the error messages of every row; false if some row has no success at all.
fn print_errors(rows: &[(&str, Sample)]) -> bool {
    let mut all_answered = true;
    for (name, s) in rows {
        for (msg, n) in &s.errors {
            println!("  {name} error x{n}: {msg}");
        }
        if s.ok() == 0 {
            println!("  {name}: no successful request");
            all_answered = false;
        }
    }
    all_answered
}

enum Goal {
    AtLeast(f64),
    AtMost(f64),
    None,
}

fn print_ratio_header() {
    println!(
        "{:<12} {:>12} {:>14}   {:<14} result",
        "ratio", "sluice/bare", "sluice/direct", "goal"
    );
}

/// The p50 and p99 latency ratios of one scenario, each against the latency goal.
fn latency_verdicts(
    verdicts: &mut Verdicts,
    s: &generator::Sample,
    b: &generator::Sample,
    d: &generator::Sample,
) {
    for (label, pick) in [("p50", p50 as fn(&[Duration]) -> f64), ("p99", p99)] {
        verdicts.add(ratio(
            label,
            pick(&s.latencies),
            pick(&b.latencies),
            pick(&d.latencies),
            Goal::AtMost(GOAL_LATENCY),
        ));
    }
}

/// Prints one ratio line; `Some(pass)` when the metric has a goal.
fn ratio(label: &str, sluice: f64, bare: f64, direct: f64, goal: Goal) -> Option<bool> {
    let vs_bare = sluice / bare;
    let vs_direct = sluice / direct;
    let (goal_text, pass) = match goal {
        Goal::AtLeast(g) => (format!(">= {g:.2}x bare"), Some(vs_bare >= g)),
        Goal::AtMost(g) => (format!("<= {g:.2}x bare"), Some(vs_bare <= g)),
        Goal::None => ("-".to_owned(), None),
    };
    let result = match pass {
        Some(true) => "PASS",
        Some(false) => "MISS",
        None => "",
    };
    println!("{label:<12} {vs_bare:>12.3} {vs_direct:>14.3}   {goal_text:<14} {result}");
    pass
}

#[derive(Default)]
struct Verdicts {
    pass: usize,
    miss: usize,
}

impl Verdicts {
    fn add(&mut self, verdict: Option<bool>) {
        match verdict {
            Some(true) => self.pass += 1,
            Some(false) => self.miss += 1,
            None => {}
        }
    }
}
