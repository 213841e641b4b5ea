//! Redis serialization protocol, RESP2 and RESP3.
//!
//! [`RedisParser`] follows both directions of one connection.
//!
//! # Client side
//! Commands are arrays of bulk strings (`*3\r\n$3\r\nSET\r\n...`) or inline
//! commands (`PING\r\n`). Each command gets the next exchange number and is
//! reported as `Head` (as soon as its name and, where the command has one,
//! its first key were read: a large value that follows is skipped by count)
//! and `End` with a [`DbRequest`]: `operation` is the upper-case command
//! name (container commands such as `CONFIG GET`, `CLIENT SETNAME` keep
//! their subcommand), `target` is the first key for the commands of
//! [`first_key_index`], `query` is always `None` (values are never kept).
//! Arguments of other commands (`AUTH`, `HELLO`'s credentials, ...) are not
//! even buffered. Empty commands (`*0`, empty inline lines) get no reply
//! from Redis and are not reported.
//!
//! # Server side
//! Every RESP2/RESP3 type is framed: simple string, error, integer, bulk,
//! array, null, map, set, attribute (`|`, metadata that precedes a reply:
//! it is part of the reply message but not a reply itself), push (`>`),
//! double, boolean, big number, verbatim string and blob error. A reply is
//! reported as `Head` (when its type is known) and `End` with a
//! [`DbResponse`]: `error` for `-` and `!` replies (code = first word when
//! it is upper case, such as `ERR` or `WRONGTYPE`), `rows` = element count
//! for arrays, sets and pushes, pair count for maps, 0 for a null array.
//! Streamed RESP3 aggregates (`*?`, `$?`), which Redis does not send, are a
//! framing error.
//!
//! # Pairing
//! Replies pair with commands first in, first out (pipelining). Out-of-band
//! data never consumes a command and produces **no event**:
//! * RESP3 pushes (`>`), except subscription confirmations (below);
//! * in RESP2 subscribe mode (after `SUBSCRIBE`/`PSUBSCRIBE`/`SSUBSCRIBE`,
//!   until an unsubscribe confirmation reports 0 subscriptions left, or
//!   `RESET`), arrays whose first element is `message`, `pmessage` or
//!   `smessage`;
//! * everything after the reply to `MONITOR`.
//!
//! A (un)subscribe command with N channels is answered by N confirmations
//! (`["subscribe", channel, count]`, a push in RESP3): the first one is the
//! command's reply, the others are absorbed silently; an unsubscribe without
//! channels absorbs confirmations until one reports 0 subscriptions left.
//! `CLIENT REPLY OFF|SKIP` is followed: commands that get no reply are
//! reported but never wait for one.
//!
//! A reply with no pending command gets a fresh exchange number that no
//! command uses.
//!
//! # Losses
//! Framing loss (garbage, a capture gap outside a bulk payload, aggregates
//! nested deeper than [`MAX_DEPTH`], a line longer than [`MAX_LINE`]) yields
//! one `Desync` per loss. The client side resynchronises on the next line
//! (or the first byte after a gap) that starts a command array
//! (`*N\r\n$...`). Replies carry no marker, so the server side
//! resynchronises at its next "turn": the first server byte after the client
//! completed a command. A loss on the server side drops the commands still
//! waiting for a reply (their replies may have been lost); a loss on the
//! client side may have hidden commands, so it puts a barrier in the queue:
//! replies that reach it get fresh exchange numbers (and when known commands
//! wait behind it, they are given up: their replies cannot be told from
//! those of the lost commands) until the lost commands are surely answered
//! (the same rules as [`crate::http1`]). Commands whose reply is uncertain
//! because their deciding words were not captured (`CLIENT` with a lost
//! subcommand) act as such a barrier.

use crate::exchange::Exchanges;
use crate::{
    ConnectionParser, DbError, DbRequest, DbResponse, DbSystem, L7Event, L7EventKind, MessageInfo,
    Protocol, Side,
};
use std::collections::VecDeque;

/// Deepest nesting of aggregates accepted.
pub const MAX_DEPTH: usize = 64;
/// Longest line (simple string, error, inline command) accepted.
pub const MAX_LINE: usize = 64 * 1024;
/// Largest bulk length accepted.
const MAX_BULK: u64 = 1 << 40;
/// Largest aggregate count accepted.
const MAX_COUNT: u64 = 1 << 32;
/// Longest command name kept.
const MAX_NAME: usize = 64;
/// Longest key kept (a longer one is reported as unknown).
const MAX_KEY: usize = 1024;
/// Longest error message kept (truncated beyond).
const MAX_ERROR: usize = 512;
/// Longest first element of a server array kept (for pub/sub kinds).
const MAX_KIND: usize = 16;

/// Why bytes could not be framed as RESP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RedisError {
    /// The first byte of a line is no RESP type.
    #[error("unknown RESP type byte 0x{0:02x}")]
    UnknownType(u8),
    /// A length or count is not a number in range.
    #[error("invalid length or count")]
    BadLength,
    /// A line is malformed (integer, boolean, double, ...).
    #[error("malformed line")]
    BadLine,
    /// A line is longer than [`MAX_LINE`].
    #[error("line longer than {MAX_LINE} bytes")]
    LineTooLong,
    /// Aggregates nested deeper than [`MAX_DEPTH`].
    #[error("aggregates nested deeper than {MAX_DEPTH}")]
    TooDeep,
    /// A bulk payload is not followed by CRLF.
    #[error("missing CRLF after bulk payload")]
    MissingCrlf,
    /// A command array holds something other than bulk strings.
    #[error("command argument is not a bulk string")]
    ExpectedBulk,
    /// Streamed aggregates / strings (`?` length).
    #[error("streamed RESP3 types are not supported")]
    Streamed,
    /// Bytes not captured where framing was.
    #[error("capture gap inside RESP framing")]
    Gap,
    /// The connection closed mid-message.
    #[error("closed mid-message")]
    Truncated,
}

/// Kinds of RESP aggregates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregate {
    /// `*`
    Array,
    /// `%` (count = pairs)
    Map,
    /// `~`
    Set,
    /// `|` (count = pairs; precedes the value it describes)
    Attribute,
    /// `>`
    Push,
}

/// A decoded RESP header line (the type byte and what follows up to CRLF).
#[derive(Clone, Debug, PartialEq)]
pub enum Header<'a> {
    /// `+text`
    Simple(&'a [u8]),
    /// `-CODE message`
    Error(&'a [u8]),
    /// `:n`
    Integer(i64),
    /// `$n` (`None` = null bulk `$-1`)
    Bulk(Option<u64>),
    /// `!n` blob error
    BlobError(u64),
    /// `=n` verbatim string
    Verbatim(u64),
    /// `*n`, `%n`, `~n`, `|n`, `>n` (`None` = null array `*-1`)
    Aggregate(Aggregate, Option<u64>),
    /// `_`
    Null,
    /// `,1.5`
    Double,
    /// `#t` / `#f`
    Boolean(bool),
    /// `(123...`
    BigNumber,
}

fn parse_int(b: &[u8]) -> Option<i64> {
    let (neg, digits) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, b),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = digits.iter().try_fold(0i64, |a, d| {
        a.checked_mul(10)?.checked_add(i64::from(d - b'0'))
    })?;
    Some(if neg { -v } else { v })
}

/// A length: `-1` is null (`Ok(None)`), other negatives and values above
/// `max` are errors.
fn parse_len(b: &[u8], max: u64) -> Result<Option<u64>, RedisError> {
    if b == b"?" {
        return Err(RedisError::Streamed);
    }
    match parse_int(b) {
        Some(-1) => Ok(None),
        Some(n) if n >= 0 && (n as u64) <= max => Ok(Some(n as u64)),
        _ => Err(RedisError::BadLength),
    }
}

fn not_null(v: Option<u64>) -> Result<u64, RedisError> {
    v.ok_or(RedisError::BadLength)
}

/// Decode one RESP header line, without its CRLF.
pub fn parse_header(line: &[u8]) -> Result<Header<'_>, RedisError> {
    let Some((&t, rest)) = line.split_first() else {
        return Err(RedisError::BadLine);
    };
    Ok(match t {
        b'+' => Header::Simple(rest),
        b'-' => Header::Error(rest),
        b':' => Header::Integer(parse_int(rest).ok_or(RedisError::BadLine)?),
        b'$' => Header::Bulk(parse_len(rest, MAX_BULK)?),
        b'!' => Header::BlobError(not_null(parse_len(rest, MAX_BULK)?)?),
        b'=' => Header::Verbatim(not_null(parse_len(rest, MAX_BULK)?)?),
        b'*' => Header::Aggregate(Aggregate::Array, parse_len(rest, MAX_COUNT)?),
        b'%' => Header::Aggregate(Aggregate::Map, Some(not_null(parse_len(rest, MAX_COUNT)?)?)),
        b'~' => Header::Aggregate(Aggregate::Set, Some(not_null(parse_len(rest, MAX_COUNT)?)?)),
        b'|' => Header::Aggregate(
            Aggregate::Attribute,
            Some(not_null(parse_len(rest, MAX_COUNT)?)?),
        ),
        b'>' => Header::Aggregate(
            Aggregate::Push,
            Some(not_null(parse_len(rest, MAX_COUNT)?)?),
        ),
        b'_' if rest.is_empty() => Header::Null,
        b',' if !rest.is_empty()
            && rest
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || b"+-.".contains(c)) =>
        {
            Header::Double
        }
        b'#' if rest == b"t" => Header::Boolean(true),
        b'#' if rest == b"f" => Header::Boolean(false),
        b'(' if parse_int(&rest[..rest.len().min(1)]).is_some() || rest.first() == Some(&b'-') => {
            if rest.len() > 1 && !rest[1..].iter().all(u8::is_ascii_digit) {
                return Err(RedisError::BadLine);
            }
            Header::BigNumber
        }
        b'_' | b',' | b'#' | b'(' => return Err(RedisError::BadLine),
        other => return Err(RedisError::UnknownType(other)),
    })
}

/// Container commands whose first argument is a subcommand kept in the
/// operation name (`CONFIG GET`).
const CONTAINERS: &[&str] = &[
    "ACL", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "DEBUG", "FUNCTION", "LATENCY", "MEMORY",
    "MODULE", "OBJECT", "PUBSUB", "SCRIPT", "SLOWLOG", "XGROUP", "XINFO",
];

/// Commands whose first argument is a key.
const KEY_FIRST: &[&str] = &[
    "APPEND",
    "BITCOUNT",
    "BITFIELD",
    "BITFIELD_RO",
    "BITPOS",
    "BLMOVE",
    "BLMPOP",
    "BLPOP",
    "BRPOP",
    "BRPOPLPUSH",
    "BZPOPMAX",
    "BZPOPMIN",
    "COPY",
    "DECR",
    "DECRBY",
    "DEL",
    "DUMP",
    "EXISTS",
    "EXPIRE",
    "EXPIREAT",
    "EXPIRETIME",
    "GEOADD",
    "GEODIST",
    "GEOHASH",
    "GEOPOS",
    "GEORADIUS",
    "GEORADIUSBYMEMBER",
    "GEORADIUSBYMEMBER_RO",
    "GEORADIUS_RO",
    "GEOSEARCH",
    "GEOSEARCHSTORE",
    "GET",
    "GETBIT",
    "GETDEL",
    "GETEX",
    "GETRANGE",
    "GETSET",
    "HDEL",
    "HEXISTS",
    "HEXPIRE",
    "HGET",
    "HGETALL",
    "HINCRBY",
    "HINCRBYFLOAT",
    "HKEYS",
    "HLEN",
    "HMGET",
    "HMSET",
    "HRANDFIELD",
    "HSCAN",
    "HSET",
    "HSETNX",
    "HSTRLEN",
    "HTTL",
    "HVALS",
    "INCR",
    "INCRBY",
    "INCRBYFLOAT",
    "LCS",
    "LINDEX",
    "LINSERT",
    "LLEN",
    "LMOVE",
    "LPOP",
    "LPOS",
    "LPUSH",
    "LPUSHX",
    "LRANGE",
    "LREM",
    "LSET",
    "LTRIM",
    "MGET",
    "MOVE",
    "MSET",
    "MSETNX",
    "PERSIST",
    "PEXPIRE",
    "PEXPIREAT",
    "PEXPIRETIME",
    "PFADD",
    "PFCOUNT",
    "PFMERGE",
    "PSETEX",
    "PTTL",
    "RENAME",
    "RENAMENX",
    "RESTORE",
    "RPOP",
    "RPOPLPUSH",
    "RPUSH",
    "RPUSHX",
    "SADD",
    "SCARD",
    "SDIFF",
    "SDIFFSTORE",
    "SET",
    "SETBIT",
    "SETEX",
    "SETNX",
    "SETRANGE",
    "SINTER",
    "SINTERSTORE",
    "SISMEMBER",
    "SMEMBERS",
    "SMISMEMBER",
    "SMOVE",
    "SORT",
    "SORT_RO",
    "SPOP",
    "SRANDMEMBER",
    "SREM",
    "SSCAN",
    "STRLEN",
    "SUBSTR",
    "SUNION",
    "SUNIONSTORE",
    "TOUCH",
    "TTL",
    "TYPE",
    "UNLINK",
    "WATCH",
    "XACK",
    "XADD",
    "XAUTOCLAIM",
    "XCLAIM",
    "XDEL",
    "XLEN",
    "XPENDING",
    "XRANGE",
    "XREVRANGE",
    "XSETID",
    "XTRIM",
    "ZADD",
    "ZCARD",
    "ZCOUNT",
    "ZDIFFSTORE",
    "ZINCRBY",
    "ZINTERSTORE",
    "ZLEXCOUNT",
    "ZMSCORE",
    "ZPOPMAX",
    "ZPOPMIN",
    "ZRANDMEMBER",
    "ZRANGE",
    "ZRANGEBYLEX",
    "ZRANGEBYSCORE",
    "ZRANGESTORE",
    "ZRANK",
    "ZREM",
    "ZREMRANGEBYLEX",
    "ZREMRANGEBYRANK",
    "ZREMRANGEBYSCORE",
    "ZREVRANGE",
    "ZREVRANGEBYLEX",
    "ZREVRANGEBYSCORE",
    "ZREVRANK",
    "ZSCAN",
    "ZSCORE",
    "ZUNIONSTORE",
];

/// Subcommands (of [`CONTAINERS`]) whose first argument is a key.
const KEY_AFTER_SUB: &[&str] = &[
    "OBJECT ENCODING",
    "OBJECT FREQ",
    "OBJECT IDLETIME",
    "OBJECT REFCOUNT",
    "MEMORY USAGE",
    "XINFO STREAM",
    "XINFO GROUPS",
    "XINFO CONSUMERS",
    "XGROUP CREATE",
    "XGROUP DESTROY",
    "XGROUP SETID",
    "XGROUP CREATECONSUMER",
    "XGROUP DELCONSUMER",
];

/// Index of the first key among a command's words (0 = the command name),
/// given its upper-case operation (`GET` -> 1, `OBJECT ENCODING` -> 2), or
/// `None` when the command has no key first.
pub fn first_key_index(operation: &str) -> Option<usize> {
    if KEY_FIRST.contains(&operation) {
        Some(1)
    } else if KEY_AFTER_SUB.contains(&operation) {
        Some(2)
    } else {
        None
    }
}

/// Upper-case command name when `b` looks like one.
fn command_name(b: &[u8]) -> Option<String> {
    let ok = !b.is_empty()
        && b.len() <= MAX_NAME
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"._-|:".contains(c));
    ok.then(|| String::from_utf8_lossy(b).to_ascii_uppercase())
}

/// Words of a command needed to describe it: (operation, words to read).
fn needed_words(name: &str) -> usize {
    if name == "HELLO" || CONTAINERS.contains(&name) || KEY_FIRST.contains(&name) {
        2
    } else {
        1
    }
}

/// [`needed_words`] of a command name as sent (any case).
fn needed_words_raw(name: &[u8]) -> usize {
    let is = |list: &[&str]| list.iter().any(|c| c.as_bytes().eq_ignore_ascii_case(name));
    if name.eq_ignore_ascii_case(b"HELLO") || is(CONTAINERS) || is(KEY_FIRST) {
        2
    } else {
        1
    }
}

/// What a command does to the connection's reply stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CmdKind {
    Normal,
    /// (Un)subscribe family: confirmations named `confirm`; `Some(n)`
    /// confirmations expected, `None` = until a count of 0.
    Subscribe {
        confirm: &'static str,
        replies: Option<u64>,
    },
    Monitor,
}

const SUBSCRIBE: &[(&str, &str, bool)] = &[
    ("SUBSCRIBE", "subscribe", true),
    ("PSUBSCRIBE", "psubscribe", true),
    ("SSUBSCRIBE", "ssubscribe", true),
    ("UNSUBSCRIBE", "unsubscribe", false),
    ("PUNSUBSCRIBE", "punsubscribe", false),
    ("SUNSUBSCRIBE", "sunsubscribe", false),
];

/// A command as reported, with what pairing needs to know.
struct Command {
    info: DbRequest,
    kind: CmdKind,
}

/// Build the description of a command from its first words (`words[0]` is
/// the name; missing or undecodable words are `None`) and its word count.
fn describe(words: &[Option<&[u8]>], argc: u64) -> Command {
    let name = words.first().copied().flatten().and_then(command_name);
    let word = |i: usize| words.get(i).copied().flatten();
    let mut operation = name.clone();
    if let Some(n) = &name {
        if CONTAINERS.contains(&n.as_str()) {
            if let Some(sub) = word(1).and_then(command_name) {
                operation = Some(format!("{n} {sub}"));
            }
        }
    }
    let target = operation
        .as_deref()
        .and_then(first_key_index)
        .and_then(word)
        .filter(|k| k.len() <= MAX_KEY)
        .and_then(|k| std::str::from_utf8(k).ok())
        .map(str::to_owned);
    let kind = match name.as_deref() {
        Some("MONITOR") => CmdKind::Monitor,
        Some(n) => SUBSCRIBE.iter().find(|(c, _, _)| *c == n).map_or(
            CmdKind::Normal,
            |(_, confirm, sub)| CmdKind::Subscribe {
                confirm,
                replies: if argc > 1 || *sub {
                    Some(argc.saturating_sub(1))
                } else {
                    None
                },
            },
        ),
        None => CmdKind::Normal,
    };
    Command {
        info: DbRequest {
            system: DbSystem::Redis,
            operation,
            query: None,
            target,
            namespace: None,
            statement: None,
        },
        kind,
    }
}

/// Split a DbError out of an error reply's text.
fn db_error(text: &[u8]) -> DbError {
    let text = &text[..text.len().min(MAX_ERROR)];
    let text = String::from_utf8_lossy(text);
    let text = text.trim_end();
    let (first, rest) = text.split_once(' ').unwrap_or((text, ""));
    let is_code = !first.is_empty()
        && first.len() <= 32
        && first
            .bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
        && first.bytes().next().is_some_and(|c| c.is_ascii_uppercase());
    if is_code {
        DbError {
            code: Some(first.to_owned()),
            message: rest.trim_start().to_owned(),
        }
    } else {
        DbError {
            code: None,
            message: text.to_owned(),
        }
    }
}

/// A command waiting for its reply. `epoch`: server activity count when it
/// was sent (see [`Exchanges::server_epoch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cmd {
    exchange: u64,
    kind: CmdKind,
    answered: bool,
    epoch: u64,
}

type Pending = crate::exchange::Pending<Cmd>;

/// Server activity count when a queue entry was put.
fn pending_epoch(p: &Pending) -> u64 {
    match p {
        Pending::Request(Cmd { epoch, .. }) => *epoch,
        Pending::Lost(b) => b.epoch(),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReplyMode {
    On,
    Off,
    /// The next command gets no reply.
    Skip,
}

/// Redis state shared by both directions.
#[derive(Debug)]
struct RedisShared {
    /// RESP2 subscribe mode: arrays may be pushes.
    subscribed: bool,
    /// The connection speaks RESP3 (pushes are `>`).
    resp3: bool,
    reply_mode: ReplyMode,
    /// After `MONITOR`'s reply everything from the server is out of band.
    monitor: bool,
}

/// State shared by both directions. When the server side resynchronises
/// at a turn, commands sent before the previous server activity
/// (`server_epoch`) were answered in bytes it skipped.
type Shared = Exchanges<Cmd, RedisShared>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    /// Reading a line (`line` may hold its first bytes).
    Line,
    /// Bulk payload bytes left, then CRLF bytes left.
    Bulk { left: u64, crlf: u8 },
    /// Framing lost; `line_start`: the next byte starts a line / follows a gap.
    Resync { line_start: bool },
    /// Closed.
    Stopped,
}

#[derive(Clone, Copy, Debug)]
struct Frame {
    left: u64,
    total: u64,
    attribute: bool,
}

/// How a server message is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// A reply with this exchange.
    Reply(u64),
    /// Out of band: no events.
    Silent,
}

/// The top-level message being read.
#[derive(Debug, Default)]
struct Msg {
    start: u64,
    // Client: the first words, as captured (`None`: not captured / lost).
    words: [Option<Vec<u8>>; 3],
    /// Words settled (captured or lost).
    settled: usize,
    argc: u64,
    need: usize,
    exchange: Option<u64>,
    // Server.
    /// Type byte of the reply (after any attribute).
    ty: Option<u8>,
    rows: Option<u64>,
    error: Option<DbError>,
    /// First element of a top-level array/push, lower-case.
    kind: Option<Vec<u8>>,
    /// Third element when an integer (subscription count).
    count: Option<i64>,
    class: Option<Class>,
}

/// What the current bulk payload is captured for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// Client command word `i`.
    Word(usize),
    /// Server: first element of a top-level array/push.
    Kind,
    /// Server: top-level blob error.
    BlobError,
}

/// One direction of the connection.
#[derive(Debug)]
struct Reader {
    side: Side,
    fed: u64,
    st: St,
    line: Vec<u8>,
    line_start: u64,
    stack: Vec<Frame>,
    msg: Option<Msg>,
    slot: Option<Slot>,
    cap: Vec<u8>,
    /// The capture lost bytes (gap) or went past its limit.
    cap_bad: bool,
    in_loss: bool,
    /// The other side completed a message since this side's last feed.
    turn: bool,
    /// First line after resynchronisation: must start a plausible message.
    probing: bool,
}

impl Reader {
    fn new(side: Side) -> Self {
        Reader {
            side,
            fed: 0,
            st: St::Line,
            line: Vec::new(),
            line_start: 0,
            stack: Vec::new(),
            msg: None,
            slot: None,
            cap: Vec::new(),
            cap_bad: false,
            in_loss: false,
            turn: false,
            probing: false,
        }
    }

    fn idle(&self) -> bool {
        self.st == St::Line && self.line.is_empty() && self.msg.is_none()
    }

    fn desync(&mut self, sh: &mut Shared, offset: u64, reason: RedisError) {
        if self.side == Side::Client {
            // The command existed: report it if it was not yet, so that its
            // reply still pairs.
            if let Some(m) = &self.msg {
                if m.exchange.is_none() && m.settled > 0 && m.words[0].is_some() {
                    self.command_head(sh);
                }
            }
        }
        self.line.clear();
        if self.line.capacity() > 4096 {
            self.line.shrink_to(256);
        }
        self.stack.clear();
        self.msg = None;
        self.slot = None;
        self.cap.clear();
        self.probing = false;
        self.st = St::Resync { line_start: false };
        if !self.in_loss {
            self.in_loss = true;
            sh.push(
                self.side,
                0,
                L7EventKind::Desync {
                    offset,
                    reason: reason.to_string(),
                },
            );
        }
        match self.side {
            Side::Client => sh.push_lost(false),
            Side::Server => sh.pending.clear(),
        }
    }

    fn feed(&mut self, sh: &mut Shared, data: &[u8], peer_idle: bool) {
        let base = self.fed;
        self.fed += data.len() as u64;
        if std::mem::take(&mut self.turn) && matches!(self.st, St::Resync { .. }) {
            self.st = St::Line;
            self.probing = true;
            if self.side == Side::Server {
                // Commands sent before the server's previous activity were
                // answered in bytes skipped while resynchronising.
                let now = sh.server_epoch;
                sh.pending.retain(|p| pending_epoch(p) >= now);
            }
        }
        let mut i = 0;
        while i < data.len() {
            match self.st {
                St::Stopped => return,
                St::Bulk { left, crlf } => i = self.bulk(sh, data, i, base, left, crlf),
                St::Line => {
                    let rest = &data[i..];
                    match rest.iter().position(|b| *b == b'\n') {
                        Some(nl) => {
                            let end = base + (i + nl + 1) as u64;
                            if self.line.is_empty() {
                                self.line_start = base + i as u64;
                                let line = strip_cr(&rest[..nl]);
                                self.on_line(sh, line, end, peer_idle);
                            } else if self.line.len() + nl > MAX_LINE {
                                let at = self.line_start;
                                self.desync(sh, at, RedisError::LineTooLong);
                            } else {
                                let mut line = std::mem::take(&mut self.line);
                                line.extend_from_slice(&rest[..nl]);
                                self.on_line(sh, strip_cr(&line), end, peer_idle);
                                line.clear();
                                if self.line.is_empty() && line.capacity() <= 4096 {
                                    self.line = line;
                                }
                            }
                            i += nl + 1;
                            if let St::Resync { .. } = self.st {
                                self.st = St::Resync { line_start: true };
                            }
                        }
                        None => {
                            if self.line.is_empty() {
                                self.line_start = base + i as u64;
                            }
                            if self.line.len() + rest.len() > MAX_LINE {
                                let at = self.line_start;
                                self.desync(sh, at, RedisError::LineTooLong);
                            } else {
                                self.line.extend_from_slice(rest);
                            }
                            i = data.len();
                        }
                    }
                }
                St::Resync { line_start } => {
                    if self.side == Side::Server {
                        // Replies carry no marker: wait for the next turn.
                        return;
                    }
                    let mut pos = i;
                    let mut candidate = line_start;
                    loop {
                        if candidate && pos < data.len() && data[pos] == b'*' {
                            self.st = St::Line;
                            self.probing = true;
                            i = pos;
                            break;
                        }
                        match data[pos..].iter().position(|b| *b == b'\n') {
                            Some(p) => {
                                pos += p + 1;
                                candidate = true;
                                if pos == data.len() {
                                    self.st = St::Resync { line_start: true };
                                    i = pos;
                                    break;
                                }
                            }
                            None => {
                                self.st = St::Resync { line_start: false };
                                i = data.len();
                                break;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Skip / capture bulk payload and its CRLF from `data[i..]`.
    fn bulk(
        &mut self,
        sh: &mut Shared,
        data: &[u8],
        mut i: usize,
        base: u64,
        mut left: u64,
        mut crlf: u8,
    ) -> usize {
        if left > 0 {
            let n = left.min((data.len() - i) as u64) as usize;
            if let Some(slot) = self.slot {
                let limit = match slot {
                    Slot::Word(0) => MAX_NAME,
                    Slot::Word(_) => MAX_KEY,
                    Slot::Kind => MAX_KIND,
                    Slot::BlobError => MAX_ERROR,
                };
                let room = limit.saturating_sub(self.cap.len());
                self.cap.extend_from_slice(&data[i..i + n.min(room)]);
                if n > room && slot != Slot::BlobError {
                    self.cap_bad = true;
                }
            }
            i += n;
            left -= n as u64;
        }
        while left == 0 && crlf > 0 && i < data.len() {
            let want = if crlf == 2 { b'\r' } else { b'\n' };
            if data[i] != want {
                self.desync(sh, base + i as u64, RedisError::MissingCrlf);
                return i;
            }
            i += 1;
            crlf -= 1;
        }
        if left == 0 && crlf == 0 {
            self.st = St::Line;
            self.bulk_done(sh, base + i as u64);
        } else {
            self.st = St::Bulk { left, crlf };
        }
        i
    }

    fn bulk_done(&mut self, sh: &mut Shared, end: u64) {
        if let Some(slot) = self.slot.take() {
            let cap = std::mem::take(&mut self.cap);
            let bad = std::mem::take(&mut self.cap_bad);
            if let Some(m) = &mut self.msg {
                match slot {
                    Slot::Word(k) => {
                        if !bad && k < m.words.len() {
                            m.words[k] = Some(cap);
                        }
                        m.settled = k + 1;
                    }
                    Slot::Kind => {
                        if !bad {
                            m.kind = Some(cap.to_ascii_lowercase());
                        }
                    }
                    Slot::BlobError => m.error = Some(db_error(&cap)),
                }
            }
            if let Slot::Word(k) = slot {
                self.after_word(sh, k);
            }
        }
        self.value_done(sh, end);
    }

    /// Client: word `k` of the command settled.
    fn after_word(&mut self, sh: &mut Shared, k: usize) {
        let Some(m) = &mut self.msg else { return };
        if k == 0 {
            m.need = m.words[0].as_deref().map_or(1, needed_words_raw);
        } else if k == 1 {
            // `CLIENT REPLY` and subcommands with a key need a third word.
            let container = m.words[0].as_deref().is_some_and(|w| {
                CONTAINERS
                    .iter()
                    .any(|c| c.as_bytes().eq_ignore_ascii_case(w))
            });
            if container {
                let name = m.words[0].as_deref().and_then(command_name);
                let sub = m.words[1].as_deref().and_then(command_name);
                if let (Some(n), Some(s)) = (name, sub) {
                    let op = format!("{n} {s}");
                    if op == "CLIENT REPLY" || KEY_AFTER_SUB.contains(&op.as_str()) {
                        m.need = 3;
                    }
                }
            }
        }
        if m.exchange.is_none() && m.settled >= m.need {
            self.command_head(sh);
        }
    }

    /// Client: report the command being read.
    fn command_head(&mut self, sh: &mut Shared) {
        let Some(m) = &mut self.msg else { return };
        if m.exchange.is_some() {
            return;
        }
        let words: [Option<&[u8]>; 3] = [
            m.words[0].as_deref(),
            m.words[1].as_deref(),
            m.words[2].as_deref(),
        ];
        let cmd = describe(&words, m.argc);
        let exchange = sh.fresh_exchange();
        m.exchange = Some(exchange);
        let op = cmd.info.operation.as_deref();
        // Does this command get a reply?
        let mut replies = sh.proto.reply_mode == ReplyMode::On;
        if sh.proto.reply_mode == ReplyMode::Skip {
            sh.proto.reply_mode = ReplyMode::On;
        }
        if op == Some("CLIENT REPLY") {
            match words
                .get(2)
                .copied()
                .flatten()
                .map(|w| w.to_ascii_uppercase())
            {
                Some(w) if w == b"ON" => {
                    sh.proto.reply_mode = ReplyMode::On;
                    replies = true;
                }
                Some(w) if w == b"OFF" => {
                    sh.proto.reply_mode = ReplyMode::Off;
                    replies = false;
                }
                Some(w) if w == b"SKIP" => {
                    sh.proto.reply_mode = ReplyMode::Skip;
                    replies = false;
                }
                _ => {}
            }
        }
        match op {
            Some("RESET") => {
                sh.proto.subscribed = false;
                sh.proto.resp3 = false;
                sh.proto.monitor = false;
                sh.proto.reply_mode = ReplyMode::On;
                replies = true;
            }
            Some("HELLO") if words.get(1).copied().flatten() == Some(b"3") => sh.proto.resp3 = true,
            _ => {}
        }
        if let CmdKind::Subscribe {
            replies: Some(n), ..
        } = cmd.kind
        {
            if n > 0 && op.is_some_and(|o| !o.contains("UNSUB")) {
                sh.proto.subscribed = true;
            }
        }
        // Whether a reply comes is unknown when the words that decide it
        // were not captured (`CLIENT REPLY OFF` gets none): such a command
        // is reported but never paired.
        let client_sub_lost = op == Some("CLIENT") && m.argc > 1 && words[1].is_none();
        let reply_arg_lost = op == Some("CLIENT REPLY") && m.argc > 2 && words[2].is_none();
        if cmd.info.operation.is_none() || client_sub_lost || reply_arg_lost {
            sh.push_lost(false);
        } else if replies {
            let epoch = sh.server_epoch;
            sh.queue(Cmd {
                exchange,
                kind: cmd.kind,
                answered: false,
                epoch,
            });
        }
        let offset = m.start;
        sh.push(
            self.side,
            exchange,
            L7EventKind::Head {
                offset,
                info: MessageInfo::DbRequest(cmd.info),
            },
        );
    }

    fn on_line(&mut self, sh: &mut Shared, line: &[u8], end: u64, peer_idle: bool) {
        let start = self.line_start;
        let top = self.msg.is_none() && self.stack.is_empty();
        if top && self.side == Side::Client {
            if line.first() != Some(&b'*') {
                if self.probing {
                    self.desync(sh, start, RedisError::BadLine);
                    return;
                }
                self.inline_command(sh, line, start, end, peer_idle);
                return;
            }
            sh.clear_barriers(peer_idle);
        }
        let header = match parse_header(line) {
            Ok(h) => h,
            Err(e) => return self.desync(sh, start, e),
        };
        if std::mem::take(&mut self.probing)
            && self.side == Side::Client
            && !matches!(header, Header::Aggregate(Aggregate::Array, Some(n)) if n > 0)
        {
            return self.desync(sh, start, RedisError::BadLine);
        }
        if self.side == Side::Client
            && !top
            && !matches!(header, Header::Bulk(Some(_)))
            && self.stack.len() == 1
        {
            return self.desync(sh, start, RedisError::ExpectedBulk);
        }
        if top {
            self.msg = Some(Msg {
                start,
                need: 1,
                ..Msg::default()
            });
        }
        if self.side == Side::Server
            && !matches!(
                header,
                Header::Simple(_)
                    | Header::Error(_)
                    | Header::Integer(_)
                    | Header::Bulk(_)
                    | Header::Aggregate(Aggregate::Array, _)
            )
        {
            sh.proto.resp3 = true;
        }
        // Position among the top-level aggregate's direct children.
        let index = match self.stack.as_slice() {
            [f] if !f.attribute => Some(f.total - f.left),
            _ => None,
        };
        // The reply itself (not an attribute's content) starts here.
        let at_top = self.stack.is_empty() && self.top_unset();
        match header {
            Header::Bulk(Some(n)) | Header::BlobError(n) | Header::Verbatim(n) => {
                self.slot = match (self.side, index, &header) {
                    (Side::Client, Some(k), _) => {
                        let need = self.msg.as_ref().map_or(1, |m| m.need);
                        (k < 3 && (k as usize) < need.max(1)).then_some(Slot::Word(k as usize))
                    }
                    (Side::Server, _, Header::BlobError(_)) if at_top => Some(Slot::BlobError),
                    (Side::Server, Some(0), _) => Some(Slot::Kind),
                    _ => None,
                };
                if self.side == Side::Client && index.is_some() && self.slot.is_none() {
                    // A word not kept: still count it as settled.
                    if let (Some(m), Some(k)) = (&mut self.msg, index) {
                        m.settled = m.settled.max(k as usize + 1);
                    }
                }
                self.cap.clear();
                self.cap_bad = false;
                if at_top && self.side == Side::Server {
                    let t = line[0];
                    if let Some(m) = &mut self.msg {
                        m.ty = Some(t);
                    }
                    if t != b'!' {
                        self.classify(sh);
                    }
                }
                self.st = St::Bulk { left: n, crlf: 2 };
            }
            Header::Aggregate(kind, Some(n)) => {
                let reply_top = at_top && kind != Aggregate::Attribute;
                if reply_top {
                    if let Some(m) = &mut self.msg {
                        m.ty = Some(line[0]);
                        m.rows = Some(n);
                        m.argc = n;
                    }
                }
                if self.side == Side::Client && at_top && n == 0 {
                    // `*0`: Redis ignores it.
                    self.msg = None;
                    return;
                }
                let width = if matches!(kind, Aggregate::Map | Aggregate::Attribute) {
                    2
                } else {
                    1
                };
                if n == 0 {
                    if kind != Aggregate::Attribute {
                        self.value_done(sh, end);
                    }
                    return;
                }
                if self.stack.len() >= MAX_DEPTH {
                    return self.desync(sh, start, RedisError::TooDeep);
                }
                self.stack.push(Frame {
                    left: n * width,
                    total: n * width,
                    attribute: kind == Aggregate::Attribute,
                });
                if reply_top && self.side == Side::Server {
                    self.classify(sh);
                }
            }
            scalar => {
                if self.side == Side::Client && at_top {
                    // `*-1`: Redis ignores it.
                    self.msg = None;
                    return;
                }
                if let Some(m) = &mut self.msg {
                    match (&scalar, index) {
                        (Header::Simple(s), Some(0)) if s.len() <= MAX_KIND => {
                            m.kind = Some(s.to_ascii_lowercase())
                        }
                        (Header::Integer(v), Some(2)) => m.count = Some(*v),
                        _ => {}
                    }
                    if at_top {
                        m.ty = Some(line[0]);
                        match scalar {
                            Header::Error(text) => m.error = Some(db_error(text)),
                            Header::Aggregate(Aggregate::Array, None) => m.rows = Some(0),
                            _ => {}
                        }
                    }
                }
                if at_top && self.side == Side::Server {
                    self.classify(sh);
                }
                self.value_done(sh, end);
            }
        }
    }

    /// The top-level reply type is not known yet (only attributes so far).
    fn top_unset(&self) -> bool {
        self.msg.as_ref().is_none_or(|m| m.ty.is_none())
    }

    fn inline_command(
        &mut self,
        sh: &mut Shared,
        line: &[u8],
        start: u64,
        end: u64,
        peer_idle: bool,
    ) {
        let mut words = line
            .split(|c| *c == b' ' || *c == b'\t')
            .filter(|w| !w.is_empty());
        let Some(first) = words.next() else {
            return; // Empty line: no command, no reply.
        };
        if command_name(first).is_none() {
            // Not a command name: garbage rather than an inline command.
            return self.desync(sh, start, RedisError::BadLine);
        }
        sh.clear_barriers(peer_idle);
        // Quotes would make a word differ from the argument Redis sees.
        let plain = |w: &&[u8]| !w.iter().any(|c| *c == b'"' || *c == b'\'');
        let rest: Vec<&[u8]> = words.collect();
        let name = command_name(first);
        let sub = rest.first().copied().and_then(command_name);
        let need = match (&name, &sub) {
            (Some(n), Some(s)) if needed_words(n) == 2 => {
                let op = format!("{n} {s}");
                if op == "CLIENT REPLY" || KEY_AFTER_SUB.contains(&op.as_str()) {
                    3
                } else {
                    2
                }
            }
            (Some(n), _) => needed_words(n),
            _ => 1,
        };
        let word = |i: usize| {
            (i < need)
                .then(|| rest.get(i - 1).copied().filter(plain))
                .flatten()
                .map(<[u8]>::to_vec)
        };
        self.msg = Some(Msg {
            start,
            words: [Some(first.to_vec()), word(1), word(2)],
            settled: 3,
            argc: 1 + rest.len() as u64,
            need,
            ..Msg::default()
        });
        self.command_head(sh);
        self.message_done(sh, end);
    }

    /// A value ended at `end`: close the aggregates it completes.
    fn value_done(&mut self, sh: &mut Shared, end: u64) {
        loop {
            let Some(f) = self.stack.last_mut() else {
                // A top-level value (not an attribute) is complete.
                self.message_done(sh, end);
                return;
            };
            f.left -= 1;
            let index_done = f.total - f.left - 1;
            let depth1 = self.stack.len() == 1 && !self.stack[0].attribute;
            if depth1 && index_done == 0 && self.side == Side::Server {
                self.classify(sh);
            }
            let f = self.stack.last().copied();
            if f.is_some_and(|f| f.left > 0) {
                return;
            }
            self.stack.pop();
            if f.is_some_and(|f| f.attribute) {
                // An attribute describes the next value: it is not one.
                return;
            }
        }
    }

    /// Server: decide how the reply is reported, when enough is known.
    fn classify(&mut self, sh: &mut Shared) {
        let Some(m) = &self.msg else { return };
        if m.class.is_some() {
            return;
        }
        let Some(ty) = m.ty else { return };
        let done = self.stack.is_empty();
        let may_push = ty == b'>' || (ty == b'*' && sh.proto.subscribed && !sh.proto.resp3);
        let first_known = m.kind.is_some()
            || m.rows == Some(0)
            || match self.stack.first() {
                Some(f) if !f.attribute => f.left < f.total,
                _ => false,
            };
        if (may_push && !first_known && !done) || (ty == b'!' && !done) {
            return;
        }
        let kind = m.kind.clone();
        let class = if sh.proto.monitor {
            Class::Silent
        } else if may_push {
            match kind.as_deref() {
                Some(
                    k @ (b"subscribe" | b"psubscribe" | b"ssubscribe" | b"unsubscribe"
                    | b"punsubscribe" | b"sunsubscribe"),
                ) => self.confirmation(sh, k),
                Some(b"message" | b"pmessage" | b"smessage") => Class::Silent,
                _ if ty == b'>' => Class::Silent,
                _ => self.pair(sh),
            }
        } else {
            self.pair(sh)
        };
        let Some(m) = &mut self.msg else { return };
        m.class = Some(class);
        if let Class::Reply(exchange) = class {
            let info = DbResponse {
                error: m.error.clone(),
                rows: m.rows,
            };
            sh.push(
                self.side,
                exchange,
                L7EventKind::Head {
                    offset: m.start,
                    info: MessageInfo::DbResponse(info),
                },
            );
        }
    }

    /// Server: a normal reply; the exchange it answers.
    fn pair(&mut self, sh: &mut Shared) -> Class {
        // Subscription commands already answered are done.
        while let Some(Pending::Request(Cmd { answered: true, .. })) = sh.pending.front() {
            sh.pending.pop_front();
        }
        match sh.pair_front() {
            Ok(Cmd { exchange, kind, .. }) => {
                if kind == CmdKind::Monitor {
                    sh.proto.monitor = true;
                }
                Class::Reply(exchange)
            }
            Err(fresh) => Class::Reply(fresh),
        }
    }

    /// Server: a subscription confirmation named `kind`.
    fn confirmation(&mut self, sh: &mut Shared, kind: &[u8]) -> Class {
        loop {
            match sh.pending.front_mut() {
                Some(Pending::Request(Cmd {
                    exchange,
                    kind: CmdKind::Subscribe { confirm, replies },
                    answered,
                    ..
                })) if confirm.as_bytes() == kind => {
                    let first = !*answered;
                    *answered = true;
                    let exchange = *exchange;
                    if let Some(n) = replies {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            sh.pending.pop_front();
                        }
                    }
                    return if first {
                        Class::Reply(exchange)
                    } else {
                        Class::Silent
                    };
                }
                Some(Pending::Request(Cmd { answered: true, .. })) => {
                    sh.pending.pop_front();
                }
                _ => return Class::Silent,
            }
        }
    }

    /// The top-level message ended at `end`.
    fn message_done(&mut self, sh: &mut Shared, end: u64) {
        if self.side == Side::Server {
            self.classify(sh);
        } else {
            self.command_head(sh);
        }
        let Some(m) = self.msg.take() else { return };
        self.in_loss = false;
        let exchange = match (self.side, m.class) {
            (Side::Client, _) => m.exchange,
            (Side::Server, Some(Class::Reply(x))) => Some(x),
            _ => None,
        };
        if let Some(exchange) = exchange {
            sh.push(self.side, exchange, L7EventKind::End { end, info: None });
        }
        if self.side == Side::Server {
            // Unsubscribed from everything: out of subscribe mode, and an
            // unsubscribe without channels got all its confirmations.
            let unsub = matches!(
                m.kind.as_deref(),
                Some(b"unsubscribe" | b"punsubscribe" | b"sunsubscribe")
            );
            if unsub && m.count == Some(0) {
                sh.proto.subscribed = false;
                if let Some(Pending::Request(Cmd {
                    kind: CmdKind::Subscribe { replies: None, .. },
                    answered: true,
                    ..
                })) = sh.pending.front()
                {
                    sh.pending.pop_front();
                }
            }
        }
    }

    fn gap(&mut self, sh: &mut Shared, len: u64) {
        if len == 0 {
            return;
        }
        let base = self.fed;
        self.fed += len;
        self.turn = false;
        match self.st {
            St::Stopped => {}
            St::Bulk { left, crlf } => {
                self.cap_bad = true;
                let avail = left + u64::from(crlf);
                if len < avail {
                    let used = len.min(left);
                    self.st = St::Bulk {
                        left: left - used,
                        crlf: crlf - (len - used) as u8,
                    };
                } else {
                    self.st = St::Line;
                    self.bulk_done(sh, base + avail);
                    if len > avail {
                        self.desync(sh, base + avail, RedisError::Gap);
                        self.st = St::Resync { line_start: true };
                    }
                }
            }
            St::Line => {
                let at = if self.line.is_empty() {
                    base
                } else {
                    self.line_start
                };
                self.desync(sh, at, RedisError::Gap);
                self.st = St::Resync { line_start: true };
            }
            St::Resync { .. } => {
                self.line.clear();
                self.st = St::Resync { line_start: true };
            }
        }
    }

    fn close(&mut self, sh: &mut Shared) {
        if !self.idle() && !matches!(self.st, St::Resync { .. } | St::Stopped) {
            let at = self.fed;
            self.desync(sh, at, RedisError::Truncated);
        }
        self.line.clear();
        self.st = St::Stopped;
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Whether the first bytes `side` sent on a connection look like Redis.
///
/// Client: a command array (`*<n>\r\n$`, possibly cut short after `*<n>`)
/// or a known inline command. Server: replies are ambiguous (`+OK\r\n`
/// is also POP3), so a plausible RESP reply is accepted on port 6379, and
/// elsewhere only when it is a non-empty array or map followed by another
/// RESP value.
pub fn looks_like(side: Side, first_bytes: &[u8], port: u16) -> bool {
    let b = first_bytes;
    match side {
        Side::Client => {
            if b.first() == Some(&b'*') {
                let digits = b[1..].iter().take_while(|c| c.is_ascii_digit()).count();
                if digits == 0 || digits > 9 {
                    return false;
                }
                let rest = &b[1 + digits..];
                return b"\r\n$".starts_with(&rest[..rest.len().min(3)]) && !rest.is_empty()
                    || rest.is_empty() && port == 6379;
            }
            let end = b
                .iter()
                .position(|c| *c == b' ' || *c == b'\r' || *c == b'\n')
                .unwrap_or(b.len());
            const INLINE: &[&[u8]] = &[
                b"PING",
                b"AUTH",
                b"HELLO",
                b"SELECT",
                b"INFO",
                b"GET",
                b"SET",
                b"DEL",
                b"KEYS",
                b"MONITOR",
                b"SUBSCRIBE",
                b"QUIT",
                b"DBSIZE",
                b"FLUSHALL",
                b"FLUSHDB",
                b"CLIENT",
                b"CONFIG",
                b"EXISTS",
                b"INCR",
                b"TTL",
                b"EXPIRE",
                b"SCAN",
                b"TYPE",
            ];
            let word = b[..end].to_ascii_uppercase();
            let terminated = b.get(end).is_some_and(|c| b" \r\n".contains(c));
            let http = b.windows(6).any(|w| w == b" HTTP/");
            terminated && INLINE.contains(&word.as_slice()) && b.ends_with(b"\n") && !http
        }
        Side::Server => {
            let Some(e) = b.iter().position(|c| *c == b'\r') else {
                return port == 6379 && b.first().is_some_and(|c| b"+-:$*%~|>_,#(!=".contains(c));
            };
            let Ok(header) = parse_header(&b[..e]) else {
                return false;
            };
            if b.get(e + 1).is_some_and(|c| *c != b'\n') {
                return false;
            }
            let next = b.get(e + 2);
            match header {
                // A count or length then, for aggregates, another RESP value:
                // specific enough on any port.
                Header::Aggregate(Aggregate::Array | Aggregate::Map, Some(n)) if n > 0 => {
                    next.is_none_or(|c| b"+-:$*%~|>_,#(!=".contains(c)) || port == 6379
                }
                _ => port == 6379,
            }
        }
    }
}

/// Incremental Redis (RESP2/RESP3) parser for both directions of one
/// connection. See the [module documentation](self).
#[derive(Debug)]
pub struct RedisParser {
    client: Reader,
    server: Reader,
    shared: Shared,
}

impl Default for RedisParser {
    fn default() -> Self {
        Self::new()
    }
}

impl RedisParser {
    /// A parser positioned at the first byte of both directions.
    pub fn new() -> Self {
        RedisParser {
            client: Reader::new(Side::Client),
            server: Reader::new(Side::Server),
            shared: Shared::new(RedisShared {
                subscribed: false,
                resp3: false,
                reply_mode: ReplyMode::On,
                monitor: false,
            }),
        }
    }
}

impl ConnectionParser for RedisParser {
    fn protocol(&self) -> Protocol {
        Protocol::Redis
    }

    fn feed(&mut self, side: Side, data: &[u8]) {
        let before = self.shared.events.len();
        match side {
            Side::Client => {
                let idle = self.server.idle();
                self.client.feed(&mut self.shared, data, idle);
            }
            Side::Server => {
                let idle = self.client.idle();
                self.server.feed(&mut self.shared, data, idle);
                self.shared.server_epoch += 1;
            }
        }
        self.note_turn(side, before);
    }

    fn gap(&mut self, side: Side, len: u64) {
        let before = self.shared.events.len();
        match side {
            Side::Client => self.client.gap(&mut self.shared, len),
            Side::Server => {
                self.server.gap(&mut self.shared, len);
                self.shared.server_epoch += 1;
            }
        }
        self.note_turn(side, before);
    }

    fn close(&mut self, side: Side) {
        match side {
            Side::Client => self.client.close(&mut self.shared),
            Side::Server => self.server.close(&mut self.shared),
        }
    }

    fn poll(&mut self) -> Option<L7Event> {
        crate::next_event(&mut self.shared.events)
    }

    fn feed_into(&mut self, side: Side, data: &[u8], out: &mut VecDeque<L7Event>) {
        crate::feed_via(self, |p| &mut p.shared.events, out, |p| p.feed(side, data));
    }
}

impl RedisParser {
    /// When `side` completed a message, the other side's next byte is a
    /// likely message start (used to resynchronise).
    fn note_turn(&mut self, side: Side, before: usize) {
        let ended = self
            .shared
            .events
            .range(before..)
            .any(|e| matches!(e.kind, L7EventKind::End { .. }));
        if ended {
            match side {
                Side::Client => self.server.turn = true,
                Side::Server => self.client.turn = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const C: Side = Side::Client;
    const S: Side = Side::Server;

    fn cmd(words: &[&[u8]]) -> Vec<u8> {
        let mut v = format!("*{}\r\n", words.len()).into_bytes();
        for w in words {
            v.extend_from_slice(format!("${}\r\n", w.len()).as_bytes());
            v.extend_from_slice(w);
            v.extend_from_slice(b"\r\n");
        }
        v
    }

    fn drain(p: &mut RedisParser) -> Vec<L7Event> {
        std::iter::from_fn(|| p.poll()).collect()
    }

    /// (side, exchange, kind, offset)
    fn shape(ev: &[L7Event]) -> Vec<(Side, u64, &'static str, u64)> {
        ev.iter()
            .map(|e| match &e.kind {
                L7EventKind::Head { offset, .. } => (e.side, e.exchange, "head", *offset),
                L7EventKind::End { end, .. } => (e.side, e.exchange, "end", *end),
                L7EventKind::Desync { offset, .. } => (e.side, 0, "desync", *offset),
            })
            .collect()
    }

    fn request(e: &L7Event) -> &DbRequest {
        match &e.kind {
            L7EventKind::Head {
                info: MessageInfo::DbRequest(r),
                ..
            } => r,
            other => panic!("not a command head: {other:?}"),
        }
    }

    fn response(e: &L7Event) -> &DbResponse {
        match &e.kind {
            L7EventKind::Head {
                info: MessageInfo::DbResponse(r),
                ..
            } => r,
            other => panic!("not a reply head: {other:?}"),
        }
    }

    /// Reply heads as (exchange, rows, error code).
    fn reply_heads(ev: &[L7Event]) -> Vec<(u64, Option<u64>, Option<String>)> {
        ev.iter()
            .filter(|e| e.side == S)
            .filter_map(|e| match &e.kind {
                L7EventKind::Head {
                    info: MessageInfo::DbResponse(r),
                    ..
                } => Some((
                    e.exchange,
                    r.rows,
                    r.error.as_ref().and_then(|e| e.code.clone()),
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn headers() {
        assert_eq!(parse_header(b"+OK"), Ok(Header::Simple(b"OK")));
        assert_eq!(parse_header(b"-ERR x"), Ok(Header::Error(b"ERR x")));
        assert_eq!(parse_header(b":-12"), Ok(Header::Integer(-12)));
        assert_eq!(parse_header(b"$-1"), Ok(Header::Bulk(None)));
        assert_eq!(parse_header(b"$0"), Ok(Header::Bulk(Some(0))));
        assert_eq!(
            parse_header(b"*-1"),
            Ok(Header::Aggregate(Aggregate::Array, None))
        );
        assert_eq!(
            parse_header(b"%2"),
            Ok(Header::Aggregate(Aggregate::Map, Some(2)))
        );
        assert_eq!(
            parse_header(b">3"),
            Ok(Header::Aggregate(Aggregate::Push, Some(3)))
        );
        assert_eq!(parse_header(b"_"), Ok(Header::Null));
        assert_eq!(parse_header(b",3.14"), Ok(Header::Double));
        assert_eq!(parse_header(b",-inf"), Ok(Header::Double));
        assert_eq!(parse_header(b"#t"), Ok(Header::Boolean(true)));
        assert_eq!(
            parse_header(b"(3492890328409238509324850943850943825024385"),
            Ok(Header::BigNumber)
        );
        assert_eq!(parse_header(b"!21"), Ok(Header::BlobError(21)));
        assert_eq!(parse_header(b"=15"), Ok(Header::Verbatim(15)));
        assert_eq!(parse_header(b"$?"), Err(RedisError::Streamed));
        assert_eq!(parse_header(b"$-2"), Err(RedisError::BadLength));
        assert_eq!(parse_header(b"*x"), Err(RedisError::BadLength));
        assert_eq!(parse_header(b"%-1"), Err(RedisError::BadLength));
        assert_eq!(parse_header(b"#x"), Err(RedisError::BadLine));
        assert_eq!(parse_header(b"(1a"), Err(RedisError::BadLine));
        assert_eq!(parse_header(b"GET"), Err(RedisError::UnknownType(b'G')));
        assert_eq!(parse_header(b""), Err(RedisError::BadLine));
    }

    #[test]
    fn command_descriptions() {
        let d = |w: &[&[u8]]| {
            let words: Vec<Option<&[u8]>> = w.iter().map(|x| Some(*x)).collect();
            let c = describe(&words, w.len() as u64);
            (c.info.operation, c.info.target)
        };
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(d(&[b"get", b"user:1"]), (s("GET"), s("user:1")));
        assert_eq!(d(&[b"config", b"get"]), (s("CONFIG GET"), None));
        assert_eq!(d(&[b"CLIENT", b"setname"]), (s("CLIENT SETNAME"), None));
        assert_eq!(
            d(&[b"OBJECT", b"ENCODING", b"k"]),
            (s("OBJECT ENCODING"), s("k"))
        );
        assert_eq!(d(&[b"AUTH", b"secret"]), (s("AUTH"), None));
        assert_eq!(d(&[b"HELLO", b"3"]), (s("HELLO"), None));
        assert_eq!(d(&[b"JSON.GET", b"doc"]), (s("JSON.GET"), None));
        assert_eq!(d(&[b"\x00\x01"]), (None, None));
        // A binary key is not reported (never a wrong value).
        assert_eq!(d(&[b"GET", b"\xff\xfe"]), (s("GET"), None));
        assert_eq!(first_key_index("MGET"), Some(1));
        assert_eq!(first_key_index("XINFO STREAM"), Some(2));
        assert_eq!(first_key_index("EVAL"), None);
    }

    #[test]
    fn errors_split_code_and_message() {
        let e = db_error(b"WRONGTYPE Operation against a key");
        assert_eq!(e.code.as_deref(), Some("WRONGTYPE"));
        assert_eq!(e.message, "Operation against a key");
        let e = db_error(b"something odd");
        assert_eq!(e.code, None);
        assert_eq!(e.message, "something odd");
        assert_eq!(
            db_error(b"MOVED 3999 127.0.0.1:6381").code.as_deref(),
            Some("MOVED")
        );
    }

    #[test]
    fn command_and_reply() {
        let mut p = RedisParser::new();
        let c = cmd(&[b"SET", b"user:1", b"value"]);
        p.feed(C, &c);
        p.feed(S, b"+OK\r\n");
        let ev = drain(&mut p);
        assert_eq!(
            shape(&ev),
            vec![
                (C, 0, "head", 0),
                (C, 0, "end", c.len() as u64),
                (S, 0, "head", 0),
                (S, 0, "end", 5)
            ]
        );
        let r = request(&ev[0]);
        assert_eq!(r.operation.as_deref(), Some("SET"));
        assert_eq!(r.target.as_deref(), Some("user:1"));
        assert_eq!(r.query, None);
        assert_eq!(r.system, DbSystem::Redis);
    }

    #[test]
    fn head_is_reported_before_a_large_value() {
        let mut p = RedisParser::new();
        let c = cmd(&[b"SET", b"big", &[b'x'; 100_000]]);
        p.feed(C, &c[..4096]);
        let ev = drain(&mut p);
        assert_eq!(shape(&ev), vec![(C, 0, "head", 0)]);
        p.gap(C, (c.len() - 4096) as u64);
        let ev = drain(&mut p);
        assert_eq!(shape(&ev), vec![(C, 0, "end", c.len() as u64)]);
        // And a large bulk reply mostly uncaptured.
        let mut r = b"$100000\r\n".to_vec();
        r.extend_from_slice(&[b'y'; 100]);
        p.feed(S, &r);
        p.gap(S, 100_000 - 100 + 2);
        p.feed(S, b":1\r\n");
        let ev = drain(&mut p);
        assert_eq!(
            shape(&ev),
            vec![
                (S, 0, "head", 0),
                (S, 0, "end", 100_011),
                (S, 1, "head", 100_011),
                (S, 1, "end", 100_015)
            ]
        );
    }

    #[test]
    fn credentials_never_leave() {
        let mut p = RedisParser::new();
        p.feed(C, &cmd(&[b"AUTH", b"user", b"hunter2-secret"]));
        p.feed(
            C,
            &cmd(&[b"HELLO", b"3", b"AUTH", b"user", b"hunter2-secret"]),
        );
        p.feed(C, b"AUTH hunter2-secret\r\n");
        p.feed(
            C,
            &cmd(&[
                b"MIGRATE",
                b"h",
                b"1",
                b"k",
                b"0",
                b"5",
                b"AUTH",
                b"hunter2-secret",
            ]),
        );
        let ev = drain(&mut p);
        assert_eq!(ev.len(), 8);
        assert!(!format!("{ev:?}").contains("hunter2"));
        // The reader never even buffered them.
        assert!(!format!("{p:?}").contains("hunter2"));
    }

    #[test]
    fn pipelined_commands_pair_fifo() {
        let mut p = RedisParser::new();
        let mut c = Vec::new();
        for k in [b"a", b"b", b"c"] {
            c.extend(cmd(&[b"GET", k]));
        }
        c.extend(cmd(&[b"LPUSH", b"a", b"x"]));
        c.extend(cmd(&[b"MGET", b"a", b"b"]));
        p.feed(C, &c);
        p.feed(
            S,
            b"$1\r\n1\r\n$-1\r\n$1\r\n3\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n*2\r\n$1\r\n1\r\n$-1\r\n",
        );
        let ev = drain(&mut p);
        assert_eq!(
            reply_heads(&ev),
            vec![
                (0, None, None),
                (1, None, None),
                (2, None, None),
                (3, None, Some("WRONGTYPE".to_owned())),
                (4, Some(2), None)
            ]
        );
    }

    #[test]
    fn resp3_attribute_push_and_types() {
        let mut p = RedisParser::new();
        p.feed(C, &cmd(&[b"HELLO", b"3"]));
        p.feed(C, &cmd(&[b"GET", b"k"]));
        p.feed(C, &cmd(&[b"HGETALL", b"h"]));
        p.feed(C, &cmd(&[b"SMEMBERS", b"s"]));
        let hello = b"%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n";
        p.feed(S, hello);
        // Attribute then the reply it describes; a push in between replies.
        let attr = b"|1\r\n+key-popularity\r\n%1\r\n$1\r\nk\r\n,0.19\r\n$1\r\nv\r\n";
        p.feed(S, attr);
        p.feed(S, b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n");
        p.feed(
            S,
            b"%1\r\n$1\r\nf\r\n#t\r\n~3\r\n(1\r\n_\r\n=7\r\ntxt:abc\r\n",
        );
        let ev = drain(&mut p);
        let at = hello.len() as u64;
        let push_len = 32u64;
        assert_eq!(
            shape(&ev)
                .into_iter()
                .filter(|e| e.0 == S)
                .collect::<Vec<_>>(),
            vec![
                (S, 0, "head", 0),
                (S, 0, "end", at),
                (S, 1, "head", at),
                (S, 1, "end", at + attr.len() as u64),
                (S, 2, "head", at + attr.len() as u64 + push_len),
                (S, 2, "end", at + attr.len() as u64 + push_len + 15),
                (S, 3, "head", at + attr.len() as u64 + push_len + 15),
                (S, 3, "end", at + attr.len() as u64 + push_len + 15 + 24),
            ]
        );
        assert_eq!(
            reply_heads(&ev),
            vec![
                (0, Some(2), None),
                (1, None, None),
                (2, Some(1), None),
                (3, Some(3), None)
            ]
        );
    }

    #[test]
    fn blob_error() {
        let mut p = RedisParser::new();
        p.feed(C, &cmd(&[b"X"]));
        p.feed(S, b"!21\r\nSYNTAX invalid syntax\r\n");
        let ev = drain(&mut p);
        let r = response(&ev[2]);
        let e = r.error.as_ref().unwrap();
        assert_eq!(e.code.as_deref(), Some("SYNTAX"));
        assert_eq!(e.message, "invalid syntax");
    }

    #[test]
    fn resp2_subscribe_mode() {
        let mut p = RedisParser::new();
        p.feed(C, &cmd(&[b"SUBSCRIBE", b"a", b"b"]));
        p.feed(
            S,
            b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n",
        );
        p.feed(S, b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$5\r\nhello\r\n");
        p.feed(C, &cmd(&[b"PING"]));
        p.feed(S, b"*3\r\n$7\r\nmessage\r\n$1\r\nb\r\n$5\r\nworld\r\n");
        p.feed(S, b"*2\r\n$4\r\npong\r\n$0\r\n\r\n");
        p.feed(C, &cmd(&[b"UNSUBSCRIBE"]));
        p.feed(
            S,
            b"*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:0\r\n",
        );
        // Out of subscribe mode: an array starting with "message" is a reply.
        p.feed(C, &cmd(&[b"LRANGE", b"l", b"0", b"-1"]));
        p.feed(S, b"*1\r\n$7\r\nmessage\r\n");
        let ev = drain(&mut p);
        assert_eq!(
            reply_heads(&ev),
            vec![
                (0, Some(3), None),
                (1, Some(2), None),
                (2, Some(3), None),
                (3, Some(1), None)
            ]
        );
        assert!(!p.shared.subscribed);
        assert!(p.shared.pending.is_empty());
    }

    #[test]
    fn resp3_pushes_never_consume_commands() {
        let mut p = RedisParser::new();
        p.feed(C, &cmd(&[b"HELLO", b"3"]));
        p.feed(S, b"%1\r\n$5\r\nproto\r\n:3\r\n");
        p.feed(C, &cmd(&[b"SUBSCRIBE", b"ch"]));
        p.feed(C, &cmd(&[b"GET", b"k"]));
        p.feed(S, b">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n");
        p.feed(S, b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n");
        p.feed(S, b"$1\r\nv\r\n");
        let ev = drain(&mut p);
        assert_eq!(
            reply_heads(&ev),
            vec![(0, Some(1), None), (1, Some(3), None), (2, None, None)]
        );
    }

    #[test]
    fn monitor_and_client_reply() {
        let mut p = RedisParser::new();
        p.feed(C, &cmd(&[b"CLIENT", b"REPLY", b"OFF"]));
        p.feed(C, &cmd(&[b"SET", b"a", b"1"]));
        p.feed(C, &cmd(&[b"CLIENT", b"REPLY", b"ON"]));
        p.feed(S, b"+OK\r\n");
        p.feed(C, &cmd(&[b"MONITOR"]));
        p.feed(
            S,
            b"+OK\r\n+1700000000.000000 [0 127.0.0.1:5000] \"GET\" \"k\"\r\n",
        );
        let ev = drain(&mut p);
        assert_eq!(reply_heads(&ev), vec![(2, None, None), (3, None, None)]);
        assert_eq!(ev.iter().filter(|e| e.side == C).count(), 8);
    }

    #[test]
    fn empty_commands_are_ignored() {
        let mut p = RedisParser::new();
        p.feed(C, b"*0\r\n\r\n*-1\r\nPING\r\n");
        p.feed(S, b"+PONG\r\n");
        let ev = drain(&mut p);
        assert_eq!(
            shape(&ev),
            vec![
                (C, 0, "head", 11),
                (C, 0, "end", 17),
                (S, 0, "head", 0),
                (S, 0, "end", 7)
            ]
        );
    }

    #[test]
    fn orphan_reply_gets_fresh_exchange() {
        let mut p = RedisParser::new();
        p.feed(S, b"+OK\r\n");
        p.feed(C, &cmd(&[b"PING"]));
        p.feed(S, b"+PONG\r\n");
        let ev = drain(&mut p);
        assert_eq!(reply_heads(&ev), vec![(0, None, None), (1, None, None)]);
        assert_eq!(ev[2].exchange, 1);
    }

    #[test]
    fn too_deep_desyncs() {
        let mut p = RedisParser::new();
        p.feed(C, &cmd(&[b"GET", b"k"]));
        let mut r = Vec::new();
        for _ in 0..=MAX_DEPTH {
            r.extend_from_slice(b"*1\r\n");
        }
        r.extend_from_slice(b":1\r\n");
        p.feed(S, &r);
        let ev = drain(&mut p);
        let s = shape(&ev);
        assert_eq!(s[2], (S, 0, "head", 0));
        assert_eq!(s[3], (S, 0, "desync", 4 * MAX_DEPTH as u64));
        assert_eq!(s.len(), 4);
    }

    #[test]
    fn client_garbage_then_resync() {
        let mut p = RedisParser::new();
        let mut c = b"\x00\x01garbage\r\nmore*junk\r\n".to_vec();
        let g = c.len() as u64;
        c.extend(cmd(&[b"GET", b"k"]));
        for piece in c.chunks(3) {
            p.feed(C, piece);
        }
        let ev = drain(&mut p);
        assert_eq!(
            shape(&ev),
            vec![
                (C, 0, "desync", 0),
                (C, 0, "head", g),
                (C, 0, "end", c.len() as u64)
            ]
        );
    }

    #[test]
    fn server_loss_resyncs_at_the_turn() {
        let mut p = RedisParser::new();
        p.feed(C, &cmd(&[b"LRANGE", b"l", b"0", b"-1"]));
        p.feed(S, b"*100\r\n$5\r\nitem0\r\n$5\r\nit");
        p.gap(S, 5000); // array framing lost
        p.feed(S, b"em7\r\n$5\r\nitem8\r\n");
        p.feed(C, &cmd(&[b"GET", b"k"]));
        p.feed(S, b"$1\r\nv\r\n");
        let ev = drain(&mut p);
        assert_eq!(
            reply_heads(&ev),
            vec![(0, Some(100), None), (1, None, None)]
        );
        assert_eq!(
            ev.iter()
                .filter(|e| matches!(e.kind, L7EventKind::Desync { .. }))
                .count(),
            1
        );
    }

    #[test]
    fn client_loss_never_pairs_across() {
        let mut p = RedisParser::new();
        // The client's command framing is lost: how many commands were in
        // the gap is unknown, so the replies are not paired.
        let c = cmd(&[b"GET", b"a"]);
        p.feed(C, &c[..6]);
        p.gap(C, 200);
        p.feed(C, &cmd(&[b"GET", b"b"]));
        p.feed(S, b"$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n");
        let ev = drain(&mut p);
        // GET a's name was lost (not reported); GET b is exchange 0. The
        // client pipelined: no reply may pair with GET b.
        assert_eq!(request(&ev[1]).target.as_deref(), Some("b"));
        let heads = reply_heads(&ev);
        assert_eq!(heads.len(), 3);
        assert!(heads.iter().all(|(x, _, _)| *x != 0));
        assert_eq!(
            ev.iter()
                .filter(|e| matches!(e.kind, L7EventKind::Desync { .. }))
                .count(),
            1
        );
    }

    #[test]
    fn inline_commands() {
        let mut p = RedisParser::new();
        p.feed(C, b"SET \"my key\" v\r\nget k\nPING\r\n");
        let ev = drain(&mut p);
        let ops: Vec<_> = ev
            .iter()
            .filter(|e| matches!(e.kind, L7EventKind::Head { .. }))
            .map(|e| {
                let r = request(e);
                (r.operation.clone(), r.target.clone())
            })
            .collect();
        assert_eq!(
            ops,
            vec![
                (Some("SET".into()), None),
                (Some("GET".into()), Some("k".into())),
                (Some("PING".into()), None)
            ]
        );
    }

    #[test]
    fn detection() {
        assert!(looks_like(C, b"*1\r\n$4\r\nPING\r\n", 1234));
        assert!(looks_like(C, b"*3\r\n$3\r\nSET", 1234));
        assert!(looks_like(C, b"*2", 6379));
        assert!(!looks_like(C, b"*2", 1234));
        assert!(looks_like(C, b"PING\r\n", 1234));
        assert!(looks_like(C, b"get k\r\n", 1234));
        assert!(!looks_like(C, b"GET / HTTP/1.1\r\n", 6379));
        assert!(!looks_like(C, b"*\r\n", 6379));
        assert!(!looks_like(C, b"\x16\x03\x01", 6379));
        assert!(looks_like(S, b"+PONG\r\n", 6379));
        assert!(!looks_like(S, b"+OK POP3 ready\r\n", 110));
        assert!(looks_like(S, b"%7\r\n$6\r\nserver", 7000));
        assert!(!looks_like(S, b"HTTP/1.1 200 OK\r\n", 6379));
    }

    /// A RESP value tree for round trips.
    #[derive(Clone, Debug)]
    enum V {
        Simple(String),
        Err(String),
        Int(i64),
        Bulk(Vec<u8>),
        Null,
        Arr(Vec<V>),
        Map(Vec<(V, V)>),
        Set(Vec<V>),
        Attr(Vec<(V, V)>, Box<V>),
        Dbl(f64),
        Bool(bool),
    }

    fn encode(v: &V, out: &mut Vec<u8>) {
        match v {
            V::Simple(s) => out.extend_from_slice(format!("+{s}\r\n").as_bytes()),
            V::Err(s) => out.extend_from_slice(format!("-ERR {s}\r\n").as_bytes()),
            V::Int(i) => out.extend_from_slice(format!(":{i}\r\n").as_bytes()),
            V::Bulk(b) => {
                out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            V::Null => out.extend_from_slice(b"_\r\n"),
            V::Arr(items) | V::Set(items) => {
                let t = if matches!(v, V::Arr(_)) { '*' } else { '~' };
                out.extend_from_slice(format!("{t}{}\r\n", items.len()).as_bytes());
                items.iter().for_each(|i| encode(i, out));
            }
            V::Map(pairs) => {
                out.extend_from_slice(format!("%{}\r\n", pairs.len()).as_bytes());
                for (k, v) in pairs {
                    encode(k, out);
                    encode(v, out);
                }
            }
            V::Attr(pairs, inner) => {
                out.extend_from_slice(format!("|{}\r\n", pairs.len()).as_bytes());
                for (k, v) in pairs {
                    encode(k, out);
                    encode(v, out);
                }
                encode(inner, out);
            }
            V::Dbl(d) => out.extend_from_slice(format!(",{d:?}\r\n").as_bytes()),
            V::Bool(b) => out.extend_from_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
        }
    }

    fn is_err(v: &V) -> bool {
        match v {
            V::Err(_) => true,
            V::Attr(_, inner) => is_err(inner),
            _ => false,
        }
    }

    fn rows(v: &V) -> Option<u64> {
        match v {
            V::Arr(i) | V::Set(i) => Some(i.len() as u64),
            V::Map(p) => Some(p.len() as u64),
            V::Attr(_, inner) => rows(inner),
            _ => None,
        }
    }

    fn value() -> impl Strategy<Value = V> {
        let leaf = prop_oneof![
            "[a-zA-Z0-9 ]{0,12}".prop_map(V::Simple),
            "[a-z ]{0,12}".prop_map(V::Err),
            any::<i64>().prop_map(V::Int),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(V::Bulk),
            Just(V::Null),
            (-1e9f64..1e9).prop_map(V::Dbl),
            any::<bool>().prop_map(V::Bool),
        ];
        leaf.prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(V::Arr),
                proptest::collection::vec(inner.clone(), 0..6).prop_map(V::Set),
                proptest::collection::vec((inner.clone(), inner.clone()), 0..4).prop_map(V::Map),
                (
                    proptest::collection::vec((inner.clone(), inner.clone()), 1..3),
                    inner
                )
                    .prop_map(|(a, v)| V::Attr(a, Box::new(v))),
            ]
        })
    }

    fn run_split(client: &[u8], server: &[u8], cuts_c: &[usize], cuts_s: &[usize]) -> Vec<L7Event> {
        let mut p = RedisParser::new();
        for (side, data, cuts) in [(C, client, cuts_c), (S, server, cuts_s)] {
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
            cuts.sort_unstable();
            let mut prev = 0;
            for c in cuts.into_iter().chain([data.len()]) {
                p.feed(side, &data[prev..c]);
                prev = c;
            }
            p.close(side);
        }
        drain(&mut p)
    }

    proptest! {
        #[test]
        fn encoded_replies_are_framed_exactly(
            values in proptest::collection::vec(value(), 1..8),
            cuts in proptest::collection::vec(any::<usize>(), 0..10),
        ) {
            let mut client = Vec::new();
            for _ in &values {
                client.extend(cmd(&[b"GET", b"k"]));
            }
            let mut server = Vec::new();
            let mut bounds = Vec::new();
            for v in &values {
                let start = server.len() as u64;
                encode(v, &mut server);
                bounds.push((start, server.len() as u64));
            }
            let ev = run_split(&client, &server, &[], &cuts);
            let replies: Vec<_> = ev.iter().filter(|e| e.side == S).collect();
            prop_assert_eq!(replies.len(), 2 * values.len());
            for (i, v) in values.iter().enumerate() {
                let (h, e) = (&replies[2 * i], &replies[2 * i + 1]);
                prop_assert_eq!(h.exchange, i as u64);
                match &h.kind {
                    L7EventKind::Head { offset, info: MessageInfo::DbResponse(r) } => {
                        prop_assert_eq!(*offset, bounds[i].0);
                        prop_assert_eq!(r.rows, rows(v));
                        prop_assert_eq!(r.error.is_some(), is_err(v));
                    }
                    other => prop_assert!(false, "{other:?}"),
                }
                prop_assert_eq!(&e.kind, &L7EventKind::End { end: bounds[i].1, info: None });
            }
        }

        #[test]
        fn splitting_never_changes_events(
            cuts_c in proptest::collection::vec(any::<usize>(), 0..12),
            cuts_s in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let mut client = cmd(&[b"HELLO", b"3"]);
            client.extend(cmd(&[b"SET", b"k", &[b'v'; 300]]));
            client.extend(b"PING\r\n");
            client.extend(cmd(&[b"HGETALL", b"h"]));
            let server = b"%1\r\n$5\r\nproto\r\n:3\r\n+OK\r\n>2\r\n$7\r\nmessage\r\n$1\r\nx\r\n+PONG\r\n|1\r\n$1\r\na\r\n#t\r\n%1\r\n$1\r\nf\r\n=7\r\ntxt:abc\r\n";
            let whole = run_split(&client, server, &[], &[]);
            prop_assert_eq!(whole.len(), 16);
            prop_assert_eq!(run_split(&client, server, &cuts_c, &cuts_s), whole);
        }

        #[test]
        fn splitting_arbitrary_bytes_never_changes_events(
            client in proptest::collection::vec(any::<u8>(), 0..300),
            server in proptest::collection::vec(any::<u8>(), 0..300),
            cuts_c in proptest::collection::vec(any::<usize>(), 0..8),
            cuts_s in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let whole = run_split(&client, &server, &[], &[]);
            prop_assert_eq!(run_split(&client, &server, &cuts_c, &cuts_s), whole);
        }

        #[test]
        fn splitting_mutated_resp_never_changes_events(
            flips in proptest::collection::vec((any::<usize>(), prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'*'), Just(b'$'), any::<u8>()]), 0..5),
            cuts_c in proptest::collection::vec(any::<usize>(), 0..8),
            cuts_s in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let mut client = cmd(&[b"SUBSCRIBE", b"a", b"b"]);
            client.extend(cmd(&[b"PING"]));
            client.extend(cmd(&[b"GET", b"key"]));
            let mut server = b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n*2\r\n$4\r\npong\r\n$0\r\n\r\n-ERR only allowed\r\n".to_vec();
            for (i, (pos, b)) in flips.iter().enumerate() {
                let v = if i % 2 == 0 { &mut client } else { &mut server };
                let n = v.len();
                v[pos % n] = *b;
            }
            let whole = run_split(&client, &server, &[], &[]);
            prop_assert_eq!(run_split(&client, &server, &cuts_c, &cuts_s), whole);
        }

        #[test]
        fn arbitrary_operations_never_panic(
            ops in proptest::collection::vec(
                (any::<bool>(), 0u8..4, proptest::collection::vec(any::<u8>(), 0..64), 0u64..10_000),
                0..40,
            )
        ) {
            let mut p = RedisParser::new();
            let mut ends = [0u64; 2];
            for (client, op, bytes, n) in ops {
                let side = if client { C } else { S };
                match op {
                    0 | 1 => { p.feed(side, &bytes); ends[client as usize] += bytes.len() as u64 }
                    2 => { p.gap(side, n); ends[client as usize] += n }
                    _ => p.close(side),
                }
                while let Some(e) = p.poll() {
                    let limit = ends[(e.side == C) as usize];
                    match e.kind {
                        L7EventKind::Head { offset, .. } => prop_assert!(offset <= limit),
                        L7EventKind::End { end, .. } => prop_assert!(end <= limit),
                        L7EventKind::Desync { offset, .. } => prop_assert!(offset <= limit),
                    }
                }
                prop_assert!(p.client.line.len() <= MAX_LINE && p.server.line.len() <= MAX_LINE);
                prop_assert!(p.client.stack.len() <= MAX_DEPTH && p.server.stack.len() <= MAX_DEPTH);
            }
        }
    }
}
