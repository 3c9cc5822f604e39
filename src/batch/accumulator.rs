//! The accumulator: which queued jobs go out together, and when. Pure: the caller passes
//! the queued jobs (from the store) and the time; nothing here does I/O or reads a clock.
//!
//! Jobs are grouped by what one upstream batch may hold (provider, endpoint, model: an
//! OpenAI batch file holds one model and one endpoint). Within a group, jobs sharing a
//! prompt prefix are kept adjacent so they reach the provider together and hit its cache.
//! A group flushes when it reaches the request or byte limit, or when any member's
//! `flush_by_ms` has come: the earlier of "oldest waited max_wait" and "the deadline
//! needs the batch to start now".

use crate::types::{Endpoint, Provider};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey {
    pub provider: Provider,
    pub endpoint: Endpoint,
    pub model: String,
}

/// One queued job as the accumulator sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub id: String,
    pub key: GroupKey,
    pub body_bytes: u64,
    pub prefix: Option<String>,
    pub created_at_ms: i64,
    /// Latest time this job may still wait for more company (see module docs).
    pub flush_by_ms: i64,
}

/// Per-provider limits of one upstream batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_requests: usize,
    pub max_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushReason {
    /// The group holds a full batch (requests or bytes).
    Full,
    /// A member's `flush_by_ms` has come (max wait or deadline).
    Due,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FlushPlan {
    pub key: GroupKey,
    /// In file order: same-prefix jobs adjacent, oldest first within a prefix.
    pub job_ids: Vec<String>,
    pub reason: FlushReason,
}

/// The flushes to make now. `limits(key)` gives each group's batch limits (policy
/// overrides may lower `max_requests`).
pub fn plan(
    pending: &[Pending],
    now_ms: i64,
    limits: impl Fn(&GroupKey) -> Limits,
) -> Vec<FlushPlan> {
    let mut groups: std::collections::BTreeMap<&GroupKey, Vec<&Pending>> =
        std::collections::BTreeMap::new();
    for p in pending {
        groups.entry(&p.key).or_default().push(p);
    }
    let mut plans = Vec::new();
    for (key, mut members) in groups {
        let lim = limits(key);
        let max_requests = lim.max_requests.max(1);
        // Prefix groups ordered by their oldest member, so the oldest work goes first.
        members.sort_by(|a, b| {
            a.prefix
                .cmp(&b.prefix)
                .then(a.created_at_ms.cmp(&b.created_at_ms))
                .then(a.id.cmp(&b.id))
        });
        let mut oldest_of_prefix: std::collections::HashMap<Option<&str>, i64> =
            std::collections::HashMap::new();
        for m in &members {
            let e = oldest_of_prefix
                .entry(m.prefix.as_deref())
                .or_insert(m.created_at_ms);
            *e = (*e).min(m.created_at_ms);
        }
        members.sort_by(|a, b| {
            let oa = oldest_of_prefix[&a.prefix.as_deref()];
            let ob = oldest_of_prefix[&b.prefix.as_deref()];
            oa.cmp(&ob)
                .then(a.prefix.cmp(&b.prefix))
                .then(a.created_at_ms.cmp(&b.created_at_ms))
                .then(a.id.cmp(&b.id))
        });

        // Cut the group into batch-sized chunks.
        let mut chunks: Vec<Vec<&Pending>> = Vec::new();
        let mut cur: Vec<&Pending> = Vec::new();
        let mut cur_bytes = 0u64;
        for m in members {
            if !cur.is_empty()
                && (cur.len() >= max_requests || cur_bytes + m.body_bytes > lim.max_bytes)
            {
                chunks.push(std::mem::take(&mut cur));
                cur_bytes = 0;
            }
            cur_bytes += m.body_bytes;
            cur.push(m);
        }
        let last = cur;
        let due = |c: &[&Pending]| c.iter().any(|m| m.flush_by_ms <= now_ms);
        // Every chunk but the last is full by construction.
        for c in chunks {
            plans.push(FlushPlan {
                key: key.clone(),
                job_ids: c.iter().map(|m| m.id.clone()).collect(),
                reason: FlushReason::Full,
            });
        }
        if !last.is_empty() {
            let bytes: u64 = last.iter().map(|m| m.body_bytes).sum();
            let full = last.len() >= max_requests || bytes >= lim.max_bytes;
            if full || due(&last) {
                plans.push(FlushPlan {
                    key: key.clone(),
                    job_ids: last.iter().map(|m| m.id.clone()).collect(),
                    reason: if full {
                        FlushReason::Full
                    } else {
                        FlushReason::Due
                    },
                });
            }
        }
    }
    plans
}

/// When the earliest member of the not-yet-due groups becomes due (for the scheduler's
/// sleep), or `None` when nothing is pending.
pub fn next_due(pending: &[Pending]) -> Option<i64> {
    pending.iter().map(|p| p.flush_by_ms).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(model: &str) -> GroupKey {
        GroupKey {
            provider: Provider::OpenAi,
            endpoint: Endpoint::ChatCompletions,
            model: model.into(),
        }
    }

    fn job(id: &str, model: &str, prefix: Option<&str>, created: i64, flush_by: i64) -> Pending {
        Pending {
            id: id.into(),
            key: key(model),
            body_bytes: 100,
            prefix: prefix.map(Into::into),
            created_at_ms: created,
            flush_by_ms: flush_by,
        }
    }

    const BIG: Limits = Limits {
        max_requests: 1000,
        max_bytes: 1 << 30,
    };

    #[test]
    fn nothing_flushes_before_it_is_due() {
        let p = vec![job("a", "m", None, 0, 100), job("b", "m", None, 10, 110)];
        assert!(plan(&p, 99, |_| BIG).is_empty());
        let got = plan(&p, 100, |_| BIG);
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].job_ids,
            vec!["a", "b"],
            "the whole group goes when one member is due"
        );
        assert_eq!(got[0].reason, FlushReason::Due);
        assert_eq!(next_due(&p), Some(100));
    }

    #[test]
    fn groups_never_mix_models_or_endpoints() {
        let mut e = job("e", "m", None, 0, 0);
        e.key.endpoint = Endpoint::Embeddings;
        let p = vec![job("a", "m", None, 0, 0), job("b", "n", None, 0, 0), e];
        let got = plan(&p, 0, |_| BIG);
        assert_eq!(got.len(), 3);
        for f in &got {
            assert_eq!(f.job_ids.len(), 1);
        }
    }

    #[test]
    fn same_prefix_jobs_are_adjacent_oldest_prefix_first() {
        let p = vec![
            job("1", "m", Some("y"), 5, 0),
            job("2", "m", Some("x"), 1, 0),
            job("3", "m", Some("y"), 6, 0),
            job("4", "m", Some("x"), 9, 0),
            job("5", "m", None, 3, 0),
        ];
        let got = plan(&p, 0, |_| BIG);
        assert_eq!(got[0].job_ids, vec!["2", "4", "5", "1", "3"]);
    }

    #[test]
    fn full_groups_flush_early_and_split_at_limits() {
        let p: Vec<Pending> = (0..7)
            .map(|i| job(&format!("{i}"), "m", None, i, 1_000))
            .collect();
        let lim = Limits {
            max_requests: 3,
            max_bytes: 1 << 30,
        };
        let got = plan(&p, 0, |_| lim);
        assert_eq!(
            got.iter().map(|f| f.job_ids.len()).collect::<Vec<_>>(),
            vec![3, 3],
            "the partial rest waits"
        );
        assert!(got.iter().all(|f| f.reason == FlushReason::Full));
        let by_bytes = Limits {
            max_requests: 100,
            max_bytes: 250,
        };
        let got = plan(&p, 0, |_| by_bytes);
        assert_eq!(
            got.iter().map(|f| f.job_ids.len()).collect::<Vec<_>>(),
            vec![2, 2, 2]
        );
        let got = plan(&p, 1_000, |_| by_bytes);
        assert_eq!(
            got.iter().map(|f| f.job_ids.len()).collect::<Vec<_>>(),
            vec![2, 2, 2, 1]
        );
    }
}
