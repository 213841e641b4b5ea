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
//! client side may have hidden commands, so replies that reach it get fresh
//! exchange numbers (and when known commands wait behind it, they are given
//! up: their replies cannot be told from those of the lost commands) until
//! the client sends a command while no reply is pending or in progress (the
//! same rules as [`crate::http1`]).

use std::collections::VecDeque;

use crate::{
    ConnectionParser, DbError, DbRequest, DbResponse, DbSystem, L7Event, L7EventKind, MessageInfo,
    Protocol, Side,
};

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
/// Most commands waiting for a reply.
const MAX_PENDING: usize = 4096;

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
/// was sent (see [`Shared::server_epoch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    Cmd {
        exchange: u64,
        kind: CmdKind,
        answered: bool,
        epoch: u64,
    },
    /// Commands may have been lost here.
    Lost { epoch: u64 },
}

impl Pending {
    fn is_lost(&self) -> bool {
        matches!(self, Pending::Lost { .. })
    }
    fn epoch(&self) -> u64 {
        match self {
            Pending::Cmd { epoch, .. } | Pending::Lost { epoch } => *epoch,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReplyMode {
    On,
    Off,
    /// The next command gets no reply.
    Skip,
}

/// State shared by both directions.
#[derive(Debug)]
struct Shared {
    events: VecDeque<L7Event>,
    pending: VecDeque<Pending>,
    next_exchange: u64,
    /// RESP2 subscribe mode: arrays may be pushes.
    subscribed: bool,
    /// The connection speaks RESP3 (pushes are `>`).
    resp3: bool,
    reply_mode: ReplyMode,
    /// After `MONITOR`'s reply everything from the server is out of band.
    monitor: bool,
    /// Number of server feeds and gaps so far. When the server side
    /// resynchronises at a turn, commands sent before the previous server
    /// activity were answered in bytes it skipped.
    server_epoch: u64,
}

impl Shared {
    fn lost(&self) -> Pending {
        Pending::Lost {
            epoch: self.server_epoch,
        }
    }
}

impl Shared {
    fn push(&mut self, side: Side, exchange: u64, kind: L7EventKind) {
        self.events.push_back(L7Event {
            side,
            exchange,
            kind,
        });
    }
    fn fresh_exchange(&mut self) -> u64 {
        let e = self.next_exchange;
        self.next_exchange += 1;
        e
    }
}

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
            Side::Client => {
                if !sh.pending.back().is_some_and(Pending::is_lost) {
                    if sh.pending.len() >= MAX_PENDING {
                        sh.pending.clear();
                    }
                    let lost = sh.lost();
                    sh.pending.push_back(lost);
                }
            }
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
                sh.pending.retain(|p| p.epoch() >= now);
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
            let name = m.words[0].as_deref().and_then(command_name);
            m.need = name.as_deref().map_or(1, needed_words);
        } else if k == 1 {
            // `CLIENT REPLY` and subcommands with a key need a third word.
            let name = m.words[0].as_deref().and_then(command_name);
            let sub = m.words[1].as_deref().and_then(command_name);
            if let (Some(n), Some(s)) = (name, sub) {
                let op = format!("{n} {s}");
                if op == "CLIENT REPLY" || KEY_AFTER_SUB.contains(&op.as_str()) {
                    m.need = 3;
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
        let words: Vec<Option<&[u8]>> = m.words.iter().map(|w| w.as_deref()).collect();
        let cmd = describe(&words, m.argc);
        let exchange = sh.fresh_exchange();
        m.exchange = Some(exchange);
        let op = cmd.info.operation.as_deref();
        // Does this command get a reply?
        let mut replies = sh.reply_mode == ReplyMode::On;
        if sh.reply_mode == ReplyMode::Skip {
            sh.reply_mode = ReplyMode::On;
        }
        if op == Some("CLIENT REPLY") {
            match words
                .get(2)
                .copied()
                .flatten()
                .map(|w| w.to_ascii_uppercase())
            {
                Some(w) if w == b"ON" => {
                    sh.reply_mode = ReplyMode::On;
                    replies = true;
                }
                Some(w) if w == b"OFF" => {
                    sh.reply_mode = ReplyMode::Off;
                    replies = false;
                }
                Some(w) if w == b"SKIP" => {
                    sh.reply_mode = ReplyMode::Skip;
                    replies = false;
                }
                _ => {}
            }
        }
        match op {
            Some("RESET") => {
                sh.subscribed = false;
                sh.resp3 = false;
                sh.monitor = false;
                sh.reply_mode = ReplyMode::On;
                replies = true;
            }
            Some("HELLO") if words.get(1).copied().flatten() == Some(b"3") => sh.resp3 = true,
            _ => {}
        }
        if let CmdKind::Subscribe {
            replies: Some(n), ..
        } = cmd.kind
        {
            if n > 0 && op.is_some_and(|o| !o.contains("UNSUB")) {
                sh.subscribed = true;
            }
        }
        // Whether a reply comes is unknown when the words that decide it
        // were not captured (`CLIENT REPLY OFF` gets none): such a command
        // is reported but never paired.
        let client_sub_lost = op == Some("CLIENT") && m.argc > 1 && words[1].is_none();
        let reply_arg_lost = op == Some("CLIENT REPLY") && m.argc > 2 && words[2].is_none();
        if cmd.info.operation.is_none() || client_sub_lost || reply_arg_lost {
            if !sh.pending.back().is_some_and(Pending::is_lost) {
                let lost = sh.lost();
                sh.pending.push_back(lost);
            }
        } else if replies {
            if sh.pending.len() >= MAX_PENDING {
                sh.pending.clear();
                let lost = sh.lost();
                sh.pending.push_back(lost);
            }
            sh.pending.push_back(Pending::Cmd {
                exchange,
                kind: cmd.kind,
                answered: false,
                epoch: sh.server_epoch,
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
            if peer_idle && sh.pending.iter().all(Pending::is_lost) {
                sh.pending.clear();
            }
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
            sh.resp3 = true;
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
        if peer_idle && sh.pending.iter().all(Pending::is_lost) {
            sh.pending.clear();
        }
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
        let may_push = ty == b'>' || (ty == b'*' && sh.subscribed && !sh.resp3);
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
        let class = if sh.monitor {
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
        while let Some(Pending::Cmd { answered: true, .. }) = sh.pending.front() {
            sh.pending.pop_front();
        }
        match sh.pending.front().copied() {
            Some(Pending::Cmd { exchange, kind, .. }) => {
                sh.pending.pop_front();
                if kind == CmdKind::Monitor {
                    sh.monitor = true;
                }
                Class::Reply(exchange)
            }
            Some(Pending::Lost { .. }) => {
                // This reply may answer a lost command or the next known one:
                // give up pairing the commands waiting now.
                if sh.pending.len() > 1 {
                    sh.pending.clear();
                    let lost = sh.lost();
                    sh.pending.push_back(lost);
                }
                Class::Reply(sh.fresh_exchange())
            }
            None => Class::Reply(sh.fresh_exchange()),
        }
    }

    /// Server: a subscription confirmation named `kind`.
    fn confirmation(&mut self, sh: &mut Shared, kind: &[u8]) -> Class {
        loop {
            match sh.pending.front_mut() {
                Some(Pending::Cmd {
                    exchange,
                    kind: CmdKind::Subscribe { confirm, replies },
                    answered,
                    ..
                }) if confirm.as_bytes() == kind => {
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
                Some(Pending::Cmd { answered: true, .. }) => {
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
                sh.subscribed = false;
                if let Some(Pending::Cmd {
                    kind: CmdKind::Subscribe { replies: None, .. },
                    answered: true,
                    ..
                }) = sh.pending.front()
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
            if !b.get(e + 1).is_none_or(|c| *c == b'\n') {
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
            shared: Shared {
                events: VecDeque::new(),
                pending: VecDeque::new(),
                next_exchange: 0,
                subscribed: false,
                resp3: false,
                reply_mode: ReplyMode::On,
                monitor: false,
                server_epoch: 0,
            },
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
        self.shared.events.pop_front()
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
