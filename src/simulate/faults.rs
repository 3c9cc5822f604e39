//! Deterministic batch fault controls (`GET|POST /sim/batch-faults`) and creation
//! statistics (`GET /sim/batches/stats`).
//!
//! Counted faults apply to the next batches created and are consumed: `create_429`
//! by the next `POST /v1/batches` or `POST /v1/messages/batches` calls that passed request
//! validation, `fail_validation` (OpenAI batches only) and `expire` by the next created
//! batches whose input is valid (in that order of precedence), `line_errors` per custom_id
//! by the first valid created batch containing it. `turnaround_ms` and
//! `expire_completed_fraction` stay until `reset`. `hold: true` stops the clock of every
//! batch (OpenAI and Anthropic): they read as at the moment of the hold (one created
//! during it as just created: with a non-zero turnaround, not ended), until `hold: false` (or `reset`) lets their time run again, with the held time counted. Message Batches answer `create_429`
//! with a 429 `rate_limit_error`, expired lines with `{"type":"expired"}` and line errors
//! with `{"type":"errored"}` (`api_error`). The statistics count both kinds of batches
//! (`created`; `message_batches_created` for the Anthropic ones) and their lines.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::body::json_bytes;
use super::error::ApiError;

/// Default of `expire_completed_fraction`.
const DEFAULT_EXPIRE_FRACTION: f64 = 0.5;

/// Current fault settings.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BatchFaults {
    /// Next N creations answer 429.
    pub create_429: u64,
    /// Next N created batches end `failed`.
    pub fail_validation: u64,
    /// Next N created batches end `expired`.
    pub expire: u64,
    /// Fraction of lines an expired batch completed.
    pub expire_completed_fraction: f64,
    /// custom_ids answered with an HTTP 500 line.
    pub line_errors: BTreeSet<String>,
    /// Turnaround override for new batches.
    pub turnaround_ms: Option<u64>,
    /// Batch time is stopped (see the module docs).
    pub hold: bool,
}

impl Default for BatchFaults {
    fn default() -> Self {
        Self {
            create_429: 0,
            fail_validation: 0,
            expire: 0,
            expire_completed_fraction: DEFAULT_EXPIRE_FRACTION,
            line_errors: BTreeSet::new(),
            turnaround_ms: None,
            hold: false,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Update {
    reset: Option<bool>,
    create_429: Option<u64>,
    fail_validation: Option<u64>,
    expire: Option<u64>,
    expire_completed_fraction: Option<f64>,
    line_errors: Option<Vec<String>>,
    turnaround_ms: Option<u64>,
    hold: Option<bool>,
}

#[derive(Debug, Default, Serialize)]
struct Stats {
    created: u64,
    /// Present once an Anthropic Message Batch was created.
    #[serde(skip_serializing_if = "is_zero")]
    message_batches_created: u64,
    lines_by_custom_id: BTreeMap<String, u64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What a newly created batch was assigned.
#[derive(Debug, Default)]
pub struct Assigned {
    /// End `failed` with a validation error on line 1.
    pub fail_validation: bool,
    /// End `expired` with this fraction of lines completed.
    pub expire: Option<f64>,
    /// custom_ids answered with an HTTP 500 line.
    pub line_errors: HashSet<String>,
    /// Turnaround override.
    pub turnaround: Option<Duration>,
}

#[derive(Debug, Default)]
struct State {
    faults: BatchFaults,
    stats: Stats,
    /// When `hold` began.
    held_since: Option<tokio::time::Instant>,
}

/// Fault settings and statistics, behind one lock so that admission is atomic.
#[derive(Debug, Default)]
pub struct BatchControl {
    state: Mutex<State>,
}

impl BatchControl {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies a `POST /sim/batch-faults` body (`reset` first) and returns the settings.
    pub fn update(&self, body: &[u8]) -> Result<Bytes, ApiError> {
        let update: Update = serde_json::from_slice(body).map_err(|e| ApiError::from_json(&e))?;
        if let Some(f) = update.expire_completed_fraction {
            if !(0.0..=1.0).contains(&f) {
                return Err(ApiError::invalid(
                    "expire_completed_fraction must be within 0..=1",
                    Some("expire_completed_fraction"),
                    Some("invalid_value"),
                ));
            }
        }
        let mut state = self.lock();
        let faults = &mut state.faults;
        if update.reset == Some(true) {
            *faults = BatchFaults::default();
        }
        if let Some(hold) = update.hold {
            faults.hold = hold;
        }
        if let Some(n) = update.create_429 {
            faults.create_429 = n;
        }
        if let Some(n) = update.fail_validation {
            faults.fail_validation = n;
        }
        if let Some(n) = update.expire {
            faults.expire = n;
        }
        if let Some(f) = update.expire_completed_fraction {
            faults.expire_completed_fraction = f;
        }
        if let Some(ids) = update.line_errors {
            faults.line_errors.extend(ids);
        }
        if update.turnaround_ms.is_some() {
            faults.turnaround_ms = update.turnaround_ms;
        }
        let hold = faults.hold;
        let json = json_bytes(&*faults);
        state.held_since = match (hold, state.held_since) {
            (true, since) => since.or_else(|| Some(tokio::time::Instant::now())),
            (false, _) => None,
        };
        json
    }

    /// How long a batch created at `start` has run, as its timeline sees it: stopped
    /// while `hold` is on.
    pub fn elapsed(&self, start: tokio::time::Instant) -> Duration {
        match self.lock().held_since {
            Some(held) => held.saturating_duration_since(start),
            None => start.elapsed(),
        }
    }

    /// The current settings as JSON.
    pub fn faults_json(&self) -> Result<Bytes, ApiError> {
        json_bytes(&self.lock().faults)
    }

    /// The statistics as JSON.
    pub fn stats_json(&self) -> Result<Bytes, ApiError> {
        json_bytes(&self.lock().stats)
    }

    /// Admits one batch creation: consumes a `create_429` (→ `None`), or records the
    /// batch in the statistics and hands it its faults. `valid` says whether its input
    /// passed validation (only valid batches consume the other faults).
    pub fn admit<'a>(
        &self,
        custom_ids: impl Iterator<Item = &'a str>,
        valid: bool,
    ) -> Option<Assigned> {
        self.admit_as(custom_ids, valid, false)
    }

    /// Admits one valid Anthropic Message Batch: like [`Self::admit`], but
    /// `fail_validation` (an OpenAI-only state) is neither consumed nor assigned.
    pub fn admit_messages<'a>(
        &self,
        custom_ids: impl Iterator<Item = &'a str>,
    ) -> Option<Assigned> {
        self.admit_as(custom_ids, true, true)
    }

    fn admit_as<'a>(
        &self,
        custom_ids: impl Iterator<Item = &'a str>,
        valid: bool,
        messages: bool,
    ) -> Option<Assigned> {
        let mut state = self.lock();
        if state.faults.create_429 > 0 {
            state.faults.create_429 -= 1;
            return None;
        }
        let State { faults, stats, .. } = &mut *state;
        stats.created += 1;
        stats.message_batches_created += u64::from(messages);
        let mut assigned = Assigned {
            turnaround: faults.turnaround_ms.map(Duration::from_millis),
            ..Assigned::default()
        };
        let mut seen = HashSet::new();
        for id in custom_ids.filter(|id| seen.insert(*id)) {
            *stats.lines_by_custom_id.entry(id.to_owned()).or_default() += 1;
            if valid && faults.line_errors.remove(id) {
                assigned.line_errors.insert(id.to_owned());
            }
        }
        if !valid {
            return Some(assigned);
        }
        if faults.fail_validation > 0 && !messages {
            faults.fail_validation -= 1;
            assigned.fail_validation = true;
            // A failed batch runs no line: give its line errors back.
            faults.line_errors.extend(assigned.line_errors.drain());
        } else if faults.expire > 0 {
            faults.expire -= 1;
            assigned.expire = Some(faults.expire_completed_fraction);
        }
        Some(assigned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_faults_are_consumed_in_order() {
        let c = BatchControl::default();
        c.update(br#"{"create_429": 1, "fail_validation": 1, "expire": 1, "line_errors": ["a"]}"#)
            .unwrap();
        assert!(c.admit(["a"].into_iter(), true).is_none());
        let failed = c.admit(["a"].into_iter(), true).unwrap();
        assert!(failed.fail_validation && failed.line_errors.is_empty());
        let expired = c.admit(["a", "b", "a"].into_iter(), true).unwrap();
        assert_eq!(expired.expire, Some(0.5));
        assert!(expired.line_errors.contains("a"));
        let plain = c.admit(["a"].into_iter(), true).unwrap();
        assert!(!plain.fail_validation && plain.expire.is_none() && plain.line_errors.is_empty());
        let stats: serde_json::Value = serde_json::from_slice(&c.stats_json().unwrap()).unwrap();
        assert_eq!(stats["created"], 3);
        assert_eq!(stats["lines_by_custom_id"]["a"], 3);
    }

    #[test]
    fn reset_and_bad_updates() {
        let c = BatchControl::default();
        c.update(br#"{"turnaround_ms": 5, "expire": 2}"#).unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&c.update(br#"{"reset": true, "expire": 1}"#).unwrap()).unwrap();
        assert_eq!(v["expire"], 1);
        assert_eq!(v["turnaround_ms"], serde_json::Value::Null);
        assert!(c.update(br#"{"bogus": 1}"#).is_err());
        assert!(c.update(br#"{"expire_completed_fraction": 2.0}"#).is_err());
    }
}
