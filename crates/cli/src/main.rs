//! `zt-trace`: zero-instrumentation distributed tracing with eBPF.

mod demo;
mod export;
mod output;
mod render;
mod run;

use clap::{Args, Parser, Subcommand};
use output::OutputFormat;
use std::path::PathBuf;
use std::process::ExitCode;

/// The agent allocates and frees many small objects per event (spans,
/// attributes, parsed heads); glibc's allocator spent about a third of the
/// agent's CPU on that under load (perf, bench/overhead.sh). mimalloc's
/// per-thread free lists cost much less (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "zt-trace",
    version,
    about = "Trace requests across services with eBPF: no code change, no restart.",
    long_about = "zt-trace attaches eBPF probes to socket syscalls, parses HTTP/1.1 (and more) \
from the bytes services exchange, and links the requests into end-to-end traces across \
threads, processes and services. It needs root.\n\n\
Without a subcommand it runs `zt-trace run`."
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
    Run(RunArgs),
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
    /// Start demo services on loopback (python3), send them requests, and
    /// print their traces. Needs root.
    Demo {
        /// Requests the load generator sends.
        #[arg(long, default_value_t = 12)]
        requests: usize,
        #[arg(long, value_enum, default_value = "tree")]
        output: OutputFormat,
    },
    /// Read an event log written by `record` (or `run --record`) and print its
    /// traces. Needs no root.
    Replay {
        /// Event log to read.
        file: PathBuf,
        #[command(flatten)]
        assemble: AssembleArgs,
        #[arg(long, value_enum, default_value = "tree")]
        output: OutputFormat,
    },
}

#[derive(Args, Debug, Clone)]
struct CaptureArgs {
    /// Payload bytes captured per syscall (max 8192).
    #[arg(long, default_value_t = 4096, value_name = "BYTES")]
    capture_bytes: u32,
    /// Trace only these process ids (repeatable; default: every process but zt-trace).
    #[arg(long = "pid", value_name = "PID")]
    pids: Vec<u32>,
    /// Kernel ring buffer size in MiB (power of two).
    #[arg(long, default_value_t = 16, value_name = "MIB")]
    ring_buffer_mib: u32,
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
    #[arg(long, default_value_t = 200, value_name = "MS")]
    trace_linger_ms: u64,
    /// Close requests that got no response after this long (s).
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    request_timeout_s: u64,
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
    #[arg(long, default_value_t = 8192, value_name = "SPANS")]
    export_queue: usize,
}

#[derive(Args, Debug, Clone)]
struct RunArgs {
    #[command(flatten)]
    capture: CaptureArgs,
    #[command(flatten)]
    assemble: AssembleArgs,
    #[command(flatten)]
    export: ExportArgs,
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

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .target(env_logger::Target::Stderr)
        .format_timestamp_millis()
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        None => run::run(cli.run),
        Some(Command::Run(args)) => run::run(args),
        Some(Command::Record {
            file,
            capture,
            duration,
        }) => run::run(RunArgs {
            capture,
            assemble: AssembleArgs {
                raw_sql: false,
                promote_inferred_links: false,
                trace_linger_ms: 200,
                request_timeout_s: 30,
            },
            export: ExportArgs::default(),
            output: OutputFormat::None,
            record: Some(file),
            duration,
            stage: Stage::Full,
        }),
        Some(Command::Demo { requests, output }) => demo::demo(requests, output),
        Some(Command::Replay {
            file,
            assemble,
            output,
        }) => run::replay(&file, &assemble, output),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zt-trace: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
