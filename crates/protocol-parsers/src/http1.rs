//! HTTP/1.0 and HTTP/1.1.
//!
//! [`Http1Parser`] follows both directions of one connection. Heads are
//! decoded with `httparse` as soon as they are complete (a head may arrive one
//! byte at a time); bodies are skipped by count and never stored.
//!
//! # What the parser reports
//! * One `Head` per request and one per final response, then one `End` when
//!   the message's body was consumed. Requests get exchange numbers 0, 1, 2,
//!   ... in the order they are parsed; a response carries the exchange of the
//!   request it answers (FIFO, as HTTP/1.1 requires, so pipelining pairs
//!   right).
//! * **Interim responses** (`1xx` other than `101`: `100 Continue`,
//!   `103 Early Hints`, ...) produce **no event at all**: their bytes are
//!   consumed silently, they do not complete the exchange, and the final
//!   response that follows carries the exchange's single response `Head`
//!   (whose offset is the final response's first byte).
//! * `101 Switching Protocols` and a `2xx` answer to `CONNECT` are final
//!   responses (`Head` then `End`, no body); after them the connection no
//!   longer speaks HTTP/1 and every later byte of both sides is ignored
//!   without events. A client that sent `Upgrade`/`CONNECT` and then sends
//!   bytes that do not start a request line before the answer is seen is
//!   assumed to have switched protocols too (silently ignored).
//! * A response with no pending request (the request was not captured) gets
//!   a fresh exchange number that no request uses.
//! * Body framing follows RFC 9112 §6: responses to `HEAD`, `1xx`, `204` and
//!   `304` have no body; `Transfer-Encoding: chunked` wins over
//!   `Content-Length`; a response with neither is delimited by the server
//!   closing ([`ConnectionParser::close`] ends it); a request with neither
//!   has no body.
//!
//! # Losses
//! Framing loss (garbage, a head larger than [`MAX_HEAD`], a capture gap
//! where framing bytes were, an invalid `Content-Length`) yields one
//! `Desync` per loss; the parser then scans forward for a plausible request
//! line (`METHOD SP target SP HTTP/1.x`) or status line (`HTTP/1.x NNN`) at
//! the start of a line, or right after a gap, and carries on.
//!
//! A gap inside a head whose start line was received still reports that
//! message's `Head` (with the header lines received before the gap and no
//! body length), then `Desync`.
//!
//! Pairing after a loss never guesses across it when it can be wrong:
//! * a loss on the server side drops every request still waiting for its
//!   response (their responses may have been in the lost bytes): later
//!   responses pair only with requests sent after the loss;
//! * a loss on the client side may have hidden requests, so it puts a
//!   barrier in the queue: responses that reach it get fresh exchange
//!   numbers, and when known requests wait behind it they are given up too
//!   (their responses cannot be told from those of the lost requests). The
//!   barrier is removed when the client sends its next request while only
//!   barriers wait, no response is in progress, the server sent something
//!   since the loss, and either a response reached the barrier or the
//!   client never pipelined (a client that waits for each response has then
//!   received every answer to the lost requests). A pipelining client whose
//!   lost requests are still being answered when it sends the next one can
//!   still be mis-paired; everything else pairs right or not at all.
//!
//! # Invalid requests
//! A request head `httparse` rejects is still a request when its first line
//! reads `METHOD SP target SP version` (the method starts with a letter and
//! either the version starts with `HTTP/` or the method is a standard one
//! and the target starts with `/`): a server answers it (`400`, `505`), so
//! it is reported and paired like any request, with what is not valid
//! escaped and named in [`HttpRequest::invalid`](crate::HttpRequest::invalid)
//! (`method`, `target`, `version`, `header`). Invalid header lines are
//! skipped; the body is framed by the valid headers. Any other rejected
//! head is a framing loss, as before. Detection accepts such a first line
//! when its version is `HTTP/1.0` or `HTTP/1.1`.
//!
//! Headers: only [`KEPT_HEADERS`](crate::KEPT_HEADERS) are stored (names
//! lower-case, values lossily converted to UTF-8), so `Authorization` and
//! `Cookie` never leave the parser. Buffered bytes per direction are bounded
//! by [`MAX_HEAD`].
//!
//! Events accumulate until [`ConnectionParser::poll`] takes them: callers
//! poll after each `feed`/`gap`/`close`.

use crate::exchange::Exchanges;
use crate::{
    escape_invalid, is_token, is_valid_target, ConnectionParser, HttpRequest, HttpResponse,
    HttpVersion, L7Event, L7EventKind, MessageInfo, Protocol, Side, INVALID_HEADER, INVALID_METHOD,
    INVALID_TARGET, INVALID_VERSION,
};
use std::collections::VecDeque;

/// Largest head (start line and headers) buffered; a larger one is a
/// framing loss (`Desync`).
pub const MAX_HEAD: usize = 64 * 1024;
/// Longest start line considered while resynchronising.
const MAX_LINE: usize = 8 * 1024;
/// Longest chunk extension accepted after a chunk size.
const MAX_CHUNK_EXT: u32 = 4096;
/// Largest trailer section accepted after the last chunk.
const MAX_TRAILERS: u32 = 64 * 1024;
/// Headers decoded without a heap allocation.
const STACK_HEADERS: usize = 32;

/// Why a head or a body could not be framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Http1Error {
    /// `httparse` rejected the head.
    #[error("malformed head: {0}")]
    Malformed(httparse::Error),
    /// The head is larger than [`MAX_HEAD`].
    #[error("head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    /// `Content-Length` is not a number, or several disagree.
    #[error("invalid content-length")]
    InvalidContentLength,
    /// A request whose `Transfer-Encoding` does not end with `chunked`.
    #[error("request transfer-encoding without final chunked")]
    BadTransferEncoding,
    /// A chunk-size line or the CRLF after chunk data is malformed.
    #[error("malformed chunked framing")]
    BadChunk,
    /// A chunk extension or the trailer section is too long.
    #[error("chunk extension or trailers too long")]
    ChunkLineTooLong,
    /// Bytes not captured where chunk framing was.
    #[error("capture gap inside chunk framing")]
    GapInChunkFraming,
    /// Bytes not captured where a head was.
    #[error("capture gap inside or before a head")]
    GapInHead,
    /// The connection closed before the message ended.
    #[error("closed mid-message")]
    Truncated,
}

/// How the body of a message is delimited, as its headers declare it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyLength {
    /// No body.
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the sender closes (responses only).
    UntilClose,
}

/// A decoded request head.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestHead {
    /// What is reported in the `Head` event.
    pub info: HttpRequest,
    /// Body framing, or why it is unknowable.
    pub body: Result<BodyLength, Http1Error>,
    /// The request asks to leave HTTP/1 (`Upgrade` header or `CONNECT`).
    pub upgrade: bool,
}

/// A decoded response head.
#[derive(Clone, Debug, PartialEq)]
pub struct ResponseHead {
    /// What is reported in the `Head` event.
    pub info: HttpResponse,
    /// Status code (also in `info`).
    pub status: u16,
    /// Body framing declared by the headers, ignoring the request method and
    /// the status (the caller applies `HEAD`, `1xx`, `204`, `304`).
    pub body: Result<BodyLength, Http1Error>,
}

/// Outcome of decoding a head from the start of a buffer.
#[derive(Clone, Debug, PartialEq)]
pub enum Decoded<T> {
    /// The head is complete and `len` bytes long (leading empty lines
    /// included).
    Complete { len: usize, head: T },
    /// More bytes are needed.
    Partial,
}

fn parser_config() -> httparse::ParserConfig {
    let mut c = httparse::ParserConfig::default();
    c.allow_multiple_spaces_in_request_line_delimiters(true)
        .allow_multiple_spaces_in_response_status_delimiters(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .allow_spaces_after_header_name_in_responses(true)
        .ignore_invalid_headers_in_responses(true);
    c
}

fn version(v: Option<u8>) -> Option<HttpVersion> {
    match v {
        Some(0) => Some(HttpVersion::Http10),
        Some(1) => Some(HttpVersion::Http11),
        _ => None,
    }
}

/// What the parser needs from the headers of one message.
#[derive(Default)]
struct HeaderScan {
    kept: Vec<(crate::model::HeaderName, String)>,
    host: Option<String>,
    content_length: Option<u64>,
    bad_content_length: bool,
    /// `Some(last coding is chunked)` when `Transfer-Encoding` is present.
    te_chunked: Option<bool>,
    upgrade: bool,
}

fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| *b != b' ' && *b != b'\t');
    let Some(start) = start else { return &[] };
    let end = v
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .unwrap_or(start);
    &v[start..=end]
}

fn parse_u64(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |acc, d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Which headers a head keeps (see [`HttpRequest::headers`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// [`crate::KEPT_HEADERS`], except `host` (in `authority`) and
    /// `content-length` (in `content_length`).
    Request,
    /// None: nothing reads an HTTP/1 response's headers (its length is
    /// `content_length`).
    Response,
}

/// Kept headers [`scan_headers`] collects before allocating their list
/// (more spill into the list directly).
const KEPT_FOUND: usize = 8;

fn scan_headers(headers: &[httparse::Header<'_>], keep: Keep) -> HeaderScan {
    let mut s = HeaderScan::default();
    // The kept headers are counted before their list is allocated, so it
    // has exactly their room: a request keeps its list as long as its span
    // is open (most keep one, user-agent: 48 bytes, not 96 or 192).
    let mut found: [(&'static str, &[u8]); KEPT_FOUND] = [("", &[]); KEPT_FOUND];
    let mut n_found = 0;
    for h in headers {
        let name = h.name;
        if name.len() == 14 && name.eq_ignore_ascii_case("content-length") {
            for part in h.value.split(|b| *b == b',') {
                match parse_u64(trim_ows(part)) {
                    Some(n) if s.content_length.is_none_or(|old| old == n) => {
                        s.content_length = Some(n)
                    }
                    _ => s.bad_content_length = true,
                }
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let last = h
                .value
                .split(|b| *b == b',')
                .map(trim_ows)
                .rfind(|c| !c.is_empty());
            if let Some(last) = last {
                s.te_chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
            } else if s.te_chunked.is_none() {
                s.te_chunked = Some(false);
            }
        } else if name.eq_ignore_ascii_case("upgrade") {
            s.upgrade = true;
        }
        if keep == Keep::Response {
            continue;
        }
        if let Some(kept) = crate::KEPT_HEADERS
            .iter()
            .find(|k| k.len() == name.len() && k.eq_ignore_ascii_case(name))
        {
            match *kept {
                "host" => {
                    if s.host.is_none() {
                        s.host = Some(String::from_utf8_lossy(trim_ows(h.value)).into_owned());
                    }
                }
                "content-length" => {}
                _ if n_found < KEPT_FOUND => {
                    found[n_found] = (kept, h.value);
                    n_found += 1;
                }
                _ => {
                    let value = String::from_utf8_lossy(trim_ows(h.value)).into_owned();
                    s.kept.push(((*kept).into(), value));
                }
            }
        }
    }
    if n_found > 0 {
        let spilled = std::mem::take(&mut s.kept);
        s.kept = Vec::with_capacity(n_found + spilled.len());
        s.kept.extend(found[..n_found].iter().map(|&(name, value)| {
            let value = String::from_utf8_lossy(trim_ows(value)).into_owned();
            (name.into(), value)
        }));
        s.kept.extend(spilled);
    }
    if s.bad_content_length {
        s.content_length = None;
    }
    s
}

fn leading_empty_lines(b: &[u8]) -> usize {
    b.iter()
        .take_while(|c| **c == b'\r' || **c == b'\n')
        .count()
}

/// Number of header slots sure to be enough for a head in `buf`.
fn header_slots(buf: &[u8]) -> usize {
    let n = buf.len().min(MAX_HEAD);
    buf[..n].iter().filter(|b| **b == b'\n').count() + 1
}

/// Decode a request head at the start of `buf`.
pub fn decode_request(buf: &[u8]) -> Result<Decoded<RequestHead>, Http1Error> {
    // Not shared with `decode_response` through a generic helper: that
    // moved the decoded head more and cost 10% per message (A/B, thread
    // CPU time, BENCHMARKS.md).
    let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let mut req = httparse::Request::new(&mut stack);
    match parser_config().parse_request(&mut req, buf) {
        Ok(httparse::Status::Complete(len)) => Ok(Decoded::Complete {
            len,
            head: request_head(&req),
        }),
        Ok(httparse::Status::Partial) => Ok(Decoded::Partial),
        Err(httparse::Error::TooManyHeaders) => {
            let mut heap = vec![httparse::EMPTY_HEADER; header_slots(buf)];
            let mut req = httparse::Request::new(&mut heap);
            match parser_config().parse_request(&mut req, buf) {
                Ok(httparse::Status::Complete(len)) => Ok(Decoded::Complete {
                    len,
                    head: request_head(&req),
                }),
                Ok(httparse::Status::Partial) => Ok(Decoded::Partial),
                Err(e) => decode_invalid_request(buf, e),
            }
        }
        Err(e) => decode_invalid_request(buf, e),
    }
}

/// Body framing of a request, as its headers declare it.
fn request_body(s: &HeaderScan) -> Result<BodyLength, Http1Error> {
    match (s.te_chunked, s.bad_content_length, s.content_length) {
        (Some(true), _, _) => Ok(BodyLength::Chunked),
        (Some(false), _, _) => Err(Http1Error::BadTransferEncoding),
        (None, true, _) => Err(Http1Error::InvalidContentLength),
        (None, false, Some(0)) | (None, false, None) => Ok(BodyLength::None),
        (None, false, Some(n)) => Ok(BodyLength::Length(n)),
    }
}

fn request_head(req: &httparse::Request<'_, '_>) -> RequestHead {
    let s = scan_headers(req.headers, Keep::Request);
    let method = req.method.unwrap_or_default();
    let body = request_body(&s);
    RequestHead {
        upgrade: s.upgrade || method == "CONNECT",
        info: HttpRequest {
            method: req.method.map(str::to_owned),
            target: req.path.map(str::to_owned),
            version: version(req.version),
            authority: s.host,
            headers: s.kept,
            content_length: s.content_length,
            ..HttpRequest::default()
        },
        body,
    }
}

/// Longest method accepted in a request line `httparse` rejected.
const MAX_INVALID_METHOD: usize = 20;

/// The parts of a request line `httparse` rejected, when it still reads as
/// `METHOD SP target SP version`: the method starts with a letter and has
/// no space, and either the version starts with `HTTP/` or the method is a
/// standard one and the target starts with `/`. Anything else (a body, a
/// binary protocol, a line of text) is not a request.
struct InvalidLine<'a> {
    method: &'a [u8],
    target: &'a [u8],
    version: &'a [u8],
}

/// Whether the start of an unterminated request line can still become an
/// [`InvalidLine`].
fn invalid_line_prefix_possible(b: &[u8]) -> bool {
    let method_len = b.iter().position(|c| *c == b' ').unwrap_or(b.len());
    b.first().is_none_or(u8::is_ascii_alphabetic)
        && method_len <= MAX_INVALID_METHOD
        && b.len() <= MAX_LINE
}

/// `line`: a request line without its line ending.
fn invalid_line(line: &[u8]) -> Option<InvalidLine<'_>> {
    if !invalid_line_prefix_possible(line) {
        return None;
    }
    let sp = line.iter().position(|c| *c == b' ')?;
    let method = &line[..sp];
    let rest = &line[sp..];
    let start = rest.iter().position(|c| *c != b' ')?;
    let rest = &rest[start..];
    let last = rest.iter().rposition(|c| *c == b' ')?;
    let version = &rest[last + 1..];
    let target = &rest[..last];
    let target_end = target.iter().rposition(|c| *c != b' ')? + 1;
    let target = &target[..target_end];
    let plausible = version.starts_with(b"HTTP/")
        || (METHODS.contains(&method) && target.starts_with(b"/") && version.len() <= 16);
    (plausible && !method.is_empty() && !version.is_empty()).then_some(InvalidLine {
        method,
        target,
        version,
    })
}

/// A request head `httparse` rejected with `err`: when its request line
/// still reads as one ([`InvalidLine`]), decode what can be decoded and
/// mark the rest invalid (escaped), so a request the server answered (with
/// `400`, usually) is still reported and paired with its answer. Header
/// lines that are not valid are skipped. The body is framed by the valid
/// headers, like a valid request's.
fn decode_invalid_request(
    buf: &[u8],
    err: httparse::Error,
) -> Result<Decoded<RequestHead>, Http1Error> {
    let malformed = Err(Http1Error::Malformed(err));
    let lead = leading_empty_lines(buf);
    let b = &buf[lead..];
    let Some(nl) = b.iter().position(|c| *c == b'\n') else {
        return if invalid_line_prefix_possible(b) {
            Ok(Decoded::Partial)
        } else {
            malformed
        };
    };
    let line = b[..nl].strip_suffix(b"\r").unwrap_or(&b[..nl]);
    let Some(parts) = invalid_line(line) else {
        return malformed;
    };
    // Header lines up to the empty line that ends the head.
    let mut headers: Vec<httparse::Header<'_>> = Vec::new();
    let mut bad_header = false;
    let mut pos = nl + 1;
    let end = loop {
        let Some(n) = b[pos..].iter().position(|c| *c == b'\n') else {
            return Ok(Decoded::Partial);
        };
        let raw = &b[pos..pos + n];
        pos += n + 1;
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.is_empty() {
            break lead + pos;
        }
        let header = line.iter().position(|c| *c == b':').and_then(|colon| {
            let (name, value) = (&line[..colon], &line[colon + 1..]);
            let value_ok = value
                .iter()
                .all(|c| *c == b'\t' || (*c >= b' ' && *c != 0x7f));
            let name = std::str::from_utf8(name)
                .ok()
                .filter(|n| is_token(n.as_bytes()));
            name.filter(|_| value_ok)
                .map(|name| httparse::Header { name, value })
        });
        match header {
            Some(h) => headers.push(h),
            None => bad_header = true,
        }
    };
    let mut invalid = Vec::new();
    let method = if is_token(parts.method) {
        String::from_utf8_lossy(parts.method).into_owned()
    } else {
        invalid.push(INVALID_METHOD.to_owned());
        escape_invalid(parts.method)
    };
    let target = if is_valid_target(parts.target) {
        String::from_utf8_lossy(parts.target).into_owned()
    } else {
        invalid.push(INVALID_TARGET.to_owned());
        escape_invalid(parts.target)
    };
    let version = match parts.version {
        b"HTTP/1.0" => Some(HttpVersion::Http10),
        b"HTTP/1.1" => Some(HttpVersion::Http11),
        _ => {
            invalid.push(INVALID_VERSION.to_owned());
            None
        }
    };
    if bad_header {
        invalid.push(INVALID_HEADER.to_owned());
    }
    if invalid.is_empty() {
        // Valid parts, yet rejected (a bare CR, ...): say where it failed.
        invalid.push(
            match err {
                httparse::Error::Version => INVALID_VERSION,
                httparse::Error::Token if !parts.target.is_empty() => INVALID_TARGET,
                _ => INVALID_HEADER,
            }
            .to_owned(),
        );
    }
    let s = scan_headers(&headers, Keep::Request);
    let body = request_body(&s);
    Ok(Decoded::Complete {
        len: end,
        head: RequestHead {
            upgrade: s.upgrade || parts.method == b"CONNECT",
            info: HttpRequest {
                method: Some(method),
                target: Some(target),
                version,
                authority: s.host,
                headers: s.kept,
                content_length: s.content_length,
                invalid,
                ..HttpRequest::default()
            },
            body,
        },
    })
}

/// Decode a response head at the start of `buf`.
pub fn decode_response(buf: &[u8]) -> Result<Decoded<ResponseHead>, Http1Error> {
    let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let mut res = httparse::Response::new(&mut stack);
    match parser_config().parse_response(&mut res, buf) {
        Ok(httparse::Status::Complete(len)) => Ok(Decoded::Complete {
            len,
            head: response_head(&res),
        }),
        Ok(httparse::Status::Partial) => Ok(Decoded::Partial),
        Err(httparse::Error::TooManyHeaders) => {
            let mut heap = vec![httparse::EMPTY_HEADER; header_slots(buf)];
            let mut res = httparse::Response::new(&mut heap);
            match parser_config().parse_response(&mut res, buf) {
                Ok(httparse::Status::Complete(len)) => Ok(Decoded::Complete {
                    len,
                    head: response_head(&res),
                }),
                Ok(httparse::Status::Partial) => Ok(Decoded::Partial),
                Err(e) => Err(Http1Error::Malformed(e)),
            }
        }
        Err(e) => Err(Http1Error::Malformed(e)),
    }
}

fn response_head(res: &httparse::Response<'_, '_>) -> ResponseHead {
    let s = scan_headers(res.headers, Keep::Response);
    let status = res.code.unwrap_or_default();
    let body = match (s.te_chunked, s.bad_content_length, s.content_length) {
        (Some(true), _, _) => Ok(BodyLength::Chunked),
        (Some(false), _, _) => Ok(BodyLength::UntilClose),
        (None, true, _) => Err(Http1Error::InvalidContentLength),
        (None, false, Some(0)) => Ok(BodyLength::None),
        (None, false, Some(n)) => Ok(BodyLength::Length(n)),
        (None, false, None) => Ok(BodyLength::UntilClose),
    };
    ResponseHead {
        info: HttpResponse {
            status: Some(status),
            version: version(res.version),
            headers: s.kept,
            content_length: s.content_length,
            ..HttpResponse::default()
        },
        status,
        body,
    }
}

/// A head cut short by a capture gap: decode the complete lines it has.
fn decode_truncated(side: Side, buf: &[u8]) -> Option<Head> {
    let last_nl = buf.iter().rposition(|b| *b == b'\n')?;
    let mut tmp = Vec::with_capacity(last_nl + 3);
    tmp.extend_from_slice(&buf[..=last_nl]);
    tmp.extend_from_slice(b"\r\n");
    match side {
        Side::Client => match decode_request(&tmp) {
            Ok(Decoded::Complete { head, .. }) => Some(Head::Request(head)),
            _ => None,
        },
        Side::Server => match decode_response(&tmp) {
            Ok(Decoded::Complete { head, .. }) => Some(Head::Response(head)),
            _ => None,
        },
    }
}

/// Result of checking whether bytes start a plausible start line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plausible {
    Yes,
    No,
    NeedMore,
}

/// Match `lit` at `b[k..]`.
fn expect_lit(b: &[u8], k: &mut usize, lit: &[u8]) -> Plausible {
    for c in lit {
        match b.get(*k) {
            None => return Plausible::NeedMore,
            Some(x) if x == c => *k += 1,
            Some(_) => return Plausible::No,
        }
    }
    Plausible::Yes
}

/// `HTTP/1.0` or `HTTP/1.1` at `b[k..]`.
fn http1_version(b: &[u8], k: &mut usize) -> Plausible {
    match expect_lit(b, k, b"HTTP/1.") {
        Plausible::Yes => {}
        other => return other,
    }
    match b.get(*k) {
        None => Plausible::NeedMore,
        Some(b'0' | b'1') => {
            *k += 1;
            Plausible::Yes
        }
        Some(_) => Plausible::No,
    }
}

/// `HTTP/1.x` followed by the end of the line.
fn version_then_eol(b: &[u8], mut k: usize) -> Plausible {
    match http1_version(b, &mut k) {
        Plausible::Yes => {}
        other => return other,
    }
    match b.get(k) {
        None => Plausible::NeedMore,
        Some(b'\n') => Plausible::Yes,
        Some(b'\r') => match b.get(k + 1) {
            None => Plausible::NeedMore,
            Some(b'\n') => Plausible::Yes,
            Some(_) => Plausible::No,
        },
        Some(_) => Plausible::No,
    }
}

/// `METHOD SP target SP HTTP/1.x CRLF` (method: 1 to 20 upper-case letters).
fn plausible_request_line(b: &[u8]) -> Plausible {
    let mut k = 0;
    while k < b.len() && (b[k].is_ascii_uppercase() || b[k] == b'-' || b[k] == b'_') {
        k += 1;
        if k > 20 {
            return Plausible::No;
        }
    }
    if k == 0 && !b.is_empty() {
        return Plausible::No;
    }
    match b.get(k) {
        None => return Plausible::NeedMore,
        Some(b' ') => k += 1,
        Some(_) => return Plausible::No,
    }
    let start = k;
    while k < b.len() && b[k] > b' ' && b[k] != 0x7f {
        k += 1;
        if k - start > MAX_LINE {
            return Plausible::No;
        }
    }
    match b.get(k) {
        None => return Plausible::NeedMore,
        Some(b' ') if k > start => k += 1,
        Some(_) => return Plausible::No,
    }
    version_then_eol(b, k)
}

/// `HTTP/1.x SP NNN` followed by a space or the end of the line.
fn plausible_status_line(b: &[u8]) -> Plausible {
    let mut k = 0;
    match http1_version(b, &mut k) {
        Plausible::Yes => {}
        other => return other,
    }
    match b.get(k) {
        None => return Plausible::NeedMore,
        Some(b' ') => k += 1,
        Some(_) => return Plausible::No,
    }
    for _ in 0..3 {
        match b.get(k) {
            None => return Plausible::NeedMore,
            Some(d) if d.is_ascii_digit() => k += 1,
            Some(_) => return Plausible::No,
        }
    }
    match b.get(k) {
        None => Plausible::NeedMore,
        Some(b' ' | b'\r' | b'\n') => Plausible::Yes,
        Some(_) => Plausible::No,
    }
}

fn plausible(side: Side, b: &[u8]) -> Plausible {
    match side {
        Side::Client => plausible_request_line(b),
        Side::Server => plausible_status_line(b),
    }
}

/// Methods accepted by [`looks_like_request`].
const METHODS: &[&[u8]] = &[
    b"GET",
    b"POST",
    b"PUT",
    b"DELETE",
    b"HEAD",
    b"OPTIONS",
    b"PATCH",
    b"CONNECT",
    b"TRACE",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"REPORT",
    b"SEARCH",
    b"PURGE",
];

/// Whether the first bytes a client sent look like an HTTP/1.x request.
///
/// Cheap: looks at the request line only. A partial line is accepted as long
/// as it has a known method followed by a space and nothing contradicts
/// `METHOD SP target SP HTTP/1.x CRLF` so far. A complete line with an
/// invalid method or target (bytes a server rejects with `400`) and version
/// `HTTP/1.0` or `HTTP/1.1` is accepted too. The HTTP/2 preface
/// (`PRI * HTTP/2.0`) and binary protocols are rejected.
pub fn looks_like_request(b: &[u8]) -> bool {
    let Some(sp) = b.iter().take(21).position(|c| *c == b' ') else {
        return false;
    };
    (METHODS.contains(&&b[..sp]) && plausible_request_line(b) != Plausible::No)
        || invalid_request_line(b)
}

/// A complete first line that is a request line with an invalid method or
/// target but a valid version (`G\x01T / HTTP/1.1`): a request a server
/// answers (with `400`), so the connection is HTTP/1.
fn invalid_request_line(b: &[u8]) -> bool {
    let Some(nl) = b.iter().take(MAX_LINE + 1).position(|c| *c == b'\n') else {
        return false;
    };
    let line = b[..nl].strip_suffix(b"\r").unwrap_or(&b[..nl]);
    invalid_line(line).is_some_and(|l| l.version == b"HTTP/1.1" || l.version == b"HTTP/1.0")
}

/// Whether the first bytes a server sent look like an HTTP/1.x response.
///
/// Cheap: needs at least `HTTP/` and accepts a partial status line as long
/// as nothing contradicts `HTTP/1.x SP NNN`.
pub fn looks_like_response(b: &[u8]) -> bool {
    b.len() >= 5 && plausible_status_line(b) != Plausible::No
}

/// Chunked body framing, byte by byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// Reading the hex chunk size.
    Size {
        value: u64,
        digits: u8,
    },
    /// After the size: extensions and whitespace until LF.
    Ext {
        len: u32,
        value: u64,
    },
    /// Chunk data still to skip.
    Data(u64),
    /// CRLF after the chunk data.
    DataCr,
    DataLf,
    /// Trailer section after the last chunk; `line` bytes in the current line.
    Trailer {
        line: u32,
        total: u32,
    },
}

const CHUNK_START: Chunk = Chunk::Size {
    value: 0,
    digits: 0,
};

/// What to do after a message ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Expecting a start line (`buf` may hold a partial head).
    Head,
    /// Skipping `remaining` body bytes.
    Body { exchange: u64, remaining: u64 },
    /// Following chunked framing.
    Chunked { exchange: u64, chunk: Chunk },
    /// Body delimited by the peer closing.
    UntilClose { exchange: u64 },
    /// Framing lost: looking for a start line. `at_line_start`: the next byte
    /// starts a line (or follows a gap). `buf` may hold a partial candidate.
    Resync { at_line_start: bool },
    /// After an upgrade/CONNECT request: the next bytes are a request line or
    /// another protocol.
    Tentative,
    /// Not HTTP/1 any more (or closed): ignore everything.
    Stopped,
}

/// What a response needs to know about the request it answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Request {
    exchange: u64,
    head: bool,
    connect: bool,
}

enum Head {
    Request(RequestHead),
    Response(ResponseHead),
}

/// HTTP/1 state shared by both directions.
#[derive(Debug, Default)]
struct Http1Shared {
    /// The connection left HTTP/1 (101, CONNECT).
    tunnel: bool,
}

/// State shared by both directions.
type Shared = Exchanges<Request, Http1Shared>;

/// One direction of the connection.
#[derive(Debug)]
struct Half {
    side: Side,
    /// Stream length so far (bytes fed and gapped).
    fed: u64,
    state: State,
    /// Partial head or partial resync candidate, starting at `buf_off`.
    buf: Vec<u8>,
    buf_off: u64,
    /// Where to resume looking for the end of the head in `buf`.
    scan_from: usize,
    /// The message in progress asked to leave HTTP/1.
    upgrade_after: bool,
    /// A `Desync` was reported and no head parsed since.
    in_loss: bool,
}

impl Half {
    fn new(side: Side) -> Self {
        Half {
            side,
            fed: 0,
            state: State::Head,
            buf: Vec::new(),
            buf_off: 0,
            scan_from: 0,
            upgrade_after: false,
            in_loss: false,
        }
    }

    /// Idle between messages (used to drop a client-side loss barrier).
    fn idle(&self) -> bool {
        self.state == State::Head && self.buf.is_empty()
    }

    fn clear_buf(&mut self) {
        self.buf.clear();
        if self.buf.capacity() > 8192 {
            self.buf.shrink_to(1024);
        }
        self.scan_from = 0;
    }

    fn desync(&mut self, sh: &mut Shared, offset: u64, reason: Http1Error) {
        self.clear_buf();
        self.upgrade_after = false;
        self.state = State::Resync {
            at_line_start: false,
        };
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

    fn end_message(&mut self, sh: &mut Shared, exchange: u64, end: u64) {
        sh.push(self.side, exchange, L7EventKind::End { end, info: None });
        self.state = if std::mem::take(&mut self.upgrade_after) {
            State::Tentative
        } else {
            State::Head
        };
    }

    /// Report a parsed head at `offset` (its first byte), `end` one past it,
    /// and start skipping its body.
    fn on_head(&mut self, sh: &mut Shared, head: Head, offset: u64, end: u64, peer_idle: bool) {
        if let Some((exchange, body)) = self.report_head(sh, head, offset, peer_idle) {
            self.start_body(sh, exchange, body, end);
            if sh.proto.tunnel {
                self.state = State::Stopped;
            }
        }
    }

    /// Emit the `Head` event of a parsed head and pair it. Returns the
    /// exchange and the body framing, or `None` for an interim response.
    fn report_head(
        &mut self,
        sh: &mut Shared,
        head: Head,
        offset: u64,
        peer_idle: bool,
    ) -> Option<(u64, Result<BodyLength, Http1Error>)> {
        self.in_loss = false;
        match head {
            Head::Request(req) => {
                let exchange = sh.fresh_exchange();
                sh.clear_barriers(peer_idle);
                let method = req.info.method.as_deref();
                sh.queue(Request {
                    exchange,
                    head: method == Some("HEAD"),
                    connect: method == Some("CONNECT"),
                });
                sh.push(
                    self.side,
                    exchange,
                    L7EventKind::Head {
                        offset,
                        info: MessageInfo::HttpRequest(req.info),
                    },
                );
                self.upgrade_after = req.upgrade;
                Some((exchange, req.body))
            }
            Head::Response(res) => {
                let status = res.status;
                if (100..200).contains(&status) && status != 101 {
                    // Interim response: no event, does not complete the exchange.
                    return None;
                }
                let (exchange, to_head, to_connect) = self.pair_response(sh);
                sh.push(
                    self.side,
                    exchange,
                    L7EventKind::Head {
                        offset,
                        info: MessageInfo::HttpResponse(res.info),
                    },
                );
                let tunnel = status == 101 || (to_connect && (200..300).contains(&status));
                if tunnel {
                    sh.proto.tunnel = true;
                }
                let body = if tunnel || to_head || status == 204 || status == 304 {
                    Ok(BodyLength::None)
                } else {
                    res.body
                };
                Some((exchange, body))
            }
        }
    }

    /// The request a response answers: (exchange, was HEAD, was CONNECT).
    fn pair_response(&mut self, sh: &mut Shared) -> (u64, bool, bool) {
        match sh.pair_front() {
            Ok(r) => (r.exchange, r.head, r.connect),
            Err(fresh) => (fresh, false, false),
        }
    }

    fn start_body(
        &mut self,
        sh: &mut Shared,
        exchange: u64,
        body: Result<BodyLength, Http1Error>,
        end: u64,
    ) {
        match body {
            Ok(BodyLength::None) | Ok(BodyLength::Length(0)) => self.end_message(sh, exchange, end),
            Ok(BodyLength::Length(n)) => {
                self.state = State::Body {
                    exchange,
                    remaining: n,
                }
            }
            Ok(BodyLength::Chunked) => {
                self.state = State::Chunked {
                    exchange,
                    chunk: CHUNK_START,
                }
            }
            Ok(BodyLength::UntilClose) => self.state = State::UntilClose { exchange },
            Err(e) => self.desync(sh, end, e),
        }
    }

    fn decode(&self, b: &[u8]) -> Result<Decoded<Head>, Http1Error> {
        Ok(match self.side {
            Side::Client => match decode_request(b)? {
                Decoded::Complete { len, head } => Decoded::Complete {
                    len,
                    head: Head::Request(head),
                },
                Decoded::Partial => Decoded::Partial,
            },
            Side::Server => match decode_response(b)? {
                Decoded::Complete { len, head } => Decoded::Complete {
                    len,
                    head: Head::Response(head),
                },
                Decoded::Partial => Decoded::Partial,
            },
        })
    }

    fn feed(&mut self, sh: &mut Shared, data: &[u8], peer_idle: bool) {
        let base = self.fed;
        self.fed += data.len() as u64;
        self.process(sh, data, base, peer_idle);
    }

    /// Consume `data`, whose first byte is at stream offset `base`.
    fn process(&mut self, sh: &mut Shared, data: &[u8], base: u64, peer_idle: bool) {
        let mut i = 0;
        while i < data.len() {
            if sh.proto.tunnel {
                self.clear_buf();
                self.state = State::Stopped;
            }
            match self.state {
                State::Stopped | State::UntilClose { .. } => return,
                State::Body {
                    exchange,
                    remaining,
                } => {
                    let n = remaining.min((data.len() - i) as u64);
                    i += n as usize;
                    if n == remaining {
                        self.end_message(sh, exchange, base + i as u64);
                    } else {
                        self.state = State::Body {
                            exchange,
                            remaining: remaining - n,
                        };
                    }
                }
                State::Chunked { exchange, chunk } => {
                    i = self.chunked(sh, data, i, base, exchange, chunk);
                }
                State::Head => {
                    i = if self.buf.is_empty() {
                        self.head_direct(sh, data, i, base, peer_idle)
                    } else {
                        self.head_buffered(sh, data, i, peer_idle)
                    };
                }
                State::Resync { .. } | State::Tentative => {
                    i = self.resync(data, i, base);
                }
            }
        }
    }

    fn head_direct(
        &mut self,
        sh: &mut Shared,
        data: &[u8],
        i: usize,
        base: u64,
        peer_idle: bool,
    ) -> usize {
        let input = &data[i..];
        let off = base + i as u64;
        match self.decode(input) {
            Ok(Decoded::Complete { len, head }) if len <= MAX_HEAD => {
                let lead = leading_empty_lines(&input[..len]) as u64;
                self.on_head(sh, head, off + lead, off + len as u64, peer_idle);
                i + len
            }
            Ok(Decoded::Partial) if input.len() <= MAX_HEAD => {
                self.buf.extend_from_slice(input);
                self.buf_off = off;
                self.scan_from = 0;
                data.len()
            }
            Ok(_) => {
                self.desync(sh, off, Http1Error::HeadTooLarge);
                i
            }
            Err(e) => {
                self.desync(sh, off, e);
                i
            }
        }
    }

    fn head_buffered(&mut self, sh: &mut Shared, data: &[u8], i: usize, peer_idle: bool) -> usize {
        let old_len = self.buf.len();
        let take = (data.len() - i).min((MAX_HEAD + 1).saturating_sub(old_len));
        self.buf.extend_from_slice(&data[i..i + take]);
        loop {
            let Some(end) = find_head_end(&self.buf, self.scan_from) else {
                self.scan_from = self.buf.len().saturating_sub(2);
                if self.buf.len() > MAX_HEAD {
                    self.buffered_loss(sh, Http1Error::HeadTooLarge, peer_idle);
                }
                return i + take;
            };
            match self.decode(&self.buf[..end]) {
                Ok(Decoded::Partial) => self.scan_from = end,
                Ok(Decoded::Complete { len, .. }) if len > MAX_HEAD => {
                    self.buffered_loss(sh, Http1Error::HeadTooLarge, peer_idle);
                    return i + take;
                }
                Ok(Decoded::Complete { len, head }) => {
                    let off = self.buf_off;
                    let lead = leading_empty_lines(&self.buf[..len]) as u64;
                    let rest = if len < old_len {
                        self.buf[len..old_len].to_vec()
                    } else {
                        Vec::new()
                    };
                    self.clear_buf();
                    self.on_head(sh, head, off + lead, off + len as u64, peer_idle);
                    if len >= old_len {
                        return i + (len - old_len);
                    }
                    self.process(sh, &rest, off + len as u64, peer_idle);
                    return i;
                }
                Err(e) => {
                    self.buffered_loss(sh, e, peer_idle);
                    return i + take;
                }
            }
        }
    }

    /// The buffered head is not a head: desync, then look for the next start
    /// line in what was buffered after its first line.
    fn buffered_loss(&mut self, sh: &mut Shared, e: Http1Error, peer_idle: bool) {
        let off = self.buf_off;
        let buf = std::mem::take(&mut self.buf);
        self.desync(sh, off, e);
        if let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            self.state = State::Resync {
                at_line_start: true,
            };
            self.process(sh, &buf[nl + 1..], off + nl as u64 + 1, peer_idle);
        }
    }

    /// Resync / Tentative: look for a start line.
    fn resync(&mut self, data: &[u8], i: usize, base: u64) -> usize {
        let tentative = self.state == State::Tentative;
        if !self.buf.is_empty() {
            let rest = &data[i..];
            let upto = rest
                .iter()
                .position(|b| *b == b'\n')
                .map_or(rest.len(), |p| p + 1);
            let take = upto.min((MAX_LINE + 1).saturating_sub(self.buf.len()));
            self.buf.extend_from_slice(&rest[..take]);
            let verdict = match plausible(self.side, &self.buf) {
                Plausible::NeedMore if self.buf.len() > MAX_LINE => Plausible::No,
                v => v,
            };
            match verdict {
                Plausible::Yes => {
                    self.state = State::Head;
                    self.scan_from = 0;
                }
                Plausible::No => {
                    self.clear_buf();
                    self.state = if tentative {
                        State::Stopped
                    } else {
                        State::Resync {
                            at_line_start: take > 0 && rest[take - 1] == b'\n',
                        }
                    };
                }
                Plausible::NeedMore => {}
            }
            return i + take;
        }
        let mut pos = i;
        let mut candidate = match self.state {
            State::Resync { at_line_start } => at_line_start,
            _ => true,
        };
        loop {
            if candidate && pos < data.len() {
                match plausible(self.side, &data[pos..]) {
                    Plausible::Yes => {
                        self.state = State::Head;
                        return pos;
                    }
                    Plausible::NeedMore if data.len() - pos <= MAX_LINE => {
                        self.buf.extend_from_slice(&data[pos..]);
                        self.buf_off = base + pos as u64;
                        return data.len();
                    }
                    _ if tentative => {
                        self.state = State::Stopped;
                        return data.len();
                    }
                    _ => {}
                }
            }
            if pos >= data.len() {
                self.state = State::Resync {
                    at_line_start: candidate,
                };
                return data.len();
            }
            match data[pos..].iter().position(|b| *b == b'\n') {
                Some(p) => {
                    pos += p + 1;
                    candidate = true;
                }
                None => {
                    self.state = State::Resync {
                        at_line_start: false,
                    };
                    return data.len();
                }
            }
        }
    }

    /// Follow chunked framing from `data[i..]`; returns the new position.
    fn chunked(
        &mut self,
        sh: &mut Shared,
        data: &[u8],
        mut i: usize,
        base: u64,
        exchange: u64,
        mut chunk: Chunk,
    ) -> usize {
        while i < data.len() {
            if let Chunk::Data(remaining) = chunk {
                let n = remaining.min((data.len() - i) as u64);
                i += n as usize;
                chunk = if n == remaining {
                    Chunk::DataCr
                } else {
                    Chunk::Data(remaining - n)
                };
                continue;
            }
            let b = data[i];
            let off = base + i as u64;
            i += 1;
            let next = match chunk {
                Chunk::Size { value, digits } => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' if digits < 16 => {
                        let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                        Ok(Chunk::Size {
                            value: value * 16 + d,
                            digits: digits + 1,
                        })
                    }
                    b';' | b' ' | b'\t' | b'\r' if digits > 0 => Ok(Chunk::Ext { len: 0, value }),
                    b'\n' if digits > 0 => Ok(size_done(value)),
                    _ => Err(Http1Error::BadChunk),
                },
                Chunk::Ext { len, value } => match b {
                    b'\n' => Ok(size_done(value)),
                    _ if len >= MAX_CHUNK_EXT => Err(Http1Error::ChunkLineTooLong),
                    _ => Ok(Chunk::Ext {
                        len: len + 1,
                        value,
                    }),
                },
                Chunk::DataCr => match b {
                    b'\r' => Ok(Chunk::DataLf),
                    b'\n' => Ok(CHUNK_START),
                    _ => Err(Http1Error::BadChunk),
                },
                Chunk::DataLf => match b {
                    b'\n' => Ok(CHUNK_START),
                    _ => Err(Http1Error::BadChunk),
                },
                Chunk::Trailer { line, total } => match b {
                    b'\n' if line == 0 => {
                        self.end_message(sh, exchange, base + i as u64);
                        return i;
                    }
                    b'\n' => Ok(Chunk::Trailer { line: 0, total }),
                    b'\r' => Ok(Chunk::Trailer { line, total }),
                    _ if total >= MAX_TRAILERS => Err(Http1Error::ChunkLineTooLong),
                    _ => Ok(Chunk::Trailer {
                        line: line + 1,
                        total: total + 1,
                    }),
                },
                Chunk::Data(_) => Ok(chunk),
            };
            match next {
                Ok(c) => chunk = c,
                Err(e) => {
                    self.desync(sh, off, e);
                    return i;
                }
            }
        }
        self.state = State::Chunked { exchange, chunk };
        i
    }

    fn gap(&mut self, sh: &mut Shared, len: u64) {
        if len == 0 {
            return;
        }
        let base = self.fed;
        self.fed += len;
        if sh.proto.tunnel {
            self.clear_buf();
            self.state = State::Stopped;
            return;
        }
        self.settle(sh);
        match self.state {
            State::Stopped | State::UntilClose { .. } => {}
            State::Body {
                exchange,
                remaining,
            } => {
                if len < remaining {
                    self.state = State::Body {
                        exchange,
                        remaining: remaining - len,
                    };
                } else {
                    self.end_message(sh, exchange, base + remaining);
                    if len > remaining {
                        self.lost_at_boundary(sh, base + remaining);
                    }
                }
            }
            State::Chunked { exchange, chunk } => {
                let next = match chunk {
                    Chunk::Data(r) if len < r => Some(Chunk::Data(r - len)),
                    Chunk::Data(r) if len == r => Some(Chunk::DataCr),
                    Chunk::Data(r) if len == r + 1 => Some(Chunk::DataLf),
                    Chunk::Data(r) if len == r + 2 => Some(CHUNK_START),
                    Chunk::DataCr if len == 1 => Some(Chunk::DataLf),
                    Chunk::DataCr if len == 2 => Some(CHUNK_START),
                    Chunk::DataLf if len == 1 => Some(CHUNK_START),
                    _ => None,
                };
                match next {
                    Some(chunk) => self.state = State::Chunked { exchange, chunk },
                    None => {
                        self.desync(sh, base, Http1Error::GapInChunkFraming);
                        self.state = State::Resync {
                            at_line_start: true,
                        };
                    }
                }
            }
            State::Head if !self.buf.is_empty() => self.truncated_head(sh, base),
            State::Head | State::Tentative => self.lost_at_boundary(sh, base),
            State::Resync { .. } => {
                self.clear_buf();
                self.state = State::Resync {
                    at_line_start: true,
                };
            }
        }
    }

    /// A gap where a message should start.
    fn lost_at_boundary(&mut self, sh: &mut Shared, offset: u64) {
        self.desync(sh, offset, Http1Error::GapInHead);
        self.state = State::Resync {
            at_line_start: true,
        };
    }

    /// Before a gap or close: a buffered partial head is only checked when
    /// its end arrives, so check now whether it is malformed (as it would
    /// have been found had it arrived in one piece) and resynchronise in it.
    fn settle(&mut self, sh: &mut Shared) {
        while self.state == State::Head && !self.buf.is_empty() {
            match self.decode(&self.buf) {
                Err(e) => self.buffered_loss(sh, e, false),
                Ok(_) => break,
            }
        }
    }

    /// A gap inside a buffered head: report what the received lines say.
    fn truncated_head(&mut self, sh: &mut Shared, gap_at: u64) {
        let off = self.buf_off;
        if let Some(head) = decode_truncated(self.side, &self.buf) {
            // Report the head, but no `End`: where the message ends is unknown.
            let lead = leading_empty_lines(&self.buf) as u64;
            self.report_head(sh, head, off + lead, false);
            self.upgrade_after = false;
            if sh.proto.tunnel {
                self.clear_buf();
                self.state = State::Stopped;
                return;
            }
        }
        self.desync(sh, gap_at, Http1Error::GapInHead);
        self.state = State::Resync {
            at_line_start: true,
        };
    }

    fn close(&mut self, sh: &mut Shared) {
        self.settle(sh);
        match self.state {
            State::UntilClose { exchange } => {
                sh.push(
                    self.side,
                    exchange,
                    L7EventKind::End {
                        end: self.fed,
                        info: None,
                    },
                );
            }
            State::Body { .. } | State::Chunked { .. } => {
                self.desync(sh, self.fed, Http1Error::Truncated)
            }
            State::Head if !self.buf.is_empty() => self.desync(sh, self.fed, Http1Error::Truncated),
            _ => {}
        }
        self.clear_buf();
        self.state = State::Stopped;
    }
}

fn size_done(value: u64) -> Chunk {
    if value == 0 {
        Chunk::Trailer { line: 0, total: 0 }
    } else {
        Chunk::Data(value)
    }
}

/// End (exclusive) of the first `\n\n` or `\n\r\n` in `buf` at or after `from`.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut p = from;
    while p < buf.len() {
        let nl = p + buf[p..].iter().position(|b| *b == b'\n')?;
        match (buf.get(nl + 1), buf.get(nl + 2)) {
            (Some(b'\n'), _) => return Some(nl + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(nl + 3),
            _ => p = nl + 1,
        }
    }
    None
}

/// Incremental HTTP/1.x parser for both directions of one connection.
///
/// See the [module documentation](self) for what it reports.
#[derive(Debug)]
pub struct Http1Parser {
    client: Half,
    server: Half,
    shared: Shared,
}

impl Default for Http1Parser {
    fn default() -> Self {
        Self::new()
    }
}

impl Http1Parser {
    /// A parser positioned at the first byte of both directions.
    pub fn new() -> Self {
        Http1Parser {
            client: Half::new(Side::Client),
            server: Half::new(Side::Server),
            shared: Shared::new(Http1Shared::default()),
        }
    }
}

impl ConnectionParser for Http1Parser {
    fn protocol(&self) -> Protocol {
        Protocol::Http1
    }

    fn feed(&mut self, side: Side, data: &[u8]) {
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
    }

    fn gap(&mut self, side: Side, len: u64) {
        match side {
            Side::Client => self.client.gap(&mut self.shared, len),
            Side::Server => {
                self.server.gap(&mut self.shared, len);
                self.shared.server_epoch += 1;
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn drain(p: &mut Http1Parser) -> Vec<L7Event> {
        std::iter::from_fn(|| p.poll()).collect()
    }

    fn head(side: Side, exchange: u64, offset: u64) -> (Side, u64, &'static str, u64) {
        (side, exchange, "head", offset)
    }
    fn end(side: Side, exchange: u64, end: u64) -> (Side, u64, &'static str, u64) {
        (side, exchange, "end", end)
    }
    fn desync(side: Side, offset: u64) -> (Side, u64, &'static str, u64) {
        (side, 0, "desync", offset)
    }

    /// Events reduced to (side, exchange, kind, offset).
    fn shape(events: &[L7Event]) -> Vec<(Side, u64, &'static str, u64)> {
        events
            .iter()
            .map(|e| match &e.kind {
                L7EventKind::Head { offset, .. } => (e.side, e.exchange, "head", *offset),
                L7EventKind::End { end, .. } => (e.side, e.exchange, "end", *end),
                L7EventKind::Desync { offset, .. } => (e.side, 0, "desync", *offset),
            })
            .collect()
    }

    fn request(e: &L7Event) -> &HttpRequest {
        match &e.kind {
            L7EventKind::Head {
                info: MessageInfo::HttpRequest(r),
                ..
            } => r,
            other => panic!("not a request head: {other:?}"),
        }
    }

    fn response(e: &L7Event) -> &HttpResponse {
        match &e.kind {
            L7EventKind::Head {
                info: MessageInfo::HttpResponse(r),
                ..
            } => r,
            other => panic!("not a response head: {other:?}"),
        }
    }

    const C: Side = Side::Client;
    const S: Side = Side::Server;

    #[test]
    fn get_and_response_with_length() {
        let mut p = Http1Parser::new();
        let req = b"GET /users/7?x=1 HTTP/1.1\r\nHost: api:8080\r\nUser-Agent: t\r\nAuthorization: Bearer s3cret\r\nCookie: a=b\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n";
        p.feed(C, req);
        let res = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello";
        p.feed(S, res);
        let ev = drain(&mut p);
        assert_eq!(
            shape(&ev),
            vec![
                head(C, 0, 0),
                end(C, 0, req.len() as u64),
                head(S, 0, 0),
                end(S, 0, res.len() as u64)
            ]
        );
        let r = request(&ev[0]);
        assert_eq!(r.method.as_deref(), Some("GET"));
        assert_eq!(r.target.as_deref(), Some("/users/7?x=1"));
        assert_eq!(r.version, Some(HttpVersion::Http11));
        assert_eq!(r.authority.as_deref(), Some("api:8080"));
        assert_eq!(
            r.header("traceparent"),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        );
        assert!(r
            .headers
            .iter()
            .all(|(n, _)| n != "authorization" && n != "cookie"));
        assert_eq!(r.content_length, None);
        let s = response(&ev[2]);
        assert_eq!(s.status, Some(200));
        assert_eq!(s.content_length, Some(5));
        // Nothing reads an HTTP/1 response's headers: none are kept (no
        // allocation per response).
        assert!(s.headers.is_empty(), "{:?}", s.headers);
        assert_eq!(s.headers.capacity(), 0);
    }

    /// A request's kept headers take exactly their room (its span holds
    /// them while it waits for its response), in the order sent, also past
    /// the ones counted before the list is allocated.
    #[test]
    fn kept_headers_take_exactly_their_room_in_order() {
        let req = |extra: &str| {
            let head = format!("GET /h HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n{extra}\r\n");
            let mut p = Http1Parser::new();
            p.feed(C, head.as_bytes());
            request(&drain(&mut p)[0]).clone()
        };
        let r = req("");
        assert_eq!(r.headers.capacity(), 0);
        let r = req("User-Agent: curl/8\r\n");
        assert_eq!(r.headers, vec![("user-agent".into(), "curl/8".to_string())]);
        assert_eq!(r.headers.capacity(), 1);
        let many: String = (0..11)
            .map(|i| format!("X-Forwarded-For: 10.0.0.{i}\r\nCookie: c={i}\r\n"))
            .collect();
        let r = req(&format!("Traceparent: t\r\n{many}Content-Type: a/b\r\n"));
        let mut want = vec![("traceparent".into(), "t".to_string())];
        want.extend((0..11).map(|i| ("x-forwarded-for".into(), format!("10.0.0.{i}"))));
        want.push(("content-type".into(), "a/b".to_string()));
        assert_eq!(r.headers, want);
        assert_eq!(r.headers.capacity(), 13);
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        let req = b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nHost: h\r\n\r\n";
        let res = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nX-T: 1\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let mut whole = Http1Parser::new();
        whole.feed(C, req);
        whole.feed(S, res);
        let a = drain(&mut whole);
        let mut bytes = Http1Parser::new();
        for b in req.chunks(1) {
            bytes.feed(C, b);
        }
        for b in res.chunks(1) {
            bytes.feed(S, b);
        }
        let b = drain(&mut bytes);
        assert_eq!(a, b);
        assert_eq!(
            shape(&a),
            vec![
                head(C, 0, 0),
                end(C, 0, 51),
                head(C, 1, 51),
                end(C, 1, req.len() as u64),
                head(S, 0, 0),
                end(S, 0, 77),
                head(S, 1, 77),
                end(S, 1, res.len() as u64),
            ]
        );
    }

    #[test]
    fn pipelined_requests_pair_fifo_and_head_has_no_body() {
        let mut p = Http1Parser::new();
        p.feed(
            C,
            b"GET /1 HTTP/1.1\r\n\r\nHEAD /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n",
        );
        p.feed(
            S,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        );
        let ev = drain(&mut p);
        let heads: Vec<_> = ev
            .iter()
            .filter_map(|e| match &e.kind {
                L7EventKind::Head { info, .. } => Some((e.side, e.exchange, info.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(heads.len(), 6);
        let statuses: Vec<_> = heads
            .iter()
            .filter_map(|(s, x, i)| match i {
                MessageInfo::HttpResponse(r) if *s == S => Some((*x, r.status)),
                _ => None,
            })
            .collect();
        assert_eq!(
            statuses,
            vec![(0, Some(200)), (1, Some(200)), (2, Some(404))]
        );
        assert!(ev
            .iter()
            .all(|e| !matches!(e.kind, L7EventKind::Desync { .. })));
    }

    #[test]
    fn no_body_for_204_304_and_requests_without_length() {
        let mut p = Http1Parser::new();
        p.feed(C, b"DELETE /x HTTP/1.1\r\n\r\nGET /y HTTP/1.1\r\n\r\n");
        p.feed(
            S,
            b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
        );
        let ev = drain(&mut p);
        assert_eq!(
            shape(&ev),
            vec![
                head(C, 0, 0),
                end(C, 0, 22),
                head(C, 1, 22),
                end(C, 1, 41),
                head(S, 0, 0),
                end(S, 0, 47),
                head(S, 1, 47),
                end(S, 1, 96),
            ]
        );
    }

    #[test]
    fn interim_responses_are_silent() {
        let mut p = Http1Parser::new();
        let req = b"PUT /up HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n";
        p.feed(C, req);
        p.feed(S, b"HTTP/1.1 100 Continue\r\n\r\n");
        p.feed(C, b"data");
        p.feed(
            S,
            b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        );
        let ev = drain(&mut p);
        assert_eq!(
            shape(&ev),
            vec![
                head(C, 0, 0),
                end(C, 0, req.len() as u64 + 4),
                head(S, 0, 25 + 44),
                end(S, 0, 25 + 44 + 38),
            ]
        );
        assert_eq!(response(&ev[2]).status, Some(200));
    }

    #[test]
    fn switching_protocols_stops_parsing() {
        let mut p = Http1Parser::new();
        p.feed(
            C,
            b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        );
        p.feed(
            S,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello",
        );
        p.feed(C, b"\x81\x85abcd\x00\x00\x00\x00\x00");
        p.gap(C, 100);
        p.feed(S, b"\x82\x7e\x01\x00 binary junk\r\n\r\n");
        p.close(S);
        let ev = drain(&mut p);
        assert_eq!(
            shape(&ev),
            vec![head(C, 0, 0), end(C, 0, 70), head(S, 0, 0), end(S, 0, 56)]
        );
    }

    #[test]
    fn upgrade_bytes_before_the_101_are_ignored() {
        let mut p = Http1Parser::new();
        p.feed(
            C,
            b"GET / HTTP/1.1\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
        );
        p.feed(C, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04");
        p.feed(
            S,
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n\x00\x00\x00\x04",
        );
        let ev = drain(&mut p);
        assert_eq!(ev.len(), 4);
        assert!(ev
            .iter()
            .all(|e| !matches!(e.kind, L7EventKind::Desync { .. })));
    }

    #[test]
    fn refused_upgrade_continues_http() {
        let mut p = Http1Parser::new();
        p.feed(C, b"GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n");
        p.feed(S, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx");
        p.feed(C, b"GET /2 HTTP/1.1\r\n\r\n");
        p.feed(S, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\ny");
        let ev = drain(&mut p);
        assert_eq!(ev.len(), 8);
        assert_eq!(request(&ev[4]).target.as_deref(), Some("/2"));
        assert_eq!(ev[6].exchange, 1);
    }

    #[test]
    fn connect_tunnel() {
        let mut p = Http1Parser::new();
        p.feed(
            C,
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        );
        p.feed(S, b"HTTP/1.1 200 Connection Established\r\n\r\n");
        p.feed(C, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03");
        p.feed(S, b"\x16\x03\x03\x00\x7a\x02");
        let ev = drain(&mut p);
        assert_eq!(
            shape(&ev),
            vec![head(C, 0, 0), end(C, 0, 59), head(S, 0, 0), end(S, 0, 39)]
        );
        assert_eq!(request(&ev[0]).target.as_deref(), Some("example.com:443"));
    }

    #[test]
    fn response_until_close() {
        let mut p = Http1Parser::new();
        p.feed(C, b"GET / HTTP/1.0\r\n\r\n");
        p.feed(
            S,
            b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n<html>",
        );
        p.gap(S, 5000);
        p.feed(S, b"</html>");
        p.close(S);
        let ev = drain(&mut p);
        assert_eq!(
            shape(&ev),
            vec![
                head(C, 0, 0),
                end(C, 0, 18),
                head(S, 0, 0),
                end(S, 0, 44 + 6 + 5000 + 7)
            ]
        );
        assert_eq!(response(&ev[2]).version, Some(HttpVersion::Http10));
    }

    #[test]
    fn orphan_response_gets_fresh_exchange() {
        let mut p = Http1Parser::new();
        p.feed(S, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        p.feed(C, b"GET / HTTP/1.1\r\n\r\n");
        p.feed(S, b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n");
        let ev = drain(&mut p);
        let ex: Vec<_> = ev.iter().map(|e| (e.side, e.exchange)).collect();
        assert_eq!(ex, vec![(S, 0), (S, 0), (C, 1), (C, 1), (S, 1), (S, 1)]);
    }

    #[test]
    fn gaps_inside_bodies_are_counted() {
        let mut p = Http1Parser::new();
        p.feed(C, b"POST / HTTP/1.1\r\nContent-Length: 10000\r\n\r\n0123");
        p.gap(C, 9990);
        p.feed(C, b"456");
        p.feed(C, b"789GET /n HTTP/1.1\r\n\r\n");
        p.feed(
            S,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\nab",
        );
        p.gap(S, 4096 - 2 + 2); // rest of the chunk and its CRLF
        p.feed(S, b"10\r\n0123456789abcdef");
        p.gap(S, 2);
        p.feed(S, b"0\r\n\r\n");
        let ev = drain(&mut p);
        let s = shape(&ev);
        assert_eq!(
            s,
            vec![
                head(C, 0, 0),
                end(C, 0, 42 + 10000),
                head(C, 1, 42 + 10000),
                end(C, 1, 42 + 10000 + 19),
                head(S, 0, 0),
                end(S, 0, 47 + 6 + 4096 + 2 + 4 + 16 + 2 + 5),
            ]
        );
    }

    #[test]
    fn gap_over_chunk_size_line_desyncs_then_resyncs() {
        let mut p = Http1Parser::new();
        p.feed(C, b"GET /1 HTTP/1.1\r\n\r\n");
        p.feed(
            S,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nab",
        );
        p.gap(S, 100);
        p.feed(S, b"more chunk bytes\r\n0\r\n\r\n");
        p.feed(C, b"GET /2 HTTP/1.1\r\n\r\n");
        p.feed(S, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        let ev = drain(&mut p);
        let s = shape(&ev);
        assert_eq!(
            s,
            vec![
                head(C, 0, 0),
                end(C, 0, 19),
                head(S, 0, 0),
                desync(S, 47 + 5),
                head(C, 1, 19),
                end(C, 1, 38),
                head(S, 1, 47 + 5 + 100 + 23),
                end(S, 1, 47 + 5 + 100 + 23 + 38),
            ]
        );
    }

    #[test]
    fn garbage_gives_one_desync_and_resync() {
        let mut p = Http1Parser::new();
        let mut data = b"\x00\x01garbage line\r\nmore \xff garbage\r\n".to_vec();
        let g = data.len() as u64;
        data.extend_from_slice(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n");
        for c in data.chunks(3) {
            p.feed(C, c);
        }
        let ev = drain(&mut p);
        assert_eq!(
            shape(&ev),
            vec![desync(C, 0), head(C, 0, g), end(C, 0, data.len() as u64)]
        );
    }

    #[test]
    fn oversized_head_desyncs() {
        let mut p = Http1Parser::new();
        let mut req = b"GET / HTTP/1.1\r\n".to_vec();
        while req.len() <= MAX_HEAD {
            req.extend_from_slice(
                b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
            );
        }
        req.extend_from_slice(b"\r\n");
        let next = b"GET /next HTTP/1.1\r\n\r\n";
        for c in req.chunks(1000) {
            p.feed(C, c);
        }
        p.feed(C, next);
        let ev = drain(&mut p);
        let n = req.len() as u64;
        assert_eq!(
            shape(&ev),
            vec![
                desync(C, 0),
                head(C, 0, n),
                end(C, 0, n + next.len() as u64)
            ]
        );
        // Same in one feed.
        let mut q = Http1Parser::new();
        let mut all = req.clone();
        all.extend_from_slice(next);
        q.feed(C, &all);
        assert_eq!(shape(&drain(&mut q)), shape(&ev));
    }

    #[test]
    fn non_utf8_header_values_are_lossy() {
        let mut p = Http1Parser::new();
        p.feed(
            C,
            b"GET / HTTP/1.1\r\nUser-Agent: caf\xe9\r\nHost: h\xff\r\n\r\n",
        );
        let ev = drain(&mut p);
        let r = request(&ev[0]);
        assert_eq!(r.header("user-agent"), Some("caf\u{fffd}"));
        assert_eq!(r.authority.as_deref(), Some("h\u{fffd}"));
    }

    #[test]
    fn gap_in_head_reports_received_lines() {
        let mut p = Http1Parser::new();
        p.feed(
            C,
            b"GET /big HTTP/1.1\r\nHost: h\r\ntraceparent: 00-aa-bb-01\r\nCookie: xxxxxx",
        );
        p.gap(C, 5000);
        p.feed(S, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        p.feed(C, b"GET /next HTTP/1.1\r\n\r\n");
        let ev = drain(&mut p);
        assert_eq!(
            shape(&ev),
            vec![
                head(C, 0, 0),
                desync(C, 68),
                head(S, 0, 0),
                end(S, 0, 38),
                head(C, 1, 5068),
                end(C, 1, 5090)
            ]
        );
        let r = request(&ev[0]);
        assert_eq!(r.target.as_deref(), Some("/big"));
        assert_eq!(r.header("traceparent"), Some("00-aa-bb-01"));
        assert_eq!(r.content_length, None);
    }

    #[test]
    fn client_loss_barrier_orphans_the_lost_requests_response() {
        let mut p = Http1Parser::new();
        // We joined mid-body of a request: its response must not pair with
        // the next request.
        p.feed(C, b"tail of some body\r\n");
        p.feed(S, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        p.feed(C, b"GET /a HTTP/1.1\r\n\r\n");
        p.feed(S, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        let ev = drain(&mut p);
        let s = shape(&ev);
        assert_eq!(s[0], desync(C, 0));
        // Orphan response: exchange 0, not used by the request (1).
        assert_eq!(s[1], head(S, 0, 0));
        assert_eq!(s[3], head(C, 1, 19));
        assert_eq!(s[5], head(S, 1, 38));
        assert_eq!(response(&ev[5]).status, Some(404));
    }

    #[test]
    fn pipelined_client_loss_never_pairs_across() {
        let mut p = Http1Parser::new();
        // The first request's head is lost entirely; the client pipelines a
        // second one before any response. The first response cannot be told
        // from the second one's: neither pairs with /b.
        p.feed(C, b"GET /a HT");
        p.gap(C, 300);
        p.feed(C, b"GET /b HTTP/1.1\r\n\r\n");
        p.feed(
            S,
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 404 Nope\r\nContent-Length: 1\r\n\r\nb",
        );
        // Later, a clean exchange pairs again.
        p.feed(C, b"GET /c HTTP/1.1\r\n\r\n");
        p.feed(S, b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
        let ev = drain(&mut p);
        let req: Vec<_> = ev
            .iter()
            .filter(|e| e.side == C && matches!(e.kind, L7EventKind::Head { .. }))
            .map(|e| (e.exchange, request(e).target.clone().unwrap()))
            .collect();
        let res: Vec<_> = ev
            .iter()
            .filter(|e| e.side == S && matches!(e.kind, L7EventKind::Head { .. }))
            .map(|e| (e.exchange, response(e).status.unwrap()))
            .collect();
        let b = req.iter().find(|(_, t)| t == "/b").unwrap().0;
        let c = req.iter().find(|(_, t)| t == "/c").unwrap().0;
        assert!(res.iter().all(|(x, _)| *x != b));
        assert!(res.contains(&(c, 201)));
    }

    #[test]
    fn server_loss_drops_pending_requests() {
        let mut p = Http1Parser::new();
        p.feed(C, b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n");
        p.feed(S, b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab");
        p.gap(S, 500); // rest of /1 and the head of /2's response
        p.feed(S, b"xyz\r\n");
        p.feed(C, b"GET /3 HTTP/1.1\r\n\r\n");
        p.feed(S, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        let ev = drain(&mut p);
        let resp: Vec<_> = ev
            .iter()
            .filter(|e| e.side == S && matches!(e.kind, L7EventKind::Head { .. }))
            .map(|e| e.exchange)
            .collect();
        // /1 -> 0; /2's response was lost; the last one answers /3 (2).
        assert_eq!(resp, vec![0, 2]);
        assert_eq!(
            ev.iter()
                .filter(|e| matches!(e.kind, L7EventKind::Desync { .. }))
                .count(),
            1
        );
    }

    #[test]
    fn invalid_content_length_desyncs_after_head() {
        let mut p = Http1Parser::new();
        p.feed(C, b"POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\nhello");
        let ev = drain(&mut p);
        assert_eq!(shape(&ev), vec![head(C, 0, 0), desync(C, 41)]);
        assert_eq!(request(&ev[0]).content_length, None);
    }

    #[test]
    fn close_mid_body_is_a_desync() {
        let mut p = Http1Parser::new();
        p.feed(S, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
        p.close(S);
        let ev = drain(&mut p);
        assert_eq!(shape(&ev), vec![head(S, 0, 0), desync(S, 42)]);
    }

    /// The server's usual answer to a request it rejects.
    const BAD_REQUEST: &[u8] =
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\nConnection: close\r\n\r\nbad request";

    /// `client` then [`BAD_REQUEST`], whole and byte by byte (same
    /// events); the request must be one head and end paired with the 400.
    fn rejected(client: &[u8]) -> HttpRequest {
        let mut p = Http1Parser::new();
        p.feed(C, client);
        p.feed(S, BAD_REQUEST);
        p.close(S);
        let ev = drain(&mut p);
        let mut q = Http1Parser::new();
        for b in client.chunks(1) {
            q.feed(C, b);
        }
        for b in BAD_REQUEST.chunks(1) {
            q.feed(S, b);
        }
        q.close(S);
        assert_eq!(drain(&mut q), ev, "split feeds give other events");
        assert_eq!(
            shape(&ev),
            vec![
                head(C, 0, 0),
                end(C, 0, client.len() as u64),
                head(S, 0, 0),
                end(S, 0, BAD_REQUEST.len() as u64)
            ],
            "{ev:?}"
        );
        assert_eq!(response(&ev[2]).status, Some(400));
        request(&ev[0]).clone()
    }

    #[test]
    fn invalid_method_is_a_request_paired_with_its_400() {
        let r = rejected(b"G\x01T /m?q=1 HTTP/1.1\r\nHost: h:8\r\nUser-Agent: ua\r\n\r\n");
        assert_eq!(
            r,
            HttpRequest {
                method: Some("G\\x01T".into()),
                target: Some("/m?q=1".into()),
                version: Some(HttpVersion::Http11),
                authority: Some("h:8".into()),
                headers: vec![("user-agent".into(), "ua".into())],
                invalid: vec!["method".into()],
                ..HttpRequest::default()
            }
        );
        // A lower-case or unknown method is a valid token: not invalid.
        let mut p = Http1Parser::new();
        p.feed(C, b"get / HTTP/1.1\r\n\r\n");
        assert!(request(&drain(&mut p)[0]).invalid.is_empty());
    }

    #[test]
    fn invalid_targets_are_escaped() {
        let r = rejected(b"GET /caf\xe9?q=\xff\xfe HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(r.method.as_deref(), Some("GET"));
        assert_eq!(r.target.as_deref(), Some("/caf\\xe9?q=\\xff\\xfe"));
        assert_eq!(r.version, Some(HttpVersion::Http11));
        assert_eq!(r.invalid, vec!["target"]);
        // Controls, DEL, a tab and a backslash; valid UTF-8 is kept.
        let r = rejected(b"GET /a\x01b\x7f\tc\\d/\xc3\xa9\x1b HTTP/1.0\r\n\r\n");
        assert_eq!(
            r.target.as_deref(),
            Some("/a\\x01b\\x7f\\x09c\\\\d/\u{e9}\\x1b")
        );
        assert_eq!(r.version, Some(HttpVersion::Http10));
        assert_eq!(r.invalid, vec!["target"]);
        // Method and target both invalid.
        let r = rejected(b"P\xffST /\x00 HTTP/1.1\r\n\r\n");
        assert_eq!(r.method.as_deref(), Some("P\\xffST"));
        assert_eq!(r.target.as_deref(), Some("/\\x00"));
        assert_eq!(r.invalid, vec!["method", "target"]);
    }

    #[test]
    fn invalid_versions_and_headers_are_marked() {
        let r = rejected(b"GET /v HTTP/2.0\r\nHost: h\r\n\r\n");
        assert_eq!(r.version, None);
        assert_eq!(r.target.as_deref(), Some("/v"));
        assert_eq!(r.invalid, vec!["version"]);
        let r = rejected(b"GET /v HTTX/1.1\r\n\r\n");
        assert_eq!(r.invalid, vec!["version"]);
        let r = rejected(
            b"GET /h HTTP/1.1\r\nHost: h\r\nX-\x01: ab\r\nBad Name: v\r\nNoColon\r\n X-Fold: f\r\nX-Ctl: a\x00b\r\nUser-Agent: ua\r\n\r\n",
        );
        assert_eq!(r.method.as_deref(), Some("GET"));
        assert_eq!(r.target.as_deref(), Some("/h"));
        assert_eq!(r.authority.as_deref(), Some("h"));
        assert_eq!(r.header("user-agent"), Some("ua"));
        // `host` is in `authority` only.
        assert_eq!(r.headers.len(), 1);
        assert_eq!(r.invalid, vec!["header"]);
        let r = rejected(b"B\x02D /\x7f HTTP/9\r\nX\x01: y\r\n\r\n");
        assert_eq!(r.invalid, vec!["method", "target", "version", "header"]);
        assert_eq!(r.version, None);
    }

    #[test]
    fn invalid_request_body_and_the_next_request() {
        // A declared body is skipped; the next request pairs with the next
        // response (a server that kept the connection open).
        let mut p = Http1Parser::new();
        let bad = b"G\x01T /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
        let good = b"GET /b HTTP/1.1\r\n\r\n";
        let mut c = bad.to_vec();
        c.extend_from_slice(good);
        p.feed(C, &c);
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let mut s = BAD_REQUEST.to_vec();
        s.extend_from_slice(ok);
        p.feed(S, &s);
        let ev = drain(&mut p);
        let (b, g, r) = (
            bad.len() as u64,
            good.len() as u64,
            BAD_REQUEST.len() as u64,
        );
        assert_eq!(
            shape(&ev),
            vec![
                head(C, 0, 0),
                end(C, 0, b),
                head(C, 1, b),
                end(C, 1, b + g),
                head(S, 0, 0),
                end(S, 0, r),
                head(S, 1, r),
                end(S, 1, r + ok.len() as u64),
            ]
        );
        assert_eq!(request(&ev[0]).content_length, Some(3));
        assert_eq!(request(&ev[2]).target.as_deref(), Some("/b"));
        assert!(request(&ev[2]).invalid.is_empty());
        // A head cut by a gap still reports its request line.
        let mut p = Http1Parser::new();
        p.feed(C, b"G\x01T /cut HTTP/1.1\r\nHost: h\r\nX-Lo");
        p.gap(C, 100);
        let ev = drain(&mut p);
        assert_eq!(shape(&ev), vec![head(C, 0, 0), desync(C, 32)]);
        assert_eq!(request(&ev[0]).invalid, vec!["method"]);
    }

    #[test]
    fn lines_that_are_not_requests_still_desync() {
        for junk in [
            &b"tail of some body\r\n\r\n"[..],
            b"\x00GET / HTTP/1.1\r\n\r\n",
            b"get lost\r\n\r\n",
            b"FOO /x HTTX/1.1\r\n\r\n",
            b"GET\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14 / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1 \r\n\r\n",
        ] {
            let mut p = Http1Parser::new();
            p.feed(C, junk);
            p.feed(C, b"GET /ok HTTP/1.1\r\n\r\n");
            let ev = drain(&mut p);
            let n = junk.len() as u64;
            assert_eq!(
                shape(&ev),
                vec![desync(C, 0), head(C, 0, n), end(C, 0, n + 20)],
                "{junk:?}"
            );
        }
    }

    #[test]
    fn detection_of_invalid_requests() {
        assert!(looks_like_request(b"G\x01T / HTTP/1.1\r\n"));
        assert!(looks_like_request(
            b"GET /a\x01b HTTP/1.0\r\nHost: x\r\n\r\n"
        ));
        assert!(looks_like_request(b"GET /caf\xe9 HTTP/1.1\r\n"));
        // Incomplete line, other versions, not request-like: no.
        assert!(!looks_like_request(b"G\x01T / HTTP/1.1"));
        assert!(!looks_like_request(b"G\x01T / HTTP/2.0\r\n"));
        assert!(!looks_like_request(b"GET / HTTX/1.1\r\n"));
        assert!(!looks_like_request(b"\x01ET / HTTP/1.1\r\n"));
        assert!(!looks_like_request(b"SET /a b\r\n"));
    }

    #[test]
    fn detection() {
        assert!(looks_like_request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(looks_like_request(b"POST /very/long/pa"));
        assert!(looks_like_request(b"GET "));
        assert!(!looks_like_request(b"GET"));
        assert!(!looks_like_request(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
        assert!(!looks_like_request(b"GET foo\r\n"));
        assert!(!looks_like_request(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"));
        assert!(!looks_like_request(b"\x16\x03\x01\x02\x00"));
        assert!(!looks_like_request(b"GET / HTTP/2.0\r\n"));
        assert!(looks_like_response(b"HTTP/1.1 200 OK\r\n"));
        assert!(looks_like_response(b"HTTP/1.0 404"));
        assert!(looks_like_response(b"HTTP/1"));
        assert!(!looks_like_response(b"HTTP"));
        assert!(!looks_like_response(b"HTTP/2 200"));
        assert!(!looks_like_response(b"+OK\r\n"));
        assert!(!looks_like_response(b"\x00\x00\x12\x04\x00"));
    }

    #[test]
    fn decode_functions() {
        assert_eq!(decode_request(b"GET / HTTP/1.1\r\n"), Ok(Decoded::Partial));
        assert!(matches!(
            decode_request(b"\x00GET"),
            Err(Http1Error::Malformed(_))
        ));
        let Ok(Decoded::Complete { len, head }) = decode_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\nxyz",
        ) else {
            panic!("complete expected")
        };
        assert_eq!(len, 72);
        assert_eq!(head.body, Ok(BodyLength::Chunked));
        let Ok(Decoded::Complete { head, .. }) =
            decode_request(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n")
        else {
            panic!("complete expected")
        };
        assert_eq!(head.body, Err(Http1Error::BadTransferEncoding));
        // Many headers go past the stack array.
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..500 {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"Host: last\r\n\r\n");
        let Ok(Decoded::Complete { head, .. }) = decode_request(&many) else {
            panic!("complete expected")
        };
        assert_eq!(head.info.authority.as_deref(), Some("last"));
    }

    fn normalise(ev: Vec<L7Event>) -> Vec<L7Event> {
        ev.into_iter()
            .map(|mut e| {
                if let L7EventKind::Desync { reason, .. } = &mut e.kind {
                    reason.clear();
                }
                e
            })
            .collect()
    }

    fn run_split(client: &[u8], server: &[u8], cuts_c: &[usize], cuts_s: &[usize]) -> Vec<L7Event> {
        let mut p = Http1Parser::new();
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
        normalise(drain(&mut p))
    }

    const CLIENT: &[u8] = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nPOST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nT: x\r\n\r\n\r\nHEAD /c HTTP/1.1\r\n\r\nPUT /d HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\nbody";
    const SERVER: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 500 Internal\r\n\r\n<eof>";

    proptest! {
        #[test]
        fn splitting_never_changes_events(
            cuts_c in proptest::collection::vec(any::<usize>(), 0..12),
            cuts_s in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let whole = run_split(CLIENT, SERVER, &[], &[]);
            prop_assert_eq!(whole.len(), 16);
            prop_assert_eq!(run_split(CLIENT, SERVER, &cuts_c, &cuts_s), whole);
        }

        #[test]
        fn splitting_arbitrary_bytes_never_changes_events(
            client in proptest::collection::vec(any::<u8>(), 0..400),
            server in proptest::collection::vec(any::<u8>(), 0..400),
            cuts_c in proptest::collection::vec(any::<usize>(), 0..8),
            cuts_s in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let whole = run_split(&client, &server, &[], &[]);
            prop_assert_eq!(run_split(&client, &server, &cuts_c, &cuts_s), whole);
        }

        #[test]
        fn splitting_mutated_http_never_changes_events(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
            cuts_c in proptest::collection::vec(any::<usize>(), 0..8),
            cuts_s in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let mut client = CLIENT.to_vec();
            let mut server = SERVER.to_vec();
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
            let mut p = Http1Parser::new();
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
            }
        }
    }
}
