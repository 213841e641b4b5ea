//! Span exporters for zt-trace (being written).
