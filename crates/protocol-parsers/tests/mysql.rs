//! MySQL parser on real captures (see tests/fixtures/sql_record.py).

#[path = "fixtures/zcap.rs"]
mod zcap;

use protocol_parsers::mysql::MysqlParser;

const FIXTURES: &[&str] = &[
    "mysql/pymysql_session.zcap",
    "mysql/mysqlclient_session.zcap",
    "mysql/connector_prepared.zcap",
    "mysql/raw_deprecate_eof.zcap",
    "mysql/big_packets.zcap.gz",
];

#[test]
fn golden_events() {
    for f in FIXTURES {
        let recs = zcap::load(f);
        let ev = zcap::run(&mut MysqlParser::new(), &recs);
        zcap::check_golden(f, &ev);
    }
}
