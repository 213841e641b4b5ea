//! Golden tests on real HTTP/2 traffic recorded on this machine (see
//! tests/fixtures/http2/regen.sh): grpcio client/server and h2c (nginx with
//! python-h2 and curl clients).

use protocol_parsers::http2::{self, Http2Parser};
use protocol_parsers::{
    ConnectionParser, HttpRequest, HttpResponse, L7Event, L7EventKind, MessageInfo, Side,
};
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

#[test]
fn debug_dump() {
    let conn = fixture("grpc0");
    let (_, ev) = replay(&conn);
    for e in &ev {
        println!("{e:?}");
    }
    let _ = http2::looks_like;
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

#[test]
fn debug_attach() {
    let conn = fixture("grpc0");
    for k in [5usize, 9, 13] {
        let (p, ev, base) = replay_from(&conn, k);
        println!("---- k={k} base={base:?} sync c={} s={}", p.hpack_synchronised(Side::Client), p.hpack_synchronised(Side::Server));
        for e in ev.iter().take(24) {
            let s = format!("{e:?}");
            println!("{}", &s[..s.len().min(330)]);
        }
    }
}
