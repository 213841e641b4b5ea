#![no_main]
//! Drives `RedisParser` with feeds, gaps and closes on both sides taken from
//! the input (see `protocol_parsers_fuzz::drive`), and checks the event
//! invariants: offsets within the input, heads in order, and no command
//! text kept (Redis values are never stored).

use libfuzzer_sys::fuzz_target;
use protocol_parsers::redis::RedisParser;
use protocol_parsers::{L7EventKind, MessageInfo};
use protocol_parsers_fuzz::{drive, InOrder};

fuzz_target!(|data: &[u8]| {
    let mut p = RedisParser::new();
    let mut order = InOrder::default();
    drive(&mut p, data, |e, _| {
        order.check(e);
        if let L7EventKind::Head {
            info: MessageInfo::DbRequest(r),
            ..
        } = &e.kind
        {
            assert!(r.query.is_none());
        }
    });
});
