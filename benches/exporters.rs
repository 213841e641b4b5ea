//! Exporter encoding throughput (spans/s and MB/s of output) for each wire
//! format, on batches of realistic spans (HTTP server, gRPC client with a
//! link, gRPC server, MySQL client; two services), plus the cost of
//! `Pipeline::try_send` on the capture path.
//!
//! Run: `cargo bench --bench exporters`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use exporters::{
    jaeger, jsonl, otlp, samples, zipkin, ExportError, Pipeline, PipelineConfig, SpanExporter,
};
use std::hint::black_box;

const BATCH: usize = 512;

fn encoders(c: &mut Criterion) {
    let spans = samples::spans(BATCH);
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(BATCH as u64));

    type Encoder = fn(&[span_core::Span], &mut Vec<u8>);
    let formats: [(&str, Encoder); 5] = [
        ("otlp_protobuf", |s, out| otlp::encode_protobuf(s, out)),
        ("otlp_json", |s, out| otlp::encode_json(s, out).unwrap()),
        ("zipkin_json", |s, out| {
            zipkin::encode_zipkin_json(s, out).unwrap()
        }),
        ("jaeger_thrift", |s, out| {
            for b in jaeger::encode_batches(s) {
                out.extend_from_slice(&b);
            }
        }),
        ("jsonl", |s, out| jsonl::encode_jsonl(s, out).unwrap()),
    ];
    for (name, encode) in formats {
        let mut out = Vec::new();
        encode(&spans, &mut out);
        eprintln!("{name}: {} bytes per {BATCH} spans", out.len());
        g.bench_function(name, |b| {
            let mut out = Vec::with_capacity(out.len());
            b.iter(|| {
                out.clear();
                encode(black_box(&spans), &mut out);
                black_box(out.len())
            })
        });
    }
    g.finish();
}

/// Accepts and forgets every batch.
struct Discard;

impl SpanExporter for Discard {
    fn export(&mut self, _batch: &[span_core::Span]) -> Result<(), ExportError> {
        Ok(())
    }
    fn force_flush(&mut self) -> Result<(), ExportError> {
        Ok(())
    }
    fn shutdown(&mut self) -> Result<(), ExportError> {
        Ok(())
    }
    fn name(&self) -> &str {
        "discard"
    }
}

fn capture_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(BATCH as u64));
    let pipeline = Pipeline::new(
        vec![Box::new(Discard)],
        PipelineConfig {
            queue_capacity: 1 << 16,
            ..Default::default()
        },
    );
    let spans = samples::spans(BATCH);
    // The producer's cost per span: one atomic reservation and a channel
    // push (the span clone is made outside the timing).
    g.bench_function("try_send", |b| {
        b.iter_batched(
            || spans.clone(),
            |batch| {
                for s in batch {
                    black_box(pipeline.try_send(s));
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, encoders, capture_path);
criterion_main!(benches);
