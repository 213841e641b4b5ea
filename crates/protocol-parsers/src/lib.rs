//! Pure, incremental L7 protocol parsers for zt-trace.
//!
//! **Architecture invariant:** this crate does no I/O and reads no clock. Every
//! parser is fed byte slices (possibly split at any position, possibly with
//! gaps where the capture was truncated) and produces [`L7Event`]s that say
//! where each message starts and ends in the byte stream of the peer that sent
//! it. Incomplete input is never an error: the parser waits for more bytes.
//! Malformed input never panics: the parser reports [`L7EventKind::Desync`] and
//! resynchronises on the next plausible message boundary.
//!
//! The entry points are [`detect`] (which protocol do the first bytes of a
//! connection speak) and [`new_parser`] (a [`ConnectionParser`] for it).

#![forbid(unsafe_code)]

pub mod http1;
pub mod http2;
pub mod mysql;
pub mod postgres;
pub mod redis;
pub mod sql;

use std::collections::VecDeque;

mod exchange;
mod model;
pub use model::*;

/// Which peer of a connection sent a run of bytes.
///
/// `Client` bytes carry requests, `Server` bytes carry responses.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Side {
    Client,
    Server,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }

    /// 0 for `Client`, 1 for `Server`: an index into per-side arrays.
    pub fn index(self) -> usize {
        match self {
            Side::Client => 0,
            Side::Server => 1,
        }
    }
}

/// An application protocol a connection can speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Protocol {
    Http1,
    Http2,
    Mysql,
    Postgres,
    Redis,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http1 => "http/1.1",
            Protocol::Http2 => "http/2",
            Protocol::Mysql => "mysql",
            Protocol::Postgres => "postgresql",
            Protocol::Redis => "redis",
        }
    }
}

/// One thing a [`ConnectionParser`] learnt about the byte streams it was fed.
#[derive(Clone, Debug, PartialEq)]
pub struct L7Event {
    /// The peer whose bytes this event is about.
    pub side: Side,
    /// Pairs a request with its response on one connection: a request head
    /// and the response head/end that answer it carry the same `exchange`.
    /// (HTTP/1 and Redis: n-th request; HTTP/2: stream id; SQL: n-th command.)
    pub exchange: u64,
    pub kind: L7EventKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum L7EventKind {
    /// The head of a message was parsed. `offset` is the position of the
    /// message's first byte in `side`'s byte stream (counting every byte given
    /// to [`ConnectionParser::feed`] and [`ConnectionParser::gap`] for that
    /// side since the parser was created).
    Head { offset: u64, info: MessageInfo },
    /// The message is complete. `end` is the stream offset one past its last
    /// byte. `info` carries what is only known at the end (gRPC status from
    /// trailers, row counts, ...) and supersedes the fields it sets.
    End { end: u64, info: Option<MessageInfo> },
    /// Framing was lost at `offset` (malformed or truncated input). Messages of
    /// this side that had a `Head` but no `End` are abandoned; the parser
    /// resynchronises on its own.
    Desync { offset: u64, reason: String },
}

/// Incremental parser for both directions of one connection.
///
/// Implementations never panic, whatever bytes they are given, and keep a
/// bounded amount of buffered data.
pub trait ConnectionParser: Send {
    fn protocol(&self) -> Protocol;
    /// Bytes sent by `side`, in stream order, directly after the previous
    /// `feed`/`gap` for that side.
    fn feed(&mut self, side: Side, data: &[u8]);
    /// `len` bytes sent by `side` were transferred but not captured.
    fn gap(&mut self, side: Side, len: u64);
    /// `side` closed the connection (or the capture ended). Messages delimited
    /// by connection close (an HTTP/1.0 body without length) end here; other
    /// unfinished messages of that side may be reported as `Desync`.
    fn close(&mut self, side: Side) {
        let _ = side;
    }
    /// Next event, if any.
    fn poll(&mut self) -> Option<L7Event>;
    /// [`feed`](Self::feed), then every event the parser has, oldest first,
    /// appended to `out` (what [`poll`](Self::poll) would have returned).
    ///
    /// A parser's own queue is released whenever it is drained (an idle
    /// connection holds none), so feeding and polling allocates it again
    /// for every message. A caller that keeps `out` from call to call lends
    /// it to the parser instead: no allocation once it has grown.
    fn feed_into(&mut self, side: Side, data: &[u8], out: &mut VecDeque<L7Event>) {
        self.feed(side, data);
        while let Some(ev) = self.poll() {
            out.push_back(ev);
        }
    }
}

/// Guess the protocol of a connection from the first bytes one side sent.
///
/// `port` (the server's port) is only a hint used to break ties; the bytes
/// decide. Returns `None` when the bytes match nothing we parse (yet).
pub fn detect(side: Side, first_bytes: &[u8], port: u16) -> Option<Protocol> {
    // Order matters: the HTTP/2 preface starts like an HTTP/1 request line.
    if http2::looks_like(side, first_bytes, port) {
        return Some(Protocol::Http2);
    }
    let http1 = match side {
        Side::Client => http1::looks_like_request(first_bytes),
        Side::Server => http1::looks_like_response(first_bytes),
    };
    if http1 {
        return Some(Protocol::Http1);
    }
    if redis::looks_like(side, first_bytes, port) {
        return Some(Protocol::Redis);
    }
    if postgres::looks_like(side, first_bytes, port) {
        return Some(Protocol::Postgres);
    }
    if mysql::looks_like(side, first_bytes, port) {
        return Some(Protocol::Mysql);
    }
    None
}

/// The next queued event; once the queue is drained, its buffer is
/// released. Every open connection has a parser and most sit idle between
/// messages: a queue keeping room for four 240-byte events was ~1 KB per
/// connection end, a fifth of the agent's memory per open request
/// (benches/open_requests.sh, BENCHMARKS.md "Memory per open request").
#[inline]
pub(crate) fn next_event(queue: &mut VecDeque<L7Event>) -> Option<L7Event> {
    let ev = queue.pop_front();
    if ev.is_none() && queue.capacity() > 0 {
        *queue = VecDeque::new();
    }
    ev
}

/// [`ConnectionParser::feed_into`] for a parser whose events go to the
/// queue `queue(p)` returns: `out` stands in for that queue while `feed`
/// runs. Events the parser still held go first, so the order is
/// [`ConnectionParser::poll`]'s; the parser is left with an empty queue
/// that holds no memory.
#[inline]
pub(crate) fn feed_via<P>(
    p: &mut P,
    queue: fn(&mut P) -> &mut VecDeque<L7Event>,
    out: &mut VecDeque<L7Event>,
    feed: impl FnOnce(&mut P),
) {
    let q = queue(p);
    out.extend(q.drain(..));
    std::mem::swap(q, out);
    feed(p);
    let q = queue(p);
    std::mem::swap(q, out);
    if q.capacity() > 0 {
        *q = VecDeque::new();
    }
}

/// A fresh parser for `protocol`, positioned at the start of a connection (or
/// at the first byte we saw of it: every parser copes with joining midway).
pub fn new_parser(protocol: Protocol) -> Box<dyn ConnectionParser> {
    match protocol {
        Protocol::Http1 => Box::new(http1::Http1Parser::new()),
        Protocol::Http2 => Box::new(http2::Http2Parser::new()),
        Protocol::Mysql => Box::new(mysql::MysqlParser::new()),
        Protocol::Postgres => Box::new(postgres::PostgresParser::new()),
        Protocol::Redis => Box::new(redis::RedisParser::new()),
    }
}

#[cfg(test)]
mod queue_tests {
    use super::*;

    /// An idle connection's parser holds no event buffer: it is released
    /// once the events are taken.
    #[test]
    fn a_drained_event_queue_holds_no_memory() {
        for (protocol, client, server) in [
            (
                Protocol::Http1,
                &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
                &b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"[..],
            ),
            (
                Protocol::Redis,
                &b"*1\r\n$4\r\nPING\r\n"[..],
                &b"+PONG\r\n"[..],
            ),
        ] {
            let mut p = new_parser(protocol);
            p.feed(Side::Client, client);
            p.feed(Side::Server, server);
            let mut n = 0;
            while p.poll().is_some() {
                n += 1;
            }
            assert!(n >= 2, "{protocol:?}: {n} events");
        }
        // What every parser's `poll` goes through.
        let mut q = std::collections::VecDeque::new();
        q.push_back(L7Event {
            side: Side::Client,
            exchange: 0,
            kind: L7EventKind::Desync {
                offset: 0,
                reason: String::new(),
            },
        });
        assert!(next_event(&mut q).is_some());
        assert!(q.capacity() > 0);
        assert!(next_event(&mut q).is_none());
        assert_eq!(q.capacity(), 0);
    }
}
