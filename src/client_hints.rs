//! What an SDK says about its own timeout and retries, and how a held deferred call uses it.
//!
//! The OpenAI and Anthropic SDKs (Python and Node) send `x-stainless-retry-count: N` on
//! every try (0 on the first). The Python SDKs also send their timeout in seconds
//! (`x-stainless-read-timeout`; anthropic-python `x-stainless-timeout` too); openai-node
//! sends `X-Stainless-Timeout` (whole seconds) only for a per-request timeout, and its
//! timeout ends when the response headers arrive. With their defaults (600 s, two retries,
//! no idempotency key) a hold longer than the timeout fails and each retry would be a new
//! batch line.
//! Two answers, both here as pure policy:
//! - a retry (count ≥ 1, no `Idempotency-Key`) attaches to the job its first try created,
//!   found by an implicit [`retry_key`] of route, path, model and body, per client;
//! - a hold that could outlive the advertised timeout commits `200` and its headers after
//!   [`Hints::commit_after`] and then sends whitespace every [`Hints::beat`], bytes a JSON
//!   parser skips, so the SDK's read timer never fires.

use std::time::Duration;

use sha2::{Digest, Sha256};

/// The retry counter SDKs send on every try.
pub const RETRY_COUNT: &str = "x-stainless-retry-count";
/// The SDKs' timeout headers, in seconds (any of them; the smallest counts).
pub const TIMEOUTS: [&str; 2] = ["x-stainless-read-timeout", "x-stainless-timeout"];

/// Shortest interval between keep-alive bytes, however small the advertised timeout.
pub const MIN_BEAT: Duration = Duration::from_millis(50);
/// When an SDK (it counts its tries) says no timeout, its hold commits after this: the
/// Node SDKs' client-wide timeout, unsent, ends at the headers.
pub const UNADVERTISED_COMMIT: Duration = Duration::from_secs(1);
/// The longest timeout taken from a header (a day): larger values hold like no value.
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// The hints of one request. Absent or unreadable values are no hint: they only ever turn
/// on behaviour the caller's SDK needs, never refuse a request.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Hints {
    /// `x-stainless-retry-count`: 0 on a first try.
    pub retry_count: Option<u32>,
    /// The caller's timeout: how long it waits for a byte (or, in Node, for the headers).
    pub timeout: Option<Duration>,
}

impl Hints {
    /// Reads the hints from the header values (each header's single value, if any).
    pub fn parse(retry_count: Option<&[u8]>, timeouts: &[Option<&[u8]>]) -> Hints {
        Hints {
            retry_count: retry_count.and_then(count),
            timeout: timeouts.iter().filter_map(|v| v.and_then(seconds)).min(),
        }
    }

    /// A try after the first: it may attach to the job its first try created.
    pub fn is_retry(&self) -> bool {
        self.retry_count.is_some_and(|n| n >= 1)
    }

    /// Whether the job should record its implicit retry key: only an SDK that counts its
    /// tries can send a retry that looks for it.
    pub fn records_retries(&self) -> bool {
        self.retry_count.is_some()
    }

    /// How long a held answer may take before the status and headers are committed: half
    /// the caller's timeout (at least [`MIN_BEAT`]), so a quick answer still gets its own
    /// status; [`UNADVERTISED_COMMIT`] for an SDK that says no timeout. `None` for other
    /// callers (held as before).
    pub fn commit_after(&self) -> Option<Duration> {
        match (self.timeout, self.retry_count) {
            (Some(t), _) => Some((t / 2).max(MIN_BEAT)),
            (None, Some(_)) => Some(UNADVERTISED_COMMIT),
            (None, None) => None,
        }
    }

    /// The interval between keep-alive bytes: `keep_alive`, or a quarter of the caller's
    /// timeout when that is shorter (at least [`MIN_BEAT`]).
    pub fn beat(&self, keep_alive: Duration) -> Duration {
        match self.timeout {
            Some(t) => keep_alive.min(t / 4).max(MIN_BEAT),
            None => keep_alive,
        }
    }
}

/// A non-negative decimal integer.
fn count(v: &[u8]) -> Option<u32> {
    let s = std::str::from_utf8(v).ok()?.trim();
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Seconds as the SDKs print them (`600`, `600.0`, `2.5`): finite, not negative.
fn seconds(v: &[u8]) -> Option<Duration> {
    let s = std::str::from_utf8(v).ok()?.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let secs: f64 = s.parse().ok()?;
    let d = Duration::try_from_secs_f64(secs).ok()?;
    (d <= MAX_TIMEOUT).then_some(d)
}

/// Whether a retry attaches to a job answered `status` (`None`: not answered yet). Not to
/// an error the SDKs retry on (408, 409, 429, 5xx): the SDK saw that answer or would have,
/// and its retry is meant to run again. Any other answer is what the first try was owed.
pub fn attaches(status: Option<u16>) -> bool {
    !status.is_some_and(|s| matches!(s, 408 | 409 | 429) || s >= 500)
}

/// The implicit key a first try records and its retries look up (with the client, in the
/// store): the same route, path, model, streaming and body bytes. A retry with another
/// body has another key and never attaches.
pub fn retry_key(route: &str, path: &str, model: &str, stream: bool, body: &[u8]) -> String {
    let mut h = Sha256::new();
    for part in [route.as_bytes(), path.as_bytes(), model.as_bytes()] {
        // Length-prefixed, so no two different tuples hash the same bytes.
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.update([u8::from(stream)]);
    h.update(body);
    format!("r1:{}", hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(count: Option<&str>, timeouts: &[Option<&str>]) -> Hints {
        let t: Vec<Option<&[u8]>> = timeouts.iter().map(|v| v.map(str::as_bytes)).collect();
        Hints::parse(count.map(str::as_bytes), &t)
    }

    #[test]
    fn the_sdk_forms_are_read() {
        // openai-python, anthropic-python (both headers), openai-node (whole seconds).
        let py = h(Some("0"), &[Some("600.0"), None]);
        assert_eq!(py.retry_count, Some(0));
        assert_eq!(py.timeout, Some(Duration::from_secs(600)));
        assert!(!py.is_retry() && py.records_retries());
        let anthropic = h(Some("2"), &[Some("2.5"), Some("2.5")]);
        assert_eq!(anthropic.timeout, Some(Duration::from_millis(2500)));
        assert!(anthropic.is_retry());
        assert_eq!(
            h(Some("1"), &[None, Some("3")]).timeout,
            Some(Duration::from_secs(3))
        );
        // The smaller of two timeouts counts.
        assert_eq!(
            h(None, &[Some("9"), Some("4")]).timeout,
            Some(Duration::from_secs(4))
        );
    }

    #[test]
    fn junk_is_no_hint() {
        for bad in [
            "",
            "-1",
            "+1",
            "1e3",
            "NaN",
            "inf",
            "NOT_GIVEN",
            "1 2",
            "0x1",
            "1.2.3",
        ] {
            let hint = h(Some(bad), &[Some(bad), Some(bad)]);
            assert_eq!(hint, Hints::default(), "{bad:?}");
            assert!(!hint.is_retry() && !hint.records_retries());
        }
        assert_eq!(h(Some("99999999999"), &[]).retry_count, None);
        assert_eq!(h(None, &[Some("86401")]).timeout, None);
        assert_eq!(
            Hints::parse(Some(b"\xff1"), &[Some(b"\xff")]),
            Hints::default()
        );
        assert_eq!(Hints::default().commit_after(), None);
    }

    #[test]
    fn holds_commit_at_half_the_timeout_and_beat_well_inside_it() {
        let ka = Duration::from_secs(15);
        let default = h(Some("0"), &[Some("600")]);
        assert_eq!(default.commit_after(), Some(Duration::from_secs(300)));
        assert_eq!(default.beat(ka), ka);
        let short = h(Some("0"), &[Some("2.5")]);
        assert_eq!(short.commit_after(), Some(Duration::from_millis(1250)));
        assert_eq!(short.beat(ka), Duration::from_millis(625));
        // Node's "0" (a timeout under a second): commit and beat at the floor.
        let zero = h(Some("0"), &[Some("0")]);
        assert_eq!(zero.commit_after(), Some(MIN_BEAT));
        assert_eq!(zero.beat(ka), MIN_BEAT);
        assert_eq!(Hints::default().beat(ka), ka);
        // openai-node with its client-wide timeout: a retry count, no timeout.
        let node = h(Some("0"), &[None, None]);
        assert_eq!(node.commit_after(), Some(UNADVERTISED_COMMIT));
        assert_eq!(node.beat(ka), ka);
        assert_eq!(Hints::default().commit_after(), None);
    }

    #[test]
    fn retries_attach_to_pending_answered_and_final_errors_not_to_retryable_ones() {
        for ok in [None, Some(200), Some(201), Some(400), Some(404), Some(422)] {
            assert!(attaches(ok), "{ok:?}");
        }
        for retried in [408, 409, 429, 500, 502, 503, 504] {
            assert!(!attaches(Some(retried)), "{retried}");
        }
    }

    #[test]
    fn the_key_binds_every_part() {
        let k = retry_key("r", "/v1/chat/completions", "m", false, b"{}");
        assert!(k.starts_with("r1:") && k.len() == 3 + 64);
        assert_eq!(k, retry_key("r", "/v1/chat/completions", "m", false, b"{}"));
        for other in [
            retry_key("r2", "/v1/chat/completions", "m", false, b"{}"),
            retry_key("r", "/v1/responses", "m", false, b"{}"),
            retry_key("r", "/v1/chat/completions", "m2", false, b"{}"),
            retry_key("r", "/v1/chat/completions", "m", true, b"{}"),
            retry_key("r", "/v1/chat/completions", "m", false, b"{ }"),
            // Shifting bytes between parts changes the key.
            retry_key("r/", "v1/chat/completions", "m", false, b"{}"),
        ] {
            assert_ne!(k, other);
        }
    }
}
