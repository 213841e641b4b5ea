//! The effective configuration: defaults, then a TOML file (`--config`),
//! then `ZT_<SECTION>_<KEY>` environment variables, then command-line
//! options, each overriding the one before. Defaults have one source of
//! truth, the constants in [`defaults`], used by both the command line
//! (clap) and the file (serde). An unknown key, in the file or in a `ZT_`
//! variable of a known section, is an error, not a silent no-op; every
//! value is validated at startup ([`Settings::validate`]).

use crate::output::OutputFormat;
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use zt_trace::stages::{
    parse_service_ratio, Glob, KeepMatch, OutputFilterConfig, RatioAlgorithm, SamplingConfig,
};

/// Default values, shared by the command line and the configuration file.
pub mod defaults {
    pub const CAPTURE_BYTES: u32 = 4096;
    pub const RING_BUFFER_MIB: u32 = 16;
    pub const BATCH_DELAY_MS: u64 = 200;
    pub const TRACE_LINGER_MS: u64 = 200;
    pub const REQUEST_TIMEOUT_S: u64 = 30;
    pub const EXPORT_QUEUE: usize = 8192;
    pub const N_PLUS_ONE_MIN_CALLS: u32 = 5;
    pub const REPEAT_MIN_CALLS: u32 = 2;
    pub const EVERY_REQUEST_PERCENT: f64 = 90.0;
    pub const MIN_REQUESTS: u64 = 20;
    pub const SLOW_STATEMENT_MS: u64 = 100;
    pub const ERROR_RATE_PERCENT: f64 = 5.0;
    pub const SLOW_MS: u64 = 100;
    pub const INTERVAL_S: f64 = 5.0;
    pub const RECENT_TRACES: usize = 2000;
    pub const GRAPH_MAX_NODES: usize = 1000;
    pub const GRAPH_MAX_EDGES: usize = 5000;
    pub const GRAPH_WINDOW_MINUTES: u32 = 5;
    pub const METRICS_MAX_SERIES: usize = 2000;
    pub const METRICS_EXPORT_INTERVAL_S: u64 = 15;
    pub const EXPORT_SHUTDOWN_TIMEOUT_MS: u64 = 700;
    pub const SAMPLE_RATIO: f64 = 1.0;
    pub const SAMPLE_ALGORITHM: &str = "traceidratio";
    pub const DECISION_WAIT_MS: u64 = 0;
    pub const MAX_HELD_TRACES: usize = 4096;
}

/// Largest node, edge and series caps accepted.
const MAX_TABLE: usize = 1_000_000;

/// Largest payload prefix the probes capture per call.
const MAX_CAPTURE_BYTES: u32 = 8192;
/// Largest ring buffer accepted (MiB).
const MAX_RING_BUFFER_MIB: u32 = 1024;
/// Longest batch wait accepted (ms): the tracer's statistics are refreshed
/// at least once a second.
const MAX_BATCH_DELAY_MS: u64 = 1000;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub capture: Capture,
    pub assemble: Assemble,
    pub export: Export,
    pub graph: Graph,
    pub metrics: Metrics,
    pub sampling: Sampling,
    pub filter: Filter,
    pub output: Output,
    pub insights: Insights,
    pub dashboard: Dashboard,
}

/// Thresholds of the performance insights (dashboard, plain report).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Insights {
    /// Sequential identical statements in one request that make an N+1.
    pub n_plus_one_min_calls: u32,
    /// ... taking at least this long in total (0: no floor).
    pub n_plus_one_min_total_ms: u64,
    /// Identical reads (URL, Redis key) in one request: a cache candidate.
    pub repeat_min_calls: u32,
    /// A dependency called on at least this share of a service's requests.
    pub every_request_percent: f64,
    /// Requests (or calls) before a rate is judged.
    pub min_requests: u64,
    /// A statement whose p95 is above this is slow.
    pub slow_statement_ms: u64,
    /// An endpoint or edge failing more than this is a hot spot.
    pub error_rate_percent: f64,
}

/// The live dashboard and its plain report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dashboard {
    /// Traces longer than this are listed as slow (ms).
    pub slow_ms: u64,
    /// Seconds between plain reports.
    pub interval_s: f64,
    /// Recent traces kept for the trace table.
    pub recent_traces: usize,
}

impl Default for Insights {
    fn default() -> Self {
        Insights {
            n_plus_one_min_calls: defaults::N_PLUS_ONE_MIN_CALLS,
            n_plus_one_min_total_ms: 0,
            repeat_min_calls: defaults::REPEAT_MIN_CALLS,
            every_request_percent: defaults::EVERY_REQUEST_PERCENT,
            min_requests: defaults::MIN_REQUESTS,
            slow_statement_ms: defaults::SLOW_STATEMENT_MS,
            error_rate_percent: defaults::ERROR_RATE_PERCENT,
        }
    }
}

impl Default for Dashboard {
    fn default() -> Self {
        Dashboard {
            slow_ms: defaults::SLOW_MS,
            interval_s: defaults::INTERVAL_S,
            recent_traces: defaults::RECENT_TRACES,
        }
    }
}

impl Settings {
    /// The insights stage's configuration.
    pub fn insights_config(&self) -> zt_trace::InsightsConfig {
        let i = &self.insights;
        zt_trace::InsightsConfig {
            n_plus_one_min_calls: i.n_plus_one_min_calls,
            n_plus_one_min_total_ns: i.n_plus_one_min_total_ms.saturating_mul(1_000_000),
            repeat_min_calls: i.repeat_min_calls,
            every_request_ratio: i.every_request_percent / 100.0,
            min_requests: i.min_requests,
            slow_statement_ns: i.slow_statement_ms.saturating_mul(1_000_000),
            error_rate: i.error_rate_percent / 100.0,
            slow_trace_ns: self.dashboard.slow_ms.saturating_mul(1_000_000),
            ..zt_trace::InsightsConfig::default()
        }
    }
}

/// The service graph (`zt-trace graph`, `--graph`, metrics).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Graph {
    /// Nodes kept; requests that need more are counted and left out.
    pub max_nodes: usize,
    /// Edges (client, server, protocol) kept.
    pub max_edges: usize,
    /// Minutes the windowed graph covers.
    pub window_minutes: u32,
    /// Label sets of the per-service duration metrics; more go to one
    /// overflow series per metric.
    pub max_red_series: usize,
    /// Draw `A -> proxy -> B` as one edge `A -> B` through the proxy
    /// (`--no-collapse-proxies` draws every hop; traces keep every hop
    /// either way).
    pub collapse_proxies: bool,
}

/// Metrics: Prometheus endpoint and OTLP metrics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    /// Serve Prometheus metrics at http://LISTEN/metrics (`PORT` binds
    /// 127.0.0.1, or `HOST:PORT`). Off when absent.
    pub listen: Option<String>,
    /// Also send the metrics as OTLP metrics to the OTLP exporters.
    pub export: bool,
    /// Seconds between two OTLP metric exports.
    pub export_interval_s: u64,
}

impl Default for Graph {
    fn default() -> Self {
        Graph {
            max_nodes: defaults::GRAPH_MAX_NODES,
            max_edges: defaults::GRAPH_MAX_EDGES,
            window_minutes: defaults::GRAPH_WINDOW_MINUTES,
            max_red_series: defaults::METRICS_MAX_SERIES,
            collapse_proxies: true,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            listen: None,
            export: false,
            export_interval_s: defaults::METRICS_EXPORT_INTERVAL_S,
        }
    }
}

impl Graph {
    /// The graph stage's configuration.
    pub fn config(&self) -> zt_trace::GraphConfig {
        zt_trace::GraphConfig {
            max_nodes: self.max_nodes,
            max_edges: self.max_edges,
            window_minutes: self.window_minutes,
            max_red_series: self.max_red_series,
            collapse_proxies: self.collapse_proxies,
            ..zt_trace::GraphConfig::default()
        }
    }
}

/// What the probes capture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Capture {
    /// Payload bytes captured per syscall (1-8192).
    pub capture_bytes: u32,
    /// Kernel ring buffer size in MiB (a power of two).
    pub ring_buffer_mib: u32,
    /// Longest wait for records to gather in the ring before reading them
    /// (ms, 0-1000; 0: read at every wake-up).
    pub batch_delay_ms: u64,
    /// OpenSSL uprobes (HTTPS plaintext).
    pub tls: bool,
    /// CPython context probes (thread pools, asyncio).
    pub python_contexts: bool,
    /// Goroutine probes on Go executables (links Go services' calls).
    pub go_tasks: bool,
    /// In-kernel filters (checked by the eBPF programs before any other
    /// work). Trace only these processes (empty: all but zt-trace).
    pub pids: Vec<u32>,
    /// Never trace these processes.
    pub exclude_pids: Vec<u32>,
    /// Trace only processes with one of these names (comm, matched at exec).
    pub comms: Vec<String>,
    /// Trace only processes running one of these executables.
    pub exes: Vec<PathBuf>,
    /// Trace only processes in these cgroup v2 subtrees (absolute, or
    /// relative to the cgroup v2 mount).
    pub cgroups: Vec<PathBuf>,
    /// Trace only connections with one of these ports at either end.
    pub ports: Vec<u16>,
    /// Never trace connections with one of these ports at either end.
    pub exclude_ports: Vec<u16>,
}

impl Capture {
    /// The in-kernel filter these settings ask for.
    pub fn kernel_filter(&self) -> zt_trace::ebpf_probes::Filter {
        let mut f = zt_trace::ebpf_probes::Filter::new();
        f.include.pids = self.pids.clone();
        f.exclude.pids = self.exclude_pids.clone();
        f.include.comms = self.comms.clone();
        f.include.exes = self.exes.clone();
        f.include.cgroups = self.cgroups.clone();
        f.include.ports = self.ports.clone();
        f.exclude.ports = self.exclude_ports.clone();
        f
    }
}

/// How spans are assembled and linked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Assemble {
    pub raw_sql: bool,
    pub promote_inferred_links: bool,
    pub trace_linger_ms: u64,
    pub request_timeout_s: u64,
    /// Service naming rules, `KEY=VALUE[,KEY=VALUE...]:NAME` (keys: exe,
    /// comm, cmdline, port, cgroup, container, pod, unit), over every other
    /// source of service names; the first that matches wins.
    pub service_names: Vec<String>,
    /// Keep `process.command_line` in resources (it may hold secrets).
    pub keep_command_line: bool,
    /// Keep URL query values as sent (default: values of sensitive
    /// parameters become `REDACTED`). Userinfo is redacted regardless.
    pub keep_query: bool,
    /// Query parameters redacted besides the built-in list
    /// (case-insensitive).
    pub redact_query_params: Vec<String>,
}

/// Where spans are exported.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Export {
    /// `KIND[=TARGET]`, as for `--exporter`.
    pub exporters: Vec<String>,
    /// `KEY=VALUE` headers sent with every export request.
    pub headers: Vec<String>,
    /// OTLP protocol: grpc, http/protobuf or http/json.
    pub protocol: Option<String>,
    /// gzip or none.
    pub compression: Option<String>,
    /// Spans held for export before new ones are dropped (and counted).
    pub queue: usize,
    /// On exit, how long the exporters may take to send what they still
    /// hold once every pending trace is flushed to them (ms).
    pub shutdown_timeout_ms: u64,
}

/// Which traces are output and exported (aggregates and statistics see
/// every trace).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sampling {
    /// Head sampling ratio, decided from the trace id (0.0-1.0).
    pub ratio: f64,
    /// `NAME=RATIO`: the ratio of traces whose root is service NAME.
    pub service_ratios: Vec<String>,
    /// traceidratio (OpenTelemetry Go/Python SDK) or threshold (W3C Trace
    /// Context Level 2 / OpenTelemetry `th`).
    pub algorithm: String,
    /// Follow an inbound traceparent's sampled flag.
    pub parent_based: bool,
    /// Keep traces with an error span.
    pub keep_errors: bool,
    /// Keep traces whose root took longer than this.
    pub keep_slower_than_ms: Option<u64>,
    /// `KEY=GLOB`: keep traces with a span attribute matching.
    pub keep_match: Vec<String>,
    /// How long a dropped trace waits for a late part a rule keeps.
    pub decision_wait_ms: u64,
    /// Dropped traces held at most for that wait.
    pub max_held_traces: usize,
}

/// Traces dropped from the output.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Filter {
    /// Globs: traces whose root's route or path matches are not output.
    pub ignore_routes: Vec<String>,
    /// Output only traces in which one of these services takes part.
    pub only_services: Vec<String>,
    /// Output only traces whose root took at least this long.
    pub min_duration_ms: Option<u64>,
}

/// What is printed or written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Output {
    pub format: OutputFormat,
    /// Also write the raw event log here.
    pub record: Option<PathBuf>,
    /// Stop after this many seconds.
    pub duration_s: Option<f64>,
    /// Write the service graph (JSON) here when stopping.
    pub graph: Option<PathBuf>,
}

impl Default for Capture {
    fn default() -> Self {
        Capture {
            capture_bytes: defaults::CAPTURE_BYTES,
            ring_buffer_mib: defaults::RING_BUFFER_MIB,
            batch_delay_ms: defaults::BATCH_DELAY_MS,
            tls: true,
            python_contexts: true,
            go_tasks: true,
            pids: Vec::new(),
            exclude_pids: Vec::new(),
            comms: Vec::new(),
            exes: Vec::new(),
            cgroups: Vec::new(),
            ports: Vec::new(),
            exclude_ports: Vec::new(),
        }
    }
}

impl Default for Assemble {
    fn default() -> Self {
        Assemble {
            raw_sql: false,
            promote_inferred_links: false,
            trace_linger_ms: defaults::TRACE_LINGER_MS,
            request_timeout_s: defaults::REQUEST_TIMEOUT_S,
            service_names: Vec::new(),
            keep_command_line: false,
            keep_query: false,
            redact_query_params: Vec::new(),
        }
    }
}

impl Default for Export {
    fn default() -> Self {
        Export {
            exporters: Vec::new(),
            headers: Vec::new(),
            protocol: None,
            compression: None,
            queue: defaults::EXPORT_QUEUE,
            shutdown_timeout_ms: defaults::EXPORT_SHUTDOWN_TIMEOUT_MS,
        }
    }
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            ratio: defaults::SAMPLE_RATIO,
            service_ratios: Vec::new(),
            algorithm: defaults::SAMPLE_ALGORITHM.to_owned(),
            parent_based: true,
            keep_errors: false,
            keep_slower_than_ms: None,
            keep_match: Vec::new(),
            decision_wait_ms: defaults::DECISION_WAIT_MS,
            max_held_traces: defaults::MAX_HELD_TRACES,
        }
    }
}

impl Sampling {
    /// The sampler's configuration; `None` when sampling is off (no ratio
    /// below 1: every trace is output).
    pub fn config(&self) -> Result<Option<SamplingConfig>> {
        let mut service_ratios = Vec::new();
        for s in &self.service_ratios {
            service_ratios.push(parse_service_ratio(s)?);
        }
        let keep_match = self
            .keep_match
            .iter()
            .map(|m| m.parse::<KeepMatch>())
            .collect::<Result<Vec<_>, _>>()?;
        let cfg = SamplingConfig {
            ratio: self.ratio,
            service_ratios,
            algorithm: self.algorithm.parse().map_err(|e: String| anyhow!(e))?,
            parent_based: self.parent_based,
            keep_errors: self.keep_errors,
            keep_slower_than_ns: self.keep_slower_than_ms.map(|ms| ms * 1_000_000),
            keep_match,
            decision_wait_ns: self.decision_wait_ms * 1_000_000,
            max_held_traces: self.max_held_traces,
            ..SamplingConfig::default()
        };
        Ok(cfg.drops_any().then_some(cfg))
    }
}

impl Filter {
    /// The output filter's configuration (empty: none).
    pub fn output_config(&self) -> Result<OutputFilterConfig> {
        Ok(OutputFilterConfig {
            ignore_routes: self
                .ignore_routes
                .iter()
                .map(|g| Glob::new(g))
                .collect::<Result<_, _>>()?,
            only_services: self.only_services.clone(),
            min_duration_ns: self.min_duration_ms.map(|ms| ms * 1_000_000),
        })
    }
}

impl Default for Output {
    fn default() -> Self {
        Output {
            format: OutputFormat::Tree,
            record: None,
            duration_s: None,
            graph: None,
        }
    }
}

impl Settings {
    /// Defaults overridden by the file at `path` (if any), then by `ZT_*`
    /// variables from `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings> {
        let mut table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading the configuration file {}", p.display()))?;
                let parsed: Settings = toml::from_str(&text).map_err(|e| {
                    let line = e
                        .span()
                        .map(|r| text[..r.start.min(text.len())].matches('\n').count() + 1);
                    anyhow!(
                        "configuration file {}{}: {}",
                        p.display(),
                        line.map(|l| format!(", line {l}")).unwrap_or_default(),
                        e.message().trim_end()
                    )
                })?;
                toml::Table::try_from(parsed)?
            }
            None => toml::Table::try_from(Settings::default())?,
        };
        let mut vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("ZT_"))
            .collect();
        vars.sort();
        for (name, value) in vars {
            apply_env(&mut table, &name, &value)?;
        }
        table
            .try_into()
            .map_err(|e: toml::de::Error| anyhow!("{}", e.message().trim_end()))
    }

    /// Every value checked, with one message per problem.
    pub fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        let c = &self.capture;
        if c.capture_bytes == 0 || c.capture_bytes > MAX_CAPTURE_BYTES {
            problems.push(format!(
                "capture_bytes (--capture-bytes) is {}: it must be from 1 to {MAX_CAPTURE_BYTES}",
                c.capture_bytes
            ));
        }
        if !c.ring_buffer_mib.is_power_of_two() || c.ring_buffer_mib > MAX_RING_BUFFER_MIB {
            problems.push(format!(
                "ring_buffer_mib (--ring-buffer-mib) is {}: it must be a power of two from 1 to {MAX_RING_BUFFER_MIB}",
                c.ring_buffer_mib
            ));
        }
        if c.batch_delay_ms > MAX_BATCH_DELAY_MS {
            problems.push(format!(
                "batch_delay_ms (--batch-delay-ms) is {}: it must be from 0 to {MAX_BATCH_DELAY_MS}",
                c.batch_delay_ms
            ));
        }
        for (key, pids) in [
            ("pids (--pid)", &c.pids),
            ("exclude_pids (--exclude-pid)", &c.exclude_pids),
        ] {
            for pid in pids {
                if *pid == 0 {
                    problems.push(format!("{key}: 0 is not a process id"));
                } else if !Path::new(&format!("/proc/{pid}")).exists() {
                    problems.push(format!("{key}: no process has id {pid}"));
                }
            }
        }
        for (key, ports) in [
            ("ports (--port)", &c.ports),
            ("exclude_ports (--exclude-port)", &c.exclude_ports),
        ] {
            if ports.contains(&0) {
                problems.push(format!("{key}: 0 is not a port"));
            }
        }
        // Names, executables and cgroups as the kernel will see them (the
        // filter's own checks: lengths, counts, files that exist).
        if c.pids.iter().chain(&c.exclude_pids).all(|p| *p != 0)
            && !c.ports.contains(&0)
            && !c.exclude_ports.contains(&0)
        {
            if let Err(e) = c
                .kernel_filter()
                .resolve(zt_trace::ebpf_probes::cgroup2_mount().as_deref())
            {
                problems.push(format!(
                    "kernel filter (--comm, --exe, --cgroup, --pid, --port): {e}"
                ));
            }
        }
        let a = &self.assemble;
        if a.trace_linger_ms == 0 || a.trace_linger_ms > 600_000 {
            problems.push(format!(
                "trace_linger_ms (--trace-linger-ms) is {}: it must be from 1 to 600000",
                a.trace_linger_ms
            ));
        }
        if a.request_timeout_s == 0 || a.request_timeout_s > 86_400 {
            problems.push(format!(
                "request_timeout_s (--request-timeout-s) is {}: it must be from 1 to 86400",
                a.request_timeout_s
            ));
        }
        for rule in &a.service_names {
            if let Err(err) = span_core::naming::ServiceRule::parse(rule) {
                problems.push(format!("service_names (--service-name): {err}"));
            }
        }
        for name in &a.redact_query_params {
            if let Err(why) = check_query_param(name) {
                problems.push(format!(
                    "redact_query_params (--redact-query-param) {name:?}: {why}"
                ));
            }
        }
        if a.keep_query && !a.redact_query_params.is_empty() {
            problems.push(
                "keep_query (--keep-query) keeps every query value: redact_query_params (--redact-query-param) would redact none"
                    .to_owned(),
            );
        }
        let e = &self.export;
        if e.queue == 0 {
            problems.push("queue (--export-queue) is 0: it must be at least 1".to_owned());
        }
        if e.shutdown_timeout_ms == 0 || e.shutdown_timeout_ms > 60_000 {
            problems.push(format!(
                "shutdown_timeout_ms (--export-shutdown-timeout-ms) is {}: it must be from 1 to 60000",
                e.shutdown_timeout_ms
            ));
        }
        if let Some(p) = &e.protocol {
            if let Err(err) = p.parse::<exporters::OtlpProtocol>() {
                problems.push(format!("protocol (--protocol): {err}"));
            }
        }
        if let Some(c) = &e.compression {
            if let Err(err) = c.parse::<exporters::Compression>() {
                problems.push(format!("compression (--compression): {err}"));
            }
        }
        for h in &e.headers {
            if let Err(err) = exporters::config::parse_header(h) {
                problems.push(format!("headers (--header): {err}"));
            }
        }
        // Building an exporter connects lazily: this checks kinds and
        // endpoints without any network (with the shared options found
        // wrong above left out, so each problem is reported once).
        let mut e = e.clone();
        e.protocol = e
            .protocol
            .filter(|p| p.parse::<exporters::OtlpProtocol>().is_ok());
        e.compression = e
            .compression
            .filter(|c| c.parse::<exporters::Compression>().is_ok());
        e.headers
            .retain(|h| exporters::config::parse_header(h).is_ok());
        if let Err(err) = crate::export::exporters(&e) {
            problems.push(format!("exporters (--exporter): {err:#}"));
        }
        self.validate_sampling(&mut problems);
        self.validate_filter(&mut problems);
        if let Some(d) = self.output.duration_s {
            if !(d.is_finite() && d > 0.0) {
                problems.push(format!(
                    "duration_s (--duration) is {d}: it must be a positive number of seconds"
                ));
            }
        }
        for (what, path) in [
            ("record (--record)", &self.output.record),
            ("graph (--graph)", &self.output.graph),
        ] {
            let Some(r) = path else { continue };
            let dir = r.parent().filter(|d| !d.as_os_str().is_empty());
            if dir.is_some_and(|d| !d.is_dir()) {
                problems.push(format!(
                    "{what}: the directory of {} does not exist",
                    r.display()
                ));
            }
        }
        let i = &self.insights;
        if !(2..=10_000).contains(&i.n_plus_one_min_calls) {
            problems.push(format!(
                "n_plus_one_min_calls (--n-plus-one) is {}: it must be from 2 to 10000",
                i.n_plus_one_min_calls
            ));
        }
        if i.n_plus_one_min_total_ms > 3_600_000 {
            problems.push(format!(
                "n_plus_one_min_total_ms is {}: it must be from 0 to 3600000",
                i.n_plus_one_min_total_ms
            ));
        }
        if !(2..=10_000).contains(&i.repeat_min_calls) {
            problems.push(format!(
                "repeat_min_calls is {}: it must be from 2 to 10000",
                i.repeat_min_calls
            ));
        }
        for (name, v) in [
            ("every_request_percent", i.every_request_percent),
            ("error_rate_percent", i.error_rate_percent),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= 100.0) {
                problems.push(format!(
                    "{name} is {v}: it must be a percentage above 0, at most 100"
                ));
            }
        }
        if i.min_requests == 0 {
            problems.push("min_requests is 0: it must be at least 1".to_owned());
        }
        if i.slow_statement_ms == 0 || i.slow_statement_ms > 3_600_000 {
            problems.push(format!(
                "slow_statement_ms is {}: it must be from 1 to 3600000",
                i.slow_statement_ms
            ));
        }
        let d = &self.dashboard;
        if d.slow_ms == 0 || d.slow_ms > 3_600_000 {
            problems.push(format!(
                "slow_ms (--slow-ms) is {}: it must be from 1 to 3600000",
                d.slow_ms
            ));
        }
        if !(d.interval_s.is_finite() && (0.1..=3600.0).contains(&d.interval_s)) {
            problems.push(format!(
                "interval_s (--interval) is {}: it must be from 0.1 to 3600 seconds",
                d.interval_s
            ));
        }
        if d.recent_traces == 0 || d.recent_traces > 1_000_000 {
            problems.push(format!(
                "recent_traces is {}: it must be from 1 to 1000000",
                d.recent_traces
            ));
        }
        let g = &self.graph;
        for (what, v) in [
            ("max_nodes (--graph-max-nodes)", g.max_nodes),
            ("max_edges (--graph-max-edges)", g.max_edges),
            ("max_red_series (--metrics-max-series)", g.max_red_series),
        ] {
            if v == 0 || v > MAX_TABLE {
                problems.push(format!("{what} is {v}: it must be from 1 to {MAX_TABLE}"));
            }
        }
        if g.window_minutes == 0 || g.window_minutes > 1440 {
            problems.push(format!(
                "window_minutes (--graph-window-minutes) is {}: it must be from 1 to 1440",
                g.window_minutes
            ));
        }
        let m = &self.metrics;
        if let Some(l) = &m.listen {
            if let Err(err) = zt_trace::metrics::parse_listen_addr(l) {
                problems.push(format!("listen (--metrics-listen): {err}"));
            }
        }
        if m.export_interval_s == 0 || m.export_interval_s > 3600 {
            problems.push(format!(
                "export_interval_s (--metrics-export-interval-s) is {}: it must be from 1 to 3600",
                m.export_interval_s
            ));
        }
        if m.export
            && !self
                .export
                .exporters
                .iter()
                .any(|e| crate::export::is_otlp(e))
        {
            problems.push(
                "export (--export-metrics) needs an OTLP exporter (--exporter otlp, otlp-grpc or otlp-http)"
                    .to_owned(),
            );
        }
        match problems.len() {
            0 => Ok(()),
            1 => bail!("invalid option: {}", problems[0]),
            _ => bail!("invalid options:\n  {}", problems.join("\n  ")),
        }
    }

    fn validate_sampling(&self, problems: &mut Vec<String>) {
        let s = &self.sampling;
        if !(0.0..=1.0).contains(&s.ratio) {
            problems.push(format!(
                "ratio (--sample) is {}: it must be a number from 0.0 to 1.0",
                s.ratio
            ));
        }
        let mut seen = Vec::new();
        for r in &s.service_ratios {
            match parse_service_ratio(r) {
                Ok((name, _)) if seen.contains(&name) => problems.push(format!(
                    "service_ratios (--sample-service): service {name} is given twice"
                )),
                Ok((name, _)) => seen.push(name),
                Err(e) => problems.push(format!("service_ratios (--sample-service): {e}")),
            }
        }
        if let Err(e) = s.algorithm.parse::<RatioAlgorithm>() {
            problems.push(format!("algorithm (--sample-algorithm): {e}"));
        }
        if s.keep_slower_than_ms == Some(0) {
            problems.push(
                "keep_slower_than_ms (--keep-slower-than) is 0: it must be at least 1".to_owned(),
            );
        }
        for m in &s.keep_match {
            if let Err(e) = m.parse::<KeepMatch>() {
                problems.push(format!("keep_match (--keep-match): {e}"));
            }
        }
        if s.decision_wait_ms > 600_000 {
            problems.push(format!(
                "decision_wait_ms (--decision-wait-ms) is {}: it must be at most 600000",
                s.decision_wait_ms
            ));
        }
        if s.max_held_traces == 0 || s.max_held_traces > 1_000_000 {
            problems.push(format!(
                "max_held_traces (--max-held-traces) is {}: it must be from 1 to 1000000",
                s.max_held_traces
            ));
        }
    }

    fn validate_filter(&self, problems: &mut Vec<String>) {
        let f = &self.filter;
        for g in &f.ignore_routes {
            if let Err(e) = Glob::new(g) {
                problems.push(format!("ignore_routes (--ignore-route): {e}"));
            }
        }
        if f.only_services.iter().any(|s| s.trim().is_empty()) {
            problems.push("only_services (--only-service): an empty service name".to_owned());
        }
    }

    /// Settings that are valid but do nothing, worth a warning.
    pub fn warnings(&self) -> Vec<String> {
        let s = &self.sampling;
        let mut w = Vec::new();
        let tail = s.keep_errors || s.keep_slower_than_ms.is_some() || !s.keep_match.is_empty();
        let drops = s.ratio < 1.0
            || s.service_ratios
                .iter()
                .any(|r| parse_service_ratio(r).is_ok_and(|(_, r)| r < 1.0));
        if tail && !drops {
            w.push(
                "the keep rules (--keep-errors, --keep-slower-than, --keep-match) keep traces \
                 that sampling drops, but the sampling ratio is 1.0: every trace is output"
                    .to_owned(),
            );
        }
        w
    }

    /// The effective configuration as TOML (`--print-config`), header
    /// values redacted (they often hold API keys).
    pub fn to_toml(&self) -> Result<String> {
        let mut shown = self.clone();
        for h in &mut shown.export.headers {
            if let Some((k, _)) = h.split_once('=') {
                *h = format!("{k}=REDACTED");
            }
        }
        Ok(toml::to_string_pretty(&shown)?)
    }
}

/// A query parameter name `--redact-query-param` can match: what may stand
/// before `=` in a query.
fn check_query_param(name: &str) -> std::result::Result<(), &'static str> {
    if name.is_empty() {
        return Err("the name is empty");
    }
    if name
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || "=&;#?".contains(c))
    {
        return Err("a parameter name cannot hold spaces, controls or any of = & ; # ?");
    }
    Ok(())
}

/// Sections whose keys `ZT_<SECTION>_<KEY>` variables set.
const SECTIONS: &[&str] = &[
    "capture",
    "assemble",
    "export",
    "graph",
    "metrics",
    "sampling",
    "filter",
    "output",
    "insights",
    "dashboard",
];

/// List keys whose items hold commas themselves: their `ZT_` variables
/// separate items with `;` (`ZT_ASSEMBLE_SERVICE_NAMES='exe=java,port=8080:orders;unit=web:web'`).
const SEMICOLON_LISTS: &[&str] = &["service_names"];

/// One `ZT_<SECTION>_<KEY>=value` variable onto the settings table. Other
/// `ZT_` variables (test switches, build options) are not settings and are
/// left alone.
fn apply_env(table: &mut toml::Table, name: &str, value: &str) -> Result<()> {
    let rest = name.trim_start_matches("ZT_").to_ascii_lowercase();
    let Some((section, key)) = SECTIONS
        .iter()
        .find_map(|s| rest.strip_prefix(&format!("{s}_")).map(|k| (*s, k)))
    else {
        return Ok(());
    };
    let Some(toml::Value::Table(sec)) = table.get_mut(section) else {
        return Ok(());
    };
    // The value's type: that of the current value when there is one, else
    // the first reading the settings accept (optional keys start absent).
    let candidates: Vec<toml::Value> = {
        let list = || {
            let sep = if SEMICOLON_LISTS.contains(&key) {
                ';'
            } else {
                ','
            };
            let parts: Vec<&str> = value
                .split(sep)
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .collect();
            match parts
                .iter()
                .map(|p| p.parse::<i64>())
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(ints) => toml::Value::Array(ints.into_iter().map(toml::Value::from).collect()),
                Err(_) => toml::Value::Array(parts.into_iter().map(toml::Value::from).collect()),
            }
        };
        let boolean = match value.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Some(true),
            "0" | "false" | "no" | "off" => Some(false),
            _ => None,
        };
        match sec.get(key) {
            Some(toml::Value::Array(_)) => vec![list()],
            Some(toml::Value::Boolean(_)) => boolean.map(toml::Value::from).into_iter().collect(),
            Some(toml::Value::Integer(_)) => value
                .trim()
                .parse::<i64>()
                .ok()
                .map(toml::Value::from)
                .into_iter()
                .collect(),
            _ => {
                let mut c = Vec::new();
                if let Ok(i) = value.trim().parse::<i64>() {
                    c.push(toml::Value::from(i));
                }
                if let Ok(f) = value.trim().parse::<f64>() {
                    c.push(toml::Value::from(f));
                }
                c.push(toml::Value::from(value));
                c
            }
        }
    };
    for candidate in candidates {
        let mut trial = table.clone();
        if let Some(toml::Value::Table(s)) = trial.get_mut(section) {
            s.insert(key.to_owned(), candidate.clone());
        }
        if trial.clone().try_into::<Settings>().is_ok() {
            *table = trial;
            return Ok(());
        }
    }
    // Explain: unknown key, or a value of the wrong kind.
    let mut probe = table.clone();
    if let Some(toml::Value::Table(s)) = probe.get_mut(section) {
        s.insert(key.to_owned(), toml::Value::from(value));
    }
    let why = probe
        .try_into::<Settings>()
        .err()
        .map(|e| e.message().trim_end().to_owned())
        .unwrap_or_else(|| "not a valid value".to_owned());
    Err(anyhow!("environment variable {name}={value:?}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn write(text: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "zt-settings-{}-{}.toml",
            std::process::id(),
            text.len()
        ));
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn defaults_are_valid_and_print_as_toml() {
        let s = Settings::load(None, env(&[])).unwrap();
        assert_eq!(s, Settings::default());
        s.validate().unwrap();
        let text = s.to_toml().unwrap();
        assert!(text.contains("capture_bytes = 4096"), "{text}");
        // What --print-config prints loads back to the same settings.
        let back: Settings = toml::from_str(&text).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn file_then_environment() {
        let p = write(
            "[capture]\ncapture_bytes = 1024\ntls = false\n[assemble]\ntrace_linger_ms = 500\n[export]\nexporters = [\"zipkin\"]\n",
        );
        let s = Settings::load(
            Some(&p),
            env(&[
                ("ZT_ASSEMBLE_TRACE_LINGER_MS", "300"),
                ("ZT_CAPTURE_PIDS", "1, 2"),
                ("ZT_EXPORT_PROTOCOL", "http/json"),
                ("ZT_OUTPUT_DURATION_S", "2.5"),
                ("ZT_OUTPUT_FORMAT", "json"),
                ("ZT_CAPTURE_PYTHON_CONTEXTS", "no"),
                (
                    "ZT_ASSEMBLE_SERVICE_NAMES",
                    "exe=/usr/bin/java,port=8080:orders; unit=web:front",
                ),
                ("ZT_METRICS_LISTEN", "9464"),
                ("ZT_GRAPH_WINDOW_MINUTES", "15"),
                ("ZT_REQUIRE_BPF", "1"), // not a setting: left alone
            ]),
        )
        .unwrap();
        assert_eq!(s.capture.capture_bytes, 1024);
        assert!(!s.capture.tls);
        assert!(!s.capture.python_contexts);
        assert_eq!(s.capture.pids, vec![1, 2]);
        assert_eq!(s.assemble.trace_linger_ms, 300);
        assert_eq!(
            s.assemble.service_names,
            vec![
                "exe=/usr/bin/java,port=8080:orders".to_owned(),
                "unit=web:front".to_owned()
            ]
        );
        for r in &s.assemble.service_names {
            span_core::naming::ServiceRule::parse(r).unwrap();
        }
        assert_eq!(s.export.exporters, vec!["zipkin".to_owned()]);
        assert_eq!(s.export.protocol.as_deref(), Some("http/json"));
        assert_eq!(s.output.duration_s, Some(2.5));
        assert_eq!(s.output.format, OutputFormat::Json);
        assert_eq!(s.metrics.listen.as_deref(), Some("9464"));
        assert_eq!(s.graph.window_minutes, 15);
        let _ = std::fs::remove_file(p);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let p = write("[capture]\ncapture_byte = 1024\n");
        let e = format!("{:#}", Settings::load(Some(&p), env(&[])).unwrap_err());
        assert!(e.contains("unknown field `capture_byte`"), "{e}");
        let _ = std::fs::remove_file(p);
        let p = write("[captur]\n");
        let e = format!("{:#}", Settings::load(Some(&p), env(&[])).unwrap_err());
        assert!(e.contains("unknown field `captur`"), "{e}");
        let _ = std::fs::remove_file(p);
        let e = format!(
            "{:#}",
            Settings::load(None, env(&[("ZT_CAPTURE_BYTEZ", "1")])).unwrap_err()
        );
        assert!(
            e.contains("ZT_CAPTURE_BYTEZ") && e.contains("unknown field"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            Settings::load(None, env(&[("ZT_CAPTURE_CAPTURE_BYTES", "lots")])).unwrap_err()
        );
        assert!(e.contains("ZT_CAPTURE_CAPTURE_BYTES"), "{e}");
        let e = format!(
            "{:#}",
            Settings::load(Some(Path::new("/nonexistent/zt.toml")), env(&[])).unwrap_err()
        );
        assert!(e.contains("/nonexistent/zt.toml"), "{e}");
    }

    #[test]
    fn every_bad_value_is_named() {
        let mut s = Settings::default();
        s.capture.capture_bytes = 0;
        s.capture.ring_buffer_mib = 3;
        s.capture.pids = vec![0, u32::MAX - 1];
        s.assemble.request_timeout_s = 0;
        s.assemble.trace_linger_ms = 0;
        s.export.queue = 0;
        s.export.shutdown_timeout_ms = 0;
        s.export.protocol = Some("xyz".into());
        s.export.compression = Some("lzma".into());
        s.export.headers = vec!["no-equals-sign".into()];
        s.export.exporters = vec!["otlp-http=http://127.0.0.1:99999/v1/traces".into()];
        s.output.duration_s = Some(-1.0);
        s.output.record = Some("/nonexistent/dir/x.zrec".into());
        s.assemble.service_names = vec!["exe=java:ok".into(), "port=99999:x".into()];
        s.output.graph = Some("/nonexistent/dir/g.json".into());
        s.graph.max_nodes = 0;
        s.graph.max_edges = 2_000_000;
        s.graph.window_minutes = 0;
        s.graph.max_red_series = 0;
        s.metrics.listen = Some("99999".into());
        s.metrics.export = true;
        s.metrics.export_interval_s = 0;
        s.assemble.redact_query_params = vec!["".into(), "a=b".into()];
        let e = s.validate().unwrap_err().to_string();
        for needle in [
            "capture_bytes (--capture-bytes) is 0",
            "ring_buffer_mib (--ring-buffer-mib) is 3",
            "0 is not a process id",
            "no process has id",
            "request_timeout_s (--request-timeout-s) is 0",
            "trace_linger_ms (--trace-linger-ms) is 0",
            "queue (--export-queue) is 0",
            "shutdown_timeout_ms (--export-shutdown-timeout-ms) is 0",
            "protocol (--protocol)",
            "compression (--compression)",
            "headers (--header)",
            "1 to 65535",
            "duration_s (--duration) is -1",
            "record (--record)",
            "service_names (--service-name): service name rule \"port=99999:x\": port=99999 is not a port",
            "graph (--graph)",
            "max_nodes (--graph-max-nodes) is 0",
            "max_edges (--graph-max-edges) is 2000000",
            "window_minutes (--graph-window-minutes) is 0",
            "max_red_series (--metrics-max-series) is 0",
            "listen (--metrics-listen): \"99999\"",
            "export_interval_s (--metrics-export-interval-s) is 0",
            "redact_query_params (--redact-query-param) \"\": the name is empty",
            "redact_query_params (--redact-query-param) \"a=b\": a parameter name cannot",
        ] {
            assert!(e.contains(needle), "{needle} missing from:\n{e}");
        }
        let mut s = Settings::default();
        s.metrics.export = true;
        s.export.exporters = vec!["zipkin".into()];
        let e = s.validate().unwrap_err().to_string();
        assert!(
            e.contains("export (--export-metrics) needs an OTLP exporter"),
            "{e}"
        );
        s.export.exporters = vec!["otlp-http".into()];
        s.validate().unwrap();
    }

    #[test]
    fn insights_and_dashboard_options_layer_and_validate() {
        let p = write("[insights]\nn_plus_one_min_calls = 8\n[dashboard]\nslow_ms = 250\n");
        let s = Settings::load(
            Some(&p),
            env(&[
                ("ZT_INSIGHTS_REPEAT_MIN_CALLS", "3"),
                ("ZT_DASHBOARD_INTERVAL_S", "2"),
                ("ZT_INSIGHTS_ERROR_RATE_PERCENT", "2.5"),
            ]),
        )
        .unwrap();
        let _ = std::fs::remove_file(p);
        s.validate().unwrap();
        assert_eq!(s.insights.n_plus_one_min_calls, 8);
        assert_eq!(s.insights.repeat_min_calls, 3);
        assert_eq!(s.dashboard.slow_ms, 250);
        assert_eq!(s.dashboard.interval_s, 2.0);
        let c = s.insights_config();
        assert_eq!(c.n_plus_one_min_calls, 8);
        assert_eq!(c.slow_trace_ns, 250_000_000);
        assert_eq!(c.error_rate, 0.025);
        let e = format!(
            "{:#}",
            Settings::load(None, env(&[("ZT_INSIGHTS_N_PLUS_ONE", "3")])).unwrap_err()
        );
        assert!(e.contains("unknown field"), "{e}");
        let mut s = Settings::default();
        s.insights.n_plus_one_min_calls = 1;
        s.insights.repeat_min_calls = 0;
        s.insights.every_request_percent = 0.0;
        s.insights.error_rate_percent = 101.0;
        s.insights.min_requests = 0;
        s.insights.slow_statement_ms = 0;
        s.dashboard.slow_ms = 0;
        s.dashboard.interval_s = f64::NAN;
        s.dashboard.recent_traces = 0;
        let e = s.validate().unwrap_err().to_string();
        for needle in [
            "n_plus_one_min_calls (--n-plus-one) is 1",
            "repeat_min_calls is 0",
            "every_request_percent is 0",
            "error_rate_percent is 101",
            "min_requests is 0",
            "slow_statement_ms is 0",
            "slow_ms (--slow-ms) is 0",
            "interval_s (--interval) is NaN",
            "recent_traces is 0",
        ] {
            assert!(e.contains(needle), "{needle} missing from:\n{e}");
        }
    }

    #[test]
    fn query_redaction_settings() {
        let s = Settings::load(
            None,
            env(&[("ZT_ASSEMBLE_REDACT_QUERY_PARAMS", "sessionid, x-api-token")]),
        )
        .unwrap();
        assert_eq!(
            s.assemble.redact_query_params,
            vec!["sessionid".to_owned(), "x-api-token".to_owned()]
        );
        s.validate().unwrap();
        let mut both = s.clone();
        both.assemble.keep_query = true;
        let e = both.validate().unwrap_err().to_string();
        assert!(e.contains("keep_query (--keep-query)"), "{e}");
        let s = Settings::load(None, env(&[("ZT_ASSEMBLE_KEEP_QUERY", "true")])).unwrap();
        assert!(s.assemble.keep_query);
        s.validate().unwrap();
    }

    #[test]
    fn printed_config_redacts_header_values() {
        let mut s = Settings::default();
        s.export.headers = vec!["api-key=s3cret".into()];
        let text = s.to_toml().unwrap();
        assert!(text.contains("api-key=REDACTED"), "{text}");
        assert!(!text.contains("s3cret"));
    }
}
