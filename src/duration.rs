//! The one duration grammar used everywhere (CONTRACT.md): an integer and a unit
//! `ms`, `s`, `m`, `h` or `d`, e.g. `90s`, `10m`, `24h`. Nothing else is accepted, so a
//! typo such as `10 m` or `1.5h` is an error rather than a surprise.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {input:?}: expected an integer and a unit ms, s, m, h or d (e.g. 90s, 10m, 24h)"
)]
pub struct DurationError {
    pub input: String,
}

pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = || DurationError {
        input: input.to_owned(),
    };
    let split = input.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
    let (digits, unit) = input.split_at(split);
    if digits.is_empty() {
        return Err(err());
    }
    let n: u64 = digits.parse().map_err(|_| err())?;
    let ms_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(err()),
    };
    n.checked_mul(ms_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(err)
}

/// Formats a duration back into the grammar, choosing the largest exact unit.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms > 0 && ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "10",
            "m",
            "1.5h",
            "10 m",
            "-1s",
            "10M",
            "1w",
            "99999999999999999999s",
            "10mins",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn formats_round_trip() {
        for s in ["250ms", "90s", "10m", "25h", "2d"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
    }
}
