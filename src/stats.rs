//! One registry of every counter zt-trace keeps.
//!
//! Each metric is defined once here ([`defs`]) with its name, help text and
//! kind; the runtime reads every component's counters into a
//! [`StatsSnapshot`] of samples of those definitions. The exit summary
//! ([`StatsSnapshot::summary_lines`]), logs and the Prometheus endpoint all
//! print from a snapshot, so a counter cannot be shown in one place and
//! forgotten in another.
//!
//! Names follow Prometheus conventions (`zt_` prefix, `_total` for
//! counters, base units), so the same definitions serve the text exposition
//! format.

use ebpf_probes::{DropCounters, SourceStats};
use exporters::PipelineStats;
use std::borrow::Cow;
use std::fmt::Write as _;

/// Counter (only goes up) or gauge (a current value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

/// A metric's definition.
#[derive(Debug, PartialEq, Eq)]
pub struct MetricDef {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricKind,
    /// The label that tells samples of this metric apart, if any.
    pub label: Option<&'static str>,
}

/// One value of a metric (for one value of its label, if it has one).
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub def: &'static MetricDef,
    pub label: Option<Cow<'static, str>>,
    pub value: f64,
}

/// Every metric's current value, taken at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatsSnapshot {
    pub samples: Vec<Sample>,
    /// Pods whose traffic goes through a sidecar, found so far (which
    /// mesh, which sidecars, which applications): for `check`, the
    /// dashboard and the service graph. Counted in `zt_mesh_pods`.
    pub mesh: span_core::mesh::MeshReport,
}

/// The definitions, in the order they are shown.
pub mod defs {
    use super::MetricDef;
    use super::MetricKind::{Counter, Gauge};

    macro_rules! def {
        ($id:ident, $name:literal, $kind:expr, $label:expr, $help:literal) => {
            pub static $id: MetricDef = MetricDef {
                name: $name,
                help: $help,
                kind: $kind,
                label: $label,
            };
        };
    }

    // Capture (kernel and ring buffer).
    def!(
        EVENTS,
        "zt_events_total",
        Counter,
        None,
        "Records read from the kernel ring buffer (or a replayed log)."
    );
    def!(
        EVENT_BYTES,
        "zt_event_bytes_total",
        Counter,
        None,
        "Bytes of those records."
    );
    def!(
        EVENTS_UNDECODABLE,
        "zt_events_undecodable_total",
        Counter,
        None,
        "Records that could not be decoded (skipped)."
    );
    def!(KERNEL_DROPS, "zt_kernel_drops_total", Counter, Some("reason"), "Events the kernel side lost or shortened, by reason (ring buffer full, table full, iovec truncated, unreadable user memory, ...).");
    def!(
        PROCESSES_RESOLVED,
        "zt_processes_resolved_total",
        Counter,
        None,
        "Processes whose details (service name, runtime) were read from /proc."
    );
    def!(
        SERVICE_NAMES_LATE,
        "zt_service_names_late_total",
        Counter,
        None,
        "Processes whose service name was found only on a second look at their environment."
    );
    def!(
        OWN_CONNECTION_EVENTS,
        "zt_own_connection_events_total",
        Counter,
        None,
        "Events of connections whose other end is zt-trace itself (its exporters), left out."
    );
    // Assembly.
    def!(
        ASM_EVENTS,
        "zt_assembler_events_total",
        Counter,
        None,
        "Events fed to the span assembler."
    );
    def!(
        DATA_EVENTS,
        "zt_data_events_total",
        Counter,
        None,
        "Data events (socket or TLS reads and writes) assembled."
    );
    def!(
        DATA_BYTES,
        "zt_data_bytes_total",
        Counter,
        None,
        "Bytes those data events transferred."
    );
    def!(CONNECTIONS, "zt_connections_total", Counter, Some("outcome"), "Connections seen, by what became of them: parsed (a known protocol), ignored (none, or a database's own end), refused (table full).");
    def!(
        SPANS_STARTED,
        "zt_spans_started_total",
        Counter,
        None,
        "Spans started (a request was seen)."
    );
    def!(
        SPANS_EMITTED,
        "zt_spans_emitted_total",
        Counter,
        None,
        "Spans emitted in finished traces."
    );
    def!(
        SPANS_DROPPED,
        "zt_spans_dropped_total",
        Counter,
        Some("reason"),
        "Spans not started or lost, by reason."
    );
    def!(
        SPANS_TIMED_OUT,
        "zt_spans_timed_out_total",
        Counter,
        None,
        "Requests closed without a response after the request timeout."
    );
    def!(
        TRACES_EMITTED,
        "zt_traces_emitted_total",
        Counter,
        None,
        "Traces emitted by the assembler."
    );
    def!(
        LINKS,
        "zt_links_total",
        Counter,
        Some("reason"),
        "How spans were linked to a parent, or why not (zt.link.reason)."
    );
    def!(INFERRED_LINKS, "zt_inferred_links_total", Counter, None, "Emitted spans carrying weak evidence (the single request in flight in the process) as a zt.link=inferred span link, or promoted to a parent with --promote-inferred-links.");
    def!(
        TASKS_EVICTED,
        "zt_tasks_evicted_total",
        Counter,
        None,
        "Goroutine tasks forgotten because the task table was full (their calls stay unlinked)."
    );
    def!(
        PARSER_DESYNCS,
        "zt_parser_desyncs_total",
        Counter,
        None,
        "Times a protocol parser lost sync and resynchronised."
    );
    def!(
        UNMATCHED_RESPONSES,
        "zt_unmatched_responses_total",
        Counter,
        None,
        "Responses with no request to pair with."
    );
    def!(
        LATE_EVENTS,
        "zt_late_events_total",
        Counter,
        None,
        "Events that arrived after the reorder window had passed their time."
    );
    def!(
        REORDER_FORCED,
        "zt_reorder_forced_total",
        Counter,
        None,
        "Events released early because the reorder window was full."
    );
    def!(
        TLS_EVENTS,
        "zt_tls_events_total",
        Counter,
        None,
        "Plaintext data events from TLS library probes."
    );
    def!(
        MESH_PODS,
        "zt_mesh_pods",
        Gauge,
        Some("mesh"),
        "Pods (network namespaces) whose traffic was seen going through a sidecar, by mesh (istio, linkerd, envoy, nginx, haproxy, ...); StatsSnapshot::mesh lists them."
    );
    def!(
        PENDING_SPANS,
        "zt_pending_spans",
        Gauge,
        None,
        "Spans started and not yet emitted."
    );
    // Stages and sinks.
    def!(
        STAGE_TRACES,
        "zt_stage_traces_total",
        Counter,
        Some("stage_outcome"),
        "Traces each processing stage passed on or dropped (`<stage>:passed`, `<stage>:dropped`)."
    );
    def!(
        TRACES_OUT,
        "zt_traces_out_total",
        Counter,
        None,
        "Traces delivered to the sinks (after every stage)."
    );
    def!(
        SINK_DROPS,
        "zt_sink_drops_total",
        Counter,
        Some("sink"),
        "Traces a sink could not take (a full channel)."
    );
    def!(
        INSIGHTS_OVERFLOW,
        "zt_insights_overflow_total",
        Counter,
        Some("table"),
        "Keys the insights stage could not add because a table was full (the finding is incomplete, never wrong)."
    );
    // The service graph stage.
    def!(
        GRAPH_SPANS,
        "zt_graph_spans_total",
        Counter,
        Some("outcome"),
        "Spans the graph stage saw, by what it made of them: server (a request), client (a request to a database, cache or external peer), client_paired (its server span counted it), client_served_here (to an address a traced service serves, not linked: the server span counted it), unknown (no protocol or peer), overflow (past the node or edge cap), proxy_passed (a proxy's server span whose forwards were counted as edges through the proxy)."
    );
    def!(
        GRAPH_OVERFLOW,
        "zt_graph_overflow_total",
        Counter,
        Some("table"),
        "Inserts the graph stage refused because a table was full: nodes, edges, served_addresses, red_series (observations sent to the overflow series)."
    );
    def!(
        GRAPH_NODES,
        "zt_graph_nodes",
        Gauge,
        None,
        "Nodes in the service graph (services, databases, caches, external peers)."
    );
    def!(
        GRAPH_EDGES,
        "zt_graph_edges",
        Gauge,
        None,
        "Edges (client, server, protocol) in the service graph."
    );
    def!(
        RED_SERIES,
        "zt_red_series",
        Gauge,
        None,
        "Label sets of the per-service request duration metrics."
    );
    // Output filter and sampling.
    def!(FILTERED, "zt_filtered_traces_total", Counter, Some("reason"), "Traces the output filter dropped, by the rule that dropped them: ignore_route, only_service, min_duration.");
    def!(SAMPLING_DECISIONS, "zt_sampling_decisions_total", Counter, Some("decision"), "Sampling decisions on traces (parts of traces), by outcome: kept:head (trace id ratio), kept:parent (inbound traceparent sampled), kept:error, kept:slow, kept:match (tail rules), kept:earlier (an earlier part of the trace was kept), dropped:ratio, dropped:parent, dropped:earlier.");
    def!(
        SAMPLING_HELD,
        "zt_sampling_held_traces",
        Gauge,
        None,
        "Dropped traces held for a late part that a tail rule would keep."
    );
    def!(
        SAMPLING_EVICTED,
        "zt_sampling_evicted_total",
        Counter,
        None,
        "Held traces dropped before their wait was over because the held table was full."
    );
    // Export.
    def!(EXPORT_SPANS, "zt_export_spans_total", Counter, Some("outcome"), "Spans offered to the exporters, by outcome: exported, dropped_queue_full, dropped_after_retries, dropped_rejected, dropped_at_shutdown (a span sent to two exporters counts twice).");
    def!(
        EXPORT_QUEUED,
        "zt_export_queued_spans",
        Gauge,
        None,
        "Spans waiting in the export queues or being exported."
    );
    def!(
        EXPORT_BATCHES,
        "zt_export_batches_total",
        Counter,
        None,
        "Batches the exporters sent successfully."
    );
    def!(
        EXPORT_RETRIES,
        "zt_export_retries_total",
        Counter,
        None,
        "Re-sends of a batch after a retryable error."
    );
    def!(
        EXPORT_ERRORS,
        "zt_export_errors_total",
        Counter,
        None,
        "Export calls that failed (retryable or not)."
    );
    // Bounded tables (a soak shows they stay bounded).
    def!(
        TABLE_ENTRIES,
        "zt_table_entries",
        Gauge,
        Some("table"),
        "Entries in the span assembler's tables (reorder, connections, spans, processes, exited_processes, emitted_ids, timeouts); each is bounded."
    );
    def!(
        BPF_MAP_ENTRIES,
        "zt_bpf_map_entries",
        Gauge,
        Some("map"),
        "Entries in the probes' hash maps, counted every 30 s."
    );
    def!(
        BPF_MAP_CAPACITY,
        "zt_bpf_map_capacity",
        Gauge,
        Some("map"),
        "The most entries each of the probes' hash maps holds."
    );
    // Stopping.
    def!(
        SHUTDOWN_SECONDS,
        "zt_shutdown_seconds",
        Gauge,
        Some("phase"),
        "How long the stop took (total), and its parts: detach (the probes, on a thread of its own), flush (open spans and pending traces through the stages and sinks), export (the exporters' queues, bounded by the shutdown deadline)."
    );
    def!(
        SHUTDOWN_PENDING,
        "zt_shutdown_pending",
        Gauge,
        Some("what"),
        "What was still pending when the tracer was asked to stop: ring_events (records drained after the request), spans (not yet emitted), open_spans (of those, still waiting for a response: emitted as capture_ended), export_spans (in the export queues after the flush), export_dropped (of those, still unsent at the deadline)."
    );
    // The agent process.
    def!(
        UPTIME,
        "zt_uptime_seconds",
        Gauge,
        None,
        "Seconds since the tracer started."
    );
    def!(
        CPU,
        "zt_agent_cpu_seconds_total",
        Counter,
        None,
        "CPU time the agent process used (user + system)."
    );
    def!(
        RSS,
        "zt_agent_resident_memory_bytes",
        Gauge,
        None,
        "Resident memory of the agent process (VmRSS: the ring buffer's pages count twice, see zt_agent_memory_bytes)."
    );
    def!(
        MEMORY,
        "zt_agent_memory_bytes",
        Gauge,
        Some("part"),
        "What the agent's resident memory is made of: heap (anonymous memory: the heap and thread stacks), bpf_maps (BPF maps mapped into the agent: the ring buffer, whose data pages the kernel maps twice, so they count twice; refreshed every 30 s), files (the binary and its libraries)."
    );

    /// Every definition, in display order.
    pub static ALL: &[&MetricDef] = &[
        &EVENTS,
        &EVENT_BYTES,
        &EVENTS_UNDECODABLE,
        &KERNEL_DROPS,
        &PROCESSES_RESOLVED,
        &SERVICE_NAMES_LATE,
        &OWN_CONNECTION_EVENTS,
        &ASM_EVENTS,
        &DATA_EVENTS,
        &DATA_BYTES,
        &CONNECTIONS,
        &SPANS_STARTED,
        &SPANS_EMITTED,
        &SPANS_DROPPED,
        &SPANS_TIMED_OUT,
        &TRACES_EMITTED,
        &LINKS,
        &INFERRED_LINKS,
        &TASKS_EVICTED,
        &PARSER_DESYNCS,
        &UNMATCHED_RESPONSES,
        &LATE_EVENTS,
        &REORDER_FORCED,
        &TLS_EVENTS,
        &MESH_PODS,
        &PENDING_SPANS,
        &STAGE_TRACES,
        &TRACES_OUT,
        &SINK_DROPS,
        &INSIGHTS_OVERFLOW,
        &GRAPH_SPANS,
        &GRAPH_OVERFLOW,
        &GRAPH_NODES,
        &GRAPH_EDGES,
        &RED_SERIES,
        &FILTERED,
        &SAMPLING_DECISIONS,
        &SAMPLING_HELD,
        &SAMPLING_EVICTED,
        &EXPORT_SPANS,
        &EXPORT_QUEUED,
        &EXPORT_BATCHES,
        &EXPORT_RETRIES,
        &EXPORT_ERRORS,
        &TABLE_ENTRIES,
        &BPF_MAP_ENTRIES,
        &BPF_MAP_CAPACITY,
        &SHUTDOWN_SECONDS,
        &SHUTDOWN_PENDING,
        &UPTIME,
        &CPU,
        &RSS,
        &MEMORY,
    ];
}

/// Collects samples; components report into it.
#[derive(Debug, Default)]
pub struct StatsWriter {
    samples: Vec<Sample>,
    mesh: span_core::mesh::MeshReport,
}

impl StatsWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// A metric without a label.
    pub fn set(&mut self, def: &'static MetricDef, value: impl Into<f64>) {
        debug_assert!(def.label.is_none(), "{} takes a label", def.name);
        self.samples.push(Sample {
            def,
            label: None,
            value: value.into(),
        });
    }

    /// A metric for one value of its label.
    pub fn set_labelled(
        &mut self,
        def: &'static MetricDef,
        label: impl Into<Cow<'static, str>>,
        value: impl Into<f64>,
    ) {
        debug_assert!(def.label.is_some(), "{} takes no label", def.name);
        self.samples.push(Sample {
            def,
            label: Some(label.into()),
            value: value.into(),
        });
    }

    /// The snapshot, in definition order (stable within a metric).
    pub fn finish(mut self) -> StatsSnapshot {
        let order = |d: &MetricDef| {
            defs::ALL
                .iter()
                .position(|x| std::ptr::eq(*x, d))
                .unwrap_or(usize::MAX)
        };
        self.samples.sort_by_key(|s| order(s.def));
        StatsSnapshot {
            samples: self.samples,
            mesh: self.mesh,
        }
    }
}

impl StatsSnapshot {
    /// The value of `name` (for `label`, when given).
    pub fn get(&self, name: &str, label: Option<&str>) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.def.name == name && s.label.as_deref() == label)
            .map(|s| s.value)
    }

    /// The sum of `name` over all its labels (0 when absent).
    pub fn total(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.def.name == name)
            .map(|s| s.value)
            .sum()
    }

    /// `(label, value)` of every sample of `name`.
    pub fn by_label(&self, name: &str) -> Vec<(&str, f64)> {
        self.samples
            .iter()
            .filter(|s| s.def.name == name)
            .map(|s| (s.label.as_deref().unwrap_or(""), s.value))
            .collect()
    }

    /// The human summary zt-trace prints on exit, one line per area.
    pub fn summary_lines(&self) -> Vec<String> {
        let v = |name: &str| self.total(name) as u64;
        let labelled = |name: &str| {
            let parts: Vec<String> = self
                .by_label(name)
                .into_iter()
                .map(|(l, n)| format!("{l}={}", n as u64))
                .collect();
            parts.join(", ")
        };
        let mut out = Vec::new();
        let secs = self.get(defs::UPTIME.name, None).unwrap_or(0.0).max(1e-9);
        let events = v(defs::EVENTS.name);
        out.push(format!(
            "{events} events in {secs:.1}s ({:.0} events/s, {:.1} MiB), {} undecodable; {} processes resolved ({} service names found on a second look); {} events of zt-trace's own connections left out",
            events as f64 / secs,
            v(defs::EVENT_BYTES.name) as f64 / (1 << 20) as f64,
            v(defs::EVENTS_UNDECODABLE.name),
            v(defs::PROCESSES_RESOLVED.name),
            v(defs::SERVICE_NAMES_LATE.name),
            v(defs::OWN_CONNECTION_EVENTS.name),
        ));
        if self
            .get(defs::KERNEL_DROPS.name, Some("ringbuf_full_data"))
            .is_some()
        {
            let lost: u64 = self
                .by_label(defs::KERNEL_DROPS.name)
                .into_iter()
                .filter(|(r, _)| r.starts_with("ringbuf") || r.ends_with("table_full"))
                .map(|(_, n)| n as u64)
                .sum();
            out.push(format!(
                "kernel drops: {lost} events lost ({})",
                labelled(defs::KERNEL_DROPS.name)
            ));
        }
        let mut links = String::new();
        for (reason, n) in self.by_label(defs::LINKS.name) {
            if n > 0.0 {
                let _ = write!(
                    links,
                    "{}{reason} {}",
                    if links.is_empty() { "" } else { ", " },
                    n as u64
                );
            }
        }
        out.push(format!(
            "spans {} started, {} emitted in {} traces ({} pending); links: {}",
            v(defs::SPANS_STARTED.name),
            v(defs::SPANS_EMITTED.name),
            v(defs::TRACES_EMITTED.name),
            v(defs::PENDING_SPANS.name),
            if links.is_empty() { "none" } else { &links },
        ));
        out.push(format!(
            "connections: {}; parser desyncs {}, unmatched responses {}, timed-out requests {}, spans dropped ({}), late events {}",
            labelled(defs::CONNECTIONS.name),
            v(defs::PARSER_DESYNCS.name),
            v(defs::UNMATCHED_RESPONSES.name),
            v(defs::SPANS_TIMED_OUT.name),
            labelled(defs::SPANS_DROPPED.name),
            v(defs::LATE_EVENTS.name),
        ));
        if !self.mesh.pods.is_empty() {
            out.push(format!(
                "mesh: {} pods behind sidecars: {}",
                self.mesh.pods.len(),
                self.mesh.lines().join("; ")
            ));
        }
        let stages = labelled(defs::STAGE_TRACES.name);
        let sink_drops = v(defs::SINK_DROPS.name);
        if !stages.is_empty() || sink_drops > 0 {
            out.push(format!(
                "stages: {}; {} traces out; {sink_drops} dropped by full sinks",
                if stages.is_empty() { "none" } else { &stages },
                v(defs::TRACES_OUT.name),
            ));
        }
        if self.get(defs::GRAPH_NODES.name, None).is_some() {
            out.push(format!(
                "graph: {} nodes, {} edges; spans: {}; overflow: {}",
                v(defs::GRAPH_NODES.name),
                v(defs::GRAPH_EDGES.name),
                labelled(defs::GRAPH_SPANS.name),
                labelled(defs::GRAPH_OVERFLOW.name),
            ));
        }
        if self
            .get(defs::FILTERED.name, Some("ignore_route"))
            .is_some()
        {
            out.push(format!(
                "output filter dropped {} traces ({})",
                v(defs::FILTERED.name),
                labelled(defs::FILTERED.name)
            ));
        }
        if self.get(defs::SAMPLING_HELD.name, None).is_some() {
            let (mut kept, mut dropped) = (Vec::new(), Vec::new());
            let (mut nk, mut nd) = (0, 0);
            for (label, n) in self.by_label(defs::SAMPLING_DECISIONS.name) {
                let n = n as u64;
                if let Some(r) = label.strip_prefix("kept:") {
                    nk += n;
                    if n > 0 {
                        kept.push(format!("{r} {n}"));
                    }
                } else if let Some(r) = label.strip_prefix("dropped:") {
                    nd += n;
                    if n > 0 {
                        dropped.push(format!("{r} {n}"));
                    }
                }
            }
            let list = |v: Vec<String>| {
                if v.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", v.join(", "))
                }
            };
            out.push(format!(
                "sampling: kept {nk} traces{}, dropped {nd}{}; {} held, {} evicted",
                list(kept),
                list(dropped),
                v(defs::SAMPLING_HELD.name),
                v(defs::SAMPLING_EVICTED.name),
            ));
        }
        if self.get(defs::EXPORT_BATCHES.name, None).is_some() {
            let e = |o: &str| {
                self.get(defs::EXPORT_SPANS.name, Some(o))
                    .map_or(0, |n| n as u64)
            };
            out.push(format!(
                "exported {} spans in {} batches; dropped: {} queue full, {} after retries, {} rejected, {} at shutdown; {} retries, {} export errors",
                e("exported"),
                v(defs::EXPORT_BATCHES.name),
                e("dropped_queue_full"),
                e("dropped_after_retries"),
                e("dropped_rejected"),
                e("dropped_at_shutdown"),
                v(defs::EXPORT_RETRIES.name),
                v(defs::EXPORT_ERRORS.name),
            ));
        }
        let tables = labelled(defs::TABLE_ENTRIES.name);
        if !tables.is_empty() {
            let maps: Vec<String> = self
                .by_label(defs::BPF_MAP_ENTRIES.name)
                .into_iter()
                .map(|(m, n)| {
                    let cap = self
                        .get(defs::BPF_MAP_CAPACITY.name, Some(m))
                        .unwrap_or(0.0);
                    format!("{m}={}/{}", n as u64, cap as u64)
                })
                .collect();
            out.push(format!(
                "tables: {tables}; kernel maps: {}",
                if maps.is_empty() {
                    "not counted".to_owned()
                } else {
                    maps.join(", ")
                }
            ));
        }
        if let Some(total) = self.get(defs::SHUTDOWN_SECONDS.name, Some("total")) {
            let phase = |p: &str| {
                self.get(defs::SHUTDOWN_SECONDS.name, Some(p))
                    .map_or(0.0, |s| s * 1000.0)
            };
            let pending = |w: &str| {
                self.get(defs::SHUTDOWN_PENDING.name, Some(w))
                    .map_or(0, |n| n as u64)
            };
            out.push(format!(
                "stopped in {:.0} ms (detach {:.0} ms, alongside: flush {:.0} ms, export {:.0} ms); pending at the stop: {} ring records, {} spans ({} still waiting for a response, emitted as capture_ended), {} spans to export ({} still unsent at the deadline, dropped)",
                total * 1000.0,
                phase("detach"),
                phase("flush"),
                phase("export"),
                pending("ring_events"),
                pending("spans"),
                pending("open_spans"),
                pending("export_spans"),
                pending("export_dropped"),
            ));
        }
        if let Some(cpu) = self.get(defs::CPU.name, None) {
            let mib = |v: f64| v / (1 << 20) as f64;
            let rss = mib(self.get(defs::RSS.name, None).unwrap_or(0.0));
            let part = |p| self.get(defs::MEMORY.name, Some(p)).map(mib);
            let parts = match (part("heap"), part("bpf_maps"), part("files")) {
                (Some(heap), Some(ring), Some(files)) => format!(
                    ": heap {heap:.1} MiB, ring buffer {ring:.1} MiB (kernel memory, its pages mapped twice: ~{:.1} MiB), binary and libraries {files:.1} MiB",
                    ring / 2.0
                ),
                (Some(heap), None, _) => format!(", of which heap {heap:.1} MiB"),
                _ => String::new(),
            };
            out.push(format!(
                "agent: {cpu:.2}s CPU ({:.1}% of a core), {rss:.1} MiB resident while tracing{parts}",
                100.0 * cpu / secs,
            ));
        }
        out
    }
}

/// The live source's counters.
pub(crate) fn report_source(s: &SourceStats, w: &mut StatsWriter) {
    w.set(&defs::EVENTS, s.records as f64);
    w.set(&defs::EVENT_BYTES, s.record_bytes as f64);
    w.set(&defs::EVENTS_UNDECODABLE, s.decode_errors as f64);
    w.set(&defs::PROCESSES_RESOLVED, s.processes_resolved as f64);
    w.set(&defs::SERVICE_NAMES_LATE, s.env_rechecks_changed as f64);
    w.set(&defs::OWN_CONNECTION_EVENTS, s.agent_peer_events as f64);
}

/// The kernel's drop counters.
pub(crate) fn report_kernel(d: &DropCounters, w: &mut StatsWriter) {
    for (reason, n) in &d.by_reason {
        w.set_labelled(&defs::KERNEL_DROPS, *reason, *n as f64);
    }
}

/// The pods found behind sidecars: a gauge per mesh and the list itself.
pub(crate) fn report_mesh(m: span_core::mesh::MeshReport, w: &mut StatsWriter) {
    let mut per_mesh: Vec<(String, u32)> = Vec::new();
    for p in &m.pods {
        match per_mesh.iter_mut().find(|(k, _)| *k == p.mesh) {
            Some((_, n)) => *n += 1,
            None => per_mesh.push((p.mesh.clone(), 1)),
        }
    }
    for (mesh, n) in per_mesh {
        w.set_labelled(&defs::MESH_PODS, mesh, n);
    }
    w.mesh = m;
}

/// The assembler's counters.
pub(crate) fn report_assembler(s: &span_core::Stats, pending: usize, w: &mut StatsWriter) {
    w.set(&defs::ASM_EVENTS, s.events as f64);
    w.set(&defs::DATA_EVENTS, s.data_events as f64);
    w.set(&defs::DATA_BYTES, s.data_bytes as f64);
    w.set_labelled(&defs::CONNECTIONS, "parsed", s.conns_parsed as f64);
    w.set_labelled(&defs::CONNECTIONS, "ignored", s.conns_ignored as f64);
    w.set_labelled(
        &defs::CONNECTIONS,
        "refused",
        s.conns_refused_capacity as f64,
    );
    w.set(&defs::SPANS_STARTED, s.spans_started as f64);
    w.set(&defs::SPANS_EMITTED, s.spans_emitted as f64);
    w.set_labelled(
        &defs::SPANS_DROPPED,
        "table_full",
        s.spans_dropped_capacity as f64,
    );
    w.set_labelled(
        &defs::SPANS_DROPPED,
        "tls_unbound",
        s.tls_unbound_dropped as f64,
    );
    w.set(&defs::SPANS_TIMED_OUT, s.spans_timed_out as f64);
    w.set(&defs::TRACES_EMITTED, s.traces_emitted as f64);
    for reason in span_core::LinkReason::ALL {
        w.set_labelled(&defs::LINKS, reason.as_str(), s.links(reason) as f64);
    }
    w.set(&defs::INFERRED_LINKS, s.links_inferred as f64);
    w.set(&defs::TASKS_EVICTED, s.tasks_evicted as f64);
    w.set(&defs::PARSER_DESYNCS, s.parser_desyncs as f64);
    w.set(&defs::UNMATCHED_RESPONSES, s.unmatched_responses as f64);
    w.set(&defs::LATE_EVENTS, s.late_events as f64);
    w.set(&defs::REORDER_FORCED, s.reorder_forced as f64);
    w.set(&defs::TLS_EVENTS, s.tls_events as f64);
    w.set(&defs::PENDING_SPANS, pending as f64);
}

/// The export pipeline's counters.
pub(crate) fn report_export(p: &PipelineStats, w: &mut StatsWriter) {
    for (outcome, n) in [
        ("exported", p.exported),
        ("dropped_queue_full", p.dropped_queue_full),
        ("dropped_after_retries", p.dropped_after_retries),
        ("dropped_rejected", p.dropped_rejected),
        ("dropped_at_shutdown", p.dropped_at_shutdown),
    ] {
        w.set_labelled(&defs::EXPORT_SPANS, outcome, n as f64);
    }
    w.set(&defs::EXPORT_QUEUED, (p.queued + p.in_flight) as f64);
    w.set(&defs::EXPORT_BATCHES, p.batches_exported as f64);
    w.set(&defs::EXPORT_RETRIES, p.retries as f64);
    w.set(&defs::EXPORT_ERRORS, p.export_errors as f64);
}

/// How full the assembler's tables are.
pub(crate) fn report_tables(t: &span_core::TableSizes, w: &mut StatsWriter) {
    for (table, n) in [
        ("reorder", t.reorder),
        ("connections", t.connections),
        ("spans", t.spans),
        ("processes", t.processes),
        ("exited_processes", t.exited_processes),
        ("emitted_ids", t.emitted_ids),
        ("timeouts", t.timeouts),
    ] {
        w.set_labelled(&defs::TABLE_ENTRIES, table, n as f64);
    }
}

/// How full the probes' hash maps are.
pub(crate) fn report_maps(fill: &[ebpf_probes::MapFill], w: &mut StatsWriter) {
    for m in fill {
        w.set_labelled(&defs::BPF_MAP_ENTRIES, m.name.clone(), m.entries as f64);
        w.set_labelled(&defs::BPF_MAP_CAPACITY, m.name.clone(), m.capacity as f64);
    }
}

/// Resident bytes of the BPF maps mapped into this process (the ring
/// buffer), from /proc/self/smaps: `anon_inode:bpf-map` mappings. Walks
/// every mapping's pages, so callers read it seldom (the live loop every
/// 30 s, and at the stop).
pub(crate) fn bpf_mapped_bytes() -> Option<u64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    Some(bpf_mapped_in(&smaps))
}

fn bpf_mapped_in(smaps: &str) -> u64 {
    let mut in_bpf = false;
    let mut kib = 0;
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let Some(first) = f.next() else { continue };
        if first.ends_with(':') {
            if in_bpf && first == "Rss:" {
                kib += f.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            }
        } else {
            // A mapping's header: range, perms, offset, device, inode, path.
            in_bpf = f.nth(4) == Some("anon_inode:bpf-map");
        }
    }
    kib * 1024
}

/// The agent's resident memory at one moment: VmRSS and its parts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Memory {
    /// RssAnon, RssFile, RssShmem (bytes), from /proc/self/status; VmRSS
    /// is their sum.
    parts: Option<[u64; 3]>,
    /// From [`bpf_mapped_bytes`], when read.
    bpf_mapped: Option<u64>,
}

impl Memory {
    pub(crate) fn read(bpf_mapped: Option<u64>) -> Memory {
        let parts = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| rss_parts(&s));
        Memory { parts, bpf_mapped }
    }

    pub(crate) fn report(&self, w: &mut StatsWriter) {
        let Some([anon, file, shmem]) = self.parts else {
            return;
        };
        w.set(&defs::RSS, (anon + file + shmem) as f64);
        w.set_labelled(&defs::MEMORY, "heap", anon as f64);
        if let Some(bpf) = self.bpf_mapped {
            w.set_labelled(&defs::MEMORY, "bpf_maps", bpf as f64);
            // The ring's pages are file-backed or shared memory depending
            // on the kernel: whichever, they are not counted again here.
            let files = (file + shmem).saturating_sub(bpf);
            w.set_labelled(&defs::MEMORY, "files", files as f64);
        }
    }
}

/// RssAnon, RssFile and RssShmem (bytes) from the text of
/// /proc/self/status.
fn rss_parts(status: &str) -> Option<[u64; 3]> {
    let field = |name: &str| {
        status.lines().find_map(|l| {
            let v = l.strip_prefix(name)?.trim().strip_suffix("kB")?;
            v.trim().parse::<u64>().ok().map(|k| k * 1024)
        })
    };
    Some([field("RssAnon:")?, field("RssFile:")?, field("RssShmem:")?])
}

/// CPU time of this process, from /proc/self/stat.
pub(crate) fn report_cpu(w: &mut StatsWriter) {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command (which may hold spaces) start past ')'.
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            // utime and stime are fields 14 and 15 of the line (1-based):
            // indices 11 and 12 counting from the state, the first after ')'.
            let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
            if let (Some(u), Some(s)) = (t(11), t(12)) {
                w.set(&defs::CPU, (u + s) / ticks);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The summary line starting with `prefix`.
    fn summary_line(snap: &StatsSnapshot, prefix: &str) -> String {
        snap.summary_lines()
            .into_iter()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no summary line starts with {prefix:?}"))
    }

    /// The ring buffer's resident pages are summed from the
    /// `anon_inode:bpf-map` mappings only, whatever their position among
    /// the others.
    #[test]
    fn bpf_mapped_bytes_sum_the_bpf_map_mappings() {
        let smaps = "\
55d0c0000000-55d0c4000000 r-xp 00000000 fd:01 1234   /usr/bin/zt-trace
Size:              65536 kB
Rss:                6400 kB
Pss:                6400 kB
7f0000000000-7f0000001000 rw-s 00000000 00:0f 99   anon_inode:bpf-map
Size:                  4 kB
Rss:                   4 kB
7f0000001000-7f0002002000 r--s 00001000 00:0f 99   anon_inode:bpf-map
Size:              32772 kB
Rss:               32772 kB
7f0003000000-7f0003100000 rw-p 00000000 00:00 0
Size:               1024 kB
Rss:                 512 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0   [stack]
Rss:                  16 kB
";
        assert_eq!(bpf_mapped_in(smaps), (4 + 32772) * 1024);
        assert_eq!(bpf_mapped_in(""), 0);
    }

    #[test]
    fn resident_parts_from_proc_status() {
        let status = "Name:\tzt-trace\nVmRSS:\t   59000 kB\nRssAnon:\t   20000 kB\nRssFile:\t   38000 kB\nRssShmem:\t    1000 kB\n";
        assert_eq!(
            rss_parts(status),
            Some([20000 * 1024, 38000 * 1024, 1000 * 1024])
        );
        assert_eq!(rss_parts("RssAnon:\t1 kB\n"), None);
        let m = Memory {
            parts: rss_parts(status),
            bpf_mapped: Some(32776 * 1024),
        };
        let mut w = StatsWriter::new();
        m.report(&mut w);
        w.set(&defs::CPU, 2.0);
        w.set(&defs::UPTIME, 100.0);
        let snap = w.finish();
        assert_eq!(snap.get(defs::RSS.name, None), Some(59000.0 * 1024.0));
        assert_eq!(
            snap.get(defs::MEMORY.name, Some("files")),
            Some((38000.0 + 1000.0 - 32776.0) * 1024.0)
        );
        assert_eq!(
            summary_line(&snap, "agent:"),
            "agent: 2.00s CPU (2.0% of a core), 57.6 MiB resident while tracing: heap 19.5 MiB, ring buffer 32.0 MiB (kernel memory, its pages mapped twice: ~16.0 MiB), binary and libraries 6.1 MiB"
        );
    }

    #[test]
    fn every_definition_is_listed_once_and_well_named() {
        let mut names: Vec<&str> = defs::ALL.iter().map(|d| d.name).collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n, "a metric is defined twice");
        for d in defs::ALL {
            assert!(d.name.starts_with("zt_"), "{}", d.name);
            assert!(
                d.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                d.name
            );
            assert_eq!(
                d.kind == MetricKind::Counter,
                d.name.ends_with("_total"),
                "counters and only counters end in _total: {}",
                d.name
            );
            assert!(!d.help.is_empty());
        }
    }

    #[test]
    fn the_mesh_is_counted_listed_and_summarised() {
        use span_core::mesh::{MeshMember, MeshPod, MeshReport};
        let member = |service: &str, pid, proxy| MeshMember {
            service: service.into(),
            pid,
            proxy,
        };
        let pod = |ns, mesh: &str, app: &str| MeshPod {
            net_ns: ns,
            pod_uid: None,
            mesh: mesh.into(),
            sidecars: vec![member(mesh, 1, Some(span_core::proxy::ProxyKind::Nginx))],
            apps: vec![member(app, 2, None)],
            inbound: 3,
            outbound: 4,
        };
        let mut w = StatsWriter::new();
        report_mesh(
            MeshReport {
                pods: vec![
                    pod(7, "nginx", "a"),
                    pod(8, "nginx", "b"),
                    pod(9, "envoy", "c"),
                ],
                dropped: 0,
            },
            &mut w,
        );
        let snap = w.finish();
        assert_eq!(snap.get("zt_mesh_pods", Some("nginx")), Some(2.0));
        assert_eq!(snap.get("zt_mesh_pods", Some("envoy")), Some(1.0));
        assert_eq!(snap.mesh.pods.len(), 3);
        let line = summary_line(&snap, "mesh: ");
        assert!(
            line.starts_with("mesh: 3 pods behind sidecars: netns:7: nginx sidecar nginx for a (3 requests in, 4 out)"),
            "{line}"
        );
    }

    #[test]
    fn summary_from_a_snapshot() {
        let mut w = StatsWriter::new();
        report_source(
            &SourceStats {
                records: 100,
                record_bytes: 2 << 20,
                ..Default::default()
            },
            &mut w,
        );
        report_kernel(
            &DropCounters {
                by_reason: vec![("ringbuf_full_data", 3), ("iovec_truncated", 5)],
            },
            &mut w,
        );
        report_assembler(
            &{
                let mut s = span_core::Stats {
                    spans_started: 4,
                    spans_emitted: 4,
                    traces_emitted: 2,
                    ..Default::default()
                };
                s.links_by_reason[span_core::LinkReason::TcpSeq as usize] = 2;
                s
            },
            0,
            &mut w,
        );
        report_export(
            &PipelineStats {
                exported: 4,
                batches_exported: 1,
                ..Default::default()
            },
            &mut w,
        );
        w.set(&defs::UPTIME, 2.0);
        let snap = w.finish();
        assert_eq!(snap.get("zt_events_total", None), Some(100.0));
        assert_eq!(
            snap.get("zt_kernel_drops_total", Some("iovec_truncated")),
            Some(5.0)
        );
        assert_eq!(snap.total("zt_kernel_drops_total"), 8.0);
        let lines = snap.summary_lines();
        assert!(
            lines[0].starts_with("100 events in 2.0s (50 events/s, 2.0 MiB)"),
            "{lines:?}"
        );
        assert_eq!(
            lines[1],
            "kernel drops: 3 events lost (ringbuf_full_data=3, iovec_truncated=5)"
        );
        assert_eq!(
            lines[2],
            "spans 4 started, 4 emitted in 2 traces (0 pending); links: tcp_seq 2"
        );
        assert!(lines.iter().any(|l| l
            == "exported 4 spans in 1 batches; dropped: 0 queue full, 0 after retries, 0 rejected, 0 at shutdown; 0 retries, 0 export errors"));
        // Samples come out in definition order.
        let pos = |n: &str| snap.samples.iter().position(|s| s.def.name == n).unwrap();
        assert!(pos("zt_events_total") < pos("zt_kernel_drops_total"));
        assert!(pos("zt_kernel_drops_total") < pos("zt_spans_started_total"));
    }
}
