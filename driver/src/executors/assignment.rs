//! Which live executor owns each state partition: a pure function of the
//! previous assignment and the live executors.
//!
//! The result is balanced (owners' partition counts differ by at most one)
//! and sticky: a partition stays with its owner unless the owner is gone
//! or holds more than its share. Moving a partition costs a state restore
//! (and a replay of the batches after its last checkpoint), so the function
//! moves as few as balance allows: when an executor leaves, only its
//! partitions move; when one joins, only enough partitions to fill it.

use std::collections::BTreeMap;

/// Assigns `partitions` state partitions to `live` executor ids, starting
/// from `previous` (indexed by partition; missing or `None` entries have no
/// owner). `None` when no executor is live.
pub fn assign(
    previous: &[Option<String>],
    partitions: u32,
    live: &[String],
) -> Option<Vec<String>> {
    let mut live: Vec<&str> = live.iter().map(String::as_str).collect();
    live.sort_unstable();
    live.dedup();
    if live.is_empty() {
        return None;
    }
    let n = partitions as usize;
    let m = live.len();
    let (base, extra) = (n / m, n % m);
    let index: BTreeMap<&str, usize> = live.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let mut owner: Vec<Option<usize>> = (0..n)
        .map(|p| {
            previous
                .get(p)
                .and_then(|o| o.as_deref())
                .and_then(|id| index.get(id).copied())
        })
        .collect();
    let mut owned: Vec<Vec<usize>> = vec![Vec::new(); m];
    for (p, o) in owner.iter().enumerate() {
        if let Some(e) = o {
            owned[*e].push(p);
        }
    }
    // Nobody keeps more than base + 1 ...
    for parts in owned.iter_mut() {
        while parts.len() > base + 1 {
            let p = parts.pop().expect("non-empty");
            owner[p] = None;
        }
    }
    // ... and at most `extra` executors keep base + 1 (the first by id).
    let mut full = 0;
    for parts in owned.iter_mut() {
        if parts.len() == base + 1 {
            if full < extra {
                full += 1;
            } else {
                let p = parts.pop().expect("non-empty");
                owner[p] = None;
            }
        }
    }
    // Free partitions go to the least loaded executor (lowest id on ties).
    for (p, o) in owner.iter_mut().enumerate() {
        if o.is_none() {
            let e = (0..m)
                .min_by_key(|e| (owned[*e].len(), *e))
                .expect("live is not empty");
            owned[e].push(p);
            *o = Some(e);
        }
    }
    Some(
        owner
            .into_iter()
            .map(|o| live[o.expect("every partition assigned")].to_string())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("e{i}")).collect()
    }

    fn counts(a: &[String]) -> BTreeMap<&str, usize> {
        let mut c = BTreeMap::new();
        for id in a {
            *c.entry(id.as_str()).or_insert(0) += 1;
        }
        c
    }

    fn balanced(a: &[String], live: &[String], n: u32) {
        let c = counts(a);
        let min = live
            .iter()
            .map(|id| c.get(id.as_str()).copied().unwrap_or(0))
            .min()
            .unwrap();
        let max = c.values().copied().max().unwrap_or(0);
        assert!(max - min <= 1, "{a:?}");
        assert_eq!(a.len(), n as usize);
        assert!(a.iter().all(|id| live.contains(id)));
    }

    fn some(a: &[String]) -> Vec<Option<String>> {
        a.iter().cloned().map(Some).collect()
    }

    fn moved(a: &[String], b: &[String]) -> usize {
        a.iter().zip(b).filter(|(x, y)| x != y).count()
    }

    #[test]
    fn fresh_assignments_are_balanced() {
        for m in 1..6 {
            for n in 0..20 {
                let a = assign(&[], n, &ids(m)).unwrap();
                balanced(&a, &ids(m), n);
            }
        }
        assert_eq!(assign(&[], 4, &[]), None);
    }

    #[test]
    fn assignments_are_sticky() {
        for m in 1..6 {
            for n in 0..20 {
                let a = assign(&[], n, &ids(m)).unwrap();
                // order of `live` does not matter either
                let mut rev = ids(m);
                rev.reverse();
                assert_eq!(assign(&some(&a), n, &rev).unwrap(), a);
            }
        }
    }

    #[test]
    fn a_leaving_executor_moves_only_its_partitions() {
        for m in 2..6 {
            for n in 0..20 {
                let a = assign(&[], n, &ids(m)).unwrap();
                for gone in 0..m {
                    let live: Vec<String> = ids(m)
                        .into_iter()
                        .filter(|id| *id != format!("e{gone}"))
                        .collect();
                    let b = assign(&some(&a), n, &live).unwrap();
                    balanced(&b, &live, n);
                    let theirs = a.iter().filter(|id| **id == format!("e{gone}")).count();
                    assert_eq!(
                        moved(&a, &b),
                        theirs,
                        "n {n} m {m} gone e{gone}: {a:?} -> {b:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_joining_executor_takes_only_its_share() {
        for m in 1..6 {
            for n in 0..20u32 {
                let a = assign(&[], n, &ids(m)).unwrap();
                let b = assign(&some(&a), n, &ids(m + 1)).unwrap();
                balanced(&b, &ids(m + 1), n);
                let share = counts(&b)
                    .get(format!("e{m}").as_str())
                    .copied()
                    .unwrap_or(0);
                assert_eq!(moved(&a, &b), share, "n {n} m {m}: {a:?} -> {b:?}");
            }
        }
    }

    #[test]
    fn partitions_come_back_after_a_restart_only_as_needed() {
        let live = ids(3);
        let a = assign(&[], 8, &live).unwrap();
        let without = assign(&some(&a), 8, &live[..2]).unwrap();
        let back = assign(&some(&without), 8, &live).unwrap();
        balanced(&back, &live, 8);
        assert!(moved(&without, &back) <= 3);
    }
}
