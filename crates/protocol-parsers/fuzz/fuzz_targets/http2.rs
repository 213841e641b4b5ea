#![no_main]
//! Drive the HTTP/2 parser with sides, chunks, gaps and closes taken from the
//! fuzz input. The first byte picks whether the client starts with the
//! connection preface (to reach the fresh-connection states) or not (joined
//! mid-connection).
use protocol_parsers::http2::Http2Parser;
use protocol_parsers::{ConnectionParser, L7EventKind, Side};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let mut p = Http2Parser::new();
    let mut given = [0u64; 2];
    if mode & 1 == 1 {
        p.feed(Side::Client, PREFACE);
        given[0] += PREFACE.len() as u64;
    }
    while let Some((&op, tail)) = rest.split_first() {
        let side = if op & 0x80 != 0 {
            Side::Server
        } else {
            Side::Client
        };
        let i = (side == Side::Server) as usize;
        let len = (op & 0x3f) as usize;
        match (op >> 6) & 1 {
            _ if op & 0x3f == 0x3f => {
                p.close(side);
                rest = tail;
            }
            0 => {
                // Feed: a chunk of up to 62 (or, with len 0, all remaining) bytes.
                let n = if len == 0 {
                    tail.len()
                } else {
                    len.min(tail.len())
                };
                p.feed(side, &tail[..n]);
                given[i] += n as u64;
                rest = &tail[n..];
            }
            _ => {
                let n = (len as u64) * 997;
                p.gap(side, n);
                given[i] += n;
                rest = tail;
            }
        }
        while let Some(e) = p.poll() {
            let i = (e.side == Side::Server) as usize;
            let off = match e.kind {
                L7EventKind::Head { offset, .. } => offset,
                L7EventKind::End { end, .. } => end,
                L7EventKind::Desync { offset, .. } => offset,
            };
            assert!(off <= given[i], "offset past the input");
        }
    }
});
