//! Triage: one pure function from (route policy, request facts, SLA, what the gateway can
//! do right now) to a tier. No I/O and no clock, so every case is a unit test.

use std::time::Duration;

use crate::policy::RoutePolicy;
use crate::sla::Sla;
use crate::types::{Endpoint, Tier};

/// By default an SLA shorter than this is always served interactively: no deferred tier
/// can answer in time (`batch.interactive_below` in the config).
pub const INTERACTIVE_BELOW: Duration = Duration::from_secs(60);

/// Batch turnaround (p95) assumed for a provider and model until observed data exists.
/// Providers promise 24 h and typically answer in 2-6 h; 6 h is the prior.
pub const BATCH_TURNAROUND_PRIOR: Duration = Duration::from_secs(6 * 3600);

/// What triage needs to know about the request itself.
#[derive(Debug, Clone, Copy)]
pub struct Facts {
    pub endpoint: Endpoint,
    pub stream: bool,
    /// The model is offered at flex prices by its provider.
    pub flex_capable: bool,
}

/// What the gateway can do for this provider and model right now.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities {
    pub batch: bool,
    pub flex: bool,
    /// Observed (or prior) p95 batch turnaround for this provider and model.
    pub batch_turnaround_p95: Duration,
    /// How long before its deadline an unanswered deferred job is sent synchronously
    /// (`batch.fallback_lead`), plus the time a flush needs to reach the provider.
    pub batch_lead: BatchLead,
    /// SLAs shorter than this are interactive.
    pub interactive_below: Duration,
}

/// The two margins a batched job must leave before its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLead {
    /// The watchdog sends a job synchronously this long before its deadline.
    pub fallback: Duration,
    /// Time allowed between a flush being due and the batch being submitted (the
    /// engine's poll interval: one tick, the upload and the create call).
    pub submit: Duration,
}

impl BatchLead {
    pub const DEFAULT: BatchLead = BatchLead {
        fallback: Duration::from_secs(5 * 60),
        submit: Duration::from_secs(30),
    };

    /// The latest moment, relative to arrival, a batch holding this job may be flushed so
    /// that its answer (`p95` after submission) arrives before the fallback fires. `None`
    /// when no such moment exists: batching would end in a second, synchronous call.
    pub fn latest_flush(self, deadline: Duration, p95: Duration) -> Option<Duration> {
        deadline
            .checked_sub(self.fallback)?
            .checked_sub(p95)?
            .checked_sub(self.submit)
    }
}

impl Capabilities {
    /// Only the synchronous path exists.
    pub const INTERACTIVE_ONLY: Capabilities = Capabilities {
        batch: false,
        flex: false,
        batch_turnaround_p95: BATCH_TURNAROUND_PRIOR,
        batch_lead: BatchLead::DEFAULT,
        interactive_below: INTERACTIVE_BELOW,
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The tier that serves the request (on a response-cache miss, when a TTL is set).
    pub tier: Tier,
    /// Look the request up in, and store its answer to, the response cache for this long.
    pub response_cache_ttl: Option<Duration>,
}

/// Picks the cheapest tier the SLA, the policy and the gateway's capabilities allow.
/// Interactive is the floor: when nothing else fits (even if a policy forbids it) the
/// request is answered synchronously rather than refused.
pub fn triage(route: &RoutePolicy, facts: &Facts, sla: Sla, caps: &Capabilities) -> Decision {
    let allowed = |t: Tier| match route.pin_tier {
        Some(pin) => pin == t,
        None => !route.forbid_tiers.contains(&t),
    };
    let deferrable = sla.deadline() >= caps.interactive_below;
    let fits = |t: Tier| match t {
        // Deferred only when the answer is expected before the fallback would fire:
        // otherwise the request would go upstream twice and cost 1.5x.
        Tier::Batch => {
            deferrable
                && caps.batch
                && caps
                    .batch_lead
                    .latest_flush(sla.deadline(), caps.batch_turnaround_p95)
                    .is_some()
        }
        Tier::Flex => deferrable && caps.flex && facts.flex_capable,
        Tier::Interactive => true,
        Tier::ResponseCache => false,
    };
    let tier = [Tier::Batch, Tier::Flex]
        .into_iter()
        .find(|&t| allowed(t) && fits(t))
        .unwrap_or(Tier::Interactive);
    let response_cache_ttl = route
        .response_cache_ttl
        .filter(|_| !facts.stream && !route.forbid_tiers.contains(&Tier::ResponseCache))
        .filter(|_| {
            route
                .pin_tier
                .is_none_or(|p| p == Tier::ResponseCache || p == tier)
        });
    Decision {
        tier,
        response_cache_ttl,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicySet;

    fn route(extra: &str) -> RoutePolicy {
        let text = format!("[client]\nname = \"c\"\n\n[[route]]\nname = \"r\"\n{extra}\n");
        let set = PolicySet::from_sources(&[("c.toml".into(), text)]).unwrap();
        set.clients()
            .iter()
            .find(|c| &*c.name == "c")
            .unwrap()
            .routes[0]
            .clone()
    }

    const CHAT: Facts = Facts {
        endpoint: Endpoint::ChatCompletions,
        stream: false,
        flex_capable: true,
    };
    const ALL: Capabilities = Capabilities {
        batch: true,
        flex: true,
        batch_turnaround_p95: BATCH_TURNAROUND_PRIOR,
        batch_lead: BatchLead::DEFAULT,
        interactive_below: INTERACTIVE_BELOW,
    };

    fn sla(s: &str) -> Sla {
        Sla::parse(s).unwrap()
    }

    #[test]
    fn without_deferred_tiers_everything_is_interactive() {
        let r = route("");
        for s in ["interactive", "90s", "semi", "batch", "7d"] {
            let d = triage(&r, &CHAT, sla(s), &Capabilities::INTERACTIVE_ONLY);
            assert_eq!(d.tier, Tier::Interactive, "{s}");
            assert_eq!(d.response_cache_ttl, None);
        }
    }

    #[test]
    fn sla_decides_between_batch_flex_and_interactive() {
        let r = route("");
        assert_eq!(
            triage(&r, &CHAT, sla("interactive"), &ALL).tier,
            Tier::Interactive
        );
        assert_eq!(triage(&r, &CHAT, sla("59s"), &ALL).tier, Tier::Interactive);
        assert_eq!(triage(&r, &CHAT, sla("60s"), &ALL).tier, Tier::Flex);
        assert_eq!(triage(&r, &CHAT, sla("semi"), &ALL).tier, Tier::Flex);
        assert_eq!(triage(&r, &CHAT, sla("6h"), &ALL).tier, Tier::Flex);
        assert_eq!(triage(&r, &CHAT, sla("7h"), &ALL).tier, Tier::Batch);
        assert_eq!(triage(&r, &CHAT, sla("batch"), &ALL).tier, Tier::Batch);
        let no_flex = Facts {
            flex_capable: false,
            ..CHAT
        };
        assert_eq!(
            triage(&r, &no_flex, sla("semi"), &ALL).tier,
            Tier::Interactive
        );
        let fast = Capabilities {
            batch_turnaround_p95: Duration::from_secs(300),
            ..ALL
        };
        assert_eq!(triage(&r, &CHAT, sla("semi"), &fast).tier, Tier::Batch);
        let patient = Capabilities {
            interactive_below: Duration::from_secs(300),
            ..ALL
        };
        assert_eq!(
            triage(&r, &CHAT, sla("2m"), &patient).tier,
            Tier::Interactive
        );
    }

    /// The boundary of the batch tier, to the millisecond: p95 + fallback lead + submit
    /// allowance must fit in the SLA, so the answer arrives before the fallback fires.
    #[test]
    fn batch_only_when_the_answer_beats_the_fallback() {
        let r = route("");
        let ms = Duration::from_millis;
        for (p95, lead, submit) in [
            (ms(2_000), ms(300_000), ms(30_000)),
            (ms(6 * 3_600_000), ms(300_000), ms(30_000)),
            (ms(50), ms(1_000), ms(50)),
            (ms(0), ms(0), ms(0)),
        ] {
            let caps = Capabilities {
                batch_turnaround_p95: p95,
                batch_lead: BatchLead {
                    fallback: lead,
                    submit,
                },
                interactive_below: Duration::ZERO,
                ..ALL
            };
            let edge = p95 + lead + submit;
            let at = |d: Duration| triage(&r, &CHAT, Sla::within(d), &caps).tier;
            if !edge.is_zero() {
                assert_eq!(at(edge - ms(1)), Tier::Flex, "{edge:?} - 1 ms");
            }
            assert_eq!(at(edge), Tier::Batch, "{edge:?}");
            assert_eq!(at(edge + ms(1)), Tier::Batch, "{edge:?} + 1 ms");
            assert_eq!(
                caps.batch_lead.latest_flush(edge, p95),
                Some(Duration::ZERO)
            );
            assert_eq!(
                caps.batch_lead
                    .latest_flush(edge - ms(1).min(edge), p95)
                    .is_some(),
                edge.is_zero()
            );
        }
        // The examples, once a fast (2 s) batch has been observed: none is batched.
        let fast = Capabilities {
            batch_turnaround_p95: ms(2_000),
            ..ALL
        };
        for s in ["61s", "90s", "2m", "4m", "5m", "331s"] {
            assert_ne!(triage(&r, &CHAT, sla(s), &fast).tier, Tier::Batch, "{s}");
        }
        assert_eq!(triage(&r, &CHAT, sla("332s"), &fast).tier, Tier::Batch);
    }

    #[test]
    fn policy_pins_and_forbids() {
        let r = route("forbid_tiers = [\"batch\"]");
        assert_eq!(triage(&r, &CHAT, sla("batch"), &ALL).tier, Tier::Flex);
        let r = route("pin_tier = \"interactive\"");
        assert_eq!(
            triage(&r, &CHAT, sla("batch"), &ALL).tier,
            Tier::Interactive
        );
        let r = route("pin_tier = \"flex\"");
        assert_eq!(triage(&r, &CHAT, sla("batch"), &ALL).tier, Tier::Flex);
        // A pin the SLA cannot honour falls back to interactive, never fails the request.
        assert_eq!(
            triage(&r, &CHAT, sla("interactive"), &ALL).tier,
            Tier::Interactive
        );
        let r = route("forbid_tiers = [\"batch\", \"flex\", \"interactive\"]");
        assert_eq!(
            triage(&r, &CHAT, sla("batch"), &ALL).tier,
            Tier::Interactive
        );
    }

    #[test]
    fn response_cache_only_for_non_streaming_with_a_ttl() {
        let r = route("response_cache_ttl = \"5m\"");
        let d = triage(&r, &CHAT, sla("interactive"), &ALL);
        assert_eq!(d.response_cache_ttl, Some(Duration::from_secs(300)));
        let streaming = Facts {
            stream: true,
            ..CHAT
        };
        assert_eq!(
            triage(&r, &streaming, sla("interactive"), &ALL).response_cache_ttl,
            None
        );
        let r = route("response_cache_ttl = \"5m\"\nforbid_tiers = [\"response_cache\"]");
        assert_eq!(
            triage(&r, &CHAT, sla("interactive"), &ALL).response_cache_ttl,
            None
        );
    }
}
