#![no_main]
//! Protocol detection and the parser it picks, as span-core uses them:
//! `detect` on the first bytes one side sent (side and server port from
//! the first input byte), then, when a protocol is detected, `new_parser`
//! for it driven by the rest of the input (see
//! `protocol_parsers_fuzz::drive`) after those first bytes.
use libfuzzer_sys::fuzz_target;
use protocol_parsers::{detect, new_parser, Side};
use protocol_parsers_fuzz::Driver;

const PORTS: [u16; 8] = [80, 8080, 443, 3306, 5432, 6379, 50051, 1];

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let side = if ctl & 1 == 0 {
        Side::Client
    } else {
        Side::Server
    };
    let port = PORTS[(ctl >> 1) as usize % PORTS.len()];
    // The first bytes: up to the length in the next byte.
    let Some((&n, rest)) = rest.split_first() else {
        return;
    };
    let n = (n as usize).min(rest.len());
    let (first, ops) = rest.split_at(n);
    let Some(protocol) = detect(side, first, port) else {
        return;
    };
    let mut p = new_parser(protocol);
    assert_eq!(p.protocol(), protocol);
    let mut d = Driver::default();
    d.feed(&mut *p, side, first);
    d.run(&mut *p, ops, |_, _| {});
});
