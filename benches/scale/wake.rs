//! Wake-up latency: from an answer stored to the held caller's first byte (its response
//! head), for callers held on the replica that stored the answer (in-process wake-up) and
//! on another replica of the same PostgreSQL database (`LISTEN/NOTIFY`, the once-a-second
//! sweep behind it).
//!
//! Replica a runs the batches (a group flushes once it holds every caller of the round);
//! replica b never flushes or polls (an hour for both). Each round holds `k` callers on each,
//! the simulator finishes the batch at its first poll, and a stores every answer. The answer's
//! `completed_at_ms` (the replica's clock, taken just before it prices and stores it; the
//! same machine's clock as the bench's) is the start; whole milliseconds, so every figure
//! is within +1 ms.

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use crate::BoxError;
use crate::generator::percentile;
use crate::held::{self, Answer, Holders, Wire};
use crate::procs::{Database, Env, Gateway, Simulator, Store};

async fn answers(holders: &mut Holders, n: usize, limit: Duration) -> Vec<Answer> {
    let mut got = Vec::with_capacity(n);
    let deadline = tokio::time::Instant::now() + limit;
    while got.len() < n {
        match tokio::time::timeout_at(deadline, holders.answers.recv()).await {
            Ok(Some(a)) => got.push(a),
            _ => break,
        }
    }
    got
}

/// First byte minus stored completion time, for every answered job of `got`.
async fn latencies(db: &Database, got: &[Answer]) -> Result<Vec<Duration>, BoxError> {
    let ids: Vec<String> = got.iter().filter_map(|a| a.job.clone()).collect();
    let mut conn = db.connect().await?;
    let rows: Vec<(String, Option<i64>)> =
        sqlx::query_as("SELECT id, completed_at_ms FROM jobs WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_all(&mut conn)
            .await?;
    let done: HashMap<String, i64> = rows
        .into_iter()
        .filter_map(|(id, at)| Some((id, at?)))
        .collect();
    Ok(got
        .iter()
        .filter(|a| a.status.is_success())
        .filter_map(|a| {
            let stored = *done.get(a.job.as_ref()?)?;
            let first_byte = a.at.duration_since(UNIX_EPOCH).ok()?;
            let stored = Duration::from_millis(u64::try_from(stored).ok()?);
            Some(first_byte.saturating_sub(stored))
        })
        .collect())
}

pub async fn run(env: &Env) -> Result<(), BoxError> {
    let Some(db) = env.database("wake", "wake").await else {
        return Ok(());
    };
    let (k, rounds) = if env.quick { (25, 2) } else { (100, 5) };
    let group = (2 * k).to_string();
    let sim = Simulator::start(env, &["--batch-turnaround", "0ms"]).await?;
    let a = Gateway::start(
        env,
        sim.addr,
        Store::Postgres(&db),
        &[
            ("SLUICE_REPLICA_ID", "a"),
            ("SLUICE_BATCH_MAX_WAIT", "1h"),
            ("SLUICE_BATCH_MAX_REQUESTS", &group),
            ("SLUICE_BATCH_POLL_INTERVAL", "200ms"),
        ],
    )
    .await?;
    let b = Gateway::start(
        env,
        sim.addr,
        Store::Postgres(&db),
        &[
            ("SLUICE_REPLICA_ID", "b"),
            ("SLUICE_BATCH_MAX_WAIT", "1h"),
            ("SLUICE_BATCH_POLL_INTERVAL", "1h"),
        ],
    )
    .await?;
    let (mut same, mut across) = (Vec::new(), Vec::new());
    let mut missing = Vec::new();
    for round in 0..rounds {
        // One model for every caller: one group, flushed by a when it is full.
        let bodies = |side: &str| {
            (0..k)
                .map(|i| held::held_body(&format!("wake{round}{side}"), 4 * i))
                .collect()
        };
        let mut on_a = held::hold(a.addr, Wire::H1, bodies("a")).await;
        let mut on_b = held::hold(b.addr, Wire::H1, bodies("b")).await;
        let limit = Duration::from_secs(60);
        let got_a = answers(&mut on_a, k, limit).await;
        let got_b = answers(&mut on_b, k, limit).await;
        if got_a.len() < k || got_b.len() < k {
            missing.push(format!(
                "round {round}: a {}/{k} ({}), b {}/{k} ({})",
                got_a.len(),
                held::failures_text(&on_a.failures),
                got_b.len(),
                held::failures_text(&on_b.failures)
            ));
        }
        same.extend(latencies(&db, &got_a).await?);
        across.extend(latencies(&db, &got_b).await?);
    }
    same.sort_unstable();
    across.sort_unstable();
    println!(
        "\nwake: answer stored -> held caller's response head, PostgreSQL, 2 replicas; {rounds} rounds \
         of {k} callers held on each (HTTP/1.1); replica a runs every batch; completion times in \
         whole ms (figures within +1 ms)"
    );
    println!(
        "{:<30} {:>8} {:>9} {:>9} {:>9}",
        "caller held on", "samples", "p50 ms", "p99 ms", "max ms"
    );
    let ms = |v: &[Duration], p| percentile(v, p).as_secs_f64() * 1e3;
    for (name, v) in [
        ("a (same replica, in-process)", &same),
        ("b (across, LISTEN/NOTIFY)", &across),
    ] {
        println!(
            "{:<30} {:>8} {:>9.2} {:>9.2} {:>9.2}",
            name,
            v.len(),
            ms(v, 0.50),
            ms(v, 0.99),
            ms(v, 1.0)
        );
    }
    println!(
        "ratio across / same: p50 {:.2}, p99 {:.2}",
        ms(&across, 0.50) / ms(&same, 0.50).max(1e-3),
        ms(&across, 0.99) / ms(&same, 0.99).max(1e-3)
    );
    for m in missing {
        println!("  unanswered: {m}");
    }
    Ok(())
}
