//! `run`, `record` and `replay`: command-line options into a
//! [`zt_trace::Tracer`], and its summary on stderr.

use crate::graph::{render, GraphFormat};
use crate::output::Printer;
use crate::settings::{Assemble, Settings};
use crate::Stage;
use anyhow::{Context, Result};
use span_core::Config;
use std::path::Path;
use std::time::Duration;
use zt_trace::stages::{OutputFilter, Sampler};
use zt_trace::{CaptureOnly, GraphStage, Shared, StatsSnapshot, StopHandle, Tracer, TracerBuilder};

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
        query_redaction: span_core::QueryRedaction {
            keep: a.keep_query,
            extra: a.redact_query_params.clone(),
        },
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
        .batch_delay(Duration::from_millis(c.batch_delay_ms))
        .tls(c.tls)
        .python_contexts(c.python_contexts)
        .go_tasks(c.go_tasks)
        .assembler(assembler_config(&s.assemble))
        .sink(Printer::new(s.output.format))
        .capture_only(match stage {
            Stage::Drain => Some(CaptureOnly::Drain),
            Stage::Decode => Some(CaptureOnly::Decode),
            Stage::Full => None,
        });
    let filter = c.kernel_filter();
    if !filter.is_empty() {
        log::info!("in-kernel filter: {filter:?}");
        b = b.kernel_filter(filter);
    }
    let (exporters, config) = crate::export::exporters(&s.export)?;
    for e in exporters {
        log::info!("exporting spans with {}", e.name());
        b = b.exporter(e);
    }
    b = b
        .export_config(config)
        .shutdown_timeout(Duration::from_millis(s.export.shutdown_timeout_ms));
    if let Some(path) = &s.output.record {
        b = b.record_to(path);
        log::info!("recording events to {}", path.display());
    }
    b = with_graph(b, s)?;
    output_stages(b, s)
}

/// The output filter and the sampler, from validated settings. The builder
/// runs them after every aggregating stage: they change what is output and
/// exported, never what is counted.
pub fn output_stages(mut b: TracerBuilder, s: &Settings) -> Result<TracerBuilder> {
    for w in s.warnings() {
        log::warn!("{w}");
    }
    let filter = s.filter.output_config()?;
    if !filter.is_empty() {
        b = b.output_filter(OutputFilter::new(filter));
    }
    if let Some(cfg) = s.sampling.config()? {
        log::info!(
            "sampling: {} of traces ({}), {} service ratio(s){}{}",
            cfg.ratio,
            cfg.algorithm,
            cfg.service_ratios.len(),
            if cfg.parent_based {
                ", inbound traceparent flags followed"
            } else {
                ""
            },
            if cfg.has_tail_rules() {
                ", keep rules on"
            } else {
                ""
            }
        );
        b = b.sampler(Sampler::new(cfg)?);
    }
    Ok(b)
}

/// The graph stage, when the settings need one (`--graph`, metrics), and
/// the metrics endpoint and exporters.
fn with_graph(mut b: TracerBuilder, s: &Settings) -> Result<TracerBuilder> {
    let m = &s.metrics;
    if s.output.graph.is_some() || m.listen.is_some() || m.export {
        b = b.graph(s.graph.config());
    }
    if let Some(listen) = &m.listen {
        let addr = zt_trace::metrics::parse_listen_addr(listen)
            .map_err(|e| anyhow::anyhow!("--metrics-listen: {e}"))?;
        b = b.metrics_listen(addr);
    }
    if m.export {
        for e in crate::export::metrics_exporters(&s.export)? {
            log::info!("exporting metrics with {}", e.name());
            b = b.metrics_exporter(e);
        }
        b = b.metrics_interval(Duration::from_secs(m.export_interval_s));
    }
    Ok(b)
}

/// Write the graph to `--graph FILE` (JSON).
fn write_graph(
    graph: Option<Shared<GraphStage>>,
    stats: &StatsSnapshot,
    s: &Settings,
) -> Result<()> {
    if let (Some(g), Some(path)) = (graph, &s.output.graph) {
        let json = g.lock().totals().with_mesh(&stats.mesh).to_json();
        std::fs::write(path, json + "\n")
            .with_context(|| format!("writing the graph to {}", path.display()))?;
        log::info!("service graph written to {}", path.display());
    }
    Ok(())
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
    crate::release_freed_memory();
    log::info!("tracing (Ctrl-C to stop)");
    stop_on_signals(tracer.stop_handle())?;
    tracer.wait_timeout(s.output.duration_s.map(Duration::from_secs_f64));
    let graph = tracer.graph();
    let stats = tracer.shutdown()?;
    print_summary(&stats);
    write_graph(graph, &stats, s)
}

pub fn replay(path: &Path, s: &Settings) -> Result<()> {
    let b = Tracer::builder()
        .assembler(assembler_config(&s.assemble))
        .sink(Printer::new(s.output.format));
    let tracer = output_stages(with_graph(b, s)?, s)?.replay(path)?;
    stop_on_signals(tracer.stop_handle())?;
    let graph = tracer.graph();
    let stats = tracer.wait()?;
    print_summary(&stats);
    write_graph(graph, &stats, s)
}

/// `zt-trace graph`: attach for the duration (or replay `from`), then print
/// the graph.
pub fn graph(
    s: &Settings,
    from: Option<&Path>,
    format: GraphFormat,
    window: bool,
    out: Option<&Path>,
) -> Result<()> {
    // A graph already drawn (`--graph FILE.json`, `--format json`): draw
    // it again in another form.
    if let Some(path) = from {
        let mut head = [0u8; 1];
        let is_json = std::fs::File::open(path)
            .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
            .is_ok_and(|n| n == 1 && head[0] == b'{');
        if is_json {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let g: zt_trace::GraphSnapshot = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a graph in JSON", path.display()))?;
            return emit(&render(&g, format), out);
        }
    }
    let tracer = match from {
        Some(path) => {
            let t = Tracer::builder()
                .assembler(assembler_config(&s.assemble))
                .graph(s.graph.config())
                .replay(path)?;
            stop_on_signals(t.stop_handle())?;
            t
        }
        None => {
            let t = builder(s, Stage::Full)?.graph(s.graph.config()).start()?;
            crate::release_freed_memory();
            log::info!(
                "tracing (Ctrl-C to stop); the graph comes after {}s",
                s.output.duration_s.unwrap_or(0.0)
            );
            stop_on_signals(t.stop_handle())?;
            t.wait_timeout(s.output.duration_s.map(Duration::from_secs_f64));
            t
        }
    };
    let graph = tracer.graph().context("the tracer kept no graph")?;
    let stats = if from.is_some() {
        tracer.wait()?
    } else {
        tracer.shutdown()?
    };
    print_summary(&stats);
    let g = graph.lock();
    let snap = if window { g.window() } else { g.totals() };
    let text = render(&snap.with_mesh(&stats.mesh), format);
    emit(&text, out)
}

/// `text` to `out`, or stdout.
fn emit(text: &str, out: Option<&Path>) -> Result<()> {
    match out {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?,
        None => {
            use std::io::Write;
            let mut o = std::io::stdout().lock();
            o.write_all(text.as_bytes())?;
            o.flush()?;
        }
    }
    Ok(())
}
