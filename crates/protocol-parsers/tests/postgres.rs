//! PostgreSQL parser on real captures (see tests/fixtures/sql_record.py).

#[path = "fixtures/zcap.rs"]
mod zcap;

use protocol_parsers::postgres::PostgresParser;

const FIXTURES: &[&str] = &[
    "postgres/psycopg_simple.zcap",
    "postgres/psycopg_extended.zcap",
    "postgres/psycopg_ssl.zcap",
];

#[test]
fn golden_events() {
    for f in FIXTURES {
        let recs = zcap::load(f);
        let ev = zcap::run(&mut PostgresParser::new(), &recs);
        zcap::check_golden(f, &ev);
    }
}
