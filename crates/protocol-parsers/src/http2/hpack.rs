//! HPACK header decompression (RFC 7541) that can join a connection midway.
//!
//! [`Decoder`] is a complete HPACK decoder (static table, dynamic table,
//! Huffman strings, dynamic table size updates) with one extra ability: it can
//! be created on a connection that is already running, when the dynamic table
//! the encoder built so far is unknown. It then decodes whatever it can and
//! reports every field it cannot decode as [`Field::Unknown`]; it never
//! returns a wrong value.
//!
//! # Joining mid-connection
//!
//! The dynamic table is a FIFO: every insertion puts the new entry at dynamic
//! index 62 and shifts the others by one; eviction removes the *oldest*
//! entries (the highest indices) until the new total size fits. So after
//! joining, the decoder keeps the list `K` of the entries it saw inserted,
//! newest first. The encoder's real table is always `K` followed by some older
//! entries we never saw (`U`), or, once evictions reached our entries, a prefix
//! of `K` (then `U` is empty):
//!
//! * insertions prepend the same entry to both (indices stay aligned);
//! * evictions remove from the back: all of `U` goes before any entry of `K`.
//!
//! Hence a reference to dynamic index `62 + j` with `j < |K|` that is valid
//! for the encoder's real table is exactly `K[j]`: if the encoder had evicted
//! `K[j]`, it would also have evicted everything older and the real table
//! would be shorter than `j + 1`, so a conforming encoder could not send that
//! index. References with `j >= |K|` are undecodable while `U` may be
//! non-empty. This holds whatever the encoder's table size is; the size only
//! decides how long we must keep entries and when we can prove `U` empty.
//!
//! The table size (capacity) is tracked with how much we know of it:
//! * **exact**: from the connection start (4096) or a dynamic table size
//!   update we decoded. Evictions then mirror the encoder's.
//! * **upper bound**: from the peer's `SETTINGS_HEADER_TABLE_SIZE` (see
//!   [`Decoder::set_settings_max`]); the encoder's size cannot exceed it, so
//!   an entry we evict by that bound was evicted by the encoder too.
//! * **guess** (4096, the protocol default) when nothing is known: evicting by
//!   a guess may drop entries the encoder still holds; they just become
//!   undecodable (never wrong).
//!
//! `U` is proven empty ([`Decoder::is_synchronised`] becomes true once no
//! entry of `K` is a placeholder either) when, with an exact or upper-bound
//! size, (a) one of our own entries had to be evicted (the older unknown ones
//! always go first), or (b) our entries fill the table so that not even the
//! smallest possible entry (32 octets) could sit behind them, or (c) a table
//! size update shrank the table that far (0 empties it).
//!
//! A literal with incremental indexing whose *name* refers to an unknown entry
//! is still inserted, as a placeholder of unknown name (and so unknown size;
//! its known part is a lower bound used for accounting), which keeps the
//! indices of later entries aligned.
//!
//! Anything that may have hidden an insertion (a header block fragment lost
//! to the capture, a decoding error) makes the decoder forget `K` and start
//! over ([`Decoder::lose_sync`]).
//!
//! Credentials: [`Decoder::set_retain_filter`] makes the decoder keep, in its
//! dynamic table, only the values of header names the caller cares about; the
//! others are stored as their length only (sizes stay exact), and a later
//! reference to them yields [`Field::Redacted`].

use std::collections::VecDeque;

use super::huffman::{self, HuffmanError};

/// Largest dynamic table this decoder holds (octets, RFC 7541 size units).
/// Larger negotiated sizes are tracked as a guess of this size.
pub const MAX_TABLE_SIZE: usize = 64 * 1024;

/// Table size an HPACK context starts with (and the SETTINGS default).
pub const DEFAULT_TABLE_SIZE: usize = 4096;

/// The static table (RFC 7541 Appendix A), index 1..=61.
pub const STATIC_TABLE: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// Why a header block could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    /// The block ends in the middle of an instruction.
    #[error("header block ends inside an instruction")]
    Truncated,
    /// An integer does not fit the decoder's limits.
    #[error("integer overflow")]
    IntegerOverflow,
    /// Index 0, or an index past the end of a table known to be complete.
    #[error("invalid table index {0}")]
    InvalidIndex(u64),
    /// A Huffman-coded string is malformed.
    #[error("bad Huffman string: {0}")]
    Huffman(#[from] HuffmanError),
}

/// One header field as decoded from a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field<'a> {
    /// Name and value were decoded.
    Decoded { name: &'a [u8], value: &'a [u8] },
    /// The name was decoded; the value came from the dynamic table, where the
    /// retain filter told the decoder not to keep it.
    Redacted { name: &'a [u8] },
    /// The field refers to dynamic table contents the decoder never saw (it
    /// joined the connection midway): neither its name nor its value is known.
    Unknown,
}

/// Who told us the table size, hence what evictions prove.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CapKind {
    /// Connection start or a decoded size update: the encoder's exact size.
    Exact,
    /// Peer's SETTINGS_HEADER_TABLE_SIZE: the encoder's size is at most this.
    UpperBound,
    /// Nothing known: the default size, assumed.
    Guess,
}

#[derive(Clone, Debug)]
struct Entry {
    /// `None`: the entry's name refers to something we never saw.
    name: Option<Box<[u8]>>,
    /// `None`: not retained (filter) or unknown (placeholder).
    value: Option<Box<[u8]>>,
    /// RFC 7541 size; a lower bound for placeholders.
    size: usize,
}

/// Incremental HPACK decoder for one direction of one connection.
#[derive(Clone, Debug)]
pub struct Decoder {
    entries: VecDeque<Entry>,
    /// Sum of `entries[..].size`.
    size: usize,
    cap: usize,
    cap_kind: CapKind,
    /// Peer's SETTINGS_HEADER_TABLE_SIZE when seen.
    settings_max: Option<usize>,
    /// The encoder's table may hold entries older than all of ours.
    unknown_tail: bool,
    /// Entries of `entries` whose name is unknown.
    placeholders: usize,
    retain: Option<fn(&[u8]) -> bool>,
    name_buf: Vec<u8>,
    value_buf: Vec<u8>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

/// Result of reading an integer or string: `Err(None)` = ran out of input.
type Step<T> = Result<T, Option<HpackError>>;

fn decode_int(buf: &[u8], pos: &mut usize, prefix_bits: u32) -> Step<u64> {
    let mask = (1u16 << prefix_bits) as u8 - 1;
    let first = *buf.get(*pos).ok_or(None)?;
    *pos += 1;
    let mut value = (first & mask) as u64;
    if value < mask as u64 {
        return Ok(value);
    }
    let mut shift = 0;
    loop {
        let b = *buf.get(*pos).ok_or(None)?;
        *pos += 1;
        value += ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return if value > u32::MAX as u64 {
                Err(Some(HpackError::IntegerOverflow))
            } else {
                Ok(value)
            };
        }
        shift += 7;
        if shift > 28 {
            return Err(Some(HpackError::IntegerOverflow));
        }
    }
}

/// Read a string literal into `out` (cleared first).
fn decode_str(buf: &[u8], pos: &mut usize, out: &mut Vec<u8>) -> Step<()> {
    let huff = *buf.get(*pos).ok_or(None)? & 0x80 != 0;
    let len = decode_int(buf, pos, 7)? as usize;
    if buf.len() - *pos < len {
        return Err(None);
    }
    let raw = &buf[*pos..*pos + len];
    *pos += len;
    out.clear();
    if huff {
        huffman::decode(raw, out).map_err(|e| Some(e.into()))?;
    } else {
        out.extend_from_slice(raw);
    }
    Ok(())
}

/// What an index resolves to.
enum Resolved<'a> {
    Static(&'a [u8], &'a [u8]),
    Dynamic(&'a Entry),
    Unknown,
}

impl Decoder {
    /// A decoder for a connection seen from its start: empty table of the
    /// default size, fully synchronised.
    pub fn new() -> Self {
        Decoder {
            entries: VecDeque::new(),
            size: 0,
            cap: DEFAULT_TABLE_SIZE,
            cap_kind: CapKind::Exact,
            settings_max: None,
            unknown_tail: false,
            placeholders: 0,
            retain: None,
            name_buf: Vec::new(),
            value_buf: Vec::new(),
        }
    }

    /// A decoder for a context whose encoder is known to use a table of
    /// `size` octets from the start (e.g. RFC 7541 C.5's 256).
    pub fn with_table_size(size: usize) -> Self {
        let mut d = Self::new();
        if size <= MAX_TABLE_SIZE {
            d.cap = size;
        } else {
            d.cap = MAX_TABLE_SIZE;
            d.cap_kind = CapKind::Guess;
        }
        d
    }

    /// Sum of the RFC 7541 sizes of the known entries (a lower bound where
    /// names are unknown).
    pub fn table_bytes(&self) -> usize {
        self.size
    }

    /// A decoder joining a connection midway: the dynamic table is unknown.
    pub fn new_mid_connection() -> Self {
        let mut d = Self::new();
        d.cap_kind = CapKind::Guess;
        d.unknown_tail = true;
        d
    }

    /// Keep in the dynamic table only the values of names for which `keep`
    /// returns true (names are always kept). `None` keeps every value.
    pub fn set_retain_filter(&mut self, keep: Option<fn(&[u8]) -> bool>) {
        self.retain = keep;
    }

    /// Whether every dynamic table entry the encoder may reference is known:
    /// every valid header block now decodes completely.
    pub fn is_synchronised(&self) -> bool {
        !self.unknown_tail && self.placeholders == 0
    }

    /// Number of dynamic table entries the decoder knows (placeholders
    /// included): references to dynamic indices `62..62+known_entries()`
    /// resolve.
    pub fn known_entries(&self) -> usize {
        self.entries.len()
    }

    /// Current table size the decoder evicts by, and whether it is the
    /// encoder's exact size.
    pub fn table_size(&self) -> (usize, bool) {
        (self.cap, self.cap_kind == CapKind::Exact)
    }

    /// The peer that decodes this direction announced
    /// `SETTINGS_HEADER_TABLE_SIZE = value`: the encoder's table cannot be
    /// larger (after the settings are acknowledged).
    pub fn set_settings_max(&mut self, value: u32) {
        let v = value as usize;
        self.settings_max = Some(v);
        if self.cap_kind == CapKind::Exact {
            // The encoder keeps its size until it sends a size update (which
            // it must do before using a smaller table).
            return;
        }
        if v <= MAX_TABLE_SIZE {
            self.cap = v;
            self.cap_kind = CapKind::UpperBound;
        } else {
            self.cap = MAX_TABLE_SIZE;
            self.cap_kind = CapKind::Guess;
        }
        self.evict_to(self.cap);
    }

    /// Forget the dynamic table: part of the encoder's output was lost.
    pub fn lose_sync(&mut self) {
        self.entries.clear();
        self.size = 0;
        self.placeholders = 0;
        self.unknown_tail = true;
        if self.cap_kind == CapKind::Exact {
            // A lost size update may have changed it.
            self.cap_kind = match self.settings_max {
                Some(m) if m <= MAX_TABLE_SIZE => {
                    self.cap = m;
                    CapKind::UpperBound
                }
                _ => CapKind::Guess,
            };
        }
    }

    /// Whether evicting by `self.cap` can only drop entries the encoder
    /// dropped too.
    fn cap_is_safe(&self) -> bool {
        self.cap_kind != CapKind::Guess
    }

    fn pop_back(&mut self) {
        if let Some(e) = self.entries.pop_back() {
            self.size -= e.size;
            if e.name.is_none() {
                self.placeholders -= 1;
            }
        }
    }

    /// Evict until the table fits in `limit`; update what that proves.
    fn evict_to(&mut self, limit: usize) {
        let mut evicted = false;
        while self.size > limit {
            self.pop_back();
            evicted = true;
        }
        self.after_eviction(evicted);
    }

    fn after_eviction(&mut self, evicted: bool) {
        if self.cap_is_safe() {
            // (a) our own entries were evicted: unknown older ones were gone
            // first; (b) no 32-octet entry fits behind ours.
            if evicted || self.size + 32 > self.cap {
                self.unknown_tail = false;
            }
        } else if evicted {
            // Evicted by a guess: the encoder may still hold them.
            self.unknown_tail = true;
        }
        if let Some(m) = self.settings_max {
            // Whatever the encoder's size, it is at most m.
            if self.size + 32 > m {
                self.unknown_tail = false;
            }
        }
    }

    fn size_update(&mut self, value: u64) {
        let v = value as usize;
        if self.settings_max.is_some_and(|m| v > m) {
            // We missed (or have not yet seen) the SETTINGS allowing it.
            self.settings_max = Some(v);
        }
        if v <= MAX_TABLE_SIZE {
            self.cap = v;
            self.cap_kind = CapKind::Exact;
        } else {
            self.cap = MAX_TABLE_SIZE;
            self.cap_kind = CapKind::Guess;
        }
        self.evict_to(self.cap);
    }

    fn insert(&mut self, name: Option<&[u8]>, value: &[u8]) {
        let size = name.map_or(0, |n| n.len()) + value.len() + 32;
        if size > self.cap {
            // The encoder empties its table and inserts nothing (its entry is
            // at least this large), unless our size is only a guess.
            self.entries.clear();
            self.size = 0;
            self.placeholders = 0;
            self.unknown_tail = !self.cap_is_safe();
            return;
        }
        let mut evicted = false;
        while self.size + size > self.cap {
            self.pop_back();
            evicted = true;
        }
        let keep_value = match (name, self.retain) {
            (Some(n), Some(keep)) => keep(n),
            (Some(_), None) => true,
            (None, _) => false,
        };
        if name.is_none() {
            self.placeholders += 1;
        }
        self.entries.push_front(Entry {
            name: name.map(Box::from),
            value: keep_value.then(|| Box::from(value)),
            size,
        });
        self.size += size;
        self.after_eviction(evicted);
    }

    fn resolve(&self, index: u64) -> Result<Resolved<'_>, HpackError> {
        match index {
            0 => Err(HpackError::InvalidIndex(0)),
            1..=61 => {
                let (n, v) = STATIC_TABLE[index as usize - 1];
                Ok(Resolved::Static(n, v))
            }
            _ => {
                let j = (index - 62) as usize;
                match self.entries.get(j) {
                    Some(e) => Ok(Resolved::Dynamic(e)),
                    None if self.unknown_tail => Ok(Resolved::Unknown),
                    None => Err(HpackError::InvalidIndex(index)),
                }
            }
        }
    }

    /// Decode one complete header block, calling `emit` for each field in
    /// order. On error the dynamic table is forgotten ([`Self::lose_sync`]);
    /// fields emitted before the error stay valid.
    pub fn decode(&mut self, block: &[u8], emit: impl FnMut(Field<'_>)) -> Result<(), HpackError> {
        self.decode_inner(block, false, emit)
    }

    /// Decode the captured prefix of a header block whose rest was lost:
    /// emits the fields of the complete instructions, then forgets the
    /// dynamic table (insertions in the lost part are unknown).
    pub fn decode_truncated(
        &mut self,
        prefix: &[u8],
        emit: impl FnMut(Field<'_>),
    ) -> Result<(), HpackError> {
        let r = self.decode_inner(prefix, true, emit);
        self.lose_sync();
        r
    }

    fn decode_inner(
        &mut self,
        block: &[u8],
        truncated: bool,
        mut emit: impl FnMut(Field<'_>),
    ) -> Result<(), HpackError> {
        let mut pos = 0;
        while pos < block.len() {
            match self.instruction(block, &mut pos, &mut emit) {
                Ok(()) => {}
                Err(None) if truncated => return Ok(()),
                Err(e) => {
                    self.lose_sync();
                    return Err(e.unwrap_or(HpackError::Truncated));
                }
            }
        }
        Ok(())
    }

    fn instruction(
        &mut self,
        buf: &[u8],
        pos: &mut usize,
        emit: &mut impl FnMut(Field<'_>),
    ) -> Step<()> {
        let b = buf[*pos];
        if b & 0x80 != 0 {
            // Indexed header field.
            let idx = decode_int(buf, pos, 7)?;
            match self.resolve(idx).map_err(Some)? {
                Resolved::Static(name, value) => emit(Field::Decoded { name, value }),
                Resolved::Dynamic(e) => match (&e.name, &e.value) {
                    (Some(name), Some(value)) => emit(Field::Decoded { name, value }),
                    (Some(name), None) => emit(Field::Redacted { name }),
                    (None, _) => emit(Field::Unknown),
                },
                Resolved::Unknown => emit(Field::Unknown),
            }
            return Ok(());
        }
        if b & 0xe0 == 0x20 {
            let v = decode_int(buf, pos, 5)?;
            self.size_update(v);
            return Ok(());
        }
        // Literal: 01 = incremental indexing (6-bit index), 0001 = never
        // indexed, 0000 = without indexing (4-bit index).
        let (prefix, indexing) = if b & 0xc0 == 0x40 {
            (6, true)
        } else {
            (4, false)
        };
        let idx = decode_int(buf, pos, prefix)?;
        // Name: `Some(true)` = in name_buf, `Some(false)` = unknown.
        let mut name_known = true;
        let mut name_buf = std::mem::take(&mut self.name_buf);
        if idx == 0 {
            if let Err(e) = decode_str(buf, pos, &mut name_buf) {
                self.name_buf = name_buf;
                return Err(e);
            }
        } else {
            name_buf.clear();
            match self.resolve(idx) {
                Ok(Resolved::Static(n, _)) => name_buf.extend_from_slice(n),
                Ok(Resolved::Dynamic(e)) => match &e.name {
                    Some(n) => name_buf.extend_from_slice(n),
                    None => name_known = false,
                },
                Ok(Resolved::Unknown) => name_known = false,
                Err(e) => {
                    self.name_buf = name_buf;
                    return Err(Some(e));
                }
            }
        }
        let mut value_buf = std::mem::take(&mut self.value_buf);
        let r = decode_str(buf, pos, &mut value_buf);
        if r.is_ok() {
            if name_known {
                emit(Field::Decoded {
                    name: &name_buf,
                    value: &value_buf,
                });
            } else {
                emit(Field::Unknown);
            }
            if indexing {
                self.insert(name_known.then_some(&name_buf[..]), &value_buf);
            }
        }
        self.name_buf = name_buf;
        self.value_buf = value_buf;
        r
    }
}

/// How [`Encoder`] represents a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Indexing {
    /// Literal with incremental indexing (or an index when the field is in a
    /// table).
    Incremental,
    /// Literal without indexing.
    Without,
    /// Literal never indexed (sensitive values).
    Never,
}

/// A small HPACK encoder (dynamic table, optional Huffman). The tracer itself
/// only decodes; this exists for round-trip tests, fuzzing and benchmarks.
#[derive(Clone, Debug)]
pub struct Encoder {
    table: VecDeque<(Vec<u8>, Vec<u8>)>,
    size: usize,
    cap: usize,
    pending_update: Option<usize>,
    /// Huffman-code strings when that is shorter.
    pub huffman: bool,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

fn encode_int(out: &mut Vec<u8>, first: u8, prefix_bits: u32, value: usize) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    let mut v = value - max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

impl Encoder {
    /// Encoder with the default 4096-octet table.
    pub fn new() -> Self {
        Encoder {
            table: VecDeque::new(),
            size: 0,
            cap: DEFAULT_TABLE_SIZE,
            pending_update: None,
            huffman: true,
        }
    }

    /// Change the table size; a size update opens the next block.
    pub fn set_table_size(&mut self, size: usize) {
        self.cap = size;
        self.pending_update = Some(size);
        self.evict(0);
    }

    /// Entries in the dynamic table.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether the dynamic table is empty.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    fn evict(&mut self, incoming: usize) {
        while self.size + incoming > self.cap {
            match self.table.pop_back() {
                Some((n, v)) => self.size -= n.len() + v.len() + 32,
                None => break,
            }
        }
    }

    fn encode_str(&self, out: &mut Vec<u8>, s: &[u8]) {
        let hl = huffman::encoded_len(s);
        if self.huffman && hl < s.len() {
            encode_int(out, 0x80, 7, hl);
            huffman::encode(s, out);
        } else {
            encode_int(out, 0, 7, s.len());
            out.extend_from_slice(s);
        }
    }

    /// Append the block for `fields` to `out`.
    pub fn encode<'a>(
        &mut self,
        fields: impl IntoIterator<Item = (&'a [u8], &'a [u8], Indexing)>,
        out: &mut Vec<u8>,
    ) {
        if let Some(v) = self.pending_update.take() {
            encode_int(out, 0x20, 5, v);
        }
        for (name, value, mode) in fields {
            let mut full = None;
            let mut name_idx = None;
            for (i, (n, v)) in STATIC_TABLE.iter().enumerate() {
                if *n == name {
                    name_idx.get_or_insert(i + 1);
                    if *v == value {
                        full = Some(i + 1);
                        break;
                    }
                }
            }
            if full.is_none() {
                for (i, (n, v)) in self.table.iter().enumerate() {
                    if n == name {
                        name_idx.get_or_insert(i + 62);
                        if v == value {
                            full = Some(i + 62);
                            break;
                        }
                    }
                }
            }
            if let (Some(i), Indexing::Incremental) = (full, mode) {
                encode_int(out, 0x80, 7, i);
                continue;
            }
            let (first, bits) = match mode {
                Indexing::Incremental => (0x40, 6),
                Indexing::Without => (0x00, 4),
                Indexing::Never => (0x10, 4),
            };
            match name_idx {
                Some(i) => encode_int(out, first, bits, i),
                None => {
                    out.push(first);
                    self.encode_str(out, name);
                }
            }
            self.encode_str(out, value);
            if mode == Indexing::Incremental {
                let size = name.len() + value.len() + 32;
                if size > self.cap {
                    self.table.clear();
                    self.size = 0;
                } else {
                    self.evict(size);
                    self.table.push_front((name.to_vec(), value.to_vec()));
                    self.size += size;
                }
            }
        }
    }
}
