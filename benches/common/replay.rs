//! A golden event log read into memory and run through the assembler, for
//! the benches of stages that sit after it (graph, insights).

use std::fs::File;
use zt_trace::ebpf_probes::record::RecordReader;
use zt_trace::ebpf_probes::ReplaySource;
use zt_trace::span_core::*;

/// Every event of `tests/golden/<name>`.
pub fn recorded(name: &str) -> Vec<Event> {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    let mut src = ReplaySource::new(RecordReader::new(File::open(path).unwrap()).unwrap());
    let mut v = Vec::new();
    while let Some(e) = src.next_event().unwrap() {
        v.push(e);
    }
    v
}

/// Events through the assembler; each finished trace to `sink` with the
/// time. Returns traces.
pub fn assemble(events: Vec<Event>, mut sink: impl FnMut(Trace, MonoNanos)) -> u64 {
    let mut asm = Assembler::new(Config::default());
    let mut clock = 0;
    let mut n = 0;
    for (i, e) in events.into_iter().enumerate() {
        clock = clock.max(e.order_ts());
        asm.handle_event(e);
        if i % 64 == 0 {
            asm.handle_timeout(clock);
            while let Some(Output::Trace(t)) = asm.poll() {
                n += 1;
                sink(t, clock);
            }
        }
    }
    asm.flush();
    while let Some(Output::Trace(t)) = asm.poll() {
        n += 1;
        sink(t, clock);
    }
    n
}
