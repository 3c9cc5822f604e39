//! The end of a flush: result lines delivered to their jobs (first answer wins, waste
//! recorded), what did not run put back, and the watchdog's synchronous fallback.

use super::*;
use crate::error::GatewayError;
use crate::providers::BatchState;
use crate::providers::lines::LineSplitter;
use crate::store::ledger::LedgerRow;

impl Engine {
    /// A terminal batch: deliver every result line, put back what did not run.
    pub(super) async fn finish(&self, f: &Flush, b: &UpstreamBatch) -> Result<(), EngineError> {
        let now = self.now();
        match &b.state {
            BatchState::Refused { lines } if lines.is_empty() => {
                // The whole batch was refused (e.g. enqueued-token limit): try again later.
                let until = now + ms(self.cfg.poll_interval * 10).max(60_000);
                lock(&self.backoff).insert(
                    GroupKey {
                        provider: f.provider,
                        endpoint: f.endpoint,
                        model: f.model.clone(),
                    },
                    until,
                );
            }
            BatchState::Refused { lines } => self.refuse_lines(f, lines, now).await?,
            BatchState::Ended { results } => {
                for location in results {
                    self.deliver_file(f, location).await?;
                }
            }
            BatchState::Running => {}
        }
        let open = self.store.flush_open_jobs(&f.id).await?;
        if !open.is_empty() {
            tracing::info!(flush = %f.id, status = %b.status, jobs = open.len(), "requeueing jobs the batch did not answer");
            self.store.requeue(&open).await?;
            self.wake.notify_one();
        }
        self.store
            .update_flush(
                &f.id,
                FlushUpdate {
                    state: Some(FlushState::Ended),
                    upstream_status: Some(b.status.clone()),
                    ended_at_ms: Some(now),
                    ..FlushUpdate::default()
                },
            )
            .await?;
        // This replica learns its own batch's turnaround at once (the others at their next
        // census, which also retries a failed read here), before the metrics say it ended.
        if let Err(e) = self.refresh_turnaround(f.provider, &f.model).await {
            tracing::warn!(error = %e, "deferred tier: cannot read the turnaround of a batch that ended");
        }
        let m = self.accountant.metrics();
        m.batches
            .with_label_values(&[f.provider.as_str(), &b.status])
            .inc();
        if let Some(sub) = f.submitted_at_ms {
            m.batch_turnaround
                .with_label_values(&[f.provider.as_str()])
                .observe((now - sub).max(0) as f64 / 1000.0);
        }
        Ok(())
    }

    /// Answers the input lines a refused batch named (1-based) with the provider's reason;
    /// the rest are requeued by the caller.
    async fn refuse_lines(
        &self,
        f: &Flush,
        lines: &[(u64, String)],
        now: i64,
    ) -> Result<(), EngineError> {
        let mut positions: HashMap<u32, String> = HashMap::new();
        let mut after = None;
        loop {
            let page = self.store.flush_bodies(&f.id, after, 1000).await?;
            let Some((last, _, _)) = page.last() else {
                break;
            };
            after = Some(*last);
            positions.extend(page.into_iter().map(|(pos, id, _)| (pos, id)));
        }
        let mut sorted: Vec<u32> = positions.keys().copied().collect();
        sorted.sort_unstable();
        for (line, message) in lines {
            let Some(id) = sorted
                .get((*line as usize).saturating_sub(1))
                .and_then(|p| positions.get(p))
            else {
                continue;
            };
            let e = GatewayError::BatchLineInvalid {
                provider: f.provider.as_str(),
                message: message.clone(),
            };
            self.complete(id, Reply::Gateway(e), Tier::Batch, None, now)
                .await?;
        }
        Ok(())
    }

    async fn deliver_file(&self, f: &Flush, location: &str) -> Result<(), EngineError> {
        let Some(adapter) = self.adapter(f.provider) else {
            return Ok(());
        };
        let mut body = adapter.results(location).await?;
        let mut lines = LineSplitter::default();
        let mut delivered = 0usize;
        loop {
            let (batch, end) = match body.frame().await {
                Some(Ok(frame)) => (
                    frame
                        .into_data()
                        .map(|d| lines.push(&d))
                        .unwrap_or_default(),
                    false,
                ),
                Some(Err(e)) => {
                    return Err(EngineError::Api(BatchApiError::Transport {
                        provider: f.provider.as_str(),
                        reason: e.to_string(),
                    }));
                }
                None => (lines.finish().into_iter().collect(), true),
            };
            // A large result file takes a while: progress, not a stuck loop.
            self.liveness.beat();
            for line in batch {
                match adapter.parse_line(&line) {
                    Ok((id, outcome)) => {
                        self.deliver_line(f, &id, outcome).await?;
                        delivered += 1;
                        if delivered == 1 {
                            failpoint("mid_delivery");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(flush = %f.id, error = %e, "skipping an unreadable result line")
                    }
                }
            }
            if end {
                return Ok(());
            }
        }
    }

    async fn deliver_line(
        &self,
        f: &Flush,
        id: &str,
        outcome: LineOutcome,
    ) -> Result<(), EngineError> {
        match outcome {
            LineOutcome::Answered { status, body } => {
                let usage = (200..300)
                    .contains(&status)
                    .then(|| crate::providers::batch_usage(f.provider, &body))
                    .flatten();
                self.complete(
                    id,
                    Reply::Batch { status, body },
                    Tier::Batch,
                    usage,
                    self.now(),
                )
                .await
            }
            // Expired or cancelled before it ran: requeued with the flush's open jobs.
            LineOutcome::NotRun { .. } => Ok(()),
        }
    }

    /// Stores a job's answer (first answer wins) with its ledger entry, accounts for it and
    /// wakes its waiters. A batch answer that lost to a fallback is recorded as waste; the
    /// same batch line delivered again after a restart is neither.
    pub(super) async fn complete(
        &self,
        id: &str,
        reply: Reply,
        tier: Tier,
        usage: Option<Usage>,
        now: i64,
    ) -> Result<(), EngineError> {
        let Some(job) = self.store.job(id).await? else {
            tracing::warn!(job = id, "result for an unknown job (purged?)");
            return Ok(());
        };
        let (status, body) = reply.for_caller(&job);
        let answer = Answer {
            route: &job.route,
            client: &job.client,
            provider: job.provider,
            model: &job.model,
            tier,
            status,
            usage,
        };
        let (priced, entry) = self.accountant.price(&answer, now);
        let result = JobResult {
            status,
            body,
            answered_by: tier,
            usage,
            completed_at_ms: now,
        };
        if self
            .store
            .complete_job(id, result, Some(entry.clone()))
            .await?
        {
            self.accountant.record_metrics(&answer, priced.as_ref());
            if now > job.deadline_ms {
                self.accountant
                    .metrics()
                    .sla_violations
                    .with_label_values(&[&job.route])
                    .inc();
            }
            self.notify(id);
            return Ok(());
        }
        // Someone answered first: another tier (this spend is waste), or this very batch
        // line before a restart (already booked once).
        let first = self
            .store
            .job(id)
            .await?
            .and_then(|j| j.result)
            .map(|r| r.answered_by);
        if first != Some(tier) && entry.cost_usd > 0.0 {
            let reason = if tier == Tier::Batch {
                "late_batch_result"
            } else {
                "late_fallback"
            };
            self.accountant
                .metrics()
                .wasted
                .with_label_values(&[&job.route, reason])
                .inc_by(entry.cost_usd);
            self.store
                .record(&[LedgerRow::of(&LedgerEntry {
                    wasted: true,
                    savings_usd: [0.0; 4],
                    ..entry
                })])
                .await?;
        }
        Ok(())
    }

    pub(super) async fn fail_all(
        &self,
        f: &Flush,
        message: &str,
        now: i64,
    ) -> Result<(), EngineError> {
        for id in self.store.flush_open_jobs(&f.id).await? {
            let e = GatewayError::BatchRejected {
                provider: f.provider.as_str(),
                reason: message.to_owned(),
            };
            self.complete(&id, Reply::Gateway(e), Tier::Batch, None, now)
                .await?;
        }
        self.store
            .update_flush(
                &f.id,
                FlushUpdate {
                    state: Some(FlushState::Ended),
                    upstream_status: Some("rejected".into()),
                    ended_at_ms: Some(now),
                    ..FlushUpdate::default()
                },
            )
            .await?;
        Ok(())
    }

    /// Answers a job synchronously (deadline fallback). Only the replica that claims the
    /// job sends it.
    pub async fn fallback(self: Arc<Self>, job: Job, reason: &'static str) {
        // One call per job in this process, however often the watchdog sees it.
        if !lock(&self.in_flight).insert(job.id.clone()) {
            return;
        }
        // Removed however the call ends (the task may be dropped at shutdown).
        let _in_flight = InFlight {
            engine: &self,
            id: &job.id,
        };
        self.clone().fallback_once(&job, reason).await;
    }

    async fn fallback_once(self: Arc<Self>, job: &Job, reason: &'static str) {
        if self.tasks.is_stopped() {
            return; // shutting down: the next tick anywhere takes it
        }
        let lease = self.fallback_lease();
        let mut held = self.now() + ms(lease);
        match self.store.claim_fallback(&job.id, self.now(), held).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => return tracing::warn!(job = %job.id, error = %e, "fallback claim failed"),
        }
        // A job already in `Fallback` is a retake of a lapsed or handed-back claim: the same
        // fallback, counted once by the replica that first claimed it.
        if job.state != crate::store::JobState::Fallback {
            self.accountant
                .metrics()
                .fallbacks
                .with_label_values(&[&job.route, job.tier.as_str(), reason])
                .inc();
        }
        // The claim is renewed while the call runs, so it lapses only if this process dies;
        // at shutdown it is handed back (lease 0) for the next tick anywhere to retake.
        let call = self.call_synchronously(job);
        tokio::pin!(call);
        let every = (lease / 3).max(Duration::from_millis(10));
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let reply = loop {
            tokio::select! {
                r = &mut call => break r,
                _ = renew.tick() => held = self.renew_fallback(&job.id, held, lease).await,
                _ = self.tasks.stopped() => return self.hand_back(&job.id, held).await,
            }
        };
        let Some(reply) = reply else { return };
        let usage = match &reply {
            Reply::Provider { status, body } if (200..300).contains(status) => {
                crate::usage::from_json(body)
            }
            _ => None,
        };
        if let Err(e) = self
            .complete(&job.id, reply, Tier::Interactive, usage, self.now())
            .await
        {
            tracing::warn!(job = %job.id, error = %e, "fallback answer could not be stored");
        }
    }

    /// Extends a fallback claim held until `held`; returns the lease now held.
    async fn renew_fallback(&self, id: &str, held: i64, lease: Duration) -> i64 {
        let until = self.now() + ms(lease);
        match self.store.renew_fallback(id, held, until).await {
            Ok(true) => until,
            Ok(false) => {
                // Retaken after a lapse: the first answer stored wins (compare-and-set).
                tracing::warn!(job = %id, "fallback lease lost");
                held
            }
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "fallback lease not renewed");
                held
            }
        }
    }

    /// Shutdown: the claim is released for the next tick anywhere to retake at once.
    async fn hand_back(&self, id: &str, held: i64) {
        match self.store.renew_fallback(id, held, 0).await {
            Ok(_) => tracing::info!(job = %id, "shutdown: fallback handed back"),
            Err(e) => tracing::warn!(
                job = %id,
                error = %e,
                "shutdown: fallback not handed back; retaken once its lease lapses"
            ),
        }
    }

    /// The job sent as a synchronous request: `None` if its body is gone (purged).
    async fn call_synchronously(&self, job: &Job) -> Option<Reply> {
        let body = match self.store.job_body(&job.id).await {
            Ok(Some(b)) => b,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(job = %job.id, error = %e, "fallback: cannot read the body");
                return None;
            }
        };
        let upstream = crate::providers::upstream_endpoint(job.provider, job.endpoint);
        let billing = self
            .policies
            .clients()
            .iter()
            .find(|c| *c.name == *job.client)
            .map_or(crate::forward::Billing::NONE, |c| c.billing(job.provider));
        let sent = self
            .forwarder
            .send(
                job.provider,
                upstream,
                &job.model,
                &http::HeaderMap::new(),
                billing,
                body,
            )
            .await;
        Some(match sent {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let timeout = self.forwarder.response_timeout();
                match forward::read_answer(job.provider, resp.into_body(), timeout).await {
                    Ok(body) => Reply::Provider { status, body },
                    Err(e) => Reply::Gateway(e),
                }
            }
            Err(e) => Reply::Gateway(e),
        })
    }
}

/// A job's answer as it arrived: from the provider (in the provider's API, interactive or
/// a batch result line, which may differ), or a gateway error. Stored in the API its
/// caller spoke.
pub(super) enum Reply {
    Provider { status: u16, body: Bytes },
    Batch { status: u16, body: Bytes },
    Gateway(GatewayError),
}

impl Reply {
    fn for_caller(self, job: &Job) -> (u16, Bytes) {
        let created = job.created_at_ms / 1000;
        let (status, translated) = match self {
            Reply::Gateway(e) => {
                return (
                    e.status().as_u16(),
                    Bytes::from(e.to_json(job.endpoint.api())),
                );
            }
            Reply::Provider { status, body } => (
                status,
                crate::providers::for_caller(
                    job.provider,
                    job.endpoint,
                    status,
                    body,
                    (&job.model, created),
                ),
            ),
            Reply::Batch { status, body } => (
                status,
                crate::providers::batch_for_caller(
                    job.provider,
                    job.endpoint,
                    status,
                    body,
                    &job.model,
                    created,
                ),
            ),
        };
        match translated {
            Ok(body) => (status, body),
            Err(reason) => {
                let e = GatewayError::UpstreamBadResponse {
                    provider: job.provider.as_str(),
                    reason,
                };
                (
                    e.status().as_u16(),
                    Bytes::from(e.to_json(job.endpoint.api())),
                )
            }
        }
    }
}

/// A job this process is sending synchronously; leaves `Engine::in_flight` when dropped.
struct InFlight<'a> {
    engine: &'a Engine,
    id: &'a str,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        lock(&self.engine.in_flight).remove(self.id);
    }
}
