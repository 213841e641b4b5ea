//! The low-level, sans-I/O API: replay an event log (written by
//! `zt-trace record`) through the span assembler yourself, feeding events
//! and time in and polling traces out, without root, and print a summary
//! per trace. (`examples/embed.rs` shows the high-level `Tracer`.)
//!
//! `cargo run --example replay_log -- tests/golden/http_topology.zrec`

use std::fs::File;
use zt_trace::ebpf_probes::record::RecordReader;
use zt_trace::ebpf_probes::ReplaySource;
use zt_trace::span_core::{Assembler, Config, Output};

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: replay_log FILE"))?;
    let mut source = ReplaySource::new(RecordReader::new(File::open(&path)?)?);
    let mut asm = Assembler::new(Config {
        wall_clock_offset_ns: source.header().wall_clock_offset_ns,
        id_seed: 1,
        ..Config::default()
    });
    let mut clock = 0;
    let mut traces = Vec::new();
    while let Some(ev) = source.next_event()? {
        clock = clock.max(ev.order_ts());
        asm.handle_event(ev);
        asm.handle_timeout(clock);
        while let Some(Output::Trace(t)) = asm.poll() {
            traces.push(t);
        }
    }
    asm.flush();
    while let Some(Output::Trace(t)) = asm.poll() {
        traces.push(t);
    }
    for t in &traces {
        let root = &t.spans[0];
        println!(
            "{} {:>3} spans  {} {}",
            t.trace_id,
            t.spans.len(),
            root.resource.service_name,
            root.name
        );
    }
    eprintln!("{} traces", traces.len());
    Ok(())
}
