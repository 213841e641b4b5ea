//! What the dashboard shows, pulled from the running tracer in one go
//! ([`Feed::data`]): recent traces, findings, endpoint latencies, the
//! service graph and the header's counters.

use crate::settings::Settings;
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use zt_trace::recent::RecentTrace;
use zt_trace::stages::insights::{EndpointStats, SlowTrace};
use zt_trace::stats::defs;
use zt_trace::{
    Finding, GraphSnapshot, GraphStage, InsightsStage, RecentTraces, Shared, StatsSnapshot, Tracer,
};

/// One edge of the service graph (from the graph stage), as the panel
/// shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct EdgeRow {
    pub client: String,
    pub server: String,
    pub protocol: String,
    /// The proxies the requests went through (collapsed hops).
    pub via: Vec<String>,
    pub requests: u64,
    pub errors: u64,
    pub avg_ms: f64,
    pub p95_ms: f64,
}

/// The header line's numbers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Header {
    /// `live` or `replay of FILE`.
    pub source: String,
    /// Live: per second since the last refresh. Replay: None (totals only).
    pub events_per_s: Option<f64>,
    pub spans_per_s: Option<f64>,
    pub events: u64,
    pub spans: u64,
    pub traces: u64,
    /// Kernel drops (ring buffer, tables), spans dropped, sink and export
    /// drops.
    pub drops: u64,
    /// Agent CPU, % of one core since the last refresh (live only).
    pub cpu_percent: Option<f64>,
    pub rss_mib: Option<f64>,
    /// Spans started and not yet emitted.
    pub in_flight: u64,
    pub sampling: String,
    pub filters: String,
    /// The source ended (a replay reached the end of its log).
    pub finished: bool,
}

/// Everything one frame shows.
#[derive(Clone, Debug, Default)]
pub struct Data {
    /// Oldest first.
    pub traces: Vec<RecentTrace>,
    pub findings: Vec<Finding>,
    pub endpoints: Vec<EndpointStats>,
    pub slow: Vec<SlowTrace>,
    pub edges: Vec<EdgeRow>,
    /// The pods whose traffic goes through a sidecar, one line each
    /// (`StatsSnapshot::mesh`).
    pub mesh: Vec<String>,
    pub header: Header,
    pub slow_ms: u64,
}

/// The running pipeline the dashboard reads.
pub struct Feed {
    tracer: Option<Tracer>,
    recent: RecentTraces,
    insights: Shared<InsightsStage>,
    graph: Shared<GraphStage>,
    source: String,
    sampling: String,
    filters: String,
    slow_ms: u64,
    live: bool,
    last: Option<(Instant, StatsSnapshot)>,
    /// The rates computed last (events/s, spans/s, CPU %): kept while the
    /// registry has not published a newer snapshot, so the header does not
    /// flicker between rates and totals.
    rates: (Option<f64>, Option<f64>, Option<f64>),
}

impl Feed {
    /// Start tracing this host (root), or replay `from`.
    pub fn start(s: &Settings, from: Option<&Path>) -> Result<Feed> {
        let insights = Shared::new(InsightsStage::new(s.insights_config()));
        let (sink, recent) = RecentTraces::new(s.dashboard.recent_traces, 200_000);
        let mut quiet = s.clone();
        quiet.output.format = crate::output::OutputFormat::None;
        let (tracer, source) = match from {
            Some(path) => {
                let b = Tracer::builder()
                    .assembler(crate::run::assembler_config(&s.assemble))
                    .graph(s.graph.config())
                    .stage(insights.clone())
                    .sink(sink);
                let t = crate::run::output_stages(b, s)?.replay(path)?;
                (t, format!("replay of {}", display(path)))
            }
            None => {
                let t = crate::run::builder(&quiet, crate::Stage::Full)?
                    .graph(s.graph.config())
                    .stage(insights.clone())
                    .sink(sink)
                    .start()?;
                (t, "live".to_owned())
            }
        };
        let graph = tracer
            .graph()
            .ok_or_else(|| anyhow::anyhow!("the tracer kept no service graph"))?;
        let (sampling, filters) = (sampling_text(s)?, filters_text(s, from.is_none())?);
        Ok(Feed {
            tracer: Some(tracer),
            recent,
            insights,
            graph,
            source,
            sampling,
            filters,
            slow_ms: s.dashboard.slow_ms,
            live: from.is_none(),
            last: None,
            rates: (None, None, None),
        })
    }

    pub fn is_finished(&self) -> bool {
        self.tracer.as_ref().is_none_or(Tracer::is_finished)
    }

    /// Wait until the source ends (a replay) or `timeout`.
    pub fn wait(&self, timeout: Duration) -> bool {
        self.tracer
            .as_ref()
            .is_none_or(|t| t.wait_timeout(Some(timeout)))
    }

    pub fn recent(&self) -> &RecentTraces {
        &self.recent
    }

    /// The graph stage (valid after [`Feed::shutdown`] too).
    pub fn graph(&self) -> Shared<GraphStage> {
        self.graph.clone()
    }

    /// Everything to show now.
    pub fn data(&mut self) -> Data {
        let (findings, endpoints, slow) = {
            let st = self.insights.lock();
            (st.findings(), st.endpoints(), st.slow_traces())
        };
        let stats = self.tracer.as_ref().map(Tracer::stats).unwrap_or_default();
        let header = self.header(&stats);
        Data {
            traces: self.recent.snapshot(),
            findings,
            endpoints,
            slow,
            edges: edge_rows(&self.graph.lock().totals()),
            mesh: stats.mesh.lines(),
            header,
            slow_ms: self.slow_ms,
        }
    }

    fn header(&mut self, stats: &StatsSnapshot) -> Header {
        let v = |name: &str| stats.total(name) as u64;
        let events = v(defs::EVENTS.name);
        let spans = v(defs::SPANS_EMITTED.name);
        let drops = stats
            .by_label(defs::KERNEL_DROPS.name)
            .into_iter()
            .filter(|(r, _)| r.starts_with("ringbuf") || r.ends_with("table_full"))
            .map(|(_, n)| n as u64)
            .sum::<u64>()
            + v(defs::SPANS_DROPPED.name)
            + v(defs::SINK_DROPS.name)
            + stats
                .by_label(defs::EXPORT_SPANS.name)
                .into_iter()
                .filter(|(o, _)| o.starts_with("dropped"))
                .map(|(_, n)| n as u64)
                .sum::<u64>();
        let mut h = Header {
            source: self.source.clone(),
            events,
            spans,
            traces: self.recent.added(),
            drops,
            rss_mib: stats
                .get(defs::RSS.name, None)
                .map(|b| b / (1 << 20) as f64),
            in_flight: v(defs::PENDING_SPANS.name),
            sampling: self.sampling.clone(),
            filters: self.filters.clone(),
            finished: self.is_finished(),
            ..Header::default()
        };
        if self.live {
            let now = Instant::now();
            let up = stats.get(defs::UPTIME.name, None).unwrap_or(0.0);
            let cpu = stats.get(defs::CPU.name, None);
            if let Some((_, last)) = &self.last {
                let dt = up - last.get(defs::UPTIME.name, None).unwrap_or(0.0);
                if dt > 0.0 {
                    let d = |name: &str| (stats.total(name) - last.total(name)).max(0.0) / dt;
                    let cpu = match (cpu, last.get(defs::CPU.name, None)) {
                        (Some(c), Some(lc)) => Some(100.0 * (c - lc).max(0.0) / dt),
                        _ => None,
                    };
                    self.rates = (
                        Some(d(defs::EVENTS.name)),
                        Some(d(defs::SPANS_EMITTED.name)),
                        cpu,
                    );
                }
            }
            (h.events_per_s, h.spans_per_s, h.cpu_percent) = self.rates;
            if self.last.as_ref().is_none_or(|(_, l)| {
                l.get(defs::UPTIME.name, None) != stats.get(defs::UPTIME.name, None)
            }) {
                self.last = Some((now, stats.clone()));
            }
        }
        h
    }

    /// Stop the pipeline (flush, detach) and return its final counters.
    pub fn shutdown(mut self) -> Result<StatsSnapshot> {
        match self.tracer.take() {
            Some(t) => Ok(t.shutdown()?),
            None => Ok(StatsSnapshot::default()),
        }
    }
}

/// The sampling in force, in words.
pub fn sampling_text(s: &Settings) -> Result<String> {
    let Some(c) = s.sampling.config()? else {
        return Ok("none (every trace kept)".to_owned());
    };
    let mut t = format!("{}% of traces", c.ratio * 100.0);
    if !c.service_ratios.is_empty() {
        let per: Vec<String> = c
            .service_ratios
            .iter()
            .map(|(svc, r)| format!("{svc} {}%", r * 100.0))
            .collect();
        t.push_str(&format!(" ({})", per.join(", ")));
    }
    if c.parent_based {
        t.push_str(", inbound flags followed");
    }
    let mut keep = Vec::new();
    if c.keep_errors {
        keep.push("errors".to_owned());
    }
    if let Some(ns) = c.keep_slower_than_ns {
        keep.push(format!("slower than {} ms", ns / 1_000_000));
    }
    if !s.sampling.keep_match.is_empty() {
        keep.push(format!("matching {}", s.sampling.keep_match.join(", ")));
    }
    if !keep.is_empty() {
        t.push_str(&format!("; keeps {}", keep.join(", ")));
    }
    Ok(t)
}

/// The kernel filters (`live`: a replay has no kernel side) and output
/// filters in force, and the probes turned off, in words.
pub fn filters_text(s: &Settings, live: bool) -> Result<String> {
    fn list<T: std::fmt::Display>(v: &[T]) -> String {
        v.iter().map(T::to_string).collect::<Vec<_>>().join(",")
    }
    let c = &s.capture;
    let mut parts = Vec::new();
    // A replay has no kernel side: only the output filters apply.
    if live {
        let kernel: [(&str, String); 7] = [
            ("pids", list(&c.pids)),
            ("not pids", list(&c.exclude_pids)),
            ("comm", list(&c.comms)),
            (
                "exe",
                list(&c.exes.iter().map(|p| p.display()).collect::<Vec<_>>()),
            ),
            (
                "cgroup",
                list(&c.cgroups.iter().map(|p| p.display()).collect::<Vec<_>>()),
            ),
            ("ports", list(&c.ports)),
            ("not ports", list(&c.exclude_ports)),
        ];
        for (what, v) in kernel {
            if !v.is_empty() {
                parts.push(format!("{what} {v}"));
            }
        }
    }
    let f = &s.filter;
    if !f.ignore_routes.is_empty() {
        parts.push(format!("ignore routes {}", f.ignore_routes.join(",")));
    }
    if !f.only_services.is_empty() {
        parts.push(format!("only services {}", f.only_services.join(",")));
    }
    if let Some(ms) = f.min_duration_ms {
        parts.push(format!("min duration {ms} ms"));
    }
    let mut text = if parts.is_empty() {
        if live { "all processes" } else { "none" }.to_owned()
    } else {
        parts.join("; ")
    };
    let off: Vec<&str> = [
        (!c.tls, "tls"),
        (!c.python_contexts, "python contexts"),
        (!c.go_tasks, "go tasks"),
    ]
    .into_iter()
    .filter_map(|(o, n)| o.then_some(n))
    .collect();
    if !off.is_empty() {
        text.push_str(&format!("; off: {}", off.join(", ")));
    }
    Ok(text)
}

/// The graph's edges for the panel and the report, grouped by caller
/// (the snapshot sorts them by client, server, protocol).
pub fn edge_rows(g: &GraphSnapshot) -> Vec<EdgeRow> {
    g.edges
        .iter()
        .map(|e| EdgeRow {
            client: e.client.clone(),
            server: e.server.clone(),
            protocol: e.protocol.clone(),
            via: e.via.clone(),
            requests: e.requests,
            errors: e.errors,
            avg_ms: e.latency_ms.avg,
            p95_ms: e.latency_ms.p95,
        })
        .collect()
}

fn display(p: &Path) -> String {
    p.file_name()
        .map(|f| PathBuf::from(f).display().to_string())
        .unwrap_or_else(|| p.display().to_string())
}
