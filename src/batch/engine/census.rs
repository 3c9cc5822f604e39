//! One truth across replicas: the queue depth and the observed batch turnaround that every
//! replica reports (`sluice_batch_queue_depth`, `GET /sluice/v1/turnaround`) and triages
//! with are read from the shared store, once per refresh, not taken from what this replica
//! saw itself. A refresh is one small query ([`Store::census`]); turnarounds are re-read
//! only when some replica ended a batch (and every [`REREAD_ALL`] whatever happened).

use std::collections::HashSet;

use super::*;
use crate::store::Census;

/// The newest turnarounds triage's p95 is taken over: recent enough to follow a provider
/// that slows down.
const TRIAGE_WINDOW: usize = 200;
/// The newest turnarounds the turnaround endpoint's percentiles are taken over.
/// Older ended flushes are purged with their jobs (see [`Store::purge`]).
pub(super) const REPORT_WINDOW: u32 = 1000;
/// Batches that ended this long before this replica's now are still looked at: their end
/// times come from other replicas' clocks.
const ENDED_OVERLAP: Duration = Duration::from_secs(300);
/// How often a replica takes its census: often enough for a scrape (15 s) or a triage
/// decision to see the store's numbers, rarely enough to cost nothing.
const CENSUS_EVERY: Duration = Duration::from_secs(1);
/// Every turnaround is re-read this often, whatever the census showed: the correctness
/// path for an end time (another replica's clock) older than [`ENDED_OVERLAP`].
pub(super) const REREAD_ALL: Duration = Duration::from_secs(600);

/// Observed batch turnaround (submit to end) of one provider and model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    /// Batches observed (the newest, at most 1,000).
    pub samples: usize,
    pub p50: Duration,
    pub p90: Duration,
    pub p95: Duration,
    pub p99: Duration,
    /// The p95 of the newest 200: what triage uses.
    pub triage_p95: Duration,
}

impl Observed {
    /// From turnarounds in ms, newest first; `None` when there are none.
    pub fn of(newest_first: &[i64]) -> Option<Observed> {
        fn sorted(s: &[i64]) -> Vec<i64> {
            let mut s = s.to_vec();
            s.sort_unstable();
            s
        }
        fn pct(sorted: &[i64], q: f64) -> Duration {
            let i = ((sorted.len() - 1) as f64 * q).round() as usize;
            Duration::from_millis(sorted[i].max(0) as u64)
        }
        if newest_first.is_empty() {
            return None;
        }
        let all = sorted(newest_first);
        let recent = sorted(&newest_first[..newest_first.len().min(TRIAGE_WINDOW)]);
        Some(Observed {
            samples: all.len(),
            p50: pct(&all, 0.50),
            p90: pct(&all, 0.90),
            p95: pct(&all, 0.95),
            p99: pct(&all, 0.99),
            triage_p95: pct(&recent, 0.95),
        })
    }
}

/// What the refresh remembers from one census to the next.
#[derive(Debug, Default)]
pub(super) struct CensusState {
    /// Batches seen ended within [`ENDED_OVERLAP`] at the last census.
    ended: HashSet<String>,
    /// When every turnaround is re-read next (0: at the first census).
    reread_at_ms: i64,
    /// The queue-depth series set last time, so one that emptied is removed.
    depth_series: HashSet<(Provider, String)>,
}

impl Engine {
    /// Refreshes queue depth and turnaround from the store every [`CENSUS_EVERY`], until
    /// the engine stops.
    pub(super) async fn census_loop(&self) {
        let mut state = CensusState::default();
        let mut every = tokio::time::interval(CENSUS_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if let Err(e) = self.take_census(&mut state).await {
                tracing::warn!(error = %e, "deferred tier: cannot read queue depth and turnaround");
            }
        }
    }

    /// One refresh: the queue-depth gauge as the store has it, and the turnaround of every
    /// provider and model some replica ended a batch of since the last census.
    pub(super) async fn take_census(&self, state: &mut CensusState) -> Result<(), StoreError> {
        let now = self.now();
        let Census { queued, ended } = self.store.census(now - ms(ENDED_OVERLAP)).await?;
        self.set_queue_depth(&queued, &mut state.depth_series);
        if now >= state.reread_at_ms {
            let mut all: HashMap<Provider, HashMap<String, Observed>> = HashMap::new();
            for (p, model, samples) in self.store.all_turnarounds(REPORT_WINDOW).await? {
                if let Some(o) = Observed::of(&samples) {
                    all.entry(p).or_default().insert(model, o);
                }
            }
            *lock(&self.turnaround) = all;
            state.reread_at_ms = now + ms(REREAD_ALL);
        } else {
            let changed: HashSet<(Provider, &str)> = ended
                .iter()
                .filter(|f| !state.ended.contains(&f.id))
                .map(|f| (f.provider, f.model.as_str()))
                .collect();
            for (p, model) in changed {
                self.refresh_turnaround(p, model).await?;
            }
        }
        state.ended = ended.into_iter().map(|f| f.id).collect();
        Ok(())
    }

    /// Re-reads one provider and model's turnaround (a batch of it just ended).
    pub(super) async fn refresh_turnaround(
        &self,
        provider: Provider,
        model: &str,
    ) -> Result<(), StoreError> {
        let samples = self
            .store
            .turnarounds(provider, model, REPORT_WINDOW)
            .await?;
        if let Some(o) = Observed::of(&samples) {
            lock(&self.turnaround)
                .entry(provider)
                .or_default()
                .insert(model.to_owned(), o);
        }
        Ok(())
    }

    /// Observed turnaround of a provider and model, as of the last refresh.
    pub fn observed_turnaround(&self, provider: Provider, model: &str) -> Option<Observed> {
        lock(&self.turnaround)
            .get(&provider)
            .and_then(|m| m.get(model))
            .copied()
    }

    /// Sets every queue-depth series to the store's count (summed by metric label: several
    /// unpriced models are `other`) and removes those whose queue emptied.
    fn set_queue_depth(
        &self,
        queued: &[(Provider, String, u64)],
        series: &mut HashSet<(Provider, String)>,
    ) {
        let mut depth: HashMap<(Provider, &str), u64> = HashMap::new();
        for (p, model, n) in queued {
            *depth
                .entry((*p, self.accountant.model_label(model)))
                .or_default() += n;
        }
        let gauge = &self.accountant.metrics().batch_queue_depth;
        for (&(p, label), &n) in &depth {
            gauge.with_label_values(&[p.as_str(), label]).set(n as f64);
        }
        for (p, label) in series.iter() {
            if !depth.contains_key(&(*p, label.as_str())) {
                let _ = gauge.remove_label_values(&[p.as_str(), label.as_str()]);
            }
        }
        *series = depth
            .into_keys()
            .map(|(p, label)| (p, label.to_owned()))
            .collect();
    }
}
