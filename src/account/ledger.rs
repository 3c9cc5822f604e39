//! The interactive ledger's write path: answers are summed in memory into their minute rows
//! (a hash lookup under a short lock, no allocation unless the minute and labels are new)
//! and a background task writes the sums every [`LEDGER_LINGER`]: one small upsert per
//! label combination instead of a row, a channel send and a thread wake-up per answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::lifecycle::{Tasks, Unfinished};
use crate::store::Store;
use crate::store::ledger::{LedgerKey, LedgerRow, LedgerSums, minute};
use crate::types::{Provider, Tier};

/// How long the writer gathers answers after the first before writing them. It is also what
/// a crash can lose of the interactive ledger (the metrics have it; deferred answers commit
/// their entry with the answer itself); a clean shutdown loses nothing. A second, not less:
/// each write is a SQLite commit (an fsync), and at 50 ms they cost ~3% of a saturated core.
pub const LEDGER_LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// Most distinct rows held between writes; answers for further new rows are counted in the
/// metrics only (and logged). Labels are closed sets, so this is never reached in practice.
const MAX_PENDING_ROWS: usize = 65_536;

/// The labels of one answer, borrowed.
pub struct Labels<'a> {
    pub at_ms: i64,
    pub route: &'a str,
    pub client: &'a str,
    pub provider: Provider,
    pub model: &'a str,
    pub tier: Tier,
}

impl Labels<'_> {
    fn hash(&self, bucket_ms: i64) -> u64 {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(&bucket_ms.to_le_bytes());
        for s in [self.route, self.client, self.model] {
            h.update(s.as_bytes());
            h.update(&[0xff]); // never in UTF-8: "ab"+"c" and "a"+"bc" differ
        }
        h.update(&[self.provider as u8, self.tier as u8]);
        h.digest()
    }

    fn is(&self, bucket_ms: i64, k: &LedgerKey) -> bool {
        k.bucket_ms == bucket_ms
            && k.route == self.route
            && k.client == self.client
            && k.model == self.model
            && k.provider == self.provider
            && k.tier == self.tier
    }

    fn key(&self, bucket_ms: i64) -> LedgerKey {
        LedgerKey {
            bucket_ms,
            route: self.route.to_owned(),
            client: self.client.to_owned(),
            provider: self.provider,
            model: self.model.to_owned(),
            tier: self.tier,
        }
    }
}

#[derive(Default)]
struct Pending {
    /// Rows by the hash of their key; a hash collision only makes a bucket longer.
    rows: HashMap<u64, Vec<LedgerRow>>,
    len: usize,
    /// The writer took its last rows: later answers cannot be written.
    closed: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Notify,
}

/// Sums answers and writes them to the store until [`Ledger::close`].
pub struct Ledger {
    shared: Arc<Shared>,
    writer: Tasks,
}

/// Why an answer is not in the ledger.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Closed,
    Full,
}

impl Ledger {
    /// Needs a Tokio runtime.
    pub fn new(store: Arc<dyn Store>) -> Ledger {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Notify::new(),
        });
        let writer = Tasks::new("ledger writer");
        writer.spawn(write(store, shared.clone(), writer.token().clone()));
        Ledger { shared, writer }
    }

    /// Adds one answer to its row.
    pub fn add(&self, l: &Labels<'_>, add: impl FnOnce(&mut LedgerSums)) -> Result<(), Refused> {
        let bucket = minute(l.at_ms);
        let hash = l.hash(bucket);
        let mut p = self.shared.pending.lock().map_err(|_| Refused::Closed)?;
        if p.closed {
            return Err(Refused::Closed);
        }
        let was_empty = p.len == 0;
        let full = p.len >= MAX_PENDING_ROWS;
        let bucket_rows = p.rows.entry(hash).or_default();
        match bucket_rows.iter_mut().find(|r| l.is(bucket, &r.key)) {
            Some(row) => add(&mut row.sums),
            None if full => return Err(Refused::Full),
            None => {
                let mut sums = LedgerSums::default();
                add(&mut sums);
                bucket_rows.push(LedgerRow {
                    key: l.key(bucket),
                    sums,
                });
                p.len += 1;
            }
        }
        drop(p);
        if was_empty {
            self.shared.wake.notify_one();
        }
        Ok(())
    }

    /// Shutdown, once nothing records any more: writes every answer added so far, then ends
    /// the writer (answers added later are refused). Waits at most until `deadline`.
    pub async fn close(&self, deadline: tokio::time::Instant) -> Result<(), Unfinished> {
        self.writer.shutdown(deadline).await
    }
}

impl Shared {
    fn take(&self, close: bool) -> Vec<LedgerRow> {
        let Ok(mut p) = self.pending.lock() else {
            return Vec::new();
        };
        p.closed |= close;
        p.len = 0;
        p.rows.drain().flat_map(|(_, rows)| rows).collect()
    }
}

async fn write(store: Arc<dyn Store>, shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = shared.wake.notified() => {}
        }
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(LEDGER_LINGER) => {}
        }
        store_rows(&*store, shared.take(false)).await;
    }
    store_rows(&*store, shared.take(true)).await;
}

async fn store_rows(store: &dyn Store, rows: Vec<LedgerRow>) {
    if rows.is_empty() {
        return;
    }
    if let Err(e) = store.record(&rows).await {
        let answers: u64 = rows.iter().map(|r| r.sums.requests).sum();
        tracing::warn!(error = %e, answers, "ledger write failed");
    }
}
