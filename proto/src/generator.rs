//! The generator source's definition, shared by the driver (which plans
//! offset ranges) and the executor (which produces the records).
//!
//! The record at partition `p`, offset `i` has global index `g = i*P + p`;
//! with `total` set only `g < total` exist. Its key is `"k" + (g % keys)`, its
//! value `g`, its event time `created_at + g / event_time_rate` seconds.

use crate::pb::GeneratorSource;

/// Number of records with global index below `n` that fall in `partition`.
pub fn records_below(n: u64, partitions: u32, partition: u32) -> u64 {
    let p = u64::from(partition);
    let parts = u64::from(partitions.max(1));
    if n <= p {
        0
    } else {
        (n - p).div_ceil(parts)
    }
}

/// Offsets available in `partition` at `elapsed_ms` after the job was created
/// (`None` = unbounded, for `rate: 0` without `total`).
pub fn available(g: &GeneratorSource, partition: u32, elapsed_ms: u64) -> Option<u64> {
    let produced = if g.rate == 0 {
        None
    } else {
        let n = u128::from(elapsed_ms) * u128::from(g.rate) / 1_000;
        Some(u64::try_from(n).unwrap_or(u64::MAX))
    };
    let limit = match (produced, g.total) {
        (Some(a), Some(t)) => Some(a.min(t)),
        (a, t) => a.or(t),
    };
    limit.map(|n| records_below(n, g.partitions, partition))
}

/// Whether every record of a finite generator lies below `ends[p]` for each
/// partition `p`.
pub fn exhausted(g: &GeneratorSource, ends: impl Fn(u32) -> u64) -> bool {
    match g.total {
        None => false,
        Some(t) => (0..g.partitions).all(|p| ends(p) >= records_below(t, g.partitions, p)),
    }
}

/// Event time (ms since the epoch) of the record with global index `g`.
pub fn event_time_ms(created_at_ms: i64, event_time_rate: u64, g: u64) -> i64 {
    let offset = u128::from(g) * 1_000 / u128::from(event_time_rate.max(1));
    created_at_ms.saturating_add(i64::try_from(offset).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_split_global_indexes() {
        // g = 0..10 over 3 partitions: p0 {0,3,6,9}, p1 {1,4,7}, p2 {2,5,8}
        assert_eq!(records_below(10, 3, 0), 4);
        assert_eq!(records_below(10, 3, 1), 3);
        assert_eq!(records_below(10, 3, 2), 3);
        assert_eq!(records_below(0, 3, 0), 0);
        assert_eq!(records_below(2, 3, 2), 0);
    }

    #[test]
    fn availability_follows_rate_and_total() {
        let g = GeneratorSource {
            partitions: 2,
            rate: 1_000,
            total: Some(1_500),
            ..Default::default()
        };
        assert_eq!(available(&g, 0, 1_000), Some(500));
        assert_eq!(available(&g, 1, 1_000), Some(500));
        assert_eq!(available(&g, 0, 60_000), Some(750));
        let unbounded = GeneratorSource {
            partitions: 2,
            ..Default::default()
        };
        assert_eq!(available(&unbounded, 0, 5), None);
        assert!(exhausted(&g, |_| 750));
        assert!(!exhausted(&g, |p| if p == 0 { 750 } else { 749 }));
    }

    #[test]
    fn event_time_advances_with_rate() {
        assert_eq!(event_time_ms(1_000, 100, 250), 3_500);
    }
}
