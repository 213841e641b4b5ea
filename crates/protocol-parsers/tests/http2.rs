//! Golden tests on real HTTP/2 traffic recorded on this machine (see
//! tests/fixtures/http2/regen.sh): grpcio client/server and h2c (nginx with
//! python-h2 and curl clients).

use proptest::prelude::*;
use protocol_parsers::http2::{self, Http2Parser};
use protocol_parsers::{
    ConnectionParser, HttpRequest, HttpResponse, L7Event, L7EventKind, MessageInfo, Side,
};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// One recorded connection: the bytes of each direction and the order of the
/// proxy's reads (approximately the peers' syscalls).
struct Conn {
    client: Vec<u8>,
    server: Vec<u8>,
    /// (side, length) in capture order.
    reads: Vec<(Side, usize)>,
}

fn fixture(name: &str) -> Conn {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/http2");
    let client = std::fs::read(dir.join(format!("{name}.client.bin"))).unwrap();
    let server = std::fs::read(dir.join(format!("{name}.server.bin"))).unwrap();
    let log = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap();
    let reads = log
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (s, n) = l.split_once(' ').unwrap();
            let side = if s == "C" { Side::Client } else { Side::Server };
            (side, n.parse().unwrap())
        })
        .collect::<Vec<_>>();
    let (c, s) = reads.iter().fold((0, 0), |(c, s), (side, n)| match side {
        Side::Client => (c + n, s),
        Side::Server => (c, s + n),
    });
    assert_eq!(
        (c, s),
        (client.len(), server.len()),
        "{name}: log and bytes agree"
    );
    Conn {
        client,
        server,
        reads,
    }
}

/// A read of the recorded connection: side, stream offset, bytes.
fn chunks(conn: &Conn) -> Vec<(Side, usize, &[u8])> {
    let (mut c, mut s) = (0, 0);
    conn.reads
        .iter()
        .map(|&(side, n)| match side {
            Side::Client => {
                c += n;
                (side, c - n, &conn.client[c - n..c])
            }
            Side::Server => {
                s += n;
                (side, s - n, &conn.server[s - n..s])
            }
        })
        .collect()
}

fn drain(p: &mut Http2Parser, out: &mut Vec<L7Event>) {
    while let Some(e) = p.poll() {
        out.push(e);
    }
}

/// Replay the whole connection.
fn replay(conn: &Conn) -> (Http2Parser, Vec<L7Event>) {
    let mut p = Http2Parser::new();
    let mut ev = Vec::new();
    for (side, _, bytes) in chunks(conn) {
        p.feed(side, bytes);
        drain(&mut p, &mut ev);
    }
    (p, ev)
}

fn req_heads(ev: &[L7Event]) -> Vec<(u64, u64, &HttpRequest)> {
    ev.iter()
        .filter_map(|e| match &e.kind {
            L7EventKind::Head {
                offset,
                info: MessageInfo::HttpRequest(r),
            } => Some((e.exchange, *offset, r)),
            _ => None,
        })
        .collect()
}

fn resp_heads(ev: &[L7Event]) -> Vec<(u64, u64, &HttpResponse)> {
    ev.iter()
        .filter_map(|e| match &e.kind {
            L7EventKind::Head {
                offset,
                info: MessageInfo::HttpResponse(r),
            } => Some((e.exchange, *offset, r)),
            _ => None,
        })
        .collect()
}

fn ends(ev: &[L7Event], side: Side) -> Vec<(u64, u64, Option<&MessageInfo>)> {
    ev.iter()
        .filter(|e| e.side == side)
        .filter_map(|e| match &e.kind {
            L7EventKind::End { end, info } => Some((e.exchange, *end, info.as_ref())),
            _ => None,
        })
        .collect()
}

/// Replay from read `k` on, as a parser created mid-connection would see it.
/// Returns the stream offsets (client, server) the parser started at.
fn replay_from(conn: &Conn, k: usize) -> (Http2Parser, Vec<L7Event>, [usize; 2]) {
    let all = chunks(conn);
    let mut base = [conn.client.len(), conn.server.len()];
    let mut seen = [false; 2];
    for &(side, off, _) in &all[k..] {
        let i = (side == Side::Server) as usize;
        if !seen[i] {
            seen[i] = true;
            base[i] = off;
        }
    }
    let mut p = Http2Parser::new();
    let mut ev = Vec::new();
    for (side, _, bytes) in &all[k..] {
        p.feed(*side, bytes);
        drain(&mut p, &mut ev);
    }
    (p, ev, base)
}

// ----- ground truth from an independent frame walk ---------------------

/// Per stream: offset of its first HEADERS frame and end of its END_STREAM
/// frame, walking the frames of one direction (no HPACK, no parser code).
fn frame_walk(bytes: &[u8], skip: usize) -> BTreeMap<u32, (u64, Option<u64>)> {
    let mut out: BTreeMap<u32, (u64, Option<u64>)> = BTreeMap::new();
    let mut pos = skip;
    while pos + 9 <= bytes.len() {
        let len = u32::from_be_bytes([0, bytes[pos], bytes[pos + 1], bytes[pos + 2]]) as usize;
        let (kind, flags) = (bytes[pos + 3], bytes[pos + 4]);
        let sid = u32::from_be_bytes(bytes[pos + 5..pos + 9].try_into().unwrap()) & 0x7fff_ffff;
        let end = (pos + 9 + len) as u64;
        if kind == 1 {
            out.entry(sid).or_insert((pos as u64, None));
        }
        if (kind == 0 || kind == 1) && flags & 1 != 0 {
            if let Some(e) = out.get_mut(&sid) {
                e.1 = Some(end);
            }
        }
        pos += 9 + len;
    }
    assert_eq!(pos, bytes.len(), "fixture ends on a frame boundary");
    out
}

fn check_offsets(conn: &Conn, ev: &[L7Event]) {
    let client = frame_walk(&conn.client, 24);
    let server = frame_walk(&conn.server, 0);
    let heads = req_heads(ev);
    assert_eq!(heads.len(), client.len());
    for (sid, off, _) in heads {
        assert_eq!(
            client[&(sid as u32)].0,
            off,
            "request head offset, stream {sid}"
        );
    }
    for (sid, off, _) in resp_heads(ev) {
        assert_eq!(
            server[&(sid as u32)].0,
            off,
            "response head offset, stream {sid}"
        );
    }
    let req_ends = ends(ev, Side::Client);
    assert_eq!(req_ends.len(), client.len());
    for (sid, end, _) in req_ends {
        assert_eq!(
            client[&(sid as u32)].1,
            Some(end),
            "request end, stream {sid}"
        );
    }
    let resp_ends = ends(ev, Side::Server);
    assert_eq!(resp_ends.len(), server.len());
    for (sid, end, _) in resp_ends {
        assert_eq!(
            server[&(sid as u32)].1,
            Some(end),
            "response end, stream {sid}"
        );
    }
}

fn no_desync(ev: &[L7Event]) {
    for e in ev {
        assert!(
            !matches!(e.kind, L7EventKind::Desync { .. }),
            "unexpected {e:?}"
        );
    }
}

fn resp_end_info(ev: &[L7Event], sid: u64) -> HttpResponse {
    ends(ev, Side::Server)
        .into_iter()
        .find(|e| e.0 == sid)
        .and_then(|e| match e.2 {
            Some(MessageInfo::HttpResponse(r)) => Some(r.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("response end info of stream {sid}"))
}

fn req_end_info(ev: &[L7Event], sid: u64) -> Option<HttpRequest> {
    ends(ev, Side::Client)
        .into_iter()
        .find(|e| e.0 == sid)
        .and_then(|e| match e.2 {
            Some(MessageInfo::HttpRequest(r)) => Some(r.clone()),
            _ => None,
        })
}

/// The calls of grpc_client.py in stream order: (method, x-request-id).
fn grpc_calls() -> Vec<(&'static str, Option<String>)> {
    let mut v: Vec<(&'static str, Option<String>)> = Vec::new();
    for i in 0..5 {
        v.push(("SayHello", Some(format!("req-{i}"))));
    }
    v.push(("CountTo", None));
    v.push(("Lookup", None));
    v.push(("Lookup", None));
    v.push(("Echo", None));
    for _ in 0..4 {
        v.push(("SayHello", None));
    }
    for i in 0..10 {
        v.push(("SayHello", Some(format!("late-{i}"))));
    }
    v
}

// ----- gRPC ---------------------------------------------------------------

#[test]
fn grpc_whole_connection() {
    let conn = fixture("grpc0");
    let (p, ev) = replay(&conn);
    no_desync(&ev);
    check_offsets(&conn, &ev);
    assert!(p.seen_from_start());
    assert!(p.hpack_synchronised(Side::Client) && p.hpack_synchronised(Side::Server));
    assert_eq!(p.open_streams(), 0);

    let calls = grpc_calls();
    let heads = req_heads(&ev);
    assert_eq!(heads.len(), calls.len());
    for (i, ((sid, _, r), (method, rid))) in heads.iter().zip(&calls).enumerate() {
        assert_eq!(*sid, 2 * i as u64 + 1);
        assert_eq!(r.method.as_deref(), Some("POST"));
        assert_eq!(
            r.target.as_deref(),
            Some(format!("/demo.v1.Greeter/{method}").as_str())
        );
        let (svc, m) = http2::grpc::service_method(r.target.as_deref().unwrap()).unwrap();
        assert_eq!((svc, m), ("demo.v1.Greeter", *method));
        assert_eq!(r.authority.as_deref(), Some("127.0.0.1:22001"));
        assert_eq!(r.scheme.as_deref(), Some("http"));
        assert!(r.grpc);
        assert!(r.undecoded.is_empty());
        assert_eq!(r.header("content-type"), Some("application/grpc"));
        assert_eq!(r.header("te"), Some("trailers"));
        assert!(r.header("user-agent").unwrap().starts_with("grpc-python/"));
        assert_eq!(r.header("x-request-id"), rid.as_deref());
        // One request message per call.
        assert_eq!(req_end_info(&ev, *sid).unwrap().grpc_messages, Some(1));
    }
    for (sid, _, r) in resp_heads(&ev) {
        assert_eq!(r.status, Some(200), "stream {sid}");
        assert!(r.undecoded.is_empty());
        let end = resp_end_info(&ev, sid);
        let (method, _) = &calls[(sid as usize - 1) / 2];
        match (sid, *method) {
            (13, _) => {
                // Trailers-only NOT_FOUND: the head already carries it.
                assert_eq!(r.grpc_status, Some(5));
                assert_eq!(end.grpc_status, Some(5));
                assert_eq!(end.grpc_message.as_deref(), Some("no such key: missing"));
                assert_eq!(end.grpc_messages, Some(0));
            }
            (_, "CountTo") => {
                assert_eq!(end.grpc_status, Some(0));
                assert_eq!(end.grpc_messages, Some(5));
            }
            _ => {
                assert_eq!(r.grpc_status, None);
                assert_eq!(end.grpc_status, Some(0));
                assert_eq!(end.grpc_message.as_deref(), Some(""));
                assert_eq!(end.grpc_messages, Some(1));
            }
        }
    }
}

#[test]
fn grpc_capture_truncated_to_4k() {
    // What the eBPF capture gives: a 4 KiB prefix of each read, the rest as a
    // gap. The 40 KB Echo message is mostly a gap inside its DATA payload.
    let conn = fixture("grpc0");
    let (_, truth) = replay(&conn);
    let mut p = Http2Parser::new();
    let mut ev = Vec::new();
    for (side, _, bytes) in chunks(&conn) {
        let n = bytes.len().min(4096);
        p.feed(side, &bytes[..n]);
        p.gap(side, (bytes.len() - n) as u64);
        drain(&mut p, &mut ev);
    }
    // Echo (stream 17): the request's 40 KB message is counted through the
    // gap (its DATA frame header was captured) and the request ends where
    // that frame ends.
    let end17 = ends(&ev, Side::Client)
        .into_iter()
        .find(|e| e.0 == 17)
        .unwrap();
    assert_eq!(end17.1, 41056);
    assert_eq!(req_end_info(&ev, 17).unwrap().grpc_messages, Some(1));
    // The truncated reads also lost the frame headers after each Echo DATA
    // frame (a WINDOW_UPDATE on the client side, the response trailers on the
    // server side): one framing loss per side, right at the lost header.
    let desyncs: Vec<_> = ev
        .iter()
        .filter_map(|e| match &e.kind {
            L7EventKind::Desync { offset, .. } => Some((e.side, e.exchange, *offset)),
            _ => None,
        })
        .collect();
    assert_eq!(
        desyncs,
        vec![(Side::Client, 0, 41056), (Side::Server, 0, 40882)]
    );
    // The Echo response's trailers were lost: it has a head, no end (the
    // Desync abandoned it).
    assert!(resp_heads(&ev).iter().any(|h| h.0 == 17));
    assert!(!ends(&ev, Side::Server).iter().any(|e| e.0 == 17));
    // Later responses: the server's table is unknown now, `grpc-status: 0`
    // is a dynamic reference: None and listed, never guessed.
    let end19 = resp_end_info(&ev, 19);
    assert_eq!(end19.grpc_status, None);
    assert_eq!(end19.undecoded, vec!["grpc-status"]);
    assert_eq!(end19.grpc_messages, Some(1));
    // Every call still has its request head, at the same offsets; fields are
    // the truth or None-and-listed.
    let t_heads = req_heads(&truth);
    let heads = req_heads(&ev);
    assert_eq!(heads.len(), t_heads.len());
    for ((sid, off, r), (tsid, toff, t)) in heads.iter().zip(&t_heads) {
        assert_eq!((sid, off), (tsid, toff));
        same_or_undecoded(r, t);
    }
    for (sid, _, r) in resp_heads(&ev) {
        assert_eq!(r.status, Some(200), "stream {sid}");
    }
    // After the loss the client's HPACK table is unknown: later SayHello
    // calls refer to their :path by index and cannot be decoded.
    let after: Vec<_> = heads.iter().filter(|h| h.0 > 17).collect();
    assert!(after.iter().all(|h| h.2.target.is_none()));
    assert!(after
        .iter()
        .all(|h| h.2.undecoded.contains(&":path".to_string())));
}

/// `r` (from a partial view) agrees with the truth `t`: every decoded field
/// is right, every missing one is listed in `undecoded` (or is a header).
fn same_or_undecoded(r: &HttpRequest, t: &HttpRequest) {
    let fields = [
        (":method", &r.method, &t.method),
        (":path", &r.target, &t.target),
        (":scheme", &r.scheme, &t.scheme),
        (":authority", &r.authority, &t.authority),
    ];
    for (name, got, want) in fields {
        match got {
            Some(v) => assert_eq!(Some(v), want.as_ref(), "{name}"),
            None => assert!(
                r.undecoded.iter().any(|u| u == name),
                "{name} missing but not listed: {r:?}"
            ),
        }
    }
    for h in &r.headers {
        assert!(t.headers.contains(h), "header {h:?} not in the truth");
    }
    assert!(!r.grpc || t.grpc);
}

fn same_or_undecoded_resp(r: &HttpResponse, t: &HttpResponse) {
    match r.status {
        Some(s) => assert_eq!(Some(s), t.status),
        None => assert!(r.undecoded.iter().any(|u| u == ":status")),
    }
    if r.grpc_status.is_some() {
        assert_eq!(r.grpc_status, t.grpc_status);
    }
    for h in &r.headers {
        assert!(t.headers.contains(h), "header {h:?} not in the truth");
    }
}

/// Join the connection at every read boundary: never a wrong value, offsets
/// agree with the full view, undecodable fields listed.
fn attach_everywhere(name: &str) {
    let conn = fixture(name);
    let (_, truth) = replay(&conn);
    let t_req: BTreeMap<u64, (u64, HttpRequest)> = req_heads(&truth)
        .into_iter()
        .map(|(s, o, r)| (s, (o, r.clone())))
        .collect();
    let t_resp: BTreeMap<u64, (u64, HttpResponse)> = resp_heads(&truth)
        .into_iter()
        .map(|(s, o, r)| (s, (o, r.clone())))
        .collect();
    let t_resp_end: BTreeMap<u64, HttpResponse> = ends(&truth, Side::Server)
        .into_iter()
        .filter_map(|(s, _, i)| match i {
            Some(MessageInfo::HttpResponse(r)) => Some((s, r.clone())),
            _ => None,
        })
        .collect();
    for k in 1..conn.reads.len() {
        let (_, ev, base) = replay_from(&conn, k);
        for e in &ev {
            let b = base[(e.side == Side::Server) as usize] as u64;
            match &e.kind {
                L7EventKind::Head {
                    offset,
                    info: MessageInfo::HttpRequest(r),
                } => {
                    let (toff, t) = &t_req[&e.exchange];
                    assert_eq!(offset + b, *toff, "k={k} stream {}", e.exchange);
                    same_or_undecoded(r, t);
                }
                L7EventKind::Head {
                    offset,
                    info: MessageInfo::HttpResponse(r),
                } => {
                    let (toff, t) = &t_resp[&e.exchange];
                    assert_eq!(offset + b, *toff, "k={k} stream {}", e.exchange);
                    same_or_undecoded_resp(r, t);
                }
                L7EventKind::End {
                    info: Some(MessageInfo::HttpResponse(r)),
                    ..
                } => {
                    if let Some(t) = t_resp_end.get(&e.exchange) {
                        if r.grpc_status.is_some() {
                            assert_eq!(r.grpc_status, t.grpc_status);
                        }
                        if r.grpc_messages.is_some() {
                            assert_eq!(r.grpc_messages, t.grpc_messages);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

#[test]
fn grpc_attach_at_every_read_never_wrong() {
    attach_everywhere("grpc0");
}

#[test]
fn h2c_attach_at_every_read_never_wrong() {
    attach_everywhere("h2c0");
}

#[test]
fn grpc_attach_mid_connection_resynchronises() {
    let conn = fixture("grpc0");
    // Join at the read that starts the 5th call's HEADERS (stream 9): the
    // client's dynamic table (:path SayHello, :authority, content-type, te,
    // user-agent, grpc-accept-encoding) is unknown.
    let k = chunks(&conn)
        .iter()
        .position(|&(side, off, _)| side == Side::Client && off == 671)
        .unwrap();
    let (p, ev, base) = replay_from(&conn, k);
    assert_eq!(base[0], 671);
    assert!(!p.seen_from_start());
    assert!(!p.hpack_synchronised(Side::Client));
    let heads = req_heads(&ev);
    let by_sid: BTreeMap<u64, &HttpRequest> = heads.iter().map(|(s, _, r)| (*s, *r)).collect();
    assert_eq!(
        by_sid.keys().copied().collect::<Vec<_>>(),
        (9..=45).step_by(2).collect::<Vec<_>>()
    );
    // Stream 9: only static-table and literal fields decode.
    let r9 = by_sid[&9];
    assert_eq!(r9.method.as_deref(), Some("POST"));
    assert_eq!(r9.scheme.as_deref(), Some("http"));
    assert_eq!(r9.target, None);
    assert_eq!(r9.authority, None);
    assert_eq!(r9.undecoded, vec![":path", ":authority", "<other>"]);
    assert_eq!(r9.header("x-request-id"), Some("req-4"));
    // Stream 11 inserts `:path: /demo.v1.Greeter/CountTo`: decoded again,
    // after one call.
    assert_eq!(
        by_sid[&11].target.as_deref(),
        Some("/demo.v1.Greeter/CountTo")
    );
    assert_eq!(
        by_sid[&13].target.as_deref(),
        Some("/demo.v1.Greeter/Lookup")
    );
    // Stream 15 refers to the Lookup entry inserted by stream 13 (dynamic
    // index 62): a dynamic reference decoded after the join.
    assert_eq!(
        by_sid[&15].target.as_deref(),
        Some("/demo.v1.Greeter/Lookup")
    );
    assert_eq!(by_sid[&17].target.as_deref(), Some("/demo.v1.Greeter/Echo"));
    // SayHello's entry was inserted before the join and grpc-c never inserts
    // it again (its table never fills): undecodable, never guessed.
    for sid in (19..=45).step_by(2) {
        assert_eq!(by_sid[&sid].target, None);
        assert!(by_sid[&sid].undecoded.contains(&":path".to_string()));
    }
    // :authority is never re-inserted either.
    assert!(heads.iter().all(|h| h.2.authority.is_none()));
    // Responses: the server's table was unknown too; `:status: 200` is in the
    // static table, and grpc-status is a dynamic reference for most calls.
    for (sid, _, r) in resp_heads(&ev) {
        assert_eq!(r.status, Some(200), "stream {sid}");
    }
    // The NOT_FOUND trailers-only response uses literals.
    let end13 = resp_end_info(&ev, 13);
    assert_eq!(end13.grpc_status, Some(5));
    assert_eq!(end13.grpc_message.as_deref(), Some("no such key: missing"));
    // Trailers with `grpc-message` mark the stream gRPC even though the
    // content-type never decoded; `grpc-status: 0` is a dynamic reference the
    // server inserted before the join.
    let end9 = resp_end_info(&ev, 9);
    assert_eq!(end9.grpc_status, None);
    assert_eq!(end9.undecoded, vec!["grpc-status"]);
    assert_eq!(end9.grpc_messages, Some(1));
}

/// For the report: after how many calls does `:path` decode again when the
/// parser joins before call n?
#[test]
fn grpc_attach_resync_distance() {
    let conn = fixture("grpc0");
    let all = chunks(&conn);
    let client_heads = frame_walk(&conn.client, 24);
    let mut lines = Vec::new();
    for (sid, (off, _)) in client_heads {
        let Some(k) = all
            .iter()
            .position(|&(side, o, _)| side == Side::Client && o as u64 == off)
        else {
            continue;
        };
        let (_, ev, _) = replay_from(&conn, k);
        let heads = req_heads(&ev);
        let first = heads.iter().position(|h| h.2.target.is_some());
        lines.push(format!(
            "join at stream {sid}: first :path after {first:?} calls"
        ));
        if sid > 1 && sid < 19 {
            // Joined before the CountTo/Lookup/Echo calls: their literal
            // insertion brings `:path` back within at most 5 calls.
            assert!(first.is_some_and(|n| n <= 5), "stream {sid}");
        }
    }
    println!("{}", lines.join("\n"));
}

// ----- plain h2c ------------------------------------------------------------

#[test]
fn h2c_whole_connection() {
    let conn = fixture("h2c0");
    let (p, ev) = replay(&conn);
    no_desync(&ev);
    check_offsets(&conn, &ev);
    assert!(p.hpack_synchronised(Side::Client));
    let heads = req_heads(&ev);
    assert_eq!(heads.len(), 25);
    let expect = [
        ("GET", "/index.html", 200u16),
        ("GET", "/big.bin", 200),
        ("GET", "/missing", 404),
        ("POST", "/echo", 201),
        ("GET", "/index.html", 200),
    ];
    let resp = resp_heads(&ev);
    for (i, (sid, _, r)) in heads.iter().enumerate() {
        let (m, path, status) = expect.get(i).copied().unwrap_or(("GET", "/hello.txt", 200));
        assert_eq!(r.method.as_deref(), Some(m));
        assert_eq!(r.target.as_deref(), Some(path));
        assert_eq!(r.authority.as_deref(), Some("127.0.0.1:22011"));
        assert!(!r.grpc && r.undecoded.is_empty());
        assert_eq!(r.header("user-agent"), Some("python-httpx/0.28.1"));
        let rid = match i {
            0 => Some("h2c-1".to_string()),
            4 => Some("h2c-5".to_string()),
            5.. => Some(format!("churn-{}", i - 5)),
            _ => None,
        };
        assert_eq!(r.header("x-request-id").map(str::to_string), rid);
        let (rsid, _, rr) = resp[i];
        assert_eq!((rsid, rr.status), (*sid, Some(status)));
        assert!(req_end_info(&ev, *sid).is_none());
    }
    assert_eq!(heads[3].2.content_length, Some(11));
    assert_eq!(resp[1].2.content_length, Some(50000));
    assert_eq!(resp[1].2.header_value("content-type"), Some("text/plain"));
}

trait HeaderValue {
    fn header_value(&self, n: &str) -> Option<&str>;
}
impl HeaderValue for HttpResponse {
    fn header_value(&self, n: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    }
}

#[test]
fn h2c_attach_relearns_after_evictions() {
    // Join after the 3rd request. python-hpack indexes everything; the 300-byte
    // x-pad values fill its 4096-byte table, evicting the entries inserted
    // before the join (":authority", "user-agent", ...), which it then inserts
    // again: the joined decoder learns them back.
    let conn = fixture("h2c0");
    let k = chunks(&conn)
        .iter()
        .position(|&(side, off, _)| side == Side::Client && off == 239)
        .unwrap();
    let (p, ev, _) = replay_from(&conn, k);
    let heads = req_heads(&ev);
    assert_eq!(heads.first().map(|h| h.0), Some(7));
    let first_authority = heads.iter().find(|h| h.2.authority.is_some()).unwrap();
    assert_eq!(first_authority.0, 31);
    for (sid, _, r) in &heads {
        if *sid < 31 {
            assert_eq!(r.authority, None);
            assert!(r.undecoded.contains(&":authority".to_string()));
        } else {
            assert_eq!(r.authority.as_deref(), Some("127.0.0.1:22011"));
            assert_eq!(r.target.as_deref(), Some("/hello.txt"));
            assert_eq!(r.header("user-agent"), Some("python-httpx/0.28.1"));
            assert!(!r.undecoded.contains(&":authority".to_string()));
        }
    }
    // The dynamic table size is not known mid-connection (no SETTINGS, no
    // size update), so full synchronisation cannot be proven.
    assert!(!p.hpack_synchronised(Side::Client));
}

#[test]
fn curl_h2c_single_request() {
    let conn = fixture("h2c1");
    let (_, ev) = replay(&conn);
    no_desync(&ev);
    check_offsets(&conn, &ev);
    let heads = req_heads(&ev);
    assert_eq!(heads.len(), 1);
    let r = heads[0].2;
    assert_eq!(r.method.as_deref(), Some("GET"));
    assert_eq!(r.target.as_deref(), Some("/index.html"));
    assert_eq!(r.authority.as_deref(), Some("127.0.0.1:22011"));
    assert_eq!(r.header("user-agent"), Some("curl/7.88.1"));
    assert_eq!(r.header("x-request-id"), Some("curl-1"));
    let resp = resp_heads(&ev);
    assert_eq!(resp[0].2.status, Some(200));
    assert_eq!(resp[0].2.content_length, Some(36));
}

// ----- detection -------------------------------------------------------------

#[test]
fn looks_like_preface_and_frame_chains() {
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    for n in 3..=preface.len() {
        assert!(http2::looks_like(Side::Client, &preface[..n], 80), "{n}");
    }
    assert!(!http2::looks_like(Side::Client, b"PR", 80));
    for name in ["grpc0", "h2c0", "h2c1"] {
        let conn = fixture(name);
        // Fresh connections: first client bytes, first server bytes.
        assert!(http2::looks_like(
            Side::Client,
            &conn.client[..conn.client.len().min(64)],
            0
        ));
        let first_server = chunks(&conn)
            .into_iter()
            .find(|c| c.0 == Side::Server)
            .unwrap();
        assert!(http2::looks_like(Side::Server, first_server.2, 0), "{name}");
        // Mid-connection: reads that start after the first ones.
        let later: Vec<_> = chunks(&conn).into_iter().skip(3).take(10).collect();
        let hits = later
            .iter()
            .filter(|c| http2::looks_like(c.0, c.2, 0))
            .count();
        assert!(hits + 1 >= later.len(), "{name}: {hits}/{}", later.len());
    }
    let others: [&[u8]; 8] = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"POST /demo.v1.Greeter/SayHello HTTP/1.1\r\n",
        b"*1\r\n$4\r\nPING\r\n",
        b"+PONG\r\n",
        &[0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f],
        &[0, 0, 0, 0x4f, 0, 3, 0, 0, b'u', b's', b'e', b'r', 0],
        &[
            0x4a, 0, 0, 0, 0x0a, b'8', b'.', b'0', b'.', b'3', b'6', 0, 1, 0, 0, 0,
        ],
    ];
    for o in others {
        assert!(!http2::looks_like(Side::Client, o, 0), "{o:?}");
        assert!(!http2::looks_like(Side::Server, o, 0), "{o:?}");
    }
}

// ----- properties ------------------------------------------------------------

fn split_replay(conn: &Conn, cuts: &[usize]) -> Vec<L7Event> {
    let mut p = Http2Parser::new();
    let mut ev = Vec::new();
    let mut ci = 0;
    for (side, _, bytes) in chunks(conn) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = cuts[ci % cuts.len()].clamp(1, rest.len());
            ci += 1;
            p.feed(side, &rest[..n]);
            rest = &rest[n..];
            drain(&mut p, &mut ev);
        }
    }
    ev
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Splitting every read into arbitrary chunks gives the same events.
    #[test]
    fn chunking_does_not_matter(cuts in proptest::collection::vec(1usize..300, 1..20), which in 0usize..3) {
        let name = ["grpc0", "h2c0", "h2c1"][which];
        let conn = fixture(name);
        let (_, want) = replay(&conn);
        prop_assert_eq!(split_replay(&conn, &cuts), want);
    }

    /// Same when joined midway (resync decisions do not depend on chunking).
    #[test]
    fn chunking_does_not_matter_mid_connection(cuts in proptest::collection::vec(1usize..200, 1..20), skip in 1usize..2000) {
        let conn = fixture("grpc0");
        let mut mid = Conn {
            client: conn.client[skip.min(conn.client.len())..].to_vec(),
            server: conn.server[(skip / 2).min(conn.server.len())..].to_vec(),
            reads: Vec::new(),
        };
        // One read per side: arbitrary, frame-unaligned starts.
        mid.reads = vec![(Side::Client, mid.client.len()), (Side::Server, mid.server.len())];
        let whole = split_replay(&mid, &[usize::MAX]);
        prop_assert_eq!(split_replay(&mid, &cuts), whole);
    }

    /// Arbitrary feeds, gaps and closes on both sides never panic, and offsets
    /// never exceed what was given.
    #[test]
    fn arbitrary_input_never_panics(ops in proptest::collection::vec((any::<bool>(), 0u8..4, proptest::collection::vec(any::<u8>(), 0..200)), 1..40)) {
        let mut p = Http2Parser::new();
        let mut given = [0u64; 2];
        for (client, op, bytes) in ops {
            let side = if client { Side::Client } else { Side::Server };
            let i = (!client) as usize;
            match op {
                0 | 1 => { p.feed(side, &bytes); given[i] += bytes.len() as u64; }
                2 => { p.gap(side, bytes.len() as u64); given[i] += bytes.len() as u64; }
                _ => p.close(side),
            }
            while let Some(e) = p.poll() {
                let i = (e.side == Side::Server) as usize;
                let off = match e.kind {
                    L7EventKind::Head { offset, .. } => offset,
                    L7EventKind::End { end, .. } => end,
                    L7EventKind::Desync { offset, .. } => offset,
                };
                prop_assert!(off <= given[i]);
            }
        }
    }

    /// Garbage mixed into a real connection after a gap: resynchronises and
    /// later calls are reported with correct-or-undecoded fields.
    #[test]
    fn garbage_then_resync(garbage in proptest::collection::vec(any::<u8>(), 0..100), at in 5usize..40) {
        let conn = fixture("grpc0");
        let (_, truth) = replay(&conn);
        let t_req: BTreeMap<u64, HttpRequest> = req_heads(&truth).into_iter().map(|(s, _, r)| (s, r.clone())).collect();
        let mut p = Http2Parser::new();
        let mut ev = Vec::new();
        for (i, (side, _, bytes)) in chunks(&conn).into_iter().enumerate() {
            if i == at && side == Side::Client {
                p.gap(side, 7);
                p.feed(side, &garbage);
                p.gap(side, 3);
            }
            p.feed(side, bytes);
            drain(&mut p, &mut ev);
        }
        for (sid, _, r) in req_heads(&ev) {
            same_or_undecoded(r, &t_req[&sid]);
        }
        // The calls after the garbage are seen again.
        let last = req_heads(&ev).last().map(|h| h.0);
        prop_assert_eq!(last, Some(45));
    }
}
