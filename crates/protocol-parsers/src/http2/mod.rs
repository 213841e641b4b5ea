//! HTTP/2 (RFC 9113) with HPACK (RFC 7541) and gRPC, from captured bytes.
//!
//! [`Http2Parser`] follows both directions of one connection: the client
//! preface, frame headers, header blocks (HEADERS/PUSH_PROMISE +
//! CONTINUATION, padding and priority fields stripped), DATA, RST_STREAM,
//! GOAWAY and SETTINGS; PING, WINDOW_UPDATE, PRIORITY and unknown frame types
//! are skipped. Each stream is one exchange (`exchange` = stream id):
//!
//! * request `Head` when the request header block is complete (`offset` = the
//!   first byte of its HEADERS frame header), request `End` at END_STREAM
//!   (end of that frame);
//! * response `Head` at the first non-1xx response header block; response
//!   `End` at END_STREAM, with `info` carrying the trailers (`grpc-status`,
//!   `grpc-message`, kept headers) and the gRPC message count; a
//!   trailers-only response (one HEADERS with END_STREAM, `:status` and
//!   `grpc-status`) gives `Head` and `End` both carrying the status;
//! * RST_STREAM (from either peer) ends the unfinished messages of the
//!   stream (the response too when it had not started: an `End` without
//!   `Head`): `End` at the current offset of each side, whose `info` has the
//!   synthetic header `(":rst-stream", "<ERROR_NAME> (<code>)")` (a real peer
//!   cannot send that pseudo-header) and no `grpc_status` unless trailers
//!   gave one: consumers treat it as an error;
//! * GOAWAY abandons the streams the sender will not process (ids above its
//!   last-stream-id): a `Desync` with `exchange` = the stream id;
//! * streams are capped ([`MAX_STREAMS`]); past it the oldest stream is
//!   abandoned the same way.
//!
//! `Desync` events with `exchange == 0` are framing losses of a whole
//! direction (its unfinished messages are abandoned, as the
//! [`ConnectionParser`] contract says); with `exchange != 0` they concern that
//! stream only.
//!
//! # gRPC
//!
//! A stream is gRPC when a content-type `application/grpc*` or a header named
//! `grpc-*` (`grpc-timeout`, `grpc-accept-encoding`, `grpc-status`, ...) is
//! seen in the request or the response. Then `grpc = true` on the events from
//! the one where that became known on (a request whose content-type did not
//! decode, joined mid-connection, gets it at its `End` if the response showed
//! gRPC first); `target` stays the `:path` (`/pkg.Service/Method`, see
//! [`grpc::service_method`]), the request `End` and the response `End` carry
//! `grpc_messages` (messages counted from the 5-byte prefixes in DATA
//! payloads, through capture gaps inside message bodies, see
//! [`grpc::MessageCounter`]) and the response carries `grpc_status` /
//! `grpc_message` from the trailers.
//!
//! # Lost bytes
//!
//! `gap()` inside a DATA payload (or any payload) just skips. A gap inside a
//! header block loses the block: the captured prefix is still decoded, the
//! missing fields are listed in `undecoded`, and the direction's HPACK
//! decoder forgets its dynamic table (it may have missed insertions). A gap
//! that covers a frame header loses the framing: `Desync`, then the parser
//! looks for the next frame boundary: a candidate frame header must be
//! plausible ([`frame::FrameHeader::is_plausible`]: known type, flags the
//! type defines, reserved bit clear, length within the peer's
//! SETTINGS_MAX_FRAME_SIZE when known, sane stream id) **and** be followed by
//! another plausible header right after its payload. A candidate that starts
//! just after a gap (or at the first byte the parser saw) and whose payload
//! runs into the next gap is accepted without the chain check (captures keep
//! a prefix of each write, and writes start at frame boundaries). Searching
//! uses a bounded window ([`MAX_BUFFERED`]).
//!
//! # Joining mid-connection
//!
//! The parser may be created on a long-running connection: no preface, HPACK
//! tables unknown, possibly in the middle of a frame. It then starts by
//! looking for a frame boundary (as above) and decodes header blocks with
//! [`hpack::Decoder::new_mid_connection`]: static-table and literal fields
//! decode, references to dynamic entries inserted before the parser joined
//! do not. Those fields stay `None` and are listed in `undecoded` (see
//! [`HttpRequest::undecoded`]); new insertions resynchronise the table (see
//! the [`hpack`] module docs for why that is exact and never serves a wrong
//! or evicted entry). [`Http2Parser::hpack_synchronised`] tells whether a
//! direction's decoder knows its whole dynamic table. Only streams whose
//! request HEADERS were seen produce events.
//!
//! The name of a field that refers to an unknown table entry is unknown too,
//! so `undecoded` lists, when a block had undecodable fields, the fields every
//! such block carries that are missing from what decoded: for requests
//! `:method`, `:scheme`, `:path`, `:authority`; for responses `:status`; for
//! gRPC trailers `grpc-status`; then `<other>` when more fields were
//! undecodable than names listed (a lost part of a block counts as any
//! number of fields).
//!
//! # Bounds
//!
//! At most [`MAX_STREAMS`] open streams, header blocks of at most
//! [`MAX_BUFFERED`] octets (longer ones are decoded as truncated), dynamic
//! tables of at most [`hpack::MAX_TABLE_SIZE`] octets, and a resync window of
//! [`MAX_BUFFERED`] octets per direction (plus the bytes of the current
//! `feed` call). Events wait in a queue until [`ConnectionParser::poll`]
//! takes them: callers poll after each `feed`/`gap`.

pub mod frame;
pub mod grpc;
pub mod hpack;
pub mod huffman;

use std::collections::{BTreeMap, VecDeque};

use crate::{
    ConnectionParser, HttpRequest, HttpResponse, HttpVersion, L7Event, L7EventKind, MessageInfo,
    Protocol, Side,
};
use frame::{flags, kind, FrameHeader, FRAME_HEADER_LEN, MAX_FRAME_LEN, PREFACE};
use hpack::{Decoder, Field};

/// Open streams kept per connection; past it the oldest is abandoned.
pub const MAX_STREAMS: usize = 1024;

/// Largest header block, buffered control frame and resync window (octets).
pub const MAX_BUFFERED: usize = 64 * 1024;

/// Whether the first bytes `side` sent on a connection look like HTTP/2.
///
/// True for the client connection preface (or a prefix of it of at least 3
/// bytes), and, for connections joined midway (either side), for bytes that
/// parse as a chain of plausible frames: two or more frames whose headers are
/// all plausible, or a single plausible frame that ends exactly at the end of
/// `first_bytes`. `port` is not used: the bytes decide.
pub fn looks_like(side: Side, first_bytes: &[u8], _port: u16) -> bool {
    let b = first_bytes;
    let n = b.len().min(PREFACE.len());
    if n >= 3 && b[..n] == PREFACE[..n] {
        return true;
    }
    let mut pos = 0;
    let mut frames = 0;
    while let Some(h) = b.get(pos..).and_then(FrameHeader::parse_slice) {
        if !h.is_plausible(side == Side::Client, MAX_FRAME_LEN) {
            return false;
        }
        frames += 1;
        pos += FRAME_HEADER_LEN + h.length as usize;
        if pos >= b.len() {
            return frames >= 2 || pos == b.len();
        }
    }
    // Ends inside a frame header.
    frames >= 2
}

/// Keep, in HPACK dynamic tables, only values the parser may report.
fn retain_value(name: &[u8]) -> bool {
    name.first() == Some(&b':') || kept_name(name).is_some() || name == b"content-type"
}

fn new_decoder(from_start: bool) -> Decoder {
    let mut d = if from_start {
        Decoder::new()
    } else {
        Decoder::new_mid_connection()
    };
    d.set_retain_filter(Some(retain_value));
    d
}

const SIDES: [Side; 2] = [Side::Client, Side::Server];

/// What the parser does with a frame payload.
#[derive(Debug)]
enum Action {
    /// Collect into `pbuf` (header blocks and small control frames).
    Buffer,
    /// Stream through the gRPC counter of the stream.
    Data,
    /// Ignore.
    Skip,
}

#[derive(Debug)]
enum Mode {
    /// Client side, matching the connection preface.
    Preface,
    /// Reading a frame header.
    Header,
    /// Inside a frame payload.
    Payload,
    /// Looking for a frame boundary in `rbuf`.
    Resync,
}

/// DATA frame progress.
#[derive(Debug, Default)]
struct DataProgress {
    /// Waiting for the pad length octet.
    need_pad_len: bool,
    /// Data octets left (after the pad length octet is known).
    data_left: u64,
}

/// Where a header block belongs.
#[derive(Clone, Copy, Debug)]
struct BlockMeta {
    stream: u32,
    /// Offset of the first frame header of the block.
    start: u64,
    end_stream: bool,
    push: bool,
}

/// A header block being assembled from HEADERS/PUSH_PROMISE + CONTINUATION.
#[derive(Debug)]
struct Block {
    meta: BlockMeta,
    buf: Vec<u8>,
    /// Part of the block was not captured (or exceeded the cap).
    lost: bool,
}

/// One direction of the connection.
struct Dir {
    side: Side,
    /// Stream offset of the next byte given to the state machine.
    pos: u64,
    mode: Mode,
    preface_got: usize,
    hdr: [u8; FRAME_HEADER_LEN],
    hdr_len: usize,
    /// Current frame (Payload mode).
    frame: FrameHeader,
    frame_start: u64,
    remaining: u64,
    action: Action,
    payload_lost: bool,
    data: DataProgress,
    pbuf: Vec<u8>,
    /// Resync buffer: bytes from `rbuf_start`.
    rbuf: Vec<u8>,
    rbuf_start: u64,
    /// `rbuf[0]` directly follows a gap (or is the first byte seen).
    anchor: bool,
    hpack: Decoder,
    blocks: u64,
    block: Option<Block>,
    /// Spare allocation for the next multi-frame header block.
    block_buf: Vec<u8>,
    /// Largest frame this side may send (the peer's SETTINGS_MAX_FRAME_SIZE),
    /// when known.
    max_frame: Option<u32>,
    /// Largest stream id seen in a frame from this side.
    max_stream: u32,
}

impl Dir {
    fn new(side: Side) -> Self {
        Dir {
            side,
            pos: 0,
            mode: match side {
                Side::Client => Mode::Preface,
                Side::Server => Mode::Resync,
            },
            preface_got: 0,
            hdr: [0; FRAME_HEADER_LEN],
            hdr_len: 0,
            frame: FrameHeader::parse(&[0; FRAME_HEADER_LEN]),
            frame_start: 0,
            remaining: 0,
            action: Action::Skip,
            payload_lost: false,
            data: DataProgress::default(),
            pbuf: Vec::new(),
            rbuf: Vec::new(),
            rbuf_start: 0,
            anchor: true,
            hpack: new_decoder(false),
            blocks: 0,
            block: None,
            block_buf: Vec::new(),
            max_frame: None,
            max_stream: 0,
        }
    }

    fn max_len(&self) -> u32 {
        self.max_frame.unwrap_or(MAX_FRAME_LEN)
    }

    fn plausible(&self, h: &FrameHeader) -> bool {
        h.is_plausible(self.side == Side::Client, self.max_len())
    }
}

/// Per-direction state of one stream's message.
#[derive(Debug, Default)]
struct Msg {
    head: bool,
    ended: bool,
    /// Abandoned by a framing loss of this side: no more events.
    abandoned: bool,
    counter: grpc::MessageCounter,
}

impl Msg {
    fn open(&self) -> bool {
        self.head && !self.ended && !self.abandoned
    }
}

#[derive(Debug, Default)]
struct Stream {
    req: Msg,
    resp: Msg,
    grpc: bool,
    /// Response status seen (1xx excluded).
    final_head: bool,
}

impl Stream {
    fn msg(&mut self, side: Side) -> &mut Msg {
        match side {
            Side::Client => &mut self.req,
            Side::Server => &mut self.resp,
        }
    }
    fn done(&self) -> bool {
        (self.req.ended || self.req.abandoned) && (self.resp.ended || self.resp.abandoned)
    }
}

/// Fields collected from one decoded header block.
#[derive(Debug, Default)]
struct Collected {
    method: Option<String>,
    path: Option<String>,
    scheme: Option<String>,
    authority: Option<String>,
    status: Option<u16>,
    status_seen: bool,
    headers: Vec<(crate::model::HeaderName, String)>,
    content_type: Option<String>,
    content_length: Option<u64>,
    grpc_status: Option<u32>,
    grpc_message: Option<String>,
    /// A `grpc-*` header name was seen (only gRPC peers send those).
    grpc_hint: bool,
    /// Fields that could not be decoded (unknown table entries, lost bytes,
    /// invalid UTF-8 in a pseudo-header).
    unknown: usize,
    /// Part of the block was lost or failed to decode.
    incomplete: bool,
    /// `:method` / `:path` were not valid (see [`HttpRequest::invalid`]).
    invalid: Vec<String>,
}

/// The [`KEPT_HEADERS`](crate::KEPT_HEADERS) entry equal to `name`.
fn kept_name(name: &[u8]) -> Option<&'static str> {
    crate::KEPT_HEADERS
        .iter()
        .copied()
        .find(|k| k.len() == name.len() && k.as_bytes() == name)
}

fn utf8(v: &[u8]) -> Option<String> {
    String::from_utf8(v.to_vec()).ok()
}

impl Collected {
    fn field(&mut self, f: Field<'_>) {
        let (name, value) = match f {
            Field::Decoded { name, value } => (name, value),
            Field::Redacted { name } => {
                self.grpc_hint |= name.starts_with(b"grpc-");
                return;
            }
            Field::Unknown => {
                self.unknown += 1;
                return;
            }
        };
        let slot = match name {
            b":method" => {
                self.method = Some(self.checked(value, crate::is_token, crate::INVALID_METHOD));
                return;
            }
            b":path" => {
                self.path =
                    Some(self.checked(value, crate::is_valid_target, crate::INVALID_TARGET));
                return;
            }
            b":scheme" => &mut self.scheme,
            b":authority" => &mut self.authority,
            b":status" => {
                self.status_seen = true;
                self.status = std::str::from_utf8(value)
                    .ok()
                    .filter(|s| s.len() == 3)
                    .and_then(|s| s.parse().ok());
                if self.status.is_none() {
                    self.unknown += 1;
                }
                return;
            }
            _ => {
                self.header(name, value);
                return;
            }
        };
        *slot = utf8(value);
        if slot.is_none() {
            self.unknown += 1;
        }
    }

    /// A `:method` or `:path` value: as received when `valid`, else escaped
    /// (HPACK carries any bytes) and listed in `invalid` as `what`.
    fn checked(&mut self, value: &[u8], valid: fn(&[u8]) -> bool, what: &str) -> String {
        if valid(value) {
            if let Ok(v) = std::str::from_utf8(value) {
                return v.to_owned();
            }
        }
        if !self.invalid.iter().any(|w| w == what) {
            self.invalid.push(what.to_owned());
        }
        crate::escape_invalid(value)
    }

    fn header(&mut self, name: &[u8], value: &[u8]) {
        self.grpc_hint |= name.starts_with(b"grpc-");
        match name {
            b"content-type" => self.content_type = utf8(value),
            b"content-length" => {
                self.content_length = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok())
            }
            b"grpc-status" => {
                self.grpc_status = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok())
            }
            b"grpc-message" => self.grpc_message = grpc::decode_grpc_message(value),
            _ => {}
        }
        if let Some(kept) = kept_name(name) {
            let value = match std::str::from_utf8(value) {
                Ok(v) => v.to_owned(),
                Err(_) => String::from_utf8_lossy(value).into_owned(),
            };
            self.headers.push((kept.into(), value));
        }
    }

    /// gRPC content-type, or a `grpc-*` header (`grpc-timeout`,
    /// `grpc-accept-encoding`, `grpc-status`, ...): only gRPC peers send
    /// those, so the stream is gRPC even when content-type did not decode.
    fn is_grpc(&self) -> bool {
        self.grpc_hint
            || self
                .content_type
                .as_deref()
                .is_some_and(grpc::is_grpc_content_type)
    }

    /// Names for `undecoded`: `expected` fields missing, while undecodable
    /// fields remain to explain them, then `<other>`.
    fn undecoded(&self, expected: &[(&str, bool)]) -> Vec<String> {
        let mut out = Vec::new();
        if self.unknown == 0 && !self.incomplete {
            return out;
        }
        let mut left = if self.incomplete {
            usize::MAX
        } else {
            self.unknown
        };
        for (name, present) in expected {
            if !present && left > 0 {
                out.push(name.to_string());
                left -= 1;
            }
        }
        if left > 0 {
            out.push("<other>".to_string());
        }
        out
    }
}

/// Incremental HTTP/2 parser for both directions of one connection.
pub struct Http2Parser {
    dirs: [Dir; 2],
    streams: BTreeMap<u32, Stream>,
    events: VecDeque<L7Event>,
    /// The client preface was seen at offset 0.
    from_start: bool,
}

impl Default for Http2Parser {
    fn default() -> Self {
        Self::new()
    }
}

impl Http2Parser {
    /// A parser for a new connection, or one joined at any byte.
    pub fn new() -> Self {
        Http2Parser {
            dirs: [Dir::new(Side::Client), Dir::new(Side::Server)],
            streams: BTreeMap::new(),
            events: VecDeque::new(),
            from_start: false,
        }
    }

    /// Whether the HPACK decoder for the header blocks `side` sends knows the
    /// encoder's whole dynamic table (see [`hpack::Decoder::is_synchronised`]).
    pub fn hpack_synchronised(&self, side: Side) -> bool {
        self.dirs[side.index()].hpack.is_synchronised()
    }

    /// The HPACK decoder for the header blocks `side` sends.
    pub fn hpack_decoder(&self, side: Side) -> &Decoder {
        &self.dirs[side.index()].hpack
    }

    /// Whether the connection was seen from its preface.
    pub fn seen_from_start(&self) -> bool {
        self.from_start
    }

    /// Number of streams currently tracked.
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    fn push(&mut self, side: Side, exchange: u64, kind: L7EventKind) {
        self.events.push_back(L7Event {
            side,
            exchange,
            kind,
        });
    }

    // ----- byte intake -------------------------------------------------

    fn feed_dir(&mut self, d: usize, data: &[u8]) {
        let n = match self.dirs[d].mode {
            Mode::Resync => 0,
            _ => self.run(d, data),
        };
        if n < data.len() {
            self.resync_push(d, &data[n..]);
            self.resync_loop(d, false);
        }
    }

    fn resync_push(&mut self, d: usize, data: &[u8]) {
        self.dirs[d].rbuf.extend_from_slice(data);
    }

    /// Try to find a frame boundary; replay the buffer from it.
    fn resync_loop(&mut self, d: usize, at_gap: bool) {
        loop {
            let found = self.try_resync(d, at_gap);
            let Some(p) = found else { return };
            let dir = &mut self.dirs[d];
            let buf = std::mem::take(&mut dir.rbuf);
            dir.pos = dir.rbuf_start + p as u64;
            dir.mode = Mode::Header;
            dir.hdr_len = 0;
            let m = self.run(d, &buf[p..]);
            let rest = &buf[p + m..];
            let dir = &mut self.dirs[d];
            if rest.is_empty() {
                // Keep the allocation.
                let mut buf = buf;
                buf.clear();
                if dir.rbuf.is_empty() {
                    dir.rbuf = buf;
                }
                return;
            }
            dir.rbuf.extend_from_slice(rest);
        }
    }

    /// Position in `rbuf` of an acceptable frame header, if any; drops the
    /// bytes before the first position still undecided.
    fn try_resync(&mut self, d: usize, at_gap: bool) -> Option<usize> {
        let dir = &self.dirs[d];
        let b = &dir.rbuf;
        let mut p = 0;
        let mut result = None;
        while p + FRAME_HEADER_LEN <= b.len() {
            let h = header_at(b, p);
            if dir.plausible(&h) && self.stream_id_sane(d, &h) {
                let end = p + FRAME_HEADER_LEN + h.length as usize;
                let chain_len = FRAME_HEADER_LEN + h.length as usize + FRAME_HEADER_LEN;
                if end + FRAME_HEADER_LEN <= b.len() {
                    let next = header_at(b, end);
                    if dir.plausible(&next) && self.stream_id_sane(d, &next) {
                        result = Some(p);
                        break;
                    }
                } else if p == 0 && dir.anchor && at_gap {
                    // Starts right after a gap and runs into the next one.
                    result = Some(0);
                    break;
                } else if chain_len <= MAX_BUFFERED && !at_gap {
                    // Undecided: wait for more bytes.
                    break;
                }
            }
            p += 1;
        }
        if result.is_some() {
            return result;
        }
        // Drop the positions already rejected.
        let dir = &mut self.dirs[d];
        if at_gap {
            dir.rbuf.clear();
        } else if p > 0 {
            dir.rbuf.drain(..p);
            dir.rbuf_start += p as u64;
            dir.anchor = false;
        }
        None
    }

    /// Stream ids far above anything seen are unlikely (only checked once
    /// some stream was seen).
    fn stream_id_sane(&self, d: usize, h: &FrameHeader) -> bool {
        let seen = self.dirs[d].max_stream.max(self.dirs[1 - d].max_stream);
        seen == 0 || h.stream_id <= seen.saturating_add(2 * MAX_STREAMS as u32)
    }

    /// Run the frame state machine over `data` until it ends or framing is
    /// lost (mode becomes `Resync`). Returns the bytes consumed.
    fn run(&mut self, d: usize, data: &[u8]) -> usize {
        let mut i = 0;
        while i < data.len() {
            match self.dirs[d].mode {
                Mode::Resync => return i,
                Mode::Preface => {
                    let dir = &mut self.dirs[d];
                    let want = PREFACE.len() - dir.preface_got;
                    let n = want.min(data.len() - i);
                    let chunk = &data[i..i + n];
                    if chunk != &PREFACE[dir.preface_got..dir.preface_got + n] {
                        // Not a preface: joined mid-connection.
                        dir.mode = Mode::Resync;
                        dir.rbuf.clear();
                        dir.rbuf.extend_from_slice(&PREFACE[..dir.preface_got]);
                        dir.rbuf_start = 0;
                        dir.anchor = true;
                        dir.pos -= dir.preface_got as u64;
                        dir.preface_got = 0;
                        return i;
                    }
                    dir.preface_got += n;
                    dir.pos += n as u64;
                    i += n;
                    if dir.preface_got == PREFACE.len() {
                        dir.mode = Mode::Header;
                        self.connection_start();
                    }
                }
                Mode::Header => {
                    let dir = &mut self.dirs[d];
                    let n = (FRAME_HEADER_LEN - dir.hdr_len).min(data.len() - i);
                    dir.hdr[dir.hdr_len..dir.hdr_len + n].copy_from_slice(&data[i..i + n]);
                    dir.hdr_len += n;
                    i += n;
                    dir.pos += n as u64;
                    if dir.hdr_len == FRAME_HEADER_LEN {
                        dir.hdr_len = 0;
                        let h = FrameHeader::parse(&dir.hdr);
                        let start = dir.pos - FRAME_HEADER_LEN as u64;
                        if !self.frame_start(d, h, start) {
                            // Implausible header: rescan from its second byte.
                            let dir = &mut self.dirs[d];
                            dir.mode = Mode::Resync;
                            dir.rbuf.clear();
                            let hdr = dir.hdr;
                            dir.rbuf.extend_from_slice(&hdr[1..]);
                            dir.rbuf_start = start + 1;
                            dir.anchor = false;
                            dir.pos = start + 1;
                            return i;
                        }
                    }
                }
                Mode::Payload => {
                    let n = (self.dirs[d].remaining).min((data.len() - i) as u64) as usize;
                    let dir = &mut self.dirs[d];
                    if matches!(dir.action, Action::Buffer)
                        && dir.pbuf.is_empty()
                        && n as u64 == dir.remaining
                        && n <= MAX_BUFFERED
                    {
                        // Whole payload in the input: no copy.
                        dir.pos += n as u64;
                        dir.remaining = 0;
                        self.frame_done(d, &data[i..i + n]);
                        i += n;
                        continue;
                    }
                    self.payload(d, &data[i..i + n]);
                    i += n;
                    let dir = &mut self.dirs[d];
                    dir.pos += n as u64;
                    dir.remaining -= n as u64;
                    if dir.remaining == 0 {
                        self.frame_end(d);
                    }
                }
            }
        }
        i
    }

    fn gap_dir(&mut self, d: usize, mut len: u64) {
        while len > 0 {
            match self.dirs[d].mode {
                Mode::Payload => {
                    let n = self.dirs[d].remaining.min(len);
                    self.payload_gap(d, n);
                    let dir = &mut self.dirs[d];
                    dir.pos += n;
                    dir.remaining -= n;
                    len -= n;
                    if dir.remaining == 0 {
                        self.frame_end(d);
                    }
                }
                Mode::Preface | Mode::Header => {
                    let dir = &mut self.dirs[d];
                    let at = dir.pos - dir.hdr_len as u64;
                    let what = if matches!(dir.mode, Mode::Preface) {
                        "connection preface not captured"
                    } else {
                        "frame header not captured"
                    };
                    dir.hdr_len = 0;
                    dir.preface_got = 0;
                    dir.pos += len;
                    dir.mode = Mode::Resync;
                    dir.rbuf.clear();
                    dir.rbuf_start = dir.pos;
                    dir.anchor = true;
                    self.framing_lost(d, at, what);
                    return;
                }
                Mode::Resync => {
                    if !self.dirs[d].rbuf.is_empty() {
                        // A candidate right after the previous gap may run
                        // into this one.
                        self.resync_loop(d, true);
                        if !matches!(self.dirs[d].mode, Mode::Resync) {
                            continue;
                        }
                    }
                    let dir = &mut self.dirs[d];
                    dir.pos += len;
                    dir.rbuf.clear();
                    dir.rbuf_start = dir.pos;
                    dir.anchor = true;
                    return;
                }
            }
        }
    }

    /// Framing of direction `d` was lost at `offset`.
    fn framing_lost(&mut self, d: usize, offset: u64, reason: &str) {
        let side = SIDES[d];
        // A header block in progress is lost; so is HPACK sync.
        if let Some(block) = self.dirs[d].block.take() {
            self.finish_block(d, block, true, offset);
        }
        self.dirs[d].hpack.lose_sync();
        for s in self.streams.values_mut() {
            let m = s.msg(side);
            if m.head && !m.ended {
                m.abandoned = true;
            }
            // Later DATA of this side cannot be counted reliably.
            m.counter.lose();
        }
        self.streams.retain(|_, s| !s.done());
        self.push(
            side,
            0,
            L7EventKind::Desync {
                offset,
                reason: reason.to_string(),
            },
        );
    }

    fn connection_start(&mut self) {
        self.from_start = true;
        for d in 0..2 {
            let dir = &mut self.dirs[d];
            if dir.blocks == 0 {
                dir.hpack = new_decoder(true);
            }
            if dir.max_frame.is_none() {
                dir.max_frame = Some(frame::DEFAULT_MAX_FRAME_SIZE);
            }
        }
        // Server bytes buffered from offset 0 start at a frame boundary.
        let s = &mut self.dirs[1];
        if matches!(s.mode, Mode::Resync) && s.rbuf_start == 0 {
            let buf = std::mem::take(&mut s.rbuf);
            s.mode = Mode::Header;
            s.pos = 0;
            s.hdr_len = 0;
            let m = self.run(1, &buf);
            if m < buf.len() {
                self.resync_push(1, &buf[m..]);
                self.resync_loop(1, false);
            }
        }
    }

    // ----- frames ------------------------------------------------------

    /// A frame header was read. Returns false when it is not believable.
    fn frame_start(&mut self, d: usize, h: FrameHeader, start: u64) -> bool {
        let dir = &self.dirs[d];
        let known = h.kind <= kind::CONTINUATION;
        // Once in sync, SETTINGS_MAX_FRAME_SIZE is not enforced: the peer's
        // SETTINGS may reach us after frames it already allowed (the two
        // directions are captured independently).
        if known && !h.is_plausible(dir.side == Side::Client, MAX_FRAME_LEN) {
            self.framing_lost(d, start, "implausible frame header");
            return false;
        }
        if !known && h.reserved {
            self.framing_lost(d, start, "reserved bit set");
            return false;
        }
        // A header block must continue with CONTINUATION frames only.
        if let Some(b) = &self.dirs[d].block {
            if h.kind != kind::CONTINUATION || h.stream_id != b.meta.stream {
                let block = self.dirs[d].block.take();
                if let Some(block) = block {
                    self.finish_block(d, block, true, start);
                }
            }
        }
        let dir = &mut self.dirs[d];
        if h.stream_id != 0 && known {
            dir.max_stream = dir.max_stream.max(h.stream_id);
        }
        dir.frame = h;
        dir.frame_start = start;
        dir.remaining = h.length as u64;
        dir.payload_lost = false;
        dir.pbuf.clear();
        dir.action = match h.kind {
            kind::HEADERS
            | kind::CONTINUATION
            | kind::PUSH_PROMISE
            | kind::SETTINGS
            | kind::RST_STREAM
            | kind::GOAWAY => Action::Buffer,
            kind::DATA => {
                dir.data = DataProgress {
                    need_pad_len: h.has(flags::PADDED),
                    data_left: if h.has(flags::PADDED) {
                        0
                    } else {
                        h.length as u64
                    },
                };
                Action::Data
            }
            _ => Action::Skip,
        };
        dir.mode = Mode::Payload;
        if h.length == 0 {
            self.frame_end(d);
        }
        true
    }

    fn payload(&mut self, d: usize, mut bytes: &[u8]) {
        let dir = &mut self.dirs[d];
        match dir.action {
            Action::Skip => {}
            Action::Buffer => {
                let room = MAX_BUFFERED.saturating_sub(dir.pbuf.len());
                if bytes.len() > room {
                    dir.payload_lost = true;
                }
                dir.pbuf.extend_from_slice(&bytes[..bytes.len().min(room)]);
            }
            Action::Data => {
                let sid = dir.frame.stream_id;
                if dir.data.need_pad_len {
                    let Some((&pad, rest)) = bytes.split_first() else {
                        return;
                    };
                    dir.data.need_pad_len = false;
                    let len = dir.frame.length as u64;
                    if pad as u64 + 1 > len {
                        // Invalid padding: the data extent is unknown.
                        dir.data.data_left = 0;
                        if let Some(s) = self.streams.get_mut(&sid) {
                            s.msg(SIDES[d]).counter.lose();
                        }
                        return;
                    }
                    dir.data.data_left = len - 1 - pad as u64;
                    bytes = rest;
                }
                let n = (dir.data.data_left).min(bytes.len() as u64) as usize;
                dir.data.data_left -= n as u64;
                if n > 0 {
                    if let Some(s) = self.streams.get_mut(&sid) {
                        s.msg(SIDES[d]).counter.feed(&bytes[..n]);
                    }
                }
            }
        }
    }

    fn payload_gap(&mut self, d: usize, n: u64) {
        let dir = &mut self.dirs[d];
        match dir.action {
            Action::Skip => {}
            Action::Buffer => dir.payload_lost = true,
            Action::Data => {
                let sid = dir.frame.stream_id;
                let mut n = n;
                let mut lose = false;
                if dir.data.need_pad_len {
                    dir.data.need_pad_len = false;
                    dir.data.data_left = 0;
                    lose = true;
                    n = 0;
                }
                let k = dir.data.data_left.min(n);
                dir.data.data_left -= k;
                if let Some(s) = self.streams.get_mut(&sid) {
                    let c = &mut s.msg(SIDES[d]).counter;
                    if lose {
                        c.lose();
                    } else {
                        c.gap(k);
                    }
                }
            }
        }
    }

    fn frame_end(&mut self, d: usize) {
        let payload = std::mem::take(&mut self.dirs[d].pbuf);
        self.frame_done(d, &payload);
        let dir = &mut self.dirs[d];
        if dir.pbuf.is_empty() {
            let mut payload = payload;
            payload.clear();
            dir.pbuf = payload;
        }
    }

    /// The frame is complete; `payload` is what was buffered of it (or the
    /// whole payload, straight from the input).
    fn frame_done(&mut self, d: usize, payload: &[u8]) {
        let side = SIDES[d];
        let dir = &mut self.dirs[d];
        dir.mode = Mode::Header;
        let h = dir.frame;
        let end = dir.pos;
        let start = dir.frame_start;
        let lost = dir.payload_lost;
        match h.kind {
            kind::DATA if h.has(flags::END_STREAM) => {
                self.message_end(h.stream_id, side, end);
            }
            kind::HEADERS | kind::PUSH_PROMISE => {
                let promise = h.kind == kind::PUSH_PROMISE;
                let (frag, lost) = match frame::header_fragment(&h, payload, promise) {
                    Ok(f) => (f, lost),
                    // Lost or bad padding: keep what follows the fixed fields.
                    Err(_) => (&[][..], true),
                };
                let meta = BlockMeta {
                    stream: h.stream_id,
                    start,
                    end_stream: !promise && h.has(flags::END_STREAM),
                    push: promise,
                };
                if h.has(flags::END_HEADERS) {
                    self.decode_block(d, meta, frag, lost, end);
                } else {
                    let mut buf = std::mem::take(&mut self.dirs[d].block_buf);
                    buf.clear();
                    buf.extend_from_slice(frag);
                    self.dirs[d].block = Some(Block { meta, buf, lost });
                }
            }
            kind::CONTINUATION => match self.dirs[d].block.take() {
                Some(mut block) if block.meta.stream == h.stream_id => {
                    let room = MAX_BUFFERED.saturating_sub(block.buf.len());
                    if payload.len() > room || lost {
                        block.lost = true;
                    }
                    block
                        .buf
                        .extend_from_slice(&payload[..payload.len().min(room)]);
                    if h.has(flags::END_HEADERS) {
                        self.finish_block(d, block, false, end);
                    } else {
                        self.dirs[d].block = Some(block);
                    }
                }
                other => {
                    // Its HEADERS was not seen: whatever it inserted into the
                    // dynamic table is unknown.
                    if let Some(b) = other {
                        self.finish_block(d, b, true, start);
                    }
                    self.dirs[d].hpack.lose_sync();
                }
            },
            kind::SETTINGS if !lost && !h.has(flags::ACK) => {
                if let Ok(it) = frame::settings(payload) {
                    for (id, v) in it {
                        let peer = &mut self.dirs[1 - d];
                        match id {
                            frame::setting::HEADER_TABLE_SIZE => peer.hpack.set_settings_max(v),
                            frame::setting::MAX_FRAME_SIZE
                                if (frame::DEFAULT_MAX_FRAME_SIZE..=MAX_FRAME_LEN).contains(&v) =>
                            {
                                peer.max_frame = Some(v)
                            }
                            _ => {}
                        }
                    }
                }
            }
            kind::RST_STREAM => {
                let code = if lost {
                    None
                } else {
                    frame::rst_stream(payload).ok()
                };
                self.rst_stream(h.stream_id, side, code);
            }
            kind::GOAWAY if !lost => {
                if let Ok((last, code)) = frame::goaway(payload) {
                    self.goaway(side, last, code);
                }
            }
            _ => {}
        }
    }

    // ----- header blocks and messages ------------------------------------

    /// Decode a complete (or abandoned, `cut`) header block ending at `end`.
    fn finish_block(&mut self, d: usize, block: Block, cut: bool, end: u64) {
        self.decode_block(d, block.meta, &block.buf, cut || block.lost, end);
        let dir = &mut self.dirs[d];
        if dir.block_buf.capacity() == 0 {
            let mut buf = block.buf;
            buf.clear();
            dir.block_buf = buf;
        }
    }

    /// Decode header block bytes (`truncated`: its end was lost).
    fn decode_block(&mut self, d: usize, meta: BlockMeta, bytes: &[u8], truncated: bool, end: u64) {
        let side = SIDES[d];
        let dir = &mut self.dirs[d];
        dir.blocks += 1;
        let mut c = Collected::default();
        let r = if truncated {
            dir.hpack.decode_truncated(bytes, |f| c.field(f))
        } else {
            dir.hpack.decode(bytes, |f| c.field(f))
        };
        c.incomplete = truncated || r.is_err();
        if meta.push {
            return;
        }
        let sid = meta.stream;
        match side {
            Side::Client => self.request_block(sid, meta, c, end),
            Side::Server => self.response_block(sid, meta, c, end),
        }
    }

    fn request_block(&mut self, sid: u32, block: BlockMeta, c: Collected, end: u64) {
        if let Some(s) = self.streams.get_mut(&sid) {
            // Trailers (or a second HEADERS) of a request we know.
            if s.req.open() && block.end_stream {
                self.message_end(sid, Side::Client, end);
            }
            return;
        }
        if sid % 2 == 0 {
            return;
        }
        self.make_room();
        let grpc = c.is_grpc();
        let undecoded = c.undecoded(&[
            (":method", c.method.is_some()),
            (":scheme", c.scheme.is_some()),
            (":path", c.path.is_some()),
            (":authority", c.authority.is_some()),
        ]);
        let authority = c.authority.or_else(|| {
            c.headers
                .iter()
                .find(|(n, _)| n == "host")
                .map(|(_, v)| v.clone())
        });
        let mut invalid = c.invalid;
        invalid.sort_by_key(|w| *w != crate::INVALID_METHOD);
        let info = HttpRequest {
            method: c.method,
            target: c.path,
            version: Some(HttpVersion::Http2),
            authority,
            scheme: c.scheme,
            headers: c.headers,
            content_length: c.content_length,
            grpc,
            grpc_messages: None,
            undecoded,
            invalid,
        };
        let stream = Stream {
            grpc,
            req: Msg {
                head: true,
                ..Msg::default()
            },
            ..Stream::default()
        };
        self.streams.insert(sid, stream);
        self.push(
            Side::Client,
            sid as u64,
            L7EventKind::Head {
                offset: block.start,
                info: MessageInfo::HttpRequest(info),
            },
        );
        if block.end_stream {
            self.message_end(sid, Side::Client, end);
        }
    }

    fn response_block(&mut self, sid: u32, block: BlockMeta, c: Collected, end: u64) {
        let Some(s) = self.streams.get_mut(&sid) else {
            return;
        };
        if s.resp.ended || s.resp.abandoned {
            return;
        }
        if c.is_grpc() {
            s.grpc = true;
        }
        if !s.final_head {
            if c.status.is_some_and(|st| (100..200).contains(&st)) {
                return;
            }
            s.final_head = true;
            s.resp.head = true;
            let undecoded = c.undecoded(&[(":status", c.status.is_some())]);
            // Trailers-only response: its fields are the trailers too.
            let trailers = block
                .end_stream
                .then(|| (c.headers.clone(), undecoded.clone()));
            let info = HttpResponse {
                status: c.status,
                version: Some(HttpVersion::Http2),
                headers: c.headers,
                content_length: c.content_length,
                grpc_status: c.grpc_status,
                grpc_message: c.grpc_message.clone(),
                grpc_messages: None,
                undecoded,
            };
            self.push(
                Side::Server,
                sid as u64,
                L7EventKind::Head {
                    offset: block.start,
                    info: MessageInfo::HttpResponse(info),
                },
            );
            if let Some((headers, undecoded)) = trailers {
                let t = Collected {
                    headers,
                    grpc_status: c.grpc_status,
                    grpc_message: c.grpc_message,
                    ..Collected::default()
                };
                self.trailers_end(sid, end, t, undecoded);
            }
            return;
        }
        // Trailers.
        let grpc = s.grpc;
        let undecoded = c.undecoded(&[("grpc-status", !grpc || c.grpc_status.is_some())]);
        if block.end_stream {
            self.trailers_end(sid, end, c, undecoded);
        }
    }

    fn trailers_end(&mut self, sid: u32, end: u64, c: Collected, undecoded: Vec<String>) {
        let Some(s) = self.streams.get_mut(&sid) else {
            return;
        };
        let grpc = s.grpc;
        let info = HttpResponse {
            status: None,
            version: None,
            headers: c.headers,
            content_length: None,
            grpc_status: c.grpc_status,
            grpc_message: c.grpc_message,
            grpc_messages: if grpc { s.resp.counter.count() } else { None },
            undecoded,
        };
        self.finish_msg(
            sid,
            Side::Server,
            end,
            Some(MessageInfo::HttpResponse(info)),
        );
    }

    /// END_STREAM on `side` of stream `sid` (DATA or request trailers).
    fn message_end(&mut self, sid: u32, side: Side, end: u64) {
        let Some(s) = self.streams.get_mut(&sid) else {
            return;
        };
        let grpc = s.grpc;
        let info = match side {
            Side::Client => grpc.then(|| {
                MessageInfo::HttpRequest(HttpRequest {
                    grpc: true,
                    grpc_messages: s.req.counter.count(),
                    ..HttpRequest::default()
                })
            }),
            Side::Server => grpc.then(|| {
                MessageInfo::HttpResponse(HttpResponse {
                    grpc_messages: s.resp.counter.count(),
                    ..HttpResponse::default()
                })
            }),
        };
        self.finish_msg(sid, side, end, info);
    }

    /// Emit `End` for `side` of `sid` if that message is open, and drop the
    /// stream once both messages are over.
    fn finish_msg(&mut self, sid: u32, side: Side, end: u64, info: Option<MessageInfo>) {
        let Some(s) = self.streams.get_mut(&sid) else {
            return;
        };
        let m = s.msg(side);
        if !m.open() {
            return;
        }
        m.ended = true;
        if s.done() {
            self.streams.remove(&sid);
        }
        self.push(side, sid as u64, L7EventKind::End { end, info });
    }

    fn rst_stream(&mut self, sid: u32, _from: Side, code: Option<u32>) {
        let Some(s) = self.streams.get_mut(&sid) else {
            return;
        };
        let grpc = s.grpc;
        let reason = match code {
            Some(c) => format!("{} ({c})", frame::error_code_name(c)),
            None => "unknown (not captured)".to_string(),
        };
        let rst = vec![(":rst-stream".into(), reason)];
        let req_count = s.req.counter.count();
        let resp_count = s.resp.counter.count();
        let req_info = MessageInfo::HttpRequest(HttpRequest {
            grpc,
            grpc_messages: if grpc { req_count } else { None },
            headers: rst.clone(),
            ..HttpRequest::default()
        });
        let resp_info = MessageInfo::HttpResponse(HttpResponse {
            grpc_messages: if grpc { resp_count } else { None },
            headers: rst,
            ..HttpResponse::default()
        });
        let (c_end, s_end) = (self.dirs[0].pos, self.dirs[1].pos);
        self.finish_msg(sid, Side::Client, c_end, Some(req_info));
        if let Some(s) = self.streams.get_mut(&sid) {
            // The response ends here even if it never started: the exchange
            // is over (an `End` without `Head` on the server side).
            s.resp.head = true;
        }
        self.finish_msg(sid, Side::Server, s_end, Some(resp_info));
        if let Some(s) = self.streams.get_mut(&sid) {
            s.req.ended |= !s.req.head;
            if s.done() {
                self.streams.remove(&sid);
            }
        }
        self.streams.retain(|_, s| !s.done());
    }

    fn goaway(&mut self, from: Side, last: u32, code: u32) {
        // Streams initiated by the receiver of the GOAWAY above `last` are
        // not processed.
        let receiver_parity = match from {
            Side::Server => 1,
            Side::Client => 0,
        };
        let doomed: Vec<u32> = self
            .streams
            .range(last.saturating_add(1)..)
            .map(|(&id, _)| id)
            .filter(|id| id % 2 == receiver_parity)
            .collect();
        for sid in doomed {
            self.abandon(
                sid,
                &format!(
                    "stream above GOAWAY last-stream-id {last} ({})",
                    frame::error_code_name(code)
                ),
            );
        }
    }

    /// Drop a stream, with a per-stream `Desync` for each open message.
    fn abandon(&mut self, sid: u32, reason: &str) {
        let Some(s) = self.streams.remove(&sid) else {
            return;
        };
        for (side, m) in [(Side::Client, &s.req), (Side::Server, &s.resp)] {
            // A response not started yet is pending too.
            let pending = m.open() || (side == Side::Server && !m.head && !m.abandoned);
            if pending {
                let offset = self.dirs[side.index()].pos;
                self.push(
                    side,
                    sid as u64,
                    L7EventKind::Desync {
                        offset,
                        reason: reason.to_string(),
                    },
                );
            }
        }
    }

    fn make_room(&mut self) {
        while self.streams.len() >= MAX_STREAMS {
            let Some((&oldest, _)) = self.streams.iter().next() else {
                return;
            };
            self.abandon(oldest, "too many open streams: oldest abandoned");
        }
    }
}

/// The frame header at `b[p..p + 9]` (callers check the bounds; missing
/// bytes read as zero).
fn header_at(b: &[u8], p: usize) -> FrameHeader {
    let mut h = [0u8; FRAME_HEADER_LEN];
    for (i, x) in h.iter_mut().enumerate() {
        *x = b.get(p + i).copied().unwrap_or(0);
    }
    FrameHeader::parse(&h)
}

impl ConnectionParser for Http2Parser {
    fn protocol(&self) -> Protocol {
        Protocol::Http2
    }

    fn feed(&mut self, side: Side, data: &[u8]) {
        if !data.is_empty() {
            self.feed_dir(side.index(), data);
        }
    }

    fn gap(&mut self, side: Side, len: u64) {
        if len > 0 {
            self.gap_dir(side.index(), len);
        }
    }

    fn close(&mut self, side: Side) {
        let d = side.index();
        if let Some(block) = self.dirs[d].block.take() {
            let end = self.dirs[d].pos;
            self.finish_block(d, block, true, end);
        }
        let open: Vec<u32> = self
            .streams
            .iter()
            .filter(|(_, s)| match side {
                Side::Client => s.req.open(),
                Side::Server => s.resp.open() || !s.resp.head,
            })
            .map(|(&id, _)| id)
            .collect();
        let offset = self.dirs[d].pos;
        for sid in open {
            if let Some(s) = self.streams.get_mut(&sid) {
                let m = s.msg(side);
                m.abandoned = true;
                self.push(
                    side,
                    sid as u64,
                    L7EventKind::Desync {
                        offset,
                        reason: "connection closed before the end of the message".to_string(),
                    },
                );
            }
        }
        self.streams.retain(|_, s| !s.done());
    }

    fn poll(&mut self) -> Option<L7Event> {
        crate::next_event(&mut self.events)
    }

    fn feed_into(&mut self, side: Side, data: &[u8], out: &mut VecDeque<L7Event>) {
        crate::feed_via(self, |p| &mut p.events, out, |p| p.feed(side, data));
    }
}

#[cfg(test)]
mod tests;
