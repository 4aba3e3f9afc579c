//! Text for pages: HTML escaping and the formats of numbers, sizes,
//! durations and times. Every string that comes from data (job names,
//! errors, spec text, addresses) goes through [`escape`] before it is
//! written into a page.

pub use weir_web::escape;

/// The text for an empty or unknown value.
pub const NONE: &str = "–";

/// `n` with a thin separator every three digits (`1,234,567`).
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A byte size in binary units with one decimal (`1.5 MiB`).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A duration in microseconds, in the largest unit that keeps it readable
/// (`850 µs`, `12.3 ms`, `4.05 s`).
pub fn micros(us: u64) -> String {
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.1} ms", us as f64 / 1_000.0)
    } else {
        seconds(us as f64 / 1_000_000.0)
    }
}

/// A duration in milliseconds (`0 ms`, `350 ms`, `4.05 s`).
pub fn millis(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms} ms")
    } else {
        seconds(ms as f64 / 1_000.0)
    }
}

/// A duration in (fractional) milliseconds, as charts and percentiles
/// have them.
pub fn millis_f(ms: f64) -> String {
    if !ms.is_finite() || ms <= 0.0 {
        "0 ms".into()
    } else if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 1_000.0 {
        format!("{ms:.0} ms")
    } else {
        seconds(ms / 1_000.0)
    }
}

fn seconds(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.2} s")
    } else if s < 3_600.0 {
        format!("{:.0} min {:.0} s", (s / 60.0).floor(), s % 60.0)
    } else {
        format!(
            "{:.0} h {:.0} min",
            (s / 3_600.0).floor(),
            (s % 3_600.0) / 60.0
        )
    }
}

/// A rate with a precision that suits its size (`0.25`, `12.5`, `1,234`).
pub fn rate(per_second: f64) -> String {
    if !per_second.is_finite() || per_second <= 0.0 {
        "0".into()
    } else if per_second < 10.0 {
        format!("{per_second:.2}")
    } else if per_second < 100.0 {
        format!("{per_second:.1}")
    } else {
        count(per_second.round() as u64)
    }
}

/// A time in milliseconds since the Unix epoch as UTC
/// (`2026-12-07 22:48:47Z`); [`NONE`] for 0 and for `i64::MIN` (the
/// watermark's "none").
pub fn time(ms: i64) -> String {
    if ms == 0 || ms == i64::MIN {
        return NONE.into();
    }
    weir_proto::time::utc(ms)
}

/// The time of day of `ms` in UTC (`22:48:47`), for chart axes.
pub fn clock(ms: i64) -> String {
    let (_, rem) = weir_proto::time::date_and_seconds(ms);
    format!("{:02}:{:02}:{:02}", rem / 3_600, rem % 3_600 / 60, rem % 60)
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// How long ago `ms` (since the Unix epoch) was, from `now` (`12 s ago`).
pub fn ago(ms: i64, now: i64) -> String {
    let age = now.saturating_sub(ms).max(0) as u64;
    format!("{} ago", millis_rounded(age))
}

/// A duration in whole units (`850 ms`, `12 s`, `3 min`), for ages.
pub fn millis_rounded(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..120_000 => format!("{} s", ms / 1_000),
        120_000..7_200_000 => format!("{} min", ms / 60_000),
        _ => format!("{} h", ms / 3_600_000),
    }
}

/// One table cell holding `text`, escaped; `class` styles it.
pub fn cell(class: &str, text: &str) -> String {
    if class.is_empty() {
        format!("<td>{}</td>", escape(text))
    } else {
        format!("<td class=\"{class}\">{}</td>", escape(text))
    }
}

/// A number cell (right-aligned).
pub fn num(text: &str) -> String {
    cell("n", text)
}

/// A small coloured label for a state or health value (`running`,
/// `degraded`); empty text gives [`NONE`].
pub fn badge(text: &str) -> String {
    if text.is_empty() {
        return NONE.into();
    }
    let class: String = text
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    format!("<span class=\"badge b-{class}\">{}</span>", escape(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_special_character() {
        assert_eq!(
            escape("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(escape("plain"), "plain");
    }

    #[test]
    fn formats_numbers_sizes_and_durations() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1_536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(micros(850), "850 µs");
        assert_eq!(micros(12_340), "12.3 ms");
        assert_eq!(micros(4_050_000), "4.05 s");
        assert_eq!(millis(350), "350 ms");
        assert_eq!(millis(125_000), "2 min 5 s");
        assert_eq!(millis_f(0.5), "0.50 ms");
        assert_eq!(millis_f(f64::NAN), "0 ms");
        assert_eq!(rate(1234.4), "1,234");
        assert_eq!(rate(0.25), "0.25");
        assert_eq!(millis_rounded(90_000), "90 s");
    }

    #[test]
    fn formats_times_in_utc() {
        assert_eq!(time(0), NONE);
        assert_eq!(time(i64::MIN), NONE);
        assert_eq!(time(1_796_683_727_000), "2026-12-07 22:48:47Z");
        assert_eq!(clock(1_796_683_727_000), "22:48:47");
        assert_eq!(time(-1_000), "1969-12-31 23:59:59Z");
        assert_eq!(ago(1_000, 13_000), "12 s ago");
        assert_eq!(ago(20_000, 13_000), "0 ms ago");
    }

    #[test]
    fn badges_keep_only_safe_class_names() {
        assert_eq!(
            badge("degraded"),
            "<span class=\"badge b-degraded\">degraded</span>"
        );
        assert_eq!(
            badge("<x\">"),
            "<span class=\"badge b-x\">&lt;x&quot;&gt;</span>"
        );
        assert_eq!(badge(""), NONE);
    }
}
