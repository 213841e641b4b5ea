//! Embed zt-trace with the high-level API: trace this host for a while,
//! print each trace's root as it completes, export every span to an OTLP
//! collector, and print the statistics at the end.
//!
//! Run as root: `cargo run --example embed -- [SECONDS] [OTLP_HTTP_ENDPOINT]`
//! (e.g. `http://127.0.0.1:4318/v1/traces`; without one, spans are kept
//! in memory and counted).

use std::time::Duration;
use zt_trace::exporters::{build, ExporterSpec, InMemoryExporter, SpanExporter};
use zt_trace::Tracer;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10);
    let exporter: Box<dyn SpanExporter> = match args.next() {
        Some(endpoint) => {
            let mut spec = ExporterSpec::parse("otlp-http")?;
            spec.endpoint = Some(endpoint);
            build(&spec)?
        }
        None => Box::new(InMemoryExporter::new()),
    };
    let tracer = Tracer::builder()
        .exporter(exporter)
        .on_trace(|t| {
            if let Some(root) = t.spans.iter().find(|s| s.parent_span_id.is_none()) {
                let ms = root.duration_nanos() as f64 / 1e6;
                println!(
                    "{} {} spans  {}: {} [{ms:.1}ms]",
                    t.trace_id,
                    t.spans.len(),
                    root.resource.service_name,
                    root.name
                );
            }
        })
        .start()?;
    eprintln!("tracing for {secs}s...");
    tracer.wait_timeout(Some(Duration::from_secs(secs)));
    for line in tracer.shutdown()?.summary_lines() {
        eprintln!("{line}");
    }
    Ok(())
}
