//! HTTP/2 bytes for the tests: a client's preface, SETTINGS and one
//! request's HEADERS, and a server's SETTINGS and HEADERS, both ending their
//! stream (HPACK-encoded with protocol-parsers' test encoder).
#![allow(dead_code)]

use protocol_parsers::http2::hpack::{Encoder, Indexing};

pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(9 + payload.len());
    let n = payload.len() as u32;
    f.extend_from_slice(&n.to_be_bytes()[1..]);
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

pub const HEADERS: u8 = 1;
pub const SETTINGS: u8 = 4;
pub const END_STREAM: u8 = 1;
pub const END_HEADERS: u8 = 4;

pub fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut enc = Encoder::new();
    let mut out = Vec::new();
    enc.encode(
        fields
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes(), Indexing::Incremental)),
        &mut out,
    );
    out
}

/// (client bytes, server bytes) of one exchange on stream 1; the response
/// ends its stream only with `response_ends`.
pub fn exchange(
    request: &[(&str, &str)],
    response: &[(&str, &str)],
    response_ends: bool,
) -> (Vec<u8>, Vec<u8>) {
    let mut req = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    req.extend(frame(SETTINGS, 0, 0, &[]));
    req.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &block(request)));
    let mut resp = frame(SETTINGS, 0, 0, &[]);
    let flags = if response_ends {
        END_HEADERS | END_STREAM
    } else {
        END_HEADERS
    };
    resp.extend(frame(HEADERS, flags, 1, &block(response)));
    (req, resp)
}
