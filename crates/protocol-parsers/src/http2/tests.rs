//! Unit tests on hand-built frames: flags, padding, CONTINUATION,
//! RST_STREAM, GOAWAY, SETTINGS, PUSH_PROMISE, caps.

use super::frame::{flags, kind, FrameHeader, PREFACE};
use super::hpack::{Encoder, Indexing};
use super::*;

fn frame(kind: u8, fl: u8, sid: u32, payload: &[u8]) -> Vec<u8> {
    let h = FrameHeader {
        length: payload.len() as u32,
        kind,
        flags: fl,
        stream_id: sid,
        reserved: false,
    };
    let mut v = h.encode().to_vec();
    v.extend_from_slice(payload);
    v
}

fn block(enc: &mut Encoder, fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    enc.encode(
        fields
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes(), Indexing::Incremental)),
        &mut out,
    );
    out
}

fn req_fields(path: &str) -> Vec<(&'static str, String)> {
    vec![
        (":method", "POST".to_string()),
        (":scheme", "http".to_string()),
        (":path", path.to_string()),
        (":authority", "svc:50051".to_string()),
        ("content-type", "application/grpc".to_string()),
        ("authorization", "Bearer secret-token".to_string()),
    ]
}

fn req_block(enc: &mut Encoder, path: &str) -> Vec<u8> {
    let f = req_fields(path);
    let refs: Vec<(&str, &str)> = f.iter().map(|(n, v)| (*n, v.as_str())).collect();
    block(enc, &refs)
}

fn grpc_msg(len: usize) -> Vec<u8> {
    let mut v = vec![0];
    v.extend_from_slice(&(len as u32).to_be_bytes());
    v.extend(std::iter::repeat_n(0x42, len));
    v
}

fn events(p: &mut Http2Parser) -> Vec<L7Event> {
    std::iter::from_fn(|| p.poll()).collect()
}

fn started() -> Http2Parser {
    let mut p = Http2Parser::new();
    let mut c = PREFACE.to_vec();
    c.extend(frame(kind::SETTINGS, 0, 0, &[]));
    p.feed(Side::Client, &c);
    p.feed(Side::Server, &frame(kind::SETTINGS, 0, 0, &[]));
    assert!(events(&mut p).is_empty());
    p
}

fn head_req(e: &L7Event) -> &HttpRequest {
    match &e.kind {
        L7EventKind::Head {
            info: MessageInfo::HttpRequest(r),
            ..
        } => r,
        k => panic!("not a request head: {k:?}"),
    }
}

#[test]
fn padded_priority_headers_continuation_and_padded_data() {
    let mut p = started();
    let mut enc = Encoder::new();
    let blk = req_block(&mut enc, "/pkg.Svc/Call");
    let (a, b) = blk.split_at(5);
    // HEADERS: PADDED (3 bytes of padding) + PRIORITY, no END_HEADERS.
    let mut payload = vec![3, 0x80, 0, 0, 0, 15];
    payload.extend_from_slice(a);
    payload.extend_from_slice(&[0, 0, 0]);
    let mut c = frame(kind::HEADERS, flags::PADDED | flags::PRIORITY, 1, &payload);
    let headers_at = 24 + 9;
    c.extend(frame(kind::CONTINUATION, flags::END_HEADERS, 1, b));
    // Padded DATA with two gRPC messages, END_STREAM.
    let mut data = vec![4];
    data.extend(grpc_msg(3));
    data.extend(grpc_msg(0));
    data.extend_from_slice(&[0; 4]);
    c.extend(frame(
        kind::DATA,
        flags::PADDED | flags::END_STREAM,
        1,
        &data,
    ));
    let total = (24 + 9 + c.len()) as u64;
    p.feed(Side::Client, &c);
    let ev = events(&mut p);
    assert_eq!(ev.len(), 2, "{ev:?}");
    let r = head_req(&ev[0]);
    assert_eq!(ev[0].exchange, 1);
    assert!(matches!(ev[0].kind, L7EventKind::Head { offset, .. } if offset == headers_at));
    assert_eq!(r.method.as_deref(), Some("POST"));
    assert_eq!(r.target.as_deref(), Some("/pkg.Svc/Call"));
    assert_eq!(r.authority.as_deref(), Some("svc:50051"));
    assert!(r.grpc);
    // Credentials never leave the parser.
    assert!(r.headers.iter().all(|(n, _)| n != "authorization"));
    match &ev[1].kind {
        L7EventKind::End {
            end,
            info: Some(MessageInfo::HttpRequest(i)),
        } => {
            assert_eq!(*end, total);
            assert_eq!(i.grpc_messages, Some(2));
        }
        k => panic!("{k:?}"),
    }
}

#[test]
fn interim_response_trailers_and_rst_stream() {
    let mut p = started();
    let mut cenc = Encoder::new();
    let mut senc = Encoder::new();
    for sid in [1u32, 3] {
        let blk = req_block(&mut cenc, "/pkg.Svc/Call");
        p.feed(
            Side::Client,
            &frame(kind::HEADERS, flags::END_HEADERS, sid, &blk),
        );
        p.feed(
            Side::Client,
            &frame(kind::DATA, flags::END_STREAM, sid, &grpc_msg(1)),
        );
    }
    let _ = events(&mut p);
    // Stream 1: 100 Continue, then 200, two messages, trailers.
    let mut s = frame(
        kind::HEADERS,
        flags::END_HEADERS,
        1,
        &block(&mut senc, &[(":status", "100")]),
    );
    let head_at = s.len() as u64 + 9;
    s.extend(frame(
        kind::HEADERS,
        flags::END_HEADERS,
        1,
        &block(
            &mut senc,
            &[(":status", "200"), ("content-type", "application/grpc")],
        ),
    ));
    let mut d = grpc_msg(2);
    d.extend(grpc_msg(7));
    s.extend(frame(kind::DATA, 0, 1, &d));
    s.extend(frame(
        kind::HEADERS,
        flags::END_HEADERS | flags::END_STREAM,
        1,
        &block(
            &mut senc,
            &[("grpc-status", "14"), ("grpc-message", "unavailable%20now")],
        ),
    ));
    // Stream 3: reset by the server.
    s.extend(frame(kind::RST_STREAM, 0, 3, &8u32.to_be_bytes()));
    p.feed(Side::Server, &s);
    let ev = events(&mut p);
    assert_eq!(ev.len(), 3, "{ev:?}");
    match &ev[0].kind {
        L7EventKind::Head {
            offset,
            info: MessageInfo::HttpResponse(r),
        } => {
            assert_eq!(*offset, head_at);
            assert_eq!(r.status, Some(200));
        }
        k => panic!("{k:?}"),
    }
    match &ev[1].kind {
        L7EventKind::End {
            info: Some(MessageInfo::HttpResponse(r)),
            ..
        } => {
            assert_eq!(r.grpc_status, Some(14));
            assert_eq!(r.grpc_message.as_deref(), Some("unavailable now"));
            assert_eq!(r.grpc_messages, Some(2));
        }
        k => panic!("{k:?}"),
    }
    assert_eq!((ev[2].side, ev[2].exchange), (Side::Server, 3));
    match &ev[2].kind {
        L7EventKind::End {
            end,
            info: Some(MessageInfo::HttpResponse(r)),
        } => {
            assert_eq!(*end, 9 + s.len() as u64);
            assert_eq!(r.grpc_status, None);
            assert_eq!(
                r.headers,
                vec![(":rst-stream".into(), "CANCEL (8)".to_string())]
            );
        }
        k => panic!("{k:?}"),
    }
    assert_eq!(p.open_streams(), 0);
}

#[test]
fn goaway_abandons_streams_above_last_id() {
    let mut p = started();
    let mut enc = Encoder::new();
    for sid in [1u32, 3, 5] {
        let blk = req_block(&mut enc, "/a/b");
        p.feed(
            Side::Client,
            &frame(
                kind::HEADERS,
                flags::END_HEADERS | flags::END_STREAM,
                sid,
                &blk,
            ),
        );
    }
    assert_eq!(events(&mut p).len(), 6);
    let mut g = 1u32.to_be_bytes().to_vec();
    g.extend_from_slice(&0u32.to_be_bytes());
    p.feed(Side::Server, &frame(kind::GOAWAY, 0, 0, &g));
    let ev = events(&mut p);
    let abandoned: Vec<_> = ev
        .iter()
        .filter(|e| matches!(e.kind, L7EventKind::Desync { .. }))
        .map(|e| (e.side, e.exchange))
        .collect();
    assert_eq!(abandoned, vec![(Side::Server, 3), (Side::Server, 5)]);
    assert_eq!(p.open_streams(), 1);
}

#[test]
fn settings_and_size_updates_make_the_table_exact() {
    // Joined mid-connection: the server's SETTINGS_HEADER_TABLE_SIZE = 0
    // bounds the client's table, so the client decoder knows it is empty.
    let mut p = Http2Parser::new();
    let mut enc = Encoder::new();
    // Client bytes: a PING first (not a preface).
    let mut c = frame(kind::PING, 0, 0, &[0; 8]);
    c.extend(frame(kind::PING, flags::ACK, 0, &[0; 8]));
    p.feed(Side::Client, &c);
    assert!(!p.hpack_synchronised(Side::Client));
    let mut s = frame(kind::SETTINGS, 0, 0, &[0, 1, 0, 0, 0, 0]);
    s.extend(frame(kind::SETTINGS, flags::ACK, 0, &[]));
    p.feed(Side::Server, &s);
    assert!(p.hpack_synchronised(Side::Client));
    // A size update from the encoder also gives the exact size.
    enc.set_table_size(0);
    let blk = req_block(&mut enc, "/x/y");
    p.feed(
        Side::Client,
        &frame(kind::HEADERS, flags::END_HEADERS, 1, &blk),
    );
    let ev = events(&mut p);
    assert!(head_req(&ev[0]).undecoded.is_empty());
    assert_eq!(p.hpack_decoder(Side::Client).table_size(), (0, true));
}

#[test]
fn push_promise_blocks_update_the_server_table() {
    let mut p = started();
    let mut cenc = Encoder::new();
    let mut senc = Encoder::new();
    let blk = req_block(&mut cenc, "/");
    p.feed(
        Side::Client,
        &frame(
            kind::HEADERS,
            flags::END_HEADERS | flags::END_STREAM,
            1,
            &blk,
        ),
    );
    // PUSH_PROMISE inserting an entry the response then references.
    let mut pp = 2u32.to_be_bytes().to_vec();
    pp.extend(block(&mut senc, &[("x-request-id", "pushed")]));
    let mut s = frame(kind::PUSH_PROMISE, flags::END_HEADERS, 1, &pp);
    s.extend(frame(
        kind::HEADERS,
        flags::END_HEADERS | flags::END_STREAM,
        1,
        &block(&mut senc, &[(":status", "204"), ("x-request-id", "pushed")]),
    ));
    p.feed(Side::Server, &s);
    let ev = events(&mut p);
    let resp = ev
        .iter()
        .find_map(|e| match &e.kind {
            L7EventKind::Head {
                info: MessageInfo::HttpResponse(r),
                ..
            } => Some(r),
            _ => None,
        })
        .unwrap();
    assert_eq!(resp.status, Some(204));
    assert_eq!(
        resp.headers,
        vec![("x-request-id".into(), "pushed".to_string())]
    );
}

#[test]
fn gap_inside_a_header_block_lists_missing_fields() {
    let mut p = started();
    let mut enc = Encoder::new();
    let blk = req_block(&mut enc, "/pkg.Svc/Call");
    let f = frame(
        kind::HEADERS,
        flags::END_HEADERS | flags::END_STREAM,
        1,
        &blk,
    );
    // Keep the frame header and the first 4 block bytes (:method, :scheme
    // and the start of :path), lose the rest.
    p.feed(Side::Client, &f[..13]);
    p.gap(Side::Client, (f.len() - 13) as u64);
    let ev = events(&mut p);
    let r = head_req(&ev[0]);
    assert_eq!(r.method.as_deref(), Some("POST"));
    assert_eq!(r.target, None);
    assert!(r.undecoded.contains(&":path".to_string()));
    assert!(r.undecoded.contains(&":authority".to_string()));
    assert!(!p.hpack_synchronised(Side::Client));
    // The frame header was seen, so the request still ends there.
    assert!(matches!(ev[1].kind, L7EventKind::End { end, .. } if end == (24 + 9 + f.len()) as u64));
}

#[test]
fn lost_frame_header_desyncs_then_resyncs_on_the_next_write() {
    let mut p = started();
    let mut enc = Encoder::new();
    let a = frame(
        kind::HEADERS,
        flags::END_HEADERS | flags::END_STREAM,
        1,
        &req_block(&mut enc, "/a/b"),
    );
    p.feed(Side::Client, &a);
    // A whole write lost: its frame headers with it.
    p.gap(Side::Client, 50);
    // Next write: a frame boundary, two frames.
    let mut w = frame(kind::WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]);
    let b_at = w.len();
    w.extend(frame(
        kind::HEADERS,
        flags::END_HEADERS | flags::END_STREAM,
        3,
        &req_block(&mut enc, "/c/d"),
    ));
    p.feed(Side::Client, &w);
    let ev = events(&mut p);
    let desync_at = (24 + 9 + a.len()) as u64;
    assert!(matches!(&ev[2].kind, L7EventKind::Desync { offset, .. } if *offset == desync_at));
    let r = head_req(&ev[3]);
    assert_eq!(ev[3].exchange, 3);
    assert!(
        matches!(ev[3].kind, L7EventKind::Head { offset, .. } if offset == desync_at + 50 + b_at as u64)
    );
    // Literal fields decode; the dynamic entries are unknown after the loss.
    assert_eq!(r.method.as_deref(), Some("POST"));
    assert_eq!(r.target.as_deref(), Some("/c/d"));
    assert_eq!(r.authority, None);
}

#[test]
fn stream_cap_abandons_the_oldest() {
    let mut p = started();
    let mut enc = Encoder::new();
    for i in 0..(MAX_STREAMS as u32 + 2) {
        let blk = req_block(&mut enc, "/a/b");
        p.feed(
            Side::Client,
            &frame(kind::HEADERS, flags::END_HEADERS, 2 * i + 1, &blk),
        );
    }
    assert_eq!(p.open_streams(), MAX_STREAMS);
    let ev = events(&mut p);
    let abandoned: Vec<_> = ev
        .iter()
        .filter(|e| matches!(e.kind, L7EventKind::Desync { .. }) && e.side == Side::Client)
        .map(|e| e.exchange)
        .collect();
    assert_eq!(abandoned, vec![1, 3]);
}

#[test]
fn huge_header_block_is_capped() {
    let mut p = started();
    let mut enc = Encoder::new();
    enc.huffman = false;
    let big = "v".repeat(MAX_BUFFERED + 10);
    let blk = block(
        &mut enc,
        &[(":method", "GET"), (":path", "/big"), ("x-big", &big)],
    );
    // Split over CONTINUATION frames of 16 KiB.
    let chunks: Vec<&[u8]> = blk.chunks(16384).collect();
    let mut c = Vec::new();
    for (i, ch) in chunks.iter().enumerate() {
        let k = if i == 0 {
            kind::HEADERS
        } else {
            kind::CONTINUATION
        };
        let fl = if i + 1 == chunks.len() {
            flags::END_HEADERS
        } else {
            0
        } | if i == 0 { flags::END_STREAM } else { 0 };
        c.extend(frame(k, fl, 1, ch));
    }
    p.feed(Side::Client, &c);
    let ev = events(&mut p);
    let r = head_req(&ev[0]);
    assert_eq!(r.method.as_deref(), Some("GET"));
    assert_eq!(r.target.as_deref(), Some("/big"));
    assert_eq!(r.undecoded, vec![":scheme", ":authority", "<other>"]);
    assert!(matches!(ev[1].kind, L7EventKind::End { .. }));
}

#[test]
fn close_reports_unfinished_streams() {
    let mut p = started();
    let mut enc = Encoder::new();
    p.feed(
        Side::Client,
        &frame(
            kind::HEADERS,
            flags::END_HEADERS,
            1,
            &req_block(&mut enc, "/a/b"),
        ),
    );
    let _ = events(&mut p);
    p.close(Side::Client);
    let ev = events(&mut p);
    assert_eq!(ev.len(), 1);
    assert_eq!((ev[0].side, ev[0].exchange), (Side::Client, 1));
    assert!(matches!(ev[0].kind, L7EventKind::Desync { .. }));
}

#[test]
fn data_gap_over_pad_length_loses_the_count_only() {
    let mut p = started();
    let mut enc = Encoder::new();
    p.feed(
        Side::Client,
        &frame(
            kind::HEADERS,
            flags::END_HEADERS,
            1,
            &req_block(&mut enc, "/a/b"),
        ),
    );
    let mut data = vec![2];
    data.extend(grpc_msg(4));
    data.extend([0, 0]);
    let f = frame(kind::DATA, flags::PADDED | flags::END_STREAM, 1, &data);
    p.feed(Side::Client, &f[..9]);
    p.gap(Side::Client, (f.len() - 9) as u64);
    let ev = events(&mut p);
    match &ev[1].kind {
        L7EventKind::End {
            info: Some(MessageInfo::HttpRequest(r)),
            ..
        } => assert_eq!(r.grpc_messages, None),
        k => panic!("{k:?}"),
    }
}

#[test]
fn many_small_calls_one_write_each() {
    // Each call: the client writes HEADERS+DATA, the server answers with
    // HEADERS+DATA+trailers (one write per message, as real peers do).
    let mut p = started();
    let (mut ce, mut se) = (Encoder::new(), Encoder::new());
    let n = 3000u32;
    let mut ev = Vec::new();
    for i in 0..n {
        let sid = 2 * i + 1;
        let rid = format!("req-{}", i % 64);
        let mut b = Vec::new();
        ce.encode(
            [
                (&b":method"[..], &b"POST"[..], Indexing::Incremental),
                (
                    b":path",
                    b"/demo.v1.Greeter/SayHello",
                    Indexing::Incremental,
                ),
                (b"content-type", b"application/grpc", Indexing::Incremental),
                (b"x-request-id", rid.as_bytes(), Indexing::Without),
            ],
            &mut b,
        );
        let mut c = frame(kind::HEADERS, flags::END_HEADERS, sid, &b);
        c.extend(frame(kind::DATA, flags::END_STREAM, sid, &grpc_msg(3)));
        let mut s = frame(
            kind::HEADERS,
            flags::END_HEADERS,
            sid,
            &block(
                &mut se,
                &[(":status", "200"), ("content-type", "application/grpc")],
            ),
        );
        s.extend(frame(kind::DATA, 0, sid, &grpc_msg(3)));
        s.extend(frame(
            kind::HEADERS,
            flags::END_HEADERS | flags::END_STREAM,
            sid,
            &block(&mut se, &[("grpc-status", "0")]),
        ));
        p.feed(Side::Client, &c);
        p.feed(Side::Server, &s);
        ev.extend(events(&mut p));
    }
    assert_eq!(ev.len(), 4 * n as usize);
    assert!(ev
        .iter()
        .all(|e| !matches!(e.kind, L7EventKind::Desync { .. })));
    let last = head_req(&ev[ev.len() - 4]);
    assert_eq!(last.target.as_deref(), Some("/demo.v1.Greeter/SayHello"));
    assert_eq!(last.header("x-request-id"), Some("req-55"));
    assert_eq!(p.open_streams(), 0);
}

/// HPACK carries any bytes: a `:method` that is not a token and a `:path`
/// with controls or invalid UTF-8 still make a request (escaped, marked
/// invalid) that pairs with the server's answer (a 400 or a reset).
#[test]
fn invalid_pseudo_header_bytes_are_escaped_and_marked() {
    let mut p = started();
    let mut enc = Encoder::new();
    let mut blk = Vec::new();
    enc.encode(
        [
            (
                &b":path"[..],
                &b"/a\x01b/caf\xe9"[..],
                Indexing::Incremental,
            ),
            (b":method", b"G\x01T", Indexing::Incremental),
            (b":scheme", b"http", Indexing::Incremental),
            (b":authority", b"h", Indexing::Incremental),
        ],
        &mut blk,
    );
    p.feed(
        Side::Client,
        &frame(
            kind::HEADERS,
            flags::END_HEADERS | flags::END_STREAM,
            1,
            &blk,
        ),
    );
    let mut resp = Vec::new();
    Encoder::new().encode(
        [(&b":status"[..], &b"400"[..], Indexing::Incremental)],
        &mut resp,
    );
    p.feed(
        Side::Server,
        &frame(
            kind::HEADERS,
            flags::END_HEADERS | flags::END_STREAM,
            1,
            &resp,
        ),
    );
    // A valid request on stream 3 is not marked.
    let blk3 = block(&mut enc, &[(":method", "GET"), (":path", "/ok")]);
    p.feed(
        Side::Client,
        &frame(
            kind::HEADERS,
            flags::END_HEADERS | flags::END_STREAM,
            3,
            &blk3,
        ),
    );
    let ev = events(&mut p);
    let r = head_req(&ev[0]);
    assert_eq!(ev[0].exchange, 1);
    assert_eq!(r.method.as_deref(), Some("G\\x01T"));
    assert_eq!(r.target.as_deref(), Some("/a\\x01b/caf\\xe9"));
    assert_eq!(r.invalid, vec!["method", "target"]);
    assert!(r.undecoded.is_empty(), "{:?}", r.undecoded);
    let status: Vec<_> = ev
        .iter()
        .filter_map(|e| match &e.kind {
            L7EventKind::Head {
                info: MessageInfo::HttpResponse(r),
                ..
            } => Some((e.exchange, r.status)),
            _ => None,
        })
        .collect();
    assert_eq!(status, vec![(1, Some(400))]);
    let ok = ev
        .iter()
        .find(|e| e.exchange == 3 && matches!(e.kind, L7EventKind::Head { .. }))
        .map(head_req)
        .unwrap();
    assert_eq!(ok.target.as_deref(), Some("/ok"));
    assert!(ok.invalid.is_empty());
}
