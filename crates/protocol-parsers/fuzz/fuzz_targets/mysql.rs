#![no_main]
//! Drive the MySQL parser with client/server chunks and gaps taken from the
//! fuzz input. Control bytes pick the side, the chunk length and whether a
//! gap follows; the parser must never panic nor buffer without bound, and
//! every event must stay within the bytes given for its side.
use libfuzzer_sys::fuzz_target;
use protocol_parsers::mysql::MysqlParser;
use protocol_parsers::{ConnectionParser, L7EventKind, Side};

fuzz_target!(|data: &[u8]| {
    let mut p = MysqlParser::new();
    let mut fed = [0u64; 2];
    let mut rest = data;
    while rest.len() >= 2 {
        let ctl = rest[0];
        let len = (rest[1] as usize).min(rest.len() - 2);
        let chunk = &rest[2..2 + len];
        rest = &rest[2 + len..];
        let side = if ctl & 1 == 0 {
            Side::Client
        } else {
            Side::Server
        };
        let i = (ctl & 1) as usize;
        p.feed(side, chunk);
        fed[i] += chunk.len() as u64;
        if ctl & 0x0E == 0x0E {
            let gap = u64::from(ctl >> 4) * 977;
            p.gap(side, gap);
            fed[i] += gap;
        }
        if ctl & 0xF0 == 0xF0 {
            p.close(side);
        }
        while let Some(ev) = p.poll() {
            let limit = fed[if ev.side == Side::Client { 0 } else { 1 }];
            match ev.kind {
                L7EventKind::Head { offset, .. } | L7EventKind::Desync { offset, .. } => {
                    assert!(offset <= limit)
                }
                L7EventKind::End { end, .. } => assert!(end <= limit),
            }
        }
        assert!(p.buffered() <= 2 * 64 * 1024);
    }
});
