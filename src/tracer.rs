//! The runtime: events from the probes (or a recorded log) through the
//! span assembler, the processing stages and out to every sink, on a
//! pipeline thread of its own.
//!
//! The pipeline thread sleeps until the next thing it has to do: ring
//! buffer data (the kernel wakes it for the first record put into an empty
//! ring), the assembler's or a stage's next deadline (`poll_timeout`), the
//! source's own housekeeping (a new process's environment read again,
//! libraries probed), or a stop request. After a wake-up with only a few
//! records it waits a short batching delay before draining again, so a
//! trickle of events costs a few wake-ups per second, not one per event.

use crate::metrics::export::ExportLoop;
use crate::metrics::MetricsServer;
use crate::sink::{Sink, SinkError};
use crate::stage::{Shared, Stage};
use crate::stages::graph::{GraphConfig, GraphStage};
use crate::stages::{OutputFilter, Sampler};
use crate::stats::{self, defs, StatsSnapshot, StatsWriter};
use ebpf_probes::record::{RecordError, RecordHeader, RecordReader, RecordWriter};
use ebpf_probes::{
    monotonic_ns, wall_clock_offset_ns, LiveSource, LoadError, Probes, ReplaySource,
};
use exporters::metrics::MetricsExporter;
use exporters::{Pipeline, PipelineConfig, SpanExporter};
use span_core::{Assembler, Config, MonoNanos, Output, Trace};
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest sleep of an idle pipeline (nothing pending anywhere): a bound
/// for the freshness of [`Tracer::stats`], not a tick that drives work.
const MAX_IDLE: Duration = Duration::from_secs(1);
/// How often the statistics snapshot is refreshed while busy.
const PUBLISH_EVERY: Duration = Duration::from_millis(250);
/// After every wake-up that brought records, wait before draining again
/// (records queue without waking us): long enough for about this many at
/// the rate just seen ([`batch_delay`]). Draining straight on after a big
/// batch instead found the ring empty and slept until the next record:
/// one more wake-up, and one more drain of a record or two, per batch.
const BATCH_RECORDS: usize = 1024;
/// The shortest and longest of those waits. The wait ends early when the
/// ring fills up or a process execs (`Probes::wait_batch`), so the longest
/// bounds only how late a trickle's spans come out, not the ring's use.
/// Reading a record later does not make it late for the reorder window:
/// the window is moved to the current time only after the ring has been
/// drained.
const BATCH_DELAY: Duration = Duration::from_millis(2);
/// The default longest wait ([`TracerBuilder::batch_delay`]).
const MAX_BATCH_DELAY: Duration = Duration::from_millis(200);
/// The longest accepted: the statistics are refreshed at least this often.
const MAX_BATCH_DELAY_LIMIT: Duration = MAX_IDLE;
/// How long shutdown waits, by default, for the exporters to send what
/// they hold (after the flush; see [`TracerBuilder::shutdown_timeout`]).
const EXPORT_SHUTDOWN: Duration = Duration::from_millis(700);
/// How often the probes' hash maps are counted (a syscall per entry), and
/// the resident pages of the mapped ones (the ring buffer) read from
/// /proc/self/smaps (a walk of every mapping).
const MAPS_EVERY: Duration = Duration::from_secs(30);

/// Why a tracer could not start, or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum TracerError {
    /// The eBPF probes could not be loaded or attached (not root, no BTF,
    /// a program the verifier rejected, ...).
    #[error("attaching the eBPF probes: {0}")]
    Load(#[from] LoadError),
    #[error("event log {path}: {source}")]
    Log {
        path: PathBuf,
        #[source]
        source: RecordError,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("the pipeline thread panicked")]
    Panicked,
    /// A kernel filter could not be resolved or written.
    #[error("kernel filter: {0}")]
    Filter(#[from] ebpf_probes::FilterError),
    /// The pipeline is not running (replay, or stopped).
    #[error("{0}")]
    NotRunning(&'static str),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> TracerError {
    let what = what.into();
    move |source| TracerError::Io { what, source }
}

/// Overhead analysis: stop the live pipeline after reading the ring buffer
/// (`Drain`) or after decoding and /proc enrichment (`Decode`).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureOnly {
    Drain,
    Decode,
}

/// Configures a [`Tracer`]: `Tracer::builder()...start()?` (live, root) or
/// `...replay(path)?` (a recorded event log, no root).
pub struct TracerBuilder {
    capture_bytes: u32,
    ring_buffer_bytes: u32,
    kernel_filter: ebpf_probes::Filter,
    tls: bool,
    python_contexts: bool,
    go_tasks: bool,
    assembler: Config,
    id_seed: Option<u64>,
    stages: Vec<Box<dyn Stage>>,
    output_filter: Option<OutputFilter>,
    sampler: Option<Sampler>,
    sinks: Vec<Box<dyn Sink>>,
    exporters: Vec<Box<dyn SpanExporter>>,
    export_config: PipelineConfig,
    shutdown_timeout: Duration,
    record: Option<PathBuf>,
    capture_only: Option<CaptureOnly>,
    batch_delay: Duration,
    graph: Option<Shared<GraphStage>>,
    metrics_listen: Option<SocketAddr>,
    metrics_exporters: Vec<Box<dyn MetricsExporter>>,
    metrics_interval: Duration,
}

/// Default interval of the OTLP metrics export.
pub const METRICS_EXPORT_INTERVAL: Duration = Duration::from_secs(15);

impl Default for TracerBuilder {
    fn default() -> Self {
        TracerBuilder {
            capture_bytes: 4096,
            ring_buffer_bytes: 16 << 20,
            kernel_filter: ebpf_probes::Filter::default(),
            tls: true,
            python_contexts: true,
            go_tasks: true,
            assembler: Config::default(),
            id_seed: None,
            stages: Vec::new(),
            output_filter: None,
            sampler: None,
            sinks: Vec::new(),
            exporters: Vec::new(),
            export_config: PipelineConfig::default(),
            shutdown_timeout: EXPORT_SHUTDOWN,
            record: None,
            capture_only: None,
            batch_delay: MAX_BATCH_DELAY,
            graph: None,
            metrics_listen: None,
            metrics_exporters: Vec::new(),
            metrics_interval: METRICS_EXPORT_INTERVAL,
        }
    }
}

impl TracerBuilder {
    /// Payload prefix captured per syscall (bytes, at most 8192; default 4096).
    pub fn capture_bytes(mut self, n: u32) -> Self {
        self.capture_bytes = n;
        self
    }
    /// Kernel ring buffer size (bytes, a power of two; default 16 MiB).
    pub fn ring_buffer_bytes(mut self, n: u32) -> Self {
        self.ring_buffer_bytes = n;
        self
    }
    /// How long records may gather in the ring before the pipeline reads
    /// them, when they come slowly (default 200 ms, at most 1 s; zero reads
    /// at every wake-up). Each read of a batch costs far more than its
    /// records (the services have evicted the agent's caches meanwhile),
    /// so a longer wait costs less CPU per request; spans come out up to
    /// this much later. A busy ring is read as soon as 256 KiB are queued,
    /// and an exec is always read at once.
    pub fn batch_delay(mut self, d: Duration) -> Self {
        self.batch_delay = d.min(MAX_BATCH_DELAY_LIMIT);
        self
    }
    /// Trace only these processes (default: every process but the agent).
    /// Shorthand for a [`kernel_filter`](Self::kernel_filter) including
    /// them.
    pub fn pids(mut self, pids: Vec<u32>) -> Self {
        self.kernel_filter.include.pids = pids;
        self
    }
    /// What the eBPF programs trace, checked before any other work (pids,
    /// comms, executables, cgroup subtrees, ports; see
    /// [`ebpf_probes::Filter`]). Change it while running with
    /// [`Tracer::set_kernel_filter`].
    pub fn kernel_filter(mut self, filter: ebpf_probes::Filter) -> Self {
        self.kernel_filter = filter;
        self
    }
    /// Attach the OpenSSL uprobes for HTTPS plaintext (default: yes).
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = on;
        self
    }
    /// Attach the CPython execution-context probes (default: yes).
    pub fn python_contexts(mut self, on: bool) -> Self {
        self.python_contexts = on;
        self
    }
    /// Attach the goroutine probes to Go executables (default: yes).
    pub fn go_tasks(mut self, on: bool) -> Self {
        self.go_tasks = on;
        self
    }
    /// Tuning of the span assembler. Its clock offset, host name (when
    /// unset) and id seed are filled in by the runtime.
    pub fn assembler(mut self, config: Config) -> Self {
        self.assembler = config;
        self
    }
    /// Seed of the trace and span ids (default: random for live tracing,
    /// 1 for replays, which are then deterministic).
    pub fn id_seed(mut self, seed: u64) -> Self {
        self.id_seed = Some(seed);
        self
    }
    /// Add a processing stage (they run in the order added, all of them
    /// before the [output filter](Self::output_filter) and the
    /// [sampler](Self::sampler), so aggregates see every trace).
    pub fn stage(mut self, stage: impl Stage + 'static) -> Self {
        self.stages.push(Box::new(stage));
        self
    }
    /// Drop traces from the output (ignored routes, other services, short
    /// requests). Runs after every [`stage`](Self::stage), before the
    /// sampler: it applies to output and export only.
    pub fn output_filter(mut self, filter: OutputFilter) -> Self {
        self.output_filter = Some(filter);
        self
    }
    /// Sample traces (head by trace id, tail by rules). Runs last, after
    /// every [`stage`](Self::stage) and the output filter: sampling applies
    /// to output and export only, never to aggregates or statistics.
    pub fn sampler(mut self, sampler: Sampler) -> Self {
        self.sampler = Some(sampler);
        self
    }
    /// Add a sink (every trace goes to every sink, in the order added).
    pub fn sink(mut self, sink: impl Sink + 'static) -> Self {
        self.sinks.push(Box::new(sink));
        self
    }
    /// Call `f` with every finished trace (on the pipeline thread: keep it
    /// short).
    pub fn on_trace(self, f: impl FnMut(&Trace) + Send + 'static) -> Self {
        self.sink(crate::sink::FnSink(f))
    }
    /// Export spans with `exporter`. Every exporter gets its own bounded
    /// queue and thread (see [`exporters::Pipeline`]): a slow one never
    /// delays the pipeline or another exporter.
    pub fn exporter(mut self, exporter: Box<dyn SpanExporter>) -> Self {
        self.exporters.push(exporter);
        self
    }
    /// Queue sizes, batching and retries of the exporters.
    pub fn export_config(mut self, config: PipelineConfig) -> Self {
        self.export_config = config;
        self
    }
    /// How long a stop waits for the exporters to send what they still hold
    /// once every pending trace has been flushed to them (default 700 ms);
    /// what is left then is dropped and counted (`dropped_at_shutdown`).
    /// The probes are detached meanwhile, on a thread of their own.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }
    /// Also write every raw event to an event log at `path` (live only),
    /// for `replay`, bug reports and golden tests.
    pub fn record_to(mut self, path: impl Into<PathBuf>) -> Self {
        self.record = Some(path.into());
        self
    }
    /// Keep a service graph and the RED aggregates
    /// ([`GraphStage`](crate::GraphStage)). It runs before every other
    /// stage, whenever it is added, so it sees every trace, including
    /// those a sampling stage drops. Read it with [`Tracer::graph`].
    pub fn graph(mut self, config: GraphConfig) -> Self {
        self.graph = Some(Shared::new(GraphStage::new(config)));
        self
    }
    /// Serve the metrics (service graph, RED, agent health: see
    /// [`crate::metrics`]) in the Prometheus text format at
    /// `http://ADDR/metrics` while the tracer runs. Keeps a graph with the
    /// default configuration unless [`TracerBuilder::graph`] set one.
    /// Binding happens in `start`/`replay`, whose error says so.
    pub fn metrics_listen(mut self, addr: SocketAddr) -> Self {
        self.metrics_listen = Some(addr);
        self
    }
    /// Also send the metrics with `exporter` (OTLP) every
    /// [`TracerBuilder::metrics_interval`] and once at the end. Keeps a
    /// graph like [`TracerBuilder::metrics_listen`].
    pub fn metrics_exporter(mut self, exporter: Box<dyn MetricsExporter>) -> Self {
        self.metrics_exporters.push(exporter);
        self
    }
    /// How often metrics exporters send (default 15 s).
    pub fn metrics_interval(mut self, every: Duration) -> Self {
        self.metrics_interval = every;
        self
    }
    #[doc(hidden)]
    pub fn capture_only(mut self, stage: Option<CaptureOnly>) -> Self {
        self.capture_only = stage;
        self
    }

    fn core(
        &mut self,
        wall_clock_offset_ns: i64,
        seed: u64,
        host: Option<String>,
        host_net_ns: Option<u64>,
    ) -> Core {
        let mut cfg = self.assembler.clone();
        cfg.wall_clock_offset_ns = wall_clock_offset_ns;
        cfg.id_seed = self.id_seed.unwrap_or(seed);
        if cfg.host_name.is_none() {
            cfg.host_name = host;
        }
        if cfg.host_net_ns.is_none() {
            cfg.host_net_ns = host_net_ns;
        }
        let export = (!self.exporters.is_empty()).then(|| {
            Pipeline::new(
                std::mem::take(&mut self.exporters),
                self.export_config.clone(),
            )
        });
        if self.graph.is_none()
            && (self.metrics_listen.is_some() || !self.metrics_exporters.is_empty())
        {
            self.graph = Some(Shared::new(GraphStage::new(GraphConfig::default())));
        }
        // Aggregating stages first (the graph before the user's), then the
        // output-only ones: the graph and metrics see every trace.
        let mut stages = std::mem::take(&mut self.stages);
        if let Some(g) = &self.graph {
            stages.insert(0, Box::new(g.clone()));
        }
        if let Some(f) = self.output_filter.take() {
            stages.push(Box::new(f));
        }
        if let Some(s) = self.sampler.take() {
            stages.push(Box::new(s));
        }
        Core {
            asm: Assembler::new(cfg),
            stages: stages
                .into_iter()
                .map(|stage| StageSlot {
                    stage,
                    taken: 0,
                    passed: 0,
                })
                .collect(),
            sinks: std::mem::take(&mut self.sinks),
            export,
            export_timeout: self.shutdown_timeout,
            traces_out: 0,
            replayed: None,
        }
    }

    /// The metrics endpoint and exporters around `control` (before the
    /// probes load, so a port in use fails fast).
    fn metrics(&mut self, control: &Arc<Control>) -> Result<Metrics, TracerError> {
        let graph = self.graph.clone();
        let read = {
            let control = control.clone();
            move || {
                let stats = control.snapshot();
                match &graph {
                    Some(g) => crate::metrics::families(Some(&g.lock()), &stats),
                    None => crate::metrics::families(None, &stats),
                }
            }
        };
        let server = match self.metrics_listen {
            Some(addr) => {
                let read = read.clone();
                let srv = MetricsServer::start(addr, crate::metrics::CONTENT_TYPE, move || {
                    crate::metrics::encode_prometheus(read())
                })
                .map_err(io_err(format!("serving metrics on {addr}")))?;
                log::info!("metrics at http://{}/metrics", srv.local_addr());
                Some(srv)
            }
            None => None,
        };
        let export = if self.metrics_exporters.is_empty() {
            None
        } else {
            Some(
                ExportLoop::start(
                    std::mem::take(&mut self.metrics_exporters),
                    self.metrics_interval,
                    read,
                )
                .map_err(io_err("starting the metrics export thread"))?,
            )
        };
        Ok(Metrics { server, export })
    }

    /// Load and attach the probes (needs root) and start tracing this host
    /// on a pipeline thread. Returns once the probes are attached.
    pub fn start(mut self) -> Result<Tracer, TracerError> {
        let mut probes = Probes::builder()
            .capture_bytes(self.capture_bytes)
            .ring_buffer_bytes(self.ring_buffer_bytes)
            .tls(self.tls)
            .contexts(self.python_contexts)
            .goroutines(self.go_tasks);
        if !self.kernel_filter.is_empty() {
            probes = probes.filter(std::mem::take(&mut self.kernel_filter));
        }
        let recorder = match &self.record {
            Some(path) => {
                Some(File::create(path).map_err(io_err(format!("creating {}", path.display())))?)
            }
            None => None,
        };
        let watch_own = !self.exporters.is_empty() || !self.metrics_exporters.is_empty();
        let offset = wall_clock_offset_ns();
        let host = host_name();
        // The agent runs in the host's network namespace: processes in
        // another one are in pods (where a proxy beside an app is a
        // sidecar).
        let host_ns = ebpf_probes::procfs::net_ns(std::process::id());
        let core = self.core(offset, random_seed(), host.clone(), host_ns);
        let control = Arc::new(Control::new()?);
        let metrics = self.metrics(&control)?;
        let probes = probes.load()?;
        let mut source = LiveSource::new(probes, self.tls);
        source.watch_own_connections(watch_own);
        if let (Some(file), Some(path)) = (recorder, &self.record) {
            let header = RecordHeader {
                version: ebpf_probes::record::FORMAT_VERSION,
                wall_clock_offset_ns: offset,
                capture_bytes: self.capture_bytes,
                host_name: host,
                host_net_ns: host_ns,
            };
            let w = RecordWriter::new(file, &header).map_err(|source| TracerError::Log {
                path: path.clone(),
                source,
            })?;
            source.record_to(w);
        }
        log::info!(
            "attached {} probes; tracing",
            source.probes().attached().len()
        );
        let capture_only = self.capture_only;
        let batch_delay = self.batch_delay;
        let mut t = Tracer::spawn(control, metrics, self.graph.take(), move |control| {
            run_live(source, core, control, capture_only, batch_delay)
        })?;
        t.live = true;
        Ok(t)
    }

    /// Run a recorded event log through the same pipeline (no root needed),
    /// on the pipeline thread, as fast as it can be read. The log's clock
    /// drives every timer, so the result is the live run's. Wait for the
    /// end with [`Tracer::wait`].
    pub fn replay(mut self, path: impl AsRef<Path>) -> Result<Tracer, TracerError> {
        let path = path.as_ref().to_owned();
        let log_err = |source| TracerError::Log {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(|e| log_err(RecordError::Io(e)))?;
        let reader = RecordReader::new(file).map_err(log_err)?;
        let header = reader.header.clone();
        let core = self.core(
            header.wall_clock_offset_ns,
            1,
            header.host_name.clone(),
            header.host_net_ns,
        );
        let control = Arc::new(Control::new()?);
        let metrics = self.metrics(&control)?;
        let source = ReplaySource::new(reader);
        Tracer::spawn(control, metrics, self.graph.take(), move |control| {
            run_replay(source, path, core, control)
        })
    }
}

/// A running tracer. Dropping it stops the pipeline and detaches the probes
/// (what is pending is not flushed: use [`Tracer::shutdown`]).
pub struct Tracer {
    control: Arc<Control>,
    thread: Option<JoinHandle<Result<StatsSnapshot, TracerError>>>,
    metrics: Metrics,
    graph: Option<Shared<GraphStage>>,
    /// Tracing this host (not replaying a log).
    live: bool,
}

/// The metrics endpoint and export thread of a tracer: they outlive the
/// pipeline by the final export.
struct Metrics {
    server: Option<MetricsServer>,
    export: Option<ExportLoop>,
}

impl Metrics {
    fn finish(&mut self) {
        if let Some(mut e) = self.export.take() {
            e.finish();
        }
        if let Some(s) = self.server.take() {
            s.stop();
        }
    }
}

/// Stops a tracer from another thread (a signal handler thread, a UI).
#[derive(Clone)]
pub struct StopHandle(Arc<Control>);

impl StopHandle {
    /// Ask the pipeline to stop: it flushes and detaches, then
    /// [`Tracer::wait`] returns.
    pub fn stop(&self) {
        self.0.request_stop();
    }
}

impl Tracer {
    pub fn builder() -> TracerBuilder {
        TracerBuilder::default()
    }

    fn spawn(
        control: Arc<Control>,
        metrics: Metrics,
        graph: Option<Shared<GraphStage>>,
        run: impl FnOnce(Arc<Control>) -> Result<StatsSnapshot, TracerError> + Send + 'static,
    ) -> Result<Tracer, TracerError> {
        let c = control.clone();
        let thread = std::thread::Builder::new()
            .name("zt-pipeline".into())
            .spawn(move || {
                let result = run(c.clone());
                c.finished();
                result
            })
            .map_err(io_err("starting the pipeline thread"))?;
        Ok(Tracer {
            control,
            thread: Some(thread),
            metrics,
            graph,
            live: false,
        })
    }

    /// The service graph stage, when the builder asked for one
    /// ([`TracerBuilder::graph`], or metrics): lock it to read the graph
    /// (`.lock().totals()`, `.window()`); the handle stays valid after the
    /// tracer finished.
    /// Change what the kernel probes trace (pid, comm, executable, cgroup,
    /// port), while running, with no reload: see
    /// [`ebpf_probes::Probes::set_filter`]. Returns once the pipeline
    /// thread has written it to the kernel. Live tracers only.
    pub fn set_kernel_filter(&self, filter: ebpf_probes::Filter) -> Result<(), TracerError> {
        if !self.live {
            return Err(TracerError::NotRunning(
                "a replayed log has no kernel filter to change",
            ));
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        *self.control.filter_req.lock().unwrap() = Some((filter, tx));
        self.control.wake();
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(r) => Ok(r?),
            Err(_) => Err(TracerError::NotRunning(
                "the pipeline did not take the filter (stopped?)",
            )),
        }
    }

    pub fn graph(&self) -> Option<Shared<GraphStage>> {
        self.graph.clone()
    }

    /// Where the metrics endpoint listens, if it does.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.server.as_ref().map(MetricsServer::local_addr)
    }

    /// Every counter, as of the last refresh (at most about a second old
    /// while running; final once the tracer has finished).
    pub fn stats(&self) -> StatsSnapshot {
        self.control.snapshot()
    }

    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.control.clone())
    }

    /// Whether the pipeline has finished (a replay reached the end of its
    /// log, it was stopped, or it failed).
    pub fn is_finished(&self) -> bool {
        self.control.is_finished()
    }

    /// Block until the pipeline finishes or `timeout` (if any) passes;
    /// returns whether it finished.
    pub fn wait_timeout(&self, timeout: Option<Duration>) -> bool {
        self.control.wait_finished(timeout)
    }

    /// Wait for the pipeline to finish by itself (the end of a replayed
    /// log, a [`StopHandle::stop`], or an error) and return the final
    /// statistics.
    pub fn wait(mut self) -> Result<StatsSnapshot, TracerError> {
        self.join()
    }

    /// Stop: read what the kernel still holds, detach every probe, finish
    /// every open span (marked incomplete), run the rest through the stages
    /// and sinks, let the exporters send what they hold (bounded), and
    /// return the final statistics.
    pub fn shutdown(mut self) -> Result<StatsSnapshot, TracerError> {
        self.control.request_stop();
        self.join()
    }

    fn join(&mut self) -> Result<StatsSnapshot, TracerError> {
        let result = match self.thread.take() {
            Some(t) => t.join().map_err(|_| TracerError::Panicked),
            None => Ok(Ok(self.control.snapshot())),
        };
        // The final values go out once the pipeline has finished.
        self.metrics.finish();
        result?
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.control.abandon.store(true, Ordering::Release);
            self.control.request_stop();
            let _ = t.join();
        }
    }
}

/// What the handle and the pipeline thread share.
struct Control {
    stop: AtomicBool,
    /// Set when the handle is dropped without `shutdown`: stop without
    /// flushing.
    abandon: AtomicBool,
    /// An eventfd the pipeline polls beside the ring buffer.
    waker: OwnedFd,
    snapshot: Mutex<StatsSnapshot>,
    done: Mutex<bool>,
    done_cv: Condvar,
    /// A kernel filter change for the pipeline thread to apply, and where
    /// to say how it went.
    filter_req: Mutex<Option<FilterRequest>>,
}

type FilterRequest = (
    ebpf_probes::Filter,
    std::sync::mpsc::SyncSender<Result<(), ebpf_probes::FilterError>>,
);

impl Control {
    fn new() -> Result<Control, TracerError> {
        // SAFETY: eventfd has no memory preconditions; the fd is owned below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io_err("creating an eventfd")(io::Error::last_os_error()));
        }
        Ok(Control {
            stop: AtomicBool::new(false),
            abandon: AtomicBool::new(false),
            // SAFETY: fd is a fresh descriptor nobody else owns.
            waker: unsafe { OwnedFd::from_raw_fd(fd) },
            snapshot: Mutex::new(StatsSnapshot::default()),
            done: Mutex::new(false),
            done_cv: Condvar::new(),
            filter_req: Mutex::new(None),
        })
    }

    fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.wake();
    }

    /// Wake the pipeline thread (it polls the eventfd beside the ring).
    fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writing 8 bytes from a valid u64 to our eventfd.
        unsafe {
            libc::write(
                self.waker.as_raw_fd(),
                (&raw const one).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn drain_waker(&self) {
        let mut v: u64 = 0;
        // SAFETY: reading 8 bytes into a valid u64 from our non-blocking
        // eventfd (EAGAIN when nothing was written).
        unsafe {
            libc::read(
                self.waker.as_raw_fd(),
                (&raw mut v).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }

    fn publish(&self, s: StatsSnapshot) {
        *self.snapshot.lock().unwrap_or_else(|e| e.into_inner()) = s;
    }

    fn snapshot(&self) -> StatsSnapshot {
        self.snapshot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn finished(&self) {
        *self.done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.done_cv.notify_all();
    }

    fn is_finished(&self) -> bool {
        *self.done.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait_finished(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        while !*done {
            match deadline {
                None => {
                    done = self.done_cv.wait(done).unwrap_or_else(|e| e.into_inner());
                }
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    done = self
                        .done_cv
                        .wait_timeout(done, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
        true
    }
}

struct StageSlot {
    stage: Box<dyn Stage>,
    /// Traces given to the stage, and traces it passed on (at once or later).
    taken: u64,
    passed: u64,
}

/// The assembler, stages and sinks: what live tracing and replay share.
struct Core {
    asm: Assembler,
    stages: Vec<StageSlot>,
    sinks: Vec<Box<dyn Sink>>,
    export: Option<Pipeline>,
    /// How long `finish` waits for the exporters.
    export_timeout: Duration,
    traces_out: u64,
    /// Replay: (events read, undecodable records).
    replayed: Option<(u64, u64)>,
}

/// What `Core::finish` found and how long it took.
#[derive(Default)]
struct Finished {
    /// Flushing the assembler and the stages to the sinks and exporters.
    flush: Duration,
    /// Waiting for the exporters.
    export: Duration,
    /// Spans in the export queues after the flush, and those of them still
    /// unsent at the deadline.
    export_pending: u64,
    export_dropped: u64,
}

impl Core {
    /// When the assembler or a stage next has work to do.
    fn deadline(&self) -> Option<MonoNanos> {
        self.stages
            .iter()
            .filter_map(|s| s.stage.poll_timeout())
            .chain(self.asm.poll_timeout())
            .min()
    }

    /// Time is `now`: finished traces through the stages to the sinks.
    fn advance(&mut self, now: MonoNanos) -> Result<(), SinkError> {
        self.asm.handle_timeout(now);
        self.drain(now)?;
        for i in 0..self.stages.len() {
            self.stages[i].stage.handle_timeout(now);
            self.release(i, now)?;
        }
        Ok(())
    }

    fn drain(&mut self, now: MonoNanos) -> Result<(), SinkError> {
        while let Some(Output::Trace(t)) = self.asm.poll() {
            self.run_from(0, t, now)?;
        }
        Ok(())
    }

    /// Traces stage `i` releases, through the stages after it.
    fn release(&mut self, i: usize, now: MonoNanos) -> Result<(), SinkError> {
        while let Some(t) = self.stages[i].stage.poll() {
            self.stages[i].passed += 1;
            self.run_from(i + 1, t, now)?;
        }
        Ok(())
    }

    fn run_from(&mut self, first: usize, mut t: Trace, now: MonoNanos) -> Result<(), SinkError> {
        for slot in &mut self.stages[first..] {
            slot.taken += 1;
            match slot.stage.process(t, now) {
                Some(next) => {
                    slot.passed += 1;
                    t = next;
                }
                None => return Ok(()),
            }
        }
        self.traces_out += 1;
        let t = Arc::new(t);
        for sink in &mut self.sinks {
            sink.consume(&t)?;
        }
        if let Some(p) = &self.export {
            // Never blocks: a full queue drops and counts.
            p.try_send_trace(&t);
        }
        Ok(())
    }

    /// End of input: close what is open, let every stage decide about what
    /// it holds, shut the sinks down, then let the exporters send what they
    /// hold until the export deadline.
    fn finish(&mut self, now: MonoNanos) -> (Result<(), SinkError>, Finished) {
        let started = Instant::now();
        let mut first_err = None;
        self.asm.flush();
        if let Err(e) = self.drain(now) {
            first_err.get_or_insert(e);
        }
        for i in 0..self.stages.len() {
            self.stages[i].stage.flush();
            if let Err(e) = self.release(i, now) {
                first_err.get_or_insert(e);
            }
        }
        for sink in &mut self.sinks {
            if let Err(e) = sink.shutdown() {
                first_err.get_or_insert(e);
            }
        }
        let mut f = Finished {
            flush: started.elapsed(),
            ..Finished::default()
        };
        if let Some(p) = &mut self.export {
            let before = p.stats();
            f.export_pending = before.queued + before.in_flight;
            let waited = Instant::now();
            let after = p.shutdown(self.export_timeout);
            f.export = waited.elapsed();
            f.export_dropped = after.dropped_at_shutdown - before.dropped_at_shutdown;
        }
        (first_err.map_or(Ok(()), Err), f)
    }

    fn report(&self, w: &mut StatsWriter) {
        stats::report_assembler(&self.asm.stats(), self.asm.pending_spans(), w);
        stats::report_mesh(self.asm.mesh(), w);
        stats::report_tables(&self.asm.table_sizes(), w);
        for slot in &self.stages {
            let name = slot.stage.name();
            w.set_labelled(&defs::STAGE_TRACES, format!("{name}:in"), slot.taken as f64);
            w.set_labelled(
                &defs::STAGE_TRACES,
                format!("{name}:out"),
                slot.passed as f64,
            );
            slot.stage.report(w);
        }
        w.set(&defs::TRACES_OUT, self.traces_out as f64);
        for sink in &self.sinks {
            sink.report(w);
        }
        if let Some(p) = &self.export {
            stats::report_export(&p.stats(), w);
        }
        if let Some((events, undecodable)) = self.replayed {
            w.set(&defs::EVENTS, events as f64);
            w.set(&defs::EVENTS_UNDECODABLE, undecodable as f64);
        }
    }
}

fn snapshot_live(
    src: &LiveSource,
    core: &Core,
    maps: &[ebpf_probes::MapFill],
    bpf_mapped: Option<u64>,
    started: Instant,
) -> StatsSnapshot {
    let mut w = StatsWriter::new();
    stats::report_source(&src.stats(), &mut w);
    stats::report_kernel(&src.probes().drops(), &mut w);
    stats::report_maps(maps, &mut w);
    core.report(&mut w);
    stats::report_cpu(&mut w);
    stats::Memory::read(bpf_mapped).report(&mut w);
    w.set(&defs::UPTIME, started.elapsed().as_secs_f64());
    w.finish()
}

/// How long to let records queue after a wake-up that brought `n` records,
/// `since` after the previous wake-up that brought any: the time
/// [`BATCH_RECORDS`] take at that rate, from [`BATCH_DELAY`] to `max`. A
/// trickle (a Flask service, ~10 events per 2 ms) waits `max`: each batch
/// costs far more than its records replayed would (BENCHMARKS.md,
/// "Batching the pipeline's wake-ups", "One wake-up per batch").
fn batch_delay(n: usize, since: Duration, max: Duration) -> Duration {
    let n = u32::try_from(n.max(1)).unwrap_or(u32::MAX);
    let want = since.saturating_mul(BATCH_RECORDS as u32) / n;
    want.clamp(BATCH_DELAY.min(max), max)
}

fn run_live(
    mut src: LiveSource,
    mut core: Core,
    control: Arc<Control>,
    capture_only: Option<CaptureOnly>,
    max_batch_delay: Duration,
) -> Result<StatsSnapshot, TracerError> {
    let started = Instant::now();
    let mut published = started;
    let mut maps = Vec::new();
    let mut bpf_mapped = None;
    let mut maps_counted: Option<Instant> = None;
    let ring = |e| io_err("reading the ring buffer")(e);
    let mut last_records = Instant::now();
    let result = (|| -> Result<(), TracerError> {
        while !control.stopping() {
            let mut wait = MAX_IDLE;
            let now = monotonic_ns();
            if let Some(d) = core.deadline() {
                wait = wait.min(Duration::from_nanos(d.saturating_sub(now)));
            }
            if let Some(d) = src.next_deadline() {
                wait = wait.min(d.saturating_duration_since(Instant::now()));
            }
            let n = match capture_only {
                Some(CaptureOnly::Drain) => src.drain_raw(wait.min(BATCH_DELAY * 10)),
                Some(CaptureOnly::Decode) => src.poll(wait.min(BATCH_DELAY * 10), drop),
                None => src.poll_with_waker(wait, Some(control.waker.as_fd()), |ev| {
                    core.asm.handle_event(ev)
                }),
            }
            .map_err(ring)?;
            let since = if n > 0 {
                let t = Instant::now();
                t.saturating_duration_since(std::mem::replace(&mut last_records, t))
            } else {
                Duration::ZERO
            };
            control.drain_waker();
            let req = control.filter_req.lock().unwrap().take();
            if let Some((filter, reply)) = req {
                let _ = reply.send(src.probes_mut().set_filter(&filter));
            }
            core.advance(monotonic_ns())?;
            if maps_counted.is_none_or(|t| t.elapsed() >= MAPS_EVERY) {
                maps = src.probes().map_fill();
                bpf_mapped = stats::bpf_mapped_bytes();
                maps_counted = Some(Instant::now());
                log_tables(&core, &maps);
            }
            if published.elapsed() >= PUBLISH_EVERY {
                control.publish(snapshot_live(&src, &core, &maps, bpf_mapped, started));
                published = Instant::now();
            }
            if n > 0 && !max_batch_delay.is_zero() && !control.stopping() {
                let d = batch_delay(n, since, max_batch_delay);
                src.probes_mut()
                    .wait_batch(d, Some(control.waker.as_fd()))
                    .map_err(ring)?;
            }
        }
        Ok(())
    })();
    if control.abandon.load(Ordering::Acquire) {
        return result.map(|()| control.snapshot());
    }
    // Stop: take what the kernel still holds, then detach (on a thread of
    // its own: the kernel takes tens of milliseconds per attachment, see
    // `Probes`' Drop) while every pending trace is flushed to the sinks and
    // the exporters get what is left of the deadline.
    let stop = Instant::now();
    let mut tail = Ok(());
    let mut ring_tail = 0u64;
    if capture_only.is_none() {
        loop {
            match src.poll(Duration::ZERO, |ev| core.asm.handle_event(ev)) {
                Ok(0) => break,
                Ok(n) => ring_tail += n as u64,
                Err(e) => {
                    tail = Err(ring(e));
                    break;
                }
            }
        }
    }
    let flushed = src.finish().map_err(io_err("flushing the event log"));
    // The last look at the source's and the kernel's counters.
    let source_stats = src.stats();
    let drops = src.probes().drops();
    let maps = src.probes().map_fill();
    let pending_spans = core.asm.pending_spans();
    let open_spans = core.asm.open_spans();
    // The footprint while tracing: read before the ring is unmapped.
    let memory = stats::Memory::read(stats::bpf_mapped_bytes());
    let detaching = Instant::now();
    let detacher = std::thread::Builder::new()
        .name("zt-detach".into())
        .spawn(move || {
            drop(src);
            detaching.elapsed()
        });
    let (finished, times) = core.finish(monotonic_ns());
    // Without a thread, spawn dropped (detached) the source on this one.
    let detach = match detacher {
        Ok(t) => t.join().unwrap_or_default(),
        Err(_) => detaching.elapsed(),
    };
    let mut w = StatsWriter::new();
    stats::report_source(&source_stats, &mut w);
    stats::report_kernel(&drops, &mut w);
    stats::report_maps(&maps, &mut w);
    core.report(&mut w);
    for (phase, d) in [
        ("total", stop.elapsed()),
        ("detach", detach),
        ("flush", times.flush),
        ("export", times.export),
    ] {
        w.set_labelled(&defs::SHUTDOWN_SECONDS, phase, d.as_secs_f64());
    }
    for (what, n) in [
        ("ring_events", ring_tail),
        ("spans", pending_spans as u64),
        ("open_spans", open_spans as u64),
        ("export_spans", times.export_pending),
        ("export_dropped", times.export_dropped),
    ] {
        w.set_labelled(&defs::SHUTDOWN_PENDING, what, n as f64);
    }
    stats::report_cpu(&mut w);
    memory.report(&mut w);
    w.set(&defs::UPTIME, started.elapsed().as_secs_f64());
    let snap = w.finish();
    control.publish(snap.clone());
    result?;
    tail?;
    flushed?;
    finished?;
    Ok(snap)
}

/// The tables' sizes, at debug level (a soak reads them from the log).
fn log_tables(core: &Core, maps: &[ebpf_probes::MapFill]) {
    if !log::log_enabled!(log::Level::Debug) {
        return;
    }
    let t = core.asm.table_sizes();
    let maps: Vec<String> = maps
        .iter()
        .map(|m| format!("{}={}/{}", m.name, m.entries, m.capacity))
        .collect();
    log::debug!(
        "tables: reorder={} connections={} spans={} processes={} exited_processes={} emitted_ids={} timeouts={}; maps: {}",
        t.reorder,
        t.connections,
        t.spans,
        t.processes,
        t.exited_processes,
        t.emitted_ids,
        t.timeouts,
        maps.join(" ")
    );
}

fn run_replay(
    mut src: ReplaySource<File>,
    path: PathBuf,
    mut core: Core,
    control: Arc<Control>,
) -> Result<StatsSnapshot, TracerError> {
    let started = Instant::now();
    let mut clock = 0;
    let mut events = 0u64;
    let mut result = Ok(());
    loop {
        if control.stopping() {
            break;
        }
        let ev = match src.next_event() {
            Ok(Some(ev)) => ev,
            Ok(None) => break,
            Err(source) => {
                result = Err(TracerError::Log {
                    path: path.clone(),
                    source,
                });
                break;
            }
        };
        events += 1;
        clock = clock.max(ev.order_ts());
        core.asm.handle_event(ev);
        if let Err(e) = core.advance(clock) {
            result = Err(e.into());
            break;
        }
    }
    core.replayed = Some((events, src.decode_errors));
    let (finished, _) = core.finish(clock);
    let mut w = StatsWriter::new();
    core.report(&mut w);
    w.set(&defs::UPTIME, started.elapsed().as_secs_f64());
    let snap = w.finish();
    control.publish(snap.clone());
    result?;
    finished?;
    Ok(snap)
}

fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    if let Ok(mut f) = File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    u64::from_ne_bytes(b) ^ monotonic_ns()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_trickle_waits_the_longest() {
        // Flask: ~10 records 2 ms after the last ones (5k/s): 256 would take
        // 51 ms, past the 10 ms bound.
        assert_eq!(batch_delay(10, 2 * MS, MAX_BATCH_DELAY), MAX_BATCH_DELAY);
        // The first record after a second of idle.
        assert_eq!(batch_delay(1, 1000 * MS, MAX_BATCH_DELAY), MAX_BATCH_DELAY);
    }

    #[test]
    fn a_steady_flow_waits_for_about_a_batch() {
        // 512 records in 8 ms (64k/s): 1024 more take 16 ms.
        assert_eq!(batch_delay(512, 8 * MS, MAX_BATCH_DELAY), 16 * MS);
        // 4096 in 1 ms (a backlog drained): 1024 take 0.25 ms, under the
        // shortest wait (which the ring filling up ends sooner).
        assert_eq!(batch_delay(4096, MS, MAX_BATCH_DELAY), BATCH_DELAY);
        // n = 0 never happens (no wait then), and must not divide by zero.
        assert_eq!(batch_delay(0, MS, MAX_BATCH_DELAY), MAX_BATCH_DELAY);
    }

    #[test]
    fn the_wait_never_exceeds_its_longest() {
        // A longest wait of 1 ms holds even under BATCH_DELAY; 0 is none.
        assert_eq!(batch_delay(1, 1000 * MS, MS), MS);
        assert_eq!(batch_delay(1, 1000 * MS, Duration::ZERO), Duration::ZERO);
    }
}
