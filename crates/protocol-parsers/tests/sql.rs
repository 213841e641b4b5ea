//! Property tests of the SQL text helpers.

use proptest::prelude::*;
use protocol_parsers::sql::{sanitize, summarize, TRUNCATED_MARKER};

/// One token of a generated statement: its text and what `sanitize` must
/// turn it into.
fn keep(s: String) -> (String, String) {
    (s.clone(), s)
}

fn lit(s: String) -> (String, String) {
    (s, "?".to_string())
}

fn token() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        // identifiers, digits inside included (t1, col_2)
        "[a-z_][a-z0-9_]{0,8}".prop_map(keep),
        prop::sample::select(vec![
            "SELECT", "FROM", "WHERE", "IN", "AND", "NULL", "TRUE", "INSERT", "VALUES"
        ])
        .prop_map(|s: &str| keep(s.to_string())),
        // quoted identifiers
        "\"[a-zA-Z0-9 ]{1,6}\"".prop_map(keep),
        "`[a-zA-Z0-9 ]{1,6}`".prop_map(keep),
        // placeholders
        "\\$[1-9][0-9]?".prop_map(keep),
        Just("?".to_string()).prop_map(keep),
        ":[a-z]{1,5}".prop_map(keep),
        // punctuation
        prop::sample::select(vec!["(", ")", ",", "=", "<", ">=", "+", "*", ";", "::"])
            .prop_map(|s: &str| keep(s.to_string())),
        // comments (kept: they carry trace context)
        "/\\* [a-z0-9=' -]{0,12} \\*/".prop_map(keep),
        // string literals with '' and backslash escapes
        prop::collection::vec(
            prop_oneof![
                "[a-zA-Z0-9 ,;()\"$-]".prop_map(|s| s),
                Just("''".to_string()),
                Just("\\'".to_string()),
                Just("\\\\".to_string())
            ],
            0..8
        )
        .prop_map(|parts| lit(format!("'{}'", parts.concat()))),
        prop::collection::vec("[a-zA-Z0-9 ']", 0..6)
            .prop_map(|p: Vec<String>| lit(format!("E'{}'", p.concat().replace('\'', "\\'")))),
        // numbers
        "[0-9]{1,6}".prop_map(lit),
        "[0-9]{1,4}\\.[0-9]{1,3}".prop_map(lit),
        "[0-9]\\.[0-9]e[+-]?[0-9]{1,2}".prop_map(lit),
        // hex / bit
        "0x[0-9a-fA-F]{1,8}".prop_map(lit),
        "[xX]'[0-9a-f]{0,6}'".prop_map(lit),
        "[bB]'[01]{0,6}'".prop_map(lit),
        // dollar quoting
        "[a-z0-9 ';]{0,10}".prop_map(|b| lit(format!("$${b}$$"))),
        "[a-z0-9 ';]{0,10}".prop_map(|b| lit(format!("$fn$ {b} $fn$"))),
    ]
}

fn statement() -> impl Strategy<Value = (String, String)> {
    prop::collection::vec(token(), 0..25).prop_map(|toks| {
        let input: Vec<_> = toks.iter().map(|t| t.0.as_str()).collect();
        let want: Vec<_> = toks.iter().map(|t| t.1.as_str()).collect();
        (input.join(" "), want.join(" "))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// Every literal becomes `?`, everything else is kept as written: so no
    /// literal (digits, quoted text) survives.
    #[test]
    fn literals_become_placeholders((input, want) in statement()) {
        prop_assert_eq!(sanitize(&input), want);
    }

    #[test]
    fn never_panics_and_is_idempotent(s in "\\PC{0,200}") {
        let once = sanitize(&s);
        prop_assert_eq!(sanitize(&once), once.clone());
        let _ = summarize(&s);
    }

    #[test]
    fn idempotent_on_sql_like_text(s in "[a-zA-Z0-9 '\"`$\\\\/*().,;:?=_\\-\\n]{0,120}") {
        let once = sanitize(&s);
        prop_assert_eq!(sanitize(&once), once.clone());
    }

    /// A statement cut anywhere (the wire parsers keep a prefix) sanitises
    /// without leaking the literal cut in two: the tail becomes one `?`.
    #[test]
    fn cut_statements_leak_nothing((input, _) in statement(), cut in 0usize..400) {
        let mut k = cut.min(input.len());
        while !input.is_char_boundary(k) { k -= 1; }
        let prefix = &input[..k];
        let out = sanitize(prefix);
        prop_assert_eq!(sanitize(&out), out.clone());
        let marked = format!("{prefix}{TRUNCATED_MARKER}");
        prop_assert!(sanitize(&marked).ends_with(TRUNCATED_MARKER));
    }

    #[test]
    fn summarize_finds_the_table(
        table in "[a-z_][a-z0-9_]{0,10}",
        schema in prop::option::of("[a-z][a-z0-9_]{0,6}"),
        comment in prop::option::of("/\\* [a-z0-9=' -]{0,12} \\*/ "),
    ) {
        // Reserved words are no bare names (real SQL quotes them): neither
        // the table nor the schema may be one (`from on._` once came up).
        let reserved = [
            "select", "from", "where", "values", "value", "set", "as", "on", "with", "into", "only",
            "join", "using", "lateral", "dual", "default", "group", "order", "limit", "union",
            "left", "right", "inner", "outer", "cross", "natural", "having", "window", "returning",
            "for", "offset",
        ];
        prop_assume!(!reserved.contains(&table.as_str()));
        prop_assume!(!schema.as_deref().is_some_and(|s| reserved.contains(&s)));
        let name = match &schema { Some(s) => format!("{s}.{table}"), None => table.clone() };
        let c = comment.unwrap_or_default();
        let s = summarize(&format!("{c}select a, b from {name} where x = 1"));
        prop_assert_eq!(s.operation.as_deref(), Some("SELECT"));
        prop_assert_eq!(s.table.as_deref(), Some(name.as_str()));
        let s = summarize(&format!("{c}INSERT INTO {name} (a) VALUES (1)"));
        prop_assert_eq!(s.operation.as_deref(), Some("INSERT"));
        prop_assert_eq!(s.table.as_deref(), Some(name.as_str()));
        let s = summarize(&format!("update \"{table}\" set a = 2"));
        prop_assert_eq!(s.table.as_deref(), Some(table.as_str()));
    }
}

#[test]
fn real_queries_from_the_fixtures() {
    assert_eq!(
        sanitize("INSERT INTO ztfx_items (id, name, price) VALUES (1, 'apple', 1.25), (2, 'pear', 2.50), (3, 'it''s', 3)"),
        "INSERT INTO ztfx_items (id, name, price) VALUES (?, ?, ?), (?, ?, ?), (?, ?, ?)"
    );
    assert_eq!(
        sanitize("/* traceparent='00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',test_id='t-42' */ SELECT id FROM ztfx_items WHERE price > 1"),
        "/* traceparent='00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',test_id='t-42' */ SELECT id FROM ztfx_items WHERE price > ?"
    );
    assert_eq!(sanitize("DO $$ BEGIN RAISE NOTICE 'hello'; END $$"), "DO ?");
    assert_eq!(sanitize("SELECT $1::int"), "SELECT $1::int");
    let s = summarize("SELECT count(*) FROM ztfx_items WHERE id >= $1");
    assert_eq!(
        (s.operation.as_deref(), s.table.as_deref()),
        (Some("SELECT"), Some("ztfx_items"))
    );
}
