//! Sinks: where finished traces go after the stages (stdout, a callback, a
//! channel, the exporters). The runtime fans every trace out to every sink,
//! in the order they were added, on the pipeline thread: a sink must not
//! block (the exporters queue and drop-and-count; a channel sink counts
//! what a full channel refused).

use crate::stats::{defs, StatsWriter};
use span_core::Trace;
use std::sync::mpsc;
use std::sync::Arc;

/// Why a sink failed. A sink that fails stops the tracer: its error is what
/// [`Tracer::shutdown`](crate::Tracer::shutdown) returns.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{sink}: {source}")]
    Io {
        sink: String,
        #[source]
        source: std::io::Error,
    },
}

/// A consumer of finished traces.
pub trait Sink: Send {
    /// A short name for statistics and errors.
    fn name(&self) -> &str;
    /// One finished trace. Must not block.
    fn consume(&mut self, trace: &Arc<Trace>) -> Result<(), SinkError>;
    /// Input ended: flush and release what the sink holds.
    fn shutdown(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    /// The sink's own counters.
    fn report(&self, _out: &mut StatsWriter) {}
}

/// A closure called with every trace.
pub struct FnSink<F>(pub F);

impl<F: FnMut(&Trace) + Send> Sink for FnSink<F> {
    fn name(&self) -> &str {
        "callback"
    }
    fn consume(&mut self, trace: &Arc<Trace>) -> Result<(), SinkError> {
        (self.0)(trace);
        Ok(())
    }
}

/// Traces sent to a bounded channel; a full channel drops and counts.
pub struct ChannelSink {
    tx: mpsc::SyncSender<Arc<Trace>>,
    dropped: u64,
}

impl ChannelSink {
    /// A sink and the receiving end of its channel (`capacity` traces).
    pub fn new(capacity: usize) -> (ChannelSink, mpsc::Receiver<Arc<Trace>>) {
        let (tx, rx) = mpsc::sync_channel(capacity.max(1));
        (ChannelSink { tx, dropped: 0 }, rx)
    }
}

impl Sink for ChannelSink {
    fn name(&self) -> &str {
        "channel"
    }
    fn consume(&mut self, trace: &Arc<Trace>) -> Result<(), SinkError> {
        match self.tx.try_send(trace.clone()) {
            Ok(()) => {}
            // A receiver that went away is a consumer that stopped caring,
            // not a failure of the tracer.
            Err(_) => self.dropped += 1,
        }
        Ok(())
    }
    fn report(&self, out: &mut StatsWriter) {
        out.set_labelled(&defs::SINK_DROPS, "channel", self.dropped as f64);
    }
}
