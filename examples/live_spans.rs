//! Embed zt-trace: load the probes, feed the assembler, print spans.
//!
//! Run as root: `cargo run --example live_spans -- [SECONDS]`
//! (then make some HTTP requests on this host).

use std::time::{Duration, Instant};
use zt_trace::core::{Assembler, Config, Output};
use zt_trace::probes::{monotonic_ns, wall_clock_offset_ns, LiveSource, Probes};

fn main() -> anyhow::Result<()> {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let probes = Probes::builder().capture_bytes(4096).load()?;
    let mut source = LiveSource::new(probes, true);
    let mut asm = Assembler::new(Config {
        wall_clock_offset_ns: wall_clock_offset_ns(),
        id_seed: monotonic_ns(),
        ..Config::default()
    });
    eprintln!("tracing for {secs}s...");
    let until = Instant::now() + Duration::from_secs(secs);
    let print = |asm: &mut Assembler| {
        while let Some(Output::Trace(t)) = asm.poll() {
            for s in &t.spans {
                println!(
                    "{} {} {:<6} {:<30} {} parent={}",
                    s.trace_id,
                    s.span_id,
                    s.kind.as_str(),
                    s.name,
                    s.resource.service_name,
                    s.parent_span_id.map(|p| p.to_string()).unwrap_or_default()
                );
            }
        }
    };
    while Instant::now() < until {
        source.poll(Duration::from_millis(50), |ev| asm.handle_event(ev))?;
        asm.handle_timeout(monotonic_ns());
        print(&mut asm);
    }
    drop(source); // detach
    asm.flush();
    print(&mut asm);
    Ok(())
}
