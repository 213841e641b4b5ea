//! Byte-stream plumbing shared by the MySQL and PostgreSQL parsers.
//!
//! A [`SideStream`] holds one direction's unconsumed bytes and stream offset
//! and drives a [`Machine`] one message at a time. Bytes are handed to the
//! machine straight from the caller's slice whenever possible; only a partial
//! message is copied, and never more than [`MAX_BUFFER`] bytes. Message bodies
//! the machine does not need are skipped by count, so a gap inside them costs
//! nothing.

use crate::Side;

/// Most bytes a side ever buffers; a message head needing more is a framing
/// loss.
pub(crate) const MAX_BUFFER: usize = 64 * 1024;

/// Bytes appended to a partial message beyond what the machine asked for.
const LOOKAHEAD: usize = 256;

/// What a [`Machine`] did with the bytes it was shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Show me again once at least this many bytes (from the same start) are
    /// available. Must be more than what was shown.
    Need(usize),
    /// `used` bytes were consumed; the next `skip` bytes of the stream (not
    /// shown yet) belong to the same message and are to be discarded, after
    /// which [`Machine::skipped`] is called.
    Consume { used: usize, skip: u64 },
}

/// A protocol state machine fed by [`SideStream`].
pub(crate) trait Machine {
    /// Look at `bytes` (which start at stream offset `at` of `side`). When
    /// `truncated`, no contiguous byte follows (a gap comes next): consume
    /// what can be consumed rather than asking for more.
    fn step(&mut self, side: Side, bytes: &[u8], at: u64, truncated: bool) -> Step;
    /// A skipped message body ended at `end` (one past its last byte).
    fn skipped(&mut self, side: Side, end: u64);
    /// Framing of `side` was lost from `offset` on (uncaptured bytes over a
    /// message boundary, or a head too big to buffer).
    fn lost(&mut self, side: Side, offset: u64);
    /// Bytes of `side` are no longer parsed (encrypted): only counted.
    fn stopped(&self, side: Side) -> bool;
}

/// One direction of a connection: buffered partial message and offsets.
#[derive(Debug, Default)]
pub(crate) struct SideStream {
    buf: Vec<u8>,
    /// Stream offset of the next unprocessed byte (`buf[0]` when buffered).
    pos: u64,
    /// Bytes still to discard before the next message (`buf` is empty then).
    skip: u64,
}

impl SideStream {
    /// Total bytes fed or gapped on this side so far.
    pub(crate) fn fed(&self) -> u64 {
        self.pos + self.buf.len() as u64
    }

    /// Bytes currently buffered.
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }

    fn finish_skip<M: Machine>(&mut self, m: &mut M, side: Side, data: &mut &[u8]) {
        if self.skip == 0 {
            return;
        }
        let k = (data.len() as u64).min(self.skip);
        self.skip -= k;
        self.pos += k;
        *data = &data[k as usize..];
        if self.skip == 0 {
            m.skipped(side, self.pos);
        }
    }

    fn apply(&mut self, used: usize, skip: u64, avail: usize) -> usize {
        // Guarantee progress whatever the machine answers.
        let used = if used == 0 && skip == 0 {
            1
        } else {
            used.min(avail)
        };
        self.pos += used as u64;
        self.skip = skip;
        used
    }

    /// Feed `data` (the bytes that follow everything fed so far).
    pub(crate) fn feed<M: Machine>(&mut self, m: &mut M, side: Side, mut data: &[u8]) {
        self.finish_skip(m, side, &mut data);
        // Complete a buffered partial message first.
        while !self.buf.is_empty() {
            if m.stopped(side) {
                self.pos += (self.buf.len() + data.len()) as u64;
                self.buf.clear();
                return;
            }
            match m.step(side, &self.buf, self.pos, false) {
                Step::Need(n) => {
                    if data.is_empty() {
                        return;
                    }
                    if n > MAX_BUFFER {
                        self.lose(m, side);
                        continue;
                    }
                    // Take a little more than asked, so a machine scanning
                    // for a message boundary sees what follows.
                    let want = n
                        .saturating_sub(self.buf.len())
                        .max(LOOKAHEAD)
                        .min(MAX_BUFFER.saturating_sub(self.buf.len()).max(1))
                        .min(data.len());
                    self.buf.extend_from_slice(&data[..want]);
                    data = &data[want..];
                }
                Step::Consume { used, skip } => {
                    let used = self.apply(used, skip, self.buf.len());
                    self.buf.drain(..used);
                    if self.skip > 0 && !self.buf.is_empty() {
                        let k = (self.buf.len() as u64).min(self.skip) as usize;
                        self.buf.drain(..k);
                        self.skip -= k as u64;
                        self.pos += k as u64;
                        if self.skip == 0 {
                            m.skipped(side, self.pos);
                        }
                    }
                    self.finish_skip(m, side, &mut data);
                }
            }
        }
        // Then work straight from the caller's slice.
        loop {
            self.finish_skip(m, side, &mut data);
            if data.is_empty() {
                return;
            }
            if m.stopped(side) {
                self.pos += data.len() as u64;
                return;
            }
            match m.step(side, data, self.pos, false) {
                Step::Need(n) => {
                    if n > MAX_BUFFER {
                        // Head too big to hold: framing is lost here.
                        self.pos += data.len() as u64;
                        let at = self.pos - data.len() as u64;
                        m.lost(side, at);
                        return;
                    }
                    self.buf.extend_from_slice(data);
                    return;
                }
                Step::Consume { used, skip } => {
                    let used = self.apply(used, skip, data.len());
                    data = &data[used..];
                }
            }
        }
    }

    fn lose<M: Machine>(&mut self, m: &mut M, side: Side) {
        let at = self.pos;
        self.pos += self.buf.len() as u64;
        self.buf.clear();
        self.skip = 0;
        m.lost(side, at);
    }

    /// `len` bytes were transferred but not captured.
    pub(crate) fn gap<M: Machine>(&mut self, m: &mut M, side: Side, len: u64) {
        if len == 0 {
            return;
        }
        if m.stopped(side) {
            self.pos += self.buf.len() as u64 + len;
            self.buf.clear();
            return;
        }
        // Let the machine finish what it holds with what it has.
        while !self.buf.is_empty() {
            match m.step(side, &self.buf, self.pos, true) {
                Step::Need(_) => {
                    // A head cut by the gap: its framing is gone.
                    let at = self.pos;
                    self.pos += self.buf.len() as u64 + len;
                    self.buf.clear();
                    self.skip = 0;
                    m.lost(side, at);
                    return;
                }
                Step::Consume { used, skip } => {
                    let used = self.apply(used, skip, self.buf.len());
                    self.buf.drain(..used);
                    if self.skip > 0 && !self.buf.is_empty() {
                        let k = (self.buf.len() as u64).min(self.skip) as usize;
                        self.buf.drain(..k);
                        self.skip -= k as u64;
                        self.pos += k as u64;
                        if self.skip == 0 {
                            m.skipped(side, self.pos);
                        }
                    }
                }
            }
        }
        if self.skip >= len {
            self.skip -= len;
            self.pos += len;
            if self.skip == 0 && len > 0 {
                m.skipped(side, self.pos);
            }
            return;
        }
        let mut rest = len;
        if self.skip > 0 {
            rest -= self.skip;
            self.pos += self.skip;
            self.skip = 0;
            m.skipped(side, self.pos);
        }
        let at = self.pos;
        self.pos += rest;
        m.lost(side, at);
    }
}
