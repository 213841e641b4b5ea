#![no_main]
//! Drives `PostgresParser` with feeds, gaps and closes on both sides taken
//! from the input (see `protocol_parsers_fuzz::drive`): it must never
//! panic nor buffer without bound, and every event stays within the bytes
//! given for its side.
use libfuzzer_sys::fuzz_target;
use protocol_parsers::postgres::PostgresParser;
use protocol_parsers_fuzz::drive;

fuzz_target!(|data: &[u8]| {
    let mut p = PostgresParser::new();
    drive(&mut p, data, |_, _| {});
    assert!(p.buffered() <= 2 * 64 * 1024);
});
