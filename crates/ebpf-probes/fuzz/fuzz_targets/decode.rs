#![no_main]
//! `ebpf_probes::raw::decode` on arbitrary ring-buffer records: never panics,
//! and what it accepts is consistent with the record's bytes.
//!
//! The first input byte picks the record kind (so every kind is reached
//! without the fuzzer having to find the 4-byte tag first); the rest is the
//! record after its kind field. Kinds 0 and 9..=255 stand for unknown kinds.
use ebpf_probes::raw::{self, DecodeError, RawDataEvent, MAX_CAPTURE};
use libfuzzer_sys::fuzz_target;
use span_core::Event;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let mut rec = Vec::with_capacity(rest.len() + 4);
    rec.extend_from_slice(&u32::from(kind).to_ne_bytes());
    rec.extend_from_slice(rest);
    check(&rec);
    // The raw input as a record too (any 4-byte kind, short records).
    check(data);
});

fn check(rec: &[u8]) {
    let hdr = std::mem::size_of::<RawDataEvent>();
    match raw::decode(rec) {
        Ok(Event::Data(d)) => {
            assert_eq!(raw::record_kind(rec), Some(raw::EV_DATA));
            let captured = d.payload.len();
            assert!(captured as u32 <= MAX_CAPTURE);
            assert_eq!(&d.payload[..], &rec[hdr..hdr + captured]);
        }
        Ok(Event::ConnOpen(_)) => assert_eq!(raw::record_kind(rec), Some(raw::EV_CONN_OPEN)),
        Ok(Event::ConnClose(_)) => assert_eq!(raw::record_kind(rec), Some(raw::EV_CONN_CLOSE)),
        Ok(Event::TlsBind(_)) => assert_eq!(raw::record_kind(rec), Some(raw::EV_TLS_BIND)),
        Ok(Event::Process(p)) => {
            assert_eq!(raw::record_kind(rec), Some(raw::EV_PROC_EXEC));
            assert!(p.args.iter().all(|a| !a.is_empty() && !a.contains('\0')));
            assert!(!p.comm.contains('\0') && !p.exe.contains('\0'));
        }
        Ok(Event::ProcessExit { .. }) => {
            assert_eq!(raw::record_kind(rec), Some(raw::EV_PROC_EXIT))
        }
        Ok(Event::TaskStart(_)) => assert_eq!(raw::record_kind(rec), Some(raw::EV_TASK_START)),
        Ok(Event::TaskEnd(_)) => assert_eq!(raw::record_kind(rec), Some(raw::EV_TASK_END)),
        Err(DecodeError::Short { len, need, .. }) => assert!(len < need && len == rec.len()),
        Err(DecodeError::UnknownKind(k)) => assert_eq!(raw::record_kind(rec), Some(k)),
        Err(DecodeError::BadField { .. }) => {}
    }
}
