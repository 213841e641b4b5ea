//! Plain mode: the text report, every `--interval` seconds, when stdout is
//! not a terminal or with `--plain`.

use super::data::{Data, Feed};
use crate::render::{fmt_duration, tree_rows};
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zt_trace::span_core::Trace;

/// Traces listed in the table, at most.
const TABLE_ROWS: usize = 20;

/// The report: the traces that arrived after `since` (sequence number) in a
/// table, the service graph, the slowest recent trace as a tree, slow
/// endpoints and traces with their p95, then the insights.
pub fn report(data: &Data, since: u64, example: Option<&Trace>) -> String {
    let mut o = String::new();
    let h = &data.header;
    let fresh: Vec<_> = data.traces.iter().filter(|t| t.seq > since).collect();
    let _ = writeln!(o, "=== Active Traces ===");
    let _ = writeln!(
        o,
        "{} new traces ({} held, {} spans in flight) · {} · sampling: {} · filters: {}",
        fresh.len(),
        data.traces.len(),
        h.in_flight,
        h.source,
        h.sampling,
        h.filters
    );
    let _ = writeln!(
        o,
        "{:<32}  {:<14} {:<36} {:>9} {:>5}  STATUS",
        "TRACE ID", "SERVICE", "OPERATION", "DURATION", "SPANS"
    );
    for t in fresh.iter().rev().take(TABLE_ROWS) {
        let s = &t.summary;
        let _ = writeln!(
            o,
            "{:<32}  {:<14} {:<36} {:>9} {:>5}  {}",
            s.trace_id.to_string(),
            cut(&s.service, 14),
            cut(&s.operation, 36),
            fmt_duration(s.duration_ns),
            s.spans,
            s.status
        );
    }
    if fresh.len() > TABLE_ROWS {
        let _ = writeln!(o, "... and {} more", fresh.len() - TABLE_ROWS);
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "=== Service Dependency Graph ===");
    if data.edges.is_empty() {
        let _ = writeln!(o, "(no edges yet)");
    }
    let mut last = "";
    for e in &data.edges {
        if e.client != last {
            let _ = writeln!(o, "{}", e.client);
            last = &e.client;
        }
        let _ = writeln!(
            o,
            "  → {} ({}{}): {} calls, avg {:.1}ms, p95 {:.1}ms, {} errors",
            e.server,
            e.protocol,
            crate::graph::through(&e.via),
            e.requests,
            e.avg_ms,
            e.p95_ms,
            e.errors
        );
    }
    for m in &data.mesh {
        let _ = writeln!(o, "mesh: {m}");
    }
    let _ = writeln!(o);
    match example {
        Some(t) => {
            let _ = writeln!(o, "=== Trace Example ({}) ===", t.trace_id);
            for r in tree_rows(t) {
                let _ = writeln!(o, "{}", r.to_line());
            }
            let _ = writeln!(o, "(● critical path; [duration · self time])");
        }
        None => {
            let _ = writeln!(o, "=== Trace Example (none) ===");
            let _ = writeln!(o, "(no traces yet)");
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "=== Performance Insights ===");
    let slow_ns = data.slow_ms * 1_000_000;
    let slow_endpoints: Vec<_> = data
        .endpoints
        .iter()
        .filter(|e| e.p95_ns > slow_ns)
        .collect();
    let _ = writeln!(o, "Slow endpoints (p95 over {} ms):", data.slow_ms);
    if slow_endpoints.is_empty() {
        let _ = writeln!(o, "  none");
    }
    for e in slow_endpoints {
        let _ = writeln!(
            o,
            "  {} {}: p95 {} (p50 {}, p99 {}) over {} requests",
            e.service,
            e.operation,
            fmt_duration(e.p95_ns),
            fmt_duration(e.p50_ns),
            fmt_duration(e.p99_ns),
            e.count
        );
    }
    let _ = writeln!(
        o,
        "Slow traces (over {} ms): {}",
        data.slow_ms,
        data.slow.len()
    );
    let mut slow: Vec<_> = data.slow.iter().collect();
    slow.sort_by_key(|s| std::cmp::Reverse(s.duration_ns));
    for s in slow.iter().take(5) {
        let _ = writeln!(
            o,
            "  {} {} {} {}{}",
            s.trace_id,
            s.service,
            s.operation,
            fmt_duration(s.duration_ns),
            if s.error { " (error)" } else { "" }
        );
    }
    let _ = writeln!(o, "Insights:");
    if data.findings.is_empty() {
        let _ = writeln!(o, "  none yet");
    }
    for f in &data.findings {
        let _ = writeln!(o, "  - [{}] {}", f.kind.label(), f.text);
        let mut ev = format!("      → {}", f.hint);
        if let Some(t) = f.evidence.example {
            let _ = write!(ev, " (example trace {t})");
        }
        let _ = writeln!(o, "{ev}");
    }
    o
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut c: String = s.chars().take(n.saturating_sub(1)).collect();
        c.push('…');
        c
    }
}

/// The slowest trace the ring holds among those after `since` (or any, if
/// none arrived).
fn example(feed: &Feed, data: &Data, since: u64) -> Option<Arc<Trace>> {
    let pick = |fresh: bool| {
        data.traces
            .iter()
            .filter(|t| !fresh || t.seq > since)
            .max_by_key(|t| t.summary.duration_ns)
            .map(|t| t.trace.clone())
    };
    let _ = feed;
    pick(true).or_else(|| pick(false))
}

/// Print a report every `interval` until `duration` passes, a replay ends
/// (one last report), or `stop` is set (SIGINT/SIGTERM).
pub fn run(
    feed: &mut Feed,
    interval: Duration,
    duration: Option<Duration>,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let deadline = duration.map(|d| started + d);
    let mut since = 0;
    let mut out = std::io::stdout().lock();
    loop {
        let mut next = Instant::now() + interval;
        if let Some(d) = deadline {
            next = next.min(d);
        }
        // Sleep in short steps so a signal or the end of a replay is seen.
        while Instant::now() < next && !stop.load(Ordering::Relaxed) && !feed.is_finished() {
            feed.wait(
                Duration::from_millis(100).min(next.saturating_duration_since(Instant::now())),
            );
        }
        let finished = feed.is_finished();
        let data = feed.data();
        let ex = example(feed, &data, since);
        let text = report(&data, since, ex.as_deref());
        since = data.traces.last().map_or(since, |t| t.seq);
        writeln!(out, "{text}")?;
        out.flush()?;
        if finished || stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d)
        {
            return Ok(());
        }
    }
}
