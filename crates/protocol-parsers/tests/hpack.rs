//! HPACK decoder tests: RFC 7541 appendix C examples, encode/decode round
//! trips, and the mid-connection guarantees (never a wrong value, indices stay
//! aligned, evictions applied, synchronisation once provable).

use proptest::prelude::*;
use protocol_parsers::http2::hpack::{Decoder, Encoder, Field, HpackError, Indexing};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

type Fields = Vec<Option<(Vec<u8>, Vec<u8>)>>;

/// Decoded fields, `None` for `Field::Unknown`.
fn decode(d: &mut Decoder, block: &[u8]) -> Result<Fields, HpackError> {
    let mut out = Vec::new();
    d.decode(block, |f| {
        out.push(match f {
            Field::Decoded { name, value } => Some((name.to_vec(), value.to_vec())),
            Field::Redacted { name } => Some((name.to_vec(), b"<redacted>".to_vec())),
            Field::Unknown => None,
        })
    })?;
    Ok(out)
}

fn pairs(v: &[(&str, &str)]) -> Fields {
    v.iter()
        .map(|(n, v)| Some((n.as_bytes().to_vec(), v.as_bytes().to_vec())))
        .collect()
}

#[test]
fn rfc7541_c3_and_c4_requests() {
    let plain = [
        "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
        "8286 84be 5808 6e6f 2d63 6163 6865",
        "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
    ];
    let huff = [
        "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
        "8286 84be 5886 a8eb 1064 9cbf",
        "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
    ];
    let expect = [
        pairs(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
        ]),
        pairs(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
            ("cache-control", "no-cache"),
        ]),
        pairs(&[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "www.example.com"),
            ("custom-key", "custom-value"),
        ]),
    ];
    let sizes = [57, 110, 164];
    for blocks in [plain, huff] {
        let mut d = Decoder::new();
        for i in 0..3 {
            assert_eq!(decode(&mut d, &hex(blocks[i])).unwrap(), expect[i]);
            assert_eq!(d.table_bytes(), sizes[i]);
            assert!(d.is_synchronised());
        }
        assert_eq!(d.known_entries(), 3);
    }
}

#[test]
fn rfc7541_c5_responses_with_evictions() {
    let blocks = [
        "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
        "4803 3330 37c1 c0bf",
        "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31",
    ];
    let date1 = "Mon, 21 Oct 2013 20:13:21 GMT";
    let expect = [
        pairs(&[
            (":status", "302"),
            ("cache-control", "private"),
            ("date", date1),
            ("location", "https://www.example.com"),
        ]),
        pairs(&[
            (":status", "307"),
            ("cache-control", "private"),
            ("date", date1),
            ("location", "https://www.example.com"),
        ]),
        pairs(&[
            (":status", "200"),
            ("cache-control", "private"),
            ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
            ("location", "https://www.example.com"),
            ("content-encoding", "gzip"),
            (
                "set-cookie",
                "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
            ),
        ]),
    ];
    let sizes = [222, 222, 215];
    let mut d = Decoder::with_table_size(256);
    for i in 0..3 {
        assert_eq!(
            decode(&mut d, &hex(blocks[i])).unwrap(),
            expect[i],
            "block {i}"
        );
        assert_eq!(d.table_bytes(), sizes[i]);
    }
    // Joining after the first response: the 307 block inserts `:status: 307`
    // (evicting `:status: 302` for the encoder) and then refers to three
    // entries we never saw.
    let mut mid = Decoder::new_mid_connection();
    let got = decode(&mut mid, &hex(blocks[1])).unwrap();
    assert_eq!(got[0], expect[1][0]);
    assert_eq!(&got[1..], &[None, None, None]);
    assert_eq!(mid.known_entries(), 1);
    assert!(!mid.is_synchronised());
}

#[test]
fn errors_forget_the_table() {
    let mut d = Decoder::new();
    // Index 0 is invalid.
    assert_eq!(decode(&mut d, &[0x80]), Err(HpackError::InvalidIndex(0)));
    assert!(!d.is_synchronised());
    // A dynamic index beyond a table known to be complete is an error.
    let mut d = Decoder::new();
    assert_eq!(decode(&mut d, &[0xbe]), Err(HpackError::InvalidIndex(62)));
    // ... but only undecodable when joined midway.
    let mut d = Decoder::new_mid_connection();
    assert_eq!(decode(&mut d, &[0xbe]).unwrap(), vec![None]);
    // Truncated instruction.
    let mut d = Decoder::new();
    assert_eq!(
        decode(&mut d, &[0x41, 0x05, b'a']),
        Err(HpackError::Truncated)
    );
    // Integer overflow.
    let mut d = Decoder::new();
    assert_eq!(
        decode(&mut d, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
        Err(HpackError::IntegerOverflow)
    );
}

#[test]
fn truncated_block_keeps_complete_fields_and_desyncs() {
    let mut enc = Encoder::new();
    let mut block = Vec::new();
    enc.encode(
        [
            (&b":method"[..], &b"GET"[..], Indexing::Incremental),
            (b":path", b"/a/long/path/value", Indexing::Incremental),
        ],
        &mut block,
    );
    let mut d = Decoder::new();
    let mut got = Vec::new();
    d.decode_truncated(&block[..block.len() - 3], |f| {
        if let Field::Decoded { name, value } = f {
            got.push((name.to_vec(), value.to_vec()));
        }
    })
    .unwrap();
    assert_eq!(got, vec![(b":method".to_vec(), b"GET".to_vec())]);
    assert!(!d.is_synchronised());
    assert_eq!(d.known_entries(), 0);
}

#[test]
fn retain_filter_redacts_dynamic_values() {
    let mut enc = Encoder::new();
    let fields = [
        (
            &b"authorization"[..],
            &b"Bearer secret"[..],
            Indexing::Incremental,
        ),
        (b"x-request-id", b"abc", Indexing::Incremental),
    ];
    let (mut b1, mut b2) = (Vec::new(), Vec::new());
    enc.encode(fields, &mut b1);
    enc.encode(fields, &mut b2);
    let mut d = Decoder::new();
    d.set_retain_filter(Some(|n| n != b"authorization"));
    decode(&mut d, &b1).unwrap();
    let got = decode(&mut d, &b2).unwrap();
    assert_eq!(
        got,
        vec![
            Some((b"authorization".to_vec(), b"<redacted>".to_vec())),
            Some((b"x-request-id".to_vec(), b"abc".to_vec()))
        ]
    );
}

#[test]
fn eviction_proves_synchronisation_with_a_known_bound() {
    // The encoder's table is 4096 octets; the decoder joins after the first
    // block, learns the bound from SETTINGS, and sees entries inserted until
    // its own entries fill the table: then nothing unknown can remain.
    let mut enc = Encoder::new();
    let mut mid = Decoder::new_mid_connection();
    mid.set_settings_max(4096);
    let mut first = Vec::new();
    enc.encode(
        [(&b"x-old"[..], &b"old"[..], Indexing::Incremental)],
        &mut first,
    );
    let mut synced_at = None;
    for i in 0..40 {
        let value = format!("{i:03}").repeat(50);
        let mut b = Vec::new();
        enc.encode(
            [
                (&b"x-old"[..], &b"old"[..], Indexing::Incremental),
                (b"x-pad", value.as_bytes(), Indexing::Incremental),
            ],
            &mut b,
        );
        let got = decode(&mut mid, &b).unwrap();
        assert_eq!(got[1], Some((b"x-pad".to_vec(), value.into_bytes())));
        match &got[0] {
            Some(f) => assert_eq!(f, &(b"x-old".to_vec(), b"old".to_vec())),
            None => assert!(synced_at.is_none(), "unknown after sync"),
        }
        if mid.is_synchronised() && synced_at.is_none() {
            synced_at = Some(i);
        }
    }
    // 182-octet entries: 4096 / 182 = 22 fit; once 22 are ours, nothing else can.
    assert_eq!(synced_at, Some(21));
}

#[derive(Debug, Clone)]
enum Op {
    Block(Vec<(usize, String, u8)>),
    Resize(usize),
}

const NAMES: [&str; 8] = [
    ":path",
    ":authority",
    "x-request-id",
    "user-agent",
    "content-type",
    "x-a-rather-long-custom-header-name",
    "grpc-timeout",
    "cookie",
];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => proptest::collection::vec((0..NAMES.len(), "[a-z0-9/]{0,40}", 0u8..4), 0..8).prop_map(Op::Block),
        1 => (0usize..5000).prop_map(Op::Resize),
    ]
}

/// Encode `ops`; return the blocks and, per block, the fields.
fn encode_ops(ops: &[Op], huffman: bool) -> Vec<(Vec<u8>, Fields)> {
    let mut enc = Encoder::new();
    enc.huffman = huffman;
    let mut out = Vec::new();
    for op in ops {
        match op {
            Op::Resize(n) => enc.set_table_size(*n),
            Op::Block(fields) => {
                let mut b = Vec::new();
                let fs: Vec<(&[u8], &[u8], Indexing)> = fields
                    .iter()
                    .map(|(n, v, m)| {
                        let mode = match m {
                            0 | 1 => Indexing::Incremental,
                            2 => Indexing::Without,
                            _ => Indexing::Never,
                        };
                        (NAMES[*n].as_bytes(), v.as_bytes(), mode)
                    })
                    .collect();
                enc.encode(fs.iter().copied(), &mut b);
                let truth = fields
                    .iter()
                    .map(|(n, v, _)| Some((NAMES[*n].as_bytes().to_vec(), v.as_bytes().to_vec())))
                    .collect();
                out.push((b, truth));
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Encode then decode gives the same header lists.
    #[test]
    fn round_trip(ops in proptest::collection::vec(op(), 1..40), huffman: bool) {
        let mut d = Decoder::new();
        for (block, truth) in encode_ops(&ops, huffman) {
            prop_assert_eq!(decode(&mut d, &block).unwrap(), truth);
            prop_assert!(d.is_synchronised());
        }
    }

    /// A decoder joining after `skip` blocks never reports a wrong field, and
    /// once it says it is synchronised every field decodes.
    #[test]
    fn mid_connection_never_wrong(
        ops in proptest::collection::vec(op(), 1..60),
        skip in 0usize..20,
        bound in proptest::option::of(Just(())),
    ) {
        let blocks = encode_ops(&ops, true);
        let mut mid = Decoder::new_mid_connection();
        if bound.is_some() {
            // As if SETTINGS_HEADER_TABLE_SIZE = 5000 (>= every resize) was seen.
            mid.set_settings_max(5000);
        }
        for (block, truth) in blocks.iter().skip(skip) {
            let synced = mid.is_synchronised();
            let got = decode(&mut mid, block).unwrap();
            prop_assert_eq!(got.len(), truth.len());
            for (g, t) in got.iter().zip(truth) {
                match g {
                    Some(g) => prop_assert_eq!(Some(g), t.as_ref()),
                    None => prop_assert!(!synced, "unknown field while synchronised"),
                }
            }
        }
    }

    /// Arbitrary bytes: no panic, and fields decoded before an error are
    /// well-formed.
    #[test]
    fn arbitrary_blocks_never_panic(blocks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..8)) {
        let mut d = Decoder::new_mid_connection();
        for b in &blocks {
            let _ = decode(&mut d, b);
            prop_assert!(d.table_bytes() <= protocol_parsers::http2::hpack::MAX_TABLE_SIZE);
        }
    }
}
