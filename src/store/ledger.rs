//! What the ledger keeps: per-minute sums by route, client, provider, model and tier, never
//! a row per answer, so its size follows the number of label combinations in use, not the
//! request rate (10,000 requests/s for a day with 100 combinations is 144,000 minute rows,
//! not 864 million). Minutes older than [`MINUTE_RETENTION`] are folded into hours, which
//! are kept: a year of those 100 combinations is under a million rows.
//!
//! Per-answer detail lives in the response headers (`x-sluice-*`), the access log and, for
//! deferred answers, the job itself until `result_retention`.

use crate::types::{Provider, Tier, Usage};

use super::LedgerEntry;

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 3_600_000;

/// How long the ledger keeps minute rows before folding them into hours.
pub const MINUTE_RETENTION: std::time::Duration = std::time::Duration::from_secs(31 * 86_400);

/// The labels one ledger row sums over, and the start of its minute (or, once folded, its
/// hour).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LedgerKey {
    pub bucket_ms: i64,
    pub route: String,
    pub client: String,
    pub provider: Provider,
    /// The metric label (priced or configured name, or `other`).
    pub model: String,
    pub tier: Tier,
}

/// The sums of one row. Wasted answers (a batch line that finished after its fallback) are
/// kept apart: they cost money but answered nobody, so they are neither requests nor spend
/// of the answers the caller got.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LedgerSums {
    pub requests: u64,
    /// Answers with a status outside 2xx.
    pub errors: u64,
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub cache_write_5m_tokens: u64,
    pub cache_write_1h_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    pub baseline_usd: f64,
    /// By lever: batch, flex, prompt_cache, response_cache.
    pub savings_usd: [f64; 4],
    pub wasted_requests: u64,
    pub wasted_usd: f64,
}

impl LedgerSums {
    /// Adds one answer.
    pub fn add(&mut self, e: &LedgerEntry) {
        self.add_answer(
            e.status,
            &e.usage,
            e.cost_usd,
            e.baseline_usd,
            e.savings_usd,
            e.wasted,
        );
    }

    /// Adds one answer given by its parts.
    pub fn add_answer(
        &mut self,
        status: u16,
        u: &Usage,
        cost_usd: f64,
        baseline_usd: f64,
        savings_usd: [f64; 4],
        wasted: bool,
    ) {
        if wasted {
            self.wasted_requests += 1;
            self.wasted_usd += cost_usd;
            return;
        }
        self.requests += 1;
        self.errors += u64::from(!(200..300).contains(&status));
        self.input_tokens += u.input_tokens;
        self.cached_input_tokens += u.cached_input_tokens;
        self.cache_write_5m_tokens += u.cache_write_5m_tokens;
        self.cache_write_1h_tokens += u.cache_write_1h_tokens;
        self.output_tokens += u.output_tokens;
        self.cost_usd += cost_usd;
        self.baseline_usd += baseline_usd;
        for (s, v) in self.savings_usd.iter_mut().zip(savings_usd) {
            *s += v;
        }
    }
}

/// One row of the ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerRow {
    pub key: LedgerKey,
    pub sums: LedgerSums,
}

impl LedgerRow {
    /// The row of a single answer.
    pub fn of(e: &LedgerEntry) -> LedgerRow {
        let mut sums = LedgerSums::default();
        sums.add(e);
        LedgerRow { key: key(e), sums }
    }
}

/// The start of the minute `at_ms` falls in.
pub fn minute(at_ms: i64) -> i64 {
    at_ms.div_euclid(MINUTE_MS) * MINUTE_MS
}

/// The key an answer is summed under.
pub fn key(e: &LedgerEntry) -> LedgerKey {
    LedgerKey {
        bucket_ms: minute(e.at_ms),
        route: e.route.clone(),
        client: e.client.clone(),
        provider: e.provider,
        model: e.model.clone(),
        tier: e.tier,
    }
}

/// Sums answers into their minute rows, in first-seen order.
pub fn rollup(entries: &[LedgerEntry]) -> Vec<LedgerRow> {
    let mut index = std::collections::HashMap::<LedgerKey, usize>::new();
    let mut rows: Vec<LedgerRow> = Vec::new();
    for e in entries {
        let k = key(e);
        match index.get(&k) {
            Some(&i) => rows[i].sums.add(e),
            None => {
                index.insert(k.clone(), rows.len());
                let mut sums = LedgerSums::default();
                sums.add(e);
                rows.push(LedgerRow { key: k, sums });
            }
        }
    }
    rows
}

/// Minute rows before this are folded into hours when the ledger is compacted at `now_ms`:
/// a whole hour, so no hour is ever half minutes and half folded.
pub fn fold_before(now_ms: i64) -> i64 {
    let cutoff = now_ms - MINUTE_RETENTION.as_millis() as i64;
    cutoff.div_euclid(HOUR_MS) * HOUR_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at_ms: i64, client: &str, status: u16, cost: f64, wasted: bool) -> LedgerEntry {
        LedgerEntry {
            at_ms,
            route: "r".into(),
            client: client.into(),
            provider: Provider::OpenAi,
            model: "gpt-4o-mini".into(),
            tier: Tier::Interactive,
            status,
            usage: Usage {
                input_tokens: 10,
                output_tokens: 2,
                ..Usage::default()
            },
            cost_usd: cost,
            baseline_usd: cost,
            savings_usd: [0.0; 4],
            wasted,
        }
    }

    #[test]
    fn answers_of_one_minute_and_labels_are_one_row() {
        let entries: Vec<LedgerEntry> = (0..10_000)
            .map(|i| entry(120_000 + i % 60_000, "a", 200, 1.0, false))
            .chain([entry(179_999, "b", 500, 2.0, false)])
            .chain([entry(180_000, "a", 200, 4.0, false)])
            .chain([entry(150_000, "a", 200, 8.0, true)])
            .collect();
        let rows = rollup(&entries);
        assert_eq!(rows.len(), 3, "{rows:?}");
        let a = &rows[0];
        assert_eq!((a.key.bucket_ms, a.key.client.as_str()), (120_000, "a"));
        assert_eq!(a.sums.requests, 10_000);
        assert_eq!(a.sums.input_tokens, 100_000);
        assert_eq!(a.sums.cost_usd, 10_000.0);
        assert_eq!((a.sums.wasted_requests, a.sums.wasted_usd), (1, 8.0));
        let b = &rows[1];
        assert_eq!(
            (b.key.client.as_str(), b.sums.requests, b.sums.errors),
            ("b", 1, 1)
        );
        assert_eq!(
            (rows[2].key.bucket_ms, rows[2].sums.cost_usd),
            (180_000, 4.0)
        );
    }

    #[test]
    fn minutes_fold_whole_hours_after_the_retention() {
        let retention = MINUTE_RETENTION.as_millis() as i64;
        let now = retention + 5 * HOUR_MS + 30 * MINUTE_MS;
        assert_eq!(fold_before(now), 5 * HOUR_MS);
        assert_eq!(fold_before(retention + 5 * HOUR_MS), 5 * HOUR_MS);
        assert_eq!(minute(-1), -MINUTE_MS);
    }
}
