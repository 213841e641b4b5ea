//! `run`, `record` and `replay`: command-line options into a
//! [`zt_trace::Tracer`], and its summary on stderr.

use crate::output::Printer;
use crate::settings::{Assemble, Settings};
use crate::Stage;
use anyhow::{Context, Result};
use span_core::Config;
use std::path::Path;
use std::time::Duration;
use zt_trace::{CaptureOnly, StatsSnapshot, StopHandle, Tracer, TracerBuilder};

/// The assembler's tuning from the (validated) settings.
pub fn assembler_config(a: &Assemble) -> Config {
    Config {
        raw_sql: a.raw_sql,
        promote_inferred_links: a.promote_inferred_links,
        trace_linger_ns: a.trace_linger_ms * 1_000_000,
        request_timeout_ns: a.request_timeout_s * 1_000_000_000,
        service_rules: a
            .service_names
            .iter()
            .filter_map(|r| span_core::naming::ServiceRule::parse(r).ok())
            .collect(),
        keep_command_line: a.keep_command_line,
        ..Config::default()
    }
}

/// A tracer configured from validated settings (capture, assembly,
/// output, exporters, recording), not started.
pub fn builder(s: &Settings, stage: Stage) -> Result<TracerBuilder> {
    let c = &s.capture;
    let mut b = Tracer::builder()
        .capture_bytes(c.capture_bytes)
        .ring_buffer_bytes(c.ring_buffer_mib.saturating_mul(1 << 20))
        .tls(c.tls)
        .python_contexts(c.python_contexts)
        .assembler(assembler_config(&s.assemble))
        .sink(Printer::new(s.output.format))
        .capture_only(match stage {
            Stage::Drain => Some(CaptureOnly::Drain),
            Stage::Decode => Some(CaptureOnly::Decode),
            Stage::Full => None,
        });
    if !c.pids.is_empty() {
        b = b.pids(c.pids.clone());
    }
    let (exporters, config) = crate::export::exporters(&s.export)?;
    for e in exporters {
        log::info!("exporting spans with {}", e.name());
        b = b.exporter(e);
    }
    b = b.export_config(config);
    if let Some(path) = &s.output.record {
        b = b.record_to(path);
        log::info!("recording events to {}", path.display());
    }
    Ok(b)
}

/// SIGINT and SIGTERM stop the tracer (from a thread of their own).
pub fn stop_on_signals(stop: StopHandle) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("installing signal handlers")?;
    std::thread::Builder::new()
        .name("zt-signals".into())
        .spawn(move || {
            if signals.forever().next().is_some() {
                stop.stop();
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}

/// The exit summary, on stderr.
pub fn print_summary(stats: &StatsSnapshot) {
    for line in stats.summary_lines() {
        eprintln!("zt-trace: {line}");
    }
}

pub fn run(s: &Settings, stage: Stage) -> Result<()> {
    let tracer = builder(s, stage)?.start()?;
    log::info!("tracing (Ctrl-C to stop)");
    stop_on_signals(tracer.stop_handle())?;
    tracer.wait_timeout(s.output.duration_s.map(Duration::from_secs_f64));
    let stats = tracer.shutdown()?;
    print_summary(&stats);
    Ok(())
}

pub fn replay(path: &Path, s: &Settings) -> Result<()> {
    let tracer = Tracer::builder()
        .assembler(assembler_config(&s.assemble))
        .sink(Printer::new(s.output.format))
        .replay(path)?;
    stop_on_signals(tracer.stop_handle())?;
    let stats = tracer.wait()?;
    print_summary(&stats);
    Ok(())
}
