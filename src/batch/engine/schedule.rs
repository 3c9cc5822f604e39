//! Which queued jobs go out together, and when: each job's flush-by time (its route's
//! wait, its deadline less the batch lead), the accumulator's plan, and the claim of each
//! planned group as a flush.

use super::*;

impl Engine {
    /// Claims every group that is due as a flush. Returns when the next group falls due.
    pub(super) async fn flush_due(&self, now: i64) -> Result<i64, StoreError> {
        let mut next = now + ms(self.cfg.poll_interval);
        let queued = self.store.queued().await?;
        let (pending, group_max) = self.pending(&queued);
        let plans = accumulator::plan(&pending, now, |k| {
            let caps = crate::providers::capabilities(k.provider);
            Limits {
                max_requests: group_max.get(k).map_or(caps.max_batch_requests, |&m| {
                    (m as usize).min(caps.max_batch_requests)
                }),
                max_bytes: caps.max_batch_bytes,
            }
        });
        let planned: std::collections::HashSet<&str> = plans
            .iter()
            .flat_map(|p| p.job_ids.iter().map(String::as_str))
            .collect();
        if let Some(t) = accumulator::next_due(
            &pending
                .iter()
                .filter(|p| !planned.contains(p.id.as_str()))
                .cloned()
                .collect::<Vec<_>>(),
        ) {
            next = next.min(t);
        }
        for plan in plans {
            self.claim(plan, now).await?;
        }
        Ok(next)
    }

    /// The batch jobs of the queue with their flush-by times, and the per-group request
    /// caps routes set. (The queue-depth gauge is the census's: every replica's the same.)
    fn pending(
        &self,
        queued: &[crate::store::QueuedJob],
    ) -> (Vec<Pending>, HashMap<GroupKey, u32>) {
        let mut group_max: HashMap<GroupKey, u32> = HashMap::new();
        let backoff = lock(&self.backoff).clone();
        let mut pending = Vec::with_capacity(queued.len());
        for q in queued {
            if q.tier != Tier::Batch || !self.batches(q.provider) {
                continue;
            }
            let key = GroupKey {
                provider: q.provider,
                endpoint: q.endpoint,
                model: q.model.clone(),
            };
            let (wait, max) = self.route_limits(&q.route);
            let by_wait = q.created_at_ms + ms(wait.unwrap_or(self.cfg.max_wait));
            // The same margins triage used to defer it (`BatchLead`), so the answer is in
            // before the watchdog would send the job synchronously.
            let lead = self.cfg.batch_lead();
            let by_deadline = q.deadline_ms
                - ms(self.turnaround_p95(q.provider, &q.model))
                - ms(lead.fallback)
                - ms(lead.submit);
            let mut flush_by = by_wait.min(by_deadline);
            if let Some(&until) = backoff.get(&key) {
                flush_by = flush_by.max(until);
            }
            if let Some(m) = max.or(self.cfg.max_requests) {
                let e = group_max.entry(key.clone()).or_insert(m);
                *e = (*e).min(m);
            }
            pending.push(Pending {
                id: q.id.clone(),
                key,
                body_bytes: q.body_bytes,
                prefix: q.prefix.clone(),
                created_at_ms: q.created_at_ms,
                flush_by_ms: flush_by,
            });
        }
        (pending, group_max)
    }

    async fn claim(&self, plan: accumulator::FlushPlan, now: i64) -> Result<(), StoreError> {
        let flush = NewFlush {
            id: new_id("flush"),
            provider: plan.key.provider,
            endpoint: plan.key.endpoint,
            model: plan.key.model.clone(),
            created_at_ms: now,
        };
        let claimed = self
            .store
            .claim_flush(
                flush,
                &plan.job_ids,
                &self.cfg.owner,
                now + ms(self.cfg.lease),
            )
            .await?;
        tracing::info!(model = %plan.key.model, jobs = claimed.len(), reason = ?plan.reason, "flushing a batch group");
        failpoint("after_claim");
        Ok(())
    }
}
