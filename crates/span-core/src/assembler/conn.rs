//! Connections: protocol detection, one parser per connection, and the
//! segments that map a message's stream offset back to the syscall (time,
//! thread, TCP sequence, execution context) that carried it.
//!
//! **Invariant:** a connection's parser is fed each side's bytes in stream
//! order, with every uncaptured byte reported as a gap, so the offsets it
//! reports are positions in that side's stream; those offsets are looked up
//! in the side's segments since its last message end (at most `MAX_SEGS`):
//! events come in stream order, so none points before that end. A database's or
//! cache's own end of a connection is never parsed (they are leaves seen
//! from their clients). The table holds at most `Config::max_connections`.

use super::stats::Stats;
use super::tls;
use crate::event::{DataEvent, Direction, MonoNanos, Role, SockTuple, Source, ThreadKey};
use crate::span::SpanId;
use hashbrown::HashMap;
use protocol_parsers::{ConnectionParser, L7Event, L7EventKind, Protocol, Side};
use std::collections::VecDeque;

/// Segments kept per side.
const MAX_SEGS: usize = 128;
/// Ended connections kept for reuse ([`Conns::recycle`]).
const REUSE_POOL: usize = 32;
/// Room a reused connection keeps: segments per side, pending exchanges.
const REUSED_SEGS: usize = 4;
const REUSED_PENDING: usize = 4;

/// One syscall's (or TLS call's) bytes in a side's stream.
#[derive(Clone, Copy, Debug)]
pub(super) struct Seg {
    pub(super) start: u64,
    pub(super) end: u64,
    pub(super) enter: MonoNanos,
    pub(super) exit: MonoNanos,
    /// TCP sequence of the first byte (syscalls), or its plaintext offset
    /// (TLS, only when the connection was seen from its start).
    pub(super) seq: Option<u64>,
    pub(super) source: Source,
    pub(super) thread: ThreadKey,
    /// Execution context of the call (0: none).
    pub(super) ctx: u64,
    /// Task (goroutine) the call was made for (0: none).
    pub(super) task: u64,
}

/// A connection's requests waiting for their response: exchange -> span,
/// kept sorted by exchange in one vector.
///
/// Almost every connection has one request in flight at a time (HTTP/1
/// without pipelining, a database client), and exchanges are numbered in
/// the order they start, so an insert is a push and a lookup a compare or
/// two. A hash map of its own per connection cost a table of four buckets
/// (~96 bytes with the allocator's rounding) for one entry; this costs 16
/// bytes for it (BENCHMARKS.md, "Memory per open request: smaller
/// records"). Many streams at once (HTTP/2) stay O(log n) to find and
/// O(n) 16-byte moves to remove.
#[derive(Default, Debug)]
pub(super) struct Pending(Vec<(u64, SpanId)>);

impl Pending {
    #[inline]
    fn find(&self, exchange: u64) -> Result<usize, usize> {
        // The newest exchange is the one most often looked up (its
        // response), the oldest the next most: try the back first.
        match self.0.last() {
            Some(&(e, _)) if e == exchange => Ok(self.0.len() - 1),
            Some(&(e, _)) if e < exchange => Err(self.0.len()),
            _ => self.0.binary_search_by_key(&exchange, |&(e, _)| e),
        }
    }

    #[inline]
    pub(super) fn get(&self, exchange: &u64) -> Option<&SpanId> {
        self.find(*exchange).ok().map(|i| &self.0[i].1)
    }

    /// Map `exchange` to `id`; the span it mapped to before, if any.
    #[inline]
    pub(super) fn insert(&mut self, exchange: u64, id: SpanId) -> Option<SpanId> {
        match self.find(exchange) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, id)),
            Err(i) => {
                if self.0.capacity() == 0 {
                    self.0.reserve_exact(1);
                }
                self.0.insert(i, (exchange, id));
                None
            }
        }
    }

    #[inline]
    pub(super) fn remove(&mut self, exchange: &u64) -> Option<SpanId> {
        self.find(*exchange).ok().map(|i| self.0.remove(i).1)
    }

    /// Every entry, in exchange order, leaving the map empty.
    pub(super) fn drain(&mut self) -> std::vec::Drain<'_, (u64, SpanId)> {
        self.0.drain(..)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn clear(&mut self) {
        self.0.clear();
    }

    fn shrink_to(&mut self, n: usize) {
        self.0.shrink_to(n);
    }
}

pub(super) enum ParseState {
    Detecting {
        attempts: u32,
    },
    Parsing {
        parser: Box<dyn ConnectionParser>,
        protocol: Protocol,
    },
    Ignored,
}

pub(super) struct Conn {
    pub(super) pid: u32,
    pub(super) role: Role,
    pub(super) tuple: SockTuple,
    pub(super) state: ParseState,
    pub(super) tls: bool,
    /// The connect/accept was observed: stream positions count from the
    /// connection's first byte.
    pub(super) seen_open: bool,
    /// TLS plaintext bytes per direction (egress, ingress) since the first.
    tls_pos: [u64; 2],
    pos: [u64; 2],
    segs: [VecDeque<Seg>; 2],
    /// Per side, the stream offset up to which every message ended: no
    /// event of that side can point before it, so segments ending there
    /// are dropped (a keep-alive connection keeps one or two, not
    /// `MAX_SEGS`).
    done: [u64; 2],
    /// exchange -> span
    pub(super) pending: Pending,
    last_activity: MonoNanos,
    /// TCP sequence just past the last byte the process read (syscall
    /// reads only; TLS plaintext has no TCP sequence).
    pub(super) rx_seq: Option<u32>,
    /// The peer will send nothing more (see `teardown`): applied once the
    /// process has read up to its last byte.
    pub(super) peer_end: Option<PeerEnd>,
}

/// The peer closed or reset the connection; what it sent ends at `seq`.
#[derive(Clone, Copy, Debug)]
pub(super) struct PeerEnd {
    pub(super) seq: u32,
    pub(super) why: crate::view::IncompleteReason,
    pub(super) ts: MonoNanos,
}

impl Conn {
    pub(super) fn new(pid: u32, role: Role, tuple: SockTuple, ts: MonoNanos) -> Conn {
        Conn {
            pid,
            role,
            tuple,
            state: ParseState::Detecting { attempts: 0 },
            tls: false,
            seen_open: false,
            tls_pos: [0, 0],
            pos: [0, 0],
            segs: [VecDeque::new(), VecDeque::new()],
            done: [0, 0],
            pending: Pending::default(),
            last_activity: ts,
            rx_seq: None,
            peer_end: None,
        }
    }

    /// This connection's allocation made ready for another connection: what
    /// `Conn::new` gives, keeping the buffers of its segments and pending
    /// exchanges (short connections, one per request, would allocate them
    /// again for each).
    fn reuse(&mut self, pid: u32, role: Role, tuple: SockTuple, ts: MonoNanos) {
        let mut segs = std::mem::take(&mut self.segs);
        let mut pending = std::mem::take(&mut self.pending);
        for s in &mut segs {
            s.clear();
            s.shrink_to(REUSED_SEGS);
        }
        pending.clear();
        pending.shrink_to(REUSED_PENDING);
        *self = Conn {
            segs,
            pending,
            ..Conn::new(pid, role, tuple, ts)
        };
    }

    /// Whether the process has read everything up to TCP sequence `seq`.
    pub(super) fn read_up_to(&self, seq: u32) -> bool {
        self.rx_seq
            .is_some_and(|rx| rx.wrapping_sub(seq) as i32 >= 0)
    }

    #[inline]
    fn side_of(&self, dir: Direction) -> Option<Side> {
        match (self.role, dir) {
            (Role::Client, Direction::Egress) | (Role::Server, Direction::Ingress) => {
                Some(Side::Client)
            }
            (Role::Client, Direction::Ingress) | (Role::Server, Direction::Egress) => {
                Some(Side::Server)
            }
            (Role::Unknown, _) => None,
        }
    }

    #[inline]
    fn server_port(&self) -> u16 {
        match self.role {
            Role::Server => self.tuple.local.port(),
            _ => self.tuple.remote.port(),
        }
    }

    /// The protocol being parsed, once detected.
    #[inline]
    pub(super) fn protocol(&self) -> Option<Protocol> {
        match &self.state {
            ParseState::Parsing { protocol, .. } => Some(*protocol),
            _ => None,
        }
    }

    /// The segment holding stream offset `off` of `side`.
    /// Tasks of the kept segments of `side` from stream offset `off` on
    /// (the reads that carried a message that starts there).
    pub(super) fn tasks_from(&self, side: Side, off: u64) -> Vec<u64> {
        self.segs[side.index()]
            .iter()
            .filter(|g| g.end > off && g.task != 0)
            .map(|g| g.task)
            .collect()
    }

    #[inline]
    pub(super) fn seg_at(&self, side: Side, off: u64) -> Option<Seg> {
        let segs = &self.segs[side.index()];
        // Almost always the latest segment.
        if let Some(last) = segs.back() {
            if off >= last.start {
                return Some(*last);
            }
        }
        let i = segs.partition_point(|s| s.end <= off);
        segs.get(i).or_else(|| segs.front()).copied()
    }

    /// The first TLS plaintext on a connection: its socket bytes are
    /// ciphertext from now on, and its plaintext is parsed from its first
    /// byte. Returns the requests that were waiting for a response.
    pub(super) fn start_tls(&mut self) -> Vec<SpanId> {
        self.tls = true;
        self.state = ParseState::Detecting { attempts: 0 };
        self.pos = [0, 0];
        self.segs = [VecDeque::new(), VecDeque::new()];
        self.done = [0, 0];
        self.pending.drain().map(|(_, id)| id).collect()
    }

    /// Plaintext offset of a TLS event, counted from the first byte only if
    /// the connection was seen from its start.
    #[inline]
    fn tls_seq(&mut self, d: &DataEvent) -> Option<u64> {
        if d.source != Source::Tls {
            return None;
        }
        let i = match d.direction {
            Direction::Egress => 0,
            Direction::Ingress => 1,
        };
        let at = self.tls_pos[i];
        self.tls_pos[i] += d.bytes;
        self.seen_open.then_some(at)
    }

    /// Whether this event's bytes are parsed: detects the protocol on the
    /// first payloads (a few tries, then the connection is ignored).
    fn detect(&mut self, d: &DataEvent, max_attempts: u32, stats: &mut Stats) -> bool {
        let server_port = self.server_port();
        let role = self.role;
        let ParseState::Detecting { attempts } = &mut self.state else {
            return true;
        };
        if d.payload.is_empty() {
            return false;
        }
        match detect_protocol(role, d.direction, &d.payload, server_port) {
            // A database or cache is a leaf seen from its clients: its
            // own end of the connection is not parsed at all.
            Some((Protocol::Mysql | Protocol::Postgres | Protocol::Redis, Role::Server)) => {
                self.state = ParseState::Ignored;
                stats.conns_ignored += 1;
                false
            }
            Some((protocol, role)) => {
                self.role = role;
                self.state = ParseState::Parsing {
                    parser: protocol_parsers::new_parser(protocol),
                    protocol,
                };
                stats.conns_parsed += 1;
                true
            }
            None => {
                *attempts += 1;
                if *attempts >= max_attempts {
                    self.state = ParseState::Ignored;
                    stats.conns_ignored += 1;
                }
                false
            }
        }
    }

    /// Take in one data event of this connection (TLS switch already
    /// done): record its segment, feed the parser and append what it
    /// reports to `out`.
    pub(super) fn ingest(
        &mut self,
        d: &DataEvent,
        max_attempts: u32,
        stats: &mut Stats,
        out: &mut VecDeque<L7Event>,
    ) {
        let tls_seq = self.tls_seq(d);
        if d.direction == Direction::Ingress && d.source == Source::Syscall {
            self.rx_seq = Some(d.seq.wrapping_add(d.bytes as u32));
        }
        if !self.detect(d, max_attempts, stats) {
            return;
        }
        let Some(side) = self.side_of(d.direction) else {
            return;
        };
        let ParseState::Parsing { parser, .. } = &mut self.state else {
            return;
        };
        let i = side.index();
        let start = self.pos[i];
        let seg = Seg {
            start,
            end: start + d.bytes,
            enter: d.enter_ns,
            exit: d.exit_ns,
            seq: match d.source {
                Source::Syscall => Some(d.seq as u64),
                Source::Tls => tls_seq,
                Source::Sendfile => None,
            },
            source: d.source,
            thread: d.thread(),
            ctx: d.exec_ctx,
            task: d.task,
        };
        let segs = &mut self.segs[i];
        while segs.front().is_some_and(|g| g.end <= self.done[i]) {
            segs.pop_front();
        }
        if segs.len() >= MAX_SEGS {
            segs.pop_front();
        }
        if segs.len() == segs.capacity() {
            // Room grows 1, 2, 4, ...: most connections carry one message
            // per side at a time, in one call (a GET, a query) or two
            // (headers, then the body). An open request holds its
            // segment: 88 bytes, where the default first allocation is
            // four segments and the next would jump from one to four.
            segs.reserve_exact(segs.capacity().max(1));
        }
        segs.push_back(seg);
        self.pos[i] = seg.end;
        let first = out.len();
        let captured = d.payload.len() as u64;
        if captured > 0 {
            parser.feed_into(side, &d.payload, out);
        }
        if d.bytes > captured {
            parser.gap(side, d.bytes - captured);
        }
        while let Some(ev) = parser.poll() {
            out.push_back(ev);
        }
        for ev in out.range(first..) {
            if let L7EventKind::End { end, .. } = ev.kind {
                let j = ev.side.index();
                self.done[j] = self.done[j].max(end);
            }
        }
    }

    /// The connection closed: what the parser reports at end of stream.
    pub(super) fn close(&mut self) -> Vec<L7Event> {
        let mut events = self.close_side(Side::Client);
        events.extend(self.close_side(Side::Server));
        events
    }

    /// One side's stream ended: what the parser reports (a response
    /// delimited by the close ends; one cut short is a desync).
    pub(super) fn close_side(&mut self, side: Side) -> Vec<L7Event> {
        let mut events = Vec::new();
        if let ParseState::Parsing { parser, .. } = &mut self.state {
            parser.close(side);
            while let Some(ev) = parser.poll() {
                events.push(ev);
            }
        }
        events
    }
}

/// What a data event does to its connection before parsing.
pub(super) enum Admit {
    /// Parse it.
    Parse,
    /// Parse it; the connection just switched to TLS plaintext and these
    /// requests lost their response.
    TlsStarted(Vec<SpanId>),
    /// Ciphertext (or unknown connection): skip.
    Skip,
}

/// The connection table, by connection id. Boxed: the table's slots are
/// sized to the next power of two and, during a resize, held twice, so a
/// 264-byte `Conn` inline cost ~600 bytes per connection end (heaptrack,
/// 30,000 open connection ends: 28 MB at peak); a box is 8.
#[derive(Default)]
pub(super) struct Conns {
    map: HashMap<u64, Box<Conn>>,
    /// Ended connections, for the next ones to reuse (at most
    /// `REUSE_POOL`, each with small buffers: ~25 KB in all). Boxed: the
    /// box itself is what the next connection reuses.
    #[allow(clippy::vec_box)]
    free: Vec<Box<Conn>>,
}

impl Conns {
    #[inline]
    pub(super) fn get(&self, id: u64) -> Option<&Conn> {
        self.map.get(&id).map(|c| &**c)
    }

    #[inline]
    pub(super) fn get_mut(&mut self, id: u64) -> Option<&mut Conn> {
        self.map.get_mut(&id).map(|c| &mut **c)
    }

    #[inline]
    pub(super) fn remove(&mut self, id: u64) -> Option<Box<Conn>> {
        self.map.remove(&id)
    }

    #[inline]
    pub(super) fn insert(&mut self, id: u64, conn: Box<Conn>) {
        self.map.insert(id, conn);
    }

    /// A connect or accept was observed. Returns the connection it
    /// replaces, if any; `false` if the table is full.
    #[inline]
    pub(super) fn open(
        &mut self,
        c: &crate::event::ConnEvent,
        max: usize,
        stats: &mut Stats,
    ) -> (Option<Box<Conn>>, bool) {
        stats.conns_seen += 1;
        let old = self.map.remove(&c.conn_id);
        if self.map.len() >= max {
            stats.conns_refused_capacity += 1;
            return (old, false);
        }
        let mut conn = self.fresh(c.pid, c.role, c.tuple, c.ts);
        conn.seen_open = true;
        self.map.insert(c.conn_id, conn);
        (old, true)
    }

    /// The connection of a data event (created on first use, within the
    /// table's bound), updated with what the event says about it.
    #[inline]
    pub(super) fn admit(&mut self, d: &DataEvent, max: usize, stats: &mut Stats) -> Admit {
        if !self.map.contains_key(&d.conn_id) {
            if self.map.len() >= max {
                stats.conns_refused_capacity += 1;
                return Admit::Skip;
            }
            stats.conns_seen += 1;
            let conn = self.fresh(d.pid, d.role, d.tuple, d.enter_ns);
            self.map.insert(d.conn_id, conn);
        }
        let Some(conn) = self.map.get_mut(&d.conn_id) else {
            return Admit::Skip;
        };
        conn.pid = d.pid;
        conn.last_activity = d.exit_ns;
        if conn.role == Role::Unknown && d.role != Role::Unknown {
            conn.role = d.role;
        }
        // Once TLS plaintext is seen on a connection, its socket bytes are
        // ciphertext: parse only the plaintext, from its first byte.
        match d.source {
            Source::Tls if !conn.tls => Admit::TlsStarted(conn.start_tls()),
            Source::Tls => Admit::Parse,
            _ if conn.tls => Admit::Skip,
            _ if tls::looks_like_tls_record(&d.payload) => Admit::Skip,
            _ => Admit::Parse,
        }
    }

    /// A new connection, in the allocation of an ended one if any is kept.
    #[inline]
    fn fresh(&mut self, pid: u32, role: Role, tuple: SockTuple, ts: MonoNanos) -> Box<Conn> {
        match self.free.pop() {
            Some(mut c) => {
                c.reuse(pid, role, tuple, ts);
                c
            }
            None => Box::new(Conn::new(pid, role, tuple, ts)),
        }
    }

    /// An ended connection, whose pending exchanges were taken: kept for
    /// the next one (its parser goes now; the pool is bounded).
    #[inline]
    pub(super) fn recycle(&mut self, mut conn: Box<Conn>) {
        if self.free.len() < REUSE_POOL {
            conn.state = ParseState::Ignored;
            self.free.push(conn);
        }
    }

    /// Remove every connection process `pid` used last.
    pub(super) fn remove_of(&mut self, pid: u32) -> Vec<(u64, Box<Conn>)> {
        let ids: Vec<u64> = self
            .map
            .iter()
            .filter(|(_, c)| c.pid == pid)
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter()
            .filter_map(|id| self.map.remove(&id).map(|c| (id, c)))
            .collect()
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// Forget connections idle longer than `idle` with nothing pending.
    pub(super) fn sweep(&mut self, now: MonoNanos, idle: u64) {
        self.map
            .retain(|_, c| !(c.pending.is_empty() && now.saturating_sub(c.last_activity) > idle));
    }

    /// Give back what a burst grew the table to (crate::shrink).
    pub(super) fn shrink(&mut self) {
        crate::shrink::map(&mut self.map);
    }
}

/// Protocol of a connection from the first bytes seen in `dir`, and the
/// connection's role (inferred from who sends requests when unknown).
fn detect_protocol(
    role: Role,
    dir: Direction,
    bytes: &[u8],
    port: u16,
) -> Option<(Protocol, Role)> {
    let as_client = |d: Direction| match d {
        Direction::Egress => Role::Client,
        Direction::Ingress => Role::Server,
    };
    let as_server = |d: Direction| match d {
        Direction::Egress => Role::Server,
        Direction::Ingress => Role::Client,
    };
    match role {
        Role::Client | Role::Server => {
            let side = if as_client(dir) == role {
                Side::Client
            } else {
                Side::Server
            };
            protocol_parsers::detect(side, bytes, port).map(|p| (p, role))
        }
        Role::Unknown => {
            if let Some(p) = protocol_parsers::detect(Side::Client, bytes, port) {
                return Some((p, as_client(dir)));
            }
            protocol_parsers::detect(Side::Server, bytes, port).map(|p| (p, as_server(dir)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{DataEvent, Direction, Role, SockTuple, Source};

    fn data(dir: Direction, t: u64, payload: &'static [u8]) -> DataEvent {
        DataEvent {
            pid: 20,
            tid: 20,
            thread_start_ns: 1,
            comm: "nginx".into(),
            fd: 3,
            conn_id: 2,
            role: Role::Server,
            tuple: SockTuple {
                local: "127.0.0.1:8080".parse().unwrap(),
                remote: "127.0.0.1:40000".parse().unwrap(),
            },
            direction: dir,
            source: Source::Syscall,
            enter_ns: t,
            exit_ns: t + 1,
            bytes: payload.len() as u64,
            seq: 0,
            payload: bytes::Bytes::from_static(payload),
            ssl: 0,
            exec_ctx: 0,
            task: 0,
        }
    }

    /// A connection in the allocation of an ended one starts as a new one
    /// would: nothing of the old one's stream, parser, TLS or pending
    /// exchanges is left, and its offsets count from 0 again.
    #[test]
    fn a_reused_connection_starts_fresh() {
        let mut conns = Conns::default();
        let mut stats = Stats::default();
        let req: &[u8] = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n";
        let first = data(Direction::Ingress, 10, req);
        assert!(matches!(conns.admit(&first, 8, &mut stats), Admit::Parse));
        let mut out = VecDeque::new();
        let c = conns.get_mut(2).unwrap();
        c.ingest(&first, 8, &mut stats, &mut out);
        assert!(!out.is_empty(), "the request was parsed");
        c.pending.insert(0, SpanId(7));
        c.tls = true;
        c.peer_end = Some(PeerEnd {
            seq: 1,
            why: crate::view::IncompleteReason::ConnectionClosed,
            ts: 5,
        });
        let mut old = conns.remove(2).unwrap();
        old.pending.clear();
        let old_addr = &*old as *const Conn;
        conns.recycle(old);

        let mut again = data(Direction::Ingress, 100, req);
        again.conn_id = 3;
        again.role = Role::Client;
        again.tuple.local = "127.0.0.1:40001".parse().unwrap();
        assert!(matches!(conns.admit(&again, 8, &mut stats), Admit::Parse));
        let c = conns.get(3).unwrap();
        assert_eq!(
            c as *const Conn, old_addr,
            "the ended connection's box is reused"
        );
        assert_eq!((c.pid, c.role, c.tuple), (20, Role::Client, again.tuple));
        assert!(!c.tls && !c.seen_open && c.peer_end.is_none() && c.rx_seq.is_none());
        assert!(matches!(c.state, ParseState::Detecting { attempts: 0 }));
        assert!(c.pending.is_empty());
        assert_eq!((c.pos, c.done, c.tls_pos), ([0, 0], [0, 0], [0, 0]));
        assert!(c
            .segs
            .iter()
            .all(|s| s.is_empty() && s.capacity() <= REUSED_SEGS));
        assert_eq!(c.last_activity, again.exit_ns);

        // As a client, the same bytes are now a response it reads: parsed
        // from offset 0 of a new stream.
        let mut out = VecDeque::new();
        let resp: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let mut r = data(Direction::Egress, 110, req);
        r.conn_id = 3;
        r.role = Role::Client;
        let c = conns.get_mut(3).unwrap();
        c.ingest(&r, 8, &mut stats, &mut out);
        let mut r = data(Direction::Ingress, 120, resp);
        r.conn_id = 3;
        r.role = Role::Client;
        c.ingest(&r, 8, &mut stats, &mut out);
        let offsets: Vec<u64> = out
            .iter()
            .filter_map(|e| match e.kind {
                L7EventKind::Head { offset, .. } => Some(offset),
                _ => None,
            })
            .collect();
        assert_eq!(offsets, [0, 0], "request and response heads at offset 0");
    }

    /// A keep-alive connection keeps the segments of the message in
    /// flight, not the last `MAX_SEGS` (88 bytes each per side, 22 KB per
    /// connection before), and every offset still resolves.
    #[test]
    fn a_keep_alive_connection_keeps_only_the_segments_in_flight() {
        let mut c = Conn::new(20, Role::Server, data(Direction::Ingress, 0, b"").tuple, 0);
        let mut stats = Stats::default();
        let mut out = VecDeque::new();
        let req: &[u8] = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n";
        let resp: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        for i in 0..500u64 {
            let t = 1000 + i * 10;
            c.ingest(&data(Direction::Ingress, t, req), 8, &mut stats, &mut out);
            c.ingest(
                &data(Direction::Egress, t + 5, resp),
                8,
                &mut stats,
                &mut out,
            );
        }
        assert_eq!(out.len(), 2000, "a head and an end per message");
        assert!(c.segs.iter().all(|s| s.len() <= 1), "{:?}", c.segs);
        // The last request's head still maps to its read.
        let head = (499 * req.len()) as u64;
        assert_eq!(
            c.seg_at(Side::Client, head).map(|g| g.enter),
            Some(1000 + 4990)
        );
        // A request split over three reads keeps all three until it ends.
        c.ingest(
            &data(Direction::Ingress, 9000, b"GET /y HTTP/1.1\r\n"),
            8,
            &mut stats,
            &mut out,
        );
        c.ingest(
            &data(Direction::Ingress, 9001, b"Host: a\r\n"),
            8,
            &mut stats,
            &mut out,
        );
        c.ingest(
            &data(Direction::Ingress, 9002, b"\r\n"),
            8,
            &mut stats,
            &mut out,
        );
        assert_eq!(c.segs[Side::Client.index()].len(), 3);
        let start = (500 * req.len()) as u64;
        assert_eq!(c.seg_at(Side::Client, start).map(|g| g.enter), Some(9000));
    }

    /// The pending-exchange map behaves as a map whatever the order of
    /// exchanges (HTTP/2 streams answered out of order), drains in
    /// exchange order, and holds one entry in room for one.
    #[test]
    fn pending_exchanges_are_a_map_in_exchange_order() {
        let mut p = Pending::default();
        assert!(p.is_empty());
        assert_eq!(p.insert(5, SpanId(50)), None);
        assert_eq!(p.0.capacity(), 1, "the first entry allocates room for one");
        assert_eq!(p.insert(9, SpanId(90)), None);
        assert_eq!(p.insert(1, SpanId(10)), None);
        assert_eq!(p.insert(7, SpanId(70)), None);
        assert_eq!(p.insert(7, SpanId(71)), Some(SpanId(70)));
        for (e, id) in [(1, 10), (5, 50), (7, 71), (9, 90)] {
            assert_eq!(p.get(&e), Some(&SpanId(id)), "exchange {e}");
        }
        for missing in [0, 2, 6, 8, 10] {
            assert_eq!(p.get(&missing), None, "exchange {missing}");
            assert_eq!(p.remove(&missing), None, "exchange {missing}");
        }
        assert_eq!(p.remove(&5), Some(SpanId(50)));
        assert_eq!(p.get(&5), None);
        assert_eq!(p.remove(&9), Some(SpanId(90)));
        assert_eq!(p.insert(12, SpanId(120)), None);
        let left: Vec<_> = p.drain().collect();
        assert_eq!(
            left,
            vec![(1, SpanId(10)), (7, SpanId(71)), (12, SpanId(120))]
        );
        assert!(p.is_empty());
    }

    /// A side's segment list takes room for one segment (an open request
    /// holds it), then doubles exactly: 1, 2, 4.
    #[test]
    fn segments_grow_from_room_for_one() {
        let mut conns = Conns::default();
        let mut stats = Stats::default();
        let mut out = VecDeque::new();
        // A request head in four calls: every segment stays (no message
        // ended yet).
        let parts: [&'static [u8]; 4] = [
            b"POST /x HTTP/1.1\r\n",
            b"Host: a\r\n",
            b"Content-Length: 2\r\n",
            b"\r\n",
        ];
        let first = data(Direction::Ingress, 10, parts[0]);
        assert!(matches!(conns.admit(&first, 8, &mut stats), Admit::Parse));
        let c = conns.get_mut(2).unwrap();
        let side = Side::Client.index();
        let mut caps = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            c.ingest(
                &data(Direction::Ingress, 10 + i as u64, part),
                8,
                &mut stats,
                &mut out,
            );
            caps.push((c.segs[side].len(), c.segs[side].capacity()));
        }
        assert_eq!(caps, vec![(1, 1), (2, 2), (3, 4), (4, 4)]);
    }
}
