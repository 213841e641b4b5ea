//! MySQL / MariaDB client/server protocol parser.
//!
//! One exchange per client command: the `n`-th command (counting from 0) and
//! the response that answers it carry `exchange == n`. Commands without a
//! response (`COM_QUIT`, `COM_STMT_CLOSE`, `COM_STMT_SEND_LONG_DATA`) still
//! use a number, so a request with no response is normal for them.
//!
//! * The handshake is skipped: the server greeting gives the capabilities,
//!   the client's handshake response the database (`db.namespace`); its
//!   authentication data, like every later auth exchange (auth switch, more
//!   data, `COM_CHANGE_USER`), is never kept. A client asking for TLS (SSL
//!   request) or for the compressed protocol stops the parsing of the
//!   connection quietly: the rest is not readable.
//! * `COM_QUERY` / `COM_STMT_PREPARE` report the SQL text (cut to
//!   [`MAX_SQL_LEN`](crate::sql::MAX_SQL_LEN) bytes and marked when longer),
//!   `COM_STMT_EXECUTE` / `COM_STMT_FETCH` / `COM_STMT_CLOSE` /
//!   `COM_STMT_RESET` the statement id and the SQL it was prepared from (the
//!   id is learnt from the `PREPARE_OK` response). `COM_INIT_DB` and a
//!   successful `USE db` (or a session-tracked schema change) set the
//!   namespace of later commands.
//! * Responses: OK (affected rows), ERR (error number as `code`, message
//!   with the SQL state appended as ` (SQLSTATE xxxxx)`), result sets (rows
//!   counted up to the EOF/OK terminator, classic EOF and
//!   `CLIENT_DEPRECATE_EOF` framing told apart by the terminator's length;
//!   result sets chained with `SERVER_MORE_RESULTS_EXISTS` form one
//!   response whose `rows` is the sum of the rows returned and affected).
//!   Row and column bytes are skipped by count.
//! * Payloads of 16 MiB and more (`0xFFFFFF` length continuation) are
//!   followed packet by packet, never buffered.
//! * Joining mid-connection: responses with no known command are skipped;
//!   the parser locks on the first client packet with sequence id 0 and a
//!   plausible command. When uncaptured bytes break the framing of a result
//!   set, the response ends at its terminator if one is seen at the end of a
//!   later read, else where the next command starts (`rows` then unknown).
//!
//! The parser expects a command's bytes to be fed before its response's
//! (capture order); server bytes that answer no known command are skipped.
//! A command found in bytes that waited in the buffer while server bytes
//! were parsed gets no response (its answer may have gone by): a response
//! can be missing, never paired with the wrong command. When the framing of
//! a response is lost, "the next command ends the previous response" relies
//! on MySQL clients not pipelining commands (true of the common drivers).

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

/// Errors of the low-level MySQL decode functions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MysqlError {
    /// The packet is shorter than its fields say.
    #[error("{0} packet truncated")]
    Truncated(&'static str),
    /// A field holds a value the protocol does not allow.
    #[error("malformed {0} packet")]
    Malformed(&'static str),
}

/// Capability flags (`CLIENT_*`).
pub mod caps {
    /// Unset by MariaDB peers, which then send extended capabilities.
    pub const CLIENT_MYSQL: u64 = 1;
    /// The handshake response names a database.
    pub const CONNECT_WITH_DB: u64 = 0x8;
    /// zlib-compressed protocol (not parsed).
    pub const COMPRESS: u64 = 0x20;
    /// The 4.1 protocol (every current client).
    pub const PROTOCOL_41: u64 = 0x200;
    /// TLS: set in an SSL request.
    pub const SSL: u64 = 0x800;
    /// Auth data with a 1-byte length.
    pub const SECURE_CONNECTION: u64 = 0x8000;
    /// Authentication plugins.
    pub const PLUGIN_AUTH: u64 = 0x80000;
    /// Auth data with a length-encoded length.
    pub const PLUGIN_AUTH_LENENC_CLIENT_DATA: u64 = 0x20_0000;
    /// OK packets carry session-state changes (schema, variables).
    pub const SESSION_TRACK: u64 = 0x80_0000;
    /// Result sets end with an OK packet instead of EOF packets.
    pub const DEPRECATE_EOF: u64 = 0x100_0000;
    /// zstd-compressed protocol (not parsed).
    pub const ZSTD_COMPRESSION: u64 = 0x400_0000;
    /// MariaDB extended capability (bit 36): result-set metadata may be
    /// omitted (`metadata follows` byte after the column count).
    pub const MARIADB_CACHE_METADATA: u64 = 1 << 36;
}

const SERVER_MORE_RESULTS_EXISTS: u16 = 0x0008;
const SERVER_STATUS_CURSOR_EXISTS: u16 = 0x0040;
const SERVER_SESSION_STATE_CHANGED: u16 = 0x4000;

/// Bytes of a server packet looked at (OK/ERR/EOF and column counts fit).
const SERVER_KEEP: usize = 2048;
/// Bytes of a non-SQL client command looked at.
const CLIENT_KEEP: usize = 512;
const MAX_STATEMENTS: usize = 1024;
const MAX_PENDING: usize = 256;
/// Continuation length: a payload of 0xFFFFFF bytes is followed by more.
const MAX_PAYLOAD: usize = 0xFF_FFFF;

/// Name of a command byte (`COM_QUERY`, ...), `None` if unknown or only
/// used inside the server (`COM_SLEEP`, `COM_CONNECT`, `COM_TIME`, ...).
pub fn command_name(cmd: u8) -> Option<&'static str> {
    Some(match cmd {
        0x01 => "COM_QUIT",
        0x02 => "COM_INIT_DB",
        0x03 => "COM_QUERY",
        0x04 => "COM_FIELD_LIST",
        0x05 => "COM_CREATE_DB",
        0x06 => "COM_DROP_DB",
        0x07 => "COM_REFRESH",
        0x08 => "COM_SHUTDOWN",
        0x09 => "COM_STATISTICS",
        0x0A => "COM_PROCESS_INFO",
        0x0C => "COM_PROCESS_KILL",
        0x0D => "COM_DEBUG",
        0x0E => "COM_PING",

        0x11 => "COM_CHANGE_USER",
        0x12 => "COM_BINLOG_DUMP",
        0x13 => "COM_TABLE_DUMP",
        0x15 => "COM_REGISTER_SLAVE",
        0x16 => "COM_STMT_PREPARE",
        0x17 => "COM_STMT_EXECUTE",
        0x18 => "COM_STMT_SEND_LONG_DATA",
        0x19 => "COM_STMT_CLOSE",
        0x1A => "COM_STMT_RESET",
        0x1B => "COM_SET_OPTION",
        0x1C => "COM_STMT_FETCH",
        0x1E => "COM_BINLOG_DUMP_GTID",
        0x1F => "COM_RESET_CONNECTION",
        0xFA => "COM_STMT_BULK_EXECUTE",
        _ => return None,
    })
}

/// A packet header: 3-byte little-endian payload length and sequence id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketHeader {
    /// Payload length (0xFFFFFF: more packets follow).
    pub len: usize,
    /// Sequence id (0 for the first packet of a command).
    pub seq: u8,
}

impl PacketHeader {
    /// Decode the 4-byte header at the start of `b`.
    pub fn parse(b: &[u8]) -> Result<PacketHeader, MysqlError> {
        if b.len() < 4 {
            return Err(MysqlError::Truncated("header"));
        }
        Ok(PacketHeader {
            len: b[0] as usize | (b[1] as usize) << 8 | (b[2] as usize) << 16,
            seq: b[3],
        })
    }
}

/// Decode a length-encoded integer; returns the value and its size.
pub fn lenenc_int(b: &[u8]) -> Result<(u64, usize), MysqlError> {
    let first = *b.first().ok_or(MysqlError::Truncated("lenenc"))?;
    let n = match first {
        0..=0xFA => return Ok((first as u64, 1)),
        0xFC => 2,
        0xFD => 3,
        0xFE => 8,
        _ => return Err(MysqlError::Malformed("lenenc")),
    };
    let bytes = b.get(1..1 + n).ok_or(MysqlError::Truncated("lenenc"))?;
    let v = bytes
        .iter()
        .rev()
        .fold(0u64, |acc, &x| (acc << 8) | x as u64);
    Ok((v, 1 + n))
}

fn u16le(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn u32le(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// An OK packet (header `0x00`, or `0xFE` when it ends a result set).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OkPacket {
    /// Rows changed by the statement.
    pub affected_rows: u64,
    /// `LAST_INSERT_ID()`.
    pub last_insert_id: u64,
    /// Server status flags (`SERVER_MORE_RESULTS_EXISTS`, ...).
    pub status: u16,
    /// Warning count.
    pub warnings: u16,
    /// Schema set by the statement (session-state tracking), if reported.
    pub schema: Option<String>,
}

/// Decode an OK packet payload. `session_track`: `CLIENT_SESSION_TRACK`
/// was negotiated (the info string is then length-encoded and may be
/// followed by session-state changes).
pub fn parse_ok(p: &[u8], session_track: bool) -> Result<OkPacket, MysqlError> {
    if p.is_empty() || (p[0] != 0x00 && p[0] != 0xFE) {
        return Err(MysqlError::Malformed("OK"));
    }
    let (affected_rows, a) = lenenc_int(&p[1..])?;
    let (last_insert_id, b) = lenenc_int(&p[1 + a..])?;
    let i = 1 + a + b;
    let status = u16le(p, i).ok_or(MysqlError::Truncated("OK"))?;
    let warnings = u16le(p, i + 2).ok_or(MysqlError::Truncated("OK"))?;
    let mut schema = None;
    if session_track && status & SERVER_SESSION_STATE_CHANGED != 0 {
        schema = session_schema(&p[i + 4..]);
    }
    Ok(OkPacket {
        affected_rows,
        last_insert_id,
        status,
        warnings,
        schema,
    })
}

fn lenenc_str(b: &[u8]) -> Option<(&[u8], usize)> {
    let (n, k) = lenenc_int(b).ok()?;
    let n = usize::try_from(n).ok()?;
    let s = b.get(k..k.checked_add(n)?)?;
    Some((s, k + n))
}

/// `SESSION_TRACK_SCHEMA` from the info + session-state part of an OK packet.
fn session_schema(rest: &[u8]) -> Option<String> {
    let (_info, k) = lenenc_str(rest)?;
    let (state, _) = lenenc_str(&rest[k..])?;
    let mut i = 0;
    let mut found = None;
    while i < state.len() {
        let ty = state[i];
        let (data, n) = lenenc_str(&state[i + 1..])?;
        if ty == 1 {
            let (name, _) = lenenc_str(data)?;
            found = Some(String::from_utf8_lossy(name).into_owned());
        }
        i += 1 + n;
    }
    found
}

/// An ERR packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrPacket {
    /// Error number (1146 ...).
    pub code: u16,
    /// Five-character SQL state, when sent.
    pub sql_state: Option<String>,
    /// Human-readable message.
    pub message: String,
}

/// Decode an ERR packet payload (header `0xFF`).
pub fn parse_err(p: &[u8]) -> Result<ErrPacket, MysqlError> {
    if p.first() != Some(&0xFF) {
        return Err(MysqlError::Malformed("ERR"));
    }
    let code = u16le(p, 1).ok_or(MysqlError::Truncated("ERR"))?;
    let (sql_state, msg) = if p.get(3) == Some(&b'#') && p.len() >= 9 {
        (
            Some(String::from_utf8_lossy(&p[4..9]).into_owned()),
            &p[9..],
        )
    } else {
        (None, &p[3.min(p.len())..])
    };
    Ok(ErrPacket {
        code,
        sql_state,
        message: String::from_utf8_lossy(msg).into_owned(),
    })
}

/// What the server greeting says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Greeting {
    /// Version string (`5.5.5-10.11.19-MariaDB-...`).
    pub server_version: String,
    /// Capabilities, MariaDB extended ones in bits 32..64.
    pub capabilities: u64,
}

/// Decode a protocol-10 server greeting payload.
pub fn parse_greeting(p: &[u8]) -> Result<Greeting, MysqlError> {
    if p.first() != Some(&10) {
        return Err(MysqlError::Malformed("greeting"));
    }
    let nul = p[1..]
        .iter()
        .position(|&b| b == 0)
        .ok_or(MysqlError::Truncated("greeting"))?;
    let server_version = String::from_utf8_lossy(&p[1..1 + nul]).into_owned();
    // version\0, thread id (4), scramble part 1 (8), filler (1)
    let i = 1 + nul + 1 + 4 + 8 + 1;
    let low = u16le(p, i).ok_or(MysqlError::Truncated("greeting"))? as u64;
    // charset (1), status (2), upper capabilities (2)
    let high = u16le(p, i + 5).ok_or(MysqlError::Truncated("greeting"))? as u64;
    let mut capabilities = low | high << 16;
    // auth data length (1), reserved (6), MariaDB extended capabilities (4)
    if capabilities & caps::CLIENT_MYSQL == 0 {
        let ext = u32le(p, i + 7 + 1 + 6).ok_or(MysqlError::Truncated("greeting"))?;
        capabilities |= (ext as u64) << 32;
    }
    Ok(Greeting {
        server_version,
        capabilities,
    })
}

/// What the client's handshake response says (its auth data is skipped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandshakeResponse {
    /// Client capabilities (MariaDB extended ones in bits 32..64).
    pub capabilities: u64,
    /// Only the SSL request prefix was sent: TLS follows.
    pub ssl_request: bool,
    /// User name.
    pub username: Option<String>,
    /// Database to use (`CLIENT_CONNECT_WITH_DB`).
    pub database: Option<String>,
}

/// Decode a client handshake response (protocol 4.1) or SSL request payload.
pub fn parse_handshake_response(p: &[u8]) -> Result<HandshakeResponse, MysqlError> {
    let low = u32le(p, 0).ok_or(MysqlError::Truncated("handshake response"))? as u64;
    if low & caps::PROTOCOL_41 == 0 {
        return Err(MysqlError::Malformed("handshake response"));
    }
    let mut capabilities = low;
    if low & caps::CLIENT_MYSQL == 0 {
        if let Some(ext) = u32le(p, 28) {
            capabilities |= (ext as u64) << 32;
        }
    }
    if p.len() <= 32 {
        return Ok(HandshakeResponse {
            capabilities,
            ssl_request: low & caps::SSL != 0,
            username: None,
            database: None,
        });
    }
    let rest = &p[32..];
    let nul = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or(MysqlError::Truncated("handshake response"))?;
    let username = Some(String::from_utf8_lossy(&rest[..nul]).into_owned());
    let mut i = nul + 1;
    // Skip the auth data: it is never kept.
    if low & caps::PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
        let (n, k) = lenenc_int(&rest[i.min(rest.len())..])?;
        i = i
            .saturating_add(k)
            .saturating_add(usize::try_from(n).unwrap_or(usize::MAX));
    } else if low & caps::SECURE_CONNECTION != 0 {
        let n = *rest
            .get(i)
            .ok_or(MysqlError::Truncated("handshake response"))? as usize;
        i += 1 + n;
    } else {
        let n = rest[i.min(rest.len())..]
            .iter()
            .position(|&b| b == 0)
            .ok_or(MysqlError::Truncated("handshake response"))?;
        i += n + 1;
    }
    let mut database = None;
    if low & caps::CONNECT_WITH_DB != 0 && i < rest.len() {
        let d = &rest[i..];
        let end = d.iter().position(|&b| b == 0).unwrap_or(d.len());
        if end > 0 {
            database = Some(String::from_utf8_lossy(&d[..end]).into_owned());
        }
    }
    Ok(HandshakeResponse {
        capabilities,
        ssl_request: false,
        username,
        database,
    })
}

/// Commands up to this size must be whole to be recognised when looking
/// for the framing; longer ones are judged on their first bytes.
const CHECK_WHOLE: usize = 4096;

/// Whether a client command packet starts at `b`. Short fixed-size commands
/// (`01 00 00 00 0e` is easily found inside other data) must end where the
/// bytes end (a client writes a command and waits) or be followed by
/// another plausible command.
fn plausible_command(b: &[u8]) -> Plausible {
    plausible_command_(b, 0)
}

fn plausible_command_(b: &[u8], depth: u8) -> Plausible {
    let Ok(h) = PacketHeader::parse(b) else {
        return Plausible::NeedMore(4);
    };
    if h.seq != 0 || h.len == 0 {
        return Plausible::No;
    }
    let Some(&cmd) = b.get(4) else {
        return Plausible::NeedMore(5);
    };
    let total = 4 + h.len;
    let fixed = |n: usize| {
        if h.len != n {
            return Plausible::No;
        }
        if b.len() < total {
            return Plausible::NeedMore(total);
        }
        if b.len() == total || depth > 0 {
            return Plausible::Yes;
        }
        match plausible_command_(&b[total..], depth + 1) {
            Plausible::Yes => Plausible::Yes,
            Plausible::No => Plausible::No,
            Plausible::NeedMore(n) => Plausible::NeedMore(total + n),
        }
    };
    match cmd {
        0x01 | 0x09 | 0x0E | 0x0D | 0x1F | 0x0A => fixed(1),
        0x19 | 0x1A | 0x0C => fixed(5),
        0x1C => fixed(9),
        0x17 => {
            if h.len < 10 {
                return Plausible::No;
            }
            match b.get(4..14) {
                // flags (cursor type <= 0x0F), iteration count == 1
                Some(p) if p[5] <= 0x0F && p[6..10] == [1, 0, 0, 0] => {
                    if h.len < 64 {
                        fixed(h.len)
                    } else {
                        Plausible::Yes
                    }
                }
                Some(_) => Plausible::No,
                None => Plausible::NeedMore(14),
            }
        }
        0x02 | 0x03 | 0x16 => {
            if h.len < 2 {
                return Plausible::No;
            }
            let whole = h.len < CHECK_WHOLE;
            let want = if whole { total } else { 4 + 64 };
            let text = &b[5..b.len().min(want)];
            let ok = plausible_text(text)
                && if cmd == 0x02 {
                    !text.contains(&b' ') && h.len < 256
                } else {
                    sql_start(text, true)
                };
            if !ok {
                Plausible::No
            } else if b.len() < want {
                Plausible::NeedMore(want)
            } else {
                Plausible::Yes
            }
        }
        _ => Plausible::No,
    }
}

/// Whether the first bytes `side` sent on a connection look like MySQL:
/// a server greeting (protocol version 10) or a client command packet
/// (3-byte length, sequence 0, known command, plausible content). Port
/// 3306 only decides when the bytes are too few to tell.
pub fn looks_like(side: Side, first_bytes: &[u8], port: u16) -> bool {
    let Ok(h) = PacketHeader::parse(first_bytes) else {
        return false;
    };
    match side {
        Side::Server => {
            if h.seq != 0 || h.len < 20 {
                return port == 3306 && h.seq == 1 && h.len > 0 && h.len < MAX_PAYLOAD;
            }
            let p = &first_bytes[4..first_bytes.len().min(4 + h.len)];
            if p.first() != Some(&10) {
                return false;
            }
            let v = &p[1..];
            match v.iter().position(|&b| b == 0) {
                Some(n) => n > 0 && n < 64 && v[..n].iter().all(|c| c.is_ascii_graphic()),
                None => port == 3306 && v.iter().all(|c| c.is_ascii_graphic()),
            }
        }
        Side::Client => match plausible_command(first_bytes) {
            Plausible::Yes => true,
            Plausible::No => false,
            Plausible::NeedMore(_) => port == 3306,
        },
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Phase {
    /// Nothing seen yet.
    #[default]
    Init,
    /// Greeting seen, handshake response expected.
    Greeted,
    /// Authentication exchange in progress.
    Auth,
    Command,
    /// TLS or compression: nothing more is parsed.
    Stopped,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    /// COM_QUERY; `use_db` when it is `USE db`.
    Query {
        use_db: Option<String>,
    },
    Prepare {
        sql: Option<String>,
    },
    Execute,
    Fetch,
    InitDb(String),
    FieldList,
    /// One string packet (COM_STATISTICS).
    Statistics,
    ChangeUser,
    /// One OK/ERR/EOF packet.
    Simple,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RState {
    /// First packet of the response (or of the next result set).
    First,
    Columns,
    ColEof,
    Rows,
    PrepParams,
    PrepParamsEof,
    PrepCols,
    PrepColsEof,
    FieldList,
    /// LOCAL INFILE: the client sends a file, then the server's OK/ERR.
    Infile,
    /// COM_CHANGE_USER: auth exchange until OK/ERR.
    Auth,
}

#[derive(Debug)]
struct Pending {
    exchange: u64,
    kind: Kind,
    head_sent: bool,
    state: RState,
    /// Definitions left to skip.
    left: u64,
    prep_cols: u64,
    rows: u64,
    counted: bool,
    error: Option<DbError>,
    /// Sequence id of the last response packet seen.
    last_seq: u8,
}

impl Pending {
    fn new(exchange: u64, kind: Kind) -> Self {
        Pending {
            exchange,
            kind,
            head_sent: false,
            state: RState::First,
            left: 0,
            prep_cols: 0,
            rows: 0,
            counted: false,
            error: None,
            last_seq: 0,
        }
    }
}

#[derive(Debug, Default)]
struct MysqlState {
    events: Events,
    phase: Phase,
    capabilities: u64,
    /// Capabilities come from a handshake we saw.
    caps_known: bool,
    /// The server greeting's capabilities.
    server_caps: Option<u64>,
    namespace: Option<String>,
    statements: HashMap<u32, String>,
    last_prepared: Option<u32>,
    next_exchange: u64,
    pending: VecDeque<Pending>,
    /// Client: scanning for a command since this offset.
    client_lost: bool,
    /// Client: the current command spans more packets (exchange, to End).
    client_cont: Option<Option<u64>>,
    /// Server: in the middle of a multi-packet payload.
    server_cont: bool,
    server_lost: bool,
    /// Server bytes before this offset belong to an abandoned response.
    server_discard_until: u64,
    /// Where the two directions stand (kept by the parser).
    turns: Turns,
    /// EOF framing seen in result sets when the handshake was not.
    eof_learnt: Option<bool>,
}

/// The SQL text of a command payload prefix (`payload` excludes the command
/// byte), cut to [`MAX_SQL_LEN`] and marked when cut: when longer, when the
/// packet (`full_len`) was not all captured, or when `more` packets follow.
fn command_sql(payload: &[u8], full_len: usize, more: bool) -> String {
    sql_text(payload, full_len > payload.len() || more)
}

/// `USE db` → `db`.
fn use_target(sql: &str) -> Option<String> {
    let s = sql.trim_start();
    let rest = s.get(..3).filter(|p| p.eq_ignore_ascii_case("use"))?;
    let _ = rest;
    let name = s[3..].trim().trim_end_matches(';').trim();
    if name.is_empty() || !s[3..].starts_with(|c: char| c.is_whitespace() || c == '`') {
        return None;
    }
    Some(name.trim_matches('`').to_owned())
}

impl MysqlState {
    fn desync(&mut self, side: Side, offset: u64, reason: &str) {
        // Name the message left without its End, if any.
        let open = self.events.withdraw(side).map(|e| e.exchange);
        let cont = if side == Side::Client {
            self.client_cont.flatten()
        } else {
            None
        };
        let exchange = open.or(cont).unwrap_or(self.next_exchange);
        self.events.push(
            side,
            exchange,
            L7EventKind::Desync {
                offset,
                reason: reason.to_owned(),
            },
        );
    }

    /// `operation`: fixed (`COM_PING`, `PREPARE`), else the SQL's first
    /// keyword, else `fallback`.
    fn request_op(
        &self,
        operation: Option<&str>,
        fallback: &str,
        query: Option<String>,
        statement: Option<String>,
    ) -> DbRequest {
        let summary = query.as_deref().map(sql::summarize).unwrap_or_default();
        DbRequest {
            system: DbSystem::Mysql,
            operation: operation
                .map(str::to_owned)
                .or(summary.operation)
                .or_else(|| (!fallback.is_empty()).then(|| fallback.to_owned())),
            query,
            target: summary.table,
            namespace: self.namespace.clone(),
            statement,
        }
    }

    fn request(
        &self,
        operation: &str,
        query: Option<String>,
        statement: Option<String>,
    ) -> DbRequest {
        self.request_op(Some(operation), "", query, statement)
    }

    // ----------------------------------------------------------------- client

    fn client_step(&mut self, bytes: &[u8], at: u64, truncated: bool) -> Step {
        if self.client_lost {
            return self.client_scan(bytes, truncated);
        }
        let Ok(h) = PacketHeader::parse(bytes) else {
            return Step::Need(4);
        };
        let total = 4 + h.len;
        if let Some(exchange) = self.client_cont {
            // Continuation of a >= 16 MiB command: skip it.
            let used = bytes.len().min(total);
            let skip = (total - used) as u64;
            if h.len < MAX_PAYLOAD {
                self.client_cont = None;
                if let Some(x) = exchange {
                    self.events
                        .end(Side::Client, x, at + total as u64, None, skip);
                }
            }
            return Step::Consume { used, skip };
        }
        match self.phase {
            Phase::Stopped => Step::Consume {
                used: bytes.len(),
                skip: 0,
            },
            Phase::Greeted if h.seq != 0 => self.handshake_response(bytes, h, truncated),
            Phase::Init if h.seq == 1 => {
                // Capture started between greeting and handshake response?
                let caps_ok = u32le(bytes, 4).is_some_and(|c| c as u64 & caps::PROTOCOL_41 != 0);
                if bytes.len() >= 40 && caps_ok && (36..4096).contains(&h.len) {
                    self.handshake_response(bytes, h, truncated)
                } else {
                    self.client_lost = true;
                    Step::Consume { used: 1, skip: 0 }
                }
            }
            _ if h.seq != 0 => {
                // Auth data, LOCAL INFILE contents, or garbage: never kept.
                if self.phase == Phase::Init {
                    self.client_lost = true;
                    return Step::Consume { used: 1, skip: 0 };
                }
                self.skip_packet(bytes, h)
            }
            _ => self.command(bytes, at, h, truncated),
        }
    }

    fn skip_packet(&mut self, bytes: &[u8], h: PacketHeader) -> Step {
        let total = 4 + h.len;
        let used = bytes.len().min(total);
        if h.len == MAX_PAYLOAD {
            self.client_cont = Some(None);
        }
        Step::Consume {
            used,
            skip: (total - used) as u64,
        }
    }

    fn handshake_response(&mut self, bytes: &[u8], h: PacketHeader, truncated: bool) -> Step {
        let want = 4 + h.len.min(CLIENT_KEEP);
        if bytes.len() < want && !truncated {
            return Step::Need(want);
        }
        let p = &bytes[4..bytes.len().min(4 + h.len)];
        let parsed = if p.len() == h.len || p.len() >= 36 && h.len <= 32 {
            parse_handshake_response(p)
        } else {
            // Cut by a gap: the capabilities may be right, but not for sure.
            Err(MysqlError::Truncated("handshake response"))
        };
        if let Ok(r) = parsed {
            let server = self.server_caps.unwrap_or(u64::MAX);
            self.capabilities = r.capabilities & server;
            self.caps_known = true;
            if r.ssl_request && h.len <= 32 {
                self.phase = Phase::Stopped;
                return Step::Consume {
                    used: bytes.len(),
                    skip: 0,
                };
            }
            if self.capabilities & (caps::COMPRESS | caps::ZSTD_COMPRESSION) != 0 {
                self.phase = Phase::Stopped;
            } else {
                self.phase = Phase::Auth;
            }
            if r.database.is_some() {
                self.namespace = r.database;
            }
        } else {
            self.phase = Phase::Auth;
        }
        self.skip_packet(bytes, h)
    }

    fn command(&mut self, bytes: &[u8], at: u64, h: PacketHeader, truncated: bool) -> Step {
        if h.len == 0 {
            // An empty packet (end of LOCAL INFILE data, or junk).
            return self.skip_packet(bytes, h);
        }
        let Some(&cmd) = bytes.get(4) else {
            return Step::Need(5);
        };
        let Some(name) = command_name(cmd) else {
            if self.phase != Phase::Init {
                self.desync(Side::Client, at, "unknown MySQL command");
            }
            self.client_lost = true;
            return Step::Consume { used: 1, skip: 0 };
        };
        if self.phase == Phase::Init {
            // Judge the first command on what was fed: waiting for more
            // could put it after responses already parsed.
            match plausible_command(bytes) {
                Plausible::Yes => {}
                _ => {
                    self.client_lost = true;
                    return Step::Consume { used: 1, skip: 0 };
                }
            }
        }
        let keep = match cmd {
            0x03 | 0x16 => MAX_SQL_LEN + 1,
            _ => CLIENT_KEEP,
        };
        let want = 4 + h.len.min(keep);
        if bytes.len() < want && !truncated {
            return Step::Need(want);
        }
        self.phase = Phase::Command;
        let total = 4 + h.len;
        let used = bytes.len().min(total);
        let skip = (total - used) as u64;
        let more = h.len == MAX_PAYLOAD;
        let p = &bytes[5..used];
        let full_len = h.len - 1;
        let exchange = self.next_exchange;
        self.next_exchange += 1;

        // A new command: a response we lost track of is over.
        if self.server_lost {
            self.server_lost = false;
            self.server_cont = false;
            self.server_discard_until = self.turns.server_fed;
            if let Some(p) = self.pending.pop_front() {
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

        let stmt_id = u32le(p, 0);
        let stmt_sql = |m: &Self| -> Option<String> {
            let id = match stmt_id? {
                0xFFFF_FFFF => m.last_prepared?,
                id => id,
            };
            m.statements.get(&id).cloned()
        };
        let stmt_str = || stmt_id.map(|id| id.to_string());
        let (req, kind) = match cmd {
            0x03 => {
                let sql = command_sql(p, full_len, more);
                let use_db = use_target(&sql);
                let r = self.request_op(None, "", Some(sql), None);
                (r, Some(Kind::Query { use_db }))
            }
            0x16 => {
                let sql = command_sql(p, full_len, more);
                let r = self.request("PREPARE", Some(sql.clone()), None);
                (r, Some(Kind::Prepare { sql: Some(sql) }))
            }
            0x17 | 0xFA => {
                let sql = stmt_sql(self);
                let r = self.request_op(None, name, sql, stmt_str());
                (r, Some(Kind::Execute))
            }
            0x1C => {
                let sql = stmt_sql(self);
                (self.request(name, sql, stmt_str()), Some(Kind::Fetch))
            }
            0x19 | 0x18 => {
                let sql = stmt_sql(self);
                if cmd == 0x19 {
                    if let Some(id) = stmt_id {
                        self.statements.remove(&id);
                    }
                }
                (self.request(name, sql, stmt_str()), None)
            }
            0x1A => {
                let sql = stmt_sql(self);
                (self.request(name, sql, stmt_str()), Some(Kind::Simple))
            }
            0x02 => {
                let db = String::from_utf8_lossy(p).into_owned();
                let mut r = self.request(name, None, None);
                r.namespace = Some(db.clone());
                (r, Some(Kind::InitDb(db)))
            }
            0x01 => (self.request(name, None, None), None),
            0x04 => (self.request(name, None, None), Some(Kind::FieldList)),
            0x09 => (self.request(name, None, None), Some(Kind::Statistics)),
            0x11 => (self.request(name, None, None), Some(Kind::ChangeUser)),
            _ => (self.request(name, None, None), Some(Kind::Simple)),
        };
        self.events.push(
            Side::Client,
            exchange,
            L7EventKind::Head {
                offset: at,
                info: MessageInfo::DbRequest(req),
            },
        );
        if more {
            self.client_cont = Some(Some(exchange));
        } else {
            self.events
                .end(Side::Client, exchange, at + total as u64, None, skip);
        }
        if let Some(kind) = kind.filter(|_| at >= self.turns.client_stale_until) {
            if self.pending.len() >= MAX_PENDING {
                self.pending.pop_front();
            }
            self.pending.push_back(Pending::new(exchange, kind));
        }
        if cmd == 0x11 {
            self.phase = Phase::Command;
        }
        Step::Consume { used, skip }
    }

    /// Look for a command to lock on. Only what was fed so far is looked
    /// at (waiting for more could put a command after responses already
    /// parsed): a candidate cut short is passed over.
    fn client_scan(&mut self, bytes: &[u8], _truncated: bool) -> Step {
        for p in 0..bytes.len() {
            if plausible_command(&bytes[p..]) == Plausible::Yes {
                if p == 0 {
                    // Synchronised: `step` parses the command now.
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
        if self.server_lost {
            return self.server_scan(bytes, at);
        }
        let Ok(h) = PacketHeader::parse(bytes) else {
            return Step::Need(4);
        };
        let total = 4 + h.len;
        let want = 4 + h.len.min(SERVER_KEEP);
        if self.server_cont {
            // Continuation of a >= 16 MiB payload (a big row): skip.
            self.server_cont = h.len == MAX_PAYLOAD;
            let used = bytes.len().min(total);
            return Step::Consume {
                used,
                skip: (total - used) as u64,
            };
        }
        if bytes.len() < want && !truncated || (bytes.len() < 5 && h.len > 0) {
            // (A packet whose first payload byte was not captured cannot be
            // classified: asking for more under `truncated` loses framing.)
            return Step::Need(want);
        }
        let used = bytes.len().min(total);
        let skip = (total - used) as u64;
        let p = &bytes[4..used];
        let end = at + total as u64;
        self.server_cont = h.len == MAX_PAYLOAD;
        match self.phase {
            Phase::Init => {
                if h.seq == 0 && p.len() == h.len {
                    if let Ok(g) = parse_greeting(p) {
                        // Negotiated capabilities are known once the
                        // client's handshake response is seen too.
                        self.server_caps = Some(g.capabilities);
                        self.phase = Phase::Greeted;
                    }
                }
                // Otherwise a response to a command we never saw.
            }
            Phase::Greeted | Phase::Stopped => {}
            Phase::Auth => match p.first() {
                Some(0x00) => {
                    if let Ok(ok) = parse_ok(p, self.capabilities & caps::SESSION_TRACK != 0) {
                        if ok.schema.is_some() {
                            self.namespace = ok.schema;
                        }
                    }
                    self.phase = Phase::Command;
                }
                Some(0xFF) => self.phase = Phase::Command,
                _ => {}
            },
            Phase::Command => self.response_packet(p, h, at, end, skip),
        }
        Step::Consume { used, skip }
    }

    /// Whether EOF packets are deprecated: from the handshake, else learnt
    /// from the result sets seen so far.
    fn deprecate_eof(&self) -> Option<bool> {
        if self.caps_known {
            Some(self.capabilities & caps::DEPRECATE_EOF != 0)
        } else {
            self.eof_learnt
        }
    }

    fn response_packet(&mut self, p: &[u8], h: PacketHeader, at: u64, end: u64, skip: u64) {
        let session_track = self.caps_known && self.capabilities & caps::SESSION_TRACK != 0;
        let deprecate = self.deprecate_eof();
        let Some(cur) = self.pending.front_mut() else {
            return; // answers nothing we know of
        };
        let exchange = cur.exchange;
        let first = p.first().copied();
        let is_err = first == Some(0xFF);
        let is_eof = first == Some(0xFE) && h.len < 9;
        let continues = cur.head_sent && h.seq == cur.last_seq.wrapping_add(1);
        cur.last_seq = h.seq;
        if !cur.head_sent {
            cur.head_sent = true;
            let error = if is_err { err_info(p) } else { None };
            self.events.push(
                Side::Server,
                exchange,
                L7EventKind::Head {
                    offset: at,
                    info: MessageInfo::DbResponse(DbResponse { error, rows: None }),
                },
            );
        }
        let Some(cur) = self.pending.front_mut() else {
            return;
        };
        // MariaDB progress report (an ERR with code 0xFFFF): not an answer.
        if is_err && u16le(p, 1) == Some(0xFFFF) {
            return;
        }
        let mut done = false;
        let mut redo = false;
        match cur.state {
            RState::First => match first {
                Some(0xFF) => {
                    cur.error = err_info(p);
                    done = true;
                }
                Some(0x00) if matches!(cur.kind, Kind::Prepare { .. }) => {
                    let id = u32le(p, 1);
                    let cols = u16le(p, 5).unwrap_or(0) as u64;
                    let params = u16le(p, 7).unwrap_or(0) as u64;
                    if let (Some(id), Kind::Prepare { sql }) = (id, &mut cur.kind) {
                        if let Some(sql) = sql.take() {
                            if self.statements.len() >= MAX_STATEMENTS {
                                if let Some(k) = self.statements.keys().next().copied() {
                                    self.statements.remove(&k);
                                }
                            }
                            self.statements.insert(id, sql);
                        }
                        self.last_prepared = Some(id);
                    }
                    cur.prep_cols = cols;
                    if params > 0 {
                        cur.state = RState::PrepParams;
                        cur.left = params;
                    } else if cols > 0 {
                        cur.state = RState::PrepCols;
                        cur.left = cols;
                    } else {
                        done = true;
                    }
                }
                Some(0x00) | Some(0xFE)
                    if !matches!(cur.kind, Kind::Statistics | Kind::FieldList | Kind::Fetch) =>
                {
                    // OK (or EOF for COM_SET_OPTION / COM_DEBUG).
                    let more = match parse_ok(p, session_track) {
                        Ok(ok) => {
                            if matches!(cur.kind, Kind::Query { .. } | Kind::Execute) {
                                cur.rows += ok.affected_rows;
                                cur.counted = true;
                            }
                            if let Some(s) = ok.schema {
                                self.namespace = Some(s);
                            }
                            ok.status & SERVER_MORE_RESULTS_EXISTS != 0
                        }
                        Err(_) => {
                            eof_status(p).is_some_and(|s| s & SERVER_MORE_RESULTS_EXISTS != 0)
                        }
                    };
                    let Some(cur) = self.pending.front_mut() else {
                        return;
                    };
                    if matches!(cur.kind, Kind::ChangeUser) && first == Some(0xFE) {
                        cur.state = RState::Auth;
                    } else if !more {
                        done = true;
                    }
                }
                _ => match cur.kind {
                    Kind::Query { .. } | Kind::Execute => {
                        if first == Some(0xFB) {
                            cur.state = RState::Infile;
                        } else if let Ok((n, k)) = lenenc_int(p) {
                            cur.counted = true;
                            // MariaDB: a `metadata follows` byte after the count.
                            let skip_meta = p.len() == k + 1 && p[k] == 0;
                            if skip_meta || n == 0 {
                                cur.state = RState::ColEof;
                            } else {
                                cur.state = RState::Columns;
                                cur.left = n;
                            }
                        } else {
                            done = true;
                        }
                    }
                    Kind::Fetch => {
                        cur.counted = true;
                        if is_eof {
                            done =
                                eof_status(p).is_none_or(|s| s & SERVER_MORE_RESULTS_EXISTS == 0);
                        } else {
                            cur.rows += 1;
                            cur.state = RState::Rows;
                        }
                    }
                    Kind::FieldList => {
                        cur.state = RState::FieldList;
                        if is_eof {
                            done = true;
                        }
                    }
                    Kind::ChangeUser => cur.state = RState::Auth,
                    _ => done = true,
                },
            },
            RState::Columns => {
                cur.left = cur.left.saturating_sub(1);
                if cur.left == 0 {
                    cur.state = RState::ColEof;
                }
            }
            RState::ColEof => {
                self.eof_learnt = Some(!(first == Some(0xFE) && h.len == 5));
                let Some(cur) = self.pending.front_mut() else {
                    return;
                };
                if first == Some(0xFE) && h.len == 5 {
                    let status = eof_status(p).unwrap_or(0);
                    if status & SERVER_STATUS_CURSOR_EXISTS != 0 {
                        done = true;
                    } else {
                        cur.state = RState::Rows;
                    }
                } else {
                    cur.state = RState::Rows;
                    redo = true;
                }
            }
            RState::Rows => {
                if is_err {
                    cur.error = err_info(p);
                    done = true;
                } else if first == Some(0xFE) && h.len < MAX_PAYLOAD {
                    let status = if h.len < 7 {
                        eof_status(p)
                    } else {
                        parse_ok(p, session_track).ok().map(|o| o.status)
                    };
                    if status.is_some_and(|s| s & SERVER_MORE_RESULTS_EXISTS != 0) {
                        cur.state = RState::First;
                    } else {
                        done = true;
                    }
                } else {
                    cur.rows += 1;
                }
            }
            RState::PrepParams | RState::PrepCols => {
                cur.left = cur.left.saturating_sub(1);
                if cur.left == 0 {
                    cur.state = if cur.state == RState::PrepParams {
                        RState::PrepParamsEof
                    } else {
                        RState::PrepColsEof
                    };
                    if deprecate == Some(true) {
                        redo_prep_eof(cur, &mut done);
                    }
                }
            }
            RState::PrepParamsEof | RState::PrepColsEof => {
                if first == Some(0xFE) && h.len == 5 && continues {
                    redo_prep_eof(cur, &mut done);
                } else if cur.state == RState::PrepParamsEof && cur.prep_cols > 0 {
                    // No EOF after the parameters (deprecated): a column.
                    cur.state = RState::PrepCols;
                    cur.left = cur.prep_cols;
                    redo = true;
                } else {
                    // No EOF (deprecated): the response ended before this packet.
                    let x = cur.exchange;
                    self.finish(x, at, 0);
                    return self.response_packet(p, h, at, end, skip);
                }
            }
            RState::FieldList => {
                if is_err {
                    cur.error = err_info(p);
                    done = true;
                } else if is_eof {
                    done = true;
                }
            }
            RState::Infile => {
                if is_err {
                    cur.error = err_info(p);
                } else if let Ok(ok) = parse_ok(p, session_track) {
                    cur.rows += ok.affected_rows;
                    cur.counted = true;
                }
                done = true;
            }
            RState::Auth => {
                if is_err {
                    cur.error = err_info(p);
                    done = true;
                } else if first == Some(0x00) {
                    done = true;
                }
            }
        }
        if redo {
            return self.response_packet(p, h, at, end, skip);
        }
        if done {
            self.finish(exchange, end, skip);
        }
    }

    fn finish(&mut self, exchange: u64, end: u64, skip: u64) {
        let Some(cur) = self.pending.pop_front() else {
            return;
        };
        match &cur.kind {
            Kind::InitDb(db) if cur.error.is_none() => self.namespace = Some(db.clone()),
            Kind::Query { use_db: Some(db) } if cur.error.is_none() => {
                self.namespace = Some(db.clone())
            }
            _ => {}
        }
        let rows = match cur.kind {
            Kind::Query { .. } | Kind::Execute | Kind::Fetch
                if cur.counted && cur.error.is_none() =>
            {
                Some(cur.rows)
            }
            _ => None,
        };
        let info = MessageInfo::DbResponse(DbResponse {
            error: cur.error,
            rows,
        });
        self.events
            .end(Side::Server, exchange, end, Some(info), skip);
    }

    /// Lost framing in a response: look for its terminator at the end of
    /// what was read (the server sends nothing after it until the next
    /// command).
    fn server_scan(&mut self, bytes: &[u8], at: u64) -> Step {
        let n = bytes.len();
        let all = Step::Consume { used: n, skip: 0 };
        let Some(cur) = self.pending.front() else {
            return all;
        };
        if !cur.head_sent {
            return all;
        }
        let exchange = cur.exchange;
        // Classic EOF: 05 00 00 seq FE w w s s
        let eof_at = n
            .checked_sub(9)
            .filter(|&i| bytes[i..i + 3] == [5, 0, 0] && bytes[i + 4] == 0xFE);
        // DEPRECATE_EOF OK: 07 00 00 seq FE 00 00 s s w w
        let ok_at = n.checked_sub(11).filter(|&i| {
            bytes[i..i + 3] == [7, 0, 0]
                && bytes[i + 4] == 0xFE
                && bytes[i + 5] < 0xFB
                && bytes[i + 6] < 0xFB
        });
        let status = match (eof_at, ok_at) {
            (Some(i), _) => u16le(bytes, i + 7),
            (_, Some(i)) => u16le(bytes, i + 7),
            _ => None,
        };
        if let Some(status) = status {
            self.server_lost = false;
            self.server_cont = false;
            if status & SERVER_MORE_RESULTS_EXISTS != 0 {
                if let Some(cur) = self.pending.front_mut() {
                    cur.state = RState::First;
                    cur.counted = false;
                }
                return all;
            }
            let Some(cur) = self.pending.pop_front() else {
                return all;
            };
            let _ = cur;
            self.events.push(
                Side::Server,
                exchange,
                L7EventKind::End {
                    end: at + n as u64,
                    info: None,
                },
            );
        }
        all
    }
}

fn redo_prep_eof(cur: &mut Pending, done: &mut bool) {
    if cur.state == RState::PrepParamsEof && cur.prep_cols > 0 {
        cur.state = RState::PrepCols;
        cur.left = cur.prep_cols;
    } else {
        *done = true;
    }
}

fn eof_status(p: &[u8]) -> Option<u16> {
    if p.first() == Some(&0xFE) && p.len() >= 5 {
        u16le(p, 3)
    } else {
        None
    }
}

fn err_info(p: &[u8]) -> Option<DbError> {
    let e = parse_err(p).ok()?;
    let message = match e.sql_state {
        Some(s) => format!("{} (SQLSTATE {s})", e.message),
        None => e.message,
    };
    Some(DbError {
        code: Some(e.code.to_string()),
        message,
    })
}

impl Machine for MysqlState {
    fn turns(&mut self) -> &mut Turns {
        &mut self.turns
    }

    fn step(&mut self, side: Side, bytes: &[u8], at: u64, truncated: bool) -> Step {
        match side {
            Side::Client => {
                let was_lost = self.client_lost;
                let s = self.client_step(bytes, at, truncated);
                if was_lost && !self.client_lost {
                    // Synchronised on a command at `at`: parse it now.
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
                if self.phase == Phase::Stopped {
                    return;
                }
                if !self.client_lost {
                    self.desync(
                        Side::Client,
                        offset,
                        "uncaptured bytes across a MySQL packet boundary",
                    );
                }
                self.client_cont = None;
                self.client_lost = true;
            }
            Side::Server => {
                self.events.withdraw(Side::Server);
                self.server_cont = false;
                let in_response = self.pending.front().is_some_and(|p| p.head_sent);
                if !in_response
                    && !self.server_lost
                    && self.phase == Phase::Command
                    && !self.pending.is_empty()
                {
                    // The lost bytes may hold the start of the response.
                    if let Some(p) = self.pending.front() {
                        let x = p.exchange;
                        self.events.push(
                            Side::Server,
                            x,
                            L7EventKind::Desync {
                                offset,
                                reason: "uncaptured bytes across a MySQL packet boundary".into(),
                            },
                        );
                    }
                }
                self.server_lost = true;
            }
        }
    }

    fn stopped(&self, _side: Side) -> bool {
        self.phase == Phase::Stopped
    }
}

/// Incremental MySQL / MariaDB parser for both directions of a connection.
#[derive(Debug, Default)]
pub struct MysqlParser {
    m: MysqlState,
    client: SideStream,
    server: SideStream,
}

impl MysqlParser {
    /// A parser positioned at the start of a connection (or anywhere in it).
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes currently buffered (both sides), for tests and metrics.
    pub fn buffered(&self) -> usize {
        self.client.buffered() + self.server.buffered()
    }
}

impl ConnectionParser for MysqlParser {
    fn protocol(&self) -> Protocol {
        Protocol::Mysql
    }

    fn feed(&mut self, side: Side, data: &[u8]) {
        feed_sides(&mut self.m, &mut self.client, &mut self.server, side, data);
    }

    fn gap(&mut self, side: Side, len: u64) {
        gap_sides(&mut self.m, &mut self.client, &mut self.server, side, len);
    }

    fn close(&mut self, side: Side) {
        if side == Side::Server && self.m.server_lost {
            if let Some(p) = self.m.pending.pop_front() {
                if p.head_sent {
                    let offset = self.server.fed();
                    self.m.events.push(
                        Side::Server,
                        p.exchange,
                        L7EventKind::Desync {
                            offset,
                            reason: "connection closed inside a response".into(),
                        },
                    );
                }
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

    fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = (payload.len() as u32).to_le_bytes()[..3].to_vec();
        v.push(seq);
        v.extend_from_slice(payload);
        v
    }

    fn events(p: &mut MysqlParser) -> Vec<L7Event> {
        std::iter::from_fn(|| p.poll()).collect()
    }

    /// MariaDB 10.11's greeting, as recorded in the fixtures.
    const GREETING: &[u8] = b"\n5.5.5-10.11.19-MariaDB-0+deb12u1\x00\x08\x00\x00\x00#A_<MMy;\x00\xfe\xf7-\x02\x00\xff\x81\x15\x00\x00\x00\x00\x00\x00\x1d\x00\x00\x00Y/~MEFk=C:7G\x00mysql_native_password\x00";

    #[test]
    fn decodes_lenenc_ints() {
        assert_eq!(lenenc_int(&[0xFA]), Ok((250, 1)));
        assert_eq!(lenenc_int(&[0xFC, 0x34, 0x12]), Ok((0x1234, 3)));
        assert_eq!(lenenc_int(&[0xFD, 1, 2, 3]), Ok((0x030201, 4)));
        assert_eq!(
            lenenc_int(&[0xFE, 1, 0, 0, 0, 0, 0, 0, 1]),
            Ok((0x0100_0000_0000_0001, 9))
        );
        assert_eq!(lenenc_int(&[0xFC, 1]), Err(MysqlError::Truncated("lenenc")));
        assert_eq!(lenenc_int(&[0xFF]), Err(MysqlError::Malformed("lenenc")));
        assert_eq!(lenenc_int(&[]), Err(MysqlError::Truncated("lenenc")));
    }

    #[test]
    fn decodes_ok_err_and_session_schema() {
        let ok = parse_ok(b"\x00\x03\x00\x01\x00\x00\x00", false).unwrap();
        assert_eq!((ok.affected_rows, ok.status), (3, 0x0001));
        // mysqlclient's COM_INIT_DB answer: session-tracked schema change.
        let ok = parse_ok(b"\x00\x00\x00\x01@\x00\x00\x00\x0b\x01\t\x08ztfx_db2", true).unwrap();
        assert_eq!(ok.schema.as_deref(), Some("ztfx_db2"));
        let e = parse_err(b"\xffz\x04#42S02Table 'ztfx_db.ztfx_missing' doesn't exist").unwrap();
        assert_eq!(e.code, 1146);
        assert_eq!(e.sql_state.as_deref(), Some("42S02"));
        assert_eq!(e.message, "Table 'ztfx_db.ztfx_missing' doesn't exist");
        assert!(parse_err(b"\xff").is_err());
        assert!(parse_ok(b"\x00\xfc", false).is_err());
    }

    #[test]
    fn decodes_greeting() {
        let g = parse_greeting(GREETING).unwrap();
        assert_eq!(g.server_version, "5.5.5-10.11.19-MariaDB-0+deb12u1");
        assert!(g.capabilities & caps::DEPRECATE_EOF != 0);
        assert!(g.capabilities & caps::MARIADB_CACHE_METADATA != 0);
        assert!(parse_greeting(&GREETING[..30]).is_err());
    }

    #[test]
    fn ssl_request_stops_parsing_quietly() {
        let mut p = MysqlParser::new();
        p.feed(Side::Server, &packet(0, GREETING));
        // SSL request: capabilities with CLIENT_SSL, max packet, charset, filler.
        let mut ssl = (caps::PROTOCOL_41 | caps::SSL | caps::SECURE_CONNECTION) as u32;
        ssl |= 0x8; // CONNECT_WITH_DB
        let mut payload = ssl.to_le_bytes().to_vec();
        payload.extend_from_slice(&[0, 0, 0, 1, 45]);
        payload.extend_from_slice(&[0; 23]);
        p.feed(Side::Client, &packet(1, &payload));
        // TLS records follow, on both sides, with a query-looking payload.
        p.feed(
            Side::Client,
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        );
        p.feed(Side::Client, &packet(0, b"\x03SELECT 1"));
        p.feed(
            Side::Server,
            b"\x16\x03\x03\x00\x7a\x02\x00\x00\x76\x03\x03",
        );
        p.gap(Side::Client, 100);
        assert!(events(&mut p).is_empty());
        assert_eq!(p.buffered(), 0);
    }

    #[test]
    fn compressed_protocol_stops_parsing() {
        let mut p = MysqlParser::new();
        p.feed(Side::Server, &packet(0, GREETING));
        let c = (caps::PROTOCOL_41 | caps::COMPRESS | caps::SECURE_CONNECTION) as u32;
        let mut payload = c.to_le_bytes().to_vec();
        payload.extend_from_slice(&[0, 0, 0, 1, 45]);
        payload.extend_from_slice(&[0; 23]);
        payload.extend_from_slice(b"u\0\x00");
        p.feed(Side::Client, &packet(1, &payload));
        p.feed(Side::Client, &packet(0, b"\x03SELECT 1"));
        assert!(events(&mut p).is_empty());
    }

    #[test]
    fn local_infile_and_field_list() {
        let mut p = MysqlParser::new();
        p.feed(
            Side::Client,
            &packet(0, b"\x03LOAD DATA LOCAL INFILE 'x.csv' INTO TABLE t"),
        );
        p.feed(Side::Server, &packet(1, b"\xfbx.csv"));
        p.feed(Side::Client, &packet(2, b"1,2\n3,4\n"));
        p.feed(Side::Client, &packet(3, b""));
        p.feed(Side::Server, &packet(4, b"\x00\x02\x00\x02\x00\x00\x00"));
        p.feed(Side::Client, &packet(0, b"\x04t\x00"));
        p.feed(
            Side::Server,
            &packet(1, &{
                let mut d = b"\x03def\x01d\x01t\x01t\x01a\x01a\x0c".to_vec();
                d.extend_from_slice(&[0; 12]);
                d
            }),
        );
        p.feed(Side::Server, &packet(2, b"\xfe\x00\x00\x02\x00"));
        let ev = events(&mut p);
        let ends: Vec<_> = ev
            .iter()
            .filter_map(|e| match &e.kind {
                L7EventKind::End {
                    info: Some(MessageInfo::DbResponse(r)),
                    end,
                } if e.side == Side::Server => Some((e.exchange, *end, r.rows)),
                _ => None,
            })
            .collect();
        assert_eq!(ends.len(), 2, "{ev:?}");
        assert_eq!(ends[0].0, 0);
        assert_eq!(ends[0].2, Some(2));
        assert_eq!(ends[1].0, 1);
        let tables: Vec<_> = ev
            .iter()
            .filter_map(|e| match &e.kind {
                L7EventKind::Head {
                    info: MessageInfo::DbRequest(r),
                    ..
                } => Some(r.target.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(tables[0].as_deref(), Some("t"));
    }

    #[test]
    fn use_statement_sets_namespace() {
        assert_eq!(use_target("USE `shop`;"), Some("shop".into()));
        assert_eq!(use_target("use shop"), Some("shop".into()));
        assert_eq!(use_target("user_x"), None);
        let mut p = MysqlParser::new();
        p.feed(Side::Client, &packet(0, b"\x03USE shop"));
        p.feed(Side::Server, &packet(1, b"\x00\x00\x00\x02\x00\x00\x00"));
        p.feed(Side::Client, &packet(0, b"\x03SELECT 1"));
        let ns = events(&mut p).into_iter().filter_map(|e| match e.kind {
            L7EventKind::Head {
                info: MessageInfo::DbRequest(r),
                ..
            } => Some(r.namespace),
            _ => None,
        });
        assert_eq!(ns.collect::<Vec<_>>(), vec![None, Some("shop".into())]);
    }

    #[test]
    fn empty_packet_then_command() {
        // Found by fuzzing: an empty packet followed by more bytes.
        let mut p = MysqlParser::new();
        p.feed(Side::Client, &packet(0, b"\x03SELECT 1"));
        p.feed(Side::Client, &[0, 0, 0, 0, 3, 0, 0, 0]);
        p.feed(Side::Client, &packet(0, b"\x0e"));
        let heads = events(&mut p)
            .into_iter()
            .filter(|e| matches!(e.kind, L7EventKind::Head { .. }))
            .count();
        assert_eq!(heads, 2);
    }

    #[test]
    fn plausible_commands() {
        assert_eq!(plausible_command(&packet(0, b"\x0e")), Plausible::Yes);
        assert_eq!(
            plausible_command(&packet(0, b"\x03SELECT 1")),
            Plausible::Yes
        );
        assert_eq!(
            plausible_command(&packet(1, b"\x03SELECT 1")),
            Plausible::No
        );
        assert_eq!(
            plausible_command(&packet(0, b"\x03\x01\x02")),
            Plausible::No
        );
        assert_eq!(plausible_command(&packet(0, b"\x42abc")), Plausible::No);
        // A ping followed by junk is not a command boundary.
        let mut b = packet(0, b"\x0e");
        b.extend_from_slice(b"\xff\xff\xff\xff\xff");
        assert_eq!(plausible_command(&b), Plausible::No);
        assert!(looks_like(Side::Server, &packet(0, GREETING), 1));
        assert!(!looks_like(Side::Server, b"HTTP/1.1 200 OK\r\n", 3306));
    }
}
