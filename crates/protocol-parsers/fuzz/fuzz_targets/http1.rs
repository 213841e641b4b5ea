#![no_main]
//! Drives `Http1Parser` with feeds, gaps and closes on both sides taken from
//! the input, and checks the event invariants.
//!
//! Input: a sequence of operations. Each starts with one byte `op`:
//! bit 0 = side (0 client, 1 server); bits 1-2 = kind:
//! 0/1 feed (next byte + 1 = length, then that many bytes),
//! 2 gap (next two bytes, little-endian = length), 3 close.

use libfuzzer_sys::fuzz_target;
use protocol_parsers::http1::Http1Parser;
use protocol_parsers::{ConnectionParser, L7EventKind, Side};

fuzz_target!(|data: &[u8]| {
    let mut p = Http1Parser::new();
    let mut len = [0u64; 2];
    let mut last_head = [0u64; 2];
    let mut i = 0;
    while i < data.len() {
        let op = data[i];
        i += 1;
        let side = if op & 1 == 0 { Side::Client } else { Side::Server };
        let s = (op & 1) as usize;
        match (op >> 1) & 3 {
            0 | 1 => {
                let n = data.get(i).map_or(0, |b| *b as usize + 1);
                i += 1;
                let end = (i + n).min(data.len());
                let chunk = &data[i.min(end)..end];
                i = end;
                p.feed(side, chunk);
                len[s] += chunk.len() as u64;
            }
            2 => {
                let lo = data.get(i).copied().unwrap_or(0) as u64;
                let hi = data.get(i + 1).copied().unwrap_or(0) as u64;
                i += 2;
                let n = lo | (hi << 8);
                p.gap(side, n);
                len[s] += n;
            }
            _ => p.close(side),
        }
        while let Some(e) = p.poll() {
            let k = (e.side == Side::Server) as usize;
            match e.kind {
                L7EventKind::Head { offset, .. } => {
                    assert!(offset <= len[k]);
                    assert!(offset >= last_head[k]);
                    last_head[k] = offset;
                }
                L7EventKind::End { end, .. } => {
                    assert!(end <= len[k]);
                    assert!(end >= last_head[k]);
                }
                L7EventKind::Desync { offset, .. } => assert!(offset <= len[k]),
            }
        }
    }
});
