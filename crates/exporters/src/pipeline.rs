//! The batching pipeline: bounded queue, worker thread, batching by size or
//! time, retry with exponential backoff, drop-and-count when full.
//!
//! ```text
//! capture path --try_send--> [lane 1: bounded queue -> worker -> exporter A]
//!                       \--> [lane 2: bounded queue -> worker -> exporter B]
//! ```
//!
//! Each exporter gets its own *lane* (queue + worker thread), so a slow or
//! failing exporter fills only its own queue and never delays another.
//!
//! Architecture invariants:
//! - [`Pipeline::try_send`] and [`Pipeline::try_send_batch`] never block:
//!   they reserve room with one atomic operation and push onto an unbounded
//!   channel whose length the reservation bounds. When a lane is full the span
//!   is dropped for that lane and counted in `dropped_queue_full`.
//! - A lane holds at most `queue_capacity` spans: waiting in its channel plus
//!   the batch its worker is exporting. Memory is bounded by that.
//! - Every span offered to a lane ends in exactly one counter:
//!   `offered = dropped_queue_full + exported + dropped_after_retries +
//!   dropped_rejected + dropped_at_shutdown + queued + in_flight`.

use crate::{ExportError, SpanExporter};
use span_core::{Span, Trace};
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Retry policy for retryable export errors: exponential backoff with jitter,
/// capped per wait and in total.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// First wait (default 500 ms).
    pub initial_backoff: Duration,
    /// Longest single wait (default 30 s). A `Retry-After` longer than this
    /// is still honoured, within `max_elapsed`.
    pub max_backoff: Duration,
    /// Growth factor between waits (default 2.0).
    pub multiplier: f64,
    /// Give up on a batch once retrying it would run past this much time since
    /// its first attempt (default 60 s). Zero disables retries.
    pub max_elapsed: Duration,
    /// Randomise each wait in [backoff/2, backoff] (default true).
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            multiplier: 2.0,
            max_elapsed: Duration::from_secs(60),
            jitter: true,
        }
    }
}

/// Pipeline settings, applied to every lane.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineConfig {
    /// Most spans one lane holds (queued + being exported). Default 8192.
    pub queue_capacity: usize,
    /// A batch is cut when it reaches this many spans (default 512).
    pub max_batch_size: usize,
    /// ... or when its first span has waited this long (default 1 s).
    pub batch_timeout: Duration,
    /// How failed batches are retried.
    pub retry: RetryPolicy,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            queue_capacity: 8192,
            max_batch_size: 512,
            batch_timeout: Duration::from_secs(1),
            retry: RetryPolicy::default(),
        }
    }
}

/// Counters of one lane, or the sum over lanes (see [`Pipeline::stats`]).
///
/// Each counter is exact, and a batch the worker settles moves atomically
/// (as seen by `stats()`) from `in_flight` to its final counter. Spans being
/// offered by a producer at the instant of a snapshot may be counted in
/// `offered` and not yet elsewhere, so `balanced()` holds exactly whenever no
/// `try_send*` call is running.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PipelineStats {
    /// Spans offered through `try_send*` (accepted or not).
    pub offered: u64,
    /// Spans waiting in the queue.
    pub queued: u64,
    /// Spans in the batch being exported or waiting for a retry.
    pub in_flight: u64,
    /// The lane's capacity (sum over lanes for an aggregate).
    pub capacity: u64,
    /// Spans the exporter confirmed.
    pub exported: u64,
    /// Spans refused because the queue was full (or the pipeline closed).
    pub dropped_queue_full: u64,
    /// Spans given up after retryable errors used up the retry budget.
    pub dropped_after_retries: u64,
    /// Spans dropped on a permanent error or rejected by the receiver
    /// (OTLP partial success).
    pub dropped_rejected: u64,
    /// Spans still held when the shutdown deadline passed.
    pub dropped_at_shutdown: u64,
    /// Batches handed to the exporter successfully.
    pub batches_exported: u64,
    /// Re-sends of a batch after a retryable error.
    pub retries: u64,
    /// Export calls that returned an error (retryable or not).
    pub export_errors: u64,
}

impl PipelineStats {
    /// Spans whose fate is decided (exported or dropped for any reason).
    pub fn settled(&self) -> u64 {
        self.exported
            + self.dropped_queue_full
            + self.dropped_after_retries
            + self.dropped_rejected
            + self.dropped_at_shutdown
    }

    /// True when every offered span is accounted for:
    /// `offered == settled + queued + in_flight`.
    pub fn balanced(&self) -> bool {
        self.offered == self.settled() + self.queued + self.in_flight
    }

    fn add(&mut self, o: &PipelineStats) {
        self.offered += o.offered;
        self.queued += o.queued;
        self.in_flight += o.in_flight;
        self.capacity += o.capacity;
        self.exported += o.exported;
        self.dropped_queue_full += o.dropped_queue_full;
        self.dropped_after_retries += o.dropped_after_retries;
        self.dropped_rejected += o.dropped_rejected;
        self.dropped_at_shutdown += o.dropped_at_shutdown;
        self.batches_exported += o.batches_exported;
        self.retries += o.retries;
        self.export_errors += o.export_errors;
    }
}

#[derive(Default)]
struct Counters {
    offered: AtomicU64,
    exported: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_after_retries: AtomicU64,
    dropped_rejected: AtomicU64,
    dropped_at_shutdown: AtomicU64,
    batches_exported: AtomicU64,
    retries: AtomicU64,
    export_errors: AtomicU64,
}

/// State shared by a lane's handle and its worker.
struct Shared {
    capacity: usize,
    /// Spans held by the lane: in the channel plus in the worker's batch.
    held: AtomicUsize,
    /// Spans in the worker's batch.
    in_flight: AtomicUsize,
    /// Set once shutdown starts: later sends are refused.
    closed: AtomicBool,
    /// Shutdown deadline, set by `shutdown`; wakes a worker waiting to retry.
    stop: Mutex<Option<Instant>>,
    stop_cv: Condvar,
    /// Held by the worker while it settles a batch and by `snapshot`.
    settle_lock: Mutex<()>,
    c: Counters,
}

impl Shared {
    fn snapshot(&self) -> PipelineStats {
        let _guard = self.settle_lock.lock().unwrap_or_else(|e| e.into_inner());
        let held = self.held.load(Ordering::Acquire) as u64;
        let in_flight = self.in_flight.load(Ordering::Acquire) as u64;
        let c = &self.c;
        PipelineStats {
            offered: c.offered.load(Ordering::Acquire),
            queued: held.saturating_sub(in_flight),
            in_flight,
            capacity: self.capacity as u64,
            exported: c.exported.load(Ordering::Acquire),
            dropped_queue_full: c.dropped_queue_full.load(Ordering::Acquire),
            dropped_after_retries: c.dropped_after_retries.load(Ordering::Acquire),
            dropped_rejected: c.dropped_rejected.load(Ordering::Acquire),
            dropped_at_shutdown: c.dropped_at_shutdown.load(Ordering::Acquire),
            batches_exported: c.batches_exported.load(Ordering::Acquire),
            retries: c.retries.load(Ordering::Acquire),
            export_errors: c.export_errors.load(Ordering::Acquire),
        }
    }

    /// Reserve room for up to `n` spans; returns how many fit.
    fn reserve(&self, n: usize) -> usize {
        if n == 0 || self.closed.load(Ordering::Acquire) {
            return 0;
        }
        let mut got = 0;
        let _ = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                got = n.min(self.capacity.saturating_sub(held));
                (got > 0).then_some(held + got)
            });
        got
    }

    fn release(&self, n: usize) {
        self.held.fetch_sub(n, Ordering::AcqRel);
    }

    fn stop_deadline(&self) -> Option<Instant> {
        *self.stop.lock().unwrap_or_else(|e| e.into_inner())
    }
}

enum Msg {
    Span(Span),
    Batch(Vec<Span>),
    /// The first `n` spans of a shared trace: copied by the worker, off the
    /// sender's thread.
    Trace(Arc<Trace>, usize),
    Flush(mpsc::SyncSender<Result<(), ExportError>>),
    Shutdown(mpsc::SyncSender<()>),
}

struct Lane {
    name: String,
    tx: Sender<Msg>,
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
}

impl Lane {
    fn send(&self, msg: Msg, n: usize) {
        if self.tx.send(msg).is_err() {
            // The worker is gone (it only exits on shutdown): undo and count.
            self.shared.release(n);
            self.shared
                .c
                .dropped_queue_full
                .fetch_add(n as u64, Ordering::AcqRel);
        }
    }
}

/// Bounded, non-blocking span pipeline feeding one or more exporters.
///
/// Dropping a `Pipeline` without calling [`Pipeline::shutdown`] asks the
/// workers to flush and stop, without waiting for them.
pub struct Pipeline {
    lanes: Vec<Lane>,
}

impl Pipeline {
    /// Start one lane (queue + worker thread) per exporter.
    pub fn new(exporters: Vec<Box<dyn SpanExporter>>, config: PipelineConfig) -> Pipeline {
        let config = PipelineConfig {
            queue_capacity: config.queue_capacity.max(1),
            max_batch_size: config.max_batch_size.max(1),
            ..config
        };
        let lanes = exporters
            .into_iter()
            .map(|exporter| {
                let name = exporter.name().to_owned();
                let shared = Arc::new(Shared {
                    capacity: config.queue_capacity,
                    held: AtomicUsize::new(0),
                    in_flight: AtomicUsize::new(0),
                    closed: AtomicBool::new(false),
                    stop: Mutex::new(None),
                    stop_cv: Condvar::new(),
                    settle_lock: Mutex::new(()),
                    c: Counters::default(),
                });
                let (tx, rx) = mpsc::channel();
                let worker = Worker {
                    exporter,
                    rx,
                    shared: shared.clone(),
                    config: config.clone(),
                    batch: Vec::with_capacity(config.max_batch_size),
                    rng: RandomState::new().build_hasher().finish() | 1,
                };
                let worker = std::thread::Builder::new()
                    .name(format!("zt-export-{name}"))
                    .spawn(move || worker.run())
                    .ok();
                if worker.is_none() {
                    log::error!("cannot start the worker thread of exporter {name}");
                    shared.closed.store(true, Ordering::Release);
                }
                Lane {
                    name,
                    tx,
                    shared,
                    worker,
                }
            })
            .collect();
        Pipeline { lanes }
    }

    /// Offer one span to every lane. Never blocks. Returns true when every
    /// lane took it; a lane that is full counts it in `dropped_queue_full`.
    pub fn try_send(&self, span: Span) -> bool {
        let mut all = true;
        let last = self.lanes.len().saturating_sub(1);
        let mut span = Some(span);
        for (i, lane) in self.lanes.iter().enumerate() {
            let s = &lane.shared;
            s.c.offered.fetch_add(1, Ordering::AcqRel);
            if s.reserve(1) == 1 {
                let item = if i == last { span.take() } else { span.clone() };
                if let Some(item) = item {
                    lane.send(Msg::Span(item), 1);
                }
            } else {
                s.c.dropped_queue_full.fetch_add(1, Ordering::AcqRel);
                all = false;
            }
        }
        all
    }

    /// Offer a batch of spans to every lane. Never blocks. Each lane takes as
    /// many as it has room for, from the front; the rest are counted in
    /// `dropped_queue_full`. Returns the smallest number any lane took.
    pub fn try_send_batch(&self, spans: Vec<Span>) -> usize {
        let n = spans.len();
        if n == 0 {
            return 0;
        }
        let mut min_taken = n;
        let last = self.lanes.len().saturating_sub(1);
        let mut spans = Some(spans);
        for (i, lane) in self.lanes.iter().enumerate() {
            let s = &lane.shared;
            s.c.offered.fetch_add(n as u64, Ordering::AcqRel);
            let k = s.reserve(n);
            min_taken = min_taken.min(k);
            if k < n {
                s.c.dropped_queue_full
                    .fetch_add((n - k) as u64, Ordering::AcqRel);
            }
            if k == 0 {
                continue;
            }
            let part = if i == last {
                spans.take().map(|mut v| {
                    v.truncate(k);
                    v
                })
            } else {
                spans.as_ref().map(|v| v[..k].to_vec())
            };
            if let Some(part) = part {
                lane.send(Msg::Batch(part), k);
            }
        }
        if self.lanes.is_empty() {
            0
        } else {
            min_taken
        }
    }

    /// Offer the spans of a trace shared with other consumers to every lane.
    /// Never blocks, and copies nothing on the caller's thread: each lane's
    /// worker copies the spans it took. Each lane takes as many as it has
    /// room for, from the front; the rest are counted in
    /// `dropped_queue_full`. Returns the smallest number any lane took.
    pub fn try_send_trace(&self, trace: &Arc<Trace>) -> usize {
        let n = trace.spans.len();
        if n == 0 || self.lanes.is_empty() {
            return 0;
        }
        let mut min_taken = n;
        for lane in &self.lanes {
            let s = &lane.shared;
            s.c.offered.fetch_add(n as u64, Ordering::AcqRel);
            let k = s.reserve(n);
            min_taken = min_taken.min(k);
            if k < n {
                s.c.dropped_queue_full
                    .fetch_add((n - k) as u64, Ordering::AcqRel);
            }
            if k > 0 {
                lane.send(Msg::Trace(trace.clone(), k), k);
            }
        }
        min_taken
    }

    /// Sum of every lane's counters (a span fanned out to two lanes counts
    /// twice).
    pub fn stats(&self) -> PipelineStats {
        let mut total = PipelineStats::default();
        for lane in &self.lanes {
            total.add(&lane.shared.snapshot());
        }
        total
    }

    /// Each lane's counters, with its exporter's name.
    pub fn lane_stats(&self) -> Vec<(String, PipelineStats)> {
        self.lanes
            .iter()
            .map(|l| (l.name.clone(), l.shared.snapshot()))
            .collect()
    }

    /// Export every span sent so far and flush the exporters, waiting at most
    /// `timeout`. Returns the first error, or a timeout error if some lane
    /// did not finish in time (its worker keeps going).
    pub fn force_flush(&self, timeout: Duration) -> Result<(), ExportError> {
        let deadline = Instant::now() + timeout;
        let mut acks = Vec::new();
        for lane in &self.lanes {
            let (ack_tx, ack_rx) = mpsc::sync_channel(1);
            if lane.tx.send(Msg::Flush(ack_tx)).is_ok() {
                acks.push(ack_rx);
            }
        }
        let mut result = Ok(());
        for ack in acks {
            let left = deadline.saturating_duration_since(Instant::now());
            match ack.recv_timeout(left) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    if result.is_ok() {
                        result = Err(e)
                    }
                }
                Err(_) => {
                    if result.is_ok() {
                        result = Err(ExportError::Timeout(timeout))
                    }
                }
            }
        }
        result
    }

    /// Stop accepting spans, export what is held within `timeout` (retries
    /// included), shut the exporters down, and return the final counters.
    /// Spans still held at the deadline are counted in `dropped_at_shutdown`.
    /// A worker stuck in a blocking export past the deadline is left to finish
    /// on its own (its exporter's own timeout bounds it). Idempotent.
    pub fn shutdown(&mut self, timeout: Duration) -> PipelineStats {
        let deadline = Instant::now() + timeout;
        self.signal_shutdown(deadline);
        let mut waiting = Vec::new();
        for lane in &mut self.lanes {
            if let Some(worker) = lane.worker.take() {
                let (done_tx, done_rx) = mpsc::sync_channel(1);
                let _ = lane.tx.send(Msg::Shutdown(done_tx));
                waiting.push((lane.name.as_str(), worker, done_rx));
            }
        }
        // All lanes flush in parallel; wait for each within the deadline.
        for (name, worker, done_rx) in waiting {
            let left = deadline.saturating_duration_since(Instant::now());
            if done_rx.recv_timeout(left).is_ok() {
                let _ = worker.join();
            } else {
                log::warn!("exporter {name} did not finish before the shutdown deadline");
            }
        }
        self.stats()
    }

    fn signal_shutdown(&self, deadline: Instant) {
        for lane in &self.lanes {
            lane.shared.closed.store(true, Ordering::Release);
            let mut stop = lane.shared.stop.lock().unwrap_or_else(|e| e.into_inner());
            if stop.is_none() {
                *stop = Some(deadline);
            }
            lane.shared.stop_cv.notify_all();
        }
    }
}

/// How long workers keep flushing after a `Pipeline` is dropped without
/// `shutdown` (nobody waits for them).
const DROP_GRACE: Duration = Duration::from_secs(5);

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.signal_shutdown(Instant::now() + DROP_GRACE);
        for lane in &mut self.lanes {
            if lane.worker.take().is_some() {
                let (done_tx, _done_rx) = mpsc::sync_channel(1);
                let _ = lane.tx.send(Msg::Shutdown(done_tx));
            }
        }
    }
}

struct Worker {
    exporter: Box<dyn SpanExporter>,
    rx: Receiver<Msg>,
    shared: Arc<Shared>,
    config: PipelineConfig,
    batch: Vec<Span>,
    rng: u64,
}

impl Worker {
    fn run(mut self) {
        let mut batch_deadline: Option<Instant> = None;
        loop {
            let msg = match batch_deadline {
                None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(d) => self
                    .rx
                    .recv_timeout(d.saturating_duration_since(Instant::now())),
            };
            match msg {
                Ok(Msg::Span(span)) => {
                    self.push(span, &mut batch_deadline);
                }
                Ok(Msg::Batch(spans)) => {
                    for span in spans {
                        self.push(span, &mut batch_deadline);
                    }
                }
                Ok(Msg::Trace(trace, k)) => {
                    for span in &trace.spans[..k] {
                        self.push(span.clone(), &mut batch_deadline);
                    }
                }
                Ok(Msg::Flush(ack)) => {
                    self.export_batch();
                    batch_deadline = None;
                    let _ = ack.send(self.exporter.force_flush());
                }
                Ok(Msg::Shutdown(ack)) => {
                    self.finish();
                    let _ = ack.send(());
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.export_batch();
                    batch_deadline = None;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.finish();
                    return;
                }
            }
        }
    }

    fn push(&mut self, span: Span, batch_deadline: &mut Option<Instant>) {
        if self.batch.is_empty() {
            *batch_deadline = Some(Instant::now() + self.config.batch_timeout);
        }
        self.batch.push(span);
        self.shared.in_flight.fetch_add(1, Ordering::AcqRel);
        if self.batch.len() >= self.config.max_batch_size {
            self.export_batch();
            *batch_deadline = None;
        }
    }

    /// Shutdown: export what was sent before the shutdown message, count what
    /// is left after the deadline, shut the exporter down.
    fn finish(&mut self) {
        self.export_batch();
        // Messages that raced with `closed` being set.
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                Msg::Span(span) => self.batch.push(span),
                Msg::Batch(spans) => self.batch.extend(spans),
                Msg::Trace(trace, k) => self.batch.extend_from_slice(&trace.spans[..k]),
                Msg::Flush(ack) => {
                    let _ = ack.send(Ok(()));
                }
                Msg::Shutdown(ack) => {
                    let _ = ack.send(());
                }
            }
            self.shared
                .in_flight
                .store(self.batch.len(), Ordering::Release);
            if self.batch.len() >= self.config.max_batch_size {
                self.export_batch();
            }
        }
        self.export_batch();
        if let Err(e) = self.exporter.shutdown() {
            log::warn!("exporter {} shutdown: {e}", self.exporter.name());
        }
    }

    fn export_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let n = self.batch.len() as u64;
        let shared = self.shared.clone();
        let c = &shared.c;
        let first_attempt = Instant::now();
        let mut backoff = self.config.retry.initial_backoff;
        // Where the batch's spans end up: (counter, how many).
        let mut settle: [(&AtomicU64, u64); 2] = [(&c.exported, 0), (&c.dropped_rejected, 0)];
        loop {
            let stop = self.shared.stop_deadline();
            if stop.is_some_and(|d| Instant::now() > d) {
                settle[0] = (&c.dropped_at_shutdown, n);
                break;
            }
            match self.exporter.export(&self.batch) {
                Ok(()) => {
                    c.batches_exported.fetch_add(1, Ordering::AcqRel);
                    settle[0] = (&c.exported, n);
                    break;
                }
                Err(ExportError::PartialSuccess { rejected, message }) => {
                    c.export_errors.fetch_add(1, Ordering::AcqRel);
                    c.batches_exported.fetch_add(1, Ordering::AcqRel);
                    let rejected = rejected.min(n);
                    log::warn!(
                        "exporter {}: receiver rejected {rejected} of {n} spans: {message}",
                        self.exporter.name()
                    );
                    settle = [(&c.exported, n - rejected), (&c.dropped_rejected, rejected)];
                    break;
                }
                Err(e) if e.is_retryable() => {
                    c.export_errors.fetch_add(1, Ordering::AcqRel);
                    // Never faster than our own backoff; longer when the
                    // receiver asks for it (Retry-After, RetryInfo).
                    let own = self.jittered(backoff);
                    let wait = e.retry_after().map_or(own, |ra| ra.max(own));
                    let give_up_at = first_attempt + self.config.retry.max_elapsed;
                    let resume = Instant::now() + wait;
                    if resume > give_up_at {
                        log::warn!(
                            "exporter {}: giving up on {n} spans after retries: {e}",
                            self.exporter.name()
                        );
                        settle[0] = (&c.dropped_after_retries, n);
                        break;
                    }
                    log::debug!("exporter {}: retry in {wait:?}: {e}", self.exporter.name());
                    if !self.sleep_until(resume) {
                        // Shutdown deadline falls before the next attempt.
                        settle[0] = (&c.dropped_at_shutdown, n);
                        break;
                    }
                    c.retries.fetch_add(1, Ordering::AcqRel);
                    backoff = next_backoff(backoff, &self.config.retry);
                }
                Err(e) => {
                    c.export_errors.fetch_add(1, Ordering::AcqRel);
                    log::warn!("exporter {}: dropping {n} spans: {e}", self.exporter.name());
                    settle[0] = (&c.dropped_rejected, n);
                    break;
                }
            }
        }
        // Move the batch from "held" to its final counters in one step, so a
        // snapshot never sees it in both places (or in neither).
        let _guard = shared.settle_lock.lock().unwrap_or_else(|e| e.into_inner());
        for (counter, k) in settle {
            counter.fetch_add(k, Ordering::AcqRel);
        }
        self.batch.clear();
        shared.in_flight.store(0, Ordering::Release);
        shared.release(n as usize);
    }

    /// Sleep until `resume`, waking early on shutdown. Returns false when the
    /// shutdown deadline comes before `resume` (the caller gives up).
    fn sleep_until(&self, resume: Instant) -> bool {
        let mut stop = self.shared.stop.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if stop.is_some_and(|d| d < resume) {
                return false;
            }
            let now = Instant::now();
            if now >= resume {
                return true;
            }
            stop = match self.shared.stop_cv.wait_timeout(stop, resume - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }

    fn jittered(&mut self, backoff: Duration) -> Duration {
        if !self.config.retry.jitter {
            return backoff;
        }
        // xorshift64: plenty for spreading retries.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let frac = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        backoff.mul_f64(0.5 + 0.5 * frac)
    }
}

fn next_backoff(current: Duration, policy: &RetryPolicy) -> Duration {
    let next = current.mul_f64(policy.multiplier.max(1.0));
    next.min(policy.max_backoff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples;
    use std::collections::VecDeque;

    /// Answers from a script (then Ok), records batch sizes, can be gated
    /// shut so `export` blocks until opened.
    #[derive(Clone, Default)]
    struct Scripted {
        script: Arc<Mutex<VecDeque<ExportError>>>,
        batches: Arc<Mutex<Vec<usize>>>,
        gate: Arc<(Mutex<bool>, Condvar)>,
        calls: Arc<AtomicU64>,
    }

    impl Scripted {
        fn failing(errors: Vec<ExportError>) -> Self {
            let s = Scripted::default();
            *s.script.lock().unwrap() = errors.into();
            s.open();
            s
        }
        fn open(&self) {
            *self.gate.0.lock().unwrap() = true;
            self.gate.1.notify_all();
        }
        fn exported(&self) -> usize {
            self.batches.lock().unwrap().iter().sum()
        }
    }

    impl SpanExporter for Scripted {
        fn export(&mut self, batch: &[Span]) -> Result<(), ExportError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let mut open = self.gate.0.lock().unwrap();
            while !*open {
                open = self.gate.1.wait(open).unwrap();
            }
            drop(open);
            if let Some(e) = self.script.lock().unwrap().pop_front() {
                return Err(e);
            }
            self.batches.lock().unwrap().push(batch.len());
            Ok(())
        }
        fn force_flush(&mut self) -> Result<(), ExportError> {
            Ok(())
        }
        fn shutdown(&mut self) -> Result<(), ExportError> {
            Ok(())
        }
        fn name(&self) -> &str {
            "scripted"
        }
    }

    fn fast_retry() -> RetryPolicy {
        RetryPolicy {
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            multiplier: 2.0,
            max_elapsed: Duration::from_secs(30),
            jitter: true,
        }
    }

    fn config(cap: usize, batch: usize) -> PipelineConfig {
        PipelineConfig {
            queue_capacity: cap,
            max_batch_size: batch,
            batch_timeout: Duration::from_secs(3600),
            retry: fast_retry(),
        }
    }

    fn unavailable() -> ExportError {
        ExportError::Http {
            status: 503,
            retry_after: None,
            detail: String::new(),
        }
    }

    /// Poll `cond` up to ~20 s (a bound, not an assertion on time).
    fn wait_for(mut cond: impl FnMut() -> bool) {
        for _ in 0..4000 {
            if cond() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("condition never became true");
    }

    #[test]
    fn batches_are_cut_by_size_and_flushed_on_shutdown() {
        let exp = Scripted::failing(vec![]);
        let mut p = Pipeline::new(vec![Box::new(exp.clone())], config(100, 4));
        for s in samples::spans(10) {
            assert!(p.try_send(s));
        }
        wait_for(|| exp.exported() == 8);
        assert_eq!(*exp.batches.lock().unwrap(), vec![4, 4]);
        let stats = p.shutdown(Duration::from_secs(10));
        assert_eq!(*exp.batches.lock().unwrap(), vec![4, 4, 2]);
        assert_eq!(stats.exported, 10);
        assert_eq!(stats.batches_exported, 3);
        assert!(stats.balanced(), "{stats:?}");
    }

    #[test]
    fn batches_are_cut_by_time() {
        let exp = Scripted::failing(vec![]);
        let mut cfg = config(100, 1000);
        cfg.batch_timeout = Duration::from_millis(10);
        let mut p = Pipeline::new(vec![Box::new(exp.clone())], cfg);
        p.try_send_batch(samples::spans(3));
        // No size trigger (1000): only the timer can cut this batch.
        wait_for(|| exp.exported() == 3);
        assert_eq!(p.stats().queued, 0);
        p.shutdown(Duration::from_secs(5));
    }

    #[test]
    fn full_queue_drops_and_counts_without_blocking() {
        let exp = Scripted::default(); // gate closed: export blocks
        let mut p = Pipeline::new(vec![Box::new(exp.clone())], config(16, 4));
        let mut accepted = 0;
        for s in samples::spans(100) {
            if p.try_send(s) {
                accepted += 1;
            }
            let st = p.stats();
            assert!(st.queued + st.in_flight <= 16, "{st:?}");
        }
        // The producer loop finished while the exporter is blocked.
        assert_eq!(accepted, 16);
        let st = p.stats();
        assert_eq!(st.dropped_queue_full, 84);
        assert_eq!(p.try_send_batch(samples::spans(5)), 0);
        exp.open();
        let stats = p.shutdown(Duration::from_secs(10));
        assert_eq!(stats.offered, 105);
        assert_eq!(stats.exported, 16);
        assert_eq!(stats.dropped_queue_full, 89);
        assert!(stats.balanced(), "{stats:?}");
    }

    #[test]
    fn try_send_batch_takes_what_fits() {
        let exp = Scripted::default();
        let mut p = Pipeline::new(vec![Box::new(exp.clone())], config(10, 100));
        assert_eq!(p.try_send_batch(samples::spans(7)), 7);
        assert_eq!(p.try_send_batch(samples::spans(7)), 3);
        assert_eq!(p.stats().dropped_queue_full, 4);
        exp.open();
        let stats = p.shutdown(Duration::from_secs(10));
        assert_eq!(stats.exported, 10);
        assert!(stats.balanced());
    }

    #[test]
    fn try_send_trace_shares_the_trace_and_takes_what_fits() {
        let a = Scripted::default();
        let b = crate::InMemoryExporter::new();
        let mut p = Pipeline::new(
            vec![Box::new(a.clone()), Box::new(b.clone())],
            config(10, 100),
        );
        let trace = Arc::new(Trace {
            trace_id: span_core::TraceId(7),
            spans: samples::spans(7),
        });
        assert_eq!(p.try_send_trace(&trace), 7);
        assert_eq!(p.try_send_trace(&trace), 3);
        // Each lane counts its own offers and drops.
        assert_eq!(p.stats().offered, 28);
        assert_eq!(p.stats().dropped_queue_full, 8);
        a.open();
        let stats = p.shutdown(Duration::from_secs(10));
        assert_eq!(stats.exported, 20);
        assert!(stats.balanced(), "{stats:?}");
        assert_eq!(b.len(), 10);
        // The first 7 exported by a lane are the trace's spans, in order.
        let got = b.spans();
        for (x, y) in got.iter().zip(&trace.spans) {
            assert_eq!(x.span_id, y.span_id);
        }
    }

    #[test]
    fn retryable_errors_are_retried() {
        let exp = Scripted::failing(vec![
            unavailable(),
            ExportError::Transport("connection refused".into()),
            ExportError::Timeout(Duration::from_secs(1)),
        ]);
        let mut p = Pipeline::new(vec![Box::new(exp.clone())], config(100, 5));
        p.try_send_batch(samples::spans(5));
        let stats = p.shutdown(Duration::from_secs(10));
        assert_eq!(stats.exported, 5);
        assert_eq!(stats.retries, 3);
        assert_eq!(stats.export_errors, 3);
        assert_eq!(exp.calls.load(Ordering::SeqCst), 4);
        assert!(stats.balanced());
    }

    #[test]
    fn permanent_errors_drop_the_batch() {
        let exp = Scripted::failing(vec![ExportError::Http {
            status: 400,
            retry_after: None,
            detail: String::new(),
        }]);
        let mut p = Pipeline::new(vec![Box::new(exp.clone())], config(100, 5));
        p.try_send_batch(samples::spans(10));
        let stats = p.shutdown(Duration::from_secs(10));
        assert_eq!(stats.dropped_rejected, 5);
        assert_eq!(stats.exported, 5);
        assert_eq!(stats.retries, 0);
        assert!(stats.balanced());
    }

    #[test]
    fn partial_success_counts_rejected_spans() {
        let exp = Scripted::failing(vec![ExportError::PartialSuccess {
            rejected: 2,
            message: "bad".into(),
        }]);
        let mut p = Pipeline::new(vec![Box::new(exp.clone())], config(100, 5));
        p.try_send_batch(samples::spans(5));
        let stats = p.shutdown(Duration::from_secs(10));
        assert_eq!(stats.exported, 3);
        assert_eq!(stats.dropped_rejected, 2);
        assert!(stats.balanced());
    }

    #[test]
    fn retry_budget_is_capped() {
        let exp = Scripted::failing((0..1000).map(|_| unavailable()).collect());
        let mut cfg = config(100, 5);
        cfg.retry.max_elapsed = Duration::from_millis(50);
        let mut p = Pipeline::new(vec![Box::new(exp.clone())], cfg);
        p.try_send_batch(samples::spans(5));
        wait_for(|| p.stats().dropped_after_retries == 5);
        let stats = p.shutdown(Duration::from_secs(10));
        assert!(stats.retries >= 1);
        assert_eq!(stats.export_errors, stats.retries + 1);
        assert!(stats.balanced());
    }

    #[test]
    fn retry_after_is_honoured() {
        // A Retry-After longer than the retry budget: no retry at all.
        let long = ExportError::Http {
            status: 429,
            retry_after: Some(Duration::from_secs(3600)),
            detail: String::new(),
        };
        let exp = Scripted::failing(vec![long]);
        let mut p = Pipeline::new(vec![Box::new(exp.clone())], config(100, 5));
        p.try_send_batch(samples::spans(5));
        wait_for(|| p.stats().dropped_after_retries == 5);
        assert_eq!(p.stats().retries, 0);
        // A zero Retry-After is retried (the policy's own backoff would not
        // be used, and the budget is not the limit).
        let zero = ExportError::Http {
            status: 429,
            retry_after: Some(Duration::ZERO),
            detail: String::new(),
        };
        *exp.script.lock().unwrap() = vec![zero].into();
        p.try_send_batch(samples::spans(5));
        let stats = p.shutdown(Duration::from_secs(10));
        assert_eq!(stats.exported, 5);
        assert_eq!(stats.retries, 1);
        assert!(stats.balanced());
    }

    #[test]
    fn shutdown_deadline_stops_retrying() {
        let exp = Scripted::failing((0..100_000).map(|_| unavailable()).collect());
        let mut cfg = config(100, 5);
        cfg.retry.initial_backoff = Duration::from_secs(3600);
        cfg.retry.max_backoff = Duration::from_secs(3600);
        cfg.retry.max_elapsed = Duration::from_secs(7200);
        let mut p = Pipeline::new(vec![Box::new(exp.clone())], cfg);
        p.try_send_batch(samples::spans(12));
        // The worker is now waiting (an hour) to retry the first batch.
        wait_for(|| exp.calls.load(Ordering::SeqCst) >= 1);
        let stats = p.shutdown(Duration::from_millis(100));
        assert_eq!(stats.exported, 0);
        assert_eq!(stats.dropped_at_shutdown, 12, "{stats:?}");
        assert!(stats.balanced());
        // Sends after shutdown are refused and counted.
        assert!(!p.try_send(samples::span(1, 2, None)));
        assert!(p.stats().balanced());
    }

    #[test]
    fn a_stuck_exporter_does_not_starve_another() {
        let stuck = Scripted::default();
        let healthy = InMemoryLike::default();
        let mut p = Pipeline::new(
            vec![Box::new(stuck.clone()), Box::new(healthy.clone())],
            config(50, 10),
        );
        for s in samples::spans(200) {
            p.try_send(s);
        }
        wait_for(|| healthy.0.lock().unwrap().len() >= 50);
        let lanes = p.lane_stats();
        assert_eq!(lanes[0].0, "scripted");
        assert!(lanes[0].1.dropped_queue_full >= 150);
        assert!(lanes[0].1.queued + lanes[0].1.in_flight <= 50);
        stuck.open();
        let stats = p.shutdown(Duration::from_secs(10));
        assert_eq!(stats.offered, 400);
        assert!(stats.balanced(), "{stats:?}");
    }

    #[derive(Clone, Default)]
    struct InMemoryLike(Arc<Mutex<Vec<Span>>>);
    impl SpanExporter for InMemoryLike {
        fn export(&mut self, batch: &[Span]) -> Result<(), ExportError> {
            self.0.lock().unwrap().extend_from_slice(batch);
            Ok(())
        }
        fn force_flush(&mut self) -> Result<(), ExportError> {
            Ok(())
        }
        fn shutdown(&mut self) -> Result<(), ExportError> {
            Ok(())
        }
        fn name(&self) -> &str {
            "mem"
        }
    }

    #[test]
    fn force_flush_exports_partial_batches() {
        let exp = crate::InMemoryExporter::new();
        let p = Pipeline::new(vec![Box::new(exp.clone())], config(100, 50));
        p.try_send_batch(samples::spans(7));
        p.force_flush(Duration::from_secs(10)).unwrap();
        assert_eq!(exp.len(), 7);
        assert_eq!(exp.flushes(), 1);
        assert_eq!(p.stats().exported, 7);
    }

    #[test]
    fn backoff_grows_and_caps() {
        let policy = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            multiplier: 2.0,
            ..RetryPolicy::default()
        };
        let b1 = next_backoff(policy.initial_backoff, &policy);
        let b2 = next_backoff(b1, &policy);
        assert_eq!(b1, Duration::from_millis(200));
        assert_eq!(b2, Duration::from_millis(350));
    }
}
