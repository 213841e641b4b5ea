//! MySQL parser on real captures (see tests/fixtures/sql_record.py):
//! golden events, arbitrary chunking, mid-connection starts, gaps.

#[path = "fixtures/zcap.rs"]
mod zcap;

use proptest::prelude::*;
use protocol_parsers::mysql::{self, MysqlParser};
use protocol_parsers::{ConnectionParser, DbResponse, L7Event, L7EventKind, MessageInfo, Side};

const SMALL: &[&str] = &[
    "mysql/pymysql_session.zcap",
    "mysql/mysqlclient_session.zcap",
    "mysql/connector_prepared.zcap",
    "mysql/raw_deprecate_eof.zcap",
];
const BIG: &str = "mysql/big_packets.zcap.gz";

fn make() -> Box<dyn ConnectionParser> {
    Box::new(MysqlParser::new())
}

fn baseline(f: &str) -> (Vec<zcap::Record>, Vec<L7Event>) {
    let recs = zcap::load(f);
    let ev = zcap::run(&mut MysqlParser::new(), &recs);
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

#[test]
fn golden_events() {
    for f in SMALL.iter().chain([&BIG]) {
        let (_, ev) = baseline(f);
        zcap::check_golden(f, &ev);
    }
}

#[test]
fn fixtures_have_no_desync_and_pair_every_response() {
    for f in SMALL.iter().chain([&BIG]) {
        let (_, ev) = baseline(f);
        assert!(
            !ev.iter()
                .any(|e| matches!(e.kind, L7EventKind::Desync { .. })),
            "{f}"
        );
        // Every response answers a request seen before it.
        for e in ev.iter().filter(|e| e.side == Side::Server) {
            assert!(
                ev.iter()
                    .any(|h| h.side == Side::Client && h.exchange == e.exchange),
                "{f}: response {} without request",
                e.exchange
            );
        }
        // Credentials never leave the parser.
        let text = zcap::render(&ev);
        assert!(
            !text.contains("ztfx_pw") && !text.contains("ztfx_user"),
            "{f}"
        );
    }
}

#[test]
fn pymysql_facts() {
    let (_, ev) = baseline("mysql/pymysql_session.zcap");
    let text = zcap::render(&ev);
    // Result set of 3 rows, classic EOF framing.
    assert!(text.contains("S 4 End @451 rows=3"));
    // Errors: syntax, unknown table, duplicate key, with SQL state.
    assert!(text.contains("error=1064:"));
    assert!(text.contains("error=1146:Table 'ztfx_db.ztfx_missing' doesn't exist (SQLSTATE 42S02)"));
    assert!(text.contains("error=1062:"));
    // COM_INIT_DB switches the namespace of later commands.
    assert!(text.contains("C 11 Head @864 op=COM_INIT_DB table=- ns=ztfx_db2"));
    assert!(text.contains("C 12 Head @877 op=SELECT table=- ns=ztfx_db2"));
    // COM_QUIT has no response.
    assert!(text.contains("C 14 Head @904 op=COM_QUIT"));
    assert!(response_end(&ev, 14).is_none());
}

#[test]
fn prepared_statements_report_their_sql() {
    let (_, ev) = baseline("mysql/connector_prepared.zcap");
    let execs: Vec<_> = ev
        .iter()
        .filter_map(|e| match &e.kind {
            L7EventKind::Head {
                info: MessageInfo::DbRequest(r),
                ..
            } if r.statement.is_some() => Some(r),
            _ => None,
        })
        .collect();
    assert!(execs
        .iter()
        .any(|r| r.operation.as_deref() == Some("SELECT")
            && r.query.as_deref()
                == Some("SELECT id, name, price FROM ztfx_items WHERE id >= ? ORDER BY id")
            && r.statement.as_deref() == Some("6")));
    assert!(execs
        .iter()
        .any(|r| r.operation.as_deref() == Some("COM_STMT_RESET")));
    assert!(execs
        .iter()
        .any(|r| r.operation.as_deref() == Some("COM_STMT_CLOSE")));
    // Binary-protocol result set: rows counted.
    assert_eq!(response_end(&ev, 5).unwrap().1.unwrap().rows, Some(2));
}

#[test]
fn deprecate_eof_framing() {
    let (_, ev) = baseline("mysql/raw_deprecate_eof.zcap");
    assert_eq!(response_end(&ev, 0).unwrap().1.unwrap().rows, Some(2));
    assert_eq!(response_end(&ev, 1).unwrap().1.unwrap().rows, Some(0));
    // Two result sets chained with SERVER_MORE_RESULTS_EXISTS: one response.
    assert_eq!(response_end(&ev, 3).unwrap().1.unwrap().rows, Some(2));
    // PREPARE_OK without EOF packets, then an execute returning 2 rows.
    assert_eq!(response_end(&ev, 4).unwrap().0, 721);
    assert_eq!(response_end(&ev, 5).unwrap().1.unwrap().rows, Some(2));
}

#[test]
fn big_payloads_are_never_buffered() {
    let recs = zcap::load(BIG);
    let mut p = MysqlParser::new();
    let mut ev = Vec::new();
    let mut max_buffered = 0;
    for (side, d) in &recs {
        for chunk in d.chunks(4096) {
            p.feed(*side, chunk);
            max_buffered = max_buffered.max(p.buffered());
            while let Some(e) = p.poll() {
                ev.push(e);
            }
        }
    }
    assert!(max_buffered <= 64 * 1024, "buffered {max_buffered}");
    let (_, base) = baseline(BIG);
    assert_eq!(ev, base);
    // The > 16 MiB INSERT: SQL kept up to 16 KiB, marked truncated; its End
    // after the last continuation packet.
    let head = ev
        .iter()
        .find_map(|e| match &e.kind {
            L7EventKind::Head {
                info: MessageInfo::DbRequest(r),
                ..
            } if e.exchange == 3 => Some(r.clone()),
            _ => None,
        })
        .unwrap();
    let q = head.query.unwrap();
    assert!(q.starts_with("INSERT INTO ztfx_blobs (id, body) VALUES (1, 'zzzz"));
    assert!(q.ends_with(protocol_parsers::sql::TRUNCATED_MARKER));
    assert_eq!(
        q.len(),
        16 * 1024 + protocol_parsers::sql::TRUNCATED_MARKER.len()
    );
    let (total_client, total_server) = *zcap::side_offsets(&recs).last().unwrap();
    assert!(total_client > 17 * 1024 * 1024 && total_server > 17 * 1024 * 1024);
    // The > 16 MiB row: one row.
    assert_eq!(response_end(&ev, 4).unwrap().1.unwrap().rows, Some(1));
}

#[test]
fn big_payloads_with_gaps() {
    // Capture keeps 4 KiB of each read, as the kernel side does.
    let recs = zcap::load(BIG);
    let (_, base) = baseline(BIG);
    let mut p = MysqlParser::new();
    let mut ev = Vec::new();
    for (side, d) in &recs {
        let keep = d.len().min(4096);
        p.feed(*side, &d[..keep]);
        if d.len() > keep {
            p.gap(*side, (d.len() - keep) as u64);
        }
        while let Some(e) = p.poll() {
            ev.push(e);
        }
    }
    // The INSERT's continuation header fell in uncaptured bytes: its End is
    // lost (Desync at that header), the parser finds the next command, and
    // every response still goes with its own request.
    let mut want = zcap::framing(&base, 0, 0, 0);
    let i = want
        .iter()
        .position(|l| l == "Client 3 End 17826123")
        .unwrap();
    want[i] = format!("Client 3 Desync {}", 274 + 4 + 0xFF_FFFF);
    // The > 16 MiB row lost its continuation headers too: the response still
    // ends at the right place, with the row count unknown.
    let j = want
        .iter()
        .position(|l| l == "Server 4 End 17826111 rows=1")
        .unwrap();
    want[j] = "Server 4 End 17826111".into();
    let got = zcap::framing(&ev, 0, 0, 0);
    assert_eq!(got, want);
}

#[test]
fn rows_gap_ends_response_at_terminator() {
    // Cut the middle of pymysql's 3-row result set (exchange 4) out.
    let (recs, base) = baseline("mysql/pymysql_session.zcap");
    let (end5, _) = response_end(&base, 4).unwrap();
    let offs = zcap::side_offsets(&recs);
    let k = (0..recs.len())
        .find(|&k| recs[k].0 == Side::Server && offs[k + 1].1 == end5)
        .unwrap();
    let mut p = MysqlParser::new();
    let mut ev = zcap::run(&mut p, &recs[..k]);
    let d = &recs[k].1;
    // Keep the first 80 bytes (column count + part of a definition) and the
    // last 12 (the final EOF and a bit): lose the rest.
    p.feed(Side::Server, &d[..80]);
    p.gap(Side::Server, (d.len() - 92) as u64);
    p.feed(Side::Server, &d[d.len() - 12..]);
    ev.extend(std::iter::from_fn(|| p.poll()));
    ev.extend(zcap::run(&mut p, &recs[k + 1..]));
    let (end, info) = response_end(&ev, 4).unwrap();
    assert_eq!(end, end5);
    assert_eq!(
        info.and_then(|r| r.rows),
        None,
        "row count unknown after a gap"
    );
    // Later exchanges are untouched.
    let later = |v: &[L7Event]| -> Vec<String> { zcap::framing(v, 0, 0, 5) };
    assert_eq!(later(&ev), later(&base));
}

#[test]
fn rows_gap_without_terminator_ends_at_next_command() {
    let (recs, base) = baseline("mysql/pymysql_session.zcap");
    let (end5, _) = response_end(&base, 4).unwrap();
    let offs = zcap::side_offsets(&recs);
    let k = (0..recs.len())
        .find(|&k| recs[k].0 == Side::Server && offs[k + 1].1 == end5)
        .unwrap();
    let mut p = MysqlParser::new();
    let mut ev = zcap::run(&mut p, &recs[..k]);
    let d = &recs[k].1;
    p.feed(Side::Server, &d[..80]);
    p.gap(Side::Server, (d.len() - 80) as u64);
    ev.extend(zcap::run(&mut p, &recs[k + 1..]));
    let (end, _) = response_end(&ev, 4).unwrap();
    assert_eq!(end, end5);
    let later = |v: &[L7Event]| zcap::framing(v, 0, 0, 5);
    assert_eq!(later(&ev), later(&base));
}

#[test]
fn joins_mid_connection_at_every_idle_point() {
    for f in SMALL {
        let (recs, base) = baseline(f);
        let starts = zcap::idle_client_starts(&recs, &base);
        assert!(starts.len() > 3, "{f}: {starts:?}");
        for k in starts {
            zcap::check_mid_start(&make, &recs, &base, k);
        }
    }
}

#[test]
fn detects_mysql() {
    let (recs, _) = baseline("mysql/pymysql_session.zcap");
    assert!(mysql::looks_like(Side::Server, &recs[0].1, 23001));
    let first_cmd = recs.iter().skip(3).find(|r| r.0 == Side::Client).unwrap();
    assert!(mysql::looks_like(Side::Client, &first_cmd.1, 1234));
    assert_eq!(
        protocol_parsers::detect(Side::Client, &first_cmd.1, 1234),
        Some(protocol_parsers::Protocol::Mysql)
    );
    assert!(!mysql::looks_like(
        Side::Client,
        b"GET / HTTP/1.1\r\n\r\n",
        3306
    ));
    assert!(!mysql::looks_like(
        Side::Client,
        b"*1\r\n$4\r\nPING\r\n",
        3306
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_chunking_gives_the_same_events(which in 0..SMALL.len(), cuts in prop::collection::vec(1usize..400, 1..20)) {
        let (recs, base) = baseline(SMALL[which]);
        let ev = zcap::run_chunked(&mut MysqlParser::new(), &recs, &cuts);
        prop_assert_eq!(ev, base);
    }

    #[test]
    fn joining_at_any_byte_recovers(which in 0..SMALL.len(), start in 0usize..4000) {
        let (recs, base) = baseline(SMALL[which]);
        let offs = zcap::side_offsets(&recs);
        let starts = zcap::idle_client_starts(&recs, &base);
        // Join `start` client bytes into the connection (both sides cut at
        // the same record), then expect the events from the next clean
        // point on.
        let total_c = offs.last().unwrap().0 as usize;
        let start = start % total_c;
        let k = (0..recs.len()).rev().find(|&k| offs[k].0 as usize <= start && recs[k].0 == Side::Client).unwrap_or(0);
        let Some(&clean) = starts.iter().find(|&&s| s > k) else { return Ok(()) };
        let mut p = MysqlParser::new();
        let skip_c = start - offs[k].0 as usize;
        p.feed(Side::Client, &recs[k].1[skip_c.min(recs[k].1.len())..]);
        let mut ev: Vec<L7Event> = std::iter::from_fn(|| p.poll()).collect();
        ev.extend(zcap::run(&mut p, &recs[k + 1..]));
        let (cb, sb) = offs[clean];
        let (cb0, sb0) = (offs[k].0 + skip_c as u64, offs[k].1);
        let Some(x_base) = zcap::first_exchange_from(&base, cb) else { return Ok(()) };
        let Some(x_mid) = zcap::first_exchange_from(&ev, cb - cb0) else {
            return Err(TestCaseError::fail(format!("no request after {}: {}", cb - cb0, zcap::render(&ev))));
        };
        // Requests found in bytes that waited while responses went by get
        // no response (missing is fine, wrong is not).
        let got = zcap::by_side(zcap::framing(&ev, cb - cb0, sb - sb0, x_mid));
        let want = zcap::by_side(zcap::framing(&base, cb, sb, x_base));
        zcap::check_subsequence(&got, &want).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(chunks in prop::collection::vec((any::<bool>(), prop::collection::vec(any::<u8>(), 0..300), 0u64..5000), 0..20)) {
        let mut p = MysqlParser::new();
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
    fn random_gaps_never_break_later_exchanges(which in 0..SMALL.len(), rec in 0usize..100, from in 0usize..200, len in 1usize..200) {
        let (recs, base) = baseline(SMALL[which]);
        let k = rec % recs.len();
        let d = &recs[k].1;
        let from = from % d.len();
        let len = len.min(d.len() - from);
        let mut p = MysqlParser::new();
        let mut ev = zcap::run(&mut p, &recs[..k]);
        p.feed(recs[k].0, &d[..from]);
        p.gap(recs[k].0, len as u64);
        p.feed(recs[k].0, &d[from + len..]);
        ev.extend(std::iter::from_fn(|| p.poll()));
        ev.extend(zcap::run(&mut p, &recs[k + 1..]));
        // From the next clean point after the damaged record on, the
        // events are those of the undamaged run.
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
