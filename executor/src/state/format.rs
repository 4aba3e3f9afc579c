//! Encoding and decoding of one checkpoint file.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! magic          8 bytes  b"WEIRSTAT"
//! format version u16      = 3 (versions 1 and 2 are still read)
//! kind           u8       0 = delta, 1 = snapshot
//! value layout   u8       how the values are laid out (see below)
//! version        u64      batch id of this checkpoint
//! base_version   u64      delta: version of the checkpoint it applies on top of
//!                         snapshot: == version
//! entry count    u64
//! entries        count x { shared varint, suffix len varint, suffix,
//!                          value field varint, value }
//! crc32c         u32      over every byte before it
//! ```
//!
//! Keys are prefix-compressed: `shared` is the number of leading bytes the
//! key has in common with the previous entry's key (0 for the first entry),
//! `suffix` the bytes after them. The value field is 0 for a tombstone and
//! `value len + 1` for a value. Varints are unsigned LEB128 (7 bits per byte,
//! low bits first), at most 10 bytes; key and value lengths are below 4 GiB.
//!
//! Values are opaque to the file: whoever pushes the entries picks the
//! value layout, a number it defines, so that it can change how it lays
//! values out and still read the files written before (layout 0 is the
//! default). The state of stateful aggregates is laid out as described in
//! `operators::partition_state`.
//!
//! Format version 2 (written by earlier builds, still read) has no value
//! layout byte; its files read as layout 0. Format version 1 (also still
//! read) stores each entry
//! as `{ key len u32, key, tag u8 (0 tombstone, 1 value), value len u32,
//! value }`: 9 bytes besides key and value, against 3 for version 2 on keys
//! and values under 128 bytes, and fewer key bytes when keys share prefixes
//! (state keys start with their window and key type).

use super::StateError;

/// Magic bytes every checkpoint file starts with.
pub const MAGIC: &[u8; 8] = b"WEIRSTAT";
/// The checkpoint format version this build writes; it reads this one and
/// every earlier one.
pub const FORMAT_VERSION: u16 = 3;
/// The first checkpoint format version, still read.
const FORMAT_V1: u16 = 1;
/// The last format version without a value layout byte.
const FORMAT_V2: u16 = 2;
/// Length of the fixed header before the entries.
pub const HEADER_LEN: usize = 8 + 2 + 1 + 1 + 8 + 8 + 8;
/// Length of the header of format versions 1 and 2 (no value layout).
const V2_HEADER_LEN: usize = HEADER_LEN - 1;
/// Where the value layout byte is.
const VALUE_LAYOUT_OFFSET: usize = 8 + 2 + 1;
/// Length of the trailing checksum.
pub const TRAILER_LEN: usize = 4;
/// Bytes of one entry besides its key and value when both are shorter than
/// 128 bytes and the key shares no prefix with the previous one: also the
/// smallest possible entry (empty key, tombstone).
pub const ENTRY_OVERHEAD: usize = 3;
/// The smallest entry of a format version 1 file.
const V1_ENTRY_OVERHEAD: usize = 4 + 1 + 4;
const ENTRY_COUNT_OFFSET: usize = HEADER_LEN - 8;

/// Whether a checkpoint file holds changes since the previous checkpoint or
/// the full state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CheckpointKind {
    /// Changed keys and tombstones since the checkpoint at `base_version`.
    Delta,
    /// The full state at `version`.
    Snapshot,
}

impl CheckpointKind {
    /// The byte stored in the header for this kind.
    pub fn as_u8(self) -> u8 {
        match self {
            CheckpointKind::Delta => 0,
            CheckpointKind::Snapshot => 1,
        }
    }

    /// The kind for a header byte, if it is a known one.
    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            0 => Some(CheckpointKind::Delta),
            1 => Some(CheckpointKind::Snapshot),
            _ => None,
        }
    }

    /// The file name extension (without the dot) for this kind.
    pub fn extension(self) -> &'static str {
        match self {
            CheckpointKind::Delta => "delta",
            CheckpointKind::Snapshot => "snapshot",
        }
    }
}

/// One changed key: `Some(value)` sets it, `None` is a tombstone (deletion).
pub type Entry = (Vec<u8>, Option<Vec<u8>>);

/// A decoded checkpoint file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Delta or snapshot.
    pub kind: CheckpointKind,
    /// The batch id this checkpoint is for.
    pub version: u64,
    /// For a delta, the version it applies on top of; for a snapshot, `version`.
    pub base_version: u64,
    /// How the values are laid out (0 for files of format 1 and 2).
    pub value_layout: u8,
    /// The entries in file order.
    pub entries: Vec<Entry>,
}

/// Incremental encoder of one checkpoint file: push entries, then `finish`.
///
/// The output buffer is pre-sized from the caller's byte estimate; pass an
/// accurate estimate (see [`encoded_len`]) to encode without reallocation.
#[derive(Debug)]
pub struct CheckpointEncoder {
    path: String,
    kind: CheckpointKind,
    version: u64,
    buf: Vec<u8>,
    count: u64,
    /// The previous entry's key, which the next key is encoded against.
    prev_key: Vec<u8>,
    /// The key of the entry being pushed (see [`next_key`](Self::next_key));
    /// it trades places with `prev_key` once pushed.
    next_key: Vec<u8>,
}

impl CheckpointEncoder {
    /// Starts a delta at `version` applying on top of `base_version`.
    /// `path` is only used in error messages; `capacity` is the expected
    /// total encoded size in bytes.
    pub fn delta(
        path: &str,
        version: u64,
        base_version: u64,
        capacity: usize,
    ) -> Result<Self, StateError> {
        Self::delta_into(Vec::new(), path, version, base_version, capacity)
    }

    /// [`delta`](Self::delta), encoding into `buf`: its bytes are dropped,
    /// its allocation is reused (a buffer whose memory is already mapped
    /// fills faster than a fresh one).
    pub fn delta_into(
        buf: Vec<u8>,
        path: &str,
        version: u64,
        base_version: u64,
        capacity: usize,
    ) -> Result<Self, StateError> {
        if base_version >= version {
            return Err(StateError::InvalidRequest {
                path: path.to_owned(),
                detail: format!(
                    "a delta's base version ({base_version}) must be below its version ({version})"
                ),
            });
        }
        Ok(Self::start(
            buf,
            path,
            CheckpointKind::Delta,
            version,
            base_version,
            capacity,
        ))
    }

    /// Starts a snapshot of the full state at `version`. `path` is only used
    /// in error messages; `capacity` is the expected total encoded size.
    pub fn snapshot(path: &str, version: u64, capacity: usize) -> Self {
        Self::snapshot_into(Vec::new(), path, version, capacity)
    }

    /// [`snapshot`](Self::snapshot), encoding into `buf` (see
    /// [`delta_into`](Self::delta_into)).
    pub fn snapshot_into(buf: Vec<u8>, path: &str, version: u64, capacity: usize) -> Self {
        Self::start(
            buf,
            path,
            CheckpointKind::Snapshot,
            version,
            version,
            capacity,
        )
    }

    fn start(
        mut buf: Vec<u8>,
        path: &str,
        kind: CheckpointKind,
        version: u64,
        base_version: u64,
        capacity: usize,
    ) -> Self {
        buf.clear();
        buf.reserve(capacity.max(HEADER_LEN + TRAILER_LEN));
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        buf.push(kind.as_u8());
        buf.push(0); // value layout, set by set_value_layout
        buf.extend_from_slice(&version.to_le_bytes());
        buf.extend_from_slice(&base_version.to_le_bytes());
        buf.extend_from_slice(&0u64.to_le_bytes()); // entry count, patched in finish
        CheckpointEncoder {
            path: path.to_owned(),
            kind,
            version,
            buf,
            count: 0,
            prev_key: Vec::new(),
            next_key: Vec::new(),
        }
    }

    /// Delta or snapshot.
    pub fn kind(&self) -> CheckpointKind {
        self.kind
    }

    /// The version being encoded.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Records how the values pushed are laid out (0 unless set), for
    /// whoever reads them back.
    pub fn set_value_layout(&mut self, layout: u8) {
        self.buf[VALUE_LAYOUT_OFFSET] = layout;
    }

    /// Appends one entry: `Some(value)` sets `key`, `None` is a tombstone.
    /// Fails if the key or value is longer than `u32::MAX` bytes.
    pub fn push(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), StateError> {
        self.check_len("value", value.map_or(0, <[u8]>::len))?;
        self.next_key().extend_from_slice(key);
        match value {
            Some(v) => self.push_next(|file| file.extend_from_slice(v)),
            None => self.push_next_tombstone(),
        }
    }

    /// The buffer to build the next entry's key in, empty; then
    /// [`push_next`](Self::push_next) or
    /// [`push_next_tombstone`](Self::push_next_tombstone) appends the entry.
    /// Encoding the key here and the value straight into the file spares
    /// copying either from buffers of the caller's.
    pub fn next_key(&mut self) -> &mut Vec<u8> {
        self.next_key.clear();
        &mut self.next_key
    }

    /// Appends an entry setting the key in [`next_key`](Self::next_key) to
    /// the bytes `value` appends to the vector it is given (the file).
    /// Fails if the key or value is longer than `u32::MAX` bytes, leaving
    /// the file as it was.
    pub fn push_next(&mut self, value: impl FnOnce(&mut Vec<u8>)) -> Result<(), StateError> {
        let start = self.buf.len();
        self.push_next_key()?;
        // The value field (its length plus one) is known once the value is
        // written: one byte is kept for it, enough for values under 127
        // bytes, and widened in place after a longer one.
        let field = self.buf.len();
        self.buf.push(0);
        value(&mut self.buf);
        let len = self.buf.len() - field - 1;
        if let Err(e) = self.check_len("value", len) {
            // Drop the entry and take the previous key back.
            self.buf.truncate(start);
            std::mem::swap(&mut self.prev_key, &mut self.next_key);
            return Err(e);
        }
        if len < 0x7f {
            self.buf[field] = len as u8 + 1;
        } else {
            let mut head = [0u8; 2 * MAX_VARINT];
            let n = put_varint_at(&mut head, 0, len as u64 + 1);
            self.buf.splice(field..=field, head[..n].iter().copied());
        }
        self.count += 1;
        Ok(())
    }

    /// Appends a tombstone for the key in [`next_key`](Self::next_key).
    /// Fails if the key is longer than `u32::MAX` bytes.
    pub fn push_next_tombstone(&mut self) -> Result<(), StateError> {
        self.push_next_key()?;
        self.buf.push(0);
        self.count += 1;
        Ok(())
    }

    /// Appends the key in `next_key` as the bytes it shares with the
    /// previous key and the rest; it becomes the previous key.
    fn push_next_key(&mut self) -> Result<(), StateError> {
        self.check_len("key", self.next_key.len())?;
        let shared = shared_prefix(&self.prev_key, &self.next_key);
        let suffix = &self.next_key[shared..];
        if shared < 0x80 && suffix.len() < 0x80 {
            // Two one-byte varints, stored whole.
            self.buf
                .extend_from_slice(&[shared as u8, suffix.len() as u8]);
        } else {
            put_varint(&mut self.buf, shared as u64);
            put_varint(&mut self.buf, suffix.len() as u64);
        }
        self.buf.extend_from_slice(suffix);
        std::mem::swap(&mut self.prev_key, &mut self.next_key);
        Ok(())
    }

    /// Bytes the encoder holds before its buffer grows.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Number of entries pushed so far.
    pub fn entry_count(&self) -> u64 {
        self.count
    }

    /// Patches the entry count, appends the checksum and returns the file bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf[ENTRY_COUNT_OFFSET..HEADER_LEN].copy_from_slice(&self.count.to_le_bytes());
        let crc = crc32c::crc32c(&self.buf);
        self.buf.extend_from_slice(&crc.to_le_bytes());
        self.buf
    }

    fn check_len(&self, what: &str, len: usize) -> Result<(), StateError> {
        if u32::try_from(len).is_err() {
            return Err(StateError::InvalidRequest {
                path: self.path.clone(),
                detail: format!("a {what} of {len} bytes exceeds the 4 GiB entry limit"),
            });
        }
        Ok(())
    }
}

/// The number of leading bytes `a` and `b` have in common, compared eight
/// at a time.
fn shared_prefix(a: &[u8], b: &[u8]) -> usize {
    let (mut i, n) = (0, a.len().min(b.len()));
    while i + 8 <= n {
        let word = |s: &[u8]| u64::from_le_bytes(s[i..i + 8].try_into().expect("eight bytes"));
        let differ = word(a) ^ word(b);
        if differ != 0 {
            return i + (differ.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i + a[i..n]
        .iter()
        .zip(&b[i..n])
        .take_while(|(x, y)| x == y)
        .count()
}

/// The longest varint.
const MAX_VARINT: usize = 10;

/// Writes `v` as an unsigned LEB128 varint into `buf` at `at`; returns
/// where it ends.
fn put_varint_at(buf: &mut [u8; 2 * MAX_VARINT], mut at: usize, mut v: u64) -> usize {
    while v >= 0x80 {
        buf[at] = (v as u8) | 0x80;
        v >>= 7;
        at += 1;
    }
    buf[at] = v as u8;
    at + 1
}

/// Appends `v` as an unsigned LEB128 varint.
pub(crate) fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Bytes `v` takes as a varint.
pub(crate) fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Exact encoded size of a checkpoint file holding `entries`.
pub fn encoded_len(entries: &[Entry]) -> usize {
    let mut prev: &[u8] = &[];
    let mut len = HEADER_LEN + TRAILER_LEN;
    for (k, v) in entries {
        let shared = shared_prefix(prev, k);
        len += varint_len(shared as u64) + varint_len((k.len() - shared) as u64) + k.len() - shared;
        len += v
            .as_ref()
            .map_or(1, |v| varint_len(v.len() as u64 + 1) + v.len());
        prev = k;
    }
    len
}

/// Encodes a whole checkpoint file (delta or snapshot) in one exactly-sized
/// buffer. For a snapshot `base_version` must equal `version`; for a delta it
/// must be below it. `path` is only used in error messages.
pub fn encode(
    path: &str,
    kind: CheckpointKind,
    version: u64,
    base_version: u64,
    entries: &[Entry],
) -> Result<Vec<u8>, StateError> {
    let capacity = encoded_len(entries);
    let mut enc = match kind {
        CheckpointKind::Delta => CheckpointEncoder::delta(path, version, base_version, capacity)?,
        CheckpointKind::Snapshot => {
            if base_version != version {
                return Err(StateError::InvalidRequest {
                    path: path.to_owned(),
                    detail: format!(
                        "a snapshot's base version ({base_version}) must equal its version ({version})"
                    ),
                });
            }
            CheckpointEncoder::snapshot(path, version, capacity)
        }
    };
    for (k, v) in entries {
        enc.push(k, v.as_deref())?;
    }
    Ok(enc.finish())
}

/// Decodes and validates one checkpoint file. `path` is only used in error
/// messages.
///
/// Checks, in order: magic, format version, minimum length, CRC32C, header
/// consistency (known kind; snapshot base == version; delta base < version),
/// then every entry. Lengths read from the file are bounded by the bytes that
/// remain, so a corrupt file can never cause a huge allocation or a panic.
pub fn decode(path: &str, bytes: &[u8]) -> Result<Checkpoint, StateError> {
    let file = open(path, bytes)?;
    let mut entries = Vec::with_capacity(file.count as usize);
    file.for_each_entry(|key, value| entries.push((key.to_vec(), value.map(<[u8]>::to_vec))))?;
    Ok(Checkpoint {
        kind: file.kind,
        version: file.version,
        base_version: file.base_version,
        value_layout: file.value_layout,
        entries,
    })
}

/// A checkpoint file whose magic, format version, checksum and header were
/// validated by [`open`]; its entries are read in place by
/// [`entries`](Self::entries), without copying them.
#[derive(Debug, Clone)]
pub struct CheckpointFile<'a> {
    path: &'a str,
    /// Delta or snapshot.
    pub kind: CheckpointKind,
    /// The batch id this checkpoint is for.
    pub version: u64,
    /// For a delta, the version it applies on top of; for a snapshot, `version`.
    pub base_version: u64,
    /// The number of entries the header declares (at most what the file
    /// can hold).
    pub count: u64,
    /// How the values are laid out (0 for files of format 1 and 2).
    pub value_layout: u8,
    format: u16,
    body: &'a [u8],
}

/// Validates the header and checksum of one checkpoint file (everything
/// [`decode`] checks but the entries themselves). `path` is only used in
/// error messages.
pub fn open<'a>(path: &'a str, bytes: &'a [u8]) -> Result<CheckpointFile<'a>, StateError> {
    let truncated = |detail: String| StateError::Truncated {
        path: path.to_owned(),
        detail,
    };
    let malformed = |detail: String| StateError::Malformed {
        path: path.to_owned(),
        detail,
    };

    if bytes.len() < MAGIC.len() {
        return if MAGIC.starts_with(bytes) {
            Err(truncated(format!(
                "{} bytes, shorter than the magic",
                bytes.len()
            )))
        } else {
            Err(StateError::BadMagic {
                path: path.to_owned(),
            })
        };
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err(StateError::BadMagic {
            path: path.to_owned(),
        });
    }
    if bytes.len() < MAGIC.len() + 2 {
        return Err(truncated("file ends inside the format version".into()));
    }
    let format = u16::from_le_bytes([bytes[8], bytes[9]]);
    if !(FORMAT_V1..=FORMAT_VERSION).contains(&format) {
        return Err(StateError::UnsupportedFormatVersion {
            path: path.to_owned(),
            found: format,
            supported: FORMAT_VERSION,
        });
    }
    let header_len = if format <= FORMAT_V2 {
        V2_HEADER_LEN
    } else {
        HEADER_LEN
    };
    if bytes.len() < header_len + TRAILER_LEN {
        return Err(truncated(format!(
            "{} bytes, shorter than header and checksum ({} bytes)",
            bytes.len(),
            header_len + TRAILER_LEN
        )));
    }
    let (content, trailer) = bytes.split_at(bytes.len() - TRAILER_LEN);
    let expected = u32::from_le_bytes(trailer.try_into().expect("trailer is 4 bytes"));
    let actual = crc32c::crc32c(content);
    if expected != actual {
        return Err(StateError::ChecksumMismatch {
            path: path.to_owned(),
            expected,
            actual,
        });
    }

    let mut r = Reader {
        buf: &content[10..],
    };
    let kind_byte = r.u8().expect("header length checked");
    let value_layout = if format <= FORMAT_V2 {
        0
    } else {
        r.u8().expect("header length checked")
    };
    let version = r.u64().expect("header length checked");
    let base_version = r.u64().expect("header length checked");
    let count = r.u64().expect("header length checked");
    let kind = CheckpointKind::from_u8(kind_byte)
        .ok_or_else(|| malformed(format!("unknown checkpoint kind {kind_byte}")))?;
    match kind {
        CheckpointKind::Snapshot if base_version != version => {
            return Err(malformed(format!(
                "snapshot base version {base_version} differs from its version {version}"
            )))
        }
        CheckpointKind::Delta if base_version >= version => {
            return Err(malformed(format!(
                "delta base version {base_version} is not below its version {version}"
            )))
        }
        _ => {}
    }

    let min_entry = if format == FORMAT_V1 {
        V1_ENTRY_OVERHEAD
    } else {
        ENTRY_OVERHEAD
    };
    let max_possible = r.buf.len() / min_entry;
    if count > max_possible as u64 {
        return Err(truncated(format!(
            "header declares {count} entries but only {} bytes of entries follow",
            r.buf.len()
        )));
    }
    Ok(CheckpointFile {
        path,
        kind,
        version,
        base_version,
        count,
        value_layout,
        format,
        body: r.buf,
    })
}

impl CheckpointFile<'_> {
    /// Hands every entry in file order to `f`: the key and `Some(value)`,
    /// or `None` for a tombstone. An entry that does not decode (possible
    /// only for a file written wrongly, as the checksum matched) ends the
    /// walk with an error, as do bytes left after the last entry; the
    /// entries before it were handed over.
    pub fn for_each_entry(
        &self,
        mut f: impl FnMut(&[u8], Option<&[u8]>),
    ) -> Result<(), StateError> {
        let mut r = Reader { buf: self.body };
        let mut key = Vec::new();
        for i in 0..self.count {
            let entry = EntryAt {
                path: self.path,
                index: i,
                count: self.count,
            };
            if self.format == FORMAT_V1 {
                let (key, value) = entry.v1(&mut r)?;
                f(key, value);
            } else {
                let value = entry.v2(&mut r, &mut key)?;
                f(&key, value);
            }
        }
        if !r.buf.is_empty() {
            return Err(StateError::Malformed {
                path: self.path.to_owned(),
                detail: format!(
                    "{} unexpected bytes after the last of {} entries",
                    r.buf.len(),
                    self.count
                ),
            });
        }
        Ok(())
    }

    /// Checks that every entry decodes, without keeping any.
    pub fn validate(&self) -> Result<(), StateError> {
        self.for_each_entry(|_, _| {})
    }
}

/// The entry at `index` of a file: decodes it, naming it in its errors.
struct EntryAt<'p> {
    path: &'p str,
    index: u64,
    count: u64,
}

impl EntryAt<'_> {
    fn truncated(&self, what: &str) -> StateError {
        StateError::Truncated {
            path: self.path.to_owned(),
            detail: format!("entry {} of {}: {what}", self.index, self.count),
        }
    }

    fn malformed(&self, what: String) -> StateError {
        StateError::Malformed {
            path: self.path.to_owned(),
            detail: format!("entry {}: {what}", self.index),
        }
    }

    /// A format version 1 entry, read in place.
    fn v1<'a>(&self, r: &mut Reader<'a>) -> Result<(&'a [u8], Option<&'a [u8]>), StateError> {
        let key_len = r
            .u32()
            .ok_or_else(|| self.truncated("missing key length"))?;
        let key = r
            .take(key_len as usize)
            .ok_or_else(|| self.truncated("key runs past the end"))?;
        let tag = r.u8().ok_or_else(|| self.truncated("missing tag"))?;
        let value_len = r
            .u32()
            .ok_or_else(|| self.truncated("missing value length"))?;
        let value = r
            .take(value_len as usize)
            .ok_or_else(|| self.truncated("value runs past the end"))?;
        match tag {
            0 if value_len == 0 => Ok((key, None)),
            0 => Err(self.malformed(format!("tombstone carries {value_len} value bytes"))),
            1 => Ok((key, Some(value))),
            t => Err(self.malformed(format!("unknown tag {t}"))),
        }
    }

    /// A format version 2 entry: its key is rebuilt in `key` (which holds
    /// the previous entry's key), its value read in place.
    fn v2<'a>(
        &self,
        r: &mut Reader<'a>,
        key: &mut Vec<u8>,
    ) -> Result<Option<&'a [u8]>, StateError> {
        let shared = self.length(r, "shared key prefix")?;
        if shared > key.len() {
            return Err(self.malformed(format!(
                "shares {shared} key bytes with a previous key of {}",
                key.len()
            )));
        }
        let suffix_len = self.length(r, "key suffix length")?;
        let suffix = r
            .take(suffix_len)
            .ok_or_else(|| self.truncated("key runs past the end"))?;
        key.truncate(shared);
        key.extend_from_slice(suffix);
        match self.length(r, "value length")? {
            0 => Ok(None),
            n => r
                .take(n - 1)
                .map(Some)
                .ok_or_else(|| self.truncated("value runs past the end")),
        }
    }

    /// A varint length (below 4 GiB, plus one for a value's).
    fn length(&self, r: &mut Reader<'_>, what: &str) -> Result<usize, StateError> {
        match r.varint() {
            Varint::Value(v) if v <= u64::from(u32::MAX) + 1 => Ok(v as usize),
            Varint::Value(v) => Err(self.malformed(format!("{what} {v} exceeds 4 GiB"))),
            Varint::Truncated => Err(self.truncated(&format!("{what} runs past the end"))),
            Varint::Overlong => Err(self.malformed(format!("{what} is not a valid varint"))),
        }
    }
}

/// What reading a varint found.
enum Varint {
    Value(u64),
    Truncated,
    Overlong,
}

/// Bounds-checked little-endian reader over a byte slice.
#[derive(Debug, Clone)]
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    fn varint(&mut self) -> Varint {
        let mut v: u64 = 0;
        for (i, &b) in self.buf.iter().enumerate().take(10) {
            let bits = u64::from(b & 0x7f);
            if i == 9 && b > 1 {
                return Varint::Overlong;
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                self.buf = &self.buf[i + 1..];
                return Varint::Value(v);
            }
        }
        if self.buf.len() >= 10 {
            Varint::Overlong
        } else {
            Varint::Truncated
        }
    }
}

#[cfg(test)]
/// A format version 1 file, laid out as earlier builds wrote it.
pub(crate) fn v1_file(kind: CheckpointKind, version: u64, base: u64, entries: &[Entry]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"WEIRSTAT");
    b.extend_from_slice(&1u16.to_le_bytes());
    b.push(kind.as_u8());
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&base.to_le_bytes());
    b.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for (k, v) in entries {
        b.extend_from_slice(&(k.len() as u32).to_le_bytes());
        b.extend_from_slice(k);
        b.push(u8::from(v.is_some()));
        let v = v.as_deref().unwrap_or_default();
        b.extend_from_slice(&(v.len() as u32).to_le_bytes());
        b.extend_from_slice(v);
    }
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

#[cfg(test)]
/// A format version 2 file, laid out as earlier builds wrote it: version 3
/// without the value layout byte.
pub(crate) fn v2_file(kind: CheckpointKind, version: u64, base: u64, entries: &[Entry]) -> Vec<u8> {
    let mut b = encode("v2", kind, version, base, entries).expect("valid entries");
    b.truncate(b.len() - TRAILER_LEN);
    b[8..10].copy_from_slice(&FORMAT_V2.to_le_bytes());
    b.remove(VALUE_LAYOUT_OFFSET);
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "job/op/part-00000/00000000000000000007.delta";

    fn sample() -> Vec<Entry> {
        vec![
            (b"alpha".to_vec(), Some(b"one".to_vec())),
            (b"beta".to_vec(), None),
            (Vec::new(), Some(Vec::new())),
            (b"gamma".to_vec(), Some(vec![0xff; 300])),
        ]
    }

    #[test]
    fn round_trip_empty() {
        for kind in [CheckpointKind::Delta, CheckpointKind::Snapshot] {
            let (v, b) = match kind {
                CheckpointKind::Delta => (5, 3),
                CheckpointKind::Snapshot => (5, 5),
            };
            let bytes = encode(P, kind, v, b, &[]).unwrap();
            assert_eq!(bytes.len(), HEADER_LEN + TRAILER_LEN);
            let cp = decode(P, &bytes).unwrap();
            assert_eq!(
                cp,
                Checkpoint {
                    kind,
                    version: v,
                    base_version: b,
                    value_layout: 0,
                    entries: vec![]
                }
            );
        }
    }

    #[test]
    fn round_trip_with_tombstones() {
        let entries = sample();
        let bytes = encode(P, CheckpointKind::Delta, 7, 4, &entries).unwrap();
        assert_eq!(bytes.len(), encoded_len(&entries));
        let cp = decode(P, &bytes).unwrap();
        assert_eq!(cp.kind, CheckpointKind::Delta);
        assert_eq!(cp.version, 7);
        assert_eq!(cp.base_version, 4);
        assert_eq!(cp.entries, entries);
    }

    #[test]
    fn layout_is_as_documented() {
        let bytes = encode(
            P,
            CheckpointKind::Snapshot,
            9,
            9,
            &[
                (b"key-1".to_vec(), Some(b"vv".to_vec())),
                (b"key-22".to_vec(), None),
                (b"k".to_vec(), Some(vec![7; 200])),
            ],
        )
        .unwrap();
        let mut expected = Vec::new();
        expected.extend_from_slice(b"WEIRSTAT");
        expected.extend_from_slice(&3u16.to_le_bytes());
        expected.push(1);
        expected.push(0);
        expected.extend_from_slice(&9u64.to_le_bytes());
        expected.extend_from_slice(&9u64.to_le_bytes());
        expected.extend_from_slice(&3u64.to_le_bytes());
        expected.extend_from_slice(&[0, 5]);
        expected.extend_from_slice(b"key-1");
        expected.extend_from_slice(&[3]);
        expected.extend_from_slice(b"vv");
        expected.extend_from_slice(&[4, 2]);
        expected.extend_from_slice(b"22");
        expected.push(0);
        expected.extend_from_slice(&[1, 0]);
        expected.extend_from_slice(&[0xC9, 0x01]); // 201 as a varint
        expected.extend_from_slice(&[7; 200]);
        let crc = crc32c::crc32c(&expected);
        expected.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(bytes, expected);
    }

    #[test]
    fn the_value_layout_is_read_back_as_set() {
        let mut enc = CheckpointEncoder::snapshot(P, 9, 0);
        enc.push(b"k", Some(b"v")).unwrap();
        enc.set_value_layout(7);
        let bytes = enc.finish();
        assert_eq!(bytes[VALUE_LAYOUT_OFFSET], 7);
        let cp = decode(P, &bytes).unwrap();
        assert_eq!(cp.value_layout, 7);
        assert_eq!(cp.entries, vec![(b"k".to_vec(), Some(b"v".to_vec()))]);
        assert_eq!(open(P, &bytes).unwrap().value_layout, 7);
    }

    #[test]
    fn format_version_2_files_are_still_read_as_layout_0() {
        let entries = sample();
        let bytes = v2_file(CheckpointKind::Delta, 7, 4, &entries);
        assert_eq!(bytes.len(), encoded_len(&entries) - 1);
        let cp = decode(P, &bytes).unwrap();
        assert_eq!(
            (cp.kind, cp.version, cp.base_version, cp.value_layout),
            (CheckpointKind::Delta, 7, 4, 0)
        );
        assert_eq!(cp.entries, entries);
        for len in 0..bytes.len() {
            assert!(decode(P, &bytes[..len]).unwrap_err().is_corrupt_file());
        }
    }

    #[test]
    fn format_version_1_files_are_still_read() {
        let entries = sample();
        let bytes = v1_file(CheckpointKind::Delta, 7, 4, &entries);
        let cp = decode(P, &bytes).unwrap();
        assert_eq!(
            (cp.kind, cp.version, cp.base_version),
            (CheckpointKind::Delta, 7, 4)
        );
        assert_eq!(cp.entries, entries);
        assert!(
            bytes.len()
                > encode(P, CheckpointKind::Delta, 7, 4, &entries)
                    .unwrap()
                    .len(),
            "version 2 is the smaller encoding"
        );
        for len in 0..bytes.len() {
            assert!(decode(P, &bytes[..len]).unwrap_err().is_corrupt_file());
        }
        let content = bytes[..bytes.len() - TRAILER_LEN].to_vec();
        let mut c = content.clone();
        c[V2_HEADER_LEN..V2_HEADER_LEN + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode(P, &seal(c)),
            Err(StateError::Truncated { .. })
        ));
        let mut c = content;
        c[V2_HEADER_LEN + 4 + 5] = 9; // the tag of "alpha"
        assert!(matches!(
            decode(P, &seal(c)),
            Err(StateError::Malformed { .. })
        ));
    }

    #[test]
    fn varints_round_trip_at_every_width() {
        for v in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX) + 1,
            u64::MAX,
        ] {
            let mut head = [0u8; 2 * MAX_VARINT];
            let len = put_varint_at(&mut head, 0, v);
            let buf = &head[..len];
            assert_eq!(buf.len(), varint_len(v), "{v}");
            let mut r = Reader { buf };
            assert!(matches!(r.varint(), Varint::Value(x) if x == v), "{v}");
            assert!(r.buf.is_empty());
            let mut short = Reader {
                buf: &buf[..buf.len() - 1],
            };
            assert!(matches!(short.varint(), Varint::Truncated), "{v}");
        }
        let mut r = Reader { buf: &[0xff; 11] };
        assert!(matches!(r.varint(), Varint::Overlong));
    }

    #[test]
    fn shared_prefixes_are_found_at_every_offset_and_length() {
        let naive = |a: &[u8], b: &[u8]| a.iter().zip(b).take_while(|(x, y)| x == y).count();
        let base: Vec<u8> = (0..40).collect();
        for len in 0..base.len() {
            for other_len in 0..base.len() {
                for differ_at in 0..=other_len {
                    let mut other = base[..other_len].to_vec();
                    if let Some(b) = other.get_mut(differ_at) {
                        *b ^= 0x10;
                    }
                    let (a, b) = (&base[..len], &other[..]);
                    assert_eq!(
                        shared_prefix(a, b),
                        naive(a, b),
                        "{len} {other_len} {differ_at}"
                    );
                    assert_eq!(
                        shared_prefix(b, a),
                        naive(a, b),
                        "{len} {other_len} {differ_at}"
                    );
                }
            }
        }
    }

    #[test]
    fn keys_sharing_prefixes_round_trip_in_any_order() {
        let entries: Vec<Entry> = ["abc", "abd", "ab", "abcdef", "", "x", "abcdef", "abcdeg"]
            .iter()
            .enumerate()
            .map(|(i, k)| {
                (
                    k.as_bytes().to_vec(),
                    (i % 3 != 1).then(|| vec![i as u8; i * 40]),
                )
            })
            .collect();
        let bytes = encode(P, CheckpointKind::Snapshot, 3, 3, &entries).unwrap();
        assert_eq!(bytes.len(), encoded_len(&entries));
        assert_eq!(decode(P, &bytes).unwrap().entries, entries);
    }

    #[test]
    fn entries_encoded_in_place_round_trip_at_every_field_width() {
        // Keys and values around the one-byte varint limit (127), keys
        // sharing long and short prefixes, tombstones between them.
        let long: Vec<u8> = (0..300).map(|i| i as u8).collect();
        let mut entries: Vec<Entry> = Vec::new();
        for (i, key_len) in [0, 1, 9, 126, 127, 128, 129, 300, 300, 200]
            .into_iter()
            .enumerate()
        {
            for value_len in [0, 1, 125, 126, 127, 128, 300] {
                let mut key = long[..key_len].to_vec();
                key.push(value_len as u8);
                let value = (value_len != 1).then(|| vec![i as u8; value_len]);
                entries.push((key, value));
            }
        }
        let mut enc = CheckpointEncoder::snapshot(P, 3, 0);
        for (k, v) in &entries {
            enc.next_key().extend_from_slice(k);
            match v {
                Some(v) => enc.push_next(|file| file.extend_from_slice(v)).unwrap(),
                None => enc.push_next_tombstone().unwrap(),
            }
        }
        let bytes = enc.finish();
        assert_eq!(bytes.len(), encoded_len(&entries));
        assert_eq!(decode(P, &bytes).unwrap().entries, entries);
    }

    #[test]
    fn incremental_encoder_matches_encode() {
        let entries = sample();
        let mut enc = CheckpointEncoder::delta(P, 7, 4, 0).unwrap();
        for (k, v) in &entries {
            enc.push(k, v.as_deref()).unwrap();
        }
        assert_eq!(enc.entry_count(), entries.len() as u64);
        assert_eq!(
            enc.finish(),
            encode(P, CheckpointKind::Delta, 7, 4, &entries).unwrap()
        );
    }

    #[test]
    fn an_encoder_into_a_used_buffer_writes_the_same_bytes() {
        let entries = sample();
        let fresh = encode(P, CheckpointKind::Snapshot, 9, 9, &entries).unwrap();
        let used = vec![0xAB; fresh.len() * 3];
        let mut enc = CheckpointEncoder::snapshot_into(used, P, 9, 0);
        for (k, v) in &entries {
            enc.push(k, v.as_deref()).unwrap();
        }
        let bytes = enc.finish();
        assert_eq!(bytes, fresh);
        assert!(
            bytes.capacity() >= fresh.len() * 3,
            "the allocation is kept"
        );
        let mut enc = CheckpointEncoder::delta_into(bytes, P, 7, 4, 0).unwrap();
        for (k, v) in &entries {
            enc.push(k, v.as_deref()).unwrap();
        }
        assert_eq!(
            enc.finish(),
            encode(P, CheckpointKind::Delta, 7, 4, &entries).unwrap()
        );
    }

    #[test]
    fn inconsistent_versions_are_rejected_when_encoding() {
        assert!(matches!(
            encode(P, CheckpointKind::Delta, 5, 5, &[]),
            Err(StateError::InvalidRequest { .. })
        ));
        assert!(matches!(
            encode(P, CheckpointKind::Snapshot, 5, 4, &[]),
            Err(StateError::InvalidRequest { .. })
        ));
    }

    #[test]
    fn round_trip_large() {
        let entries: Vec<Entry> = (0..100_000u32)
            .map(|i| {
                let v = (i % 7 != 0).then(|| i.to_le_bytes().repeat(10));
                (format!("key-{i:012}").into_bytes(), v)
            })
            .collect();
        let bytes = encode(P, CheckpointKind::Delta, 100, 99, &entries).unwrap();
        assert_eq!(decode(P, &bytes).unwrap().entries, entries);
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let bytes = encode(P, CheckpointKind::Delta, 7, 4, &sample()).unwrap();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            let err = decode(P, &bad).unwrap_err();
            assert!(err.is_corrupt_file(), "byte {i}: {err}");
            assert_eq!(err.path(), P);
        }
        // A flip in the body is reported as a checksum mismatch.
        let mut bad = bytes.clone();
        bad[HEADER_LEN + 2] ^= 1;
        match decode(P, &bad) {
            Err(StateError::ChecksumMismatch {
                path,
                expected,
                actual,
            }) => {
                assert_eq!(path, P);
                assert_ne!(expected, actual);
            }
            other => panic!("expected ChecksumMismatch, got {other:?}"),
        }
    }

    #[test]
    fn every_truncation_errors() {
        let bytes = encode(P, CheckpointKind::Delta, 7, 4, &sample()).unwrap();
        for len in 0..bytes.len() {
            let err = decode(P, &bytes[..len]).unwrap_err();
            assert!(err.is_corrupt_file(), "len {len}: {err}");
            if len < HEADER_LEN + TRAILER_LEN {
                assert!(
                    matches!(err, StateError::Truncated { .. }),
                    "len {len}: {err}"
                );
            }
        }
    }

    #[test]
    fn bad_magic() {
        let mut bytes = encode(P, CheckpointKind::Delta, 7, 4, &sample()).unwrap();
        bytes[0] = b'X';
        assert!(matches!(decode(P, &bytes), Err(StateError::BadMagic { path }) if path == P));
        assert!(matches!(
            decode(P, b"PK\x03"),
            Err(StateError::BadMagic { .. })
        ));
    }

    #[test]
    fn future_format_version() {
        let mut bytes = encode(P, CheckpointKind::Delta, 7, 4, &sample()).unwrap();
        bytes[8..10].copy_from_slice(&4u16.to_le_bytes());
        match decode(P, &bytes) {
            Err(StateError::UnsupportedFormatVersion {
                found, supported, ..
            }) => {
                assert_eq!((found, supported), (4, 3));
            }
            other => panic!("expected UnsupportedFormatVersion, got {other:?}"),
        }
    }

    /// Re-seals `content` with a valid CRC, to reach the checks behind it.
    fn seal(mut content: Vec<u8>) -> Vec<u8> {
        let crc = crc32c::crc32c(&content);
        content.extend_from_slice(&crc.to_le_bytes());
        content
    }

    #[test]
    fn lying_lengths_with_valid_crc_do_not_allocate_or_panic() {
        let bytes = encode(P, CheckpointKind::Delta, 7, 4, &sample()).unwrap();
        let content = bytes[..bytes.len() - TRAILER_LEN].to_vec();

        // Entry count of u64::MAX.
        let mut c = content.clone();
        c[ENTRY_COUNT_OFFSET..HEADER_LEN].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            decode(P, &seal(c)),
            Err(StateError::Truncated { .. })
        ));

        // A key suffix length past the end of the file.
        let mut c = content.clone();
        c.splice(HEADER_LEN + 1..HEADER_LEN + 2, [0xff, 0xff, 0x03]);
        assert!(matches!(
            decode(P, &seal(c)),
            Err(StateError::Truncated { .. })
        ));

        // A length of more than 4 GiB.
        let mut c = content.clone();
        c.splice(
            HEADER_LEN + 1..HEADER_LEN + 2,
            [0xff, 0xff, 0xff, 0xff, 0x7f],
        );
        assert!(matches!(
            decode(P, &seal(c)),
            Err(StateError::Malformed { .. })
        ));

        // The second entry sharing more than the first key holds ("alpha").
        let second = HEADER_LEN + 2 + 5 + 1 + 3;
        let mut c = content.clone();
        c[second] = 6;
        assert!(matches!(
            decode(P, &seal(c)),
            Err(StateError::Malformed { .. })
        ));

        // Fewer entries declared than present: trailing bytes.
        let mut c = content.clone();
        c[ENTRY_COUNT_OFFSET..HEADER_LEN].copy_from_slice(&1u64.to_le_bytes());
        assert!(matches!(
            decode(P, &seal(c)),
            Err(StateError::Malformed { .. })
        ));

        // Unknown kind.
        let mut c = content;
        c[10] = 7;
        assert!(matches!(
            decode(P, &seal(c)),
            Err(StateError::Malformed { .. })
        ));
    }

    mod properties {
        //! Corrupt checkpoint files, with a checksum that matches so the
        //! header and entries are read: decoding gives a checkpoint or an
        //! error, never a panic or an allocation the file's size does not
        //! justify.
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1024))]

            #[test]
            fn corrupt_files_with_valid_checksums_decode_or_err(
                edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
                cut in any::<prop::sample::Index>(),
                truncate in any::<bool>(),
            ) {
                let bytes = encode(P, CheckpointKind::Delta, 7, 4, &sample()).unwrap();
                let mut content = bytes[..bytes.len() - TRAILER_LEN].to_vec();
                for (at, byte) in edits {
                    let i = at.index(content.len());
                    content[i] = byte;
                }
                if truncate {
                    content.truncate(cut.index(content.len() + 1));
                }
                if let Ok(c) = decode(P, &seal(content.clone())) {
                    // Every entry came from the file's own bytes.
                    let size: usize = c
                        .entries
                        .iter()
                        .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
                        .sum();
                    prop_assert!(c.entries.len() <= content.len());
                    prop_assert!(size <= content.len() * content.len());
                }
            }

            #[test]
            fn any_bytes_decode_or_err(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
                let _ = decode(P, &bytes);
                let _ = decode(P, &seal(bytes));
            }
        }
    }
}
