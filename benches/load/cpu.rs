//! `--cpu`: what the gateway costs in CPU, not what the upstream costs in waiting. The
//! simulator answers at once (`--latency 0ms`); the gateway and the bare forwarder are
//! pinned to core 0, this load generator and the simulator to core 1 (`taskset`,
//! `sched_setaffinity`). Each pass drives both proxies to saturation at fixed concurrency,
//! then at a fixed rate, and reads each proxy's CPU time from `/proc/<pid>/stat` before and
//! after: CPU µs per request is comparable even when the generator, not the proxy, is the
//! limit. Several passes, interleaved, medians reported. On a machine with fewer than two
//! CPUs nothing is pinned, and the table says so.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::deferred::{self, TempStore};
use super::generator::{self, percentile};
use super::{
    BoxError, GOAL_LATENCY, GOAL_THROUGHPUT, Procs, chat_body, free_addrs, shot, wait_all_ready,
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
}

impl CpuPlan {
    pub fn new(quick: bool) -> CpuPlan {
        CpuPlan {
            passes: if quick { 1 } else { 3 },
            workers: 64,
            closed: Duration::from_secs(if quick { 2 } else { 6 }),
            warmup: Duration::from_millis(500),
            rate: 200.0,
            open: Duration::from_secs(if quick { 2 } else { 5 }),
        }
    }
}

#[derive(Default, Clone, Copy)]
struct Pass {
    rps: f64,
    cpu_us: f64,
    p50_ms: f64,
    p99_ms: f64,
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

async fn pass(
    plan: &CpuPlan,
    addr: SocketAddr,
    pid: u32,
    body: &bytes::Bytes,
) -> Result<Pass, BoxError> {
    let client = generator::client();
    let shot = shot(addr, body);
    generator::closed_loop(&client, &shot, plan.workers, plan.warmup).await;
    let before = cpu_us(pid)?;
    let closed = generator::closed_loop(&client, &shot, plan.workers, plan.closed).await;
    let spent = cpu_us(pid)? - before;
    if closed.ok() == 0 {
        return Err(format!("no request to {addr} succeeded: {:?}", closed.errors).into());
    }
    let open = generator::open_loop(&client, &shot, plan.rate, plan.open).await;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok(Pass {
        rps: closed.rps(),
        cpu_us: spent / closed.ok() as f64,
        p50_ms: ms(percentile(&open.latencies, 0.50)),
        p99_ms: ms(percentile(&open.latencies, 0.99)),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(sluice: &Path, quick: bool) -> Result<(), BoxError> {
    let plan = CpuPlan::new(quick);
    let pin = pinnable();
    let (proxy_core, load_core) = if pin {
        (Some(0), Some(1))
    } else {
        (None, None)
    };
    if let Some(core) = load_core {
        pin_self(core)?;
    }
    let [sim, bare, gateway] = free_addrs()?;
    let store = TempStore::new("cpu");
    let mut procs = Procs::default();
    let mut simulate = Command::new(sluice);
    simulate
        .args(["simulate", "--listen", &sim.to_string(), "--latency", "0ms"])
        .env("RUST_LOG", "warn");
    procs.spawn("simulator", &mut pinned(load_core, simulate))?;
    let serve = deferred::serve_command(sluice, gateway, sim, &store);
    let gateway_pid = procs.spawn("sluice serve", &mut pinned(proxy_core, serve))?;
    let mut forward = Command::new(std::env::current_exe()?);
    forward.args([
        "--bare-forwarder",
        &bare.to_string(),
        &format!("http://{sim}"),
    ]);
    let bare_pid = procs.spawn("bare forwarder", &mut pinned(proxy_core, forward))?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let body = chat_body(false);
    let (bares, sluices) = rt.block_on(async {
        let client = generator::client();
        wait_all_ready(&client, &mut procs, sim, gateway, bare).await?;
        let (mut bares, mut sluices) = (Vec::new(), Vec::new());
        for _ in 0..plan.passes {
            bares.push(pass(&plan, bare, bare_pid, &body).await?);
            sluices.push(pass(&plan, gateway, gateway_pid, &body).await?);
        }
        Ok::<_, BoxError>((bares, sluices))
    })?;
    drop(rt);
    drop(procs);
    report(&plan, pin, body.len(), &bares, &sluices);
    Ok(())
}

fn report(plan: &CpuPlan, pinned: bool, body: usize, bares: &[Pass], sluices: &[Pass]) {
    let med = |v: &[Pass], f: fn(&Pass) -> f64| median(v.iter().map(f).collect());
    println!(
        "\nCPU bench: zero-latency simulator; {}; non-streaming chat, body {body} bytes; {} passes, medians",
        if pinned {
            "proxies pinned to core 0, generator and simulator to core 1"
        } else {
            "NOT pinned (fewer than 2 CPUs)"
        },
        plan.passes
    );
    println!(
        "{:<8} {:>10} {:>14} {:>12} {:>12}",
        "target", "sat RPS", "CPU us/req", "p50 ms@200", "p99 ms@200"
    );
    for (name, v) in [("bare", bares), ("sluice", sluices)] {
        println!(
            "{:<8} {:>10.0} {:>14.1} {:>12.2} {:>12.2}",
            name,
            med(v, |p| p.rps),
            med(v, |p| p.cpu_us),
            med(v, |p| p.p50_ms),
            med(v, |p| p.p99_ms)
        );
    }
    let ratio = |f: fn(&Pass) -> f64| med(sluices, f) / med(bares, f);
    let verdict = |ok: bool| if ok { "PASS" } else { "MISS" };
    let (rps, cpu) = (ratio(|p| p.rps), ratio(|p| p.cpu_us));
    println!("ratio sluice/bare: throughput {rps:.3}, CPU per request {cpu:.3}");
    println!(
        "  saturation: {} (throughput >= {GOAL_THROUGHPUT}x, or CPU per request <= {GOAL_CPU}x when the generator is the limit)",
        verdict(rps >= GOAL_THROUGHPUT || cpu <= GOAL_CPU)
    );
    let (p50, p99) = (ratio(|p| p.p50_ms), ratio(|p| p.p99_ms));
    println!(
        "  latency at {} req/s: p50 {p50:.3}, p99 {p99:.3}: {} (<= {GOAL_LATENCY}x)",
        plan.rate,
        verdict(p50 <= GOAL_LATENCY && p99 <= GOAL_LATENCY)
    );
}
