//! The one duration format of the API: one or more `<integer><unit>` parts, units `ms`,
//! `s`, `m`, `h`, `d` (24h) and `w` (7d), e.g. `30s`, `5m`, `1h30m`, `28d`.
//!
//! Admission checks the same language with [`DURATION_PATTERN`] inside CEL rules, so a
//! string the apiserver accepts always parses here (a unit test keeps the two in step).

use std::time::Duration;

/// Regular expression (RE2 and `regex` syntax) for a duration, used by CEL rules.
pub const DURATION_PATTERN: &str = "^([0-9]+(ms|s|m|h|d|w))+$";

/// Why a duration string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration: write a number and a unit, e.g. 30s, 5m, 28d")]
    Empty,
    #[error("{input:?} is not a duration: expected parts like 300ms, 30s, 5m, 2h, 28d or 1w")]
    Invalid { input: String },
    #[error("{input:?} is too long a duration")]
    Overflow { input: String },
}

/// Parses a duration such as `300ms`, `30s`, `5m`, `1h30m`, `28d`.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    if input.is_empty() {
        return Err(DurationError::Empty);
    }
    let invalid = || DurationError::Invalid {
        input: input.to_string(),
    };
    let overflow = || DurationError::Overflow {
        input: input.to_string(),
    };
    let bytes = input.as_bytes();
    let mut total_ms: u64 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(invalid());
        }
        let number: u64 = input[start..i].parse().map_err(|_| overflow())?;
        let unit_ms: u64 = if input[i..].starts_with("ms") {
            i += 2;
            1
        } else {
            let unit = match bytes.get(i) {
                Some(b's') => 1_000,
                Some(b'm') => 60_000,
                Some(b'h') => 3_600_000,
                Some(b'd') => 86_400_000,
                Some(b'w') => 604_800_000,
                _ => return Err(invalid()),
            };
            i += 1;
            unit
        };
        let part = number.checked_mul(unit_ms).ok_or_else(overflow)?;
        total_ms = total_ms.checked_add(part).ok_or_else(overflow)?;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Formats a duration in the same language, largest units first (`90m` -> `1h30m`).
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis() as u64;
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("w", 604_800_000u64),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= size {
            out.push_str(&format!("{}{}", ms / size, unit));
            ms %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_and_compound_units() {
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("28d"), Ok(Duration::from_secs(28 * 86400)));
        assert_eq!(parse_duration("1w"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for bad in [
            "", "5", "m", "5 m", "5min", "-5m", "1.5h", "5M", "h5", "5ms5", "1y",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
        }
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert!(matches!(
            parse_duration("99999999999999999999d"),
            Err(DurationError::Overflow { .. })
        ));
    }

    #[test]
    fn cel_pattern_accepts_exactly_what_the_parser_accepts() {
        let re = regex::Regex::new(DURATION_PATTERN).unwrap();
        for s in [
            "300ms", "30s", "5m", "1h30m", "28d", "1w", "0s", "", "5", "5min", "-5m", "1.5h", "5M",
            "h5", "1y", "10ms5s", "ms",
        ] {
            assert_eq!(
                re.is_match(s),
                parse_duration(s).is_ok(),
                "pattern and parser disagree on {s:?}"
            );
        }
    }

    #[test]
    fn formats_round_trip() {
        for s in ["300ms", "30s", "5m", "1h30m", "4w", "1w1d", "2h0m1s"] {
            let d = parse_duration(s).unwrap();
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
    }
}
