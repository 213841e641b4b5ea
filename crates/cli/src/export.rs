//! `--exporter` wiring: specs from the command line, one batching pipeline.

use crate::ExportArgs;
use anyhow::{Context, Result};
use exporters::config::{parse_header, ExporterKind, ExporterSpec};
use exporters::pipeline::{Pipeline, PipelineConfig, PipelineStats};
use std::path::PathBuf;
use std::time::Duration;

/// Parse `KIND[=TARGET]` values and the shared options into specs.
pub fn specs(args: &ExportArgs) -> Result<Vec<ExporterSpec>> {
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

/// The export pipeline, or `None` without `--exporter`.
pub fn pipeline(args: &ExportArgs) -> Result<Option<Pipeline>> {
    let specs = specs(args)?;
    if specs.is_empty() {
        return Ok(None);
    }
    let mut built = Vec::new();
    for spec in &specs {
        let exporter =
            exporters::config::build(spec).with_context(|| format!("exporter {}", spec.kind))?;
        log::info!("exporting spans with {}", exporter.name());
        built.push(exporter);
    }
    let config = PipelineConfig {
        queue_capacity: args.export_queue.max(1),
        ..PipelineConfig::default()
    };
    Ok(Some(Pipeline::new(built, config)))
}

pub fn summary(stats: &PipelineStats) -> String {
    format!(
        "exported {} spans in {} batches; dropped: {} queue full, {} after retries, {} rejected, {} at shutdown; {} retries, {} export errors",
        stats.exported,
        stats.batches_exported,
        stats.dropped_queue_full,
        stats.dropped_after_retries,
        stats.dropped_rejected,
        stats.dropped_at_shutdown,
        stats.retries,
        stats.export_errors
    )
}

/// How long shutdown waits for the exporters to flush.
pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);
