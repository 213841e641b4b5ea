//! Performance insights: N+1 queries, cache candidates, dependencies called
//! on (nearly) every request, slow statements, error hot spots, and the
//! root cause of errors, from every finished trace; plus the critical path
//! and self time of one trace ([`Profile`]).
//!
//! **Invariants**
//! - Pure: no I/O, no clock. Traces come in ([`Stage::process`], passed on
//!   unchanged), findings come out ([`InsightsStage::findings`]); a replayed
//!   log gives the live run's findings.
//! - **Bounded**: every table holds at most [`InsightsConfig::max_keys`]
//!   keys (what does not fit is counted in `zt_insights_overflow_total`,
//!   never silently lost), statement texts are cut at
//!   [`normalize::MAX_STATEMENT`] bytes, the slow-trace list keeps the last
//!   [`InsightsConfig::max_slow_traces`]. Per-trace scratch is reused.
//! - **Evidence**: every finding carries its counts and an example trace id
//!   to open.
//! - Reads the typed [`span_core::SpanView`] (protocol, peer, operation,
//!   status, statement); the only attribute it reads is `url.full` (the
//!   exact URL of a client call, for repeated identical calls), which the
//!   view does not carry.
//!
//! **Definitions** (the choices, and why)
//! - *N+1*: in one trace, one request (a span) of a service makes the same
//!   normalised statement or Redis command shape at least
//!   `n_plus_one_min_calls` times (default 5) **one after another**: the
//!   calls counted are the largest set that do not overlap in time. This is
//!   Sentry's definition (sequential, non-overlapping spans with the same
//!   description): parallel calls (a fan-out) cost one round trip of
//!   latency, not N, and batching them does not shorten the request the
//!   same way. Sentry also asks for 50 ms in total; here that floor is
//!   `n_plus_one_min_total_ns` and defaults to 0, because on one host (and
//!   in the tests) a query takes well under a millisecond and the pattern
//!   is what matters; the total is reported.
//! - *Cache candidate*: one request of a service reads the same thing at
//!   least `repeat_min_calls` times (default 2): the same URL (HTTP GET or
//!   HEAD, exact `url.full`) or the same Redis key (a read command with the
//!   same key). Overlapping calls count too: each is a read that a cache
//!   would have saved.
//! - *Called on every request*: a dependency (callee) is called at least
//!   once while serving at least `every_request_ratio` (default 90%) of a
//!   service's requests, over at least `min_requests` requests.
//! - *Slow statement*: p95 of a (service, normalised statement) above
//!   `slow_statement_ns` (default 100 ms) over at least
//!   `slow_statement_min_calls` calls.
//! - *Error hot spot*: an endpoint (service, span name of its server spans)
//!   or an edge (caller, callee of its client spans) with an error rate
//!   above `error_rate` (default 5%) over at least `min_requests`.
//! - *Root cause*: in a trace with an error, the deepest error span whose
//!   children all succeeded; error traces are grouped by (entry endpoint
//!   and status, origin, message). A client call whose server span is in
//!   the trace (and did not fail itself, like a 404) originates in that
//!   server.

pub mod hist;
pub mod normalize;
#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod tests_support;
pub mod tree;

use crate::stage::Stage;
use crate::stats::{defs, StatsWriter};
use hashbrown::HashMap;
use hist::LatencyHist;
use span_core::semconv::attr;
use span_core::{AppProtocol, MonoNanos, Operation, Span, SpanKind, Trace, TraceId};
use std::collections::VecDeque;
pub use tree::{Profile, Tree};

/// Thresholds and limits of an [`InsightsStage`].
#[derive(Clone, Debug, PartialEq)]
pub struct InsightsConfig {
    /// Sequential identical statements in one request that make an N+1.
    pub n_plus_one_min_calls: u32,
    /// ... taking at least this long in total (ns; 0: no floor).
    pub n_plus_one_min_total_ns: u64,
    /// Identical reads in one request that make a cache candidate.
    pub repeat_min_calls: u32,
    /// Share of a service's requests calling a dependency that is "every
    /// request" (0..=1).
    pub every_request_ratio: f64,
    /// Requests (or calls) needed before a rate is judged.
    pub min_requests: u64,
    /// A statement whose p95 is above this is slow (ns).
    pub slow_statement_ns: u64,
    /// Calls of a statement needed before its p95 is judged.
    pub slow_statement_min_calls: u64,
    /// Error rate above which an endpoint or edge is a hot spot (0..=1).
    pub error_rate: f64,
    /// Traces longer than this are listed as slow (ns).
    pub slow_trace_ns: u64,
    /// Keys per table (endpoints, statements, edges, patterns, causes).
    pub max_keys: usize,
    /// Slow traces listed (the latest).
    pub max_slow_traces: usize,
}

impl Default for InsightsConfig {
    fn default() -> Self {
        InsightsConfig {
            n_plus_one_min_calls: 5,
            n_plus_one_min_total_ns: 0,
            repeat_min_calls: 2,
            every_request_ratio: 0.9,
            min_requests: 20,
            slow_statement_ns: 100_000_000,
            slow_statement_min_calls: 5,
            error_rate: 0.05,
            slow_trace_ns: 100_000_000,
            max_keys: 1000,
            max_slow_traces: 50,
        }
    }
}

/// What a finding is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FindingKind {
    RootCause,
    NPlusOne,
    CacheCandidate,
    ErrorHotSpot,
    SlowStatement,
    EveryRequest,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::RootCause => "root_cause",
            FindingKind::NPlusOne => "n_plus_one",
            FindingKind::CacheCandidate => "cache_candidate",
            FindingKind::ErrorHotSpot => "error_hot_spot",
            FindingKind::SlowStatement => "slow_statement",
            FindingKind::EveryRequest => "every_request",
        }
    }

    /// A short label for a table column.
    pub fn label(self) -> &'static str {
        match self {
            FindingKind::RootCause => "root cause",
            FindingKind::NPlusOne => "N+1",
            FindingKind::CacheCandidate => "cache",
            FindingKind::ErrorHotSpot => "errors",
            FindingKind::SlowStatement => "slow stmt",
            FindingKind::EveryRequest => "every req",
        }
    }
}

/// The numbers behind a finding.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evidence {
    /// Occurrences: traces (root cause), requests with the pattern (N+1,
    /// cache), requests calling (every request), calls (slow statement),
    /// errors (hot spot).
    pub count: u64,
    /// Out of: requests of the service, calls of the edge or endpoint.
    pub of: Option<u64>,
    /// Calls per request where the pattern occurred (mean).
    pub per_request: Option<f64>,
    /// Latency p95 (slow statements), or time per request spent in the
    /// pattern (N+1), in ns.
    pub latency_ns: Option<u64>,
    /// The latest trace showing it (the most likely to be still held by
    /// a recent-trace view).
    pub example: Option<TraceId>,
}

/// One insight.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub kind: FindingKind,
    /// The service it is about (the caller, the origin of an error).
    pub service: String,
    /// The statement, URL, key, dependency, endpoint or cause.
    pub subject: String,
    /// One line for people, with the numbers.
    pub text: String,
    /// What to do about it.
    pub hint: &'static str,
    pub evidence: Evidence,
}

/// Latency of one endpoint (a service's server spans of one name).
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointStats {
    pub service: String,
    pub operation: String,
    pub count: u64,
    pub errors: u64,
    pub p50_ns: u64,
    pub p95_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
    /// The slowest trace seen.
    pub slowest: Option<TraceId>,
}

/// A trace longer than [`InsightsConfig::slow_trace_ns`].
#[derive(Clone, Debug, PartialEq)]
pub struct SlowTrace {
    pub trace_id: TraceId,
    pub service: String,
    pub operation: String,
    pub duration_ns: u64,
    pub error: bool,
}

#[derive(Default)]
struct PatternAgg {
    system: &'static str,
    requests: u64,
    calls: u64,
    total_ns: u64,
    example: Option<TraceId>,
}

#[derive(Default)]
struct DepAgg {
    requests_with: u64,
    calls: u64,
    errors: u64,
    example_error: Option<TraceId>,
}

#[derive(Default)]
struct StmtAgg {
    system: &'static str,
    sql: bool,
    hist: LatencyHist,
    slowest: (u64, Option<TraceId>),
}

#[derive(Default)]
struct EndpointAgg {
    hist: LatencyHist,
    errors: u64,
    slowest: (u64, Option<TraceId>),
    example_error: Option<TraceId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct CauseKey {
    entry_service: String,
    entry_operation: String,
    /// `502`, `gRPC 13`, or "" (the entry span did not fail, or no code).
    entry_status: String,
    entry_error: bool,
    origin_service: String,
    /// The origin's operation, or `→ callee` for a call nobody served here.
    origin_what: String,
    message: String,
}

#[derive(Default)]
struct CauseAgg {
    traces: u64,
    example: Option<TraceId>,
}

/// A (service, subject) key looked up without allocating: hashes like
/// `(String, String)` (a tuple hashes its fields in order).
#[derive(Hash)]
struct Pair<'a>(&'a str, &'a str);

impl hashbrown::Equivalent<(String, String)> for Pair<'_> {
    fn equivalent(&self, key: &(String, String)) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

/// A table bounded in keys; what does not fit is counted.
struct Table<K, V> {
    map: HashMap<K, V>,
    overflow: u64,
}

impl<K: std::hash::Hash + Eq, V: Default> Table<K, V> {
    fn new() -> Self {
        Table {
            map: HashMap::new(),
            overflow: 0,
        }
    }

    /// The entry for `key`, created if there is room.
    fn entry(&mut self, max: usize, key: K) -> Option<&mut V> {
        if !self.map.contains_key(&key) && self.map.len() >= max {
            self.overflow += 1;
            return None;
        }
        Some(self.map.entry(key).or_default())
    }
}

impl<V: Default> Table<(String, String), V> {
    /// The entry for (`a`, `b`), allocating the key only when it is new.
    fn pair(&mut self, max: usize, a: &str, b: &str) -> Option<&mut V> {
        if self.map.contains_key(&Pair(a, b)) {
            return self.map.get_mut(&Pair(a, b));
        }
        self.entry(max, (a.to_owned(), b.to_owned()))
    }
}

impl<V: Default> Table<String, V> {
    fn one(&mut self, max: usize, a: &str) -> Option<&mut V> {
        if self.map.contains_key(a) {
            return self.map.get_mut(a);
        }
        self.entry(max, a.to_owned())
    }
}

/// Per-trace scratch, reused between traces.
#[derive(Default)]
struct Scratch {
    tree: Tree,
    /// Normalised statement of each DB client span (empty otherwise).
    shape: Vec<String>,
    /// Exact read target of each client span (empty if not a read).
    read: Vec<String>,
    /// Callee of each client span.
    callee: Vec<String>,
    group: Vec<(usize, usize)>,
    seen: Vec<usize>,
}

/// The insights stage (see the module docs). Passes every trace on
/// unchanged; put it before any stage that drops traces.
pub struct InsightsStage {
    cfg: InsightsConfig,
    requests: Table<String, u64>,
    n_plus_one: Table<(String, String), PatternAgg>,
    repeats: Table<(String, String), PatternAgg>,
    deps: Table<(String, String), DepAgg>,
    statements: Table<(String, String), StmtAgg>,
    endpoints: Table<(String, String), EndpointAgg>,
    causes: Table<CauseKey, CauseAgg>,
    slow: VecDeque<SlowTrace>,
    traces: u64,
    error_traces: u64,
    scratch: Scratch,
}

impl Default for InsightsStage {
    fn default() -> Self {
        InsightsStage::new(InsightsConfig::default())
    }
}

/// Redis commands that read a key (a repeated one is a cache candidate).
const REDIS_READS: &[&str] = &[
    "GET",
    "MGET",
    "HGET",
    "HGETALL",
    "HMGET",
    "EXISTS",
    "LRANGE",
    "SMEMBERS",
    "SISMEMBER",
    "ZRANGE",
    "ZRANGEBYSCORE",
    "ZSCORE",
    "GETRANGE",
    "STRLEN",
    "HEXISTS",
    "LINDEX",
    "TTL",
];

fn is_db(p: Option<AppProtocol>) -> bool {
    p.and_then(AppProtocol::db_system).is_some()
}

fn ms(ns: u64) -> String {
    let ms = ns as f64 / 1e6;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 1.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

fn pct(a: u64, b: u64) -> String {
    let p = 100.0 * a as f64 / b.max(1) as f64;
    if p >= 10.0 || p == 0.0 {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}

/// Who a client span called: the traced service at the other end when
/// the linker proved it, else the database system, else `host:port`.
pub fn callee(span: &Span) -> String {
    let v = &span.view;
    if let Some(s) = v.peer.as_ref().and_then(|p| p.service()) {
        return s.to_owned();
    }
    if let Some(db) = v.protocol.and_then(AppProtocol::db_system) {
        return db.to_owned();
    }
    match v.called_server() {
        Some((h, Some(p))) => format!("{h}:{p}"),
        Some((h, None)) => h.into_owned(),
        None => "unknown".to_owned(),
    }
}

/// The exact thing a client span read, if it is a read: `GET <url.full>`
/// for HTTP GET/HEAD, `<CMD> <key>` for a Redis read command.
fn read_target(span: &Span) -> Option<String> {
    let v = &span.view;
    match v.protocol? {
        AppProtocol::Http => {
            let m = v.method.as_deref()?;
            if m != "GET" && m != "HEAD" {
                return None;
            }
            let url = span.attributes.get_str(attr::URL_FULL)?;
            Some(normalize_cap(format!("{m} {url}")))
        }
        AppProtocol::Redis => {
            let stmt = v.db_statement.as_deref()?;
            let (cmd, key) = stmt.split_once(' ')?;
            let cmd = cmd.to_ascii_uppercase();
            REDIS_READS
                .contains(&cmd.as_str())
                .then(|| normalize_cap(format!("{cmd} {key}")))
        }
        _ => None,
    }
}

fn normalize_cap(mut s: String) -> String {
    if s.len() > normalize::MAX_STATEMENT {
        let mut end = normalize::MAX_STATEMENT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// The normalised statement of a DB client span.
fn shape(span: &Span) -> Option<String> {
    let v = &span.view;
    let stmt = v.db_statement.as_deref()?;
    Some(match v.protocol? {
        AppProtocol::Redis => normalize::redis(stmt),
        AppProtocol::Mysql | AppProtocol::Postgres => normalize::sql(stmt),
        _ => return None,
    })
}

/// `502`, `gRPC 13`, or "".
fn status_label(span: &Span) -> String {
    let st = &span.view.status;
    match (st.http, st.grpc) {
        (Some(c), _) if c >= 400 => c.to_string(),
        (_, Some(c)) if c != 0 => format!("gRPC {c}"),
        _ => String::new(),
    }
}

/// Where a trace starts and how long it took (its spans' extent).
fn trace_extent(trace: &Trace) -> (u64, u64) {
    let start = trace
        .spans
        .iter()
        .map(|s| s.start_unix_nanos)
        .min()
        .unwrap_or(0);
    let end = trace
        .spans
        .iter()
        .map(|s| s.end_unix_nanos)
        .max()
        .unwrap_or(0);
    (start, end.saturating_sub(start))
}

fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

impl InsightsStage {
    pub fn new(cfg: InsightsConfig) -> Self {
        InsightsStage {
            cfg,
            requests: Table::new(),
            n_plus_one: Table::new(),
            repeats: Table::new(),
            deps: Table::new(),
            statements: Table::new(),
            endpoints: Table::new(),
            causes: Table::new(),
            slow: VecDeque::new(),
            traces: 0,
            error_traces: 0,
            scratch: Scratch::default(),
        }
    }

    pub fn config(&self) -> &InsightsConfig {
        &self.cfg
    }

    /// Traces seen, and traces with an error.
    pub fn traces(&self) -> (u64, u64) {
        (self.traces, self.error_traces)
    }

    /// Keys refused because a table was full, per table.
    pub fn overflow(&self) -> [(&'static str, u64); 7] {
        [
            ("services", self.requests.overflow),
            ("n_plus_one", self.n_plus_one.overflow),
            ("repeats", self.repeats.overflow),
            ("dependencies", self.deps.overflow),
            ("statements", self.statements.overflow),
            ("endpoints", self.endpoints.overflow),
            ("root_causes", self.causes.overflow),
        ]
    }

    /// Learn from one finished trace.
    pub fn record(&mut self, trace: &Trace) {
        let max = self.cfg.max_keys;
        let mut sc = std::mem::take(&mut self.scratch);
        sc.tree.build(&trace.spans);
        let spans = &trace.spans[..sc.tree.len()];
        let n = spans.len();
        self.traces += 1;
        sc.shape.clear();
        sc.read.clear();
        sc.callee.clear();
        for s in spans {
            let client = s.kind == SpanKind::Client;
            sc.shape
                .push(if client { shape(s) } else { None }.unwrap_or_default());
            sc.read
                .push(if client { read_target(s) } else { None }.unwrap_or_default());
            sc.callee
                .push(if client { callee(s) } else { String::new() });
        }
        let mut any_error = false;
        for (i, s) in spans.iter().enumerate() {
            let svc = s.resource.service_name.as_str();
            let dur = s.duration_nanos();
            let err = s.view.status.error;
            any_error |= err;
            match s.kind {
                SpanKind::Server => {
                    if let Some(r) = self.requests.one(max, svc) {
                        *r += 1;
                    }
                    if let Some(e) = self.endpoints.pair(max, svc, &s.name) {
                        e.hist.record(dur);
                        if err {
                            e.errors += 1;
                            e.example_error = Some(trace.trace_id);
                        }
                        if dur >= e.slowest.0 {
                            e.slowest = (dur, Some(trace.trace_id));
                        }
                    }
                    // Dependencies called while serving this request, each
                    // once.
                    sc.seen.clear();
                    for c in sc.tree.children(i) {
                        if spans[c].kind != SpanKind::Client
                            || sc.seen.iter().any(|&o| sc.callee[o] == sc.callee[c])
                        {
                            continue;
                        }
                        sc.seen.push(c);
                        if let Some(d) = self.deps.pair(max, svc, &sc.callee[c]) {
                            d.requests_with += 1;
                        }
                    }
                }
                SpanKind::Client => {
                    if let Some(d) = self.deps.pair(max, svc, &sc.callee[i]) {
                        d.calls += 1;
                        if err {
                            d.errors += 1;
                            d.example_error = Some(trace.trace_id);
                        }
                    }
                    if !sc.shape[i].is_empty() {
                        let protocol = s.view.protocol;
                        if let Some(st) = self.statements.pair(max, svc, &sc.shape[i]) {
                            st.system = protocol.and_then(AppProtocol::db_system).unwrap_or("");
                            st.sql = protocol != Some(AppProtocol::Redis);
                            st.hist.record(dur);
                            if dur >= st.slowest.0 {
                                st.slowest = (dur, Some(trace.trace_id));
                            }
                        }
                    }
                }
            }
        }
        // Patterns among the client calls each span made.
        for p in 0..n {
            if sc.tree.child_count(p) < 2 {
                continue;
            }
            self.patterns(trace, p, &mut sc);
        }
        if any_error {
            self.error_traces += 1;
            self.root_cause(trace, &sc.tree);
        }
        let (_, dur) = trace_extent(trace);
        if dur > self.cfg.slow_trace_ns && self.cfg.max_slow_traces > 0 {
            if let Some(root) = sc.tree.roots().next() {
                let r = &spans[root];
                if self.slow.len() >= self.cfg.max_slow_traces {
                    self.slow.pop_front();
                }
                self.slow.push_back(SlowTrace {
                    trace_id: trace.trace_id,
                    service: r.resource.service_name.clone(),
                    operation: r.name.clone(),
                    duration_ns: dur,
                    error: spans.iter().any(|s| s.view.status.error),
                });
            }
        }
        self.scratch = sc;
    }

    /// N+1 and repeated reads among the client children of span `p`.
    fn patterns(&mut self, trace: &Trace, p: usize, sc: &mut Scratch) {
        let spans = &trace.spans;
        let max = self.cfg.max_keys;
        let svc_of = |i: usize| spans[i].resource.service_name.as_str();
        // N+1: same shape, same service, sequential.
        sc.group.clear();
        for c in sc.tree.children(p) {
            if spans[c].kind == SpanKind::Client
                && !sc.shape[c].is_empty()
                && is_db(spans[c].view.protocol)
            {
                sc.group.push((c, 0));
            }
        }
        sc.group
            .sort_by(|a, b| (svc_of(a.0), &sc.shape[a.0]).cmp(&(svc_of(b.0), &sc.shape[b.0])));
        let mut a = 0;
        while a < sc.group.len() {
            let first = sc.group[a].0;
            let mut b = a + 1;
            while b < sc.group.len()
                && svc_of(sc.group[b].0) == svc_of(first)
                && sc.shape[sc.group[b].0] == sc.shape[first]
            {
                b += 1;
            }
            if b - a >= self.cfg.n_plus_one_min_calls as usize {
                // The largest set of calls that do not overlap: earliest
                // end first.
                let run = &mut sc.group[a..b];
                run.sort_by_key(|&(i, _)| (spans[i].end_unix_nanos, spans[i].start_unix_nanos));
                let mut last_end = 0u64;
                let (mut calls, mut total) = (0u64, 0u64);
                for &(i, _) in run.iter() {
                    if spans[i].start_unix_nanos >= last_end {
                        calls += 1;
                        total += spans[i].duration_nanos();
                        last_end = spans[i].end_unix_nanos.max(spans[i].start_unix_nanos);
                    }
                }
                if calls >= self.cfg.n_plus_one_min_calls as u64
                    && total >= self.cfg.n_plus_one_min_total_ns
                {
                    let system = spans[first]
                        .view
                        .protocol
                        .and_then(AppProtocol::db_system)
                        .unwrap_or("");
                    if let Some(agg) = self.n_plus_one.pair(max, svc_of(first), &sc.shape[first]) {
                        agg.system = system;
                        agg.requests += 1;
                        agg.calls += calls;
                        agg.total_ns += total;
                        agg.example = Some(trace.trace_id);
                    }
                }
            }
            a = b;
        }
        // Repeated identical reads.
        sc.group.clear();
        for c in sc.tree.children(p) {
            if spans[c].kind == SpanKind::Client && !sc.read[c].is_empty() {
                sc.group.push((c, 0));
            }
        }
        sc.group
            .sort_by(|a, b| (svc_of(a.0), &sc.read[a.0]).cmp(&(svc_of(b.0), &sc.read[b.0])));
        let mut a = 0;
        while a < sc.group.len() {
            let first = sc.group[a].0;
            let mut b = a + 1;
            while b < sc.group.len()
                && svc_of(sc.group[b].0) == svc_of(first)
                && sc.read[sc.group[b].0] == sc.read[first]
            {
                b += 1;
            }
            let calls = (b - a) as u64;
            if calls >= self.cfg.repeat_min_calls.max(2) as u64 {
                let total: u64 = sc.group[a..b]
                    .iter()
                    .map(|&(i, _)| spans[i].duration_nanos())
                    .sum();
                let system = spans[first]
                    .view
                    .protocol
                    .map(AppProtocol::as_str)
                    .unwrap_or("");
                if let Some(agg) = self.repeats.pair(max, svc_of(first), &sc.read[first]) {
                    agg.system = system;
                    agg.requests += 1;
                    agg.calls += calls;
                    agg.total_ns += total;
                    agg.example = Some(trace.trace_id);
                }
            }
            a = b;
        }
    }

    /// Group an error trace by where its failure starts.
    fn root_cause(&mut self, trace: &Trace, tree: &Tree) {
        let spans = &trace.spans[..tree.len()];
        // The deepest error span whose children all succeeded (the earliest
        // of equals: the first failure).
        let mut origin: Option<usize> = None;
        for (i, s) in spans.iter().enumerate() {
            if !s.view.status.error || tree.children(i).any(|c| spans[c].view.status.error) {
                continue;
            }
            let better = match origin {
                None => true,
                Some(o) => {
                    let (d, od) = (tree.depth(i), tree.depth(o));
                    d > od || (d == od && s.start_unix_nanos < spans[o].start_unix_nanos)
                }
            };
            if better {
                origin = Some(i);
            }
        }
        let Some(o) = origin else { return };
        // The entry: the root of the origin's tree.
        let mut entry = o;
        let mut hops = 0;
        while let Some(p) = tree.parent(entry) {
            entry = p;
            hops += 1;
            if hops > spans.len() {
                break;
            }
        }
        let os = &spans[o];
        let message = match os.status.message.as_deref() {
            Some(m) => cut(m, 120),
            None => match (os.view.status.http, os.view.status.grpc) {
                (Some(c), _) => format!("HTTP status {c}"),
                (_, Some(c)) => format!("gRPC status {c}"),
                _ => "error".to_owned(),
            },
        };
        let served = (os.kind == SpanKind::Client)
            .then(|| {
                tree.children(o)
                    .find(|&c| spans[c].kind == SpanKind::Server)
            })
            .flatten();
        let (origin_service, origin_what) = match (os.kind, served) {
            (SpanKind::Server, _) => (os.resource.service_name.clone(), os.name.clone()),
            (SpanKind::Client, Some(c)) => (
                spans[c].resource.service_name.clone(),
                spans[c].name.clone(),
            ),
            (SpanKind::Client, None) => (
                os.resource.service_name.clone(),
                format!("→ {}", callee(os)),
            ),
        };
        let es = &spans[entry];
        let key = CauseKey {
            entry_service: es.resource.service_name.clone(),
            entry_operation: es.name.clone(),
            entry_status: status_label(es),
            entry_error: es.view.status.error,
            origin_service,
            origin_what,
            message,
        };
        if let Some(agg) = self.causes.entry(self.cfg.max_keys, key) {
            agg.traces += 1;
            agg.example = Some(trace.trace_id);
        }
    }

    /// Latency of every endpoint, slowest p95 first.
    pub fn endpoints(&self) -> Vec<EndpointStats> {
        let mut out: Vec<EndpointStats> = self
            .endpoints
            .map
            .iter()
            .map(|((service, operation), e)| EndpointStats {
                service: service.clone(),
                operation: operation.clone(),
                count: e.hist.count(),
                errors: e.errors,
                p50_ns: e.hist.quantile_ns(0.50),
                p95_ns: e.hist.quantile_ns(0.95),
                p99_ns: e.hist.quantile_ns(0.99),
                max_ns: e.hist.max_ns(),
                slowest: e.slowest.1,
            })
            .collect();
        out.sort_by(|a, b| {
            b.p95_ns
                .cmp(&a.p95_ns)
                .then_with(|| (&a.service, &a.operation).cmp(&(&b.service, &b.operation)))
        });
        out
    }

    /// The latest traces longer than the slow threshold, newest first.
    pub fn slow_traces(&self) -> Vec<SlowTrace> {
        self.slow.iter().rev().cloned().collect()
    }

    /// Every finding, most important kind first, then by count.
    pub fn findings(&self) -> Vec<Finding> {
        let cfg = &self.cfg;
        let mut out = Vec::new();
        for (k, c) in &self.causes.map {
            let at = match (k.entry_status.as_str(), k.entry_error) {
                ("", true) => format!("errors at {} {}", k.entry_service, k.entry_operation),
                ("", false) => {
                    format!("errors in {} {} traces", k.entry_service, k.entry_operation)
                }
                (code, _) => format!("{code}s at {} {}", k.entry_service, k.entry_operation),
            };
            let what = format!("{} {}", k.origin_service, k.origin_what);
            out.push(Finding {
                kind: FindingKind::RootCause,
                service: k.origin_service.clone(),
                subject: k.message.clone(),
                text: format!(
                    "{at} originate in {what}: {} ({} trace{})",
                    k.message,
                    c.traces,
                    if c.traces == 1 { "" } else { "s" }
                ),
                hint: "fix the origin; the spans above it only pass the error on",
                evidence: Evidence {
                    count: c.traces,
                    of: Some(self.error_traces),
                    example: c.example,
                    ..Evidence::default()
                },
            });
        }
        for ((svc, stmt), a) in &self.n_plus_one.map {
            let per = a.calls as f64 / a.requests.max(1) as f64;
            out.push(Finding {
                kind: FindingKind::NPlusOne,
                service: svc.clone(),
                subject: stmt.clone(),
                text: format!(
                    "N+1 queries: {svc} runs `{stmt}` ({}) {per:.1} times per request, one after another ({} request{}, {} per request)",
                    a.system,
                    a.requests,
                    if a.requests == 1 { "" } else { "s" },
                    ms(a.total_ns / a.requests.max(1)),
                ),
                hint: "batch them: one query with IN (...) or a JOIN, or load them with the parent",
                evidence: Evidence {
                    count: a.requests,
                    of: self.requests.map.get(svc).copied(),
                    per_request: Some(per),
                    latency_ns: Some(a.total_ns / a.requests.max(1)),
                    example: a.example,
                },
            });
        }
        for ((svc, target), a) in &self.repeats.map {
            let per = a.calls as f64 / a.requests.max(1) as f64;
            out.push(Finding {
                kind: FindingKind::CacheCandidate,
                service: svc.clone(),
                subject: target.clone(),
                text: format!(
                    "cache candidate: {svc} reads `{target}` ({}) {per:.1} times per request ({} request{})",
                    a.system,
                    a.requests,
                    if a.requests == 1 { "" } else { "s" },
                ),
                hint: "read it once per request, or cache it",
                evidence: Evidence {
                    count: a.requests,
                    of: self.requests.map.get(svc).copied(),
                    per_request: Some(per),
                    latency_ns: Some(a.total_ns / a.requests.max(1)),
                    example: a.example,
                },
            });
        }
        for ((svc, dep), d) in &self.deps.map {
            let requests = self.requests.map.get(svc).copied().unwrap_or(0);
            if requests >= cfg.min_requests
                && d.requests_with as f64 >= cfg.every_request_ratio * requests as f64
            {
                out.push(Finding {
                    kind: FindingKind::EveryRequest,
                    service: svc.clone(),
                    subject: dep.clone(),
                    text: format!(
                        "{dep} called on {} of {svc} requests ({} of {requests}; {} calls)",
                        pct(d.requests_with, requests),
                        d.requests_with,
                        d.calls
                    ),
                    hint: "cache its answers, or call it once per session",
                    evidence: Evidence {
                        count: d.requests_with,
                        of: Some(requests),
                        per_request: Some(d.calls as f64 / requests as f64),
                        ..Evidence::default()
                    },
                });
            }
            if d.calls >= cfg.min_requests && d.errors as f64 > cfg.error_rate * d.calls as f64 {
                out.push(Finding {
                    kind: FindingKind::ErrorHotSpot,
                    service: svc.clone(),
                    subject: format!("{svc} → {dep}"),
                    text: format!(
                        "error hot spot: {svc} → {dep} fails {} of calls ({} of {})",
                        pct(d.errors, d.calls),
                        d.errors,
                        d.calls
                    ),
                    hint: "see its root cause; retry or fall back only for transient errors",
                    evidence: Evidence {
                        count: d.errors,
                        of: Some(d.calls),
                        example: d.example_error,
                        ..Evidence::default()
                    },
                });
            }
        }
        for ((svc, op), e) in &self.endpoints.map {
            let n = e.hist.count();
            if n >= cfg.min_requests && e.errors as f64 > cfg.error_rate * n as f64 {
                out.push(Finding {
                    kind: FindingKind::ErrorHotSpot,
                    service: svc.clone(),
                    subject: format!("{svc} {op}"),
                    text: format!(
                        "error hot spot: {svc} {op} fails {} of requests ({} of {n})",
                        pct(e.errors, n),
                        e.errors
                    ),
                    hint: "see its root cause",
                    evidence: Evidence {
                        count: e.errors,
                        of: Some(n),
                        example: e.example_error,
                        ..Evidence::default()
                    },
                });
            }
        }
        for ((svc, stmt), st) in &self.statements.map {
            let n = st.hist.count();
            let p95 = st.hist.quantile_ns(0.95);
            if n >= cfg.slow_statement_min_calls && p95 > cfg.slow_statement_ns {
                out.push(Finding {
                    kind: FindingKind::SlowStatement,
                    service: svc.clone(),
                    subject: stmt.clone(),
                    text: format!(
                        "slow statement: {svc} runs `{stmt}` ({}) with p95 {} over {n} calls",
                        st.system,
                        ms(p95)
                    ),
                    hint: if st.sql {
                        "consider an index (EXPLAIN it), or fetch less"
                    } else {
                        "check the key's size and the command's cost (O(N) commands)"
                    },
                    evidence: Evidence {
                        count: n,
                        latency_ns: Some(p95),
                        example: st.slowest.1,
                        ..Evidence::default()
                    },
                });
            }
        }
        out.sort_by(|a, b| {
            a.kind
                .cmp(&b.kind)
                .then_with(|| b.evidence.count.cmp(&a.evidence.count))
                .then_with(|| a.text.cmp(&b.text))
        });
        out
    }
}

impl Stage for InsightsStage {
    fn name(&self) -> &'static str {
        "insights"
    }

    fn process(&mut self, trace: Trace, _now: MonoNanos) -> Option<Trace> {
        self.record(&trace);
        Some(trace)
    }

    fn report(&self, out: &mut StatsWriter) {
        for (table, n) in self.overflow() {
            out.set_labelled(&defs::INSIGHTS_OVERFLOW, table, n as f64);
        }
    }
}

/// A one-line description of the operation a span performed, for tables:
/// its name, or for a database call its statement.
pub fn describe_span(span: &Span) -> String {
    let v = &span.view;
    match (&v.operation, v.db_statement.as_deref()) {
        (Some(Operation::Db { .. } | Operation::Redis { .. }), Some(stmt)) => cut(stmt, 80),
        _ => span.name.clone(),
    }
}

/// How a trace looks in a table: its first root's service and operation,
/// duration, span count, and whether a span failed.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceSummary {
    pub trace_id: TraceId,
    pub service: String,
    pub operation: String,
    pub start_unix_nanos: u64,
    pub duration_ns: u64,
    pub spans: usize,
    /// The root's status code label (`502`), if any.
    pub status: String,
    pub error: bool,
}

impl TraceSummary {
    pub fn of(trace: &Trace) -> TraceSummary {
        let (start, dur) = trace_extent(trace);
        let ids: std::collections::HashSet<u64> = trace.spans.iter().map(|s| s.span_id.0).collect();
        let root = trace
            .spans
            .iter()
            .filter(|s| s.parent_span_id.is_none_or(|p| !ids.contains(&p.0)))
            .min_by_key(|s| s.start_unix_nanos);
        let error = trace.spans.iter().any(|s| s.view.status.error);
        let mut status = root.map(status_label).unwrap_or_default();
        if status.is_empty() {
            status = if error { "ERROR" } else { "OK" }.to_owned();
        }
        TraceSummary {
            trace_id: trace.trace_id,
            service: root
                .map(|r| r.resource.service_name.clone())
                .unwrap_or_default(),
            operation: root.map(describe_span).unwrap_or_default(),
            start_unix_nanos: start,
            duration_ns: dur,
            spans: trace.spans.len(),
            status,
            error,
        }
    }
}
