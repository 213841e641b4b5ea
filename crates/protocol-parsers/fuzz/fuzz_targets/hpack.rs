#![no_main]
//! HPACK decoder on arbitrary header blocks: a decoder from the connection
//! start and one joined mid-connection, complete and truncated blocks. Also
//! checks that what the encoder produces for the decoded fields decodes back
//! to the same fields.
use protocol_parsers::http2::hpack::{Decoder, Encoder, Field, Indexing, MAX_TABLE_SIZE};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut fresh = Decoder::new();
    let mut mid = Decoder::new_mid_connection();
    let mut enc = Encoder::new();
    let mut check = Decoder::new();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let n = (len as usize).min(tail.len());
        let block = &tail[..n];
        rest = &tail[n..];
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let ok = fresh
            .decode(block, |f| {
                if let Field::Decoded { name, value } = f {
                    fields.push((name.to_vec(), value.to_vec()));
                }
            })
            .is_ok();
        let _ = mid.decode(block, |_| {});
        if len & 1 == 1 {
            let _ = mid.decode_truncated(&block[..n / 2], |_| {});
        }
        assert!(fresh.table_bytes() <= MAX_TABLE_SIZE && mid.table_bytes() <= MAX_TABLE_SIZE);
        if ok {
            let mut out = Vec::new();
            enc.encode(
                fields
                    .iter()
                    .map(|(n, v)| (&n[..], &v[..], Indexing::Incremental)),
                &mut out,
            );
            let mut back = Vec::new();
            check
                .decode(&out, |f| {
                    if let Field::Decoded { name, value } = f {
                        back.push((name.to_vec(), value.to_vec()));
                    }
                })
                .expect("encoder output decodes");
            assert_eq!(back, fields);
        }
    }
});
