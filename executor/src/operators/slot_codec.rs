//! How a group's accumulator slots are laid out as a checkpoint value.
//!
//! Two value layouts exist (the checkpoint file records which one its
//! values use):
//!
//! - [`FIXED_SLOTS`] (layout 0, written before checkpoint format version
//!   3): each slot as 8 bytes, little-endian.
//! - [`COMPACT_SLOTS`] (layout 1): a varint bit mask of the slots stored
//!   raw, then each slot in order: 8 bytes little-endian if its bit is set,
//!   else the unsigned LEB128 varint of the slot read as an `i64` and
//!   zigzag-mapped (0, -1, 1, -2, … become 0, 1, 2, 3, …). A slot is stored
//!   raw when its varint would take more than 8 bytes, as the bits of most
//!   floats do; slots from the 64th on are always varints.
//!
//! Counts and integer sums, the common slots, take one or two bytes
//! instead of eight.

use crate::state::format::{put_varint, varint_len};

/// Value layout 0: 8 bytes per slot.
pub const FIXED_SLOTS: u8 = 0;
/// Value layout 1: a raw-slot mask, then varints or raw slots.
pub const COMPACT_SLOTS: u8 = 1;

/// Slots that a raw-slot mask can mark.
const MASKED_SLOTS: usize = 64;

/// Appends `slots` to `out` in the [`COMPACT_SLOTS`] layout.
pub fn encode_compact(slots: &[u64], out: &mut Vec<u8>) {
    let raw = |s: u64| varint_len(zigzag(s)) > 8;
    // A single slot (a count) stored as a varint: no mask to work out.
    if let [slot] = *slots {
        if !raw(slot) {
            out.push(0);
            put_varint(out, zigzag(slot));
            return;
        }
    }
    let mask = slots
        .iter()
        .take(MASKED_SLOTS)
        .enumerate()
        .filter(|&(_, &s)| raw(s))
        .fold(0u64, |mask, (j, _)| mask | 1 << j);
    put_varint(out, mask);
    for (j, &s) in slots.iter().enumerate() {
        if j < MASKED_SLOTS && mask & 1 << j != 0 {
            out.extend_from_slice(&s.to_le_bytes());
        } else {
            put_varint(out, zigzag(s));
        }
    }
}

/// Decodes a value of `stride` slots laid out as `layout` into `slots`
/// (cleared first), or says why it does not decode.
pub fn decode(layout: u8, value: &[u8], stride: usize, slots: &mut Vec<u64>) -> Result<(), String> {
    slots.clear();
    match layout {
        FIXED_SLOTS => {
            if value.len() != stride * 8 {
                return Err(format!(
                    "a state value holds {} bytes, the job's aggregates need {}",
                    value.len(),
                    stride * 8
                ));
            }
            slots.extend(
                value
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default())),
            );
            Ok(())
        }
        COMPACT_SLOTS => decode_compact(value, stride, slots),
        other => Err(format!(
            "state values use layout {other}, which this build does not know (written by a newer Weir?)"
        )),
    }
}

fn decode_compact(value: &[u8], stride: usize, slots: &mut Vec<u64>) -> Result<(), String> {
    let wrong = |what: &str| {
        format!(
            "a state value of {} bytes {what} for the job's {stride} aggregate slots",
            value.len()
        )
    };
    let mut rest = value;
    let mask = take_varint(&mut rest).ok_or_else(|| wrong("has no valid slot mask"))?;
    if stride < MASKED_SLOTS && mask >> stride != 0 {
        return Err(wrong("marks slots beyond its own"));
    }
    for j in 0..stride {
        let slot = if j < MASKED_SLOTS && mask & 1 << j != 0 {
            let (raw, tail) = rest
                .split_first_chunk::<8>()
                .ok_or_else(|| wrong("ends inside a slot"))?;
            rest = tail;
            u64::from_le_bytes(*raw)
        } else {
            unzigzag(take_varint(&mut rest).ok_or_else(|| wrong("ends inside a slot"))?)
        };
        slots.push(slot);
    }
    if !rest.is_empty() {
        return Err(wrong("has bytes left after the last slot"));
    }
    Ok(())
}

/// Maps a slot read as `i64` so that values near zero are small.
fn zigzag(slot: u64) -> u64 {
    (slot << 1) ^ ((slot as i64 >> 63) as u64)
}

fn unzigzag(v: u64) -> u64 {
    (v >> 1) ^ (v & 1).wrapping_neg()
}

/// Reads one varint off the front of `buf`; `None` if it is cut short or
/// overflows 64 bits.
fn take_varint(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for (i, &b) in buf.iter().enumerate().take(10) {
        if i == 9 && b > 1 {
            return None;
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *buf = &buf[i + 1..];
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const EDGES: [u64; 12] = [
        0,
        1,
        63,
        64,
        u64::MAX, // -1
        i64::MIN as u64,
        i64::MAX as u64,
        (-65i64) as u64,
        1 << 55,
        1 << 56,
        0x4008_0000_0000_0000, // 3.0f64
        0x3ff8_0000_0000_0000, // 1.5f64
    ];

    fn compact(slots: &[u64]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_compact(slots, &mut out);
        out
    }

    #[test]
    fn every_edge_value_round_trips_in_any_position() {
        for &a in &EDGES {
            // Alone (a count's layout) and beside another slot.
            let mut got = Vec::new();
            decode(COMPACT_SLOTS, &compact(&[a]), 1, &mut got).unwrap();
            assert_eq!(got, [a]);
            for &b in &EDGES {
                let value = compact(&[a, b]);
                let mut got = Vec::new();
                decode(COMPACT_SLOTS, &value, 2, &mut got).unwrap();
                assert_eq!(got, [a, b]);
            }
        }
    }

    #[test]
    fn counts_take_a_byte_or_two_and_floats_never_more_than_raw() {
        assert_eq!(compact(&[5]), [0, 10]);
        assert_eq!(compact(&[-3i64 as u64]), [0, 5]);
        assert_eq!(compact(&[1000]).len(), 1 + 2);
        // A float's bits are stored raw, after a mask marking them.
        let float = 1.5f64.to_bits();
        let mut expected = vec![0b10, 6];
        expected.extend_from_slice(&float.to_le_bytes());
        assert_eq!(compact(&[3, float]), expected);
        for &s in &EDGES {
            assert!(compact(&[s]).len() <= 1 + 8, "slot {s:#x}");
        }
    }

    #[test]
    fn slots_past_the_mask_are_varints() {
        let mut slots: Vec<u64> = (0..70).collect();
        slots[69] = u64::MAX >> 1;
        slots[3] = u64::MAX >> 1;
        let value = compact(&slots);
        let mut got = Vec::new();
        decode(COMPACT_SLOTS, &value, 70, &mut got).unwrap();
        assert_eq!(got, slots);
    }

    #[test]
    fn fixed_values_are_read_as_earlier_builds_wrote_them() {
        let mut value = Vec::new();
        for s in [7u64, u64::MAX] {
            value.extend_from_slice(&s.to_le_bytes());
        }
        let mut got = Vec::new();
        decode(FIXED_SLOTS, &value, 2, &mut got).unwrap();
        assert_eq!(got, [7, u64::MAX]);
        let e = decode(FIXED_SLOTS, &value, 3, &mut got).unwrap_err();
        assert!(e.contains("holds 16 bytes") && e.contains("need 24"), "{e}");
    }

    #[test]
    fn values_that_do_not_fit_the_stride_are_refused_without_panicking() {
        let value = compact(&[1, u64::MAX >> 1, 3]);
        let mut got = Vec::new();
        for len in 0..value.len() {
            let e = decode(COMPACT_SLOTS, &value[..len], 3, &mut got).unwrap_err();
            assert!(e.contains("3 aggregate slots"), "{e}");
        }
        let e = decode(COMPACT_SLOTS, &value, 2, &mut got).unwrap_err();
        assert!(
            e.contains("beyond its own") || e.contains("left after"),
            "{e}"
        );
        let mut longer = value.clone();
        longer.push(0);
        let e = decode(COMPACT_SLOTS, &longer, 3, &mut got).unwrap_err();
        assert!(e.contains("left after the last slot"), "{e}");
        // A varint of eleven bytes, or one that overflows 64 bits.
        for bad in [vec![0xff; 11], [vec![0xff; 9], vec![2]].concat()] {
            assert!(decode(COMPACT_SLOTS, &bad, 1, &mut got).is_err());
        }
        let e = decode(9, &value, 3, &mut got).unwrap_err();
        assert!(e.contains("layout 9"), "{e}");
    }
}
