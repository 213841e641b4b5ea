#![no_main]
//! The ring-buffer decoders on arbitrary records: `raw::Decoder` (stateful:
//! thread and connection details kept from earlier records) over a sequence
//! of records, and `raw::legacy::decode` (event logs of formats 3 and 4) on
//! each. Neither panics, and what they accept is consistent with the bytes.
//!
//! Input: records one after the other, each as a kind byte (so every kind
//! is reached without the fuzzer having to find the 4-byte tag), a length
//! byte, then that many bytes of the record after its kind field.
use ebpf_probes::raw::{self, legacy, DecodeError, MAX_CAPTURE};
use libfuzzer_sys::fuzz_target;
use span_core::Event;

fuzz_target!(|data: &[u8]| {
    let mut decoder = raw::Decoder::new();
    let mut rest = data;
    while let [kind, len, tail @ ..] = rest {
        let n = (*len as usize).min(tail.len());
        let mut rec = Vec::with_capacity(n + 4);
        rec.extend_from_slice(&u32::from(*kind).to_ne_bytes());
        rec.extend_from_slice(&tail[..n]);
        rest = &tail[n..];
        match decoder.decode(&rec) {
            Ok(Some(ev)) => check(&rec, &ev),
            Ok(None) => {}
            Err(e) => check_err(&rec, e),
        }
        for version in [3, 4] {
            match legacy::decode(&rec, version) {
                Ok(ev) => check(&rec, &ev),
                Err(e) => check_err(&rec, e),
            }
        }
    }
    // The raw input as one record too (any 4-byte kind, short records).
    let _ = raw::Decoder::new().decode(data);
});

fn check(rec: &[u8], ev: &Event) {
    match ev {
        Event::Data(d) => {
            let captured = d.payload.len();
            assert!(captured as u32 <= MAX_CAPTURE);
            // The payload is the end of the record.
            assert!(rec.ends_with(&d.payload[..]));
        }
        Event::Process(p) => {
            assert!(p.args.iter().all(|a| !a.is_empty() && !a.contains('\0')));
            assert!(!p.comm.contains('\0') && !p.exe.contains('\0'));
        }
        _ => {}
    }
}

fn check_err(rec: &[u8], e: DecodeError) {
    match e {
        DecodeError::Short { len, need, .. } => assert!(len < need && len <= rec.len()),
        DecodeError::UnknownKind(k) => assert!(k != raw::EV_DATA),
        _ => {}
    }
}
