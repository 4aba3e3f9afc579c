//! Times in UTC for people: the CLI's and the web UI's one format.

/// The civil date of `ms` since the Unix epoch (`2026-12-07`) and the
/// seconds into that day, in UTC.
pub fn date_and_seconds(ms: i64) -> (String, i64) {
    let secs = ms.div_euclid(1_000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (format!("{y:04}-{m:02}-{d:02}"), rem)
}

/// `ms` since the Unix epoch as `2026-12-07 22:48:47Z`.
pub fn utc(ms: i64) -> String {
    let (date, rem) = date_and_seconds(ms);
    format!(
        "{date} {:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_in_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc(1_796_683_727_000), "2026-12-07 22:48:47Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00Z");
        assert_eq!(utc(-1_000), "1969-12-31 23:59:59Z");
    }
}
