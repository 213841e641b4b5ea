#![no_main]
//! Drives `Http1Parser` with feeds, gaps and closes on both sides taken from
//! the input (see `protocol_parsers_fuzz::drive`), and checks the event
//! invariants: offsets within the input, heads in order, and request
//! methods and targets free of ASCII control bytes (invalid ones are
//! escaped) with only known names in `invalid`.

use libfuzzer_sys::fuzz_target;
use protocol_parsers::http1::Http1Parser;
use protocol_parsers::{L7EventKind, MessageInfo};
use protocol_parsers_fuzz::{drive, InOrder};

const INVALID: &[&str] = &["method", "target", "version", "header"];

fuzz_target!(|data: &[u8]| {
    let mut p = Http1Parser::new();
    let mut order = InOrder::default();
    drive(&mut p, data, |e, _| {
        order.check(e);
        if let L7EventKind::Head {
            info: MessageInfo::HttpRequest(r),
            ..
        } = &e.kind
        {
            for v in [&r.method, &r.target].into_iter().flatten() {
                assert!(!v.bytes().any(|b| b.is_ascii_control()), "unescaped {v:?}");
            }
            assert!(r.invalid.iter().all(|w| INVALID.contains(&w.as_str())));
        }
    });
});
