//! `--exporter` wiring: specs from the command line, one batching pipeline.

use crate::settings::Export;
use anyhow::{Context, Result};
use exporters::config::{parse_header, ExporterKind, ExporterSpec};
use exporters::metrics::MetricsExporter;
use exporters::pipeline::PipelineConfig;
use exporters::SpanExporter;
use std::path::PathBuf;

/// Parse `KIND[=TARGET]` values and the shared options into specs.
pub fn specs(args: &Export) -> Result<Vec<ExporterSpec>> {
    let headers = args
        .headers
        .iter()
        .map(|h| parse_header(h).map_err(anyhow::Error::from))
        .collect::<Result<Vec<_>>>()
        .context("--header")?;
    let mut out = Vec::new();
    for e in &args.exporters {
        let (kind, target) = match e.split_once('=') {
            Some((k, t)) => (k, Some(t)),
            None => (e.as_str(), None),
        };
        let mut spec = ExporterSpec::parse(kind).with_context(|| format!("--exporter {e}"))?;
        match (spec.kind, target) {
            (ExporterKind::Jsonl, t) => spec.path = Some(PathBuf::from(t.unwrap_or("-"))),
            (_, Some(t)) => spec.endpoint = Some(t.to_owned()),
            (_, None) => {}
        }
        spec.headers = headers.clone();
        if let Some(p) = &args.protocol {
            spec.protocol = Some(p.parse().context("--protocol")?);
        }
        if let Some(c) = &args.compression {
            spec.compression = Some(c.parse().context("--compression")?);
        }
        out.push(spec);
    }
    Ok(out)
}

/// The exporters `--exporter` asks for, built, and the queue settings.
pub fn exporters(args: &Export) -> Result<(Vec<Box<dyn SpanExporter>>, PipelineConfig)> {
    let mut built = Vec::new();
    for spec in &specs(args)? {
        let exporter =
            exporters::config::build(spec).with_context(|| format!("exporter {}", spec.kind))?;
        built.push(exporter);
    }
    let config = PipelineConfig {
        queue_capacity: args.queue.max(1),
        ..PipelineConfig::default()
    };
    Ok((built, config))
}

/// Whether an `--exporter` value sends OTLP (the kinds `--export-metrics`
/// also sends metrics to; Jaeger takes no metrics).
pub fn is_otlp(exporter: &str) -> bool {
    let kind = exporter.split_once('=').map_or(exporter, |(k, _)| k);
    matches!(
        ExporterSpec::parse(kind).map(|s| s.kind),
        Ok(ExporterKind::Otlp | ExporterKind::OtlpGrpc | ExporterKind::OtlpHttp)
    )
}

/// OTLP metrics exporters for the OTLP `--exporter`s (`--export-metrics`):
/// the same endpoint and options, `/v1/metrics` for OTLP/HTTP.
pub fn metrics_exporters(args: &Export) -> Result<Vec<Box<dyn MetricsExporter>>> {
    let mut out = Vec::new();
    for spec in specs(args)? {
        if !matches!(
            spec.kind,
            ExporterKind::Otlp | ExporterKind::OtlpGrpc | ExporterKind::OtlpHttp
        ) {
            continue;
        }
        out.push(
            exporters::config::build_metrics(&spec)
                .with_context(|| format!("metrics exporter {}", spec.kind))?,
        );
    }
    Ok(out)
}
