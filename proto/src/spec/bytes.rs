//! Byte sizes in job specs: `1048576`, `64KiB`, `512MiB`, `1GiB`.

const UNITS: [(&str, u64); 9] = [
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
];

/// Parses a byte size such as `512MiB` or `1048576` into bytes.
///
/// Returns a message suitable for a spec error when the text is not a
/// non-negative integer, optionally followed by one of `B`, `KiB`, `MiB`,
/// `GiB`, `TiB` (powers of 1024) or `KB`, `MB`, `GB`, `TB` (of 1000).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let value: u64 = digits.parse().map_err(|_| {
        format!("expected a size such as 1048576, 64KiB, 512MiB or 1GiB, got {text:?}")
    })?;
    let unit = unit.trim();
    let factor = if unit.is_empty() {
        1
    } else {
        UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, f)| *f)
            .ok_or_else(|| {
                format!("unknown size unit {unit:?} in {text:?}: use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB")
            })?
    };
    value
        .checked_mul(factor)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

/// Formats bytes the way users write them (`1GiB`, `64KiB`, `1000`).
pub fn format_bytes(bytes: u64) -> String {
    for (name, factor) in [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ] {
        if bytes != 0 && bytes % factor == 0 {
            return format!("{}{name}", bytes / factor);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert_eq!(parse_bytes("64KiB"), Ok(64 << 10));
        assert_eq!(parse_bytes("512 MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("3MB"), Ok(3_000_000));
        assert_eq!(parse_bytes("7B"), Ok(7));
    }

    #[test]
    fn rejects_bad_text() {
        assert!(parse_bytes("MiB").unwrap_err().contains("expected a size"));
        assert!(parse_bytes("-1").unwrap_err().contains("expected a size"));
        assert!(parse_bytes("5 parsecs")
            .unwrap_err()
            .contains("unknown size unit"));
        assert!(parse_bytes("99999999999TiB")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn formats_what_it_parses() {
        for bytes in [1, 1000, 1 << 10, 3 << 20, 5 << 30, (1 << 30) + 1, 7 << 40] {
            assert_eq!(parse_bytes(&format_bytes(bytes)), Ok(bytes), "{bytes}");
        }
        assert_eq!(format_bytes(1 << 30), "1GiB");
    }
}
