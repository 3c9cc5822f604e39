//! Store load while 10,000 requests are held on one replica (PostgreSQL), counted as
//! transactions in the bench's own database (`pg_stat_database`, which sees nothing else):
//!
//! * after: today's gateway alone; its held callers read the store only when woken, and
//!   the replica sweeps once per poll (recent completions) plus every held job in one
//!   query every 30 s; the window is 31 s so it includes one such re-check;
//! * before: the same gateway plus the per-caller polling it replaced (before commit
//!   "Wake-ups instead of polls"), emulated from the bench: each held caller's job re-read
//!   every 2 s (`Store::job`, the read the old `wait_done` loop made), through the store
//!   code the gateway runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::BoxError;
use crate::held::{self, H2_STREAMS, Wire};
use crate::procs::{Database, Env, Gateway, Simulator, Store};

/// The old per-caller poll: `poll_interval` clamped to 50 ms..2 s; 2 s at the default.
const OLD_POLL: Duration = Duration::from_secs(2);

/// Transactions per second in `db` over `window`.
async fn rate(db: &Database, window: Duration) -> Result<f64, BoxError> {
    let mut conn = db.connect().await?;
    let t0 = db.transactions(&mut conn).await?;
    let start = Instant::now();
    tokio::time::sleep(window).await;
    let t1 = db.transactions(&mut conn).await?;
    // The two reads of ours are transactions in this database too.
    let ours = 2;
    Ok((t1 - t0 - ours).max(0) as f64 / start.elapsed().as_secs_f64())
}

/// The old model, emulated: one task per held job re-reading it every [`OLD_POLL`],
/// started spread over one interval. Counts the reads it made.
fn poll_like_before(
    store: Arc<dyn sluice::store::Store>,
    ids: Vec<String>,
    reads: Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let n = ids.len().max(1) as u32;
    let first = tokio::time::Instant::now();
    ids.into_iter()
        .enumerate()
        .map(|(i, id)| {
            let (store, reads) = (store.clone(), reads.clone());
            let mut next = first + OLD_POLL / n * i as u32;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep_until(next).await;
                    if store.job(&id).await.is_ok() {
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                    next += OLD_POLL;
                }
            })
        })
        .collect()
}

pub async fn run(env: &Env) -> Result<(), BoxError> {
    let Some(db) = env.database("queries", "queries").await else {
        return Ok(());
    };
    let n = if env.quick { 1_000 } else { 10_000 };
    let (after_window, before_window) = if env.quick {
        (Duration::from_secs(5), Duration::from_secs(5))
    } else {
        (Duration::from_secs(31), Duration::from_secs(20))
    };
    let sim = Simulator::start(env, &[]).await?;
    let vars = [("SLUICE_BATCH_MAX_WAIT", "1h")];
    let gateway = Gateway::start(env, sim.addr, Store::Postgres(&db), &vars).await?;
    // HTTP/2 keeps the bench's descriptors for the poll emulation; the store does not care.
    let (holders, depth, _) =
        held::hold_on(&gateway, "queries", Wire::H2(H2_STREAMS), n, 0).await?;
    let mut conn = db.connect().await?;
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM jobs WHERE state = 'queued'")
        .fetch_all(&mut conn)
        .await?;
    drop(conn);
    // Let the enqueue burst's statistics reach pg_stat_database before counting: an idle
    // backend reports its counts within 10 s (PostgreSQL 15+, PGSTAT_IDLE_INTERVAL).
    tokio::time::sleep(Duration::from_secs(11)).await;
    let after = rate(&db, after_window).await?;

    let store = sluice::store::open(&db.url).await?;
    let reads = Arc::new(AtomicU64::new(0));
    let pollers = poll_like_before(store.clone(), ids.clone(), reads.clone());
    // One full interval first, so every emulated caller is polling.
    tokio::time::sleep(OLD_POLL).await;
    let reads0 = reads.load(Ordering::Relaxed);
    let t = Instant::now();
    let before = rate(&db, before_window).await?;
    let read_rate = (reads.load(Ordering::Relaxed) - reads0) as f64 / t.elapsed().as_secs_f64();
    for p in &pollers {
        p.abort();
    }
    store.close().await;
    let still_held = gateway
        .queue_depth(&crate::generator::client())
        .await
        .unwrap_or(0);
    drop(holders);

    println!(
        "\nqueries: store transactions/s on PostgreSQL with {} requests held on one replica \
         (HTTP/2, {H2_STREAMS} streams per connection; batch max wait 1h, poll interval 30s \
         default), pg_stat_database of the bench's own database",
        depth
    );
    println!("{:<8} {:>10} {:>9}   model", "case", "tx/s", "window s");
    println!(
        "{:<8} {:>10.1} {:>9.0}   per-caller poll: {} jobs re-read every {} s (emulated: {:.0} reads/s made, nominal {:.0})",
        "before",
        before,
        before_window.as_secs_f64(),
        ids.len(),
        OLD_POLL.as_secs(),
        read_rate,
        ids.len() as f64 / OLD_POLL.as_secs_f64()
    );
    println!(
        "{:<8} {:>10.1} {:>9.0}   wake-ups: one sweep per replica, held jobs re-checked in one query / 30 s",
        "after",
        after,
        after_window.as_secs_f64()
    );
    println!(
        "ratio before / after: {:.1}x; still held at the end: {still_held}",
        before / after.max(1e-9)
    );
    Ok(())
}
