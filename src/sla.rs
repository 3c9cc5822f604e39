//! The `x-sla` header: how long a caller can wait for its answer.

use std::fmt;
use std::time::Duration;

use crate::duration::{format_duration, parse_duration};

/// The latest acceptable answer time, relative to arrival. `interactive` is zero:
/// answer now. Ordering is by patience, so clamping to a policy's min/max is `clamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sla(Duration);

impl Sla {
    pub const INTERACTIVE: Sla = Sla(Duration::ZERO);
    /// `semi` (CONTRACT.md): within 15 minutes.
    pub const SEMI: Sla = Sla(Duration::from_secs(15 * 60));
    /// `batch` (CONTRACT.md): within 24 hours.
    pub const BATCH: Sla = Sla(Duration::from_secs(24 * 3600));

    pub fn within(d: Duration) -> Sla {
        Sla(d)
    }

    pub fn deadline(self) -> Duration {
        self.0
    }

    pub fn is_interactive(self) -> bool {
        self.0.is_zero()
    }

    /// Parses the contract grammar: `interactive` | `semi` | `batch` | a duration.
    pub fn parse(s: &str) -> Option<Sla> {
        match s.trim() {
            "interactive" => Some(Sla::INTERACTIVE),
            "semi" => Some(Sla::SEMI),
            "batch" => Some(Sla::BATCH),
            other => parse_duration(other).ok().map(Sla),
        }
    }
}

impl fmt::Display for Sla {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_interactive() {
            f.write_str("interactive")
        } else {
            f.write_str(&format_duration(self.0))
        }
    }
}

impl<'de> serde::Deserialize<'de> for Sla {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Sla::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid SLA {s:?}: expected interactive, semi, batch or a duration such as 90s, 10m, 24h"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_levels_and_durations() {
        assert_eq!(Sla::parse("interactive"), Some(Sla::INTERACTIVE));
        assert_eq!(
            Sla::parse("semi"),
            Some(Sla::within(Duration::from_secs(900)))
        );
        assert_eq!(
            Sla::parse("batch"),
            Some(Sla::within(Duration::from_secs(86_400)))
        );
        assert_eq!(
            Sla::parse("90s"),
            Some(Sla::within(Duration::from_secs(90)))
        );
        assert_eq!(
            Sla::parse(" 2h "),
            Some(Sla::within(Duration::from_secs(7200)))
        );
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "soon", "Interactive", "1.5h", "10", "-5m"] {
            assert_eq!(Sla::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn orders_by_patience() {
        assert!(Sla::INTERACTIVE < Sla::SEMI && Sla::SEMI < Sla::BATCH);
        assert_eq!(Sla::BATCH.clamp(Sla::INTERACTIVE, Sla::SEMI), Sla::SEMI);
        assert_eq!(Sla::BATCH.to_string(), "1d");
        assert_eq!(Sla::INTERACTIVE.to_string(), "interactive");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn never_panics(s in "\\PC{0,24}") {
                let _ = Sla::parse(&s);
            }

            #[test]
            fn an_integer_and_a_unit_is_exactly_that_long(n in 0u64..=u64::MAX / 86_400_000, unit in prop::sample::select(vec![("ms", 1u64), ("s", 1_000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)])) {
                let sla = Sla::parse(&format!("{n}{}", unit.0));
                prop_assert_eq!(sla, Some(Sla::within(Duration::from_millis(n * unit.1))));
                // What it prints parses back to itself.
                let sla = sla.unwrap();
                prop_assert_eq!(Sla::parse(&sla.to_string()), Some(sla));
            }

            #[test]
            fn anything_else_is_refused(n in 0u64..1000, junk in prop::sample::select(vec![" m", "M", "1.5h", "min", "sec", "-", "+", "e3s", "µs", "hh", ""])) {
                let text = format!("{n}{junk}");
                prop_assert_eq!(Sla::parse(&text), None, "{}", text);
            }
        }
    }
}
