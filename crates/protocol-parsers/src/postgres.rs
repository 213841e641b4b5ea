//! PostgreSQL frontend/backend protocol (3.x) parser.
//!
//! **Exchanges.** Exchanges are numbered from 0 in the order the client sends
//! them:
//! * a simple query `Q` is one exchange (several `;`-separated statements
//!   included); its response runs to `ReadyForQuery`, `rows` is the sum of
//!   the `CommandComplete` counts and `error` the first `ErrorResponse`;
//! * in the extended protocol, each `Execute` is one exchange. Its request
//!   `Head` is placed at the first message of its `Parse`/`Bind`/`Describe`/
//!   `Execute` group (the messages after the previous `Execute` or `Sync`)
//!   and its `End` after the `Execute`; the response starts at the first
//!   backend message of the group (`ParseComplete`, `BindComplete`,
//!   `RowDescription`, ...) and ends at `CommandComplete` (rows from its
//!   tag), `EmptyQueryResponse`, `PortalSuspended` (rows counted) or
//!   `ErrorResponse`. `Sync` and the `ReadyForQuery` answering it belong to
//!   no exchange.
//! * A group that reaches `Sync` without an `Execute` (a prepare, a
//!   describe, a close) is one exchange named `PREPARE` (it has a `Parse`),
//!   `DESCRIBE` or `CLOSE`; its request ends after the `Sync`, its response
//!   at `ReadyForQuery`.
//! * After an `ErrorResponse` the backend skips everything up to the next
//!   `Sync`: the exchange that failed gets the error, the later `Execute`s
//!   of that batch are **abandoned** (request events only, no response).
//!
//! Statement names map to their SQL (`Parse`; the unnamed statement is
//! replaced by each new `Parse`), portals to their statement (`Bind`), so an
//! `Execute` reports the SQL text and, for named statements, the statement
//! name. The startup message gives `db.namespace` (`database`, else `user`).
//! Authentication messages are skipped and never kept. An `SSLRequest` or
//! `GSSENCRequest` answered `S`/`G` stops the parsing of the connection
//! quietly (encrypted from there); answered `N`, parsing goes on.
//! `DataRow`, `RowDescription` and `Copy*` bodies are skipped by count.
//!
//! Joining mid-connection: the first bytes decide between a startup
//! message and regular messages; framing lost to uncaptured bytes is found
//! again on a plausible message (client: `Q`/`P`/`B`/`E`/`S`/..., server:
//! `ReadyForQuery`, `CommandComplete`, `ErrorResponse`, ...). A response in
//! flight when its framing was lost still ends at its `CommandComplete` /
//! `ReadyForQuery`, with the rows of the tag only.
//!
//! The parser expects a message's bytes to be fed before the backend's
//! answer to it (capture order); backend messages that answer nothing known
//! are skipped. A request found in bytes that waited in the buffer while
//! backend bytes were parsed gets no response (its answer may have gone by).
//! When the backend's framing is lost and the client then sends a new
//! request before any other, the responses in flight end where the backend
//! stream is (the client waited for them). Known limit: joining a connection
//! in the middle of a pipelined batch, or losing the backend's framing while
//! the client keeps pipelining, can pair a response with the wrong
//! `Execute`; the parser assumes no unseen request is outstanding when it
//! locks on the first one it sees.

use std::collections::{HashMap, VecDeque};

use crate::sql::wire::{
    feed_sides, gap_sides, plausible_text, sql_start, sql_text, Events, Machine, Plausible,
    SideStream, Step, Turns,
};
use crate::sql::{self, MAX_SQL_LEN};
use crate::{
    ConnectionParser, DbError, DbRequest, DbResponse, DbSystem, L7Event, L7EventKind, MessageInfo,
    Protocol, Side,
};

/// Errors of the low-level PostgreSQL decode functions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostgresError {
    /// The message is shorter than its fields say.
    #[error("{0} message truncated")]
    Truncated(&'static str),
    /// A field holds a value the protocol does not allow.
    #[error("malformed {0} message")]
    Malformed(&'static str),
}

/// Protocol code of an `SSLRequest`.
pub const SSL_REQUEST: u32 = 80_877_103;
/// Protocol code of a `GSSENCRequest`.
pub const GSSENC_REQUEST: u32 = 80_877_104;
/// Protocol code of a `CancelRequest`.
pub const CANCEL_REQUEST: u32 = 80_877_102;

const MAX_MESSAGE: usize = 1 << 30;
const SERVER_KEEP: usize = 2048;
const CLIENT_KEEP: usize = 1024;
const MAX_NAMES: usize = 1024;
const MAX_PENDING: usize = 1024;
const CLIENT_TYPES: &[u8] = b"QPBEDCSHXFdcfp";
const SERVER_TYPES: &[u8] = b"RSKZ123ntTDCEIsNAGHWdcVv";

/// The first message of a connection (no type byte).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Startup {
    /// Protocol 3.x startup with its parameters (`user`, `database`, ...).
    Startup {
        /// Minor protocol version.
        minor: u16,
        /// Parameters in order (`user`, `database`, `application_name`, ...).
        params: Vec<(String, String)>,
    },
    /// Asks for TLS.
    SslRequest,
    /// Asks for GSSAPI encryption.
    GssEncRequest,
    /// Query cancellation (its secret key is not kept).
    Cancel,
}

/// Decode an untyped startup-phase message (length included).
pub fn parse_startup(m: &[u8]) -> Result<Startup, PostgresError> {
    let len = m
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or(PostgresError::Truncated("startup"))?;
    let code = m
        .get(4..8)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(PostgresError::Truncated("startup"))?;
    match code {
        SSL_REQUEST if len == 8 => Ok(Startup::SslRequest),
        GSSENC_REQUEST if len == 8 => Ok(Startup::GssEncRequest),
        CANCEL_REQUEST if len == 16 => Ok(Startup::Cancel),
        c if c >> 16 == 3 && len >= 8 => {
            let body = &m[8..m.len().min(len)];
            let mut params = Vec::new();
            let mut parts = body.split(|&b| b == 0);
            while let (Some(k), Some(v)) = (parts.next(), parts.next()) {
                if k.is_empty() {
                    break;
                }
                params.push((
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                ));
            }
            Ok(Startup::Startup {
                minor: (c & 0xFFFF) as u16,
                params,
            })
        }
        _ => Err(PostgresError::Malformed("startup")),
    }
}

/// Fields of an `ErrorResponse` / `NoticeResponse` body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorFields {
    /// `V` (non-localised) or else `S`.
    pub severity: Option<String>,
    /// SQLSTATE (`C`).
    pub code: Option<String>,
    /// `M`.
    pub message: Option<String>,
}

/// Decode an `ErrorResponse` / `NoticeResponse` body (after the length).
pub fn parse_error_fields(body: &[u8]) -> ErrorFields {
    let mut f = ErrorFields::default();
    let mut i = 0;
    while i < body.len() && body[i] != 0 {
        let t = body[i];
        let rest = &body[i + 1..];
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        let v = String::from_utf8_lossy(&rest[..end]).into_owned();
        match t {
            b'V' => f.severity = Some(v),
            b'S' if f.severity.is_none() => f.severity = Some(v),
            b'C' => f.code = Some(v),
            b'M' => f.message = Some(v),
            _ => {}
        }
        i += 1 + end + 1;
    }
    f
}

/// Row count of a `CommandComplete` tag (`SELECT 5`, `INSERT 0 1`, ...):
/// its last word when numeric.
pub fn tag_rows(tag: &str) -> Option<u64> {
    tag.rsplit(' ').next()?.parse().ok()
}

fn cstr(b: &[u8]) -> Option<(&[u8], usize)> {
    let n = b.iter().position(|&c| c == 0)?;
    Some((&b[..n], n + 1))
}

fn be32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

fn plausible_name(b: &[u8]) -> bool {
    b.len() < 128 && plausible_text(b) && !b.contains(&b' ')
}

fn be16(b: &[u8]) -> Option<usize> {
    Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]) as usize)
}

/// Structure of a complete `Bind` body: names, formats, parameters, result
/// formats, ending exactly at the end.
fn bind_well_formed(body: &[u8]) -> bool {
    let walk = || -> Option<bool> {
        let (portal, n1) = cstr(body)?;
        let (stmt, n2) = cstr(&body[n1..])?;
        if !plausible_name(portal) || !plausible_name(stmt) {
            return Some(false);
        }
        let mut i = n1 + n2;
        let nfmt = be16(body.get(i..)?)?;
        i += 2 + 2 * nfmt;
        let nparams = be16(body.get(i..)?)?;
        i += 2;
        for _ in 0..nparams {
            let l = be32(body.get(i..)?)? as i32;
            i += 4;
            if l > 0 {
                i = i.checked_add(l as usize)?;
            } else if l < -1 {
                return Some(false);
            }
        }
        let nres = be16(body.get(i..)?)?;
        i += 2 + 2 * nres;
        Some(i == body.len())
    };
    walk().unwrap_or(false)
}

/// Structure of a complete `Parse` body.
fn parse_well_formed(body: &[u8]) -> bool {
    let walk = || -> Option<bool> {
        let (name, n1) = cstr(body)?;
        let (text, n2) = cstr(&body[n1..])?;
        if !plausible_name(name) || !plausible_text(text) || !sql_start(text, false) {
            return Some(false);
        }
        let n = be16(body.get(n1 + n2..)?)?;
        Some(n1 + n2 + 2 + 4 * n == body.len())
    };
    walk().unwrap_or(false)
}

/// Messages up to this size must be whole to be recognised when looking
/// for the framing; longer ones are judged on their first bytes.
const CHECK_WHOLE: usize = 4096;

/// Whether a regular client message starts at `b` (strict: used to join a
/// connection midway and to find the framing again).
fn plausible_client(b: &[u8]) -> Plausible {
    plausible_client_(b, true)
}

/// `strict`: also require a query to look like SQL (off for the first
/// bytes of a capture, which start on a write boundary anyway).
fn plausible_client_(b: &[u8], strict: bool) -> Plausible {
    if b.len() < 5 {
        return Plausible::NeedMore(5);
    }
    let t = b[0];
    let len = be32(&b[1..]).unwrap_or(0) as usize;
    if !(4..MAX_MESSAGE).contains(&len) {
        return Plausible::No;
    }
    let body_len = len - 4;
    let whole = len < CHECK_WHOLE;
    let complete = b.len() > len;
    let verdict = |ok: bool| if ok { Plausible::Yes } else { Plausible::No };
    match t {
        b'S' | b'H' | b'X' => verdict(len == 4),
        b'Q' | b'P' | b'B' if whole && !complete => {
            // Reject early what is already wrong, else wait for the whole.
            let avail = &b[5..];
            let early_ok = match t {
                b'Q' => plausible_text(avail.split(|&c| c == 0).next().unwrap_or(avail)),
                _ => cstr(avail).is_none_or(|(name, _)| plausible_name(name)),
            };
            if early_ok {
                Plausible::NeedMore(1 + len)
            } else {
                Plausible::No
            }
        }
        b'Q' if whole => {
            let body = &b[5..1 + len];
            let text = &body[..body_len.saturating_sub(1)];
            verdict(
                body_len >= 1
                    && body[body_len - 1] == 0
                    && plausible_text(text)
                    && (!strict || text.is_empty() || sql_start(text, false)),
            )
        }
        b'P' if whole => verdict(parse_well_formed(&b[5..1 + len])),
        b'B' if whole => verdict(bind_well_formed(&b[5..1 + len])),
        b'Q' | b'P' | b'B' => {
            // A long message: judge its first 64 bytes.
            if b.len() < 5 + 64 {
                return Plausible::NeedMore(5 + 64);
            }
            let avail = &b[5..5 + 64];
            let ok = match t {
                b'Q' => plausible_text(avail) && sql_start(avail, false),
                b'P' => cstr(avail).is_some_and(|(name, n)| {
                    plausible_name(name)
                        && plausible_text(&avail[n..])
                        && sql_start(&avail[n..], false)
                }),
                _ => cstr(avail).is_some_and(|(portal, n)| {
                    plausible_name(portal)
                        && cstr(&avail[n..]).is_some_and(|(s, _)| plausible_name(s))
                }),
            };
            verdict(ok)
        }
        b'E' => {
            let avail = &b[5..b.len().min(1 + len)];
            match cstr(avail) {
                Some((name, n)) => verdict(plausible_name(name) && body_len == n + 4),
                None if body_len < 68 && !complete => Plausible::NeedMore(1 + len),
                None => Plausible::No,
            }
        }
        b'D' | b'C' => {
            let avail = &b[5..b.len().min(1 + len)];
            if avail.is_empty() {
                return Plausible::NeedMore(6);
            }
            if !matches!(avail[0], b'S' | b'P') {
                return Plausible::No;
            }
            match cstr(&avail[1..]) {
                Some((name, n)) => verdict(plausible_name(name) && body_len == 1 + n),
                None if body_len < 68 && !complete => Plausible::NeedMore(1 + len),
                None => Plausible::No,
            }
        }
        _ => Plausible::No,
    }
}

/// Whether a backend message starts at `b` (strict, for resynchronising).
fn plausible_server(b: &[u8]) -> Plausible {
    if b.len() < 5 {
        return Plausible::NeedMore(5);
    }
    let t = b[0];
    let len = be32(&b[1..]).unwrap_or(0) as usize;
    if !(4..MAX_MESSAGE).contains(&len) {
        return Plausible::No;
    }
    match t {
        b'Z' => match b.get(5) {
            None if len == 5 => Plausible::NeedMore(6),
            Some(b'I' | b'T' | b'E') if len == 5 => followed_well(&b[6..]),
            _ => Plausible::No,
        },
        // Short fixed messages are easily found inside row data: they must
        // end the bytes or be followed by a plausible message.
        b'1' | b'2' | b'3' | b'n' | b'I' | b's' => {
            if len == 4 {
                followed_well(&b[5..])
            } else {
                Plausible::No
            }
        }
        b'C' => {
            if !(6..=68).contains(&len) {
                return Plausible::No;
            }
            let Some(body) = b.get(5..1 + len) else {
                return Plausible::NeedMore(1 + len);
            };
            let (tag, rest) = body.split_at(body.len() - 1);
            if rest == [0]
                && !tag.is_empty()
                && tag[0].is_ascii_uppercase()
                && tag
                    .iter()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b' ')
            {
                Plausible::Yes
            } else {
                Plausible::No
            }
        }
        b'E' | b'N' => {
            const SEV: &[&[u8]] = &[
                b"SERROR\0",
                b"SFATAL\0",
                b"SPANIC\0",
                b"SWARNING\0",
                b"SNOTICE\0",
                b"SDEBUG\0",
                b"SINFO\0",
                b"SLOG\0",
            ];
            let body = &b[5..b.len().min(1 + len)];
            if SEV.iter().any(|s| body.starts_with(s)) {
                Plausible::Yes
            } else if body.len() < 9 && b.len() < 1 + len {
                Plausible::NeedMore(14.min(1 + len))
            } else {
                Plausible::No
            }
        }
        _ => Plausible::No,
    }
}

/// Whether `b` starts with the head of a startup-phase message: protocol
/// 3.0-3.2 with a sensible length, or an SSL / GSSENC / cancel request.
fn is_startup_head(b: &[u8]) -> bool {
    if b.len() < 8 {
        return false;
    }
    let len = be32(b).unwrap_or(0) as usize;
    match be32(&b[4..]).unwrap_or(0) {
        SSL_REQUEST | GSSENC_REQUEST => len == 8,
        CANCEL_REQUEST => len == 16,
        0x0003_0000..=0x0003_0002 => {
            (9..10_000).contains(&len) && (b.len() < len || b[len - 1] == 0)
        }
        _ => false,
    }
}

/// After a short anchor: nothing, or a plausible backend message header.
fn followed_well(rest: &[u8]) -> Plausible {
    if rest.is_empty() {
        return Plausible::Yes;
    }
    if rest.len() < 5 {
        return Plausible::NeedMore(rest.len() + 5);
    }
    let len = be32(&rest[1..]).unwrap_or(0) as usize;
    if SERVER_TYPES.contains(&rest[0]) && (4..1 << 24).contains(&len) {
        Plausible::Yes
    } else {
        Plausible::No
    }
}

/// Whether the first bytes `side` sent on a connection look like PostgreSQL:
/// a startup message / `SSLRequest` / `GSSENCRequest` (client), a reply to
/// those or an authentication request (server), or, for connections joined
/// midway, a regular `Q`/`P` message with plausible length and text (client)
/// or a plausible backend message (server). Port 5432 only decides when the
/// bytes are too few to tell.
pub fn looks_like(side: Side, first_bytes: &[u8], port: u16) -> bool {
    let b = first_bytes;
    match side {
        Side::Client => {
            if is_startup_head(b) {
                return true;
            }
            if !matches!(b.first(), Some(b'Q' | b'P')) {
                return false;
            }
            match plausible_client(b) {
                Plausible::Yes => true,
                Plausible::No => false,
                Plausible::NeedMore(_) => port == 5432,
            }
        }
        Side::Server => {
            if b.len() == 1 && matches!(b[0], b'S' | b'N' | b'G') {
                return port == 5432;
            }
            if b.first() == Some(&b'R') && b.len() >= 9 {
                let len = be32(&b[1..]).unwrap_or(0);
                let code = be32(&b[5..]).unwrap_or(99);
                return (8..1024).contains(&len) && code <= 12;
            }
            match plausible_server(b) {
                Plausible::Yes => b[0] == b'Z' || b[0] == b'C' || b[0] == b'E' || port == 5432,
                Plausible::No => false,
                Plausible::NeedMore(_) => port == 5432,
            }
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum ClientPhase {
    /// Nothing seen: a startup message or regular messages.
    #[default]
    Unknown,
    /// A startup-phase (untyped) message is next.
    Startup,
    Typed,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum ServerPhase {
    #[default]
    Typed,
    /// One byte answering an SSLRequest / GSSENCRequest is next.
    EncryptionReply,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PKind {
    /// `Q`: ends at ReadyForQuery.
    Simple,
    /// `Execute`: ends at CommandComplete & co.
    Exec,
    /// A group ended by Sync without Execute: ends at ReadyForQuery.
    SyncGroup,
    /// `F`: ends at ReadyForQuery.
    Function,
    /// A Sync with no exchange of its own: its ReadyForQuery ends nothing.
    SyncMark,
}

impl PKind {
    fn ends_at_ready(self) -> bool {
        !matches!(self, PKind::Exec)
    }
}

#[derive(Debug)]
struct Pending {
    exchange: u64,
    kind: PKind,
    head_sent: bool,
    data_rows: u64,
    tag_rows: Option<u64>,
    /// Framing was lost inside the response: DataRow counts are partial.
    rows_unreliable: bool,
    error: Option<DbError>,
}

/// The client's extended-protocol group in progress.
#[derive(Debug, Default)]
struct Group {
    start: u64,
    parsed: Option<(String, String)>,
    described: bool,
    closed: bool,
}

#[derive(Debug, Default)]
struct Pg {
    events: Events,
    client_phase: ClientPhase,
    server_phase: ServerPhase,
    stopped: bool,
    namespace: Option<String>,
    /// statement name -> SQL text.
    statements: HashMap<String, String>,
    /// portal name -> statement name.
    portals: HashMap<String, String>,
    group: Option<Group>,
    next_exchange: u64,
    pending: VecDeque<Pending>,
    client_lost: bool,
    server_lost: bool,
    /// A request was sent since the backend's framing was lost.
    sent_since_loss: bool,
    /// Server bytes before this offset belong to responses given up on.
    server_discard_until: u64,
    /// Where the two directions stand (kept by the parser).
    turns: Turns,
}

fn insert_bounded(map: &mut HashMap<String, String>, k: String, v: String) {
    if map.len() >= MAX_NAMES && !map.contains_key(&k) {
        if let Some(old) = map.keys().next().cloned() {
            map.remove(&old);
        }
    }
    map.insert(k, v);
}

impl Pg {
    fn request(
        &self,
        operation: Option<String>,
        query: Option<String>,
        statement: Option<String>,
    ) -> DbRequest {
        let summary = query.as_deref().map(sql::summarize).unwrap_or_default();
        DbRequest {
            system: DbSystem::Postgresql,
            operation: operation.or(summary.operation),
            query,
            target: summary.table,
            namespace: self.namespace.clone(),
            statement,
        }
    }

    fn new_pending(&mut self, exchange: u64, kind: PKind, at: u64) {
        if at < self.turns.client_stale_until {
            return;
        }
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
        }
        self.pending.push_back(Pending {
            exchange,
            kind,
            head_sent: false,
            data_rows: 0,
            tag_rows: None,
            rows_unreliable: false,
            error: None,
        });
    }

    // ----------------------------------------------------------------- client

    fn client_step(&mut self, bytes: &[u8], at: u64, truncated: bool) -> Step {
        if self.client_lost {
            return self.client_scan(bytes, truncated);
        }
        match self.client_phase {
            ClientPhase::Unknown => {
                // The first bytes of a capture: a startup message, or a
                // regular message we can judge on what was fed (waiting for
                // more could put a request after responses already parsed).
                if bytes.len() < 8
                    && !truncated
                    && plausible_client_(bytes, false) != Plausible::Yes
                {
                    // A startup message is at least 8 bytes (and written at once).
                    return Step::Need(8);
                }
                let startup = is_startup_head(bytes);
                if startup {
                    self.client_phase = ClientPhase::Startup;
                    return self.startup(bytes, truncated);
                }
                self.client_phase = ClientPhase::Typed;
                if plausible_client_(bytes, false) == Plausible::Yes {
                    self.client_message(bytes, at, truncated)
                } else {
                    self.client_lost = true;
                    Step::Consume { used: 1, skip: 0 }
                }
            }
            ClientPhase::Startup => self.startup(bytes, truncated),
            ClientPhase::Typed => self.client_message(bytes, at, truncated),
        }
    }

    fn startup(&mut self, bytes: &[u8], truncated: bool) -> Step {
        let Some(len) = be32(bytes).map(|l| l as usize) else {
            return Step::Need(4);
        };
        if !(8..1 << 20).contains(&len) {
            self.client_phase = ClientPhase::Typed;
            self.client_lost = true;
            return Step::Consume { used: 1, skip: 0 };
        }
        let want = len.min(CLIENT_KEEP);
        if bytes.len() < want && !truncated {
            return Step::Need(want);
        }
        let used = bytes.len().min(len);
        match parse_startup(&bytes[..used]) {
            Ok(Startup::SslRequest) | Ok(Startup::GssEncRequest) => {
                self.server_phase = ServerPhase::EncryptionReply;
            }
            Ok(Startup::Startup { params, .. }) => {
                let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                self.namespace = get("database").or_else(|| get("user"));
                self.client_phase = ClientPhase::Typed;
            }
            Ok(Startup::Cancel) => {}
            Err(_) => {
                self.client_phase = ClientPhase::Typed;
                self.client_lost = true;
                return Step::Consume { used: 1, skip: 0 };
            }
        }
        Step::Consume {
            used,
            skip: (len - used) as u64,
        }
    }

    fn client_message(&mut self, bytes: &[u8], at: u64, truncated: bool) -> Step {
        if bytes.len() < 5 {
            return Step::Need(5);
        }
        let t = bytes[0];
        let len = be32(&bytes[1..]).unwrap_or(0) as usize;
        if !CLIENT_TYPES.contains(&t) || !(4..MAX_MESSAGE).contains(&len) {
            self.events.push(
                Side::Client,
                self.next_exchange,
                L7EventKind::Desync {
                    offset: at,
                    reason: "invalid PostgreSQL frontend message".into(),
                },
            );
            self.group = None;
            self.client_lost = true;
            return Step::Consume { used: 1, skip: 0 };
        }
        let total = 1 + len;
        let keep = match t {
            b'Q' | b'P' => MAX_SQL_LEN + 1 + 256,
            b'd' | b'p' => 0,
            _ => CLIENT_KEEP,
        };
        let want = 5 + (len - 4).min(keep);
        if bytes.len() < want && !truncated {
            return Step::Need(want);
        }
        let used = bytes.len().min(total);
        let skip = (total - used) as u64;
        let body = &bytes[5..used.max(5)];
        let complete = used == total;
        let end = at + total as u64;
        let starts_exchange = matches!(t, b'Q' | b'F')
            || (self.group.is_none() && matches!(t, b'P' | b'B' | b'D' | b'C' | b'E'));
        if starts_exchange && self.server_lost && !self.sent_since_loss {
            // The backend's framing was lost while it answered, and the
            // client waited before sending more: those answers are over.
            // End them where the backend stream is now. (A client that
            // pipelined more requests meanwhile keeps the parser looking.)
            self.server_lost = false;
            self.server_discard_until = self.turns.server_fed;
            while let Some(p) = self.pending.pop_front() {
                if p.head_sent {
                    let end = self.turns.server_fed;
                    self.events.push(
                        Side::Server,
                        p.exchange,
                        L7EventKind::End { end, info: None },
                    );
                }
            }
        }
        if self.server_lost && (starts_exchange || t == b'S') {
            self.sent_since_loss = true;
        }
        match t {
            b'Q' => {
                self.group = None;
                let text = if complete {
                    body.strip_suffix(&[0]).unwrap_or(body)
                } else {
                    body
                };
                let sql = sql_text(text, !complete);
                let x = self.next_exchange;
                self.next_exchange += 1;
                let req = self.request(None, Some(sql), None);
                self.events.push(
                    Side::Client,
                    x,
                    L7EventKind::Head {
                        offset: at,
                        info: MessageInfo::DbRequest(req),
                    },
                );
                self.events.end(Side::Client, x, end, None, skip);
                self.new_pending(x, PKind::Simple, at);
            }
            b'P' => {
                let g = self.group.get_or_insert_with(|| Group {
                    start: at,
                    ..Group::default()
                });
                if let Some((name, n)) = cstr(body) {
                    let name = String::from_utf8_lossy(name).into_owned();
                    let rest = &body[n..];
                    let (text, cut) = match cstr(rest) {
                        Some((s, _)) => (s, false),
                        None => (rest, true),
                    };
                    let sql = sql_text(text, cut);
                    g.parsed = Some((name.clone(), sql.clone()));
                    insert_bounded(&mut self.statements, name, sql);
                }
            }
            b'B' => {
                self.group.get_or_insert_with(|| Group {
                    start: at,
                    ..Group::default()
                });
                if let Some((portal, n)) = cstr(body) {
                    if let Some((stmt, _)) = cstr(&body[n..]) {
                        let portal = String::from_utf8_lossy(portal).into_owned();
                        let stmt = String::from_utf8_lossy(stmt).into_owned();
                        insert_bounded(&mut self.portals, portal, stmt);
                    }
                }
            }
            b'D' | b'C' => {
                let g = self.group.get_or_insert_with(|| Group {
                    start: at,
                    ..Group::default()
                });
                if t == b'D' {
                    g.described = true;
                } else {
                    g.closed = true;
                    if let Some((name, _)) = body.get(1..).and_then(cstr) {
                        let name = String::from_utf8_lossy(name).into_owned();
                        match body.first() {
                            Some(b'S') => {
                                self.statements.remove(&name);
                            }
                            Some(b'P') => {
                                self.portals.remove(&name);
                            }
                            _ => {}
                        }
                    }
                }
            }
            b'E' => {
                let start = self.group.take().map(|g| g.start).unwrap_or(at);
                let portal = cstr(body).map(|(p, _)| String::from_utf8_lossy(p).into_owned());
                let stmt = portal.and_then(|p| self.portals.get(&p).cloned());
                let sql = stmt.as_ref().and_then(|s| self.statements.get(s).cloned());
                let op = if sql.is_none() {
                    Some("EXECUTE".to_owned())
                } else {
                    None
                };
                let named = stmt.filter(|s| !s.is_empty());
                let req = self.request(op, sql, named);
                let x = self.next_exchange;
                self.next_exchange += 1;
                self.events.push(
                    Side::Client,
                    x,
                    L7EventKind::Head {
                        offset: start,
                        info: MessageInfo::DbRequest(req),
                    },
                );
                self.events.end(Side::Client, x, end, None, skip);
                self.new_pending(x, PKind::Exec, at);
            }
            b'S' => {
                if let Some(g) = self.group.take() {
                    let (op, sql, stmt) = match g.parsed {
                        Some((name, sql)) => {
                            ("PREPARE", Some(sql), Some(name).filter(|n| !n.is_empty()))
                        }
                        None if g.described => ("DESCRIBE", None, None),
                        None => ("CLOSE", None, None),
                    };
                    let req = self.request(Some(op.to_owned()), sql, stmt);
                    let x = self.next_exchange;
                    self.next_exchange += 1;
                    self.events.push(
                        Side::Client,
                        x,
                        L7EventKind::Head {
                            offset: g.start,
                            info: MessageInfo::DbRequest(req),
                        },
                    );
                    self.events.end(Side::Client, x, end, None, skip);
                    self.new_pending(x, PKind::SyncGroup, at);
                } else {
                    self.new_pending(self.next_exchange, PKind::SyncMark, at);
                }
            }
            b'F' => {
                self.group = None;
                let x = self.next_exchange;
                self.next_exchange += 1;
                let req = self.request(Some("FUNCTION_CALL".to_owned()), None, None);
                self.events.push(
                    Side::Client,
                    x,
                    L7EventKind::Head {
                        offset: at,
                        info: MessageInfo::DbRequest(req),
                    },
                );
                self.events.end(Side::Client, x, end, None, skip);
                self.new_pending(x, PKind::Function, at);
            }
            // Flush, Terminate, CopyData/Done/Fail, password/SASL (never kept).
            _ => {}
        }
        Step::Consume { used, skip }
    }

    /// Look for a message the framing can be found again on. Only what was
    /// fed so far is looked at (waiting for more bytes could put a request
    /// after responses already parsed): a candidate cut short is passed over.
    fn client_scan(&mut self, bytes: &[u8], _truncated: bool) -> Step {
        for p in 0..bytes.len() {
            if !matches!(
                bytes[p],
                b'Q' | b'P' | b'B' | b'E' | b'S' | b'H' | b'D' | b'C' | b'X'
            ) {
                continue;
            }
            if plausible_client(&bytes[p..]) == Plausible::Yes {
                if p == 0 {
                    // Synchronised: `step` parses the message now.
                    self.client_lost = false;
                    return Step::Need(1);
                }
                return Step::Consume { used: p, skip: 0 };
            }
        }
        Step::Consume {
            used: bytes.len(),
            skip: 0,
        }
    }

    // ----------------------------------------------------------------- server

    fn server_step(&mut self, bytes: &[u8], at: u64, truncated: bool) -> Step {
        if at < self.server_discard_until {
            let n = (self.server_discard_until - at).min(bytes.len() as u64) as usize;
            return Step::Consume { used: n, skip: 0 };
        }
        if self.server_phase == ServerPhase::EncryptionReply {
            self.server_phase = ServerPhase::Typed;
            match bytes[0] {
                b'S' | b'G' => {
                    self.stopped = true;
                    return Step::Consume {
                        used: bytes.len(),
                        skip: 0,
                    };
                }
                b'N' => {
                    self.client_phase = ClientPhase::Startup;
                    return Step::Consume { used: 1, skip: 0 };
                }
                // An old server answering with an error: a regular message.
                _ => {}
            }
        }
        if self.server_lost {
            match self.server_scan(bytes, truncated) {
                Some(s) => return s,
                None => self.server_lost = false,
            }
        }
        if bytes.len() < 5 {
            return Step::Need(5);
        }
        let t = bytes[0];
        let len = be32(&bytes[1..]).unwrap_or(0) as usize;
        if !SERVER_TYPES.contains(&t) || !(4..MAX_MESSAGE).contains(&len) {
            self.lost(Side::Server, at);
            return Step::Consume { used: 1, skip: 0 };
        }
        let total = 1 + len;
        let keep = match t {
            b'E' | b'N' | b'C' | b'Z' => SERVER_KEEP,
            _ => 0,
        };
        let want = 5 + (len - 4).min(keep);
        if bytes.len() < want && !truncated {
            return Step::Need(want);
        }
        let used = bytes.len().min(total);
        let skip = (total - used) as u64;
        let body = &bytes[5..used.max(5)];
        self.server_message(t, body, at, at + total as u64, skip);
        Step::Consume { used, skip }
    }

    fn server_message(&mut self, t: u8, body: &[u8], at: u64, end: u64, skip: u64) {
        // Asynchronous and startup messages answer no exchange. A notice
        // while a command is outstanding is part of its response.
        if matches!(t, b'R' | b'S' | b'K' | b'A' | b'v') {
            return;
        }
        if t == b'Z' {
            return self.ready(at, end, skip);
        }
        let Some(cur) = self.pending.front_mut() else {
            return;
        };
        if cur.kind == PKind::SyncMark {
            // An error at Sync time (e.g. a deferred constraint): no exchange.
            return;
        }
        let x = cur.exchange;
        let error = (t == b'E').then(|| error_info(body));
        if !cur.head_sent {
            cur.head_sent = true;
            let info = MessageInfo::DbResponse(DbResponse {
                error: error.clone(),
                rows: None,
            });
            self.events
                .push(Side::Server, x, L7EventKind::Head { offset: at, info });
        }
        let Some(cur) = self.pending.front_mut() else {
            return;
        };
        match t {
            b'D' => cur.data_rows += 1,
            b'C' => {
                let tag = body.strip_suffix(&[0]).unwrap_or(body);
                let n = tag_rows(&String::from_utf8_lossy(tag));
                let n = n.or((cur.data_rows > 0 && !cur.rows_unreliable).then_some(cur.data_rows));
                if let Some(n) = n {
                    cur.tag_rows = Some(cur.tag_rows.unwrap_or(0) + n);
                }
                cur.data_rows = 0;
                if cur.kind == PKind::Exec {
                    self.finish(end, skip);
                }
            }
            b'I' if cur.kind == PKind::Exec => self.finish(end, skip),
            b's' if cur.kind == PKind::Exec => {
                if !cur.rows_unreliable {
                    cur.tag_rows = Some(cur.data_rows);
                }
                self.finish(end, skip);
            }
            b'E' => {
                if cur.error.is_none() {
                    cur.error = error;
                }
                if cur.kind == PKind::Exec {
                    self.finish(end, skip);
                    // The backend skips to the next Sync: later Executes of
                    // this batch get no response.
                    while self.pending.front().is_some_and(|p| p.kind == PKind::Exec) {
                        self.pending.pop_front();
                    }
                }
            }
            _ => {}
        }
    }

    fn finish(&mut self, end: u64, skip: u64) {
        let Some(cur) = self.pending.pop_front() else {
            return;
        };
        let rows = if cur.error.is_some() {
            None
        } else {
            cur.tag_rows
        };
        let info = MessageInfo::DbResponse(DbResponse {
            error: cur.error,
            rows,
        });
        self.events
            .end(Side::Server, cur.exchange, end, Some(info), skip);
    }

    /// ReadyForQuery: ends the simple query / sync group / function call it
    /// answers; Executes still waiting before it were abandoned.
    fn ready(&mut self, at: u64, end: u64, skip: u64) {
        while let Some(cur) = self.pending.front() {
            if cur.kind.ends_at_ready() {
                if cur.kind == PKind::SyncMark {
                    self.pending.pop_front();
                } else {
                    if !cur.head_sent {
                        let x = cur.exchange;
                        let info = MessageInfo::DbResponse(DbResponse::default());
                        self.events
                            .push(Side::Server, x, L7EventKind::Head { offset: at, info });
                    }
                    self.finish(end, skip);
                }
                return;
            }
            // An Execute the backend never answered (framing lost or skipped).
            let cur = self.pending.pop_front();
            if let Some(cur) = cur.filter(|c| c.head_sent) {
                self.events.push(
                    Side::Server,
                    cur.exchange,
                    L7EventKind::End {
                        end: at,
                        info: None,
                    },
                );
            }
        }
    }

    /// Framing lost: find a plausible backend message. `None` when one
    /// starts at 0 (parse normally).
    fn server_scan(&mut self, bytes: &[u8], _truncated: bool) -> Option<Step> {
        for p in 0..bytes.len() {
            if !matches!(
                bytes[p],
                b'Z' | b'C' | b'E' | b'N' | b'1' | b'2' | b'3' | b'n' | b'I' | b's'
            ) {
                continue;
            }
            if plausible_server(&bytes[p..]) == Plausible::Yes {
                return if p == 0 {
                    None
                } else {
                    Some(Step::Consume { used: p, skip: 0 })
                };
            }
        }
        Some(Step::Consume {
            used: bytes.len(),
            skip: 0,
        })
    }
}

fn error_info(body: &[u8]) -> DbError {
    let f = parse_error_fields(body);
    let msg = f.message.unwrap_or_default();
    DbError {
        code: f.code,
        message: match f.severity {
            Some(s) => format!("{s}: {msg}"),
            None => msg,
        },
    }
}

impl Machine for Pg {
    fn turns(&mut self) -> &mut Turns {
        &mut self.turns
    }

    fn step(&mut self, side: Side, bytes: &[u8], at: u64, truncated: bool) -> Step {
        match side {
            Side::Client => {
                let was_lost = self.client_lost;
                let s = self.client_step(bytes, at, truncated);
                if was_lost && !self.client_lost {
                    return self.client_step(bytes, at, truncated);
                }
                s
            }
            Side::Server => self.server_step(bytes, at, truncated),
        }
    }

    fn skipped(&mut self, side: Side, _end: u64) {
        self.events.skipped(side);
    }

    fn lost(&mut self, side: Side, offset: u64) {
        match side {
            Side::Client => {
                if !self.client_lost {
                    self.events.withdraw(Side::Client);
                    self.group = None;
                    self.events.push(
                        Side::Client,
                        self.next_exchange,
                        L7EventKind::Desync {
                            offset,
                            reason: "uncaptured bytes across a PostgreSQL message boundary".into(),
                        },
                    );
                }
                if self.client_phase != ClientPhase::Startup {
                    self.client_phase = ClientPhase::Typed;
                }
                self.client_lost = true;
            }
            Side::Server => {
                self.events.withdraw(Side::Server);
                if let Some(cur) = self.pending.front_mut().filter(|p| p.head_sent) {
                    // Keep the response: it ends at its CommandComplete /
                    // ReadyForQuery once found again.
                    cur.rows_unreliable = true;
                } else if !self.server_lost {
                    let x = self
                        .pending
                        .front()
                        .map(|p| p.exchange)
                        .unwrap_or(self.next_exchange);
                    self.events.push(
                        Side::Server,
                        x,
                        L7EventKind::Desync {
                            offset,
                            reason: "uncaptured bytes across a PostgreSQL message boundary".into(),
                        },
                    );
                }
                if !self.server_lost {
                    self.sent_since_loss = false;
                }
                self.server_lost = true;
            }
        }
    }

    fn stopped(&self, _side: Side) -> bool {
        self.stopped
    }
}

/// Incremental PostgreSQL parser for both directions of a connection.
#[derive(Debug, Default)]
pub struct PostgresParser {
    m: Pg,
    client: SideStream,
    server: SideStream,
}

impl PostgresParser {
    /// A parser positioned at the start of a connection (or anywhere in it).
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes currently buffered (both sides), for tests and metrics.
    pub fn buffered(&self) -> usize {
        self.client.buffered() + self.server.buffered()
    }
}

impl ConnectionParser for PostgresParser {
    fn protocol(&self) -> Protocol {
        Protocol::Postgres
    }

    fn feed(&mut self, side: Side, data: &[u8]) {
        feed_sides(&mut self.m, &mut self.client, &mut self.server, side, data);
    }

    fn gap(&mut self, side: Side, len: u64) {
        gap_sides(&mut self.m, &mut self.client, &mut self.server, side, len);
    }

    fn close(&mut self, side: Side) {
        if side == Side::Server {
            if let Some(cur) = self.m.pending.front().filter(|p| p.head_sent) {
                let x = cur.exchange;
                let offset = self.server.fed();
                self.m.pending.pop_front();
                self.m.events.push(
                    Side::Server,
                    x,
                    L7EventKind::Desync {
                        offset,
                        reason: "connection closed inside a response".into(),
                    },
                );
            }
        }
    }

    fn poll(&mut self) -> Option<L7Event> {
        crate::next_event(&mut self.m.events.queue)
    }

    fn feed_into(&mut self, side: Side, data: &[u8], out: &mut VecDeque<L7Event>) {
        crate::feed_via(self, |p| &mut p.m.events.queue, out, |p| p.feed(side, data));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(t: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![t];
        v.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn events(p: &mut PostgresParser) -> Vec<L7Event> {
        std::iter::from_fn(|| p.poll()).collect()
    }

    fn startup() -> Vec<u8> {
        let body = b"\x00\x03\x00\x00user\x00bob\x00database\x00shop\x00\x00";
        let mut v = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    fn requests(ev: &[L7Event]) -> Vec<DbRequest> {
        ev.iter()
            .filter_map(|e| match &e.kind {
                L7EventKind::Head {
                    info: MessageInfo::DbRequest(r),
                    ..
                } => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    fn responses(ev: &[L7Event]) -> Vec<(u64, DbResponse)> {
        ev.iter()
            .filter_map(|e| match &e.kind {
                L7EventKind::End {
                    info: Some(MessageInfo::DbResponse(r)),
                    ..
                } => Some((e.exchange, r.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn decodes_startup_errors_and_tags() {
        match parse_startup(&startup()).unwrap() {
            Startup::Startup { minor, params } => {
                assert_eq!(minor, 0);
                assert_eq!(params[1], ("database".into(), "shop".into()));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_startup(&[0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f]),
            Ok(Startup::SslRequest)
        );
        assert_eq!(
            parse_startup(&[0, 0, 0, 8, 4, 0xd2, 0x16, 0x30]),
            Ok(Startup::GssEncRequest)
        );
        assert!(parse_startup(&[0, 0, 0, 8, 9, 9, 9, 9]).is_err());
        assert!(parse_startup(&[0, 0]).is_err());
        let f = parse_error_fields(b"SERROR\0VERROR\0C42P01\0Mrelation \"x\" does not exist\0\0");
        assert_eq!(f.code.as_deref(), Some("42P01"));
        assert_eq!(f.severity.as_deref(), Some("ERROR"));
        assert_eq!(tag_rows("INSERT 0 5"), Some(5));
        assert_eq!(tag_rows("SELECT 12"), Some(12));
        assert_eq!(tag_rows("CREATE TABLE"), None);
    }

    #[test]
    fn gssenc_accepted_stops_quietly() {
        let mut p = PostgresParser::new();
        p.feed(Side::Client, &[0, 0, 0, 8, 4, 0xd2, 0x16, 0x30]);
        p.feed(Side::Server, b"G");
        p.feed(Side::Client, &msg(b'Q', b"SELECT 1\0"));
        p.feed(Side::Server, &msg(b'Z', b"I"));
        assert!(events(&mut p).is_empty());
    }

    #[test]
    fn password_messages_are_never_kept() {
        let mut p = PostgresParser::new();
        p.feed(Side::Client, &startup());
        p.feed(Side::Server, &msg(b'R', &[0, 0, 0, 3]));
        p.feed(Side::Client, &msg(b'p', b"hunter2\0"));
        p.feed(Side::Server, &msg(b'R', &[0, 0, 0, 0]));
        p.feed(Side::Server, &msg(b'Z', b"I"));
        p.feed(Side::Client, &msg(b'Q', b"SELECT 1\0"));
        let ev = events(&mut p);
        assert!(!format!("{ev:?}").contains("hunter2"));
        assert_eq!(requests(&ev)[0].namespace.as_deref(), Some("shop"));
    }

    #[test]
    fn describe_close_suspend_and_function_call() {
        let mut p = PostgresParser::new();
        p.feed(Side::Client, &startup());
        p.feed(Side::Server, &msg(b'Z', b"I"));
        // Describe-only group.
        p.feed(
            Side::Client,
            &[msg(b'D', b"Sst1\0"), msg(b'S', b"")].concat(),
        );
        p.feed(
            Side::Server,
            &[msg(b't', b"\0\0"), msg(b'n', b""), msg(b'Z', b"I")].concat(),
        );
        // Named statement, portal with a row limit: PortalSuspended.
        p.feed(
            Side::Client,
            &[
                msg(b'P', b"st1\0SELECT a FROM t\0\0\0"),
                msg(b'B', b"cur\0st1\0\0\0\0\0\0\0"),
                msg(b'E', b"cur\0\0\0\0\x02"),
                msg(b'H', b""),
            ]
            .concat(),
        );
        p.feed(
            Side::Server,
            &[
                msg(b'1', b""),
                msg(b'2', b""),
                msg(b'D', b"\0\x01\0\0\0\x011"),
                msg(b'D', b"\0\x01\0\0\0\x012"),
                msg(b's', b""),
            ]
            .concat(),
        );
        // Resume the portal: an Execute alone.
        p.feed(
            Side::Client,
            &[msg(b'E', b"cur\0\0\0\0\x02"), msg(b'S', b"")].concat(),
        );
        p.feed(
            Side::Server,
            &[
                msg(b'D', b"\0\x01\0\0\0\x013"),
                msg(b'C', b"SELECT 1\0"),
                msg(b'Z', b"I"),
            ]
            .concat(),
        );
        // Close-only group.
        p.feed(
            Side::Client,
            &[msg(b'C', b"Sst1\0"), msg(b'S', b"")].concat(),
        );
        p.feed(Side::Server, &[msg(b'3', b""), msg(b'Z', b"I")].concat());
        // Function call.
        p.feed(Side::Client, &msg(b'F', b"\0\0\x04\xd2\0\0\0\0\0\0"));
        p.feed(
            Side::Server,
            &[msg(b'V', b"\0\0\0\x01x"), msg(b'Z', b"I")].concat(),
        );
        let ev = events(&mut p);
        let ops: Vec<_> = requests(&ev)
            .into_iter()
            .map(|r| (r.operation, r.statement))
            .collect();
        assert_eq!(
            ops,
            vec![
                (Some("DESCRIBE".into()), None),
                (Some("SELECT".into()), Some("st1".into())),
                (Some("SELECT".into()), Some("st1".into())),
                (Some("CLOSE".into()), None),
                (Some("FUNCTION_CALL".into()), None),
            ]
        );
        let rows: Vec<_> = responses(&ev)
            .into_iter()
            .map(|(x, r)| (x, r.rows))
            .collect();
        assert_eq!(
            rows,
            vec![(0, None), (1, Some(2)), (2, Some(1)), (3, None), (4, None)]
        );
    }

    #[test]
    fn plausible_messages() {
        assert_eq!(plausible_client(&msg(b'Q', b"SELECT 1\0")), Plausible::Yes);
        assert_eq!(plausible_client(&msg(b'Q', b"\x01\x02\0")), Plausible::No);
        assert_eq!(plausible_client(&msg(b'S', b"")), Plausible::Yes);
        assert_eq!(plausible_client(&msg(b'E', b"\0\0\0\0\0")), Plausible::Yes);
        assert_eq!(
            plausible_client(&msg(b'P', b"\0SELECT 1\0\0\0")),
            Plausible::Yes
        );
        assert_eq!(
            plausible_client(&msg(b'P', b"\0SELECT 1\0\0\x05")),
            Plausible::No
        );
        assert_eq!(plausible_server(&msg(b'Z', b"I")), Plausible::Yes);
        assert_eq!(plausible_server(&msg(b'C', b"SELECT 3\0")), Plausible::Yes);
        assert_eq!(plausible_server(&msg(b'C', b"select 3\0")), Plausible::No);
        // Found by fuzzing: an empty CommandComplete body.
        assert_eq!(plausible_server(&msg(b'C', b"")), Plausible::No);
        // `s` then junk: not a boundary (the text "it's" in a row looks so).
        let mut b = msg(b's', b"");
        b.extend_from_slice(b"3.00C");
        assert_eq!(plausible_server(&b), Plausible::No);
    }
}
