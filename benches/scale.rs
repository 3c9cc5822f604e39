//! Scale-out benchmark: what holding many callers and running several replicas cost.
//!
//! `cargo bench --bench scale [-- --quick] [held] [enqueue] [queries] [wake]` builds
//! `sluice`, starts a simulated provider and fresh gateways (`sluice serve`, pinned to core
//! 0; this load generator on core 1, as `benches/load/cpu.rs` does), and prints one table
//! per scenario, ratios taken within the run:
//!
//! * held: the gateway's memory per held deferred request (RSS delta / N), HTTP/1.1 with one
//!   connection per request and HTTP/2 with many streams per connection, up to 100,000
//!   held requests on one replica (`held.rs`);
//! * enqueue: durable enqueue throughput (`x-sla: 24h` + `Prefer: respond-async`, 202) on
//!   PostgreSQL against SQLite (`enqueue.rs`);
//! * queries: store transactions per second while 10,000 requests are held, today's
//!   wake-ups against the per-caller poll they replaced (`queries.rs`);
//! * wake: from an answer stored to the held caller's first byte, on the replica that stored
//!   it and on another one (PostgreSQL `LISTEN/NOTIFY`) (`wake.rs`).
//!
//! No scenario named: all of them. Everything talks to 127.0.0.1 only. The PostgreSQL
//! scenarios use `SLUICE_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/test`)
//! to create a database of their own, dropped afterwards, and skip with a notice when it is
//! unreachable. Not part of `cargo test`.

#[path = "scale/enqueue.rs"]
mod enqueue;
#[path = "load/generator.rs"]
#[allow(dead_code)]
mod generator;
#[path = "scale/held.rs"]
mod held;
#[path = "scale/procs.rs"]
mod procs;
#[path = "scale/queries.rs"]
mod queries;
#[path = "scale/wake.rs"]
mod wake;

use std::process::ExitCode;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

const SCENARIOS: [&str; 4] = ["held", "enqueue", "queries", "wake"];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scale bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), BoxError> {
    // `cargo bench` passes `--bench`; anything else that starts with `--` is ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let quick = args.iter().any(|a| a == "--quick");
    let named: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if let Some(bad) = named.iter().find(|a| !SCENARIOS.contains(a)) {
        return Err(format!("unknown scenario {bad:?}; expected some of {SCENARIOS:?}").into());
    }
    let wanted = |s: &str| named.is_empty() || named.contains(&s);
    let env = procs::Env::new(quick)?;
    println!(
        "sluice scale bench{}: {}; every figure from this one run, on a machine shared with \
         other work: read ratios, not absolutes",
        if quick { " (--quick)" } else { "" },
        env.pinning(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        if wanted("held") {
            held::run(&env).await?;
        }
        if wanted("enqueue") {
            enqueue::run(&env).await?;
        }
        if wanted("queries") {
            queries::run(&env).await?;
        }
        if wanted("wake") {
            wake::run(&env).await?;
        }
        Ok::<_, BoxError>(())
    })
}
