//! Batches clients create themselves through the explicit Batch APIs (passed through, see
//! `gateway::owned`): priced into the ledger and the metrics once each, when they end.
//!
//! The store keeps an ownership record per batch; each pass reads the batches not priced
//! yet at their provider, and those that ended have their result lines priced at the batch
//! tier and written with [`Store::price_batch`], which marks the batch priced in the same
//! transaction. So a batch is priced exactly once, whichever replica sees it end and
//! however often (a restart between its end and its pickup, two replicas at once); the
//! metrics are recorded by the pass whose write priced it.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use http_body_util::BodyExt;

use super::{Engine, EngineError, ms};
use crate::account::Answer;
use crate::pricing::Priced;
use crate::providers::lines::LineSplitter;
use crate::providers::{Adapter, BatchApiError, BatchState, LineOutcome};
use crate::store::Owned;
use crate::store::ledger::{LedgerKey, LedgerRow, LedgerSums};
use crate::types::{Tier, Usage};

/// Batches read per pass: a pass is one request to the provider per batch.
const PER_PASS: u32 = 100;
/// A batch whose provider cannot be asked is asked again after at least this long.
const RETRY_MS: i64 = 30_000;

/// One priced line, kept for the metrics until the ledger write tells whether it counts.
struct Line {
    model: String,
    status: u16,
    usage: Option<Usage>,
    priced: Option<Priced>,
}

impl Engine {
    /// Starts a pass over the owned batches due for a check, unless one is running.
    pub fn price_explicit_soon(self: &std::sync::Arc<Self>) {
        if self.explicit_running.swap(true, Ordering::AcqRel) {
            return;
        }
        let engine = self.clone();
        self.tasks.spawn(async move {
            if let Err(e) = engine.price_explicit().await {
                tracing::warn!(error = %e, "pricing client-created batches: retrying later");
            }
            engine.explicit_running.store(false, Ordering::Release);
        });
    }

    async fn price_explicit(&self) -> Result<(), EngineError> {
        let now = self.now();
        for batch in self.store.unpriced_batches(now, PER_PASS).await? {
            self.liveness.beat();
            self.price_if_ended(&batch).await?;
        }
        Ok(())
    }

    /// Reads `batch` at its provider and prices it if it ended; else puts its next check
    /// off by a poll interval. Also called before a client deletes its batch (its results
    /// go with it).
    pub async fn price_if_ended(&self, batch: &Owned) -> Result<(), EngineError> {
        let now = self.now();
        let Some(adapter) = self.adapter(batch.provider) else {
            // Its provider is no longer configured: nothing can read it until it is again.
            self.store
                .check_batch_at(batch.provider, &batch.id, now + RETRY_MS)
                .await?;
            return Ok(());
        };
        let later = now + ms(self.cfg.poll_interval);
        let upstream = match adapter.get(&batch.id).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(batch = %batch.id, error = %e, "cannot read a client's batch");
                self.store
                    .check_batch_at(batch.provider, &batch.id, later.max(now + RETRY_MS))
                    .await?;
                return Ok(());
            }
        };
        let lines = match upstream.state {
            BatchState::Running => {
                self.store
                    .check_batch_at(batch.provider, &batch.id, later)
                    .await?;
                return Ok(());
            }
            // Refused as a whole: nothing ran, nothing is billed.
            BatchState::Refused { .. } => Vec::new(),
            BatchState::Ended { results } => {
                let mut lines = Vec::new();
                for location in &results {
                    match self.read_lines(adapter, batch, location, &mut lines).await {
                        Ok(()) => {}
                        Err(e) => {
                            tracing::warn!(batch = %batch.id, error = %e, "cannot read a client's batch results");
                            self.store
                                .check_batch_at(batch.provider, &batch.id, now + RETRY_MS)
                                .await?;
                            return Ok(());
                        }
                    }
                }
                lines
            }
        };
        self.settle(batch, lines).await
    }

    /// Prices every answered line of one result location.
    async fn read_lines(
        &self,
        adapter: &Adapter,
        batch: &Owned,
        location: &str,
        out: &mut Vec<Line>,
    ) -> Result<(), BatchApiError> {
        let mut body = adapter.results(location).await?;
        let mut split = LineSplitter::default();
        loop {
            let (lines, end) = match body.frame().await {
                Some(Ok(frame)) => (
                    frame
                        .into_data()
                        .map(|d| split.push(&d))
                        .unwrap_or_default(),
                    false,
                ),
                Some(Err(e)) => {
                    return Err(BatchApiError::Transport {
                        provider: batch.provider.as_str(),
                        reason: e.to_string(),
                    });
                }
                None => (split.finish().into_iter().collect(), true),
            };
            self.liveness.beat();
            for line in lines {
                match adapter.parse_line(&line) {
                    Ok((_, LineOutcome::Answered { status, body })) => {
                        out.push(self.price_line(batch, status, &body))
                    }
                    // Never ran (expired, cancelled): not billed.
                    Ok((_, LineOutcome::NotRun { .. })) => {}
                    Err(e) => {
                        tracing::warn!(batch = %batch.id, error = %e, "skipping an unreadable result line")
                    }
                }
            }
            if end {
                return Ok(());
            }
        }
    }

    fn price_line(&self, batch: &Owned, status: u16, body: &[u8]) -> Line {
        #[derive(serde::Deserialize)]
        struct Named {
            model: Option<String>,
        }
        let model = serde_json::from_slice::<Named>(body)
            .ok()
            .and_then(|n| n.model)
            .unwrap_or_default();
        let usage = (200..300)
            .contains(&status)
            .then(|| crate::providers::batch_usage(batch.provider, body))
            .flatten();
        let priced = usage.and_then(|u| self.accountant.quote(&model, Tier::Batch, &u));
        Line {
            model,
            status,
            usage,
            priced,
        }
    }

    /// Writes the batch's lines to the ledger and marks it priced, in one transaction; the
    /// metrics follow only if this write is the one that priced it.
    async fn settle(&self, batch: &Owned, lines: Vec<Line>) -> Result<(), EngineError> {
        let now = self.now();
        let mut rows: HashMap<LedgerKey, LedgerSums> = HashMap::new();
        for line in &lines {
            let (_, entry) = self.accountant.price(&self.answer(batch, line), now);
            let row = LedgerRow::of(&entry);
            let sums = rows.entry(row.key).or_default();
            sums.add(&entry);
        }
        let rows: Vec<LedgerRow> = rows
            .into_iter()
            .map(|(key, sums)| LedgerRow { key, sums })
            .collect();
        if !self
            .store
            .price_batch(batch.provider, &batch.id, now, &rows)
            .await?
        {
            return Ok(());
        }
        for line in &lines {
            self.accountant
                .record_metrics(&self.answer(batch, line), line.priced.as_ref());
        }
        tracing::info!(batch = %batch.id, client = %batch.client, lines = lines.len(), "priced a client-created batch");
        Ok(())
    }

    fn answer<'a>(&self, batch: &'a Owned, line: &'a Line) -> Answer<'a> {
        Answer {
            route: &batch.route,
            client: &batch.client,
            provider: batch.provider,
            model: &line.model,
            tier: Tier::Batch,
            status: line.status,
            usage: line.usage,
        }
    }
}
