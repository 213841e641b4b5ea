//! The [`SpanExporter`] trait.

use crate::ExportError;
use span_core::Span;

/// Sends finished spans somewhere.
///
/// Calls are blocking and made from one thread at a time: the
/// [`Pipeline`](crate::Pipeline) calls them from its worker thread, never from
/// the capture path. An exporter sends each batch once per call; retrying is
/// the pipeline's job, guided by [`ExportError::is_retryable`].
pub trait SpanExporter: Send {
    /// Export one batch. An error means none of the batch is known to have
    /// been accepted, except [`ExportError::PartialSuccess`], which means all
    /// but `rejected` spans were.
    fn export(&mut self, batch: &[Span]) -> Result<(), ExportError>;
    /// Push out anything buffered inside the exporter (files, sockets).
    fn force_flush(&mut self) -> Result<(), ExportError>;
    /// Flush and release resources; later exports fail with
    /// [`ExportError::Shutdown`].
    fn shutdown(&mut self) -> Result<(), ExportError>;
    /// A short name for logs and statistics (`otlp-grpc`, `zipkin`, ...).
    fn name(&self) -> &str;
}

impl<E: SpanExporter + ?Sized> SpanExporter for Box<E> {
    fn export(&mut self, batch: &[Span]) -> Result<(), ExportError> {
        (**self).export(batch)
    }
    fn force_flush(&mut self) -> Result<(), ExportError> {
        (**self).force_flush()
    }
    fn shutdown(&mut self) -> Result<(), ExportError> {
        (**self).shutdown()
    }
    fn name(&self) -> &str {
        (**self).name()
    }
}
