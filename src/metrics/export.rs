//! Periodic export of the metric families to [`MetricsExporter`]s (OTLP),
//! on a thread of its own: every interval, and once more when the tracer
//! has finished (the final counts).

use exporters::metrics::{MetricFamily, MetricsExporter};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

pub(crate) struct ExportLoop {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl ExportLoop {
    pub(crate) fn start(
        mut exporters: Vec<Box<dyn MetricsExporter>>,
        interval: Duration,
        read: impl Fn() -> Vec<MetricFamily> + Send + 'static,
    ) -> std::io::Result<ExportLoop> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let s = stop.clone();
        let started = unix_nanos();
        let thread = std::thread::Builder::new()
            .name("zt-metrics-export".into())
            .spawn(move || {
                let export = |exporters: &mut Vec<Box<dyn MetricsExporter>>| {
                    let families = read();
                    let now = unix_nanos();
                    for e in exporters.iter_mut() {
                        if let Err(err) = e.export_metrics(&families, started, now) {
                            log::warn!("exporting metrics with {}: {err}", e.name());
                        }
                    }
                };
                let mut next = Instant::now() + interval;
                loop {
                    let (lock, cv) = &*s;
                    let mut stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
                    while !*stopped {
                        let left = next.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        stopped = cv
                            .wait_timeout(stopped, left)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    }
                    let last = *stopped;
                    drop(stopped);
                    export(&mut exporters);
                    if last {
                        break;
                    }
                    next = Instant::now() + interval;
                }
            })?;
        Ok(ExportLoop {
            stop,
            thread: Some(thread),
        })
    }

    /// Export once more (the final values) and stop.
    pub(crate) fn finish(&mut self) {
        if let Some(t) = self.thread.take() {
            let (lock, cv) = &*self.stop;
            *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
            cv.notify_all();
            let _ = t.join();
        }
    }
}

impl Drop for ExportLoop {
    fn drop(&mut self) {
        self.finish();
    }
}
