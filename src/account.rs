//! Accounting: the last stage of every answer. Prices the usage, picks closed-set metric
//! labels, and records requests, cost, baseline, savings and tokens exactly once.

mod ledger;
mod series;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

pub use self::ledger::LEDGER_LINGER;
use self::ledger::{Labels, Ledger, Refused};
use self::series::{SeriesCache, SeriesKey};
use crate::lifecycle::Unfinished;
use crate::metrics::Metrics;
use crate::policy::ModelMap;
use crate::pricing::{PriceTable, Priced, price};
use crate::store::{LedgerEntry, Store};
use crate::types::{Provider, ServedTier, Tier, Usage};

/// Label used for any model that is neither priced nor named in a policy.
pub const OTHER_MODEL: &str = "other";
/// Unpriced model names (and models answered at a tier their row does not rate) are logged
/// once each, up to this many distinct names; the set holds 8-byte hashes, not the names, so
/// a client cannot grow it by sending long ones.
const MAX_WARNED_MODELS: usize = 1024;
/// Longest model name written to a log line.
const MAX_LOGGED_MODEL: usize = 128;

/// One answered request, as the accountant needs it.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub route: &'a str,
    pub client: &'a str,
    pub provider: Provider,
    pub model: &'a str,
    pub tier: Tier,
    pub status: u16,
    pub usage: Option<Usage>,
}

pub struct Accountant {
    prices: Arc<PriceTable>,
    models: ModelMap,
    metrics: Arc<Metrics>,
    warned: Mutex<HashSet<u64>>,
    series: SeriesCache,
    /// Every answer is also summed into the durable ledger (`sluice report`), written by a
    /// background task so the request path never waits on the store.
    ledger: Option<Ledger>,
}

impl Accountant {
    pub fn new(prices: Arc<PriceTable>, models: ModelMap, metrics: Arc<Metrics>) -> Accountant {
        Accountant {
            prices,
            models,
            metrics,
            warned: Mutex::new(HashSet::new()),
            series: SeriesCache::default(),
            ledger: None,
        }
    }

    /// Writes every recorded answer to `store`'s ledger too, until [`Accountant::close_ledger`].
    /// Needs a Tokio runtime.
    pub fn with_ledger(mut self, store: Arc<dyn Store>) -> Accountant {
        self.ledger = Some(Ledger::new(store));
        self
    }

    /// Shutdown, once nothing records any more: writes every entry recorded so far, then
    /// ends the writer (entries recorded later are refused and logged). Waits at most
    /// until `deadline`.
    pub async fn close_ledger(&self, deadline: tokio::time::Instant) -> Result<(), Unfinished> {
        match &self.ledger {
            Some(l) => l.close(deadline).await,
            None => Ok(()),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The metric label for a model: its priced name, a policy-configured name, or `other`.
    pub fn model_label<'m>(&'m self, model: &'m str) -> &'m str {
        match self.prices.get(model) {
            Some((name, _)) => name,
            None if self.models.is_configured(model) => model,
            None => OTHER_MODEL,
        }
    }

    /// Prices `usage` at `tier` (and the tier the provider reported, `usage.served_tier`:
    /// see [`crate::pricing::billing`]) without recording anything (headers, response cache).
    pub fn quote(&self, model: &str, tier: Tier, usage: &Usage) -> Option<Priced> {
        self.prices.get(model).map(|(_, p)| price(p, tier, usage))
    }

    /// Records one answer: metrics now, its sums into the ledger's minute row (written by
    /// the background writer). Returns its price when the model is priced and usage is known.
    pub fn record(&self, a: &Answer<'_>) -> Option<Priced> {
        let (priced, charge) = self.charge(a);
        self.record_metrics(a, priced.as_ref());
        if let Some(l) = &self.ledger {
            let labels = Labels {
                at_ms: crate::clock::now_ms(),
                route: a.route,
                client: a.client,
                provider: a.provider,
                model: self.model_label(a.model),
                tier: a.tier,
            };
            let usage = a.usage.unwrap_or_default();
            let added = l.add(&labels, |sums| {
                sums.add_answer(a.status, &usage, charge.0, charge.1, charge.2, false)
            });
            match added {
                Ok(()) => {}
                Err(Refused::Full) => tracing::warn!(
                    "ledger buffer full: an answer is in the metrics but not in the ledger"
                ),
                Err(Refused::Closed) => tracing::warn!(
                    "ledger closed (shut down): an answer is in the metrics but not in the ledger"
                ),
            }
        }
        priced
    }

    /// Prices an answer and builds its ledger entry, recording nothing (the deferred path
    /// stores the entry in the same transaction as the answer).
    pub fn price(&self, a: &Answer<'_>, at_ms: i64) -> (Option<Priced>, LedgerEntry) {
        let (priced, (cost_usd, baseline_usd, savings_usd)) = self.charge(a);
        let entry = LedgerEntry {
            at_ms,
            route: a.route.to_owned(),
            client: a.client.to_owned(),
            provider: a.provider,
            model: self.model_label(a.model).to_owned(),
            tier: a.tier,
            status: a.status,
            usage: a.usage.unwrap_or_default(),
            cost_usd,
            baseline_usd,
            savings_usd,
            wasted: false,
        };
        (priced, entry)
    }

    /// The price of an answer and its (cost, baseline, savings by lever), zero when unpriced.
    fn charge(&self, a: &Answer<'_>) -> (Option<Priced>, (f64, f64, [f64; 4])) {
        let priced = a.usage.and_then(|u| self.quote(a.model, a.tier, &u));
        if a.usage.is_some() && priced.is_none() {
            self.warn_unpriced(a.model);
        }
        if let Some(served) = priced.as_ref().and_then(|p| p.unrated_tier) {
            self.warn_unrated(a.model, served);
        }
        let charge = match &priced {
            Some(p) => {
                let s = p.savings.by_lever();
                (p.cost_usd, p.baseline_usd, [s[0].1, s[1].1, s[2].1, s[3].1])
            }
            None => (0.0, 0.0, [0.0; 4]),
        };
        (priced, charge)
    }

    /// The metrics of one answer, priced with [`Accountant::price`].
    pub fn record_metrics(&self, a: &Answer<'_>, priced: Option<&Priced>) {
        let m = &self.metrics;
        let key = SeriesKey {
            route: a.route,
            client: a.client,
            provider: a.provider,
            model: self.model_label(a.model),
            tier: a.tier,
        };
        let series = self.series.get(&key);
        // Status codes are a closed set of three-digit strings.
        let code = http::StatusCode::from_u16(a.status).ok();
        series.request(m, &key, code.as_ref().map_or("000", |c| c.as_str()));
        let Some(usage) = a.usage else { return };
        if a.tier != Tier::ResponseCache {
            let counts = [
                usage.input_tokens,
                usage.cached_input_tokens,
                usage.cache_write_5m_tokens + usage.cache_write_1h_tokens,
                usage.output_tokens,
            ];
            for (kind, n) in counts.into_iter().enumerate() {
                if n > 0 {
                    series.tokens(m, &key, kind, n);
                }
            }
        }
        let Some(priced) = priced else { return };
        series.cost(m, &key, priced.cost_usd, priced.baseline_usd);
        for (i, (lever, usd)) in priced.savings.by_lever().into_iter().enumerate() {
            if usd != 0.0 {
                series.saving(m, &key, i, lever.as_str(), usd);
            }
        }
    }

    fn warn_unpriced(&self, model: &str) {
        if self.first_warning(xxhash_rust::xxh3::xxh3_64(model.as_bytes())) {
            let (model, truncated) = loggable(model);
            tracing::warn!(
                model,
                truncated,
                "model has no price: answered and counted, but its cost is not recorded"
            );
        }
    }

    /// The provider reported a tier the model's price row has no rates for: the answer is
    /// billed at standard rates, said once per model and tier.
    fn warn_unrated(&self, model: &str, served: ServedTier) {
        let seed = 1 + served as u64;
        if self.first_warning(xxhash_rust::xxh3::xxh3_64_with_seed(model.as_bytes(), seed)) {
            let (model, truncated) = loggable(model);
            tracing::warn!(
                model,
                truncated,
                service_tier = served.as_str(),
                "the provider reported a service tier this model has no price for: \
                 billed at standard rates"
            );
        }
    }

    /// Whether `hash` is new to the bounded set of warnings given (and now remembered).
    fn first_warning(&self, hash: u64) -> bool {
        let Ok(mut warned) = self.warned.lock() else {
            return false;
        };
        warned.len() < MAX_WARNED_MODELS && warned.insert(hash)
    }
}

/// A model name cut to [`MAX_LOGGED_MODEL`] bytes for a log line, and whether it was cut.
fn loggable(model: &str) -> (&str, bool) {
    let mut end = model.len().min(MAX_LOGGED_MODEL);
    while !model.is_char_boundary(end) {
        end -= 1;
    }
    (&model[..end], end < model.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accountant() -> Accountant {
        let metrics = Arc::new(Metrics::new(prometheus::Registry::new()).unwrap());
        Accountant::new(
            Arc::new(PriceTable::builtin()),
            crate::policy::PolicySet::from_sources(&[]).unwrap().models,
            metrics,
        )
    }

    fn answer(model: &str, usage: Usage) -> Answer<'_> {
        Answer {
            route: "r",
            client: "c",
            provider: Provider::OpenAi,
            model,
            tier: Tier::Interactive,
            status: 200,
            usage: Some(usage),
        }
    }

    #[test]
    fn a_reported_tier_is_priced_and_an_unrated_one_said_once() {
        let a = accountant();
        let usage = Usage {
            input_tokens: 1000,
            output_tokens: 100,
            served_tier: Some(ServedTier::Priority),
            ..Usage::default()
        };
        // gpt-5 priority: 1000×2.5e-6 + 100×20e-6 = 0.0025 + 0.002 = 0.0045, baseline the same.
        let (priced, entry) = a.price(&answer("gpt-5", usage), 0);
        let p = priced.unwrap();
        assert!((p.cost_usd - 0.0045).abs() < 1e-12, "{p:?}");
        assert_eq!(p.baseline_usd, p.cost_usd);
        assert_eq!(
            (entry.cost_usd, entry.baseline_usd),
            (p.cost_usd, p.cost_usd)
        );
        assert_eq!(entry.savings_usd, [0.0; 4]);
        assert_eq!(
            entry.tier,
            Tier::Interactive,
            "the tier label stays interactive"
        );
        assert!(a.warned.lock().unwrap().is_empty());
        // gpt-5.6-sol lists no ultrafast rate: billed at standard, warned once per model.
        let fast = Usage {
            served_tier: Some(ServedTier::Ultrafast),
            ..usage
        };
        for _ in 0..3 {
            let (p, _) = a.price(&answer("gpt-5.6-sol", fast), 0);
            assert_eq!(p.unwrap().unrated_tier, Some(ServedTier::Ultrafast));
        }
        assert_eq!(a.warned.lock().unwrap().len(), 1);
        a.price(&answer("gpt-5.5", fast), 0);
        assert_eq!(a.warned.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_clean_shutdown_loses_no_ledger_entry() {
        let store: Arc<dyn Store> = Arc::new(
            crate::store::sqlite::SqliteStore::open("sqlite::memory:")
                .await
                .unwrap(),
        );
        let metrics = Arc::new(Metrics::new(prometheus::Registry::new()).unwrap());
        let a = Accountant::new(
            Arc::new(PriceTable::builtin()),
            crate::policy::PolicySet::from_sources(&[]).unwrap().models,
            metrics,
        )
        .with_ledger(store.clone());
        // All added before the writer runs at all.
        const N: u64 = 1_300;
        for i in 0..N {
            a.record(&Answer {
                route: "default",
                client: "default",
                provider: Provider::OpenAi,
                model: "gpt-4o-mini",
                tier: if i % 2 == 0 {
                    Tier::Interactive
                } else {
                    Tier::Batch
                },
                status: 200,
                usage: Some(Usage {
                    input_tokens: 10,
                    output_tokens: 5,
                    ..Usage::default()
                }),
            });
        }
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        a.close_ledger(deadline).await.unwrap();
        let rows = store.report(0).await.unwrap();
        assert_eq!(rows.iter().map(|r| r.requests).sum::<u64>(), N);
        // Summed, not a row each: two tiers, in one minute (or two, on a boundary).
        assert!(store.ledger_rows().await.unwrap() <= 4);
        // Closed: a late answer is counted in the metrics only.
        a.record(&Answer {
            route: "default",
            client: "default",
            provider: Provider::OpenAi,
            model: "gpt-4o-mini",
            tier: Tier::Interactive,
            status: 200,
            usage: None,
        });
        store.close().await;
    }

    #[test]
    fn unpriced_names_cost_a_bounded_set_of_hashes() {
        let metrics = Arc::new(Metrics::new(prometheus::Registry::new()).unwrap());
        let a = Accountant::new(
            Arc::new(PriceTable::builtin()),
            crate::policy::PolicySet::from_sources(&[]).unwrap().models,
            metrics,
        );
        let long = "x".repeat(64 * 1024);
        for i in 0..3 * MAX_WARNED_MODELS {
            a.warn_unpriced(&format!("{long}{i}"));
        }
        let warned = a.warned.lock().unwrap();
        assert_eq!(warned.len(), MAX_WARNED_MODELS);
        // 8 bytes a name, whatever its length.
        assert_eq!(std::mem::size_of_val(warned.iter().next().unwrap()), 8);
    }
}
