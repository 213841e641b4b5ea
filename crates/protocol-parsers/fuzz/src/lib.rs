//! What the stream-parser fuzz targets share: turning the fuzz input into
//! feeds, gaps and closes on both sides of one [`ConnectionParser`], and
//! the invariants every parser keeps.
//!
//! Input: a sequence of operations. Each starts with one byte `op`:
//! bit 0 = side (0 client, 1 server); bits 1-2 = kind:
//! 0/1 feed (next byte + 1 = length, then that many bytes),
//! 2 gap (next two bytes, little-endian = length), 3 close.

use protocol_parsers::{ConnectionParser, L7Event, L7EventKind, Side};

/// Run the operations in `data` on a fresh `p`; see [`Driver::run`].
pub fn drive(p: &mut dyn ConnectionParser, data: &[u8], check: impl FnMut(&L7Event, &[u64; 2])) {
    Driver::default().run(p, data, check)
}

/// Bytes given to a parser so far, per side (`[client, server]`).
#[derive(Default)]
pub struct Driver {
    pub given: [u64; 2],
}

impl Driver {
    /// Feed `bytes` of `side` (events are checked by the next [`run`]).
    ///
    /// [`run`]: Driver::run
    pub fn feed(&mut self, p: &mut dyn ConnectionParser, side: Side, bytes: &[u8]) {
        p.feed(side, bytes);
        self.given[(side == Side::Server) as usize] += bytes.len() as u64;
    }

    /// Run the operations in `data` on `p`. After each one, every event is
    /// checked against the bytes given so far ([`check_offsets`]) and then
    /// passed to `check` with the stream lengths given per side.
    pub fn run(
        &mut self,
        p: &mut dyn ConnectionParser,
        data: &[u8],
        mut check: impl FnMut(&L7Event, &[u64; 2]),
    ) {
        let mut i = 0;
        while i < data.len() {
            let op = data[i];
            i += 1;
            let side = if op & 1 == 0 {
                Side::Client
            } else {
                Side::Server
            };
            match (op >> 1) & 3 {
                0 | 1 => {
                    let n = data.get(i).map_or(0, |b| *b as usize + 1);
                    i += 1;
                    let end = (i + n).min(data.len());
                    self.feed(p, side, &data[i.min(end)..end]);
                    i = end;
                }
                2 => {
                    let lo = data.get(i).copied().unwrap_or(0) as u64;
                    let hi = data.get(i + 1).copied().unwrap_or(0) as u64;
                    i += 2;
                    let n = lo | (hi << 8);
                    p.gap(side, n);
                    self.given[(op & 1) as usize] += n;
                }
                _ => p.close(side),
            }
            while let Some(e) = p.poll() {
                check_offsets(&e, &self.given);
                check(&e, &self.given);
            }
        }
    }
}

/// Every offset an event names is within the bytes given for its side.
pub fn check_offsets(e: &L7Event, given: &[u64; 2]) {
    let limit = given[(e.side == Side::Server) as usize];
    match &e.kind {
        L7EventKind::Head { offset, .. } | L7EventKind::Desync { offset, .. } => {
            assert!(*offset <= limit, "offset {offset} past {limit}: {e:?}")
        }
        L7EventKind::End { end, .. } => assert!(*end <= limit, "end {end} past {limit}: {e:?}"),
    }
}

/// For parsers that report messages in stream order per side (HTTP/1,
/// Redis): heads never go back, and an end is never before its side's
/// last head.
#[derive(Default)]
pub struct InOrder {
    last_head: [u64; 2],
}

impl InOrder {
    pub fn check(&mut self, e: &L7Event) {
        let k = (e.side == Side::Server) as usize;
        match e.kind {
            L7EventKind::Head { offset, .. } => {
                assert!(offset >= self.last_head[k], "head went back: {e:?}");
                self.last_head[k] = offset;
            }
            L7EventKind::End { end, .. } => {
                assert!(end >= self.last_head[k], "end before its head: {e:?}")
            }
            L7EventKind::Desync { .. } => {}
        }
    }
}
