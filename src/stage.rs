//! Processing stages: pure steps between the assembler and the sinks.
//!
//! A stage takes finished traces and passes them on (possibly changed),
//! holds them for later, or drops them; it may also keep aggregates (a
//! service graph, insights). **Invariant:** stages do no I/O and read no
//! clock: time comes in as an argument (monotonic nanoseconds, the
//! assembler's time base), so a replayed log gives the same result as the
//! live run did.
//!
//! Stages run in the order they were added, on the pipeline thread. Put
//! stages that must see every trace (graph, metrics, insights) before
//! stages that drop traces (sampling).

use crate::stats::StatsWriter;
use span_core::{MonoNanos, Trace};
use std::sync::{Arc, Mutex, MutexGuard};

/// A pure processing step: trace in, trace out (or held, or dropped).
pub trait Stage: Send {
    /// A short name for statistics (`sampler`, `graph`, ...).
    fn name(&self) -> &'static str;

    /// A finished trace at time `now`. `Some` passes it on; `None` drops
    /// it, or holds it to release later through [`Stage::poll`].
    fn process(&mut self, trace: Trace, now: MonoNanos) -> Option<Trace>;

    /// Time passed (timers: windows that roll over, held traces whose wait
    /// is over).
    fn handle_timeout(&mut self, _now: MonoNanos) {}

    /// When [`Stage::handle_timeout`] next has work to do.
    fn poll_timeout(&self) -> Option<MonoNanos> {
        None
    }

    /// A trace released after being held.
    fn poll(&mut self) -> Option<Trace> {
        None
    }

    /// End of input: decide about everything held (released through
    /// [`Stage::poll`]).
    fn flush(&mut self) {}

    /// The stage's own counters.
    fn report(&self, _out: &mut StatsWriter) {}
}

/// A stage shared with its owner, who reads its aggregates while the
/// pipeline runs: `Shared::new(stage)`, hand a clone to
/// [`TracerBuilder::stage`](crate::TracerBuilder::stage), keep the other and
/// [`lock`](Shared::lock) it to look.
pub struct Shared<S>(Arc<Mutex<S>>);

impl<S> Shared<S> {
    pub fn new(stage: S) -> Self {
        Shared(Arc::new(Mutex::new(stage)))
    }

    /// The stage, while the pipeline waits for it. Hold it briefly.
    pub fn lock(&self) -> MutexGuard<'_, S> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<S> Clone for Shared<S> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<S: Stage> Stage for Shared<S> {
    fn name(&self) -> &'static str {
        self.lock().name()
    }
    fn process(&mut self, trace: Trace, now: MonoNanos) -> Option<Trace> {
        self.lock().process(trace, now)
    }
    fn handle_timeout(&mut self, now: MonoNanos) {
        self.lock().handle_timeout(now)
    }
    fn poll_timeout(&self) -> Option<MonoNanos> {
        self.lock().poll_timeout()
    }
    fn poll(&mut self) -> Option<Trace> {
        self.lock().poll()
    }
    fn flush(&mut self) {
        self.lock().flush()
    }
    fn report(&self, out: &mut StatsWriter) {
        self.lock().report(out)
    }
}
