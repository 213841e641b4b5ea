//! Byte-stream plumbing shared by the MySQL and PostgreSQL parsers: the
//! per-side stream driving a [`Machine`], the event queue with each side's
//! held-back `End` ([`Events`]), and the checks and text helpers both use
//! on statement text.
//!
//! A [`SideStream`] holds one direction's unconsumed bytes and stream offset
//! and drives a [`Machine`] one message at a time. Bytes are handed to the
//! machine straight from the caller's slice whenever possible; only a partial
//! message is copied, and never more than [`MAX_BUFFER`] bytes. Message bodies
//! the machine does not need are skipped by count, so a gap inside them costs
//! nothing.

use std::collections::VecDeque;

use crate::sql::{MAX_SQL_LEN, TRUNCATED_MARKER};
use crate::{L7Event, L7EventKind, MessageInfo, Side};

/// Most bytes a side ever buffers; a message head needing more is a framing
/// loss.
pub(crate) const MAX_BUFFER: usize = 64 * 1024;

/// Bytes appended to a partial message beyond what the machine asked for.
const LOOKAHEAD: usize = 256;

/// Verdict on whether a message starts at some bytes.
#[derive(PartialEq, Eq, Debug)]
pub(crate) enum Plausible {
    Yes,
    No,
    /// Looks right so far; this many bytes would tell.
    NeedMore(usize),
}

/// Text that may be SQL: no control bytes but tab/CR/LF, and UTF-8 where
/// complete (a cut multi-byte character at the end is allowed).
#[inline]
pub(crate) fn plausible_text(b: &[u8]) -> bool {
    if b.iter()
        .any(|&c| c < 0x20 && !matches!(c, b'\t' | b'\n' | b'\r') || c == 0x7F)
    {
        return false;
    }
    match std::str::from_utf8(b) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    }
}

/// Whether `text` can start an SQL statement (after blanks: a letter, or
/// `(`, a comment, `{`; `#` comments too when `hash_comments`, as MySQL
/// has them).
#[inline]
pub(crate) fn sql_start(text: &[u8], hash_comments: bool) -> bool {
    match text.iter().find(|c| !c.is_ascii_whitespace()) {
        Some(c) => {
            c.is_ascii_alphabetic()
                || matches!(c, b'(' | b'/' | b'-' | b'{')
                || (hash_comments && *c == b'#')
        }
        None => false,
    }
}

/// Statement text from its bytes, cut to [`MAX_SQL_LEN`] and marked with
/// [`TRUNCATED_MARKER`] when `cut` (the statement continues beyond `b`) or
/// longer. A cut text never ends on half a character.
pub(crate) fn sql_text(b: &[u8], cut: bool) -> String {
    let cut = cut || b.len() > MAX_SQL_LEN;
    let mut b = &b[..b.len().min(MAX_SQL_LEN)];
    if cut {
        while let Err(e) = std::str::from_utf8(b) {
            if e.error_len().is_some() {
                break;
            }
            b = &b[..e.valid_up_to()];
        }
    }
    let mut s = String::from_utf8_lossy(b).into_owned();
    if cut {
        s.push_str(TRUNCATED_MARKER);
    }
    s
}

/// Events not polled yet, and per side an `End` held back until the rest
/// of its message (not needed, skipped by count) has gone by.
#[derive(Debug, Default)]
pub(crate) struct Events {
    pub(crate) queue: VecDeque<L7Event>,
    deferred: [Option<L7Event>; 2],
}

impl Events {
    #[inline]
    pub(crate) fn push(&mut self, side: Side, exchange: u64, kind: L7EventKind) {
        self.queue.push_back(L7Event {
            side,
            exchange,
            kind,
        });
    }

    /// Emit `End` now, or when the `skip` bytes left of the message went by
    /// ([`Events::skipped`]).
    #[inline]
    pub(crate) fn end(
        &mut self,
        side: Side,
        exchange: u64,
        end: u64,
        info: Option<MessageInfo>,
        skip: u64,
    ) {
        let ev = L7Event {
            side,
            exchange,
            kind: L7EventKind::End { end, info },
        };
        if skip == 0 {
            self.queue.push_back(ev);
        } else {
            self.deferred[side.index()] = Some(ev);
        }
    }

    /// The skipped rest of `side`'s message went by: its `End` is due.
    #[inline]
    pub(crate) fn skipped(&mut self, side: Side) {
        if let Some(ev) = self.deferred[side.index()].take() {
            self.queue.push_back(ev);
        }
    }

    /// The `End` held back for `side`, withdrawn (its message was lost).
    #[inline]
    pub(crate) fn withdraw(&mut self, side: Side) -> Option<L7Event> {
        self.deferred[side.index()].take()
    }
}

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

/// Where the two directions stand, kept up to date for the machine by
/// [`feed_sides`] and [`gap_sides`].
#[derive(Debug, Default)]
pub(crate) struct Turns {
    /// Total server bytes fed or gapped.
    pub(crate) server_fed: u64,
    /// Client bytes before this offset waited in the buffer while server
    /// bytes were parsed: requests found there may have been answered
    /// already, so they get no response.
    pub(crate) client_stale_until: u64,
}

/// Feed `data` of `side` to `m` through that side's stream.
pub(crate) fn feed_sides<M: Machine>(
    m: &mut M,
    client: &mut SideStream,
    server: &mut SideStream,
    side: Side,
    data: &[u8],
) {
    m.turns().server_fed = server.fed();
    match side {
        Side::Client => client.feed(m, side, data),
        Side::Server => {
            if client.buffered() > 0 {
                m.turns().client_stale_until = client.fed();
            }
            server.feed(m, side, data)
        }
    }
}

/// `len` uncaptured bytes of `side`, through that side's stream.
pub(crate) fn gap_sides<M: Machine>(
    m: &mut M,
    client: &mut SideStream,
    server: &mut SideStream,
    side: Side,
    len: u64,
) {
    m.turns().server_fed = server.fed();
    match side {
        Side::Client => client.gap(m, side, len),
        Side::Server => server.gap(m, side, len),
    }
}

/// A protocol state machine fed by [`SideStream`].
pub(crate) trait Machine {
    /// Where the two directions stand (see [`Turns`]).
    fn turns(&mut self) -> &mut Turns;
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
