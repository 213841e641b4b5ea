//! The live agent loop and replay.

use crate::output::{OutputFormat, Printer};
use crate::{AssembleArgs, RunArgs, Stage};
use anyhow::{Context, Result};
use ebpf_probes::record::{RecordHeader, RecordReader, RecordWriter};
use ebpf_probes::{monotonic_ns, wall_clock_offset_ns, LiveSource, Probes, ReplaySource};
use exporters::pipeline::Pipeline;
use span_core::{Assembler, Config, Output, Stats};
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn assembler_config(
    a: &AssembleArgs,
    wall_clock_offset_ns: i64,
    seed: u64,
    host: Option<String>,
) -> Config {
    Config {
        wall_clock_offset_ns,
        raw_sql: a.raw_sql,
        promote_inferred_links: a.promote_inferred_links,
        trace_linger_ns: a.trace_linger_ms * 1_000_000,
        request_timeout_ns: a.request_timeout_s * 1_000_000_000,
        id_seed: seed,
        host_name: host,
        ..Config::default()
    }
}

fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    if let Ok(mut f) = File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    u64::from_ne_bytes(b) ^ monotonic_ns()
}

fn drain(
    asm: &mut Assembler,
    printer: &mut Printer,
    export: Option<&Pipeline>,
    traces: &mut u64,
) -> Result<()> {
    while let Some(out) = asm.poll() {
        match out {
            Output::Trace(t) => {
                *traces += 1;
                printer.trace(&t).context("writing to stdout")?;
                if let Some(p) = export {
                    // Never blocks: a full queue drops and counts.
                    p.try_send_batch(t.spans);
                }
            }
        }
    }
    Ok(())
}

fn print_assembler_stats(s: &Stats) {
    eprintln!(
        "zt-trace: spans {} started, {} emitted in {} traces; links: {} tcp-seq, {} thread, {} context, {} traceparent, {} inferred-only, {} ambiguous-thread",
        s.spans_started,
        s.spans_emitted,
        s.traces_emitted,
        s.links_tcp_seq,
        s.links_thread,
        s.links_context,
        s.links_traceparent,
        s.links_inferred,
        s.unlinked_ambiguous_thread
    );
    eprintln!(
        "zt-trace: connections {} seen, {} parsed, {} ignored (no known protocol, or a database's own end); parser desyncs {}, unmatched responses {}, timed-out requests {}, spans dropped (table full) {}, late events {}",
        s.conns_seen,
        s.conns_parsed,
        s.conns_ignored,
        s.parser_desyncs,
        s.unmatched_responses,
        s.spans_timed_out,
        s.spans_dropped_capacity,
        s.late_events
    );
}

/// A running agent: probes, decoding, assembly and output.
pub struct Agent {
    stage: Stage,
    source: LiveSource,
    asm: Assembler,
    printer: Printer,
    export: Option<Pipeline>,
    started: Instant,
    traces: u64,
}

impl Agent {
    pub fn start(args: &RunArgs) -> Result<Agent> {
        let mut builder = Probes::builder()
            .capture_bytes(args.capture.capture_bytes)
            .ring_buffer_bytes(args.capture.ring_buffer_mib.saturating_mul(1 << 20))
            .tls(!args.capture.no_tls)
            .contexts(!args.capture.no_python_contexts);
        if !args.capture.pids.is_empty() {
            builder = builder.pids(args.capture.pids.clone());
        }
        let export = crate::export::pipeline(&args.export)?;
        let probes = builder.load().context("attaching the eBPF probes")?;

        let offset = wall_clock_offset_ns();
        let host = host_name();
        let mut source = LiveSource::new(probes, !args.capture.no_tls);
        source.watch_own_connections(export.is_some());
        log::info!(
            "attached {} probes; tracing (Ctrl-C to stop)",
            source.probes().attached().len()
        );
        if let Some(path) = &args.record {
            let header = RecordHeader {
                version: ebpf_probes::record::FORMAT_VERSION,
                wall_clock_offset_ns: offset,
                capture_bytes: args.capture.capture_bytes,
                host_name: host.clone(),
            };
            let file =
                File::create(path).with_context(|| format!("creating {}", path.display()))?;
            source.record_to(RecordWriter::new(file, &header)?);
            log::info!("recording events to {}", path.display());
        }
        Ok(Agent {
            stage: args.stage,
            source,
            asm: Assembler::new(assembler_config(
                &args.assemble,
                offset,
                random_seed(),
                host,
            )),
            printer: Printer::new(args.output),
            export,
            started: Instant::now(),
            traces: 0,
        })
    }

    /// Read what the kernel queued (waiting up to `wait`), advance time,
    /// print finished traces.
    pub fn step(&mut self, wait: Duration) -> Result<()> {
        let asm = &mut self.asm;
        match self.stage {
            Stage::Drain => {
                self.source
                    .drain_raw(wait)
                    .context("reading the ring buffer")?;
                return Ok(());
            }
            Stage::Decode => {
                self.source
                    .poll(wait, drop)
                    .context("reading the ring buffer")?;
                return Ok(());
            }
            Stage::Full => {}
        }
        self.source
            .poll(wait, |ev| asm.handle_event(ev))
            .context("reading the ring buffer")?;
        self.asm.handle_timeout(monotonic_ns());
        drain(
            &mut self.asm,
            &mut self.printer,
            self.export.as_ref(),
            &mut self.traces,
        )
    }

    /// Take what is still queued, detach every probe, finish every span,
    /// print the rest and a summary on stderr.
    pub fn shutdown(self) -> Result<()> {
        let Agent {
            stage: _,
            mut source,
            mut asm,
            mut printer,
            mut export,
            started,
            mut traces,
        } = self;
        while source.poll(Duration::ZERO, |ev| asm.handle_event(ev))? > 0 {}
        let drops = source.probes().drops();
        let src_stats = source.stats();
        source.finish().context("flushing the event log")?;
        drop(source); // detaches every program
        asm.flush();
        drain(&mut asm, &mut printer, export.as_ref(), &mut traces)?;
        let export_stats = export
            .as_mut()
            .map(|p| p.shutdown(crate::export::SHUTDOWN_FLUSH));

        let secs = started.elapsed().as_secs_f64().max(1e-9);
        eprintln!(
            "zt-trace: {} events in {:.1}s ({:.0} events/s, {:.1} MiB), {} undecodable; {} processes resolved ({} service names found on a second look); {} events of zt-trace's own connections left out",
            src_stats.records,
            secs,
            src_stats.records as f64 / secs,
            src_stats.record_bytes as f64 / (1 << 20) as f64,
            src_stats.decode_errors,
            src_stats.processes_resolved,
            src_stats.env_rechecks_changed,
            src_stats.agent_peer_events
        );
        let drop_list: Vec<String> = drops
            .by_reason
            .iter()
            .map(|(r, n)| format!("{r}={n}"))
            .collect();
        eprintln!(
            "zt-trace: kernel drops: {} events lost ({})",
            drops.events_lost(),
            drop_list.join(", ")
        );
        print_assembler_stats(&asm.stats());
        if let Some(s) = export_stats {
            eprintln!("zt-trace: {}", crate::export::summary(&s));
        }
        Ok(())
    }
}

/// Flag set by SIGINT/SIGTERM.
pub fn stop_flag() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    Ok(stop)
}

pub fn run(args: RunArgs) -> Result<()> {
    let stop = stop_flag()?;
    let mut agent = Agent::start(&args)?;
    let deadline = args
        .duration
        .map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0)));
    while !stop.load(Ordering::Relaxed) && deadline.is_none_or(|d| Instant::now() < d) {
        agent.step(Duration::from_millis(20))?;
    }
    agent.shutdown()
}

pub fn replay(path: &Path, a: &AssembleArgs, output: OutputFormat) -> Result<()> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = RecordReader::new(file).with_context(|| format!("reading {}", path.display()))?;
    let header = reader.header.clone();
    let mut source = ReplaySource::new(reader);
    // Replays are deterministic: a fixed id seed.
    let mut asm = Assembler::new(assembler_config(
        a,
        header.wall_clock_offset_ns,
        1,
        header.host_name.clone(),
    ));
    let mut printer = Printer::new(output);
    let mut traces = 0;
    let mut events = 0u64;
    let mut clock = 0u64;
    while let Some(ev) = source.next_event().context("reading the event log")? {
        events += 1;
        clock = clock.max(ev.order_ts());
        asm.handle_event(ev);
        asm.handle_timeout(clock);
        drain(&mut asm, &mut printer, None, &mut traces)?;
    }
    asm.flush();
    drain(&mut asm, &mut printer, None, &mut traces)?;
    eprintln!(
        "zt-trace: replayed {events} events ({} undecodable) into {traces} traces",
        source.decode_errors
    );
    print_assembler_stats(&asm.stats());
    Ok(())
}
