//! An in-memory exporter for tests.

use crate::{ExportError, SpanExporter};
use span_core::Span;
use std::sync::{Arc, Mutex, MutexGuard};

/// Keeps every exported span in memory. Clones share the same store, so a
/// test keeps one clone and hands the other to the pipeline.
#[derive(Clone, Default)]
pub struct InMemoryExporter {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    spans: Vec<Span>,
    batches: usize,
    flushes: usize,
    shut_down: bool,
}

impl InMemoryExporter {
    /// An empty exporter.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the spans exported so far, in order.
    pub fn spans(&self) -> Vec<Span> {
        self.lock().spans.clone()
    }

    /// Take the spans exported so far, leaving the store empty.
    pub fn take(&self) -> Vec<Span> {
        std::mem::take(&mut self.lock().spans)
    }

    /// Number of spans exported so far.
    pub fn len(&self) -> usize {
        self.lock().spans.len()
    }

    /// True when nothing was exported.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of `export` calls that succeeded.
    pub fn batches(&self) -> usize {
        self.lock().batches
    }

    /// Number of `force_flush` calls.
    pub fn flushes(&self) -> usize {
        self.lock().flushes
    }

    /// Whether `shutdown` was called.
    pub fn is_shut_down(&self) -> bool {
        self.lock().shut_down
    }
}

impl SpanExporter for InMemoryExporter {
    fn export(&mut self, batch: &[Span]) -> Result<(), ExportError> {
        let mut inner = self.lock();
        if inner.shut_down {
            return Err(ExportError::Shutdown);
        }
        inner.spans.extend_from_slice(batch);
        inner.batches += 1;
        Ok(())
    }

    fn force_flush(&mut self) -> Result<(), ExportError> {
        self.lock().flushes += 1;
        Ok(())
    }

    fn shutdown(&mut self) -> Result<(), ExportError> {
        self.lock().shut_down = true;
        Ok(())
    }

    fn name(&self) -> &str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_and_refuses_after_shutdown() {
        let mut exp = InMemoryExporter::new();
        let handle = exp.clone();
        exp.export(&crate::samples::spans(3)).unwrap();
        assert_eq!(handle.len(), 3);
        assert_eq!(handle.batches(), 1);
        exp.shutdown().unwrap();
        assert!(handle.is_shut_down());
        assert!(matches!(
            exp.export(&crate::samples::spans(1)),
            Err(ExportError::Shutdown)
        ));
        assert_eq!(handle.take().len(), 3);
        assert!(handle.is_empty());
    }
}
