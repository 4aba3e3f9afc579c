//! Human durations in job specs: `500ms`, `1s`, `10s`, `5m`, `1h`.

/// Parses a duration such as `1s` or `250ms` into milliseconds.
///
/// Returns a message suitable for a spec error when the text is not a
/// positive integer followed by one of `ms`, `s`, `m`, `h`.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("expected a duration such as 500ms, 1s, 5m or 1h, got {text:?}"))?;
    let factor = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "" => return Err(format!("duration {text:?} needs a unit: ms, s, m or h")),
        other => {
            return Err(format!(
                "unknown duration unit {other:?} in {text:?}: use ms, s, m or h"
            ))
        }
    };
    value
        .checked_mul(factor)
        .ok_or_else(|| format!("duration {text:?} is too large"))
}

/// Formats milliseconds the way users write them (`1s`, `1500ms`, `5m`).
pub fn format_duration_ms(ms: u64) -> String {
    if ms != 0 && ms % 3_600_000 == 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms != 0 && ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else if ms != 0 && ms % 1_000 == 0 {
        format!("{}s", ms / 1_000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("1s"), Ok(1_000));
        assert_eq!(parse_duration_ms("5m"), Ok(300_000));
        assert_eq!(parse_duration_ms("2h"), Ok(7_200_000));
    }

    #[test]
    fn rejects_bad_text() {
        assert!(parse_duration_ms("10")
            .unwrap_err()
            .contains("needs a unit"));
        assert!(parse_duration_ms("1d")
            .unwrap_err()
            .contains("unknown duration unit"));
        assert!(parse_duration_ms("fast")
            .unwrap_err()
            .contains("expected a duration"));
        assert!(parse_duration_ms("99999999999999999999s").is_err());
    }

    #[test]
    fn formats_round_numbers() {
        assert_eq!(format_duration_ms(1_500), "1500ms");
        assert_eq!(format_duration_ms(1_000), "1s");
        assert_eq!(format_duration_ms(120_000), "2m");
    }
}
