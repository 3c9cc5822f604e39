//! `--cpu`: what the gateway costs in CPU, not what the upstream costs in waiting. The
//! simulator answers at once (`--latency 0ms`); the gateway and the bare forwarder are
//! pinned to core 0, this load generator and the simulator to core 1 (`taskset`,
//! `sched_setaffinity`). Each pass drives each proxy in turn to saturation at fixed
//! concurrency, reading its CPU time from `/proc/<pid>/stat` before and after (CPU µs per
//! request is comparable even when the generator, not the proxy, is the limit); then all
//! of them at once at a fixed rate, their requests interleaved, for latency. Several
//! passes, medians reported. On a machine with fewer than two
//! CPUs nothing is pinned, and the table says so.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use hyper::header::HeaderValue;

use super::deferred::{self, TempStore};
use super::generator::{self, percentile};
use super::{
    BoxError, GOAL_LATENCY, GOAL_THROUGHPUT, GOAL_TTFB, Procs, chat_body, free_addrs, shot,
    wait_all_ready,
};

/// Goal when the bare forwarder is limited by the generator: CPU per request.
const GOAL_CPU: f64 = 1.25;

pub struct CpuPlan {
    pub passes: usize,
    pub workers: usize,
    pub closed: Duration,
    pub warmup: Duration,
    pub rate: f64,
    pub open: Duration,
    /// Streams per pass sent 8 at a time (a saturation figure, for information), timed
    /// to their first `data:` chunk. The time-to-first-byte goal is judged at `rate`.
    pub streams: usize,
    /// `--profile SECS`: only a closed loop of this length per target, announced with the
    /// target's pid first, so `perf record -p` or `strace -c -p` can watch one target alone.
    pub profile: Option<Duration>,
}

impl CpuPlan {
    pub fn new(quick: bool) -> CpuPlan {
        CpuPlan {
            passes: if quick { 1 } else { 9 },
            workers: 64,
            closed: Duration::from_secs(2),
            warmup: Duration::from_millis(300),
            rate: 200.0,
            open: Duration::from_secs_f64(if quick { 2.0 } else { 3.5 }),
            streams: if quick { 400 } else { 600 },
            profile: None,
        }
    }
}

/// Every latency sample of one target over all passes: percentiles are taken over the
/// pool, not per pass (a p99 of 700 samples is the 7th worst and swings with one hiccup).
#[derive(Default, Clone)]
struct Pool {
    latencies: Vec<Duration>,
    ttfb: Vec<Duration>,
}

impl Pool {
    fn percentile(v: &[Duration], p: f64) -> f64 {
        let mut v = v.to_vec();
        v.sort_unstable();
        ms(percentile(&v, p))
    }
}

#[derive(Default, Clone, Copy)]
struct Pass {
    rps: f64,
    cpu_us: f64,
    /// Time to first byte with 8 streams in flight back to back: the proxy's core is then
    /// saturated, so this tracks CPU per request more than latency.
    ttfb_busy_p50_ms: f64,
}

/// Whether this machine has two cores to pin to.
fn pinnable() -> bool {
    std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
}

/// Pins the calling process (and the threads it creates from now on) to one core.
fn pin_self(core: usize) -> Result<(), BoxError> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and sched_setaffinity only
    // read and write that set, for this process (pid 0).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(format!("sched_setaffinity: {}", std::io::Error::last_os_error()).into());
        }
    }
    Ok(())
}

/// `cmd` run on `core` through `taskset` (which execs it: the pid stays the program's).
fn pinned(core: Option<usize>, cmd: Command) -> Command {
    let Some(core) = core else {
        return cmd;
    };
    let mut t = Command::new("taskset");
    t.args(["-c", &core.to_string()]).arg(cmd.get_program());
    t.args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => t.env(k, v),
            None => t.env_remove(k),
        };
    }
    t
}

/// User + system CPU time of a process, in microseconds.
fn cpu_us(pid: u32) -> Result<f64, BoxError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or("unreadable /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks * 1e6 / hz)
}

/// What one target is sent: its address, pid and the `Authorization` values to rotate.
struct Target {
    name: &'static str,
    addr: SocketAddr,
    pid: u32,
    bearers: Arc<[HeaderValue]>,
}

impl Target {
    fn shot(&self, stream: bool) -> generator::Shot {
        let mut s = shot(self.addr, &chat_body(stream));
        s.bearers = self.bearers.clone();
        s
    }
}

/// A closed loop on one target for `secs`, announced first: for profilers, not figures.
async fn profile(t: &Target, secs: Duration) -> Result<(), BoxError> {
    let client = generator::client();
    let json = t.shot(false);
    generator::closed_loop(&client, &json, 64, Duration::from_millis(500)).await;
    println!(
        "profile: {} is pid {}, loaded for {secs:?} from now",
        t.name, t.pid
    );
    let before = cpu_us(t.pid)?;
    let closed = generator::closed_loop(&client, &json, 64, secs).await;
    let spent = cpu_us(t.pid)? - before;
    println!(
        "profile: {} served {} ({:.0}/s), {:.1} CPU us/req",
        t.name,
        closed.ok(),
        closed.rps(),
        spent / closed.ok().max(1) as f64
    );
    Ok(())
}

/// One pass's saturation figures for one target: closed loops, one target at a time (the
/// proxy core must be the limit).
async fn saturate(plan: &CpuPlan, t: &Target, p: &mut Pass) -> Result<(), BoxError> {
    let client = generator::client();
    let json = t.shot(false);
    generator::closed_loop(&client, &json, plan.workers, plan.warmup).await;
    let before = cpu_us(t.pid)?;
    let closed = generator::closed_loop(&client, &json, plan.workers, plan.closed).await;
    let spent = cpu_us(t.pid)? - before;
    if closed.ok() == 0 {
        return Err(format!("no request to {} succeeded: {:?}", t.name, closed.errors).into());
    }
    let busy = generator::fixed_count(&client, &t.shot(true), 8, plan.streams).await;
    if busy.ttfb.is_empty() {
        return Err(format!("no stream from {} succeeded: {:?}", t.name, busy.errors).into());
    }
    p.rps = closed.rps();
    p.cpu_us = spent / closed.ok() as f64;
    p.ttfb_busy_p50_ms = ms(percentile(&busy.ttfb, 0.50));
    Ok(())
}

/// One pass's latency samples, into `pools`: every target at `plan.rate` at the same time
/// (interleaved, see [`generator::open_loops`]): JSON, then streams timed to their first
/// event. Streams are judged at a fixed rate like the JSON figures: back to back against a
/// zero-latency upstream they queue on the proxy's core and measure its throughput again.
async fn latencies(plan: &CpuPlan, targets: &[Target], pools: &mut [Pool]) -> Result<(), BoxError> {
    let client = generator::client();
    let json: Vec<_> = targets.iter().map(|t| t.shot(false)).collect();
    let stream: Vec<_> = targets.iter().map(|t| t.shot(true)).collect();
    let opens = generator::open_loops(&client, &json, plan.rate, plan.open).await;
    let streams = generator::open_loops(&client, &stream, plan.rate, plan.open).await;
    let each = targets.iter().zip(pools).zip(opens).zip(streams);
    for (((t, pool), open), streams) in each {
        if open.ok() == 0 || streams.ttfb.is_empty() {
            return Err(format!(
                "at {} req/s, nothing from {} succeeded: {:?} {:?}",
                plan.rate, t.name, open.errors, streams.errors
            )
            .into());
        }
        pool.latencies.extend(open.latencies);
        pool.ttfb.extend(streams.ttfb);
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A policy folder of 50 clients with two routes each, and their keys as bearer values.
fn fifty_clients(dir: &Path) -> Result<Arc<[HeaderValue]>, BoxError> {
    use sha2::Digest;
    std::fs::create_dir_all(dir)?;
    let mut bearers = Vec::new();
    for i in 0..50 {
        let key = format!("sk-team-{i}");
        let digest = hex::encode(sha2::Sha256::digest(key.as_bytes()));
        std::fs::write(
            dir.join(format!("team{i}.toml")),
            format!(
                "[client]\nname = \"team{i}\"\nkeys = [\"{digest}\"]\n\n\
                 [[route]]\nname = \"chat\"\nmodels = [\"gpt-4o*\"]\n\n\
                 [[route]]\nname = \"embed\"\npaths = [\"/v1/embeddings\"]\n"
            ),
        )?;
        bearers.push(HeaderValue::try_from(format!("Bearer {key}"))?);
    }
    Ok(bearers.into())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(sluice: &Path, quick: bool, profile_secs: Option<u64>) -> Result<(), BoxError> {
    let mut plan = CpuPlan::new(quick);
    plan.profile = profile_secs.map(Duration::from_secs);
    let pin = pinnable();
    let (proxy_core, load_core) = if pin {
        (Some(0), Some(1))
    } else {
        (None, None)
    };
    if let Some(core) = load_core {
        pin_self(core)?;
    }
    let [sim, bare, open, fifty] = free_addrs()?;
    let (open_store, fifty_store) = (TempStore::new("cpu-open"), TempStore::new("cpu-fifty"));
    let policies = std::env::temp_dir().join(format!("sluice-cpu-policies-{}", std::process::id()));
    let team_keys = fifty_clients(&policies)?;
    let mut procs = Procs::default();
    let mut simulate = Command::new(sluice);
    simulate
        .args(["simulate", "--listen", &sim.to_string(), "--latency", "0ms"])
        .env("RUST_LOG", "warn");
    procs.spawn("simulator", &mut pinned(load_core, simulate))?;
    let serve = deferred::serve_command(sluice, open, sim, &open_store);
    let open_pid = procs.spawn("sluice serve (open)", &mut pinned(proxy_core, serve))?;
    let mut serve = deferred::serve_command(sluice, fifty, sim, &fifty_store);
    serve.env("SLUICE_POLICIES", &policies);
    let fifty_pid = procs.spawn("sluice serve (50 clients)", &mut pinned(proxy_core, serve))?;
    let mut forward = Command::new(std::env::current_exe()?);
    forward.args([
        "--bare-forwarder",
        &bare.to_string(),
        &format!("http://{sim}"),
    ]);
    let bare_pid = procs.spawn("bare forwarder", &mut pinned(proxy_core, forward))?;
    let targets = [
        Target {
            name: "bare",
            addr: bare,
            pid: bare_pid,
            bearers: Arc::new([]),
        },
        Target {
            name: "sluice open",
            addr: open,
            pid: open_pid,
            bearers: Arc::new([]),
        },
        Target {
            name: "sluice 50 clients",
            addr: fifty,
            pid: fifty_pid,
            bearers: team_keys,
        },
    ];

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (passes, pools) = rt.block_on(async {
        let client = generator::client();
        wait_all_ready(&client, &mut procs, sim, open, bare).await?;
        let ready = format!("http://{fifty}/healthz");
        super::wait_ready(&client, &mut procs, "sluice serve (50 clients)", ready).await?;
        let mut passes: Vec<Vec<Pass>> = vec![Vec::new(); targets.len()];
        let mut pools = vec![Pool::default(); targets.len()];
        if let Some(secs) = plan.profile {
            for t in &targets {
                profile(t, secs).await?;
            }
            return Ok((passes, pools));
        }
        for i in 0..plan.passes {
            let mut pass = vec![Pass::default(); targets.len()];
            // Saturation runs one target at a time; the order turns every pass so that
            // none is always first after the latency phase (or always last).
            for k in (0..targets.len()).map(|j| (i + j) % targets.len()) {
                saturate(&plan, &targets[k], &mut pass[k]).await?;
            }
            latencies(&plan, &targets, &mut pools).await?;
            for (all, p) in passes.iter_mut().zip(pass) {
                all.push(p);
            }
        }
        Ok::<_, BoxError>((passes, pools))
    })?;
    drop(rt);
    drop(procs);
    let _ = std::fs::remove_dir_all(&policies);
    if plan.profile.is_some() {
        return Ok(());
    }
    report(
        &plan,
        pin,
        chat_body(false).len(),
        &targets,
        &passes,
        &pools,
    );
    Ok(())
}

fn report(
    plan: &CpuPlan,
    pinned: bool,
    body: usize,
    targets: &[Target],
    passes: &[Vec<Pass>],
    pools: &[Pool],
) {
    let med = |v: &[Pass], f: fn(&Pass) -> f64| median(v.iter().map(f).collect());
    println!(
        "\nCPU bench: zero-latency simulator; {}; chat body {body} bytes; ledger on; {} passes: \
         saturation medians, latency percentiles over every pass's samples",
        if pinned {
            "proxies pinned to core 0, generator and simulator to core 1"
        } else {
            "NOT pinned (fewer than 2 CPUs)"
        },
        plan.passes
    );
    println!(
        "{:<18} {:>9} {:>11} {:>11} {:>11} {:>12} {:>12} {:>13}",
        "target",
        "sat RPS",
        "CPU us/req",
        "p50 ms@200",
        "p99 ms@200",
        "TTFB p50@200",
        "TTFB p99@200",
        "TTFB p50 busy"
    );
    for ((t, v), pool) in targets.iter().zip(passes).zip(pools) {
        println!(
            "{:<18} {:>9.0} {:>11.1} {:>11.3} {:>11.3} {:>12.3} {:>12.3} {:>13.3}",
            t.name,
            med(v, |p| p.rps),
            med(v, |p| p.cpu_us),
            Pool::percentile(&pool.latencies, 0.50),
            Pool::percentile(&pool.latencies, 0.99),
            Pool::percentile(&pool.ttfb, 0.50),
            Pool::percentile(&pool.ttfb, 0.99),
            med(v, |p| p.ttfb_busy_p50_ms),
        );
    }
    let verdict = |ok: bool| if ok { "PASS" } else { "MISS" };
    let (bare, bare_pool) = (&passes[0], &pools[0]);
    for ((t, v), pool) in targets.iter().zip(passes).zip(pools).skip(1) {
        // Saturation: the median of each pass's ratio to the bare forwarder's run of the
        // same pass (minutes apart at most), so a slow spell of the machine cancels out.
        let ratio =
            |f: fn(&Pass) -> f64| median(v.iter().zip(bare).map(|(p, b)| f(p) / f(b)).collect());
        let (rps, cpu) = (ratio(|p| p.rps), ratio(|p| p.cpu_us));
        let pooled = |f: fn(&Pool) -> &Vec<Duration>, q: f64| {
            Pool::percentile(f(pool), q) / Pool::percentile(f(bare_pool), q)
        };
        let (p50, p99) = (
            pooled(|p| &p.latencies, 0.5),
            pooled(|p| &p.latencies, 0.99),
        );
        let (t50, t99) = (pooled(|p| &p.ttfb, 0.5), pooled(|p| &p.ttfb, 0.99));
        println!("{} / bare:", t.name);
        println!(
            "  saturation: throughput {rps:.3}, CPU per request {cpu:.3}: {} (throughput >= {GOAL_THROUGHPUT}x, or CPU per request <= {GOAL_CPU}x when the generator is the limit)",
            verdict(rps >= GOAL_THROUGHPUT || cpu <= GOAL_CPU)
        );
        println!(
            "  latency at {} req/s: p50 {p50:.3}, p99 {p99:.3}: {} (<= {GOAL_LATENCY}x)",
            plan.rate,
            verdict(p50 <= GOAL_LATENCY && p99 <= GOAL_LATENCY)
        );
        println!(
            "  stream time to first byte at {} streams/s: p50 {t50:.3}, p99 {t99:.3}: {} (<= {GOAL_TTFB}x)",
            plan.rate,
            verdict(t50 <= GOAL_TTFB && t99 <= GOAL_TTFB)
        );
        println!(
            "  (for information: p50 with 8 streams back to back, proxy core saturated: {:.3})",
            ratio(|p| p.ttfb_busy_p50_ms)
        );
    }
}
