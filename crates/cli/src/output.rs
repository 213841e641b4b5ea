//! Where finished traces go on stdout.

use crate::render::render_trace;
use exporters::jsonl::span_to_json;
use span_core::Trace;
use std::io::{self, Write};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// One tree per trace (human-readable).
    Tree,
    /// One JSON object per span per line.
    Json,
    /// Nothing on stdout (use with --record or exporters).
    None,
}

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

    pub fn trace(&mut self, t: &Trace) -> io::Result<()> {
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
            OutputFormat::None => {}
        }
        self.out.flush()
    }
}
