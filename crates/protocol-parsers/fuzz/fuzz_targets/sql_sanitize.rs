#![no_main]
//! `sanitize` / `summarize` on arbitrary text: never panic, sanitising is
//! idempotent, and no digit survives outside identifiers, quoted names,
//! placeholders and comments (checked by re-lexing: a second pass changes
//! nothing).
use libfuzzer_sys::fuzz_target;
use protocol_parsers::sql::{sanitize, summarize};

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let once = sanitize(&s);
    assert_eq!(sanitize(&once), once);
    let _ = summarize(&s);
    let _ = summarize(&once);
});
