//! Where finished traces go on stdout: a sink of the tracer.

use crate::render::render_trace;
use exporters::jsonl::span_to_json;
use span_core::Trace;
use std::io::{self, Write};
use std::sync::Arc;
use zt_trace::{Sink, SinkError};

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// One tree per trace (human-readable).
    Tree,
    /// One JSON object per span per line.
    Json,
    /// Nothing on stdout (use with --record or exporters).
    None,
}

/// Prints each trace on stdout, flushed per trace. A write error (stdout
/// closed: `zt-trace | head`) stops the tracer.
pub struct Printer {
    format: OutputFormat,
    out: io::BufWriter<io::Stdout>,
}

impl Printer {
    pub fn new(format: OutputFormat) -> Self {
        Printer {
            format,
            out: io::BufWriter::new(io::stdout()),
        }
    }

    fn write(&mut self, t: &Trace) -> io::Result<()> {
        match self.format {
            OutputFormat::Tree => {
                writeln!(self.out, "{}", render_trace(t))?;
            }
            OutputFormat::Json => {
                for s in &t.spans {
                    serde_json::to_writer(&mut self.out, &span_to_json(s))?;
                    self.out.write_all(b"\n")?;
                }
            }
            OutputFormat::None => return Ok(()),
        }
        self.out.flush()
    }
}

impl Sink for Printer {
    fn name(&self) -> &str {
        "stdout"
    }

    fn consume(&mut self, trace: &Arc<Trace>) -> Result<(), SinkError> {
        self.write(trace).map_err(|source| SinkError::Io {
            sink: "writing to stdout".into(),
            source,
        })
    }
}
