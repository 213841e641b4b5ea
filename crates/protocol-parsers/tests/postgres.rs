//! PostgreSQL parser on real captures (see tests/fixtures/sql_record.py):
//! golden events, arbitrary chunking, mid-connection starts, gaps.

#[path = "fixtures/zcap.rs"]
mod zcap;

use proptest::prelude::*;
use protocol_parsers::postgres::{self, PostgresParser};
use protocol_parsers::{ConnectionParser, DbResponse, L7Event, L7EventKind, MessageInfo, Side};

const FIXTURES: &[&str] = &[
    "postgres/psycopg_simple.zcap",
    "postgres/psycopg_extended.zcap",
    "postgres/psycopg_ssl.zcap",
];
const PLAIN: &[&str] = &[
    "postgres/psycopg_simple.zcap",
    "postgres/psycopg_extended.zcap",
];

fn make() -> Box<dyn ConnectionParser> {
    Box::new(PostgresParser::new())
}

fn baseline(f: &str) -> (Vec<zcap::Record>, Vec<L7Event>) {
    let recs = zcap::load(f);
    let ev = zcap::run(&mut PostgresParser::new(), &recs);
    (recs, ev)
}

fn response_end(ev: &[L7Event], x: u64) -> Option<(u64, Option<DbResponse>)> {
    ev.iter().find_map(|e| match &e.kind {
        L7EventKind::End { end, info } if e.side == Side::Server && e.exchange == x => Some((
            *end,
            match info {
                Some(MessageInfo::DbResponse(r)) => Some(r.clone()),
                _ => None,
            },
        )),
        _ => None,
    })
}

fn request(ev: &[L7Event], x: u64) -> Option<protocol_parsers::DbRequest> {
    ev.iter().find_map(|e| match &e.kind {
        L7EventKind::Head {
            info: MessageInfo::DbRequest(r),
            ..
        } if e.exchange == x => Some(r.clone()),
        _ => None,
    })
}

#[test]
fn golden_events() {
    for f in FIXTURES {
        let (_, ev) = baseline(f);
        zcap::check_golden(f, &ev);
    }
}

#[test]
fn fixtures_have_no_desync_and_keep_no_credentials() {
    for f in FIXTURES {
        let (_, ev) = baseline(f);
        assert!(
            !ev.iter()
                .any(|e| matches!(e.kind, L7EventKind::Desync { .. })),
            "{f}"
        );
        let text = zcap::render(&ev);
        assert!(
            !text.contains("ztfx_pw") && !text.contains("SCRAM") && !text.contains("c=biws"),
            "{f}"
        );
        for e in ev.iter().filter(|e| e.side == Side::Server) {
            assert!(
                ev.iter()
                    .any(|h| h.side == Side::Client && h.exchange == e.exchange),
                "{f}"
            );
        }
    }
}

#[test]
fn ssl_request_answered_s_stops_quietly() {
    let (recs, ev) = baseline("postgres/psycopg_ssl.zcap");
    assert!(ev.is_empty(), "{ev:?}");
    // The SSLRequest and the 'S' really are there.
    assert_eq!(recs[0].1, [0, 0, 0, 8, 0x04, 0xD2, 0x16, 0x2F]);
    assert_eq!(recs[1].1, b"S");
}

#[test]
fn simple_query_facts() {
    let (_, ev) = baseline("postgres/psycopg_simple.zcap");
    // Startup gives the namespace; rows from CommandComplete tags.
    let r = request(&ev, 3).unwrap();
    assert_eq!(r.namespace.as_deref(), Some("ztfx_db"));
    assert_eq!(r.operation.as_deref(), Some("SELECT"));
    assert_eq!(r.target.as_deref(), Some("ztfx_items"));
    assert_eq!(response_end(&ev, 3).unwrap().1.unwrap().rows, Some(3));
    // Multi-statement Q is one exchange: 1 + 1 + 0 rows.
    assert_eq!(response_end(&ev, 4).unwrap().1.unwrap().rows, Some(2));
    // Errors carry the SQLSTATE.
    let e = response_end(&ev, 6).unwrap().1.unwrap().error.unwrap();
    assert_eq!(e.code.as_deref(), Some("42P01"));
    assert_eq!(e.message, "ERROR: relation \"ztfx_missing\" does not exist");
    // COPY out / in.
    assert_eq!(response_end(&ev, 8).unwrap().1.unwrap().rows, Some(3));
    assert_eq!(response_end(&ev, 9).unwrap().1.unwrap().rows, Some(1));
}

#[test]
fn extended_protocol_facts() {
    let (_, ev) = baseline("postgres/psycopg_extended.zcap");
    let r = request(&ev, 0).unwrap();
    assert_eq!(
        r.query.as_deref(),
        Some("SELECT id, name FROM ztfx_items WHERE id > $1 ORDER BY id")
    );
    assert_eq!(r.statement, None);
    assert_eq!(response_end(&ev, 0).unwrap().1.unwrap().rows, Some(3));
    let e = response_end(&ev, 3).unwrap().1.unwrap().error.unwrap();
    assert_eq!(e.code.as_deref(), Some("23505"));
    // prepare=True: a PREPARE exchange, then executions of the named statement.
    let p = request(&ev, 4).unwrap();
    assert_eq!(p.operation.as_deref(), Some("PREPARE"));
    assert_eq!(p.statement.as_deref(), Some("_pg3_0"));
    for x in 5..=7 {
        let r = request(&ev, x).unwrap();
        assert_eq!(r.statement.as_deref(), Some("_pg3_0"));
        assert_eq!(
            r.query.as_deref(),
            Some("SELECT name FROM ztfx_items WHERE id = $1")
        );
        assert_eq!(response_end(&ev, x).unwrap().1.unwrap().rows, Some(1));
    }
    // Pipeline: three Executes, three responses.
    for x in 8..=10 {
        assert_eq!(response_end(&ev, x).unwrap().1.unwrap().rows, Some(1));
    }
    // Pipeline with an error: the failing one gets it, the next is abandoned.
    assert_eq!(response_end(&ev, 11).unwrap().1.unwrap().rows, Some(1));
    let e = response_end(&ev, 12).unwrap().1.unwrap().error.unwrap();
    assert_eq!(e.code.as_deref(), Some("42P01"));
    assert!(request(&ev, 13).is_some());
    assert!(response_end(&ev, 13).is_none());
}

#[test]
fn rows_gap_recovers_on_command_complete() {
    // Lose the DataRows of the first extended response: the exchange still
    // ends at its CommandComplete with the tag's row count.
    let (recs, base) = baseline("postgres/psycopg_extended.zcap");
    let (end0, _) = response_end(&base, 0).unwrap();
    let offs = zcap::side_offsets(&recs);
    let k = (0..recs.len())
        .find(|&k| recs[k].0 == Side::Server && offs[k].1 < end0 && offs[k + 1].1 >= end0)
        .unwrap();
    let d = &recs[k].1;
    let local_end = (end0 - offs[k].1) as usize;
    let mut p = PostgresParser::new();
    let mut ev = zcap::run(&mut p, &recs[..k]);
    // Keep ParseComplete/BindComplete and the RowDescription head, lose the
    // rows, keep the CommandComplete ("SELECT 3", 14 bytes) on.
    p.feed(Side::Server, &d[..20]);
    p.gap(Side::Server, (local_end - 14 - 20) as u64);
    p.feed(Side::Server, &d[local_end - 14..]);
    ev.extend(std::iter::from_fn(|| p.poll()));
    ev.extend(zcap::run(&mut p, &recs[k + 1..]));
    let (end, info) = response_end(&ev, 0).unwrap();
    assert_eq!(end, end0);
    assert_eq!(info.unwrap().rows, Some(3));
    assert_eq!(zcap::framing(&ev, 0, 0, 1), zcap::framing(&base, 0, 0, 1));
}

#[test]
fn joins_mid_connection_at_every_idle_point() {
    for f in PLAIN {
        let (recs, base) = baseline(f);
        let starts = zcap::idle_client_starts(&recs, &base);
        assert!(starts.len() > 3, "{f}: {starts:?}");
        for k in starts {
            zcap::check_mid_start(&make, &recs, &base, k);
        }
    }
}

#[test]
fn detects_postgres() {
    let (recs, _) = baseline("postgres/psycopg_simple.zcap");
    assert!(postgres::looks_like(Side::Client, &recs[0].1, 23011));
    assert!(postgres::looks_like(Side::Server, &recs[1].1, 23011));
    let q = recs
        .iter()
        .find(|r| r.0 == Side::Client && r.1[0] == b'Q')
        .unwrap();
    assert!(postgres::looks_like(Side::Client, &q.1, 1234));
    assert_eq!(
        protocol_parsers::detect(Side::Client, &q.1, 1234),
        Some(protocol_parsers::Protocol::Postgres)
    );
    let (ext, _) = baseline("postgres/psycopg_extended.zcap");
    let p = ext
        .iter()
        .find(|r| r.0 == Side::Client && r.1[0] == b'P')
        .unwrap();
    assert!(postgres::looks_like(Side::Client, &p.1, 1234));
    let (ssl, _) = baseline("postgres/psycopg_ssl.zcap");
    assert!(postgres::looks_like(Side::Client, &ssl[0].1, 1234));
    assert!(!postgres::looks_like(
        Side::Client,
        b"GET / HTTP/1.1\r\n\r\n",
        5432
    ));
    assert!(!postgres::looks_like(
        Side::Client,
        b"*1\r\n$4\r\nPING\r\n",
        5432
    ));
}

#[test]
fn ssl_request_answered_n_goes_on() {
    // SSLRequest, 'N', then a regular startup and query (bytes as libpq
    // sends them; the 'N' path cannot be recorded against a server with SSL).
    let (recs, base) = baseline("postgres/psycopg_simple.zcap");
    let mut p = PostgresParser::new();
    p.feed(Side::Client, &[0, 0, 0, 8, 0x04, 0xD2, 0x16, 0x2F]);
    p.feed(Side::Server, b"N");
    let ev = zcap::run(&mut p, &recs);
    assert_eq!(zcap::framing(&ev, 8, 1, 0), zcap::framing(&base, 0, 0, 0));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_chunking_gives_the_same_events(which in 0..FIXTURES.len(), cuts in prop::collection::vec(1usize..300, 1..20)) {
        let (recs, base) = baseline(FIXTURES[which]);
        let ev = zcap::run_chunked(&mut PostgresParser::new(), &recs, &cuts);
        prop_assert_eq!(ev, base);
    }

    #[test]
    fn joining_at_any_byte_recovers(which in 0..PLAIN.len(), start in 0usize..4000) {
        let (recs, base) = baseline(PLAIN[which]);
        let offs = zcap::side_offsets(&recs);
        let starts = zcap::idle_client_starts(&recs, &base);
        let total_c = offs.last().unwrap().0 as usize;
        let start = start % total_c;
        let k = (0..recs.len()).rev().find(|&k| offs[k].0 as usize <= start && recs[k].0 == Side::Client).unwrap_or(0);
        let Some(&clean) = starts.iter().find(|&&s| s > k) else { return Ok(()) };
        let mut p = PostgresParser::new();
        let skip_c = start - offs[k].0 as usize;
        p.feed(Side::Client, &recs[k].1[skip_c.min(recs[k].1.len())..]);
        let mut ev: Vec<L7Event> = std::iter::from_fn(|| p.poll()).collect();
        ev.extend(zcap::run(&mut p, &recs[k + 1..]));
        let (cb, sb) = offs[clean];
        let (cb0, sb0) = (offs[k].0 + skip_c as u64, offs[k].1);
        let Some(x_base) = zcap::first_exchange_from(&base, cb) else { return Ok(()) };
        let Some(x_mid) = zcap::first_exchange_from(&ev, cb - cb0) else {
            return Err(TestCaseError::fail(format!("no request after {}", cb - cb0)));
        };
        // Requests found in bytes that waited while responses went by get
        // no response (missing is fine, wrong is not).
        let got = zcap::by_side(zcap::framing(&ev, cb - cb0, sb - sb0, x_mid));
        let want = zcap::by_side(zcap::framing(&base, cb, sb, x_base));
        zcap::check_subsequence(&got, &want).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(chunks in prop::collection::vec((any::<bool>(), prop::collection::vec(any::<u8>(), 0..300), 0u64..5000), 0..20)) {
        let mut p = PostgresParser::new();
        for (client, data, gap) in chunks {
            let side = if client { Side::Client } else { Side::Server };
            p.feed(side, &data);
            if gap % 3 == 0 {
                p.gap(side, gap);
            }
            while p.poll().is_some() {}
            prop_assert!(p.buffered() <= 2 * 64 * 1024);
        }
        p.close(Side::Server);
        while p.poll().is_some() {}
    }

    #[test]
    fn random_gaps_never_break_later_exchanges(which in 0..PLAIN.len(), rec in 0usize..100, from in 0usize..200, len in 1usize..200) {
        let (recs, base) = baseline(PLAIN[which]);
        let k = rec % recs.len();
        let d = &recs[k].1;
        let from = from % d.len();
        let len = len.min(d.len() - from);
        let mut p = PostgresParser::new();
        let mut ev = zcap::run(&mut p, &recs[..k]);
        p.feed(recs[k].0, &d[..from]);
        p.gap(recs[k].0, len as u64);
        p.feed(recs[k].0, &d[from + len..]);
        ev.extend(std::iter::from_fn(|| p.poll()));
        ev.extend(zcap::run(&mut p, &recs[k + 1..]));
        let starts = zcap::idle_client_starts(&recs, &base);
        if let Some(&clean) = starts.iter().find(|&&s| s > k) {
            let (cb, sb) = zcap::side_offsets(&recs)[clean];
            let Some(x) = zcap::first_exchange_from(&base, cb) else { return Ok(()) };
            let Some(xm) = zcap::first_exchange_from(&ev, cb) else {
                return Err(TestCaseError::fail("no request after the damage"));
            };
            prop_assert_eq!(zcap::by_side(zcap::framing(&ev, cb, sb, xm)), zcap::by_side(zcap::framing(&base, cb, sb, x)));
        }
    }
}
