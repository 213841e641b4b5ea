//! `zt-trace`: zero-instrumentation distributed tracing with eBPF.

mod check;
mod dashboard;
mod demo;
mod export;
mod graph;
mod output;
mod render;
mod run;
mod settings;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use output::OutputFormat;
use settings::{defaults, Settings};
use std::path::PathBuf;
use std::process::ExitCode;

/// The agent allocates and frees many small objects per event (spans,
/// attributes, parsed heads); glibc's allocator spent about a third of the
/// agent's CPU on that under load (perf, benches/overhead.sh). mimalloc's
/// per-thread free lists cost much less (BENCHMARKS.md). The feature
/// `system-allocator` keeps glibc's, for heap profilers that hook malloc
/// (heaptrack; benches/open_requests.sh).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: Mi = Mi;

/// mimalloc, through its plain entry points where the alignment asked for
/// is at most a word's (nearly every allocation here): `MiMalloc` calls
/// the aligned ones for all, ~30 instructions more per call (callgrind,
/// BENCHMARKS.md "Span names and URLs without format!, mimalloc's plain
/// entry points").
#[cfg(not(feature = "system-allocator"))]
struct Mi;

/// Every mimalloc block is aligned to at least a word: its size classes
/// are multiples of it.
#[cfg(not(feature = "system-allocator"))]
const MI_WORD: usize = std::mem::size_of::<usize>();

#[cfg(not(feature = "system-allocator"))]
extern "C" {
    fn mi_malloc(size: usize) -> *mut std::ffi::c_void;
    fn mi_zalloc(size: usize) -> *mut std::ffi::c_void;
    fn mi_realloc(p: *mut std::ffi::c_void, size: usize) -> *mut std::ffi::c_void;
}

// SAFETY: mimalloc returns memory of at least the size asked for, aligned
// to at least a word (or to `layout.align()` through `MiMalloc`), or null;
// `mi_free` takes any pointer of either (what `MiMalloc::dealloc` calls).
#[cfg(not(feature = "system-allocator"))]
unsafe impl std::alloc::GlobalAlloc for Mi {
    #[inline]
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe {
            if layout.align() <= MI_WORD {
                mi_malloc(layout.size()).cast()
            } else {
                mimalloc::MiMalloc.alloc(layout)
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe {
            if layout.align() <= MI_WORD {
                mi_zalloc(layout.size()).cast()
            } else {
                mimalloc::MiMalloc.alloc_zeroed(layout)
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: see the impl.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe {
            if layout.align() <= MI_WORD {
                mi_realloc(ptr.cast(), size).cast()
            } else {
                mimalloc::MiMalloc.realloc(ptr, layout, size)
            }
        }
    }
}

/// Give back to the system what loading the probes freed (the kernel's BTF,
/// parsed for CO-RE: ~25 MB that the allocator would otherwise keep while
/// the agent idles; benches/open_requests.sh, BENCHMARKS.md "Memory per
/// open request").
pub(crate) fn release_freed_memory() {
    #[cfg(not(feature = "system-allocator"))]
    {
        extern "C" {
            fn mi_collect(force: bool);
        }
        // SAFETY: mimalloc's documented API, callable from any thread.
        unsafe { mi_collect(true) };
    }
    #[cfg(feature = "system-allocator")]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: glibc's malloc_trim takes no pointers.
        unsafe { malloc_trim(0) };
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "zt-trace",
    version,
    about = "Trace requests across services with eBPF: no code change, no restart.",
    long_about = "zt-trace attaches eBPF probes to socket syscalls (and TLS and runtime \
libraries), parses HTTP/1.1, HTTP/2, gRPC, MySQL, PostgreSQL and Redis from the bytes \
services exchange, and links the requests into end-to-end traces across threads, processes \
and services. Tracing needs root.\n\n\
Without a subcommand it runs `zt-trace run`.\n\n\
Options of `run` can also come from a TOML file (--config; see zt-trace.toml in the \
repository) and from ZT_<SECTION>_<KEY> environment variables (e.g. \
ZT_ASSEMBLE_TRACE_LINGER_MS=300, ZT_EXPORT_EXPORTERS=otlp,zipkin); command-line options \
override the environment, which overrides the file. --print-config shows the result."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Attach to this host and print each completed trace (the default).
    Run(Box<RunArgs>),
    /// Attach and write raw events to FILE (for `replay`, bug reports, golden tests).
    Record {
        /// Event log to write.
        file: PathBuf,
        #[command(flatten)]
        capture: CaptureArgs,
        /// Stop after this many seconds (default: until SIGINT/SIGTERM).
        #[arg(long, value_name = "SECS")]
        duration: Option<f64>,
    },
    /// Start demo services on loopback (python3; a catalog service with an N+1
    /// on MariaDB, a repeated Redis read and a failing query when the
    /// servers of scripts/start-servers.sh run), send them requests, and
    /// show the dashboard (the plain report when stdout is not a terminal);
    /// with --output, print their traces, then their service graph. Needs
    /// root.
    Demo {
        /// Requests per load batch (with --output: in all).
        #[arg(long, default_value_t = 20)]
        requests: usize,
        /// Print the traces instead of showing the dashboard.
        #[arg(long, value_enum)]
        output: Option<OutputFormat>,
        /// Print the text report instead of the full-screen UI.
        #[arg(long)]
        plain: bool,
        /// Seconds between plain reports.
        #[arg(long, value_name = "SECS", default_value_t = defaults::INTERVAL_S)]
        interval: f64,
        /// Stop after this many seconds (default: until q, SIGINT or SIGTERM).
        #[arg(long, value_name = "SECS")]
        duration: Option<f64>,
        /// How the service graph is printed at the end (with --output).
        #[arg(long, value_enum, default_value = "text")]
        graph_format: graph::GraphFormat,
        /// Also write the raw event log to FILE.
        #[arg(long, value_name = "FILE")]
        record: Option<PathBuf>,
        /// Also write the demo's service graph (JSON) to FILE (`zt-trace
        /// graph --from FILE --format svg` draws it again).
        #[arg(long, value_name = "FILE")]
        graph: Option<PathBuf>,
    },
    /// Print the service graph: who calls whom, with request counts,
    /// errors and latency. Attaches for --duration seconds (needs root), or
    /// reads an event log (--from FILE, no root).
    Graph {
        /// Attach for this many seconds.
        #[arg(long, value_name = "SECS", default_value_t = 10.0)]
        duration: f64,
        /// Read this event log (from `record` or `run --record`) instead of
        /// attaching, or a graph saved as JSON (`--graph FILE.json`) to draw
        /// it in another format.
        #[arg(long, value_name = "FILE")]
        from: Option<PathBuf>,
        /// text (the default), dot (GraphViz), svg (a laid-out picture) or json.
        #[arg(long, value_enum, default_value = "text")]
        format: graph::GraphFormat,
        /// Only the last --graph-window-minutes minutes (default: everything
        /// seen).
        #[arg(long)]
        window: bool,
        /// Write the graph to FILE instead of stdout.
        #[arg(long, short = 'o', value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        capture: CaptureArgs,
        #[command(flatten)]
        assemble: AssembleArgs,
        #[command(flatten)]
        graph: GraphArgs,
    },
    /// Live dashboard: recent traces, service graph, slow endpoints and
    /// performance insights (N+1 queries, cache candidates, root causes of
    /// errors...) in a full-screen terminal UI; a text report every
    /// --interval seconds when stdout is not a terminal or with --plain.
    /// Needs root, except with --from.
    #[command(visible_alias = "top")]
    Dashboard(DashboardArgs),
    /// Say what this host allows (kernel, BTF, lockdown, privileges, each
    /// hook kind tried by loading a tiny program, TLS and Python libraries,
    /// the ring buffer) and what zt-trace will do on it. Exits non-zero when
    /// tracing cannot work.
    Check {
        /// The same as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Read an event log written by `record` (or `run --record`) and print its
    /// traces. Needs no root.
    Replay {
        /// Event log to read.
        file: PathBuf,
        #[command(flatten)]
        assemble: AssembleArgs,
        #[command(flatten)]
        sampling: SamplingArgs,
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, value_enum, default_value = "tree")]
        output: OutputFormat,
        /// Also write the service graph (JSON) to FILE at the end.
        #[arg(long, value_name = "FILE")]
        graph: Option<PathBuf>,
        #[command(flatten)]
        graph_args: GraphArgs,
    },
}

#[derive(Args, Debug, Clone)]
struct DashboardArgs {
    /// Replay this event log (from `record` or `run --record`) into the
    /// dashboard instead of tracing live (no root needed).
    #[arg(long, value_name = "FILE")]
    from: Option<PathBuf>,
    /// Print the text report instead of the full-screen UI (the default
    /// when stdout is not a terminal).
    #[arg(long)]
    plain: bool,
    /// Seconds between plain reports.
    #[arg(long, value_name = "SECS", default_value_t = defaults::INTERVAL_S)]
    interval: f64,
    /// Stop after this many seconds (default: until q, SIGINT or SIGTERM;
    /// a replay in plain mode stops at the end of its log).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Traces longer than this are listed as slow (ms).
    #[arg(long, value_name = "MS", default_value_t = defaults::SLOW_MS)]
    slow_ms: u64,
    /// Sequential identical statements in one request that make an N+1.
    #[arg(long = "n-plus-one", value_name = "CALLS", default_value_t = defaults::N_PLUS_ONE_MIN_CALLS)]
    n_plus_one: u32,
    /// Read options from this TOML file ([insights], [dashboard], [capture],
    /// [assemble], [graph], [sampling], [filter] sections).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    capture: CaptureArgs,
    #[command(flatten)]
    assemble: AssembleArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    filter: FilterArgs,
}

#[derive(Args, Debug, Clone)]
struct GraphArgs {
    /// Nodes kept in the service graph; requests that need more are
    /// counted (zt_graph_overflow_total) and left out.
    #[arg(long, default_value_t = defaults::GRAPH_MAX_NODES, value_name = "N")]
    graph_max_nodes: usize,
    /// Edges (client, server, protocol) kept in the service graph.
    #[arg(long, default_value_t = defaults::GRAPH_MAX_EDGES, value_name = "N")]
    graph_max_edges: usize,
    /// Minutes the windowed graph covers (besides the totals since start).
    #[arg(long, default_value_t = defaults::GRAPH_WINDOW_MINUTES, value_name = "MIN")]
    graph_window_minutes: u32,
    /// Label sets of the per-service duration metrics; more go to one
    /// overflow series per metric (otel_metric_overflow="true").
    #[arg(long, default_value_t = defaults::METRICS_MAX_SERIES, value_name = "N")]
    metrics_max_series: usize,
    /// Draw every proxy hop in the service graph (`A -> nginx -> B`)
    /// instead of one edge `A -> B` through the proxy. Traces keep every
    /// hop either way.
    #[arg(long)]
    no_collapse_proxies: bool,
}

#[derive(Args, Debug, Clone)]
struct MetricsArgs {
    /// Serve Prometheus metrics (service graph, per-service request
    /// durations, agent health) at http://ADDR/metrics. ADDR is PORT (binds
    /// 127.0.0.1) or HOST:PORT. Off by default.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Also send the same metrics as OTLP metrics to the OTLP exporters
    /// (--exporter otlp, otlp-grpc, otlp-http).
    #[arg(long)]
    export_metrics: bool,
    /// Seconds between two OTLP metric exports.
    #[arg(long, default_value_t = defaults::METRICS_EXPORT_INTERVAL_S, value_name = "SECS")]
    metrics_export_interval_s: u64,
}

#[derive(Args, Debug, Clone)]
struct CaptureArgs {
    /// Payload bytes captured per syscall (1-8192).
    #[arg(long, default_value_t = defaults::CAPTURE_BYTES, value_name = "BYTES")]
    capture_bytes: u32,
    /// Trace only these process ids (repeatable; default: every process but
    /// zt-trace). This and the other filters below run in the kernel,
    /// before any other work: filtered-out traffic costs about an empty
    /// tracepoint. Include filters of different kinds must all match.
    #[arg(long = "pid", value_name = "PID")]
    pids: Vec<u32>,
    /// Never trace these process ids (repeatable).
    #[arg(long = "exclude-pid", value_name = "PID")]
    exclude_pids: Vec<u32>,
    /// Trace only processes with this name (the kernel's comm, at most 15
    /// bytes; matched at exec, so processes started later are covered).
    #[arg(long = "comm", value_name = "NAME")]
    comms: Vec<String>,
    /// Trace only processes running this executable (matched by file, at
    /// exec and for running processes).
    #[arg(long = "exe", value_name = "PATH")]
    exes: Vec<PathBuf>,
    /// Trace only processes in this cgroup v2 subtree: a container or a
    /// systemd unit (absolute, or relative to the cgroup v2 mount).
    #[arg(long = "cgroup", value_name = "PATH")]
    cgroups: Vec<PathBuf>,
    /// Trace only connections with this port at either end (repeatable).
    #[arg(long = "port", value_name = "PORT")]
    ports: Vec<u16>,
    /// Never trace connections with this port at either end (repeatable).
    #[arg(long = "exclude-port", value_name = "PORT")]
    exclude_ports: Vec<u16>,
    /// Kernel ring buffer size in MiB (a power of two).
    #[arg(long, default_value_t = defaults::RING_BUFFER_MIB, value_name = "MIB")]
    ring_buffer_mib: u32,
    /// Longest wait for records to gather in the ring buffer before the
    /// agent reads them, when traffic is light (0-1000; 0: read at every
    /// wake-up). Each read costs far more than the records it brings, so a
    /// longer wait costs less CPU per request, and spans come out up to
    /// this much later. Heavy traffic is read as soon as 256 KiB are
    /// queued, and a new process at once.
    #[arg(long, default_value_t = defaults::BATCH_DELAY_MS, value_name = "MS")]
    batch_delay_ms: u64,
    /// Do not attach the OpenSSL uprobes (HTTPS plaintext).
    #[arg(long)]
    no_tls: bool,
    /// Do not attach the CPython context probes (Context.run in libpython),
    /// which link calls made in thread pools (grpcio handlers) and asyncio
    /// tasks to the request they serve.
    #[arg(long)]
    no_python_contexts: bool,
    /// Do not attach the goroutine probes to Go executables (runtime.newproc1,
    /// runtime.goexit1, net/http's client hand-off), which link Go services'
    /// calls to the request their goroutine serves.
    #[arg(long)]
    no_go_tasks: bool,
}

#[derive(Args, Debug, Clone)]
struct AssembleArgs {
    /// Keep SQL literals in db.query.text (default: replaced with `?`).
    #[arg(long)]
    raw_sql: bool,
    /// Make weak evidence (the single request in flight in a process) a
    /// parent edge instead of a span link marked zt.link=inferred.
    #[arg(long)]
    promote_inferred_links: bool,
    /// How long a finished trace waits for late spans (ms).
    #[arg(long, default_value_t = defaults::TRACE_LINGER_MS, value_name = "MS")]
    trace_linger_ms: u64,
    /// Close requests that got no response after this long (s).
    #[arg(long, default_value_t = defaults::REQUEST_TIMEOUT_S, value_name = "SECS")]
    request_timeout_s: u64,
    /// Name the processes matching CONDITIONS NAME, over every other source
    /// (OTEL_SERVICE_NAME, the cgroup's systemd unit, the script or
    /// executable); repeatable, the first rule that matches wins.
    /// CONDITIONS: KEY=VALUE[,KEY=VALUE...], all must hold; keys: exe (a
    /// path, or a file name), comm, cmdline (contained in the command line),
    /// port (a local port it accepts connections on), cgroup (contained in
    /// the cgroup path), container (an id prefix), pod (a Kubernetes pod
    /// uid), unit (a systemd unit). Example: 'exe=/usr/bin/java,port=8080:orders'.
    #[arg(long = "service-name", value_name = "CONDITIONS:NAME")]
    service_names: Vec<String>,
    /// Keep each process's command line (process.command_line) in span
    /// resources. Off by default: arguments may hold passwords or tokens.
    #[arg(long)]
    keep_command_line: bool,
    /// Also redact the value of URL query parameter NAME (repeatable;
    /// case-insensitive). Built in: AWSAccessKeyId, Signature, sig,
    /// X-Goog-Signature, X-Amz-Signature, X-Amz-Credential,
    /// X-Amz-Security-Token, password, passwd, pwd, secret, token,
    /// access_token, refresh_token, id_token, api_key, apikey, key, auth,
    /// code, session, jwt.
    #[arg(long = "redact-query-param", value_name = "NAME")]
    redact_query_params: Vec<String>,
    /// Keep URL query values as sent (default: the values of sensitive
    /// parameters become REDACTED, their names stay). Userinfo in URLs
    /// (user:pass@) is redacted regardless.
    #[arg(long)]
    keep_query: bool,
}

/// Which traces are output and exported. Sampling never changes what the
/// statistics count: they see every trace.
#[derive(Args, Debug, Clone)]
struct SamplingArgs {
    /// Head sampling: output this fraction of traces (0.0-1.0), decided
    /// from the trace id like OpenTelemetry's TraceIdRatioBased sampler, so
    /// every span of a trace and every agent agree. A root that came with a
    /// traceparent header follows its sampled flag. At 1.0 sampling is off:
    /// every trace is output.
    #[arg(long = "sample", default_value_t = defaults::SAMPLE_RATIO, value_name = "RATIO")]
    ratio: f64,
    /// The ratio of traces whose root is service NAME (repeatable).
    #[arg(long = "sample-service", value_name = "NAME=RATIO")]
    service_ratios: Vec<String>,
    /// How the trace id decides: traceidratio (OpenTelemetry Go/Python SDKs)
    /// or threshold (W3C Trace Context Level 2, OpenTelemetry `th`).
    #[arg(long = "sample-algorithm", default_value = defaults::SAMPLE_ALGORITHM, value_name = "ALGORITHM")]
    algorithm: String,
    /// Ignore the sampled flag of inbound traceparent headers.
    #[arg(long)]
    no_parent_based: bool,
    /// Also keep, whole, every trace with an error span.
    #[arg(long)]
    keep_errors: bool,
    /// Also keep, whole, every trace whose root took longer than MS.
    #[arg(long = "keep-slower-than", value_name = "MS")]
    keep_slower_than_ms: Option<u64>,
    /// Also keep, whole, every trace with a span attribute KEY matching
    /// GLOB, e.g. http.route=/checkout* (repeatable).
    #[arg(long = "keep-match", value_name = "KEY=GLOB")]
    keep_match: Vec<String>,
    /// How long a dropped trace waits for a late part that a keep rule
    /// would keep (ms).
    #[arg(long, default_value_t = defaults::DECISION_WAIT_MS, value_name = "MS")]
    decision_wait_ms: u64,
    /// Dropped traces held at most for that wait (the oldest are dropped
    /// early, and counted).
    #[arg(long, default_value_t = defaults::MAX_HELD_TRACES, value_name = "N")]
    max_held_traces: usize,
}

/// Traces left out of the output (statistics still count them).
#[derive(Args, Debug, Clone)]
struct FilterArgs {
    /// Do not output traces whose root's route or path matches GLOB, e.g.
    /// /health* (repeatable).
    #[arg(long = "ignore-route", value_name = "GLOB")]
    ignore_routes: Vec<String>,
    /// Output only traces in which service NAME takes part (repeatable).
    #[arg(long = "only-service", value_name = "NAME")]
    only_services: Vec<String>,
    /// Output only traces whose root took at least MS.
    #[arg(long = "min-duration", value_name = "MS")]
    min_duration_ms: Option<u64>,
}

#[derive(Args, Debug, Clone, Default)]
struct ExportArgs {
    /// Send spans to KIND, optionally at TARGET (repeatable): otlp (= otlp-grpc,
    /// localhost:4317), otlp-grpc, otlp-http (localhost:4318/v1/traces), jaeger
    /// (OTLP to localhost:4317: current Jaeger ingests OTLP), jaeger-thrift
    /// (legacy collector, localhost:14268/api/traces), zipkin
    /// (localhost:9411/api/v2/spans), jsonl (TARGET is a file, `-` for stdout).
    /// The OTEL_EXPORTER_OTLP_* environment variables apply to the otlp kinds.
    #[arg(long = "exporter", value_name = "KIND[=TARGET]")]
    exporters: Vec<String>,
    /// Header sent with every export request (repeatable), e.g. an API key.
    /// Values are never logged.
    #[arg(long = "header", value_name = "KEY=VALUE")]
    headers: Vec<String>,
    /// OTLP protocol: grpc, http/protobuf or http/json.
    #[arg(long, value_name = "PROTOCOL")]
    protocol: Option<String>,
    /// Compress export requests: gzip or none.
    #[arg(long, value_name = "ALGO")]
    compression: Option<String>,
    /// Spans held for export before new ones are dropped (and counted).
    #[arg(long, default_value_t = defaults::EXPORT_QUEUE, value_name = "SPANS")]
    export_queue: usize,
    /// On exit, how long the exporters may take to send what they still
    /// hold once every pending trace is flushed to them (ms); what is left
    /// then is dropped and counted in the exit summary.
    #[arg(long, default_value_t = defaults::EXPORT_SHUTDOWN_TIMEOUT_MS, value_name = "MS")]
    export_shutdown_timeout_ms: u64,
}

#[derive(Args, Debug, Clone)]
struct RunArgs {
    /// Read options from this TOML file (see zt-trace.toml); command-line
    /// options and ZT_* variables override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the effective configuration (file, environment and options
    /// merged) as TOML and exit.
    #[arg(long)]
    print_config: bool,
    #[command(flatten)]
    capture: CaptureArgs,
    #[command(flatten)]
    assemble: AssembleArgs,
    #[command(flatten)]
    export: ExportArgs,
    #[command(flatten)]
    metrics: MetricsArgs,
    #[command(flatten)]
    graph_args: GraphArgs,
    /// Also write the service graph (JSON) to FILE when stopping.
    #[arg(long, value_name = "FILE")]
    graph: Option<PathBuf>,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    filter: FilterArgs,
    /// What to print on stdout for each completed trace.
    #[arg(long, value_enum, default_value = "tree")]
    output: OutputFormat,
    /// Also write the raw event log to FILE (see `replay`).
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Stop after this many seconds (default: until SIGINT/SIGTERM).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Overhead analysis: stop the pipeline after `drain` (read the ring
    /// buffer only) or `decode` (decode and enrich, no assembly).
    #[arg(long, value_enum, default_value = "full", hide = true)]
    stage: Stage,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Stage {
    Drain,
    Decode,
    Full,
}

/// Whether option `id` was given on the command line (not a default).
fn given(m: &ArgMatches, id: &str) -> bool {
    m.try_get_raw(id).is_ok() && m.value_source(id) == Some(ValueSource::CommandLine)
}

/// Command-line capture options over `s`.
fn overlay_capture(s: &mut Settings, a: &CaptureArgs, m: &ArgMatches) {
    let c = &mut s.capture;
    if given(m, "capture_bytes") {
        c.capture_bytes = a.capture_bytes;
    }
    if given(m, "ring_buffer_mib") {
        c.ring_buffer_mib = a.ring_buffer_mib;
    }
    if given(m, "batch_delay_ms") {
        c.batch_delay_ms = a.batch_delay_ms;
    }
    if given(m, "pids") {
        c.pids = a.pids.clone();
    }
    if given(m, "exclude_pids") {
        c.exclude_pids = a.exclude_pids.clone();
    }
    if given(m, "comms") {
        c.comms = a.comms.clone();
    }
    if given(m, "exes") {
        c.exes = a.exes.clone();
    }
    if given(m, "cgroups") {
        c.cgroups = a.cgroups.clone();
    }
    if given(m, "ports") {
        c.ports = a.ports.clone();
    }
    if given(m, "exclude_ports") {
        c.exclude_ports = a.exclude_ports.clone();
    }
    if a.no_tls {
        c.tls = false;
    }
    if a.no_python_contexts {
        c.python_contexts = false;
    }
    if a.no_go_tasks {
        c.go_tasks = false;
    }
}

/// Command-line assembly options over `s`.
fn overlay_assemble(s: &mut Settings, a: &AssembleArgs, m: &ArgMatches) {
    let x = &mut s.assemble;
    if a.raw_sql {
        x.raw_sql = true;
    }
    if a.promote_inferred_links {
        x.promote_inferred_links = true;
    }
    if given(m, "trace_linger_ms") {
        x.trace_linger_ms = a.trace_linger_ms;
    }
    if given(m, "request_timeout_s") {
        x.request_timeout_s = a.request_timeout_s;
    }
    if given(m, "service_names") {
        x.service_names = a.service_names.clone();
    }
    if a.keep_command_line {
        x.keep_command_line = true;
    }
    if given(m, "redact_query_params") {
        x.redact_query_params = a.redact_query_params.clone();
    }
    if a.keep_query {
        x.keep_query = true;
    }
}

/// Command-line graph options over `s`.
fn overlay_graph(s: &mut Settings, a: &GraphArgs, m: &ArgMatches) {
    let g = &mut s.graph;
    if given(m, "graph_max_nodes") {
        g.max_nodes = a.graph_max_nodes;
    }
    if given(m, "graph_max_edges") {
        g.max_edges = a.graph_max_edges;
    }
    if given(m, "graph_window_minutes") {
        g.window_minutes = a.graph_window_minutes;
    }
    if given(m, "metrics_max_series") {
        g.max_red_series = a.metrics_max_series;
    }
    if a.no_collapse_proxies {
        g.collapse_proxies = false;
    }
}

/// Command-line sampling and output filter options over `s`.
fn overlay_sampling(s: &mut Settings, a: &SamplingArgs, f: &FilterArgs, m: &ArgMatches) {
    let x = &mut s.sampling;
    if given(m, "ratio") {
        x.ratio = a.ratio;
    }
    if given(m, "service_ratios") {
        x.service_ratios = a.service_ratios.clone();
    }
    if given(m, "algorithm") {
        x.algorithm = a.algorithm.clone();
    }
    if a.no_parent_based {
        x.parent_based = false;
    }
    if a.keep_errors {
        x.keep_errors = true;
    }
    if a.keep_slower_than_ms.is_some() {
        x.keep_slower_than_ms = a.keep_slower_than_ms;
    }
    if given(m, "keep_match") {
        x.keep_match = a.keep_match.clone();
    }
    if given(m, "decision_wait_ms") {
        x.decision_wait_ms = a.decision_wait_ms;
    }
    if given(m, "max_held_traces") {
        x.max_held_traces = a.max_held_traces;
    }
    let y = &mut s.filter;
    if given(m, "ignore_routes") {
        y.ignore_routes = f.ignore_routes.clone();
    }
    if given(m, "only_services") {
        y.only_services = f.only_services.clone();
    }
    if f.min_duration_ms.is_some() {
        y.min_duration_ms = f.min_duration_ms;
    }
}

/// The effective settings of `run`: file, environment, then options.
fn run_settings(a: &RunArgs, m: &ArgMatches) -> anyhow::Result<Settings> {
    let mut s = Settings::load(a.config.as_deref(), std::env::vars())?;
    overlay_capture(&mut s, &a.capture, m);
    overlay_assemble(&mut s, &a.assemble, m);
    overlay_graph(&mut s, &a.graph_args, m);
    if a.metrics.metrics_listen.is_some() {
        s.metrics.listen = a.metrics.metrics_listen.clone();
    }
    if a.metrics.export_metrics {
        s.metrics.export = true;
    }
    if given(m, "metrics_export_interval_s") {
        s.metrics.export_interval_s = a.metrics.metrics_export_interval_s;
    }
    if a.graph.is_some() {
        s.output.graph = a.graph.clone();
    }
    overlay_sampling(&mut s, &a.sampling, &a.filter, m);
    let e = &mut s.export;
    if given(m, "exporters") {
        e.exporters = a.export.exporters.clone();
    }
    if given(m, "headers") {
        e.headers = a.export.headers.clone();
    }
    if given(m, "protocol") {
        e.protocol = a.export.protocol.clone();
    }
    if given(m, "compression") {
        e.compression = a.export.compression.clone();
    }
    if given(m, "export_queue") {
        e.queue = a.export.export_queue;
    }
    if given(m, "export_shutdown_timeout_ms") {
        e.shutdown_timeout_ms = a.export.export_shutdown_timeout_ms;
    }
    if given(m, "output") {
        s.output.format = a.output;
    }
    if a.record.is_some() {
        s.output.record = a.record.clone();
    }
    if a.duration.is_some() {
        s.output.duration_s = a.duration;
    }
    Ok(s)
}

/// The effective settings of `dashboard`: file, environment, then options.
fn dashboard_settings(a: &DashboardArgs, m: &ArgMatches) -> anyhow::Result<Settings> {
    let mut s = Settings::load(a.config.as_deref(), std::env::vars())?;
    overlay_capture(&mut s, &a.capture, m);
    overlay_assemble(&mut s, &a.assemble, m);
    overlay_sampling(&mut s, &a.sampling, &a.filter, m);
    if given(m, "interval") {
        s.dashboard.interval_s = a.interval;
    }
    if given(m, "slow_ms") {
        s.dashboard.slow_ms = a.slow_ms;
    }
    if given(m, "n_plus_one") {
        s.insights.n_plus_one_min_calls = a.n_plus_one;
    }
    if a.duration.is_some() {
        s.output.duration_s = a.duration;
    }
    if let Some(f) = &a.from {
        if !f.is_file() {
            anyhow::bail!(
                "invalid option: from (--from): {} is not a file",
                f.display()
            );
        }
    }
    Ok(s)
}

/// Options of the command that was run, checked, and what to do.
fn dispatch(cli: Cli, m: &ArgMatches) -> anyhow::Result<()> {
    match cli.command {
        None => run_command(&cli.run, m),
        Some(Command::Run(args)) => run_command(&args, m.subcommand_matches("run").unwrap_or(m)),
        Some(Command::Record {
            file,
            capture,
            duration,
        }) => {
            let m = m.subcommand_matches("record").unwrap_or(m);
            let mut s = Settings::load(None, std::env::vars())?;
            overlay_capture(&mut s, &capture, m);
            s.output.format = OutputFormat::None;
            s.output.record = Some(file);
            s.output.duration_s = duration.or(s.output.duration_s);
            s.validate()?;
            run::run(&s, Stage::Full)
        }
        Some(Command::Demo {
            requests,
            output,
            plain,
            interval,
            duration,
            graph_format,
            record,
            graph,
        }) => demo::demo(demo::DemoOptions {
            requests,
            output,
            plain,
            interval_s: interval,
            duration_s: duration,
            graph_format,
            record,
            graph_file: graph,
        }),
        Some(Command::Dashboard(a)) => {
            let m = m.subcommand_matches("dashboard").unwrap_or(m);
            let s = dashboard_settings(&a, m)?;
            s.validate()?;
            dashboard::dashboard(&s, a.from.as_deref(), a.plain)
        }
        Some(Command::Check { json }) => check::check(json),
        Some(Command::Replay {
            file,
            assemble,
            sampling,
            filter,
            output,
            graph,
            graph_args,
        }) => {
            let m = m.subcommand_matches("replay").unwrap_or(m);
            let mut s = Settings::load(None, std::env::vars())?;
            overlay_assemble(&mut s, &assemble, m);
            overlay_graph(&mut s, &graph_args, m);
            overlay_sampling(&mut s, &sampling, &filter, m);
            s.output.format = output;
            s.output.graph = graph;
            s.validate()?;
            run::replay(&file, &s)
        }
        Some(Command::Graph {
            duration,
            from,
            format,
            window,
            out,
            capture,
            assemble,
            graph,
        }) => {
            let m = m.subcommand_matches("graph").unwrap_or(m);
            let mut s = Settings::load(None, std::env::vars())?;
            overlay_capture(&mut s, &capture, m);
            overlay_assemble(&mut s, &assemble, m);
            overlay_graph(&mut s, &graph, m);
            s.output.format = OutputFormat::None;
            s.output.duration_s = Some(duration);
            s.validate()?;
            run::graph(&s, from.as_deref(), format, window, out.as_deref())
        }
    }
}

fn run_command(args: &RunArgs, m: &ArgMatches) -> anyhow::Result<()> {
    let s = run_settings(args, m)?;
    if args.print_config {
        print!("{}", s.to_toml()?);
        // Printing is not running: problems are reported, not fatal.
        if let Err(e) = s.validate() {
            eprintln!("zt-trace: warning: {e:#}");
        }
        return Ok(());
    }
    s.validate()?;
    run::run(&s, args.stage)
}

/// An error and its causes, each said once (many errors already include
/// their cause's text).
fn describe(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
    }
    msg
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    // The full-screen dashboard owns the terminal: log lines on stderr
    // would tear it (RUST_LOG still turns them on, e.g. with 2>file).
    let tui = matches.subcommand_matches("dashboard").is_some_and(|d| {
        !d.get_flag("plain") && std::io::IsTerminal::is_terminal(&std::io::stdout())
    });
    let default_filter = if tui { "off" } else { "info" };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_filter))
        .target(env_logger::Target::Stderr)
        .format_timestamp_millis()
        .init();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    match dispatch(cli, &matches) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zt-trace: error: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}
