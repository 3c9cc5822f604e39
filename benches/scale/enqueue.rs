//! Durable enqueue throughput on PostgreSQL against SQLite: deferred requests
//! (`x-sla: 24h`, `Prefer: respond-async`, a unique `Idempotency-Key` each) acknowledged with
//! 202 once the job is committed, from a closed loop of 64 workers, each store behind a
//! fresh gateway in the same run.

use std::time::Duration;

use hyper::StatusCode;
use hyper::header::HeaderValue;

use crate::BoxError;
use crate::generator::{self, Sample, Shot, percentile};
use crate::held::held_body;
use crate::procs::{Env, Gateway, Simulator, Store};

const WORKERS: usize = 64;

async fn measure(env: &Env, sim: &Simulator, store: Store<'_>) -> Result<(Sample, u64), BoxError> {
    let (run, warm) = if env.quick {
        (Duration::from_millis(1_500), Duration::from_millis(250))
    } else {
        (Duration::from_secs(5), Duration::from_millis(500))
    };
    let vars = [("SLUICE_BATCH_MAX_WAIT", "1h")];
    let gateway = Gateway::start(env, sim.addr, store, &vars).await?;
    let client = generator::client();
    let mut shot = Shot::new(gateway.chat_url(), held_body("enqueue", 0));
    shot.headers
        .insert("x-sla", HeaderValue::from_static("24h"));
    shot.headers
        .insert("prefer", HeaderValue::from_static("respond-async"));
    shot.unique_key = true;
    shot.expect = StatusCode::ACCEPTED;
    let warmed = generator::closed_loop(&client, &shot, WORKERS, warm).await;
    let sample = generator::closed_loop(&client, &shot, WORKERS, run).await;
    let accepted = (warmed.ok() + sample.ok()) as u64;
    let depth = gateway
        .wait_depth(&client, accepted, Duration::from_secs(10))
        .await;
    Ok((sample, depth))
}

pub async fn run(env: &Env) -> Result<(), BoxError> {
    let Some(db) = env.database("enqueue", "enqueue").await else {
        return Ok(());
    };
    let sim = Simulator::start(env, &[]).await?;
    let rows = [
        ("SQLite", measure(env, &sim, Store::Sqlite).await?),
        (
            "PostgreSQL",
            measure(env, &sim, Store::Postgres(&db)).await?,
        ),
    ];
    println!(
        "\nenqueue: durable enqueue, {WORKERS} concurrent workers, 202 once committed (SQLite: WAL, \
         synchronous=FULL, group commit; PostgreSQL: local server, a transaction per job with its \
         key), fresh gateway each"
    );
    println!(
        "{:<12} {:>9} {:>9} {:>9} {:>7} {:>9}",
        "store", "RPS", "p50 ms", "p99 ms", "errors", "queued"
    );
    let ms = |s: &Sample, p| percentile(&s.latencies, p).as_secs_f64() * 1e3;
    for (name, (s, depth)) in &rows {
        println!(
            "{:<12} {:>9.1} {:>9.2} {:>9.2} {:>7} {:>9}",
            name,
            s.rps(),
            ms(s, 0.50),
            ms(s, 0.99),
            s.error_count(),
            depth
        );
        for (msg, n) in &s.errors {
            println!("  {name} error x{n}: {msg}");
        }
    }
    let [(_, (sqlite, _)), (_, (pg, _))] = &rows;
    println!(
        "ratio PostgreSQL / SQLite: throughput {:.3}, p50 {:.3}, p99 {:.3}",
        pg.rps() / sqlite.rps().max(1e-9),
        ms(pg, 0.50) / ms(sqlite, 0.50).max(1e-9),
        ms(pg, 0.99) / ms(sqlite, 0.99).max(1e-9)
    );
    Ok(())
}
